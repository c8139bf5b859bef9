/* libzoned-client: the C client of zonedd, the zoned block device sharing
 * daemon. Every function returns 0 (or a count) on success and a negative
 * errno on failure; zc_strerror() turns it into text. The library never logs,
 * never exits and never raises signals (it sends with MSG_NOSIGNAL).
 *
 * Thread safety: one zc_client may be used from several threads at once.
 * Calls do not serialise behind each other: several are in flight on the
 * connection, each matched to its reply by id, so a waiting acquire in one
 * thread does not hold up another thread's call. A zc_zone_iter and a
 * zc_lease are meant for one thread at a time.
 *
 * The blocking functions are thin wrappers on a non-blocking core that an
 * event loop can drive itself: zc_client_fd() to poll, zc_client_process()
 * to run what is ready, and the *_async calls, which complete through a
 * callback (see "Asynchronous calls" below and libzoned-client(3)).
 *
 * ABI: the structs of 0.1 (zc_hello, zc_device, zc_zone, zc_report_opts,
 * zc_lease_opts, zc_lease_info, zc_stat) never change; what 0.2 and later add
 * comes in opaque handles with accessors (zc_event) or in structs that start
 * with their size (zc_call_opts), so a newer library serves older binaries. */
#ifndef ZONED_CLIENT_H
#define ZONED_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ZC_EXPORT __attribute__((visibility("default")))
#else
#define ZC_EXPORT
#endif

typedef struct zc_client zc_client;
typedef struct zc_zone_iter zc_zone_iter;
typedef struct zc_lease zc_lease;

/* Every error the daemon returns maps onto an errno:
 *   -32000 EIO, -32001 EACCES, -32002 ENODEV, -32003 ERANGE, -32004 EBUSY,
 *   -32005 ENOSPC, -32006 EUSERS, -32007 ESTALE, -32008 ETIMEDOUT,
 *   -32009 EPERM, -32010 EMSGSIZE, -32600/-32700 EPROTO,
 *   -32601 EOPNOTSUPP, -32602 EINVAL, -32603 EREMOTEIO.
 * zc_last_error() gives the daemon's message for the last failed call. */
ZC_EXPORT const char *zc_strerror(int err);

/* Connects to the daemon: path, else $ZONED_SOCKET, else /run/zoned/zonedd.sock,
 * and checks that it speaks this library's protocol version: a daemon of
 * another version is refused with -EPROTONOSUPPORT. Why a connect failed is
 * in zc_last_error(NULL) (per thread). */
ZC_EXPORT int zc_connect(const char *path, zc_client **out);
/* Closes the connection, which ends its leases in the daemon. Leases and
 * iterators not yet freed stay valid to free. Once the connection is gone
 * (zc_close, or the daemon hanging up, seen by any call on c) every call on
 * its leases fails with -ENOTCONN before any syscall, and each lease's fd
 * number is pointed at a descriptor that refuses writes: nothing written
 * through it reaches a zone the daemon took back. A lease the daemon called
 * stale (released, revoked) fails the same way with -ESTALE. */
ZC_EXPORT void zc_close(zc_client *c);
/* The daemon's message for the last failed call on this client in the
 * calling thread's view (a copy-free pointer valid until the next call);
 * for a failure the library found itself (a refused argument, a lost
 * connection) a message saying what was wrong; "" only when no call of this
 * thread on c failed. With c NULL: why this thread's last zc_connect()
 * failed ("" if none did). */
ZC_EXPORT const char *zc_last_error(zc_client *c);

struct zc_hello {
	uint32_t protocol;
	char version[32];
	int32_t pid;
	uint32_t uid;
	bool admin;   /* may run zone operations, force, list every lease */
	bool client;  /* may lease (member of the client group, or admin) */
};
ZC_EXPORT int zc_hello(zc_client *c, struct zc_hello *out);

enum zc_cond {
	ZC_COND_NOT_WP,
	ZC_COND_EMPTY,
	ZC_COND_IMP_OPEN,
	ZC_COND_EXP_OPEN,
	ZC_COND_CLOSED,
	ZC_COND_FULL,
	ZC_COND_READONLY,
	ZC_COND_OFFLINE,
	ZC_COND_COUNT
};
enum zc_type {
	ZC_TYPE_CONV,
	ZC_TYPE_SWR,
	ZC_TYPE_SWP,
	ZC_TYPE_COUNT
};
/* The protocol's names ("implicit-open", "seq-write-required"...); "unknown"
 * for a value out of range. */
