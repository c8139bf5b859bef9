/* The event stream against a real zonedd: events come in order with their
 * sequence numbers, a subscriber that does not read loses events (told by
 * an overflow event with the exact count) but never its leases and never
 * grows the daemon's memory, a revoked holder learns of it at once (its
 * next data call fails before the syscall), and a non-admin sees no event
 * of another user's leases. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>

#include "tests/fixture.h"

static struct zt_daemon z;

static void daemon_up(void)
{
	char dev[400];
	const char *args[] = { "--emulate", dev, NULL };

	memset(&z, 0, sizeof(z));
	snprintf(z.dir, sizeof(z.dir), "%s/zoned-events-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(z.dir));
	snprintf(z.sock, sizeof(z.sock), "%s/sock", z.dir);
	snprintf(z.state, sizeof(z.state), "%s/state", z.dir);
	snprintf(z.log, sizeof(z.log), "%s/zonedd.log", z.dir);
	snprintf(dev, sizeof(dev), "%s/e,id=e,size=32M,zone-size=1M,conv=1", z.dir);
	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
}

static void daemon_down(void)
{
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}

static zc_client *client(void)
{
	zc_client *c = NULL;

	ck_assert_int_eq(zc_connect(z.sock, &c), 0);
	return c;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static zc_lease *acquire(zc_client *c, int64_t zone)
{
	struct zc_lease_opts o;
	zc_lease *l = NULL;

	zc_lease_opts_init(&o);
	o.device = "e";
	o.zone = zone;
	o.buffered = true;
	ck_assert_msg(zc_lease_acquire(c, &o, &l) == 0, "acquire: %s", zc_last_error(c));
	return l;
}

/* The next event that is not a zone change (those come with writes). */
static zc_event *next_of(zc_client *c, const char *type, uint32_t timeout_ms)
{
	zc_event *ev = NULL;

	while (zc_event_next(c, timeout_ms, &ev) == 1) {
		if (!type || strcmp(zc_event_type(ev), type) == 0)
			return ev;
		zc_event_free(ev);
	}
	return NULL;
}

/* --- Order and content ------------------------------------------------------ */

START_TEST(test_order)
{
	zc_client *s = client(), *c = client();
	static const char *const types[] = { "lease", "zone", NULL };
	static char buf[4096] __attribute__((aligned(4096)));
	uint64_t t0 = wall_ms(), last = 0, ids[3];
	const char *want[] = { "lease.acquired", "lease.acquired", "lease.released",
			       "lease.acquired", "lease.released", "lease.released" };
	zc_lease *l[3];
	zc_event *ev;
	int n = 0;

	ck_assert_int_eq(zc_events_subscribe(s, types, NULL), 0);
	l[0] = acquire(c, 3);
	l[1] = acquire(c, 4);
	ids[0] = zc_lease_id(l[0]);
	ids[1] = zc_lease_id(l[1]);
	ck_assert_int_eq(zc_lease_release(l[0], ZC_RELEASE_KEEP), 0);
	l[2] = acquire(c, 5);
	ids[2] = zc_lease_id(l[2]);
	ck_assert_int_eq(zc_lease_append(l[2], buf, sizeof(buf)), 0);
	ck_assert_int_eq(zc_lease_sync(l[2]), 0); /* empty -> implicit-open */
	ck_assert_int_eq(zc_lease_release(l[2], ZC_RELEASE_RESET), 0);
	ck_assert_int_eq(zc_lease_release(l[1], ZC_RELEASE_KEEP), 0);

	while (n < 6 && (ev = next_of(s, NULL, 1000))) {
		const char *t = zc_event_type(ev);

		ck_assert_uint_gt(zc_event_seq(ev), last);
		last = zc_event_seq(ev);
		ck_assert_uint_ge(zc_event_time_ms(ev), t0);
		ck_assert_uint_le(zc_event_time_ms(ev), wall_ms());
		ck_assert_str_eq(zc_event_device(ev), "e");
		if (strcmp(t, "zone.changed") == 0) {
			ck_assert_int_eq(zc_event_zone(ev), 5);
			ck_assert_ptr_nonnull(strstr(zc_event_json(ev), "\"old_cond\""));
		} else {
			static const uint64_t order[] = { 0, 1, 0, 2, 2, 1 };

			ck_assert_str_eq(t, want[n]);
			ck_assert_uint_eq(zc_event_lease(ev), ids[order[n]]);
			n++;
		}
		zc_event_free(ev);
	}
	ck_assert_int_eq(n, 6);
	/* Nothing else: the subscriber's own calls make no events. */
	ck_assert_int_eq(zc_event_next(s, 100, &ev), 0);
	zc_close(c);
	zc_close(s);
}
END_TEST

