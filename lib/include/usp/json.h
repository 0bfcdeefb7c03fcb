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

/* Indent 0 gives one line; otherwise pretty-printed with that many spaces.
 * No newline follows the closing brace. Strings: control characters are
 * escaped (\n, \u0001, ...), bytes that are not valid UTF-8 become \ufffd
 * (one per byte). An enum number without a name is printed as a number.
 * Map members keep wire order. 0, USP_EINVAL or USP_EIO (stream error). */
int usp_json_write(FILE *f, const ProtobufCMessage *m, int indent);

/* A received Record as one JSON object: the Record's fields, and, when the
 * Record carries a decodable no_session_context payload, the Message under
 * the key "msg" beside the raw "payload" hex (for a session_context Record,
 * a reassembled Message goes beside its "payload" list; for other record
 * types "msg" is the Record's last key). `msg` may be NULL. */
int usp_json_write_record(FILE *f, const UspRecord__Record *rec, const Usp__Msg *msg, int indent);

#endif
