/* Waiting requests. A waiter sits in its device's queue (or the any-device
 * queue), or is parked on what it waits for: a zone's lease, or its own
 * connection's lease limit. Queues are served only after something of their
 * device freed, from the loop's idle turn, with a bounded number of tries:
 * the cost of an event never grows with the number of waiters. */
#include <config.h>

#include <errno.h>

#include "daemon/daemon.h"
#include "daemon/log.h"

/* Tries per queue per idle turn. A queue that made progress (a grant, a
 * final answer) is served again on the next turn, so a burst of frees is
 * worked off without stalling the loop; one that did not waits for the next
 * event. Waiters that could not be served move to the tail, so one that
 * cannot be served does not hold back a later one asking for less. */
#define ZD_WAIT_TRIES 16

void zd_waitq_init(struct zd_waitq *q)
{
	zd_list_init(&q->list);
	zd_list_init(&q->pending_link);
	q->pending = false;
}

static void waiter_timeout(uv_timer_t *t);

static struct zd_waitq *home_queue(struct zd_waiter *w)
{
	return w->dev ? &w->dev->waitq : &w->d->any_waiters;
}

int zd_waiter_add(struct zd_daemon *d, struct zd_waiter *w, uint64_t timeout_ms)
{
	struct zd_conn *conn = w->conn;

	if ((d->cfg.max_waiters_per_conn && conn->nr_waiters >= d->cfg.max_waiters_per_conn) ||
	    (d->cfg.max_waiters_per_uid && conn->user->nr_waiters >= d->cfg.max_waiters_per_uid))
		return -EUSERS;
	w->d = d;
	w->q = home_queue(w);
	zd_list_add_tail(&w->q->list, &w->link);
	zd_list_add_tail(&conn->waiters, &w->conn_link);
	conn->nr_waiters++;
	conn->user->nr_waiters++;
	if (w->until_released)
		zd_list_add_tail(&d->release_waiters, &w->release_link);
	else
		zd_list_init(&w->release_link);
	if (w->dev)
		w->dev->refs++;
	w->queued = true;
	uv_timer_init(d->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, waiter_timeout, timeout_ms, 0);
	return 0;
}

static void waiter_timer_closed(uv_handle_t *h)
{
	struct zd_waiter *w = h->data;

	w->ops->free(w);
}

/* Takes w out of every list; it stays allocated until waiter_close(). */
static void waiter_detach(struct zd_waiter *w)
{
	struct zd_device *dev = w->dev;

	if (!w->queued)
		return;
	w->queued = false;
	w->q = NULL;
	zd_list_del(&w->link);
	zd_list_del(&w->conn_link);
	zd_list_del(&w->release_link);
	w->conn->nr_waiters--;
	w->conn->user->nr_waiters--;
	uv_timer_stop(&w->timer);
	if (dev) {
		dev->refs--;
		zd_device_release(dev);
	}
}

static void waiter_close(struct zd_waiter *w)
{
	uv_close((uv_handle_t *)&w->timer, waiter_timer_closed);
}

static void waiter_end(struct zd_waiter *w, int code)
{
	waiter_detach(w);
	if (code)
		w->ops->answer(w, code);
	waiter_close(w);
}

static void waiter_timeout(uv_timer_t *t)
{
	struct zd_waiter *w = t->data;

	waiter_end(w, w->timeout_code);
}

void zd_waiter_park(struct zd_waiter *w, struct zd_list *list)
{
	w->q = NULL;
	zd_list_del(&w->link);
	zd_list_add_tail(list, &w->link);
}

/* Back at the head of its queue: it waited longest. */
static void waiter_requeue_head(struct zd_waiter *w)
{
	w->q = home_queue(w);
	zd_list_del(&w->link);
	zd_list_add(&w->q->list, &w->link);
}

void zd_waiters_unpark(struct zd_daemon *d, struct zd_list *list)
{
	struct zd_waiter *first, *last;
	struct zd_waitq *q;

	if (zd_list_empty(list))
		return;
	first = zd_container_of(list->next, struct zd_waiter, link);
	last = zd_container_of(list->prev, struct zd_waiter, link);
	q = home_queue(first);
	if (home_queue(last) != q) {
		/* Mixed homes (not what a zone's list holds): one by one. */
		while (!zd_list_empty(list)) {
			struct zd_waiter *w = zd_container_of(list->prev, struct zd_waiter, link);

			waiter_requeue_head(w);
			zd_waiters_kick(d, w->dev);
		}
		return;
	}
	/* One queue: the list moves whole; its waiters learn their queue
	 * (w->q) when they reach its head. */
	zd_list_splice_head(&q->list, list);
	zd_waiters_kick(d, first->dev);
}

/* --- serving --------------------------------------------------------- */

static void waitq_mark(struct zd_daemon *d, struct zd_waitq *q, struct zd_device *dev)
{
	if (q->pending)
		return;
	q->pending = true;
	if (dev)
		dev->refs++;
	zd_list_add_tail(&d->kick_pending, &q->pending_link);
}