ZC_EXPORT const char *zc_cond_name(enum zc_cond cond);
ZC_EXPORT const char *zc_type_name(enum zc_type type);
/* Returns the enum value or -EINVAL. */
ZC_EXPORT int zc_cond_from_name(const char *name);
ZC_EXPORT int zc_type_from_name(const char *name);

struct zc_device {
	char id[64];
	char path[256];
	char backend[16];  /* "emulated" | "kernel" */
	char model[16];    /* "host-managed" | "host-aware" */
	uint32_t nr_zones;
	uint64_t zone_size;     /* bytes */
	uint64_t capacity;      /* bytes, whole device */
	uint32_t free_zones;
	uint32_t leased_zones;
	/* Filled by zc_device_info only: */
	char vendor[64];
	char product[64];
	char scheduler[32];
	uint64_t zone_capacity; /* bytes */
	uint32_t logical_block_size;
	uint32_t physical_block_size;
	uint32_t max_open;      /* 0 = no limit */
	uint32_t max_active;    /* 0 = no limit */
	uint32_t nr_conventional;
	uint32_t cond_count[ZC_COND_COUNT];
};

/* Fills up to max entries; returns the number of devices the daemon has
 * (which may exceed max) or a negative errno. */
ZC_EXPORT int zc_device_list(zc_client *c, struct zc_device *devs, size_t max);
ZC_EXPORT int zc_device_info(zc_client *c, const char *device, struct zc_device *out);

struct zc_zone {
	uint32_t index;
	uint64_t start;    /* bytes */
	uint64_t len;      /* bytes */
	uint64_t capacity; /* bytes */
	uint64_t wp;       /* absolute, bytes */
	enum zc_type type;
	enum zc_cond cond;
};

struct zc_report_opts {
	uint32_t from;      /* first zone index */
	uint32_t count;     /* 0 = to the end */
	uint32_t cond_mask; /* bit (1 << enum zc_cond); 0 = any */
	uint32_t type_mask; /* bit (1 << enum zc_type); 0 = any */
};
/* Lazily pages through zone.report. opts may be NULL. */
ZC_EXPORT int zc_zone_iter_new(zc_client *c, const char *device,
			       const struct zc_report_opts *opts, zc_zone_iter **out);
/* Returns 1 with *zone filled, 0 at the end, or a negative errno. */
ZC_EXPORT int zc_zone_iter_next(zc_zone_iter *it, struct zc_zone *zone);
ZC_EXPORT void zc_zone_iter_free(zc_zone_iter *it);

enum zc_zone_op {
	ZC_ZONE_OPEN,
	ZC_ZONE_CLOSE,
	ZC_ZONE_FINISH,
	ZC_ZONE_RESET,
};
/* Admin only. With force, revokes leases on the zones. `zones` (may be NULL)
 * receives up to max zones after the operation. Returns the number of zones
 * reported or a negative errno. */
ZC_EXPORT int zc_zone_op(zc_client *c, const char *device, enum zc_zone_op op,
			 uint32_t zone, uint32_t count, bool force,
			 struct zc_zone *zones, size_t max);

/* Leases. */
enum zc_prefer {
	ZC_PREFER_ANY = 0,
	ZC_PREFER_EMPTY,
	ZC_PREFER_PARTIAL,
};
struct zc_lease_opts {
	const char *device;   /* NULL = any device */
	int64_t zone;         /* -1 = the allocator picks */
	uint64_t min_free;    /* bytes of free capacity wanted; 0 = any */
	enum zc_prefer prefer;
	uint32_t wait_ms;     /* 0 = fail at once when nothing is free */
	bool buffered;        /* true: the fd is opened without O_DIRECT */
	const char *label;    /* free text shown in lease lists; may be NULL */
};
ZC_EXPORT void zc_lease_opts_init(struct zc_lease_opts *opts);
ZC_EXPORT int zc_lease_acquire(zc_client *c, const struct zc_lease_opts *opts, zc_lease **out);
/* A lease of count (1..64) consecutive zones, from opts->zone or wherever
 * the daemon finds count empty zones in a row; opts->min_free is over the
 * range. Appends fill the zones in order (a write that crosses a zone's
 * capacity continues in the next zone), reads take an offset from the first
 * zone's start and stop at the capacity of the zone they start in. The
 * accessors below give the first zone's start, len and capacity; wp is where
 * the next append goes. Since 0.2. */
ZC_EXPORT int zc_lease_acquire_zones(zc_client *c, const struct zc_lease_opts *opts,
				     uint32_t count, zc_lease **out);
