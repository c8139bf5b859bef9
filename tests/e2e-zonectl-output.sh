#!/bin/bash
# End to end: zonectl --output. Each tabular command (devices, report, a zone
# operation, leases, stats) in each format: the table, JSON equal to --json,
# and CSV (a header of the JSON keys, RFC 4180 quoting, exact sizes) holding
# the same values as the JSON; --output csv refused with status 2 by the
# others; and every command's --json parses (one document, or JSON lines for
# watch), validate and info --sysfs included.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

# A label with a comma, quotes and a newline: CSV must quote it.
LABEL='a "quoted", label
second line'
start_daemon --emulate "$T/emu,id=emu0,size=256M,zone-size=16M,zone-capacity=12M,conv=1"
head -c 5000 /dev/urandom >"$T/data"
ok write emu0 --zone 3 --input "$T/data"

# csv_vs_json CMD...: the CSV of the command and its --json list (the
# JSON document's only array, or for stats its counters) hold the same rows.
csv_vs_json() {
	ok "$@" --output csv
	cp "$T/out" "$T/csv"
	ok "$@" --json
	printf '%s' "$OUT" >"$T/json"
	ok "$@" --output json
	python3 - "$T/json" "$OUT" "$1" <<'PY' || die "$* --output json is not --json"
import json, sys
def norm(d):
    if sys.argv[3] == "stats":  # the counters move on between two calls
        return sorted(d)
    for l in d.get("leases", []):  # and so does a lease's age
        l.pop("age_ms", None)
    return d
assert norm(json.load(open(sys.argv[1]))) == norm(json.loads(sys.argv[2]))
PY
	NCHECKS=$((NCHECKS + 1))
	python3 - "$T/csv" "$T/json" "$*" <<'PY' || die "$*: CSV and JSON disagree"
import csv, io, json, sys
raw = open(sys.argv[1], newline="").read()
assert raw.endswith("\r\n"), "records end with CRLF"
rows = list(csv.reader(io.StringIO(raw, newline="")))
doc = json.load(open(sys.argv[2]))
cmd = sys.argv[3].split()[0]
if cmd == "stats":
    items = [{"name": k, "value": v} for k, v in doc["counters"].items()] if "counters" in doc \
        else [{"name": k, "value": v} for k, v in doc.items()]
else:
    items = next(v for v in doc.values() if isinstance(v, list))
head, body = rows[0], rows[1:]
assert len(body) == len(items), (len(body), len(items))
for row, item in zip(body, items):
    rec = dict(zip(head, row))
    for k, v in rec.items():
        if k == "written":   # the zone table's bytes written
            want = "" if item["type"] == "conventional" else \
                str(min(item["wp"] - item["start"], item["capacity"]))
        elif k == "age_ms" or cmd == "stats" and k == "value":
            continue  # moved on between the two calls
        elif k in item:
            want = str(item[k]).lower() if isinstance(item[k], bool) else str(item[k])
        else:
            continue
        assert v == want, (k, v, want)
print(len(body), "rows")
PY
	NCHECKS=$((NCHECKS + 1))
}

# Tables (the default, and --output table after another format).
ok devices
check_match "$(head -n 1 "$T/out")" "ID*BACKEND*MODEL*ZONES*" "devices table header"
ok --output json devices --output table
check_match "$(head -n 1 "$T/out")" "ID*BACKEND*" "the last --output wins"
ok report emu0 --count 4
check_match "$(sed -n 5p "$T/out")" "    3  seq-write-required  closed  48 MiB  16 MiB    12 MiB    8 KiB" \
	"report table row"

csv_vs_json devices
check_eq "$(head -n 1 "$T/csv" | tr -d '\r')" \
	"id,backend,model,nr_zones,zone_size,capacity,free_zones,leased_zones,path" "devices CSV header"
check_match "$(sed -n 2p "$T/csv" | tr -d '\r')" "emu0,emulated,host-managed,16,16777216,*" \
	"devices CSV sizes in bytes"
csv_vs_json report emu0
check_eq "$(head -n 1 "$T/csv" | tr -d '\r')" "index,type,cond,start,len,capacity,written" \
	"report CSV header"
check_eq "$(sed -n 2p "$T/csv" | tr -d '\r')" "0,conventional,not-wp,0,16777216,16777216," \
	"report CSV conventional zone"
check_eq "$(sed -n 5p "$T/csv" | tr -d '\r')" "3,seq-write-required,closed,50331648,16777216,12582912,8192" \
	"report CSV written zone"
