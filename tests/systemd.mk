# tests/systemd.mk: the configuration parser's unit test, and the tests of
# what a packaged zonedd is: its units (systemd-analyze verify), socket
# activation and sd_notify, configuration override and reload, and make
# install DESTDIR with a program built against the installed library.
check_PROGRAMS += tests/test-config
tests_test_config_SOURCES = tests/test-config.c
tests_test_config_CPPFLAGS = $(AM_CPPFLAGS) -DTOP_SRCDIR='"$(abs_top_srcdir)"'
tests_test_config_CFLAGS = $(TEST_CFLAGS)
tests_test_config_LDADD = $(TEST_LIBS)
VALGRIND_TESTS += tests/test-config

TESTS += tests/test-config \
	tests/systemd-verify.sh \
	tests/systemd-activate.sh \
	tests/systemd-fdstore.sh \
	tests/systemd-config.sh \
	tests/install-check.sh
dist_check_SCRIPTS += tests/systemd-verify.sh tests/systemd-activate.sh tests/systemd-fdstore.sh \
	tests/systemd-config.sh tests/install-check.sh
EXTRA_DIST += tests/systemd-lib.sh
CLEANFILES += .install-test.lock

# The install tests need the directories make install uses and a make and a
# compiler to run; everything else comes from top_builddir/top_srcdir.
AM_TESTS_ENVIRONMENT += export MAKE='$(MAKE)' CC='$(CC)' SAN_CFLAGS='$(SAN_CFLAGS)' \
	ZONED_PREFIX='$(prefix)' ZONED_BINDIR='$(bindir)' ZONED_SBINDIR='$(sbindir)' \
	ZONED_LIBDIR='$(libdir)' ZONED_INCLUDEDIR='$(includedir)' \
	ZONED_MANDIR='$(mandir)' ZONED_SYSCONFDIR='$(sysconfdir)' \
	ZONED_UNITDIR='$(systemdsystemunitdir)' ZONED_SYSUSERSDIR='$(sysusersdir)' \
	ZONED_TMPFILESDIR='$(tmpfilesdir)' ZONED_BASHCOMPDIR='$(bashcompletiondir)';
