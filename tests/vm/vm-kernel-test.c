/* The kernel backend against real zoned block devices, run inside the VM
 * suite's guest (tests/vm/vm-inner.sh): validation and refusals, geometry,
 * the zone table compared field by field with util-linux blkzone, zone
 * operations, writes at and away from the write pointer, the open and
 * active limits, and zone isolation with device-mapper (what a lease's fd
 * reaches, fencing, the sweep and adoption after a crash, the fallbacks).
 *
 *   vm-kernel-test DEVICE EXPECT    e.g. /dev/nullb0 zones=32,conv=2,max_open=8,...
 *   vm-kernel-test --refusals PLAIN_DISK PARTITION
 *
 * It changes the device's data and zone state: never point it at a device
 * that holds anything. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/blkzoned.h>
#include <linux/capability.h>
#include <linux/dm-ioctl.h>
#include <linux/fs.h>

#include "daemon/dm.h"
#include "daemon/zdev.h"

#define MIB ((uint64_t)1024 * 1024)

static const char *dev_path;
static const char *plain_path, *part_path;

/* Expected geometry, from the command line. */
static struct {
	uint32_t zones, conv, max_open, max_active;
	uint64_t zone_size, capacity;
} expect;

static int parse_expect(const char *s)
{
	char *copy = strdup(s), *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		unsigned long long v;

		if (!eq) {
			free(copy);
			return -EINVAL;
		}
		*eq = '\0';
		v = strtoull(eq + 1, NULL, 0);
		if (!strcmp(kv, "zones"))
			expect.zones = (uint32_t)v;
		else if (!strcmp(kv, "conv"))
			expect.conv = (uint32_t)v;
		else if (!strcmp(kv, "zone_size"))
			expect.zone_size = v;
		else if (!strcmp(kv, "capacity"))
			expect.capacity = v;
		else if (!strcmp(kv, "max_open"))
			expect.max_open = (uint32_t)v;
		else if (!strcmp(kv, "max_active"))
			expect.max_active = (uint32_t)v;
		else {
			free(copy);
			return -EINVAL;
		}
	}
	free(copy);
	return 0;
}

/* Helpers */

static struct zd_dev *open_dev(void)
{
	struct zd_dev *dev = NULL;
	char why[256];
	int r = zd_kernel_open(dev_path, ZD_ISOLATION_AUTO, &dev, why, sizeof(why));

	ck_assert_msg(r == 0, "zd_kernel_open(%s): %s (%s)", dev_path, strerror(-r), why);
	return dev;
}

static struct zd_dev_info get_info(struct zd_dev *dev)
{
	struct zd_dev_info info;

	ck_assert_int_eq(dev->ops->info(dev, &info), 0);
	return info;
}

static struct zd_zone get_zone(struct zd_dev *dev, uint32_t i)
{
	struct zd_zone z;
	uint32_t nr = 1;

	ck_assert_int_eq(dev->ops->report(dev, i, &z, &nr), 0);
	ck_assert_uint_eq(nr, 1);
	return z;
}

static void reset_all(struct zd_dev *dev)
{
	struct zd_dev_info info = get_info(dev);

	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, info.nr_conventional,
					   info.nr_zones - info.nr_conventional), 0);
}

static void *pattern(size_t len, unsigned seed)
{
	unsigned char *p;

	ck_assert_int_eq(posix_memalign((void **)&p, 4096, len ? len : 1), 0);
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed + (i >> 12));
	return p;
}

static void assert_zone(const struct zd_zone *z, unsigned cond, uint64_t wp_off)
{
	ck_assert_msg(z->cond == cond, "zone at %" PRIu64 ": condition %s, expected %s",
		      z->start, zp_cond_name(z->cond), zp_cond_name(cond));
	ck_assert_msg(z->wp == z->start + wp_off, "zone at %" PRIu64 ": wp +%" PRIu64
		      ", expected +%" PRIu64, z->start, z->wp - z->start, wp_off);
}

/* util-linux blkzone's view of the zone table: one line per zone,
 *   start: 0x000040000, len 0x020000, cap 0x020000, wptr 0x000008 reset:0
 *   non-seq:0, zcond: 2(oi) [type: 2(SEQ_WRITE_REQUIRED)]
 * in sectors, the write pointer relative to the start. */
struct bz_zone {
	uint64_t start, len, cap, wptr;
	unsigned cond, type;
};

static unsigned bz_cond(unsigned c)
{
	switch (c) {
	case 0x0: return ZP_COND_NOT_WP;
	case 0x1: return ZP_COND_EMPTY;
	case 0x2: return ZP_COND_IMP_OPEN;
	case 0x3: return ZP_COND_EXP_OPEN;
	case 0x4: return ZP_COND_CLOSED;
	case 0xd: return ZP_COND_READONLY;
	case 0xe: return ZP_COND_FULL;
	case 0xf: return ZP_COND_OFFLINE;
	default: return 255;
	}
}

static uint32_t blkzone_report(struct bz_zone *out, uint32_t cap)
{
	char cmd[512], line[512];
	uint32_t n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "blkzone report %s", dev_path);
	f = popen(cmd, "r");
	ck_assert_msg(f != NULL, "cannot run %s", cmd);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, len, zcap, wptr;
		unsigned reset, nonseq, cond, type;

		if (sscanf(line, " start: 0x%llx, len 0x%llx, cap 0x%llx, wptr 0x%llx reset:%u "
			   "non-seq:%u, zcond:%u(%*[^)]) [type: %u", &start, &len, &zcap, &wptr,
			   &reset, &nonseq, &cond, &type) != 8)
			continue;
		ck_assert_uint_lt(n, cap);
		out[n++] = (struct bz_zone){ start, len, zcap, wptr, bz_cond(cond), type };
	}
	ck_assert_msg(pclose(f) == 0, "%s failed", cmd);
	return n;
}

/* The backend's zone table and blkzone's, field by field. */
static void compare_with_blkzone(struct zd_dev *dev)
{
	struct zd_dev_info info = get_info(dev);
	struct zd_zone *z = calloc(info.nr_zones + 1, sizeof(*z));
	struct bz_zone *b = calloc(info.nr_zones + 1, sizeof(*b));
	uint32_t nr = info.nr_zones + 1, nb;

	ck_assert_ptr_nonnull(z);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &nr), 0);
	ck_assert_uint_eq(nr, info.nr_zones);
	nb = blkzone_report(b, info.nr_zones + 1);
	ck_assert_uint_eq(nb, info.nr_zones);
	for (uint32_t i = 0; i < nr; i++) {
		static const unsigned types[] = { [ZP_TYPE_CONV] = 1, [ZP_TYPE_SWR] = 2,
						  [ZP_TYPE_SWP] = 3 };

		ck_assert_msg(z[i].start == b[i].start << 9, "zone %u start", i);
		ck_assert_msg(z[i].len == b[i].len << 9, "zone %u len", i);
		ck_assert_msg(z[i].capacity == b[i].cap << 9, "zone %u cap %" PRIu64 " vs %llu",
			      i, z[i].capacity, (unsigned long long)b[i].cap << 9);
		ck_assert_msg(z[i].cond == b[i].cond, "zone %u cond %s vs blkzone %u", i,
			      zp_cond_name(z[i].cond), b[i].cond);
		ck_assert_msg(types[z[i].type] == b[i].type, "zone %u type %s vs blkzone %u", i,
			      zp_type_name(z[i].type), b[i].type);
		/* blkzone prints 0 for a conventional zone's (meaningless) wp */
		if (z[i].type != ZP_TYPE_CONV)
			ck_assert_msg(z[i].wp - z[i].start == b[i].wptr << 9,
				      "zone %u wp +%" PRIu64 " vs blkzone +%llu", i,
				      z[i].wp - z[i].start, (unsigned long long)b[i].wptr << 9);
	}
	free(z);
	free(b);
}

