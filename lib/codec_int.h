/* Shared between codec.c, codec_validate.c and rx.c. */
#ifndef USP_CODEC_INT_H
#define USP_CODEC_INT_H

#include "usp/codec.h"

/* Unpacks `buf` as `d` into the arena. Sets *rc to 0, USP_ENOMEM (the arena
 * ran dry) or USP_EDECODE (the bytes are not such a message). */
ProtobufCMessage *codec__unpack(struct usp_arena *a, const ProtobufCMessageDescriptor *d,
                                const uint8_t *buf, size_t len, int *rc);

/* Fills `err` (which may be NULL). */
void codec__set_err(struct usp_decode_err *err, uint32_t code, bool discard, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The schema's name of the oneof in `d` (protobuf-c does not record it), or
 * NULL when `d` has none we know of. */
const char *codec__oneof_name(const ProtobufCMessageDescriptor *d);

#endif
