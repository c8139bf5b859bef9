/* Unit tests of the emulated zoned device (daemon/emul.c) and of
 * zd_parse_size(): zone state machine, limits, refresh, persistence. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/zdev.h"

/* The test geometry: 16 zones of 1 MiB (2 conventional), 768 KiB capacity,
 * at most 3 open and 5 active zones. */
#define ZS (1u << 20)
#define CAP (768u << 10)
#define LBS 4096u
#define NZ 16u
#define MAX_OPEN 3u
#define MAX_ACTIVE 5u
#define ZSTART(z) ((uint64_t)(z) * ZS)
#define NO_HINT UINT64_MAX

/* On-disk layout, restated here so that a change of format breaks a test. */
#define HDR_SIZE 4096u
#define REC_SIZE 32u
#define SLOT_A 4096u
#define SLOT_B 8192u /* 4096 + 16 zones * 32 bytes rounded up to 4096 */

static char base[PATH_MAX / 2]; /* one per run, removed by main() */
static char dir[PATH_MAX - 32];
static char devpath[PATH_MAX];
static char metapath[PATH_MAX];
static struct zd_dev *dev;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

/* Removes the device directory (a test's fresh start). */
static void rm_dev(void)
{
	nftw(devpath, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/t.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(devpath, sizeof(devpath), "%s/dev", dir);
	snprintf(metapath, sizeof(metapath), "%s/dev/meta", dir);
	dev = NULL;
}

static void teardown(void)
{
	zd_dev_close(dev);
	dev = NULL;
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void small_params(struct zd_emul_params *p)
{
	*p = (struct zd_emul_params){
		.size = NZ * ZS,
		.zone_size = ZS,
		.zone_capacity = CAP,
		.nr_conventional = 2,
		.max_open = MAX_OPEN,
		.max_active = MAX_ACTIVE,
		.logical_block_size = LBS,
	};
}

static void open_small(void)
{
	struct zd_emul_params p;

	small_params(&p);
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_ptr_nonnull(dev);
}

static void open_with(uint32_t max_open, uint32_t max_active)
{
	struct zd_emul_params p;

	small_params(&p);
	p.max_open = max_open;
	p.max_active = max_active;
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
}

static int reopen(void)
{
	zd_dev_close(dev);
	dev = NULL;
	return zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev);
}

static struct zd_zone zone(uint32_t z)
{
	struct zd_zone r;
	uint32_t n = 1;

	ck_assert_int_eq(dev->ops->report(dev, z, &r, &n), 0);
	ck_assert_uint_eq(n, 1);
	return r;
}

#define ASSERT_ZONE(z, c, wp_rel)                                          \
	do {                                                               \
		struct zd_zone _z = zone(z);                               \
		ck_assert_uint_eq(_z.cond, (c));                           \
		ck_assert_uint_eq(_z.wp, ZSTART(z) + (uint64_t)(wp_rel));  \
	} while (0)

static uint8_t pat(uint64_t off)
{
	uint64_t blk = off / LBS;

	return (uint8_t)((blk * 31 + off % 251) | 1); /* never zero */
}

static int wr(uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	int r;

	ck_assert_ptr_nonnull(buf);
	for (uint64_t i = 0; i < len; i++)
		buf[i] = pat(off + i);
	r = dev->ops->pwrite(dev, buf, len, off);
	free(buf);
	return r;
}

/* The file of zone z, by name, as only a test (or an intruder with the
 * daemon's uid) reaches it. */
static const char *zpath(uint32_t z)
{
	static char p[PATH_MAX + 16];

	snprintf(p, sizeof(p), "%s/%s-%06u", devpath, z < 2 ? "cnv" : "seq", z);
	return p;
}

/* Writes the pattern of device offset off through the fd of off's zone, as
 * a client does (len may run past the zone's end: into its file only). */
static void fd_wr(uint64_t off, uint64_t len)
{
	uint32_t z = (uint32_t)(off / ZS);
	uint8_t *buf = malloc(len);
	uint64_t fo = 1;
	int fd = zd_dev_open_zone(dev, z, O_RDWR, &fo);

	ck_assert_int_ge(fd, 0);
	ck_assert_uint_eq(fo, 0);
	ck_assert_ptr_nonnull(buf);
	for (uint64_t i = 0; i < len; i++)
		buf[i] = pat(off + i);
	ck_assert_int_eq(pwrite(fd, buf, len, (off_t)(off - ZSTART(z))), (ssize_t)len);
	close(fd);
	free(buf);
}

/* Size of zone z's file, -1 when it has none. */
static off_t zsize(uint32_t z)
{
	struct stat st;

	if (stat(zpath(z), &st) < 0) {
		ck_assert_int_eq(errno, ENOENT);
		return -1;
	}
	return st.st_size;
}

static void assert_data(uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(dev->ops->pread(dev, buf, len, off), 0);
	for (uint64_t i = 0; i < len; i++)
		if (buf[i] != pat(off + i))
			ck_abort_msg("data mismatch at %llu", (unsigned long long)(off + i));
	free(buf);
}

static void assert_zeros(uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	memset(buf, 0xa5, len);
	ck_assert_int_eq(dev->ops->pread(dev, buf, len, off), 0);
	for (uint64_t i = 0; i < len; i++)
		if (buf[i])
			ck_abort_msg("non-zero byte at %llu", (unsigned long long)(off + i));
	free(buf);
}

static int op(enum zd_zone_op o, uint32_t z, uint32_t count)
{
	return dev->ops->zone_op(dev, o, z, count);
}

static int refresh(uint32_t z, uint64_t hint)
{
	struct zd_zone out;

	return dev->ops->refresh_zone(dev, z, hint, &out);
}

/* A bitwise CRC32C, independent of the table-driven one under test. */
static uint32_t ref_crc32c(const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu;

	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
	}
	return ~c;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void meta_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(metapath, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void meta_write(uint64_t off, const void *buf, size_t len)
{
	int fd = open(metapath, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static uint64_t slot_seq(unsigned slot, uint32_t z)
{
	uint8_t rec[REC_SIZE];

	meta_read((slot ? SLOT_B : SLOT_A) + (uint64_t)z * REC_SIZE, rec, sizeof(rec));
	return le64(rec + 8);
}

/* The slot holding the newest record of zone z (assumes both are valid or
 * the other one is still all zeros). */
static unsigned newest_slot(uint32_t z)
{
	return slot_seq(1, z) > slot_seq(0, z);
}

static void scribble(unsigned slot, uint32_t z, unsigned seed)
{
	uint8_t rec[REC_SIZE];

	srand(seed);
	for (unsigned i = 0; i < sizeof(rec); i++)
		rec[i] = (uint8_t)rand();
	meta_write((slot ? SLOT_B : SLOT_A) + (uint64_t)z * REC_SIZE, rec, sizeof(rec));
}

/* Opens, checks that zone z came up offline, closes. */
static void expect_offline(uint32_t z)
{
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_uint_eq(zone(z).cond, ZP_COND_OFFLINE);
	zd_dev_close(dev);
	dev = NULL;
}

/* ================= zd_parse_size ================= */

START_TEST(size_good)
{
	static const struct { const char *s; uint64_t v; } t[] = {
		{ "0", 0 }, { "512", 512 }, { "4K", 4096 }, { "4k", 4096 }, { "4KiB", 4096 },
		{ "4KB", 4096 }, { "4kib", 4096 }, { "32M", 32ull << 20 }, { "32MiB", 32ull << 20 },
		{ "1G", 1ull << 30 }, { "3GiB", 3ull << 30 }, { "2T", 2ull << 40 },
		{ "512B", 512 }, { "007", 7 }, { "16777215T", 16777215ull << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};

	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t v = 12345;

		ck_assert_msg(zd_parse_size(t[i].s, &v) == 0, "%s", t[i].s);
		ck_assert_msg(v == t[i].v, "%s -> %llu", t[i].s, (unsigned long long)v);
	}
}
END_TEST

START_TEST(size_bad)
{
	static const char *const inval[] = {
		"", "-1", "+1", " 1", "1 ", "1.5G", "1X", "K", "1KiBx", "1iB", "0x10", "1GG",
		"1Ki", "1 K", "B",
	};
	uint64_t v = 777;

	for (unsigned i = 0; i < sizeof(inval) / sizeof(inval[0]); i++)
		ck_assert_msg(zd_parse_size(inval[i], &v) == -EINVAL, "%s", inval[i]);
	ck_assert_int_eq(zd_parse_size(NULL, &v), -EINVAL);
	ck_assert_int_eq(zd_parse_size("18446744073709551616", &v), -ERANGE);
	ck_assert_int_eq(zd_parse_size("99999999999999999999999", &v), -ERANGE);
	ck_assert_int_eq(zd_parse_size("16777216T", &v), -ERANGE);
	ck_assert_int_eq(zd_parse_size("17179869184G", &v), -ERANGE);
	ck_assert_uint_eq(v, 777); /* untouched on failure */
}
END_TEST

/* ================= spec parsing ================= */

START_TEST(spec_defaults)
{
	struct zd_emul_params p;

	memset(&p, 0xff, sizeof(p));
	zd_emul_default_params(&p);
	ck_assert_uint_eq(p.size, 4ull << 30);
	ck_assert_uint_eq(p.zone_size, 32ull << 20);
	ck_assert_uint_eq(p.zone_capacity, 24ull << 20);
	ck_assert_uint_eq(p.nr_conventional, 2);
	ck_assert_uint_eq(p.max_open, 14);
	ck_assert_uint_eq(p.max_active, 14);
	ck_assert_uint_eq(p.logical_block_size, 4096);
	ck_assert_int_eq(zd_emul_parse_spec("", &p), 0);
	ck_assert_int_eq(zd_emul_parse_spec(NULL, &p), 0);
	ck_assert_uint_eq(p.size, 4ull << 30);
}
END_TEST

START_TEST(spec_good)
{
	struct zd_emul_params p;

	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("size=1G,zone-size=64M,zone-capacity=48M,conv=3,"
					    "max-open=6,max-active=8,lbs=512", &p), 0);
	ck_assert_uint_eq(p.size, 1ull << 30);
	ck_assert_uint_eq(p.zone_size, 64ull << 20);
	ck_assert_uint_eq(p.zone_capacity, 48ull << 20);
	ck_assert_uint_eq(p.nr_conventional, 3);
	ck_assert_uint_eq(p.max_open, 6);
	ck_assert_uint_eq(p.max_active, 8);
	ck_assert_uint_eq(p.logical_block_size, 512);

	/* Keys not given keep what *params held. */
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("size=8GiB", &p), 0);
	ck_assert_uint_eq(p.size, 8ull << 30);
	ck_assert_uint_eq(p.zone_size, 32ull << 20);
	ck_assert_uint_eq(p.max_active, 14);

	/* 0 means no limit; max-open alone may then be anything. */
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("max-open=0,max-active=0", &p), 0);
	ck_assert_uint_eq(p.max_open, 0);
	ck_assert_uint_eq(p.max_active, 0);
	ck_assert_int_eq(zd_emul_parse_spec("max-open=100", &p), 0);
	ck_assert_uint_eq(p.max_open, 100);
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("max-active=0,max-open=64,conv=0,lbs=4K,"
					    "zone-capacity=32M", &p), 0);
	ck_assert_uint_eq(p.nr_conventional, 0);
	ck_assert_uint_eq(p.logical_block_size, 4096);
	ck_assert_uint_eq(p.zone_capacity, 32ull << 20);

	/* A zone size given alone brings its capacity along. */
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("size=16M,zone-size=1M", &p), 0);
	ck_assert_uint_eq(p.zone_capacity, 1ull << 20);
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("zone-size=64M,zone-capacity=48M", &p), 0);
	ck_assert_uint_eq(p.zone_capacity, 48ull << 20);
}
END_TEST

START_TEST(spec_bad)
{
	static const struct { const char *spec; int err; } t[] = {
		{ "bogus=1", -EINVAL },
		{ "size", -EINVAL },
		{ "size=", -EINVAL },
		{ "=1G", -EINVAL },
		{ "size=1G,", -EINVAL },
		{ ",size=1G", -EINVAL },
		{ "size=1G,,conv=1", -EINVAL },
		{ "size=1G,size=2G", -EINVAL },
		{ "size=1X", -EINVAL },
		{ "size=-1G", -EINVAL },
		{ "conv=x", -EINVAL },
		{ "conv=-1", -EINVAL },
		{ "conv=4294967296", -ERANGE },
		{ "max-open=99999999999", -ERANGE },
		{ "size=99999999999T", -ERANGE },
		{ "zone-size=48M", -EINVAL },        /* not a power of two */
		{ "zone-size=2K,zone-capacity=2K", -EINVAL }, /* below lbs */
		{ "zone-capacity=33M", -EINVAL },    /* above zone size */
		{ "zone-capacity=0", -EINVAL },
		{ "zone-capacity=1001K", -EINVAL },  /* not a multiple of lbs */
		{ "size=100M", -EINVAL },            /* not a multiple of zone size */
		{ "size=0", -EINVAL },
		{ "size=64M,conv=2", -EINVAL },      /* no sequential zone left */
		{ "lbs=1024", -EINVAL },
		{ "lbs=0", -EINVAL },
		{ "lbs=8589934592", -EINVAL },
		{ "max-open=15", -EINVAL },          /* above max-active 14 */
		{ "max-open=4,max-active=3", -EINVAL },
		{ "Size=1G", -EINVAL },
	};

	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct zd_emul_params p, def;

		zd_emul_default_params(&p);
		def = p;
		ck_assert_msg(zd_emul_parse_spec(t[i].spec, &p) == t[i].err, "%s", t[i].spec);
		ck_assert_msg(!memcmp(&p, &def, sizeof(p)), "%s modified params", t[i].spec);
	}
	ck_assert_int_eq(zd_emul_parse_spec("size=1G", NULL), -EINVAL);
}
END_TEST

/* ================= open, info, report ================= */

