/* Kernel backend: a real zoned block device (SMR HDD, ZNS namespace, null_blk)
 * driven through the <linux/blkzoned.h> ioctls. Sectors exist only here. */
#include <config.h> /* the build's, not daemon/conf.h */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/blkzoned.h>
#include <linux/fs.h>

#include "daemon/blkdev.h"
#include "daemon/dm.h"
#include "daemon/log.h"
#include "daemon/zdev.h"

#define SECTOR_SHIFT 9
/* Zones per BLKREPORTZONE call: 1024 descriptors are 64 KiB, one allocation. */
#define REPORT_BATCH 1024
/* Bounce buffer for O_DIRECT I/O, reused across calls. */
#define BOUNCE_SIZE (1024 * 1024)
#define BOUNCE_ALIGN 4096

struct kdev {
	struct zd_dev base;
	/* The disk; ioctls go through it. Device isolation: the O_EXCL claim.
	 * Zone isolation: a plain open, as the claim is claim_fd's. */
	int fd;
	int dio_fd;    /* O_DIRECT, for the backend's own reads and writes */
	/* Zone isolation only (else -1): the device-mapper control fd, and
	 * the O_EXCL claim on the whole-device mapping `whole`. */
	int ctl;
	int claim_fd;
	/* At open: the claim a previous daemon left (systemd's fd store). */
	int adopt_fd;
	char whole[DM_NAME_LEN];  /* "zoned-<kernel name>" */
	char path[PATH_MAX];
	dev_t rdev;
	uint64_t zone_sectors;
	uint64_t dev_sectors;
	uint32_t nr_zones;
	struct zd_dev_info info;
	struct blk_zone_report *rep; /* REPORT_BATCH descriptors */
	void *bounce;
	/* Works on different zones run at once (ops.concurrent): rep and
	 * bounce are shared, the rest is read-only after open or per call. */
	pthread_mutex_t lock;
};

static inline struct kdev *to_kdev(struct zd_dev *dev)
{
	return (struct kdev *)(void *)dev;
}

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_close_ __attribute__((cleanup(closep)))


/* Zones */

static int map_type(uint8_t t)
{
	switch (t) {
	case BLK_ZONE_TYPE_CONVENTIONAL: return ZP_TYPE_CONV;
	case BLK_ZONE_TYPE_SEQWRITE_REQ: return ZP_TYPE_SWR;
	case BLK_ZONE_TYPE_SEQWRITE_PREF: return ZP_TYPE_SWP;
	default: return -EIO;
	}
}

static int map_cond(uint8_t c)
{
	switch (c) {
	case BLK_ZONE_COND_NOT_WP: return ZP_COND_NOT_WP;
	case BLK_ZONE_COND_EMPTY: return ZP_COND_EMPTY;
	case BLK_ZONE_COND_IMP_OPEN: return ZP_COND_IMP_OPEN;
	case BLK_ZONE_COND_EXP_OPEN: return ZP_COND_EXP_OPEN;
	case BLK_ZONE_COND_CLOSED: return ZP_COND_CLOSED;
	case BLK_ZONE_COND_READONLY: return ZP_COND_READONLY;
	case BLK_ZONE_COND_FULL: return ZP_COND_FULL;
	case BLK_ZONE_COND_OFFLINE: return ZP_COND_OFFLINE;
	default: return -EIO;
	}
}

static int convert_zone(const struct blk_zone *bz, bool has_cap, struct zd_zone *z)
{
	int type = map_type(bz->type), cond = map_cond(bz->cond);

	if (type < 0 || cond < 0)
		return -EIO;
	z->start = bz->start << SECTOR_SHIFT;
	z->len = bz->len << SECTOR_SHIFT;
	z->capacity = (has_cap ? bz->capacity : bz->len) << SECTOR_SHIFT;
	/* As the emulator reports them: a conventional zone has no write
	 * pointer (drivers put anything there), so its end; a read-only or
	 * offline zone's is invalid, UINT64_MAX. Otherwise what the device
	 * says, including start + len for a full zone. */
	if (cond == ZP_COND_READONLY || cond == ZP_COND_OFFLINE)
		z->wp = UINT64_MAX;
	else if (type == ZP_TYPE_CONV || bz->wp < bz->start || bz->wp - bz->start > bz->len)
		z->wp = z->start + z->len;
	else
		z->wp = bz->wp << SECTOR_SHIFT;
	z->type = (uint8_t)type;
	z->cond = (uint8_t)cond;
	return 0;
}

/* Whether the disk went away (hot-unplugged, powered off): its dev_t is
 * gone from sysfs. Some drivers (null_blk) answer EIO to a disk that is
 * gone; said as ENODEV instead, the daemon marks the device failed at once
 * rather than after a streak of I/O errors, which an operation that does
 * not touch the disk (a fence: device-mapper only) would break. */
static bool disk_gone(const struct kdev *k)
{
	char sys[64];

	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(k->rdev), minor(k->rdev));
	return access(sys, F_OK) < 0 && errno == ENOENT;
}

/* Reports up to *nr zones from index `from` into zones, batched; *nr is
 * set to the number filled. The core of info gathering, report and refresh. */
static int report_into(struct kdev *k, struct blk_zone_report *rep, uint32_t cap,
		       uint32_t from, struct zd_zone *zones, uint32_t want, uint32_t *nr)
{
	uint32_t done = 0;

	while (done < want) {
		uint32_t batch = want - done < cap ? want - done : cap;
		bool has_cap;

		memset(rep, 0, sizeof(*rep));
		rep->sector = (uint64_t)(from + done) * k->zone_sectors;
		rep->nr_zones = batch;
		if (ioctl(k->fd, BLKREPORTZONE, rep) < 0)
			return errno == EIO && disk_gone(k) ? -ENODEV : -errno;
		if (rep->nr_zones == 0)
			break; /* the end of the device */
		/* BLK_ZONE_REP_CAPACITY (5.9+) is an enum constant, not a macro:
		 * the header is required to have it. */
		has_cap = rep->flags & BLK_ZONE_REP_CAPACITY;
		for (uint32_t i = 0; i < rep->nr_zones && done < want; i++, done++) {
			int r = convert_zone(&rep->zones[i], has_cap, &zones[done]);

			if (r < 0)
				return r;
		}
	}
	*nr = done;
	return 0;
}

