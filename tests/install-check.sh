#!/bin/bash
# make install DESTDIR=... puts every file where it belongs (binaries,
# library, header, pkg-config file, units, sysusers/tmpfiles entries, man
# pages, completion, example configuration); a program built with
# `pkg-config --cflags --libs zoned-client` against that DESTDIR connects to
# the build tree's zonedd and leases, writes and releases a zone; make
# uninstall takes every file away again.
. "${top_srcdir:-$(dirname "$0")/..}/tests/systemd-lib.sh"

[ -x "$ZONEDD" ] || skip "no $ZONEDD"
: "${ZONED_PREFIX:?run from make check}"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
CC=${CC:-cc}
command -v "${CC%% *}" >/dev/null 2>&1 || skip "no C compiler ($CC)"

D=$T/dest
install_destdir "$D"

expect() { # expect FILE...: each must exist in the DESTDIR
	for f in "$@"; do
		[ -e "$D$f" ] || die "make install did not install $f (in $D)"
		check
	done
}
expect "$ZONED_SBINDIR/zonedd" "$ZONED_BINDIR/zonectl" \
	"$ZONED_INCLUDEDIR/zoned/client.h" \
	"$ZONED_LIBDIR/pkgconfig/zoned-client.pc" \
	"$ZONED_UNITDIR/zonedd.service" "$ZONED_UNITDIR/zonedd.socket" \
	"$ZONED_SYSUSERSDIR/zoned.conf" "$ZONED_TMPFILESDIR/zoned.conf" \
	"$ZONED_MANDIR/man8/zonedd.8" "$ZONED_MANDIR/man8/zonectl.8" \
	"$ZONED_MANDIR/man5/zonedd.conf.5" "$ZONED_MANDIR/man3/libzoned-client.3" \
	"$ZONED_BASHCOMPDIR/zonectl" "$ZONED_SYSCONFDIR/zoned/zonedd.conf"
ls "$D$ZONED_LIBDIR"/libzoned-client.so.* >/dev/null 2>&1 ||
	die "no libzoned-client.so.N in $ZONED_LIBDIR"
check
[ -x "$D$ZONED_SBINDIR/zonedd" ] && [ -x "$D$ZONED_BINDIR/zonectl" ] ||
	die "installed programs are not executable"
check
# Only the public header is installed.
[ "$(cd "$D$ZONED_INCLUDEDIR" && find . -type f | sort)" = "./zoned/client.h" ] ||
	die "headers installed besides zoned/client.h: $(cd "$D$ZONED_INCLUDEDIR" && find . -type f)"
check
# The library exports its API and nothing else (the proto helpers stay in).
if command -v nm >/dev/null 2>&1; then
	so=$(ls "$D$ZONED_LIBDIR"/libzoned-client.so.*.*.* | head -n 1)
	nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^zc_' |
		grep -v '^LIBZONED' >"$T/stray-symbols"
	[ ! -s "$T/stray-symbols" ] || die "exported non-API symbols: $(head -n 5 "$T/stray-symbols")"
	check
fi
# The installed programs run from the DESTDIR.
"$D$ZONED_SBINDIR/zonedd" --version | grep -q '^zonedd ' || die "installed zonedd --version"
check
# The man pages are well-formed roff.
if command -v groff >/dev/null 2>&1; then
	for m in man8/zonedd.8 man8/zonectl.8 man5/zonedd.conf.5 man3/libzoned-client.3; do
		w=$(LC_ALL=C groff -t -man -Tutf8 -ww -z "$D$ZONED_MANDIR/$m" 2>&1)
		[ -z "$w" ] || die "groff warns about $m: $w"
		check
	done
fi

# A client built against the installed pkg-config file and library.
cat >"$T/client.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zoned/client.h>

static void fail(const char *what, int r, zc_client *c)
{
	fprintf(stderr, "%s: %s (%s)\n", what, zc_strerror(r), c ? zc_last_error(c) : "");
	exit(1);
}

int main(int argc, char **argv)
{
	struct zc_lease_opts o;
	struct zc_hello h;
	zc_client *c = NULL;
	zc_lease *l = NULL;
	void *buf;
	uint64_t wp;
	int r;

	if (argc != 2)
		return 2;
	r = zc_connect(argv[1], &c);
	if (r < 0)
		fail("connect", r, NULL);
	r = zc_hello(c, &h);
	if (r < 0)
		fail("hello", r, c);
	printf("protocol %u version %s\n", h.protocol, h.version);
	zc_lease_opts_init(&o);
	o.device = "emu0";
	o.label = "install-check";
	o.buffered = true;
	r = zc_lease_acquire(c, &o, &l);
	if (r < 0)
		fail("lease", r, c);
	wp = zc_lease_wp(l);
	buf = calloc(1, zc_lease_block_size(l));
	if (!buf)
		return 1;
	memcpy(buf, "installed", 9);
	r = zc_lease_append(l, buf, zc_lease_block_size(l));
	if (r < 0)
		fail("append", r, c);
	r = zc_lease_sync(l);
	if (r < 0)
		fail("sync", r, c);
	if (zc_lease_wp(l) != wp + zc_lease_block_size(l)) {
		fprintf(stderr, "wp %llu, want %llu\n", (unsigned long long)zc_lease_wp(l),
			(unsigned long long)(wp + zc_lease_block_size(l)));
		return 1;
	}
	printf("leased %s zone %u, wrote %u bytes\n", zc_lease_device(l), zc_lease_zone(l),
	       zc_lease_block_size(l));
	r = zc_lease_release(l, ZC_RELEASE_RESET);
	if (r < 0)
		fail("release", r, c);
	free(buf);
	zc_close(c);
	return 0;
}
EOF
# PKG_CONFIG_LIBDIR: only the installed .pc, never one of the system's;
# PKG_CONFIG_SYSROOT_DIR maps its -I and -L into the DESTDIR.
flags=$(PKG_CONFIG_LIBDIR="$D$ZONED_LIBDIR/pkgconfig" PKG_CONFIG_PATH= \
	PKG_CONFIG_SYSROOT_DIR="$D" pkg-config --cflags --libs zoned-client) ||
	die "pkg-config zoned-client failed"
