"""Wire compatibility of uspsim with the Broadband Forum's official USP 1.4
schema (called by tests/wire/run; needs python3-protobuf and protoc).

  wire_check.py all --tool WIRE_TOOL --ref REF_PROTO_DIR --ours PROTO_DIR --work DIR
      Runs `check` against the official schema, then against deliberately
      broken copies of it (a field number, a type, an enum value, a name
      changed) and expects each of those to be caught. Prints one line per
      case and a closing "N passed, M failed"; exits 1 on any failure.

  wire_check.py check --tool WIRE_TOOL --ref REF_PROTO_DIR --ours PROTO_DIR
                      --c2o DIR --work DIR
      1. schema: both schemas compiled to descriptor sets compare equal per
         package, file names and source info aside.
      2. to-official: each record written by uspsim (wire_tool gen, in
         --c2o) parses with the official schema to exactly what uspsim's
         JSON writer said it holds, and is fully populated.
      3. from-official: each record built and serialized with the official
         schema decodes in uspsim (wire_tool decode) to exactly the content
         the official message holds.
      The JSON conventions compared are those of lib/include/usp/json.h.

The reference schema is test input only: python modules for it are generated
into a temporary folder at each run.
"""

import argparse
import copy
import importlib
import json
import os
import re
import shutil
import subprocess
import sys

from google.protobuf import descriptor_pb2, text_format
from google.protobuf.descriptor import FieldDescriptor as FD

PROTOS = ("usp-msg-1-4.proto", "usp-record-1-4.proto")

# (case name, kind, oneof members to choose). Every message type, every
# Notify notification, every record type and every oneof alternative;
# "operate_resp-mixed" lets the elements of a repeated field take different
# alternatives.
CASES = [
    ("get", "msg", "request,get"),
    ("get_resp", "msg", "response,get_resp"),
    ("set", "msg", "request,set"),
    ("set_resp-success", "msg", "response,set_resp,oper_success"),
    ("set_resp-failure", "msg", "response,set_resp,oper_failure"),
    ("add", "msg", "request,add"),
    ("add_resp-success", "msg", "response,add_resp,oper_success"),
    ("add_resp-failure", "msg", "response,add_resp,oper_failure"),
    ("delete", "msg", "request,delete"),
    ("delete_resp-success", "msg", "response,delete_resp,oper_success"),
    ("delete_resp-failure", "msg", "response,delete_resp,oper_failure"),
    ("operate", "msg", "request,operate"),
    ("operate_resp-req_obj_path", "msg", "response,operate_resp,req_obj_path"),
    ("operate_resp-req_output_args", "msg", "response,operate_resp,req_output_args"),
    ("operate_resp-cmd_failure", "msg", "response,operate_resp,cmd_failure"),
    ("operate_resp-mixed", "msg", "response,operate_resp"),
    ("notify-event", "msg", "request,notify,event"),
    ("notify-value_change", "msg", "request,notify,value_change"),
    ("notify-obj_creation", "msg", "request,notify,obj_creation"),
    ("notify-obj_deletion", "msg", "request,notify,obj_deletion"),
    ("notify-oper_complete-output", "msg", "request,notify,oper_complete,req_output_args"),
    ("notify-oper_complete-failure", "msg", "request,notify,oper_complete,cmd_failure"),
    ("notify-on_board_req", "msg", "request,notify,on_board_req"),
    ("notify_resp", "msg", "response,notify_resp"),
    ("get_supported_dm", "msg", "request,get_supported_dm"),
    ("get_supported_dm_resp", "msg", "response,get_supported_dm_resp"),
    ("get_instances", "msg", "request,get_instances"),
    ("get_instances_resp", "msg", "response,get_instances_resp"),
    ("get_supported_protocol", "msg", "request,get_supported_protocol"),
    ("get_supported_protocol_resp", "msg", "response,get_supported_protocol_resp"),
    ("register", "msg", "request,register"),
    ("register_resp-success", "msg", "response,register_resp,oper_success"),
    ("register_resp-failure", "msg", "response,register_resp,oper_failure"),
    ("deregister", "msg", "request,deregister"),
    ("deregister_resp-success", "msg", "response,deregister_resp,oper_success"),
    ("deregister_resp-failure", "msg", "response,deregister_resp,oper_failure"),
    ("error", "msg", "error"),
    ("record-no_session_context", "record", "no_session_context"),
    ("record-session_context", "record", "session_context"),
    ("record-websocket_connect", "record", "websocket_connect"),
    ("record-mqtt_connect", "record", "mqtt_connect"),
    ("record-stomp_connect", "record", "stomp_connect"),
    ("record-disconnect", "record", "disconnect"),
    ("record-uds_connect", "record", "uds_connect"),
]

