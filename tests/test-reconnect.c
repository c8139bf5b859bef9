/* The client library's reconnect mode against a real zonedd that is killed
 * (SIGKILL) or stopped (SIGTERM) and started again on the same state
 * directory: leases are reclaimed on their own fd numbers with the device's
 * write pointer, nothing is written while they are not (-EAGAIN), a lease
 * whose grace ended says so (-ESTALE) without writing, and a daemon that
 * never comes back ends in -ENOTCONN after the bound. Each test also runs
 * with reconnect mode off (ZT_NO_RECONNECT=1) to show what it guards. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>

#include "tests/fixture.h"

#define BS 4096
#define NLEASES 3

static struct zt_daemon z;
static char dev[400];
static char grace[32] = "30000";

static void daemon_start(void)
{
	const char *args[] = { "--emulate", dev, "--grace-ms", grace, NULL };

	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
}

static void setup(void)
{
	memset(&z, 0, sizeof(z));
	snprintf(z.dir, sizeof(z.dir), "%s/zoned-reconnect-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(z.dir));
	snprintf(z.sock, sizeof(z.sock), "%s/sock", z.dir);
	snprintf(z.state, sizeof(z.state), "%s/state", z.dir);
	snprintf(z.log, sizeof(z.log), "%s/zonedd.log", z.dir);
	snprintf(dev, sizeof(dev), "%s/e,id=e,size=32M,zone-size=1M,conv=1", z.dir);
	snprintf(grace, sizeof(grace), "30000");
}

static void teardown(void)
{
	zt_daemon_cleanup(&z);
}

static void daemon_kill(int sig)
{
	ck_assert_int_gt(z.pid, 0);
	ck_assert_int_eq(kill(z.pid, sig), 0);
	ck_assert_int_eq(waitpid(z.pid, NULL, 0), z.pid);
	z.pid = 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static zc_client *client(uint32_t reconnect_ms)
{
	zc_client *c = NULL;

	ck_assert_int_eq(zc_connect(z.sock, &c), 0);
	/* ZT_NO_RECONNECT shows each test failing without reconnect mode. */
	if (!getenv("ZT_NO_RECONNECT"))
		ck_assert_int_eq(zc_client_set_reconnect(c, reconnect_ms), 0);
	return c;
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

static void fill(char *buf, int tag, int i)
{
	memset(buf, 'A' + tag * 8 + i, BS);
}

/* The zone's write pointer as a fresh connection sees it. */
static uint64_t zone_wp(uint32_t zone)
{
	zc_client *o = NULL;
	zc_zone_iter *it = NULL;
	struct zc_report_opts ro = { .from = zone, .count = 1 };
	struct zc_zone zz;
	uint64_t wp = UINT64_MAX;

	ck_assert_int_eq(zc_connect(z.sock, &o), 0);
	ck_assert_int_eq(zc_zone_iter_new(o, "e", &ro, &it), 0);
	if (zc_zone_iter_next(it, &zz) == 1)
		wp = zz.wp;
	zc_zone_iter_free(it);
	zc_close(o);
	return wp;
}

/* Three leases with one block each; their fd numbers in fds. */
static void hold_three(zc_client *c, zc_lease **l, int *fds)
{
	static char buf[BS] __attribute__((aligned(BS)));

	for (int i = 0; i < NLEASES; i++) {
		l[i] = acquire(c, 2 + i);
		ck_assert_uint_eq(zc_lease_block_size(l[i]), BS);
		fds[i] = zc_lease_fd(l[i]);
		fill(buf, 0, i);
		ck_assert_int_eq(zc_lease_append(l[i], buf, BS), 0);
	}
}

/* Frees the handles whatever their state (the client goes with the last). */
static void release_all(zc_lease **l)
{
	for (int i = 0; i < NLEASES; i++)
		zc_lease_release(l[i], ZC_RELEASE_KEEP);
}

