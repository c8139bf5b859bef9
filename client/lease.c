/* libzoned-client leases: acquiring a zone with its fd, appending at the
 * locally tracked write pointer, reading within the zone, syncing with the
 * daemon, and a buffered append stream (fopencookie). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client/client-private.h"
#include "proto/proto.h"

/* One zone of a lease, absolute byte offsets. */
struct zc_lease_zone {
	uint64_t start, capacity, wp;
};

struct zc_lease {
	zc_client *c;        /* holds a reference */
	uint64_t id, token;
	char device[64];
	char label[128];
	uint32_t zone;       /* the first */
	uint32_t count;      /* zones in the lease, consecutive */
	uint64_t start, len, capacity; /* of the first zone; every zone has len */
	uint64_t fd_offset;  /* where the first zone starts in fds[0] (0: its own fd) */
	uint64_t wp;         /* absolute, local view: where the next append goes */
	uint32_t cur;        /* the zone wp is in */
	struct zc_lease_zone *z; /* count of them; &z1 for one zone */
	struct zc_lease_zone z1;
	uint32_t block_size;
	bool direct;
	/* 0 while usable, else the error every call now fails with before
	 * any syscall: -ESTALE once the daemon said it no longer knows the
	 * lease, -ENOTCONN once the connection is gone. Atomic: zc_close()
	 * and a lost connection set it from whichever thread notices. */
	atomic_int dead;
	atomic_bool unreclaimed; /* dead because the daemon did not give it back */
	/* 1: fds[0] maps every zone of the lease; count: fds[i] is zone i's
	 * own. The numbers stay the lease's while it lives (fenced, refilled
	 * by a reclaim), so fd is fds[0]. */
	int fds[ZP_LEASE_ZONES_MAX];
	unsigned nfds;
	struct zc_lease *prev, *next; /* in c->leases, under c->leases_lock */
};

/* The fd that reaches zone i of l, and where byte b of that zone is in it
 * (at *base + b). */
static int zone_fd(const zc_lease *l, uint32_t i, uint64_t *base)
{
	if (l->nfds == 1) {
		*base = l->fd_offset + (l->z[i].start - l->z[0].start);
		return l->fds[0];
	}
	*base = 0;
	return l->fds[i];
}


/* The error a dead lease fails with, recorded for zc_last_error(). A lease
 * waiting for its reclaim (-EAGAIN) gives the reconnect its chance first,
 * so that the call after the daemon is back finds it reclaimed. */
static int lease_dead(zc_lease *l)
{
	int e = atomic_load(&l->dead);

	if (e == -EAGAIN) {
		zc_reconnect_step(l->c);
		e = atomic_load(&l->dead);
	}
	if (!e)
		return 0;
	return zc_fail(l->c, e, e == -ENOTCONN ? "the lease's connection is closed"
				: e == -EAGAIN ? "the connection was lost; the lease is not reclaimed yet"
				: atomic_load(&l->unreclaimed)
					? "the daemon did not give the lease back after the connection was lost"
					: "the lease was released or revoked");
}

static void lease_mark(zc_lease *l, int err)
{
	int cur = atomic_load(&l->dead);

	/* The first cause sticks: a lease the daemon called stale stays so
	 * after the connection closes. Waiting for a reclaim (-EAGAIN) is
	 * no cause: whatever ends the wait replaces it. */
	while ((cur == 0 || (cur == -EAGAIN && err != -EAGAIN)) &&
	       !atomic_compare_exchange_weak(&l->dead, &cur, err))
		;
}

/* Points fd at the read end of a pipe with no writer: the number stays
 * taken (a file opened later cannot land on it and receive the lease's
 * writes), writes fail with EBADF, reads see end of file. */
static void fence_fd(int fd, int pipe_rd)
{
	int r;

	do
		r = dup3(pipe_rd, fd, O_CLOEXEC);
	while (r < 0 && (errno == EINTR || errno == EBUSY));
}

/* Every fd number of l onto the pipe's read end (see fence_fd). */
static void fence_all(zc_lease *l, int pipe_rd)
{
	for (unsigned i = 0; i < l->nfds; i++)
		fence_fd(l->fds[i], pipe_rd);
}

/* The lease stops using its fd numbers. */
static void close_fds(zc_lease *l)
{
	for (unsigned i = 0; i < l->nfds; i++)
		close(l->fds[i]);
	l->nfds = 0;
}

void zc_leases_lost(zc_client *c, int err)
{
	int p[2] = { -1, -1 };

	pthread_mutex_lock(&c->leases_lock);
	if (c->leases && pipe2(p, O_CLOEXEC) == 0)
		close(p[1]);
	for (zc_lease *l = c->leases; l; l = l->next) {
		lease_mark(l, err);
		if (p[0] >= 0) {
			fence_all(l, p[0]);
		} else {
			/* No pipe (out of fds): closing is the only fence
			 * left; the lease stops using the numbers. */
			close_fds(l);
		}
	}
	pthread_mutex_unlock(&c->leases_lock);
	if (p[0] >= 0)
		close(p[0]);
}

/* One lease to reclaim, copied out of the list: the call waits, and the
 * lease may be released meanwhile. */
struct reclaim_item {
	uint64_t id, token;
};

