/* The lease RPC handlers: lease.acquire (with its waiters), lease.sync,
 * lease.reset, lease.finish, lease.release, lease.list. The lease object
 * and its lifecycle are in daemon/lease.c. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/log.h"

struct acquire_req {
	struct zd_waiter w;         /* while it waits */
	struct zd_call *call;
	struct zd_daemon *d;
	char device[ZD_ID_MAX];     /* "" = any */
	struct zd_alloc_req req;    /* zone, min_free, prefer */
	bool direct;
	bool reclaimable;
	char label[128];
	int first_err;              /* the answer an until_released waiter gets */
	uint64_t wait_ms;           /* as asked (clamped to max_wait_ms) */
};

/* lease.list: the most leases one page may ask for; a page of them fits
 * a packet (each is at most ~600 bytes of JSON). */
#define ZD_LEASE_LIST_MAX 100

/* acquire_try(): the connection holds its lease limit. */
#define ACQ_CONN_LIMIT 1

struct lease_op {
	struct zd_call *call;
	struct zd_lease *lease;
	struct zd_zone_fds zf;      /* a grant's or reclaim's, until its record is on disk */
	/* lease.acquire of any zone: the request, to pick another zone when
	 * the one picked turned out read-only or offline as it was granted. */
	struct acquire_req *retry;
	unsigned retries;
};

/* Zones one acquire skips because they died under its grant; a bound, so a
 * device whose zones all fail answers rather than loops. */
#define ACQ_MAX_RETRIES 8

static bool cond_dead(uint8_t cond)
{
	return cond == ZP_COND_READONLY || cond == ZP_COND_OFFLINE;
}

static void zf_close(struct zd_zone_fds *zf)
{
	for (unsigned i = 0; i < zf->nr; i++)
		close(zf->fd[i]);
	zf->nr = 0;
}

/* The fds go with the reply (which owns them from here). */
static void zf_give(struct zd_call *call, struct zd_zone_fds *zf)
{
	memcpy(call->fds, zf->fd, zf->nr * sizeof(int));
	call->nfds = zf->nr;
	zf->nr = 0;
}

/* The first of the work's zones that is read-only or offline, or ZD_NIL. */
static uint32_t range_dead(const struct zd_device *dev, uint32_t zone, uint32_t count)
{
	for (uint32_t i = zone; i < zone + count; i++)
		if (cond_dead(zd_zstore_cond(&dev->zs, i)))
			return i;
	return ZD_NIL;
}

static uint32_t dead_zone(const struct zd_work *w)
{
	return range_dead(w->dev, w->zone, w->count);
}

/* After an operation on a lease's zones: one is read-only or offline,
 * whatever the operation answered (the emulator refuses with EPERM, a
 * kernel device reports the condition or fails the command with EIO). */
static bool zone_died(const struct zd_work *w)
{
	return !w->dev->failed && dead_zone(w) != ZD_NIL;
}

/* The answer to an operation on a zone that is read-only or offline (the
 * cache knows, or the device just said so): -32009 naming the condition. */
static void zone_dead_error(struct zd_call *call, const struct zd_device *dev, uint32_t zone,
			    const char *what)
{
	const char *cond = zp_cond_name(zd_zstore_cond(&dev->zs, zone));

	zd_call_error(call, ZP_ERR_ZONE_STATE, "%s: zone %u of %s is %s", what, zone, dev->id,
		      cond);
	json_object_put(call->err_data);
	call->err_data = json_object_new_object();
	json_object_object_add(call->err_data, "errno", json_object_new_int(EPERM));
	json_object_object_add(call->err_data, "cond", json_object_new_string(cond));
}

static int acquire_try(struct zd_daemon *d, struct acquire_req *a, unsigned retries);
static int acquire_settle(struct zd_daemon *d, struct acquire_req *a, int r);
static int acquire_flags(const struct acquire_req *a)
{
	return O_RDWR | (a->direct ? O_DIRECT : 0);
}

static void acquire_error(struct zd_call *call, const struct acquire_req *a, int r);

static struct zd_lease *lease_lookup(struct zd_call *call, struct json_object *params)
{
	uint64_t id, token;
	struct zp_err e;
	struct zd_lease *l;
	int r;

	r = zp_param_u64(params, "id", ZP_REQUIRED, &id, &e);
	if (r == 0)
		r = zp_param_u64(params, "token", ZP_REQUIRED, &token, &e);
	if (r < 0) {
		zd_call_error(call, e.code, "%s", e.message);
		return NULL;
	}
	/* Only the owner's own leases are found: a foreign id is as unknown as
	 * a stale one, so one client cannot probe another's leases. A lease
	 * still being granted is not the client's yet: ids and tokens count
	 * up, so a batch [acquire, release{guessed}] can name it, and an
	 * operation queued on it would outlive it when acquire_done gives it
	 * up (the client left, or it was revoked). */
	l = zd_lease_by_id(call->conn->d, id);
	if (l && l->conn == call->conn && l->token == token && l->state == ZD_LEASE_HELD)
		return l;
	zd_call_error(call, ZP_ERR_STALE_LEASE, "unknown or stale lease %" PRIu64, id);
	return NULL;
}

/* --- acquire ----------------------------------------------------------- */

/* Acquire and reclaim: the zone as the device has it now (the owner may
 * have written while the daemon was away), then a fresh fd. */
static int zone_open_run(struct zd_work *w)
{
	struct zd_dev *dev = w->dev->dev;
	int r;

	w->zf.nr = 0;
	w->nz = 0;
	for (uint32_t i = 0; i < w->count; i++) {
		w->fail_zone = w->zone + i;
		r = dev->ops->refresh_zone(dev, w->zone + i, UINT64_MAX, &w->zbuf[i]);
		if (r < 0)
			return r;
		w->nz = i + 1; /* zbuf holds the zones, even if the open fails */
	}
	w->fail_zone = w->zone;
	return dev->ops->open_zones(dev, w->zone, w->count, w->open_flags, w->isolate, &w->zf);
}

