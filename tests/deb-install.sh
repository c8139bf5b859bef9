#!/bin/sh
# The Debian packages, built and installed for real (`make check-deb`, run by
# .ci/quickstart test on its throwaway machine): dpkg-buildpackage -b out of
# a copy of the tree (make distdir plus debian/), lintian with no error, then
# dpkg -i of the four packages into this machine, their files checked, the
# installed zonedd serving an emulated device to the installed zonectl
# (status, report, a write and a read through a lease), a program built
# against the installed library, and dpkg --purge taking it all away again.
#
# Needs root (dpkg -i) and Debian's packaging tools; skips (77) without.
# Leaves the machine as it found it: packages purged, the groups the
# packages' sysusers.d entry created removed when they did not exist before.
# Environment: ZONED_DEB_KEEP=1 keeps the work directory.
set -u

srcdir=$(cd "${top_srcdir:-$(dirname "$0")/..}" && pwd)
builddir=$(cd "${top_builddir:-.}" && pwd)
PKGS="zonedd zonectl libzoned-client0 libzoned-client-dev"
npass=0

skip() {
	echo "SKIP: deb-install: $*"
	exit 77
}
die() {
	echo "FAIL: deb-install: $*" >&2
	exit 1
}
ok() {
	npass=$((npass + 1))
}

[ -d "$srcdir/debian" ] || skip "no debian/ in $srcdir (it is not in the release tarball)"
[ -f /etc/debian_version ] || skip "not a Debian system"
[ "$(id -u)" -eq 0 ] || skip "dpkg -i needs root (run on a throwaway machine, as .ci/quickstart does)"
for t in dpkg-buildpackage dh lintian python3; do
	command -v "$t" >/dev/null 2>&1 ||
		skip "$t is missing (apt-get install dpkg-dev debhelper lintian python3)"
done
for p in $PKGS; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		skip "$p is installed already; this test would replace it"
	fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/zoned-deb.XXXXXX") || die "mktemp"
DAEMON=
installed=false
groups_before=$(getent group zoned zoned-admin | cut -d: -f1 | tr '\n' ' ')
cleanup() {
	[ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
	if $installed; then
		# shellcheck disable=SC2086
		dpkg --purge $PKGS >"$T/purge.log" 2>&1 || cat "$T/purge.log" >&2
	fi
	for g in zoned-admin zoned; do
		case " $groups_before " in
		*" $g "*) ;;
		*) getent group "$g" >/dev/null && groupdel "$g" ;;
		esac
	done
	[ -n "${ZONED_DEB_KEEP:-}" ] && echo "deb-install: work directory $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A copy of what make dist would ship, and the packaging beside it: the
# build never sees this tree's build directories or a stale configure.
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")
src=$T/zoned-$version
make -s -C "$builddir" distdir distdir="$src" >"$T/distdir.log" 2>&1 ||
	{ cat "$T/distdir.log" >&2; die "make distdir failed"; }
cp -a "$srcdir/debian" "$src/" || die "cannot copy debian/"
echo "deb-install: dpkg-buildpackage -us -uc -b in $src"
# The test suite ran in the build tree already: nocheck unless asked.
(cd "$src" && DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-nocheck} dpkg-buildpackage -us -uc -b) \
	>"$T/build.log" 2>&1 || { tail -n 60 "$T/build.log" >&2; die "dpkg-buildpackage failed"; }
arch=$(dpkg --print-architecture)
debver=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
debs=
for p in $PKGS; do
	f=$T/${p}_${debver}_$arch.deb
	[ -f "$f" ] || die "no $f"
	debs="$debs $f"
done
ok
# dpkg-gensymbols fails the build on a symbol missing from the symbols file
# (and warns on a new one): the symbols file matches the library.
grep -q 'dpkg-gensymbols: warning' "$T/build.log" &&
	{ grep -A20 'dpkg-gensymbols: warning' "$T/build.log" >&2; die "symbols file out of date"; }
ok

echo "deb-install: lintian"
changes=$T/zoned_${debver}_$arch.changes
lintian --fail-on error "$changes" >"$T/lintian.log" 2>&1
lrc=$?
cat "$T/lintian.log"
[ $lrc -eq 0 ] || die "lintian reports errors (status $lrc)"
ok

# Files, by package, before installing.
contents() { dpkg-deb -c "$T/${1}_${debver}_$arch.deb" | awk '{ print $6 }' | sed 's|^\./|/|'; }
has() { # has PACKAGE PATH...
	hp=$1
	shift
	contents "$hp" >"$T/contents"
	for f in "$@"; do
		grep -qx "$f" "$T/contents" || die "$hp has no $f"
	done
	ok
}
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
has zonedd /usr/sbin/zonedd /lib/systemd/system/zonedd.service /lib/systemd/system/zonedd.socket \
	/usr/lib/sysusers.d/zoned.conf /usr/lib/tmpfiles.d/zoned.conf /etc/zoned/zonedd.conf \
	/usr/share/man/man8/zonedd.8.gz /usr/share/man/man5/zonedd.conf.5.gz
has zonectl /usr/bin/zonectl /usr/share/man/man8/zonectl.8.gz \
	/usr/share/bash-completion/completions/zonectl
has libzoned-client0 "/usr/lib/$ma/libzoned-client.so.0" "/usr/lib/$ma/libzoned-client.so.0.1.0"
has libzoned-client-dev /usr/include/zoned/client.h "/usr/lib/$ma/libzoned-client.so" \
	"/usr/lib/$ma/pkgconfig/zoned-client.pc" /usr/share/man/man3/libzoned-client.3.gz
