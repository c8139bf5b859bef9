#!/bin/bash
# bench/smoke.sh: bench-rpc runs and its output is what bench/run and the
# README say, at one client and at several, on its own daemon and on one
# given with --socket. Times nothing (a benchmark is never a timed test):
# the phases last a few milliseconds, only the shape of the report counts.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

BENCH_RPC=$top_builddir/bench/bench-rpc
[ -x "$BENCH_RPC" ] || skip "no $BENCH_RPC"

# rpc ARGS: bench-rpc; output in $OUT, $ERR, status in $RC.
rpc() {
	timeout "$CALL_TIMEOUT" "$BENCH_RPC" "$@" >"$T/out" 2>"$T/err" </dev/null
	RC=$?
	OUT=$(cat "$T/out")
	ERR=$(cat "$T/err")
	[ "$RC" -ne 124 ] || die "bench-rpc $* timed out"
	NCHECKS=$((NCHECKS + 1))
}

# The keys bench/run and bench/README.md rely on, with sane values.
SHAPE='
phases = ["raw_hello", "rpc", "raw_cycle_fd", "raw_cycle", "lease_cycle"]
for p in phases:
    assert d[p]["ops"] > 0 and d[p]["ops_s"] > 0, (p, d[p])
    assert 0 < d[p]["median_us"] <= d[p]["p99_us"], (p, d[p])
assert d["lease_cycle"]["acquire_median_us"] > 0 and d["lease_cycle"]["release_median_us"] > 0
for k in ["rpc_over_raw_hello", "lease_cycle_over_raw_cycle_fd",
          "raw_cycle_fd_over_raw_cycle", "lease_cycle_over_rpc"]:
    r = d["ratios"][k]
    assert r["median"] > 0 and r["p99"] > 0 and r["throughput"] > 0, (k, r)
    assert len(r["median_rounds"]) == d["rounds"] == len(r["throughput_rounds"]), (k, r)
c = d["packets"]["cycle"]
assert c[0]["method"] == "lease.acquire" and c[0]["reply_fds"] >= 1, c
assert c[-1]["method"] == "lease.release" and c[-1]["reply_fds"] == 0, c
assert d["packets"]["hello"]["request_bytes"] > 0 and d["packets"]["hello"]["reply_bytes"] > 0
t = d["target"]
assert t["ratio"] == "lease_cycle_over_raw_cycle_fd" and t["met"] in (True, False), t
assert 0 <= d["other_load"] <= 1 and 0 <= d["steal"] <= 1, d
'

# One client, its own daemon: a ping-pong peer, the target on medians.
rpc --seconds 0.05 --rounds 1 --json
[ "$RC" -eq 0 ] || die "bench-rpc --json: exit $RC: $ERR"
pycheck "$SHAPE"'
assert d["clients"] == 1 and d["raw_peer"] == "pingpong" and d["cpus"] == "same", d
assert d["target"]["figure"] == "median" and d["target"]["limit"] == 1.5, d["target"]
assert abs(d["target"]["value"] - d["ratios"]["lease_cycle_over_raw_cycle_fd"]["median"]) < 1e-3
'

# Two clients over two rounds: the epoll peer, the target on throughput.
rpc --seconds 0.1 --rounds 2 --clients 2 --json
[ "$RC" -eq 0 ] || die "bench-rpc --clients 2 --json: exit $RC: $ERR"
pycheck "$SHAPE"'
assert d["clients"] == 2 and d["raw_peer"] == "epoll", d
assert d["target"]["figure"] == "throughput" and d["target"]["limit"] == 0.7, d["target"]
'

# A daemon of ours through --socket, several clients, the human table.
start_daemon --emulate "$T/emu,id=e0,size=256M,zone-size=8M,max-open=0,max-active=0"
rpc --socket "$T/sock" --device e0 --clients 3 --seconds 0.05 --rounds 1 --cpus none
[ "$RC" -eq 0 ] || die "bench-rpc --socket: exit $RC: $ERR"
check_match "$OUT" "*3 clients*other load on these CPUs: * % of their time*one epoll set over 3 socketpairs*lease cycle / raw cycle with fd*target (issue 12): lease cycles/s >= 0.7 x *" "human report"
# Its affinity was left as it was (--cpus none pins nothing); a device it
# lacks is the daemon's error.
rpc --socket "$T/sock" --device nosuch --seconds 0.05 --rounds 1 --cpus none
[ "$RC" -eq 1 ] || die "bench-rpc --device nosuch: exit $RC, want 1"
check_match "$ERR" "*zc_lease_acquire*" "unknown device"

# --only: one phase, for a profiler; nothing to compare it with.
rpc --only rpc --clients 2 --seconds 0.05 --rounds 1 --json
[ "$RC" -eq 0 ] || die "bench-rpc --only rpc: exit $RC: $ERR"
pycheck 'assert d["only"] == "rpc" and d["rpc"]["ops"] > 0 and "ratios" not in d and "raw_hello" not in d, d'

rpc --clients 0
[ "$RC" -eq 2 ] || die "bench-rpc --clients 0: exit $RC, want 2"
check_eq "$ERR" "bench-rpc: --clients 0: want 1..1024" "--clients 0"
pass