static void zones_update(struct zd_work *w)
{
	for (uint32_t i = 0; i < w->nz; i++)
		zd_device_zone_update(w->dev, w->zone + i, &w->zbuf[i]);
}

/* A grant's last step: its record is on disk (status 0), or could not be
 * written, and the client may have left or an admin revoked it meanwhile. */
static void grant_recorded(struct zd_lease *l, int status, void *arg)
{
	struct lease_op *op = arg;
	struct zd_call *call = op->call;
	struct zd_daemon *d = l->dev->d;

	if (status < 0 || !l->conn || l->state == ZD_LEASE_REVOKED) {
		zf_close(&op->zf);
		if (l->state == ZD_LEASE_REVOKED || !l->conn)
			zd_call_error(call, ZP_ERR_STALE_LEASE, "the lease was revoked as it was granted");
		else
			zd_call_error(call, ZP_ERR_IO, "the lease cannot be recorded in the state "
				      "directory (see the daemon's log); nothing is held");
		if (l->state == ZD_LEASE_REVOKED) {
			zd_lease_op_done(l);
		} else {
			l->busy--;
			zd_lease_end(l);
		}
	} else {
		l->busy--;
		zd_lease_set_state(l, ZD_LEASE_HELD);
		d->stats.leases_granted++;
		zd_lease_result(call, l);
		zf_give(call, &op->zf);
		zd_lease_log(l, "granted");
		zd_event_lease(d, ZD_EV_LEASE_ACQUIRED, l, NULL);
	}
	free(op->retry);
	free(op);
	zd_call_complete(call);
}

static void acquire_done(struct zd_work *w, int status)
{
	struct lease_op *op = w->data;
	struct zd_lease *l = op->lease;
	struct zd_call *call = op->call;
	struct zd_daemon *d = w->dev->d;

	zones_update(w);
	if (zone_died(w) && status >= 0) {
		status = -EPERM; /* nothing is granted on a dead zone */
		zf_close(&w->zf);
	}
	if (zone_died(w) && op->retry && l->conn && l->state == ZD_LEASE_GRANTING &&
	    op->retries < ACQ_MAX_RETRIES) {
		/* The zone the allocator picked died under the grant; it is out
		 * of the allocator now (its class is none): pick another. */
		int r;

		l->busy--;
		zd_lease_end(l);
		r = acquire_try(d, op->retry, op->retries + 1);
		if (r != 0)
			acquire_error(call, op->retry, r == 1 ? ZP_ERR_LIMIT : r);
		free(op->retry);
		free(op);
		free(w->zbuf);
		free(w);
		if (r != 0)
			zd_call_complete(call);
		return;
	}
	if (status < 0 || !l->conn || l->state == ZD_LEASE_REVOKED) {
		/* Failed, or the client went away or an admin revoked it
		 * meanwhile: nothing is held. */
		zf_close(&w->zf);
		if (zone_died(w))
			zone_dead_error(call, w->dev, dead_zone(w), "lease");
		else if (status < 0 && w->dev->failed)
			zd_device_failed_error(call, w->dev);
		else if (status < 0)
			zd_call_errno(call, status, "lease");
		else
			zd_call_error(call, ZP_ERR_STALE_LEASE, "the lease was revoked as it was granted");
		if (l->state == ZD_LEASE_REVOKED) {
			zd_lease_op_done(l);
		} else {
			l->busy--;
			zd_lease_end(l);
		}
	} else {
		int fl = fcntl(w->zf.fd[0], F_GETFL), r;

		l->direct = fl >= 0 && (fl & O_DIRECT);
		l->granted_ms = zd_now_ms(d);
		l->fd_offset = w->zf.fd_offset;
		op->zf = w->zf;
		w->zf.nr = 0;
		free(w->zbuf);
		free(w);
		/* In the table before the client hears of it: a lease the
		 * client has is one a restart keeps. Still granting (and
		 * busy) until then. */
		r = zd_lease_persist(l, grant_recorded, op);
		if (r < 0)
			grant_recorded(l, r, op);
		return;
	}
	free(op->retry);
	free(op);
	free(w->zbuf);
	free(w);
	zd_call_complete(call);
}

/* A grant from the device's ready set (device.c): the zone was refreshed
 * and opened ahead, so nothing is left for the queue; the reply still
 * waits for the lease's record. */
static int acquire_ready(struct zd_daemon *d, struct acquire_req *a, struct zd_device *dev,
			 struct zd_ready *rz, uint64_t token)
{
	struct lease_op *op = calloc(1, sizeof(*op));
	struct zd_lease *l = op ? zd_lease_new(a->call->conn, dev, rz->zone, 1, token, a->label)
				: NULL;
	int r;

	if (!l) {
		free(op);
		close(rz->fd);
		close(rz->probe_fd);
		return ZP_ERR_INTERNAL;
	}
	l->busy = 1;
	l->reclaimable = a->reclaimable;
	l->probe_fd = rz->probe_fd;
	l->direct = rz->direct;
	l->granted_ms = zd_now_ms(d);
	l->fd_offset = 0;
	op->call = a->call;
	op->lease = l;
	op->zf.fd[0] = rz->fd;
	op->zf.nr = 1;
	r = zd_lease_persist(l, grant_recorded, op);
	if (r < 0) {
		/* Answered by the caller, like any refusal of acquire_try. */
		zf_close(&op->zf);
		free(op);
		l->busy--;
		zd_lease_end(l);
		return ZP_ERR_INTERNAL;
	}
	d->stats.grants_ready++;
	return 0;
}

struct ready_wait {
	struct zd_ready_waiter rw;
	struct zd_daemon *d;
	struct acquire_req *a;      /* a copy: the caller's is not kept */
};

