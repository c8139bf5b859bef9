#!/bin/bash
# End to end: the real zonedd on hostile and damaged state directories
# (issue 13, items 5 and 15): directories another user owns or can write,
# symlinks planted under the names the daemon writes, a foreign image, token
# generation files holding garbage, a truncated backing file, a full state
# filesystem. Parts that need root say so and are skipped without it.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

ROOT=no
[ "$(id -u)" -eq 0 ] && ROOT=yes

# run_zonedd STATE [ARGS]: runs zonedd in the foreground until it exits
# (for start-ups that must fail); status in $ST, output in $T/run.log.
run_zonedd() {
	local state=$1
	shift
	timeout 20 "$ZONEDD" --no-config --socket "$T/sock2" --state-dir "$state" "$@" \
		>"$T/run.log" 2>&1 </dev/null
	ST=$?
}

# gen_of_last_start: the generation the last start took, from its log line.
gen_of_last_start() {
	sed -n 's/.*ready: .* generation \([0-9]*\).*/\1/p' "$T/zonedd.log" | tail -n 1
}

# --- Item 5: the state directory ----------------------------------------
if [ "$ROOT" = yes ] && getent passwd nobody >/dev/null; then
	victim1=$T/root-file1
	victim2=$T/root-file2
	echo precious >"$victim1"
	echo precious >"$victim2"

	# A state directory created by another user (nobody), with symlinks
	# to root's files under the names the daemon writes and an empty file
	# of root's where the image goes: refused as a whole, nothing touched.
	U=$T/userstate
	setpriv --reuid=nobody --regid=nogroup --clear-groups mkdir -m 0755 "$U" 2>/dev/null ||
		{ mkdir "$U" && chown nobody "$U"; }
	ln -s "$victim1" "$U/.generation.tmp"
	ln -s "$victim2" "$U/emu0.img.convert"
	: >"$U/emu0.img"
	run_zonedd "$U"
	check_eq "$ST" 1 "user-owned state directory: exit status"
	grep -q "refusing state directory: $U is owned by uid $(id -u nobody), not by the daemon's user (uid 0)" \
		"$T/run.log" || die "user-owned state directory: $(cat "$T/run.log")"
	check_eq "$(cat "$victim1")$(cat "$victim2")" "preciousprecious" "victims untouched"
	check_eq "$(stat -c %s "$U/emu0.img")" 0 "root's empty file not grown"

	# Writable by group or others: refused too.
	W=$T/openstate
	mkdir -m 0777 "$W"
	chmod 0777 "$W"
	run_zonedd "$W"
	check_eq "$ST" 1 "world-writable state directory: exit status"
	grep -q "$W is writable by others (mode 0777)" "$T/run.log" ||
		die "world-writable state directory: $(cat "$T/run.log")"

	# A symlink as the state directory is not followed.
	ln -s "$T/somewhere" "$T/linkstate"
	mkdir -m 0750 "$T/somewhere"
	run_zonedd "$T/linkstate"
	check_eq "$ST" 1 "symlinked state directory: exit status"
	grep -q "a symbolic link is not accepted" "$T/run.log" || die "symlinked: $(cat "$T/run.log")"

	# Our own directory with the same symlinks planted (as a leftover of
	# an earlier compromise would be): never followed; the daemon
	# replaces the names with files of its own.
	R=$T/rootstate
	mkdir -m 0750 "$R"
	ln -s "$victim1" "$R/.generation.tmp"
	ln -s "$victim2" "$R/emu0.img.convert"
	"$ZONEDD" --no-config --socket "$T/sock" --state-dir "$R" >>"$T/zonedd.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	for _ in $(seq 100); do
		[ -S "$T/sock" ] && zc hello && [ "$RC" -eq 0 ] && break
		sleep 0.1
	done
	ok hello
	stop_daemon
	check_eq "$(cat "$victim1")$(cat "$victim2")" "preciousprecious" "symlink targets untouched"
	[ ! -L "$R/.generation.tmp" ] && [ ! -L "$R/emu0.img.convert" ] || die "symlinks left in place"
	[ -d "$R/emu0.img" ] && [ ! -L "$R/emu0.img" ] || die "emu0.img is not the device directory"

	# An existing image (or metadata) that is not the daemon's user's,
	# or is a symlink, is refused.
	F=$T/foreignimg
	mkdir -m 0750 "$F"
	: >"$F/emu0.img"
	chown nobody "$F/emu0.img"
	run_zonedd "$F"
	check_eq "$ST" 1 "foreign image: exit status"
	grep -q "emulated device $F/emu0.img is owned by uid $(id -u nobody), not by the daemon's user" "$T/run.log" ||
		die "foreign image: $(cat "$T/run.log")"
	check_eq "$(stat -c %s "$F/emu0.img")" 0 "foreign image not grown"
	rm "$F/emu0.img"
	ln -s "$victim1" "$F/emu0.img"
	run_zonedd "$F"
	check_eq "$ST" 1 "symlinked image: exit status"
	grep -q "emulated device path is a symbolic link" "$T/run.log" || die "symlinked image: $(cat "$T/run.log")"
	check_eq "$(cat "$victim1")" "precious" "symlinked image target untouched"
