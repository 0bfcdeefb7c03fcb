/* The controller by hand and by script: -e requests, the interactive shell
 * on a terminal (libedit: line editing, history, completion of command
 * names) and requests read from a pipe or file, one per line.
 *
 * One request is outstanding at a time: the next line is read (or the next
 * -e taken) only when the previous request was answered or timed out, so a
 * script reads like a conversation. Notifications and agents' connections
 * are handled all along by the core; `watch` prints them as they arrive.
 *
 * Standard input that is not a terminal is read by a small thread (a pipe
 * or file may block, and the loop must keep answering agents meanwhile),
 * which hands each line over through a uv_async_t when the loop asks. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "ctl.h"
#include "usp/codec.h"
#include "usp/eid.h"
#include "usp/errors.h"
#include "usp/json.h"
#include "usp/reqlang.h"

#define SHELL_POOL    4096 /* requests in flight: ours and the core's own GSPs */
#define HISTORY_FILE  ".uspsim_history"
#define HISTORY_LINES 1000

enum input { IN_EXEC, IN_TTY, IN_SCRIPT };

struct shell {
    struct sim_ctl ctl;
    uv_loop_t loop;
    const struct ctl_conf *conf;
    enum input in;
    char target[USP_EID_MAX_LEN + 1];
    bool watch;
    bool busy;     /* a request is outstanding */
    bool quit;     /* stop once nothing is outstanding */
    bool finished; /* the loop may end */
    int failures;
    unsigned lineno;
    struct usp_arena *arena; /* the current request */
    const char *cur_cmd;     /* its command name, for messages */
    /* -e */
    const char *const *execs;
    int nexecs, next_exec;
    /* script input */
    pthread_t reader;
    bool reader_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool want_line, reader_stop, in_getline;
    char *line; /* handed over by the reader */
    bool eof;
    uv_async_t line_async;
    /* terminal */
    uv_poll_t tty_poll;
    bool rl_on;          /* libedit's line handler is installed */
    struct ctl_req *cur; /* the request we wait for (NULL: none, or abandoned) */
    char prompt_text[USP_EID_MAX_LEN + 16];
    char history[1024];
    uv_signal_t sigint, sigterm;
    uv_timer_t step;
};

/* libedit's callback interface has no user pointer. */
static struct shell *the_shell;

static void step_later(struct shell *s);

/* ---- Output around the prompt -------------------------------------------- */

/* Output that arrives while a line is being edited (notifications, the
 * answer to a request) must not garble it: clear the line first, redraw
 * the prompt and what was typed afterwards. */
static void out_begin(struct shell *s)
{
    if (s->in == IN_TTY && s->rl_on) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
    }
}

static void out_end(struct shell *s)
{
    fflush(stdout);
    if (s->in == IN_TTY && s->rl_on && !s->busy)
        rl_forced_update_display();
}

/* ---- Built-in commands ------------------------------------------------------- */

static int cmp_agents(const void *x, const void *y)
{
    const struct ctl_agent *a = *(struct ctl_agent *const *)x, *b = *(struct ctl_agent *const *)y;
    return strcmp(a->eid, b->eid);
}

struct collect {
    struct ctl_agent **v;
    size_t n;
    const char *glob;
};

static void collect_one(struct ctl_agent *a, void *arg)
{
    struct collect *c = arg;
    if (!c->glob || ctl_glob(c->glob, a->eid))
        c->v[c->n++] = a;
}

