# tests/socket.mk: the listening socket against hostile local users and
# resource exhaustion (tests/test-socket.c), with the LD_PRELOAD shim it uses
# to hold bind() open while it swaps the socket for a symlink.
check_LTLIBRARIES = tests/slowbind.la
tests_slowbind_la_SOURCES = tests/slowbind.c
# Plain, never sanitized: it is preloaded into whatever daemon runs.
tests_slowbind_la_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
tests_slowbind_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tests_slowbind_la_LIBADD = -ldl

check_PROGRAMS += tests/test-socket
TESTS += tests/test-socket
tests_test_socket_SOURCES = tests/test-socket.c tests/fixture.c tests/fixture.h
tests_test_socket_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS)
tests_test_socket_LDADD = proto/libzoned-proto.la $(JSONC_LIBS) $(CHECK_LIBS)
EXTRA_tests_test_socket_DEPENDENCIES = tests/slowbind.la daemon/zonedd
VALGRIND_TESTS += tests/test-socket