/* Under c->leases_lock: the lease with this id waiting for its reclaim. */
static zc_lease *waiting_lease(zc_client *c, uint64_t id)
{
	for (zc_lease *l = c->leases; l; l = l->next)
		if (l->id == id && atomic_load(&l->dead) == -EAGAIN)
			return l;
	return NULL;
}

static int parse_lease(struct json_object *o, zc_lease *l, bool first);

static void mark_unreclaimed(zc_lease *l)
{
	atomic_store(&l->unreclaimed, true);
	lease_mark(l, -ESTALE);
}

/* Takes the reply of one lease.reclaim (takes fd): the fresh fd goes onto
 * the lease's fd number, so an application holding the number writes to
 * the reclaimed lease, and the write pointer is the device's. */
static void reclaimed(zc_client *c, struct reclaim_item *it, struct json_object *res, int *fds,
		      unsigned nfds)
{
	struct json_object *lo;
	zc_lease *l;
	bool used = false;

	pthread_mutex_lock(&c->leases_lock);
	l = waiting_lease(c, it->id);
	if (l && nfds && (nfds == l->nfds || l->nfds == 0) &&
	    zc_get_object(res, "lease", &lo) == 0 && parse_lease(lo, l, false) == 0) {
		int r = 0;

		if (l->nfds) {
			for (unsigned i = 0; i < nfds && r >= 0; i++)
				do
					r = dup3(fds[i], l->fds[i], O_CLOEXEC);
				while (r < 0 && (errno == EINTR || errno == EBUSY));
		} else {
			memcpy(l->fds, fds, nfds * sizeof(int));
			l->nfds = nfds;
			nfds = 0;
		}
		if (r >= 0) {
			int again = -EAGAIN;

			atomic_compare_exchange_strong(&l->dead, &again, 0);
			used = true;
		} else {
			mark_unreclaimed(l);
		}
	} else if (l) {
		mark_unreclaimed(l);
	}
	pthread_mutex_unlock(&c->leases_lock);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (!used) {
		/* Released while we reclaimed it, or unusable: give it back. */
		struct json_object *p = json_object_new_object();

		if (p) {
			json_object_object_add(p, "id", json_object_new_uint64(it->id));
			json_object_object_add(p, "token", json_object_new_uint64(it->token));
			if (zc_call(c, "lease.release", p, &res, NULL) == 0)
				json_object_put(res);
		}
	}
}

int zc_leases_reclaim(zc_client *c)
{
	struct reclaim_item *items = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	pthread_mutex_lock(&c->leases_lock);
	for (zc_lease *l = c->leases; l; l = l->next) {
		if (atomic_load(&l->dead) != -EAGAIN)
			continue;
		if (n == cap) {
			struct reclaim_item *m = realloc(items, (cap ? cap * 2 : 8) * sizeof(*m));

			if (!m) {
				/* Unreclaimed, it cannot be trusted. */
				mark_unreclaimed(l);
				continue;
			}
			items = m;
			cap = cap ? cap * 2 : 8;
		}
		items[n].id = l->id;
		items[n].token = l->token;
		n++;
	}
	pthread_mutex_unlock(&c->leases_lock);

	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_new_object(), *res;
		int fds[ZP_MAX_FDS];
		unsigned nfds = 0;

		if (!p) {
			r = -ENOMEM;
			break;
		}
		json_object_object_add(p, "id", json_object_new_uint64(items[i].id));
		json_object_object_add(p, "token", json_object_new_uint64(items[i].token));
		r = zc_call_fds(c, "lease.reclaim", p, 0, ZC_P_GRANTS, &res, fds, &nfds);
		if (r == 0) {
			reclaimed(c, &items[i], res, fds, nfds);
			json_object_put(res);
			continue;
		}
		if (r == -ECONNRESET || r == -ENOTCONN || r == -EAGAIN || r == -ETIMEDOUT ||
		    r == -ENOMEM)
			break; /* the next attempt tries again */
		/* The daemon will not give it back (-ESTALE: the grace ended,
		 * the lease was revoked; or its device fails): its next call
		 * says so, and nothing is written through it. */
		r = 0;
		pthread_mutex_lock(&c->leases_lock);
		for (zc_lease *l = c->leases; l; l = l->next)
			if (l->id == items[i].id)
				mark_unreclaimed(l);
		pthread_mutex_unlock(&c->leases_lock);
	}
	free(items);
	return r;
}

static void lease_link(zc_lease *l)
{
	zc_client *c = l->c;

	pthread_mutex_lock(&c->leases_lock);
	l->prev = NULL;
	l->next = c->leases;
	if (c->leases)
		c->leases->prev = l;
	c->leases = l;
	pthread_mutex_unlock(&c->leases_lock);
}

static void lease_unlink(zc_lease *l)
{
	zc_client *c = l->c;

	pthread_mutex_lock(&c->leases_lock);
	if (l->prev)
		l->prev->next = l->next;
	else
		c->leases = l->next;
	if (l->next)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
	pthread_mutex_unlock(&c->leases_lock);
}

ZC_EXPORT void zc_lease_opts_init(struct zc_lease_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->zone = -1;
	opts->prefer = ZC_PREFER_ANY;
}

/* One zone's {start, capacity, wp} checked against the lease's geometry; a
 * full zone's wp may be reported at the zone's end (start + len) rather
 * than at its capacity, and for appends both mean "no room left". */