static void kick_idle_cb(uv_idle_t *h);

void zd_waiters_kick(struct zd_daemon *d, struct zd_device *dev)
{
	if (d->stopping)
		return;
	if (dev && !zd_list_empty(&dev->waitq.list))
		waitq_mark(d, &dev->waitq, dev);
	if (!zd_list_empty(&d->any_waiters.list))
		waitq_mark(d, &d->any_waiters, NULL);
	/* The idle turn also answers no-wait acquires once no release is in
	 * flight any more. */
	if (zd_list_empty(&d->kick_pending) &&
	    (d->nr_releasing || zd_list_empty(&d->release_waiters)))
		return;
	if (!d->kick_idle.data) {
		uv_idle_init(d->loop, &d->kick_idle);
		d->kick_idle.data = d;
	}
	uv_idle_start(&d->kick_idle, kick_idle_cb);
}

/* Serves up to ZD_WAIT_TRIES waiters of q; returns true on progress. */
static bool waitq_serve(struct zd_daemon *d, struct zd_waitq *q)
{
	struct zd_waiter *first_again = NULL;
	unsigned budget = ZD_WAIT_TRIES;
	bool progress = false;

	while (budget-- > 0 && !zd_list_empty(&q->list)) {
		struct zd_waiter *w = zd_container_of(q->list.next, struct zd_waiter, link);
		int r;

		if (w == first_again)
			break; /* every waiter left was tried */

		/* A waiter spliced in from a parking list learns its queue here. */
		w->q = q;
		r = w->ops->try(w);
		switch (r) {
		case ZD_WAIT_GRANTED:
			waiter_end(w, 0);
			progress = true;
			break;
		case ZD_WAIT_AGAIN:
			if (!first_again)
				first_again = w;
			zd_list_del(&w->link);
			zd_list_add_tail(&q->list, &w->link);
			break;
		case ZD_WAIT_PARKED:
			break;
		case ZD_WAIT_CONN:
			zd_waiter_park(w, &w->conn->waiters_parked);
			break;
		default:
			waiter_end(w, r);
			progress = true;
			break;
		}
	}
	return progress;
}

void zd_waiters_releases_done(struct zd_daemon *d)
{
	/* Each one answered leaves the list: the loop ends even when an answer
	 * closes a connection and drops its other waiters with it. */
	while (!zd_list_empty(&d->release_waiters)) {
		struct zd_waiter *w = zd_container_of(d->release_waiters.next, struct zd_waiter,
						      release_link);

		waiter_end(w, w->timeout_code);
	}
}

static void kick_idle_cb(uv_idle_t *h)
{
	struct zd_daemon *d = h->data;
	struct zd_list batch;

	/* Queues marked while serving wait for the next turn. */
	zd_list_init(&batch);
	zd_list_splice_tail(&batch, &d->kick_pending);
	while (!zd_list_empty(&batch)) {
		struct zd_waitq *q = zd_container_of(batch.next, struct zd_waitq, pending_link);
		struct zd_device *dev = q == &d->any_waiters ? NULL
				      : zd_container_of(q, struct zd_device, waitq);

		zd_list_del(&q->pending_link);
		q->pending = false;
		if (!d->stopping && waitq_serve(d, q) && !zd_list_empty(&q->list))
			waitq_mark(d, q, dev);
		if (dev) {
			dev->refs--;
			zd_device_release(dev);
		}
	}
	if (zd_list_empty(&d->kick_pending)) {
		uv_idle_stop(h);
		if (d->nr_releasing == 0)
			zd_waiters_releases_done(d);
	}
}

void zd_waiters_conn_slot(struct zd_conn *conn)
{
	struct zd_waiter *w;

	if (zd_list_empty(&conn->waiters_parked))
		return;
	w = zd_container_of(conn->waiters_parked.next, struct zd_waiter, link);
	waiter_requeue_head(w);
	zd_waiters_kick(conn->d, w->dev);
}

void zd_waiters_drop_conn(struct zd_conn *conn)
{
	while (!zd_list_empty(&conn->waiters)) {
		struct zd_waiter *w = zd_container_of(conn->waiters.next, struct zd_waiter,
						      conn_link);

		waiter_end(w, ZP_ERR_TIMEOUT);
	}
}

void zd_waiters_fini(struct zd_daemon *d)
{
	while (!zd_list_empty(&d->kick_pending)) {
		struct zd_waitq *q = zd_container_of(d->kick_pending.next, struct zd_waitq,
						     pending_link);

		zd_list_del(&q->pending_link);
		q->pending = false;
		if (q != &d->any_waiters) {
			struct zd_device *dev = zd_container_of(q, struct zd_device, waitq);

			dev->refs--;
			zd_device_release(dev);
		}
	}
	if (d->kick_idle.data) {
		uv_close((uv_handle_t *)&d->kick_idle, NULL);
		d->kick_idle.data = NULL;
	}
}
