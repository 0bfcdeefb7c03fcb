/* libFuzzer target: bytes as a received Record (usp_rx_record, with and
 * without an own Endpoint ID), the Error reply when one is due, and the
 * JSON rendering; the same bytes also as a bare Msg.
 *
 * Checked properties, beyond "no crash, no leak, no UB":
 * - an Error reply we build is itself a valid Record that the sender would
 *   accept (DELIVER, an Error message, the request's msg_id);
 * - compact JSON never contains a raw control character. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/codec.h"
#include "usp/json.h"

#define OWN "proto::agent-1"

static struct usp_arena *arena;

static void check_json(const UspRecord__Record *rec, const Usp__Msg *msg, int indent)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    int rc =
        rec ? usp_json_write_record(f, rec, msg, indent) : usp_json_write(f, &msg->base, indent);
    fclose(f);
    if (rc != 0)
        abort();
    for (size_t i = 0; indent == 0 && i < len; i++)
        if ((unsigned char)buf[i] < 0x20)
            abort();
    free(buf);
}

static void check_reply(const struct usp_rx *rx, const char *own)
{
    uint8_t *out;
    size_t len;
    int rc = usp_rx_error_reply(arena, rx, own, &out, &len);
    if (rc == USP_ENOMEM)
        return;
    if (rc != 0)
        abort(); /* usp_rx_record promised an answerable Record */
    struct usp_rx back;
    if (usp_rx_record(arena, out, len, rx->rec->from_id, &back) != 0)
        return;
    if (back.action != USP_RX_DELIVER || usp_msg_kind(back.msg) != USP__HEADER__MSG_TYPE__ERROR ||
        back.msg->body->error->err_code != rx->err.usp_code)
        abort();
    check_json(back.rec, back.msg, 0);
}

static void one(const uint8_t *data, size_t size, const char *own)
{
    struct usp_rx rx;
    if (usp_rx_record(arena, data, size, own, &rx) != 0)
        return;
    if (rx.action == USP_RX_REPLY_ERROR)
        check_reply(&rx, own);
    if (rx.action == USP_RX_DELIVER && !rx.rec)
        abort();
    if (rx.rec) {
        check_json(rx.rec, rx.msg, 0);
        check_json(rx.rec, rx.msg, 2);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!arena)
        arena = usp_arena_new(1024);
    if (!arena)
        return 0;
    usp_arena_reset(arena);
    one(data, size, OWN);
    usp_arena_reset(arena);
    one(data, size, NULL);
    usp_arena_reset(arena);

    Usp__Msg *msg;
    struct usp_decode_err err;
    int rc = usp_msg_decode(arena, data, size, &msg, &err);
    if (msg)
        check_json(NULL, msg, 0);
    if (rc == 0 && usp_msg_kind(msg) < 0)
        abort(); /* a valid Msg always has a body type */
    usp_arena_reset(arena);
    return 0;
}