static void ready_wait_done(struct zd_ready_waiter *rw)
{
	struct ready_wait *x = zd_container_of(rw, struct ready_wait, rw);
	struct acquire_req *a = x->a;
	struct zd_call *call = a->call;
	int r;

	free(x);
	/* The client may have left meanwhile: its call is answered into the
	 * void, and nothing is granted to it. */
	if (!call->conn || call->conn->closing || a->d->stopping) {
		zd_call_error(call, ZP_ERR_STALE_LEASE, "the client left as the lease was granted");
		free(a);
		zd_call_complete(call);
		return;
	}
	/* retries 1: the queue this time, should the fill have brought none;
	 * what it cannot start is settled as the method would have (a wait,
	 * or the answer). */
	r = acquire_try(a->d, a, 1);
	if (r == 0)
		free(a);
	else if (acquire_settle(a->d, a, r) != ZD_ASYNC)
		zd_call_complete(call);
}

/* Any empty zone will do and the set has none now, but a refill on the
 * device's queue brings some soon: waiting for it beats queueing a grant
 * of our own behind it. 0 when parked, 1 when not. */
static int ready_wait(struct zd_daemon *d, const struct acquire_req *a, struct zd_device *dev)
{
	struct ready_wait *x = malloc(sizeof(*x));

	if (x)
		x->a = malloc(sizeof(*x->a));
	if (!x || !x->a) {
		free(x);
		return 1;
	}
	x->d = d;
	*x->a = *a;
	x->a->d = d;
	x->a->w.dev = NULL; /* not a waiter of the waitq any more */
	x->a->w.until_released = false;
	x->rw.ready = ready_wait_done;
	if (!zd_device_ready_wait(dev, acquire_flags(a), &x->rw)) {
		free(x->a);
		free(x);
		return 1;
	}
	return 0;
}

/* Tries to grant a now; returns 0 when started (the call completes later,
 * a itself is not kept), ACQ_CONN_LIMIT, or a negative JSON-RPC code when
 * nothing can be granted yet. */
static int acquire_try(struct zd_daemon *d, struct acquire_req *a, unsigned retries)
{
	struct zd_conn *conn = a->call->conn;
	struct zd_device *dev = NULL;
	struct zd_lease *l;
	struct lease_op *op;
	struct zd_work *w;
	int64_t zone = ZP_ERR_NO_DEVICE;
	int best = 0;
	uint64_t token;

	/* Checked here, where leases are made, and not only when the request
	 * arrives: waiters served later (a batch of waiting acquires) would
	 * otherwise take the connection past its limit. A waiter at the limit
	 * waits on until the connection lets a lease go. */
	if (d->cfg.max_leases_per_conn && conn->nr_leases >= d->cfg.max_leases_per_conn)
		return ACQ_CONN_LIMIT;
	if (a->w.dev) {
		/* A waiter keeps its device, even one leaving the configuration. */
		dev = a->w.dev;
		if (zd_list_empty(&dev->link) || dev->failed)
			return ZP_ERR_NO_DEVICE;
		zone = zd_alloc_pick(dev, &a->req);
	} else if (a->device[0]) {
		dev = zd_device_find(d, a->device);
		if (!dev || dev->failed)
			return ZP_ERR_NO_DEVICE;
		zone = zd_alloc_pick(dev, &a->req);
	} else {
		struct zd_list *pos, *tmp;

		/* The first device that can serve; otherwise the most telling
		 * reason: a limit beats "nothing free". Failed devices serve
		 * nobody. */
		zd_list_for_each_safe(pos, tmp, &d->devices) {
			dev = zd_container_of(pos, struct zd_device, link);
			if (dev->failed)
				continue;
			zone = zd_alloc_pick(dev, &a->req);
			if (zone >= 0)
				break;
			if (best == 0 || zone == ZP_ERR_LIMIT)
				best = (int)zone;
		}
		if (zone < 0)
			zone = best ? best : ZP_ERR_NO_DEVICE;
	}
	if (zone < 0)
		return (int)zone;
	if (a->req.count <= 1 && zd_zstore_cond(&dev->zs, zone) == ZP_COND_EMPTY) {
		struct zd_ready rz;
		int r;

		if (zd_device_ready_take(dev, (uint32_t)zone, a->req.zone < 0, acquire_flags(a),
					 &rz)) {
			if (zd_state_next_token(d, &token) < 0) {
				close(rz.fd);
				close(rz.probe_fd);
				return ZP_ERR_IO;
			}
			r = acquire_ready(d, a, dev, &rz, token);
			zd_device_ready_refill(dev);
			return r;
		}
		r = a->req.zone < 0 && retries == 0 ? ready_wait(d, a, dev) : 1;
		if (r <= 0)
			return r;
	}
	/* The only -32000 acquire_try gives: no token can be made safely. */
	if (zd_state_next_token(d, &token) < 0)
		return ZP_ERR_IO;

	op = calloc(1, sizeof(*op));
	w = calloc(1, sizeof(*w));
	if (w)
		w->zbuf = calloc(a->req.count, sizeof(*w->zbuf));
	if (op && a->req.zone < 0) {
		op->retry = malloc(sizeof(*op->retry));
		if (op->retry) {
			*op->retry = *a;
			op->retry->w.dev = NULL; /* not a waiter any more */
			op->retry->w.until_released = false;
		}
	}
	l = op && w && w->zbuf && (a->req.zone >= 0 || op->retry) ?
		zd_lease_new(conn, dev, (uint32_t)zone, a->req.count, token, a->label) : NULL;
	if (!l) {
		if (op)
			free(op->retry);
		free(op);
		if (w)
			free(w->zbuf);
		free(w);
		return ZP_ERR_INTERNAL;
	}
	/* The grant in flight counts as an operation: a revocation meanwhile
	 * leaves the lease to it. */
	l->busy = 1;
	l->reclaimable = a->reclaimable;

	op->call = a->call;
	op->lease = l;
	op->retries = retries;
	w->data = op;
	w->zone = l->zone;
	w->count = l->count;
	w->isolate = zd_device_isolated(dev);
	w->zone_work = w->recheck = true;
	w->fail_zone = w->zone;
	w->open_flags = acquire_flags(a);
	w->run = zone_open_run;
	w->done = acquire_done;
	zd_work_queue(dev, w);
	if (l->count == 1 && zd_zstore_cond(&dev->zs, l->zone) == ZP_COND_EMPTY)
		zd_device_ready_refill(dev);
	return 0;
}