START_TEST(test_filters)
{
	zc_client *s = client(), *c = client();
	static const char *const bad[] = { "lease.nope", NULL };
	static const char *const rel[] = { "lease.released", NULL };
	static const char *const other[] = { "nodev", NULL };
	zc_lease *l;
	zc_event *ev;

	ck_assert_int_eq(zc_events_subscribe(s, bad, NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(s), "lease.nope"));
	ck_assert_int_eq(zc_events_subscribe(s, rel, NULL), 0);
	l = acquire(c, 6);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	ev = next_of(s, NULL, 1000);
	ck_assert_ptr_nonnull(ev);
	ck_assert_str_eq(zc_event_type(ev), "lease.released");
	ck_assert_ptr_nonnull(strstr(zc_event_json(ev), "\"reason\":\"release\""));
	zc_event_free(ev);
	/* Another device's events only. */
	ck_assert_int_eq(zc_events_subscribe(s, NULL, other), 0);
	l = acquire(c, 6);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	ck_assert_int_eq(zc_event_next(s, 200, &ev), 0);
	ck_assert_int_eq(zc_events_unsubscribe(s), 0);
	zc_close(c);
	zc_close(s);
}
END_TEST

START_TEST(test_reloading)
{
	zc_client *s = client();
	static const char *const types[] = { "daemon", NULL };
	zc_event *ev;

	ck_assert_int_eq(zc_events_subscribe(s, types, NULL), 0);
	ck_assert_int_eq(kill(z.pid, SIGHUP), 0);
	ev = next_of(s, NULL, 5000);
	ck_assert_ptr_nonnull(ev);
	ck_assert_str_eq(zc_event_type(ev), "daemon.reloading");
	ck_assert_ptr_null(zc_event_device(ev));
	zc_event_free(ev);
	zc_close(s);
}
END_TEST

/* --- A subscriber that does not read --------------------------------------- */

static uint64_t daemon_rss_kib(void)
{
	char path[64], line[256];
	uint64_t v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)z.pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &v) == 1)
			break;
	fclose(f);
	return v;
}

#define FLOOD 6000