START_TEST(open_create_info)
{
	struct zd_dev_info info;
	struct stat st;

	open_small();
	ck_assert_str_eq(dev->ops->name, "emulated");
	ck_assert_int_eq(dev->ops->info(dev, &info), 0);
	ck_assert_str_eq(info.backend, "emulated");
	ck_assert_str_eq(info.model, "host-managed");
	ck_assert_str_eq(info.vendor, "zoned");
	ck_assert_str_eq(info.product, "emulated");
	ck_assert_str_eq(info.scheduler, "none");
	ck_assert_uint_eq(info.size, NZ * ZS);
	ck_assert_uint_eq(info.zone_size, ZS);
	ck_assert_uint_eq(info.zone_capacity, CAP);
	ck_assert_uint_eq(info.nr_zones, NZ);
	ck_assert_uint_eq(info.nr_conventional, 2);
	ck_assert_uint_eq(info.max_open, MAX_OPEN);
	ck_assert_uint_eq(info.max_active, MAX_ACTIVE);
	ck_assert_uint_eq(info.logical_block_size, LBS);
	ck_assert_uint_eq(info.physical_block_size, LBS);
	ck_assert_uint_eq(info.isolation, ZD_ISOLATION_ZONE);
	ck_assert_str_eq(info.isolation_why, "one file per zone");

	/* A private directory holding the metadata and no zone file yet. */
	ck_assert_int_eq(lstat(devpath, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	ck_assert_int_eq(stat(metapath, &st), 0);
	ck_assert_int_eq(st.st_size, SLOT_B + 4096);
	for (uint32_t z = 0; z < NZ; z++)
		ck_assert_int_eq(zsize(z), -1);
	/* A zone's file appears when the zone is first written, 0600. */
	ck_assert_int_eq(wr(ZSTART(0), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(stat(zpath(2), &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(st.st_size, LBS);
	ck_assert_int_eq(zsize(0), LBS);
	ck_assert_int_eq(zsize(3), -1);
	/* Isolation "device" on request: the same files, and why. */
	zd_dev_close(dev);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_DEVICE, &dev), 0);
	ck_assert_int_eq(dev->ops->info(dev, &info), 0);
	ck_assert_uint_eq(info.isolation, ZD_ISOLATION_DEVICE);
	ck_assert_str_eq(info.isolation_why, "configured");
	{
		struct zd_zone_fds zf;

		ck_assert_int_eq(dev->ops->open_zones(dev, 2, 1, O_RDWR, true, &zf), -EOPNOTSUPP);
		ck_assert_int_eq(dev->ops->open_zones(dev, 2, 2, O_RDWR, false, &zf), 0);
		ck_assert_uint_eq(zf.nr, 2);
		close(zf.fd[0]);
		close(zf.fd[1]);
	}
	zd_dev_close(dev);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_ZONE, &dev), 0);
	ck_assert_int_eq(dev->ops->info(dev, &info), 0);
	ck_assert_uint_eq(info.isolation, ZD_ISOLATION_ZONE);
}
END_TEST

START_TEST(open_report)
{
	struct zd_zone zs[NZ + 4];
	uint32_t n = NZ + 4;

	open_small();
	ck_assert_int_eq(dev->ops->report(dev, 0, zs, &n), 0);
	ck_assert_uint_eq(n, NZ);
	for (uint32_t i = 0; i < NZ; i++) {
		ck_assert_uint_eq(zs[i].start, ZSTART(i));
		ck_assert_uint_eq(zs[i].len, ZS);
		if (i < 2) {
			ck_assert_uint_eq(zs[i].type, ZP_TYPE_CONV);
			ck_assert_uint_eq(zs[i].cond, ZP_COND_NOT_WP);
			ck_assert_uint_eq(zs[i].capacity, ZS);
			ck_assert_uint_eq(zs[i].wp, ZSTART(i) + ZS);
		} else {
			ck_assert_uint_eq(zs[i].type, ZP_TYPE_SWR);
			ck_assert_uint_eq(zs[i].cond, ZP_COND_EMPTY);
			ck_assert_uint_eq(zs[i].capacity, CAP);
			ck_assert_uint_eq(zs[i].wp, ZSTART(i));
		}
	}
	/* A partial report at the end, and none past it. */
	n = 8;
	ck_assert_int_eq(dev->ops->report(dev, 12, zs, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(zs[3].start, ZSTART(15));
	n = 2;
	ck_assert_int_eq(dev->ops->report(dev, 3, zs, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(zs[1].start, ZSTART(4));
	n = 1;
	ck_assert_int_eq(dev->ops->report(dev, NZ, zs, &n), -ERANGE);
	ck_assert_int_eq(dev->ops->report(dev, UINT32_MAX, zs, &n), -ERANGE);
}
END_TEST

START_TEST(open_errors)
{
	struct zd_emul_params p;
	struct zd_dev *other = NULL;

	/* Missing device without create. */
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -ENOENT);
	ck_assert_ptr_null(dev);
	/* Invalid params leave nothing behind. */
	small_params(&p);
	p.zone_capacity = ZS + LBS;
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	ck_assert_int_eq(access(devpath, F_OK), -1);
	ck_assert_int_eq(access(metapath, F_OK), -1);
	ck_assert_int_eq(zd_emul_open(NULL, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	ck_assert_int_eq(zd_emul_open("", &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	/* Only a directory is a device (a regular file is a 0.1 image). */
	{
		char fifo[PATH_MAX];
		struct stat st;

		snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
		ck_assert_int_eq(mkfifo(fifo, 0600), 0);
		small_params(&p);
		ck_assert_int_eq(zd_emul_open(fifo, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
		ck_assert_int_eq(stat(fifo, &st), 0);
		ck_assert(S_ISFIFO(st.st_mode));
	}

	/* One owner at a time. */
	open_small();
	ck_assert_int_eq(zd_emul_open(devpath, NULL, true, ZD_ISOLATION_AUTO, &other), -EBUSY);
	ck_assert_ptr_null(other);
	zd_dev_close(dev);
	dev = NULL;

	/* Explicit geometry that contradicts the stored one. */
	small_params(&p);
	p.zone_size = 2 * ZS;
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	small_params(&p);
	p.size = 2 * NZ * ZS;
	ck_assert_int_eq(zd_emul_open(devpath, &p, false, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	small_params(&p);
	p.max_open = 2;
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	ck_assert_ptr_null(dev);
}
END_TEST

START_TEST(open_existing_geometry_wins)
{
	struct zd_emul_params p;
	struct zd_dev_info info;

	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	zd_dev_close(dev);
	dev = NULL;
	/* Defaults (as the daemon passes them) and zeros do not conflict. */
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_int_eq(dev->ops->info(dev, &info), 0);
	ck_assert_uint_eq(info.size, NZ * ZS);
	ck_assert_uint_eq(info.zone_size, ZS);
	ck_assert_uint_eq(info.max_open, MAX_OPEN);
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	zd_dev_close(dev);
	dev = NULL;
	memset(&p, 0, sizeof(p));
	ck_assert_int_eq(zd_emul_open(devpath, &p, false, ZD_ISOLATION_AUTO, &dev), 0);
	zd_dev_close(dev);
	dev = NULL;
	small_params(&p); /* the same values given explicitly */
	ck_assert_int_eq(zd_emul_open(devpath, &p, false, ZD_ISOLATION_AUTO, &dev), 0);
}
END_TEST

START_TEST(open_refuses_foreign_file)
{
	struct zd_emul_params p;
	char buf[8] = { 0 };
	int fd = open(devpath, O_WRONLY | O_CREAT | O_EXCL, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "precious", 8), 8);
	close(fd);
	small_params(&p);
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EEXIST);
	ck_assert_int_eq(access(metapath, F_OK), -1);
	fd = open(devpath, O_RDONLY);
	ck_assert_int_eq(read(fd, buf, 8), 8);
	close(fd);
	ck_assert_int_eq(memcmp(buf, "precious", 8), 0);

	/* An empty leftover (a 0.1 creation cut short) is taken over. */
	ck_assert_int_eq(truncate(devpath, 0), 0);
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	zd_dev_close(dev);
	dev = NULL;
	/* A directory holding files but no metadata is somebody's. */
	ck_assert_int_eq(unlink(metapath), 0);
	{
		char other[PATH_MAX + 16];

		snprintf(other, sizeof(other), "%s/notes", devpath);
		fd = open(other, O_WRONLY | O_CREAT | O_EXCL, 0600);
		ck_assert_int_ge(fd, 0);
		close(fd);
		ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EEXIST);
		ck_assert_int_eq(access(metapath, F_OK), -1);
		ck_assert_int_eq(access(other, F_OK), 0);
		/* An empty one (a creation cut short) is taken over. */
		ck_assert_int_eq(unlink(other), 0);
		ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	}
	zd_dev_close(dev);
	dev = NULL;
	/* Writable by others: anyone could plant a zone file. */
	ck_assert_int_eq(chmod(devpath, 0722), 0);
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EPERM);
	ck_assert_int_eq(chmod(devpath, 0700), 0);
	/* A symlink under the device's name, or a zone file's, is refused. */
	{
		char ln[PATH_MAX + 16];

		snprintf(ln, sizeof(ln), "%s/ln", dir);
		ck_assert_int_eq(symlink(devpath, ln), 0);
		ck_assert_int_eq(zd_emul_open(ln, &p, true, ZD_ISOLATION_AUTO, &dev), -ELOOP);
		ck_assert_int_eq(symlink(metapath, zpath(2)), 0);
		ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
		ck_assert_int_lt(zd_dev_open_zone(dev, 2, O_RDWR, NULL), 0);
		ck_assert_int_lt(wr(ZSTART(2), LBS), 0);
	}
}
END_TEST

START_TEST(open_fd_flags)
{
	uint8_t buf[LBS];
	int fd, fl;

	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	fd = zd_dev_open_zone(dev, 2, O_RDONLY, NULL);
	ck_assert_int_ge(fd, 0);
	fl = fcntl(fd, F_GETFD);
	ck_assert(fl & FD_CLOEXEC);
	ck_assert_int_eq(pread(fd, buf, LBS, 0), LBS);
	ck_assert_uint_eq(buf[7], pat(ZSTART(2) + 7));
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	close(fd);

	/* O_DIRECT works or, where the filesystem refuses it, falls back. */
	fd = zd_dev_open_zone(dev, 0, O_RDWR | O_DIRECT, NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);

	/* Nothing that could truncate or create. */
	ck_assert_int_eq(zd_dev_open_zone(dev, 0, O_RDWR | O_TRUNC, NULL), -EINVAL);
	ck_assert_int_eq(zd_dev_open_zone(dev, 0, O_RDWR | O_CREAT, NULL), -EINVAL);

	/* Relative paths keep working after a chdir. */
	{
		char cwd[PATH_MAX];

		ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
		zd_dev_close(dev);
		dev = NULL;
		ck_assert_int_eq(chdir(dir), 0);
		ck_assert_int_eq(zd_emul_open("dev", NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
		ck_assert_int_eq(chdir("/"), 0);
		fd = zd_dev_open_zone(dev, 0, O_RDONLY, NULL);
		ck_assert_int_ge(fd, 0);
		close(fd);
		ck_assert_int_eq(chdir(cwd), 0);
	}
}
END_TEST

START_TEST(open_lbs512)
{
	struct zd_emul_params p;

	small_params(&p);
	p.logical_block_size = 512;
	p.zone_capacity = CAP + 512;
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_uint_eq(zone(2).capacity, CAP + 512);
	ck_assert_int_eq(dev->ops->pwrite(dev, "a", 256, ZSTART(2)), -EINVAL);
	{
		uint8_t buf[512];

		memset(buf, 0x5a, sizeof(buf));
		ck_assert_int_eq(dev->ops->pwrite(dev, buf, 512, ZSTART(2)), 0);
		ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 512);
		ck_assert_int_eq(refresh(2, ZSTART(2) + 1024), 0);
		ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 1024);
		ck_assert_int_eq(refresh(2, ZSTART(2) + 1280), -EINVAL);
	}
	ck_assert_int_eq(reopen(), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, 1024);
}
END_TEST

/* ================= writes and reads ================= */

START_TEST(write_at_wp)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 2 * LBS);
	ck_assert_int_eq(wr(ZSTART(2) + 2 * LBS, LBS), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 3 * LBS);
	assert_data(ZSTART(2), 3 * LBS);
	assert_zeros(ZSTART(2) + 3 * LBS, ZS - 3 * LBS);
	/* A zero-length write changes nothing. */
	ck_assert_int_eq(wr(ZSTART(3), 0), 0);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
}
END_TEST

START_TEST(write_errors)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	/* Not at the wp: ahead, behind, and in an empty zone. */
	ck_assert_int_eq(wr(ZSTART(2) + 2 * LBS, LBS), -EIO);
	ck_assert_int_eq(wr(ZSTART(2), LBS), -EIO);
	ck_assert_int_eq(wr(ZSTART(3) + LBS, LBS), -EIO);
	/* Misaligned offset or length. */
	ck_assert_int_eq(wr(ZSTART(2) + LBS + 512, LBS), -EINVAL);
	ck_assert_int_eq(wr(ZSTART(2) + LBS, LBS + 1), -EINVAL);
	ck_assert_int_eq(wr(ZSTART(0) + 1, LBS), -EINVAL);
	/* Past the zone capacity, into the gap up to the zone size. */
	ck_assert_int_eq(wr(ZSTART(2) + LBS, CAP), -EIO);
	ck_assert_int_eq(wr(ZSTART(3), CAP + LBS), -EIO);
	ck_assert_int_eq(wr(ZSTART(3) + CAP, LBS), -EIO);
	/* Spanning zones: conventional into sequential, sequential into the next. */
	ck_assert_int_eq(wr(ZSTART(2) - LBS, 2 * LBS), -EINVAL);
	ck_assert_int_eq(wr(ZSTART(0) + ZS - LBS, 2 * LBS), -EINVAL);
	ck_assert_int_eq(wr(ZSTART(3) + ZS - LBS, 2 * LBS), -EINVAL);
	/* Past the device end, including overflow. */
	ck_assert_int_eq(wr(ZSTART(NZ), LBS), -EINVAL);
	ck_assert_int_eq(dev->ops->pwrite(dev, "x", LBS, UINT64_MAX - LBS + 1), -EINVAL);
	/* Nothing moved. */
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, LBS);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
	assert_zeros(ZSTART(3), ZS);
}
END_TEST

START_TEST(write_to_full)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), CAP - LBS), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, CAP - LBS);
	ck_assert_int_eq(wr(ZSTART(2) + CAP - LBS, LBS), 0);
	/* Full at capacity, wp reported at the zone end; no longer open. */
	ASSERT_ZONE(2, ZP_COND_FULL, ZS);
	ck_assert_int_eq(wr(ZSTART(2) + CAP, LBS), -EIO);
	ck_assert_int_eq(wr(ZSTART(2) + ZS - LBS, LBS), -EIO);
	assert_data(ZSTART(2), CAP);
	assert_zeros(ZSTART(2) + CAP, ZS - CAP);
	/* A single write of the whole capacity takes an empty zone to full. */
	ck_assert_int_eq(wr(ZSTART(3), CAP), 0);
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
	/* Full zones hold no open or active slot: 3 opens still fit. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 3), 0);
}
END_TEST

START_TEST(write_conventional)
{
	open_small();
	/* Anywhere, in any order, rewrites included. */
	ck_assert_int_eq(wr(ZSTART(1) + 8 * LBS, 2 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(1), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(1), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(0) + ZS - LBS, LBS), 0);
	assert_data(ZSTART(1), LBS);
	assert_data(ZSTART(1) + 8 * LBS, 2 * LBS);
	assert_zeros(ZSTART(1) + LBS, 7 * LBS);
	assert_data(ZSTART(0) + ZS - LBS, LBS);
	ASSERT_ZONE(1, ZP_COND_NOT_WP, ZS);
}
END_TEST

START_TEST(write_closed_and_exp_open)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	ck_assert_int_eq(wr(ZSTART(2) + LBS, LBS), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 2 * LBS);

	ck_assert_int_eq(op(ZD_OP_OPEN, 3, 1), 0);
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ASSERT_ZONE(3, ZP_COND_EXP_OPEN, LBS);
	ck_assert_int_eq(wr(ZSTART(3) + LBS, CAP - LBS), 0);
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
}
END_TEST