/* Both blocks at their offsets, and the write pointer after them. */
static void check_two_blocks(zc_lease *l, int i)
{
	static char buf[BS] __attribute__((aligned(BS))), want[BS];

	ck_assert_uint_eq(zc_lease_wp(l), zc_lease_start(l) + 2 * BS);
	for (int tag = 0; tag < 2; tag++) {
		fill(want, tag, i);
		ck_assert_int_eq(zc_lease_pread(l, buf, BS, (uint64_t)tag * BS), BS);
		ck_assert_msg(memcmp(buf, want, BS) == 0, "lease %d: block %d differs", i, tag);
	}
	ck_assert_int_eq(zc_lease_sync(l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), zc_lease_start(l) + 2 * BS);
	ck_assert_uint_eq(zone_wp(zc_lease_zone(l)), zc_lease_start(l) + 2 * BS);
}

/* Appends block 1 to lease 0 until it is taken; returns the ms it took. */
static double append_until_taken(zc_lease *l, int i)
{
	static char buf[BS] __attribute__((aligned(BS)));
	double t0 = now_ms();
	int r;

	fill(buf, 1, i);
	while ((r = zc_lease_append(l, buf, BS)) == -EAGAIN && now_ms() - t0 < 10000)
		usleep(1000);
	ck_assert_msg(r == 0, "append after the restart: %s (%d)", zc_last_error(NULL), r);
	return now_ms() - t0;
}

/* (1) kill -9 with three leases written; after the restart the next append
 * succeeds on the reclaimed lease, on the same fd number. */
START_TEST(kill9_reclaims_leases)
{
	static char buf[BS] __attribute__((aligned(BS)));
	zc_client *c;
	zc_lease *l[NLEASES];
	int fds[NLEASES];
	double ms;

	daemon_start();
	c = client(10000);
	hold_three(c, l, fds);
	daemon_kill(SIGKILL);
	daemon_start();
	ms = append_until_taken(l[0], 0);
	printf("kill -9: first append %.1f ms after the restarted daemon answered\n", ms);
	for (int i = 1; i < NLEASES; i++) {
		fill(buf, 1, i);
		ck_assert_msg(zc_lease_append(l[i], buf, BS) == 0, "lease %d: %s", i,
			      zc_last_error(c));
	}
	for (int i = 0; i < NLEASES; i++) {
		ck_assert_int_eq(zc_lease_fd(l[i]), fds[i]);
		check_two_blocks(l[i], i);
	}
	for (int i = 0; i < NLEASES; i++)
		ck_assert_int_eq(zc_lease_release(l[i], ZC_RELEASE_KEEP), 0);
	zc_close(c);
}
END_TEST

/* (2) While the daemon is away nothing is written: the library refuses
 * with -EAGAIN, and the raw fd refuses too. */
START_TEST(outage_refuses_writes)
{
	static char buf[BS] __attribute__((aligned(BS)));
	zc_client *c;
	zc_lease *l[NLEASES];
	int fds[NLEASES];

	daemon_start();
	c = client(10000);
	hold_three(c, l, fds);
	daemon_kill(SIGKILL);
	for (int n = 0; n < 5; n++) {
		for (int i = 0; i < NLEASES; i++) {
			fill(buf, 7, i);
			ck_assert_int_eq(zc_lease_append(l[i], buf, BS), -EAGAIN);
			ck_assert_uint_eq(zc_lease_wp(l[i]), zc_lease_start(l[i]) + BS);
			ck_assert_int_eq(zc_lease_sync(l[i]), -EAGAIN);
			ck_assert_int_eq(zc_lease_pread(l[i], buf, BS, 0), -EAGAIN);
			/* The number is still taken, by something that takes no write. */
			ck_assert_int_eq(zc_lease_fd(l[i]), fds[i]);
			ck_assert_int_lt(pwrite(fds[i], buf, BS, (off_t)zc_lease_wp(l[i])), 0);
		}
		ck_assert_int_eq(zc_device_list(c, NULL, 0), -EAGAIN);
		usleep(20000);
	}
	daemon_start();
	append_until_taken(l[0], 0);
	for (int i = 1; i < NLEASES; i++) {
		fill(buf, 1, i);
		ck_assert_int_eq(zc_lease_append(l[i], buf, BS), 0);
	}
	/* Block 7 never reached a zone: block 1 follows block 0. */
	for (int i = 0; i < NLEASES; i++)
		check_two_blocks(l[i], i);
	release_all(l);
	zc_close(c);
}
END_TEST