START_TEST(test_overflow)
{
	zc_client *s = client(), *c = client();
	zc_lease *mine, *l;
	uint64_t rss0, rss1, first = 0, last = 0, got = 0, lost = 0, overflows = 0;
	zc_event *ev;

	mine = acquire(s, 10);
	ck_assert_int_eq(zc_events_subscribe(s, NULL, NULL), 0);
	for (int i = 0; i < 200; i++) /* warm up the daemon's allocator */
		ck_assert_int_eq(zc_lease_release(acquire(c, 11), ZC_RELEASE_KEEP), 0);
	rss0 = daemon_rss_kib();
	/* Two events per cycle; s reads none of them meanwhile. */
	for (int i = 0; i < FLOOD; i++) {
		l = acquire(c, 11);
		ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	}
	rss1 = daemon_rss_kib();
	fprintf(stderr, "overflow: daemon VmRSS %" PRIu64 " KiB before %d unread events, %" PRIu64
		" KiB after\n", rss0, 2 * FLOOD, rss1);
#ifndef __SANITIZE_ADDRESS__
	if (!getenv("ZT_DAEMON_WRAPPER") || !*getenv("ZT_DAEMON_WRAPPER"))
		ck_assert_msg(rss1 < rss0 + 2048, "daemon grew by %" PRIu64 " KiB", rss1 - rss0);
#endif
	/* The slow subscriber kept its connection and its lease. */
	ck_assert_int_eq(zc_lease_sync(mine), 0);
	ck_assert_int_eq(zc_lease_list(s, false, NULL, 0), 1);
	/* It reads now: every event it lost is counted, exactly. */
	while (zc_event_next(s, 300, &ev) == 1) {
		uint64_t seq = zc_event_seq(ev);

		if (!first)
			first = seq;
		if (seq > last)
			last = seq;
		if (strcmp(zc_event_type(ev), "overflow") == 0) {
			lost += zc_event_lost(ev);
			overflows++;
		} else {
			got++;
		}
		zc_event_free(ev);
	}
	fprintf(stderr, "overflow: %" PRIu64 " events read, %" PRIu64 " lost in %" PRIu64
		" overflow event(s), seq %" PRIu64 "..%" PRIu64 "\n", got, lost, overflows, first, last);
	ck_assert_uint_ge(overflows, 1);
	ck_assert_uint_gt(lost, 0);
	ck_assert_uint_eq(got + lost, 2 * FLOOD + 400);
	ck_assert_uint_eq(last - first + 1, got + lost);
	ck_assert_int_eq(zc_lease_release(mine, ZC_RELEASE_KEEP), 0);
	zc_close(c);
	zc_close(s);
}
END_TEST

/* --- Revocation reaches its holder ----------------------------------------- */

START_TEST(test_revoked_holder_data_call)
{
	zc_client *h = client(), *a = client();
	static char buf[4096] __attribute__((aligned(4096)));
	struct zc_zone zz;
	zc_lease *l = acquire(h, 12);
	double t0, waited;
	int r;

	ck_assert_int_eq(zc_lease_append(l, buf, sizeof(buf)), 0);
	ck_assert_int_eq(zc_zone_op(a, "e", ZC_ZONE_RESET, 12, 1, true, &zz, 1), 1);
	ck_assert_uint_eq(zz.wp, zz.start);
	/* The holder subscribed to nothing and makes no RPC: its data calls
	 * alone notice, within 100 ms, and before any write. */
	t0 = now_ms();
	while ((r = zc_lease_append(l, buf, sizeof(buf))) == 0 && now_ms() - t0 < 1000)
		usleep(1000);
	waited = now_ms() - t0;
	fprintf(stderr, "revoked holder: append failed %.3f ms after the revoking reset\n", waited);
	ck_assert_int_eq(r, -ESTALE);
	ck_assert_msg(waited < 100, "took %.1f ms", waited);
	ck_assert_str_eq(zc_last_error(h), "the lease was released or revoked");
	ck_assert_int_eq(zc_lease_pread(l, buf, sizeof(buf), 0), -ESTALE);
	/* Nothing reached the zone the daemon took back. */
	ck_assert_int_eq(zc_zone_op(a, "e", ZC_ZONE_CLOSE, 12, 1, false, &zz, 1), 1);
	ck_assert_uint_eq(zz.wp, zz.start);
	/* And the raw fd is fenced too. */
	ck_assert_int_lt(write(zc_lease_fd(l), buf, sizeof(buf)), 0);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ESTALE);
	zc_close(a);
	zc_close(h);
}
END_TEST

