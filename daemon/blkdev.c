/* Block device properties from sysfs and the checks a device must pass before
 * the kernel backend claims it; shared by zonedd and zonectl (see blkdev.h).
 * Sizes leave here in bytes. */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "daemon/blkdev.h"

#define SECTOR_SHIFT 9

static void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_close_ __attribute__((cleanup(closep)))

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_fclose_ __attribute__((cleanup(fclosep)))

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define _cleanup_closedir_ __attribute__((cleanup(closedirp)))

int zd_why(char *why, size_t why_len, int err, const char *fmt, ...)
{
	if (why && why_len) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* sysfs */

int zd_sysfs_read(int dirfd, const char *name, char *buf, size_t cap)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t len, start = 0;

	if (fd < 0)
		return -errno;
	if (cap < 2)
		return -ENOBUFS;
	n = read(fd, buf, cap - 1);
	if (n < 0)
		return -errno;
	len = (size_t)n;
	buf[len] = '\0';
	while (len && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	while (start < len && isspace((unsigned char)buf[start]))
		start++;
	memmove(buf, buf + start, len - start + 1);
	return (int)(len - start);
}

int zd_sysfs_u64(int dirfd, const char *name, uint64_t *out)
{
	char buf[64], *end;
	int r = zd_sysfs_read(dirfd, name, buf, sizeof(buf));

	if (r < 0)
		return r;
	errno = 0;
	*out = strtoull(buf, &end, 10);
	if (errno || end == buf || *end || buf[0] == '-')
		return -EINVAL;
	return 0;
}

uint32_t zd_sysfs_u32_or0(int dirfd, const char *name)
{
	uint64_t v;

	if (zd_sysfs_u64(dirfd, name, &v) < 0 || v > UINT32_MAX)
		return 0;
	return (uint32_t)v;
}

void zd_blkdev_pick_scheduler(const char *line, char *out, size_t cap)
{
	const char *lb = strchr(line, '['), *rb = lb ? strchr(lb, ']') : NULL;
	size_t n;

	if (lb && rb) {
		n = (size_t)(rb - lb - 1);
		line = lb + 1;
	} else {
		n = strcspn(line, " \t\n");
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(out, line, n);
	out[n] = '\0';
}

int zd_blkdev_sysfs_open(const char *sysroot, dev_t rdev)
{
	char sys[PATH_MAX];
	int fd;

	snprintf(sys, sizeof(sys), "%s/dev/block/%u:%u", sysroot ? sysroot : "/sys",
		 major(rdev), minor(rdev));
	fd = open(sys, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int zd_blkdev_stat(const char *path, dev_t *rdev, char *why, size_t why_len)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return zd_why(why, why_len, -errno, "%s: %m", path);
	if (!S_ISBLK(st.st_mode))
		return zd_why(why, why_len, -ENOTBLK, "%s is not a block device", path);
	*rdev = st.st_rdev;
	return 0;
}

/* Vendor and model: SCSI disks have them under device/; an NVMe namespace's
 * device/ is its controller (or, with native multipath, its subsystem),
 * which has model but no vendor; null_blk has neither. */
static void read_first(int sysdir, const char *const *paths, char *out, size_t cap)
{
	for (; *paths; paths++)
		if (zd_sysfs_read(sysdir, *paths, out, cap) > 0)
			return;
	out[0] = '\0';
}

/* The last component of the directory sysdir is: sysfs names a block
 * device's directory after the device. */
static int dir_name(int sysdir, const char *rel, char *out, size_t cap)
{
	char link[64], target[PATH_MAX];
	_cleanup_close_ int fd = openat(sysdir, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ssize_t n;
	const char *slash;

	if (fd < 0)
		return -errno;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	slash = strrchr(target, '/');
	slash = slash ? slash + 1 : target;
	if (strlen(slash) >= cap)
		return -ENAMETOOLONG;
	memcpy(out, slash, strlen(slash) + 1);
	return 0;
}

int zd_blkdev_read_props(int sysdir, struct zd_blkdev_props *p)
{
	/* A partition's directory sits inside its disk's, which has the
	 * queue and the identity. */
	const char *up;
	char buf[256], attr[64], vendor[64], model[64], model2[64];
	const char *const vendor_paths[] = { vendor, NULL };
	const char *const model_paths[] = { model, model2, NULL };
	uint64_t v;
	int r;

	memset(p, 0, sizeof(*p));
	p->partition = faccessat(sysdir, "partition", F_OK, 0) == 0;
	up = p->partition ? "../" : "";
	r = dir_name(sysdir, ".", p->name, sizeof(p->name));
	if (r < 0)
		return r;
	if (p->partition) {
		r = dir_name(sysdir, "..", p->parent, sizeof(p->parent));
		if (r < 0)
			return r;
		if (zd_sysfs_u64(sysdir, "start", &v) == 0)
			p->start = v << SECTOR_SHIFT;
	}
	/* "size" is in 512-byte sectors whatever the block size. */
	r = zd_sysfs_u64(sysdir, "size", &v);
	if (r < 0)
		return r;
	p->size = v << SECTOR_SHIFT;
	p->read_only = zd_sysfs_u32_or0(sysdir, "ro") != 0;

#define QATTR(name) (snprintf(attr, sizeof(attr), "%squeue/%s", up, (name)), attr)
	if (zd_sysfs_read(sysdir, QATTR("zoned"), p->zoned, sizeof(p->zoned)) <= 0)
		snprintf(p->zoned, sizeof(p->zoned), "none");
	r = zd_sysfs_read(sysdir, QATTR("scheduler"), buf, sizeof(buf));
	zd_blkdev_pick_scheduler(r > 0 ? buf : "none", p->scheduler, sizeof(p->scheduler));
	p->logical_block_size = zd_sysfs_u32_or0(sysdir, QATTR("logical_block_size"));
	p->physical_block_size = zd_sysfs_u32_or0(sysdir, QATTR("physical_block_size"));
	if (strcmp(p->zoned, "none") != 0) {
		if (zd_sysfs_u64(sysdir, QATTR("chunk_sectors"), &v) == 0)
			p->zone_size = v << SECTOR_SHIFT;
		p->nr_zones = zd_sysfs_u32_or0(sysdir, QATTR("nr_zones"));
		p->max_open = zd_sysfs_u32_or0(sysdir, QATTR("max_open_zones"));
		p->max_active = zd_sysfs_u32_or0(sysdir, QATTR("max_active_zones"));
	}
#undef QATTR
	snprintf(vendor, sizeof(vendor), "%sdevice/vendor", up);
	snprintf(model, sizeof(model), "%sdevice/model", up);
	snprintf(model2, sizeof(model2), "%sdevice/device/model", up);
	read_first(sysdir, vendor_paths, p->vendor, sizeof(p->vendor));
	read_first(sysdir, model_paths, p->product, sizeof(p->product));
	return 0;
}

/* Checks */

int zd_blkdev_check_whole(int sysdir, const char *path, char *why, size_t why_len)
{
	/* A partition has no queue of its own, and the daemon must own whole
	 * zones of a whole device. */
	if (faccessat(sysdir, "partition", F_OK, 0) == 0)
		return zd_why(why, why_len, -EINVAL,
			    "%s is a partition; give the whole device", path);
	return 0;
}

int zd_blkdev_check_zoned(int sysdir, const char *path, char *model, size_t model_cap,
			  char *why, size_t why_len)
{
	/* A partition's queue is its disk's. */
	bool part = faccessat(sysdir, "partition", F_OK, 0) == 0;
	char buf[256];
	int r = zd_sysfs_read(sysdir, part ? "../queue/zoned" : "queue/zoned", buf, sizeof(buf));

	if (r < 0)
		return zd_why(why, why_len, r, "%s: cannot read queue/zoned: %s", path, strerror(-r));
	if (strcmp(buf, "host-managed") != 0 && strcmp(buf, "host-aware") != 0)
		return zd_why(why, why_len, -EMEDIUMTYPE,
			    "%s is not a zoned block device (queue/zoned: %s)", path, buf);
	if (model && model_cap)
		snprintf(model, model_cap, "%s", buf);
	return 0;
}

int zd_blkdev_check_geometry(const struct zd_blkdev_props *p, const char *path, char *why,
			     size_t why_len)
{
	uint64_t want;

	if (!p->zone_size || !p->nr_zones || !p->size || !p->logical_block_size)
		return zd_why(why, why_len, -EMEDIUMTYPE, "%s reports no zones", path);
	if (p->zone_size % p->logical_block_size)
		return zd_why(why, why_len, -EIO,
			    "%s: zone size %llu is not a multiple of the block size %u", path,
			    (unsigned long long)p->zone_size, p->logical_block_size);
	/* The last zone may be smaller (a device whose size is not a multiple
	 * of its zone size), never missing or extra. */
	want = (p->size + p->zone_size - 1) / p->zone_size;
	if (want != p->nr_zones)
		return zd_why(why, why_len, -EIO,
			    "%s: %u zones of %llu bytes disagree with its size of %llu bytes", path,
			    p->nr_zones, (unsigned long long)p->zone_size,
			    (unsigned long long)p->size);
	return 0;
}

int zd_blkdev_check_limits(const struct zd_blkdev_props *p, const char *path, char *why,
			   size_t why_len)
{
	if (p->max_open && p->max_active && p->max_open > p->max_active)
		return zd_why(why, why_len, -EINVAL,
			    "%s: max open zones %u exceeds max active zones %u", path, p->max_open,
			    p->max_active);
	if (p->nr_zones && p->max_active > p->nr_zones)
		return zd_why(why, why_len, -EINVAL, "%s: max active zones %u exceeds its %u zones",
			    path, p->max_active, p->nr_zones);
	return 0;
}

/* Mounts */

/* Reads "MAJ:MIN" (a sysfs dev file) into a dev_t. */
static int parse_devnum(const char *s, dev_t *out)
{
	unsigned ma, mi;

	if (sscanf(s, "%u:%u", &ma, &mi) != 2)
		return -EINVAL;
	*out = makedev(ma, mi);
	return 0;
}

/* Looks for a mount of `dev` in a mountinfo file: by the major:minor field,
 * and by the mount source naming the device node (some filesystems, btrfs
 * among them, show an anonymous major:minor). Copies the mount point into
 * where. Returns 1 when mounted, 0 when not, or a negative errno. */
static int find_mount(const char *mountinfo, dev_t dev, char *where, size_t cap)
{
	_cleanup_fclose_ FILE *f = fopen(mountinfo, "re");
	_cleanup_free_ char *line = NULL;
	size_t n = 0;

	if (!f)
		return -errno;
	while (getline(&line, &n, f) > 0) {
		char devnum[32], mnt[PATH_MAX], src[PATH_MAX];
		const char *sep = strstr(line, " - ");
		dev_t d;
		struct stat st;
		bool hit = false;

		if (sscanf(line, "%*s %*s %31s %*s %4095s", devnum, mnt) != 2)
			continue;
		if (parse_devnum(devnum, &d) == 0 && d == dev)
			hit = true;
		if (!hit && sep && sscanf(sep + 3, "%*s %4095s", src) == 1 && src[0] == '/' &&
		    stat(src, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == dev)
			hit = true;
		if (hit) {
			snprintf(where, cap, "%s", mnt);
			return 1;
		}
	}
	return 0;
}

/* The first entry of a sysfs holders/ directory, or "" when none. */
static int first_holder(int sysdir, const char *holders, char *out, size_t cap)
{
	int fd = openat(sysdir, holders, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *e;

	out[0] = '\0';
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		char attr[NAME_MAX + 16], dm[128];

		if (e->d_name[0] == '.')
			continue;
		/* A device-mapper holder is named too: "zoned-<kname>" is
		 * zonedd's own zone isolation mapping, anything else LVM's,
		 * cryptsetup's or multipath's. */
		snprintf(attr, sizeof(attr), "%s/dm/name", e->d_name);
		if (fd = openat(dirfd(d), attr, O_RDONLY | O_CLOEXEC), fd >= 0) {
			ssize_t n = read(fd, dm, sizeof(dm) - 1);

			close(fd);
			dm[n > 0 ? n : 0] = '\0';
			dm[strcspn(dm, "\n")] = '\0';
		} else {
			dm[0] = '\0';
		}
		/* A cut name still names the holder: no error. */
		if (dm[0] && snprintf(out, cap, "%s (device-mapper %s%s)", e->d_name, dm,
				      strncmp(dm, "zoned-", 6) == 0 ? ", zonedd's zone isolation"
								    : "") >= (int)cap)
			out[cap - 1] = '\0';
		else if (!dm[0])
			snprintf(out, cap, "%s", e->d_name);
		return 1;
	}
	return 0;
}

/* Calls fn for each partition of the device at sysdir (subdirectories with
 * a "partition" attribute) until it returns nonzero, which is returned. A
 * zoned disk normally has none, but a host-aware one may. */
static int each_partition(int sysdir, const char *path, char *why, size_t why_len,
			  int (*fn)(int sysdir, const char *part, void *ctx), void *ctx)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *e;
	int fd = openat(sysdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return zd_why(why, why_len, -errno, "%s: cannot read sysfs: %m", path);
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return zd_why(why, why_len, -errno, "%s: cannot read sysfs: %m", path);
	}
	while ((e = readdir(d))) {
		char attr[NAME_MAX + 32];
		int r;

		if (e->d_name[0] == '.')
			continue;
		snprintf(attr, sizeof(attr), "%s/partition", e->d_name);
		if (faccessat(sysdir, attr, F_OK, 0) < 0)
			continue;
		r = fn(sysdir, e->d_name, ctx);
		if (r)
			return r;
	}
	return 0;
}

struct mount_ctx {
	const char *mountinfo;
	char where[PATH_MAX];
	char part[NAME_MAX + 1];
};

static int partition_mounted(int sysdir, const char *part, void *ctx)
{
	struct mount_ctx *m = ctx;
	char attr[NAME_MAX + 32], buf[32];
	dev_t pdev;

	snprintf(attr, sizeof(attr), "%s/dev", part);
	if (zd_sysfs_read(sysdir, attr, buf, sizeof(buf)) < 0 || parse_devnum(buf, &pdev) < 0)
		return 0;
	if (find_mount(m->mountinfo, pdev, m->where, sizeof(m->where)) <= 0)
		return 0;
	snprintf(m->part, sizeof(m->part), "%s", part);
	return 1;
}

int zd_blkdev_check_mounts(int sysdir, const char *mountinfo, const char *path, dev_t rdev,
			   char *why, size_t why_len)
{
	struct mount_ctx m = { .mountinfo = mountinfo ? mountinfo : "/proc/self/mountinfo" };
	int r = find_mount(m.mountinfo, rdev, m.where, sizeof(m.where));

	if (r < 0)
		return zd_why(why, why_len, r, "%s: cannot read %s: %s", path, m.mountinfo,
			    strerror(-r));
	if (r > 0)
		return zd_why(why, why_len, -EBUSY, "%s is mounted on %s", path, m.where);
	r = each_partition(sysdir, path, why, why_len, partition_mounted, &m);
	if (r < 0)
		return r;
	if (r > 0)
		return zd_why(why, why_len, -EBUSY, "%s has partition %s mounted on %s", path, m.part,
			    m.where);
	return 0;
}

struct holder_ctx {
	char holder[256];
	char part[NAME_MAX + 1];
};

static int partition_held(int sysdir, const char *part, void *ctx)
{
	struct holder_ctx *h = ctx;
	char attr[NAME_MAX + 32];

	snprintf(attr, sizeof(attr), "%s/holders", part);
	if (first_holder(sysdir, attr, h->holder, sizeof(h->holder)) <= 0)
		return 0;
	snprintf(h->part, sizeof(h->part), "%s", part);
	return 1;
}

int zd_blkdev_check_holders(int sysdir, const char *path, char *why, size_t why_len)
{
	struct holder_ctx h;
	int r = each_partition(sysdir, path, why, why_len, partition_held, &h);

	if (r < 0)
		return r;
	if (r > 0)
		return zd_why(why, why_len, -EBUSY, "%s has partition %s in use by %s", path, h.part,
			    h.holder);
	if (first_holder(sysdir, "holders", h.holder, sizeof(h.holder)) > 0)
		return zd_why(why, why_len, -EBUSY, "%s is in use by %s (sysfs holders)", path,
			    h.holder);
	return 0;
}

/* The O_EXCL open would catch most of these too, but only with a bare
 * EBUSY. */
int zd_blkdev_check_unused(int sysdir, const char *mountinfo, const char *path, dev_t rdev,
			   char *why, size_t why_len)
{
	int r = zd_blkdev_check_mounts(sysdir, mountinfo, path, rdev, why, why_len);

	return r < 0 ? r : zd_blkdev_check_holders(sysdir, path, why, why_len);
}

/* Scheduler */

bool zd_blkdev_needs_ordering_scheduler(const char *release)
{
	struct utsname u;
	unsigned ma = 0, mi = 0;

	if (!release) {
		if (uname(&u) < 0)
			return false;
		release = u.release;
	}
	if (sscanf(release, "%u.%u", &ma, &mi) != 2)
		return false;
	return ma < 6 || (ma == 6 && mi < 10);
}

int zd_blkdev_check_scheduler(const char *scheduler, const char *release, const char *path,
			      char *why, size_t why_len)
{
	/* Before zone write plugging (6.10) the block layer kept sequential
	 * writes in order only with mq-deadline, or with no scheduler at all
	 * for a single in-order submitter. Clients write with O_DIRECT and the
	 * daemon gives each zone one writer, so "none" is safe too (it is
	 * what NVMe ZNS and null_blk use). Anything else may reorder. */
	if (zd_blkdev_needs_ordering_scheduler(release) && strcmp(scheduler, "mq-deadline") != 0 &&
	    strcmp(scheduler, "none") != 0)
		return zd_why(why, why_len, -EINVAL,
			    "%s uses I/O scheduler %s, which may reorder zone writes on kernels "
			    "before 6.10; select mq-deadline or none", path, scheduler);
	return 0;
}

int zd_blkdev_try_exclusive(const char *path, char *why, size_t why_len)
{
	/* O_EXCL on a block device is an exclusive claim: it fails while a
	 * mount, device-mapper or another exclusive opener holds it. */
	int fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		int r = -errno;

		if (r == -EBUSY)
			return zd_why(why, why_len, r, "%s is in use (opened exclusively elsewhere)",
				    path);
		return zd_why(why, why_len, r, "%s: cannot open: %s", path, strerror(-r));
	}
	close(fd);
	return 0;
}