static bool transient(int r)
{
	return r == ZP_ERR_LIMIT || r == ZP_ERR_NO_FREE_ZONE || r == ZP_ERR_ZONE_LEASED;
}

static void acquire_error(struct zd_call *call, const struct acquire_req *a, int r)
{
	switch (r) {
	case ZP_ERR_NO_DEVICE: {
		struct zd_device *dev = a->device[0] ? zd_device_find(a->d, a->device) : NULL;

		if (dev && dev->failed)
			zd_device_failed_error(call, dev);
		else if (a->device[0])
			zd_call_error(call, r, "no such device '%.64s'", a->device);
		else
			zd_call_error(call, r, "no device can serve (every one failed)");
		break;
	}
	case ZP_ERR_NO_ZONE:
		zd_call_error(call, r, "no zone %lld on %s", (long long)a->req.zone, a->device);
		break;
	case ZP_ERR_ZONE_LEASED:
		zd_call_error(call, r, "zone %lld is leased", (long long)a->req.zone);
		break;
	case ZP_ERR_ZONE_STATE:
		zd_call_error(call, r, "zone %lld cannot be leased (conventional, read-only or offline)",
			      (long long)a->req.zone);
		break;
	case ZP_ERR_LIMIT:
		zd_call_error(call, r, "the device's open or active zone limit is reached");
		break;
	case ZP_ERR_NO_FREE_ZONE:
		zd_call_error(call, r, "no zone available");
		break;
	case ZP_ERR_IO:
		zd_call_error(call, r, "the state directory cannot record a new token generation "
			      "(full or failing, see the daemon's log): no lease is granted until "
			      "it can");
		break;
	default:
		zd_call_error(call, r, "%s", zp_error_message(r));
	}
}

static int waiter_try(struct zd_waiter *w)
{
	struct acquire_req *a = zd_container_of(w, struct acquire_req, w);
	struct zd_daemon *d = a->d;
	int r = acquire_try(d, a, 0);

	if (r == 0)
		return ZD_WAIT_GRANTED;
	if (r == ACQ_CONN_LIMIT)
		return ZD_WAIT_CONN;
	if (!transient(r))
		return r;
	if (w->until_released && d->nr_releasing == 0)
		return a->first_err;
	/* Waiting for named zones: parked on the lease of the first one
	 * leased, woken when it ends. */
	if (r == ZP_ERR_ZONE_LEASED && a->req.zone >= 0) {
		for (uint32_t i = 0; i < a->req.count; i++) {
			struct zd_lease *l = w->dev->lease_of[(uint32_t)a->req.zone + i];

			if (l) {
				zd_waiter_park(w, &l->waiters);
				return ZD_WAIT_PARKED;
			}
		}
	}
	return ZD_WAIT_AGAIN;
}

static void waiter_answer(struct zd_waiter *w, int code)
{
	struct acquire_req *a = zd_container_of(w, struct acquire_req, w);
	struct zd_call *call = a->call;

	if (code == ZP_ERR_TIMEOUT) {
		if (!call->conn->closing)
			a->d->stats.wait_timeouts++;
		zd_call_error(call, code, "no zone became free in time");
	} else {
		acquire_error(call, a, code);
	}
	zd_call_complete(call);
}

static void waiter_free(struct zd_waiter *w)
{
	free(zd_container_of(w, struct acquire_req, w));
}

static const struct zd_waiter_ops acquire_waiter_ops = {
	.try = waiter_try,
	.answer = waiter_answer,
	.free = waiter_free,
};

/* min_free no zone could ever have is a bad request, not "no zone now":
 * beyond the named zone's capacity, the device's, or every device's. */
static bool min_free_too_large(struct zd_daemon *d, const struct acquire_req *a, struct zp_err *e)
{
	uint64_t cap = 0;
	bool known = false;

	if (a->device[0]) {
		struct zd_device *dev = zd_device_find(d, a->device);

		if (!dev)
			return false; /* answered as "no such device" */
		known = true;
		if (a->req.zone >= 0 && a->req.zone < dev->info.nr_zones)
			cap = zd_zstore_capacity(&dev->zs, (uint32_t)a->req.zone);
		else
			cap = dev->info.zone_capacity;
	} else {
		struct zd_list *pos, *tmp;

		zd_list_for_each_safe(pos, tmp, &d->devices) {
			struct zd_device *dev = zd_container_of(pos, struct zd_device, link);

			known = true;
			if (dev->info.zone_capacity > cap)
				cap = dev->info.zone_capacity;
		}
	}
	/* A range's min_free is over all its zones. */
	cap *= a->req.count;
	if (!known || a->req.min_free <= cap)
		return false;
	zp_err_set(e, ZP_ERR_INVALID_PARAMS,
		   "parameter 'min_free' (%llu bytes) is larger than the zone capacity (%llu bytes)",
		   (unsigned long long)a->req.min_free, (unsigned long long)cap);
	return true;
}

/* A range the device's open or active limit could never hold is a bad
 * request, not something to wait for. */
