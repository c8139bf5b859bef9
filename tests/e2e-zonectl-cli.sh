#!/bin/bash
# End to end: zonectl's reports, messages and exit codes (issue 13): report
# --count counts printed zones and --bytes is exact; stats names error
# codes; --json errors are JSON on stderr; "cannot connect" says how to
# start the daemon; a failed release exits 1; bench refuses a --size no
# zone holds, keeps the daemon's message (unknown device, connection cap)
# and shows progress only on a terminal.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

MiB=1048576
# small: 64 zones of 1 MiB, 2 conventional.
SMALL="$T/small,id=small,size=64M,zone-size=1M,zone-capacity=1M,conv=2"
TINY="$T/tiny,id=tiny,size=64M,zone-size=4M,zone-capacity=3M,conv=1"

fails 1 hello
check_match "$ERR" "zonectl: cannot connect to $T/sock: *(is zonedd running? Start it with 'systemctl start zonedd'*" "cannot connect hint"
# fails_json STATUS ARGS: like fails, for --json: stderr is one JSON object.
fails_json() {
	local want=$1
	shift
	zc --json "$@"
	NCHECKS=$((NCHECKS + 1))
	[ "$RC" -eq "$want" ] || die "zonectl --json $*: exit $RC, want $want (stderr: $ERR)"
	[ "$(printf '%s\n' "$ERR" | wc -l)" -eq 1 ] || die "zonectl --json $*: stderr not one line: $ERR"
	[ -z "$OUT" ] || die "zonectl --json $*: stdout: $OUT"
}
pycheck_err() { OUT=$ERR pycheck "$1"; }
fails_json 1 hello
pycheck_err 'assert d["error"]["errno"] == 2 and "is zonedd running" in d["error"]["message"], d'

start_daemon --emulate "$SMALL" --emulate "$TINY"

# --- report -------------------------------------------------------------------
ok finish small 2
ok finish small 3
ok report small --cond empty --count 3
check_eq "$(printf '%s\n' "$OUT" | awk 'NR > 1 {print $1}' | tr '\n' ' ')" "4 5 6 " "--count counts printed zones"
ok --json report small --cond full --from 3 --scan 10
pycheck 'assert [z["index"] for z in d["zones"]] == [3], d'
ok --json report small --cond empty --from 10 --scan 5 --count 2
pycheck 'assert [z["index"] for z in d["zones"]] == [10, 11], d'
ok report tiny --from 1 --count 1 --bytes
check_eq "$(printf '%s\n' "$OUT" | sed -n 2p)" "    1  seq-write-required  empty  4194304  4194304   3145728        0" "--bytes"
fails 2 report small --scan 0

# --- errors as JSON, the daemon's word kept ---------------------------------------
fails_json 1 info nodev
pycheck_err 'assert d == {"error": {"message": "info nodev: no such device \u0027nodev\u0027", "errno": 19, "reason": "No such device"}}, d'
fails_json 2 info
pycheck_err 'assert d["error"]["message"].startswith("info: expected DEVICE"), d'

# --- stats names error codes ----------------------------------------------------
ok stats
check_match "$OUT" "*errors.no-such-device  *" "stats names errors"
case $OUT in *"errors.-"*) die "stats shows a bare code: $OUT" ;; esac
ok --json stats
pycheck 'assert d["errors"]["no-such-device"] >= 1, d'

# --- a failed release exits 1 ------------------------------------------------------
"$ZONECTL" --socket "$T/sock" lease small --zone 9 --hold 2 >"$T/l.out" 2>"$T/l.err" &
HOLDER=$!
wait_for_line "$T/l.out" "^lease "
ok reset small 9 --force
wait "$HOLDER"
check_eq "$?" 1 "release of a revoked lease"
check_match "$(cat "$T/l.err")" "zonectl: release lease: *" "release error line"

# --- bench -----------------------------------------------------------------------------
fails 2 bench tiny --size 4M
check_eq "$ERR" "zonectl: bench tiny: --size 4194304 is larger than the zone capacity (3145728 bytes)" "bench --size"
fails 1 bench emu9
check_eq "$ERR" "zonectl: bench emu9: no such device 'emu9'" "bench of a missing device"
fails_json 1 bench emu9
pycheck_err 'assert d["error"]["message"] == "bench emu9: no such device \u0027emu9\u0027", d'
fails 2 bench tiny --frob
check_eq "$ERR" "zonectl: bench: unknown option '--frob'" "bench unknown option"
# Not a terminal: nothing but the results.
ok bench tiny --size 1M --zones 1 --writers 2 --rounds 1
if command -v script >/dev/null; then
	script -qec "$ZONECTL --socket $T/sock bench tiny --size 1M --zones 2 --writers 2 --rounds 1 >/dev/null" /dev/null >"$T/tty" ||
		die "bench on a terminal failed: $(cat "$T/tty")"
	check_match "$(tr '\r' '\n' <"$T/tty")" "*zonectl: bench: round 1/1, leases: zones: *%*/4*" "bench progress on a terminal"
fi
# Past the connection cap a writer says why. The default cap (256 per uid)
# would take 257 writer threads: a daemon with a cap of 8 shows the same.
stop_daemon
[ "$DAEMON_STATUS" -eq 0 ] || die "zonedd exited with status $DAEMON_STATUS"
printf '{ "max_connections_per_uid": 8 }\n' >"$T/cap.conf"
start_daemon --config "$T/cap.conf" --emulate "$SMALL"
fails 1 bench small --size 1M --zones 1 --writers 10 --rounds 1
check_match "$ERR" "zonectl: bench: writer *: connect: too many connections for uid * (the limit is 8)" "bench connection cap"
pass
