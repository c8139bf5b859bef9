#!/bin/bash
# Golden output of zonectl map, status and watch against a real zonedd on an
# emulated device in a known state (colour off: stdout is a file), with
# volatile fields (pids, uptime, times, request counts) normalised; and every
# view's --json parses. GOLDEN_OUT=DIR writes the actual outputs there.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

# gold: 32 zones of 1 MiB, 2 conventional, limits 4 open / 6 active.
start_daemon --emulate "$T/gold,id=gold,size=32M,zone-size=1M,conv=2,max-open=4,max-active=6"

# The known state: zone 3 written 300000 bytes (closed), zone 4 full,
# zone 5 explicitly open, zone 6 leased by a holder in the background.
head -c 300000 /dev/zero | tr '\0' 'z' >"$T/data"
ok write gold --zone 3 --input "$T/data"
ok finish gold 4
ok open gold 5
"$ZONECTL" --socket "$T/sock" lease gold --zone 6 --hold 120 --label holder >"$T/holder" 2>&1 &
HOLDER=$!
wait_for_line "$T/holder" "^lease "

# Compares $OUT (normalised by the sed script $2) with the expected text $3.
golden() {
	local what=$1 norm=$2 want=$3

	printf '%s\n' "$OUT" | sed -e "$norm" >"$T/got-$what"
	printf '%s\n' "$want" >"$T/want-$what"
	[ -z "${GOLDEN_OUT:-}" ] || cp "$T/got-$what" "$GOLDEN_OUT/$what"
	NCHECKS=$((NCHECKS + 1))
	diff -u "$T/want-$what" "$T/got-$what" >"$T/diff-$what" ||
		die "$what differs from the golden text:
$(cat "$T/diff-$what")"
}

# --- map -----------------------------------------------------------------
ok map gold
golden map "" "$(cat <<'G'
gold: 32 zones of 1 MiB, one cell per zone, 24 cells per row
 0  n- n- e. c2 f# x. E. e. e. e. e. e. e. e. e. e. e. e. e. e. e. e. e. e.
24  e. e. e. e. e. e. e. e.

legend: n not-wp, e empty, i implicit-open, x explicit-open, c closed, f full, r read-only, o offline
        capital: leased; fill: . nothing written, 0-9 tenths written, # full, - conventional
totals: 32 zones (2 not-wp, 27 empty, 1 explicit-open, 1 closed, 1 full)
        1 leased (every client's), 1.3 MiB written of 30 MiB
G
)"
# NO_COLOR and a terminal-less stdout both mean no escape codes; COLUMNS
# narrows the rows (and a narrow map of many zones groups them: below).
case $OUT in *$'\033'*) die "map printed escape codes to a file" ;; esac
OUT=$(COLUMNS=40 NO_COLOR=1 timeout "$CALL_TIMEOUT" "$ZONECTL" --socket "$T/sock" map gold)
golden map-narrow "" "$(cat <<'G'
gold: 32 zones of 1 MiB, one cell per zone, 8 cells per row
 0  n- n- e. c2 f# x. E. e.
 8  e. e. e. e. e. e. e. e.
16  e. e. e. e. e. e. e. e.
24  e. e. e. e. e. e. e. e.

legend: n not-wp, e empty, i implicit-open, x explicit-open, c closed, f full, r read-only, o offline
        capital: leased; fill: . nothing written, 0-9 tenths written, # full, - conventional
totals: 32 zones (2 not-wp, 27 empty, 1 explicit-open, 1 closed, 1 full)
        1 leased (every client's), 1.3 MiB written of 30 MiB
G
)"
# On a terminal (script(1) gives one) cells are coloured, unless NO_COLOR.
if command -v script >/dev/null; then
	script -qec "$ZONECTL --socket $T/sock map gold" /dev/null </dev/null >"$T/tty" 2>&1
	NCHECKS=$((NCHECKS + 1))
	grep -q $'\033\[30;43mx\.' "$T/tty" || die "map on a terminal: no colour: $(cat -v "$T/tty")"
	NO_COLOR=1 script -qec "$ZONECTL --socket $T/sock map gold" /dev/null </dev/null >"$T/tty" 2>&1
	NCHECKS=$((NCHECKS + 1))
	! grep -q $'\033' "$T/tty" || die "map with NO_COLOR printed escape codes: $(cat -v "$T/tty")"
fi
ok --json map gold
pycheck '
assert d["device"] == "gold" and d["nr_zones"] == 32 and d["zones_per_cell"] == 1, d
c = d["cells"]
assert len(c) == 32, c
assert [x["cond"] for x in c[:7]] == ["not-wp", "not-wp", "empty", "closed", "full",
                                     "explicit-open", "empty"], c[:7]
assert [x["first"] for x in c if x["leased"]] == [6], c
assert c[3]["written"] == 303104 and c[4]["written"] == c[4]["capacity"], c[3:5]
t = d["totals"]
assert t["leased"] == 1 and t["zones_by_cond"]["empty"] == 27, t'

