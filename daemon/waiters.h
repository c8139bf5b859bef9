/* Waiting requests: one FIFO per device plus one for requests that take any
 * device, capped per connection and per uid, served only when their device
 * frees something and with a bounded number of tries per event. */
#ifndef ZONED_WAITERS_H
#define ZONED_WAITERS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "daemon/list.h"

struct zd_daemon;
struct zd_conn;
struct zd_device;
struct zd_waiter;

/* A queue of waiters, FIFO. */
struct zd_waitq {
	struct zd_list list;
	/* Set while the queue is due to be served (in d->kick_pending). */
	struct zd_list pending_link;
	bool pending;
};

void zd_waitq_init(struct zd_waitq *q);

/* What a try did with its waiter. */
enum {
	ZD_WAIT_GRANTED = 0, /* started: the request's call belongs to the work now */
	ZD_WAIT_AGAIN = 1,   /* the device cannot serve it yet: it stays queued */
	ZD_WAIT_PARKED = 2,  /* the try parked it (zd_waiter_park) on what it waits for */
	ZD_WAIT_CONN = 3,    /* its connection holds its lease limit: parked there until
			      * the connection gives a lease up */
};

struct zd_waiter_ops {
	/* Tries to serve w now: a ZD_WAIT_* value, or a negative JSON-RPC
	 * code that is its final answer. */
	int (*try)(struct zd_waiter *w);
	/* Answers the request with code; w is already out of every queue. */
	void (*answer)(struct zd_waiter *w, int code);
	/* Frees w (its timer handle is closed). */
	void (*free)(struct zd_waiter *w);
};

struct zd_waiter {
	struct zd_list link;        /* in a waitq, or a parking list */
	struct zd_list conn_link;   /* in its connection's waiters */
	struct zd_list release_link;/* in d->release_waiters, if until_released */
	struct zd_waitq *q;         /* its queue while in one, NULL when parked */
	struct zd_daemon *d;
	struct zd_conn *conn;
	struct zd_device *dev;      /* NULL: any device; a device reference */
	const struct zd_waiter_ops *ops;
	uv_timer_t timer;
	int timeout_code;           /* answer when the timer fires */
	bool until_released;
	bool queued;
};

/* Queues w (ops, conn, dev filled in) for at most timeout_ms. -EUSERS when
 * the connection or its uid has its most waiters already. */
int zd_waiter_add(struct zd_daemon *d, struct zd_waiter *w, uint64_t timeout_ms);
/* Moves w out of its queue onto `list` (something it waits for: a zone's
 * lease, say) until zd_waiters_unpark() puts it back. */
void zd_waiter_park(struct zd_waiter *w, struct zd_list *list);
/* Puts every waiter parked on `list` back at the head of its queue, in
 * order, and has that queue served. O(1) for the whole list when they all
 * belong to one queue (a zone's waiters do). */
void zd_waiters_unpark(struct zd_daemon *d, struct zd_list *list);
/* Something of dev freed (a zone, an open or active slot): its queue and
 * the any-device queue are served from the loop's next idle turn. */
void zd_waiters_kick(struct zd_daemon *d, struct zd_device *dev);
/* The connection let a lease go: its first parked waiter goes back. */
void zd_waiters_conn_slot(struct zd_conn *conn);
/* The connection closes: its waiters are answered and freed. */
void zd_waiters_drop_conn(struct zd_conn *conn);
/* No release is in flight any more: answers the until_released waiters. */
void zd_waiters_releases_done(struct zd_daemon *d);
void zd_waiters_fini(struct zd_daemon *d);

#endif