START_TEST(write_implicit_eviction_lru)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3) + LBS, LBS), 0); /* 3 is now the most recent */
	/* max_open reached: the least recently written zone (2) is closed. */
	ck_assert_int_eq(wr(ZSTART(5), LBS), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, 2 * LBS);
	ASSERT_ZONE(4, ZP_COND_IMP_OPEN, LBS);
	ASSERT_ZONE(5, ZP_COND_IMP_OPEN, LBS);
	/* Next in LRU order is 4, not 3. */
	ck_assert_int_eq(wr(ZSTART(6), LBS), 0);
	ASSERT_ZONE(4, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, 2 * LBS);
	ASSERT_ZONE(6, ZP_COND_IMP_OPEN, LBS);
}
END_TEST

START_TEST(write_max_active)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(5), LBS), 0); /* closes 2 */
	ck_assert_int_eq(wr(ZSTART(6), LBS), 0); /* closes 3: 5 active */
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(3, ZP_COND_CLOSED, LBS);
	/* An empty zone needs a new active slot: refused, nothing written. */
	ck_assert_int_eq(wr(ZSTART(7), LBS), -EBUSY);
	ASSERT_ZONE(7, ZP_COND_EMPTY, 0);
	assert_zeros(ZSTART(7), LBS);
	ASSERT_ZONE(4, ZP_COND_IMP_OPEN, LBS);
	/* A closed zone already holds one: it reopens, evicting LRU zone 4. */
	ck_assert_int_eq(wr(ZSTART(2) + LBS, LBS), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 2 * LBS);
	ASSERT_ZONE(4, ZP_COND_CLOSED, LBS);
	/* Resetting an active zone frees a slot. */
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), 0);
	ck_assert_int_eq(wr(ZSTART(7), LBS), 0);
	ASSERT_ZONE(7, ZP_COND_IMP_OPEN, LBS);
	ASSERT_ZONE(5, ZP_COND_CLOSED, LBS);
}
END_TEST

START_TEST(write_all_explicit_busy)
{
	open_small();
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 3), 0);
	/* Explicitly open zones are never closed to make room. */
	ck_assert_int_eq(wr(ZSTART(5), LBS), -EBUSY);
	ASSERT_ZONE(5, ZP_COND_EMPTY, 0);
	for (uint32_t z = 2; z < 5; z++)
		ASSERT_ZONE(z, ZP_COND_EXP_OPEN, 0);
	/* Writes to the explicitly open zones are fine. */
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 4, 1), 0);
	ASSERT_ZONE(4, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(wr(ZSTART(5), LBS), 0);
	ASSERT_ZONE(5, ZP_COND_IMP_OPEN, LBS);
}
END_TEST

START_TEST(write_no_limits)
{
	open_with(0, 0);
	for (uint32_t z = 2; z < NZ; z++)
		ck_assert_int_eq(wr(ZSTART(z), LBS), 0);
	for (uint32_t z = 2; z < NZ; z++)
		ASSERT_ZONE(z, ZP_COND_IMP_OPEN, LBS);
}
END_TEST

START_TEST(read_rules)
{
	uint8_t buf[2 * LBS];
	int fd;

	open_small();
	ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(1) + ZS - LBS, LBS), 0);
	/* Data the wp does not cover reads as zeros, even if it is there. */
	fd = zd_dev_open_zone(dev, 0, O_RDWR, NULL);
	ck_assert_int_ge(fd, 0);
	memset(buf, 0x77, sizeof(buf));
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)(ZSTART(2) + 2 * LBS)), (ssize_t)sizeof(buf));
	close(fd);
	assert_data(ZSTART(2), 2 * LBS);
	assert_zeros(ZSTART(2) + 2 * LBS, ZS - 2 * LBS);
	/* A read may span zones. */
	{
		uint8_t *big = malloc(3 * LBS);

		ck_assert_int_eq(dev->ops->pread(dev, big, 3 * LBS, ZSTART(2) - LBS), 0);
		ck_assert_uint_eq(big[5], pat(ZSTART(1) + ZS - LBS + 5));
		ck_assert_uint_eq(big[LBS + 5], pat(ZSTART(2) + 5));
		ck_assert_uint_eq(big[2 * LBS + 5], pat(ZSTART(2) + LBS + 5));
		free(big);
	}
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, ZSTART(2) + 1), -EINVAL);
	ck_assert_int_eq(dev->ops->pread(dev, buf, 100, ZSTART(2)), -EINVAL);
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, ZSTART(NZ)), -EINVAL);
	ck_assert_int_eq(dev->ops->pread(dev, buf, 2 * LBS, ZSTART(NZ) - LBS), -EINVAL);
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, UINT64_MAX - LBS + 1), -EINVAL);
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, ZSTART(NZ) - LBS), 0);
}
END_TEST

/* ================= zone operations ================= */

START_TEST(op_open)
{
	open_small();
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), 0);                /* empty */
	ASSERT_ZONE(2, ZP_COND_EXP_OPEN, 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), 0);                /* again: fine */
	ASSERT_ZONE(2, ZP_COND_EXP_OPEN, 0);
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 3, 1), 0);                /* implicit open */
	ASSERT_ZONE(3, ZP_COND_EXP_OPEN, LBS);
	ck_assert_int_eq(wr(ZSTART(4), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 4, 1), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);                /* closed */
	ASSERT_ZONE(4, ZP_COND_EXP_OPEN, LBS);
	ck_assert_int_eq(wr(ZSTART(5), CAP), -EBUSY);             /* 3 explicit */
	ck_assert_int_eq(op(ZD_OP_FINISH, 4, 1), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), -EIO);             /* full */
	ASSERT_ZONE(4, ZP_COND_FULL, ZS);
}
END_TEST

START_TEST(op_open_limits)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);   /* 3 open, nothing closed */
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, LBS);
	/* An explicit open may close an implicitly open zone (LRU first)... */
	ck_assert_int_eq(op(ZD_OP_OPEN, 5, 1), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, LBS);
	ck_assert_int_eq(op(ZD_OP_OPEN, 6, 1), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, LBS);
	/* Now 2, 3 closed and 4, 5, 6 explicitly open: at max_active. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 7, 1), -EBUSY);
	ASSERT_ZONE(7, ZP_COND_EMPTY, 0);
	/* A closed zone fails for the open limit, not the active one. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), -EBUSY);
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	/* Closing 4 (nothing written) empties it: 4 active, 2 open. */
	ck_assert_int_eq(op(ZD_OP_CLOSE, 4, 1), 0);
	ASSERT_ZONE(4, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(wr(ZSTART(8), LBS), 0);     /* 5 active now */
	ck_assert_int_eq(op(ZD_OP_CLOSE, 8, 1), 0);  /* closed: still active */
	ck_assert_int_eq(op(ZD_OP_OPEN, 9, 1), -EBUSY); /* max_active */
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), 0);      /* closed: no new slot */
	ASSERT_ZONE(2, ZP_COND_EXP_OPEN, LBS);
}
END_TEST

START_TEST(op_open_range_partial)
{
	open_small();
	/* A range stops at the first zone over the limit; earlier ones stay. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 5), -EBUSY);
	ASSERT_ZONE(2, ZP_COND_EXP_OPEN, 0);
	ASSERT_ZONE(3, ZP_COND_EXP_OPEN, 0);
	ASSERT_ZONE(4, ZP_COND_EXP_OPEN, 0);
	ASSERT_ZONE(5, ZP_COND_EMPTY, 0);
	ASSERT_ZONE(6, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 5), 0);
	for (uint32_t z = 2; z < 7; z++)
		ASSERT_ZONE(z, ZP_COND_EMPTY, 0);
}
END_TEST

START_TEST(op_close)
{
	open_small();
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), 0);       /* exp open, wp == start */
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), 0);
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), 0);       /* exp open with data */
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	ck_assert_int_eq(wr(ZSTART(3), 2 * LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 3, 1), 0);       /* imp open */
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	/* No-ops: closed, empty, full. */
	ck_assert_int_eq(op(ZD_OP_CLOSE, 3, 1), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 4, 1), 0);
	ASSERT_ZONE(4, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(wr(ZSTART(5), CAP), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 5, 1), 0);
	ASSERT_ZONE(5, ZP_COND_FULL, ZS);
	/* Closed data survives and the zone takes writes at its wp. */
	assert_data(ZSTART(3), 2 * LBS);
	ck_assert_int_eq(wr(ZSTART(3) + 2 * LBS, LBS), 0);
}
END_TEST

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	*len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(*len ? *len : 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, *len, f), *len);
	fclose(f);
	return buf;
}

/* A close writes no record (so a release of a written zone costs one
 * metadata fdatasync, its refresh's): every load makes an open zone
 * closed anyway, so the zone comes back the same. */
START_TEST(op_close_writes_no_record)
{
	size_t la, lb;
	char *a, *b;

	open_small();
	ck_assert_int_eq(wr(ZSTART(3), 2 * LBS), 0);          /* imp open */
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);            /* exp open, empty */
	ck_assert_int_eq(op(ZD_OP_OPEN, 5, 1), 0);
	ck_assert_int_eq(wr(ZSTART(5), LBS), 0);              /* exp open, written */
	a = read_all(metapath, &la);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 3, 3), 0);
	b = read_all(metapath, &lb);
	ck_assert_uint_eq(la, lb);
	ck_assert_int_eq(memcmp(a, b, la), 0);
	free(a);
	free(b);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	ASSERT_ZONE(4, ZP_COND_EMPTY, 0);
	ASSERT_ZONE(5, ZP_COND_CLOSED, LBS);
	/* The resources are given back at once. */
	for (uint32_t z = 6; z < 6 + MAX_OPEN; z++)
		ck_assert_int_eq(op(ZD_OP_OPEN, z, 1), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 6, MAX_OPEN), 0);
	ck_assert_int_eq(reopen(), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	ASSERT_ZONE(4, ZP_COND_EMPTY, 0);
	ASSERT_ZONE(5, ZP_COND_CLOSED, LBS);
	assert_data(ZSTART(3), 2 * LBS);
	assert_data(ZSTART(5), LBS);
}
END_TEST

START_TEST(op_finish)
{
	open_small();
	ck_assert_int_eq(op(ZD_OP_FINISH, 2, 1), 0);      /* empty */
	ASSERT_ZONE(2, ZP_COND_FULL, ZS);
	assert_zeros(ZSTART(2), ZS);
	ck_assert_int_eq(wr(ZSTART(3), 2 * LBS), 0);
	ck_assert_int_eq(op(ZD_OP_FINISH, 3, 1), 0);      /* imp open */
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
	assert_data(ZSTART(3), 2 * LBS);
	assert_zeros(ZSTART(3) + 2 * LBS, ZS - 2 * LBS);
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);
	ck_assert_int_eq(op(ZD_OP_FINISH, 4, 1), 0);      /* exp open */
	ASSERT_ZONE(4, ZP_COND_FULL, ZS);
	ck_assert_int_eq(wr(ZSTART(5), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 5, 1), 0);
	ck_assert_int_eq(op(ZD_OP_FINISH, 5, 1), 0);      /* closed */
	ASSERT_ZONE(5, ZP_COND_FULL, ZS);
	ck_assert_int_eq(op(ZD_OP_FINISH, 5, 1), 0);      /* full: no-op */
	ASSERT_ZONE(5, ZP_COND_FULL, ZS);
	ck_assert_int_eq(wr(ZSTART(5) + LBS, LBS), -EIO);
	/* None of them holds a slot any more. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 6, 3), 0);
}
END_TEST

START_TEST(op_finish_discards_stale_tail)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
	fd_wr(ZSTART(2) + 4 * LBS, LBS); /* behind the wp's back */
	ck_assert_int_eq(op(ZD_OP_FINISH, 2, 1), 0);
	assert_data(ZSTART(2), LBS);
	assert_zeros(ZSTART(2) + LBS, ZS - LBS);
}
END_TEST

START_TEST(op_finish_max_active)
{
	open_small();
	for (uint32_t z = 2; z < 7; z++)
		ck_assert_int_eq(wr(ZSTART(z), LBS), 0); /* 2, 3 closed, 4..6 open */
	ck_assert_int_eq(op(ZD_OP_FINISH, 7, 1), -EBUSY); /* empty: needs a slot */
	ASSERT_ZONE(7, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op(ZD_OP_FINISH, 2, 1), 0);      /* closed: fine */
	ck_assert_int_eq(op(ZD_OP_FINISH, 7, 1), 0);      /* a slot is free now */
	ASSERT_ZONE(7, ZP_COND_FULL, ZS);
	ck_assert_int_eq(op(ZD_OP_OPEN, 8, 1), 0);
}
END_TEST

START_TEST(op_reset)
{
	struct stat st;
	int fd;

	open_small();
	ck_assert_int_eq(wr(ZSTART(2), 16 * LBS), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 2, 1), 0);       /* imp open */
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	assert_zeros(ZSTART(2), ZS);
	ck_assert_int_eq(wr(ZSTART(3), CAP), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), 0);       /* full */
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(wr(ZSTART(4), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 4, 1), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 4, 1), 0);       /* closed */
	ASSERT_ZONE(4, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 5, 1), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 5, 1), 0);       /* exp open */
	ASSERT_ZONE(5, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 5, 1), 0);       /* empty: no-op */
	ASSERT_ZONE(5, ZP_COND_EMPTY, 0);

	/* The data is gone from the zone files, not just hidden. */
	for (uint32_t z = 2; z < 5; z++) {
		ck_assert_int_eq(stat(zpath(z), &st), 0);
		ck_assert_int_eq(st.st_size, 0);
		ck_assert_int_eq(st.st_blocks, 0);
	}
	(void)fd;
	/* And the zone is writable from its start again. */
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	assert_data(ZSTART(3), LBS);
	assert_zeros(ZSTART(3) + LBS, LBS);
}
END_TEST

