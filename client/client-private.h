/* Internals shared by client.c (connection, calls, devices, zones) and
 * lease.c (leases and their I/O). Nothing here is installed. */
#ifndef ZONED_CLIENT_PRIVATE_H
#define ZONED_CLIENT_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "include/zoned/client.h"
#include "proto/proto.h"

struct zc_pending;
struct zc_sendbuf;
struct zc_event;

/* How many recently revoked lease ids a client remembers when no lease of
 * its own has the id yet (a notification overtaking its acquire reply). */
#define ZC_REVOKED_RING 8
/* Events kept for the application before the oldest unread are dropped
 * (and counted in an "overflow" event). */
#define ZC_EVENT_QUEUE_MAX 1024

struct zc_client {
	/* Everything below is under `lock`, which is only ever held for
	 * non-blocking work: nobody sleeps holding it, so one waiting call
	 * does not hold up another thread's. */
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* a call completed, an event came, the poller left */
	int fd;                  /* the socket; -1 once closed */
	bool lost;               /* the connection is gone (zc_close, or the daemon hung up) */
	int lost_err;
	bool reading;            /* a thread is in poll() on fd for the blocking callers */
	int wake_fd;             /* eventfd: interrupts that poll() */
	int epoll_fd;            /* zc_client_fd(): socket, notify_fd, timer_fd; -1 until asked */
	int notify_fd;           /* eventfd: completions or events wait for zc_client_process() */
	int timer_fd;            /* timerfd: the earliest deadline of an asynchronous call */
	bool want_out;           /* EPOLLOUT is registered */
	int64_t next_id;
	char *buf;               /* receive buffer, ZP_MSG_MAX bytes */
	char *wbuf;              /* a request being written, ZP_MSG_MAX bytes */
	uint64_t serial;         /* tells clients apart in the per-thread error slots */
	atomic_uint refs;        /* the caller's, one per lease and iterator, one per call running */
	/* What daemon.hello's "features" named (ZC_FEATURE_*), read again at
	 * every (re)connection: the daemon may be another one by then. */
	atomic_uint features;
	uint32_t timeout_ms;     /* default bound of a call (zc_client_set_timeout) */
	struct zc_pending *pending_head, *pending_tail; /* in flight, oldest first */
	struct zc_pending *done_head, *done_tail;       /* answered, for zc_client_process() */
	struct zc_sendbuf *send_head, *send_tail;       /* the socket was full */
	/* Events for the application, when it asked for them. */
	bool events_on;
	void (*event_cb)(zc_client *c, const struct zc_event *ev, void *userdata);
	void *event_ud;
	struct zc_event *ev_head, *ev_tail;
	unsigned ev_len;
	uint64_t ev_lost, ev_lost_seq;
	uint64_t revoked[ZC_REVOKED_RING];
	unsigned revoked_next;
	/* The live leases of this connection, so that losing the connection
	 * can mark and fence every one of them at once, and a revocation
	 * notification can find its lease by id. A lock of its own, taken
	 * after `lock` when both are needed. */
	pthread_mutex_t leases_lock;
	struct zc_lease *leases; /* under leases_lock */
	/* Reconnect mode (zc_client_set_reconnect), under `lock`. */
	char path[108];          /* the socket zc_connect reached */
	uint32_t reconnect_ms;   /* how long to keep trying; 0 = off */
	bool closing;            /* zc_close runs: a loss is final */
	bool reconnecting;       /* lost, and coming back: leases answer -EAGAIN */
	bool reconnect_busy;     /* a thread is reconnecting and reclaiming */
	uint64_t reconnect_next_ms, reconnect_until_ms;
	uint32_t reconnect_delay_ms;
	struct json_object *ev_sub; /* the params of the subscription to renew */
};

/* Takes and drops references: leases and iterators keep the client alive so
 * that releasing a lease after zc_close() fails cleanly instead of touching
 * freed memory. */
