#!/bin/bash
# zonedd.conf as the daemon applies it: the file over the defaults, the
# command line over the file; a bad file refused with FILE:LINE: key: reason;
# SIGHUP (systemctl reload) adding a device while a client holds leases on
# another, applying new limits and groups, draining a removed device, and
# keeping the running configuration when the new file is broken.
. "${top_srcdir:-$(dirname "$0")/..}/tests/systemd-lib.sh"

[ -x "$ZONEDD" ] || skip "no $ZONEDD"

SPEC="size=64M,zone-size=4M,zone-capacity=4M,conv=1"
conf() { # conf FILE: writes stdin to FILE atomically, as an editor would
	cat >"$1.tmp" && mv -f "$1.tmp" "$1"
}
devices_ids() { # the ids device.list reports, space separated, sorted
	rpc_ok "$1" device.list
	jget '" ".join(sorted(x["id"] for x in d["devices"]))'
}

# --- Override order ---------------------------------------------------------

conf "$T/a.conf" <<EOF
{
  "socket": "$T/conf.sock",
  "state_dir": "$T/state-conf",
  "devices": [ { "id": "emuA", "emulate": "$T/a.img", "spec": "$SPEC" } ],
  "max_leases_per_connection": 1,
  "log_level": "debug"
}
EOF

# The file's socket, state directory, devices, limit and log level.
start_zonedd --config "$T/a.conf"
wait_sock "$T/conf.sock"
[ "$(devices_ids "$T/conf.sock")" = emuA ] || die "devices from the file: $OUT"
check
[ -f "$T/state-conf/generation" ] || die "state_dir of the file not used"
check
[ "$(python3 "$T/rpc.py" acquire-n "$T/conf.sock" emuA 3)" = "1 -32006" ] ||
	die "max_leases_per_connection 1 from the file not applied"
check
stop_zonedd
grep -q '^<7>zonedd: ' "$T/zonedd.log" || die "log_level debug from the file not applied"
check

# The command line wins over each of them.
: >"$T/zonedd.log"
start_zonedd --config "$T/a.conf" --socket "$T/cli.sock" --state-dir "$T/state-cli" \
	--emulate "$T/b.img,id=emuB,$SPEC" --max-leases 2 --log-level notice
wait_sock "$T/cli.sock"
[ ! -e "$T/conf.sock" ] || die "--socket did not override the file's socket"
check
[ -f "$T/state-cli/generation" ] || die "--state-dir did not override the file's state_dir"
check
[ "$(devices_ids "$T/cli.sock")" = emuB ] || die "--emulate did not replace the file's devices"
check
[ "$(python3 "$T/rpc.py" acquire-n "$T/cli.sock" emuB 3)" = "2 -32006" ] ||
	die "--max-leases 2 did not override the file's 1"
check
stop_zonedd
if grep -q '^<[67]>zonedd: ' "$T/zonedd.log"; then
	die "--log-level notice did not override the file's debug: $(grep '^<[67]>' "$T/zonedd.log" | head -n 2)"
fi
check

# --- Bad files --------------------------------------------------------------

# A file named explicitly must exist.
: >"$T/zonedd.log"
timeout 20 "$ZONEDD" --config "$T/missing.conf" --socket "$T/x.sock" --state-dir "$T/state-x" \
	>>"$T/zonedd.log" 2>&1 </dev/null
st=$?
[ "$st" -ne 0 ] && [ "$st" -ne 124 ] || die "zonedd ran with a missing --config file ($st)"
grep -q "$T/missing.conf: No such file or directory" "$T/zonedd.log" ||
	die "no reason for the missing --config file: $(cat "$T/zonedd.log")"
check