/* `agents [GLOB]`: what the controller knows of each agent, by Endpoint ID. */
static void cmd_agents(struct shell *s, const char *glob)
{
    struct sim_ctl *c = &s->ctl;
    struct collect col = {.v = calloc(c->nagents ? c->nagents : 1, sizeof *col.v), .glob = glob};
    if (!col.v) {
        fprintf(stderr, "uspsim controller: out of memory\n");
        return;
    }
    ctl_agents_each(c, collect_one, &col);
    qsort(col.v, col.n, sizeof *col.v, cmp_agents);
    uint64_t now = uv_now(&s->loop);
    printf("%-32s %-12s %-4s %-5s %-6s %-9s %s\n", "AGENT", "STATE", "USP", "BOOTS", "NOTIFS",
           "LAST SEEN", c->conf->p2p ? "SESSION" : "TOPIC");
    for (size_t i = 0; i < col.n; i++) {
        struct ctl_agent *a = col.v[i];
        char ago[32];
        const char *state = a->flags & CA_CONNECTED ? "connected"
                            : a->last_seen_ms ? (a->flags & CA_TOPIC_SAID ? "disconnected" : "seen")
                                              : "never seen";
        printf("%-32s %-12s %-4s %-5" PRIu32 " %-6" PRIu32 " %-9s %s\n", a->eid, state,
               ctl_version_str(a->minor), a->boots, a->notifs,
               a->last_seen_ms ? ctl_ago(now - a->last_seen_ms, ago, sizeof ago) : "-",
               c->conf->p2p ? (a->conn ? "up" : "none") : a->dest ? a->dest : "-");
        if (a->boots && a->boot_cause[0])
            printf("  last Boot! cause %s\n", a->boot_cause);
        if (a->versions)
            printf("  USP versions %s%s\n", a->versions,
                   a->flags & CA_NO_COMMON ? " (none in common with uspsim)" : "");
        if (a->onboard)
            printf("  onboard request: oui %s, product class %s, serial %s, versions %s\n",
                   a->onboard->oui, a->onboard->product_class, a->onboard->serial_number,
                   a->onboard->versions);
    }
    printf("%zu agent%s\n", col.n, col.n == 1 ? "" : "s");
    fflush(stdout);
    free(col.v);
}

static void cmd_help(const char *what)
{
    if (what && usp_req_usage(stdout, what) == 0)
        return;
    if (what)
        printf("unknown command '%s'\n\n", what);
    printf("Requests (sent to the agent chosen with `use`):\n");
    usp_req_usage(stdout, NULL);
    printf("\nShell commands:\n"
           "  agents [GLOB]     the agents seen (or matching GLOB): state, USP version,\n"
           "                    Boot!s, notifications, last seen, topic\n"
           "  use EID           send the following requests to EID\n"
           "  watch [on|off]    print notifications and connections as they arrive\n"
           "  help [COMMAND]    this text, or the arguments of one request\n"
           "  quit              leave (also Ctrl-D)\n");
    fflush(stdout);
}

/* ---- Requests ------------------------------------------------------------------ */

