#!/bin/busybox sh
# /init of the VM suite's initramfs: loads the modules, mounts the host's root
# (9p, read-only), runs the suite in a chroot of it with its output on ttyS1
# between markers, and powers off whatever happens.
/bin/busybox --install -s /bin
export PATH=/bin

out=/dev/ttyS1
rc=99
finish() {
	echo "ZONED-VM-END rc=$rc" > "$out"
	sync
	poweroff -f
}
trap finish EXIT
trap 'rc=98; exit' INT TERM

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /vm.conf

echo "ZONED-VM-BEGIN" > "$out"
while read -r mod args; do
	# shellcheck disable=SC2086
	insmod "/modules/$mod.ko" $args || echo "vm: insmod $mod failed" > "$out"
done < /modules/order

r=/newroot
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot "$r" &&
   ! mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot "$r"; then
	echo "vm: cannot mount the host's root over 9p" > "$out"
	exit
fi

# A build or source tree under /tmp would be hidden by the tmpfs below:
# keep them aside and move them back on top.
keep=
n=0
for d in "$ZVM_BUILDDIR" "$ZVM_SRCDIR"; do
	case "$d" in
	/tmp|/tmp/*)
		n=$((n + 1))
		mkdir -p "/keep/$n" && mount --bind "$r$d" "/keep/$n" && keep="$keep $n:$d" ;;
	esac
done
mount --bind /dev "$r/dev"
mount -t devpts devpts "$r/dev/pts" 2>/dev/null
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
mount -t tmpfs -o mode=755 tmpfs "$r/run"
for k in $keep; do
	mkdir -p "$r${k#*:}" && mount --move "/keep/${k%%:*}" "$r${k#*:}"
done

# The suite runs with the host's tools; a clean environment, and a timeout
# of its own so that a hang still reports.
chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/tmp TERM=dumb LC_ALL=C \
	top_srcdir="$ZVM_SRCDIR" top_builddir="$ZVM_BUILDDIR" \
	ZVM_NULLB_EXPECT="$ZVM_NULLB_EXPECT" ZVM_ZNS_EXPECT="$ZVM_ZNS_EXPECT" \
	/usr/bin/timeout -k 3 "$ZVM_TIMEOUT" /bin/sh -c 'cd "$top_builddir" && exec /bin/sh "$1"' \
	vm-inner "$ZVM_INNER" > "$out" 2>&1 < /dev/null
rc=$?
[ "$rc" = 124 ] && echo "vm: the suite timed out after ${ZVM_TIMEOUT}s" > "$out"
exit
