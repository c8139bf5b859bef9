# systemd-lib.sh: sourced by tests/systemd-*.sh and tests/install-*.sh.
# A temporary directory, a watchdog, the daemon of the build tree, a
# NOTIFY_SOCKET listener and a tiny JSON-RPC client in python3 (Debian's
# base system has it), so these tests depend on neither zonectl nor socat.
#
# Provides: $T, $ZONEDD, die, skip, pass, check (counts a passed check),
# start_zonedd ARGS / stop_zonedd, wait_sock PATH, rpc SOCK METHOD [PARAMS]
# (result in $OUT, status in $RC: 0 result, 3 JSON-RPC error), err_code,
# notify_listen PATH LOG, wait_for_line FILE PATTERN, install_destdir DIR.

set -u

: "${top_builddir:=.}"
: "${top_srcdir:=.}"
ZONEDD=$top_builddir/daemon/zonedd
TEST_TIMEOUT=${TEST_TIMEOUT:-240}
NAME=$(basename "$0" .sh)
DAEMON_PID=
WATCHDOG_PID=
BG_PIDS=
NCHECKS=0

die() {
	echo "FAIL: $NAME: $*" >&2
	if [ -n "${T:-}" ] && [ -s "$T/zonedd.log" ]; then
		echo "--- zonedd log (last 30 lines) ---" >&2
		tail -n 30 "$T/zonedd.log" >&2
	fi
	exit 1
}

skip() {
	echo "SKIP: $NAME: $*" >&2
	exit 77
}

check() {
	NCHECKS=$((NCHECKS + 1))
}

pass() {
	echo "PASS: $NAME: $NCHECKS checks"
	exit 0
}

command -v python3 >/dev/null 2>&1 || skip "python3 is needed for the test client"

T=$(mktemp -d "${TMPDIR:-/tmp}/zoned-$NAME.XXXXXX") || die "mktemp"

cleanup() {
	local status=$?

	trap - EXIT INT TERM
	stop_zonedd >/dev/null 2>&1 || true
	for p in $BG_PIDS; do
		kill "$p" 2>/dev/null
	done
	if [ -n "$WATCHDOG_PID" ]; then
		pkill -P "$WATCHDOG_PID" 2>/dev/null
		kill "$WATCHDOG_PID" 2>/dev/null
	fi
	if [ "$status" -eq 0 ] || [ -z "${KEEP_TEST:-}" ]; then
		rm -rf "$T"
	else
		echo "kept $T" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

( sleep "$TEST_TIMEOUT" && echo "FAIL: $NAME: timed out after ${TEST_TIMEOUT}s" >&2 &&
  kill -TERM $$ ) 2>/dev/null &
WATCHDOG_PID=$!

# --- python helpers -------------------------------------------------------

cat >"$T/rpc.py" <<'EOF'
# rpc.py: a minimal zonedd client speaking proto/PROTOCOL.md.
#   call SOCK METHOD [PARAMS]    prints the result (exit 0) or error (exit 3)
#   acquire-n SOCK DEVICE N      leases up to N zones on one connection;
#                                prints "<granted> <first error code or 0>"
#   hold SOCK DEVICE N READY STOP
#                                holds N leases until the file STOP exists,
#                                then checks them with lease.sync and
#                                releases them; exit 0 when all were valid
import json, os, socket, sys, time

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(20)
    s.connect(path)
    return s

_id = 0
def call(s, method, params=None):
    global _id
    _id += 1
    req = {"jsonrpc": "2.0", "method": method, "id": _id}
    if params is not None:
        req["params"] = params
    s.send(json.dumps(req).encode())
    msg, fds, _, _ = socket.recv_fds(s, 65536, 16)
    for fd in fds:
        os.close(fd)
    rep = json.loads(msg)
    if rep.get("id") != _id:
        raise SystemExit("reply id %r, want %r" % (rep.get("id"), _id))
    return rep

def main(argv):
    mode = argv[1]
    s = connect(argv[2])
    if mode == "call":
        params = json.loads(argv[4]) if len(argv) > 4 else None
        rep = call(s, argv[3], params)
        if "error" in rep:
            print(json.dumps(rep["error"]))
            return 3
        print(json.dumps(rep["result"]))
        return 0
    if mode == "acquire-n":
        n, code = 0, 0
        for _ in range(int(argv[4])):
            rep = call(s, "lease.acquire", {"device": argv[3], "direct": False})
            if "error" in rep:
                code = rep["error"]["code"]
                break
            n += 1
        print(n, code)
        return 0
    if mode == "hold":
        leases = []
        for _ in range(int(argv[4])):
            rep = call(s, "lease.acquire", {"device": argv[3], "direct": False,
                                            "label": "holder"})
            if "error" in rep:
                print("acquire:", rep["error"], file=sys.stderr)
                return 1
            leases.append(rep["result"]["lease"])
        with open(argv[5] + ".tmp", "w") as f:
            f.write(" ".join(str(l["zone"]) for l in leases) + "\n")
        os.rename(argv[5] + ".tmp", argv[5])
        deadline = time.time() + 120
        while not os.path.exists(argv[6]):
            if time.time() > deadline:
                print("hold: no stop file", file=sys.stderr)
                return 1
            time.sleep(0.05)
        bad = 0
        for l in leases:
            rep = call(s, "lease.sync", {"id": l["id"], "token": l["token"]})
            if "error" in rep:
                print("sync of zone %d: %s" % (l["zone"], rep["error"]), file=sys.stderr)
                bad += 1
        for l in leases:
            call(s, "lease.release", {"id": l["id"], "token": l["token"]})
        return 1 if bad else 0
    raise SystemExit("unknown mode " + mode)

sys.exit(main(sys.argv))
EOF

cat >"$T/notify.py" <<'EOF'
# notify.py PATH LOG: a NOTIFY_SOCKET that writes each line of each datagram
# to LOG, as systemd would read them.
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1] + ".tmp")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        data = s.recv(65536)
        for line in data.decode("utf-8", "replace").split("\n"):
            if line:
                log.write(line + "\n")
