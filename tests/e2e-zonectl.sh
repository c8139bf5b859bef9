#!/bin/bash
# End to end: every zonectl command against a real zonedd on emulated
# devices, human and --json output, exit codes and error lines, zone state
# and data persisting across a daemon restart.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

MiB=1048576
UID_NOW=$(id -u)

# --- Command line, no daemon --------------------------------------------
zc --help
check_eq "$RC" 0 "--help status"
check_match "$OUT" "Usage: zonectl *" "--help"
zc --version
check_eq "$RC" 0 "--version status"
check_eq "$OUT" "zonectl (zoned) 0.1.0" "--version"
fails 2
check_match "$ERR" "zonectl: no command given*" "no command"
fails 2 frobnicate
check_match "$ERR" "zonectl: unknown command 'frobnicate'*" "unknown command"
fails 2 --frob devices
fails 2 info
fails 2 info a b
fails 2 report small --cond nope
fails 2 report small --type conv
fails 2 report small --count 0
fails 2 report small --from -1
fails 2 report small --count
fails 2 open small
fails 2 open small x
fails 2 read small 2 --offset 12Q
# Nobody listens yet.
fails 1 hello
check_eq "$ERR" "zonectl: cannot connect to $T/sock: No such file or directory (is zonedd running? Start it with 'systemctl start zonedd', or run 'zonedd --socket PATH' and pass the same --socket to zonectl)" "no daemon"

# --- The default device ------------------------------------------------
start_daemon
ok --json devices
pycheck '
assert len(d["devices"]) == 1, d
e = d["devices"][0]
assert e["id"] == "emu0" and e["backend"] == "emulated", e
assert e["capacity"] == 4 << 30, e
assert e["leased_zones"] == 0, e'
stop_daemon
check_eq "$DAEMON_STATUS" 0 "zonedd exit status"

# --- Two emulated devices ----------------------------------------------
# small: 600 zones of 1 MiB (more than two report pages), 2 conventional.
# tiny: 16 zones of 4 MiB with 3 MiB capacity, 512-byte blocks, limits.
SMALL="$T/small,id=small,size=600M,zone-size=1M,zone-capacity=1M,conv=2"
TINY="$T/tiny,id=tiny,size=64M,zone-size=4M,zone-capacity=3M,conv=1,max-open=2,max-active=3,lbs=512"
start_daemon --emulate "$SMALL" --emulate "$TINY"

ok hello
check_eq "$(printf '%s\n' "$OUT" | sed -n 1p)" "protocol: 3" "hello protocol"
check_eq "$(printf '%s\n' "$OUT" | sed -n 2p)" "version:  0.1.0" "hello version"
check_eq "$(printf '%s\n' "$OUT" | sed -n 3p)" "pid:      $DAEMON_PID" "hello pid"
check_eq "$(printf '%s\n' "$OUT" | sed -n 5p)" "admin:    yes" "hello admin"
ok --json hello
DAEMON_PID=$DAEMON_PID UID_NOW=$UID_NOW pycheck '
assert d == {"protocol": 3, "version": "0.1.0", "pid": int(env["DAEMON_PID"]),
             "uid": int(env["UID_NOW"]), "admin": True, "client": True}, d'
# Global options after the command work too.
ok hello --json
pycheck 'assert d["protocol"] == 3'

ok devices
check_eq "$(printf '%s\n' "$OUT" | wc -l)" 3 "devices: header and two rows"
check_match "$(printf '%s\n' "$OUT" | sed -n 1p)" "ID *BACKEND *MODEL *ZONES *ZONE SIZE *CAPACITY *FREE *LEASED *PATH" "devices header"
check_match "$(printf '%s\n' "$OUT" | grep '^small ')" "small *emulated *host-managed *600 *1 MiB *600 MiB *598 *0 *$T/small" "devices small"
check_match "$(printf '%s\n' "$OUT" | grep '^tiny ')" "tiny *emulated *host-managed *16 *4 MiB *64 MiB *15 *0 *$T/tiny" "devices tiny"
ok --json devices
T=$T pycheck '
devs = {e["id"]: e for e in d["devices"]}
assert devs["small"] == {"id": "small", "path": env["T"] + "/small", "backend": "emulated",
    "model": "host-managed", "nr_zones": 600, "zone_size": 1 << 20, "capacity": 600 << 20,
    "free_zones": 598, "leased_zones": 0}, devs["small"]
