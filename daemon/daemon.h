/* zonedd's internal state: the daemon context, devices with their cached
 * zone table and per-device work queue, connections, calls and leases.
 * Everything here is owned by the event loop thread; the thread pool only
 * ever touches a zd_work and the zd_dev it names. */
#ifndef ZONED_DAEMON_H
#define ZONED_DAEMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <uv.h>

#include "daemon/alloc.h"
#include "daemon/conf.h"
#include "daemon/list.h"
#include "daemon/waiters.h"
#include "daemon/zdev.h"
#include "daemon/zstore.h"
#include "proto/proto.h"

struct zd_daemon;
struct zd_conn;
struct zd_lease;

/* Copies with truncation; returns -ENAMETOOLONG when src did not fit. */
static inline int zd_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size == 0)
		return -ENAMETOOLONG;
	if (len >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return -ENAMETOOLONG;
	}
	memcpy(dst, src, len + 1);
	return 0;
}

/* Allocator classes of a zone (one intrusive index list per class). */
enum zd_zclass {
	ZD_ZC_NONE,    /* conventional, read-only, offline: never leased by the allocator */
	ZD_ZC_EMPTY,   /* unleased, empty */
	ZD_ZC_PARTIAL, /* unleased, written but not full (open or closed) */
	ZD_ZC_FULL,    /* unleased, full */
	ZD_ZC_LEASED,
	ZD_ZC_COUNT
};

#define ZD_NIL UINT32_MAX

/* A free, empty zone opened ahead of the lease.acquire that takes it, so
 * the loop can grant it without a trip through the work queue (see "the
 * ready set" in device.c). */
struct zd_ready {
	uint32_t zone;
	int fd;                     /* the client's: open_zones(flags, isolate) */
	int probe_fd;               /* the daemon's own (ops->probe_open) */
	int flags;                  /* the open flags fd was asked with */
	bool direct;                /* fd is O_DIRECT (the backend may fall back) */
};
#define ZD_READY_MAX 64
struct ready_fill;

/* An acquire that found the ready set empty and a refill on its way: it
 * waits for that instead of queueing a grant of its own behind it. */
struct zd_ready_waiter {
	struct zd_list link;        /* in dev->ready_waiters */
	void (*ready)(struct zd_ready_waiter *rw);
};

struct zd_device {
	struct zd_daemon *d;
	struct zd_list link;      /* in d->devices */
	char id[ZD_ID_MAX];
	char path[PATH_MAX];
	struct zd_dev *dev;
	struct zd_dev_info info;

	/* Cached zone table: the daemon's view, refreshed after every device
	 * operation. The device may run ahead of it (clients write directly);
	 * only the leased zones can, and only the lease owner. */
	struct zd_zone_store zs;    /* read through zd_device_zone() */
	struct zd_lease **lease_of; /* per zone, NULL when unleased */
	uint8_t *zclass;
	uint32_t *znext, *zprev;    /* class lists, ZD_NIL terminated */
	uint32_t class_head[ZD_ZC_COUNT];
	uint32_t class_count[ZD_ZC_COUNT];
	uint32_t cond_count[ZP_COND_COUNT];
	uint32_t leased_exp_open;   /* leased zones in the explicit-open condition */
	bool bad_report_logged;     /* a zone the store could not hold was logged */
	struct zd_free_index free_index; /* unleased partial zones by free space */
	struct zd_run_index empty_runs;  /* the ZD_ZC_EMPTY zones, for ranges */

