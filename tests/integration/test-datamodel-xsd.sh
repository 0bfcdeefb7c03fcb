#!/bin/sh
# Checks the default data model datamodels/device-2-uspsim.xml:
#  1. it is valid against the BBF DM schema (cwmp-datamodel-1-15.xsd);
#  2. it has the objects, parameters, commands and events the agent needs;
#  3. every definition in it equals TR-181 2.19.1: each object, parameter,
#     command, event and data type matches the official full file except for
#     descriptions, and no description is taken from the official text.
# Reference files come from ../shared/reference/tr-181 (tests only).
#
# The BBF schema is XSD 1.1; xmllint only knows XSD 1.0. The test builds an
# XSD 1.0 copy in a temporary folder (conditional types resolved to the
# definition form, open content and notNamespace dropped, xs:all widened to
# a repeated choice). It shows the copy still accepts the official full file
# and still rejects broken documents.
#
# Usage: sh tests/integration/test-datamodel-xsd.sh BUILD_DIR
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
model=$root/datamodels/device-2-uspsim.xml
ref=$root/../shared/reference/tr-181
official=$ref/tr-181-2-19-1-usp-full.xml

pass=0
fail=0
ok() {
    pass=$((pass + 1))
    echo "ok - $1"
}
bad() {
    fail=$((fail + 1))
    echo "FAIL - $1"
}

for f in "$model" "$official" "$ref/cwmp-datamodel-1-15.xsd" "$ref/catalog.xml"; do
    if [ ! -f "$f" ]; then
        echo "datamodel-xsd: missing $f" >&2
        exit 1
    fi
done
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || {
    echo "datamodel-xsd: python3 is needed" >&2
    exit 1
}
command -v xmllint >/dev/null 2>&1 || {
    echo "datamodel-xsd: xmllint is needed (libxml2-utils)" >&2
    exit 1
}

mkdir -p "$build" 2>/dev/null
tmp=$(mktemp -d "$build/dmxsd.XXXXXX" 2>/dev/null || mktemp -d) || exit 1
tmp=$(cd "$tmp" && pwd)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---------------------------------------------------------------- schema
# The report schema that the DM schema imports is found through the catalog,
# so nothing is fetched from the network (--nonet).
XML_CATALOG_FILES=$ref/catalog.xml
export XML_CATALOG_FILES
xsd=$tmp/cwmp-datamodel-1-15-xsd10.xsd

if "$PY" - "$ref/cwmp-datamodel-1-15.xsd" "$xsd" <<'EOF'; then
import re
import sys

text = open(sys.argv[1], encoding='utf-8').read()
rules = [
    # open content is XSD 1.1; the default model uses no foreign elements
    (r'<xs:defaultOpenContent>.*?</xs:defaultOpenContent>', '', re.S),
    (r'<xs:anyAttribute\s+notNamespace="[^"]*"\s*/>',
     '<xs:anyAttribute namespace="##other" processContents="lax"/>', 0),
    # conditional types: the model only holds definitions (@name), never
    # references (@base), so the definition type is the one that applies
    (r'<xs:alternative\s+test="@name"\s+type="([^"]+)"\s*/>',
     r'<xs:complexType><xs:complexContent><xs:extension base="\1"/>'
     r'</xs:complexContent></xs:complexType>', 0),
    (r'<xs:alternative\s+test="@base"\s+type="[^"]+"\s*/>', '', 0),
    (r'<xs:alternative\s+type="xs:error"\s*/>', '', 0),
    (r'<xs:all>', '<xs:choice minOccurs="0" maxOccurs="unbounded">', 0),
    (r'</xs:all>', '</xs:choice>', 0),
]
for pat, rep, flags in rules:
    text, n = re.subn(pat, rep, text, flags=flags)
    if n == 0:
        sys.exit('schema rewrite found nothing for %s' % pat)
for left in ('xs:alternative', 'notNamespace', 'defaultOpenContent', '<xs:all'):
    if left in text:
        sys.exit('schema rewrite left %s behind' % left)
open(sys.argv[2], 'w', encoding='utf-8').write(text)
EOF
    ok "XSD 1.0 copy of cwmp-datamodel-1-15.xsd built"
else
    bad "XSD 1.0 copy of cwmp-datamodel-1-15.xsd built"
fi