START_TEST(op_reset_range)
{
	open_small();
	for (uint32_t z = 2; z < 5; z++)
		ck_assert_int_eq(wr(ZSTART(z), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 2, NZ - 2), 0);
	for (uint32_t z = 2; z < NZ; z++)
		ASSERT_ZONE(z, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op(ZD_OP_FINISH, 2, NZ - 2), 0);
	for (uint32_t z = 2; z < NZ; z++)
		ASSERT_ZONE(z, ZP_COND_FULL, ZS);
}
END_TEST

START_TEST(op_errors)
{
	static const enum zd_zone_op ops[] = { ZD_OP_OPEN, ZD_OP_CLOSE, ZD_OP_FINISH, ZD_OP_RESET };

	open_small();
	ck_assert_int_eq(wr(ZSTART(0), LBS), 0);
	for (unsigned i = 0; i < 4; i++) {
		ck_assert_int_eq(op(ops[i], 0, 1), -EPERM);       /* conventional */
		ck_assert_int_eq(op(ops[i], 1, 1), -EPERM);
		ck_assert_int_eq(op(ops[i], NZ, 1), -ERANGE);
		ck_assert_int_eq(op(ops[i], UINT32_MAX, 1), -ERANGE);
		ck_assert_int_eq(op(ops[i], 2, 0), -EINVAL);
		ck_assert_int_eq(op(ops[i], 2, NZ - 1), -ERANGE);  /* past the end */
		ck_assert_int_eq(op(ops[i], 15, UINT32_MAX), -ERANGE);
	}
	/* A range that includes a conventional zone does nothing at all. */
	ck_assert_int_eq(op(ZD_OP_FINISH, 1, 3), -EPERM);
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	ck_assert_int_eq(op((enum zd_zone_op)42, 2, 1), -EINVAL);
	assert_data(ZSTART(0), LBS);
}
END_TEST

/* ================= read-only and offline zones ================= */

START_TEST(cond_readonly)
{
	struct zd_zone z;
	uint8_t buf[LBS];

	open_small();
	ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0);
	fd_wr(ZSTART(2) + 2 * LBS, LBS); /* never reported: not the zone's data */
	ck_assert_int_eq(zd_emul_set_cond(dev, 2, ZP_COND_READONLY), 0);
	z = zone(2);
	ck_assert_uint_eq(z.cond, ZP_COND_READONLY);
	ck_assert_uint_eq(z.wp, UINT64_MAX);
	ck_assert_uint_eq(z.type, ZP_TYPE_SWR);
	assert_data(ZSTART(2), 2 * LBS);                          /* still readable */
	assert_zeros(ZSTART(2) + 2 * LBS, LBS);
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, ZSTART(2) + ZS - LBS), 0);
	ck_assert_int_eq(wr(ZSTART(2) + 2 * LBS, LBS), -EPERM);
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_FINISH, 2, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_RESET, 2, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_RESET, 2, 2), -EPERM);  /* in a range too */
	ck_assert_int_eq(refresh(2, ZSTART(2) + 3 * LBS), -EPERM);
	ck_assert_int_eq(zd_emul_set_cond(dev, 2, ZP_COND_READONLY), 0);
	ck_assert_uint_eq(zone(2).cond, ZP_COND_READONLY);
}
END_TEST

START_TEST(cond_offline)
{
	uint8_t buf[LBS];

	open_small();
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(zd_emul_set_cond(dev, 3, ZP_COND_OFFLINE), 0);
	ck_assert_uint_eq(zone(3).cond, ZP_COND_OFFLINE);
	ck_assert_uint_eq(zone(3).wp, UINT64_MAX);
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, ZSTART(3)), -EIO);
	ck_assert_int_eq(dev->ops->pread(dev, buf, LBS, ZSTART(3) + ZS - LBS), -EIO);
	{
		uint8_t *big = malloc(ZS + LBS); /* spans into the offline zone */

		ck_assert_int_eq(dev->ops->pread(dev, big, ZS + LBS, ZSTART(2)), -EIO);
		free(big);
	}
	ck_assert_int_eq(wr(ZSTART(3) + LBS, LBS), -EPERM);
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_OPEN, 3, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 3, 1), -EPERM);
	ck_assert_int_eq(op(ZD_OP_FINISH, 3, 1), -EPERM);
	ck_assert_int_eq(refresh(3, NO_HINT), -EPERM);
	/* No way back, not even to read-only. */
	ck_assert_int_eq(zd_emul_set_cond(dev, 3, ZP_COND_READONLY), -EPERM);
	ck_assert_int_eq(zd_emul_set_cond(dev, 3, ZP_COND_OFFLINE), 0);
	/* Read-only may still go offline. */
	ck_assert_int_eq(zd_emul_set_cond(dev, 4, ZP_COND_READONLY), 0);
	ck_assert_int_eq(zd_emul_set_cond(dev, 4, ZP_COND_OFFLINE), 0);
	ck_assert_uint_eq(zone(4).cond, ZP_COND_OFFLINE);
}
END_TEST

START_TEST(cond_errors_and_resources)
{
	open_small();
	ck_assert_int_eq(zd_emul_set_cond(dev, 2, ZP_COND_EMPTY), -EINVAL);
	ck_assert_int_eq(zd_emul_set_cond(dev, 2, ZP_COND_FULL), -EINVAL);
	ck_assert_int_eq(zd_emul_set_cond(dev, 2, ZP_COND_COUNT), -EINVAL);
	ck_assert_int_eq(zd_emul_set_cond(dev, 0, ZP_COND_READONLY), -EPERM);
	ck_assert_int_eq(zd_emul_set_cond(dev, NZ, ZP_COND_OFFLINE), -ERANGE);
	ck_assert_int_eq(zd_emul_set_cond(NULL, 2, ZP_COND_OFFLINE), -EINVAL);
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	ASSERT_ZONE(0, ZP_COND_NOT_WP, ZS);

	/* A zone that fails gives back its open and active slots. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 3), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 5, 1), -EBUSY);
	ck_assert_int_eq(zd_emul_set_cond(dev, 3, ZP_COND_READONLY), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 5, 1), 0);
	ck_assert_int_eq(wr(ZSTART(6), LBS), -EBUSY);
	ck_assert_int_eq(zd_emul_set_cond(dev, 4, ZP_COND_OFFLINE), 0);
	ck_assert_int_eq(wr(ZSTART(6), LBS), 0);
}
END_TEST

/* ================= refresh_zone ================= */

START_TEST(refresh_hint)
{
	struct zd_zone out;

	open_small();
	fd_wr(ZSTART(2), 3 * LBS);
	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 2, ZSTART(2) + 3 * LBS, &out), 0);
	ck_assert_uint_eq(out.cond, ZP_COND_IMP_OPEN);
	ck_assert_uint_eq(out.wp, ZSTART(2) + 3 * LBS);
	ck_assert_uint_eq(out.start, ZSTART(2));
	ck_assert_uint_eq(out.capacity, CAP);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 3 * LBS);
	assert_data(ZSTART(2), 3 * LBS);
	/* The same wp again changes nothing; a closed zone then stays closed. */
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), 0);
	ck_assert_int_eq(refresh(2, ZSTART(2) + 3 * LBS), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, 3 * LBS);
	ck_assert_int_eq(refresh(3, ZSTART(3)), 0);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
	/* A closed zone moving forward is implicitly opened. */
	ck_assert_int_eq(refresh(2, ZSTART(2) + 4 * LBS), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 4 * LBS);
	/* An explicitly open one stays explicitly open. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 3, 1), 0);
	ck_assert_int_eq(refresh(3, ZSTART(3) + LBS), 0);
	ASSERT_ZONE(3, ZP_COND_EXP_OPEN, LBS);
	/* Up to capacity: full, wp at the zone end, slot released. */
	ck_assert_int_eq(refresh(3, ZSTART(3) + CAP), 0);
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 4, ZSTART(4) + LBS, NULL), 0);
	ASSERT_ZONE(4, ZP_COND_IMP_OPEN, LBS);
}
END_TEST

START_TEST(refresh_hint_errors)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0);
	ck_assert_int_eq(refresh(2, ZSTART(2) + 2 * LBS + 512), -EINVAL); /* misaligned */
	ck_assert_int_eq(refresh(2, ZSTART(2) + LBS), -EINVAL);           /* backward */
	ck_assert_int_eq(refresh(2, ZSTART(2) + CAP + LBS), -EINVAL);     /* past capacity */
	ck_assert_int_eq(refresh(2, ZSTART(3)), -EINVAL);                 /* next zone */
	ck_assert_int_eq(refresh(2, ZSTART(1)), -EINVAL);                 /* before the zone */
	ck_assert_int_eq(refresh(2, UINT64_MAX - 1), -EINVAL);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 2 * LBS);
	ck_assert_int_eq(refresh(0, ZSTART(0) + LBS), -EPERM);            /* conventional */
	ck_assert_int_eq(refresh(1, NO_HINT), -EPERM);
	ck_assert_int_eq(refresh(NZ, NO_HINT), -ERANGE);
	ck_assert_int_eq(refresh(UINT32_MAX, ZSTART(2)), -ERANGE);
	/* A full zone's wp is its end: no hint below that is valid. */
	ck_assert_int_eq(wr(ZSTART(3), CAP), 0);
	ck_assert_int_eq(refresh(3, ZSTART(3) + CAP), -EINVAL);
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
}
END_TEST

START_TEST(refresh_limits)
{
	open_small();
	for (uint32_t z = 2; z < 5; z++)
		ck_assert_int_eq(refresh(z, ZSTART(z) + LBS), 0);
	/* Like a write: the LRU implicitly open zone makes room... */
	ck_assert_int_eq(refresh(5, ZSTART(5) + LBS), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(5, ZP_COND_IMP_OPEN, LBS);
	ck_assert_int_eq(refresh(6, ZSTART(6) + LBS), 0);
	/* ...and max_active refuses a sixth active zone. */
	ck_assert_int_eq(refresh(7, ZSTART(7) + LBS), -EBUSY);
	ASSERT_ZONE(7, ZP_COND_EMPTY, 0);
	fd_wr(ZSTART(7), LBS);
	ck_assert_int_eq(refresh(7, NO_HINT), -EBUSY);
	ASSERT_ZONE(7, ZP_COND_EMPTY, 0);
	/* Explicitly open zones are not closed for it either. */
	ck_assert_int_eq(op(ZD_OP_RESET, 2, 5), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 2, 3), 0);
	ck_assert_int_eq(refresh(5, ZSTART(5) + LBS), -EBUSY);
}
END_TEST

START_TEST(refresh_infer)
{
	struct zd_zone out;

	open_small();
	/* Nothing written: nothing changes. */
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 2, NO_HINT, &out), 0);
	ck_assert_uint_eq(out.cond, ZP_COND_EMPTY);
	ck_assert_uint_eq(out.wp, ZSTART(2));
	fd_wr(ZSTART(2), 3 * LBS);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 2, NO_HINT, &out), 0);
	ck_assert_uint_eq(out.cond, ZP_COND_IMP_OPEN);
	ck_assert_uint_eq(out.wp, ZSTART(2) + 3 * LBS);
	/* The end of the last extent counts, holes before it included. */
	fd_wr(ZSTART(2) + 6 * LBS, 2 * LBS);
	ck_assert_int_eq(refresh(2, NO_HINT), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 8 * LBS);
	ck_assert_int_eq(refresh(2, NO_HINT), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 8 * LBS);
	ck_assert_int_eq(zsize(2), 8 * LBS);
	/* A partial block counts as written, zero-padded. */
	{
		int fd = open(zpath(2), O_WRONLY);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pwrite(fd, "x", 1, 8 * LBS), 1);
		close(fd);
	}
	ck_assert_int_eq(refresh(2, NO_HINT), 0);
	ASSERT_ZONE(2, ZP_COND_IMP_OPEN, 9 * LBS);
	ck_assert_int_eq(zsize(2), 9 * LBS);
	/* Data past capacity is no zone's: it is cut off, and the zone is
	 * full (everything before it counts as written, holes as zeros). */
	fd_wr(ZSTART(2) + CAP, LBS);
	ck_assert_int_eq(refresh(2, NO_HINT), 0);
	ASSERT_ZONE(2, ZP_COND_FULL, ZS);
	ck_assert_int_eq(zsize(2), CAP);
	assert_data(ZSTART(2) + 6 * LBS, 2 * LBS);
	assert_zeros(ZSTART(2) + 9 * LBS, ZS - 9 * LBS);
	/* Reaching capacity makes the zone full. */
	fd_wr(ZSTART(6) + CAP - LBS, LBS);
	ck_assert_int_eq(refresh(6, NO_HINT), 0);
	ASSERT_ZONE(6, ZP_COND_FULL, ZS);
	/* Data behind the wp never moves it backward, nor does its absence. */
	ck_assert_int_eq(wr(ZSTART(3), 4 * LBS), 0);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, 4 * LBS);
	ck_assert_int_eq(refresh(3, ZSTART(3) + 6 * LBS), 0);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, 6 * LBS);
	/* An explicitly open zone stays explicitly open. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);
	fd_wr(ZSTART(4), LBS);
	ck_assert_int_eq(refresh(4, NO_HINT), 0);
	ASSERT_ZONE(4, ZP_COND_EXP_OPEN, LBS);
}
END_TEST

START_TEST(refresh_reset_forgets)
{
	open_small();
	/* Data a client wrote but never reported, then a reset: it must not
	 * come back through a refresh without hint. */
	fd_wr(ZSTART(2), 2 * LBS);
	ck_assert_int_eq(op(ZD_OP_RESET, 2, 1), 0);
	ck_assert_int_eq(refresh(2, NO_HINT), 0);
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	fd_wr(ZSTART(3), 2 * LBS);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), 0);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
}
END_TEST

/* ================= persistence ================= */