assert devs["tiny"] == {"id": "tiny", "path": env["T"] + "/tiny", "backend": "emulated",
    "model": "host-managed", "nr_zones": 16, "zone_size": 4 << 20, "capacity": 64 << 20,
    "free_zones": 15, "leased_zones": 0}, devs["tiny"]
assert len(d["devices"]) == 2'

# --- info ---------------------------------------------------------------
ok info tiny
check_match "$OUT" "*capacity:            64 MiB (67108864 bytes)*" "info capacity"
check_match "$OUT" "*zones:               16 (1 conventional)*" "info zones"
check_match "$OUT" "*zone capacity:       3 MiB*" "info zone capacity"
check_match "$OUT" "*logical block size:  512*" "info lbs"
check_match "$OUT" "*max open:            2*" "info max open"
check_match "$OUT" "*max active:          3*" "info max active"
check_match "$OUT" "*  empty              15*" "info empty count"
ok --json info tiny
T=$T pycheck '
want = {"id": "tiny", "path": env["T"] + "/tiny", "backend": "emulated", "model": "host-managed",
    "nr_zones": 16, "zone_size": 4 << 20, "capacity": 64 << 20, "free_zones": 15,
    "leased_zones": 0, "vendor": "zoned", "product": "emulated", "logical_block_size": 512,
    "physical_block_size": 512, "max_open": 2, "max_active": 3, "scheduler": "none",
    "nr_conventional": 1, "zone_capacity": 3 << 20,
    "zones_by_cond": {"not-wp": 1, "empty": 15, "implicit-open": 0, "explicit-open": 0,
                      "closed": 0, "full": 0, "read-only": 0, "offline": 0}}
assert d == want, d'
# A device by path.
ok --json info "$T/small"
pycheck 'assert d["id"] == "small" and d["nr_zones"] == 600 and d["max_open"] == 14, d'
fails 1 info nodev
check_eq "$ERR" "zonectl: info nodev: no such device 'nodev'" "info of a missing device"

# --- report ---------------------------------------------------------------
ok report small
check_eq "$(printf '%s\n' "$OUT" | wc -l)" 601 "report: header and 600 zones"
check_match "$(printf '%s\n' "$OUT" | sed -n 1p)" "INDEX *TYPE *COND *START *LEN *CAPACITY *WRITTEN" "report header"
check_match "$(printf '%s\n' "$OUT" | sed -n 2p)" "    0 *conventional *not-wp *0 B *1 MiB *1 MiB *-" "report zone 0"
check_match "$(printf '%s\n' "$OUT" | sed -n 601p)" "  599 *seq-write-required *empty *599 MiB *1 MiB *1 MiB *0 B" "report zone 599"
ok --json report small
pycheck '
z = d["zones"]
assert [x["index"] for x in z] == list(range(600)), "indexes"
for x in z:
    i = x["index"]
    conv = i < 2
    assert x == {"index": i, "start": i << 20, "len": 1 << 20, "capacity": 1 << 20,
                 "wp": (i + 1) << 20 if conv else i << 20,
                 "type": "conventional" if conv else "seq-write-required",
                 "cond": "not-wp" if conv else "empty"}, x'
ok --json report small --cond empty
pycheck 'assert [x["index"] for x in d["zones"]] == list(range(2, 600))'
ok --json report small --type conventional
pycheck 'assert [x["index"] for x in d["zones"]] == [0, 1]'
ok --json report small --type conventional,seq-write-required --cond not-wp,empty --from 1 --count 300
pycheck 'assert [x["index"] for x in d["zones"]] == list(range(1, 301))'
ok --json report small --from 250 --count 300
pycheck 'assert [x["index"] for x in d["zones"]] == list(range(250, 550))'
ok --json report small --from 590
pycheck 'assert [x["index"] for x in d["zones"]] == list(range(590, 600))'
ok --json report small --cond full
pycheck 'assert d == {"zones": []}'
ok report small --cond full
check_eq "$OUT" "INDEX  TYPE  COND  START  LEN  CAPACITY  WRITTEN" "empty report"
ok --json report small --count 1 --from 599
pycheck 'assert [x["index"] for x in d["zones"]] == [599]'
fails 1 report small --from 600
check_match "$ERR" "zonectl: report small: *" "report past the end"
fails 1 report nodev
check_eq "$ERR" "zonectl: report nodev: no such device 'nodev'" "report of a missing device"

# --- Zone operations ---------------------------------------------------
ok --json open small 10
pycheck 'assert d == {"zones": [{"index": 10, "start": 10 << 20, "len": 1 << 20, "capacity": 1 << 20,
    "wp": 10 << 20, "type": "seq-write-required", "cond": "explicit-open"}]}, d'