static int zone_checked(const zc_lease *l, struct zc_lease_zone *z)
{
	if (z->capacity > l->len || z->wp < z->start || z->wp > z->start + l->len)
		return -EPROTO;
	if (z->wp > z->start + z->capacity)
		z->wp = z->start + z->capacity;
	return 0;
}

/* Each zone's state: from `zones` for a range, the top level for one. */
static int parse_zones(struct json_object *o, zc_lease *l)
{
	struct json_object *arr;
	int r;

	if (l->count == 1) {
		l->z[0] = (struct zc_lease_zone){ l->start, l->capacity, l->wp };
		return zone_checked(l, &l->z[0]);
	}
	if ((r = zc_get_array(o, "zones", &arr)) < 0 || json_object_array_length(arr) != l->count)
		return r < 0 ? r : -EPROTO;
	for (uint32_t i = 0; i < l->count; i++) {
		struct json_object *zo = json_object_array_get_idx(arr, i);
		struct zc_lease_zone *z = &l->z[i];
		uint32_t idx;

		if (!json_object_is_type(zo, json_type_object) ||
		    (r = zc_get_u32(zo, "zone", &idx)) < 0 || (r = zc_get_u64(zo, "start", &z->start)) < 0 ||
		    (r = zc_get_u64(zo, "capacity", &z->capacity)) < 0 ||
		    (r = zc_get_u64(zo, "wp", &z->wp)) < 0)
			return r < 0 ? r : -EPROTO;
		if (idx != l->zone + i || z->start != l->start + (uint64_t)i * l->len ||
		    zone_checked(l, z) < 0)
			return -EPROTO;
	}
	return 0;
}

/* Appends go to the first zone of the range with room (the last when all
 * are full). */
static void set_cursor(zc_lease *l)
{
	l->cur = 0;
	while (l->cur + 1 < l->count && l->z[l->cur].wp == l->z[l->cur].start + l->z[l->cur].capacity)
		l->cur++;
	l->wp = l->z[l->cur].wp;
}

/* Takes the fields of a lease object the daemon sends back after acquire,
 * sync, reset and finish (and reclaim). Only the first fills the identity. */
static int parse_lease(struct json_object *o, zc_lease *l, bool first)
{
	uint64_t id, token, off = 0, wp, start, cap;
	uint32_t zone, count = 1;
	bool have_off;
	int r;

	if ((r = zc_get_u64(o, "id", &id)) < 0 || (r = zc_get_u64(o, "token", &token)) < 0 ||
	    (r = zc_get_u32(o, "zone", &zone)) < 0 || (r = zc_get_u64(o, "wp", &wp)) < 0)
		return r;
	/* The geometry is the lease's from its first reply on; later ones
	 * may repeat it. */
	start = first ? 0 : l->start;
	cap = first ? 0 : l->capacity;
	count = first ? 1 : l->count;
	if (((first || json_object_object_get_ex(o, "start", NULL)) &&
	     (r = zc_get_u64(o, "start", &start)) < 0) ||
	    ((first || json_object_object_get_ex(o, "capacity", NULL)) &&
	     (r = zc_get_u64(o, "capacity", &cap)) < 0) ||
	    (json_object_object_get_ex(o, "count", NULL) && (r = zc_get_u32(o, "count", &count)) < 0))
		return r;
	/* A reclaim's fd is a new one: where the zone lies in it may differ.
	 * Absent, the fd is the whole device (as every fd was before zone
	 * isolation): the zone is at its start. */
	have_off = json_object_object_get_ex(o, "fd_offset", NULL);
	if (have_off && (r = zc_get_u64(o, "fd_offset", &off)) < 0)
		return r;
	if (!first) {
		if (id != l->id || zone != l->zone || count != l->count || start != l->start)
			return -EPROTO;
	} else {
		if (count == 0 || count > ZP_LEASE_ZONES_MAX)
			return -EPROTO;
		l->id = id;
		l->token = token;
		l->zone = zone;
		l->count = count;
		l->start = start;
		l->z = count == 1 ? &l->z1 : calloc(count, sizeof(*l->z));
		if (!l->z)
			return -ENOMEM;
		if ((r = zc_get_str(o, "device", l->device, sizeof(l->device))) < 0 ||
		    (r = zc_get_u64(o, "len", &l->len)) < 0 ||
		    (r = zc_get_u32(o, "block_size", &l->block_size)) < 0 ||
		    (r = zc_get_bool(o, "direct", &l->direct)) < 0 ||
		    (r = zc_opt_str(o, "label", l->label, sizeof(l->label))) < 0)
			return r;
		/* Everything below relies on these. */
		if (!l->block_size || (l->block_size & (l->block_size - 1)))
			return -EPROTO;
	}
	l->capacity = cap;
	l->wp = wp;
	if ((r = parse_zones(o, l)) < 0)
		return r;
	set_cursor(l);
	l->fd_offset = have_off ? off : l->start;
	return 0;
}

static void lease_free(zc_lease *l)
{
	/* Out of the list first, so a concurrent zc_close() no longer
	 * fences an fd number this is about to give back. */
	lease_unlink(l);
	close_fds(l);
	if (l->z != &l->z1)
		free(l->z);
	zc_client_unref(l->c);
	free(l);
}