/* Zones in the lease (1 unless acquired with zc_lease_acquire_zones). */
ZC_EXPORT uint32_t zc_lease_count(const zc_lease *l);
/* The fd that reaches zone i of the lease (0 = the first), borrowed, and
 * where that zone starts in it (*fd_offset). Since 0.2. */
ZC_EXPORT int zc_lease_zone_fd(const zc_lease *l, uint32_t i, uint64_t *fd_offset);

ZC_EXPORT uint64_t zc_lease_id(const zc_lease *l);
ZC_EXPORT uint64_t zc_lease_token(const zc_lease *l);
ZC_EXPORT const char *zc_lease_device(const zc_lease *l);
/* The passed descriptor, borrowed: it stays owned by the lease. For a
 * lease of several zones on a device that passes one fd per zone, the
 * first zone's (see zc_lease_zone_fd). */
ZC_EXPORT int zc_lease_fd(const zc_lease *l);
ZC_EXPORT uint32_t zc_lease_zone(const zc_lease *l);
ZC_EXPORT uint64_t zc_lease_start(const zc_lease *l);
ZC_EXPORT uint64_t zc_lease_len(const zc_lease *l);
ZC_EXPORT uint64_t zc_lease_capacity(const zc_lease *l);
/* The locally tracked absolute write pointer. */
ZC_EXPORT uint64_t zc_lease_wp(const zc_lease *l);
/* Where the zone starts within zc_lease_fd(): 0 when the fd reaches only
 * the zone (zone isolation), the zone's start when it is the whole device.
 * Byte b of the zone is at fd_offset + b in the fd. Since 0.2. */
ZC_EXPORT uint64_t zc_lease_fd_offset(const zc_lease *l);
ZC_EXPORT uint32_t zc_lease_block_size(const zc_lease *l);
/* Whether the fd really is O_DIRECT (an emulated device on tmpfs cannot be),
 * and so whether appends need block-aligned buffers. */
ZC_EXPORT bool zc_lease_direct(const zc_lease *l);
ZC_EXPORT const char *zc_lease_label(const zc_lease *l);

/* Writes at the write pointer and advances it. len must be a whole number
 * of blocks; with O_DIRECT the buffer must be block-aligned. Returns 0 or a
 * negative errno (-ENOSPC past capacity, -EINVAL misaligned, -ESTALE released). */
ZC_EXPORT int zc_lease_append(zc_lease *l, const void *buf, size_t len);
ZC_EXPORT int zc_lease_appendv(zc_lease *l, const struct iovec *iov, int iovcnt);
/* Reads at offset (bytes, relative to the zone start), clamped to the
 * zone's capacity: returns bytes read, 0 at the capacity, -EINVAL past it. */
ZC_EXPORT ssize_t zc_lease_pread(zc_lease *l, void *buf, size_t len, uint64_t offset);
ZC_EXPORT ssize_t zc_lease_preadv(zc_lease *l, const struct iovec *iov, int iovcnt, uint64_t offset);
/* Tells the daemon the local write pointer and takes back its view. */
ZC_EXPORT int zc_lease_sync(zc_lease *l);
ZC_EXPORT int zc_lease_reset(zc_lease *l);
ZC_EXPORT int zc_lease_finish(zc_lease *l);
enum zc_release_then {
	ZC_RELEASE_KEEP,
	ZC_RELEASE_FINISH,
	ZC_RELEASE_RESET,
};
/* Releases the lease and frees it (also on error). l may be NULL. */
ZC_EXPORT int zc_lease_release(zc_lease *l, enum zc_release_then then);
/* A buffered append stream over the lease (mode "w"): pads the last block
 * with zeros on fclose and syncs. The lease must outlive the FILE. */
ZC_EXPORT FILE *zc_lease_fopen(zc_lease *l, const char *mode);

/* Read-only fd of a whole device, for readers that need no lease. Caller
 * owns it. A device that has no whole-device descriptor (an emulated
 * device stores one file per zone) fails with -EINVAL: use zc_zone_open. */
ZC_EXPORT int zc_device_open(zc_client *c, const char *device);
/* Read-only fd that reaches zone `zone` of the device (and maybe more);
 * the zone starts at *fd_offset within it. Caller owns it. Since 0.2. */
ZC_EXPORT int zc_zone_open(zc_client *c, const char *device, uint32_t zone,
			   uint64_t *fd_offset);

/* The leases the daemon holds: this connection's, or with all (admin) every
 * client's. Fills up to max; returns the number of leases (may exceed max). */