ok --json report small --cond explicit-open
pycheck 'assert [x["index"] for x in d["zones"]] == [10]'
ok --json close small 10
pycheck 'assert d["zones"][0]["cond"] == "empty", d'
ok finish small 11 --count 3
check_eq "$(printf '%s\n' "$OUT" | wc -l)" 4 "finish: three zones"
check_match "$(printf '%s\n' "$OUT" | sed -n 2p)" "   11 *seq-write-required *full *11 MiB *1 MiB *1 MiB *1 MiB" "finish row"
ok --json report small --cond full
pycheck 'assert [(x["index"], x["wp"]) for x in d["zones"]] == [(i, (i + 1) << 20) for i in (11, 12, 13)], d'
ok --json reset small 12 --count 2
pycheck 'assert [(x["index"], x["cond"], x["wp"]) for x in d["zones"]] == [(12, "empty", 12 << 20), (13, "empty", 13 << 20)], d'
# Conventional zones refuse resets and opens (-32009, EPERM).
fails 1 reset small 0
check_match "$ERR" "zonectl: reset small zone 0: *" "reset of a conventional zone"
fails 1 open small 1
fails 1 open small 600
check_match "$ERR" "zonectl: open small zone 600: *" "open past the end"
fails 1 finish nodev 3
check_eq "$ERR" "zonectl: finish nodev zone 3: no such device 'nodev'" "op on a missing device"
# The open limit of tiny (2).
ok open tiny 1
ok open tiny 2
fails 1 open tiny 3
check_match "$ERR" "zonectl: open tiny zone 3: *" "open beyond max-open"
ok --json close tiny 1 --count 2
pycheck 'assert [(x["index"], x["cond"]) for x in d["zones"]] == [(1, "empty"), (2, "empty")], d'
ok --json info tiny
pycheck 'assert d["zones_by_cond"]["explicit-open"] == 0 and d["zones_by_cond"]["empty"] == 15, d'

# --- Leases with zonectl ----------------------------------------------
ok --json leases
pycheck 'assert d == {"leases": []}, d'
ok leases --all
check_match "$OUT" "ID *DEVICE *ZONE *WP *PID *UID *AGE *LABEL" "empty lease list"

# A lease held in the background shows in lease lists and blocks zone ops.
"$ZONECTL" --socket "$T/sock" --json lease small --zone 30 --label holder >"$T/holder.out" 2>"$T/holder.err" &
HOLDER=$!
wait_for_line "$T/holder.out" '^}'
OUT=$(cat "$T/holder.out")
pycheck '
l = d["lease"]
assert (l["device"], l["zone"], l["start"], l["len"], l["capacity"], l["wp"], l["label"]) == \
       ("small", 30, 30 << 20, 1 << 20, 1 << 20, 30 << 20, "holder"), l
assert l["block_size"] == 4096 and l["id"] > 0 and l["token"] > 0, l'
ok --json leases --all
HOLDER=$HOLDER UID_NOW=$UID_NOW pycheck '
l = d["leases"]
assert len(l) == 1, l
l = l[0]
assert (l["device"], l["zone"], l["wp"], l["label"], l["pid"], l["uid"]) == \
       ("small", 30, 30 << 20, "holder", int(env["HOLDER"]), int(env["UID_NOW"])), l
assert 0 <= l["age_ms"] < 60000, l'
ok leases --all
check_match "$(printf '%s\n' "$OUT" | sed -n 2p)" " *[0-9]* *small *30 *31457280 *$HOLDER *$UID_NOW *[0-9.]*s *holder" "lease row"
# This connection holds none of them.
ok --json leases
pycheck 'assert d == {"leases": []}, d'
ok --json devices
pycheck 'assert [e["leased_zones"] for e in d["devices"] if e["id"] == "small"] == [1], d'
fails 1 reset small 30
check_match "$ERR" "zonectl: reset small zone 30: *leased*" "reset of a leased zone"
fails 1 lease small --zone 30
check_match "$ERR" "zonectl: lease small: *" "second lease of a zone"
# A lease of several zones: a range overlapping the held zone is refused,
# a free one is granted whole.
fails 1 lease small --zone 29 --count 2
check_match "$ERR" "zonectl: lease small: *leased*" "range over a leased zone"
ok --json lease small --zone 40 --count 3 --hold 0.01
pycheck '
l = d["lease"]
assert (l["zone"], l["count"], l["start"]) == (40, 3, 40 << 20), l'
fails 2 lease small --count x
fails 1 lease small --count 65
fails 1 lease small --zone 30 --wait 200
fails 1 lease small --zone 0
check_match "$ERR" "zonectl: lease small: *" "lease of a conventional zone"
# SIGTERM ends the hold; the holder releases and exits 0.
kill -TERM "$HOLDER"
wait "$HOLDER"
check_eq "$?" 0 "holder exit status after SIGTERM"
check_eq "$(cat "$T/holder.err")" "" "holder stderr"
ok --json leases --all
pycheck 'assert d == {"leases": []}, d'