	/* Work serialisation: at most one zd_work runs per device. */
	struct zd_list work_queue;
	struct zd_list work_running; /* started, not done; at most ZD_DEVICE_PARALLEL */
	unsigned nr_running;
	unsigned peak_running;      /* the most ever at once (device.info) */
	bool draining;              /* removed from the config: no new leases */
	/* The device failed (zd_device_fail): it takes no new work, its leases
	 * are revoked, and device.list/info show why. Not undone: a restart
	 * (or a reload that adds it again) opens the device afresh. */
	bool failed;
	char failure[192];
	bool claim_stored;          /* its claim fd is in systemd's fd store */
	/* EIO failures in a row (no operation succeeded meanwhile), and
	 * whether they touched more than one zone: see zd_device_note(). */
	unsigned eio_streak;
	uint32_t eio_zone;
	bool eio_spread;
	unsigned refs;              /* works queued or running, and waiters, hold a ref */
	struct zd_waitq waitq;      /* lease.acquire calls waiting for a zone of it */
	struct zd_ready ready[ZD_READY_MAX];
	unsigned nr_ready;
	int ready_flags;            /* what the next refill opens */
	bool ready_off;             /* the backend declined to open zones ahead */
	uint64_t ready_retry_ms;    /* a fill that opened nothing: none before then */
	struct ready_fill *filling; /* the refill in flight, or NULL */
	struct zd_list ready_waiters; /* no more of them than it brings */
	unsigned ready_promised;    /* ... their count */
};

/* A unit of blocking device work, run on the libuv thread pool. `run`
 * executes there and may only touch the work and dev->dev; `done` runs on
 * the loop with the result. */
struct zd_work {
	uv_work_t req;
	struct zd_list link;
	struct zd_device *dev;
	int (*run)(struct zd_work *w);
	void (*done)(struct zd_work *w, int status);
	void *data;
	int status;
	/* Common payload. */
	enum zd_zone_op op;
	uint32_t zone, count;
	uint64_t hint_wp;
	struct zd_zone *zbuf;       /* report / refreshed zones */
	uint32_t nz;
	int open_flags;
	struct zd_zone_fds zf;      /* open_zones' answer */
	bool isolate;               /* open_zones: the lease's own path */
	/* A zone op: zones to refresh first (the span of those taken from
	 * leases); count 0 for none. */
	uint32_t refresh_from, refresh_count;
	/* The work's failure is one zone's, fail_zone's (a lease's zone, the
	 * zone a range operation stopped at), not the whole device's: see
	 * zd_device_note(). */
	bool zone_work;
	uint32_t fail_zone;
	/* After a failure, zone `fail_zone` is reported again (on the pool, by
	 * device.c) and the cache updated before `done` runs: a zone that
	 * turned read-only or offline under the operation is known at once. */
	bool recheck;
	/* Changes no zone (a report, the ready set's own refill): the ready
	 * set keeps the zones it covers. */
	bool reads_only;
	bool have_after;
	struct zd_zone after;
};

int zd_work_queue(struct zd_device *dev, struct zd_work *w);
/* Works of one device on the pool at once (concurrent backends, disjoint
 * zones): one of libuv's four threads stays for the other devices and the
 * lease table's syncs. */
#define ZD_DEVICE_PARALLEL 3

/* A call: one JSON-RPC request in flight. Handlers fill `result` or set an
 * error, then either return 0 (done now) or ZD_ASYNC and call
 * zd_call_complete() later. */
#define ZD_ASYNC 1
struct zd_call {
	struct zd_conn *conn;       /* NULL once the connection died */
	struct zd_batch *batch;
	struct json_object *id;     /* owned; NULL for a notification */
	struct json_object *result; /* owned */
	/* Or the result as the text of an object, owned (zd_call_result_begin):
	 * the hot replies, written without json-c objects. */
	char *result_text;
	size_t result_len;
	int err_code;               /* 0 = success */
	char err_msg[256];
	struct json_object *err_data; /* owned */
	/* Attached to the reply, owned; the result gets "fd" (the first's
	 * index in the packet) and "nfds". */
	int fds[ZP_MAX_FDS];
	unsigned nfds;
	bool is_notification;
	char *resp;                 /* the serialised response, once done */
	size_t resp_len;
};