struct zc_lease_info {
	uint64_t id;
	char device[64];
	uint32_t zone;
	uint64_t wp;        /* absolute, bytes, as the daemon last saw it */
	char label[128];
	int32_t pid;
	uint32_t uid;
	uint64_t age_ms;
};
ZC_EXPORT int zc_lease_list(zc_client *c, bool all, struct zc_lease_info *out, size_t max);

/* The daemon's counters (daemon.stats), flattened: a nested object's
 * counters are named "outer.inner". Fills up to max; returns the number of
 * counters (may exceed max). */
struct zc_stat {
	char name[64];
	uint64_t value;
};
ZC_EXPORT int zc_daemon_stats(zc_client *c, struct zc_stat *out, size_t max);

/* --- Asynchronous calls (0.2) ------------------------------------------
 *
 * zc_client_fd() returns a descriptor (owned by c; do not close it) that
 * polls readable whenever zc_client_process() has work: a reply or an event
 * arrived, a queued request can be sent, an asynchronous call timed out.
 * Poll it for reading only (it is an epoll descriptor) and call
 * zc_client_process() when it is ready; the descriptor stays the same for
 * the client's life. zc_client_process() never blocks; it runs the
 * callbacks of answered calls and the event callback in the calling
 * thread, and returns how many it ran, or -ENOTCONN once the connection is
 * gone (after running the callbacks that failed with it).
 *
 * Every asynchronous call returns its request id (> 0) or a negative errno
 * (then its callback never runs); its callback runs exactly once: from
 * zc_client_process() with the outcome, with -ETIMEDOUT when its timeout
 * passed, -ECANCELED after zc_call_cancel(), or from zc_close() with
 * -ENOTCONN. zc_last_error(c) in the callback describes a failure. */
ZC_EXPORT int zc_client_fd(zc_client *c);
ZC_EXPORT int zc_client_process(zc_client *c);

#define ZC_TIMEOUT_NONE UINT32_MAX
/* The bound of every call on c that names none (0 restores the default, 30 s;
 * ZC_TIMEOUT_NONE: none). An acquire with wait_ms > 0 has no bound unless
 * one is given: the daemon answers it by wait_ms. A timed-out acquire is
 * given back to the daemon when its late reply arrives. */
ZC_EXPORT int zc_client_set_timeout(zc_client *c, uint32_t timeout_ms);

/* Reconnect mode (off by default; max_ms 0 turns it off). Leases acquired
 * from then on are "reclaimable": losing the connection (a daemon restart,
 * a dropped socket) orphans them in the daemon for its grace period instead
 * of releasing them. On a loss the library retries the socket with a
 * backoff of 10 ms doubling up to 1 s, for at most max_ms; once connected it
 * checks the protocol, renews the event subscription and reclaims every
 * lease (lease.reclaim), putting the fresh fd on the lease's fd number
 * (dup3) and taking the write pointer from the device.
 * Meanwhile every call on a lease (append, read, sync, ...) fails with
 * -EAGAIN before any syscall, and the raw fd refuses writes: nothing is
 * written to a zone that may be someone else's. The library does not block
 * and has no thread of its own: each call (and zc_client_process(), woken by
 * zc_client_fd() when an attempt is due) makes the attempt that is due.
 * A lease the daemon does not give back (its grace ended, it was revoked)
 * fails its next call with -ESTALE; after max_ms without a daemon, with
 * -ENOTCONN, as every call does. A call in flight when the connection
 * drops fails with -ECONNRESET; other calls fail with -EAGAIN while
 * reconnecting. Releasing a lease that waits for its reclaim fails with
 * -EAGAIN and forgets it; the daemon releases it when its grace ends, as
 * it does the leases still held at zc_close() (release them first). */
ZC_EXPORT int zc_client_set_reconnect(zc_client *c, uint32_t max_ms);

/* Options of one call; set size to sizeof(struct zc_call_opts) (the INIT
 * macro does), so later versions can add fields. NULL = defaults. */
struct zc_call_opts {
	uint32_t size;
	uint32_t timeout_ms; /* 0 = the default; ZC_TIMEOUT_NONE = none */
};
#define ZC_CALL_OPTS_INIT { .size = sizeof(struct zc_call_opts), .timeout_ms = 0 }

/* Drops interest in a call: its callback runs with -ECANCELED at the next
 * zc_client_process(); a lease its reply grants later is given back. */
ZC_EXPORT int zc_call_cancel(zc_client *c, uint64_t call_id);

