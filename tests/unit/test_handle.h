/* Shared fixture of the agent-side handler tests (test_handle_*.c): the
 * default data model with a small test profile, one agent, an env that
 * records events and replies, an access list, and a fake scheduler on a
 * virtual clock advanced by hand. */
#ifndef USP_TEST_HANDLE_H
#define USP_TEST_HANDLE_H

#include <stdbool.h>
#include <stdint.h>

#include "testutil.h"
#include "usp/codec.h"
#include "usp/handler.h"

#define HFIX_MAX_EVENTS 256
#define HFIX_MAX_TIMERS 32
#define HFIX_MAX_KV     16
#define HFIX_T0         1700000000 /* the virtual clock starts here (seconds) */

struct hfix_event {
    enum usp_dm_event_kind kind;
    char *path, *name, *value, *command_key, *err_msg;
    uint32_t err_code;
    uint32_t nkv;
    char *key[HFIX_MAX_KV], *val[HFIX_MAX_KV];
};

struct hfix {
    struct usp_dm_schema *schema;
    struct usp_profile *prof;
    struct usp_dm_model *model;
    struct usp_dm_agent agent;
    struct usp_arena *a;
    struct usp_agent_env env;
    struct hfix_event ev[HFIX_MAX_EVENTS];
    size_t nev;
    struct {
        uint64_t at_ms;
        usp_timer_fn fn;
        void *arg;
    } timers[HFIX_MAX_TIMERS];
    size_t ntimers;
    uint64_t now_ms; /* virtual clock, ms since HFIX_T0 */
    int schedule_rc; /* what schedule returns (0: schedules) */
    struct {
        const char *prefix;
        unsigned perm;
    } deny[8];
    size_t ndeny;
    struct usp_agent_reply replies[8];
    size_t nreplies;
};

/* The one fixture, `H` in the tests. */
extern struct hfix hfix_state;
#define H hfix_state

/* Sets up H with the default model (device-2-uspsim.xml) and the test
 * profile (tests/unit/data/handle/test.prof); `mini` selects the tiny
 * model of tests/unit/data/handle/mini.xml without a profile instead. */
void hfix_setup(bool mini);
void hfix_teardown(void);
/* Denies `perm` on every path starting with `prefix`. */
void hfix_deny(const char *prefix, unsigned perm);
/* Runs the timers due by now + ms and moves the clock. */
void hfix_advance(uint64_t ms);

/* A request message in H.a with its msg_id set. */
Usp__Msg *hfix_request(Usp__Request__ReqTypeCase kind, void *body);
/* Handles `req` as controller "ctrl-1" (or `controller`) and returns the
 * answer (NULL when none); checks that usp_agent_handle returned 0, that
 * the answer echoes msg_id, packs and unpacks, and that every error code in
 * it belongs to the request type's allowed set. */
Usp__Msg *hfix_handle(Usp__Msg *req);
Usp__Msg *hfix_handle_as(const char *controller, Usp__Msg *req);

/* Request builders (everything in H.a). */
Usp__Msg *hfix_get(const char *const *paths, size_t n, uint32_t max_depth);
Usp__Msg *hfix_get1(const char *path);
/* "param=value" or "!param=value" (required) settings. */
Usp__Msg *hfix_set(bool allow_partial, const char *obj_path, const char *const *settings, size_t n);
Usp__Msg *hfix_add(bool allow_partial, const char *obj_path, const char *const *settings, size_t n);
Usp__Msg *hfix_delete(bool allow_partial, const char *const *paths, size_t n);
/* "name=value" input arguments. */
Usp__Msg *hfix_operate(const char *command, const char *key, bool send_resp,
                       const char *const *args, size_t n);

/* Reads a value straight from the agent ("" when missing; in H.a). */
const char *hfix_value(const char *param_path);
/* Whether an instance path exists. */
bool hfix_exists(const char *obj_path);

/* Events: how many of `kind` were recorded, and the first one with `path`
 * (NULL when none). */
size_t hfix_count(enum usp_dm_event_kind kind);
const struct hfix_event *hfix_find(enum usp_dm_event_kind kind, const char *path);
const char *hfix_ev_kv(const struct hfix_event *e, const char *key);

/* The body of an answer of the expected kind, or NULL. */
Usp__Error *hfix_error(const Usp__Msg *m);
Usp__Response *hfix_response(const Usp__Msg *m, Usp__Response__RespTypeCase kind);

/* Looks a key up in a protobuf-c map (an array of entries with key and
 * value): NULL when absent. */
#define HFIX_MAP_GET(arr, n, k) hfix_map_get((void *const *)(arr), (n), (k))
const char *hfix_map_get(void *const *entries, size_t n, const char *key);

/* Whether `code` may appear in answers to `req_type` according to the
 * specification's per-message lists and code table (independent of the
 * library's own table). */
bool hfix_code_allowed(int req_type, uint32_t code);

#endif
