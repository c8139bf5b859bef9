#!/bin/sh
# Inside the VM (started by check-vm.sh, run by vm-init.sh in a chroot of the
# host's root): the kernel backend's tests on both zoned devices, then zonedd
# and zonectl against the same devices, then zonectl validate on every disk. Its output goes back to the host.
#
# Devices: /dev/nullb0 (null_blk, 2 conventional zones, limits 8/12),
# /dev/nvme0n1 (QEMU ZNS, capacity 48 of 64 MiB, limits 14/14), /dev/vda
# (a plain virtio disk with one partition, /dev/vda1).
set -u

b=${top_builddir:?}
s=${top_srcdir:?}
NULLB=/dev/nullb0
ZNS=/dev/nvme0n1
npass=0
nfail=0
nskip=0

pass() { npass=$((npass + 1)); echo "PASS: $*"; }
failed() { nfail=$((nfail + 1)); echo "FAIL: $*"; }
skipped() { nskip=$((nskip + 1)); echo "SKIP: $*"; }

# run NAME CMD...: one test, timed
run() {
	run_name=$1
	shift
	echo "=== $run_name"
	t0=$(date +%s%N)
	if "$@"; then r=0; else r=1; fi
	t=$(( ($(date +%s%N) - t0) / 100000000 ))
	t="$((t / 10)).$((t % 10))s"
	if [ $r -eq 0 ]; then pass "$run_name ($t)"; else failed "$run_name ($t)"; fi
}

echo "vm: kernel $(uname -r), $(nproc) CPUs"
for d in $NULLB $ZNS /dev/vda /dev/vda1; do
	[ -b "$d" ] || { echo "vm: $d is missing"; exit 1; }
done

# Part 1: the kernel backend (daemon/kernel.c)

run "kernel backend refuses what is not a whole zoned device" \
	"$b/tests/vm/vm-kernel-test" --refusals /dev/vda /dev/vda1
run "kernel backend on $NULLB" "$b/tests/vm/vm-kernel-test" $NULLB "$ZVM_NULLB_EXPECT"
run "kernel backend on $ZNS" "$b/tests/vm/vm-kernel-test" $ZNS "$ZVM_ZNS_EXPECT"

# Part 2: zonedd and zonectl on the same devices

zonedd=$b/daemon/zonedd
zonectl=$b/client/zonectl
if ! "$zonedd" --help > /dev/null 2>&1 || ! "$zonectl" --help > /dev/null 2>&1; then
	skipped "zonedd and zonectl: $zonedd or $zonectl is not built yet (placeholder)"
elif ! command -v python3 > /dev/null; then
	skipped "zonedd and zonectl: python3 is needed to drive them and read their JSON"
else
	# tee: a timeout still shows how far it got
	python3 -u "$s/tests/vm/vm-daemon-test.py" 2>&1 | tee /tmp/vm-daemon.out
	npass=$((npass + $(grep -c '^PASS:' /tmp/vm-daemon.out)))
	nfail=$((nfail + $(grep -c '^FAIL:' /tmp/vm-daemon.out)))
	# a crash before the summary still counts as a failure
	grep -q '^daemon: [0-9]* passed, 0 failed' /tmp/vm-daemon.out || nfail=$((nfail + 1))
fi

# Part 3: device faults (after part 2: its "no device error" check would
# see the errors this part causes on purpose)

if "$zonedd" --help > /dev/null 2>&1 && command -v python3 > /dev/null; then
	python3 -u "$s/tests/vm/vm-faults-test.py" 2>&1 | tee /tmp/vm-faults.out
	npass=$((npass + $(grep -c '^PASS:' /tmp/vm-faults.out)))
	nfail=$((nfail + $(grep -c '^FAIL:' /tmp/vm-faults.out)))
	nskip=$((nskip + $(grep -c '^SKIP:' /tmp/vm-faults.out)))
	grep -q '^faults: [0-9]* passed, 0 failed' /tmp/vm-faults.out || nfail=$((nfail + 1))
fi

# Part 4: zonectl validate and info --sysfs, without the daemon (last: it
# mounts, stacks device-mapper on and changes the scheduler of the devices)

if command -v python3 > /dev/null; then
	python3 -u "$s/tests/vm/vm-validate-test.py" 2>&1 | tee /tmp/vm-validate.out
	npass=$((npass + $(grep -c '^PASS:' /tmp/vm-validate.out)))
	nfail=$((nfail + $(grep -c '^FAIL:' /tmp/vm-validate.out)))
	nskip=$((nskip + $(grep -c '^SKIP:' /tmp/vm-validate.out)))
	grep -q '^validate: [0-9]* passed, 0 failed' /tmp/vm-validate.out || nfail=$((nfail + 1))
else
	skipped "zonectl validate: python3 is needed to drive it and read its JSON"
fi

echo "vm: $npass passed, $nfail failed, $nskip skipped"
[ $nfail -eq 0 ]