static bool range_too_large(struct zd_daemon *d, const struct acquire_req *a, struct zp_err *e)
{
	struct zd_device *dev = a->device[0] ? zd_device_find(d, a->device) : NULL;
	uint32_t lim;

	if (!dev)
		return false;
	lim = dev->info.max_open;
	if (dev->info.max_active && (!lim || dev->info.max_active < lim))
		lim = dev->info.max_active;
	if (!lim || a->req.count <= lim)
		return false;
	zp_err_set(e, ZP_ERR_INVALID_PARAMS,
		   "parameter 'count' (%u zones) is more than %s can have open at once (%u)",
		   a->req.count, dev->id, lim);
	return true;
}

static int lease_acquire_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	struct acquire_req *a;
	const char *s;
	uint64_t u, wait_ms = 0;
	struct zp_err e;
	int r;

	a = calloc(1, sizeof(*a));
	if (!a) {
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return 0;
	}
	a->call = call;
	a->d = d;
	a->req.zone = -1;
	a->req.count = 1;
	a->direct = true;
	a->req.prefer = ZD_PREFER_EMPTY;
	zd_list_init(&a->w.link);
	zd_list_init(&a->w.conn_link);
	zd_list_init(&a->w.release_link);

	r = zp_param_string(p, "device", ZP_OPTIONAL, &s, &e);
	if (r == 0)
		snprintf(a->device, sizeof(a->device), "%s", s);
	if (r == -EINVAL)
		goto bad;
	r = zp_param_u64(p, "zone", ZP_OPTIONAL, &u, &e);
	if (r == -EINVAL)
		goto bad;
	if (r == 0) {
		if (!a->device[0]) {
			zp_err_set(&e, ZP_ERR_INVALID_PARAMS, "parameter 'zone' needs 'device'");
			goto bad;
		}
		a->req.zone = u > INT64_MAX ? INT64_MAX : (int64_t)u;
	}
	r = zp_param_u64(p, "count", ZP_OPTIONAL, &u, &e);
	if (r == -EINVAL)
		goto bad;
	if (r == 0) {
		if (u == 0 || u > ZP_LEASE_ZONES_MAX) {
			zp_err_set(&e, ZP_ERR_INVALID_PARAMS,
				   "parameter 'count' must be 1 to %d zones", ZP_LEASE_ZONES_MAX);
			goto bad;
		}
		a->req.count = (uint32_t)u;
	}
	r = zp_param_u64(p, "min_free", ZP_OPTIONAL, &a->req.min_free, &e);
	if (r == -EINVAL)
		goto bad;
	r = zp_param_string(p, "prefer", ZP_OPTIONAL, &s, &e);
	if (r == -EINVAL)
		goto bad;
	if (r == 0) {
		if (strcmp(s, "empty") == 0) {
			a->req.prefer = ZD_PREFER_EMPTY;
		} else if (strcmp(s, "partial") == 0) {
			a->req.prefer = ZD_PREFER_PARTIAL;
		} else {
			zp_err_set(&e, ZP_ERR_INVALID_PARAMS,
				   "parameter 'prefer' must be \"empty\" or \"partial\"");
			goto bad;
		}
	}
	r = zp_param_u64(p, "wait_ms", ZP_OPTIONAL, &wait_ms, &e);
	if (r == -EINVAL)
		goto bad;
	r = zp_param_bool(p, "direct", ZP_OPTIONAL, &a->direct, &e);
	if (r == -EINVAL)
		goto bad;
	r = zp_param_bool(p, "reclaimable", ZP_OPTIONAL, &a->reclaimable, &e);
	if (r == -EINVAL)
		goto bad;
	r = zp_param_string(p, "label", ZP_OPTIONAL, &s, &e);
	if (r == -EINVAL)
		goto bad;
	if (r == 0) {
		if (strlen(s) >= sizeof(a->label)) {
			zp_err_set(&e, ZP_ERR_INVALID_PARAMS,
				   "parameter 'label' is longer than %zu bytes", sizeof(a->label) - 1);
			goto bad;
		}
		snprintf(a->label, sizeof(a->label), "%s", s);
	}
	if (a->req.min_free && min_free_too_large(d, a, &e))
		goto bad;
	if (a->req.count > 1 && range_too_large(d, a, &e))
		goto bad;
	if (d->cfg.max_wait_ms && wait_ms > d->cfg.max_wait_ms)
		wait_ms = d->cfg.max_wait_ms;
	if (d->cfg.max_leases_per_conn && call->conn->nr_leases >= d->cfg.max_leases_per_conn) {
		zd_call_error(call, ZP_ERR_LIMIT, "this connection holds %u leases, the limit",
			      call->conn->nr_leases);
		free(a);
		return 0;
	}

	a->wait_ms = wait_ms;
	r = acquire_try(d, a, 0);
	if (r == 0) {
		free(a);
		return ZD_ASYNC;
	}
	return acquire_settle(d, a, r);
bad:
	zd_call_error(call, e.code, "%s", e.message);
	free(a);
	return 0;
}

/* What an acquire that acquire_try() could not start now gets: a wait, or
 * the answer. ZD_ASYNC when a waits (and is kept), else 0: a is freed and
 * the call has its error, for the caller to complete. */