void zc_client_ref(zc_client *c);
void zc_client_unref(zc_client *c);

/* A call in flight. */
enum {
	ZC_P_SYNC = 1 << 0,      /* a blocking caller waits for it */
	ZC_P_ACQUIRE = 1 << 1,   /* the reply grants a lease: build it on arrival */
	ZC_P_GRANTS = 1 << 2,    /* the reply hands out something (a lease, an fd) */
	ZC_P_ABANDONED = 1 << 3, /* nobody waits any more: give back what the reply grants */
	ZC_P_CANCELLED = 1 << 4,
	ZC_P_NOBOUND = 1 << 5,   /* no default timeout (a waiting acquire) */
};
struct zc_pending;
typedef void zc_complete_fn(zc_client *c, struct zc_pending *p);
struct zc_pending {
	struct zc_pending *prev, *next;
	int64_t id;
	uint64_t deadline_ms;    /* CLOCK_MONOTONIC; 0 = none */
	unsigned flags;
	bool done;
	int err;                 /* 0, or a negative errno */
	char msg[256];           /* what went wrong, for zc_last_error() */
	struct json_object *result;
	int fds[ZP_MAX_FDS];     /* the reply's, owned */
	unsigned nfds;
	struct zc_lease *lease;  /* ZC_P_ACQUIRE: the lease built from the reply */
	/* Asynchronous calls: run by zc_client_process() outside the lock. */
	zc_complete_fn *complete;
	void (*cb)(void);        /* the application's callback, cast by complete */
	void *ud;
	void *arg;               /* complete's own (the lease of a release, say) */
};

/* Default bound of a call that is not a waiting acquire. */
#define ZC_TIMEOUT_DEFAULT_MS 30000

/* One blocking call: sends method with params (taken, may be NULL), waits
 * for the reply with the same id, at most timeout_ms (ZC_TIMEOUT_NONE: for
 * ever; 0: the client's default). On success *result holds the result (the
 * caller puts it) and, when fd_out is non-NULL, *fd_out the attached fd or
 * -1; an fd nobody asked for is closed. With flags ZC_P_ACQUIRE, *lease_out
 * receives the lease built from the reply. On failure returns a negative
 * errno and records the message for zc_last_error(). */
int zc_call_full(zc_client *c, const char *method, struct json_object *params,
		 uint32_t timeout_ms, unsigned flags, struct json_object **result, int *fd_out,
		 struct zc_lease **lease_out);
/* As zc_call_full, every fd of the reply going to fds_out[0..*nfds_out)
 * (room for ZP_MAX_FDS). */
int zc_call_fds(zc_client *c, const char *method, struct json_object *params,
		uint32_t timeout_ms, unsigned flags, struct json_object **result, int *fds_out,
		unsigned *nfds_out);
int zc_call(zc_client *c, const char *method, struct json_object *params,
	    struct json_object **result, int *fd_out);
/* Starts an asynchronous call; complete runs from zc_client_process() (or
 * zc_close) with p filled. Returns the call's id (> 0) or a negative errno. */
int64_t zc_call_start(zc_client *c, const char *method, struct json_object *params,
		      const struct zc_call_opts *opts, unsigned flags, zc_complete_fn *complete,
		      void (*cb)(void), void *ud, void *arg);
/* As zc_call_start with c->lock held and no completion: the reply is
 * dropped (a best-effort lease.release of a lease nobody wants). */
void zc_call_fire_locked(zc_client *c, const char *method, struct json_object *params);

/* The connection is gone (zc_close, or the daemon hung up): every lease of
 * c fails its next call with err (-ENOTCONN) and its fd is replaced by one
 * that refuses I/O, so that no write reaches a zone the daemon took back. */
