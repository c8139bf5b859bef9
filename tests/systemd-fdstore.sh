#!/bin/bash
# The fd store, as systemd runs it: a NOTIFY_SOCKET of our own (python,
# standing in for systemd) receives FDSTORE=1 FDNAME=listen with the
# listener zonedd bound itself, and FDNAME=dev-emu0 with the device's claim
# (its locked directory); zonedd is SIGKILLed; a client connects while no
# daemon runs (it must queue, not be refused), and another zonedd cannot
# take the device meanwhile (the kept claim still locks it); a new zonedd
# is started with the stored fds as systemd passes them (LISTEN_FDS=2,
# LISTEN_FDNAMES=listen:dev-emu0, LISTEN_PID) and must serve the waiting
# client on the socket, adopt the claim, and reclaim the lease the first
# one granted.
. "${top_srcdir:-$(dirname "$0")/..}/tests/systemd-lib.sh"

[ -x "$ZONEDD" ] || skip "no $ZONEDD"

cat >"$T/fdstore.py" <<'EOF'
# fdstore.py T ZONEDD: plays systemd's part, see tests/systemd-fdstore.sh.
import array, json, os, signal, socket, subprocess, sys, time

T, ZONEDD = sys.argv[1], sys.argv[2]
SOCK = T + "/sock"
ARGS = ["--no-config", "--socket", SOCK, "--state-dir", T + "/state",
        "--emulate", T + "/emu0.img,size=16M,zone-size=1M,conv=1",
        "--grace-ms", "60000", "--log-level", "debug"]

def fail(msg):
    print("fdstore.py: " + msg, file=sys.stderr)
    sys.exit(1)

notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(T + "/notify")
notify.settimeout(10)
log = open(T + "/zonedd.log", "ab")

def wait_store():
    # Until READY=1; returns {FDNAME: fd} of what was stored.
    stored = {}
    deadline = time.time() + 10
    while time.time() < deadline:
        fds = array.array("i")
        msg, anc, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        lines = msg.decode().split("\n")
        if "FDSTORE=1" in lines:
            names = [l[7:] for l in lines if l.startswith("FDNAME=")]
            if len(names) != 1 or len(fds) != 1:
                fail("FDSTORE=1 without one FDNAME and one fd: %r %r" % (lines, list(fds)))
            stored[names[0]] = fds[0]
        else:
            for fd in fds:
                os.close(fd)
        if "READY=1" in lines:
            return stored
    fail("no READY=1")

def call(s, method, params=None):
    req = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        req["params"] = params
    s.sendall(json.dumps(req).encode())
    fds = array.array("i")
    msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    for fd in fds:
        os.close(fd)
    return json.loads(msg)

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(20)
    s.connect(SOCK)
    return s

env = dict(os.environ, NOTIFY_SOCKET=T + "/notify")
env.pop("LISTEN_FDS", None)
first = subprocess.Popen([ZONEDD] + ARGS, env=env, stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL)
stored = wait_store()
if sorted(stored) != ["dev-emu0", "listen"]:
    fail("the first zonedd stored %r, not the listener and the device's claim" % sorted(stored))
c = connect()
r = call(c, "lease.acquire", {"device": "emu0", "zone": 2, "direct": False})
if "result" not in r:
    fail("acquire: %r" % r)
lease = r["result"]["lease"]
first.send_signal(signal.SIGKILL)
first.wait()
c.close()

# No daemon now. The socket lives on in the fd store: a client connects,
# and its request waits in the socket's queue.
waiting = connect()
waiting.sendall(json.dumps({"jsonrpc": "2.0", "method": "daemon.hello", "id": 7}).encode())

# The kept claim still holds the device: another zonedd cannot have it.
intruder = subprocess.run([ZONEDD, "--no-config", "--socket", T + "/other.sock",
                           "--state-dir", T + "/other-state", "--emulate", ARGS[6]],
                          env=dict(os.environ), stdout=log, stderr=log,
                          stdin=subprocess.DEVNULL, timeout=20)
if intruder.returncode == 0:
    fail("another zonedd took the device while its claim was kept")

# As systemd passes it: the fd at 3, LISTEN_PID the daemon's own pid (the
# shell's, which exec keeps), LISTEN_FDNAMES naming it.
launch = ["/bin/sh", "-c", 'eval "exec 3<&$1 4<&$2"; shift 2; '
          'LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=listen:dev-emu0 exec "$@"', "sh",
          str(stored["listen"]), str(stored["dev-emu0"]), ZONEDD] + ARGS
second = subprocess.Popen(launch, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                          pass_fds=(stored["listen"], stored["dev-emu0"]))
for fd in wait_store().values():
    os.close(fd)
r = json.loads(waiting.recv(65536))
if r.get("id") != 7 or r.get("result", {}).get("pid") != second.pid:
    fail("the waiting client was not served by the new daemon: %r" % r)
r = call(waiting, "lease.reclaim", {"id": lease["id"], "token": lease["token"]})
if "result" not in r:
    fail("reclaim after the restart: %r" % r)
r = call(waiting, "lease.release", {"id": lease["id"], "token": lease["token"]})
if "result" not in r:
    fail("release: %r" % r)
waiting.close()
second.send_signal(signal.SIGTERM)
if second.wait() != 0:
    fail("the second zonedd exited with status %d" % second.returncode)
# A stored socket's name stays for the next life.
if not os.path.exists(SOCK):
    fail("the stored socket's name was removed at stop")
print("ok")
EOF

timeout 60 python3 "$T/fdstore.py" "$T" "$ZONEDD" >"$T/fdstore.out" 2>"$T/fdstore.err" ||
	die "$(cat "$T/fdstore.err")"
check
grep -q "listening on the socket kept in systemd's fd store" "$T/zonedd.log" ||
	die "the second zonedd did not say it took the stored socket"
check
grep -q "listening socket stored in systemd's fd store" "$T/zonedd.log" ||
	die "no 'stored' log line"
check
grep -q "device is in use by another process" "$T/zonedd.log" ||
	die "the intruding zonedd was not refused for the device being in use"
check
grep -q "device directory kept locked across the restart (fd store)" "$T/zonedd.log" ||
	die "the second zonedd did not adopt the kept claim"
check
pass
