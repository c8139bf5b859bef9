/* The device layer: one interface, two backends (emulated file, kernel zoned
 * block device). Every offset and size above this layer is in bytes; zones are
 * addressed by index. Sectors exist only inside the kernel backend. */
#ifndef ZONED_ZDEV_H
#define ZONED_ZDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h" /* enum zp_cond, enum zp_type */

/* How a device's leases reach their zones (zd_dev_info.isolation). */
enum zd_isolation {
	ZD_ISOLATION_AUTO,   /* config only: zone where available, else device */
	ZD_ISOLATION_DEVICE, /* a lease's fd reaches the whole device; no fencing */
	ZD_ISOLATION_ZONE,   /* a lease's fd reaches its zones only; fenced on revocation */
};
const char *zd_isolation_name(enum zd_isolation iso);
int zd_isolation_parse(const char *s, enum zd_isolation *out);

/* The most zones one lease (or one open_zones call) spans: one fd each on
 * the emulator, and SCM_RIGHTS carries at most 253 per message. */
#define ZD_ZONE_FDS_MAX 64

struct zd_zone_fds {
	int fd[ZD_ZONE_FDS_MAX];
	unsigned nr;         /* 1: fd[0] maps the whole range; else one per zone */
	uint64_t fd_offset;  /* where the first zone starts in fd[0]; per-zone fds: 0 */
};

struct zd_range {
	uint32_t zone, count;
};

struct zd_zone {
	uint64_t start;    /* bytes from the start of the device */
	uint64_t len;      /* zone size, bytes */
	uint64_t capacity; /* usable bytes from start; <= len */
	uint64_t wp;       /* absolute write pointer, bytes */
	uint8_t type;      /* enum zp_type */
	uint8_t cond;      /* enum zp_cond */
};

struct zd_dev_info {
	char backend[16];   /* "emulated" | "kernel" */
	char model[16];     /* "host-managed" | "host-aware" */
	char vendor[64];    /* sysfs device/vendor, or "zoned" for the emulator */
	char product[64];   /* sysfs device/model, or "emulated" */
	char scheduler[32]; /* active I/O scheduler, "none" for the emulator */
	uint64_t size;        /* bytes */
	uint64_t zone_size;   /* bytes */
	uint64_t zone_capacity; /* bytes, of the first sequential zone */
	uint32_t nr_zones;
	uint32_t nr_conventional;
	uint32_t max_open;    /* 0 = no limit */
	uint32_t max_active;  /* 0 = no limit */
	uint32_t logical_block_size;
	uint32_t physical_block_size;
	enum zd_isolation isolation; /* ZD_ISOLATION_DEVICE or ZD_ISOLATION_ZONE */
	char isolation_why[160];     /* why this mode (e.g. why not "zone") */
};

enum zd_zone_op {
	ZD_OP_OPEN,
	ZD_OP_CLOSE,
	ZD_OP_FINISH,
	ZD_OP_RESET,
};

/* Parameters of an emulated device; see zd_emul_parse_spec(). */
struct zd_emul_params {
	uint64_t size;
	uint64_t zone_size;
	uint64_t zone_capacity;
	uint32_t nr_conventional;
	uint32_t max_open;
	uint32_t max_active;
	uint32_t logical_block_size;
};

struct zd_dev;


/* Every operation may block (file or ioctl I/O): the daemon calls them only
 * from libuv's thread pool, and never two at once on one device (the daemon
 * serialises work per device), so a backend needs no locking of its own.
 * All return 0 or a negative errno. Error mapping a backend must follow:
 *   -EINVAL   bad arguments (zone index out of range is -ERANGE)
 *   -ERANGE   no such zone
 *   -EPERM    operation not valid for the zone type (e.g. reset of a
 *             conventional zone) or condition (read-only, offline)
 *   -EBUSY    explicit open beyond max_open, or a transition that would
 *             exceed max_active
 *   -EIO      device I/O failure
 *   -ENODEV, -ENXIO  the device is gone; the daemon marks it failed
 *             (daemon/device.c, zd_device_note) */