validate() {
    xmllint --nonet --noout --schema "$xsd" "$1" >"$tmp/xsd.log" 2>&1
}

if validate "$model"; then
    ok "default model is valid against the DM schema"
else
    bad "default model is valid against the DM schema"
    sed 's/^/    /' "$tmp/xsd.log" | head -n 20
fi

if validate "$official"; then
    ok "control: the schema copy accepts the official TR-181 2.19.1 full file"
else
    bad "control: the schema copy accepts the official TR-181 2.19.1 full file"
    sed 's/^/    /' "$tmp/xsd.log" | head -n 20
fi

# Broken copies must be rejected, or the validation above proves nothing.
reject() {
    desc=$1
    shift
    sed "$@" "$model" >"$tmp/broken.xml"
    if cmp -s "$model" "$tmp/broken.xml"; then
        bad "control: $desc (the edit changed nothing)"
    elif validate "$tmp/broken.xml"; then
        bad "control: schema rejects $desc"
    else
        ok "control: schema rejects $desc"
    fi
}
reject "an unknown access value" -e '0,/access="readWrite"/s//access="readWrit"/'
reject "a reference to an undefined data type" -e '0,/ref="MACAddress"/s//ref="NoSuchType"/'
reject "an unknown element in a syntax" -e '0,/<syntax>/s//<syntax><bogus\/>/'
reject "two objects with one name" -e 's/<object name="Device.Users."/<object name="Device.Time."/'
reject "two parameters with one name in an object" -e '0,/<parameter name="ModelNumber"/s//<parameter name="ModelName"/'

# ---------------------------------------------------------------- structure
xp() {
    xmllint --nonet --xpath "$1" "$model" 2>/dev/null
}
M="/*[local-name()='document' and namespace-uri()='urn:broadband-forum-org:cwmp:datamodel-1-15']/model[@name='Device:2.19']"
count_is() {
    desc=$1
    want=$2
    got=$(xp "count($3)")
    if [ "$got" = "$want" ]; then
        ok "$desc"
    else
        bad "$desc (count $got, want $want)"
    fi
}
obj() {
    echo "$M/object[@name='$1']"
}

count_is "one Device:2.19 model in a DM 1-15 document" 1 "$M"

for o in Device. Device.DeviceInfo. Device.LocalAgent. \
    'Device.LocalAgent.MTP.{i}.' 'Device.LocalAgent.MTP.{i}.MQTT.' \
    'Device.LocalAgent.MTP.{i}.STOMP.' 'Device.LocalAgent.MTP.{i}.WebSocket.' \
    'Device.LocalAgent.MTP.{i}.UDS.' 'Device.LocalAgent.Controller.{i}.' \
    'Device.LocalAgent.Controller.{i}.MTP.{i}.' \
    'Device.LocalAgent.Controller.{i}.MTP.{i}.MQTT.' \
    'Device.LocalAgent.Controller.{i}.MTP.{i}.STOMP.' \
    'Device.LocalAgent.Controller.{i}.MTP.{i}.WebSocket.' \
    'Device.LocalAgent.Controller.{i}.BootParameter.{i}.' \
    'Device.LocalAgent.Controller.{i}.E2ESession.' \
    'Device.LocalAgent.Certificate.{i}.' Device.LocalAgent.ControllerTrust. \
    'Device.LocalAgent.ControllerTrust.Role.{i}.' \
    'Device.LocalAgent.ControllerTrust.Role.{i}.Permission.{i}.' \
    'Device.LocalAgent.ControllerTrust.Credential.{i}.' \
    'Device.LocalAgent.Subscription.{i}.' 'Device.LocalAgent.Request.{i}.' \
    'Device.MQTT.Client.{i}.' 'Device.MQTT.Client.{i}.Subscription.{i}.' \
    'Device.STOMP.Connection.{i}.' Device.Time. \
    'Device.Ethernet.Interface.{i}.' 'Device.Ethernet.Link.{i}.' \
    'Device.Ethernet.Link.{i}.Stats.' 'Device.IP.Interface.{i}.' \
    'Device.IP.Interface.{i}.IPv4Address.{i}.' \
    'Device.IP.Interface.{i}.IPv6Address.{i}.' 'Device.IP.Interface.{i}.Stats.' \
    'Device.WiFi.Radio.{i}.' 'Device.WiFi.SSID.{i}.' 'Device.WiFi.AccessPoint.{i}.' \
    'Device.WiFi.AccessPoint.{i}.Security.' \
    'Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.' 'Device.Hosts.Host.{i}.' \
    'Device.DHCPv4.Server.Pool.{i}.' 'Device.DHCPv4.Server.Pool.{i}.StaticAddress.{i}.' \
    'Device.DHCPv4.Server.Pool.{i}.Client.{i}.' 'Device.DNS.Client.Server.{i}.' \
    'Device.Users.User.{i}.' 'Device.SoftwareModules.ExecEnv.{i}.' \
    'Device.SoftwareModules.DeploymentUnit.{i}.' \
    'Device.SoftwareModules.ExecutionUnit.{i}.'; do
    count_is "object $o" 1 "$(obj "$o")"