# A wrong value stops the start with FILE:LINE: key: reason.
conf "$T/bad.conf" <<EOF
{
  "socket": "$T/bad.sock",
  "max_wait_ms": "soon"
}
EOF
: >"$T/zonedd.log"
timeout 20 "$ZONEDD" --config "$T/bad.conf" --state-dir "$T/state-x" >>"$T/zonedd.log" 2>&1 </dev/null
st=$?
[ "$st" -ne 0 ] && [ "$st" -ne 124 ] || die "zonedd started with a bad configuration"
grep -q "$T/bad.conf:3: max_wait_ms: must be a whole number, not a string" "$T/zonedd.log" ||
	die "bad configuration not reported as FILE:LINE: key: reason: $(cat "$T/zonedd.log")"
[ ! -e "$T/bad.sock" ] || die "zonedd listened despite a bad configuration"
check

# A configuration that is not a regular file (a FIFO nobody writes) is
# refused at once, not waited on.
mkfifo "$T/fifo.conf"
: >"$T/zonedd.log"
timeout 10 "$ZONEDD" --config "$T/fifo.conf" --socket "$T/x.sock" --state-dir "$T/state-x" \
	>>"$T/zonedd.log" 2>&1 </dev/null
st=$?
[ "$st" -ne 124 ] || die "zonedd hung on a FIFO as its configuration"
[ "$st" -ne 0 ] || die "zonedd started with a FIFO as its configuration"
grep -q "$T/fifo.conf: is a FIFO, not a regular file" "$T/zonedd.log" ||
	die "no reason for the FIFO configuration: $(cat "$T/zonedd.log")"
check

# A relative device path is refused on the command line as in the file: it
# would mean something else from another working directory.
: >"$T/zonedd.log"
(cd "$T" && timeout 10 "$ZONEDD" --no-config --emulate rel.img --socket "$T/x.sock" \
	--state-dir "$T/state-x" >>"$T/zonedd.log" 2>&1 </dev/null)
st=$?
[ "$st" -eq 2 ] || die "zonedd --emulate rel.img: status $st, not 2"
grep -q -- "--emulate rel.img: not an absolute path" "$T/zonedd.log" ||
	die "no reason for the relative --emulate path: $(cat "$T/zonedd.log")"
[ ! -e "$T/rel.img" ] || die "a relative --emulate path created $T/rel.img"
check
conf "$T/rel.conf" <<EOF
{ "devices": [ { "id": "rel", "emulate": "rel.img" } ] }
EOF
: >"$T/zonedd.log"
timeout 10 "$ZONEDD" --config "$T/rel.conf" --socket "$T/x.sock" --state-dir "$T/state-x" \
	>>"$T/zonedd.log" 2>&1 </dev/null
[ $? -eq 1 ] || die "a relative emulate path in the file was not refused"
grep -q "$T/rel.conf:1: devices\[0\].emulate: 'rel.img' is not an absolute path" "$T/zonedd.log" ||
	die "no FILE:LINE for the relative path in the file: $(cat "$T/zonedd.log")"
check

# --- Reload -----------------------------------------------------------------

C=$T/reload.conf
S=$T/reload.sock
conf "$C" <<EOF
{
  "socket": "$S",
  "devices": [ { "id": "emuA", "emulate": "$T/ra.img", "spec": "$SPEC" } ],
  "max_leases_per_connection": 2
}
EOF
: >"$T/zonedd.log"
start_zonedd --config "$C" --state-dir "$T/state-reload"
wait_sock "$S"
[ "$(devices_ids "$S")" = emuA ] || die "reload test: initial devices $OUT"

# A client holds two leases on emuA across the reloads.
python3 "$T/rpc.py" hold "$S" emuA 2 "$T/held" "$T/release" 2>>"$T/holder.log" &
HOLDER=$!
BG_PIDS="$BG_PIDS $HOLDER"
wait_for_line "$T/held" .

# Add emuB, raise the limit.
conf "$C" <<EOF
{
  "socket": "$S",
  "devices": [
    { "id": "emuA", "emulate": "$T/ra.img", "spec": "$SPEC" },
    { "id": "emuB", "emulate": "$T/rb.img", "spec": "$SPEC" }
  ],
  "max_leases_per_connection": 3
}
EOF
kill -HUP "$DAEMON_PID"
for _ in $(seq 100); do
	[ "$(devices_ids "$S")" = "emuA emuB" ] && break
	sleep 0.1
