# tests/unit.mk: Check unit tests of the daemon's internals (TEST_CFLAGS and
# TEST_LIBS come from tests/local.mk).
check_PROGRAMS += tests/test-emul
TESTS += tests/test-emul
tests_test_emul_SOURCES = tests/test-emul.c
tests_test_emul_CFLAGS = $(TEST_CFLAGS)
tests_test_emul_LDADD = $(TEST_LIBS)