void zd_call_error(struct zd_call *call, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Maps a negative errno from the device layer to a JSON-RPC error. */
void zd_call_errno(struct zd_call *call, int err, const char *what);
void zd_call_complete(struct zd_call *call);
/* The call's result written as text: begin points w at a buffer of cap
 * bytes the call owns (else the call has its error, what, and -ENOMEM);
 * end makes what w wrote the result, an object's text (or, past cap, the
 * call's error). */
int zd_call_result_begin(struct zd_call *call, struct zp_jw *w, size_t cap, const char *what);
void zd_call_result_end(struct zd_call *call, const struct zp_jw *w, const char *what);

enum zd_method_flags {
	ZD_M_ANYONE = 0,     /* allowed before any group check */
	ZD_M_CLIENT = 1 << 0,/* members of the client group (or admins) */
	ZD_M_ADMIN = 1 << 1, /* uid 0, the daemon's uid, the admin group */
	/* Hands out something only the reply names (a lease, an fd): sent as a
	 * notification it is not run, or it would hold a zone nobody knows of. */
	ZD_M_REPLY = 1 << 2,
};

struct zd_method {
	const char *name;
	int (*handler)(struct zd_daemon *d, struct zd_call *call, struct json_object *params);
	unsigned flags;
	/* Every parameter the method knows; any other is refused, so a typo
	 * ("wait" for "wait_ms") is an error rather than silently ignored. */
	const char *const *params;
};
/* Each module keeps its methods in its own static table and binds it at
 * start-up (sd-varlink's bind-method style); dispatch searches the bound
 * tables in order. */
struct zd_method_table {
	struct zd_list link;        /* in d->method_tables */
	const struct zd_method *methods;
	size_t nr_methods;
};
void zd_method_table_bind(struct zd_daemon *d, struct zd_method_table *t);
const struct zd_method *zd_method_find(struct zd_daemon *d, const char *name);

/* What a module does when a connection opens and closes, and when the
 * daemon stops and is torn down: the transport calls these and knows
 * nothing of what the modules keep (leases, waiters). A close hook runs
 * once, with the connection still whole, before its socket is closed;
 * `stop` runs after every connection closed, `fini` after the loop ended
 * and before the devices are freed. Any may be NULL. */
struct zd_hooks {
	struct zd_list link;        /* in d->hooks */
	void (*conn_open)(struct zd_conn *conn);
	void (*conn_close)(struct zd_conn *conn);
	void (*stop)(struct zd_daemon *d);
	void (*fini)(struct zd_daemon *d);
};
void zd_hooks_add(struct zd_daemon *d, struct zd_hooks *hook);

/* What one uid holds across its connections; capped by the config. */
struct zd_user {
	struct zd_list link;        /* in d->users */
	uid_t uid;
	unsigned refs;              /* connections, closed ones not yet freed included */
	unsigned nr_conns;          /* open connections */
	unsigned nr_waiters;
	size_t mem;                 /* bytes held for its requests and replies */
	struct zd_list conns;       /* its open connections (zd_conn.user_link) */
};

struct zd_conn {
	struct zd_daemon *d;
	struct zd_user *user;
	struct zd_list user_link;   /* in user->conns while open */
	size_t mem;                 /* bytes held for its requests and replies */
	struct zd_list link;
	int fd;
	uv_poll_t poll;
	int poll_events;             /* what poll is started with */
	bool closing;
	unsigned refs;              /* calls in flight hold a ref */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool admin;
	bool client;                /* may lease */
	uint64_t serial;
	struct zd_list leases;
	unsigned nr_leases;
	struct zd_list out;         /* queued replies when the socket is full */
	size_t out_bytes;
	unsigned batches;           /* packets whose reply is not sent yet */
	struct zd_list waiters;     /* its waiting acquires (zd_waiter.conn_link) */
	struct zd_list waiters_parked; /* of those, the ones at its lease limit */
	unsigned nr_waiters;
	struct zd_subscription *events; /* events.subscribe; NULL when none (daemon/events.c) */
};

/* A lease's life; zd_lease_set_state() checks every change against
 * daemon/lease.c's transition table. */
enum zd_lease_state {
	ZD_LEASE_GRANTING,   /* zone reserved, fd being opened: not the client's yet */
	ZD_LEASE_HELD,       /* the owner's connection has it */
	ZD_LEASE_ORPHANED,   /* no owner (daemon restart, or a reclaimable lease's
			      * connection lost): zone kept for the grace period */
	ZD_LEASE_RECLAIMING, /* lease.reclaim opening a fresh fd */
	ZD_LEASE_RELEASING,  /* gone for the owner; release work in flight */
	ZD_LEASE_REVOKED,    /* zone taken back; operations still in flight */
	ZD_LEASE_FREE,       /* ended; freed once no operation is in flight */
	ZD_LEASE_NR_STATES
};

struct zd_lease {
	enum zd_lease_state state;
	struct zd_list conn_link;   /* in conn->leases while conn is set */
	struct zd_conn *conn;
	struct zd_list orphan_link; /* in d->orphans while orphaned */
	struct zd_device *dev;
	uint32_t zone, count;       /* zones [zone, zone + count) */
	uint64_t id;
	uint64_t token;
	uint64_t granted_ms;
	uint64_t fd_offset;         /* where the first zone starts in the fd given out */
	uint64_t orphan_until_ms;   /* end of the grace, while orphaned */
	char label[128];
	pid_t pid;                  /* the owner's, kept for logs after it left */
	uid_t uid;
	bool direct;
	bool reclaimable;           /* orphaned, not released, when its connection dies */
	bool persisted;             /* in the lease table (or its record queued) */
	/* Zone isolation: its own path to the zones was cut (by the release
	 * work) or never given out; else ending it queues a fence first. */
	bool fenced;
	struct zd_list persist_link;/* in d->persisted while persisted */
	/* Device operations on it in flight, the grant included. A count, not
	 * a flag: a client may pipeline several (a batch of two lease.sync),
	 * and a revoked lease may only be freed after the last one is done. */
	unsigned busy;
	struct zd_list waiters;     /* acquires waiting for this zone, parked */
	/* Granted from the ready set: the daemon's own descriptor on the
	 * zone, for a release the loop can answer (ops->lease_probe); -1. */
	int probe_fd;
	/* In d->lease_ids from birth to free: by id in O(1), in id order for
	 * a paged lease.list. */
	struct zd_list id_link;     /* in the id-ordered list */
	struct zd_lease *id_next;   /* the hash bucket's chain */
};

/* Every lease in memory, whatever its state, by id. */
struct zd_lease_ids {
	struct zd_list order;       /* ascending id */
	struct zd_lease **bucket;
	size_t nr_buckets;          /* a power of two, or 0 */
	size_t nr;
};

struct zd_stats {
	uint64_t connections;
	uint64_t connections_refused;
	uint64_t requests;
	uint64_t leases_granted;
	uint64_t leases_released;
	uint64_t leases_revoked;
	uint64_t grants_ready;       /* granted from a device's ready set */
	uint64_t releases_untouched; /* answered on the loop (lease_probe) */
	uint64_t ready_recycled;     /* of those, zones back in the ready set */
	uint64_t waits;
	uint64_t wait_timeouts;
	uint64_t errors[16];        /* by -(code) - 32000 for -32000..-32015 */
	uint64_t std_errors[5];     /* -32700, -32600, -32601, -32602, -32603 */
};

struct zd_daemon {
	uv_loop_t *loop;
	uint64_t event_seq;         /* the last event's sequence number */
	struct zd_config cfg;
	int listen_fd;
	bool listen_owned;          /* we created (and will unlink) the socket */
	uv_poll_t listen_poll;
	/* Out of fds, accept() would fail at once forever: listen_poll rests and
	 * this timer resumes it; the log line is rate-limited. */
	uv_timer_t accept_timer;
	bool accept_logged;
	uint64_t accept_log_ms;
	uint64_t accept_failures;   /* not logged since accept_log_ms */
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t watchdog;
	uint64_t watchdog_usec;
	struct zd_list devices;
	struct zd_list conns;
	unsigned nr_conns;
	uid_t uid;
	gid_t admin_gid, client_gid;
	bool have_admin_gid, have_client_gid;
	uint64_t generation;        /* from the state dir, bumped per start */
	uint64_t next_lease_id;
	uint64_t next_token_seq;
	/* daemon/state.c: the checked state directory, and whether the
	 * current generation is persisted (no token is minted otherwise). */
	int state_fd;
	bool have_state_fd;
	bool generation_ok;
	int generation_err;
	uint64_t generation_retry_ms;
	struct zd_stats stats;
	uint64_t start_ms;          /* zd_now_ms() at init, for daemon.stats' uptime_ms */
	pid_t pid;                  /* ours, for daemon.hello without a syscall */
	bool stopping;
	bool listening;             /* signal and watchdog handles exist */
	int exit_status;
	char *msgbuf;               /* receive buffer, ZP_MSG_MAX + 1 */
	char *outbuf;               /* a reply being written, ZP_MSG_MAX */
	/* Hooks main installs: SIGHUP reload, and shutdown of main's own state. */
	void (*reload)(struct zd_daemon *d);
	void (*stop_hook)(struct zd_daemon *d);
	struct zd_list users;       /* struct zd_user, one per uid connected */
	struct zd_waitq any_waiters;/* lease.acquire calls that take any device */
	struct zd_list release_waiters; /* no-wait acquires waiting for releases in flight */
	struct zd_list kick_pending;/* waiter queues to serve on the next idle turn */
	uv_idle_t kick_idle;        /* .data is NULL until initialised */
	unsigned nr_releasing;      /* leases whose release work is in flight */
	size_t mem;                 /* bytes held for every connection (zd_conn.mem) */
	bool mem_high;              /* mem passed the trim mark since the last trim */
	uint64_t refused_log_ms;    /* last "connection refused" log line */
	uint64_t refused_unlogged;  /* refusals since, not logged */
	struct zd_list hooks;       /* struct zd_hooks */
	struct zd_list method_tables; /* struct zd_method_table */
	struct zd_hooks lease_hooks;
	/* daemon/lease.c: leases without an owner, and the one timer that
	 * ends the grace of the first of them. */
	struct zd_list orphans;
	uv_timer_t grace_timer;     /* .data is NULL until initialised */
	struct zd_list persisted;   /* leases in the lease table */
	struct zd_lease_ids lease_ids;
	size_t nr_persisted;
	/* daemon/state.c: the lease table's append log, and its group
	 * commit: records pending, the batch in flight on the thread pool. */
	int lease_log_fd;
	bool have_lease_log;
	int lease_table_err;        /* the table could not be read at start */
	uint64_t lease_log_size;
	uint64_t lease_log_records;
	struct zd_list log_pending, log_batch;
	struct zd_list log_done;    /* written on the loop, callbacks not run yet */
	uv_idle_t log_idle;         /* runs them; .data is NULL until initialised */
	bool log_idle_off;          /* closed by zd_state_log_stop */
	uv_work_t log_work;
	bool log_busy, log_do_rewrite;
	uint64_t log_rewrite_ms;    /* when the last rewrite started (zd_now_ms) */
	bool log_do_sync;           /* the batch in flight syncs */
	bool log_unsynced;          /* appended records not yet synced */
	bool log_sync_due;          /* the background sync's time has come */
	uv_timer_t log_sync_timer;  /* .data is NULL until initialised */
	char *log_buf;
	size_t log_buf_len;
	struct zd_lease_rec *log_recs;
	size_t log_nrecs;
	uint64_t log_next_id;
	int log_status;
	struct zd_method_table methods_core, methods_lease;
	/* What systemd passed at start (LISTEN_FDS: the fd store, socket
	 * activation), until taken: the listener, device claims "dev-ID". */
	struct zd_passed_fd {
		int fd;             /* -1 once taken or closed */
		char name[256];
	} *passed;
	size_t nr_passed;
};

/* daemon/device.c */
/* claim_fd: a kept claim for this device (taken; -1 for none), see
 * zd_backend_ops.claim_fd. */
int zd_device_open(const struct zd_device_conf *conf, int claim_fd, struct zd_device **out,
		   char *why, size_t why_len);
/* The device leaves the configuration for good: its claim leaves the fd
 * store (a stop keeps it there, for the next start). */
void zd_device_unstore(struct zd_device *dev);
/* The name of a device's claim in the fd store: "dev-ID" (':' escaped). */
void zd_device_fdname(const char *id, char *out, size_t size);
int zd_device_attach(struct zd_daemon *d, struct zd_device *dev, char *why, size_t why_len);
void zd_device_discard(struct zd_device *dev);
int zd_device_add(struct zd_daemon *d, const struct zd_device_conf *conf, char *why,
		  size_t why_len);
struct zd_device *zd_device_find(struct zd_daemon *d, const char *id_or_path);
void zd_device_release(struct zd_device *dev);
void zd_device_free_all(struct zd_daemon *d);
void zd_device_zone_reclass(struct zd_device *dev, uint32_t index);
/* Counts a device operation's result towards the failure rule (ENODEV or
 * ENXIO at once; ZD_DEVICE_EIO_FAIL EIOs in a row over more than one zone)
 * and fails the device when it is met. */
#define ZD_DEVICE_EIO_FAIL 3
void zd_device_note(struct zd_device *dev, const struct zd_work *w, int status);
/* Marks the device failed: logged, its leases revoked through the lease
 * lifecycle, its waiters answered -32002; the other devices go on. */
void zd_device_fail(struct zd_device *dev, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Sets call's error for an operation refused on a failed device. */
void zd_device_failed_error(struct zd_call *call, const struct zd_device *dev);
void zd_device_zone_update(struct zd_device *dev, uint32_t index, const struct zd_zone *z);
/* Zone i as the daemon's zone table holds it (a copy: the table is compact,
 * see daemon/zstore.h). */
static inline struct zd_zone zd_device_zone(const struct zd_device *dev, uint32_t i)
{
	return zd_zstore_get(&dev->zs, i);
}
/* zd_device_zone_update after device work; kicks the device's waiters when
 * the condition changed. */
void zd_device_zone_refreshed(struct zd_device *dev, uint32_t index, const struct zd_zone *z);
void zd_zone_write(struct zp_jw *w, uint32_t index, const struct zd_zone *z);
struct json_object *zd_zone_json(const struct zd_device *dev, uint32_t index,
				 const struct zd_zone *z);
bool zd_zone_active(uint8_t cond);
/* Whether the device runs in zone isolation (leases get their own path,
 * fenced when they end). */
bool zd_device_isolated(const struct zd_device *dev);
/* Queues the fence of [zone, zone + count) on the device (zone isolation;
 * a no-op otherwise). A fence that fails fails the device. */
int zd_device_fence(struct zd_device *dev, uint32_t zone, uint32_t count);
bool zd_device_ready_take(struct zd_device *dev, uint32_t zone, bool any, int flags,
			  struct zd_ready *out);
void zd_device_ready_refill(struct zd_device *dev);
void zd_device_ready_recycle(struct zd_device *dev, uint32_t zone, int probe_fd);
bool zd_device_ready_wait(struct zd_device *dev, int flags, struct zd_ready_waiter *rw);
void zd_device_ready_drop(struct zd_device *dev, uint32_t zone, uint32_t count);
void zd_device_ready_clear(struct zd_device *dev);

/* daemon/methods.c: binds every module's methods and hooks (zd_daemon_init
 * calls it). */
int zd_modules_init(struct zd_daemon *d);

/* daemon/server.c */
int zd_daemon_init(struct zd_daemon *d, uv_loop_t *loop);
int zd_daemon_listen(struct zd_daemon *d);
/* Takes what systemd passed (once, before anything is opened); and the
 * passed fd of that name, taken (-1 when none). */
int zd_daemon_take_passed(struct zd_daemon *d);
int zd_daemon_passed_fd(struct zd_daemon *d, const char *name);
int zd_daemon_resolve_groups(struct zd_daemon *d, char *why, size_t why_len);
void zd_daemon_stop(struct zd_daemon *d);
void zd_daemon_fini(struct zd_daemon *d);
/* Handles one packet as received on conn; replies through conn. */
void zd_conn_handle_packet(struct zd_conn *conn, const char *buf, size_t len, bool truncated);
struct zd_conn *zd_conn_new(struct zd_daemon *d, int fd);
/* Serves a connected socket (non-blocking, close-on-exec); takes fd. */
int zd_conn_accept(struct zd_daemon *d, int fd);
void zd_conn_close(struct zd_conn *conn);
/* Queues one packet on the reply path (a notification its holder must
 * get), never closing conn; and re-arms the poll after something else was
 * queued for conn. */
void zd_conn_send_raw(struct zd_conn *conn, const char *buf, size_t len);
void zd_conn_update_poll(struct zd_conn *conn);
void zd_conn_put(struct zd_conn *conn);
uint64_t zd_now_ms(struct zd_daemon *d);

/* daemon/lease-methods.c: binds the lease methods. */
void zd_lease_methods_init(struct zd_daemon *d);

/* daemon/lease.c: the lease object and its lifecycle. */
void zd_lease_init(struct zd_daemon *d);
const char *zd_lease_state_name(enum zd_lease_state s);
bool zd_lease_transition_ok(enum zd_lease_state from, enum zd_lease_state to);
/* Moves l to state `to`; an illegal transition aborts a debug build and is
 * refused (-EINVAL, logged) by a release build (-DNDEBUG). */
int zd_lease_set_state(struct zd_lease *l, enum zd_lease_state to);
/* A granting lease of conn on the zone, which it reserves. */
struct zd_lease *zd_lease_by_id(struct zd_daemon *d, uint64_t id);
/* The first lease (any state) with an id above `after`, or NULL; the next
 * one after l. O(1) when `after` is a lease still in memory. */
struct zd_lease *zd_lease_first_after(struct zd_daemon *d, uint64_t after);
struct zd_lease *zd_lease_next(struct zd_daemon *d, const struct zd_lease *l);
struct zd_lease *zd_lease_new(struct zd_conn *conn, struct zd_device *dev, uint32_t zone,
			      uint32_t count, uint64_t token, const char *label);
void zd_lease_attach(struct zd_lease *l, struct zd_conn *conn);
void zd_lease_detach(struct zd_lease *l);
/* Frees the zone (fenced first) and the lease once no operation is in
 * flight: granting that failed, release done, revocation. */
void zd_lease_end(struct zd_lease *l);
/* Frees l if it ended and nothing is in flight on it. */
void zd_lease_put(struct zd_lease *l);
/* Ends one device operation on l (busy--), ending a revoked lease. */
void zd_lease_op_done(struct zd_lease *l);
/* Queues the release work (then: -1 keep, else a zone op); the reply to
 * call, if any, carries the zone as released. */
int zd_lease_release(struct zd_lease *l, int then, struct zd_call *call);
/* Takes the zone back from its lease (not one being released); reason is
 * what the holder's lease.revoked event says: "force", "device-failed". */
void zd_lease_revoke_zone(struct zd_device *dev, uint32_t zone, const char *reason);
/* Writes l to the lease table (a grant or a reclaim); done(l, status, arg)
 * runs on the loop once it is on disk or failed. l must stay alive until
 * then (the caller holds it busy). */
int zd_lease_persist(struct zd_lease *l, void (*done)(struct zd_lease *l, int status, void *arg),
		     void *arg);
/* As zd_lease_end(); the call, if any, is completed once the end is on
 * disk. */
void zd_lease_end_reply(struct zd_lease *l, struct zd_call *call);
/* The records of every persisted lease, for a rewrite of the table. */
int zd_lease_snapshot(struct zd_daemon *d, struct zd_lease_rec **recs, size_t *n);
/* Start-up: every lease of the table becomes orphaned for grace_ms (the
 * point where issue 9 re-adopts a lease's dm mapping or zone file). */
int zd_lease_adopt(struct zd_daemon *d);
/* The orphan with this id, or NULL. */
struct zd_lease *zd_lease_find_orphan(struct zd_daemon *d, uint64_t id);
/* Leaves the owner's connection; kept for grace_ms from now. */
void zd_lease_orphan(struct zd_lease *l);
void zd_lease_write(struct zp_jw *w, const struct zd_lease *l);
/* The call's result: {"lease": l} (as text; an error when that fails). */
void zd_lease_result(struct zd_call *call, const struct zd_lease *l);
struct json_object *zd_lease_json(const struct zd_lease *l);
void zd_lease_log(const struct zd_lease *l, const char *what);

/* A record on its way to the lease table; `done` runs on the loop once it
 * is on disk (status 0) or could not be written. */
#define ZD_LOG_LINE_MAX 1024
struct zd_log_req {
	struct zd_list link;
	char line[ZD_LOG_LINE_MAX];
	size_t len;
	int status;
	void (*done)(struct zd_log_req *q);
};

/* One lease as the state directory keeps it. */
struct zd_lease_rec {
	uint64_t id, token, wp;
	char device[ZD_ID_MAX];
	uint32_t zone, count;
	pid_t pid;
	uid_t uid;
	bool direct, reclaimable;
	char label[128];
};

/* daemon/state.c */
/* The persisted lease table: load (the live records, and d->next_lease_id
 * raised past every id seen), rewrite to exactly these records (also opens
 * it for appending), and one record appended and synced per change. */
int zd_state_leases_load(struct zd_daemon *d, struct zd_lease_rec **recs, size_t *nr);
int zd_state_leases_rewrite(struct zd_daemon *d, const struct zd_lease_rec *recs, size_t nr);
int zd_state_lease_put(struct zd_daemon *d, const struct zd_lease_rec *r);
int zd_state_lease_end(struct zd_daemon *d, uint64_t id);
/* The same through the group commit (the daemon's way): q is owned by the
 * caller until done(q) runs. */
void zd_state_log_init(struct zd_daemon *d);
int zd_state_lease_put_async(struct zd_daemon *d, const struct zd_lease_rec *r,
			     struct zd_log_req *q, void (*done)(struct zd_log_req *q));
int zd_state_lease_end_async(struct zd_daemon *d, uint64_t id, struct zd_log_req *q,
			     void (*done)(struct zd_log_req *q));
/* Whether the log has grown enough against `live` leases to be rewritten. */
bool zd_state_leases_want_rewrite(struct zd_daemon *d, size_t live);
/* Closes the background sync's timer (the loop is stopping). */
void zd_state_log_stop(struct zd_daemon *d);
void zd_state_leases_close(struct zd_daemon *d);
/* Opens the state directory (no symlink) and refuses one not owned by the
 * daemon's user or writable by group or others; *why says which. */
int zd_state_open(struct zd_daemon *d, char *why, size_t why_len);
void zd_state_close(struct zd_daemon *d);
/* The ownership and mode rules of zd_state_open() on an open directory. */
int zd_check_dir_fd(int fd, const char *path, bool root_ok, char *why, size_t why_len);
/* Takes and persists the next token generation (both copies); opens the
 * state directory first if zd_state_open() was not called. */
int zd_state_generation_bump(struct zd_daemon *d);
/* The next lease token, or a negative errno while no generation could be
 * persisted (new leases are then refused; retried once a second). */
int zd_state_next_token(struct zd_daemon *d, uint64_t *token);

#endif