done
[ "$(devices_ids "$S")" = "emuA emuB" ] || die "reload did not add emuB: $OUT"
check
[ "$(python3 "$T/rpc.py" acquire-n "$S" emuB 4)" = "3 -32006" ] ||
	die "reload did not apply max_leases_per_connection 3"
check
rpc_ok "$S" lease.list '{"all": true}'
[ "$(jget 'sorted(set(x["device"] for x in d["leases"] if x["label"] == "holder"))')" = '["emuA"]' ] ||
	die "the holder's leases after the reload: $OUT"
check

# A broken file keeps the running configuration (and the daemon).
printf '{\n  "devices": [\n' | conf "$C"
kill -HUP "$DAEMON_PID"
wait_for_line "$T/zonedd.log" "$C:3: unexpected end of file"
kill -0 "$DAEMON_PID" 2>/dev/null || die "zonedd died on a broken configuration at reload"
[ "$(devices_ids "$S")" = "emuA emuB" ] || die "a broken reload changed the devices: $OUT"
check

# A device served now cannot move: the file naming emuA at another path is
# refused with FILE:LINE: key: reason, and emuA stays where it is.
conf "$C" <<EOF
{
  "socket": "$S",
  "devices": [
    { "id": "emuA",
      "emulate": "$T/moved.img", "spec": "$SPEC" },
    { "id": "emuB", "emulate": "$T/rb.img", "spec": "$SPEC" }
  ],
  "max_leases_per_connection": 1
}
EOF
: >"$T/zonedd.log"
kill -HUP "$DAEMON_PID"
wait_for_line "$T/zonedd.log" "$C:5: devices\[0\].emulate: device 'emuA' is served from $T/ra.img;"
grep -q "keeping the running configuration" "$T/zonedd.log" ||
	die "the refused reload does not say the running configuration stays: $(cat "$T/zonedd.log")"
kill -0 "$DAEMON_PID" 2>/dev/null || die "zonedd died on a moved device at reload"
rpc_ok "$S" device.list
[ "$(jget '[x["path"] for x in d["devices"] if x["id"] == "emuA"]')" = "[\"$T/ra.img\"]" ] ||
	die "emuA moved at reload: $OUT"
[ ! -e "$T/moved.img" ] || die "the refused reload created $T/moved.img"
[ "$(python3 "$T/rpc.py" acquire-n "$S" emuB 4)" = "3 -32006" ] ||
	die "the refused reload changed the running limits"
check

# Remove emuA while its leases are held: it drains (no new leases) and is
# closed once the holder lets go.
conf "$C" <<EOF
{
  "socket": "$S",
  "devices": [ { "id": "emuB", "emulate": "$T/rb.img", "spec": "$SPEC" } ]
}
EOF
kill -HUP "$DAEMON_PID"
for _ in $(seq 100); do
	rpc_ok "$S" device.list
	[ "$(jget '[x["draining"] for x in d["devices"] if x["id"] == "emuA"]')" = '[true]' ] && break
	sleep 0.1
done
[ "$(jget '[x["draining"] for x in d["devices"] if x["id"] == "emuA"]')" = '[true]' ] ||
	die "emuA not draining after its removal: $OUT"
check
rpc "$S" lease.acquire '{"device": "emuA", "direct": false}'
[ "$RC" -eq 3 ] || die "a draining device granted a lease: $OUT"
check
touch "$T/release"
wait "$HOLDER" || die "the holder's leases did not survive the reloads: $(cat "$T/holder.log")"
check
for _ in $(seq 50); do
	[ "$(devices_ids "$S")" = emuB ] && break
	sleep 0.1
done
[ "$(devices_ids "$S")" = emuB ] || die "emuA not closed after its leases ended: $OUT"
check

# --- Groups on reload (needs root to act as another user) -------------------

