/* Unit tests of daemon/blkdev.c against a fake sysfs tree and mountinfo file
 * in a temporary directory: properties of a zoned disk, a partition and a
 * plain disk, and each check's verdict and reason. The same code on real
 * devices runs in the VM suite (tests/vm/vm-validate.sh). */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "daemon/blkdev.h"

#define MIB (1024ull * 1024ull)

static char root[PATH_MAX];

/* Writes root/rel (making its directories) with printf-formatted content. */
static void put(const char *rel, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(const char *rel, const char *fmt, ...)
{
	char path[PATH_MAX * 2];
	FILE *f;
	va_list ap;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	ck_assert_int_eq(fclose(f), 0);
}

static void mkdirs(const char *rel)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/%s/", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
}

static int opendir_at(const char *rel)
{
	char path[PATH_MAX * 2];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	return fd;
}

static const char *at(const char *rel)
{
	static char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	return path;
}

/* sys/devices/zdisk: a host-managed disk of 2 GiB in 32 zones of 64 MiB
 * with limits 8/12, mq-deadline, a SCSI identity and one partition
 * zdisk1 (dev 259:1) from 1 MiB. sys/devices/plain: a non-zoned disk with
 * only the mandatory attributes. */
static void setup(void)
{
	snprintf(root, sizeof(root), "%s/test-blkdev.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(root));

	put("sys/devices/zdisk/dev", "259:0\n");
	put("sys/devices/zdisk/size", "%llu\n", 2048ull * MIB / 512);
	put("sys/devices/zdisk/ro", "0\n");
	put("sys/devices/zdisk/queue/zoned", "host-managed\n");
	put("sys/devices/zdisk/queue/scheduler", "none [mq-deadline] kyber\n");
	put("sys/devices/zdisk/queue/logical_block_size", "4096\n");
	put("sys/devices/zdisk/queue/physical_block_size", "4096\n");
	put("sys/devices/zdisk/queue/chunk_sectors", "%llu\n", 64 * MIB / 512);
	put("sys/devices/zdisk/queue/nr_zones", "32\n");
	put("sys/devices/zdisk/queue/max_open_zones", "8\n");
	put("sys/devices/zdisk/queue/max_active_zones", "12\n");
	put("sys/devices/zdisk/device/vendor", "ATA     \n");
	put("sys/devices/zdisk/device/model", "  HSH721414ALE6M0\n");
	mkdirs("sys/devices/zdisk/holders");
	put("sys/devices/zdisk/zdisk1/partition", "1\n");
	put("sys/devices/zdisk/zdisk1/dev", "259:1\n");
	put("sys/devices/zdisk/zdisk1/start", "2048\n");
	put("sys/devices/zdisk/zdisk1/size", "%llu\n", 1024ull * MIB / 512);
	mkdirs("sys/devices/zdisk/zdisk1/holders");

	put("sys/devices/plain/dev", "254:0\n");
	put("sys/devices/plain/size", "131072\n");
	put("sys/devices/plain/queue/zoned", "none\n");
	put("sys/devices/plain/queue/logical_block_size", "512\n");

	mkdirs("sys/dev/block");
	ck_assert_int_eq(symlink("../../devices/zdisk", at("sys/dev/block/259:0")), 0);

	put("mountinfo.none",
	    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
	    "23 22 0:21 / /proc rw shared:2 - proc proc rw\n");
	put("mountinfo.disk", "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
			      "40 22 259:0 / /mnt/z rw - zonefs /dev/zdisk rw\n");
	put("mountinfo.part", "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
			      "41 22 259:1 / /srv/data rw - ext4 /dev/zdisk1 rw\n");
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(props_of_a_zoned_disk)
{
	int fd = zd_blkdev_sysfs_open(at("sys"), makedev(259, 0));
	struct zd_blkdev_props p;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(zd_blkdev_read_props(fd, &p), 0);
	ck_assert_str_eq(p.name, "zdisk");
	ck_assert_str_eq(p.parent, "");
	ck_assert(!p.partition);
	ck_assert(!p.read_only);
	ck_assert_str_eq(p.zoned, "host-managed");
	ck_assert_str_eq(p.scheduler, "mq-deadline");
	ck_assert_str_eq(p.vendor, "ATA");
	ck_assert_str_eq(p.product, "HSH721414ALE6M0");
	ck_assert_uint_eq(p.size, 2048 * MIB);
	ck_assert_uint_eq(p.logical_block_size, 4096);
	ck_assert_uint_eq(p.physical_block_size, 4096);
	ck_assert_uint_eq(p.zone_size, 64 * MIB);
	ck_assert_uint_eq(p.nr_zones, 32);
	ck_assert_uint_eq(p.max_open, 8);
	ck_assert_uint_eq(p.max_active, 12);
	close(fd);
	ck_assert_int_eq(zd_blkdev_sysfs_open(at("sys"), makedev(259, 7)), -ENOENT);
}
END_TEST

START_TEST(props_of_a_partition_come_from_its_disk)
{
	int fd = opendir_at("sys/devices/zdisk/zdisk1");
	struct zd_blkdev_props p;

	ck_assert_int_eq(zd_blkdev_read_props(fd, &p), 0);
	ck_assert(p.partition);
	ck_assert_str_eq(p.name, "zdisk1");
	ck_assert_str_eq(p.parent, "zdisk");
	ck_assert_uint_eq(p.start, MIB);
	ck_assert_uint_eq(p.size, 1024 * MIB);
	ck_assert_str_eq(p.zoned, "host-managed");
	ck_assert_str_eq(p.scheduler, "mq-deadline");
	ck_assert_uint_eq(p.logical_block_size, 4096);
	ck_assert_str_eq(p.product, "HSH721414ALE6M0");
	close(fd);
}
END_TEST

START_TEST(props_of_a_plain_disk_leave_zone_fields_zero)
{
	int fd = opendir_at("sys/devices/plain");
	struct zd_blkdev_props p;

	ck_assert_int_eq(zd_blkdev_read_props(fd, &p), 0);
	ck_assert_str_eq(p.zoned, "none");
	ck_assert_str_eq(p.scheduler, "none"); /* no scheduler file */
	ck_assert_str_eq(p.vendor, "");
	ck_assert_uint_eq(p.size, 64 * MIB);
	ck_assert_uint_eq(p.physical_block_size, 0);
	ck_assert_uint_eq(p.zone_size, 0);
	ck_assert_uint_eq(p.nr_zones, 0);
	close(fd);
}
END_TEST

START_TEST(attributes_parse_strictly)
{
	int fd = opendir_at(".");
	uint64_t v;
	char out[8];

	put("n1", "  42 \n");
	put("n2", "42x\n");
	put("n3", "-1\n");
	put("n4", "\n");
	put("n5", "99999999999\n");
	ck_assert_int_eq(zd_sysfs_u64(fd, "n1", &v), 0);
	ck_assert_uint_eq(v, 42);
	ck_assert_int_eq(zd_sysfs_u64(fd, "n2", &v), -EINVAL);
	ck_assert_int_eq(zd_sysfs_u64(fd, "n3", &v), -EINVAL);
	ck_assert_int_eq(zd_sysfs_u64(fd, "n4", &v), -EINVAL);
	ck_assert_int_eq(zd_sysfs_u64(fd, "missing", &v), -ENOENT);
	ck_assert_uint_eq(zd_sysfs_u32_or0(fd, "n5"), 0); /* out of range */
	ck_assert_uint_eq(zd_sysfs_u32_or0(fd, "missing"), 0);
	zd_blkdev_pick_scheduler("none [mq-deadline] kyber", out, sizeof(out));
	ck_assert_str_eq(out, "mq-dead"); /* cut to the buffer */
	zd_blkdev_pick_scheduler("[none] mq-deadline", out, sizeof(out));
	ck_assert_str_eq(out, "none");
	zd_blkdev_pick_scheduler("none", out, sizeof(out));
	ck_assert_str_eq(out, "none");
	close(fd);
}
END_TEST

START_TEST(zoned_and_whole_checks)
{
	int disk = opendir_at("sys/devices/zdisk"), part = opendir_at("sys/devices/zdisk/zdisk1");
	int plain = opendir_at("sys/devices/plain");
	char why[256], model[16];

	ck_assert_int_eq(zd_blkdev_check_whole(disk, "/dev/zdisk", why, sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_whole(part, "/dev/zdisk1", why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "/dev/zdisk1 is a partition; give the whole device");
	ck_assert_int_eq(zd_blkdev_check_zoned(disk, "/dev/zdisk", model, sizeof(model), why,
					       sizeof(why)), 0);
	ck_assert_str_eq(model, "host-managed");
	ck_assert_int_eq(zd_blkdev_check_zoned(part, "/dev/zdisk1", model, sizeof(model), why,
					       sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_zoned(plain, "/dev/plain", model, sizeof(model), why,
					       sizeof(why)), -EMEDIUMTYPE);
	ck_assert_str_eq(why, "/dev/plain is not a zoned block device (queue/zoned: none)");
	close(disk);
	close(part);
	close(plain);
}
END_TEST

START_TEST(geometry_and_limits)
{
	struct zd_blkdev_props p = {
		.size = 2048 * MIB, .zone_size = 64 * MIB, .nr_zones = 32,
		.logical_block_size = 4096, .max_open = 8, .max_active = 12,
	};
	char why[256];

	ck_assert_int_eq(zd_blkdev_check_geometry(&p, "d", why, sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_limits(&p, "d", why, sizeof(why)), 0);
	p.size += 16 * MIB; /* a smaller last zone */
	ck_assert_int_eq(zd_blkdev_check_geometry(&p, "d", why, sizeof(why)), -EIO);
	p.nr_zones = 33;
	ck_assert_int_eq(zd_blkdev_check_geometry(&p, "d", why, sizeof(why)), 0);
	p.nr_zones = 31;
	ck_assert_int_eq(zd_blkdev_check_geometry(&p, "d", why, sizeof(why)), -EIO);
	ck_assert_str_eq(why, "d: 31 zones of 67108864 bytes disagree with its size of "
			      "2164260864 bytes");
	p.nr_zones = 0;
	ck_assert_int_eq(zd_blkdev_check_geometry(&p, "d", why, sizeof(why)), -EMEDIUMTYPE);
	ck_assert_str_eq(why, "d reports no zones");
	p.nr_zones = 33;
	p.zone_size = 64 * MIB + 512;
	ck_assert_int_eq(zd_blkdev_check_geometry(&p, "d", why, sizeof(why)), -EIO);
	p.max_open = 13;
	ck_assert_int_eq(zd_blkdev_check_limits(&p, "d", why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "d: max open zones 13 exceeds max active zones 12");
	p.max_active = 0; /* no active limit: any open limit goes */
	ck_assert_int_eq(zd_blkdev_check_limits(&p, "d", why, sizeof(why)), 0);
	p.max_active = 40;
	ck_assert_int_eq(zd_blkdev_check_limits(&p, "d", why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(mounts_of_the_disk_and_its_partitions)
{
	int disk = opendir_at("sys/devices/zdisk");
	dev_t dev = makedev(259, 0);
	char why[256], mi[PATH_MAX * 2];

	snprintf(mi, sizeof(mi), "%s", at("mountinfo.none"));
	ck_assert_int_eq(zd_blkdev_check_mounts(disk, mi, "/dev/zdisk", dev, why, sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_unused(disk, mi, "/dev/zdisk", dev, why, sizeof(why)), 0);
	snprintf(mi, sizeof(mi), "%s", at("mountinfo.disk"));
	ck_assert_int_eq(zd_blkdev_check_mounts(disk, mi, "/dev/zdisk", dev, why, sizeof(why)),
			 -EBUSY);
	ck_assert_str_eq(why, "/dev/zdisk is mounted on /mnt/z");
	snprintf(mi, sizeof(mi), "%s", at("mountinfo.part"));
	ck_assert_int_eq(zd_blkdev_check_unused(disk, mi, "/dev/zdisk", dev, why, sizeof(why)),
			 -EBUSY);
	ck_assert_str_eq(why, "/dev/zdisk has partition zdisk1 mounted on /srv/data");
	snprintf(mi, sizeof(mi), "%s", at("missing"));
	ck_assert_int_eq(zd_blkdev_check_mounts(disk, mi, "/dev/zdisk", dev, why, sizeof(why)),
			 -ENOENT);
	ck_assert_ptr_nonnull(strstr(why, "cannot read"));
	close(disk);
}
END_TEST

START_TEST(holders_of_the_disk_and_its_partitions)
{
	int disk = opendir_at("sys/devices/zdisk");
	char why[256];

	ck_assert_int_eq(zd_blkdev_check_holders(disk, "/dev/zdisk", why, sizeof(why)), 0);
	put("sys/devices/zdisk/zdisk1/holders/md127", "%s", "");
	ck_assert_int_eq(zd_blkdev_check_holders(disk, "/dev/zdisk", why, sizeof(why)), -EBUSY);
	ck_assert_str_eq(why, "/dev/zdisk has partition zdisk1 in use by md127");
	ck_assert_int_eq(unlink(at("sys/devices/zdisk/zdisk1/holders/md127")), 0);
	put("sys/devices/zdisk/holders/dm-3", "%s", "");
	ck_assert_int_eq(zd_blkdev_check_unused(disk, at("mountinfo.none"), "/dev/zdisk",
						makedev(259, 0), why, sizeof(why)), -EBUSY);
	ck_assert_str_eq(why, "/dev/zdisk is in use by dm-3 (sysfs holders)");
	/* sysfs's holders/ entries are links to the holder's directory: a
	 * device-mapper one is named, zonedd's own told apart. */
	ck_assert_int_eq(unlink(at("sys/devices/zdisk/holders/dm-3")), 0);
	put("sys/devices/dm-3/dm/name", "vg0-data\n");
	ck_assert_int_eq(symlink("../../dm-3", at("sys/devices/zdisk/holders/dm-3")), 0);
	ck_assert_int_eq(zd_blkdev_check_holders(disk, "/dev/zdisk", why, sizeof(why)), -EBUSY);
	ck_assert_str_eq(why, "/dev/zdisk is in use by dm-3 (device-mapper vg0-data) (sysfs holders)");
	put("sys/devices/dm-3/dm/name", "zoned-zdisk\n");
	ck_assert_int_eq(zd_blkdev_check_holders(disk, "/dev/zdisk", why, sizeof(why)), -EBUSY);
	ck_assert_str_eq(why, "/dev/zdisk is in use by dm-3 (device-mapper zoned-zdisk, zonedd's "
			      "zone isolation) (sysfs holders)");
	close(disk);
}
END_TEST

START_TEST(scheduler_by_kernel_release)
{
	char why[256];

	ck_assert(zd_blkdev_needs_ordering_scheduler("6.1.0-18-amd64"));
	ck_assert(zd_blkdev_needs_ordering_scheduler("5.15.0"));
	ck_assert(zd_blkdev_needs_ordering_scheduler("6.9.12"));
	ck_assert(!zd_blkdev_needs_ordering_scheduler("6.10.0-rc1"));
	ck_assert(!zd_blkdev_needs_ordering_scheduler("6.12.9-amd64"));
	ck_assert(!zd_blkdev_needs_ordering_scheduler("7.0"));
	ck_assert(!zd_blkdev_needs_ordering_scheduler("garbage"));
	ck_assert_int_eq(zd_blkdev_check_scheduler("mq-deadline", "6.1.0", "d", why, sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_scheduler("none", "6.1.0", "d", why, sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_scheduler("bfq", "6.12.0", "d", why, sizeof(why)), 0);
	ck_assert_int_eq(zd_blkdev_check_scheduler("kyber", "6.1.0", "d", why, sizeof(why)),
			 -EINVAL);
	ck_assert_str_eq(why, "d uses I/O scheduler kyber, which may reorder zone writes on "
			      "kernels before 6.10; select mq-deadline or none");
}
END_TEST

START_TEST(stat_and_exclusive_open_of_non_devices)
{
	char why[256];
	dev_t d;

	ck_assert_int_eq(zd_blkdev_stat(at("sys/devices/zdisk/size"), &d, why, sizeof(why)),
			 -ENOTBLK);
	ck_assert_ptr_nonnull(strstr(why, "is not a block device"));
	ck_assert_int_eq(zd_blkdev_stat(at("nothing"), &d, why, sizeof(why)), -ENOENT);
	ck_assert_int_eq(zd_blkdev_try_exclusive(at("nothing"), why, sizeof(why)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(why, "cannot open"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("blkdev");
	TCase *tc = tcase_create("blkdev");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, props_of_a_zoned_disk);
	tcase_add_test(tc, props_of_a_partition_come_from_its_disk);
	tcase_add_test(tc, props_of_a_plain_disk_leave_zone_fields_zero);
	tcase_add_test(tc, attributes_parse_strictly);
	tcase_add_test(tc, zoned_and_whole_checks);
	tcase_add_test(tc, geometry_and_limits);
	tcase_add_test(tc, mounts_of_the_disk_and_its_partitions);
	tcase_add_test(tc, holders_of_the_disk_and_its_partitions);
	tcase_add_test(tc, scheduler_by_kernel_release);
	tcase_add_test(tc, stat_and_exclusive_open_of_non_devices);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
