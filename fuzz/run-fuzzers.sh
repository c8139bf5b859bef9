#!/bin/sh
# Builds the libFuzzer targets in a build directory of their own (clang,
# --enable-fuzzer: ASan + UBSan + coverage) and runs each for a bounded time
# on a copy of its seed corpus, so the tree is never modified.
#   fuzz/run-fuzzers.sh [TARGET...]     default: message config json
# Environment:
#   FUZZ_SECONDS     run time per target (default 60)
#   FUZZ_BUILD_DIR   build directory (default ./build-fuzz)
#   FUZZ_WORK_DIR    corpus copies, logs and crash inputs (default
#                    FUZZ_BUILD_DIR/fuzz-work); kept afterwards
#   FUZZ_ARGS        more libFuzzer options, e.g. "-jobs=2 -workers=2"
#   CC               the compiler (default clang)
# Exits non-zero, naming the input that crashed, if a target finds anything.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
work=${FUZZ_WORK_DIR:-$build/fuzz-work}
seconds=${FUZZ_SECONDS:-60}
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2
targets=${*:-message config json}

cd "$top"
[ -x configure ] || autoreconf -fi
mkdir -p "$build"
cd "$build"
if [ ! -f Makefile ]; then
	CC=${CC:-clang} "$top/configure" --enable-werror --enable-fuzzer >configure.log 2>&1 ||
		{ tail -n 20 configure.log; echo "run-fuzzers: configure failed (log: $build/configure.log)" >&2; exit 1; }
fi
progs=""
for t in $targets; do
	progs="$progs fuzz/fuzz-$t"
done
# shellcheck disable=SC2086 # one word per program
make -j"$jobs" $progs

# UBSan findings abort (they are built with -fno-sanitize-recover), so
# libFuzzer keeps the input; leaks are checked per input and at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
	corpus="$work/corpus-$t"
	artifacts="$work/crashes-$t"
	log="$work/fuzz-$t.log"
	rm -rf "$corpus" "$artifacts"
	mkdir -p "$corpus" "$artifacts"
	# The JSON parser starts from the messages: JSON-RPC is what it parses.
	seeds=$t
	[ "$t" = json ] && seeds=message
	cp "$top/fuzz/corpus/$seeds/"* "$corpus/"
	dict=""
	[ -f "$top/fuzz/$t.dict" ] && dict="-dict=$top/fuzz/$t.dict"
	echo "run-fuzzers: fuzz-$t for ${seconds}s ($(ls "$corpus" | wc -l) seed inputs; log: $log)"
	# shellcheck disable=SC2086
	if "$build/fuzz/fuzz-$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$artifacts/" $dict ${FUZZ_ARGS:-} \
		"$corpus" >"$log" 2>&1; then
		# The last status line: executions, coverage, corpus size, speed.
		grep -E '^#[0-9]+' "$log" | tail -n 1
	else
		echo "run-fuzzers: fuzz-$t FAILED:" >&2
		grep -E 'ERROR|SUMMARY|fuzz: |runtime error' "$log" | head -n 20 >&2 || true
		for f in "$artifacts"/*; do
			[ -e "$f" ] || continue
			echo "run-fuzzers: crash input: $f" >&2
			echo "run-fuzzers: reproduce: $build/fuzz/fuzz-$t $f" >&2
		done
		echo "run-fuzzers: full log: $log" >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "run-fuzzers: failed:$failed" >&2
	exit 1
fi
echo "run-fuzzers: all targets ran ${seconds}s without a finding"
