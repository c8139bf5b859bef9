/* The zone allocator and its free-space index; see alloc.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "daemon/alloc.h"
#include "daemon/daemon.h"

int zd_free_index_init(struct zd_free_index *x, uint32_t nr_zones, uint64_t block_size)
{
	x->n = nr_zones ? nr_zones : 1;
	x->block = block_size ? block_size : 1;
	x->bulk = false;
	x->max = calloc(2 * (size_t)x->n, sizeof(*x->max));
	return x->max ? 0 : -ENOMEM;
}

void zd_free_index_fini(struct zd_free_index *x)
{
	free(x->max);
	x->max = NULL;
}

void zd_free_index_set(struct zd_free_index *x, uint32_t zone, uint64_t free_bytes)
{
	uint64_t blocks = free_bytes / x->block;
	uint32_t i;

	if (zone >= x->n)
		return;
	i = x->n + zone;
	x->max[i] = blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks;
	if (x->bulk)
		return;
	for (i >>= 1; i >= 1; i >>= 1) {
		uint32_t m = x->max[2 * i] > x->max[2 * i + 1] ? x->max[2 * i] : x->max[2 * i + 1];

		if (x->max[i] == m)
			break; /* nothing above changes either */
		x->max[i] = m;
	}
}

void zd_free_index_build(struct zd_free_index *x)
{
	for (uint32_t i = x->n; i-- > 1;) {
		uint32_t m = x->max[2 * i] > x->max[2 * i + 1] ? x->max[2 * i] : x->max[2 * i + 1];

		/* Only where it changes: a device with no partial zone keeps the
		 * whole index in untouched (unresident) pages. */
		if (x->max[i] != m)
			x->max[i] = m;
	}
	x->bulk = false;
}

uint32_t zd_free_index_find(const struct zd_free_index *x, uint64_t min_free)
{
	/* Free space is whole blocks, so "at least min_free bytes" is "at
	 * least min_free rounded up to blocks". */
	uint64_t want = (min_free + x->block - 1) / x->block;
	uint32_t i = 1;

	if (want == 0)
		want = 1;
	if (want > UINT32_MAX || x->max[1] < want)
		return UINT32_MAX;
	/* Every node at or below i holds a fitting leaf in some subtree. */
	while (i < x->n)
		i = x->max[2 * i] >= want ? 2 * i : 2 * i + 1;
	return i - x->n;
}

/* --- runs of candidate zones ------------------------------------------ */

static struct zd_run_node leaf_of(uint64_t w)
{
	struct zd_run_node l = { 0, 0, 0 };

	if (w == UINT64_MAX)
		return (struct zd_run_node){ 64, 64, 64 };
	l.pre = (uint32_t)__builtin_ctzll(~w);
	l.suf = (uint32_t)__builtin_clzll(~w);
	/* Each step shortens every run by one: as many steps as the longest. */
	for (uint64_t v = w; v; v &= v >> 1)
		l.best++;
	return l;
}

/* Node i over `len` zones from its two children. */
static void combine(struct zd_run_index *x, uint32_t i, uint32_t len)
{
	const struct zd_run_node *a = &x->node[2 * i], *b = &x->node[2 * i + 1];
	struct zd_run_node *m = &x->node[i];
	uint32_t half = len / 2, mid = a->suf + b->pre;

	m->pre = a->pre == half ? half + b->pre : a->pre;
	m->suf = b->suf == half ? half + a->suf : b->suf;
	m->best = a->best > b->best ? a->best : b->best;
	if (mid > m->best)
		m->best = mid;
}

int zd_run_index_init(struct zd_run_index *x, uint32_t nr_zones, bool bulk)
{
	uint32_t words = (nr_zones + 63) / 64;

	*x = (struct zd_run_index){ .n = nr_zones, .leaves = 1, .bulk = bulk };
	while (x->leaves < words)
		x->leaves *= 2;
	x->bits = calloc(x->leaves, sizeof(*x->bits));
	x->node = calloc(2 * (size_t)x->leaves, sizeof(*x->node));
	if (!x->bits || !x->node) {
		zd_run_index_fini(x);
		return -ENOMEM;
	}
	return 0;
}

void zd_run_index_fini(struct zd_run_index *x)
{
	free(x->bits);
	free(x->node);
	x->bits = NULL;
	x->node = NULL;
}

void zd_run_index_set(struct zd_run_index *x, uint32_t zone, bool candidate)
{
	uint64_t *w, old;
	uint32_t i, len;

	if (zone >= x->n)
		return;
	w = &x->bits[zone / 64];
	old = *w;
	if (candidate)
		*w |= 1ull << (zone % 64);
	else
		*w &= ~(1ull << (zone % 64));
	if (x->bulk || *w == old)
		return;
	i = x->leaves + zone / 64;
	x->node[i] = leaf_of(*w);
	for (i >>= 1, len = 128; i >= 1; i >>= 1, len *= 2)
		combine(x, i, len);
}

void zd_run_index_build(struct zd_run_index *x)
{
	uint32_t len = 128;

	for (uint32_t k = 0; k < x->leaves; k++)
		x->node[x->leaves + k] = leaf_of(x->bits[k]);
	for (uint32_t lo = x->leaves / 2; lo >= 1; lo /= 2, len *= 2)
		for (uint32_t i = lo; i < 2 * lo; i++)
			combine(x, i, len);
	x->bulk = false;
}

