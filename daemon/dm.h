/* A small device-mapper client over the DM ioctls of /dev/mapper/control,
 * the kernel backend's tool for zone isolation (daemon/kernel.c). No
 * libdevmapper and no udev: mappings are reached through /dev/dm-N, which
 * devtmpfs creates. Every function returns 0 or a negative errno; a mapping
 * that does not exist is -ENXIO, as the kernel says it. */
#ifndef ZONED_DM_H
#define ZONED_DM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/dm-ioctl.h>

/* One target of a table: sectors, the target type and its parameters. */
struct zd_dm_target {
	uint64_t start, len;
	char type[DM_MAX_TYPE_NAME];
	char params[256];
};

struct zd_dm_status {
	dev_t dev;
	int32_t open_count;
	uint32_t target_count;
	bool suspended;
	bool live_table;     /* an active table is present */
	bool inactive_table; /* a table is loaded but not yet resumed */
	bool deferred_remove;
};

/* Opens /dev/mapper/control and checks the interface version (4, with
 * DM_DEFERRED_REMOVE). *ctl is the fd; the caller closes it. On failure
 * *why says why, in words an administrator can act on. */
int zd_dm_control_open(int *ctl, char *why, size_t why_len);

/* A new mapping with no table (it has no block device node until a table
 * is loaded and resumed). -EEXIST when the name is taken. */
int zd_dm_create(int ctl, const char *name, dev_t *dev);
/* Loads targets as the inactive table; zd_dm_resume() makes it live. */
int zd_dm_load(int ctl, const char *name, const struct zd_dm_target *t, size_t nr);
/* Suspends: with flush, I/O in flight completes first (and I/O the
 * mapping queued is issued); without, it is held back. Filesystems on the
 * mapping are not frozen: a fenced mapping must not wait for one. */
int zd_dm_suspend(int ctl, const char *name, bool flush);
/* Resumes, making a loaded inactive table live. */
int zd_dm_resume(int ctl, const char *name);
int zd_dm_rename(int ctl, const char *name, const char *new_name);
/* Removes a mapping. -EBUSY while it is open, unless deferred: then it is
 * marked and goes when its last holder closes it (0 either way). */
int zd_dm_remove(int ctl, const char *name, bool deferred);
int zd_dm_status(int ctl, const char *name, struct zd_dm_status *st);
/* The live table: fills up to *nr targets and sets *nr to the table's
 * length (which may be more than were filled). */
int zd_dm_table(int ctl, const char *name, struct zd_dm_target *t, size_t *nr);
/* Calls fn for every mapping whose name starts with prefix, in the
 * kernel's order; a non-zero return from fn stops the walk and is
 * returned. The names are copied first, so fn may create, rename and
 * remove mappings. */
int zd_dm_list(int ctl, const char *prefix, int (*fn)(const char *name, dev_t dev, void *ud),
	       void *ud);

/* Creates name with one table and resumes it, removing it again if any
 * step fails: a mapping exists with that table, or not at all. */
int zd_dm_create_live(int ctl, const char *name, const struct zd_dm_target *t, size_t nr,
		      dev_t *dev);

/* Opens the block device dev (a mapping's dev_t): its node under /dev,
 * named by /sys/dev/block/MAJ:MIN/uevent, checked to be dev. Returns the
 * fd (O_CLOEXEC added) or a negative errno. */
int zd_dm_open_node(dev_t dev, int flags);

/* The kernel name of block device dev ("nullb0", "nvme0n1", "dm-3"). */
int zd_dm_kernel_name(dev_t dev, char *out, size_t cap);

/* Whether the block device dev is held by something other than
 * device-mapper devices named `prefix` or `prefix`-*: 1 with the first such
 * holder's kernel name in out, 0 when not (held by ours alone, or not at
 * all), or a negative errno. *ours (if non-NULL) counts our holders. */
int zd_dm_foreign_holder(dev_t dev, const char *prefix, char *out, size_t cap, unsigned *ours);

#endif
