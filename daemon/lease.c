/* The lease object and its lifecycle: one state machine (granting, held,
 * orphaned, reclaiming, releasing, revoked, free), the one place a lease is
 * freed, the release work, and what happens to leases when their
 * connection closes. The RPC handlers are in daemon/lease-methods.c. */
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

static const char *const state_names[ZD_LEASE_NR_STATES] = {
	[ZD_LEASE_GRANTING] = "granting",
	[ZD_LEASE_HELD] = "held",
	[ZD_LEASE_ORPHANED] = "orphaned",
	[ZD_LEASE_RECLAIMING] = "reclaiming",
	[ZD_LEASE_RELEASING] = "releasing",
	[ZD_LEASE_REVOKED] = "revoked",
	[ZD_LEASE_FREE] = "free",
};

#define S(x) (1u << ZD_LEASE_##x)
/* The legal transitions, by the state left. Releasing and revoked leases
 * have given their zone up (or are giving it up) and only ever end. */
static const unsigned transitions[ZD_LEASE_NR_STATES] = {
	[ZD_LEASE_GRANTING] = S(HELD) | S(REVOKED) | S(FREE),
	[ZD_LEASE_HELD] = S(RELEASING) | S(ORPHANED) | S(REVOKED),
	[ZD_LEASE_ORPHANED] = S(RECLAIMING) | S(RELEASING) | S(REVOKED),
	[ZD_LEASE_RECLAIMING] = S(HELD) | S(ORPHANED) | S(REVOKED),
	[ZD_LEASE_RELEASING] = S(FREE),
	[ZD_LEASE_REVOKED] = S(FREE),
	[ZD_LEASE_FREE] = 0,
};
#undef S

const char *zd_lease_state_name(enum zd_lease_state s)
{
	return (unsigned)s < ZD_LEASE_NR_STATES ? state_names[s] : "invalid";
}

bool zd_lease_transition_ok(enum zd_lease_state from, enum zd_lease_state to)
{
	return (unsigned)from < ZD_LEASE_NR_STATES && (unsigned)to < ZD_LEASE_NR_STATES &&
	       (transitions[from] & (1u << to));
}

/* Every state change goes through here. An illegal one is a bug in the
 * daemon: a debug build (no NDEBUG, the default) logs and aborts so tests
 * catch it at the point it happens; a release build (-DNDEBUG) logs and
 * refuses, leaving the lease where it was, which keeps its zone reserved:
 * a leaked zone is recoverable by a restart, two writers on one zone are
 * not. */
int zd_lease_set_state(struct zd_lease *l, enum zd_lease_state to)
{
	if (!zd_lease_transition_ok(l->state, to)) {
		zd_err("lease %" PRIu64 ": illegal transition %s -> %s", l->id,
		       zd_lease_state_name(l->state), zd_lease_state_name(to));
#ifndef NDEBUG
		abort();
#else
		return -EINVAL;
#endif
	}
	/* Leaving the orphans' list, whichever way: reclaimed, expired or
	 * revoked. */
	if (l->state == ZD_LEASE_ORPHANED)
		zd_list_del(&l->orphan_link);
	l->state = to;
	return 0;
}

/* The one definition of a lease's JSON: the grant's reply writes it as
 * text (no json-c objects on the way to the socket), and zd_lease_json
 * reads that text back for the rest (lease.list, events). */
void zd_lease_write(struct zp_jw *w, const struct zd_lease *l)
{
	const struct zd_zone zone = zd_device_zone(l->dev, l->zone), *z = &zone;

	zp_jw_begin(w, '{');
	zp_jw_key_u64(w, "id", l->id);
	zp_jw_key_u64(w, "token", l->token);
	zp_jw_key_str(w, "device", l->dev->id);
	zp_jw_key_i64(w, "zone", l->zone);
	zp_jw_key_u64(w, "start", z->start);
	zp_jw_key_u64(w, "len", z->len);
	zp_jw_key_u64(w, "capacity", z->capacity);
	zp_jw_key_u64(w, "wp", z->wp);
	zp_jw_key_str(w, "cond", zp_cond_name(z->cond));
	zp_jw_key_i64(w, "block_size", l->dev->info.logical_block_size);
	zp_jw_key_str(w, "label", l->label);
	zp_jw_key_bool(w, "direct", l->direct);
	zp_jw_key_i64(w, "count", l->count);
	zp_jw_key_u64(w, "fd_offset", l->fd_offset);
	zp_jw_key_str(w, "isolation", zd_isolation_name(l->dev->info.isolation));
	if (l->count > 1) {
		/* Each zone's own state; the fields above are the first's. */
		zp_jw_key(w, "zones");
		zp_jw_begin(w, '[');
		for (uint32_t i = 0; i < l->count; i++) {
			const struct zd_zone zc = zd_device_zone(l->dev, l->zone + i), *zi = &zc;

			zp_jw_begin(w, '{');
			zp_jw_key_i64(w, "zone", l->zone + i);
			zp_jw_key_u64(w, "start", zi->start);
			zp_jw_key_u64(w, "capacity", zi->capacity);
			zp_jw_key_u64(w, "wp", zi->wp);
			zp_jw_key_str(w, "cond", zp_cond_name(zi->cond));
			zp_jw_end(w, '}');
		}
		zp_jw_end(w, ']');
	}
	zp_jw_end(w, '}');
}