/* Best effort: hand a lease we cannot use back to the daemon. */
static void release_quietly_locked(zc_client *c, uint64_t id, uint64_t token)
{
	struct json_object *p = json_object_new_object();

	if (!p)
		return;
	json_object_object_add(p, "id", json_object_new_uint64(id));
	json_object_object_add(p, "token", json_object_new_uint64(token));
	zc_call_fire_locked(c, "lease.release", p);
}

int zc_lease_from_reply(zc_client *c, struct json_object *res, int *fds, unsigned nfds,
			zc_lease **out, char *msg, size_t msg_len)
{
	struct json_object *lo;
	zc_lease *l;
	bool granted = false;
	int r;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		r = -ENOMEM;
		snprintf(msg, msg_len, "out of memory");
		goto fail;
	}
	if ((r = zc_get_object(res, "lease", &lo)) == 0)
		granted = zc_get_u64(lo, "id", &l->id) == 0 && zc_get_u64(lo, "token", &l->token) == 0;
	if (r < 0 || (r = parse_lease(lo, l, true)) < 0) {
		snprintf(msg, msg_len, "malformed lease.acquire reply");
		goto fail;
	}
	if (nfds != 1 && nfds != l->count) {
		r = -EPROTO;
		snprintf(msg, msg_len, "lease.acquire reply carries %u fds for %u zones", nfds,
			 l->count);
		goto fail;
	}
	memcpy(l->fds, fds, nfds * sizeof(int));
	l->nfds = nfds;
	nfds = 0;
	zc_client_ref(c);
	l->c = c;
	lease_link(l);
	/* A revocation that overtook this reply. */
	for (unsigned i = 0; i < ZC_REVOKED_RING; i++)
		if (c->revoked[i] == l->id) {
			c->revoked[i] = 0;
			lease_mark(l, -ESTALE);
		}
	*out = l;
	return 0;
fail:
	if (granted)
		release_quietly_locked(c, l->id, l->token);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (l && l->z != &l->z1)
		free(l->z);
	free(l);
	return r;
}

void zc_lease_revoked_locked(zc_client *c, uint64_t id)
{
	bool found = false;
	int p[2] = { -1, -1 };

	pthread_mutex_lock(&c->leases_lock);
	for (zc_lease *l = c->leases; l; l = l->next) {
		if (l->id != id)
			continue;
		found = true;
		lease_mark(l, -ESTALE);
		/* Also the raw fd: a write through zc_lease_fd() must not reach
		 * a zone the daemon may already have given to someone else. */
		if (l->nfds && pipe2(p, O_CLOEXEC) == 0) {
			close(p[1]);
			fence_all(l, p[0]);
			close(p[0]);
		}
	}
	pthread_mutex_unlock(&c->leases_lock);
	if (!found)
		c->revoked[c->revoked_next++ % ZC_REVOKED_RING] = id;
}

/* The request params of an acquire; NULL with the failure recorded. */
static struct json_object *acquire_params(zc_client *c, const struct zc_lease_opts *opts,
					  uint32_t count, int *err)
{
	static const char *const prefer[] = {
		[ZC_PREFER_EMPTY] = "empty",
		[ZC_PREFER_PARTIAL] = "partial",
	};
	struct json_object *p;

	*err = 0;
	if ((unsigned)opts->prefer > ZC_PREFER_PARTIAL) {
		*err = zc_failf(c, -EINVAL, "lease: unknown prefer %u", (unsigned)opts->prefer);
		return NULL;
	}
	if (opts->zone < -1 || opts->zone > UINT32_MAX) {
		*err = zc_failf(c, -EINVAL, "lease: zone %" PRId64 " is not a zone index (or -1)",
				opts->zone);
		return NULL;
	}
	p = json_object_new_object();
	if (!p) {
		*err = zc_fail(c, -ENOMEM, NULL);
		return NULL;
	}
	if (opts->device)
		json_object_object_add(p, "device", json_object_new_string(opts->device));
	if (opts->zone >= 0)
		json_object_object_add(p, "zone", json_object_new_int64(opts->zone));
	if (count != 1)
		json_object_object_add(p, "count", json_object_new_int64(count));
	if (opts->min_free)
		json_object_object_add(p, "min_free", json_object_new_uint64(opts->min_free));
	if (opts->prefer != ZC_PREFER_ANY)
		json_object_object_add(p, "prefer", json_object_new_string(prefer[opts->prefer]));
	if (opts->wait_ms)
		json_object_object_add(p, "wait_ms", json_object_new_int64(opts->wait_ms));
	json_object_object_add(p, "direct", json_object_new_boolean(!opts->buffered));
	if (opts->label)
		json_object_object_add(p, "label", json_object_new_string(opts->label));
	/* Reconnect mode: a lost connection orphans the lease for the grace
	 * period instead of releasing it, so that it can be reclaimed. */
	pthread_mutex_lock(&c->lock);
	if (c->reconnect_ms)
		json_object_object_add(p, "reclaimable", json_object_new_boolean(true));
	pthread_mutex_unlock(&c->lock);
	return p;
}

ZC_EXPORT int zc_lease_acquire(zc_client *c, const struct zc_lease_opts *opts, zc_lease **out)
{
	return zc_lease_acquire_zones(c, opts, 1, out);
}

