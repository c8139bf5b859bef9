#!/bin/bash
# End to end: the real zonedd, killed by the emulator's fault injection
# (ZONED_EMUL_FAULT=crash:STEP:N) at every durable step of a zone operation
# driven through zonectl (fences included: every lease that ends is fenced),
# restarted without the fault: the zone report must then agree with the
# zone files (issue 13, item 3).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

IMG=$T/crash
DEV="$IMG,id=crash,size=16M,zone-size=1M,zone-capacity=1M,conv=1,max-open=3,max-active=4"

# Report == data: no zone file past its wp, no wp over a hole or zeros
# (every byte written here is non-zero; a finished zone may read zeros past
# its data), no fence copy left behind.
check_truth() {
	ok --json report crash
	IMG=$IMG WHAT="$1" pycheck '
import os
for x in d["zones"]:
    if x["type"] == "conventional" or x["cond"] in ("read-only", "offline"):
        continue
    f = "%s/seq-%06d" % (env["IMG"], x["index"])
    assert not os.path.exists(f + ".tmp"), "%s: %s.tmp left behind" % (env["WHAT"], f)
    s = x["start"]
    wp = x["capacity"] if x["cond"] == "full" else x["wp"] - s
    data = b""
    if os.path.exists(f):
        size = os.stat(f).st_size
        assert size <= wp, "%s: zone %d: file of %d bytes past wp +%d" % (env["WHAT"], x["index"], size, wp)
        with open(f, "rb") as h:
            data = h.read(wp)
    data += bytes(wp - len(data))
    if x["cond"] != "full":
        assert 0 not in data, "%s: zone %d (%s, wp +%d): zeros under the wp" % (env["WHAT"], x["index"], x["cond"], wp)'
}

blocks() { # blocks N: $T/in holds N KiB of non-zero bytes
	head -c $(($1 * 1024)) /dev/zero | tr '\0' 'Z' >"$T/in"
}

# The state every run starts from: zone 2 closed with 8 KiB, zone 3 with
# 4 KiB, zone 4 with 12 KiB, the rest empty.
prepare() {
	rm -rf "$IMG"
	start_daemon --emulate "$DEV"
	blocks 8
	ok write crash --zone 2 --input "$T/in"
	blocks 4
	ok write crash --zone 3 --input "$T/in"
	blocks 12
	ok write crash --zone 4 --input "$T/in"
	stop_daemon
}

op_write() { blocks 16; zc write crash --zone 3 --input "$T/in"; }
op_reset() { zc reset crash 2; }
op_reset_range() { zc reset crash 2 --count 3; }
op_finish() { zc finish crash 4; }
op_open() { zc open crash 3; }

crashes=0
for op in op_write op_reset op_reset_range op_finish op_open; do
	for step in data-sync discard meta-write meta-sync dir-sync fence-copy fence-rename unlink; do
		for n in 1 2 3 4; do
			what="$op crash:$step:$n"
			prepare
			export ZONED_EMUL_FAULT=crash:$step:$n
			start_daemon --emulate "$DEV"
			unset ZONED_EMUL_FAULT
			"$op"
			# The release after a write is asynchronous: give the
			# daemon a moment to reach the step.
			for _ in $(seq 20); do
				kill -0 "$DAEMON_PID" 2>/dev/null || break
				sleep 0.05
			done
			if kill -0 "$DAEMON_PID" 2>/dev/null; then
				stop_daemon # the operation has no Nth such step
				break
			fi
			wait "$DAEMON_PID"
			st=$?
			DAEMON_PID=
			check_eq "$st" 137 "$what: zonedd killed by SIGKILL"
			grep -q "fault injection: crash after $step #$n" "$T/zonedd.log" ||
				die "$what: no fault injection log line"
			crashes=$((crashes + 1))
			# The crash left the writer's lease in the table; with
			# no grace it is released at once (what this test
			# checks is the emulator, not the reclaim).
			start_daemon --emulate "$DEV" --grace-ms 0
			check_truth "$what"
			stop_daemon
			check_eq "$DAEMON_STATUS" 0 "$what: clean stop after the restart"
		done
	done
done
[ "$crashes" -ge 10 ] || die "only $crashes crashes injected"
echo "$NAME: $crashes crashes injected"

# A bad spec is refused clearly at start.
export ZONED_EMUL_FAULT=crash:nowhere
"$ZONEDD" --no-config --socket "$T/sock" --state-dir "$T/state" --emulate "$DEV" \
	>"$T/bad.log" 2>&1 </dev/null
st=$?
unset ZONED_EMUL_FAULT
check_eq "$st" 1 "bad fault spec: exit status"
grep -q "ZONED_EMUL_FAULT='crash:nowhere': unknown step" "$T/bad.log" ||
	die "bad fault spec: $(cat "$T/bad.log")"
pass
