#!/bin/bash
# A program builds and runs against the build tree through pkg-config,
# before anything is installed: PKG_CONFIG_PATH=BUILDDIR/client finds
# zoned-client-uninstalled.pc.
set -u
: "${top_builddir:=.}"
NAME=pkgconfig-uninstalled
command -v pkg-config >/dev/null || { echo "SKIP: $NAME: no pkg-config"; exit 77; }
CC=${CC:-cc}
command -v "$CC" >/dev/null || { echo "SKIP: $NAME: no C compiler $CC"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/zoned-$NAME.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
die() { echo "FAIL: $NAME: $*" >&2; exit 1; }

B=$(cd "$top_builddir" && pwd)
export PKG_CONFIG_PATH=$B/client
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
flags=$(pkg-config --cflags --libs zoned-client) || die "pkg-config does not find zoned-client in $B/client"
case $flags in *"$B"*) ;; *) die "flags do not point into the build tree: $flags" ;; esac
[ "$(pkg-config --modversion zoned-client)" = "$(sed -n 's/^Version: //p' "$B/client/zoned-client.pc")" ] ||
	die "version differs from zoned-client.pc"
cat >"$T/t.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <zoned/client.h>
int main(void)
{
	zc_client *c;
	int r = zc_connect("/nonexistent/zoned.sock", &c);

	printf("%d %s\n", r, zc_strerror(r));
	return r == -ENOENT ? 0 : 1;
}
C
# A sanitizer build's library needs its runtime first in the program.
extra=
if command -v readelf >/dev/null && readelf -d "$B/client/.libs/libzoned-client.so" 2>/dev/null | grep -q libasan; then
	extra="-fsanitize=address,undefined"
fi
# shellcheck disable=SC2086
"$CC" $extra -o "$T/t" "$T/t.c" $flags || die "does not build with: $flags"
out=$("$T/t") || die "program failed: $out"
[ "$out" = "-2 No such file or directory" ] || die "program printed: $out"
echo "PASS: $NAME"