typedef void (*zc_hello_cb)(zc_client *c, int err, const struct zc_hello *hello, void *userdata);
ZC_EXPORT int64_t zc_hello_async(zc_client *c, const struct zc_call_opts *copts, zc_hello_cb cb,
				 void *userdata);
/* The lease (NULL on error) is the callback's to keep and release. */
typedef void (*zc_lease_cb)(zc_client *c, int err, zc_lease *lease, void *userdata);
ZC_EXPORT int64_t zc_lease_acquire_async(zc_client *c, const struct zc_lease_opts *opts,
					 const struct zc_call_opts *copts, zc_lease_cb cb,
					 void *userdata);
typedef void (*zc_done_cb)(zc_client *c, int err, void *userdata);
/* As zc_lease_sync; the lease must stay alive until the callback. */
ZC_EXPORT int64_t zc_lease_sync_async(zc_lease *l, const struct zc_call_opts *copts,
				      zc_done_cb cb, void *userdata);
/* As zc_lease_release: l is freed before the callback runs, also on error;
 * data calls on it fail with -ESTALE from now on. */
ZC_EXPORT int64_t zc_lease_release_async(zc_lease *l, enum zc_release_then then,
					 const struct zc_call_opts *copts, zc_done_cb cb,
					 void *userdata);
/* Any method: params_json is a JSON object as text (NULL: none); the
 * callback receives the result as JSON text (NULL on error) and the fd the
 * reply carried (-1 if none), which it then owns. */
typedef void (*zc_json_cb)(zc_client *c, int err, const char *result_json, int fd,
			   void *userdata);
ZC_EXPORT int64_t zc_call_async(zc_client *c, const char *method, const char *params_json,
				const struct zc_call_opts *copts, zc_json_cb cb, void *userdata);

/* --- Events (0.2) --------------------------------------------------------
 *
 * zc_events_subscribe asks the daemon for events (proto/PROTOCOL.md,
 * "Events"): types and devices are NULL-terminated lists, NULL for all.
 * Types name an event ("lease.revoked") or a family ("lease"). A non-admin
 * sees the events of its own uid's leases and the device, zone and daemon
 * events. Events reach the application, once it subscribed, through the
 * event callback (run by zc_client_process) or zc_event_next; the library keeps at most 1024
 * unread ones, then drops and reports the loss as an "overflow" event, as
 * the daemon does when the application reads too slowly.
 *
 * Whether subscribed or not, the library learns at once of the revocation
 * of its own leases: the lease is marked and its next data call fails with
 * -ESTALE before any syscall (a data call first reads what the daemon sent,
 * without waiting, when no other thread is using the connection). */
typedef struct zc_event zc_event;
ZC_EXPORT int zc_events_subscribe(zc_client *c, const char *const *types,
				  const char *const *devices);
ZC_EXPORT int zc_events_unsubscribe(zc_client *c);
typedef void (*zc_event_cb)(zc_client *c, const zc_event *ev, void *userdata);
/* NULL stops the callback; events then wait for zc_event_next. */
ZC_EXPORT int zc_client_set_event_cb(zc_client *c, zc_event_cb cb, void *userdata);
/* Waits up to timeout_ms (0: do not wait; ZC_TIMEOUT_NONE: for ever) for
 * the next event: 1 with *out (free it with zc_event_free), 0 when none came,
 * or a negative errno (-ENOTCONN once the connection is gone). */
ZC_EXPORT int zc_event_next(zc_client *c, uint32_t timeout_ms, zc_event **out);
ZC_EXPORT void zc_event_free(zc_event *ev);
/* "lease.acquired", "lease.released", "lease.revoked", "zone.changed",
 * "device.added", "device.removed", "daemon.reloading", "overflow", ... */
ZC_EXPORT const char *zc_event_type(const zc_event *ev);
ZC_EXPORT uint64_t zc_event_seq(const zc_event *ev);
ZC_EXPORT uint64_t zc_event_time_ms(const zc_event *ev); /* since the epoch */
ZC_EXPORT const char *zc_event_device(const zc_event *ev); /* NULL if none */
ZC_EXPORT int64_t zc_event_zone(const zc_event *ev);       /* -1 if none */
ZC_EXPORT uint64_t zc_event_lease(const zc_event *ev);     /* lease id, 0 if none */
ZC_EXPORT uint64_t zc_event_lost(const zc_event *ev);      /* "overflow": events lost */
/* The whole event (the notification's params) as JSON text. */
ZC_EXPORT const char *zc_event_json(const zc_event *ev);

#ifdef __cplusplus
}
#endif
#endif