/* A report of a few zones (a lease's refresh) takes a buffer on the stack,
 * so works on other zones need not wait for the shared one. */
#define REPORT_SMALL 8

static int report_zones(struct kdev *k, uint32_t from, struct zd_zone *zones, uint32_t *nr)
{
	_Alignas(struct blk_zone_report) unsigned char
		small[sizeof(struct blk_zone_report) + REPORT_SMALL * sizeof(struct blk_zone)];
	uint32_t want = *nr;
	int r;

	*nr = 0;
	if (from > k->nr_zones)
		return -ERANGE;
	if (want > k->nr_zones - from)
		want = k->nr_zones - from;
	if (want <= REPORT_SMALL)
		return report_into(k, (struct blk_zone_report *)(void *)small, REPORT_SMALL, from,
				   zones, want, nr);
	pthread_mutex_lock(&k->lock);
	r = report_into(k, k->rep, REPORT_BATCH, from, zones, want, nr);
	pthread_mutex_unlock(&k->lock);
	return r;
}

static int k_report(struct zd_dev *dev, uint32_t from, struct zd_zone *zones, uint32_t *nr)
{
	struct kdev *k = to_kdev(dev);

	if (!zones || !nr)
		return -EINVAL;
	if (from >= k->nr_zones) {
		*nr = 0;
		return from == k->nr_zones ? 0 : -ERANGE;
	}
	return report_zones(k, from, zones, nr);
}

static int k_refresh_zone(struct zd_dev *dev, uint32_t zone, uint64_t hint_wp,
			  struct zd_zone *out)
{
	struct kdev *k = to_kdev(dev);
	uint32_t nr = 1;
	int r;

	(void)hint_wp; /* the device knows better */
	if (zone >= k->nr_zones)
		return -ERANGE;
	r = report_zones(k, zone, out, &nr);
	if (r < 0)
		return r;
	return nr == 1 ? 0 : -EIO;
}

/* An fdatasync of a block device flushes its write cache (a PREFLUSH
 * request; free on a device without a volatile cache): what any path to
 * the disk wrote with O_DIRECT, a lease's mapping included, is durable. */
static int k_flush(struct zd_dev *dev)
{
	return fdatasync(to_kdev(dev)->fd) < 0 ? -errno : 0;
}

static int k_info(struct zd_dev *dev, struct zd_dev_info *info)
{
	*info = to_kdev(dev)->info;
	return 0;
}

/* The ioctls' errors, in zdev.h's terms. */
static int map_zone_op_errno(int e)
{
	switch (e) {
	case EINVAL:
	case EOPNOTSUPP:
		return -EPERM;   /* the device refused the op for this zone */
	case ETOOMANYREFS:       /* BLK_STS_ZONE_OPEN_RESOURCE */
	case EOVERFLOW:          /* BLK_STS_ZONE_ACTIVE_RESOURCE */
		return -EBUSY;
	default:
		return -e;
	}
}

/* What an op does to a zone in a given condition. Devices disagree on the
 * transitions that change nothing (null_blk fails a close of an empty zone,
 * ZBC and ZNS accept it), so those are answered here without a command:
 * the caller sees the same result on every device and the emulator (whose
 * model, in emul.c, this follows). */
enum action { ACT_SKIP, ACT_DO, ACT_REFUSE, ACT_FAIL };

static enum action zone_action(enum zd_zone_op op, const struct zd_zone *z)
{
	if (z->type == ZP_TYPE_CONV || z->cond == ZP_COND_READONLY || z->cond == ZP_COND_OFFLINE)
		return ACT_REFUSE;  /* -EPERM */
	switch (op) {
	case ZD_OP_OPEN:
		/* An invalid transition every device fails (-EIO); answered
		 * here so that it leaves no I/O error in the kernel log. */
		if (z->cond == ZP_COND_FULL)
			return ACT_FAIL;
		return z->cond == ZP_COND_EXP_OPEN ? ACT_SKIP : ACT_DO;
	case ZD_OP_CLOSE:
		return z->cond == ZP_COND_IMP_OPEN || z->cond == ZP_COND_EXP_OPEN ? ACT_DO : ACT_SKIP;
	case ZD_OP_FINISH:
		return z->cond == ZP_COND_FULL ? ACT_SKIP : ACT_DO;
	case ZD_OP_RESET:
		return z->cond == ZP_COND_EMPTY ? ACT_SKIP : ACT_DO;
	}
	return ACT_REFUSE;
}

static int issue_zone_op(struct kdev *k, enum zd_zone_op op, uint32_t first, uint32_t count)
{
	static const unsigned long req[] = {
		[ZD_OP_OPEN] = BLKOPENZONE,
		[ZD_OP_CLOSE] = BLKCLOSEZONE,
		[ZD_OP_FINISH] = BLKFINISHZONE,
		[ZD_OP_RESET] = BLKRESETZONE,
	};
	uint64_t end = (uint64_t)(first + count) * k->zone_sectors;
	uint64_t dev_sectors = k->info.size >> SECTOR_SHIFT;
	struct blk_zone_range range = {
		.sector = (uint64_t)first * k->zone_sectors,
		/* a smaller last zone ends at the end of the device */
		.nr_sectors = (end > dev_sectors ? dev_sectors : end) - (uint64_t)first * k->zone_sectors,
	};

	if (ioctl(k->fd, req[op], &range) < 0)
		return map_zone_op_errno(errno);
	return 0;
}

