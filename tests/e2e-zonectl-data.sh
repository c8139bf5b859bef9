#!/bin/bash
# End to end: zonectl read and write at the edges of a zone (issue 13:
# reads stop at the capacity and default to the written data, --hexdump
# collapses repeats like hexdump -C; writes are checked against the free
# capacity before anything is written, --split spans zones, a write that
# stops half way says what landed where; a full zone is named as such).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

MiB=1048576
# tiny: 4 MiB zones with 3 MiB capacity; wee: four 1 MiB zones.
TINY="$T/tiny,id=tiny,size=64M,zone-size=4M,zone-capacity=3M,conv=1"
WEE="$T/wee,id=wee,size=4M,zone-size=1M,zone-capacity=1M,conv=0"
start_daemon --emulate "$TINY" --emulate "$WEE"

written() { # DEV ZONE: bytes written in the zone
	zc --json report "$1" --from "$2" --count 1
	printf '%s' "$OUT" | python3 -c 'import json,sys; z=json.load(sys.stdin)["zones"][0]; print(min(z["wp"]-z["start"], z["capacity"]))'
}

# --- Reads ----------------------------------------------------------------
printf 'abc\n' >"$T/abc"
ok write tiny --zone 2 --input "$T/abc"
ok read tiny 2 --hexdump
check_eq "$OUT" "$(cat "$T/abc" /dev/zero | head -c 4096 | hexdump -C)" "hexdump of 4 KiB"
ok read tiny 2 --length 1M --hexdump
check_eq "$(printf '%s\n' "$OUT" | wc -l)" 4 "hexdump --length 1M collapses the zeros"
check_eq "$(printf '%s\n' "$OUT" | sed -n 3p)" "*" "hexdump star line"
check_eq "$(printf '%s\n' "$OUT" | tail -n 1)" "00100000" "hexdump end offset"
# The default is what was written, and a finished zone ends at its
# capacity, not its length.
"$ZONECTL" --socket "$T/sock" read tiny 2 | cmp - <(cat "$T/abc" /dev/zero | head -c 4096) ||
	die "read tiny 2: not the written 4 KiB"
ok finish tiny 2
check_eq "$("$ZONECTL" --socket "$T/sock" read tiny 2 | wc -c)" $((3 * MiB)) "read of a full zone"
check_eq "$("$ZONECTL" --socket "$T/sock" read tiny 2 --length 4M | wc -c)" $((3 * MiB)) "read --length past capacity"
check_eq "$("$ZONECTL" --socket "$T/sock" read tiny 2 --offset 3M | wc -c)" 0 "read at the capacity"
fails 1 read tiny 2 --offset 3145729
check_match "$ERR" "*capacity*" "read past the capacity"

# --- Writes checked before writing ------------------------------------------
head -c $((4 * MiB)) /dev/urandom >"$T/4m"
fails 1 write tiny --zone 3 --input "$T/4m"
check_eq "$ERR" "zonectl: write tiny: the input is 4 MiB, more than a zone's capacity (3 MiB): nothing written (--split spreads it over several zones)" "oversized file"
check_eq "$(written tiny 3)" 0 "oversized file wrote nothing"
"$ZONECTL" --socket "$T/sock" write tiny --zone 3 <"$T/4m" 2>"$T/err2" && die "oversized stdin file accepted"
check_match "$(cat "$T/err2")" "*the input is 4 MiB, more than*" "oversized stdin file"
cat "$T/4m" | "$ZONECTL" --socket "$T/sock" write tiny --zone 3 2>"$T/err2" && die "oversized pipe accepted"
check_eq "$(cat "$T/err2")" "zonectl: write tiny: the input is larger than a zone's capacity (3 MiB): nothing written (--split spreads it over several zones)" "oversized pipe"
check_eq "$(written tiny 3)" 0 "oversized pipe wrote nothing"
head -c $((2 * MiB)) "$T/4m" >"$T/2m"
ok write tiny --zone 3 --input "$T/2m"
fails 1 write tiny --zone 3 --input "$T/2m"
check_eq "$ERR" "zonectl: write tiny zone 3: the input is 2 MiB, the zone has 1 MiB free of 3 MiB: nothing written (--split spreads it over several zones)" "no room in zone"
check_eq "$(written tiny 3)" $((2 * MiB)) "no room: nothing written"
# Without --zone the allocator picks a zone with room for all of it.
ok --json write tiny --input "$T/2m"
pycheck 'assert d["offset"] == 0 and d["length"] == 2 << 20, d'

# --- A full zone --------------------------------------------------------------
ok finish tiny 6
fails 1 write tiny --zone 6 --input "$T/abc"
check_eq "$ERR" "zonectl: write tiny zone 6: the zone is full (3 MiB written): nothing written (reset it, or write to another zone)" "write to a full zone"

# --- --split --------------------------------------------------------------------
ok --json write tiny --zone 3 --split --input "$T/4m"
pycheck '
p = d["pieces"]
assert d["length"] == 4 << 20, d
assert len(p) == 2 and p[0]["zone"] == 3 and p[0]["offset"] == 2 << 20 and p[0]["length"] == 1 << 20, p
assert p[1]["offset"] == 0 and p[1]["length"] == 3 << 20, p'
Z2=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pieces"][1]["zone"])')
{ "$ZONECTL" --socket "$T/sock" read tiny 3 --offset 2M; "$ZONECTL" --socket "$T/sock" read tiny "$Z2"; } |
	cmp - "$T/4m" || die "--split: data read back differs"
# Through a pipe, in text mode.
head -c $((1536 * 1024)) /dev/urandom >"$T/1.5m"
cat "$T/1.5m" | "$ZONECTL" --socket "$T/sock" write wee --split >"$T/out2" || die "split pipe"
check_eq "$(wc -l <"$T/out2")" 2 "split pipe: two pieces"
check_match "$(sed -n 1p "$T/out2")" "wrote 1048576 bytes (1048576 with padding) to wee zone * at offset 0 *" "split pipe piece 1"
check_match "$(sed -n 2p "$T/out2")" "wrote 524288 bytes (524288 with padding) to wee zone * at offset 0 *" "split pipe piece 2"
# Running out of zones half way: what landed where is on the error line.
head -c $((3 * MiB)) /dev/urandom >"$T/3m"
fails 1 write wee --split --input "$T/3m"
check_match "$ERR" "zonectl: lease wee: no zone available; 2621440 bytes landed: wee zone * at offset * (device offset *, * bytes), wee zone *, wee zone *" "split out of zones"
check_eq "$(printf '%s' "$ERR" | grep -o 'wee zone' | wc -l)" 3 "split out of zones: three pieces"
check_match "$ERR" "*at offset 524288 (device offset *, 524288 bytes)*" "split out of zones: the partial zone"

pass
