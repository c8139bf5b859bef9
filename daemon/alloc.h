/* The zone allocator: which unleased zone a lease.acquire gets, within the
 * device's open and active limits, and the index of partly written zones by
 * free space that lets it find one fitting min_free without a scan. */
#ifndef ZONED_ALLOC_H
#define ZONED_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

struct zd_device;

/* Free capacity of candidate zones, in blocks, as a max tree: leaves at
 * [n, 2n) hold each zone's free blocks (0 = not a candidate), node i the
 * largest of its children 2i and 2i + 1. Exactly 2n entries of 4 bytes;
 * an update and a search are O(log n), a search never visits a zone that
 * does not fit. */
struct zd_free_index {
	uint32_t n;
	uint32_t *max;
	uint64_t block;
	bool bulk;      /* sets change only the leaves until zd_free_index_build() */
};

int zd_free_index_init(struct zd_free_index *x, uint32_t nr_zones, uint64_t block_size);
void zd_free_index_fini(struct zd_free_index *x);
/* free_bytes 0: the zone is not a candidate (leased, empty, full...). */
void zd_free_index_set(struct zd_free_index *x, uint32_t zone, uint64_t free_bytes);
/* Makes the inner nodes from the leaves once, after sets in bulk (a whole
 * device at start-up: O(n), not O(n log n)); clears bulk. */
void zd_free_index_build(struct zd_free_index *x);
/* A candidate zone with at least min_free bytes free (at least one block
 * when min_free is 0), or UINT32_MAX when there is none. */
uint32_t zd_free_index_find(const struct zd_free_index *x, uint64_t min_free);

/* Runs of candidate zones (for ranges: empty, unleased, sequential): a
 * bitmap, and over its 64-zone words a tree whose nodes hold the longest
 * run of candidates at their start, at their end and anywhere in them, so
 * the lowest run of count zones is found in O(log n + 64) and an update
 * costs O(log n). ~0.55 bytes a zone. */
struct zd_run_node {
	uint32_t pre, suf, best;
};

struct zd_run_index {
	uint32_t n;        /* zones */
	uint32_t leaves;   /* words, rounded up to a power of two */
	uint64_t *bits;
	struct zd_run_node *node; /* 1-based heap: node i's children 2i, 2i + 1 */
	bool bulk;         /* zd_run_index_set() only sets bits until _build() */
};

/* All zones start out no candidates. With bulk, sets change only the bits
 * until zd_run_index_build() makes the tree (a whole device at start-up:
 * O(n / 64) rather than O(n log n)). */
int zd_run_index_init(struct zd_run_index *x, uint32_t nr_zones, bool bulk);
void zd_run_index_fini(struct zd_run_index *x);
void zd_run_index_set(struct zd_run_index *x, uint32_t zone, bool candidate);
void zd_run_index_build(struct zd_run_index *x);
/* The lowest zone that starts count (>= 1) candidates in a row, or
 * UINT32_MAX. */
uint32_t zd_run_index_find(const struct zd_run_index *x, uint32_t count);

enum zd_prefer { ZD_PREFER_EMPTY, ZD_PREFER_PARTIAL };

struct zd_alloc_req {
	int64_t zone;       /* -1: the allocator picks */
	uint32_t count;     /* consecutive zones, >= 1 */
	uint64_t min_free;  /* bytes, over the whole range */
	enum zd_prefer prefer;
};

/* Picks a zone of dev for req (the first of count); returns its index, or a
 * negative JSON-RPC code (-32005 nothing fits, -32006 a limit blocks,
 * -32004 / -32009 / -32003 for a named zone). O(log nr_zones) for one
 * zone; a range the allocator picks is the lowest count empty zones in a
 * row (dev->empty_runs), O(log nr_zones) too. */
int64_t zd_alloc_pick(const struct zd_device *dev, const struct zd_alloc_req *req);

#endif