EOF

# rpc SOCK METHOD [PARAMS]: never fails by itself.
rpc() {
	OUT=$(timeout 30 python3 "$T/rpc.py" call "$@" 2>"$T/rpc.err")
	RC=$?
	[ "$RC" -ne 124 ] || die "rpc $* timed out"
	[ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || die "rpc $*: exit $RC: $(cat "$T/rpc.err")"
}

# rpc_ok SOCK METHOD [PARAMS]: rpc that must return a result.
rpc_ok() {
	rpc "$@"
	[ "$RC" -eq 0 ] || die "rpc $*: error $OUT"
	check
}

# jget EXPR: evaluates a python expression on d = the JSON in $OUT.
jget() {
	printf '%s' "$OUT" | python3 -c 'import json, sys
d = json.load(sys.stdin)
v = '"$1"'
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)'
}

# notify_listen PATH LOG: starts the NOTIFY_SOCKET listener.
notify_listen() {
	python3 "$T/notify.py" "$1" "$2" &
	BG_PIDS="$BG_PIDS $!"
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		sleep 0.05
	done
	die "notify listener did not start"
}

# wait_for_line FILE PATTERN [SECONDS]: until FILE has a line matching PATTERN.
wait_for_line() {
	local n=$(( ${3:-10} * 20 ))
	for _ in $(seq "$n"); do
		grep -q -- "$2" "$1" 2>/dev/null && { check; return 0; }
		sleep 0.05
	done
	die "timed out waiting for '$2' in $1: $(tail -n 20 "$1" 2>/dev/null)"
}

# wait_sock PATH: until a daemon answers daemon.hello on PATH (10 s).
wait_sock() {
	for _ in $(seq 100); do
		if [ -S "$1" ] && timeout 5 python3 "$T/rpc.py" call "$1" daemon.hello >/dev/null 2>&1; then
			return 0
		fi
		if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			wait "$DAEMON_PID"
			local st=$?
			DAEMON_PID=
			die "zonedd exited with status $st at start"
		fi
		sleep 0.1
	done
	die "nothing answers on $1 within 10 s"
}

# start_zonedd ARGS: starts the build tree's zonedd in the background, its
# stderr in $T/zonedd.log.
start_zonedd() {
	[ -z "$DAEMON_PID" ] || die "start_zonedd: already running"
	"$ZONEDD" "$@" >>"$T/zonedd.log" 2>&1 </dev/null &
	DAEMON_PID=$!
}

# stop_zonedd: SIGTERM, SIGKILL after 10 s; the status in $DAEMON_STATUS.
stop_zonedd() {
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

# install_destdir DIR: make install DESTDIR=DIR from the build tree. Tests
# run in parallel; libtool relinks in the build tree during install, so
# installs take turns.
install_destdir() {
	[ -f "$top_builddir/Makefile" ] || skip "no $top_builddir/Makefile"
	command -v flock >/dev/null 2>&1 || die "flock (util-linux) is needed"
	flock "$top_builddir/.install-test.lock" \
		"${MAKE:-make}" -C "$top_builddir" install DESTDIR="$1" >"$T/install.log" 2>&1 ||
		die "make install DESTDIR=$1 failed: $(tail -n 20 "$T/install.log")"
	check
}