START_TEST(persist_state)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(0) + 4 * LBS, LBS), 0);    /* conventional data */
	ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0);          /* imp open -> closed */
	ck_assert_int_eq(op(ZD_OP_OPEN, 3, 1), 0);            /* exp open, empty -> empty */
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);
	ck_assert_int_eq(wr(ZSTART(4), LBS), 0);              /* exp open -> closed */
	ck_assert_int_eq(wr(ZSTART(5), CAP), 0);              /* full */
	ck_assert_int_eq(wr(ZSTART(6), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 6, 1), 0);           /* closed */
	ck_assert_int_eq(op(ZD_OP_FINISH, 7, 1), 0);          /* finished */
	ck_assert_int_eq(wr(ZSTART(8), LBS), 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 8, 1), 0);           /* reset */
	ck_assert_int_eq(zd_emul_set_cond(dev, 9, ZP_COND_READONLY), 0);
	ck_assert_int_eq(zd_emul_set_cond(dev, 10, ZP_COND_OFFLINE), 0);
	ck_assert_int_eq(wr(ZSTART(11), 3 * LBS), 0);         /* imp open -> closed */

	ck_assert_int_eq(reopen(), 0);
	assert_data(ZSTART(0) + 4 * LBS, LBS);
	ASSERT_ZONE(0, ZP_COND_NOT_WP, ZS);
	ASSERT_ZONE(2, ZP_COND_CLOSED, 2 * LBS);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
	ASSERT_ZONE(4, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(5, ZP_COND_FULL, ZS);
	ASSERT_ZONE(6, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(7, ZP_COND_FULL, ZS);
	ASSERT_ZONE(8, ZP_COND_EMPTY, 0);
	ck_assert_uint_eq(zone(9).cond, ZP_COND_READONLY);
	ck_assert_uint_eq(zone(10).cond, ZP_COND_OFFLINE);
	ASSERT_ZONE(11, ZP_COND_CLOSED, 3 * LBS);
	assert_data(ZSTART(2), 2 * LBS);
	assert_data(ZSTART(5), CAP);
	assert_data(ZSTART(11), 3 * LBS);
	assert_zeros(ZSTART(11) + 3 * LBS, LBS);

	/* The accounting is rebuilt: 4 closed zones are active, none open. */
	ck_assert_int_eq(op(ZD_OP_OPEN, 12, 1), 0);
	ck_assert_int_eq(op(ZD_OP_OPEN, 13, 1), -EBUSY);
	ck_assert_int_eq(wr(ZSTART(2) + 2 * LBS, LBS), 0);    /* closed reopens */
	ck_assert_int_eq(wr(ZSTART(4) + LBS, LBS), 0);
	ck_assert_int_eq(wr(ZSTART(6) + LBS, LBS), 0);        /* evicts 2 */
	ASSERT_ZONE(2, ZP_COND_CLOSED, 3 * LBS);
	ASSERT_ZONE(12, ZP_COND_EXP_OPEN, 0);
}
END_TEST

START_TEST(persist_many_updates)
{
	open_small();
	for (unsigned i = 0; i < 50; i++)
		ck_assert_int_eq(wr(ZSTART(2) + (uint64_t)i * LBS, LBS), 0);
	ck_assert_uint_eq(slot_seq(0, 2) + slot_seq(1, 2), 50 + 51); /* seq 50 and 51 */
	ck_assert_int_eq(reopen(), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, 50 * LBS);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_int_eq(op(ZD_OP_RESET, 2, 1), 0);
		ck_assert_int_eq(wr(ZSTART(2), LBS), 0);
		ck_assert_int_eq(reopen(), 0);
		ASSERT_ZONE(2, ZP_COND_CLOSED, LBS);
	}
}
END_TEST

START_TEST(persist_format)
{
	uint8_t h[512], rec[REC_SIZE];

	ck_assert_uint_eq(ref_crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);
	open_small();
	meta_read(0, h, sizeof(h));
	ck_assert_int_eq(memcmp(h, "ZONEDEMU", 8), 0);
	ck_assert_uint_eq(le32(h + 8), 2);
	ck_assert_uint_eq(le32(h + 12), HDR_SIZE);
	ck_assert_uint_eq(le64(h + 16), NZ * ZS);
	ck_assert_uint_eq(le64(h + 24), ZS);
	ck_assert_uint_eq(le64(h + 32), CAP);
	ck_assert_uint_eq(le32(h + 40), NZ);
	ck_assert_uint_eq(le32(h + 44), 2);
	ck_assert_uint_eq(le32(h + 48), MAX_OPEN);
	ck_assert_uint_eq(le32(h + 52), MAX_ACTIVE);
	ck_assert_uint_eq(le32(h + 56), LBS);
	ck_assert_uint_eq(le32(h + 60), REC_SIZE);
	ck_assert_uint_eq(le64(h + 64), SLOT_A);
	ck_assert_uint_eq(le64(h + 72), SLOT_B);
	ck_assert_uint_eq(le32(h + 508), ref_crc32c(h, 508));

	/* Creation writes slot A, sequence 1; slot B is all zeros. */
	meta_read(SLOT_A + 2 * REC_SIZE, rec, sizeof(rec));
	ck_assert_uint_eq(le64(rec), 0);
	ck_assert_uint_eq(le64(rec + 8), 1);
	ck_assert_uint_eq(le32(rec + 16), 2);
	ck_assert_uint_eq(rec[20], ZP_COND_EMPTY);
	ck_assert_uint_eq(le32(rec + 28), ref_crc32c(rec, 28));
	meta_read(SLOT_A + 1 * REC_SIZE, rec, sizeof(rec));
	ck_assert_uint_eq(rec[20], ZP_COND_NOT_WP);
	meta_read(SLOT_B + 2 * REC_SIZE, rec, sizeof(rec));
	for (unsigned i = 0; i < REC_SIZE; i++)
		ck_assert_uint_eq(rec[i], 0);

	/* The first update goes to slot B with sequence 2, A is untouched. */
	ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0);
	meta_read(SLOT_B + 2 * REC_SIZE, rec, sizeof(rec));
	ck_assert_uint_eq(le64(rec), 2 * LBS);
	ck_assert_uint_eq(le64(rec + 8), 2);
	ck_assert_uint_eq(le32(rec + 16), 2);
	ck_assert_uint_eq(rec[20], ZP_COND_IMP_OPEN);
	ck_assert_uint_eq(le32(rec + 28), ref_crc32c(rec, 28));
	ck_assert_uint_eq(slot_seq(0, 2), 1);
	/* The second one back to A. */
	ck_assert_int_eq(wr(ZSTART(2) + 2 * LBS, LBS), 0);
	ck_assert_uint_eq(slot_seq(0, 2), 3);
	ck_assert_uint_eq(slot_seq(1, 2), 2);
}
END_TEST

START_TEST(persist_torn_newest)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3) + LBS, LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), 2 * LBS), 0);
	zd_dev_close(dev);
	dev = NULL;

	/* The newest record of zone 3 is corrupt: the older one (wp LBS) is
	 * not taken blindly, which would silently roll back a write whose
	 * data is there; the zone takes the data's wp. */
	scribble(newest_slot(3), 3, 1);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	ASSERT_ZONE(4, ZP_COND_CLOSED, 2 * LBS);          /* its neighbour is intact */
	assert_data(ZSTART(3), 2 * LBS);
	/* Writing resumes from there and persists. */
	ck_assert_int_eq(wr(ZSTART(3) + 2 * LBS, LBS), 0);
	ck_assert_int_eq(reopen(), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 3 * LBS);
	assert_data(ZSTART(3), 3 * LBS);
	zd_dev_close(dev);
	dev = NULL;
	/* A corrupt newest record over data that is gone (a reset whose
	 * record was lost) does not claim the data back either. */
	ck_assert_int_eq(truncate(zpath(3), 0), 0);
	scribble(newest_slot(3), 3, 7);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
}
END_TEST

START_TEST(persist_torn_older)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3) + LBS, LBS), 0);
	zd_dev_close(dev);
	dev = NULL;
	/* A torn write of the slot being replaced leaves the newest in use. */
	scribble(!newest_slot(3), 3, 2);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	ck_assert_int_eq(wr(ZSTART(3) + 2 * LBS, LBS), 0);
	ck_assert_int_eq(reopen(), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 3 * LBS);
}
END_TEST

START_TEST(persist_torn_first_update)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(5), LBS), 0);
	zd_dev_close(dev);
	dev = NULL;
	/* Slot B held the only update: the creation record in A survives,
	 * and the data written since shows the zone is not empty. */
	ck_assert_uint_eq(newest_slot(5), 1);
	scribble(1, 5, 3);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(5, ZP_COND_CLOSED, LBS);
	assert_data(ZSTART(5), LBS);
}
END_TEST

START_TEST(persist_misplaced_record)
{
	uint8_t rec[REC_SIZE];

	open_small();
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), 2 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4) + 2 * LBS, LBS), 0);
	zd_dev_close(dev);
	dev = NULL;
	/* A valid record of zone 4 written where zone 3's slot B lives (CRC
	 * fine, wrong zone) is refused; zone 3 falls back to slot A and to
	 * what its data says. */
	meta_read(SLOT_B + 4 * REC_SIZE, rec, sizeof(rec));
	meta_write(SLOT_B + 3 * REC_SIZE, rec, sizeof(rec));
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, LBS);
	ASSERT_ZONE(4, ZP_COND_CLOSED, 3 * LBS);
}
END_TEST

static void put_rec(unsigned slot, uint32_t z, uint64_t wp, uint64_t seq, uint8_t cond)
{
	uint8_t rec[REC_SIZE] = { 0 };
	uint32_t c;

	for (int i = 0; i < 8; i++) {
		rec[i] = (uint8_t)(wp >> (8 * i));
		rec[8 + i] = (uint8_t)(seq >> (8 * i));
	}
	for (int i = 0; i < 4; i++)
		rec[16 + i] = (uint8_t)(z >> (8 * i));
	rec[20] = cond;
	c = ref_crc32c(rec, 28);
	for (int i = 0; i < 4; i++)
		rec[28 + i] = (uint8_t)(c >> (8 * i));
	meta_write((slot ? SLOT_B : SLOT_A) + (uint64_t)z * REC_SIZE, rec, sizeof(rec));
}

START_TEST(persist_same_seq)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0); /* slot B, sequence 2 */
	zd_dev_close(dev);
	dev = NULL;
	/* Our own record format, hand-made: an equal copy is accepted... */
	put_rec(0, 3, LBS, 2, ZP_COND_IMP_OPEN);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, LBS);
	zd_dev_close(dev);
	dev = NULL;
	/* ...a newer one is taken... */
	put_rec(0, 3, 2 * LBS, 3, ZP_COND_CLOSED);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 2 * LBS);
	zd_dev_close(dev);
	dev = NULL;
	/* ...two different states under one number take the zone offline
	 * (the device is served; guessing could hand out data as empty)... */
	put_rec(0, 3, 2 * LBS, 2, ZP_COND_IMP_OPEN);
	expect_offline(3);
	/* ...and so does a well-formed record with an impossible state. */
	put_rec(0, 3, 0, 9, ZP_COND_CLOSED);     /* closed at the zone start */
	put_rec(1, 3, CAP, 10, ZP_COND_IMP_OPEN); /* open at capacity */
	expect_offline(3);
	put_rec(0, 3, 0, 9, ZP_COND_CLOSED);
	put_rec(1, 3, LBS, 10, ZP_COND_NOT_WP);  /* conventional cond, sequential zone */
	expect_offline(3);
	put_rec(0, 3, 0, 9, ZP_COND_CLOSED);
	put_rec(1, 3, LBS + 512, 10, ZP_COND_CLOSED); /* misaligned wp */
	expect_offline(3);
	put_rec(0, 3, 0, 9, ZP_COND_CLOSED);
	put_rec(1, 3, LBS, 10, ZP_COND_FULL);    /* full below the zone end */
	expect_offline(3);
	put_rec(0, 3, 0, 9, ZP_COND_CLOSED);
	put_rec(1, 3, LBS, 0, ZP_COND_CLOSED);   /* sequence 0 */
	expect_offline(3);
	put_rec(1, 3, LBS, 10, ZP_COND_CLOSED);  /* finally a good one */
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(3, ZP_COND_CLOSED, LBS);
}
END_TEST

START_TEST(persist_both_corrupt)
{
	open_small();
	ck_assert_int_eq(wr(ZSTART(3), LBS), 0);
	ck_assert_int_eq(wr(ZSTART(3) + LBS, LBS), 0);
	zd_dev_close(dev);
	dev = NULL;
	scribble(0, 3, 4);
	scribble(1, 3, 5);
	/* The rest of the device is served; zone 3, whose state is unknown,
	 * is offline, and stays so. */
	ck_assert_int_eq(zd_emul_open(devpath, NULL, true, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	ck_assert_uint_eq(zone(3).cond, ZP_COND_OFFLINE);
	ck_assert_int_eq(reopen(), 0);
	ck_assert_uint_eq(zone(3).cond, ZP_COND_OFFLINE);
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), -EPERM);
}
END_TEST

START_TEST(persist_header_corrupt)
{
	uint8_t h[512], saved[512];

	open_small();
	zd_dev_close(dev);
	dev = NULL;
	meta_read(0, saved, sizeof(saved));

	/* A flipped bit that leaves a valid geometry (max-open 3 -> 2): only
	 * the checksum can tell. */
	memcpy(h, saved, sizeof(h));
	h[48] ^= 0x01;
	meta_write(0, h, sizeof(h));
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -EUCLEAN);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, true, ZD_ISOLATION_AUTO, &dev), -EUCLEAN);
	/* Not our magic. */
	memcpy(h, saved, sizeof(h));
	memcpy(h, "NOTZONED", 8);
	meta_write(0, h, sizeof(h));
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -EUCLEAN);
	/* A consistent header with an impossible geometry. */
	memcpy(h, saved, sizeof(h));
	h[24 + 2] = 0x30; /* zone size 0x301000... not a power of two */
	h[508] = h[509] = h[510] = h[511] = 0;
	{
		uint32_t c = ref_crc32c(h, 508);

		for (int i = 0; i < 4; i++)
			h[508 + i] = (uint8_t)(c >> (8 * i));
	}
	meta_write(0, h, sizeof(h));
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -EUCLEAN);
	/* A future format version, and 0.1's inside a directory. */
	for (uint8_t v = 1; v <= 3; v += 2) {
		memcpy(h, saved, sizeof(h));
		h[8] = v;
		{
			uint32_t c = ref_crc32c(h, 508);

			for (int i = 0; i < 4; i++)
				h[508 + i] = (uint8_t)(c >> (8 * i));
		}
		meta_write(0, h, sizeof(h));
		ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev),
				 -EPROTONOSUPPORT);
	}
	/* Restored, it opens again. */
	meta_write(0, saved, sizeof(saved));
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
}
END_TEST

START_TEST(persist_truncated)
{
	open_small();
	zd_dev_close(dev);
	dev = NULL;
	ck_assert_int_eq(truncate(metapath, SLOT_B + 100), 0);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -EUCLEAN);
	ck_assert_int_eq(truncate(metapath, 0), 0);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -EUCLEAN);
	ck_assert_int_eq(unlink(metapath), 0);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), -ENOENT);
}
END_TEST