else
	echo "SKIP (part): $NAME: state directory ownership attacks need root and user 'nobody'" >&2
fi

# --- Item 15: token generation files --------------------------------------
start_daemon
g1=$(gen_of_last_start)
check_eq "$g1" 1 "first generation"
stop_daemon
check_eq "$(cat "$T/state/generation")" 1 "generation file"
check_eq "$(cat "$T/state/generation.copy")" 1 "generation copy"
last=$g1
for bad in -1 4294967296 4294967295 garbage "" "12 34" 0; do
	printf '%s' "$bad" >"$T/state/generation"
	printf '%s' "$bad" >"$T/state/generation.copy"
	start_daemon
	g=$(gen_of_last_start)
	stop_daemon
	[ -n "$g" ] && [ "$g" -gt "$last" ] && [ "$g" -lt 4294967295 ] ||
		die "generation file '$bad': generation '$g' after $last (reuse or overflow)"
	grep -q "generation is damaged\|generation.copy is damaged" "$T/zonedd.log" ||
		die "generation file '$bad': not logged"
	last=$g
done
# One damaged copy: the other one is used, counting on.
printf 'garbage' >"$T/state/generation"
start_daemon
g=$(gen_of_last_start)
stop_daemon
check_eq "$g" $((last + 1)) "one damaged copy"

# --- Item 15: a truncated zone file --------------------------------------
IMG=$T/trunc
DEV="$IMG,id=trunc,size=16M,zone-size=1M,zone-capacity=1M,conv=1"
start_daemon --emulate "$DEV"
head -c 8192 /dev/urandom >"$T/in"
ok write trunc --zone 3 --input "$T/in"
ok write trunc --zone 12 --input "$T/in"
stop_daemon
truncate -s 4096 "$IMG/seq-000012" # what a lessee can do with ftruncate
start_daemon --emulate "$DEV"
ok --json report trunc
# The wp never moves back (the cut part reads as zeros), the rest is
# intact, and the zone goes on from its wp.
pycheck '
z = {x["index"]: x for x in d["zones"]}
assert z[3]["cond"] == "closed" and z[3]["wp"] == (3 << 20) + 8192, z[3]
assert z[12]["cond"] == "closed" and z[12]["wp"] == (12 << 20) + 8192, z[12]
assert z[13]["cond"] == "empty", z[13]'
check_eq "$(head -c 4096 "$T/in" | cmp - "$IMG/seq-000012" && echo same)" same "zone 12 kept its first block"
ok write trunc --zone 12 --input "$T/in"
ok write trunc --zone 4 --input "$T/in"
stop_daemon

# --- Item 15: a full state filesystem -------------------------------------
if [ "$ROOT" = yes ] && mkdir "$T/small" && mount -t tmpfs -o size=2M zoned-test "$T/small" 2>/dev/null; then
	M=$T/small
	chmod 0750 "$M"
	# Start once (the default 4 GiB sparse image is created), fill the
	# filesystem, restart: the daemon serves, refuses new leases with a
	# log line, and grants them again once space is back.
	"$ZONEDD" --no-config --socket "$T/sock" --state-dir "$M" >>"$T/zonedd.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	for _ in $(seq 100); do [ -S "$T/sock" ] && break; sleep 0.1; done
	ok hello
	grep -q "can grow by .* MiB but its filesystem has .* MiB free" "$T/zonedd.log" ||
		{ umount "$M"; die "no warning about the sparse image on a small filesystem"; }
	stop_daemon
	dd if=/dev/zero of="$M/fill" bs=64k 2>/dev/null
	"$ZONEDD" --no-config --socket "$T/sock" --state-dir "$M" >>"$T/zonedd.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	for _ in $(seq 100); do [ -S "$T/sock" ] && zc hello && [ "$RC" -eq 0 ] && break; sleep 0.1; done
	ok hello
	ok report emu0 --count 3
	grep -q "cannot persist the token generation in $M: No space left on device; serving" \
		"$T/zonedd.log" || { umount "$M"; die "full state fs: not logged"; }
	echo abc >"$T/in"
	zc write emu0 --input "$T/in"
	[ "$RC" -ne 0 ] || { umount "$M"; die "full state fs: a lease was granted without a persisted generation"; }
	case $ERR in
	*"cannot record a new token generation"*) ;;
	*) umount "$M"; die "full state fs: the refusal does not say why: $ERR" ;;
	esac
	rm "$M/fill"
	sleep 1.1
	zc write emu0 --input "$T/in"
	[ "$RC" -eq 0 ] || { umount "$M"; die "full state fs: no lease once space is back: $ERR"; }
	grep -q "leases are granted again" "$T/zonedd.log" || { umount "$M"; die "recovery not logged"; }
	stop_daemon
	umount "$M"
else
	echo "SKIP (part): $NAME: the full state filesystem case needs root and tmpfs mounts" >&2
fi
pass