static int acquire_settle(struct zd_daemon *d, struct acquire_req *a, int r)
{
	struct zd_call *call = a->call;
	uint64_t wait_ms = a->wait_ms;

	if (r == ACQ_CONN_LIMIT)
		r = ZP_ERR_LIMIT;
	/* Zones whose release is still on the device queue come back within
	 * milliseconds: a caller who will not wait still waits for those. */
	if (wait_ms == 0 && d->nr_releasing > 0 && transient(r)) {
		a->w.until_released = true;
		a->first_err = r;
		/* Bounded, so a stream of other releases cannot hold a caller
		 * who asked not to wait. */
		wait_ms = 1000;
	}
	if (wait_ms > 0 && transient(r)) {
		a->w.conn = call->conn;
		a->w.ops = &acquire_waiter_ops;
		a->w.timeout_code = a->w.until_released ? r : ZP_ERR_TIMEOUT;
		if (a->device[0]) {
			a->w.dev = zd_device_find(d, a->device);
			/* Its canonical id, if named by path. */
			snprintf(a->device, sizeof(a->device), "%s", a->w.dev->id);
		}
		if (zd_waiter_add(d, &a->w, wait_ms) == 0) {
			if (!a->w.until_released)
				d->stats.waits++;
			return ZD_ASYNC;
		}
		a->w.dev = NULL;
		if (!a->w.until_released) {
			zd_call_error(call, ZP_ERR_LIMIT,
				      "too many waiting acquires (at most %u per connection, "
				      "%u per uid)", d->cfg.max_waiters_per_conn,
				      d->cfg.max_waiters_per_uid);
			free(a);
			return 0;
		}
		/* A caller who would not wait just gets the answer of now. */
	}
	acquire_error(call, a, r);
	free(a);
	return 0;
}

/* --- operations on a held lease ----------------------------------------- */

/* lease.sync refreshes every zone of the lease (the hint goes to the zone
 * it falls in); lease.reset and lease.finish apply to all of them. */
static int leaseop_run(struct zd_work *w)
{
	struct zd_dev *dev = w->dev->dev;
	uint32_t n;
	int r;

	bool moved = false;

	w->nz = 0;
	if (w->op != (enum zd_zone_op)-1) {
		r = dev->ops->zone_op(dev, w->op, w->zone, w->count);
		if (r < 0)
			return r;
	}
	for (uint32_t i = 0; i < w->count; i++) {
		uint32_t z = w->zone + i;

		w->fail_zone = z;
		if (w->op == (enum zd_zone_op)-1) {
			uint64_t hint = w->hint_wp != UINT64_MAX && w->hint_wp >= w->zbuf[i].start &&
						w->hint_wp - w->zbuf[i].start <= w->zbuf[i].len
					? w->hint_wp
					: UINT64_MAX;
			uint64_t known = w->zbuf[i].wp;

			r = dev->ops->refresh_zone(dev, z, hint, &w->zbuf[i]);
			moved |= r == 0 && w->zbuf[i].wp != known;
		} else {
			n = 1;
			r = dev->ops->report(dev, z, &w->zbuf[i], &n);
		}
		if (r < 0)
			return r;
		w->nz = i + 1;
	}
	/* lease.sync is a durability point, as a release is. */
	return moved && dev->ops->flush ? dev->ops->flush(dev) : 0;
}

static void leaseop_done(struct zd_work *w, int status)
{
	struct lease_op *op = w->data;
	struct zd_lease *l = op->lease;
	struct zd_call *call = op->call;

	for (uint32_t i = 0; i < w->nz; i++)
		zd_device_zone_refreshed(w->dev, w->zone + i, &w->zbuf[i]);
	if (zone_died(w) && l->state == ZD_LEASE_HELD) {
		zone_dead_error(call, w->dev, dead_zone(w), "lease");
	} else if (status < 0) {
		/* Only lease.sync passes a value the device can refuse. */
		zd_call_errno(call, status, status == -EINVAL ? "parameter 'wp'" : "lease");
	} else if (l->state != ZD_LEASE_HELD) {
		zd_call_error(call, ZP_ERR_STALE_LEASE, "the lease was revoked");
	} else {
		zd_lease_result(call, l);
	}
	zd_lease_op_done(l);
	free(op);
	free(w->zbuf);
	free(w);
	zd_call_complete(call);
}

static int lease_queue_op(struct zd_call *call, struct zd_lease *l, int op, uint64_t hint)
{
	struct lease_op *lop;
	struct zd_work *w;

	/* Known dead: fails clearly without asking the device. */
	uint32_t dead = range_dead(l->dev, l->zone, l->count);

	if (dead != ZD_NIL) {
		zone_dead_error(call, l->dev, dead, "lease");
		return -EPERM;
	}
	lop = calloc(1, sizeof(*lop));
	w = calloc(1, sizeof(*w));

	if (w)
		w->zbuf = calloc(l->count, sizeof(*w->zbuf));
	if (!lop || !w || !w->zbuf) {
		free(lop);
		if (w)
			free(w->zbuf);
		free(w);
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	lop->call = call;
	lop->lease = l;
	w->data = lop;
	w->zone = l->zone;
	w->count = l->count;
	/* Where each zone starts, for the hint's zone (the cache's view). */
	for (uint32_t i = 0; i < l->count; i++)
		w->zbuf[i] = zd_device_zone(l->dev, l->zone + i);
	w->op = (enum zd_zone_op)op;
	w->hint_wp = hint;
	w->zone_work = w->recheck = true;
	w->fail_zone = w->zone;
	w->run = leaseop_run;
	w->done = leaseop_done;
	l->busy++;
	zd_work_queue(l->dev, w);
	return 0;
}

static int lease_sync_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	struct zd_lease *l = lease_lookup(call, p);
	uint64_t wp = UINT64_MAX;
	struct zp_err e;
	int r;

	(void)d;
	if (!l)
		return 0;
	r = zp_param_u64(p, "wp", ZP_OPTIONAL, &wp, &e);
	if (r == -EINVAL) {
		zd_call_error(call, e.code, "%s", e.message);
		return 0;
	}
	if (r == 0) {
		struct zd_zone zc = zd_device_zone(l->dev, l->zone);
		const struct zd_zone *z = &zc;

		/* The zone of the range the wp falls in (the end of one zone's
		 * capacity is that zone's, not the next one's start). */
		for (uint32_t i = 1; i < l->count && wp > z->start + z->capacity; i++)
			zc = zd_device_zone(l->dev, l->zone + i);
		if (wp < z->start || wp > z->start + z->capacity ||
		    wp % l->dev->info.logical_block_size) {
			zd_call_error(call, ZP_ERR_INVALID_PARAMS,
				      "parameter 'wp' must be block-aligned within the zone's capacity");
			return 0;
		}
		/* A full zone's wp is start + capacity up here and its end in
		 * the backends (zone_normalise): a holder repeating it tells
		 * the device nothing, and is not a hint behind the zone's end. */
		if (z->cond == ZP_COND_FULL && wp == z->start + z->capacity)
			wp = UINT64_MAX;
	}
	return lease_queue_op(call, l, -1, wp) < 0 ? 0 : ZD_ASYNC;
}