ok open emu0 3 --output csv
check_eq "$(sed -n 2p "$T/out" | tr -d '\r')" "3,seq-write-required,explicit-open,50331648,16777216,12582912,8192" \
	"zone operation CSV"
csv_vs_json finish emu0 4

# A lease with an awkward label, held in the background.
"$ZONECTL" --socket "$T/sock" lease emu0 --zone 5 --label "$LABEL" --hold 300 >"$T/lease.out" 2>&1 &
LEASE_PID=$!
for _ in $(seq 100); do
	zc leases --json
	[ "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["leases"]))')" = 1 ] && break
	sleep 0.1
done
csv_vs_json leases --all
python3 - "$T/csv" "$LABEL" <<'PY' || die "leases CSV: the label is not quoted as RFC 4180 says"
import sys
raw = open(sys.argv[1], newline="").read()
want = '"' + sys.argv[2].replace('"', '""') + '"\r\n'
assert raw.endswith(want), repr(raw)
PY
NCHECKS=$((NCHECKS + 1))
check_eq "$(head -n 1 "$T/csv" | tr -d '\r')" "id,device,zone,wp,pid,uid,age_ms,label" "leases CSV header"
csv_vs_json stats
check_eq "$(head -n 1 "$T/csv" | tr -d '\r')" "name,value" "stats CSV header"

# CSV is for tables only; a bad format is a usage error.
for cmd in "hello" "info emu0" "status" "map emu0" "watch --count 1" "read emu0 3" \
	"validate /dev/null" "lease emu0 --hold 1" "write emu0" "bench emu0"; do
	# shellcheck disable=SC2086
	fails 2 $cmd --output csv
	check_match "$ERR" "*--output csv is for the tabular commands*" "$cmd --output csv"
done
fails 2 --output csv hello
fails 2 devices --output yaml
check_match "$ERR" "*--output takes json, csv or table, not 'yaml'*" "--output yaml"

# Every command's --json parses: one document each.
jparse() { # CMD...: --json output is one JSON document
	ok "$@" --json
	printf '%s' "$OUT" | python3 -c 'import json,sys; json.load(sys.stdin)' ||
		die "$* --json does not parse: $OUT"
	NCHECKS=$((NCHECKS + 1))
}
jparse hello
jparse devices
jparse info emu0
jparse report emu0
jparse leases
jparse stats
jparse status
jparse map emu0
jparse open emu0 6
jparse close emu0 6
jparse finish emu0 6
jparse reset emu0 6
jparse write emu0 --zone 7 --input "$T/data"
jparse lease emu0 --hold 1
jparse bench emu0 --writers 1 --zones 1 --size 64K --block 4K --rounds 1
# validate and info --sysfs run without the daemon: on a non-device the
# JSON document still comes, with the failed check (status 1).
zc validate --json /dev/null
check_eq "$RC" 1 "validate /dev/null status"
pycheck 'assert d["ok"] is False and d["devices"][0]["checks"][0] == {"check": "block-device", "status": "fail", "detail": "is not a block device"}, d'
zc info --sysfs --json /dev/null
check_eq "$RC" 1 "info --sysfs /dev/null status"
python3 -c 'import json,sys; json.loads(sys.argv[1])' "$ERR" || die "info --sysfs error is not JSON: $ERR"
for dev in /sys/dev/block/*; do
	# Any block device of this machine, if it lets us see one.
	[ -e "$dev/dev" ] || continue
	node=/dev/block/$(basename "$dev")
	[ -b "$node" ] || continue
	jparse info --sysfs "$node"
	pycheck 'assert d["capacity"] == int(open("/sys/dev/block/" + d["devnum"] + "/size").read()) * 512, d'
	break
done
# watch: JSON lines, one event each.
ok watch emu0 --count 2 --json &
WATCH_PID=$!
sleep 0.5
"$ZONECTL" --socket "$T/sock" reset emu0 7 >/dev/null
"$ZONECTL" --socket "$T/sock" finish emu0 7 >/dev/null
wait "$WATCH_PID" || die "watch --count 2 --json failed"
python3 -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2, lines
for l in lines:
    json.loads(l)
' "$T/out" || die "watch --json lines do not parse: $(cat "$T/out")"
NCHECKS=$((NCHECKS + 1))

kill "$LEASE_PID" 2>/dev/null
wait "$LEASE_PID" 2>/dev/null
pass