# --- status --------------------------------------------------------------
ok status
# The daemon's pid and uptime, the holder's pid, and the counters that
# start_daemon's probes make vary.
NORM="s/pid $DAEMON_PID, up [0-9]*:[0-9][0-9]:[0-9][0-9]\$/pid DAEMON, up UPTIME/
/^leases by client/,/^\$/{s/^ *$HOLDER /HOLDER /;s/^ *PID /PID /;s/  */ /g}
s/^\(  connections  *\)[0-9]*\$/\1N/
s/^\(  requests  *\)[0-9]*\$/\1N/"
golden status "$NORM" "$(cat <<G
zonedd 0.1.0, protocol 3, pid DAEMON, up UPTIME
clients 2, leases 1, waiting acquires 0

DEVICE  ZONES  NOT-WP  EMPTY  IMP-OPEN  EXP-OPEN  CLOSED  FULL  READ-ONLY  OFFLINE  OPEN  ACTIVE  LEASED  FREE
gold       32       2     27         0         1       1     1          0        0   1/4     2/6       1    26

leases by client (all clients):
PID UID LEASES ZONES LABELS
HOLDER $(id -u) 1 gold:6 holder

counters:
  connections          N
  connections_refused  0
  clients              2
  requests             N
  leases_active        1
  leases_granted       2
  leases_released      1
  leases_revoked       0
  grants_ready         1
  releases_untouched   0
  ready_recycled       0
  waits                0
  wait_timeouts        0
  waiting              0
G
)" 
ok --json status
export HOLDER
pycheck '
assert d["version"] == "0.1.0" and d["admin"] is True and d["uptime_ms"] >= 0, d
g = d["devices"][0]
assert g["id"] == "gold" and g["zones_by_cond"]["full"] == 1, g
assert (g["open"], g["max_open"], g["active"], g["max_active"]) == (1, 4, 2, 6), g
assert d["leases_of"] == "all" and d["waiting"] == 0, d
assert [(c["pid"], [l["zone"] for l in c["leases"]]) for c in d["clients"]] == \
	[(int(env["HOLDER"]), [6])], d["clients"]
assert d["clients"][0]["leases"][0]["label"] == "holder", d
assert d["counters"]["leases_active"] == 1 and "uptime_ms" in d["counters"], d'

# Someone else (as root: nobody) sees the counts but only its own leases.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$T"
	as_nobody() { OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
		timeout "$CALL_TIMEOUT" "$ZONECTL" --socket "$T/sock" "$@" 2>&1); }
	as_nobody --json status
	pycheck 'assert d["admin"] is False and d["leases_of"] == "own" and d["clients"] == [], d
assert d["devices"][0]["leased_zones"] == 1, d'
	as_nobody status
	check_match "$OUT" "*leases by client (this uid's):*" "status as nobody"
	as_nobody map gold
	check_match "$OUT" "* n- e. c2 f# x. e. e. *0 leased (this uid's)*" "map as nobody"
fi

# An acquire waiting for the holder's zone shows in waiting (status'
# second line and --json) until it gives up.
"$ZONECTL" --socket "$T/sock" lease gold --zone 6 --wait 20000 >"$T/waiter" 2>&1 &
WAITER=$!
for _ in $(seq 100); do
	zc --json status
	printf '%s' "$OUT" | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["waiting"] != 1)' && break
	sleep 0.1
done
pycheck 'assert d["waiting"] == 1 and d["counters"]["waits"] == 1, d'
ok status
check_match "$(printf '%s\n' "$OUT" | sed -n 2p)" "clients 3, leases 1, waiting acquires 1" "status waiting"
kill -TERM "$WAITER"
wait "$WAITER"
for _ in $(seq 100); do
	zc --json status
	printf '%s' "$OUT" | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["waiting"] != 0)' && break
	sleep 0.1
done
pycheck 'assert d["waiting"] == 0, d'

