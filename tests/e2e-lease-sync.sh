#!/bin/bash
# e2e-lease-sync.sh: the lease table's durability setting. With
# lease_table_sync "always" every grant and end is fdatasync'd before its
# reply; with "background" (the default) the records are written before the
# reply and synced at most once a second. Counted with strace on the real
# daemon: fdatasync calls on the state directory's "leases" file.
. "${top_srcdir:-.}/tests/lib-e2e.sh"

command -v strace >/dev/null || skip "strace is needed to count the daemon's fdatasync calls"
strace -f -qq -o /dev/null true 2>/dev/null || skip "strace cannot trace here (ptrace refused)"

CYCLES=20
echo cycle >"$T/in"

# run_cycles MODE: starts zonedd under strace with that setting, runs
# $CYCLES lease cycles, stops it cleanly; sets $SYNCS.
run_cycles() {
	local mode=$1 i

	rm -rf "$T/state"
	printf '{ "lease_table_sync": "%s" }\n' "$mode" >"$T/conf.json"
	# LeakSanitizer cannot run under ptrace; leaks are checked by the
	# other tests of the ASan build.
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		"$ZONEDD" -c "$T/conf.json" --socket "$T/sock" --state-dir "$T/state" \
		>>"$T/zonedd.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	for _ in $(seq 200); do
		[ -S "$T/sock" ] && timeout 5 "$ZONECTL" --socket "$T/sock" hello >/dev/null 2>&1 && break
		sleep 0.1
	done
	# Attached to every thread (the thread pool does the syncs); it ends
	# with the daemon.
	strace -f -qq -y -e trace=fdatasync -o "$T/strace.$mode" -p "$DAEMON_PID" &
	STRACE_PID=$!
	sleep 1
	for i in $(seq "$CYCLES"); do
		ok write emu0 --input "$T/in"
	done
	stop_daemon
	wait "$STRACE_PID"
	[ "$DAEMON_STATUS" -eq 0 ] || die "zonedd ($mode) exited with status $DAEMON_STATUS"
	SYNCS=$(grep -c '/leases>' "$T/strace.$mode" || true)
}

run_cycles always
always=$SYNCS
# Each cycle ends with its release's record synced before the reply; the
# grant's too unless it shared a batch.
[ "$always" -ge "$CYCLES" ] || die "always: $always fdatasyncs of the lease table for $CYCLES cycles"

run_cycles background
background=$SYNCS
# Twenty quick cycles fit in a few seconds: a sync per second at most, plus
# the one at the clean stop.
[ "$background" -le 8 ] || die "background: $background fdatasyncs for $CYCLES cycles"

# The records are on disk after the clean stop either way: a restart
# finds the next lease id where the last run left it.
start_daemon
ok write emu0 --input "$T/in"
stop_daemon
grep -q "lease $((CYCLES + 1)) granted" "$T/zonedd.log" ||
	die "lease ids restarted after a background-synced run"

echo "lease table fdatasyncs for $CYCLES lease cycles: always $always, background $background"
pass