static int sysfs_attr(const char *attr, char *buf, size_t cap)
{
	struct stat st;
	char path[256];
	FILE *f;

	if (stat(dev_path, &st) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(st.st_rdev),
		 minor(st.st_rdev), attr);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(buf, (int)cap, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int sysfs_write(const char *attr, const char *val)
{
	struct stat st;
	char path[256];
	FILE *f;
	int r = 0;

	if (stat(dev_path, &st) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(st.st_rdev),
		 minor(st.st_rdev), attr);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	if (fputs(val, f) < 0)
		r = -EIO;
	if (fclose(f) != 0)
		r = -errno;
	return r;
}

/* Geometry */

START_TEST(t_info)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	char buf[128];

	printf("%s: %s %s, vendor '%s', product '%s', scheduler %s, %" PRIu64 " bytes, "
	       "%u zones (%u conventional) of %" PRIu64 " MiB, capacity %" PRIu64 " MiB, "
	       "max open %u, max active %u, blocks %u/%u\n", dev_path, info.backend, info.model,
	       info.vendor, info.product, info.scheduler, info.size, info.nr_zones,
	       info.nr_conventional, info.zone_size / MIB, info.zone_capacity / MIB,
	       info.max_open, info.max_active, info.logical_block_size,
	       info.physical_block_size);
	ck_assert_str_eq(info.backend, "kernel");
	ck_assert_str_eq(info.model, "host-managed");
	ck_assert_uint_eq(info.nr_zones, expect.zones);
	ck_assert_uint_eq(info.nr_conventional, expect.conv);
	ck_assert_uint_eq(info.zone_size, expect.zone_size);
	ck_assert_uint_eq(info.zone_capacity, expect.capacity);
	ck_assert_uint_eq(info.max_open, expect.max_open);
	ck_assert_uint_eq(info.max_active, expect.max_active);
	ck_assert_uint_eq(info.size, (uint64_t)expect.zones * expect.zone_size);
	ck_assert_int_eq(sysfs_attr("queue/logical_block_size", buf, sizeof(buf)), 0);
	ck_assert_uint_eq(info.logical_block_size, strtoul(buf, NULL, 10));
	ck_assert_int_eq(sysfs_attr("queue/physical_block_size", buf, sizeof(buf)), 0);
	ck_assert_uint_eq(info.physical_block_size, strtoul(buf, NULL, 10));
	ck_assert_int_eq(sysfs_attr("queue/scheduler", buf, sizeof(buf)), 0);
	ck_assert_msg(strstr(buf, info.scheduler) != NULL, "scheduler %s not in '%s'",
		      info.scheduler, buf);
	if (strncmp(dev_path, "/dev/nvme", 9) == 0)
		ck_assert_msg(info.product[0] != '\0', "an NVMe namespace has a model");
	zd_dev_close(dev);
}
END_TEST

START_TEST(t_report_ranges)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	struct zd_zone z[8];
	uint32_t nr;

	/* a window in the middle, one running past the end, the end itself */
	nr = 3;
	ck_assert_int_eq(dev->ops->report(dev, 1, z, &nr), 0);
	ck_assert_uint_eq(nr, 3);
	for (uint32_t i = 0; i < 3; i++)
		ck_assert_uint_eq(z[i].start, (i + 1) * info.zone_size);
	nr = 8;
	ck_assert_int_eq(dev->ops->report(dev, info.nr_zones - 2, z, &nr), 0);
	ck_assert_uint_eq(nr, 2);
	ck_assert_uint_eq(z[1].start + z[1].len, info.size);
	nr = 8;
	ck_assert_int_eq(dev->ops->report(dev, info.nr_zones, z, &nr), 0);
	ck_assert_uint_eq(nr, 0);
	nr = 8;
	ck_assert_int_eq(dev->ops->report(dev, info.nr_zones + 1, z, &nr), -ERANGE);
	for (uint32_t i = 0; i < info.nr_zones; i++) {
		struct zd_zone one = get_zone(dev, i);

		ck_assert_uint_eq(one.type, i < info.nr_conventional ? ZP_TYPE_CONV : ZP_TYPE_SWR);
		ck_assert_uint_le(one.capacity, one.len);
	}
	zd_dev_close(dev);
}
END_TEST

/* Writes */

START_TEST(t_write_at_wp)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info;
	uint32_t zi;
	struct zd_zone z;
	void *buf = pattern(MIB, 1), *back = pattern(MIB, 0);
	int r;

	reset_all(dev);
	info = get_info(dev);
	zi = info.nr_conventional;
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_EMPTY, 0);

	ck_assert_int_eq(dev->ops->pwrite(dev, buf, MIB, z.start), 0);
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_IMP_OPEN, MIB);
	ck_assert_int_eq(dev->ops->pread(dev, back, MIB, z.start), 0);
	ck_assert_int_eq(memcmp(buf, back, MIB), 0);

	/* ahead of the wp, and behind it: the device refuses, nothing moves */
	r = dev->ops->pwrite(dev, buf, 4096, z.start + 2 * MIB);
	ck_assert_msg(r == -EIO, "write ahead of the wp: %d (%s)", r, strerror(-r));
	r = dev->ops->pwrite(dev, buf, 4096, z.start);
	ck_assert_msg(r == -EIO, "write behind the wp: %d (%s)", r, strerror(-r));
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_IMP_OPEN, MIB);

	/* arguments checked before any I/O */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 100, z.wp), -EINVAL);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 4096, z.wp + 1), -EINVAL);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 4096, info.size), -ERANGE);
	ck_assert_int_eq(dev->ops->pread(dev, back, 4096, info.size - 512 * 4), -ERANGE);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 0, z.wp), 0);
	/* a write never spans zones */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 8192, z.start + z.len - 4096), -EINVAL);

	/* an unaligned caller buffer goes through the bounce buffer */
	ck_assert_int_eq(dev->ops->pwrite(dev, (char *)buf + 1, 8192, z.wp), 0);
	ck_assert_int_eq(dev->ops->pread(dev, (char *)back + 3, 8192, z.start + MIB), 0);
	ck_assert_int_eq(memcmp((char *)buf + 1, (char *)back + 3, 8192), 0);
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_IMP_OPEN, MIB + 8192);

	/* conventional zones take writes anywhere */
	if (info.nr_conventional) {
		ck_assert_int_eq(dev->ops->pwrite(dev, buf, 65536, 3 * MIB), 0);
		ck_assert_int_eq(dev->ops->pwrite(dev, buf, 65536, MIB), 0);
		ck_assert_int_eq(dev->ops->pread(dev, back, 65536, 3 * MIB), 0);
		ck_assert_int_eq(memcmp(buf, back, 65536), 0);
		z = get_zone(dev, 0);
		ck_assert_uint_eq(z.cond, ZP_COND_NOT_WP);
	}
	reset_all(dev);
	free(buf);
	free(back);
	zd_dev_close(dev);
}
END_TEST

/* A release or lease.sync that saw a wp move flushes the device: the
 * kernel backend has the op, and it works on a real disk (null_blk and
 * QEMU's ZNS namespace have no volatile cache to lose, so what it made
 * durable is not observable here; that it runs and answers 0 is). */
START_TEST(t_flush)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info;
	void *buf = pattern(MIB, 3);
	struct zd_zone z;

	reset_all(dev);
	info = get_info(dev);
	z = get_zone(dev, info.nr_conventional);
	ck_assert_ptr_nonnull(dev->ops->flush);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, MIB, z.start), 0);
	ck_assert_int_eq(dev->ops->flush(dev), 0);
	z = get_zone(dev, info.nr_conventional);
	assert_zone(&z, ZP_COND_IMP_OPEN, MIB);
	reset_all(dev);
	free(buf);
	zd_dev_close(dev);
}
END_TEST

