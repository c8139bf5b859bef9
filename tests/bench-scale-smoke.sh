#!/bin/bash
# tests/bench-scale-smoke.sh: bench/bench-scale runs and reports what
# bench/run and bench/README.md say, on tiny devices. Times nothing (a
# benchmark is never a timed test): only the shape of the report counts.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

BENCH_SCALE=$top_builddir/bench/bench-scale
[ -x "$BENCH_SCALE" ] || skip "no $BENCH_SCALE"

# scale ARGS: bench-scale on the build's zonedd; output in $OUT, status $RC.
scale() {
	timeout 120 "$BENCH_SCALE" --zonedd "$ZONEDD" --tmp "$T" "$@" >"$T/out" 2>"$T/err" </dev/null
	RC=$?
	OUT=$(cat "$T/out")
	ERR=$(cat "$T/err")
	[ "$RC" -ne 124 ] || die "bench-scale $* timed out"
	NCHECKS=$((NCHECKS + 1))
}

scale --zones 100,300 --rounds 2 --cycles 10 --varied --cpu -1 --json
[ "$RC" -eq 0 ] || die "bench-scale --json: exit $RC: $ERR"
pycheck '
assert d["rounds"] == 2 and d["cycles"] == 10 and d["cpu"] == -1, d
s = d["sizes"]
assert [x["zones"] for x in s] == [100, 300], s
keys = ["start_fresh_ms", "start_state_ms", "rss_bytes_per_zone", "report_ms",
        "report_varied_ms", "cycle_us"]
for x in s:
    for k in keys:
        assert x[k] > 0, (k, x)
for k in keys:
    assert abs(s[1][k + "_ratio"] - s[1][k] / s[0][k]) < 1e-2 * s[1][k + "_ratio"] + 1e-3, (k, s)
    assert k + "_ratio" not in s[0], s[0]
'
# Nothing of its own left behind, daemons included.
check_eq "$(ls "$T" | grep -c zoned-bench-scale || true)" "0" "temporary directories removed"
check_eq "$(pgrep -f -- "--config $T/zoned-bench-scale" || true)" "" "no zonedd left"

# The human table, pinned (the default CPU 0).
scale --zones 50,100 --rounds 1 --cycles 5
[ "$RC" -eq 0 ] || die "bench-scale: exit $RC: $ERR"
check_match "$OUT" "*ratio = this size / 50 zones*start-up, fresh (ms)*RSS per zone (bytes)*report, all zones (ms)*acquire+release (us)*(x*" "human report"

scale --zones 2
[ "$RC" -eq 2 ] || die "bench-scale --zones 2: exit $RC, want 2"
timeout 20 "$BENCH_SCALE" --zones 100 >/dev/null 2>&1
RC=$?
NCHECKS=$((NCHECKS + 1))
[ "$RC" -eq 2 ] || die "bench-scale without --zonedd: exit $RC, want 2"
pass