START_TEST(test_revoked_holder_event)
{
	zc_client *h = client(), *a = client();
	static const char *const types[] = { "lease.revoked", NULL };
	struct zc_zone zz;
	zc_lease *l = acquire(h, 13);
	zc_event *ev;
	double t0;

	ck_assert_int_eq(zc_events_subscribe(h, types, NULL), 0);
	ck_assert_int_eq(zc_zone_op(a, "e", ZC_ZONE_FINISH, 13, 1, true, &zz, 1), 1);
	t0 = now_ms();
	ck_assert_int_eq(zc_event_next(h, 100, &ev), 1);
	ck_assert_double_lt(now_ms() - t0, 100);
	ck_assert_str_eq(zc_event_type(ev), "lease.revoked");
	ck_assert_uint_eq(zc_event_lease(ev), zc_lease_id(l));
	ck_assert_ptr_nonnull(strstr(zc_event_json(ev), "\"reason\":\"force\""));
	zc_event_free(ev);
	/* Told once, although it came on the reply path and matched the
	 * subscription. */
	ck_assert_int_eq(zc_event_next(h, 100, &ev), 0);
	ck_assert_int_eq(zc_lease_sync(l), -ESTALE);
	zc_lease_release(l, ZC_RELEASE_KEEP);
	ck_assert_int_eq(zc_zone_op(a, "e", ZC_ZONE_RESET, 13, 1, false, NULL, 0), 1);
	zc_close(a);
	zc_close(h);
}
END_TEST

/* A holder that can no longer be told (it shut its socket's reading side):
 * the revocation notice fails to send, and that must not close the
 * connection in the middle of the revocation (which would release, and
 * free, the lease being revoked). The daemon stays up and the zone free. */
START_TEST(test_revoke_untellable_holder)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\","
				  "\"params\":{\"device\":\"e\",\"zone\":14},\"id\":1}";
	zc_client *a = client();
	struct zc_lease_info li[8];
	struct zc_hello h;
	char buf[4096];
	ssize_t n;
	int s;

	ck_assert_uint_lt(strlen(z.sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, z.sock, strlen(z.sock) + 1);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(send(s, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	n = recv(s, buf, sizeof(buf) - 1, 0); /* the fd it carries is dropped */
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "\"lease\""));
	ck_assert_int_eq(shutdown(s, SHUT_RD), 0);
	ck_assert_int_eq(zc_zone_op(a, "e", ZC_ZONE_RESET, 14, 1, true, NULL, 0), 1);
	ck_assert_int_eq(zc_hello(a, &h), 0);
	n = zc_lease_list(a, true, li, 8);
	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n && i < 8; i++)
		ck_assert(!(strcmp(li[i].device, "e") == 0 && li[i].zone == 14));
	close(s);
	usleep(100 * 1000);
	ck_assert_int_eq(zc_hello(a, &h), 0);
	zc_close(a);
}
END_TEST

/* --- No event leaks across users ---------------------------------------- */

/* As nobody: subscribe to everything, take a lease, and report what was
 * seen on the pipe: one line per event, "type lease uid". */