# Broken copies of the official schema that the check must catch:
# (name, file, pattern, replacement). Each pattern must match exactly once.
MUTATIONS = [
    ("field-number", "usp-msg-1-4.proto",
     r"fixed32 max_depth = 2;", "fixed32 max_depth = 3;"),
    ("field-type", "usp-msg-1-4.proto",
     r"(message Error \{\s*)fixed32 err_code = 1;", r"\1uint32 err_code = 1;"),
    ("swapped-fields", "usp-msg-1-4.proto",
     r"string oui = 1;(\s*)string product_class = 2;",
     r"string oui = 2;\1string product_class = 1;"),
    ("enum-value", "usp-msg-1-4.proto", r"CMD_ASYNC = 2;", "CMD_ASYNC = 3;"),
    ("renamed-field", "usp-msg-1-4.proto",
     r"(message Operate \{\s*string command = 1;\s*)string command_key = 2;",
     r"\1string command_ref = 2;"),
    ("record-64bit-type", "usp-record-1-4.proto",
     r"uint64 session_id = 1;", "uint32 session_id = 1;"),
    ("record-oneof-number", "usp-record-1-4.proto",
     r"MQTTConnectRecord mqtt_connect = 10;", "MQTTConnectRecord mqtt_connect = 14;"),
    ("bytes-as-string", "usp-record-1-4.proto",
     r"bytes sender_cert = 6;", "string sender_cert = 6;"),
]

UTF8_TAIL = ' "q\\\t\u00fc\u20ac\U0001F600'


class CheckError(Exception):
    pass


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kw)


# ---------------------------------------------------------------- schema


def load_schema(ref_dir, out_dir):
    """Generates and imports the python modules of the schema in ref_dir."""
    os.makedirs(out_dir, exist_ok=True)
    r = run(["protoc", "--python_out=" + out_dir, "--proto_path=" + ref_dir] + list(PROTOS))
    if r.returncode != 0:
        raise CheckError("protoc --python_out failed: " + r.stderr.strip())
    sys.path.insert(0, out_dir)
    msg = importlib.import_module("usp_msg_1_4_pb2")
    rec = importlib.import_module("usp_record_1_4_pb2")
    return msg, rec