/* Room for any lease's text: its strings escaped at worst (6 bytes a
 * byte), the rest a few hundred bytes, and a zone's entry each. */
static size_t lease_text_max(const struct zd_lease *l)
{
	return 512 + 6 * (sizeof(l->label) + sizeof(l->dev->id)) + (size_t)l->count * 160;
}

void zd_lease_result(struct zd_call *call, const struct zd_lease *l)
{
	struct zp_jw w;

	if (zd_call_result_begin(call, &w, lease_text_max(l) + 16, "lease") < 0)
		return;
	zp_jw_begin(&w, '{');
	zp_jw_key(&w, "lease");
	zd_lease_write(&w, l);
	zp_jw_end(&w, '}');
	zd_call_result_end(call, &w, "lease");
}

struct json_object *zd_lease_json(const struct zd_lease *l)
{
	size_t cap = lease_text_max(l);
	char *buf = malloc(cap);
	struct json_object *o = NULL;
	struct zp_jw w;

	if (!buf)
		return NULL;
	zp_jw_init(&w, buf, cap);
	zd_lease_write(&w, l);
	if (!w.over)
		o = zp_parse(buf, w.len);
	free(buf);
	return o;
}

void zd_lease_log(const struct zd_lease *l, const char *what)
{
	char f1[ZD_ID_MAX + 8], f2[32], f3[48], f4[32], f5[32];
	const char *fields[] = { f1, f2, f3, f4, f5, NULL };

	/* Twice a lease cycle: not even formatted when nobody reads it. */
	if (zd_log_get_level() < LOG_INFO)
		return;
	snprintf(f1, sizeof(f1), "DEVICE=%s", l->dev->id);
	if (l->count > 1)
		snprintf(f2, sizeof(f2), "ZONE=%u-%u", l->zone, l->zone + l->count - 1);
	else
		snprintf(f2, sizeof(f2), "ZONE=%u", l->zone);
	snprintf(f3, sizeof(f3), "LEASE=%" PRIu64, l->id);
	snprintf(f4, sizeof(f4), "CLIENT_PID=%d", (int)l->pid);
	snprintf(f5, sizeof(f5), "CLIENT_UID=%u", (unsigned)l->uid);
	zd_logv_fields(LOG_INFO, fields, "lease %" PRIu64 " %s: %s zone %s, client pid %d",
		       l->id, what, l->dev->id, f2 + 5, (int)l->pid);
}

static void lease_reserve(struct zd_lease *l)
{
	struct zd_device *dev = l->dev;

	/* A zone of the ready set granted through the queue gives up the
	 * descriptors the set holds on it first. */
	zd_device_ready_drop(dev, l->zone, l->count);
	for (uint32_t i = l->zone; i < l->zone + l->count; i++) {
		dev->lease_of[i] = l;
		zd_device_zone_reclass(dev, i);
	}
	dev->refs++;
}

void zd_lease_attach(struct zd_lease *l, struct zd_conn *conn)
{
	l->conn = conn;
	l->pid = conn->pid;
	l->uid = conn->uid;
	zd_list_add_tail(&conn->leases, &l->conn_link);
	conn->nr_leases++;
}

/* The lease leaves its connection; the zone stays reserved. */
void zd_lease_detach(struct zd_lease *l)
{
	struct zd_conn *conn = l->conn;

	if (!conn)
		return;
	zd_list_del(&l->conn_link);
	conn->nr_leases--;
	l->conn = NULL;
	/* A waiter of this connection held back by its lease limit may go. */
	if (!conn->closing)
		zd_waiters_conn_slot(conn);
}

static void probe_close(struct zd_lease *l)
{
	if (l->probe_fd >= 0) {
		close(l->probe_fd);
		l->probe_fd = -1;
	}
}

/* --- the index by id ----------------------------------------------------
 * lease.release, .sync, .reclaim... name a lease by id; a scan of the
 * connection's leases (or of the orphans) was O(leases) a call. A chained
 * hash, doubled when it holds as many leases as buckets, finds one in
 * O(1); the list beside it keeps id order for a paged lease.list. */

static size_t id_bucket(const struct zd_lease_ids *x, uint64_t id)
{
	/* Fibonacci hashing: ids are consecutive, the top bits spread them. */
	return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 32) & (x->nr_buckets - 1);
}

static void ids_grow(struct zd_lease_ids *x)
{
	size_t n = x->nr_buckets ? 2 * x->nr_buckets : 64;
	struct zd_lease **b = calloc(n, sizeof(*b));
	struct zd_lease **old = x->bucket;
	size_t old_n = x->nr_buckets;

	if (!b)
		return; /* chains get longer, nothing breaks */
	x->bucket = b;
	x->nr_buckets = n;
	for (size_t i = 0; i < old_n; i++)
		while (old[i]) {
			struct zd_lease *l = old[i];
			size_t k = id_bucket(x, l->id);

			old[i] = l->id_next;
			l->id_next = b[k];
			b[k] = l;
		}
	free(old);
}

