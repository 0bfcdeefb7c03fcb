/* JSON rendering of any protobuf-c message, for `uspsim decode`, the
 * controller's --json output and logs. Stable and machine readable: proto
 * field names as keys, enums by name, bytes as lowercase hex strings, maps
 * as objects, 64-bit integers as JSON numbers, fields at their default
 * value omitted except inside a set oneof (an empty sub-message is {}). */
#ifndef USP_JSON_H
#define USP_JSON_H

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>

#include "usp/codec.h"

/* Indent 0 gives one line; otherwise pretty-printed with that many spaces. */
int usp_json_write(FILE *f, const ProtobufCMessage *m, int indent);

/* A received Record as one JSON object: the Record's fields, and, when the
 * Record carries a decodable no_session_context payload, the Message under
 * the key "msg" beside the raw "payload" hex. */
int usp_json_write_record(FILE *f, const UspRecord__Record *rec, const Usp__Msg *msg, int indent);

#endif
