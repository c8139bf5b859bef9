#!/bin/bash
# The units as make install puts them into a DESTDIR pass systemd-analyze
# verify (with their man pages found) and stay below an exposure level of
# systemd-analyze security; the sysusers.d and tmpfiles.d entries apply
# cleanly to a scratch root.
. "${top_srcdir:-$(dirname "$0")/..}/tests/systemd-lib.sh"

ANALYZE=$(command -v systemd-analyze) ||
	skip "systemd-analyze is not installed (package systemd)"
: "${ZONED_UNITDIR:?run from make check}"

D=$T/dest
install_destdir "$D"
UNITS=$D$ZONED_UNITDIR
[ -f "$UNITS/zonedd.service" ] || die "no zonedd.service in $UNITS"
[ -f "$UNITS/zonedd.socket" ] || die "no zonedd.socket in $UNITS"
check

# The installed unit names the installed binary.
grep -qx "ExecStart=$ZONED_SBINDIR/zonedd" "$UNITS/zonedd.service" ||
	die "ExecStart is not $ZONED_SBINDIR/zonedd: $(grep ExecStart= "$UNITS/zonedd.service")"
check
if grep -n '@[a-z_]*@' "$UNITS/zonedd.service" "$UNITS/zonedd.socket"; then
	die "unsubstituted @variables@ in the installed units"
fi
check

# verify checks that ExecStart= exists and is executable; the binary lives
# in the DESTDIR, so the copies verified point there. Nothing else changes.
mkdir -p "$T/units"
sed "s|^ExecStart=$ZONED_SBINDIR/|ExecStart=$D$ZONED_SBINDIR/|" "$UNITS/zonedd.service" \
	>"$T/units/zonedd.service"
cp "$UNITS/zonedd.socket" "$T/units/zonedd.socket"
[ -x "$D$ZONED_SBINDIR/zonedd" ] || die "no $D$ZONED_SBINDIR/zonedd"

# Documentation=man:... is checked with man(1) over the installed pages.
MAN=--man=no
if command -v man >/dev/null 2>&1; then
	MAN=--man=yes
	export MANPATH=$D$ZONED_MANDIR
else
	echo "$NAME: man(1) is not installed: Documentation= is not checked" >&2
fi
# verify loads the units into a manager in test mode; that needs no running
# systemd, but it may print warnings and still exit 0: any output fails.
"$ANALYZE" verify "$MAN" "$T/units/zonedd.socket" "$T/units/zonedd.service" >"$T/verify.out" 2>&1
st=$?
[ "$st" -eq 0 ] && [ ! -s "$T/verify.out" ] ||
	die "systemd-analyze verify: status $st: $(cat "$T/verify.out")"
check

# A mistake in the sandboxing (a misspelt setting is ignored with a
# warning, above) must not quietly raise the exposure: 2.5 of 10 at most.
if "$ANALYZE" security --help 2>/dev/null | grep -q -- --threshold; then
	"$ANALYZE" security --offline=yes --threshold=25 "$T/units/zonedd.service" \
		>"$T/security.out" 2>&1 ||
		die "systemd-analyze security: $(tail -n 5 "$T/security.out")"
	check
else
	echo "$NAME: systemd-analyze security has no --threshold here: exposure not checked" >&2
fi

# sysusers.d creates both groups in a scratch root, tmpfiles.d the
# directories with their modes.
R=$T/root
mkdir -p "$R/etc"
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers --root="$R" "$D$ZONED_SYSUSERSDIR/zoned.conf" >"$T/sysusers.out" 2>&1 ||
		die "systemd-sysusers: $(cat "$T/sysusers.out")"
	grep -q '^zoned:x:[0-9]*:$' "$R/etc/group" || die "no group zoned: $(cat "$R/etc/group")"
	grep -q '^zoned-admin:x:[0-9]*:$' "$R/etc/group" || die "no group zoned-admin"
	check
else
	echo "$NAME: systemd-sysusers is not installed: sysusers.d not checked" >&2
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	TMPF=$D$ZONED_TMPFILESDIR/zoned.conf
	if [ "$(id -u)" -ne 0 ]; then
		# Only root may chown: "-" is the invoking user, the rest stays.
		echo "$NAME: not root: tmpfiles.d ownership not checked" >&2
		sed 's/ root  *root / -    -    /' "$TMPF" >"$T/tmpfiles.conf"
		TMPF=$T/tmpfiles.conf
	fi
	systemd-tmpfiles --create --root="$R" "$TMPF" \
		>"$T/tmpfiles.out" 2>&1 || die "systemd-tmpfiles: $(cat "$T/tmpfiles.out")"
	[ "$(stat -c %a "$R/run/zoned")" = 755 ] || die "/run/zoned mode $(stat -c %a "$R/run/zoned")"
	[ "$(stat -c %a "$R/var/lib/zoned")" = 750 ] || die "/var/lib/zoned mode"
	check
else
	echo "$NAME: systemd-tmpfiles is not installed: tmpfiles.d not checked" >&2
fi
pass
