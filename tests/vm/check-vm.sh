#!/bin/sh
# The VM suite (issue #4): boots the installed Debian kernel in QEMU with two
# real zoned block devices (a null_blk device and an emulated ZNS namespace)
# and runs tests/vm/vm-inner.sh inside, on the host's root shared read-only.
#
# Exit status: the inner suite's, 77 (skip) when QEMU, a suitable kernel or
# static busybox is missing, 99 when the VM itself failed (no result).
# Artefacts (initramfs, disk images, logs) go to $top_builddir/tests/vm/.
#
# Environment: ZONED_SKIP_VM=REASON skips; ZONED_VM_TIMEOUT (seconds, 240);
# ZONED_VM_ACCEL=kvm; ZONED_VM_QEMU, ZONED_VM_BUSYBOX (paths);
# ZONED_VM_INNER (another script to run in the VM, for debugging).
set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-$(pwd)}
srcdir=$(cd "$srcdir" && pwd -P) || exit 99
builddir=$(cd "$builddir" && pwd -P) || exit 99
out=$builddir/tests/vm
# The whole run, boot to power-off; the suite inside gets a little less so
# that it can still report.
# The suite takes about 120 s under TCG on two shared cores; 240 leaves room.
vm_timeout=${ZONED_VM_TIMEOUT:-240}
inner_timeout=$((vm_timeout - 25))

skip() {
	echo "SKIP: VM suite: $*"
	exit 77
}

[ -z "${ZONED_SKIP_VM:-}" ] || skip "ZONED_SKIP_VM is set: $ZONED_SKIP_VM"

# Tools. Debian: apt-get install qemu-system-x86 linux-image-amd64 busybox-static
qemu=${ZONED_VM_QEMU:-}
[ -n "$qemu" ] || qemu=$(command -v qemu-system-x86_64 2>/dev/null) ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
[ -x "$qemu" ] || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"

busybox=${ZONED_VM_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || skip "busybox is not installed (apt-get install busybox-static)"
# A dynamic busybox names its loader (PT_INTERP, right after the ELF
# headers); the initramfs has no libraries.
if head -c 1024 "$busybox" | grep -qa '/ld-linux'; then
	skip "$busybox is not statically linked (apt-get install busybox-static)"
fi

# The newest installed kernel that ships null_blk as a module or built in.
kver=
for k in $(printf '%s\n' /boot/vmlinuz-* | sed 's|^/boot/vmlinuz-||' | sort -V); do
	if [ -d "/lib/modules/$k/kernel/drivers/block/null_blk" ] ||
	   grep -q 'null_blk' "/lib/modules/$k/modules.builtin" 2>/dev/null; then
		kver=$k
	fi
done
[ -n "$kver" ] || skip "no kernel with null_blk under /boot and /lib/modules (apt-get install linux-image-amd64)"
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[ -r "$kernel" ] || skip "$kernel is not readable (run as root)"
[ -r "$moddir/modules.dep" ] || skip "$moddir/modules.dep is missing"
if [ -r "/boot/config-$kver" ] && ! grep -q '^CONFIG_BLK_DEV_ZONED=y' "/boot/config-$kver"; then
	skip "kernel $kver is built without CONFIG_BLK_DEV_ZONED"
fi

case "$srcdir$builddir" in
*[[:space:]\'\"\\]*) skip "source or build path contains spaces or quotes" ;;
esac

mkdir -p "$out" || exit 99
stage=$out/initramfs.d
initrd=$out/initramfs.cpio
console=$out/console.log
results=$out/results.log

# Modules: each wanted one with its dependencies from modules.dep (which
# lists them so that loading in reverse order works), built-ins skipped.
# "?" marks the ones whose tests skip without them.
# ext4 (which loads crc32c by name, not as a module dependency) and kyber:
# zonectl validate's mounted partition and scheduler (vm-validate-test.py).
wanted="virtio_pci 9pnet_virtio 9p nvme null_blk virtio_blk? zonefs? dm-mod? dm-flakey? crc32c_generic? ext4? kyber-iosched?"
norm() { echo "$1" | sed 's/-/_/g'; }
modpath() { # name -> path relative to $moddir, or nothing
	n=$(norm "$1")
	awk -F: -v n="$n" '{ p = $1; b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b);
		gsub(/-/, "_", b); if (b == n) { print p; exit } }' "$moddir/modules.dep"
}
moddeps() { # path -> its dependencies, load order
	awk -F: -v p="$1" '$1 == p { n = split($2, d, " "); for (i = n; i >= 1; i--) print d[i]; exit }' \
		"$moddir/modules.dep"
}
builtin() {
	n=$(norm "$1")
	sed 's|.*/||; s|\.ko$||; s|-|_|g' "$moddir/modules.builtin" 2>/dev/null | grep -qx "$n"
}

rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/modules" "$stage/proc" "$stage/sys" "$stage/dev" \
	"$stage/newroot" "$stage/keep" || exit 99
cp "$busybox" "$stage/bin/busybox" || exit 99
cp "$srcdir/tests/vm/vm-init.sh" "$stage/init" && chmod 755 "$stage/init" || exit 99

order=
add_mod() { # path: copies (decompressing) once, appends to the load order
	# (sh has no locals: am_* names keep clear of the caller's)
	am_name=$(basename "$1" | sed 's/\.ko.*$//')
	case " $order " in *" $am_name "*) return 0 ;; esac
	case "$1" in
	*.ko) cp "$moddir/$1" "$stage/modules/$am_name.ko" ;;
	*.ko.xz) xz -dc "$moddir/$1" > "$stage/modules/$am_name.ko" ;;
	*.ko.zst) zstd -qdc "$moddir/$1" > "$stage/modules/$am_name.ko" ;;
	*.ko.gz) gzip -dc "$moddir/$1" > "$stage/modules/$am_name.ko" ;;
	*) false ;;
	esac || { echo "cannot unpack $moddir/$1"; return 1; }
	order="$order $am_name"
}
for w in $wanted; do
	optional=false
	case "$w" in *\?) optional=true; w=${w%\?} ;; esac
	p=$(modpath "$w")
	if [ -z "$p" ]; then
		builtin "$w" && continue
		$optional && { echo "note: module $w not available; its tests will skip"; continue; }
		skip "kernel $kver has no module $w"
	fi
	for d in $(moddeps "$p"); do
		add_mod "$d" || skip "cannot unpack the module $d (install xz-utils/zstd)"
	done
	add_mod "$p" || skip "cannot unpack the module $p (install xz-utils/zstd)"