START_TEST(persist_zone_file_cut)
{
	open_small();
	/* A lessee can ftruncate its zone's file (it has no name to unlink).
	 * The wp never moves back: what is cut reads as zeros, the zone
	 * stays usable, no other zone is touched. */
	ck_assert_int_eq(wr(ZSTART(3), 4 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), 2 * LBS), 0);
	ck_assert_int_eq(truncate(zpath(3), LBS), 0);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, 4 * LBS);
	assert_data(ZSTART(3), LBS);
	assert_zeros(ZSTART(3) + LBS, 3 * LBS);
	ck_assert_int_eq(wr(ZSTART(3) + 4 * LBS, LBS), 0);
	assert_data(ZSTART(3) + 4 * LBS, LBS);
	/* Across a clean close and an unclean one alike. */
	ck_assert_int_eq(truncate(zpath(4), 0), 0);
	ck_assert_int_eq(reopen(), 0);
	ASSERT_ZONE(4, ZP_COND_CLOSED, 2 * LBS);
	assert_zeros(ZSTART(4), 2 * LBS);
	zd_dev_close(dev);
	dev = NULL;
	{
		pid_t pid = fork();
		int status;

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			if (zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev))
				_exit(1);
			_exit(0); /* no clean close */
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(4, ZP_COND_CLOSED, 2 * LBS);
	ASSERT_ZONE(3, ZP_COND_CLOSED, 5 * LBS);
	assert_data(ZSTART(3) + 4 * LBS, LBS);
}
END_TEST

/* Enough zones for several load chunks and a multi-block slot array. */
START_TEST(persist_many_zones)
{
	const uint32_t nz = 5000, zs = 64 * 1024;
	struct zd_emul_params p = {
		.size = (uint64_t)nz * zs, .zone_size = zs, .zone_capacity = zs,
		.nr_conventional = 1, .max_open = 0, .max_active = 0,
		.logical_block_size = LBS,
	};
	uint32_t zones[] = { 1, 2047, 2048, 2049, 4095, 4096, 4999 };
	uint8_t buf[LBS];
	struct zd_zone z;
	uint32_t n = 1;

	memset(buf, 0x33, sizeof(buf));
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	for (unsigned i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
		for (unsigned k = 0; k <= i; k++)
			ck_assert_int_eq(dev->ops->pwrite(dev, buf, LBS, (uint64_t)zones[i] * zs + k * LBS), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, 3000, 2000), 0);
	ck_assert_int_eq(reopen(), 0);
	for (unsigned i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		n = 1;
		ck_assert_int_eq(dev->ops->report(dev, zones[i], &z, &n), 0);
		ck_assert_uint_eq(z.start, (uint64_t)zones[i] * zs);
		ck_assert_uint_eq(z.cond, zones[i] >= 3000 ? ZP_COND_FULL : ZP_COND_CLOSED);
		ck_assert_uint_eq(z.wp, z.start + (zones[i] >= 3000 ? zs : (i + 1) * LBS));
	}
	n = 1;
	ck_assert_int_eq(dev->ops->report(dev, 2999, &z, &n), 0);
	ck_assert_uint_eq(z.cond, ZP_COND_EMPTY);
}
END_TEST


/* ================= crash at every durable step ================= */

/* A scenario: set-up (not under fault injection), then one operation that
 * a crash may interrupt at any of its durable steps. */
struct scenario {
	const char *name;
	void (*setup)(void);
	int (*run)(void);
};

static void set_none(void) {}
static void set_two_blocks(void) { ck_assert_int_eq(wr(ZSTART(2), 2 * LBS), 0); }
static void set_almost_full(void) { ck_assert_int_eq(wr(ZSTART(3), CAP - LBS), 0); }
static void set_full(void) { ck_assert_int_eq(wr(ZSTART(3), CAP), 0); }
static void set_max_open(void)
{
	for (uint32_t z = 2; z < 2 + MAX_OPEN; z++)
		ck_assert_int_eq(wr(ZSTART(z), LBS), 0);
}
static void set_mixed(void)
{
	set_two_blocks();
	set_full();
	ck_assert_int_eq(op(ZD_OP_OPEN, 4, 1), 0);
	ck_assert_int_eq(wr(ZSTART(4), LBS), 0);
}
static void set_client_wrote(void)
{
	set_two_blocks();
	fd_wr(ZSTART(2) + 2 * LBS, 3 * LBS); /* through a client fd, unreported */
}

static int run_write(void) { return wr(ZSTART(2) + 2 * LBS, 3 * LBS); }
static int run_write_full(void) { return wr(ZSTART(3) + CAP - LBS, LBS); }
static int run_write_evict(void) { return wr(ZSTART(2 + MAX_OPEN), 2 * LBS); }
static int run_reset(void) { return op(ZD_OP_RESET, 2, 1); }
static int run_reset_full(void) { return op(ZD_OP_RESET, 3, 1); }
static int run_reset_range(void) { return op(ZD_OP_RESET, 2, 4); }
static int run_finish(void) { return op(ZD_OP_FINISH, 2, 1); }
static int run_finish_empty(void) { return op(ZD_OP_FINISH, 6, 1); }
static int run_open(void) { return op(ZD_OP_OPEN, 2, 1); }
static int run_open_evict(void) { return op(ZD_OP_OPEN, 2 + MAX_OPEN, 1); }
static int run_close(void) { return op(ZD_OP_CLOSE, 2, 1); }
static int run_refresh_hint(void) { return refresh(2, ZSTART(2) + 5 * LBS); }
static int run_refresh_infer(void) { return refresh(2, NO_HINT); }
static int held_fd = -1; /* a revoked client's fd, kept open across the fence */
static void set_fence(void)
{
	set_two_blocks();
	held_fd = zd_dev_open_zone(dev, 2, O_RDWR, NULL);
	ck_assert_int_ge(held_fd, 0);
}
static void set_fence_empty(void)
{
	held_fd = zd_dev_open_zone(dev, 6, O_RDWR, NULL);
	ck_assert_int_ge(held_fd, 0);
}
static int run_fence(void) { return dev->ops->lease_fence(dev, 2, 1); }
static int run_fence_empty(void) { return dev->ops->lease_fence(dev, 6, 1); }
static int run_set_readonly(void) { return zd_emul_set_cond(dev, 2, ZP_COND_READONLY); }
static int run_set_offline(void) { return zd_emul_set_cond(dev, 3, ZP_COND_OFFLINE); }

static const struct scenario scenarios[] = {
	{ "write", set_two_blocks, run_write },
	{ "write-to-full", set_almost_full, run_write_full },
	{ "write-evicting", set_max_open, run_write_evict },
	{ "reset", set_two_blocks, run_reset },
	{ "reset-full", set_full, run_reset_full },
	{ "reset-range", set_mixed, run_reset_range },
	{ "finish", set_two_blocks, run_finish },
	{ "finish-empty", set_none, run_finish_empty },
	{ "open", set_two_blocks, run_open },
	{ "open-evicting", set_max_open, run_open_evict },
	{ "close", set_two_blocks, run_close },
	{ "refresh-hint", set_client_wrote, run_refresh_hint },
	{ "refresh-infer", set_client_wrote, run_refresh_infer },
	{ "set-readonly", set_two_blocks, run_set_readonly },
	{ "set-offline", set_full, run_set_offline },
	{ "fence", set_fence, run_fence },
	{ "fence-empty", set_fence_empty, run_fence_empty },
};

static const char *const crash_steps[] = {
	"data-write", "data-sync", "discard", "meta-write", "meta-sync", "dir-sync",
	"fence-copy", "fence-rename", "unlink",
};

/* A zone as a power cycle shows it: open zones come back closed. */
struct zstate {
	uint8_t cond;
	uint64_t wp;
};

static bool same(const struct zstate *a, const struct zstate *b)
{
	return a->cond == b->cond && a->wp == b->wp;
}

static void snapshot(struct zstate *out)
{
	for (uint32_t z = 0; z < NZ; z++) {
		struct zd_zone zz = zone(z);

		if (zz.cond == ZP_COND_IMP_OPEN || zz.cond == ZP_COND_EXP_OPEN)
			zz.cond = zz.wp > zz.start ? ZP_COND_CLOSED : ZP_COND_EMPTY;
		out[z] = (struct zstate){ zz.cond, zz.wp };
	}
}

static void fresh_device(void)
{
	zd_dev_close(dev);
	dev = NULL;
	if (held_fd >= 0)
		close(held_fd);
	held_fd = -1;
	rm_dev();
	open_small();
}

/* Report == data: no wp claims data the zone's file does not hold, no data
 * lies past a wp, and what is there is what was written. */
static void check_truth(const char *what)
{
	uint8_t *buf = malloc(ZS);
	char tmp[PATH_MAX + 32];

	ck_assert_ptr_nonnull(buf);
	for (uint32_t z = 2; z < NZ; z++) {
		struct zd_zone zz = zone(z);
		uint64_t wp;
		off_t size = zsize(z);
		int fd;

		/* A fence's copy cut short is removed by the open. */
		snprintf(tmp, sizeof(tmp), "%s.tmp", zpath(z));
		ck_assert_msg(access(tmp, F_OK) < 0, "%s: %s left behind", what, tmp);
		if (zz.cond == ZP_COND_READONLY || zz.cond == ZP_COND_OFFLINE)
			continue;
		wp = zz.cond == ZP_COND_FULL ? CAP : zz.wp - zz.start;
		if (size > (off_t)wp)
			ck_abort_msg("%s: zone %u: file of %lld bytes past its wp %llu", what, z,
				     (long long)size, (unsigned long long)wp);
		memset(buf, 0, wp);
		fd = open(zpath(z), O_RDONLY);
		if (fd >= 0) {
			ck_assert_int_eq(pread(fd, buf, wp, 0), (ssize_t)size);
			close(fd);
		}
		for (uint64_t i = 0; i < wp; i++) {
			/* A finished zone reads zeros past what was written. */
			if (buf[i] == pat(zz.start + i) ||
			    (zz.cond == ZP_COND_FULL && buf[i] == 0))
				continue;
			ck_abort_msg("%s: zone %u (cond %u, wp %llu): byte %llu is %#x, not the data "
				     "written there", what, z, zz.cond, (unsigned long long)wp,
				     (unsigned long long)i, buf[i]);
		}
	}
	free(buf);
}

/* Runs one scenario to completion and records the zones before and after. */
static void reference(const struct scenario *sc, struct zstate *pre, struct zstate *post)
{
	fresh_device();
	sc->setup();
	snapshot(pre);
	ck_assert_int_eq(sc->run(), 0);
	snapshot(post);
}

/* Child: set up, arm the fault, run the operation; dies by SIGKILL if the
 * step is reached, else closes cleanly and exits 0. */
static void crash_child(const struct scenario *sc, const char *spec)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fresh_device();
		sc->setup();
		if (zd_emul_set_faults(dev, spec) < 0)
			_exit(3);
		if (sc->run() < 0)
			_exit(4);
		zd_emul_set_faults(dev, "");
		zd_dev_close(dev);
		_exit(0);
	}
	zd_dev_close(dev); /* the child works on the files alone */
	dev = NULL;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		ck_assert_int_eq(WTERMSIG(status), SIGKILL);
	else
		ck_assert_int_eq(WEXITSTATUS(status), 0);
	/* Tell the caller whether the fault fired. */
	errno = WIFSIGNALED(status) ? EINTR : 0;
}

START_TEST(crash_every_step)
{
	const struct scenario *sc = &scenarios[_i];
	struct zstate pre[NZ], post[NZ], now[NZ];
	unsigned crashes = 0;

	for (unsigned st = 0; st < sizeof(crash_steps) / sizeof(crash_steps[0]); st++) {
		for (unsigned n = 1;; n++) {
			char spec[64], what[128];

			reference(sc, pre, post);
			snprintf(spec, sizeof(spec), "crash:%s:%u", crash_steps[st], n);
			snprintf(what, sizeof(what), "%s, %s", sc->name, spec);
			crash_child(sc, spec);
			if (errno != EINTR)
				break; /* the operation has no Nth such step */
			crashes++;
			/* The restart: unclean, so every zone is checked. */
			ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
			check_truth(what);
			snapshot(now);
			for (uint32_t z = 0; z < NZ; z++)
				if (!same(&now[z], &pre[z]) && !same(&now[z], &post[z]))
					ck_abort_msg("%s: zone %u is cond %u wp %llu: neither the state "
						     "before (cond %u wp %llu) nor after (cond %u wp %llu)",
						     what, z, now[z].cond, (unsigned long long)now[z].wp,
						     pre[z].cond, (unsigned long long)pre[z].wp,
						     post[z].cond, (unsigned long long)post[z].wp);
			/* And it is usable: a reset of the zone works, and a
			 * clean close leaves nothing to repair. */
			zd_dev_close(dev);
			dev = NULL;
		}
	}
	/* Every scenario writes something durable, but a close: it writes
	 * nothing at all (a load closes open zones), so no step of it can
	 * crash. */
	if (strcmp(sc->name, "close") == 0)
		ck_assert_uint_eq(crashes, 0);
	else
		ck_assert_uint_gt(crashes, 0);
}
END_TEST

/* The reset of issue 13: killed between the discard and the record, the
 * old order left a closed zone with a wp over zeros. */
START_TEST(crash_reset_tells_truth)
{
	crash_child(&scenarios[3], "crash:discard");
	ck_assert_int_eq(errno, EINTR);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	check_truth("reset, crash after the discard");
	ASSERT_ZONE(2, ZP_COND_EMPTY, 0);
	zd_dev_close(dev);
	dev = NULL;
	crash_child(&scenarios[3], "crash:meta-sync");
	ck_assert_int_eq(errno, EINTR);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	check_truth("reset, crash after the record");
}
END_TEST

/* A clean close leaves "not in use" in the header; a kill leaves "in use". */
START_TEST(crash_header_state)
{
	uint8_t h[512];

	open_small();
	meta_read(0, h, sizeof(h));
	ck_assert_uint_eq(le32(h + 80), 1);
	ck_assert_uint_eq(le32(h + 508), ref_crc32c(h, 508));
	zd_dev_close(dev);
	dev = NULL;
	meta_read(0, h, sizeof(h));
	ck_assert_uint_eq(le32(h + 80), 0);
	ck_assert_uint_eq(le32(h + 508), ref_crc32c(h, 508));
	crash_child(&scenarios[0], "crash:data-write");
	meta_read(0, h, sizeof(h));
	ck_assert_uint_eq(le32(h + 80), 1);
	/* The data of the interrupted write is past the recorded wp: the
	 * unclean open takes it (the write may or may not have happened; the
	 * data says it did). */
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ASSERT_ZONE(2, ZP_COND_CLOSED, 5 * LBS);
	check_truth("write, crash after the data");
}
END_TEST

