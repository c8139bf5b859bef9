# fuzz/: libFuzzer targets, built with ./configure --enable-fuzzer (CC=clang);
# fuzz/run-fuzzers.sh builds them in a build directory of their own and runs
# each for a bounded time on a copy of its seed corpus.
if ENABLE_FUZZER
noinst_PROGRAMS += fuzz/fuzz-message fuzz/fuzz-config fuzz/fuzz-json
endif
FUZZ_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(UV_CFLAGS) $(SYSTEMD_CFLAGS)

fuzz_fuzz_message_SOURCES = fuzz/fuzz-message.c fuzz/fuzz.h
fuzz_fuzz_message_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_message_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
fuzz_fuzz_message_LDADD = daemon/libzoned-daemon.la

fuzz_fuzz_config_SOURCES = fuzz/fuzz-config.c fuzz/fuzz.h
fuzz_fuzz_config_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_config_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
fuzz_fuzz_config_LDADD = daemon/libzoned-daemon.la

fuzz_fuzz_json_SOURCES = fuzz/fuzz-json.c fuzz/fuzz.h fuzz/json-reference.c fuzz/json-reference.h
fuzz_fuzz_json_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_json_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
fuzz_fuzz_json_LDADD = proto/libzoned-proto.la $(JSONC_LIBS)

EXTRA_DIST += fuzz/run-fuzzers.sh fuzz/corpus fuzz/message.dict fuzz/config.dict fuzz/json.dict