uint32_t zd_run_index_find(const struct zd_run_index *x, uint32_t count)
{
	uint32_t i = 1, start = 0, len = 64 * x->leaves;

	if (count == 0 || x->node[1].best < count)
		return UINT32_MAX;
	/* Below i lies a run of count; the lowest one is in the left child,
	 * or across the middle, or in the right child, in that order. */
	while (i < x->leaves) {
		const struct zd_run_node *a = &x->node[2 * i], *b = &x->node[2 * i + 1];

		len /= 2;
		if (a->best >= count) {
			i = 2 * i;
		} else if (a->suf + b->pre >= count) {
			return start + len - a->suf;
		} else {
			i = 2 * i + 1;
			start += len;
		}
	}
	/* Within one word: the first count set bits in a row. */
	{
		uint64_t w = x->bits[i - x->leaves], v = w;

		for (uint32_t k = 1; k < count; k++)
			v &= w >> k;
		return v ? start + (uint32_t)__builtin_ctzll(v) : UINT32_MAX;
	}
}

/* May one more zone become writable? Every leased zone may be written at
 * any moment, so each one counts against both limits as if it were open;
 * unleased zones count as they are. */
/* May n more zones (new_active of them not active yet) become writable?
 * Every leased zone may be written at any moment, so each one counts
 * against both limits as if it were open; unleased zones count as they
 * are, so a partial zone of the range is active already (counted once). */
static bool room_for_writers(const struct zd_device *dev, uint32_t n, uint32_t new_active)
{
	uint32_t leased = dev->class_count[ZD_ZC_LEASED];

	if (dev->info.max_open) {
		/* Implicitly open zones that nobody holds are closed by the
		 * device to make room; explicitly open ones are not. */
		uint32_t pinned = dev->cond_count[ZP_COND_EXP_OPEN] - dev->leased_exp_open;

		if ((uint64_t)leased + pinned + n > dev->info.max_open)
			return false;
	}
	if (new_active && dev->info.max_active &&
	    (uint64_t)dev->class_count[ZD_ZC_PARTIAL] + leased + new_active > dev->info.max_active)
		return false;
	return true;
}

static bool room_for_writer(const struct zd_device *dev, bool new_active)
{
	return room_for_writers(dev, 1, new_active ? 1 : 0);
}

static int64_t pick_named(const struct zd_device *dev, const struct zd_alloc_req *req)
{
	uint64_t free_bytes = 0;
	uint32_t first = (uint32_t)req->zone, new_active = 0;

	if (req->zone >= dev->info.nr_zones || req->count > dev->info.nr_zones - first)
		return ZP_ERR_NO_ZONE;
	for (uint32_t i = first; i < first + req->count; i++) {
		const struct zd_zone zc = zd_device_zone(dev, i), *z = &zc;

		if (dev->lease_of[i])
			return ZP_ERR_ZONE_LEASED;
		if (z->type == ZP_TYPE_CONV || z->cond == ZP_COND_READONLY ||
		    z->cond == ZP_COND_OFFLINE)
			return ZP_ERR_ZONE_STATE;
		/* A full zone's wp is its capacity's end (the daemon
		 * normalises it): no room, but without min_free it may be
		 * leased, to read or reset. */
		free_bytes += z->start + z->capacity - z->wp;
		new_active += !zd_zone_active(z->cond);
	}
	if (free_bytes < req->min_free)
		return ZP_ERR_NO_FREE_ZONE;
	if (!room_for_writers(dev, req->count, new_active))
		return ZP_ERR_LIMIT;
	return first;
}

/* count empty sequential zones in a row, none leased. */
static int64_t pick_range(const struct zd_device *dev, const struct zd_alloc_req *req)
{
	uint32_t first;

	if (dev->class_count[ZD_ZC_EMPTY] < req->count ||
	    req->min_free > (uint64_t)req->count * dev->info.zone_capacity)
		return ZP_ERR_NO_FREE_ZONE;
	if (!room_for_writers(dev, req->count, req->count))
		return ZP_ERR_LIMIT;
	first = zd_run_index_find(&dev->empty_runs, req->count);
	return first == UINT32_MAX ? ZP_ERR_NO_FREE_ZONE : (int64_t)first;
}

int64_t zd_alloc_pick(const struct zd_device *dev, const struct zd_alloc_req *req_in)
{
	struct zd_alloc_req one = *req_in;
	const struct zd_alloc_req *req = &one;
	bool have_empty = dev->class_head[ZD_ZC_EMPTY] != ZD_NIL;
	uint32_t partial;

	if (one.count == 0)
		one.count = 1; /* callers that predate ranges */
	if (dev->draining)
		return ZP_ERR_NO_FREE_ZONE;
	if (req->zone >= 0)
		return pick_named(dev, req);
	if (req->count > 1)
		return pick_range(dev, req);
	partial = zd_free_index_find(&dev->free_index, req->min_free);
	if (partial == UINT32_MAX)
		partial = ZD_NIL;
	if (req->min_free > dev->info.zone_capacity)
		have_empty = false;
	if (!have_empty && partial == ZD_NIL)
		return ZP_ERR_NO_FREE_ZONE;
	if (req->prefer == ZD_PREFER_PARTIAL && partial != ZD_NIL && room_for_writer(dev, false))
		return partial;
	if (have_empty && room_for_writer(dev, true))
		return dev->class_head[ZD_ZC_EMPTY];
	if (partial != ZD_NIL && room_for_writer(dev, false))
		return partial;
	return ZP_ERR_LIMIT;
}
