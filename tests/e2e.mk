# tests/e2e.mk: the client library's tests. test-client needs no daemon (a
# scripted fake one stands in); test-client-e2e and e2e-zonectl.sh start the
# real daemon/zonedd on a temporary socket and drive it with the library and
# with zonectl.
check_PROGRAMS += tests/test-client tests/test-client-e2e
tests_test_client_SOURCES = tests/test-client.c
tests_test_client_CFLAGS = $(TEST_CFLAGS) -pthread
tests_test_client_LDADD = client/libzoned-client.la proto/libzoned-proto.la $(CHECK_LIBS) \
	$(JSONC_LIBS) -lpthread

tests_test_client_e2e_SOURCES = tests/test-client-e2e.c tests/fixture.c tests/fixture.h
tests_test_client_e2e_CFLAGS = $(TEST_CFLAGS) -pthread
tests_test_client_e2e_LDADD = client/libzoned-client.la proto/libzoned-proto.la $(CHECK_LIBS) \
	$(JSONC_LIBS) -lpthread

TESTS += tests/test-client tests/test-client-e2e tests/e2e-zonectl.sh tests/e2e-zonectl-data.sh tests/e2e-zonectl-cli.sh tests/e2e-zonectl-help.sh tests/pkgconfig-uninstalled.sh tests/readme-tour.sh tests/e2e-lease-sync.sh tests/e2e-zonectl-views.sh tests/e2e-zonectl-output.sh tests/e2e-zonectl-progress.sh
dist_check_SCRIPTS += tests/e2e-zonectl-output.sh tests/e2e-zonectl-progress.sh tests/e2e-zonectl.sh tests/e2e-zonectl-data.sh tests/e2e-zonectl-cli.sh tests/e2e-zonectl-help.sh tests/e2e-zonectl-views.sh tests/pkgconfig-uninstalled.sh tests/readme-tour.sh tests/e2e-lease-sync.sh
# bench/bench-scale's report has the shape bench/run reads (tiny devices).
TESTS += tests/bench-scale-smoke.sh
dist_check_SCRIPTS += tests/bench-scale-smoke.sh
EXTRA_DIST += tests/lib-e2e.sh

# The non-blocking core (tests/test-async.c, which also runs the libuv
# example) and the event stream (tests/test-events.c), against the real daemon.
check_PROGRAMS += tests/test-async
tests_test_async_SOURCES = tests/test-async.c tests/fixture.c tests/fixture.h
tests_test_async_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -pthread
tests_test_async_LDADD = client/libzoned-client.la $(CHECK_LIBS) -lpthread
EXTRA_tests_test_async_DEPENDENCIES = client/examples/uv-leases daemon/zonedd
TESTS += tests/test-async
VALGRIND_TESTS += tests/test-async

check_PROGRAMS += tests/test-events
tests_test_events_SOURCES = tests/test-events.c tests/fixture.c tests/fixture.h
tests_test_events_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_test_events_LDADD = client/libzoned-client.la $(CHECK_LIBS)
EXTRA_tests_test_events_DEPENDENCIES = daemon/zonedd
TESTS += tests/test-events
VALGRIND_TESTS += tests/test-events

# Reconnect mode: the daemon killed or stopped and started again under a
# client that holds leases.
check_PROGRAMS += tests/test-reconnect
tests_test_reconnect_SOURCES = tests/test-reconnect.c tests/fixture.c tests/fixture.h
tests_test_reconnect_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_test_reconnect_LDADD = client/libzoned-client.la $(CHECK_LIBS)
EXTRA_tests_test_reconnect_DEPENDENCIES = daemon/zonedd
TESTS += tests/test-reconnect
VALGRIND_TESTS += tests/test-reconnect