done

params() {
    o=$1
    shift
    for p in "$@"; do
        count_is "parameter $o$p" 1 "$(obj "$o")/parameter[@name='$p']/syntax"
    done
}
params Device.DeviceInfo. Manufacturer ManufacturerOUI ModelName ProductClass \
    SerialNumber HardwareVersion SoftwareVersion UpTime
params Device.LocalAgent. EndpointID SupportedProtocols
params 'Device.LocalAgent.MTP.{i}.' Alias Enable Protocol
params 'Device.LocalAgent.Controller.{i}.' Alias Enable EndpointID AssignedRole \
    USPNotifRetryMinimumWaitInterval USPNotifRetryIntervalMultiplier PeriodicNotifInterval
params 'Device.LocalAgent.Controller.{i}.MTP.{i}.' Protocol Enable
params Device.LocalAgent.ControllerTrust. UntrustedRole
params 'Device.MQTT.Client.{i}.' ConnectRetryTime ConnectRetryIntervalMultiplier \
    ConnectRetryMaxInterval KeepAliveTime ClientID ProtocolVersion BrokerAddress \
    BrokerPort ResponseInformation
# the Subscription table carries every one of its 2.19 parameters
sub='Device.LocalAgent.Subscription.{i}.'
params "$sub" Alias Enable Recipient TriggerAction TriggerConfigSettings ID \
    CreationDate NotifType ReferenceList Persistent TimeToLive NotifRetry NotifExpiration
count_is "Subscription.{i} has exactly 13 parameters" 13 "$(obj "$sub")/parameter"
count_is "Subscription.{i} keys: Alias, and Recipient+ID" 1 \
    "$(obj "$sub")/uniqueKey[parameter[@ref='Recipient'] and parameter[@ref='ID']]"

has_command() {
    count_is "command $1$2 async=$3" 1 "$(obj "$1")/command[@name='$2' and @async='$3']"
}
has_command Device. 'Reboot()' false
has_command Device. 'FactoryReset()' false
has_command Device. 'SelfTestDiagnostics()' true
has_command Device. 'ScheduleTimer()' true
has_command Device.LocalAgent. 'AddCertificate()' false
has_command 'Device.LocalAgent.Controller.{i}.' 'SendOnBoardRequest()' false
has_command 'Device.LocalAgent.Request.{i}.' 'Cancel()' false
has_command Device.SoftwareModules. 'InstallDU()' true
count_is "ScheduleTimer() input DelaySeconds is mandatory" 1 \
    "$(obj Device.)/command[@name='ScheduleTimer()']/input/parameter[@name='DelaySeconds' and @mandatory='true']"
count_is "SelfTestDiagnostics() outputs Status and Results" 2 \
    "$(obj Device.)/command[@name='SelfTestDiagnostics()']/output/parameter[@name='Status' or @name='Results']"
for a in CommandKey Cause FirmwareUpdated ParameterMap; do
    count_is "event Device.Boot! argument $a" 1 \
        "$(obj Device.)/event[@name='Boot!']/parameter[@name='$a']"
done
count_is "event Device.LocalAgent.Periodic!" 1 "$(obj Device.LocalAgent.)/event[@name='Periodic!']"
count_is "nothing deleted or obsoleted is included" 0 \
    "$M//*[@status='deleted' or @status='obsoleted']"

# ---------------------------------------------------------------- facts
cat >"$tmp/facts.py" <<'EOF'
"""Compare data model files with the official one.

Usage: facts.py OFFICIAL MODEL...; prints one line per MODEL:
'ok <summary>' or 'bad <first problem>'.
"""
import re
import sys
import xml.etree.ElementTree as ET