# --- watch ---------------------------------------------------------------
# requests counts every request: each `zonectl stats` makes two (its hello
# and stats); a watcher's first two are its hello and events.subscribe (map
# --watch subscribes before anything else too). The watcher is subscribed
# once a poll sees two more than the polls' own share.
requests() { zc --json stats; printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
start_watch() {
	local base k=0 now
	base=$(requests)
	"$ZONECTL" --socket "$T/sock" "$@" >"$T/watch.out" 2>"$T/watch.err" &
	WATCH=$!
	while :; do
		k=$((k + 1))
		now=$(requests)
		[ $((now - base - 2 * k)) -lt 2 ] || break
		[ $k -lt 100 ] || die "the watcher did not subscribe: $(cat "$T/watch.err")"
		sleep 0.1
	done
}
# The scripted sequence: a lease taken and released on zone 7, a zone
# operation on zone 8 (finish: a zone.changed).
start_watch --json watch gold --count 3
ok lease gold --zone 7 --hold 0.01 --label scripted
ok finish gold 8
wait "$WATCH"
check_eq "$?" 0 "watch --count exit status"
OUT=$(cat "$T/watch.out")
NORM='s/"seq":[0-9]*/"seq":S/; s/"time":[0-9]*/"time":T/; s/"pid":[0-9]*/"pid":P/'
golden watch-json "$NORM" "$(cat <<G
{"seq":S,"time":T,"type":"lease.acquired","device":"gold","zone":7,"lease":3,"pid":P,"uid":$(id -u),"label":"scripted","wp":7340032,"cond":"empty"}
{"seq":S,"time":T,"type":"lease.released","device":"gold","zone":7,"lease":3,"pid":P,"uid":$(id -u),"label":"scripted","wp":7340032,"cond":"empty","reason":"release"}
{"seq":S,"time":T,"type":"zone.changed","device":"gold","zone":8,"cond":"full","old_cond":"empty","wp":9437184}
G
)"
# Each line parses, and seq grows.
python3 -c '
import json, sys
seqs = [json.loads(l)["seq"] for l in open(sys.argv[1])]
assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs' "$T/watch.out" ||
	die "watch --json lines do not parse"
NCHECKS=$((NCHECKS + 1))

# The human form, aligned, with the times normalised; SIGTERM ends it with
# status 0.
start_watch watch gold
ok lease gold --zone 7 --hold 0.01 --label scripted
kill -TERM "$WATCH"
wait "$WATCH"
check_eq "$?" 0 "watch exit status on SIGTERM"
OUT=$(cat "$T/watch.out")
# The pid is the 7 columns after the first 61.
golden watch "s/^[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9][0-9][0-9]/HH:MM:SS.mmm/; /^HH/s/^\(.\{61\}\).\{7\}/\1    PID/" "$(cat <<G
TIME          TYPE              DEVICE         ZONE   LEASE      PID     UID  DETAILS
HH:MM:SS.mmm  lease.acquired    gold              7       4      PID  $(printf '%6s' "$(id -u)")  label="scripted" cond=empty wp=7340032
HH:MM:SS.mmm  lease.released    gold              7       4      PID  $(printf '%6s' "$(id -u)")  label="scripted" cond=empty reason=release wp=7340032
G
)"

# map --watch redraws when the holder goes; the daemon going away ends
# watch with status 1 and one line.
start_watch map gold --watch
kill -TERM "$HOLDER"
wait "$HOLDER"
for _ in $(seq 100); do
	[ "$(grep -c '^totals' "$T/watch.out")" -ge 2 ] && break
	sleep 0.1
done
check_match "$(tail -n 1 "$T/watch.out")" "*0 leased*" "map --watch redrew after the release"
kill -TERM "$WATCH"
wait "$WATCH"
check_eq "$?" 0 "map --watch exit status on SIGTERM"
start_watch watch
stop_daemon
wait "$WATCH"
check_eq "$?" 1 "watch exit status when the daemon goes away"
check_eq "$(cat "$T/watch.err")" "zonectl: watch: the daemon closed the connection" "watch message"

# --- map of more zones than fit: cells stand for groups ----------------------
# 1024 zones in rows of 8 cells (COLUMNS=40) and at most 32 rows: 4 zones a
# cell. Zones 0-3 hold one full zone: empty is the commonest, filled a
# quarter ("e2"); zones 4-7 one explicitly open zone, which wins ("x.");
# zone 9 is leased (capital).
start_daemon --emulate "$T/wide,id=wide,size=1G,zone-size=1M,conv=0"
ok finish wide 1
ok open wide 6
"$ZONECTL" --socket "$T/sock" lease wide --zone 9 --hold 120 >"$T/holder2" 2>&1 &
HOLDER2=$!
wait_for_line "$T/holder2" "^lease "
OUT=$(COLUMNS=40 timeout "$CALL_TIMEOUT" "$ZONECTL" --socket "$T/sock" map wide)
printf '%s\n' "$OUT" | sed -n '1,3p;34,$p' >"$T/wide.map"
OUT=$(cat "$T/wide.map")
golden map-grouped "" "$(cat <<'G'
wide: 1024 zones of 1 MiB, one cell per 4 zones, 8 cells per row
   0  e2 x. E. e. e. e. e. e.
  32  e. e. e. e. e. e. e. e.

legend: n not-wp, e empty, i implicit-open, x explicit-open, c closed, f full, r read-only, o offline
        capital: leased; fill: . nothing written, 0-9 tenths written, # full, - conventional
        a cell of 4 zones: the first of offline, read-only, explicit-open,
        implicit-open, closed it holds, else the commonest condition; fill of
        all its zones; capital if any is leased
totals: 1024 zones (1022 empty, 1 explicit-open, 1 full)
        1 leased (every client's), 1 MiB written of 1 GiB
G
)"
kill -TERM "$HOLDER2"
wait "$HOLDER2"
check_eq "$?" 0 "holder's exit status"
pass