def descriptor_set(proto_dir, out):
    r = run(["protoc", "-o", out, "--proto_path=" + proto_dir] + list(PROTOS))
    if r.returncode != 0:
        raise CheckError("protoc -o failed for %s: %s" % (proto_dir, r.stderr.strip()))
    with open(out, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    by_pkg = {}
    for fd in fds.file:
        fd = copy.deepcopy(fd)
        fd.ClearField("name")
        fd.ClearField("source_code_info")
        fd.ClearField("dependency")
        by_pkg[fd.package] = fd
    return by_pkg


def field_sig(f):
    return text_format.MessageToString(f, as_one_line=True)


def diff_messages(prefix, ours, ref, out):
    """Names what differs between two DescriptorProto lists."""
    o = {m.name: m for m in ours}
    r = {m.name: m for m in ref}
    for name in sorted(set(o) | set(r)):
        p = prefix + name
        if name not in o:
            out.append("message %s missing from ours" % p)
            continue
        if name not in r:
            out.append("message %s not in the official schema" % p)
            continue
        a, b = o[name], r[name]
        fa = {f.number: f for f in a.field}
        fb = {f.number: f for f in b.field}
        for num in sorted(set(fa) | set(fb)):
            if num not in fa:
                out.append("%s: field %d (%s) missing from ours" % (p, num, fb[num].name))
            elif num not in fb:
                out.append("%s: field %d (%s) not in the official schema" % (p, num, fa[num].name))
            elif fa[num] != fb[num]:
                out.append("%s field %d: ours {%s} official {%s}"
                           % (p, num, field_sig(fa[num]), field_sig(fb[num])))
        if [f.name for f in a.field] != [f.name for f in b.field] and \
                {f.number for f in a.field} == {f.number for f in b.field}:
            out.append("%s: fields declared in another order" % p)
        diff_enums(p + ".", a.enum_type, b.enum_type, out)
        diff_messages(p + ".", a.nested_type, b.nested_type, out)
        if list(a.oneof_decl) != list(b.oneof_decl):
            out.append("%s: oneofs differ: ours %s official %s"
                       % (p, [x.name for x in a.oneof_decl], [x.name for x in b.oneof_decl]))
        if a.options != b.options:
            out.append("%s: options differ" % p)


def diff_enums(prefix, ours, ref, out):
    o = {e.name: e for e in ours}
    r = {e.name: e for e in ref}
    for name in sorted(set(o) | set(r)):
        if name not in o or name not in r:
            out.append("enum %s%s only in %s" % (prefix, name, "official" if name in r else "ours"))
        elif o[name] != r[name]:
            va = [(v.name, v.number) for v in o[name].value]
            vb = [(v.name, v.number) for v in r[name].value]
            out.append("enum %s%s: ours %s official %s" % (prefix, name, va, vb))


def check_schema(ours_dir, ref_dir, work, report):
    ours = descriptor_set(ours_dir, os.path.join(work, "ours.pb"))
    ref = descriptor_set(ref_dir, os.path.join(work, "ref.pb"))
    for pkg in sorted(set(ours) | set(ref)):
        name = "schema:" + (pkg or "(no package)")
        if pkg not in ours:
            report(name, False, "package missing from proto/")
            continue
        if pkg not in ref:
            report(name, False, "package not in the official schema")
            continue
        a, b = ours[pkg], ref[pkg]
        if a == b:
            report(name, True, "%d messages, %d enums identical"
                   % (len(a.message_type), len(a.enum_type)))
            continue
        diffs = []
        diff_messages(pkg + ".", a.message_type, b.message_type, diffs)
        diff_enums(pkg + ".", a.enum_type, b.enum_type, diffs)
        if a.syntax != b.syntax:
            diffs.append("syntax %r vs %r" % (a.syntax, b.syntax))
        if a.options != b.options:
            diffs.append("file options differ")
        report(name, False, "; ".join(diffs[:8]) or "descriptors differ")


# ---------------------------------------------------------------- JSON view


def is_map(f):
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def is_repeated(f):
    r = getattr(f, "is_repeated", None)  # newer protobuf; label is deprecated there
    return bool(r) if r is not None else f.label == FD.LABEL_REPEATED


def scalar_json(f, v):
    if f.type == FD.TYPE_ENUM:
        ev = f.enum_type.values_by_number.get(v)
        return ev.name if ev is not None else v
    if f.type == FD.TYPE_BYTES:
        return v.hex()
    return v


def to_json(m):
    """The message as lib/include/usp/json.h renders it."""
    out = {}
    for f in m.DESCRIPTOR.fields:
        v = getattr(m, f.name)
        if is_map(f):
            if len(v):
                vf = f.message_type.fields_by_name["value"]
                out[f.name] = {k: (to_json(x) if vf.message_type else scalar_json(vf, x))
                               for k, x in v.items()}
        elif is_repeated(f):
            if len(v):
                out[f.name] = [to_json(x) if f.message_type else scalar_json(f, x) for x in v]
        elif f.containing_oneof is not None:
            if m.WhichOneof(f.containing_oneof.name) == f.name:
                out[f.name] = to_json(v) if f.message_type else scalar_json(f, v)
        elif f.message_type is not None:
            if m.HasField(f.name):
                out[f.name] = to_json(v)
        elif v != f.default_value:
            out[f.name] = scalar_json(f, v)
    return out


def diff_json(exp, got, path="", out=None):
    """Where two JSON values differ (at most 6 places)."""
    if out is None:
        out = []
    if len(out) >= 6:
        return out
    if isinstance(exp, dict) and isinstance(got, dict):
        for k in list(exp) + [k for k in got if k not in exp]:
            if k not in got:
                out.append("%s.%s: missing (expected %s)" % (path, k, short(exp[k])))
            elif k not in exp:
                out.append("%s.%s: unexpected %s" % (path, k, short(got[k])))
            else:
                diff_json(exp[k], got[k], "%s.%s" % (path, k), out)
    elif isinstance(exp, list) and isinstance(got, list) and len(exp) == len(got):
        for i, (a, b) in enumerate(zip(exp, got)):
            diff_json(a, b, "%s[%d]" % (path, i), out)
    elif type(exp) != type(got) or exp != got:
        out.append("%s: expected %s, got %s" % (path or ".", short(exp), short(got)))
    return out


def short(v):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 80 else s[:77] + "..."


# ---------------------------------------------------------------- filling


class Filler:
    """Fills a message: every field set to a distinctive non-default value,
    2 or 3 elements per repeated field and map, the named oneof members."""

    def __init__(self, choices, tag):
        self.choices = set(c for c in choices.split(",") if c and c != "-")
        self.used = set()
        self.tag = tag
        self.k = {}

    def next(self, kind):
        v = self.k.get(kind, 0)
        self.k[kind] = v + 1
        return v

    def value(self, f):
        t = f.type
        if t == FD.TYPE_STRING:
            return "%s%s#%d%s" % (self.tag, f.name, self.next("str"), UTF8_TAIL)
        if t == FD.TYPE_BYTES:
            k = self.next("bytes")
            n = 4 + k % 5
            # Starts with 0x00, a field tag of 0: never a valid message.
            return bytes([0x00, 0xFF, 0x81] + [(k * 41 + i) & 0xFF for i in range(3, n)])
        if t == FD.TYPE_BOOL:
            return True
        if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
            k = self.next("u32")
            return 0xFFFFFFFF if k % 2 == 0 else 3500000000 + k
        if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
            k = self.next("u64")
            return [2**64 - 1, 2**63 + 7 + k, 2**53 + 3 + 2 * k][k % 3]
        if t == FD.TYPE_ENUM:
            vals = sorted(v.number for v in f.enum_type.values)
            k = self.next("enum")
            return vals[1 + k % (len(vals) - 1)] if len(vals) > 1 else vals[0]
        raise CheckError("no filling for field %s of type %d" % (f.full_name, t))

    def fill(self, m, idx=0):
        d = m.DESCRIPTOR
        chosen = {}
        for o in d.oneofs:
            mem = sorted(o.fields, key=lambda f: f.number)
            pick = mem[idx % len(mem)]
            for f in mem:
                if f.name in self.choices:
                    pick = f
                    self.used.add(f.name)
            chosen[o.name] = pick.name
        for f in sorted(d.fields, key=lambda f: f.number):
            if f.containing_oneof is not None and chosen[f.containing_oneof.name] != f.name:
                continue
            if is_map(f):
                kf = f.message_type.fields_by_name["key"]
                vf = f.message_type.fields_by_name["value"]
                mp = getattr(m, f.name)
                for j in range(2 + self.next("rep") % 2):
                    key = self.value(kf)
                    if vf.message_type:
                        self.fill(mp[key], j)
                    else:
                        mp[key] = self.value(vf)
            elif is_repeated(f):
                rep = getattr(m, f.name)
                for j in range(2 + self.next("rep") % 2):
                    if f.message_type:
                        self.fill(rep.add(), j)
                    else:
                        rep.append(self.value(f))
            elif f.message_type is not None:
                sub = getattr(m, f.name)
                sub.SetInParent()
                self.fill(sub, idx)
            else:
                setattr(m, f.name, self.value(f))

    def check_used(self, case):
        if self.used != self.choices:
            raise CheckError("%s: no oneof member named %s"
                             % (case, ",".join(sorted(self.choices - self.used))))


def msg_type_of(pb, m):
    """Header.MsgType of the body, by name (PROTOCOL is PROTO there)."""
    body = m.body.WhichOneof("msg_body")
    if body == "error":
        return pb.Header.ERROR
    inner = getattr(m.body, body)
    name = inner.WhichOneof("req_type" if body == "request" else "resp_type")
    return pb.Header.MsgType.Value(name.upper().replace("PROTOCOL", "PROTO"))


def incomplete(m, path=""):
    """Fields left at their default by a filler: the test would then prove
    nothing about them. A few cannot be set: one-valued enums, the plaintext
    payload_security a no_session_context Record needs, msg_type ERROR."""
    out = []
    d = m.DESCRIPTOR
    for f in d.fields:
        p = "%s.%s" % (path, f.name)
        if f.containing_oneof is not None:
            if m.WhichOneof(f.containing_oneof.name) != f.name:
                continue
        v = getattr(m, f.name)
        if is_repeated(f):
            if len(v) < 2:
                out.append("%s has %d elements" % (p, len(v)))
            elif f.message_type and not is_map(f):
                for i, x in enumerate(v):
                    out += incomplete(x, "%s[%d]" % (p, i))
        elif f.message_type is not None:
            if f.containing_oneof is None and not m.HasField(f.name):
                out.append(p + " is absent")
            else:
                out += incomplete(v, p)
        elif v == f.default_value and f.containing_oneof is None:
            if f.type == FD.TYPE_ENUM and len(f.enum_type.values) == 1:
                continue
            if d.full_name == "usp_record.Record" and f.name == "payload_security" and \
                    m.WhichOneof("record_type") == "no_session_context":
                continue
            if d.full_name == "usp.Header" and f.name == "msg_type":
                continue
            out.append(p + " is at its default")
    return out


def oneof_members(m, seen):
    """Adds (message, member) for each set oneof member in m, recursively."""
    for o in m.DESCRIPTOR.oneofs:
        w = m.WhichOneof(o.name)
        if w:
            seen.add((m.DESCRIPTOR.full_name, w))
    for f in m.DESCRIPTOR.fields:
        if f.message_type is None or is_map(f):
            continue
        if is_repeated(f):
            for x in getattr(m, f.name):
                oneof_members(x, seen)
        elif m.HasField(f.name):
            oneof_members(getattr(m, f.name), seen)


def all_oneof_members(descs):
    out = set()
    todo = list(descs)
    done = set()
    while todo:
        d = todo.pop()
        if d.full_name in done:
            continue
        done.add(d.full_name)
        for o in d.oneofs:
            for f in o.fields:
                out.add((d.full_name, f.name))
        for f in d.fields:
            if f.message_type is not None:
                todo.append(f.message_type)
    return out


def coverage(pbm, pbr, msgs, recs, types, report, direction):
    want = all_oneof_members([pbm.Msg.DESCRIPTOR, pbr.Record.DESCRIPTOR])
    seen = set()
    for m in msgs:
        oneof_members(m, seen)
    for r in recs:
        oneof_members(r, seen)
    missing = sorted("%s.%s" % x for x in want - seen)
    all_types = set(pbm.Header.MsgType.values())
    missing_types = sorted(pbm.Header.MsgType.Name(t) for t in all_types - set(types))
    ok = not missing and not missing_types
    report("%s:coverage" % direction, ok,
           "%d message types, %d oneof alternatives covered" % (len(all_types), len(want))
           if ok else "not covered: " + ", ".join(missing_types + missing))


# ---------------------------------------------------------------- directions


def check_to_official(pbm, pbr, c2o, report):
    msgs, recs, types = [], [], []
    for name, kind, _ in CASES:
        case = "to-official:" + name
        try:
            with open(os.path.join(c2o, name + ".bin"), "rb") as f:
                raw = f.read()
            with open(os.path.join(c2o, name + ".json"), encoding="utf-8") as f:
                said = json.load(f)
        except (OSError, ValueError) as e:
            report(case, False, "no output from wire_tool gen: %s" % e)
            continue
        try:
            rec = pbr.Record.FromString(raw)
        except Exception as e:  # DecodeError and friends
            report(case, False, "official Record cannot parse it: %s" % e)
            continue
        problems = diff_json(said.get("record"), to_json(rec), ".record")
        if kind == "msg":
            try:
                msg = pbm.Msg.FromString(rec.no_session_context.payload)
            except Exception as e:
                report(case, False, "official Msg cannot parse the payload: %s" % e)
                continue
            problems += diff_json(said.get("msg"), to_json(msg), ".msg")
            problems += incomplete(msg, "msg")
            msgs.append(msg)
            types.append(msg.header.msg_type)
        else:
            problems += incomplete(rec, "record")
            recs.append(rec)
        report(case, not problems, "; ".join(problems[:6]))
    coverage(pbm, pbr, msgs, recs, types, report, "to-official")


def check_from_official(pbm, pbr, tool, work, report):
    o2c = os.path.join(work, "o2c")
    os.makedirs(o2c, exist_ok=True)
    expect = {}
    msgs, recs, types = [], [], []
    for name, kind, choices in CASES:
        try:
            rf = Filler("no_session_context" if kind == "msg" else choices, "rec:")
            rec = pbr.Record()
            rf.fill(rec)
            rf.check_used(name)
            rec.version = "1.4"
            if rec.WhichOneof("record_type") == "no_session_context":
                rec.payload_security = pbr.Record.PLAINTEXT
            msg = None
            if kind == "msg":
                mf = Filler(choices, "py:")
                msg = pbm.Msg()
                mf.fill(msg)
                mf.check_used(name)
                msg.header.msg_type = msg_type_of(pbm, msg)
                rec.no_session_context.payload = msg.SerializeToString()
                msgs.append(msg)
                types.append(msg.header.msg_type)
            else:
                recs.append(rec)
        except CheckError as e:
            report("from-official:" + name, False, str(e))
            continue
        exp = to_json(rec)
        if msg is not None:
            exp["no_session_context"]["msg"] = to_json(msg)
        expect[name] = (exp, rec, msg)
        with open(os.path.join(o2c, name + ".bin"), "wb") as f:
            f.write(rec.SerializeToString())
    coverage(pbm, pbr, msgs, recs, types, report, "from-official")

    r = run([tool, "decode", o2c])
    if r.returncode not in (0, 1):
        report("from-official:decode", False, "wire_tool decode failed: " + r.stderr.strip())
        return
    for name, (exp, rec, msg) in expect.items():
        case = "from-official:" + name
        base = os.path.join(o2c, name)
        if os.path.exists(base + ".err"):
            with open(base + ".err", encoding="utf-8", errors="replace") as f:
                report(case, False, "uspsim rejected it: " + f.read().strip())
            continue
        if msg is not None and os.path.exists(base + ".msgerr"):
            with open(base + ".msgerr", encoding="utf-8", errors="replace") as f:
                report(case, False, "uspsim rejected the Msg: " + f.read().strip())
            continue
        try:
            with open(base + ".out.json", encoding="utf-8") as f:
                got = json.load(f)
        except (OSError, ValueError) as e:
            report(case, False, "no JSON from wire_tool decode: %s" % e)
            continue
        problems = diff_json(exp, got)
        problems += incomplete(msg, "msg") if msg is not None else incomplete(rec, "record")
        report(case, not problems, "; ".join(problems[:6]))


# ---------------------------------------------------------------- commands


def write_cases(path):
    with open(path, "w") as f:
        for name, kind, choices in CASES:
            f.write("%s %s %s\n" % (name, kind, choices))


def cmd_check(a):
    results = []

    def report(case, ok, detail=""):
        results.append(ok)
        line = "%s %s" % ("PASS" if ok else "FAIL", case)
        if detail:
            line += " (%s)" % detail if ok else ": " + detail
        print(line, flush=True)

    os.makedirs(a.work, exist_ok=True)
    try:
        check_schema(a.ours, a.ref, a.work, report)
        pbm, pbr = load_schema(a.ref, os.path.join(a.work, "py"))
        check_to_official(pbm, pbr, a.c2o, report)
        check_from_official(pbm, pbr, a.tool, a.work, report)
    except CheckError as e:
        report("check", False, str(e))
    print("RESULT %d %d" % (results.count(True), results.count(False)), flush=True)
    return 1 if False in results or not results else 0


def mutate(ref, dst, fname, pattern, repl):
    os.makedirs(dst, exist_ok=True)
    for p in PROTOS:
        shutil.copy(os.path.join(ref, p), os.path.join(dst, p))
    path = os.path.join(dst, fname)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new, n = re.subn(pattern, repl, text)
    if n != 1:
        raise CheckError("pattern %r matches %d times in %s" % (pattern, n, fname))
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def check_cmd(a, ref, work):
    return [sys.executable, os.path.abspath(__file__), "check", "--tool", a.tool, "--ref", ref,
            "--ours", a.ours, "--c2o", os.path.join(a.work, "c2o"), "--work", work]


def cmd_all(a):
    passed = failed = 0
    os.makedirs(a.work, exist_ok=True)
    cases = os.path.join(a.work, "cases")
    c2o = os.path.join(a.work, "c2o")
    os.makedirs(c2o, exist_ok=True)
    write_cases(cases)
    r = run([a.tool, "gen", cases, c2o])
    if r.returncode != 0:
        print("FAIL wire_tool gen: " + r.stderr.strip())
        failed += 1

    # The real check, against the official schema.
    p = subprocess.Popen(check_cmd(a, a.ref, os.path.join(a.work, "real")),
                         stdout=subprocess.PIPE, universal_newlines=True)
    got_result = False
    for line in p.stdout:
        if line.startswith("RESULT "):
            _, np, nf = line.split()
            passed += int(np)
            failed += int(nf)
            got_result = True
        else:
            sys.stdout.write(line)
    if p.wait() not in (0, 1) or not got_result:
        print("FAIL check: the checker itself failed (exit %d)" % p.returncode)
        failed += 1

    # Self-test: every broken schema must be caught both by the schema
    # comparison and by the wire round trips.
    for name, fname, pattern, repl in MUTATIONS:
        case = "self-test:" + name
        mdir = os.path.join(a.work, "mut-" + name)
        try:
            mutate(a.ref, os.path.join(mdir, "proto"), fname, pattern, repl)
        except (OSError, CheckError) as e:
            print("FAIL %s: %s" % (case, e))
            failed += 1
            continue
        r = run(check_cmd(a, os.path.join(mdir, "proto"), os.path.join(mdir, "work")))
        fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL ")]
        schema = [l for l in fails if l.startswith("FAIL schema:")]
        wire = [l for l in fails if l.startswith("FAIL to-official:") or
                l.startswith("FAIL from-official:")]
        if r.returncode == 1 and schema and wire:
            print("PASS %s (caught by the schema check and %d wire cases)" % (case, len(wire)))
            passed += 1
        else:
            print("FAIL %s: the broken schema was not caught (exit %d, %d schema and %d wire "
                  "failures)" % (case, r.returncode, len(schema), len(wire)))
            for l in r.stderr.splitlines()[-5:]:
                print("    " + l)
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("all", "check"))
    ap.add_argument("--tool", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--c2o")
    a = ap.parse_args()
    a.tool = os.path.abspath(a.tool)
    if a.command == "check":
        if not a.c2o:
            ap.error("check needs --c2o")
        return cmd_check(a)
    return cmd_all(a)


if __name__ == "__main__":
    sys.exit(main())