/* (3) The grace ended before the client came back: the lease is not given
 * back, its next call says -ESTALE, and its zone is not written. */
START_TEST(grace_expired_is_stale)
{
	static char buf[BS] __attribute__((aligned(BS)));
	zc_client *c;
	zc_lease *l[NLEASES];
	int fds[NLEASES];

	daemon_start();
	c = client(10000);
	hold_three(c, l, fds);
	daemon_kill(SIGKILL);
	snprintf(grace, sizeof(grace), "100");
	daemon_start();
	usleep(600000); /* no call meanwhile: the grace ends unreclaimed */
	for (int i = 0; i < NLEASES; i++) {
		fill(buf, 1, i);
		ck_assert_int_eq(zc_lease_append(l[i], buf, BS), -ESTALE);
		ck_assert_ptr_nonnull(strstr(zc_last_error(c), "did not give the lease back"));
		ck_assert_int_eq(zc_lease_sync(l[i]), -ESTALE);
		ck_assert_int_lt(pwrite(fds[i], buf, BS, (off_t)zc_lease_wp(l[i])), 0);
		ck_assert_uint_eq(zone_wp(zc_lease_zone(l[i])), zc_lease_start(l[i]) + BS);
	}
	/* The client itself is connected again. */
	ck_assert_int_ge(zc_device_list(c, NULL, 0), 1);
	release_all(l);
	zc_close(c);
}
END_TEST

/* (4) A daemon that never comes back: -EAGAIN within the bound, -ENOTCONN
 * after it. */
START_TEST(gives_up_after_bound)
{
	static char buf[BS] __attribute__((aligned(BS)));
	zc_client *c;
	zc_lease *l[NLEASES];
	int fds[NLEASES];
	double t0, t;
	int r;

	daemon_start();
	c = client(300);
	hold_three(c, l, fds);
	daemon_kill(SIGKILL);
	t0 = now_ms();
	fill(buf, 1, 0);
	while ((r = zc_lease_append(l[0], buf, BS)) == -EAGAIN && now_ms() - t0 < 5000)
		usleep(5000);
	t = now_ms() - t0;
	ck_assert_int_eq(r, -ENOTCONN);
	ck_assert_msg(t >= 290 && t < 2000, "gave up after %.0f ms (bound 300)", t);
	for (int i = 0; i < NLEASES; i++)
		ck_assert_int_eq(zc_lease_append(l[i], buf, BS), -ENOTCONN);
	ck_assert_int_eq(zc_device_list(c, NULL, 0), -ENOTCONN);
	release_all(l);
	zc_close(c);
}
END_TEST

/* (5) A plain stop and start (SIGTERM keeps the leases in the table): the
 * client comes back, renews its event subscription (it sees its own
 * reclaims) and its leases were acquired reclaimable. */
START_TEST(sigterm_restart_resubscribes)
{
	static const char *const types[] = { "lease.reclaimed", NULL };
	static char buf[BS] __attribute__((aligned(BS)));
	zc_client *c;
	zc_lease *l[NLEASES];
	int fds[NLEASES], seen = 0;
	zc_event *ev = NULL;
	struct zc_lease_info info[8];

	daemon_start();
	c = client(10000);
	ck_assert_int_eq(zc_events_subscribe(c, types, NULL), 0);
	hold_three(c, l, fds);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	fill(buf, 1, 0);
	ck_assert_int_eq(zc_lease_append(l[0], buf, BS), -EAGAIN);
	daemon_start();
	printf("SIGTERM: first append %.1f ms after the restarted daemon answered\n",
	       append_until_taken(l[0], 0));
	for (int i = 1; i < NLEASES; i++) {
		fill(buf, 1, i);
		ck_assert_int_eq(zc_lease_append(l[i], buf, BS), 0);
	}
	for (int i = 0; i < NLEASES; i++) {
		ck_assert_int_eq(zc_lease_fd(l[i]), fds[i]);
		check_two_blocks(l[i], i);
	}
	while (seen < NLEASES && zc_event_next(c, 2000, &ev) == 1) {
		ck_assert_str_eq(zc_event_type(ev), "lease.reclaimed");
		seen++;
		zc_event_free(ev);
	}
	ck_assert_int_eq(seen, NLEASES);
	ck_assert_int_eq(zc_lease_list(c, false, info, 8), NLEASES);
	release_all(l);
	zc_close(c);
}
END_TEST