case $flags in
*"-I$D$ZONED_INCLUDEDIR"*"-L$D$ZONED_LIBDIR"*) ;;
*) die "pkg-config flags do not point into the DESTDIR: $flags" ;;
esac
check
# shellcheck disable=SC2086
# A sanitizer build's library needs the program built the same way.
$CC -std=c11 -Wall -Wextra -Werror ${SAN_CFLAGS:-} -o "$T/client" "$T/client.c" $flags \
	-Wl,-rpath,"$D$ZONED_LIBDIR" >"$T/cc.log" 2>&1 || die "build against the DESTDIR: $(cat "$T/cc.log")"
check
if command -v ldd >/dev/null 2>&1; then
	ldd "$T/client" | grep -q "libzoned-client.so.* => $D$ZONED_LIBDIR/" ||
		die "the client does not load the installed library: $(ldd "$T/client")"
	check
fi

cat >"$T/zonedd.conf" <<EOF
{ "devices": [ { "id": "emu0", "emulate": "$T/emu0.img",
                 "spec": "size=64M,zone-size=4M,zone-capacity=4M,conv=1" } ] }
EOF
start_zonedd --config "$T/zonedd.conf" --socket "$T/sock" --state-dir "$T/state"
wait_sock "$T/sock"
timeout 30 "$T/client" "$T/sock" >"$T/client.out" 2>&1 || die "client: $(cat "$T/client.out")"
grep -q '^protocol 3 version ' "$T/client.out" || die "client hello: $(cat "$T/client.out")"
grep -q '^leased emu0 zone [0-9]*, wrote [0-9]* bytes$' "$T/client.out" ||
	die "client lease: $(cat "$T/client.out")"
check

# The installed bash completion: commands, options, names, and the device ids
# of the running daemon (from the build tree's zonectl).
complete_words() { # complete_words WORD...: what completing the last word offers
	PATH=$top_builddir/client:$PATH bash -c '
		. "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_zonectl zonectl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		[ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
		_ "$D$ZONED_BASHCOMPDIR/zonectl" "$@"
}
[ "$(complete_words zonectl re)" = "read report reset " ] || die "completion of 're': $(complete_words zonectl re)"
check
[ "$(complete_words zonectl --socket "$T/sock" info '')" = "emu0 " ] ||
	die "completion of device ids: '$(complete_words zonectl --socket "$T/sock" info '')'"
check
[ "$(ZONED_SOCKET=$T/sock complete_words zonectl report e)" = "emu0 " ] ||
	die "completion of device ids with \$ZONED_SOCKET"
check
[ "$(complete_words zonectl report emu0 --cond full,e)" = "full,empty full,explicit-open " ] ||
	die "completion of --cond lists: $(complete_words zonectl report emu0 --cond full,e)"
check
[ "$(complete_words zonectl reset emu0 --f)" = "--force " ] || die "completion of reset options"
check
[ "$(complete_words zonectl --socket "$T/nothing-here" info '')" = "" ] ||
	die "completion without a daemon offered something"
check

stop_zonedd
[ "$DAEMON_STATUS" -eq 0 ] || die "zonedd exited with status $DAEMON_STATUS"

# An edited configuration survives a second install and an uninstall.
echo '{ "log_level": "debug" }' >"$D$ZONED_SYSCONFDIR/zoned/zonedd.conf"
install_destdir "$D"
grep -q debug "$D$ZONED_SYSCONFDIR/zoned/zonedd.conf" || die "make install replaced an edited zonedd.conf"
check
flock "$top_builddir/.install-test.lock" "${MAKE:-make}" -C "$top_builddir" uninstall \
	DESTDIR="$D" >"$T/uninstall.log" 2>&1 || die "make uninstall: $(tail -n 20 "$T/uninstall.log")"
[ "$(cd "$D" && find . -type f)" = "./${ZONED_SYSCONFDIR#/}/zoned/zonedd.conf" ] ||
	die "make uninstall left: $(cd "$D" && find . -type f | head -n 10)"
check
pass
