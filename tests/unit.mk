# tests/unit.mk: Check unit tests of the daemon's internals (TEST_CFLAGS and
# TEST_LIBS come from tests/local.mk).
check_PROGRAMS += tests/test-emul
TESTS += tests/test-emul
tests_test_emul_SOURCES = tests/test-emul.c
tests_test_emul_CFLAGS = $(TEST_CFLAGS) -DEMUL_V1_DATA='"$(abs_top_srcdir)/tests/data/emul-v1"'
tests_test_emul_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/data/emul-v1/README tests/data/emul-v1/emul-v1.tar.gz \
	tests/data/emul-v1/emul-v1-unclean.tar.gz tests/data/emul-v1/gen-v1.c.txt \
	tests/data/emul-v1/gen-v1-unclean.c.txt

# daemon/blkdev.c against a fake sysfs tree (the real one: tests/vm).
check_PROGRAMS += tests/test-blkdev
TESTS += tests/test-blkdev
tests_test_blkdev_SOURCES = tests/test-blkdev.c
tests_test_blkdev_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_test_blkdev_LDADD = daemon/libzoned-blkdev.la $(CHECK_LIBS)