START_TEST(fault_spec)
{
	static const char *const bad[] = {
		"crash", "crash:", "crash:nowhere", "crash:meta-write:0", "crash:meta-write:x",
		"eio:3", "crash:meta-write,", ",crash:header", "crash:header:1:2",
		"crash:a,crash:b,crash:c,crash:d,crash:e,crash:f,crash:g,crash:h,crash:i",
	};

	open_small();
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(zd_emul_set_faults(dev, bad[i]) == -EINVAL, "%s accepted", bad[i]);
	ck_assert_int_eq(zd_emul_set_faults(dev, "crash:header,crash:meta-sync:7"), 0);
	ck_assert_int_eq(zd_emul_set_faults(dev, ""), 0);
	zd_dev_close(dev);
	dev = NULL;
	/* From the environment: a bad spec refuses the open, creating nothing. */
	rm_dev();
	setenv("ZONED_EMUL_FAULT", "crash:elsewhere", 1);
	{
		struct zd_emul_params p;

		small_params(&p);
		ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	}
	unsetenv("ZONED_EMUL_FAULT");
	ck_assert_int_eq(access(devpath, F_OK), -1);
	/* A good one fires: the header step at open. */
	{
		pid_t pid = fork();
		int status;

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			setenv("ZONED_EMUL_FAULT", "crash:header", 1);
			open_small();
			_exit(0);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	check_truth("crash at open");
}
END_TEST


/* ================= zone isolation and fencing ================= */

static ino_t zino(uint32_t z)
{
	struct stat st;

	ck_assert_int_eq(stat(zpath(z), &st), 0);
	return st.st_ino;
}

/* Whatever a client does through its zone's fd stays in that zone. */
START_TEST(iso_fd_reaches_only_its_zone)
{
	struct zd_zone_fds zf;
	struct zd_zone before[NZ];
	uint8_t junk[LBS];
	int fd;

	open_small();
	ck_assert_int_eq(wr(ZSTART(0), 2 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(2), 3 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), 2 * LBS), 0);
	ck_assert_int_eq(op(ZD_OP_CLOSE, 2, 1), 0);
	for (uint32_t z = 0; z < NZ; z++)
		before[z] = zone(z);
	ck_assert_int_eq(dev->ops->open_zones(dev, 3, 1, O_RDWR, true, &zf), 0);
	ck_assert_uint_eq(zf.nr, 1);
	ck_assert_uint_eq(zf.fd_offset, 0);
	fd = zf.fd[0];
	memset(junk, 0xee, sizeof(junk));
	/* Past its end (where zone 4 lies on the device), far past, a grow,
	 * a fallocate and a punch over the next zone's range. */
	ck_assert_int_eq(pwrite(fd, junk, LBS, ZS), LBS);
	ck_assert_int_eq(pwrite(fd, junk, LBS, 7 * ZS), LBS);
	ck_assert_int_eq(ftruncate(fd, 20 * ZS), 0);
	ck_assert_int_eq(fallocate(fd, 0, ZS, ZS), 0);
	ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * ZS), 0);
	/* Conventional zone 0's fd: the same. */
	{
		int cfd = zd_dev_open_zone(dev, 0, O_RDWR, NULL);

		ck_assert_int_ge(cfd, 0);
		ck_assert_int_eq(pwrite(cfd, junk, LBS, 2 * ZS + LBS), LBS);
		ck_assert_int_eq(ftruncate(cfd, ZS + LBS), 0);
		close(cfd);
		assert_data(ZSTART(0), 2 * LBS);
		assert_zeros(ZSTART(0) + 2 * LBS, ZS - 2 * LBS);
	}
	for (uint32_t z = 0; z < NZ; z++) {
		struct zd_zone now = zone(z);

		ck_assert_uint_eq(now.cond, before[z].cond);
		ck_assert_uint_eq(now.wp, before[z].wp);
	}
	assert_data(ZSTART(2), 3 * LBS);
	assert_data(ZSTART(4), 2 * LBS);
	assert_zeros(ZSTART(4) + 2 * LBS, ZS - 2 * LBS);
	ck_assert_int_eq(zsize(2), 3 * LBS);
	ck_assert_int_eq(zsize(4), 2 * LBS);
	ck_assert_int_eq(zsize(5), -1);
	/* Zone 3's own view: data past capacity cut off, the zone full. */
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_FULL, ZS);
	ck_assert_int_eq(zsize(3), CAP);
	assert_zeros(ZSTART(3), ZS);
	close(fd);

	/* A multi-zone range: one fd per zone, each its own file. */
	ck_assert_int_eq(dev->ops->open_zones(dev, 5, 3, O_RDWR, true, &zf), 0);
	ck_assert_uint_eq(zf.nr, 3);
	for (unsigned i = 0; i < 3; i++) {
		uint8_t b[LBS];

		for (unsigned k = 0; k < LBS; k++)
			b[k] = pat(ZSTART(5 + i) + k);
		ck_assert_int_eq(pwrite(zf.fd[i], b, LBS, 0), LBS);
		close(zf.fd[i]);
		ck_assert_int_eq(refresh(5 + i, NO_HINT), 0);
		ASSERT_ZONE(5 + i, ZP_COND_IMP_OPEN, LBS);
		assert_data(ZSTART(5 + i), LBS);
	}
	/* Bad ranges and flags. */
	ck_assert_int_eq(dev->ops->open_zones(dev, NZ - 1, 2, O_RDWR, true, &zf), -ERANGE);
	ck_assert_int_eq(dev->ops->open_zones(dev, 0, 0, O_RDWR, false, &zf), -EOPNOTSUPP);
	ck_assert_int_eq(dev->ops->open_zones(dev, 0, 1, O_RDWR | O_APPEND, true, &zf), -EINVAL);
}
END_TEST

/* Sends fd over a socketpair and returns the received copy (the same open
 * file description, as a client gets it). */
static int pass_fd(int fd)
{
	char c = 'x', cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &c, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int sv[2], out;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	ck_assert_int_eq(sendmsg(sv[0], &m, 0), 1);
	m.msg_controllen = sizeof(cbuf);
	ck_assert_int_eq(recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC), 1);
	cm = CMSG_FIRSTHDR(&m);
	ck_assert_ptr_nonnull(cm);
	memcpy(&out, CMSG_DATA(cm), sizeof(int));
	close(sv[0]);
	close(sv[1]);
	return out;
}

/* After lease_fence a kept fd's writes vanish, and the zone's data stays
 * intact and readable through a fresh fd. */
START_TEST(fence_kept_fd_vanishes)
{
	uint8_t junk[LBS], b[LBS];
	struct zd_zone_fds zf;
	ino_t ino;
	int fd, fresh;

	open_small();
	ck_assert_int_eq(wr(ZSTART(3), 2 * LBS), 0);
	ck_assert_int_eq(dev->ops->open_zones(dev, 3, 1, O_RDWR, true, &zf), 0);
	/* Held only through a copy passed over SCM_RIGHTS. */
	fd = pass_fd(zf.fd[0]);
	close(zf.fd[0]);
	ino = zino(3);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 3, 1), 0);
	ck_assert(zino(3) != ino);
	memset(junk, 0xee, sizeof(junk));
	ck_assert_int_eq(pwrite(fd, junk, LBS, 2 * LBS), LBS); /* at the wp */
	ck_assert_int_eq(pwrite(fd, junk, LBS, 0), LBS);       /* over the data */
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	close(fd);
	ck_assert_int_eq(zsize(3), 2 * LBS);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, 2 * LBS);
	assert_data(ZSTART(3), 2 * LBS);
	fresh = zd_dev_open_zone(dev, 3, O_RDONLY, NULL);
	ck_assert_int_ge(fresh, 0);
	ck_assert_int_eq(pread(fresh, b, LBS, LBS), LBS);
	for (unsigned k = 0; k < LBS; k++)
		ck_assert_uint_eq(b[k], pat(ZSTART(3) + LBS + k));
	close(fresh);
	/* Nobody holds it any more: the fence is free, the inode stays. */
	ino = zino(3);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 3, 1), 0);
	ck_assert(zino(3) == ino);
	/* A reader counts as a holder (it could read the next lessee's
	 * data), and so does an mapping whose fd was closed. */
	fd = zd_dev_open_zone(dev, 3, O_RDONLY, NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 3, 1), 0);
	ck_assert(zino(3) != ino);
	close(fd);
	ino = zino(3);
	fd = zd_dev_open_zone(dev, 3, O_RDWR, NULL);
	{
		void *m = mmap(NULL, LBS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

		ck_assert(m != MAP_FAILED);
		close(fd);
		ck_assert_int_eq(dev->ops->lease_fence(dev, 3, 1), 0);
		ck_assert(zino(3) != ino);
		memset(m, 0xee, LBS);
		ck_assert_int_eq(msync(m, LBS, MS_SYNC), 0);
		munmap(m, LBS);
	}
	assert_data(ZSTART(3), 2 * LBS);
	/* A second name (a hard link) could be reopened later. */
	{
		char ln[PATH_MAX + 16];

		snprintf(ln, sizeof(ln), "%s/link", dir);
		ck_assert_int_eq(link(zpath(3), ln), 0);
		ino = zino(3);
		ck_assert_int_eq(dev->ops->lease_fence(dev, 3, 1), 0);
		ck_assert(zino(3) != ino);
		unlink(ln);
	}
	/* An empty zone's file is unlinked: the holder writes into nothing,
	 * the next fd gets a new inode. */
	fd = zd_dev_open_zone(dev, 6, O_RDWR, NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(zsize(6), 0);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 6, 1), 0);
	ck_assert_int_eq(zsize(6), -1);
	ck_assert_int_eq(pwrite(fd, junk, LBS, 0), LBS);
	close(fd);
	ck_assert_int_eq(refresh(6, NO_HINT), 0);
	ASSERT_ZONE(6, ZP_COND_EMPTY, 0);
	/* A range, zones without files, and idempotence. */
	ck_assert_int_eq(dev->ops->lease_fence(dev, 2, 10), 0);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 2, 10), 0);
	assert_data(ZSTART(3), 2 * LBS);
	ck_assert_int_eq(dev->ops->lease_fence(dev, NZ, 1), -ERANGE);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 2, 0), -ERANGE);
}
END_TEST

/* lease.reset keeps the lease: the holder's fd still reaches its zone
 * after a reset. A release with reset, then the fence, cuts it off. */
START_TEST(fence_after_reset)
{
	uint8_t b[LBS];
	int fd;

	open_small();
	ck_assert_int_eq(wr(ZSTART(3), 2 * LBS), 0);
	fd = zd_dev_open_zone(dev, 3, O_RDWR, NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), 0);
	ck_assert_int_eq(zsize(3), 0);
	for (unsigned k = 0; k < LBS; k++)
		b[k] = pat(ZSTART(3) + k);
	ck_assert_int_eq(pwrite(fd, b, LBS, 0), LBS);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_IMP_OPEN, LBS);
	assert_data(ZSTART(3), LBS);
	/* Released with reset: the fence finds the zone empty and unlinks. */
	ck_assert_int_eq(op(ZD_OP_RESET, 3, 1), 0);
	ck_assert_int_eq(dev->ops->lease_fence(dev, 3, 1), 0);
	ck_assert_int_eq(pwrite(fd, b, LBS, 0), LBS);
	close(fd);
	ck_assert_int_eq(refresh(3, NO_HINT), 0);
	ASSERT_ZONE(3, ZP_COND_EMPTY, 0);
	assert_zeros(ZSTART(3), ZS);
}
END_TEST

/* Sets or clears the header's "in use" bit, as a crash would leave it. */
static void set_in_use(bool on)
{
	uint8_t h[512];
	uint32_t c;

	meta_read(0, h, sizeof(h));
	h[80] = on;
	c = ref_crc32c(h, 508);
	for (int i = 0; i < 4; i++)
		h[508 + i] = (uint8_t)(c >> (8 * i));
	meta_write(0, h, sizeof(h));
}

/* At start-up after a crash, fds a previous daemon's clients still hold
 * are fenced, except on the orphaned leases' zones; after a clean close
 * nothing is touched. */
START_TEST(sweep_after_crash)
{
	struct zd_range keep = { 4, 1 };
	ino_t i3, i4;
	int fd3, fd4;

	open_small();
	ck_assert_int_eq(wr(ZSTART(3), 2 * LBS), 0);
	ck_assert_int_eq(wr(ZSTART(4), 2 * LBS), 0);
	fd3 = zd_dev_open_zone(dev, 3, O_RDWR, NULL);
	fd4 = zd_dev_open_zone(dev, 4, O_RDWR, NULL);
	ck_assert_int_ge(fd3, 0);
	ck_assert_int_ge(fd4, 0);
	i3 = zino(3);
	i4 = zino(4);
	ck_assert_int_eq(reopen(), 0);
	ck_assert_int_eq(dev->ops->lease_sweep(dev, &keep, 1), 0);
	ck_assert(zino(3) == i3);
	zd_dev_close(dev);
	dev = NULL;
	set_in_use(true);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_int_eq(dev->ops->lease_sweep(dev, &keep, 1), 0);
	ck_assert(zino(3) != i3);
	ck_assert(zino(4) == i4);
	assert_data(ZSTART(3), 2 * LBS);
	close(fd3);
	close(fd4);
}
END_TEST

/* ================= scale ================= */

/* A million zones start after a clean close without opening, creating
 * or removing a single zone file (inotify sees every open in the
 * directory; a stat opens nothing, and the code does none: see
 * load_zones()). */