/* Returns -ENOMEM only before the first bucket exists. */
static int ids_add(struct zd_daemon *d, struct zd_lease *l)
{
	struct zd_lease_ids *x = &d->lease_ids;
	struct zd_list *pos = x->order.prev;
	size_t k;

	if (x->nr >= x->nr_buckets)
		ids_grow(x);
	if (!x->nr_buckets)
		return -ENOMEM;
	k = id_bucket(x, l->id);
	l->id_next = x->bucket[k];
	x->bucket[k] = l;
	x->nr++;
	/* New leases have the highest id; only adopted ones come unordered. */
	while (pos != &x->order &&
	       zd_container_of(pos, struct zd_lease, id_link)->id > l->id)
		pos = pos->prev;
	zd_list_add(pos, &l->id_link);
	return 0;
}

static void ids_del(struct zd_daemon *d, struct zd_lease *l)
{
	struct zd_lease_ids *x = &d->lease_ids;
	struct zd_lease **p;

	if (!x->nr_buckets)
		return;
	for (p = &x->bucket[id_bucket(x, l->id)]; *p; p = &(*p)->id_next)
		if (*p == l) {
			*p = l->id_next;
			x->nr--;
			zd_list_del(&l->id_link);
			return;
		}
}

struct zd_lease *zd_lease_by_id(struct zd_daemon *d, uint64_t id)
{
	struct zd_lease_ids *x = &d->lease_ids;

	if (!x->nr_buckets)
		return NULL;
	for (struct zd_lease *l = x->bucket[id_bucket(x, id)]; l; l = l->id_next)
		if (l->id == id)
			return l;
	return NULL;
}

struct zd_lease *zd_lease_next(struct zd_daemon *d, const struct zd_lease *l)
{
	return l->id_link.next == &d->lease_ids.order
		       ? NULL
		       : zd_container_of(l->id_link.next, struct zd_lease, id_link);
}

struct zd_lease *zd_lease_first_after(struct zd_daemon *d, uint64_t after)
{
	struct zd_lease *l = after ? zd_lease_by_id(d, after) : NULL;
	struct zd_list *pos;

	if (l)
		return zd_lease_next(d, l);
	/* The cursor's lease ended between two pages: the first above it,
	 * found from the end, where new leases are. */
	for (pos = d->lease_ids.order.prev; pos != &d->lease_ids.order; pos = pos->prev)
		if (zd_container_of(pos, struct zd_lease, id_link)->id <= after)
			break;
	return pos->next == &d->lease_ids.order
		       ? NULL
		       : zd_container_of(pos->next, struct zd_lease, id_link);
}

static void lease_free(struct zd_lease *l)
{
	ids_del(l->dev->d, l);
	zd_list_del(&l->orphan_link);
	probe_close(l);
	free(l);
}

struct zd_lease *zd_lease_new(struct zd_conn *conn, struct zd_device *dev, uint32_t zone,
			      uint32_t count, uint64_t token, const char *label)
{
	struct zd_daemon *d = dev->d;
	struct zd_lease *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->state = ZD_LEASE_GRANTING;
	l->probe_fd = -1;
	l->dev = dev;
	l->zone = zone;
	l->count = count;
	l->id = d->next_lease_id++;
	l->token = token;
	snprintf(l->label, sizeof(l->label), "%s", label);
	zd_list_init(&l->waiters);
	zd_list_init(&l->orphan_link);
	if (ids_add(d, l) < 0) {
		free(l);
		return NULL;
	}
	zd_lease_attach(l, conn);
	/* Reserved now so no other request can pick them while the fd opens. */
	lease_reserve(l);
	return l;
}

/* --- the persisted table ------------------------------------------------ */

static void lease_rec(const struct zd_lease *l, struct zd_lease_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->id = l->id;
	r->token = l->token;
	r->wp = zd_zstore_wp(&l->dev->zs, l->zone);
	snprintf(r->device, sizeof(r->device), "%s", l->dev->id);
	r->zone = l->zone;
	r->count = l->count;
	r->pid = l->pid;
	r->uid = l->uid;
	r->direct = l->direct;
	r->reclaimable = l->reclaimable;
	snprintf(r->label, sizeof(r->label), "%s", l->label);
}

static void persisted_add(struct zd_lease *l)
{
	struct zd_daemon *d = l->dev->d;

	if (l->persisted)
		return;
	l->persisted = true;
	zd_list_add_tail(&d->persisted, &l->persist_link);
	d->nr_persisted++;
}

static void persisted_del(struct zd_lease *l)
{
	if (!l->persisted)
		return;
	l->persisted = false;
	zd_list_del(&l->persist_link);
	l->dev->d->nr_persisted--;
}

int zd_lease_snapshot(struct zd_daemon *d, struct zd_lease_rec **out, size_t *nr)
{
	struct zd_lease_rec *recs = calloc(d->nr_persisted + 1, sizeof(*recs));
	struct zd_list *pos, *tmp;
	size_t n = 0;

	if (!recs)
		return -ENOMEM;
	zd_list_for_each_safe(pos, tmp, &d->persisted)
		lease_rec(zd_container_of(pos, struct zd_lease, persist_link), &recs[n++]);
	*out = recs;
	*nr = n;
	return 0;
}

