/* Leases through libzoned-client against a zonedd serving a real zoned block
 * device, inside the VM suite's guest (run by vm-daemon-test.py): appends
 * through the library and through the passed fd, the write pointer the
 * daemon reports after sync and after release against the device's own
 * (BLKREPORTZONE), a client SIGKILLed with unsynced writes, and many leases
 * held at once within the device's open and active limits.
 *
 *   ZONED_SOCKET=... vm-lease-test DEVICE_ID DEVICE_PATH */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/blkzoned.h>

#include <zoned/client.h>

static const char *dev_id, *dev_path;

/* The device's own view of a zone, through a plain read-only fd. */
static struct blk_zone device_zone(uint64_t start)
{
	struct {
		struct blk_zone_report rep;
		struct blk_zone zone;
	} r;
	int fd = open(dev_path, O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	memset(&r, 0, sizeof(r));
	r.rep.sector = start >> 9;
	r.rep.nr_zones = 1;
	ck_assert_int_eq(ioctl(fd, BLKREPORTZONE, &r.rep), 0);
	ck_assert_uint_eq(r.rep.nr_zones, 1);
	close(fd);
	return r.zone;
}

/* Open (implicit or explicit) and active (open or closed) zones on the device. */
static void device_counts(uint32_t *nopen, uint32_t *nactive)
{
	enum { BATCH = 256 };
	struct blk_zone_report *rep = calloc(1, sizeof(*rep) + BATCH * sizeof(struct blk_zone));
	int fd = open(dev_path, O_RDONLY | O_CLOEXEC);
	uint64_t sector = 0;

	ck_assert_ptr_nonnull(rep);
	ck_assert_int_ge(fd, 0);
	*nopen = *nactive = 0;
	for (;;) {
		rep->sector = sector;
		rep->nr_zones = BATCH;
		ck_assert_int_eq(ioctl(fd, BLKREPORTZONE, rep), 0);
		if (rep->nr_zones == 0)
			break;
		for (uint32_t i = 0; i < rep->nr_zones; i++) {
			uint8_t c = rep->zones[i].cond;

			*nopen += c == BLK_ZONE_COND_IMP_OPEN || c == BLK_ZONE_COND_EXP_OPEN;
			*nactive += c == BLK_ZONE_COND_IMP_OPEN || c == BLK_ZONE_COND_EXP_OPEN ||
				    c == BLK_ZONE_COND_CLOSED;
		}
		sector = rep->zones[rep->nr_zones - 1].start + rep->zones[rep->nr_zones - 1].len;
	}
	close(fd);
	free(rep);
}

/* The daemon's view of one zone. */
static struct zc_zone daemon_zone(zc_client *c, uint32_t index)
{
	struct zc_report_opts opts = { .from = index, .count = 1 };
	struct zc_zone z;
	zc_zone_iter *it;

	ck_assert_int_eq(zc_zone_iter_new(c, dev_id, &opts, &it), 0);
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 1);
	zc_zone_iter_free(it);
	ck_assert_uint_eq(z.index, index);
	return z;
}

static zc_client *connect_daemon(void)
{
	zc_client *c = NULL;
	int r = zc_connect(NULL, &c);

	ck_assert_msg(r == 0, "zc_connect: %s", zc_strerror(r));
	return c;
}

static zc_lease *acquire(zc_client *c, int64_t zone, enum zc_prefer prefer)
{
	struct zc_lease_opts opts;
	zc_lease *l = NULL;
	int r;

	zc_lease_opts_init(&opts);
	opts.device = dev_id;
	opts.zone = zone;
	opts.prefer = prefer;
	opts.label = "vm-lease-test";
	r = zc_lease_acquire(c, &opts, &l);
	ck_assert_msg(r == 0, "lease on %s: %s (%s)", dev_id, zc_strerror(r), zc_last_error(c));
	return l;
}

static void *blocks(size_t len, unsigned seed)
{
	unsigned char *p;

	ck_assert_int_eq(posix_memalign((void **)&p, 4096, len), 0);
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + seed);
	return p;
}

#define KIB 1024u