START_TEST(scale_million_zones_clean_start)
{
	const uint32_t nz = 1000000;
	struct zd_emul_params p = {
		.size = (uint64_t)nz * LBS, .zone_size = LBS, .zone_capacity = LBS,
		.nr_conventional = 1, .logical_block_size = LBS,
	};
	char evbuf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	unsigned opens_meta = 0;
	uint8_t b[LBS];
	ssize_t n;
	int in;

	memset(b, 0x5a, sizeof(b));
	ck_assert_int_eq(zd_emul_open(devpath, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_int_eq(dev->ops->pwrite(dev, b, LBS, 5 * (uint64_t)LBS), 0);
	ck_assert_int_eq(dev->ops->pwrite(dev, b, LBS, (uint64_t)(nz - 1) * LBS), 0);
	zd_dev_close(dev);
	dev = NULL;
	in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ck_assert_int_ge(in, 0);
	ck_assert_int_ge(inotify_add_watch(in, devpath, IN_OPEN | IN_CREATE | IN_DELETE |
					   IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB), 0);
	ck_assert_int_eq(zd_emul_open(devpath, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_uint_eq(zone(nz - 1).cond, ZP_COND_FULL);
	zd_dev_close(dev);
	dev = NULL;
	while ((n = read(in, evbuf, sizeof(evbuf))) > 0) {
		for (char *q = evbuf; q < evbuf + n;) {
			const struct inotify_event *ev = (const void *)q;

			if (ev->len && strcmp(ev->name, "meta"))
				ck_abort_msg("the clean start touched %s (mask %#x)", ev->name,
					     ev->mask);
			opens_meta += ev->len && (ev->mask & IN_OPEN);
			q += sizeof(*ev) + ev->len;
		}
	}
	close(in);
	ck_assert_uint_eq(opens_meta, 1);
}
END_TEST

/* ================= 0.1 image conversion ================= */

#ifndef EMUL_V1_DATA
#define EMUL_V1_DATA "tests/data/emul-v1"
#endif

/* Extracts a 0.1 fixture as dir/NAME/dev.img (+ .meta); returns the
 * image's path. */
static const char *extract_v1(const char *tarball, const char *name)
{
	static char img[4][PATH_MAX + 16];
	static unsigned k;
	char cmd[3 * PATH_MAX], sub[PATH_MAX];
	char *out = img[k++ % 4];

	snprintf(sub, sizeof(sub), "%s/%s", dir, name);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(cmd, sizeof(cmd), "tar -xzf '%s/%s' -C '%s'", EMUL_V1_DATA, tarball, sub);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, PATH_MAX + 16, "%s/dev.img", sub);
	return out;
}

/* The zones of the fixture as 0.1 served them after opening (open zones
 * closed), and how much of each the 0.1 image's data counts. */
static void v1_expect(const char *img, struct zd_zone **zz, uint32_t *nr)
{
	ck_assert_int_eq(zd_emul_peek(img, zz, nr), 0);
	for (uint32_t z = 0; z < *nr; z++) {
		struct zd_zone *x = &(*zz)[z];

		if (x->cond == ZP_COND_IMP_OPEN || x->cond == ZP_COND_EXP_OPEN)
			x->cond = x->wp > x->start ? ZP_COND_CLOSED : ZP_COND_EMPTY;
	}
}

/* The converted device at path (open in dev) equals the 0.1 zones exp
 * and holds, below each wp, exactly the data of the 0.1 image copy ref. */
static void check_converted(const char *ref, const struct zd_zone *exp, uint32_t nr)
{
	int fd = open(ref, O_RDONLY);
	struct zd_dev_info info;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dev->ops->info(dev, &info), 0);
	ck_assert_uint_eq(info.nr_zones, nr);
	for (uint32_t z = 0; z < nr; z++) {
		struct zd_zone now = zone(z);
		uint64_t len = exp[z].len, valid;
		uint8_t *a, *b;

		ck_assert_msg(now.cond == exp[z].cond && now.wp == exp[z].wp,
			      "zone %u: cond %u wp %#llx, 0.1 had cond %u wp %#llx", z, now.cond,
			      (unsigned long long)now.wp, exp[z].cond, (unsigned long long)exp[z].wp);
		ck_assert_uint_eq(now.capacity, exp[z].capacity);
		if (now.cond == ZP_COND_OFFLINE)
			continue;
		a = malloc(len);
		b = malloc(len);
		ck_assert_int_eq(dev->ops->pread(dev, a, len, now.start), 0);
		ck_assert_int_eq(pread(fd, b, len, (off_t)now.start), (ssize_t)len);
		/* What 0.1 served: data below the wp (capacity when full). */
		valid = now.type == ZP_TYPE_CONV ? len :
			now.cond == ZP_COND_FULL ? now.capacity :
			now.cond == ZP_COND_READONLY ? 0 : now.wp - now.start;
		if (now.cond == ZP_COND_READONLY)
			valid = 4 * LBS; /* the fixture's read-only zone 7 had 4 blocks */
		memset(b + valid, 0, len - valid);
		ck_assert_msg(memcmp(a, b, len) == 0, "zone %u: data differs", z);
		free(a);
		free(b);
	}
	close(fd);
}

START_TEST(convert_v1_image)
{
	const char *img = extract_v1("emul-v1.tar.gz", "a");
	const char *ref = extract_v1("emul-v1.tar.gz", "ref");
	char old[PATH_MAX + 16];
	struct zd_zone *exp, *peek;
	struct stat st;
	uint32_t nr, pnr;

	v1_expect(ref, &exp, &nr);
	ck_assert_uint_eq(nr, 16);
	/* The fixture's zones, as documented in its README. */
	ck_assert_uint_eq(exp[3].cond, ZP_COND_FULL);
	ck_assert_uint_eq(exp[4].cond, ZP_COND_FULL);
	ck_assert_uint_eq(exp[6].cond, ZP_COND_OFFLINE);
	ck_assert_uint_eq(exp[7].cond, ZP_COND_READONLY);
	ck_assert_uint_eq(exp[11].cond, ZP_COND_CLOSED);
	ck_assert_int_eq(zd_emul_open(img, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	check_converted(ref, exp, nr);
	/* In place: a directory under the same name, the 0.1 files gone,
	 * only zones with data have files, sized by their wp. */
	ck_assert_int_eq(lstat(img, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	snprintf(old, sizeof(old), "%s.meta", img);
	ck_assert_int_eq(access(old, F_OK), -1);
	snprintf(old, sizeof(old), "%s.old", img);
	ck_assert_int_eq(access(old, F_OK), -1);
	snprintf(old, sizeof(old), "%s.convert", img);
	ck_assert_int_eq(access(old, F_OK), -1);
	snprintf(old, sizeof(old), "%s/seq-000005", img);
	ck_assert_int_eq(stat(old, &st), 0);
	ck_assert_int_eq(st.st_size, 2 * 4096);
	snprintf(old, sizeof(old), "%s/seq-000010", img);
	ck_assert_int_eq(access(old, F_OK), -1);
	snprintf(old, sizeof(old), "%s/seq-000006", img);
	ck_assert_int_eq(access(old, F_OK), -1);
	/* The converted device works and persists. */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, 3, 1), 0);
	zd_dev_close(dev);
	dev = NULL;
	ck_assert_int_eq(zd_emul_peek(img, &peek, &pnr), 0);
	ck_assert_uint_eq(pnr, nr);
	ck_assert_uint_eq(peek[3].cond, ZP_COND_EMPTY);
	ck_assert_uint_eq(peek[5].wp, exp[5].wp);
	free(peek);
	ck_assert_int_eq(zd_emul_open(img, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	exp[3].cond = ZP_COND_EMPTY;
	exp[3].wp = exp[3].start;
	zd_dev_close(dev);
	dev = NULL;
	free(exp);
}
END_TEST

/* An image 0.1 did not close cleanly: the conversion applies 0.1's repair
 * (zone 5's data past its recorded wp, written by a client, counts). */
START_TEST(convert_v1_unclean)
{
	const char *img = extract_v1("emul-v1-unclean.tar.gz", "a");
	const char *ref = extract_v1("emul-v1-unclean.tar.gz", "ref");
	struct zd_zone *exp;
	uint32_t nr;

	v1_expect(ref, &exp, &nr);
	ck_assert_uint_eq(exp[5].wp - exp[5].start, 2 * 4096);
	exp[5].wp += 2 * 4096; /* what 0.1's repair makes of it */
	ck_assert_int_eq(zd_emul_open(img, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
	check_converted(ref, exp, nr);
	free(exp);
}
END_TEST

/* A crash at every step of the conversion: the next start gives the same
 * device as an uninterrupted one. */
START_TEST(convert_crash_every_step)
{
	static const char *const steps[] = {
		"convert-build", "convert-aside", "convert-rename", "convert-cleanup",
	};
	char ref[PATH_MAX + 16];
	struct zd_zone *exp;
	unsigned crashes = 0, run = 0;
	uint32_t nr;

	snprintf(ref, sizeof(ref), "%s", extract_v1("emul-v1.tar.gz", "ref"));
	v1_expect(ref, &exp, &nr);
	for (unsigned st = 0; st < sizeof(steps) / sizeof(steps[0]); st++) {
		for (unsigned n = 1;; n++) {
			char name[32], spec[64];
			const char *img;
			pid_t pid;
			int status;

			snprintf(name, sizeof(name), "c%u", run++);
			img = extract_v1("emul-v1.tar.gz", name);
			snprintf(spec, sizeof(spec), "crash:%s:%u", steps[st], n);
			pid = fork();
			ck_assert_int_ge(pid, 0);
			if (pid == 0) {
				int r;

				setenv("ZONED_EMUL_FAULT", spec, 1);
				free(exp); /* the child's copy: nothing leaks when it gets through */
				r = zd_emul_open(img, NULL, false, ZD_ISOLATION_AUTO, &dev);
				_exit(r ? 1 : 0);
			}
			ck_assert_int_eq(waitpid(pid, &status, 0), pid);
			if (!WIFSIGNALED(status)) {
				ck_assert_int_eq(WEXITSTATUS(status), 0);
				break; /* no Nth such step */
			}
			ck_assert_int_eq(WTERMSIG(status), SIGKILL);
			crashes++;
			ck_assert_int_eq(zd_emul_open(img, NULL, false, ZD_ISOLATION_AUTO, &dev), 0);
			check_converted(ref, exp, nr);
			zd_dev_close(dev);
			dev = NULL;
			{
				char left[PATH_MAX + 16];

				snprintf(left, sizeof(left), "%s.convert", img);
				ck_assert_int_eq(access(left, F_OK), -1);
				snprintf(left, sizeof(left), "%s.old", img);
				ck_assert_int_eq(access(left, F_OK), -1);
				snprintf(left, sizeof(left), "%s.meta", img);
				ck_assert_int_eq(access(left, F_OK), -1);
			}
		}
	}
	/* Every zone file and the metadata, then the three renames. */
	ck_assert_uint_ge(crashes, 8);
	free(exp);
}
END_TEST

/* ================= suites ================= */

static TCase *tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60); /* generous enough for valgrind */
	return tc;
}

static Suite *suite(const char *name, TCase *tc)
{
	Suite *s = suite_create(name);

	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	SRunner *sr;
	TCase *tc;
	int failed;

	/* Each test works in a directory of its own under base; a test that
	 * fails in a forked child skips its teardown, so main() removes base. */
	snprintf(base, sizeof(base), "%s/test-emul.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}

	tc = tcase("size");
	tcase_add_test(tc, size_good);
	tcase_add_test(tc, size_bad);
	sr = srunner_create(suite("parse-size", tc));

	tc = tcase("spec");
	tcase_add_test(tc, spec_defaults);
	tcase_add_test(tc, spec_good);
	tcase_add_test(tc, spec_bad);
	srunner_add_suite(sr, suite("spec", tc));

	tc = tcase("open");
	tcase_add_test(tc, open_create_info);
	tcase_add_test(tc, open_report);
	tcase_add_test(tc, open_errors);
	tcase_add_test(tc, open_existing_geometry_wins);
	tcase_add_test(tc, open_refuses_foreign_file);
	tcase_add_test(tc, open_fd_flags);
	tcase_add_test(tc, open_lbs512);
	srunner_add_suite(sr, suite("open", tc));

	tc = tcase("io");
	tcase_add_test(tc, write_at_wp);
	tcase_add_test(tc, write_errors);
	tcase_add_test(tc, write_to_full);
	tcase_add_test(tc, write_conventional);
	tcase_add_test(tc, write_closed_and_exp_open);
	tcase_add_test(tc, write_implicit_eviction_lru);
	tcase_add_test(tc, write_max_active);
	tcase_add_test(tc, write_all_explicit_busy);
	tcase_add_test(tc, write_no_limits);
	tcase_add_test(tc, read_rules);
	srunner_add_suite(sr, suite("io", tc));

	tc = tcase("zone-op");
	tcase_add_test(tc, op_open);
	tcase_add_test(tc, op_open_limits);
	tcase_add_test(tc, op_open_range_partial);
	tcase_add_test(tc, op_close);
	tcase_add_test(tc, op_close_writes_no_record);
	tcase_add_test(tc, op_finish);
	tcase_add_test(tc, op_finish_discards_stale_tail);
	tcase_add_test(tc, op_finish_max_active);
	tcase_add_test(tc, op_reset);
	tcase_add_test(tc, op_reset_range);
	tcase_add_test(tc, op_errors);
	srunner_add_suite(sr, suite("zone-op", tc));

	tc = tcase("cond");
	tcase_add_test(tc, cond_readonly);
	tcase_add_test(tc, cond_offline);
	tcase_add_test(tc, cond_errors_and_resources);
	srunner_add_suite(sr, suite("cond", tc));

	tc = tcase("refresh");
	tcase_add_test(tc, refresh_hint);
	tcase_add_test(tc, refresh_hint_errors);
	tcase_add_test(tc, refresh_limits);
	tcase_add_test(tc, refresh_infer);
	tcase_add_test(tc, refresh_reset_forgets);
	srunner_add_suite(sr, suite("refresh", tc));

	tc = tcase("persist");
	tcase_add_test(tc, persist_state);
	tcase_add_test(tc, persist_many_updates);
	tcase_add_test(tc, persist_format);
	tcase_add_test(tc, persist_torn_newest);
	tcase_add_test(tc, persist_torn_older);
	tcase_add_test(tc, persist_torn_first_update);
	tcase_add_test(tc, persist_misplaced_record);
	tcase_add_test(tc, persist_same_seq);
	tcase_add_test(tc, persist_many_zones);
	tcase_add_test(tc, persist_both_corrupt);
	tcase_add_test(tc, persist_header_corrupt);
	tcase_add_test(tc, persist_truncated);
	tcase_add_test(tc, persist_zone_file_cut);
	srunner_add_suite(sr, suite("persist", tc));

	tc = tcase("isolation");
	tcase_add_test(tc, iso_fd_reaches_only_its_zone);
	tcase_add_test(tc, fence_kept_fd_vanishes);
	tcase_add_test(tc, fence_after_reset);
	tcase_add_test(tc, sweep_after_crash);
	srunner_add_suite(sr, suite("isolation", tc));

	tc = tcase("scale");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, scale_million_zones_clean_start);
	srunner_add_suite(sr, suite("scale", tc));

	tc = tcase("convert");
	tcase_add_test(tc, convert_v1_image);
	tcase_add_test(tc, convert_v1_unclean);
	tcase_add_test(tc, convert_crash_every_step);
	srunner_add_suite(sr, suite("convert", tc));

	tc = tcase("crash");
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, crash_every_step, 0,
			    (int)(sizeof(scenarios) / sizeof(scenarios[0])));
	tcase_add_test(tc, crash_reset_tells_truth);
	tcase_add_test(tc, crash_header_state);
	tcase_add_test(tc, fault_spec);
	srunner_add_suite(sr, suite("crash", tc));

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(base, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