/* Rewrites the table with the persisted leases (at start-up, on the loop). */
static int leases_rewrite(struct zd_daemon *d)
{
	struct zd_lease_rec *recs;
	size_t n;
	int r;

	r = zd_lease_snapshot(d, &recs, &n);
	if (r == 0)
		r = zd_state_leases_rewrite(d, recs, n);
	if (r == 0)
		free(recs);
	if (r < 0)
		zd_err("cannot rewrite the lease table in %s: %s", d->cfg.state_dir, strerror(-r));
	return r;
}

struct persist_req {
	struct zd_log_req q;
	struct zd_lease *lease;     /* a put: the lease, held busy by the caller */
	bool fresh;                 /* a put: the lease's first record */
	struct zd_call *call;       /* an end: the reply to send once it is on disk */
	void (*done)(struct zd_lease *l, int status, void *arg);
	void *arg;
};

static void put_done(struct zd_log_req *q)
{
	struct persist_req *p = zd_container_of(q, struct persist_req, q);
	struct zd_lease *l = p->lease;

	if (q->status < 0) {
		zd_err("lease %" PRIu64 ": cannot record it in %s: %s", l->id,
		       l->dev->d->cfg.state_dir, strerror(-q->status));
		/* Not in the table after all (a reclaim's failed re-put leaves
		 * the earlier record standing). */
		if (p->fresh)
			persisted_del(l);
	}
	p->done(l, q->status, p->arg);
	free(p);
}

/* In memory the lease counts as persisted from the moment its record is
 * queued: a rewrite snapshot taken for a later batch must hold it. */
int zd_lease_persist(struct zd_lease *l, void (*done)(struct zd_lease *l, int status, void *arg),
		     void *arg)
{
	struct zd_daemon *d = l->dev->d;
	struct persist_req *p = calloc(1, sizeof(*p));
	struct zd_lease_rec rec;
	int r;

	if (!p)
		return -ENOMEM;
	p->lease = l;
	p->fresh = !l->persisted;
	p->done = done;
	p->arg = arg;
	lease_rec(l, &rec);
	persisted_add(l);
	r = zd_state_lease_put_async(d, &rec, &p->q, put_done);
	if (r < 0) {
		if (p->fresh)
			persisted_del(l);
		free(p);
	}
	return r;
}

static void end_done(struct zd_log_req *q)
{
	struct persist_req *p = zd_container_of(q, struct persist_req, q);

	/* The lease has ended either way; a lost end record brings it back
	 * orphaned after a restart, for one grace period. */
	if (q->status < 0)
		zd_err("cannot record the end of a lease in the lease table: %s",
		       strerror(-q->status));
	if (p->call)
		zd_call_complete(p->call);
	free(p);
}

/* Before the zone is anyone else's, the end is queued for the table, ahead
 * of any record of the zone's next lease; `call` is answered once it is on
 * disk. Returns whether it took the call. */
static bool lease_unpersist(struct zd_lease *l, struct zd_call *call)
{
	struct zd_daemon *d = l->dev->d;
	struct persist_req *p;

	if (!l->persisted)
		return false;
	persisted_del(l);
	p = calloc(1, sizeof(*p));
	if (!p || zd_state_lease_end_async(d, l->id, &p->q, end_done) < 0) {
		zd_err("lease %" PRIu64 ": cannot record its end in %s: out of memory", l->id,
		       d->cfg.state_dir);
		free(p);
		return false;
	}
	p->call = call;
	return call != NULL;
}

/* Gives the zone back to the allocator, fenced and unrecorded first.
 * Idempotent: a revoked lease gave its zone up already. */
static bool lease_zone_free(struct zd_lease *l, struct zd_call *call)
{
	struct zd_device *dev = l->dev;
	struct zd_daemon *d = dev->d;
	bool took;

	if (dev->lease_of[l->zone] != l)
		return false;
	/* Closed before the fence looks for holders, which it would be. */
	probe_close(l);
	/* Queued ahead of whatever grants these zones next. */
	if (!l->fenced) {
		zd_device_fence(dev, l->zone, l->count);
		l->fenced = true;
	}
	took = lease_unpersist(l, call);
	for (uint32_t i = l->zone; i < l->zone + l->count; i++) {
		dev->lease_of[i] = NULL;
		zd_device_zone_reclass(dev, i);
	}
	/* Those waiting for this very zone go first, then the rest. */
	zd_waiters_unpark(d, &l->waiters);
	zd_waiters_kick(d, dev);
	/* The device reference goes with the reservation; the work or waiter
	 * that runs next holds its own. */
	dev->refs--;
	zd_device_release(dev);
	return took;
}

/* The one place a lease's memory goes: once it is free and no device work
 * on it is in flight (a revoked lease waits for its last operation). */
void zd_lease_put(struct zd_lease *l)
{
	if (l->state == ZD_LEASE_FREE && l->busy == 0) {
		lease_free(l);
	}
}

/* Ends a lease whose zone is now nobody's: granting that failed or was
 * cancelled, a release whose work is done, a revoked lease. */
void zd_lease_end_reply(struct zd_lease *l, struct zd_call *call)
{
	bool took = false;

	if (zd_lease_set_state(l, ZD_LEASE_FREE) == 0) {
		zd_lease_detach(l);
		took = lease_zone_free(l, call);
		zd_lease_put(l);
	}
	if (call && !took)
		zd_call_complete(call);
}

