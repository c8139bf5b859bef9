/* Block device properties read from sysfs, and the checks a zoned device must
 * pass before it is claimed. Pure functions over a path, a sysfs directory
 * and a mountinfo file, with no daemon state: zonedd's kernel backend
 * (daemon/kernel.c) and zonectl's validate and info --sysfs share them. */
#ifndef ZONED_BLKDEV_H
#define ZONED_BLKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What sysfs says about a block device, read without opening it. Sizes in
 * bytes; a missing optional attribute (older kernels, a partition's queue
 * limits) reads as 0 or "". */
struct zd_blkdev_props {
	char name[64];      /* the kernel's name: "nullb0", "nvme0n1", "vda1" */
	char parent[64];    /* a partition's whole device, else "" */
	char zoned[16];     /* queue/zoned: "none", "host-aware", "host-managed" */
	char scheduler[32]; /* the active one of queue/scheduler, "none" if absent */
	char vendor[64];    /* device/vendor (SCSI), else "" */
	char product[64];   /* device/model (SCSI, NVMe), else "" */
	bool partition;
	bool read_only;
	uint64_t size;
	uint64_t start;     /* a partition's offset in its device, else 0 */
	uint32_t logical_block_size;
	uint32_t physical_block_size;
	uint64_t zone_size;   /* queue/chunk_sectors of a zoned device */
	uint32_t nr_zones;    /* queue/nr_zones */
	uint32_t max_open;    /* 0 = no limit */
	uint32_t max_active;  /* 0 = no limit */
};

/* Sets *why (when given) and returns err, so a failure is one line:
 * return zd_why(why, len, -EINVAL, "%s is ...", path). */
int zd_why(char *why, size_t why_len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A small attribute relative to dirfd, trimmed of surrounding whitespace.
 * Returns its length or a negative errno. */
int zd_sysfs_read(int dirfd, const char *name, char *buf, size_t cap);
/* A decimal attribute; -EINVAL when it is not one. */
int zd_sysfs_u64(int dirfd, const char *name, uint64_t *out);
/* An optional numeric attribute: missing or out of range reads as 0. */
uint32_t zd_sysfs_u32_or0(int dirfd, const char *name);

/* "none [mq-deadline] kyber" -> "mq-deadline"; a single entry without
 * brackets is taken whole. */
void zd_blkdev_pick_scheduler(const char *line, char *out, size_t cap);

/* Opens <sysroot>/dev/block/MAJ:MIN (sysroot NULL: "/sys") as a directory
 * fd, O_CLOEXEC. Returns the fd or a negative errno. */
int zd_blkdev_sysfs_open(const char *sysroot, dev_t rdev);

/* Stats path: it must exist and be a block device (-ENOTBLK). */
int zd_blkdev_stat(const char *path, dev_t *rdev, char *why, size_t why_len);

/* Fills *p from the sysfs directory of a whole device or partition (a
 * partition's queue attributes are its parent's). */
int zd_blkdev_read_props(int sysdir, struct zd_blkdev_props *p);

/* The checks, each failing with a one-line reason in *why (when given) and
 * a negative errno; path names the device in the reasons. */

/* -EINVAL for a partition: the daemon owns whole zones of a whole device. */
int zd_blkdev_check_whole(int sysdir, const char *path, char *why, size_t why_len);
/* Reads queue/zoned (a partition's disk's): host-managed and host-aware pass and are copied into
 * model (when given), anything else is -EMEDIUMTYPE. */
int zd_blkdev_check_zoned(int sysdir, const char *path, char *model, size_t model_cap,
			  char *why, size_t why_len);
/* Zone size, zone count and device size agree (-EMEDIUMTYPE, -EIO). */
int zd_blkdev_check_geometry(const struct zd_blkdev_props *p, const char *path, char *why,
			     size_t why_len);
/* max_open <= max_active when both are set (-EINVAL). */
int zd_blkdev_check_limits(const struct zd_blkdev_props *p, const char *path, char *why,
			   size_t why_len);
/* -EBUSY when the device or one of its partitions is mounted, by
 * mountinfo (NULL: /proc/self/mountinfo). */
int zd_blkdev_check_mounts(int sysdir, const char *mountinfo, const char *path, dev_t rdev,
			   char *why, size_t why_len);
/* -EBUSY when the device or one of its partitions has sysfs holders
 * (device-mapper, md, bcache stacked on it). */
int zd_blkdev_check_holders(int sysdir, const char *path, char *why, size_t why_len);
/* Mounts, then holders: what the O_EXCL claim would refuse, with names. */
int zd_blkdev_check_unused(int sysdir, const char *mountinfo, const char *path, dev_t rdev,
			   char *why, size_t why_len);

/* True when kernel `release` ("6.1.0-18-amd64"; NULL: the running one)
 * lacks zone write plugging (6.10), so that only mq-deadline or no
 * scheduler keep zone writes in order. */
bool zd_blkdev_needs_ordering_scheduler(const char *release);
/* -EINVAL when scheduler may reorder zone writes on kernel `release`. */
int zd_blkdev_check_scheduler(const char *scheduler, const char *release, const char *path,
			      char *why, size_t why_len);

/* Opens path O_RDONLY | O_EXCL and closes it again: whether the daemon's
 * claim would succeed now. -EBUSY when something holds it exclusively. */
int zd_blkdev_try_exclusive(const char *path, char *why, size_t why_len);

#endif