void zc_leases_lost(zc_client *c, int err);
/* Reconnect mode: when the connection is lost and the next attempt is
 * due, reconnects, checks the protocol, renews the event subscription and
 * reclaims every lease (zc_leases_reclaim). Never holds c->lock across a
 * wait. Returns 0 when connected, -EAGAIN while still trying (or another
 * thread is), -ENOTCONN once lost for good. Without reconnect mode: 0, or
 * -ENOTCONN when lost. */
int zc_reconnect_step(zc_client *c);
/* lease.c: reclaims every lease of c waiting for it (marked -EAGAIN by the
 * loss) on the fresh connection. 0, or the error of a lost connection. */
int zc_leases_reclaim(zc_client *c);
/* lease.c, under c->lock: a reply granted a lease (takes fd); a
 * notification revoked lease id. */
int zc_lease_from_reply(zc_client *c, struct json_object *result, int *fds, unsigned nfds,
			struct zc_lease **out, char *msg, size_t msg_len);
void zc_lease_revoked_locked(zc_client *c, uint64_t id);
/* Reads what the daemon sent without waiting, when no other thread holds
 * the connection: a data call's cheap look for a revocation. */
void zc_client_peek(zc_client *c);
/* event.c, under c->lock: a notification arrived (params taken). */
void zc_event_arrived_locked(zc_client *c, struct json_object *params);
void zc_events_free_locked(zc_client *c);
struct zc_event *zc_event_pop_locked(zc_client *c);
/* zc_last_error(NULL): why this thread's last zc_connect failed. */
const char *zc_connect_error(void);

struct zc_event {
	struct zc_event *next;
	struct json_object *params;
	const char *type;        /* borrowed from params */
	const char *device;      /* borrowed from params, or NULL */
	uint64_t seq, time_ms, lease, lost;
	int64_t zone;
};
/* Wakes whoever waits for completions or events: the poller, the condition
 * variable and the application's poll on zc_client_fd(). Under c->lock. */
void zc_client_kick_locked(zc_client *c);
/* Waits (c->lock held) until pred(c, arg) or deadline_ms (0 = none), acting
 * as the poller when nobody else does. Returns 0, or -ETIMEDOUT. */
int zc_wait_locked(zc_client *c, bool (*pred)(zc_client *c, void *arg), void *arg,
		   uint64_t deadline_ms);
uint64_t zc_now_ms(void);

/* Records err (a negative errno) as the last error of c in this thread, with
 * msg, or zc_strerror(err) when msg is NULL. Returns err. */
int zc_fail(zc_client *c, int err, const char *msg);
/* zc_fail with a formatted message. */
int zc_failf(zc_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Strict readers of reply fields: a missing field or a wrong type is -EPROTO.
 * Strings are copied and truncated to cap. */
int zc_get_u64(struct json_object *obj, const char *key, uint64_t *out);
int zc_get_u32(struct json_object *obj, const char *key, uint32_t *out);
int zc_get_i32(struct json_object *obj, const char *key, int32_t *out);
int zc_get_bool(struct json_object *obj, const char *key, bool *out);
int zc_get_str(struct json_object *obj, const char *key, char *out, size_t cap);
/* Optional variants: leave *out untouched when the field is absent or null. */
int zc_opt_u64(struct json_object *obj, const char *key, uint64_t *out);
int zc_opt_u32(struct json_object *obj, const char *key, uint32_t *out);
int zc_opt_str(struct json_object *obj, const char *key, char *out, size_t cap);
int zc_get_object(struct json_object *obj, const char *key, struct json_object **out);
int zc_get_array(struct json_object *obj, const char *key, struct json_object **out);

/* Parses one zone object of the protocol. */
int zc_parse_zone(struct json_object *obj, struct zc_zone *z);

/* daemon.hello "features" this library uses. */
#define ZC_FEATURE_REPORT_RUNS (1u << 0) /* zone.report {"format": "runs"} */
static inline bool zc_has_feature(zc_client *c, unsigned f)
{
	return (atomic_load(&c->features) & f) != 0;
}

#endif
