/* Fuzzes the request-language line parser (usp_req_parse_line) with
 * arbitrary bytes. Beyond not crashing: a request it accepts must encode
 * and pass the codec's own validation with a matching header msg_type, and
 * a rejection must come with a printable message and a sane column. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usp/codec.h"
#include "usp/reqlang.h"

static void check_rejection(int rc, const struct usp_req_err *err, size_t linelen)
{
    if (rc != USP_EINVAL && rc != USP_ENOENT && rc != USP_ENOMEM)
        abort();
    if (!memchr(err->msg, '\0', sizeof err->msg) || !err->msg[0])
        abort();
    for (const char *p = err->msg; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            abort(); /* words are quoted escaped: no raw bytes in messages */
    if (err->column < -1 || (err->column >= 0 && (size_t)err->column >= linelen))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    struct usp_arena *a = usp_arena_new(0);
    if (!line || !a)
        abort();
    memcpy(line, data, size);
    line[size] = '\0';

    Usp__Msg *msg;
    struct usp_req_err err;
    int rc = usp_req_parse_line(a, line, "fuzz-1", &msg, &err);
    if (rc == 0) {
        uint8_t *buf;
        size_t len;
        Usp__Msg *back;
        struct usp_decode_err derr;
        if (!msg || usp_msg_encode(a, msg, &buf, &len) != 0)
            abort();
        if (usp_msg_decode(a, buf, len, &back, &derr) != 0)
            abort();
        if (usp_msg_kind(back) != (int)back->header->msg_type)
            abort();
        if (strcmp(back->header->msg_id, "fuzz-1") != 0)
            abort();
    } else {
        if (msg)
            abort();
        check_rejection(rc, &err, strlen(line));
    }
    usp_arena_free(a);
    free(line);
    return 0;
}