START_TEST(t_fill_to_capacity)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	uint32_t zi = info.nr_zones - 1;
	struct zd_zone z;
	void *buf;
	int r;

	reset_all(dev);
	z = get_zone(dev, zi);
	buf = pattern(z.capacity, 7);
	/* one call, many bounce-buffer chunks, exactly the capacity */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, z.capacity, z.start), 0);
	z = get_zone(dev, zi);
	ck_assert_uint_eq(z.cond, ZP_COND_FULL);
	/* a full zone's wp is what the device says: the kernel gives start + len */
	printf("%s: full zone %u: wp at +%" PRIu64 " MiB, capacity %" PRIu64 " MiB, len %" PRIu64
	       " MiB\n", dev_path, zi, (z.wp - z.start) / MIB, z.capacity / MIB, z.len / MIB);
	ck_assert_uint_ge(z.wp, z.start + z.capacity);
	r = dev->ops->pwrite(dev, buf, 4096, z.start + z.capacity - 4096);
	ck_assert_msg(r == -EIO, "write into a full zone: %d", r);
	if (z.capacity < z.len) {
		/* between capacity and zone size: no blocks to write */
		r = dev->ops->pwrite(dev, buf, 4096, z.start + z.capacity);
		ck_assert_msg(r == -EIO, "write past capacity: %d", r);
	}
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, zi, 1), 0);
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_EMPTY, 0);
	free(buf);
	zd_dev_close(dev);
}
END_TEST

/* Zone operations */

START_TEST(t_zone_ops)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	uint32_t a = info.nr_conventional, b = a + 1;
	void *buf = pattern(65536, 3);
	struct zd_zone z;

	reset_all(dev);
	/* open / close of an empty zone: back to empty */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, a, 1), 0);
	z = get_zone(dev, a);
	assert_zone(&z, ZP_COND_EXP_OPEN, 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, a, 1), 0); /* again: no-op */
	/* closing it unwritten: empty again on null_blk, closed on QEMU's ZNS
	 * (both allowed); closing it again changes nothing */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, a, 1), 0);
	z = get_zone(dev, a);
	ck_assert_msg(z.cond == ZP_COND_EMPTY || z.cond == ZP_COND_CLOSED,
		      "closed unwritten zone is %s", zp_cond_name(z.cond));
	ck_assert_uint_eq(z.wp, z.start);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, a, 1), 0);
	ck_assert_uint_eq(get_zone(dev, a).cond, z.cond);

	/* written, closed, reopened, written on, finished, reset */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 65536, get_zone(dev, a).start), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, a, 1), 0);
	z = get_zone(dev, a);
	assert_zone(&z, ZP_COND_CLOSED, 65536);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, a, 1), 0);
	z = get_zone(dev, a);
	assert_zone(&z, ZP_COND_EXP_OPEN, 65536);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 65536, z.wp), 0);
	z = get_zone(dev, a);
	assert_zone(&z, ZP_COND_EXP_OPEN, 131072);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, a, 1), 0);
	z = get_zone(dev, a);
	ck_assert_uint_eq(z.cond, ZP_COND_FULL);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, a, 1), 0); /* full: no-op */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, a, 1), 0);  /* full: no-op */
	/* opening a full zone fails as on the devices and the emulator */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, a, 1), -EIO);
	ck_assert_uint_eq(get_zone(dev, a).cond, ZP_COND_FULL);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 4096, z.start + 131072), -EIO);

	/* finish of an empty zone, then reset of a range of two */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, b, 1), 0);
	z = get_zone(dev, b);
	ck_assert_uint_eq(z.cond, ZP_COND_FULL);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, a, 2), 0);
	z = get_zone(dev, a);
	assert_zone(&z, ZP_COND_EMPTY, 0);
	z = get_zone(dev, b);
	assert_zone(&z, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, a, 1), 0); /* empty: no-op */

	/* bad ranges */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, info.nr_zones, 1), -ERANGE);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, info.nr_zones - 1, 2), -ERANGE);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, a, 0), -EINVAL);

	/* conventional zones have no state to change; a range that includes
	 * one is refused whole before anything is done */
	if (info.nr_conventional) {
		ck_assert_int_eq(dev->ops->pwrite(dev, buf, 65536, get_zone(dev, a).start), 0);
		for (int op = ZD_OP_OPEN; op <= ZD_OP_RESET; op++)
			ck_assert_int_eq(dev->ops->zone_op(dev, (enum zd_zone_op)op, 0, 1), -EPERM);
		ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, a - 1, 2), -EPERM);
		z = get_zone(dev, a);
		assert_zone(&z, ZP_COND_IMP_OPEN, 65536);
	}
	reset_all(dev);
	free(buf);
	zd_dev_close(dev);
}
END_TEST

/* The device's open and active limits surface as -EBUSY, and a refused
 * operation changes nothing. */
START_TEST(t_limits)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	uint32_t first = info.nr_conventional, i;
	void *buf = pattern(4096, 5);
	struct zd_zone z;
	int r;

	ck_assert_uint_gt(info.max_open, 0);
	ck_assert_uint_ge(info.max_active, info.max_open);
	ck_assert_uint_gt(info.nr_zones - first, info.max_active + 1);
	reset_all(dev);

	/* max_open explicit opens, then one more */
	for (i = 0; i < info.max_open; i++)
		ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, first + i, 1), 0);
	r = dev->ops->zone_op(dev, ZD_OP_OPEN, first + i, 1);
	ck_assert_msg(r == -EBUSY, "open %u beyond max_open %u: %d (%s)", i + 1, info.max_open,
		      r, strerror(-r));
	z = get_zone(dev, first + i);
	assert_zone(&z, ZP_COND_EMPTY, 0);
	compare_with_blkzone(dev);

	/* make them active (written, closed), up to max_active */
	reset_all(dev);
	for (i = 0; i < info.max_active; i++) {
		z = get_zone(dev, first + i);
		ck_assert_int_eq(dev->ops->pwrite(dev, buf, 4096, z.start), 0);
		ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, first + i, 1), 0);
	}
	r = dev->ops->zone_op(dev, ZD_OP_OPEN, first + i, 1);
	ck_assert_msg(r == -EBUSY, "open beyond max_active %u: %d (%s)", info.max_active, r,
		      strerror(-r));
	r = dev->ops->pwrite(dev, buf, 4096, get_zone(dev, first + i).start);
	ck_assert_msg(r == -EBUSY, "write to a new zone beyond max_active %u: %d (%s)",
		      info.max_active, r, strerror(-r));
	z = get_zone(dev, first + i);
	assert_zone(&z, ZP_COND_EMPTY, 0);
	/* a closed zone can still be opened: it is active already */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, first, 1), 0);
	/* finishing one frees an active slot */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, first, 1), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, first + i, 1), 0);
	compare_with_blkzone(dev);
	reset_all(dev);
	free(buf);
	zd_dev_close(dev);
}
END_TEST

/* A client's fd, a direct write through it, and the refresh that follows. */
START_TEST(t_open_fd_refresh)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	uint32_t zi = info.nr_conventional + 2;
	void *buf = pattern(262144, 9);
	struct zd_zone z, r;
	int fd, flags;

	reset_all(dev);
	/* nothing that could create or truncate, and no O_EXCL (the backend
	 * holds the exclusive claim itself) */
	ck_assert_int_eq(zd_dev_open_zone(dev, 0, O_RDWR | O_EXCL, NULL), -EINVAL);
	ck_assert_int_eq(zd_dev_open_zone(dev, 0, O_RDWR | O_TRUNC, NULL), -EINVAL);
	fd = zd_dev_open_zone(dev, 0, O_RDWR | O_DIRECT, NULL);
	ck_assert_msg(fd >= 0, "open_fd: %s", strerror(-fd));
	flags = fcntl(fd, F_GETFD);
	ck_assert(flags & FD_CLOEXEC);
	z = get_zone(dev, zi);
	/* the device itself refuses a write away from the wp */
	errno = 0;
	ck_assert_int_eq(pwrite(fd, buf, 4096, (off_t)(z.start + 65536)), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(pwrite(fd, buf, 262144, (off_t)z.start), 262144);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, zi, UINT64_MAX, &r), 0);
	assert_zone(&r, ZP_COND_IMP_OPEN, 262144);
	/* the hint is ignored: the device knows */
	ck_assert_int_eq(dev->ops->refresh_zone(dev, zi, z.start + 4096, &r), 0);
	assert_zone(&r, ZP_COND_IMP_OPEN, 262144);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, info.nr_zones, UINT64_MAX, &r), -ERANGE);
	/* the fd is the device's, not a copy: the backend reads it back */
	{
		void *back = pattern(262144, 0);

		ck_assert_int_eq(dev->ops->pread(dev, back, 262144, z.start), 0);
		ck_assert_int_eq(memcmp(buf, back, 262144), 0);
		free(back);
	}
	close(fd);
	reset_all(dev);
	free(buf);
	zd_dev_close(dev);
}
END_TEST