static void complain(struct shell *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(struct shell *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "uspsim controller: ");
    if (s->in == IN_SCRIPT)
        fprintf(stderr, "line %u: ", s->lineno);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void on_done(struct sim_ctl *c, struct ctl_req *r, const struct ctl_result *res)
{
    struct shell *s = c->user;
    if (r != s->cur)
        return; /* given up on with Ctrl-C */
    s->cur = NULL;
    const char *eid = r->agent->eid;
    out_begin(s);
    char eb[96];
    double ms = (double)(res->now_ns - r->t0_ns) / 1e6;
    switch (res->outcome) {
    case CTL_RESPONSE:
    case CTL_ERROR: {
        if (s->conf->json) {
            usp_json_write_record(stdout, res->rec, res->msg, 2);
            fputc('\n', stdout);
        } else {
            ctl_print_msg(stdout, res->msg);
        }
        fflush(stdout);
        if (res->outcome == CTL_ERROR) {
            s->failures++;
            complain(s, "%s to %s: the agent answered with Error %s", s->cur_cmd, eid,
                     ctl_err_str(res->err_code, eb, sizeof eb));
        } else if (s->in == IN_TTY) {
            fprintf(stderr, "(%.1f ms)\n", ms);
        }
        break;
    }
    case CTL_TIMEOUT:
        s->failures++;
        complain(s, "%s to %s: timed out after %.1f s: %s", s->cur_cmd, eid,
                 (double)s->conf->timeout_ms / 1000.0, res->why);
        break;
    case CTL_FAILED:
        s->failures++;
        complain(s, "%s to %s: not sent: %s", s->cur_cmd, eid, res->why);
        break;
    case CTL_SENT:
        if (s->in == IN_TTY)
            fprintf(stderr, "(sent; no response is expected)\n");
        break;
    }
    s->busy = false;
    step_later(s);
}

/* Splits and runs one line: a shell command or a request. Returns true
 * when a request went out (the next line waits for it). */
static bool run_line(struct shell *s, const char *line)
{
    usp_arena_reset(s->arena);
    struct usp_req_err err;
    int argc;
    char **argv;
    int rc = usp_req_split(s->arena, line, &argc, &argv, &err);
    if (rc == USP_EINVAL) {
        s->failures++;
        complain(s, "%s (column %d)", err.msg, err.column + 1);
        return false;
    }
    if (rc || argc == 0) {
        if (rc)
            complain(s, "%s", usp_strerror(rc));
        return false;
    }
    const char *cmd = argv[0];
    if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit")) {
        s->quit = true;
        return false;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "?")) {
        cmd_help(argc > 1 ? argv[1] : NULL);
        return false;
    }
    if (!strcmp(cmd, "agents")) {
        if (argc > 2) {
            s->failures++;
            complain(s, "usage: agents [GLOB]");
            return false;
        }
        cmd_agents(s, argc == 2 ? argv[1] : NULL);
        return false;
    }
    if (!strcmp(cmd, "watch")) {
        if (argc > 2 || (argc == 2 && strcmp(argv[1], "on") && strcmp(argv[1], "off"))) {
            s->failures++;
            complain(s, "usage: watch [on|off]");
            return false;
        }
        s->watch = argc == 1 || !strcmp(argv[1], "on");
        if (s->in == IN_TTY)
            printf("watch %s\n", s->watch ? "on" : "off");
        return false;
    }
    if (!strcmp(cmd, "use")) {
        char why[160];
        if (argc != 2) {
            s->failures++;
            complain(s, "usage: use EID");
            return false;
        }
        if (usp_eid_parse(argv[1], NULL, why, sizeof why) != 0) {
            s->failures++;
            complain(s, "use: '%s' is not an Endpoint ID: %s", argv[1], why);
            return false;
        }
        snprintf(s->target, sizeof s->target, "%s", argv[1]);
        if (s->in == IN_TTY)
            printf("requests go to %s\n", s->target);
        return false;
    }
    Usp__Msg *msg;
    rc = usp_req_parse(s->arena, argc, argv, "-", &msg, &err);
    if (rc == USP_EINVAL) {
        s->failures++;
        complain(s, "%s%s%s", err.cmd ? err.cmd : "", err.cmd ? ": " : "", err.msg);
        if (!err.cmd && s->in == IN_TTY)
            fprintf(stderr, "(help lists the commands)\n");
        return false;
    }
    if (rc) {
        s->failures++;
        complain(s, "%s", usp_strerror(rc));
        return false;
    }
    if (!s->target[0]) {
        s->failures++;
        complain(s, "%s: no agent to send it to: `use EID` first (or --to EID)",
                 err.cmd ? err.cmd : cmd);
        return false;
    }
    struct ctl_agent *a = ctl_agent_get(&s->ctl, s->target, true, CTL_NO_INDEX);
    struct ctl_req *r = a ? ctl_req_alloc(&s->ctl) : NULL;
    if (!r) {
        s->failures++;
        complain(s, "out of memory");
        return false;
    }
    /* The canonical name (a static string), for messages. */
    s->cur_cmd = err.cmd ? err.cmd : usp_msg_type_name(usp_msg_kind(msg));
    if (!s->cur_cmd)
        s->cur_cmd = "request";
    r->agent = a;
    r->msg = msg;
    r->kind = 1;
    s->busy = true;
    s->cur = r;
    /* What is typed meanwhile waits in the terminal until the answer. */
    if (s->in == IN_TTY)
        uv_poll_stop(&s->tty_poll);
    ctl_req_submit(&s->ctl, r, s->conf->timeout_ms);
    return true;
}

/* ---- Input: -e ------------------------------------------------------------------- */

static void next_exec(struct shell *s)
{
    while (!s->busy && !s->quit) {
        if (s->next_exec >= s->nexecs) {
            s->quit = true;
            break;
        }
        s->lineno = (unsigned)++s->next_exec;
        run_line(s, s->execs[s->next_exec - 1]);
    }
}

/* ---- Input: a script on standard input -------------------------------------------- */