struct zd_backend_ops {
	/* Operations on disjoint zone ranges may run at once, on different
	 * threads of the pool (the daemon never runs two that overlap, nor
	 * anything beside one that covers the whole device). False: one
	 * operation at a time (the emulator, whose zones share its metadata
	 * file and open/active accounting). */
	bool concurrent;
	const char *name;
	void (*close)(struct zd_dev *dev);
	int (*info)(struct zd_dev *dev, struct zd_dev_info *info);
	/* Fills up to *nr zones starting at index `from` and sets *nr to the
	 * number filled (fewer at the end of the device). */
	int (*report)(struct zd_dev *dev, uint32_t from, struct zd_zone *zones, uint32_t *nr);
	/* Applies op to zones [zone, zone + count). On failure part of the
	 * range may have been done, as with the kernel ioctls. */
	int (*zone_op)(struct zd_dev *dev, enum zd_zone_op op, uint32_t zone, uint32_t count);
	/* Writes at byte offset `off` through the backend, obeying every zone
	 * rule (used by tests and the daemon's own writes, not the data path). */
	int (*pwrite)(struct zd_dev *dev, const void *buf, uint64_t len, uint64_t off);
	int (*pread)(struct zd_dev *dev, void *buf, uint64_t len, uint64_t off);
	/* Opens descriptors that reach zones [zone, zone + count), count <=
	 * ZD_ZONE_FDS_MAX; O_CLOEXEC always, flags add O_RDWR/O_RDONLY/O_DIRECT
	 * (anything else is -EINVAL). With isolate the descriptors reach
	 * nothing but those zones and lease_fence() can cut them off (only
	 * asked of a device whose info says "zone" isolation); without, they
	 * may reach more (the whole block device). The kernel backend gives
	 * one fd: a dm mapping of exactly the zones (isolate, fd_offset 0,
	 * created or adopted: a mapping a previous daemon left for the same
	 * range is reused), or the block device (fd_offset = the zone's start).
	 * The emulated backend gives one fd per zone, its zone file
	 * (fd_offset 0), isolate or not. count 0 (not isolated): one fd on
	 * the whole device (fd_offset 0) where there is one (kernel), else
	 * -EOPNOTSUPP. */
	int (*open_zones)(struct zd_dev *dev, uint32_t zone, uint32_t count, int flags,
			  bool isolate, struct zd_zone_fds *out);
	/* Zone isolation only: when it returns 0, no descriptor open_zones()
	 * gave out for any range inside [zone, zone + count) reaches those
	 * zones' data any more (kernel: the mapping's I/O fails with EIO after
	 * in-flight I/O finished; emulated: writes land in an unlinked inode),
	 * and the zones' data and state are intact. What open_zones() created
	 * is dropped once nothing holds it. Cheap when no descriptor is open
	 * any more (the client closed it). Idempotent. */
	int (*lease_fence)(struct zd_dev *dev, uint32_t zone, uint32_t count);
	/* Start-up, after the lease table was read: every isolation path of
	 * this device that a previous daemon left (kernel: dm mappings named
	 * for it) is fenced and removed, except those of the `nr` ranges in
	 * keep (the orphaned leases, reclaimed later). May be NULL. */
	int (*lease_sweep)(struct zd_dev *dev, const struct zd_range *keep, size_t nr);
	/* The descriptor whose being open keeps everyone else off the device
	 * (the emulator's locked directory, the kernel's O_EXCL claim),
	 * borrowed: the daemon keeps a copy in systemd's fd store so the claim
	 * outlives a restart, and gives it back to *_open_claimed(). May be
	 * NULL; -1 when there is none. */
	int (*claim_fd)(struct zd_dev *dev);
	/* Brings the state of one sequential zone up to date after a client
	 * wrote to it directly through an fd. The kernel backend reads it from
	 * the device and ignores hint_wp. The emulated backend takes hint_wp
	 * when it is != UINT64_MAX (it must be block-aligned, not behind the
	 * current wp and not past capacity, else -EINVAL); with no hint it
	 * infers the wp from the data present in the backing file. The implied
	 * condition change (implicit open, full) applies as for a write. */
	int (*refresh_zone)(struct zd_dev *dev, uint32_t zone, uint64_t hint_wp,
			    struct zd_zone *out);
	/* A release that needs no device work (both may be NULL; zone
	 * isolation only). probe_open gives a descriptor on one zone that the
	 * daemon keeps, never hands out, while the zone is leased.
	 * lease_probe is the one operation called on the event loop, so it
	 * does nothing that can wait for the device (an fstat or fcntl on
	 * probe_fd, no path lookup, no state of the backend's that a
	 * running work may be changing): 0 when the zone is exactly `cached`
	 * and nothing but probe_fd reaches it any more, so there is nothing
	 * to refresh and nothing to fence; 1 when it cannot tell or the zone
	 * changed (the daemon then runs the release on the pool as usual);
	 * or a negative errno. */
	int (*probe_open)(struct zd_dev *dev, uint32_t zone);
	/* Makes what the device acknowledged durable (a cache flush), for a
	 * release or lease.sync that found a zone's write pointer moved: the
	 * data below the wp they answer is on stable storage. NULL when
	 * refresh_zone already makes it so (the emulator syncs a zone's file
	 * before it records a new wp). */
	int (*flush)(struct zd_dev *dev);
	int (*lease_probe)(struct zd_dev *dev, uint32_t zone, int probe_fd,
			   const struct zd_zone *cached);
	/* A new descriptor opened with `flags` (open(2)'s, O_DIRECT falling
	 * back as open_zones does; *direct says which it got) on the file
	 * probe_fd holds, for a zone lease_probe just found untouched, so
	 * that it goes back to the ready set without a refill. Called on the
	 * loop, so no lookup in the device's directory: the same inode, which
	 * probe_fd pins. May be NULL; a negative errno declines. */
	int (*probe_reopen)(struct zd_dev *dev, uint32_t zone, int probe_fd, int flags,
			    bool *direct);
};