/* A sequence that leaves zones in every condition, then the whole table
 * against blkzone. */
START_TEST(t_report_vs_blkzone)
{
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	uint32_t f = info.nr_conventional;
	void *buf = pattern(MIB, 11);

	reset_all(dev);
	compare_with_blkzone(dev);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, MIB, get_zone(dev, f).start), 0);     /* imp */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, f + 1, 1), 0);                 /* exp */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 4096, get_zone(dev, f + 1).start), 0);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 8192, get_zone(dev, f + 2).start), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, f + 2, 1), 0);                /* closed */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, f + 3, 1), 0);               /* full */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, 65536, get_zone(dev, f + 4).start), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, f + 4, 1), 0);               /* full */
	compare_with_blkzone(dev);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, f + 3, 1), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, f, 2), 0);
	compare_with_blkzone(dev);
	reset_all(dev);
	compare_with_blkzone(dev);
	free(buf);
	zd_dev_close(dev);
}
END_TEST

/* Validation of a device in use */

START_TEST(t_claim_exclusive)
{
	struct zd_dev *dev = open_dev(), *second = NULL;
	char why[256];
	int r = zd_kernel_open(dev_path, ZD_ISOLATION_AUTO, &second, why, sizeof(why));

	ck_assert_int_eq(r, -EBUSY);
	ck_assert_ptr_null(second);
	printf("%s: second claim refused: %s\n", dev_path, why);
	ck_assert_ptr_nonnull(strstr(why, "in use"));
	zd_dev_close(dev);
	dev = open_dev();
	zd_dev_close(dev);
}
END_TEST

/* Linux's crc32_le, seeded with ~0 and not inverted at the end, as zonefs
 * checks its superblock. */
static uint32_t crc32_le(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320U & -(crc & 1));
	}
	return crc;
}

/* A zonefs superblock (block 0): magic, crc, label, uuid, features, uid,
 * gid, perm, padding to 4096 bytes. The fields are little-endian. */
static void zonefs_super(unsigned char *sb)
{
	uint32_t crc;

	memset(sb, 0, 4096);
	sb[0] = 0x53; sb[1] = 0x46; sb[2] = 0x4f; sb[3] = 0x5a; /* 0x5a4f4653 */
	memcpy(sb + 8, "zoned-vm", 8);
	crc = crc32_le(~0U, sb, 4096);
	for (int i = 0; i < 4; i++)
		sb[4 + i] = (unsigned char)(crc >> (8 * i));
}

/* Arranged with zonefs, the one filesystem that mounts any zoned device
 * with no tools of its own: a mounted device is refused by name. */
START_TEST(t_refuse_mounted)
{
	const char *mnt = "/tmp/zoned-vm-mnt";
	unsigned char *sb = pattern(4096, 0);
	struct zd_dev *dev = open_dev();
	char why[256];
	int fd, r;

	reset_all(dev);
	zd_dev_close(dev);
	zonefs_super(sb);
	fd = open(dev_path, O_RDWR | O_DIRECT | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, sb, 4096, 0), 4096);
	close(fd);
	mkdir(mnt, 0755);
	if (mount(dev_path, mnt, "zonefs", 0, NULL) < 0) {
		r = errno;
		printf("%s: SKIP mounted-device refusal: cannot mount zonefs: %s\n", dev_path,
		       strerror(r));
		ck_assert_msg(r == ENODEV, "zonefs mount: %s", strerror(r));
	} else {
		dev = NULL;
		r = zd_kernel_open(dev_path, ZD_ISOLATION_AUTO, &dev, why, sizeof(why));
		umount(mnt);
		printf("%s: refused while mounted: %s\n", dev_path, why);
		ck_assert_int_eq(r, -EBUSY);
		ck_assert_ptr_nonnull(strstr(why, "mounted on"));
		ck_assert_ptr_nonnull(strstr(why, mnt));
	}
	/* wipe the superblock again */
	dev = open_dev();
	if (get_zone(dev, 0).type == ZP_TYPE_CONV) {
		memset(sb, 0, 4096);
		ck_assert_int_eq(dev->ops->pwrite(dev, sb, 4096, 0), 0);
	}
	reset_all(dev);
	zd_dev_close(dev);
	free(sb);
}
END_TEST

/* Device-mapper ioctls, to stack a linear target on the device: what lvm or
 * dmsetup would do, and what makes the device "held". */
static int dm_call(unsigned long req, const char *name, const void *data, size_t len,
		   uint32_t targets)
{
	union {
		struct dm_ioctl io;
		char raw[16384];
	} u;
	int ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC), r = 0;

	if (ctl < 0)
		return -errno;
	memset(&u, 0, sizeof(u));
	u.io.version[0] = DM_VERSION_MAJOR;
	u.io.data_size = sizeof(u);
	u.io.data_start = sizeof(u.io);
	u.io.target_count = targets;
	snprintf(u.io.name, sizeof(u.io.name), "%s", name);
	if (len)
		memcpy(u.raw + sizeof(u.io), data, len);
	if (ioctl(ctl, req, &u.io) < 0)
		r = -errno;
	close(ctl);
	return r;
}

START_TEST(t_refuse_held)
{
	const char *name = "zoned-vm-holder";
	struct dm_target_spec *spec;
	struct zd_dev *dev = open_dev();
	struct zd_dev_info info = get_info(dev);
	char table[512] __attribute__((aligned(8)));
	struct stat st;
	char why[256];
	size_t plen;
	int r;

	zd_dev_close(dev);
	if (access("/dev/mapper/control", F_OK) < 0) {
		printf("%s: SKIP held-device refusal: no device-mapper\n", dev_path);
		return;
	}
	ck_assert_int_eq(stat(dev_path, &st), 0);
	memset(table, 0, sizeof(table));
	spec = (struct dm_target_spec *)(void *)table;
	spec->sector_start = 0;
	spec->length = info.size >> 9;
	snprintf(spec->target_type, sizeof(spec->target_type), "linear");
	plen = (size_t)snprintf(table + sizeof(*spec), sizeof(table) - sizeof(*spec), "%u:%u 0",
				major(st.st_rdev), minor(st.st_rdev)) + 1;
	spec->next = 0;
	ck_assert_int_eq(dm_call(DM_DEV_CREATE, name, NULL, 0, 0), 0);
	r = dm_call(DM_TABLE_LOAD, name, table, sizeof(*spec) + plen, 1);
	if (r == 0) {
		dev = NULL;
		r = zd_kernel_open(dev_path, ZD_ISOLATION_AUTO, &dev, why, sizeof(why));
		printf("%s: refused while held: %s\n", dev_path, why);
	} else {
		why[0] = '\0';
		printf("%s: cannot load a dm-linear table: %s\n", dev_path, strerror(-r));
	}
	ck_assert_int_eq(dm_call(DM_DEV_REMOVE, name, NULL, 0, 0), 0);
	ck_assert_int_eq(r, -EBUSY);
	ck_assert_ptr_nonnull(strstr(why, "in use by dm-"));
	dev = open_dev();
	zd_dev_close(dev);
}
END_TEST

/* Zone isolation (device-mapper). The backend under test makes the
 * mappings; the checks read them back through the kernel (dm status and
 * tables, sysfs, the disk's zones), and the data through the disk. */

static char kname[64], whole[72];

static void dm_names(void)
{
	struct stat st;

	ck_assert_int_eq(stat(dev_path, &st), 0);
	ck_assert_int_eq(zd_dm_kernel_name(st.st_rdev, kname, sizeof(kname)), 0);
	snprintf(whole, sizeof(whole), "zoned-%s", kname);
}