static void count_reclaimed(zc_client *c, const zc_event *ev, void *ud)
{
	(void)c;
	if (strcmp(zc_event_type(ev), "lease.reclaimed") == 0)
		(*(int *)ud)++;
}

/* An event loop that only polls zc_client_fd() and calls
 * zc_client_process() is woken for the reconnect attempts and reclaims its
 * leases without any data call. */
START_TEST(event_loop_reclaims)
{
	static const char *const types[] = { "lease.reclaimed", NULL };
	static char buf[BS] __attribute__((aligned(BS)));
	zc_client *c;
	zc_lease *l[NLEASES];
	int fds[NLEASES], seen = 0, efd;
	bool restarted = false;
	double t0;

	daemon_start();
	c = client(10000);
	hold_three(c, l, fds);
	ck_assert_int_eq(zc_client_set_event_cb(c, count_reclaimed, &seen), 0);
	ck_assert_int_eq(zc_events_subscribe(c, types, NULL), 0);
	efd = zc_client_fd(c);
	ck_assert_int_ge(efd, 0);
	daemon_kill(SIGKILL);
	t0 = now_ms();
	while (seen < NLEASES) {
		struct pollfd pfd = { .fd = efd, .events = POLLIN };
		int n;

		if (!restarted && now_ms() - t0 > 300) {
			daemon_start();
			restarted = true;
		}
		n = poll(&pfd, 1, restarted ? 3000 : 50);
		ck_assert_msg(n == 1 || !restarted, "the client's fd never woke for a reconnect");
		ck_assert_int_ge(zc_client_process(c), 0);
	}
	for (int i = 0; i < NLEASES; i++) {
		fill(buf, 1, i);
		ck_assert_int_eq(zc_lease_append(l[i], buf, BS), 0);
		check_two_blocks(l[i], i);
	}
	release_all(l);
	zc_close(c);
}
END_TEST

/* Reconnect mode asks for reclaimable leases; without it, none are. So a
 * closed connection (zc_close without releasing, as documented) leaves
 * the reconnecting client's zone orphaned and frees the plain one's. */
START_TEST(acquires_reclaimable)
{
	zc_client *c, *plain = NULL;
	zc_lease *a, *b;

	daemon_start();
	c = client(10000);
	ck_assert_int_eq(zc_connect(z.sock, &plain), 0);
	a = acquire(c, 2);
	b = acquire(plain, 3);
	/* A connection loss orphans only the reclaimable one: after closing
	 * both sockets without releasing, zone 2 stays taken, zone 3 frees. */
	zc_close(plain);
	zc_close(c);
	zc_lease_release(a, ZC_RELEASE_KEEP);
	zc_lease_release(b, ZC_RELEASE_KEEP);
	{
		zc_client *o = NULL;
		struct zc_lease_opts opt;
		zc_lease *x = NULL;

		ck_assert_int_eq(zc_connect(z.sock, &o), 0);
		zc_lease_opts_init(&opt);
		opt.device = "e";
		opt.buffered = true;
		opt.zone = 3;
		opt.wait_ms = 2000;
		ck_assert_int_eq(zc_lease_acquire(o, &opt, &x), 0);
		zc_lease_release(x, ZC_RELEASE_KEEP);
		opt.zone = 2;
		opt.wait_ms = 0;
		ck_assert_int_eq(zc_lease_acquire(o, &opt, &x), -EBUSY);
		zc_close(o);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reconnect");
	TCase *tc = tcase_create("reconnect");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, kill9_reclaims_leases);
	tcase_add_test(tc, outage_refuses_writes);
	tcase_add_test(tc, grace_expired_is_stale);
	tcase_add_test(tc, gives_up_after_bound);
	tcase_add_test(tc, sigterm_restart_resubscribes);
	tcase_add_test(tc, acquires_reclaimable);
	tcase_add_test(tc, event_loop_reclaims);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