static int k_zone_op(struct zd_dev *dev, enum zd_zone_op op, uint32_t zone, uint32_t count)
{
	struct kdev *k = to_kdev(dev);
	struct zd_zone zones[64];

	if ((unsigned)op > ZD_OP_RESET || count == 0)
		return -EINVAL;
	if (zone >= k->nr_zones || count > k->nr_zones - zone)
		return -ERANGE;

	/* Check the whole range before touching any of it, then issue one
	 * command per run of zones that need it. */
	for (uint32_t at = zone; at < zone + count;) {
		uint32_t nr = zone + count - at < 64 ? zone + count - at : 64;
		int r = report_zones(k, at, zones, &nr);

		if (r < 0)
			return r;
		if (nr == 0)
			return -EIO;
		for (uint32_t i = 0; i < nr; i++) {
			enum action a = zone_action(op, &zones[i]);

			if (a == ACT_REFUSE)
				return -EPERM;
			if (a == ACT_FAIL)
				return -EIO;
		}
		at += nr;
	}
	for (uint32_t at = zone; at < zone + count;) {
		uint32_t nr = zone + count - at < 64 ? zone + count - at : 64, run = 0;
		int r = report_zones(k, at, zones, &nr);

		if (r < 0)
			return r;
		if (nr == 0)
			return -EIO;
		for (uint32_t i = 0; i <= nr; i++) {
			if (i < nr && zone_action(op, &zones[i]) == ACT_DO) {
				run++;
				continue;
			}
			if (run) {
				r = issue_zone_op(k, op, at + i - run, run);
				if (r < 0)
					return r;
				run = 0;
			}
		}
		at += nr;
	}
	return 0;
}

/* A write that would open a zone beyond the device's limits fails with the
 * same resource errors as an explicit open. */
static int map_io_errno(int e)
{
	return e == ETOOMANYREFS || e == EOVERFLOW ? -EBUSY : -e;
}

/* Data I/O goes through an O_DIRECT descriptor and an aligned bounce
 * buffer: writes to sequential zones then reach the device in order, one
 * request per chunk, with no page cache or writeback reordering (which
 * kernels before zone write plugging, 6.10, do not protect against). */
static int check_io(struct kdev *k, uint64_t len, uint64_t off)
{
	uint64_t lbs = k->info.logical_block_size;

	if (off > k->info.size || len > k->info.size - off)
		return -ERANGE;
	if (off % lbs || len % lbs)
		return -EINVAL;
	return 0;
}

/* The zone rules, checked against the device's own state before writing,
 * with the emulator's answers: a write never spans zones (-EINVAL), read-only
 * and offline zones refuse (-EPERM), and a sequential write away from the wp,
 * into a full zone or past capacity fails as the device would fail it
 * (-EIO), without leaving an I/O error in the kernel log. The device still
 * enforces them all. */
static int check_write(struct kdev *k, uint64_t len, uint64_t off)
{
	uint64_t zsz = k->zone_sectors << SECTOR_SHIFT;
	uint32_t zi = (uint32_t)(off / zsz), nr = 1;
	struct zd_zone z;
	int r;

	if ((off + len - 1) / zsz != zi)
		return -EINVAL;
	r = report_zones(k, zi, &z, &nr);
	if (r < 0)
		return r;
	if (nr != 1)
		return -EIO;
	if (z.cond == ZP_COND_READONLY || z.cond == ZP_COND_OFFLINE)
		return -EPERM;
	if (z.type == ZP_TYPE_SWR &&
	    (z.cond == ZP_COND_FULL || off != z.wp || len > z.start + z.capacity - off))
		return -EIO;
	return 0;
}

static int pwrite_locked(struct kdev *k, const void *buf, uint64_t len, uint64_t off);
static int pread_locked(struct kdev *k, void *buf, uint64_t len, uint64_t off);

/* The backend's own I/O shares one bounce buffer. */
static int k_pwrite(struct zd_dev *dev, const void *buf, uint64_t len, uint64_t off)
{
	struct kdev *k = to_kdev(dev);
	int r;

	pthread_mutex_lock(&k->lock);
	r = pwrite_locked(k, buf, len, off);
	pthread_mutex_unlock(&k->lock);
	return r;
}

static int k_pread(struct zd_dev *dev, void *buf, uint64_t len, uint64_t off)
{
	struct kdev *k = to_kdev(dev);
	int r;

	pthread_mutex_lock(&k->lock);
	r = pread_locked(k, buf, len, off);
	pthread_mutex_unlock(&k->lock);
	return r;
}