/* Skips (true) where the guest has no device-mapper. */
static bool no_dm(const char *what)
{
	if (access("/dev/mapper/control", F_OK) == 0)
		return false;
	printf("%s: SKIP %s: no device-mapper\n", dev_path, what);
	return true;
}

static int ctl_fd = -1;

static int dmctl(void)
{
	char why[160];

	if (ctl_fd < 0)
		ck_assert_msg(zd_dm_control_open(&ctl_fd, why, sizeof(why)) == 0, "%s", why);
	return ctl_fd;
}

/* 1 when the mapping exists (st filled), 0 when not. */
static int mapping(const char *name, struct zd_dm_status *st)
{
	struct zd_dm_status tmp;
	int r = zd_dm_status(dmctl(), name, st ? st : &tmp);

	ck_assert_msg(r == 0 || r == -ENXIO, "dm status %s: %s", name, strerror(-r));
	return r == 0;
}

static void lease_name(uint32_t zone, char *out)
{
	snprintf(out, DM_NAME_LEN, "%s-%u", whole, zone);
}

static int count_cb(const char *name, dev_t dev, void *ud)
{
	(void)name;
	(void)dev;
	(*(unsigned *)ud)++;
	return 0;
}

/* Mappings whose name starts with prefix. */
static unsigned count_mappings(const char *prefix)
{
	unsigned n = 0;

	ck_assert_int_eq(zd_dm_list(dmctl(), prefix, count_cb, &n), 0);
	return n;
}

/* Deferred removal runs from a kernel work queue after the last close:
 * waits up to 5 s for the count to drop to want. */
static unsigned settle(const char *prefix, unsigned want)
{
	unsigned n = count_mappings(prefix);

	for (int i = 0; i < 500 && n > want; i++) {
		usleep(10000);
		n = count_mappings(prefix);
	}
	return n;
}

static unsigned count_fenced(uint32_t zone)
{
	char prefix[DM_NAME_LEN];

	snprintf(prefix, sizeof(prefix), "%s-%u.fenced.", whole, zone);
	return settle(prefix, 0);
}

static int iso_open(struct zd_dev *dev, uint32_t zone, uint32_t count)
{
	struct zd_zone_fds zf;
	int r = dev->ops->open_zones(dev, zone, count, O_RDWR | O_DIRECT, true, &zf);

	ck_assert_msg(r == 0, "open_zones(%u, %u, isolate): %s", zone, count, strerror(-r));
	ck_assert_uint_eq(zf.nr, 1);
	ck_assert_uint_eq(zf.fd_offset, 0);
	return zf.fd[0];
}

static uint64_t bdev_size(int fd)
{
	uint64_t size = 0;

	ck_assert_int_eq(ioctl(fd, BLKGETSIZE64, &size), 0);
	return size;
}

static dev_t fd_rdev(int fd)
{
	struct stat st;

	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert(S_ISBLK(st.st_mode));
	return st.st_rdev;
}

