# lib-e2e.sh: sourced by the tests/e2e-*.sh scripts. Starts the real
# daemon/zonedd of the build tree on a temporary socket and state directory,
# runs zonectl against it, and tears everything down on exit.
#
# Provides: $T (temporary directory), start_daemon [ARGS], stop_daemon,
# zc ARGS (zonectl with --socket; output in $OUT, $ERR, status in $RC),
# ok ARGS / fails STATUS ARGS (zc and check the status), check_eq,
# check_match, pycheck (python3 assertions on $OUT parsed as JSON), die.

set -u

: "${top_builddir:=.}"
: "${top_srcdir:=.}"
ZONEDD=$top_builddir/daemon/zonedd
ZONECTL=$top_builddir/client/zonectl
E2E_TIMEOUT=${E2E_TIMEOUT:-180}   # the whole script
CALL_TIMEOUT=${CALL_TIMEOUT:-20}  # one zonectl call

NAME=$(basename "$0" .sh)
DAEMON_PID=
WATCHDOG_PID=
NCHECKS=0

die() {
	echo "FAIL: $NAME: $*" >&2
	if [ -n "${T:-}" ] && [ -s "$T/zonedd.log" ]; then
		echo "--- zonedd log (last 20 lines) ---" >&2
		tail -n 20 "$T/zonedd.log" >&2
	fi
	exit 1
}

skip() {
	echo "SKIP: $NAME: $*" >&2
	exit 77
}

[ -x "$ZONEDD" ] || skip "no $ZONEDD"
[ -x "$ZONECTL" ] || skip "no $ZONECTL"
command -v python3 >/dev/null || skip "python3 is needed to check --json output"

T=$(mktemp -d "${TMPDIR:-/tmp}/zoned-$NAME.XXXXXX") || die "mktemp"

cleanup() {
	local status=$?

	trap - EXIT INT TERM
	stop_daemon >/dev/null 2>&1 || true
	if [ -n "$WATCHDOG_PID" ]; then
		pkill -P "$WATCHDOG_PID" 2>/dev/null # its sleep
		kill "$WATCHDOG_PID" 2>/dev/null
	fi
	# Background zonectl holders a test left behind.
	for p in $(jobs -p); do
		[ "$p" = "$WATCHDOG_PID" ] || kill -9 "$p" 2>/dev/null
	done
	if [ "$status" -eq 0 ] || [ -z "${KEEP_E2E:-}" ]; then
		rm -rf "$T"
	else
		echo "kept $T" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

# A test that hangs is killed: the watchdog sends SIGTERM to the script.
( sleep "$E2E_TIMEOUT" && echo "FAIL: $NAME: timed out after ${E2E_TIMEOUT}s" >&2 &&
  kill -TERM $$ ) 2>/dev/null &
WATCHDOG_PID=$!

# start_daemon [EXTRA ARGS]: starts zonedd, waits until `zonectl hello`
# answers (10 s at most).
start_daemon() {
	[ -z "$DAEMON_PID" ] || die "start_daemon: already running"
	"$ZONEDD" --no-config --socket "$T/sock" --state-dir "$T/state" "$@" \
		>>"$T/zonedd.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	for _ in $(seq 100); do
		if [ -S "$T/sock" ] &&
		   timeout 5 "$ZONECTL" --socket "$T/sock" hello >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$DAEMON_PID" 2>/dev/null || {
			wait "$DAEMON_PID"
			local st=$?
			DAEMON_PID=
			die "zonedd exited with status $st at start"
		}
		sleep 0.1
	done
	die "zonedd did not answer within 10 s"
}

# stop_daemon: SIGTERM, then SIGKILL after 10 s. Sets $DAEMON_STATUS.
stop_daemon() {
	DAEMON_STATUS=
	[ -n "$DAEMON_PID" ] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$DAEMON_PID" 2>/dev/null; then
		echo "$NAME: zonedd ignored SIGTERM, killing it" >&2
		kill -KILL "$DAEMON_PID" 2>/dev/null
	fi
	wait "$DAEMON_PID"
	DAEMON_STATUS=$?
	DAEMON_PID=
}

# zc ARGS: runs zonectl on the test socket; never fails by itself.
zc() {
	timeout "$CALL_TIMEOUT" "$ZONECTL" --socket "$T/sock" "$@" >"$T/out" 2>"$T/err" </dev/null
	RC=$?
	OUT=$(cat "$T/out")
	ERR=$(cat "$T/err")
	[ "$RC" -ne 124 ] || die "zonectl $* timed out"
}

# ok ARGS: zc, which must succeed and print nothing on stderr.
ok() {
	zc "$@"
	NCHECKS=$((NCHECKS + 1))
	[ "$RC" -eq 0 ] || die "zonectl $*: exit $RC: $ERR"
	[ -z "$ERR" ] || die "zonectl $*: unexpected stderr: $ERR"
}

# fails STATUS ARGS: zc, which must exit with STATUS and, for STATUS 1,
# print exactly one line starting "zonectl: " on stderr.
fails() {
	local want=$1
	shift
	zc "$@"
	NCHECKS=$((NCHECKS + 1))
	[ "$RC" -eq "$want" ] || die "zonectl $*: exit $RC, want $want (stderr: $ERR; stdout: $OUT)"
	if [ "$want" -eq 1 ]; then
		[ "$(printf '%s\n' "$ERR" | wc -l)" -eq 1 ] || die "zonectl $*: stderr not one line: $ERR"
		case $ERR in
		"zonectl: "*) ;;
		*) die "zonectl $*: stderr: $ERR" ;;
		esac
	fi
}

# check_eq ACTUAL EXPECTED WHAT
check_eq() {
	NCHECKS=$((NCHECKS + 1))
	[ "$1" = "$2" ] || die "$3: got '$1', want '$2'"
}

# check_match TEXT GLOB WHAT
check_match() {
	NCHECKS=$((NCHECKS + 1))
	# shellcheck disable=SC2254
	case $1 in
	$2) ;;
	*) die "$3: '$1' does not match '$2'" ;;
	esac
}

# pycheck PYTHON: runs the statements with d = json.loads($OUT) and the
# environment as `env`; a failed assert fails the test.
pycheck() {
	NCHECKS=$((NCHECKS + 1))
	printf '%s' "$OUT" | python3 -c '
import json, os, sys
env = os.environ
d = json.load(sys.stdin)
'"$1" >"$T/py.err" 2>&1 || die "json check failed: $(cat "$T/py.err")
--- in ---
$1
--- on ---
$(printf '%s' "$OUT" | head -c 2000)"
}

# wait_for_line FILE PATTERN: waits (10 s) until FILE has a line matching.
wait_for_line() {
	for _ in $(seq 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	die "timed out waiting for '$2' in $1: $(cat "$1" 2>/dev/null)"
}

pass() {
	echo "PASS: $NAME: $NCHECKS checks"
	exit 0
}