# --force revokes a lease: its holder's release then fails, stale.
"$ZONECTL" --socket "$T/sock" lease small --zone 31 >"$T/holder.out" 2>"$T/holder.err" &
HOLDER=$!
wait_for_line "$T/holder.out" '^lease '
check_match "$(cat "$T/holder.out")" "lease [0-9]* on small zone 31: start 31 MiB, len 1 MiB, capacity 1 MiB, written 0 B, block size 4096*" "lease line"
ok --json reset small 31 --force
pycheck 'assert d["zones"][0]["cond"] == "empty", d'
ok --json leases --all
pycheck 'assert d == {"leases": []}, d'
kill -INT "$HOLDER"
wait "$HOLDER"
check_eq "$?" 1 "revoked holder exit status"
check_match "$(cat "$T/holder.err")" "zonectl: release lease: *" "revoked holder error"

# --hold ends by itself.
ok --json lease tiny --hold 0.2
pycheck 'assert d["lease"]["device"] == "tiny" and d["lease"]["block_size"] == 512, d'
ok --json leases --all
pycheck 'assert d == {"leases": []}, d'

# --- write and read ---------------------------------------------------
head -c 5000 /dev/urandom >"$T/data1"
ok --json write small --zone 40 --input "$T/data1"
pycheck 'assert d == {"device": "small", "zone": 40, "offset": 0, "length": 5000,
    "padded_length": 8192, "device_offset": 40 << 20}, d'
printf 'hello, zoned\n' >"$T/data2"
# zc reads /dev/null: feed stdin directly.
timeout "$CALL_TIMEOUT" "$ZONECTL" --socket "$T/sock" write small --zone 40 <"$T/data2" >"$T/out" 2>"$T/err"
check_eq "$?" 0 "write from stdin"
check_eq "$(cat "$T/out")" "wrote 13 bytes (4096 with padding) to small zone 40 at offset 8192 (device offset 41951232)" "write output"
ok --json report small --from 40 --count 1
# Released with "keep": the daemon closes the zone so it holds no open resource.
pycheck 'assert (d["zones"][0]["wp"], d["zones"][0]["cond"]) == ((40 << 20) + 12288, "closed"), d'
# Back byte for byte: the first file, its padding, the second file.
"$ZONECTL" --socket "$T/sock" read small 40 --length 5000 >"$T/back1" || die "read"
cmp "$T/data1" "$T/back1" || die "read back differs"
"$ZONECTL" --socket "$T/sock" read small 40 --offset 8192 --length 13 >"$T/back2" || die "read"
cmp "$T/data2" "$T/back2" || die "second read back differs"
"$ZONECTL" --socket "$T/sock" read small 40 >"$T/back3" || die "read"
check_eq "$(stat -c %s "$T/back3")" 12288 "default read stops at the write pointer"
check_eq "$(head -c 8192 "$T/back3" | tail -c 3192 | tr -d '\0' | wc -c)" 0 "padding is zeros"
ok read small 40 --offset 8192 --length 13 --hexdump
check_eq "$OUT" "00002000  68 65 6c 6c 6f 2c 20 7a  6f 6e 65 64 0a           |hello, zoned.|
0000200d" "hexdump"
ok --json read small 40 --offset 8192 --length 5
pycheck 'assert d == {"device": "small", "zone": 40, "offset": 8192, "length": 5, "data": "68656c6c6f"}, d'
# A read is clamped to the zone; an empty zone reads nothing.
ok --json read small 40 --offset 1048570 --length 100
pycheck 'assert d["length"] == 6, d'
ok read small 41
check_eq "$OUT" "" "read of an empty zone"
fails 1 read small 40 --offset 2M
fails 1 read small 600
fails 1 read nodev 1
# A file larger than the zone's capacity is refused before anything is
# written (tests/e2e-zonectl-data.sh has the rest).
head -c $((MiB + 4096)) /dev/zero >"$T/big"
fails 1 write small --zone 42 --input "$T/big"
check_match "$ERR" "zonectl: write small: the input is 1.0 MiB, more than a zone's capacity (1 MiB): nothing written*" "write past capacity"
ok --json report small --from 42 --count 1
pycheck 'assert (d["zones"][0]["cond"], d["zones"][0]["wp"]) == ("empty", 42 << 20), d'
fails 1 write small --input "$T/nonexistent"
ok --json leases --all
pycheck 'assert d == {"leases": []}, d'