done

# The device geometry lives here and only here; the suite inside reads the
# expectations from the environment /init passes on.
nullb_params="nr_devices=1 zoned=1 zone_size=64 zone_nr_conv=2 gb=2 zone_max_open=8 zone_max_active=12 memory_backed=1"
zns_params="zoned=true,zoned.zone_size=64M,zoned.zone_capacity=48M,zoned.max_open=14,zoned.max_active=14"

{
	for m in $order; do
		case "$m" in
		null_blk) echo "$m $nullb_params" ;;
		*) echo "$m" ;;
		esac
	done
} > "$stage/modules/order"

cat > "$stage/vm.conf" <<EOF
ZVM_SRCDIR=$srcdir
ZVM_BUILDDIR=$builddir
ZVM_TIMEOUT=$inner_timeout
ZVM_INNER=${ZONED_VM_INNER:-$srcdir/tests/vm/vm-inner.sh}
ZVM_NULLB_EXPECT=zones=32,conv=2,zone_size=67108864,capacity=67108864,max_open=8,max_active=12
ZVM_ZNS_EXPECT=zones=16,conv=0,zone_size=67108864,capacity=50331648,max_open=14,max_active=14
EOF

(cd "$stage" && find . | LC_ALL=C sort | "$stage/bin/busybox" cpio -o -H newc > "$initrd" 2>/dev/null) ||
	{ echo "cannot build $initrd"; exit 99; }
rm -rf "$stage"

# Disks: a 1 GiB sparse ZNS namespace (16 zones), and a small plain virtio
# disk with one MBR partition, for the refusals of a non-zoned device and
# of a partition.
rm -f "$out/zns.img" "$out/plain.img"
truncate -s 1G "$out/zns.img" && truncate -s 64M "$out/plain.img" || exit 99
# Partition 1: type 0x83, LBA 2048, 129024 sectors (to the end); 0x55AA.
printf '\000\000\000\000\203\000\000\000\000\010\000\000\000\370\001\000' |
	dd of="$out/plain.img" bs=1 seek=446 conv=notrunc 2>/dev/null &&
printf '\125\252' | dd of="$out/plain.img" bs=1 seek=510 conv=notrunc 2>/dev/null || exit 99

# Software emulation: it boots in a few seconds and behaves the same
# everywhere. KVM is opt-in (ZONED_VM_ACCEL=kvm): a /dev/kvm that opens
# but does not run (nested virtualisation) hangs the guest silently.
case "${ZONED_VM_ACCEL:-tcg}" in
kvm) accel="-accel kvm" ;;
*) accel="-accel tcg,thread=multi" ;;
esac

rm -f "$console" "$results"
qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
		qemu_pid=
	fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM HUP

echo "VM: kernel $kver, $(basename "$qemu"), $(echo "$accel" | sed 's/-accel //g; s/,thread=multi//')"
start=$(date +%s)
# ttyS0 is the kernel's console, ttyS1 carries the suite's output alone.
# shellcheck disable=SC2086
timeout -k 5 "$vm_timeout" "$qemu" $accel -cpu max -m 2048 -smp 2 \
	-nodefaults -display none -no-reboot \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 quiet panic=-1" \
	-serial "file:$console" -serial "file:$results" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-drive "file=$out/zns.img,id=zns0,format=raw,if=none" \
	-device nvme,id=nvme0,serial=zns0 \
	-device "nvme-ns,drive=zns0,bus=nvme0,nsid=1,$zns_params" \
	-drive "file=$out/plain.img,id=plain0,format=raw,if=none" \
	-device virtio-blk-pci,drive=plain0 \
	</dev/null &
qemu_pid=$!
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=
secs=$(($(date +%s) - start))

# Markers: ZONED-VM-BEGIN, then the suite's output, then ZONED-VM-END rc=N.
if [ -f "$results" ]; then
	sed -n '/^ZONED-VM-BEGIN/,/^ZONED-VM-END/p' "$results" | sed '1d; /^ZONED-VM-END/d' | tr -d '\r'
fi
rc=$(sed -n 's/^ZONED-VM-END rc=\([0-9]*\).*/\1/p' "$results" 2>/dev/null | tr -d '\r' | tail -n 1)
if [ -z "$rc" ]; then
	if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
		echo "FAIL: the VM did not finish within ${vm_timeout}s"
	else
		echo "FAIL: the VM ended (qemu status $qemu_rc) without a result"
	fi
	echo "--- last lines of the VM console ($console):"
	tail -n 40 "$console" 2>/dev/null
	[ -f "$results" ] && { echo "--- partial suite output:"; tail -n 40 "$results"; }
	exit 99
fi
echo "VM: suite exit status $rc after ${secs}s"
exit "$rc"