# A python3 nobody may run (not one under root's home, as pyenv's).
NOBODY_PY=
for p in /usr/bin/python3 /usr/local/bin/python3; do
	[ -x "$p" ] && NOBODY_PY=$p && break
done
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 && [ -n "$NOBODY_PY" ] &&
   getent group daemon >/dev/null && getent passwd nobody >/dev/null; then
	NOBODY_GID=$(id -g nobody)
	NOBODY_GROUP=$(getent group "$NOBODY_GID" | cut -d: -f1)
	# nobody is in neither group "daemon" nor any admin group.
	conf "$C" <<EOF
{
  "socket": "$S",
  "devices": [ { "id": "emuB", "emulate": "$T/rb.img", "spec": "$SPEC" } ],
  "client_group": "daemon",
  "admin_group": ""
}
EOF
	kill -HUP "$DAEMON_PID"
	wait_for_line "$T/zonedd.log" "configuration reloaded"
	# The socket of a daemon that bound it itself keeps the mode it had;
	# opening it to all shows the daemon's own check.
	chmod 0711 "$T"
	chmod 0666 "$S"
	as_nobody() {
		OUT=$(timeout 30 setpriv --reuid=nobody --regid="$NOBODY_GID" --clear-groups \
			"$NOBODY_PY" "$T/rpc.py" call "$@" 2>"$T/rpc.err")
		RC=$?
	}
	chmod 0644 "$T/rpc.py"
	as_nobody "$S" daemon.hello
	[ "$RC" -eq 0 ] || die "hello as nobody: $RC $OUT $(cat "$T/rpc.err")"
	[ "$(jget 'd["client"]')" = false ] || die "nobody is a client outside the client group: $OUT"
	check
	as_nobody "$S" lease.acquire '{"device": "emuB", "direct": false}'
	[ "$RC" -eq 3 ] && [ "$(jget 'd["code"]')" = -32001 ] ||
		die "lease.acquire outside the client group: $OUT"
	check
	# Reload with nobody's group as the client group, then as the admin group.
	sed -i "s/\"client_group\": \"daemon\"/\"client_group\": \"$NOBODY_GROUP\"/" "$C"
	: >"$T/zonedd.log"
	kill -HUP "$DAEMON_PID"
	wait_for_line "$T/zonedd.log" "configuration reloaded"
	as_nobody "$S" lease.acquire '{"device": "emuB", "direct": false}'
	[ "$RC" -eq 0 ] || die "lease.acquire in the new client group: $OUT"
	check
	as_nobody "$S" zone.reset '{"device": "emuB", "zone": 1}'
	[ "$RC" -eq 3 ] && [ "$(jget 'd["code"]')" = -32001 ] ||
		die "zone.reset by a non-admin: $OUT"
	check
	sed -i "s/\"admin_group\": \"\"/\"admin_group\": \"$NOBODY_GROUP\"/" "$C"
	: >"$T/zonedd.log"
	kill -HUP "$DAEMON_PID"
	wait_for_line "$T/zonedd.log" "configuration reloaded"
	as_nobody "$S" zone.reset '{"device": "emuB", "zone": 1}'
	[ "$RC" -eq 0 ] || die "zone.reset by the new admin group: $OUT"
	check
	# A group that does not exist is refused; the running groups stay.
	sed -i "s/\"admin_group\": \"$NOBODY_GROUP\"/\"admin_group\": \"zoned-no-such-group\"/" "$C"
	kill -HUP "$DAEMON_PID"
	wait_for_line "$T/zonedd.log" "admin group 'zoned-no-such-group' does not exist"
	as_nobody "$S" zone.reset '{"device": "emuB", "zone": 1}'
	[ "$RC" -eq 0 ] || die "a refused reload dropped the admin group: $OUT"
	check
else
	echo "$NAME: not root (or no setpriv, /usr/bin/python3, nobody, group daemon):" \
		"groups on reload not checked" >&2
fi

stop_zonedd
[ "$DAEMON_STATUS" -eq 0 ] || die "zonedd exited with status $DAEMON_STATUS"
pass