static void fd_sysfs(int fd, const char *attr, char *buf, size_t cap)
{
	char path[128];
	dev_t d = fd_rdev(fd);
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(d), minor(d), attr);
	f = fopen(path, "re");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	if (!fgets(buf, (int)cap, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

/* Drops every mapping of this disk the tests made and closes the backend. */
static void iso_done(struct zd_dev *dev)
{
	ck_assert_int_eq(dev->ops->lease_sweep(dev, NULL, 0), 0);
	reset_all(dev);
	zd_dev_close(dev);
	ck_assert_uint_eq(settle(whole, 0), 0);
}

static int excl_open_errno(void)
{
	int fd = open(dev_path, O_RDONLY | O_EXCL | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

START_TEST(t_iso_claim)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	struct zd_dm_status st;
	struct zd_dm_target t;
	char want[64];
	size_t nr = 1;
	struct stat ds;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	printf("%s: isolation %s (%s)\n", dev_path, zd_isolation_name(info.isolation),
	       info.isolation_why);
	ck_assert_int_eq(info.isolation, ZD_ISOLATION_ZONE);
	/* the whole-device mapping holds the disk: exclusive openers stay out */
	ck_assert_int_eq(mapping(whole, &st), 1);
	ck_assert_int_eq(st.open_count, 1);
	ck_assert_int_eq(zd_dm_table(dmctl(), whole, &t, &nr), 0);
	ck_assert_int_eq(stat(dev_path, &ds), 0);
	snprintf(want, sizeof(want), "%u:%u 0", major(ds.st_rdev), minor(ds.st_rdev));
	ck_assert_uint_eq(nr, 1);
	ck_assert_str_eq(t.type, "linear");
	ck_assert_str_eq(t.params, want);
	ck_assert_uint_eq(t.len << 9, info.size);
	ck_assert_int_eq(excl_open_errno(), EBUSY);
	/* a clean stop gives the disk back */
	zd_dev_close(dev);
	ck_assert_int_eq(mapping(whole, NULL), 0);
	ck_assert_int_eq(excl_open_errno(), 0);
}
END_TEST

/* An isolated fd is a host-managed device of exactly its zones, and its
 * writes move the real zone's write pointer. */
START_TEST(t_iso_reach)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	uint32_t zi;
	struct zd_zone z;
	void *buf = pattern(MIB, 21), *back = pattern(MIB, 0);
	char attr[64], cmd[256], line[256], name[DM_NAME_LEN];
	FILE *f;
	int fd;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	zi = info.nr_conventional + 1;
	fd = iso_open(dev, zi, 1);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert_uint_eq(bdev_size(fd), info.zone_size);
	fd_sysfs(fd, "queue/zoned", attr, sizeof(attr));
	ck_assert_str_eq(attr, "host-managed");
	fd_sysfs(fd, "queue/nr_zones", attr, sizeof(attr));
	ck_assert_str_eq(attr, "1");
	/* the table, as dmsetup prints it */
	lease_name(zi, name);
	snprintf(cmd, sizeof(cmd), "dmsetup --noudevsync table %s", name);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	pclose(f);
	line[strcspn(line, "\n")] = '\0';
	printf("%s: %s: %s\n", dev_path, name, line);
	{
		struct stat ds;
		char want[128];

		ck_assert_int_eq(stat(dev_path, &ds), 0);
		snprintf(want, sizeof(want), "0 %" PRIu64 " linear %u:%u %" PRIu64,
			 info.zone_size >> 9, major(ds.st_rdev), minor(ds.st_rdev),
			 (uint64_t)zi * (info.zone_size >> 9));
		ck_assert_str_eq(line, want);
	}
	/* a write at offset 0 lands at the zone's start on the disk */
	ck_assert_int_eq(pwrite(fd, buf, MIB, 0), (ssize_t)MIB);
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_IMP_OPEN, MIB);
	ck_assert_int_eq(dev->ops->pread(dev, back, MIB, z.start), 0);
	ck_assert_int_eq(memcmp(buf, back, MIB), 0);
	/* nothing past the lease: not the next zone, not the one before */
	errno = 0;
	ck_assert_int_eq(pwrite(fd, buf, 4096, (off_t)info.zone_size), -1);
	printf("%s: write past the leased zone: %s\n", dev_path, strerror(errno));
	ck_assert_int_eq(pread(fd, back, 4096, (off_t)info.zone_size), 0);
	assert_zone((struct zd_zone[]){ get_zone(dev, zi + 1) }, ZP_COND_EMPTY, 0);
	assert_zone((struct zd_zone[]){ get_zone(dev, zi - 1) }, ZP_COND_EMPTY, 0);
	/* the zone ioctls work on the mapping, in its own sectors */
	{
		struct blk_zone_range range = { .sector = 0, .nr_sectors = info.zone_size >> 9 };

		ck_assert_int_eq(ioctl(fd, BLKRESETZONE, &range), 0);
		assert_zone((struct zd_zone[]){ get_zone(dev, zi) }, ZP_COND_EMPTY, 0);
	}
	/* flags as the contract says */
	{
		struct zd_zone_fds zf;

		ck_assert_int_eq(dev->ops->open_zones(dev, zi, 1, O_RDWR | O_EXCL, true, &zf),
				 -EINVAL);
		ck_assert_int_eq(dev->ops->open_zones(dev, info.nr_zones - 1, 2, O_RDWR, true,
						      &zf), -ERANGE);
	}
	close(fd);
	free(buf);
	free(back);
	iso_done(dev);
}
END_TEST

/* A kept fd after the fence: EIO, the zone's data intact, and the zone can
 * be mapped again at once. */
START_TEST(t_iso_fence)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	struct zd_dm_status st;
	uint32_t zi;
	struct zd_zone z;
	void *buf = pattern(65536, 23), *back = pattern(65536, 0);
	char name[DM_NAME_LEN];
	int fd, fd2;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	zi = info.nr_conventional + 2;
	lease_name(zi, name);
	fd = iso_open(dev, zi, 1);
	ck_assert_int_eq(pwrite(fd, buf, 65536, 0), 65536);
	ck_assert_int_eq(dev->ops->lease_fence(dev, zi, 1), 0);
	errno = 0;
	ck_assert_int_eq(pwrite(fd, buf, 65536, 65536), -1);
	ck_assert_int_eq(errno, EIO);
	errno = 0;
	ck_assert_int_eq(pread(fd, back, 65536, 0), -1);
	ck_assert_int_eq(errno, EIO);
	z = get_zone(dev, zi);
	assert_zone(&z, ZP_COND_IMP_OPEN, 65536);
	ck_assert_int_eq(dev->ops->pread(dev, back, 65536, z.start), 0);
	ck_assert_int_eq(memcmp(buf, back, 65536), 0);
	/* renamed out of the way, marked to go at its last close */
	ck_assert_int_eq(mapping(name, NULL), 0);
	ck_assert_uint_eq(count_fenced(zi), 1);
	/* idempotent */
	ck_assert_int_eq(dev->ops->lease_fence(dev, zi, 1), 0);
	/* the next holder gets the zone while the fenced fd is still open */
	fd2 = iso_open(dev, zi, 1);
	ck_assert_int_eq(pwrite(fd2, buf, 65536, 65536), 65536);
	assert_zone((struct zd_zone[]){ get_zone(dev, zi) }, ZP_COND_IMP_OPEN, 131072);
	errno = 0;
	ck_assert_int_eq(pwrite(fd, buf, 4096, 131072), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	ck_assert_uint_eq(count_fenced(zi), 0);
	/* a mapping nobody holds any more is simply removed */
	close(fd2);
	ck_assert_int_eq(mapping(name, &st), 1);
	ck_assert_int_eq(st.open_count, 0);
	ck_assert_int_eq(dev->ops->lease_fence(dev, zi, 1), 0);
	ck_assert_int_eq(mapping(name, NULL), 0);
	ck_assert_uint_eq(count_fenced(zi), 0);
	free(buf);
	free(back);
	iso_done(dev);
}
END_TEST

/* Three zones as one mapping: three zones of the mapped device, each write
 * landing in its own zone on the disk. */
START_TEST(t_iso_multi)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	uint32_t zi;
	void *buf = pattern(65536, 25), *back = pattern(65536, 0);
	char attr[64];
	int fd;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	zi = info.nr_conventional + 3;
	fd = iso_open(dev, zi, 3);
	ck_assert_uint_eq(bdev_size(fd), 3 * info.zone_size);
	fd_sysfs(fd, "queue/nr_zones", attr, sizeof(attr));
	ck_assert_str_eq(attr, "3");
	for (uint32_t i = 0; i < 3; i++) {
		ck_assert_int_eq(pwrite(fd, buf, 65536, (off_t)(i * info.zone_size)), 65536);
		ck_assert_int_eq(pwrite(fd, buf, 4096 * (i + 1), (off_t)(i * info.zone_size + 65536)),
				 (ssize_t)(4096 * (i + 1)));
	}
	for (uint32_t i = 0; i < 3; i++) {
		struct zd_zone z = get_zone(dev, zi + i);

		assert_zone(&z, ZP_COND_IMP_OPEN, 65536 + 4096 * (i + 1));
		ck_assert_int_eq(dev->ops->pread(dev, back, 65536, z.start), 0);
		ck_assert_int_eq(memcmp(buf, back, 65536), 0);
	}
	assert_zone((struct zd_zone[]){ get_zone(dev, zi + 3) }, ZP_COND_EMPTY, 0);
	errno = 0;
	ck_assert_int_eq(pwrite(fd, buf, 4096, (off_t)(3 * info.zone_size)), -1);
	/* the fence of the range cuts all three */
	ck_assert_int_eq(dev->ops->lease_fence(dev, zi, 3), 0);
	errno = 0;
	ck_assert_int_eq(pwrite(fd, buf, 4096, (off_t)(2 * info.zone_size + 65536 + 12288)), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	free(buf);
	free(back);
	iso_done(dev);
}
END_TEST

/* The sweep keeps the listed ranges' mappings and fences or removes every
 * other one; a mapping of the same name with another table is not kept. */
START_TEST(t_iso_sweep)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	uint32_t a, b, c, d;
	char na[DM_NAME_LEN], nb[DM_NAME_LEN], nc[DM_NAME_LEN], nd[DM_NAME_LEN];
	struct zd_dm_status st;
	void *buf = pattern(4096, 27);
	dev_t bdev;
	int fd, held;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	a = info.nr_conventional;
	b = a + 1;
	c = a + 2;
	d = a + 4;
	lease_name(a, na);
	lease_name(b, nb);
	lease_name(c, nc);
	lease_name(d, nd);
	close(iso_open(dev, a, 1));
	fd = iso_open(dev, b, 1);
	bdev = fd_rdev(fd);
	close(fd);
	close(iso_open(dev, c, 2));
	held = iso_open(dev, d, 1);
	ck_assert_int_eq(pwrite(held, buf, 4096, 0), 4096);
	ck_assert_uint_eq(count_mappings(whole), 5);
	/* keep b; keep c only as [c, c+1), which is not what it maps */
	{
		const struct zd_range keep[] = { { b, 1 }, { c, 1 } };

		ck_assert_int_eq(dev->ops->lease_sweep(dev, keep, 2), 0);
	}
	ck_assert_int_eq(mapping(na, NULL), 0);
	ck_assert_int_eq(mapping(nb, &st), 1);
	ck_assert_uint_eq(st.dev, bdev);
	ck_assert_int_eq(mapping(nc, NULL), 0);
	ck_assert_int_eq(mapping(nd, NULL), 0);
	ck_assert_uint_eq(count_fenced(d), 1);
	errno = 0;
	ck_assert_int_eq(pwrite(held, buf, 4096, 4096), -1);
	ck_assert_int_eq(errno, EIO);
	/* the kept one is adopted by the reclaim: the same mapping */
	fd = iso_open(dev, b, 1);
	ck_assert_uint_eq(fd_rdev(fd), bdev);
	close(fd);
	close(held);
	ck_assert_uint_eq(count_fenced(d), 0);
	ck_assert_uint_eq(get_zone(dev, d).wp - get_zone(dev, d).start, 4096);
	free(buf);
	iso_done(dev);
}
END_TEST

/* open_zones adopts a mapping of exactly its range, and fences one of the
 * same name that maps something else (a holder of it gets EIO). */
START_TEST(t_iso_adopt)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	uint32_t zi;
	void *buf = pattern(4096, 29);
	int fd1, fd2, fd3;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	zi = info.nr_conventional + 5;
	fd1 = iso_open(dev, zi, 1);
	fd2 = iso_open(dev, zi, 1);
	ck_assert_uint_eq(fd_rdev(fd1), fd_rdev(fd2));
	ck_assert_int_eq(pwrite(fd1, buf, 4096, 0), 4096);
	ck_assert_int_eq(pwrite(fd2, buf, 4096, 4096), 4096);
	fd3 = iso_open(dev, zi, 2);
	ck_assert_uint_ne(fd_rdev(fd3), fd_rdev(fd1));
	ck_assert_uint_eq(bdev_size(fd3), 2 * info.zone_size);
	errno = 0;
	ck_assert_int_eq(pwrite(fd1, buf, 4096, 8192), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(pwrite(fd3, buf, 4096, 8192), 4096);
	assert_zone((struct zd_zone[]){ get_zone(dev, zi) }, ZP_COND_IMP_OPEN, 12288);
	close(fd1);
	close(fd2);
	close(fd3);
	free(buf);
	iso_done(dev);
}
END_TEST