# --- A client without admin rights ------------------------------------
# Only root can become someone else; as anyone else we are the daemon's own
# uid, which is admin, so this part needs root (and a build tree others can
# read).
if [ "$UID_NOW" -eq 0 ] && command -v setpriv >/dev/null &&
   chmod 711 "$T" && setpriv --reuid=65534 --regid=65534 --clear-groups "$ZONECTL" --version >/dev/null 2>&1; then
	asnobody() {
		timeout "$CALL_TIMEOUT" setpriv --reuid=65534 --regid=65534 --clear-groups \
			"$ZONECTL" --socket "$T/sock" "$@" >"$T/out" 2>"$T/err" </dev/null
		RC=$?
		OUT=$(cat "$T/out")
		ERR=$(cat "$T/err")
	}
	asnobody --json hello
	check_eq "$RC" 0 "hello as nobody"
	pycheck 'assert (d["uid"], d["admin"], d["client"]) == (65534, False, True), d'
	for op in open close finish reset; do
		asnobody $op small 60
		check_eq "$RC" 1 "$op as nobody"
		check_eq "$ERR" "zonectl: $op small zone 60: zone.$op needs admin rights" "$op as nobody"
	done
	asnobody leases --all
	check_eq "$RC" 1 "leases --all as nobody"
	check_match "$ERR" "zonectl: leases: *admin*" "leases --all as nobody"
	asnobody --json report small --from 60 --count 1
	check_eq "$RC" 0 "report as nobody"
	pycheck 'assert d["zones"][0]["cond"] == "empty", d'
	asnobody --json lease small --zone 60 --hold 0.1
	check_eq "$RC" 0 "lease as nobody"
	pycheck 'assert d["lease"]["zone"] == 60, d'
else
	echo "$NAME: skipping the non-admin checks: they need root and setpriv" >&2
fi

# --- stats --------------------------------------------------------------
ok --json stats
pycheck '
assert d["leases_granted"] >= 6 and d["leases_released"] >= 5, d
assert d["leases_revoked"] == 1, d
assert d["requests"] > 50, d'
ok stats
check_match "$OUT" "*leases_revoked  *1*" "stats human"

# --- Persistence across a restart ------------------------------------
ok close small 40
ok open small 50
ok finish small 51
ok --json report small --from 38 --count 16
BEFORE=$OUT
stop_daemon
check_eq "$DAEMON_STATUS" 0 "zonedd exit status"
start_daemon --emulate "$SMALL" --emulate "$TINY"
ok --json report small --from 38 --count 16
BEFORE=$BEFORE pycheck '
before = {x["index"]: x for x in json.loads(env["BEFORE"])["zones"]}
after = {x["index"]: x for x in d["zones"]}
assert before.keys() == after.keys()
# Write pointers persist; an explicitly opened empty zone comes back empty,
# as after a power cycle. Everything else is unchanged.
assert before[50]["cond"] == "explicit-open" and after[50]["cond"] == "empty", (before[50], after[50])
before[50]["cond"] = "empty"
assert before == after, (before, after)
assert after[40]["cond"] == "closed" and after[40]["wp"] == (40 << 20) + 12288, after[40]
assert after[51]["cond"] == "full", after[51]'
"$ZONECTL" --socket "$T/sock" read small 40 --length 5000 >"$T/back4" || die "read after restart"
cmp "$T/data1" "$T/back4" || die "data differs after restart"
# Full: 11 (finished), 51; 42 stayed empty (the oversized write was refused).
ok --json info small
pycheck 'assert d["zones_by_cond"] == {"not-wp": 2, "empty": 595, "implicit-open": 0,
    "explicit-open": 0, "closed": 1, "full": 2, "read-only": 0, "offline": 0}, d["zones_by_cond"]'
# A lease resumes a closed zone at its write pointer.
ok --json lease small --zone 40 --hold 0.1
pycheck 'assert d["lease"]["wp"] == (40 << 20) + 12288, d'

# --- The daemon going away ----------------------------------------------
stop_daemon
fails 1 devices
check_match "$ERR" "zonectl: cannot connect to $T/sock: No such file or directory (is zonedd running? *" "no daemon after stop"

pass