ZC_EXPORT int zc_lease_acquire_zones(zc_client *c, const struct zc_lease_opts *opts,
				     uint32_t count, zc_lease **out)
{
	struct zc_lease_opts def;
	struct json_object *p, *res;
	int r;

	if (!c || !out)
		return c ? zc_fail(c, -EINVAL, "lease: no place for the lease (out is NULL)") : -EINVAL;
	*out = NULL;
	if (!opts) {
		zc_lease_opts_init(&def);
		opts = &def;
	}
	if (count == 0 || count > ZP_LEASE_ZONES_MAX)
		return zc_failf(c, -EINVAL, "lease: %" PRIu32 " zones (want 1..%d)", count,
				ZP_LEASE_ZONES_MAX);
	p = acquire_params(c, opts, count, &r);
	if (!p)
		return r;
	/* A waiting acquire is bounded by its wait_ms, in the daemon. */
	r = zc_call_full(c, "lease.acquire", p, opts->wait_ms ? ZC_TIMEOUT_NONE : 0,
			 ZC_P_ACQUIRE | ZC_P_GRANTS, &res, NULL, out);
	if (r < 0)
		return r;
	json_object_put(res);
	return 0;
}

static void acquire_done(zc_client *c, struct zc_pending *p)
{
	zc_lease_cb cb = (zc_lease_cb)p->cb;
	zc_lease *l = p->lease;

	p->lease = NULL;
	cb(c, p->err, p->err == 0 ? l : NULL, p->ud);
	if (p->err && l)
		zc_lease_release(l, ZC_RELEASE_KEEP);
}

ZC_EXPORT int64_t zc_lease_acquire_async(zc_client *c, const struct zc_lease_opts *opts,
					 const struct zc_call_opts *copts, zc_lease_cb cb,
					 void *userdata)
{
	struct zc_lease_opts def;
	struct json_object *p;
	int r;

	if (!c || !cb)
		return c ? zc_fail(c, -EINVAL, "lease: no callback") : -EINVAL;
	if (!opts) {
		zc_lease_opts_init(&def);
		opts = &def;
	}
	p = acquire_params(c, opts, 1, &r);
	if (!p)
		return r;
	return zc_call_start(c, "lease.acquire", p, copts,
			     ZC_P_ACQUIRE | ZC_P_GRANTS | (opts->wait_ms ? ZC_P_NOBOUND : 0),
			     acquire_done, (void (*)(void))cb, userdata, NULL);
}

ZC_EXPORT uint64_t zc_lease_id(const zc_lease *l) { return l ? l->id : 0; }
ZC_EXPORT uint64_t zc_lease_token(const zc_lease *l) { return l ? l->token : 0; }
ZC_EXPORT const char *zc_lease_device(const zc_lease *l) { return l ? l->device : NULL; }
ZC_EXPORT int zc_lease_fd(const zc_lease *l) { return l ? l->nfds ? l->fds[0] : -1 : -EINVAL; }
ZC_EXPORT uint32_t zc_lease_count(const zc_lease *l) { return l ? l->count : 0; }

ZC_EXPORT int zc_lease_zone_fd(const zc_lease *l, uint32_t i, uint64_t *fd_offset)
{
	uint64_t base;
	int fd;

	if (!l || i >= l->count || !l->nfds)
		return -EINVAL;
	fd = zone_fd(l, i, &base);
	if (fd_offset)
		*fd_offset = base;
	return fd;
}
ZC_EXPORT uint32_t zc_lease_zone(const zc_lease *l) { return l ? l->zone : 0; }
ZC_EXPORT uint64_t zc_lease_start(const zc_lease *l) { return l ? l->start : 0; }
ZC_EXPORT uint64_t zc_lease_len(const zc_lease *l) { return l ? l->len : 0; }
ZC_EXPORT uint64_t zc_lease_capacity(const zc_lease *l) { return l ? l->capacity : 0; }
ZC_EXPORT uint64_t zc_lease_wp(const zc_lease *l) { return l ? l->wp : 0; }
ZC_EXPORT uint64_t zc_lease_fd_offset(const zc_lease *l) { return l ? l->fd_offset : 0; }
ZC_EXPORT uint32_t zc_lease_block_size(const zc_lease *l) { return l ? l->block_size : 0; }
ZC_EXPORT bool zc_lease_direct(const zc_lease *l) { return l && l->direct; }
ZC_EXPORT const char *zc_lease_label(const zc_lease *l) { return l ? l->label : NULL; }

/* --- Appends ----------------------------------------------------------- */

static bool aligned(const void *p, uint32_t bs)
{
	return ((uintptr_t)p & (bs - 1)) == 0;
}

/* Free capacity from the append position to the end of the lease. */
static uint64_t lease_room(const zc_lease *l)
{
	uint64_t room = 0;

	for (uint32_t i = l->cur; i < l->count; i++)
		room += l->z[i].start + l->z[i].capacity - l->z[i].wp;
	return room;
}

/* Everything an append checks before it makes a syscall. Each refusal
 * says what was wrong in zc_last_error(). */