struct zd_dev {
	const struct zd_backend_ops *ops;
};

/* Emulated backend. `path` names the backing file; metadata lives beside it
 * (path + ".meta"). With create, a missing device is created with params; an
 * existing one is opened and its stored geometry wins (params are then only
 * checked for consistency where non-zero). After an unclean stop the zones
 * are repaired to agree with the data (see daemon/emul.c). */
int zd_emul_open(const char *path, const struct zd_emul_params *params, bool create,
		 enum zd_isolation iso, struct zd_dev **out);
/* As zd_emul_open, with the claim a previous daemon left (claim_fd(),
 * through systemd's fd store; taken, -1 for none): used when it is this
 * device's, so the device was never unlocked in between. */
int zd_emul_open_claimed(const char *path, const struct zd_emul_params *params, bool create,
			 enum zd_isolation iso, int claim_fd, struct zd_dev **out);
/* Parses "size=4G,zone-size=32M,zone-capacity=24M,conv=2,max-open=14,
 * max-active=14,lbs=4096" (each key optional) over the defaults in *params. */
int zd_emul_parse_spec(const char *spec, struct zd_emul_params *params);
void zd_emul_default_params(struct zd_emul_params *params);
/* Emulated backend only (tests, fault injection): puts one sequential zone
 * in the ZP_COND_READONLY or ZP_COND_OFFLINE condition, persistently (-EINVAL
 * for another cond, -EPERM for a conventional zone or offline -> read-only).
 * Like a real device's failed zone there is no way back; the zone then
 * reports wp = UINT64_MAX (invalid) and gives up its open/active slot. */
int zd_emul_set_cond(struct zd_dev *dev, uint32_t zone, enum zp_cond cond);
/* Emulated backend only (tests, the "faults" device key): arms a fault
 * spec, replacing the one taken from $ZONED_EMUL_FAULT at open ("" disarms
 * and brings a vanished device back; counters restart). The grammar is in
 * daemon/emul.c and zonedd(8). -EINVAL (logged) for a bad spec. */
int zd_emul_set_faults(struct zd_dev *dev, const char *spec);
/* Checks a fault spec without arming it; *why (if non-NULL) says what is
 * wrong. 0 or -EINVAL. */
int zd_emul_check_faults(const char *spec, const char **why);
/* Tests: the zones of the emulated device at path as its files hold them,
 * read without the lock (the device may be served meanwhile) and without
 * changing anything. *zones is malloc()ed, *nr its length. */
int zd_emul_peek(const char *path, struct zd_zone **zones, uint32_t *nr);

/* Kernel backend: validates and claims (O_EXCL) a zoned block device.
 * On failure *why (if non-NULL) receives a one-line reason. */
int zd_kernel_open(const char *path, enum zd_isolation iso, struct zd_dev **out, char *why,
		   size_t why_len);
/* As zd_kernel_open, with the O_EXCL claim (of the disk, or of its
 * whole-device mapping) a previous daemon left; taken, -1 for none. */
int zd_kernel_open_claimed(const char *path, enum zd_isolation iso, int claim_fd,
			   struct zd_dev **out, char *why, size_t why_len);

/* One fd on one zone, not isolated (tests, the daemon's own reads): the fd
 * or a negative errno; *fd_offset (if non-NULL) is where the zone starts. */
static inline int zd_dev_open_zone(struct zd_dev *dev, uint32_t zone, int flags,
				   uint64_t *fd_offset)
{
	struct zd_zone_fds zf;
	int r = dev->ops->open_zones(dev, zone, 1, flags, false, &zf);

	if (r < 0)
		return r;
	if (fd_offset)
		*fd_offset = zf.fd_offset;
	return zf.fd[0];
}

static inline void zd_dev_close(struct zd_dev *dev)
{
	if (dev)
		dev->ops->close(dev);
}

/* Parses a size with an optional K/M/G/T suffix (powers of 1024). */
int zd_parse_size(const char *s, uint64_t *out);

#endif