DMR = '{urn:broadband-forum-org:cwmp:datamodel-report-1-0}'
# report-only ordering hints; they may point at items we left out
IGNORED = {DMR + 'previousParameter', DMR + 'previousObject', DMR + 'previousProfile'}


def canon(e):
    """The facts of an element: its tag, attributes and fact children."""
    if e.tag == 'description' or e.get('status') == 'deleted':
        return None
    attrs = tuple(sorted((k, v) for k, v in e.attrib.items() if k not in IGNORED))
    kids = tuple(c for c in (canon(x) for x in e) if c is not None)
    return (e.tag, attrs, kids)


def norm(s):
    return re.sub(r'\s+', ' ', s or '').strip().lower()


def desc(e):
    d = e.find('description')
    return None if d is None else (d.text or '')


def index(root):
    model = root.find('model')
    objs = {o.get('name'): o for o in model.findall('object')
            if o.get('status') != 'deleted'}
    types = {d.get('name'): d for d in root.findall('dataType')}
    return model, objs, types


class Bad(Exception):
    pass


def same_desc(ours, theirs, where):
    if ours is None:
        return
    o = norm(ours)
    if '{{' in o or len(o) > 200:
        raise Bad('%s: description is not a short plain sentence' % where)
    t = norm(theirs)
    if o and (o == t or (len(o) >= 25 and o in t)):
        raise Bad('%s: description copied from the official text' % where)


def check(off, path):
    root = ET.parse(path).getroot()
    if root.tag != '{urn:broadband-forum-org:cwmp:datamodel-1-15}document':
        raise Bad('root is not a DM 1-15 document')
    model, objs, types = index(root)
    omodel, oobjs, otypes = off
    if model.get('name') != omodel.get('name'):
        raise Bad('model name %s, want %s' % (model.get('name'), omodel.get('name')))
    n = {'object': 0, 'parameter': 0, 'command': 0, 'event': 0}
    for name, d in types.items():
        if name not in otypes:
            raise Bad('data type %s is not in TR-181' % name)
        if canon(d) != canon(otypes[name]):
            raise Bad('data type %s differs from TR-181' % name)
        same_desc(desc(d), desc(otypes[name]), 'data type ' + name)
    for o in model.findall('object'):
        name = o.get('name')
        if name not in oobjs:
            raise Bad('object %s is not in TR-181 2.19' % name)
        off_o = oobjs[name]
        mine = {k: v for k, v in o.attrib.items() if k not in IGNORED}
        theirs = {k: v for k, v in off_o.attrib.items() if k not in IGNORED}
        if mine != theirs:
            raise Bad('object %s attributes %s, want %s' % (name, mine, theirs))
        keys = [canon(u) for u in o.findall('uniqueKey')]
        if keys != [canon(u) for u in off_o.findall('uniqueKey')]:
            raise Bad('object %s unique keys differ from TR-181' % name)
        same_desc(desc(o), desc(off_o), name)
        n['object'] += 1
        # coherence inside our file
        if name != 'Device.':
            parent = name[:name[:-1].rfind('.') + 1]
            if name.endswith('.{i}.'):
                parent = name[:-len('{i}.')]
                parent = parent[:parent[:-1].rfind('.') + 1]
            if parent not in objs:
                raise Bad('object %s has no parent object %s' % (name, parent))
            ne = o.get('numEntriesParameter')
            if ne and objs[parent].find("parameter[@name='%s']" % ne) is None:
                raise Bad('object %s: %s%s is missing' % (name, parent, ne))
        mine_p = {p.get('name') for p in o.findall('parameter')}
        for a in ('enableParameter',):
            if o.get(a) and o.get(a) not in mine_p:
                raise Bad('object %s: %s %s is missing' % (name, a, o.get(a)))
        for u in o.findall('uniqueKey/parameter'):
            if u.get('ref') not in mine_p:
                raise Bad('object %s: key parameter %s is missing' % (name, u.get('ref')))
        for item in o:
            if item.tag not in ('parameter', 'command', 'event'):
                continue
            iname = item.get('name')
            match = [x for x in off_o.findall(item.tag)
                     if x.get('name') == iname and x.get('status') != 'deleted']
            where = '%s %s%s' % (item.tag, name, iname)
            if not match:
                raise Bad('%s is not in TR-181 2.19' % where)
            if canon(item) != canon(match[0]):
                raise Bad('%s differs from TR-181 (type, access, default, '
                          'arguments ...)' % where)
            same_desc(desc(item), desc(match[0]), where)
            # arguments: compared with every description under the official item
            blob = ' | '.join(norm(d.text) for d in match[0].iter('description'))
            for arg in item.iter():
                if arg is not item and arg.tag in ('parameter', 'object'):
                    same_desc(desc(arg), blob, where + ' argument ' + arg.get('name'))
            n[item.tag] += 1
        for ne in [p for p in mine_p if p.endswith('NumberOfEntries')]:
            counted = [x for x in objs if x.startswith(name) and
                       x[len(name):].count('.') == 2 and
                       objs[x].get('numEntriesParameter') == ne]
            if not counted:
                raise Bad('%s%s counts a table that is not in the model' % (name, ne))
    return ('%(object)d objects, %(parameter)d parameters, %(command)d commands, '
            '%(event)d events' % n) + ', %d data types' % len(types)