static int as_nobody(int out, int ready, int go)
{
	struct passwd *pw = getpwnam("nobody");
	zc_client *c;
	zc_lease *l;
	zc_event *ev;
	char b;
	FILE *f = fdopen(out, "w");

	if (!pw || !f || setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		return 10;
	if (zc_connect(z.sock, &c) < 0)
		return 11;
	if (zc_events_subscribe(c, NULL, NULL) < 0)
		return 12;
	{
		struct zc_lease_opts o;

		zc_lease_opts_init(&o);
		o.device = "e";
		o.zone = 20;
		o.buffered = true;
		if (zc_lease_acquire(c, &o, &l) < 0)
			return 13;
	}
	if (write(ready, "r", 1) != 1 || read(go, &b, 1) != 1)
		return 14;
	zc_lease_release(l, ZC_RELEASE_KEEP);
	while (zc_event_next(c, 300, &ev) == 1) {
		const char *j = zc_event_json(ev);
		const char *u = strstr(j, "\"uid\":");

		fprintf(f, "%s %" PRIu64 " %s\n", zc_event_type(ev), zc_event_lease(ev),
			u ? u + 6 : "-");
		zc_event_free(ev);
	}
	fclose(f);
	zc_close(c);
	return 0;
}

START_TEST(test_no_leak_across_users)
{
	int pout[2], pready[2], pgo[2], status, own = 0, zone_events = 0;
	zc_client *root, *watch;
	struct passwd *pw;
	char line[512], b;
	zc_lease *l;
	zc_event *ev;
	bool admin_saw_nobody = false;
	FILE *f;
	pid_t pid;

	if (geteuid() != 0) {
		fprintf(stderr, "test_no_leak_across_users: SKIPPED: needs root to connect as "
			"another user (nobody)\n");
		return;
	}
	pw = getpwnam("nobody");
	ck_assert_ptr_nonnull(pw);
	/* nobody must reach the socket (the daemon decides who may do what). */
	ck_assert_int_eq(chmod(z.dir, 0711), 0);
	ck_assert_int_eq(pipe(pout), 0);
	ck_assert_int_eq(pipe(pready), 0);
	ck_assert_int_eq(pipe(pgo), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pout[0]);
		close(pready[0]);
		close(pgo[1]);
		_exit(as_nobody(pout[1], pready[1], pgo[0]));
	}
	/* The parent's clients come after the fork: the child owns nothing
	 * of them to free. */
	close(pout[1]);
	close(pready[1]);
	close(pgo[0]);
	root = client();
	watch = client();
	ck_assert_int_eq(zc_events_subscribe(watch, NULL, NULL), 0);
	ck_assert_int_eq(read(pready[0], &b, 1), 1);
	/* Root's leases come and go, and one is revoked, while nobody watches. */
	for (int i = 0; i < 3; i++) {
		l = acquire(root, 21);
		ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	}
	l = acquire(root, 22);
	ck_assert_int_eq(zc_zone_op(root, "e", ZC_ZONE_FINISH, 22, 1, true, NULL, 0), 1);
	zc_lease_release(l, ZC_RELEASE_KEEP);
	ck_assert_int_eq(zc_zone_op(root, "e", ZC_ZONE_RESET, 22, 1, false, NULL, 0), 1);
	ck_assert_int_eq(write(pgo[1], "g", 1), 1);
	f = fdopen(pout[0], "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned uid = 0;

		fprintf(stderr, "nobody saw: %s", line);
		if (strncmp(line, "lease.", 6) == 0) {
			ck_assert_int_eq(sscanf(strchr(line, ' ') + 1, "%*u %u", &uid), 1);
			ck_assert_uint_eq(uid, pw->pw_uid);
			own++;
		} else if (strncmp(line, "zone.", 5) == 0) {
			zone_events++;
		}
	}
	fclose(f);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	/* Its own lease's events, and the zone changes everyone may see. */
	ck_assert_int_ge(own, 1);
	ck_assert_int_ge(zone_events, 1);
	/* The admin sees everybody's. */
	while ((ev = next_of(watch, NULL, 300))) {
		if (strncmp(zc_event_type(ev), "lease.", 6) == 0 &&
		    strstr(zc_event_json(ev), "\"uid\":65534"))
			admin_saw_nobody = true;
		zc_event_free(ev);
	}
	ck_assert(admin_saw_nobody);
	close(pready[0]);
	close(pgo[1]);
	zc_close(watch);
	zc_close(root);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("zonedd");

	tcase_add_unchecked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_order);
	tcase_add_test(tc, test_filters);
	tcase_add_test(tc, test_reloading);
	tcase_add_test(tc, test_overflow);
	tcase_add_test(tc, test_revoked_holder_data_call);
	tcase_add_test(tc, test_revoked_holder_event);
	tcase_add_test(tc, test_revoke_untellable_holder);
	tcase_add_test(tc, test_no_leak_across_users);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