void zd_lease_end(struct zd_lease *l)
{
	zd_lease_end_reply(l, NULL);
}

/* --- release ------------------------------------------------------------ */

struct release_op {
	struct zd_call *call;       /* NULL when nobody waits for the answer */
	struct zd_lease *lease;
	int then;                   /* -1 keep, else a zone op */
	const char *reason;         /* for the event: release, disconnect, grace */
	bool fence;                 /* zone isolation: cut the lease's path first */
	bool fenced;                /* ... done */
};

/* One zone of a lease being released: refreshed, then `then` applied. */
static int release_zone(struct zd_dev *dev, int then, uint32_t zone, struct zd_zone *z,
			bool *moved)
{
	uint64_t known = z->wp;  /* the daemon's, copied in when queued */
	uint32_t n = 1;
	int r;

	if (then == ZD_OP_RESET) {
		/* What the client wrote is discarded: no refresh (the emulator's
		 * would sync the data and record a wp only to drop both), the
		 * reset alone, then the zone as the device has it. A dead zone
		 * refuses the reset and is reported dead. */
		int rep;

		r = dev->ops->zone_op(dev, ZD_OP_RESET, zone, 1);
		if (r < 0 && r != -EPERM)
			return r;
		rep = dev->ops->report(dev, zone, z, &n);
		if (rep == 0 && (z->cond == ZP_COND_READONLY || z->cond == ZP_COND_OFFLINE))
			return 0;
		return r ?: rep;
	}
	/* The client may have written without telling us: learn the write
	 * pointer before the zone goes back to the pool. */
	r = dev->ops->refresh_zone(dev, zone, UINT64_MAX, z);
	*moved |= r == 0 && z->wp != known;
	/* The emulator refuses to refresh a dead zone, a kernel device
	 * reports it: either way its lease ends with nothing left to do. */
	if (r == -EPERM)
		r = dev->ops->report(dev, zone, z, &n) ?: -EPERM;
	if ((r == 0 || r == -EPERM) && (z->cond == ZP_COND_READONLY || z->cond == ZP_COND_OFFLINE))
		return 0;
	if (r < 0)
		return r;
	if (then < 0) {
		/* Give the open resource back with the lease: an implicitly
		 * open zone nobody writes would otherwise hold one of max_open
		 * until the device evicts it, and devices differ there
		 * (null_blk refuses to evict when the active limit is also
		 * reached). Closed, it stays active and resumable. */
		if (z->cond != ZP_COND_IMP_OPEN)
			return 0;
		r = dev->ops->zone_op(dev, ZD_OP_CLOSE, zone, 1);
	} else {
		r = dev->ops->zone_op(dev, (enum zd_zone_op)then, zone, 1);
	}
	if (r < 0)
		return r;
	return dev->ops->report(dev, zone, z, &n);
}

static int release_run(struct zd_work *w)
{
	struct release_op *op = w->data;
	struct zd_dev *dev = w->dev->dev;
	bool moved = false;
	int r;

	/* Cut first: a write through the old path after this is refused or
	 * lands nowhere, so what is read below is the zone's last word. */
	if (op->fence) {
		r = dev->ops->lease_fence(dev, w->zone, w->count);
		if (r < 0)
			return r;
		op->fenced = true;
	}
	w->nz = 0;
	for (uint32_t i = 0; i < w->count; i++) {
		w->fail_zone = w->zone + i;
		r = release_zone(dev, op->then, w->zone + i, &w->zbuf[i], &moved);
		if (r < 0)
			return r;
		w->nz = i + 1;
	}
	/* A release is a durability point on every backend: the data below
	 * the wp it answers survives a power cut (PROTOCOL.md, lease.release). */
	return moved && dev->ops->flush ? dev->ops->flush(dev) : 0;
}

/* {"zone": the first zone[, "zones": every zone]}, as text. */
static void release_result(struct zd_call *call, struct zd_device *dev,
			   const struct zd_lease *l)
{
	struct zp_jw w;

	if (zd_call_result_begin(call, &w, 64 + (size_t)(l->count + 1) * 200, "release") < 0)
		return;
	zp_jw_begin(&w, '{');
	zp_jw_key(&w, "zone");
	zd_zone_write(&w, l->zone, (const struct zd_zone[]){ zd_device_zone(dev, l->zone) });
	if (l->count > 1) {
		zp_jw_key(&w, "zones");
		zp_jw_begin(&w, '[');
		for (uint32_t i = 0; i < l->count; i++)
			zd_zone_write(&w, l->zone + i,
				      (const struct zd_zone[]){ zd_device_zone(dev, l->zone + i) });
		zp_jw_end(&w, ']');
	}
	zp_jw_end(&w, '}');
	zd_call_result_end(call, &w, "release");
}