/* A daemon killed with leases out: its mappings survive it and keep the
 * disk claimed; the next start adopts the whole-device mapping, the sweep
 * keeps the orphaned lease it is told to and fences the other. */
START_TEST(t_iso_crash)
{
	struct zd_dev *dev;
	struct zd_dev_info info;
	struct zd_dm_status st;
	char na[DM_NAME_LEN], nb[DM_NAME_LEN], node[64];
	uint32_t a, b;
	void *buf = pattern(4096, 31);
	dev_t wdev, adev;
	pid_t pid;
	int status, held, fd;

	if (no_dm("zone isolation"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	zd_dev_close(dev);
	a = info.nr_conventional + 6;
	b = a + 2;
	lease_name(a, na);
	lease_name(b, nb);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct zd_dev *d = NULL;
		struct zd_zone_fds zf;
		char why[256];

		if (zd_kernel_open(dev_path, ZD_ISOLATION_ZONE, &d, why, sizeof(why)) < 0 ||
		    d->ops->open_zones(d, a, 1, O_RDWR, true, &zf) < 0 ||
		    d->ops->open_zones(d, b, 2, O_RDWR, true, &zf) < 0)
			_exit(2);
		raise(SIGKILL);
		_exit(3);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d",
		      status);
	ck_assert_int_eq(mapping(whole, &st), 1);
	ck_assert_int_eq(st.open_count, 0);
	wdev = st.dev;
	ck_assert_int_eq(mapping(na, &st), 1);
	adev = st.dev;
	ck_assert_int_eq(mapping(nb, &st), 1);
	ck_assert_int_eq(excl_open_errno(), EBUSY);
	/* a client still holds b's mapping */
	snprintf(node, sizeof(node), "/dev/dm-%u", minor(st.dev));
	held = open(node, O_RDWR | O_DIRECT | O_CLOEXEC);
	ck_assert_msg(held >= 0, "%s: %s", node, strerror(errno));
	ck_assert_uint_eq(fd_rdev(held), st.dev);
	ck_assert_int_eq(pwrite(held, buf, 4096, 0), 4096);

	dev = open_dev();
	ck_assert_int_eq(mapping(whole, &st), 1);
	ck_assert_uint_eq(st.dev, wdev);
	ck_assert_int_eq(st.open_count, 1);
	{
		const struct zd_range keep[] = { { a, 1 } };

		ck_assert_int_eq(dev->ops->lease_sweep(dev, keep, 1), 0);
	}
	ck_assert_int_eq(mapping(nb, NULL), 0);
	errno = 0;
	ck_assert_int_eq(pwrite(held, buf, 4096, 4096), -1);
	ck_assert_int_eq(errno, EIO);
	assert_zone((struct zd_zone[]){ get_zone(dev, b) }, ZP_COND_IMP_OPEN, 4096);
	fd = iso_open(dev, a, 1);
	ck_assert_uint_eq(fd_rdev(fd), adev);
	close(fd);
	close(held);
	free(buf);
	iso_done(dev);
}
END_TEST

/* Device isolation as before: no mapping, the disk claimed O_EXCL, the fd
 * the whole disk at the zone's offset; a disk our mappings hold is refused
 * with the reason. */
START_TEST(t_iso_device_mode)
{
	struct zd_dev *dev = NULL, *zdev;
	struct zd_dev_info info;
	struct zd_zone_fds zf;
	char why[256];
	uint32_t zi;
	void *buf = pattern(4096, 33);
	int fd;

	dm_names();
	ck_assert_int_eq(zd_kernel_open(dev_path, ZD_ISOLATION_DEVICE, &dev, why, sizeof(why)), 0);
	info = get_info(dev);
	ck_assert_int_eq(info.isolation, ZD_ISOLATION_DEVICE);
	ck_assert_str_eq(info.isolation_why, "configured");
	if (!no_dm("device isolation's dm checks"))
		ck_assert_int_eq(mapping(whole, NULL), 0);
	ck_assert_int_eq(excl_open_errno(), EBUSY);
	reset_all(dev);
	zi = info.nr_conventional;
	ck_assert_int_eq(dev->ops->open_zones(dev, zi, 1, O_RDWR, true, &zf), -EOPNOTSUPP);
	ck_assert_int_eq(dev->ops->open_zones(dev, zi, 1, O_RDWR | O_DIRECT, false, &zf), 0);
	ck_assert_uint_eq(zf.nr, 1);
	ck_assert_uint_eq(zf.fd_offset, (uint64_t)zi * info.zone_size);
	ck_assert_uint_eq(bdev_size(zf.fd[0]), info.size);
	ck_assert_int_eq(pwrite(zf.fd[0], buf, 4096, (off_t)zf.fd_offset), 4096);
	close(zf.fd[0]);
	assert_zone((struct zd_zone[]){ get_zone(dev, zi) }, ZP_COND_IMP_OPEN, 4096);
	ck_assert_int_eq(dev->ops->lease_sweep(dev, NULL, 0), 0);
	reset_all(dev);
	zd_dev_close(dev);
	if (no_dm("device isolation beside leftover mappings"))
		goto out;
	/* zone isolation leaves a lease mapping; device isolation refuses */
	zdev = open_dev();
	fd = iso_open(zdev, zi, 1);
	close(fd);
	/* the backend dropped without its clean stop's removal would leave
	 * zoned-<kname> too; here only the lease mapping is left */
	zd_dev_close(zdev);
	dev = NULL;
	ck_assert_int_eq(zd_kernel_open(dev_path, ZD_ISOLATION_DEVICE, &dev, why, sizeof(why)),
			 -EBUSY);
	printf("%s: device isolation refused: %s\n", dev_path, why);
	ck_assert_ptr_nonnull(strstr(why, whole));
	iso_done(open_dev());
out:
	free(buf);
}
END_TEST

/* AUTO without device-mapper: device isolation, saying why; ZONE fails. */
static void fallback(const char *what, const char *want_why)
{
	struct zd_dev *dev = NULL;
	char why[256];
	struct zd_dev_info info;
	int r;

	ck_assert_int_eq(zd_kernel_open(dev_path, ZD_ISOLATION_AUTO, &dev, why, sizeof(why)), 0);
	info = get_info(dev);
	printf("%s: %s: isolation %s (%s)\n", dev_path, what, zd_isolation_name(info.isolation),
	       info.isolation_why);
	ck_assert_int_eq(info.isolation, ZD_ISOLATION_DEVICE);
	ck_assert_msg(strstr(info.isolation_why, want_why), "'%s' lacks '%s'",
		      info.isolation_why, want_why);
	ck_assert_int_eq(excl_open_errno(), EBUSY);
	zd_dev_close(dev);
	dev = NULL;
	r = zd_kernel_open(dev_path, ZD_ISOLATION_ZONE, &dev, why, sizeof(why));
	printf("%s: %s: zone isolation refused: %s\n", dev_path, what, why);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(dev);
	ck_assert_msg(strstr(why, want_why), "'%s' lacks '%s'", why, want_why);
}

/* Check forks each test, so what this one drops stays in its process. */
START_TEST(t_iso_fallback_nocap)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct c[2];

	if (no_dm("fallback without CAP_SYS_ADMIN"))
		return;
	ck_assert_int_eq(syscall(SYS_capget, &h, c), 0);
	c[0].effective &= ~(1U << CAP_SYS_ADMIN);
	ck_assert_int_eq(syscall(SYS_capset, &h, c), 0);
	fallback("without CAP_SYS_ADMIN", "CAP_SYS_ADMIN");
}
END_TEST