/* lease.reset and lease.finish: a zone operation that keeps the lease. */
static int lease_zone_op(struct zd_call *call, struct json_object *p, enum zd_zone_op op)
{
	struct zd_lease *l = lease_lookup(call, p);

	if (!l)
		return 0;
	return lease_queue_op(call, l, (int)op, 0) < 0 ? 0 : ZD_ASYNC;
}

static int lease_reset_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	(void)d;
	return lease_zone_op(call, p, ZD_OP_RESET);
}

static int lease_finish_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	(void)d;
	return lease_zone_op(call, p, ZD_OP_FINISH);
}

static int lease_release_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	struct zd_lease *l = lease_lookup(call, p);
	const char *then = "keep";
	struct zp_err e;
	int op, r;

	(void)d;
	if (!l)
		return 0;
	r = zp_param_string(p, "then", ZP_OPTIONAL, &then, &e);
	if (r == -EINVAL) {
		zd_call_error(call, e.code, "%s", e.message);
		return 0;
	}
	if (strcmp(then, "keep") == 0) {
		op = -1;
	} else if (strcmp(then, "finish") == 0) {
		op = ZD_OP_FINISH;
	} else if (strcmp(then, "reset") == 0) {
		op = ZD_OP_RESET;
	} else {
		zd_call_error(call, ZP_ERR_INVALID_PARAMS,
			      "parameter 'then' must be \"keep\", \"finish\" or \"reset\"");
		return 0;
	}
	r = zd_lease_release(l, op, call);
	if (r < 0) {
		zd_call_errno(call, r, "release");
		return 0;
	}
	return ZD_ASYNC;
}

static int lease_list_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	struct json_object *arr = json_object_new_array();
	struct zd_lease *l, *last = NULL;
	bool all = false;
	struct zp_err e;
	uint64_t now = zd_now_ms(d), after = 0, limit = 0, n = 0;

	if (zp_param_bool(p, "all", ZP_OPTIONAL, &all, &e) == -EINVAL ||
	    zp_param_u64(p, "after", ZP_OPTIONAL, &after, &e) == -EINVAL ||
	    zp_param_u64(p, "limit", ZP_OPTIONAL, &limit, &e) == -EINVAL) {
		json_object_put(arr);
		zd_call_error(call, e.code, "%s", e.message);
		return 0;
	}
	if (limit > ZD_LEASE_LIST_MAX) {
		json_object_put(arr);
		zd_call_error(call, ZP_ERR_INVALID_PARAMS, "parameter 'limit' must be at most %d",
			      ZD_LEASE_LIST_MAX);
		return 0;
	}
	if (all && !call->conn->admin) {
		json_object_put(arr);
		zd_call_error(call, ZP_ERR_PERM, "listing every lease needs admin rights");
		return 0;
	}
	/* In id order from `after`; without a limit, all of them (what a
	 * client before 0.3 asks for, in one reply however large). */
	for (l = zd_lease_first_after(d, after); l; l = zd_lease_next(d, l)) {
		struct json_object *o;

		if (l->dev->lease_of[l->zone] != l)
			continue;
		/* An orphan shows to its uid (that is who may reclaim it),
		 * without the token: its owner kept that. */
		if (l->state == ZD_LEASE_ORPHANED) {
			if (!all && l->uid != call->conn->uid)
				continue;
		} else if (l->state != ZD_LEASE_HELD || (!all && l->conn != call->conn)) {
			continue;
		}
		if (limit && n == limit)
			break;
		n++;
		last = l;
		o = zd_lease_json(l);
		if (l->conn != call->conn)
			json_object_object_del(o, "token");
		json_object_object_add(o, "state",
				       json_object_new_string(zd_lease_state_name(l->state)));
		json_object_object_add(o, "reclaimable",
				       json_object_new_boolean(l->reclaimable));
		if (l->state == ZD_LEASE_ORPHANED)
			json_object_object_add(o, "grace_left_ms", json_object_new_uint64(
				l->orphan_until_ms > now ? l->orphan_until_ms - now : 0));
		json_object_object_add(o, "pid", json_object_new_int(l->pid));
		json_object_object_add(o, "uid", json_object_new_int64(l->uid));
		json_object_object_add(o, "age_ms",
				       json_object_new_uint64(now - l->granted_ms));
		json_object_array_add(arr, o);
	}
	call->result = json_object_new_object();
	json_object_object_add(call->result, "leases", arr);
	/* l is where the page stopped: more to come from `next`. */
	json_object_object_add(call->result, "next",
			       l && last ? json_object_new_uint64(last->id) : NULL);
	return 0;
}

/* --- reclaim ----------------------------------------------------------- */

static void reclaim_recorded(struct zd_lease *l, int status, void *arg)
{
	struct lease_op *op = arg;
	struct zd_call *call = op->call;

	if (l->state == ZD_LEASE_REVOKED) {
		zf_close(&op->zf);
		zd_call_error(call, ZP_ERR_STALE_LEASE, "the lease was revoked as it was reclaimed");
		zd_lease_op_done(l);
	} else if (status < 0 || !l->conn) {
		/* Nothing changed hands: the lease stays orphaned, its grace
		 * running as before, and may be reclaimed again. */
		uint64_t until = l->orphan_until_ms;

		zf_close(&op->zf);
		zd_call_error(call, ZP_ERR_IO, "the reclaim cannot be recorded in the state "
			      "directory (see the daemon's log)");
		l->busy--;
		zd_lease_orphan(l);
		l->orphan_until_ms = until;
	} else {
		l->busy--;
		zd_lease_set_state(l, ZD_LEASE_HELD);
		zd_lease_result(call, l);
		zf_give(call, &op->zf);
		zd_lease_log(l, "reclaimed");
		zd_event_lease(l->dev->d, ZD_EV_LEASE_RECLAIMED, l, NULL);
	}
	free(op);
	zd_call_complete(call);
}