/* The release's answer and the lease's end, with or without device work. */
static void release_finish(struct release_op *op, int status)
{
	struct zd_lease *l = op->lease;
	struct zd_call *call = op->call;
	struct zd_device *dev = l->dev;
	struct zd_daemon *d = dev->d;

	/* A fence that failed is queued again when the zones are freed, and
	 * fails the device if it fails there too. */
	l->fenced = op->fenced;
	if (call) {
		if (status < 0) {
			zd_call_errno(call, status, "release");
		} else {
			release_result(call, dev, l);
		}
	}
	d->stats.leases_released++;
	d->nr_releasing--;
	zd_lease_log(l, "released");
	zd_event_lease(d, ZD_EV_LEASE_RELEASED, l, op->reason);
	free(op);
	/* The reply goes once the end is on disk. */
	zd_lease_end_reply(l, call);
	if (d->nr_releasing == 0)
		zd_waiters_kick(d, NULL);
}

static void release_done(struct zd_work *w, int status)
{
	for (uint32_t i = 0; i < w->nz; i++)
		zd_device_zone_refreshed(w->dev, w->zone + i, &w->zbuf[i]);
	release_finish(w->data, status);
	free(w->zbuf);
	free(w);
}

/* A release the loop can answer: a lease granted from the ready set
 * (count 1, probe_fd held) whose zone is exactly as the cache has it and
 * that nothing but probe_fd reaches any more, released to a state it is
 * already in. `keep` of an implicitly open zone closes it and `reset` of a
 * written one resets it: device work, the queue's. */
static bool release_here(struct zd_lease *l, int then)
{
	struct zd_device *dev = l->dev;
	const struct zd_zone zc = zd_device_zone(dev, l->zone), *z = &zc;

	if (l->probe_fd < 0 || l->busy || l->fenced || l->count != 1 ||
	    !zd_device_isolated(dev) || dev->failed)
		return false;
	if (then < 0 ? z->cond == ZP_COND_IMP_OPEN :
	    then != ZD_OP_RESET || z->cond != ZP_COND_EMPTY)
		return false;
	return dev->dev->ops->lease_probe(dev->dev, l->zone, l->probe_fd, z) == 0;
}

int zd_lease_release(struct zd_lease *l, int then, struct zd_call *call)
{
	/* Decided first (nothing below changes what it looks at), so that
	 * a release the loop answers allocates no device work; what the
	 * other kind needs is allocated before anything changes, so that
	 * nothing fails once the lease is detached. */
	bool here = release_here(l, then);
	struct release_op *op = calloc(1, sizeof(*op));
	struct zd_work *w = here ? NULL : calloc(1, sizeof(*w));
	int r;

	if (w)
		w->zbuf = calloc(l->count, sizeof(*w->zbuf));
	if (!op || (!here && (!w || !w->zbuf))) {
		free(op);
		if (w)
			free(w->zbuf);
		free(w);
		return -ENOMEM;
	}
	op->fence = zd_device_isolated(l->dev) && !l->fenced;
	op->reason = l->state == ZD_LEASE_ORPHANED ? "grace" : call ? "release" : "disconnect";
	r = zd_lease_set_state(l, ZD_LEASE_RELEASING);
	if (r < 0) {
		free(op);
		if (w)
			free(w->zbuf);
		free(w);
		return r;
	}
	/* From here the lease is gone for the client; the zone stays
	 * reserved until the device work finishes. */
	zd_lease_detach(l);
	op->call = call;
	op->lease = l;
	op->then = then;
	if (here) {
		struct zd_device *dev = l->dev;
		uint32_t zone = l->zone;
		int probe_fd = l->probe_fd;

		/* Nothing reaches the zone but probe_fd: it is fenced. */
		op->fenced = true;
		l->probe_fd = -1;
		dev->d->stats.releases_untouched++;
		dev->d->nr_releasing++;
		release_finish(op, 0);
		/* Once the zone is free (and a waiter the release served may
		 * have taken it), an empty one goes back to the ready set. */
		zd_device_ready_recycle(dev, zone, probe_fd);
		return 0;
	}
	/* Else the fence would count probe_fd as a holder. */
	probe_close(l);
	/* The cached zones, for release_zone() to tell whether they moved. */
	for (uint32_t i = 0; i < l->count; i++)
		w->zbuf[i] = zd_device_zone(l->dev, l->zone + i);
	w->data = op;
	w->zone = l->zone;
	w->count = l->count;
	w->zone_work = w->recheck = true;
	w->fail_zone = w->zone;
	w->run = release_run;
	w->done = release_done;
	l->dev->d->nr_releasing++;
	zd_work_queue(l->dev, w);
	return 0;
}

/* --- revocation and connection death ------------------------------------ */

void zd_lease_revoke_zone(struct zd_device *dev, uint32_t zone, const char *reason)
{
	struct zd_lease *l = dev->lease_of[zone];

	/* A lease being released is already gone for its owner; the admin
	 * operation queues behind the release. */
	if (!l || l->state == ZD_LEASE_RELEASING)
		return;
	if (zd_lease_set_state(l, ZD_LEASE_REVOKED) < 0)
		return;
	dev->d->stats.leases_revoked++;
	zd_lease_log(l, "revoked");
	/* Before it is detached: its holder is told. */
	zd_event_lease(dev->d, ZD_EV_LEASE_REVOKED, l, reason);
	zd_lease_detach(l);
	/* The zone is free now and its waiters are served after the admin
	 * operation queued next; the device cannot go away meanwhile, that
	 * work holds a reference. A grant in flight ends the lease when its
	 * work completes; otherwise it ends now, and an operation still
	 * queued on it frees it when that completes. */
	lease_zone_free(l, NULL);
	if (l->busy == 0)
		zd_lease_end(l);
}

