# bench/: speed, measured as ratios against a baseline run side by side in
# the same process — never as timed tests: `make check` only runs
# bench/smoke.sh, which checks that bench-rpc runs and reports what it should
# (a few seconds, nothing timed). `make bench` builds everything and runs
# bench/run.
noinst_PROGRAMS += bench/bench-rpc
bench_bench_rpc_SOURCES = bench/bench-rpc.c bench/bench-util.h tests/fixture.c tests/fixture.h
bench_bench_rpc_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) -pthread
# proto/: the raw phases send and receive with the library's own transport.
bench_bench_rpc_LDADD = client/libzoned-client.la proto/libzoned-proto.la $(JSONC_LIBS) -lpthread
noinst_PROGRAMS += bench/bench-scale
bench_bench_scale_SOURCES = bench/bench-scale.c bench/bench-util.h
bench_bench_scale_LDADD = client/libzoned-client.la
noinst_PROGRAMS += bench/bench-isolation
bench_bench_isolation_SOURCES = bench/bench-isolation.c bench/bench-util.h
bench_bench_isolation_LDADD = client/libzoned-client.la
EXTRA_DIST += bench/run bench/README.md
TESTS += bench/smoke.sh
dist_check_SCRIPTS += bench/smoke.sh

# BENCH_ARGS go to bench/run: --json, or bench-rpc's --seconds and --rounds,
# e.g. make bench BENCH_ARGS="--seconds 5 --rounds 5"; BENCH_CLIENTS="1 8 64"
# (the default) picks bench-rpc's client counts.
bench: all
	$(SHELL) $(top_srcdir)/bench/run $(abs_top_builddir) $(BENCH_ARGS)
.PHONY: bench

# The emulator's fence cost: make bench/bench-fence; bench/bench-fence DIR.
noinst_PROGRAMS += bench/bench-fence
bench_bench_fence_SOURCES = bench/bench-fence.c
bench_bench_fence_CFLAGS = $(AM_CFLAGS)
bench_bench_fence_LDADD = daemon/libzoned-daemon.la
