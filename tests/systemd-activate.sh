#!/bin/bash
# Socket activation for real: systemd-socket-activate --seqpacket owns the
# listening socket and hands it to zonedd (sd_listen_fds), which must serve
# clients on it; READY=1, STATUS=, WATCHDOG=1 (WATCHDOG_USEC=200000),
# RELOADING=1 and STOPPING=1 must reach a NOTIFY_SOCKET of our own; stderr
# lines carry sd-daemon(3) priority prefixes when stderr is not the journal.
. "${top_srcdir:-$(dirname "$0")/..}/tests/systemd-lib.sh"

[ -x "$ZONEDD" ] || skip "no $ZONEDD"
ACTIVATE=$(command -v systemd-socket-activate) ||
	skip "systemd-socket-activate is not installed (package systemd)"

cat >"$T/zonedd.conf" <<EOF
{
  "socket": "$T/not-this.sock",
  "devices": [
    { "id": "emu0", "emulate": "$T/emu0.img",
      "spec": "size=64M,zone-size=4M,zone-capacity=4M,conv=1" }
  ],
  "log_level": "debug"
}
EOF

notify_listen "$T/notify" "$T/notify.log"

# systemd-socket-activate binds and listens, then execs zonedd with
# LISTEN_FDS=1 and LISTEN_PID set to the same process.
"$ACTIVATE" --seqpacket -l "$T/sock" \
	-E NOTIFY_SOCKET="$T/notify" -E WATCHDOG_USEC=200000 \
	"$ZONEDD" --config "$T/zonedd.conf" --state-dir "$T/state" \
	>>"$T/zonedd.log" 2>&1 </dev/null &
DAEMON_PID=$!

for _ in $(seq 100); do
	[ -S "$T/sock" ] && break
	kill -0 "$DAEMON_PID" 2>/dev/null || die "systemd-socket-activate exited"
	sleep 0.05
done
[ -S "$T/sock" ] || die "systemd-socket-activate made no socket"

# The first client is served on the passed socket.
rpc_ok "$T/sock" daemon.hello
[ "$(jget 'd["protocol"]')" = 3 ] || die "hello: $OUT"
[ "$(jget 'd["pid"]')" = "$DAEMON_PID" ] || die "hello pid $(jget 'd["pid"]'), want $DAEMON_PID"
check
# zonedd listened on what it was given, not on its configured path.
[ ! -e "$T/not-this.sock" ] || die "zonedd bound $T/not-this.sock despite socket activation"
check
grep -q "listening on the socket passed by systemd" "$T/zonedd.log" ||
	die "no 'listening on the socket passed by systemd' in the log"
check

wait_for_line "$T/notify.log" '^READY=1$'
wait_for_line "$T/notify.log" '^STATUS=1 device'
# Pinged from the loop every WATCHDOG_USEC/2: 100 ms. Wait for five.
for _ in $(seq 100); do
	[ "$(grep -c '^WATCHDOG=1$' "$T/notify.log")" -ge 5 ] && break
	sleep 0.05
done
n=$(grep -c '^WATCHDOG=1$' "$T/notify.log")
[ "$n" -ge 5 ] || die "only $n WATCHDOG=1 in 5 s with WATCHDOG_USEC=200000"
check

rpc_ok "$T/sock" device.list
[ "$(jget '[x["id"] for x in d["devices"]]')" = '["emu0"]' ] || die "device.list: $OUT"
check
# A lease shows in the STATUS= line at the next watchdog tick.
python3 "$T/rpc.py" hold "$T/sock" emu0 2 "$T/held" "$T/release" 2>>"$T/holder.log" &
HOLDER=$!
BG_PIDS="$BG_PIDS $HOLDER"
wait_for_line "$T/held" .
wait_for_line "$T/notify.log" '^STATUS=1 device, 2 leases'

# A second client connects while the first holds its leases.
rpc_ok "$T/sock" lease.list '{"all": true}'
[ "$(jget 'len(d["leases"])')" = 2 ] || die "lease.list: $OUT"
check

# Reload: RELOADING=1, then READY=1 again.
: >"$T/notify.log"
kill -HUP "$DAEMON_PID"
wait_for_line "$T/notify.log" '^RELOADING=1$'
wait_for_line "$T/notify.log" '^READY=1$'
touch "$T/release"
wait "$HOLDER" || die "the lease holder lost its leases across the reload: $(cat "$T/holder.log")"
check

# Log lines on stderr carry a priority prefix.
# (systemd-socket-activate's own lines come before it execs zonedd.)
awk '/^Execing /{z=1; next} z' "$T/zonedd.log" >"$T/zonedd-only.log"
grep -q '^<[0-7]>zonedd: ' "$T/zonedd-only.log" || die "no <N>-prefixed lines on stderr"
if grep -v '^<[0-7]>zonedd: ' "$T/zonedd-only.log" | grep -q .; then
	die "stderr lines without a priority prefix: $(grep -v '^<[0-7]>' "$T/zonedd-only.log" | head -n 3)"
fi
check
# Structured fields ride along: DEVICE=, ZONE=, LEASE=, CLIENT_PID=, CLIENT_UID=.
grep -q "lease 1 granted.*DEVICE=emu0 ZONE=[0-9]* LEASE=1 CLIENT_PID=[0-9]* CLIENT_UID=$(id -u)" \
	"$T/zonedd-only.log" || die "no structured fields on the lease grant line"
check

: >"$T/notify.log"
stop_zonedd
[ "$DAEMON_STATUS" -eq 0 ] || die "zonedd exited with status $DAEMON_STATUS on SIGTERM"
check
wait_for_line "$T/notify.log" '^STOPPING=1$'
pass