dpkg-deb -I "$T/libzoned-client0_${debver}_$arch.deb" symbols | grep -q '^ zc_connect@ZONED_CLIENT_0 ' ||
	die "libzoned-client0 ships no symbols file"
ok
dpkg-deb -I "$T/zonedd_${debver}_$arch.deb" conffiles | grep -qx /etc/zoned/zonedd.conf ||
	die "/etc/zoned/zonedd.conf is not a conffile"
ok
# The maintainer scripts dh_installsystemd, dh_installsysusers and
# dh_installtmpfiles wrote.
dpkg-deb -e "$T/zonedd_${debver}_$arch.deb" "$T/ctrl" || die "dpkg-deb -e"
for w in 'deb-systemd-helper' 'zonedd.socket' 'systemd-sysusers' 'systemd-tmpfiles'; do
	grep -q "$w" "$T/ctrl/postinst" || die "zonedd's postinst does not mention $w"
done
ok

echo "deb-install: dpkg -i$debs"
installed=true
# shellcheck disable=SC2086
dpkg -i $debs >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; die "dpkg -i failed"; }
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" | grep -q 'ok installed' || die "$p is not installed"
done
ok
[ -x /usr/sbin/zonedd ] && [ -x /usr/bin/zonectl ] || die "programs not installed"
ok
if command -v systemd-sysusers >/dev/null 2>&1; then
	getent group zoned >/dev/null && getent group zoned-admin >/dev/null ||
		die "the groups zoned and zoned-admin were not created at install"
	ok
fi
/usr/bin/zonectl --version | grep -q "$version" || die "installed zonectl --version"
/usr/sbin/zonedd --version | grep -q "$version" || die "installed zonedd --version"
man -w zonectl 2>/dev/null | grep -q '^/usr/share/man/man8/zonectl.8.gz$' ||
	[ ! -x /usr/bin/man ] || die "man -w zonectl"
ok

# The installed daemon on an emulated device, through its documented
# options only, and the installed zonectl against it.
S=$T/zonedd.sock
/usr/sbin/zonedd --no-config --socket "$S" --state-dir "$T/state" \
	--emulate "$T/emu0,id=emu0,size=256M,zone-size=16M,conv=1" >"$T/zonedd.log" 2>&1 &
DAEMON=$!
i=0
until /usr/bin/zonectl --socket "$S" hello >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 200 ] || { cat "$T/zonedd.log" >&2; die "the installed zonedd did not answer"; }
	kill -0 "$DAEMON" 2>/dev/null || { cat "$T/zonedd.log" >&2; die "the installed zonedd exited"; }
	sleep 0.05
done
ok
zc() { /usr/bin/zonectl --socket "$S" "$@"; }
zc status >"$T/status" || die "zonectl status"
grep -q 'emu0' "$T/status" || die "status does not show emu0: $(cat "$T/status")"
ok
zc report emu0 --json >"$T/report.json" || die "zonectl report"
python3 - "$T/report.json" <<'EOF' || die "report: not 16 zones, 1 conventional, all empty"
import json, sys
zones = json.load(open(sys.argv[1]))["zones"]
assert len(zones) == 16, len(zones)
assert [z["type"] for z in zones].count("conventional") == 1
assert all(z["cond"] in ("empty", "not-wp") for z in zones)
EOF
ok
head -c 100000 /dev/urandom >"$T/data"
zc write emu0 --input "$T/data" --json >"$T/write.json" || die "zonectl write"
zone=$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); print(w["zone"])' \
	"$T/write.json") || die "write: no zone in $(cat "$T/write.json")"
zc read emu0 "$zone" --length 100000 | cmp - "$T/data" || die "read back differs from what was written"
ok
# A program built against the installed library and its pkg-config file.
if command -v cc >/dev/null 2>&1; then
	cat >"$T/prog.c" <<'EOF'
#include <stdio.h>
#include <zoned/client.h>
int main(int argc, char **argv)
{
	struct zc_hello h;
	zc_client *c;

	if (argc < 2 || zc_connect(argv[1], &c) < 0 || zc_hello(c, &h) < 0)
		return 1;
	printf("protocol %u\n", (unsigned)h.protocol);
	zc_close(c);
	return 0;
}
EOF
	# shellcheck disable=SC2046
	cc -o "$T/prog" "$T/prog.c" $(pkg-config --cflags --libs zoned-client) ||
		die "cannot build against the installed library"
	"$T/prog" "$S" | grep -q '^protocol ' || die "the program built against the package failed"
	# /lib is /usr/lib on a merged-/usr system; either names the package's
	ldd "$T/prog" | grep -Eq "libzoned-client\.so\.0 => (/usr)?/lib/$ma/libzoned-client\.so\.0 " ||
		die "the program does not use the installed library"
	ok
fi
kill "$DAEMON"
wait "$DAEMON"
drc=$?
DAEMON=
[ $drc -eq 0 ] || die "the installed zonedd exited with status $drc on SIGTERM"
ok

echo "deb-install: dpkg --purge $PKGS"
# shellcheck disable=SC2086
dpkg --purge $PKGS >"$T/purge.log" 2>&1 || { cat "$T/purge.log" >&2; die "dpkg --purge failed"; }
installed=false
for f in /usr/sbin/zonedd /usr/bin/zonectl /usr/include/zoned/client.h /etc/zoned/zonedd.conf \
	/lib/systemd/system/zonedd.service "/usr/lib/$ma/libzoned-client.so.0"; do
	[ ! -e "$f" ] || die "$f is still there after purge"
done
ok
echo "PASS: deb-install: $npass checks"