static int pwrite_locked(struct kdev *k, const void *buf, uint64_t len, uint64_t off)
{
	const char *p = buf;
	int r = check_io(k, len, off);

	if (r < 0 || len == 0)
		return r;
	if (!buf)
		return -EINVAL;
	r = check_write(k, len, off);
	if (r < 0)
		return r;
	while (len) {
		size_t chunk = len < BOUNCE_SIZE ? (size_t)len : BOUNCE_SIZE;
		ssize_t n;

		memcpy(k->bounce, p, chunk);
		n = pwrite(k->dio_fd, k->bounce, chunk, (off_t)off);
		if (n < 0)
			return map_io_errno(errno);
		if (n == 0 || (size_t)n % k->info.logical_block_size)
			return -EIO; /* cannot resume a direct write mid-block */
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static int pread_locked(struct kdev *k, void *buf, uint64_t len, uint64_t off)
{
	char *p = buf;
	int r = check_io(k, len, off);

	if (r < 0)
		return r;
	while (len) {
		size_t chunk = len < BOUNCE_SIZE ? (size_t)len : BOUNCE_SIZE;
		ssize_t n = pread(k->dio_fd, k->bounce, chunk, (off_t)off);

		if (n < 0)
			return -errno;
		if (n == 0 || (size_t)n % k->info.logical_block_size)
			return -EIO;
		memcpy(p, k->bounce, (size_t)n);
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* The flags the emulator takes too: nothing that could create, truncate or
 * redirect, and no O_EXCL, which our own claim would make fail (the claim
 * keeps mounts and exclusive openers out; plain opens like this share it). */
static int check_open_flags(int flags)
{
	const int allowed = O_ACCMODE | O_DIRECT | O_SYNC | O_DSYNC | O_NONBLOCK | O_CLOEXEC;

	return flags & ~allowed ? -EINVAL : 0;
}

static int k_open_fd(struct zd_dev *dev, int flags)
{
	int fd, r = check_open_flags(flags);

	if (r < 0)
		return r;
	fd = open(to_kdev(dev)->path, flags | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Zone isolation with device-mapper.
 *
 * The daemon holds the disk through a whole-device linear mapping it owns,
 * zoned-<kname> (kname: the disk's kernel name, nullb0, nvme0n1, sdb), opened
 * O_EXCL: device-mapper's claim on the disk keeps mounts, md, other
 * exclusive openers and a second zonedd's O_EXCL open out, and our O_EXCL
 * open of the mapping keeps them off the mapping too. The daemon's own
 * ioctls and I/O use a plain (shared) open of the disk.
 *
 * A lease of zones [z, z + n) is the mapping zoned-<kname>-<z>, table
 * "0 <n * zone sectors> linear <disk maj:min> <z * zone sectors>": a
 * host-managed device of exactly n zones. It maps the disk, not the whole
 * mapping: device-mapper shares its claim on a disk among all its mappings,
 * whereas stacking on zoned-<kname> would need that mapping unclaimed by
 * us (an O_EXCL holder other than dm blocks dm's own claim) and would add a
 * second remapping to every I/O.
 *
 * A fenced mapping gets the error target, so that a descriptor a client
 * kept fails with EIO; it is renamed zoned-<kname>-<z>.fenced.<minor> so the
 * zone can be mapped again at once, and removed when its last holder closes
 * it (deferred removal).
 *
 * Across restarts: a crash leaves every mapping. The next start adopts
 * zoned-<kname> (its table checked), and lease_sweep() fences the lease
 * mappings no orphaned lease keeps, while open_zones() adopts a kept one
 * for the reclaim. A clean stop removes zoned-<kname>: the disk is free for
 * the administrator once zonedd is stopped (unless a lease mapping is left
 * for a lease reclaimed after a restart, which holds the disk by itself),
 * at the price of a window during a restart in which nothing holds an
 * unleased disk. */

#define FENCED ".fenced."

static int mapping_name(const struct kdev *k, uint32_t zone, char *out)
{
	int n = snprintf(out, DM_NAME_LEN, "%s-%" PRIu32, k->whole, zone);

	return n < 0 || n >= DM_NAME_LEN ? -ENAMETOOLONG : 0;
}

/* What the mapping of [zone, zone + count) must be. A smaller last zone
 * ends at the end of the disk. */
static void lease_target(const struct kdev *k, uint32_t zone, uint32_t count,
			 struct zd_dm_target *t)
{
	uint64_t start = (uint64_t)zone * k->zone_sectors;
	uint64_t end = (uint64_t)(zone + count) * k->zone_sectors;

	if (end > k->dev_sectors)
		end = k->dev_sectors;
	*t = (struct zd_dm_target){ .start = 0, .len = end - start, .type = "linear" };
	snprintf(t->params, sizeof(t->params), "%u:%u %" PRIu64, major(k->rdev),
		 minor(k->rdev), start);
}

/* Whether mapping `name` is live, not suspended, and has exactly table
 * *want (the kernel prints linear's device as maj:min, as we load it).
 * 1 yes, 0 no, or a negative errno (-ENXIO: no such mapping). */
static int mapping_is(struct kdev *k, const char *name, const struct zd_dm_target *want,
		      struct zd_dm_status *st)
{
	struct zd_dm_target t;
	size_t nr = 1;
	int r = zd_dm_status(k->ctl, name, st);

	if (r < 0)
		return r;
	if (!st->live_table || st->inactive_table || st->suspended)
		return 0;
	r = zd_dm_table(k->ctl, name, &t, &nr);
	if (r < 0)
		return r;
	return nr == 1 && t.start == want->start && t.len == want->len &&
	       strcmp(t.type, want->type) == 0 && strcmp(t.params, want->params) == 0;
}

/* Cuts a mapping off from the disk for good. Not open: removed. Open:
 * suspended with a flush (in-flight I/O completes), given the error target,
 * resumed (the kept descriptors now get EIO), renamed out of the way and
 * marked for removal at its last close. Every step is idempotent, so a
 * fence a crash interrupted is finished by the next one; a mapping that is
 * gone is success. */
static int fence_mapping(struct kdev *k, const char *name)
{
	char fenced[DM_NAME_LEN];
	struct zd_dm_status st;
	struct zd_dm_target t, err;
	size_t nr = 1;
	int r;

	r = zd_dm_status(k->ctl, name, &st);
	if (r < 0)
		return r == -ENXIO ? 0 : r;
	if (st.open_count == 0) {
		r = zd_dm_remove(k->ctl, name, false);
		if (r != -EBUSY) /* else someone opened it meanwhile: fence it */
			return r == -ENXIO ? 0 : r;
	}
	if (st.live_table) {
		r = zd_dm_table(k->ctl, name, &t, &nr);
		if (r < 0)
			return r == -ENXIO ? 0 : r;
		if (nr != 1 || strcmp(t.type, "error") != 0) {
			uint64_t len = 0;

			/* the table's length: one target is all we load, but a
			 * foreign table under our name is fenced whole */
			if (nr == 1) {
				len = t.start + t.len;
			} else {
				struct zd_dm_target *all = calloc(nr, sizeof(*all));
				size_t got = nr;

				if (!all)
					return -ENOMEM;
				r = zd_dm_table(k->ctl, name, all, &got);
				for (size_t i = 0; r == 0 && i < got && i < nr; i++)
					if (all[i].start + all[i].len > len)
						len = all[i].start + all[i].len;
				free(all);
				if (r < 0)
					return r == -ENXIO ? 0 : r;
			}
			err = (struct zd_dm_target){ .start = 0, .len = len, .type = "error" };
			r = zd_dm_suspend(k->ctl, name, true);
			if (r == 0)
				r = zd_dm_load(k->ctl, name, &err, 1);
			if (r == 0)
				r = zd_dm_resume(k->ctl, name);
			if (r < 0)
				return r == -ENXIO ? 0 : r;
		}
	}
	/* A table-less mapping (a crash between create and load) reaches
	 * nothing: it only needs to go. */
	if (strstr(name, FENCED)) {
		snprintf(fenced, sizeof(fenced), "%s", name);
	} else {
		if (snprintf(fenced, sizeof(fenced), "%s" FENCED "%u", name,
			     minor(st.dev)) >= (int)sizeof(fenced))
			return -ENAMETOOLONG;
		r = zd_dm_rename(k->ctl, name, fenced);
		if (r < 0)
			return r == -ENXIO ? 0 : r;
	}
	r = zd_dm_remove(k->ctl, fenced, true);
	return r == -ENXIO ? 0 : r;
}

/* The lease mapping of [zone, zone + count): adopted when one with exactly
 * that table exists (a reclaim after a restart), else created, after
 * fencing whatever else holds the name. *created says which. */
static int lease_mapping(struct kdev *k, uint32_t zone, uint32_t count, dev_t *dev,
			 bool *created)
{
	char name[DM_NAME_LEN];
	struct zd_dm_target t;
	struct zd_dm_status st;
	int r = mapping_name(k, zone, name);

	if (r < 0)
		return r;
	lease_target(k, zone, count, &t);
	*created = false;
	r = mapping_is(k, name, &t, &st);
	if (r == 1) {
		*dev = st.dev;
		return 0;
	}
	if (r == 0)
		r = fence_mapping(k, name);
	else if (r == -ENXIO)
		r = 0;
	if (r < 0)
		return r;
	r = zd_dm_create_live(k->ctl, name, &t, 1, dev);
	if (r == 0)
		*created = true;
	return r;
}

static int k_open_zones(struct zd_dev *dev, uint32_t zone, uint32_t count, int flags,
			bool isolate, struct zd_zone_fds *out)
{
	struct kdev *k = to_kdev(dev);
	char name[DM_NAME_LEN];
	bool created;
	dev_t mdev;
	int fd, r;

	if (count > ZD_ZONE_FDS_MAX || (count && (zone >= k->nr_zones ||
						   count > k->nr_zones - zone)))
		return -ERANGE;
	if (!isolate) {
		/* the block device itself, at the zone (count 0: the whole
		 * device, for the daemon's own use) */
		fd = k_open_fd(dev, flags);
		if (fd < 0)
			return fd;
		out->fd[0] = fd;
		out->nr = 1;
		out->fd_offset = count ? (uint64_t)zone * k->zone_sectors << SECTOR_SHIFT : 0;
		return 0;
	}
	if (k->ctl < 0)
		return -EOPNOTSUPP;
	if (count == 0)
		return -EINVAL;
	r = check_open_flags(flags);
	if (r < 0)
		return r;
	if (disk_gone(k))
		return -ENODEV;
	r = lease_mapping(k, zone, count, &mdev, &created);
	if (r < 0)
		return r;
	fd = zd_dm_open_node(mdev, flags);
	if (fd < 0) {
		if (created && mapping_name(k, zone, name) == 0)
			(void)zd_dm_remove(k->ctl, name, false);
		return fd;
	}
	out->fd[0] = fd;
	out->nr = 1;
	out->fd_offset = 0;
	return 0;
}

/* The mappings of ranges starting inside [zone, zone + count): by name, one
 * status call each when nothing is left to fence. */
static int k_lease_fence(struct zd_dev *dev, uint32_t zone, uint32_t count)
{
	struct kdev *k = to_kdev(dev);
	int ret = 0;

	if (k->ctl < 0)
		return -EOPNOTSUPP;
	if (count == 0 || zone >= k->nr_zones || count > k->nr_zones - zone)
		return -ERANGE;
	for (uint32_t z = zone; z < zone + count; z++) {
		char name[DM_NAME_LEN];
		int r = mapping_name(k, z, name);

		if (r == 0)
			r = fence_mapping(k, name);
		if (r < 0 && ret == 0)
			ret = r;
	}
	/* fenced all the same: nothing reaches a disk that is gone */
	return ret == 0 && disk_gone(k) ? -ENODEV : ret;
}

struct sweep {
	struct kdev *k;
	const struct zd_range *keep;
	size_t nr;
	int ret;
};

/* "zoned-<kname>-<zone>" or "zoned-<kname>-<zone>.fenced.<minor>": the zone
 * and whether it is fenced; -EINVAL for a name we did not make. */
static int parse_mapping_name(const struct kdev *k, const char *name, uint32_t *zone,
			      bool *fenced)
{
	const char *p = name + strlen(k->whole) + 1;
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || v >= k->nr_zones)
		return -EINVAL;
	*zone = (uint32_t)v;
	*fenced = *end != '\0';
	if (*fenced && strncmp(end, FENCED, strlen(FENCED)) != 0)
		return -EINVAL;
	return 0;
}

static int sweep_one(const char *name, dev_t dev, void *ud)
{
	struct sweep *s = ud;
	uint32_t zone;
	bool fenced;
	int r;

	(void)dev;
	if (parse_mapping_name(s->k, name, &zone, &fenced) < 0)
		return 0; /* not one of ours: left alone */
	for (size_t i = 0; !fenced && i < s->nr; i++) {
		struct zd_dm_target t;
		struct zd_dm_status st;

		if (s->keep[i].zone != zone || s->keep[i].count == 0 ||
		    s->keep[i].count > s->k->nr_zones - zone)
			continue;
		lease_target(s->k, zone, s->keep[i].count, &t);
		r = mapping_is(s->k, name, &t, &st);
		if (r == 1)
			return 0;
		if (r < 0 && r != -ENXIO && s->ret == 0)
			s->ret = r;
	}
	r = fence_mapping(s->k, name);
	if (r < 0 && s->ret == 0)
		s->ret = r;
	return 0; /* one failure does not stop the sweep */
}

static int k_lease_sweep(struct zd_dev *dev, const struct zd_range *keep, size_t nr)
{
	struct kdev *k = to_kdev(dev);
	struct sweep s = { .k = k, .keep = keep, .nr = nr };
	char prefix[DM_NAME_LEN + 1];
	int r;

	if (k->ctl < 0)
		return 0; /* device isolation leaves nothing to sweep */
	if (snprintf(prefix, sizeof(prefix), "%s-", k->whole) >= (int)sizeof(prefix))
		return -ENAMETOOLONG;
	r = zd_dm_list(k->ctl, prefix, sweep_one, &s);
	return r < 0 ? r : s.ret;
}

/* The claim of zone isolation: zoned-<kname> adopted (a crash left it) or
 * created, then opened O_EXCL. A mapping under that name with another
 * table is not ours to change. */
/* The kept claim, if it is a read-write open of dev that holds it
 * exclusively (taken: the claim never lapsed); else it is closed, and -1.
 * O_EXCL does not show in F_GETFL, so exclusivity is probed: an O_EXCL
 * open of our own must fail while the kept fd holds the claim (had it
 * not, the probe's fd becomes the claim: nothing is lost). */
static int adopt_claim(struct kdev *k, dev_t dev)
{
	struct stat st;
	int fd = k->adopt_fd, fl, probe;

	if (fd < 0)
		return -1;
	k->adopt_fd = -1;
	fl = fcntl(fd, F_GETFL);
	if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode) || st.st_rdev != dev || fl < 0 ||
	    (fl & O_ACCMODE) != O_RDWR) {
		zd_warn("%s: the kept descriptor is not this device's claim; opened afresh",
			k->path);
		close(fd);
		return -1;
	}
	probe = zd_dm_open_node(dev, O_RDWR | O_EXCL);
	if (probe >= 0) {
		close(fd);
		return probe;
	}
	zd_info("%s: exclusive claim kept across the restart (fd store)", k->path);
	return fd;
}

static int claim_whole(struct kdev *k, char *why, size_t why_len)
{
	struct zd_dm_target t = { .start = 0, .len = k->dev_sectors, .type = "linear" };
	struct zd_dm_status st;
	bool created = false;
	dev_t dev;
	int r;

	snprintf(t.params, sizeof(t.params), "%u:%u 0", major(k->rdev), minor(k->rdev));
	r = mapping_is(k, k->whole, &t, &st);
	if (r == -ENXIO) {
		r = zd_dm_create_live(k->ctl, k->whole, &t, 1, &dev);
		if (r < 0)
			return zd_why(why, why_len, r == -EBUSY ? -EBUSY : r,
				    "%s: cannot create the device-mapper mapping %s: %s%s", k->path,
				    k->whole, strerror(-r),
				    r == -EBUSY ? " (the device is in use)" : "");
		created = true;
	} else if (r < 0) {
		return zd_why(why, why_len, r, "%s: cannot query the device-mapper mapping %s: %s",
			    k->path, k->whole, strerror(-r));
	} else if (r == 0) {
		return zd_why(why, why_len, -EBUSY,
			    "%s is in use: the device-mapper mapping %s exists but does not map "
			    "exactly %s (remove it with dmsetup remove %s)", k->path, k->whole,
			    k->path, k->whole);
	} else {
		dev = st.dev;
	}
	k->claim_fd = adopt_claim(k, dev);
	if (k->claim_fd < 0)
		k->claim_fd = zd_dm_open_node(dev, O_RDWR | O_EXCL);
	if (k->claim_fd < 0) {
		r = k->claim_fd;
		if (created)
			(void)zd_dm_remove(k->ctl, k->whole, false);
		if (r == -EBUSY)
			return zd_why(why, why_len, r, "%s is in use: its mapping %s is held by "
				    "another process (another zonedd?)", k->path, k->whole);
		return zd_why(why, why_len, r, "%s: cannot open the mapping %s: %s", k->path,
			    k->whole, strerror(-r));
	}
	return 0;
}

static void k_close(struct zd_dev *dev)
{
	struct kdev *k = to_kdev(dev);

	if (!k)
		return;
	if (k->dio_fd >= 0)
		close(k->dio_fd);
	if (k->fd >= 0)
		close(k->fd);
	if (k->adopt_fd >= 0)
		close(k->adopt_fd);
	if (k->claim_fd >= 0) {
		close(k->claim_fd);
		/* Deferred: a prober (udev's blkid) may have it open for a
		 * moment; the lease mappings, on the disk, are not touched. */
		(void)zd_dm_remove(k->ctl, k->whole, true);
	}
	if (k->ctl >= 0)
		close(k->ctl);
	free(k->rep);
	free(k->bounce);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static int k_claim_fd(struct zd_dev *dev)
{
	struct kdev *k = to_kdev(dev);

	return k->ctl >= 0 ? k->claim_fd : k->fd;
}

static const struct zd_backend_ops kernel_ops = {
	.name = "kernel",
	.close = k_close,
	.info = k_info,
	.report = k_report,
	.zone_op = k_zone_op,
	.pwrite = k_pwrite,
	.pread = k_pread,
	.open_zones = k_open_zones,
	.lease_fence = k_lease_fence,
	.lease_sweep = k_lease_sweep,
	.refresh_zone = k_refresh_zone,
	.flush = k_flush,
	/* Ioctls on the disk and the device-mapper control node, each on its
	 * own zones' mapping; what the backend shares is behind k->lock. */
	.concurrent = true,
	.claim_fd = k_claim_fd,
};

/* Reads geometry through the claimed fd and cross-checks it with sysfs, then
 * walks the zones once to count conventional ones and find the capacity of
 * the first sequential zone. */
static int load_geometry(struct kdev *k, int sysdir, char *why, size_t why_len)
{
	struct zd_dev_info *info = &k->info;
	uint64_t size, chunk = 0;
	uint32_t zsz = 0, nrz = 0;
	int lbs = 0, pbs = 0;
	struct zd_zone z[64];

	if (ioctl(k->fd, BLKGETSIZE64, &size) < 0 || ioctl(k->fd, BLKSSZGET, &lbs) < 0 ||
	    ioctl(k->fd, BLKPBSZGET, &pbs) < 0 || ioctl(k->fd, BLKGETZONESZ, &zsz) < 0 ||
	    ioctl(k->fd, BLKGETNRZONES, &nrz) < 0)
		return zd_why(why, why_len, -errno, "%s: cannot read the geometry: %m", k->path);
	if (zsz == 0 || nrz == 0 || lbs <= 0 || size == 0)
		return zd_why(why, why_len, -EMEDIUMTYPE, "%s reports no zones", k->path);
	if (zd_sysfs_u64(sysdir, "queue/chunk_sectors", &chunk) == 0 && chunk && chunk != zsz)
		return zd_why(why, why_len, -EIO,
			    "%s: zone size %u sectors disagrees with chunk_sectors %llu",
			    k->path, zsz, (unsigned long long)chunk);

	k->zone_sectors = zsz;
	k->nr_zones = nrz;
	info->size = size;
	info->zone_size = (uint64_t)zsz << SECTOR_SHIFT;
	info->nr_zones = nrz;
	info->logical_block_size = (uint32_t)lbs;
	info->physical_block_size = pbs > 0 ? (uint32_t)pbs : (uint32_t)lbs;
	info->max_open = zd_sysfs_u32_or0(sysdir, "queue/max_open_zones");
	info->max_active = zd_sysfs_u32_or0(sysdir, "queue/max_active_zones");
	info->zone_capacity = 0;
	info->nr_conventional = 0;

	for (uint32_t at = 0; at < nrz;) {
		uint32_t nr = 64;
		int r = report_zones(k, at, z, &nr);

		if (r < 0)
			return zd_why(why, why_len, r, "%s: zone report failed: %s", k->path,
				    strerror(-r));
		if (nr == 0)
			return zd_why(why, why_len, -EIO, "%s: zone report ended at zone %u of %u",
				    k->path, at, nrz);
		for (uint32_t i = 0; i < nr; i++) {
			if (z[i].type == ZP_TYPE_CONV)
				info->nr_conventional++;
			else if (!info->zone_capacity)
				info->zone_capacity = z[i].capacity;
		}
		at += nr;
	}
	if (!info->zone_capacity)
		info->zone_capacity = info->zone_size; /* all conventional */
	return 0;
}

/* How a device's leases reach their zones: zone isolation where
 * device-mapper works (AUTO) or as asked (ZONE, else failing), device
 * isolation as configured or as the fallback, saying why. */
struct pick {
	int ctl;               /* /dev/mapper/control for zone isolation, else -1 */
	bool held_by_ours;     /* the disk's holders are all our mappings */
	char whole[DM_NAME_LEN];
	char why[sizeof(((struct zd_dev_info *)0)->isolation_why)];
};

static int pick_isolation(const char *path, dev_t rdev, enum zd_isolation iso, struct pick *p,
			  char *why, size_t why_len)
{
	char kname[64], holder[64], dmwhy[sizeof(p->why)] = "";
	unsigned ours = 0;
	int r;

	r = zd_dm_kernel_name(rdev, kname, sizeof(kname));
	if (r < 0)
		return zd_why(why, why_len, r, "%s: cannot find its kernel name: %s", path,
			    strerror(-r));
	if (snprintf(p->whole, sizeof(p->whole), "zoned-%s", kname) >= (int)sizeof(p->whole))
		return zd_why(why, why_len, -ENAMETOOLONG, "%s: kernel name too long", path);
	if (iso != ZD_ISOLATION_DEVICE) {
		r = zd_dm_control_open(&p->ctl, dmwhy, sizeof(dmwhy));
		if (r < 0 && iso == ZD_ISOLATION_ZONE)
			return zd_why(why, why_len, r, "%s: zone isolation needs device-mapper: %s",
				    path, dmwhy);
	}
	if (p->ctl >= 0)
		snprintf(p->why, sizeof(p->why), "%s",
			 iso == ZD_ISOLATION_ZONE ? "configured"
						  : "device-mapper: one mapping per lease");
	else
		snprintf(p->why, sizeof(p->why), "%s",
			 iso == ZD_ISOLATION_DEVICE ? "configured" : dmwhy);

	r = zd_dm_foreign_holder(rdev, p->whole, holder, sizeof(holder), &ours);
	if (r < 0) {
		zd_why(why, why_len, r, "%s: cannot read its sysfs holders: %s", path, strerror(-r));
		goto err;
	}
	if (r > 0) {
		r = zd_why(why, why_len, -EBUSY, "%s is in use by %s (sysfs holders)", path, holder);
		goto err;
	}
	if (ours && p->ctl < 0) {
		r = zd_why(why, why_len, -EBUSY,
			 "%s is held by zonedd's device-mapper mappings %s*, left by zone "
			 "isolation (%s); remove them with dmsetup remove, or use zone isolation",
			 path, p->whole, p->why);
		goto err;
	}
	p->held_by_ours = ours > 0;
	return 0;
err:
	if (p->ctl >= 0)
		close(p->ctl);
	p->ctl = -1;
	return r;
}

int zd_kernel_open(const char *path, enum zd_isolation iso, struct zd_dev **out, char *why,
		   size_t why_len)
{
	return zd_kernel_open_claimed(path, iso, -1, out, why, why_len);
}

/* Closes a kept claim nobody took (every early return below). */
static void close_claim(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

int zd_kernel_open_claimed(const char *path, enum zd_isolation iso, int claim_fd_in,
			   struct zd_dev **out, char *why, size_t why_len)
{
	__attribute__((cleanup(close_claim))) int claim_fd = claim_fd_in;
	_cleanup_close_ int sysdir = -1;
	struct kdev *k = NULL;
	struct zd_blkdev_props props;
	struct stat st;
	dev_t rdev;
	char model[16];
	struct pick pick = { .ctl = -1 };
	int r;

	if (why && why_len)
		why[0] = '\0';
	if (!path || !out)
		return zd_why(why, why_len, -EINVAL, "no device given");
	*out = NULL;
	if (strlen(path) >= sizeof(k->path))
		return zd_why(why, why_len, -ENAMETOOLONG, "device path too long");
	r = zd_blkdev_stat(path, &rdev, why, why_len);
	if (r < 0)
		return r;
	sysdir = zd_blkdev_sysfs_open(NULL, rdev);
	if (sysdir < 0)
		return zd_why(why, why_len, sysdir, "%s: cannot open /sys/dev/block/%u:%u: %s", path,
			    major(rdev), minor(rdev), strerror(-sysdir));
	r = zd_blkdev_check_whole(sysdir, path, why, why_len);
	if (r < 0)
		return r;
	r = zd_blkdev_check_zoned(sysdir, path, model, sizeof(model), why, why_len);
	if (r < 0)
		return r;

	r = pick_isolation(path, rdev, iso, &pick, why, why_len);
	if (r < 0)
		return r;
	/* Held by our own mappings alone (a crash or a lease left them):
	 * device-mapper's claim already keeps mounts and holders out. */
	if (!pick.held_by_ours) {
		r = zd_blkdev_check_unused(sysdir, NULL, path, rdev, why, why_len);
		if (r < 0)
			goto err_pick;
	}

	r = zd_blkdev_read_props(sysdir, &props);
	if (r < 0) {
		r = zd_why(why, why_len, r, "%s: cannot read sysfs: %s", path, strerror(-r));
		goto err_pick;
	}
	r = zd_blkdev_check_scheduler(props.scheduler, NULL, path, why, why_len);
	if (r < 0)
		goto err_pick;

	k = calloc(1, sizeof(*k));
	if (!k) {
		r = zd_why(why, why_len, -ENOMEM, "out of memory");
		goto err_pick;
	}
	k->base.ops = &kernel_ops;
	pthread_mutex_init(&k->lock, NULL);
	k->dio_fd = -1;
	k->claim_fd = -1;
	k->adopt_fd = claim_fd;
	claim_fd = -1;
	k->ctl = pick.ctl;
	pick.ctl = -1;
	snprintf(k->whole, sizeof(k->whole), "%s", pick.whole);
	k->rdev = rdev;
	snprintf(k->path, sizeof(k->path), "%s", path);
	snprintf(k->info.backend, sizeof(k->info.backend), "kernel");
	snprintf(k->info.model, sizeof(k->info.model), "%s", model);
	snprintf(k->info.scheduler, sizeof(k->info.scheduler), "%s", props.scheduler);
	k->info.isolation = k->ctl >= 0 ? ZD_ISOLATION_ZONE : ZD_ISOLATION_DEVICE;
	snprintf(k->info.isolation_why, sizeof(k->info.isolation_why), "%s", pick.why);
	snprintf(k->info.vendor, sizeof(k->info.vendor), "%s", props.vendor);
	snprintf(k->info.product, sizeof(k->info.product), "%s", props.product);

	if (k->ctl >= 0) {
		/* The claim is zoned-<kname>'s (claim_whole() below); an
		 * O_EXCL open here would make device-mapper's fail. */
		k->fd = open(path, O_RDWR | O_CLOEXEC);
	} else {
		/* O_EXCL on a block device is an exclusive claim: mounts,
		 * device-mapper and other exclusive openers are kept out
		 * while we hold it. */
		k->fd = adopt_claim(k, k->rdev);
		if (k->fd < 0)
			k->fd = open(path, O_RDWR | O_EXCL | O_CLOEXEC);
	}
	if (k->fd < 0) {
		r = -errno;
		if (r == -EBUSY)
			zd_why(why, why_len, r, "%s is in use (opened exclusively elsewhere)", path);
		else
			zd_why(why, why_len, r, "%s: cannot open: %s", path, strerror(-r));
		goto err;
	}
	if (fstat(k->fd, &st) < 0 || st.st_rdev != k->rdev) {
		r = zd_why(why, why_len, -EBUSY, "%s changed while being opened", path);
		goto err;
	}
	/* O_DSYNC: a write that returns is durable, as with the emulator (the
	 * device layer has no flush); a no-op without a volatile cache. */
	k->dio_fd = open(path, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
	if (k->dio_fd < 0) {
		r = zd_why(why, why_len, -errno, "%s: cannot open for direct I/O: %m", path);
		goto err;
	}
	k->rep = calloc(1, sizeof(*k->rep) + REPORT_BATCH * sizeof(struct blk_zone));
	if (!k->rep || posix_memalign(&k->bounce, BOUNCE_ALIGN, BOUNCE_SIZE) != 0) {
		k->bounce = NULL;
		r = zd_why(why, why_len, -ENOMEM, "out of memory");
		goto err;
	}
	r = load_geometry(k, sysdir, why, why_len);
	if (r < 0)
		goto err;
	k->dev_sectors = k->info.size >> SECTOR_SHIFT;
	if (k->ctl >= 0) {
		r = claim_whole(k, why, why_len);
		if (r < 0)
			goto err;
	}
	*out = &k->base;
	return 0;
err:
	k_close(&k->base);
	return r;
err_pick:
	if (pick.ctl >= 0)
		close(pick.ctl);
	return r;
}