/* The last device operation on a lease completed. */
void zd_lease_op_done(struct zd_lease *l)
{
	l->busy--;
	if (l->state == ZD_LEASE_REVOKED && l->busy == 0)
		zd_lease_end(l);
	else
		zd_lease_put(l);
}

static void lease_conn_open(struct zd_conn *conn)
{
	zd_list_init(&conn->leases);
	zd_list_init(&conn->waiters);
	zd_list_init(&conn->waiters_parked);
}

/* Leases belong to the connection: a client that closes or dies gives its
 * zones back now. */
static void lease_conn_close(struct zd_conn *conn)
{
	struct zd_list *pos, *tmp;

	zd_waiters_drop_conn(conn);
	zd_list_for_each_safe(pos, tmp, &conn->leases) {
		struct zd_lease *l = zd_container_of(pos, struct zd_lease, conn_link);

		if (l->state == ZD_LEASE_GRANTING || l->state == ZD_LEASE_RECLAIMING) {
			/* Still being granted or reclaimed: the completion sees
			 * no connection and ends or re-orphans it. */
			zd_lease_detach(l);
			continue;
		}
		/* A stopping daemon keeps every lease in its table: the next
		 * start orphans them for the grace, so an upgrade or a
		 * restart loses none. A reclaimable lease outlives its
		 * connection for the grace; any other is released now, so a
		 * client that dies does not hold its zone for grace_ms. */
		if (conn->d->stopping || l->reclaimable) {
			zd_lease_orphan(l);
			continue;
		}
		zd_lease_log(l, "dropped with its connection");
		/* The zone is refreshed from the device and returned. */
		if (zd_lease_release(l, -1, NULL) < 0)
			zd_lease_detach(l); /* out of memory: kept reserved */
	}
}

/* --- orphans and the grace ---------------------------------------------- */

static void grace_cb(uv_timer_t *t);

/* One timer for every orphan: it fires at the earliest end of a grace. */
static void grace_arm(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;
	uint64_t first = UINT64_MAX, now = zd_now_ms(d);

	if (d->stopping)
		return;
	zd_list_for_each_safe(pos, tmp, &d->orphans) {
		struct zd_lease *l = zd_container_of(pos, struct zd_lease, orphan_link);

		if (l->orphan_until_ms < first)
			first = l->orphan_until_ms;
	}
	if (!d->grace_timer.data) {
		uv_timer_init(d->loop, &d->grace_timer);
		d->grace_timer.data = d;
	}
	if (first == UINT64_MAX)
		uv_timer_stop(&d->grace_timer);
	else
		uv_timer_start(&d->grace_timer, grace_cb, first > now ? first - now : 0, 0);
}

static void grace_cb(uv_timer_t *t)
{
	struct zd_daemon *d = t->data;
	struct zd_list *pos, *tmp;
	uint64_t now = zd_now_ms(d);

	zd_list_for_each_safe(pos, tmp, &d->orphans) {
		struct zd_lease *l = zd_container_of(pos, struct zd_lease, orphan_link);

		if (l->orphan_until_ms > now)
			continue;
		zd_lease_log(l, "not reclaimed within the grace period, released");
		if (zd_lease_release(l, -1, NULL) < 0)
			l->orphan_until_ms = now + 1000; /* out of memory: later */
	}
	grace_arm(d);
}

static void lease_make_orphan(struct zd_lease *l)
{
	struct zd_daemon *d = l->dev->d;

	l->orphan_until_ms = zd_now_ms(d) + d->cfg.grace_ms;
	zd_list_add_tail(&d->orphans, &l->orphan_link);
	grace_arm(d);
}

void zd_lease_orphan(struct zd_lease *l)
{
	if (zd_lease_set_state(l, ZD_LEASE_ORPHANED) < 0)
		return;
	zd_lease_detach(l);
	if (!l->dev->d->stopping) {
		zd_lease_log(l, "orphaned: reclaimable for the grace period");
		zd_event_lease(l->dev->d, ZD_EV_LEASE_ORPHANED, l, "disconnect");
	}
	lease_make_orphan(l);
}

struct zd_lease *zd_lease_find_orphan(struct zd_daemon *d, uint64_t id)
{
	struct zd_lease *l = zd_lease_by_id(d, id);

	return l && l->state == ZD_LEASE_ORPHANED ? l : NULL;
}

/* What a previous daemon left on the devices (dm mappings) that no
 * orphan of the table will reclaim goes; the orphans' paths are kept for
 * their reclaim. Blocking, at start-up before anyone is served. A device
 * that cannot sweep serves nobody: its strays may still write. */
