TESTS_ENVIRONMENT_COMMON = top_builddir=$(top_builddir) top_srcdir=$(top_srcdir)
AM_TESTS_ENVIRONMENT = export top_builddir=$(abs_top_builddir) top_srcdir=$(abs_top_srcdir);
TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS) $(UV_CFLAGS) $(SYSTEMD_CFLAGS)
TEST_LIBS = daemon/libzoned-daemon.la $(CHECK_LIBS)

check_PROGRAMS += tests/test-proto
TESTS += tests/test-proto
tests_test_proto_SOURCES = tests/test-proto.c
tests_test_proto_CFLAGS = $(TEST_CFLAGS)
tests_test_proto_LDADD = $(TEST_LIBS)

# The wire's JSON against the parser it replaced (fuzz/json-reference.c).
check_PROGRAMS += tests/test-json
TESTS += tests/test-json
tests_test_json_SOURCES = tests/test-json.c fuzz/json-reference.c fuzz/json-reference.h
tests_test_json_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS)
tests_test_json_LDADD = proto/libzoned-proto.la $(JSONC_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/test-alloc
TESTS += tests/test-alloc
tests_test_alloc_SOURCES = tests/test-alloc.c
tests_test_alloc_CFLAGS = $(TEST_CFLAGS)
tests_test_alloc_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-scale
TESTS += tests/test-scale
tests_test_scale_SOURCES = tests/test-scale.c
tests_test_scale_CFLAGS = $(TEST_CFLAGS)
tests_test_scale_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-lifecycle
TESTS += tests/test-lifecycle
tests_test_lifecycle_SOURCES = tests/test-lifecycle.c tests/fixture.c tests/fixture.h
tests_test_lifecycle_CFLAGS = $(TEST_CFLAGS)
tests_test_lifecycle_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-faults
TESTS += tests/test-faults
tests_test_faults_SOURCES = tests/test-faults.c tests/fixture.c tests/fixture.h
tests_test_faults_CFLAGS = $(TEST_CFLAGS)
tests_test_faults_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-lease-e2e
TESTS += tests/test-lease-e2e
tests_test_lease_e2e_SOURCES = tests/test-lease-e2e.c tests/fixture.c tests/fixture.h
tests_test_lease_e2e_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS) -pthread
tests_test_lease_e2e_LDADD = client/libzoned-client.la proto/libzoned-proto.la $(JSONC_LIBS) $(CHECK_LIBS) -lpthread

check_PROGRAMS += tests/test-isolation
TESTS += tests/test-isolation
tests_test_isolation_SOURCES = tests/test-isolation.c tests/fixture.c tests/fixture.h
tests_test_isolation_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS)
tests_test_isolation_LDADD = proto/libzoned-proto.la $(JSONC_LIBS) $(CHECK_LIBS)

# The C tests under valgrind, the daemon they start included.
VALGRIND_CMD = valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --error-exitcode=99
check-valgrind: $(check_PROGRAMS) daemon/zonedd
	@set -e; for t in $(VALGRIND_TESTS); do \
		echo "valgrind: $$t"; \
		CK_FORK=no CK_DEFAULT_TIMEOUT=600 ZT_FLOOD_CONNS=4 ZT_FLOOD_PACKETS=8 ZT_SOAK_SECONDS=10 top_builddir=$(abs_top_builddir) \
		ZT_DAEMON_WRAPPER="$(VALGRIND_CMD)" \
		$(LIBTOOL) --mode=execute $(VALGRIND_CMD) ./$$t; \
	done
VALGRIND_TESTS = tests/test-proto tests/test-json tests/test-alloc tests/test-scale tests/test-blkdev tests/test-isolation tests/test-lifecycle tests/test-faults tests/test-lease-e2e tests/test-client tests/test-client-e2e tests/test-emul tests/test-chaos tests/test-soak
.PHONY: check-valgrind

check_PROGRAMS += tests/test-chaos
TESTS += tests/test-chaos
tests_test_chaos_SOURCES = tests/test-chaos.c tests/fixture.c tests/fixture.h
tests_test_chaos_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS) -pthread
tests_test_chaos_LDADD = client/libzoned-client.la proto/libzoned-proto.la $(JSONC_LIBS) $(CHECK_LIBS) -lpthread

# Soak: clients and the daemon SIGKILLed at random, zones checked afterwards.
# Short here (ZT_SOAK_SECONDS, default 15); `ZT_SOAK_SECONDS=600 ./tests/test-soak` for long.
check_PROGRAMS += tests/test-soak
TESTS += tests/test-soak
tests_test_soak_SOURCES = tests/test-soak.c tests/fixture.c tests/fixture.h
tests_test_soak_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_test_soak_LDADD = $(JSONC_LIBS)

# The Debian packages built, linted, installed with dpkg -i, used and purged
# (tests/deb-install.sh): root on a throwaway machine only, so not part of
# make check; .ci/quickstart test runs it.
# A skip (77: not root, tools missing) says why and is not a failure.
check-deb: all
	@$(AM_TESTS_ENVIRONMENT) st=0; $(SHELL) $(srcdir)/tests/deb-install.sh || st=$$?; \
	test $$st -eq 0 || test $$st -eq 77
.PHONY: check-deb
EXTRA_DIST += tests/deb-install.sh
# Without root or dpkg: the symbols file against the version script.
TESTS += tests/deb-symbols.sh
dist_check_SCRIPTS += tests/deb-symbols.sh
