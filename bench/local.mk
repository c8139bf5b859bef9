# bench/: speed, measured as ratios against a baseline run side by side in
# the same process — never as timed tests, so nothing here is part of
# `make check`. `make bench` builds everything and runs bench/run.
noinst_PROGRAMS += bench/bench-rpc
bench_bench_rpc_SOURCES = bench/bench-rpc.c tests/fixture.c tests/fixture.h
bench_bench_rpc_CFLAGS = $(AM_CFLAGS) -pthread
bench_bench_rpc_LDADD = client/libzoned-client.la -lpthread
noinst_PROGRAMS += bench/bench-scale
bench_bench_scale_SOURCES = bench/bench-scale.c
bench_bench_scale_LDADD = client/libzoned-client.la
noinst_PROGRAMS += bench/bench-isolation
bench_bench_isolation_SOURCES = bench/bench-isolation.c
bench_bench_isolation_LDADD = client/libzoned-client.la
EXTRA_DIST += bench/run bench/README.md

# BENCH_ARGS go to bench-rpc, e.g. make bench BENCH_ARGS="--seconds 5 --rounds 5".
bench: all
	$(SHELL) $(top_srcdir)/bench/run $(abs_top_builddir) $(BENCH_ARGS)
.PHONY: bench

# The emulator's fence cost: make bench/bench-fence; bench/bench-fence DIR.
noinst_PROGRAMS += bench/bench-fence
bench_bench_fence_SOURCES = bench/bench-fence.c
bench_bench_fence_CFLAGS = $(AM_CFLAGS)
bench_bench_fence_LDADD = daemon/libzoned-daemon.la