START_TEST(t_append_sync_release)
{
	zc_client *c = connect_daemon();
	zc_lease *l = acquire(c, -1, ZC_PREFER_EMPTY);
	uint32_t zone = zc_lease_zone(l);
	uint64_t start = zc_lease_start(l);
	void *a = blocks(64 * KIB, 1), *b = blocks(64 * KIB, 2), *back = blocks(128 * KIB, 0);
	struct zc_zone dz;
	struct blk_zone kz;

	ck_assert_uint_eq(zc_lease_wp(l), start);
	/* through the library, then straight through the passed fd */
	ck_assert_int_eq(zc_lease_append(l, a, 64 * KIB), 0);
	ck_assert_uint_eq(zc_lease_wp(l), start + 64 * KIB);
	ck_assert_int_eq(pwrite(zc_lease_fd(l), b, 64 * KIB,
				(off_t)(zc_lease_wp(l) - start + zc_lease_fd_offset(l))), 64 * KIB);
	kz = device_zone(start);
	ck_assert_uint_eq(kz.wp << 9, start + 128 * KIB);

	/* sync: the daemon reads the device, and the lease takes its view */
	ck_assert_int_eq(zc_lease_sync(l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), start + 128 * KIB);
	dz = daemon_zone(c, zone);
	ck_assert_uint_eq(dz.wp, start + 128 * KIB);
	ck_assert_int_eq(zc_lease_pread(l, back, 128 * KIB, 0), 128 * KIB);
	ck_assert_int_eq(memcmp(back, a, 64 * KIB), 0);
	ck_assert_int_eq(memcmp((char *)back + 64 * KIB, b, 64 * KIB), 0);
	printf("%s: lease on zone %u: 128 KiB appended (library + passed fd), wp after sync "
	       "+%" PRIu64 " KiB on the daemon and the device\n", dev_id, zone,
	       (dz.wp - start) / KIB);

	/* release, keeping the data: the daemon's wp is still the device's */
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	dz = daemon_zone(c, zone);
	kz = device_zone(start);
	ck_assert_uint_eq(dz.wp, kz.wp << 9);
	ck_assert_uint_eq(dz.wp, start + 128 * KIB);
	ck_assert_msg(dz.cond == ZC_COND_IMP_OPEN || dz.cond == ZC_COND_CLOSED,
		      "released zone is %s", zc_cond_name(dz.cond));

	/* a new lease on the same zone goes on where the data ends */
	l = acquire(c, zone, ZC_PREFER_ANY);
	ck_assert_uint_eq(zc_lease_wp(l), start + 128 * KIB);
	ck_assert_int_eq(zc_lease_append(l, a, 4 * KIB), 0);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	dz = daemon_zone(c, zone);
	ck_assert_uint_eq(dz.cond, ZC_COND_EMPTY);
	ck_assert_uint_eq(device_zone(start).cond, BLK_ZONE_COND_EMPTY);
	free(a);
	free(b);
	free(back);
	zc_close(c);
}
END_TEST

/* A client dies with writes the daemon never heard of: the lease ends and
 * the daemon's wp is the device's. */
START_TEST(t_killed_client)
{
	int pfd[2];
	pid_t pid;
	uint32_t zone;
	uint64_t start;
	zc_client *c;
	struct zc_lease_info li[64];
	struct zc_zone dz;
	zc_lease *l;
	bool gone = false;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		zc_client *cc = connect_daemon();
		zc_lease *cl = acquire(cc, -1, ZC_PREFER_EMPTY);
		void *buf = blocks(32 * KIB, 3);
		uint64_t msg[2] = { zc_lease_zone(cl), zc_lease_start(cl) };

		if (zc_lease_append(cl, buf, 32 * KIB) < 0 ||
		    pwrite(zc_lease_fd(cl), buf, 32 * KIB,
			   (off_t)(zc_lease_wp(cl) - zc_lease_start(cl) + zc_lease_fd_offset(cl))) !=
			    32 * KIB)
			_exit(1);
		if (write(pfd[1], msg, sizeof(msg)) != sizeof(msg))
			_exit(1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	{
		uint64_t msg[2];

		ck_assert_int_eq(read(pfd[0], msg, sizeof(msg)), sizeof(msg));
		zone = (uint32_t)msg[0];
		start = msg[1];
	}
	close(pfd[0]);
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);

	c = connect_daemon();
	for (int i = 0; i < 100 && !gone; i++) {
		int n = zc_lease_list(c, true, li, 64);

		ck_assert_int_ge(n, 0);
		gone = true;
		for (int j = 0; j < n && j < 64; j++)
			if (li[j].pid == pid)
				gone = false;
		if (!gone)
			usleep(50000);
	}
	ck_assert_msg(gone, "the lease of killed pid %d is still there", (int)pid);
	dz = daemon_zone(c, zone);
	ck_assert_uint_eq(device_zone(start).wp << 9, start + 64 * KIB);
	ck_assert_msg(dz.wp == start + 64 * KIB, "daemon's wp +%" PRIu64 " KiB after the kill, "
		      "the device's +64 KiB", (dz.wp - start) / KIB);
	/* and the zone can be leased again from there */
	l = acquire(c, zone, ZC_PREFER_ANY);
	ck_assert_uint_eq(zc_lease_wp(l), start + 64 * KIB);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	printf("%s: client killed with 32 KiB unsynced on zone %u: lease gone, daemon's wp "
	       "+64 KiB as the device's\n", dev_id, zone);
	zc_close(c);
}
END_TEST