START_TEST(t_iso_fallback_nocontrol)
{
	if (no_dm("fallback without /dev/mapper/control"))
		return;
	/* a private mount namespace with /dev/mapper empty */
	ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
	ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	ck_assert_int_eq(mount("tmpfs", "/dev/mapper", "tmpfs", 0, "mode=0755"), 0);
	fallback("without /dev/mapper/control", "no /dev/mapper/control");
}
END_TEST

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Writes the zone's capacity in 1 MiB O_DIRECT writes from offset off of
 * fd; MiB/s. */
static double fill_mibs(int fd, uint64_t off, uint64_t cap)
{
	void *buf = pattern(MIB, 35);
	double t0 = now_us();

	for (uint64_t at = 0; at < cap; at += MIB)
		ck_assert_int_eq(pwrite(fd, buf, MIB, (off_t)(off + at)), (ssize_t)MIB);
	t0 = now_us() - t0;
	free(buf);
	return (double)cap / MIB / (t0 / 1e6);
}

START_TEST(t_iso_bench)
{
	const int rounds = 20;
	struct zd_dev *dev;
	struct zd_dev_info info;
	struct zd_zone z;
	uint32_t zi;
	double t0, t_disk = 0, t_make = 0, t_drop = 0, t_fence = 0, bw[2][2];
	int fd;

	if (no_dm("isolation cost"))
		return;
	dm_names();
	dev = open_dev();
	info = get_info(dev);
	reset_all(dev);
	zi = info.nr_conventional;
	for (int i = 0; i < rounds; i++) {
		t0 = now_us();
		close(zd_dev_open_zone(dev, zi, O_RDWR | O_DIRECT, NULL));
		t_disk += now_us() - t0;
		/* a lease whose client closed its fd before it ended */
		t0 = now_us();
		fd = iso_open(dev, zi, 1);
		t_make += now_us() - t0;
		t0 = now_us();
		close(fd);
		ck_assert_int_eq(dev->ops->lease_fence(dev, zi, 1), 0);
		t_drop += now_us() - t0;
		/* a lease revoked with its fd open */
		fd = iso_open(dev, zi, 1);
		t0 = now_us();
		ck_assert_int_eq(dev->ops->lease_fence(dev, zi, 1), 0);
		t_fence += now_us() - t0;
		close(fd);
	}
	printf("%s: BENCH per zone, mean of %d: open+close of the disk %.0f us; isolated: "
	       "create+open %.0f us, close+remove %.0f us; fence of an open mapping (suspend, "
	       "error, resume, rename, deferred remove) %.0f us\n", dev_path, rounds,
	       t_disk / rounds, t_make / rounds, t_drop / rounds, t_fence / rounds);
	z = get_zone(dev, zi);
	/* the first pass also allocates the backing store (QEMU's image
	 * file): two rounds, both printed */
	for (int round = 0; round < 2; round++) {
		fd = zd_dev_open_zone(dev, zi, O_RDWR | O_DIRECT, NULL);
		bw[round][0] = fill_mibs(fd, z.start, z.capacity);
		close(fd);
		ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, zi, 1), 0);
		fd = iso_open(dev, zi, 1);
		bw[round][1] = fill_mibs(fd, 0, z.capacity);
		close(fd);
		ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, zi, 1), 0);
	}
	printf("%s: BENCH O_DIRECT 1 MiB pwrite of a zone (%" PRIu64 " MiB), disk / mapping: "
	       "round 1 %.0f / %.0f MiB/s, round 2 %.0f / %.0f MiB/s\n", dev_path,
	       z.capacity / MIB, bw[0][0], bw[0][1], bw[1][0], bw[1][1]);
	iso_done(dev);
}
END_TEST

/* mq-deadline and none are both fine; the one in use is reported. */
START_TEST(t_scheduler)
{
	static const char *const scheds[] = { "mq-deadline", "none" };
	char saved[128], cur[32];
	struct zd_dev *dev;

	ck_assert_int_eq(sysfs_attr("queue/scheduler", saved, sizeof(saved)), 0);
	for (size_t i = 0; i < 2; i++) {
		ck_assert_int_eq(sysfs_write("queue/scheduler", scheds[i]), 0);
		dev = open_dev();
		ck_assert_str_eq(get_info(dev).scheduler, scheds[i]);
		zd_dev_close(dev);
	}
	{
		const char *lb = strchr(saved, '['), *rb = lb ? strchr(lb, ']') : NULL;

		ck_assert_ptr_nonnull(rb);
		snprintf(cur, sizeof(cur), "%.*s", (int)(rb - lb - 1), lb + 1);
		ck_assert_int_eq(sysfs_write("queue/scheduler", cur), 0);
	}
}
END_TEST

/* Devices that are not whole zoned block devices */

static void refused(const char *path, int want, const char *want_why)
{
	struct zd_dev *dev = NULL;
	char why[256];
	int r = zd_kernel_open(path, ZD_ISOLATION_AUTO, &dev, why, sizeof(why));

	printf("%s: %s (%s)\n", path, why, strerror(-r));
	ck_assert_msg(r == want, "%s: %d (%s), expected %d (%s)", path, r, strerror(-r), want,
		      strerror(-want));
	ck_assert_ptr_null(dev);
	ck_assert_msg(strstr(why, want_why) != NULL, "%s: '%s' lacks '%s'", path, why, want_why);
}

START_TEST(t_refuse_not_block)
{
	char tmp[] = "/tmp/zoned-vm-fileXXXXXX";
	int fd = mkstemp(tmp);

	ck_assert_int_ge(fd, 0);
	close(fd);
	refused(tmp, -ENOTBLK, "not a block device");
	refused("/dev/null", -ENOTBLK, "not a block device");
	refused("/dev/zoned-vm-nonexistent", -ENOENT, "No such file");
	unlink(tmp);
}
END_TEST

START_TEST(t_refuse_not_zoned)
{
	refused(plain_path, -EMEDIUMTYPE, "not a zoned block device");
}
END_TEST

START_TEST(t_refuse_partition)
{
	refused(part_path, -EINVAL, "is a partition");
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("vm-kernel");
	TCase *tc;
	SRunner *sr;
	int failed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && strcmp(argv[1], "--refusals") == 0) {
		plain_path = argv[2];
		part_path = argv[3];
		tc = tcase_create("refusals");
		tcase_add_test(tc, t_refuse_not_block);
		tcase_add_test(tc, t_refuse_not_zoned);
		tcase_add_test(tc, t_refuse_partition);
	} else if (argc == 3) {
		dev_path = argv[1];
		if (parse_expect(argv[2]) < 0) {
			fprintf(stderr, "vm-kernel-test: bad expectation '%s'\n", argv[2]);
			return 2;
		}
		tc = tcase_create(dev_path);
		tcase_add_test(tc, t_info);
		tcase_add_test(tc, t_report_ranges);
		tcase_add_test(tc, t_write_at_wp);
		tcase_add_test(tc, t_fill_to_capacity);
		tcase_add_test(tc, t_flush);
		tcase_add_test(tc, t_zone_ops);
		tcase_add_test(tc, t_limits);
		tcase_add_test(tc, t_open_fd_refresh);
		tcase_add_test(tc, t_report_vs_blkzone);
		tcase_add_test(tc, t_claim_exclusive);
		tcase_add_test(tc, t_refuse_mounted);
		tcase_add_test(tc, t_refuse_held);
		tcase_add_test(tc, t_scheduler);
		tcase_add_test(tc, t_iso_claim);
		tcase_add_test(tc, t_iso_reach);
		tcase_add_test(tc, t_iso_fence);
		tcase_add_test(tc, t_iso_multi);
		tcase_add_test(tc, t_iso_sweep);
		tcase_add_test(tc, t_iso_adopt);
		tcase_add_test(tc, t_iso_crash);
		tcase_add_test(tc, t_iso_device_mode);
		tcase_add_test(tc, t_iso_fallback_nocap);
		tcase_add_test(tc, t_iso_fallback_nocontrol);
		tcase_add_test(tc, t_iso_bench);
	} else {
		fprintf(stderr, "usage: vm-kernel-test DEVICE EXPECT\n"
				"       vm-kernel-test --refusals PLAIN_DISK PARTITION\n");
		return 2;
	}
	/* generous: software emulation, and a whole zone written at once */
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_VERBOSE);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