static void *reader_main(void *arg)
{
    struct shell *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->want_line && !s->reader_stop)
            pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->reader_stop;
        s->want_line = false;
        s->in_getline = !stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            return NULL;
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        pthread_mutex_lock(&s->mu);
        s->in_getline = false;
        if (n < 0) {
            free(line);
            s->eof = true;
        } else {
            s->line = line;
        }
        pthread_mutex_unlock(&s->mu);
        uv_async_send(&s->line_async);
        if (n < 0)
            return NULL;
    }
}

static void ask_line(struct shell *s)
{
    pthread_mutex_lock(&s->mu);
    s->want_line = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_line_async(uv_async_t *h)
{
    struct shell *s = h->data;
    pthread_mutex_lock(&s->mu);
    char *line = s->line;
    bool eof = s->eof && !line;
    s->line = NULL;
    pthread_mutex_unlock(&s->mu);
    if (eof) {
        s->quit = true;
        step_later(s);
        return;
    }
    if (!line)
        return;
    s->lineno++;
    line[strcspn(line, "\r\n")] = 0;
    bool sent = run_line(s, line);
    free(line);
    if (!sent)
        step_later(s);
}

/* ---- Input: the terminal ---------------------------------------------------------- */

static const char *prompt_for(struct shell *s)
{
    snprintf(s->prompt_text, sizeof s->prompt_text, "%s> ", s->target[0] ? s->target : "usp");
    return s->prompt_text;
}

static void tty_done(struct shell *s)
{
    uv_poll_stop(&s->tty_poll);
    if (s->rl_on)
        rl_callback_handler_remove();
    s->rl_on = false;
    s->quit = true;
    step_later(s);
}

static void on_rl_line(char *line)
{
    struct shell *s = the_shell;
    if (!line) {
        printf("\n"); /* Ctrl-D */
        tty_done(s);
        return;
    }
    const char *p = line + strspn(line, " \t");
    if (*p)
        add_history(line);
    bool sent = run_line(s, line);
    free(line);
    if (s->quit)
        tty_done(s);
    else if (!sent)
        rl_set_prompt(prompt_for(s)); /* `use` may have changed it */
}

static void on_tty(uv_poll_t *p, int status, int events)
{
    struct shell *s = p->data;
    if (status < 0) {
        s->quit = true;
        uv_poll_stop(p);
        step_later(s);
        return;
    }
    rl_callback_read_char();
}

static char *complete_word(const char *text, int state)
{
    static const char *const builtins[] = {"agents", "use", "watch", "help", "quit", NULL};
    static size_t i;
    static size_t len;
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    for (;;) {
        const char *name;
        size_t nreq = 0;
        while (usp_req_command_name(nreq))
            nreq++;
        if (i < nreq)
            name = usp_req_command_name(i);
        else if (builtins[i - nreq])
            name = builtins[i - nreq];
        else
            return NULL;
        i++;
        if (!strncmp(name, text, len))
            return strdup(name);
    }
}

static char **complete(const char *text, int start, int end)
{
    if (start != 0)
        return NULL; /* only the command word */
    rl_attempted_completion_over = 1;
    return rl_completion_matches(text, complete_word);
}

/* Ready for the next line: the prompt (again, after an answer). */
static void prompt(struct shell *s)
{
    if (!s->rl_on) {
        rl_callback_handler_install(prompt_for(s), on_rl_line);
        s->rl_on = true;
    } else {
        rl_set_prompt(prompt_for(s));
        rl_forced_update_display();
    }
    uv_poll_start(&s->tty_poll, UV_READABLE, on_tty);
}

/* ---- Steps and the end -------------------------------------------------------------- */

static void on_step(uv_timer_t *t)
{
    struct shell *s = t->data;
    if (s->busy)
        return;
    if (s->quit) {
        s->finished = true;
        uv_stop(&s->loop);
        return;
    }
    switch (s->in) {
    case IN_EXEC:
        next_exec(s);
        if (s->quit && !s->busy) {
            s->finished = true;
            uv_stop(&s->loop);
        }
        break;
    case IN_SCRIPT:
        ask_line(s);
        break;
    case IN_TTY:
        prompt(s);
        break;
    }
}

static void step_later(struct shell *s)
{
    uv_timer_start(&s->step, on_step, 0, 0);
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct shell *s = h->data;
    if (s->in == IN_TTY && sig == SIGINT) {
        if (s->busy) {
            /* Stop waiting; the answer, if it comes, is not shown. */
            out_begin(s);
            printf("^C (no longer waiting for the response)\n");
            s->cur = NULL;
            s->busy = false;
            step_later(s);
            return;
        }
        /* Ctrl-C at the prompt forgets the line, as shells do. */
        printf("^C\n");
        rl_replace_line("", 0);
        rl_forced_update_display();
        return;
    }
    fprintf(stderr, "uspsim controller: interrupted\n");
    s->failures++;
    s->finished = true;
    uv_stop(&s->loop);
}

static void on_event(struct sim_ctl *c, const struct ctl_event *ev)
{
    struct shell *s = c->user;
    if (!s->watch)
        return;
    switch (ev->kind) {
    case CTL_EV_NOTIFY:
        out_begin(s);
        if (s->conf->json) {
            usp_json_write_record(stdout, ev->rec, ev->msg, 0);
            fputc('\n', stdout);
        } else {
            ctl_print_notify(stdout, ev->agent->eid, ev->msg->body->request->notify);
        }
        out_end(s);
        break;
    case CTL_EV_CONNECT:
        out_begin(s);
        switch (ev->rec->record_type_case) {
        case USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT:
            printf("[%s] connected, MQTT %s, topic %s\n", ev->agent->eid,
                   ev->agent->flags & CA_MQTT311 ? "3.1.1" : "5",
                   ev->agent->dest ? ev->agent->dest : "-");
            break;
        case USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT:
            printf("[%s] connected, STOMP, destination %s\n", ev->agent->eid,
                   ev->agent->dest ? ev->agent->dest : "-");
            break;
        case USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT:
            printf("[%s] connected, WebSocket\n", ev->agent->eid);
            break;
        default:
            printf("[%s] connected, UNIX domain socket\n", ev->agent->eid);
            break;
        }
        out_end(s);
        break;
    case CTL_EV_DISCONNECT:
        out_begin(s);
        printf("[%s] disconnected%s%s\n", ev->agent->eid,
               ev->rec->disconnect && ev->rec->disconnect->reason && ev->rec->disconnect->reason[0]
                   ? ": "
                   : "",
               ev->rec->disconnect && ev->rec->disconnect->reason ? ev->rec->disconnect->reason
                                                                  : "");
        out_end(s);
        break;
    default:
        break;
    }
}

static void on_conn_state(struct sim_ctl *c, const struct usp_mtp_event *ev)
{
    struct shell *s = c->user;
    if (!c->ever_up || s->conf->quiet)
        return;
    if (ev->state == USP_MTP_DOWN) {
        out_begin(s);
        fprintf(stderr, "uspsim controller: lost the broker (%s); retrying in %.1f s\n", ev->detail,
                (double)ev->retry_ms / 1000.0);
        out_end(s);
    } else if (ev->state == USP_MTP_UP && c->st.records_out) {
        out_begin(s);
        fprintf(stderr, "uspsim controller: connected to the broker again\n");
        out_end(s);
    }
}

static void history_path(struct shell *s)
{
    const char *home = getenv("HOME");
    s->history[0] = 0;
    if (home && *home)
        snprintf(s->history, sizeof s->history, "%s/%s", home, HISTORY_FILE);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Every -e that is a request must parse before anything connects. */
static int check_execs(const char *const *execs, int nexecs, bool have_to)
{
    struct usp_arena *a = usp_arena_new(0);
    if (!a)
        return 1;
    int status = 0;
    for (int i = 0; i < nexecs && !status; i++) {
        struct usp_req_err err;
        int argc;
        char **argv;
        usp_arena_reset(a);
        if (usp_req_split(a, execs[i], &argc, &argv, &err) != 0) {
            fprintf(stderr, "uspsim controller: -e '%s': %s\n", execs[i], err.msg);
            status = 2;
            break;
        }
        if (argc == 0) {
            fprintf(stderr, "uspsim controller: -e '%s': no request\n", execs[i]);
            status = 2;
            break;
        }
        const char *w = argv[0];
        if (!strcmp(w, "agents") || !strcmp(w, "watch") || !strcmp(w, "use") ||
            !strcmp(w, "help") || !strcmp(w, "quit") || !strcmp(w, "exit"))
            continue;
        Usp__Msg *m;
        if (usp_req_parse(a, argc, argv, "-", &m, &err) != 0) {
            fprintf(stderr, "uspsim controller: -e '%s': %s%s%s\n\n", execs[i],
                    err.cmd ? err.cmd : "", err.cmd ? ": " : "", err.msg);
            usp_req_usage(stderr, err.cmd);
            status = 2;
        } else if (!have_to) {
            fprintf(stderr, "uspsim controller: -e '%s': --to EID is needed to send requests\n",
                    execs[i]);
            status = 2;
        }
    }
    usp_arena_free(a);
    return status;
}

int ctl_shell_run(const struct ctl_conf *conf, const char *url, const char *to,
                  const char *const *execs, int nexecs)
{
    int st = check_execs(execs, nexecs, to != NULL);
    if (st)
        return st;
    struct shell *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "uspsim controller: out of memory\n");
        return 1;
    }
    the_shell = s;
    s->conf = conf;
    s->execs = execs;
    s->nexecs = nexecs;
    s->in = nexecs ? IN_EXEC : isatty(STDIN_FILENO) ? IN_TTY : IN_SCRIPT;
    s->watch = conf->watch;
    if (to)
        snprintf(s->target, sizeof s->target, "%s", to);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int status = 1;
    char why[256];
    bool loop_ok = uv_loop_init(&s->loop) == 0;
    bool reader_left = false;
    s->arena = usp_arena_new(0);
    if (!loop_ok || !s->arena) {
        fprintf(stderr, "uspsim controller: out of memory\n");
        goto out;
    }
    uv_timer_init(&s->loop, &s->step);
    s->step.data = s;
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    if (ctl_init(&s->ctl, &s->loop, conf, url, SHELL_POOL, why, sizeof why) != 0) {
        fprintf(stderr, "uspsim controller: %s\n", why);
        goto out_ctl;
    }
    s->ctl.user = s;
    s->ctl.on_done = on_done;
    s->ctl.on_event = on_event;
    s->ctl.on_state = on_conn_state;
    s->ctl.gsp_gate = true;
    s->ctl.gsp_auto = true;
    if (ctl_wait_up(&s->ctl) != 0)
        goto out_ctl;
    /* Accepting agents: requests given up front wait for their agent. */
    if (nexecs > 0 && s->target[0] && ctl_wait_agent(&s->ctl, s->target) != 0)
        goto out_ctl;
    if (s->in == IN_TTY) {
        printf("uspsim controller %s at %s, topic %s; help lists the commands\n", conf->eid, url,
               conf->topic);
        fflush(stdout);
        history_path(s);
        using_history();
        stifle_history(HISTORY_LINES);
        if (s->history[0])
            read_history(s->history);
        rl_readline_name = "uspsim";
        rl_attempted_completion_function = complete;
        uv_poll_init(&s->loop, &s->tty_poll, STDIN_FILENO);
        s->tty_poll.data = s;
    } else if (s->in == IN_SCRIPT) {
        uv_async_init(&s->loop, &s->line_async, on_line_async);
        s->line_async.data = s;
        if (pthread_create(&s->reader, NULL, reader_main, s) != 0) {
            fprintf(stderr, "uspsim controller: cannot start the input reader\n");
            goto out_ctl;
        }
        s->reader_started = true;
    }
    step_later(s);
    while (!s->finished)
        uv_run(&s->loop, UV_RUN_DEFAULT);
    if (s->in == IN_TTY) {
        if (s->rl_on)
            rl_callback_handler_remove();
        if (s->history[0])
            write_history(s->history);
    }
    status = s->failures ? 1 : 0;
out_ctl:
    if (s->reader_started) {
        pthread_mutex_lock(&s->mu);
        s->reader_stop = true;
        reader_left = s->in_getline;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        /* A reader blocked in getline stays blocked until exit: leave it. */
        if (reader_left)
            pthread_detach(s->reader);
        else
            pthread_join(s->reader, NULL);
    }
    ctl_close(&s->ctl);
    ctl_cleanup(&s->ctl);
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
out:
    usp_arena_free(s->arena);
    s->arena = NULL;
    if (reader_left)
        return status; /* the reader may still touch `s`: it stays */
    if (s->line)
        free(s->line);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    the_shell = NULL;
    return status;
}