off = index(ET.parse(sys.argv[1]).getroot())
for path in sys.argv[2:]:
    try:
        print('ok', check(off, path))
    except Bad as e:
        print('bad', e)
    except ET.ParseError as e:
        print('bad not well-formed:', e)
EOF

# Mutated copies: the fact check must catch each of them.
mut() {
    sed "$@" "$model" >"$tmp/mut$nmut.xml"
    nmut=$((nmut + 1))
}
nmut=0
mut -e '/name="USPNotifRetryMinimumWaitInterval"/,/<\/parameter>/s/value="5"/value="6"/'
mut -e '/name="Device.LocalAgent.Subscription.{i}."/,/<\/object>/s/<parameter name="Enable" access="readWrite"/<parameter name="Enable" access="readOnly"/'
mut -e '/<parameter name="DelaySeconds"/,/<\/parameter>/d'
mut -e '0,/<parameter name="UpTime"/s//<parameter name="UpTimeSeconds"/'
mut -e '/name="Device.MQTT.Client.{i}."/,/<\/object>/s/<unsignedInt\/>/<int\/>/'
mut -e 's|<description>USP Endpoint identifier of this Agent.</description>|<description>The unique USP identifier for this USP Agent.</description>|'
# The last one needs the official wording: take it from the official file.
"$PY" - "$official" "$tmp/mut$((nmut - 1)).xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for o in root.find('model').findall('object'):
    if o.get('name') == 'Device.LocalAgent.':
        text = o.find("parameter[@name='EndpointID']/description").text.strip()
        break
first = text.split('\n')[0].strip()
p = sys.argv[2]
t = open(p, encoding='utf-8').read()
t = t.replace('The unique USP identifier for this USP Agent.', first.replace('&', '&amp;')
              .replace('<', '&lt;').replace('>', '&gt;'))
open(p, 'w', encoding='utf-8').write(t)
EOF

set -- "$model"
i=0
while [ "$i" -lt "$nmut" ]; do
    set -- "$@" "$tmp/mut$i.xml"
    i=$((i + 1))
done
"$PY" "$tmp/facts.py" "$official" "$@" >"$tmp/facts.out" 2>&1
if [ "$(wc -l <"$tmp/facts.out")" -ne $((nmut + 1)) ]; then
    bad "fact check ran"
    sed 's/^/    /' "$tmp/facts.out" | head -n 20
else
    line=$(sed -n 1p "$tmp/facts.out")
    case $line in
    ok\ *) ok "facts equal TR-181 2.19.1: ${line#ok }" ;;
    *) bad "facts equal TR-181 2.19.1: ${line#bad }" ;;
    esac
    i=0
    for what in "a changed default" "a changed access" "a dropped command argument" \
        "a renamed parameter" "a changed type" "a description copied from TR-181"; do
        line=$(sed -n "$((i + 2))p" "$tmp/facts.out")
        if cmp -s "$model" "$tmp/mut$i.xml"; then
            bad "control: fact check catches $what (the edit changed nothing)"
        else
            case $line in
            bad\ *) ok "control: fact check catches $what: ${line#bad }" ;;
            *) bad "control: fact check catches $what" ;;
            esac
        fi
        i=$((i + 1))
    done
fi

echo "datamodel-xsd: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
