#!/bin/sh
# uspsim dm info|show: counts of our default model and of the official
# file, one definition, and errors that name the file, line and element.
set -u
BUILD=${1:-build}
U=$BUILD/uspsim
REF=../shared/reference/tr-181
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
ko() { fail=$((fail + 1)); echo "FAIL - $1"; }
# check NAME EXPECTED_STATUS PATTERN CMD...: runs CMD, checks status and output
check() {
    name=$1 want=$2 pat=$3; shift 3
    out=$("$@" 2>&1); st=$?
    if [ "$st" -eq "$want" ] && printf '%s\n' "$out" | grep -qE -- "$pat"; then ok "$name"
    else ko "$name (status $st, want $want; output: $(printf '%s' "$out" | head -c 300))"; fi
}
check "info default model" 0 '^objects: +71 \(36 multi-instance' "$U" dm info datamodels/device-2-uspsim.xml
check "info default params" 0 '^parameters: +446 ' "$U" dm info datamodels/device-2-uspsim.xml
check "info official full" 0 '^objects: +809 \(417 multi-instance' "$U" dm info "$REF/tr-181-2-19-1-usp-full.xml"
check "info official deleted counted apart" 0 '^deleted: +13 objects' "$U" dm info "$REF/tr-181-2-19-1-usp-full.xml"
check "info official modular" 0 '^parameters: +6581 ' "$U" dm info "$REF/tr-181-2-19-1-usp.xml"
check "show parameter" 0 '^type: +string' "$U" dm show datamodels/device-2-uspsim.xml 'Device.WiFi.SSID.{i}.SSID'
check "show parameter facets" 0 '^length: +0\.\.32' "$U" dm show datamodels/device-2-uspsim.xml 'Device.WiFi.SSID.{i}.SSID'
check "show command" 0 'async' "$U" dm show datamodels/device-2-uspsim.xml 'Device.SelfTestDiagnostics()'
check "show unknown path" 1 'Device\.Nope\.: not in the model' "$U" dm show datamodels/device-2-uspsim.xml Device.Nope.
check "error names file line element" 1 'bad-unknown-datatype\.xml:8: <parameter name="X">: unknown dataType "Foo"' \
    "$U" dm info tests/unit/data/dm/bad-unknown-datatype.xml
check "truncated file" 1 'bad-truncated\.xml:[0-9]+' "$U" dm info tests/unit/data/dm/bad-truncated.xml
check "missing file" 1 'no-such\.xml' "$U" dm info tests/unit/data/dm/no-such.xml
check "missing subcommand" 2 'missing subcommand' "$U" dm
check "bad subcommand" 2 'usage' "$U" dm frobnicate x.xml
echo "dm-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