static int append_check(zc_lease *l, const struct iovec *iov, int iovcnt, size_t *total)
{
	zc_client *c = l->c;
	size_t sum = 0;
	int r;

	/* A revocation the daemon sent is read first: one recvmsg that finds
	 * nothing, when no other thread uses the connection. */
	zc_client_peek(c);
	if ((r = lease_dead(l)) < 0)
		return r;
	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return zc_failf(c, -EINVAL, "append: %d segments (want 0..%d, with an array)",
				iovcnt, IOV_MAX);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len && !iov[i].iov_base)
			return zc_failf(c, -EINVAL, "append: segment %d has no buffer", i);
		/* O_DIRECT needs every segment on block boundaries, in memory
		 * and in length; a buffered fd only needs whole blocks in all. */
		if (l->direct && !aligned(iov[i].iov_base, l->block_size))
			return zc_failf(c, -EINVAL,
					"append: segment %d's buffer is not aligned to the block size "
					"%" PRIu32 " (the fd is O_DIRECT)", i, l->block_size);
		if (l->direct && iov[i].iov_len % l->block_size)
			return zc_failf(c, -EINVAL,
					"append: segment %d's length %zu is not a multiple of the block "
					"size %" PRIu32 " (the fd is O_DIRECT)", i, iov[i].iov_len,
					l->block_size);
		if (iov[i].iov_len > SIZE_MAX - sum)
			return zc_failf(c, -EINVAL, "append: total length overflows");
		sum += iov[i].iov_len;
	}
	if (sum % l->block_size)
		return zc_failf(c, -EINVAL,
				"append: length %zu is not a multiple of the block size %" PRIu32, sum,
				l->block_size);
	if (sum > lease_room(l))
		return zc_failf(c, -ENOSPC,
				"append: %zu bytes do not fit: %" PRIu64 " bytes of the lease's %" PRIu32
				" zone(s) are free", sum, lease_room(l), l->count);
	*total = sum;
	return 0;
}

/* A syscall on the lease's fd failed: if the lease died meanwhile (its fd
 * fenced by zc_close in another thread), that is the error to report. */
static int io_error(zc_lease *l, int err)
{
	int r = lease_dead(l);

	return r < 0 ? r : zc_fail(l->c, err, NULL);
}

/* Writes iov at the write pointer, advancing it by what reached the device,
 * including the part of a write that failed half way. */
static int append_iov(zc_lease *l, const struct iovec *iov, int iovcnt)
{
	struct iovec local[iovcnt > 0 && iovcnt <= IOV_MAX ? iovcnt : 1], *v = local;
	size_t total = 0;
	int r, n = iovcnt;

	r = append_check(l, iov, iovcnt, &total);
	if (r < 0)
		return r;
	memcpy(local, iov, sizeof(*iov) * (size_t)iovcnt);
	while (total) {
		struct zc_lease_zone *z = &l->z[l->cur];
		uint64_t room = z->start + z->capacity - z->wp, base;
		int fd = zone_fd(l, l->cur, &base), k = 0;
		size_t chunk = 0;
		ssize_t w;

		if (!room) {
			/* Checked above: a later zone of the range has room. */
			l->cur++;
			l->wp = l->z[l->cur].wp;
			continue;
		}
		while (n && !v->iov_len) {
			v++;
			n--;
		}
		/* The segments that fit in this zone; the one that crosses its
		 * end is cut there for this write (whole blocks, as the
		 * capacity and every segment are). */
		while (k < n && k < IOV_MAX && chunk < room) {
			chunk += v[k].iov_len;
			k++;
		}
		{
			size_t over = chunk > room ? chunk - (size_t)room : 0;
			size_t keep = v[k - 1].iov_len;

			v[k - 1].iov_len -= over;
			w = k == 1 ? pwrite(fd, v->iov_base, v->iov_len, (off_t)(base + z->wp - z->start))
				   : pwritev(fd, v, k, (off_t)(base + z->wp - z->start));
			v[k - 1].iov_len = keep;
		}
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return io_error(l, -errno);
		}
		if (w == 0)
			return io_error(l, -EIO);
		z->wp += (uint64_t)w;
		l->wp = z->wp;
		total -= (size_t)w;
		while (w > 0) {
			size_t t = (size_t)w < v->iov_len ? (size_t)w : v->iov_len;

			v->iov_base = (char *)v->iov_base + t;
			v->iov_len -= t;
			w -= (ssize_t)t;
			if (!v->iov_len && w > 0) {
				v++;
				n--;
			}
		}
	}
	return 0;
}

ZC_EXPORT int zc_lease_append(zc_lease *l, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	if (!l)
		return -EINVAL;
	return append_iov(l, &iov, 1);
}

ZC_EXPORT int zc_lease_appendv(zc_lease *l, const struct iovec *iov, int iovcnt)
{
	if (!l)
		return -EINVAL;
	return append_iov(l, iov, iovcnt);
}

/* --- Reads ------------------------------------------------------------- */