static void reclaim_done(struct zd_work *w, int status)
{
	struct lease_op *op = w->data;
	struct zd_lease *l = op->lease;
	struct zd_call *call = op->call;

	zones_update(w);
	if (zone_died(w) && status >= 0) {
		status = -EPERM;
		zf_close(&w->zf);
	}
	if (l->state == ZD_LEASE_REVOKED) {
		zf_close(&w->zf);
		zd_call_error(call, ZP_ERR_STALE_LEASE, "the lease was revoked as it was reclaimed");
		zd_lease_op_done(l);
	} else if (status < 0 || !l->conn) {
		/* Nothing changed hands: the lease stays orphaned, its grace
		 * running as before, and may be reclaimed again. */
		uint64_t until = l->orphan_until_ms;

		zf_close(&w->zf);
		if (zone_died(w))
			zone_dead_error(call, w->dev, dead_zone(w), "reclaim");
		else if (status < 0)
			zd_call_errno(call, status, "reclaim");
		else
			zd_call_error(call, ZP_ERR_STALE_LEASE, "the connection left as it reclaimed");
		l->busy--;
		zd_lease_orphan(l);
		l->orphan_until_ms = until;
	} else {
		int fl = fcntl(w->zf.fd[0], F_GETFL), r;

		l->direct = fl >= 0 && (fl & O_DIRECT);
		l->fd_offset = w->zf.fd_offset;
		op->zf = w->zf;
		w->zf.nr = 0;
		free(w->zbuf);
		free(w);
		/* The new holder (pid) is recorded before it hears of it. */
		r = zd_lease_persist(l, reclaim_recorded, op);
		if (r < 0)
			reclaim_recorded(l, r, op);
		return;
	}
	free(op);
	free(w->zbuf);
	free(w);
	zd_call_complete(call);
}

static int lease_reclaim_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	struct zd_conn *conn = call->conn;
	struct zd_lease *l;
	struct lease_op *op;
	struct zd_work *w;
	uint64_t id, token;
	struct zp_err e;
	int r;

	r = zp_param_u64(p, "id", ZP_REQUIRED, &id, &e);
	if (r == 0)
		r = zp_param_u64(p, "token", ZP_REQUIRED, &token, &e);
	if (r < 0) {
		zd_call_error(call, e.code, "%s", e.message);
		return 0;
	}
	l = zd_lease_find_orphan(d, id);
	/* Another uid's orphan, or a wrong token, is as unknown as a lease
	 * that never was: nothing is learnt by probing. */
	if (!l || l->token != token || l->uid != conn->uid) {
		zd_call_error(call, ZP_ERR_STALE_LEASE, "no orphaned lease %" PRIu64
			      " with this token for this user", id);
		return 0;
	}
	if (d->cfg.max_leases_per_conn && conn->nr_leases >= d->cfg.max_leases_per_conn) {
		zd_call_error(call, ZP_ERR_LIMIT, "this connection holds %u leases, the limit",
			      conn->nr_leases);
		return 0;
	}
	op = calloc(1, sizeof(*op));
	w = calloc(1, sizeof(*w));
	if (w)
		w->zbuf = calloc(l->count, sizeof(*w->zbuf));
	if (!op || !w || !w->zbuf) {
		free(op);
		if (w)
			free(w->zbuf);
		free(w);
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return 0;
	}
	zd_lease_set_state(l, ZD_LEASE_RECLAIMING);
	zd_lease_attach(l, conn);
	l->busy++;
	op->call = call;
	op->lease = l;
	w->data = op;
	w->zone = l->zone;
	w->count = l->count;
	w->isolate = zd_device_isolated(l->dev);
	w->open_flags = O_RDWR | (l->direct ? O_DIRECT : 0);
	w->zone_work = w->recheck = true;
	w->fail_zone = w->zone;
	w->run = zone_open_run;
	w->done = reclaim_done;
	zd_work_queue(l->dev, w);
	return ZD_ASYNC;
}

#define P(...) ((const char *const[]){ __VA_ARGS__, NULL })
static const struct zd_method lease_methods[] = {
	{ "lease.acquire", lease_acquire_method, ZD_M_CLIENT | ZD_M_REPLY,
	  P("device", "zone", "count", "min_free", "prefer", "wait_ms", "direct", "label",
	    "reclaimable") },
	{ "lease.reclaim", lease_reclaim_method, ZD_M_CLIENT | ZD_M_REPLY, P("id", "token") },
	{ "lease.sync", lease_sync_method, ZD_M_CLIENT, P("id", "token", "wp") },
	{ "lease.release", lease_release_method, ZD_M_CLIENT, P("id", "token", "then") },
	{ "lease.reset", lease_reset_method, ZD_M_CLIENT, P("id", "token") },
	{ "lease.finish", lease_finish_method, ZD_M_CLIENT, P("id", "token") },
	{ "lease.list", lease_list_method, ZD_M_CLIENT, P("all", "after", "limit") },
};
#undef P

void zd_lease_methods_init(struct zd_daemon *d)
{
	d->methods_lease.methods = lease_methods;
	d->methods_lease.nr_methods = sizeof(lease_methods) / sizeof(lease_methods[0]);
	zd_method_table_bind(d, &d->methods_lease);
}