/* As many leases at once as the daemon grants, each written to, then
 * written again in turn: the device's open and active counts stay within
 * its limits, no write fails, and the daemon refuses cleanly beyond them. */
START_TEST(t_many_leases)
{
	zc_client *c = connect_daemon();
	struct zc_device info;
	zc_lease *ls[256];
	void *buf = blocks(4 * KIB, 5);
	uint32_t n = 0, o, a, peak_o = 0, peak_a = 0;
	int r = 0;

	ck_assert_int_eq(zc_device_info(c, dev_id, &info), 0);
	ck_assert_uint_gt(info.max_active, 0);
	while (n < 256) {
		struct zc_lease_opts opts;

		zc_lease_opts_init(&opts);
		opts.device = dev_id;
		opts.prefer = ZC_PREFER_EMPTY;
		opts.label = "vm-lease-test many";
		r = zc_lease_acquire(c, &opts, &ls[n]);
		if (r < 0)
			break;
		ck_assert_int_eq(zc_lease_append(ls[n], buf, 4 * KIB), 0);
		n++;
		device_counts(&o, &a);
		peak_o = o > peak_o ? o : peak_o;
		peak_a = a > peak_a ? a : peak_a;
		ck_assert_msg(o <= info.max_open && a <= info.max_active,
			      "%u open, %u active with %u leases; limits %u/%u", o, a, n,
			      info.max_open, info.max_active);
	}
	printf("%s: %u leases held and written; the next refused: %s (%s)\n", dev_id, n,
	       zc_strerror(r), zc_last_error(c));
	ck_assert_uint_gt(n, 0);
	ck_assert_msg(r == -EUSERS || r == -ENOSPC || r == -EBUSY,
		      "refused with %d (%s)", r, zc_strerror(r));
	/* round-robin writes: more zones written than may be open at once */
	for (int round = 0; round < 2; round++)
		for (uint32_t i = 0; i < n; i++) {
			r = zc_lease_append(ls[i], buf, 4 * KIB);
			ck_assert_msg(r == 0, "append to lease %u of %u: %s", i, n, zc_strerror(r));
			device_counts(&o, &a);
			peak_o = o > peak_o ? o : peak_o;
			peak_a = a > peak_a ? a : peak_a;
			ck_assert_msg(o <= info.max_open && a <= info.max_active,
				      "%u open, %u active; limits %u/%u", o, a, info.max_open,
				      info.max_active);
		}
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(zc_lease_release(ls[i], ZC_RELEASE_RESET), 0);
	printf("%s: peak %u open, %u active on the device (limits %u/%u)\n", dev_id, peak_o,
	       peak_a, info.max_open, info.max_active);
	free(buf);
	zc_close(c);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("vm-lease");
	TCase *tc;
	SRunner *sr;
	int failed;

	if (argc != 3) {
		fprintf(stderr, "usage: ZONED_SOCKET=PATH vm-lease-test DEVICE_ID DEVICE_PATH\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	dev_id = argv[1];
	dev_path = argv[2];
	tc = tcase_create(dev_id);
	tcase_add_test(tc, t_append_sync_release);
	tcase_add_test(tc, t_killed_client);
	tcase_add_test(tc, t_many_leases);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_VERBOSE);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