ZC_EXPORT ssize_t zc_lease_preadv(zc_lease *l, const struct iovec *iov, int iovcnt, uint64_t offset)
{
	struct iovec local[iovcnt > 0 && iovcnt <= IOV_MAX ? iovcnt : 1];
	uint64_t room, zi, in, base;
	ssize_t r;
	int n = 0, fd;

	if (!l)
		return -EINVAL;
	zc_client_peek(l->c);
	if ((r = lease_dead(l)) < 0)
		return r;
	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return zc_failf(l->c, -EINVAL, "read: %d segments (want 0..%d, with an array)", iovcnt,
				IOV_MAX);
	/* offset counts from the first zone's start; a read stays in the
	 * zone it starts in (short at that zone's capacity). */
	zi = offset / l->len;
	in = offset % l->len;
	if (zi == l->count && in == 0) { /* the very end: nothing to read */
		zi--;
		in = l->len;
	}
	/* Past the capacity nothing was or can be written: the zone's data
	 * ends there, even if the zone (len) goes on. */
	if (zi >= l->count || in > l->z[zi].capacity)
		return zc_failf(l->c, -EINVAL,
				"read: offset %" PRIu64 " is past the zone's capacity (zone %" PRIu64
				" of the lease)", offset, zi);
	room = l->z[zi].capacity - in;
	fd = zone_fd(l, (uint32_t)zi, &base);
	for (int i = 0; i < iovcnt && room; i++) {
		local[n] = iov[i];
		if (local[n].iov_len > room)
			local[n].iov_len = (size_t)room;
		room -= local[n].iov_len;
		n++;
	}
	if (!n)
		return 0;
	do
		r = preadv(fd, local, n, (off_t)(base + in));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return io_error(l, -errno);
	/* Within the capacity a zone reads as zeros past its data, as a
	 * device does past its write pointer; a zone's own file (emulated,
	 * zone isolation) simply ends at the write pointer. */
	{
		size_t want = 0, left = (size_t)r;

		for (int i = 0; i < n; i++) {
			size_t have = left < local[i].iov_len ? left : local[i].iov_len;

			memset((char *)local[i].iov_base + have, 0, local[i].iov_len - have);
			left -= have;
			want += local[i].iov_len;
		}
		return (ssize_t)want;
	}
}

ZC_EXPORT ssize_t zc_lease_pread(zc_lease *l, void *buf, size_t len, uint64_t offset)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return zc_lease_preadv(l, &iov, 1, offset);
}

/* --- Calls on a lease --------------------------------------------------- */

static struct json_object *lease_params(const zc_lease *l)
{
	struct json_object *p = json_object_new_object();

	if (!p)
		return NULL;
	json_object_object_add(p, "id", json_object_new_uint64(l->id));
	json_object_object_add(p, "token", json_object_new_uint64(l->token));
	return p;
}

/* Calls method on the lease and takes back the daemon's view of it. */
static int lease_call(zc_lease *l, const char *method, struct json_object *p)
{
	struct json_object *res, *lo;
	int r;

	if (!p)
		return zc_fail(l->c, -ENOMEM, NULL);
	r = zc_call(l->c, method, p, &res, NULL);
	/* A lost connection marked every lease already; the daemon calling
	 * this one stale marks it alone. */
	if (r == -ESTALE)
		lease_mark(l, -ESTALE);
	if (r < 0)
		return r;
	if ((r = zc_get_object(res, "lease", &lo)) < 0 || (r = parse_lease(lo, l, false)) < 0)
		zc_fail(l->c, r, "malformed lease reply");
	json_object_put(res);
	return r;
}

ZC_EXPORT int zc_lease_sync(zc_lease *l)
{
	struct json_object *p;
	int r;

	if (!l)
		return -EINVAL;
	if ((r = lease_dead(l)) < 0)
		return r;
	p = lease_params(l);
	if (p)
		json_object_object_add(p, "wp", json_object_new_uint64(l->wp));
	return lease_call(l, "lease.sync", p);
}

ZC_EXPORT int zc_lease_reset(zc_lease *l)
{
	int r;

	if (!l)
		return -EINVAL;
	if ((r = lease_dead(l)) < 0)
		return r;
	return lease_call(l, "lease.reset", lease_params(l));
}

ZC_EXPORT int zc_lease_finish(zc_lease *l)
{
	int r;

	if (!l)
		return -EINVAL;
	if ((r = lease_dead(l)) < 0)
		return r;
	return lease_call(l, "lease.finish", lease_params(l));
}

/* The lease's fds go before it is released: the daemon then finds its
 * path to the zones unused, and cutting it (zone isolation) is a removal
 * rather than a fence of a live descriptor (which on an emulated device
 * copies the zone's data to a new file). */
static void drop_fds(zc_lease *l)
{
	pthread_mutex_lock(&l->c->leases_lock);
	close_fds(l);
	pthread_mutex_unlock(&l->c->leases_lock);
}

ZC_EXPORT int zc_lease_release(zc_lease *l, enum zc_release_then then)
{
	static const char *const names[] = {
		[ZC_RELEASE_KEEP] = "keep",
		[ZC_RELEASE_FINISH] = "finish",
		[ZC_RELEASE_RESET] = "reset",
	};
	struct json_object *p, *res;
	int r;

	if (!l)
		return 0;
	if ((unsigned)then > ZC_RELEASE_RESET) {
		r = zc_failf(l->c, -EINVAL, "release: unknown then %u", (unsigned)then);
	} else if ((r = lease_dead(l)) < 0) {
		/* recorded */
	} else if (!(p = lease_params(l))) {
		r = zc_fail(l->c, -ENOMEM, NULL);
	} else {
		json_object_object_add(p, "then", json_object_new_string(names[then]));
		drop_fds(l);
		r = zc_call(l->c, "lease.release", p, &res, NULL);
		if (r == 0)
			json_object_put(res);
	}
	lease_free(l);
	return r;
}

static void sync_done(zc_client *c, struct zc_pending *p)
{
	zc_done_cb cb = (zc_done_cb)p->cb;
	zc_lease *l = p->arg;
	struct json_object *lo;
	int r = p->err;

	if (r == -ESTALE)
		lease_mark(l, -ESTALE);
	if (r == 0 && ((r = zc_get_object(p->result, "lease", &lo)) < 0 ||
		       (r = parse_lease(lo, l, false)) < 0))
		zc_fail(c, r, "malformed lease reply");
	cb(c, r, p->ud);
}