static void lease_sweep(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);
		struct zd_range *keep;
		size_t n = 0;
		int r;

		if (!zd_device_isolated(dev) || !dev->dev->ops->lease_sweep)
			continue;
		keep = calloc(dev->class_count[ZD_ZC_LEASED] + 1, sizeof(*keep));
		if (!keep) {
			zd_device_fail(dev, "cannot sweep stale lease mappings: out of memory");
			continue;
		}
		for (uint32_t i = dev->class_head[ZD_ZC_LEASED]; i != ZD_NIL; i = dev->znext[i]) {
			const struct zd_lease *l = dev->lease_of[i];

			if (l->zone == i)
				keep[n++] = (struct zd_range){ l->zone, l->count };
		}
		r = dev->dev->ops->lease_sweep(dev->dev, keep, n);
		if (r < 0)
			zd_device_fail(dev, "cannot remove what a previous zonedd left for its "
				       "leases: %s", strerror(-r));
		free(keep);
	}
}

int zd_lease_adopt(struct zd_daemon *d)
{
	struct zd_lease_rec *recs;
	size_t n, adopted = 0;
	int r;

	uv_update_time(d->loop); /* the grace starts now, not when the loop began */
	r = zd_state_leases_load(d, &recs, &n);
	if (r < 0) {
		/* Its leases may be anyone's: no zone is granted on a
		 * guess. */
		zd_err("cannot read the lease table in %s: %s", d->cfg.state_dir, strerror(-r));
		d->lease_table_err = r;
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		const struct zd_lease_rec *rec = &recs[i];
		struct zd_device *dev = zd_device_find(d, rec->device);
		struct zd_lease *l;

		const char *bad = NULL;

		if (!dev || strcmp(dev->id, rec->device))
			bad = "no such device is configured";
		else if (rec->count == 0 || rec->count > ZP_LEASE_ZONES_MAX ||
			 rec->zone >= dev->info.nr_zones ||
			 rec->count > dev->info.nr_zones - rec->zone)
			bad = "no such zone";
		else
			for (uint32_t z = rec->zone; z < rec->zone + rec->count && !bad; z++)
				if (dev->lease_of[z])
					bad = "the zone is leased twice in the table";
		if (bad) {
			zd_warn("lease %" PRIu64 " of %s zone %u: %s; dropped", rec->id,
				rec->device, rec->zone, bad);
			continue;
		}
		l = calloc(1, sizeof(*l));
		if (!l) {
			r = -ENOMEM;
			break;
		}
		/* Born orphaned: its owner is whoever holds the token. */
		l->state = ZD_LEASE_ORPHANED;
		l->probe_fd = -1;
		l->dev = dev;
		l->zone = rec->zone;
		l->count = rec->count;
		l->id = rec->id;
		l->token = rec->token;
		l->pid = rec->pid;
		l->uid = rec->uid;
		l->direct = rec->direct;
		l->reclaimable = rec->reclaimable;
		l->granted_ms = zd_now_ms(d);
		snprintf(l->label, sizeof(l->label), "%s", rec->label);
		zd_list_init(&l->waiters);
		zd_list_init(&l->conn_link);
		zd_list_init(&l->orphan_link);
		if (ids_add(d, l) < 0) {
			free(l);
			r = -ENOMEM;
			break;
		}
		lease_reserve(l);
		persisted_add(l);
		lease_make_orphan(l);
		zd_lease_log(l, "adopted from the lease table, orphaned for the grace period");
		adopted++;
	}
	free(recs);
	lease_sweep(d);
	/* Rewritten from what was adopted: the dropped records go, and the
	 * log is open for appending from here. */
	if (leases_rewrite(d) < 0 && r == 0)
		r = -EIO;
	if (adopted)
		zd_notice("%zu lease(s) orphaned after the restart; reclaimable for %u ms", adopted,
			  d->cfg.grace_ms);
	return r;
}

static void lease_stop(struct zd_daemon *d)
{
	zd_waiters_fini(d);
	zd_state_log_stop(d);
	if (d->grace_timer.data) {
		uv_close((uv_handle_t *)&d->grace_timer, NULL);
		d->grace_timer.data = NULL;
	}
}

/* The loop has ended: what is left are orphans, kept in the table for the
 * next start; their memory and device references go. */
static void lease_fini(struct zd_daemon *d)
{
	while (!zd_list_empty(&d->orphans)) {
		struct zd_lease *l = zd_container_of(d->orphans.next, struct zd_lease,
						     orphan_link);
		struct zd_device *dev = l->dev;

		if (l->persisted)
			zd_list_del(&l->persist_link);
		if (dev->lease_of[l->zone] == l) {
			for (uint32_t i = l->zone; i < l->zone + l->count; i++)
				dev->lease_of[i] = NULL;
			dev->refs--;
		}
		lease_free(l);
	}
	free(d->lease_ids.bucket);
	d->lease_ids.bucket = NULL;
	d->lease_ids.nr_buckets = 0;
	zd_state_leases_close(d);
}

void zd_lease_init(struct zd_daemon *d)
{
	d->next_lease_id = 1;
	zd_waitq_init(&d->any_waiters);
	zd_list_init(&d->release_waiters);
	zd_list_init(&d->kick_pending);
	zd_list_init(&d->orphans);
	zd_list_init(&d->persisted);
	zd_list_init(&d->lease_ids.order);
	zd_state_log_init(d);
	d->lease_hooks.conn_open = lease_conn_open;
	d->lease_hooks.conn_close = lease_conn_close;
	d->lease_hooks.stop = lease_stop;
	d->lease_hooks.fini = lease_fini;
	zd_hooks_add(d, &d->lease_hooks);
}