ZC_EXPORT int64_t zc_lease_sync_async(zc_lease *l, const struct zc_call_opts *copts,
				      zc_done_cb cb, void *userdata)
{
	struct json_object *p;
	int r;

	if (!l || !cb)
		return l ? zc_fail(l->c, -EINVAL, "sync: no callback") : -EINVAL;
	if ((r = lease_dead(l)) < 0)
		return r;
	p = lease_params(l);
	if (!p)
		return zc_fail(l->c, -ENOMEM, NULL);
	json_object_object_add(p, "wp", json_object_new_uint64(l->wp));
	return zc_call_start(l->c, "lease.sync", p, copts, 0, sync_done, (void (*)(void))cb,
			     userdata, l);
}

static void release_done(zc_client *c, struct zc_pending *p)
{
	zc_done_cb cb = (zc_done_cb)p->cb;

	lease_free(p->arg);
	if (cb)
		cb(c, p->err, p->ud);
}

ZC_EXPORT int64_t zc_lease_release_async(zc_lease *l, enum zc_release_then then,
					 const struct zc_call_opts *copts, zc_done_cb cb,
					 void *userdata)
{
	static const char *const names[] = {
		[ZC_RELEASE_KEEP] = "keep",
		[ZC_RELEASE_FINISH] = "finish",
		[ZC_RELEASE_RESET] = "reset",
	};
	struct json_object *p;
	zc_client *c;
	int64_t r;

	if (!l)
		return -EINVAL;
	c = l->c;
	if ((unsigned)then > ZC_RELEASE_RESET)
		r = zc_failf(c, -EINVAL, "release: unknown then %u", (unsigned)then);
	else if ((r = lease_dead(l)) < 0)
		; /* recorded */
	else if (!(p = lease_params(l)))
		r = zc_fail(c, -ENOMEM, NULL);
	else {
		json_object_object_add(p, "then", json_object_new_string(names[then]));
		/* Nothing may write through it from now on. */
		lease_mark(l, -ESTALE);
		drop_fds(l);
		r = zc_call_start(c, "lease.release", p, copts, 0, release_done,
				  (void (*)(void))cb, userdata, l);
		if (r > 0)
			return r;
	}
	lease_free(l);
	return r;
}

/* --- Append stream ----------------------------------------------------- */

#define ZC_STREAM_BUF (64 * 1024)

struct zc_stream {
	zc_lease *l;
	char *buf;   /* block-aligned so it suits O_DIRECT */
	size_t size; /* a whole number of blocks */
	size_t fill;
};

static ssize_t stream_write(void *cookie, const char *data, size_t len)
{
	struct zc_stream *s = cookie;
	size_t done = 0;

	while (done < len) {
		size_t k = s->size - s->fill;
		int r;

		if (k > len - done)
			k = len - done;
		memcpy(s->buf + s->fill, data + done, k);
		s->fill += k;
		done += k;
		if (s->fill == s->size) {
			r = zc_lease_append(s->l, s->buf, s->size);
			if (r < 0) {
				/* Keep the data: the caller sees the error and
				 * nothing is silently dropped. */
				s->fill -= k;
				done -= k;
				errno = -r;
				/* stdio treats a short count as an error. */
				return (ssize_t)done;
			}
			s->fill = 0;
		}
	}
	return (ssize_t)len;
}

static int stream_close(void *cookie)
{
	struct zc_stream *s = cookie;
	int r = 0;

	if (s->fill) {
		size_t padded = (s->fill + s->l->block_size - 1) / s->l->block_size * s->l->block_size;

		memset(s->buf + s->fill, 0, padded - s->fill);
		r = zc_lease_append(s->l, s->buf, padded);
	}
	if (r == 0)
		r = zc_lease_sync(s->l);
	free(s->buf);
	free(s);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

ZC_EXPORT FILE *zc_lease_fopen(zc_lease *l, const char *mode)
{
	cookie_io_functions_t io = { .write = stream_write, .close = stream_close };
	struct zc_stream *s;
	FILE *f;
	void *buf;
	int r;

	/* Appending is all a zone can do: "w" and "a" (with "b") mean the
	 * same, anything that reads or seeks is refused. */
	if (!l || !mode || (mode[0] != 'w' && mode[0] != 'a') || strchr(mode, '+') ||
	    strchr(mode, 'r')) {
		errno = EINVAL;
		return NULL;
	}
	if (lease_dead(l) < 0) {
		errno = -atomic_load(&l->dead);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->l = l;
	s->size = l->block_size >= ZC_STREAM_BUF ? l->block_size : ZC_STREAM_BUF / l->block_size * l->block_size;
	r = posix_memalign(&buf, l->block_size < sizeof(void *) ? sizeof(void *) : l->block_size, s->size);
	if (r) {
		free(s);
		errno = r;
		return NULL;
	}
	s->buf = buf;
	f = fopencookie(s, "w", io);
	if (!f) {
		free(s->buf);
		free(s);
		return NULL;
	}
	/* The cookie buffers in block-aligned memory already; a second stdio
	 * buffer would only copy everything twice. */
	setvbuf(f, NULL, _IONBF, 0);
	return f;
}
