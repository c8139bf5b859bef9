/* The daemon's cached zone table in 9 bytes a zone: what a zone report says
 * that cannot be derived from the geometry. Every zone starts at index *
 * zone size and is zone size long, except a shorter last one (the kernel's
 * rule for zoned block devices, the emulator's too); write pointer and
 * capacity are kept relative to the zone start in 512-byte units, which
 * both backends report in. struct zd_zone stays the exchange type: a zone
 * goes in and comes out whole. */
#ifndef ZONED_ZSTORE_H
#define ZONED_ZSTORE_H

#include <stdint.h>

#include "daemon/zdev.h"

#define ZD_ZS_SHIFT 9u              /* the store's unit: 512 bytes */
#define ZD_ZS_WP_NONE UINT32_MAX    /* wp UINT64_MAX: read-only, offline */

struct zd_zone_store {
	uint32_t nr;
	uint64_t zone_size;  /* bytes */
	uint64_t last_len;   /* bytes, the last zone's (zone_size unless a runt) */
	uint32_t *wp;        /* units from the zone start, or ZD_ZS_WP_NONE */
	uint32_t *cap;       /* units */
	uint8_t *tc;         /* type << 4 | cond */
};

/* A store of nr zones of zone_size bytes over a device of dev_size bytes
 * (the last zone takes what is left). Every zone starts out conventional,
 * "not wp", its capacity its length. -EINVAL for a geometry the store
 * cannot hold (zones of 2 TiB or more, not in whole 512-byte units). */
int zd_zstore_init(struct zd_zone_store *s, uint32_t nr, uint64_t zone_size, uint64_t dev_size);
void zd_zstore_fini(struct zd_zone_store *s);
/* Stores zone i. -EINVAL (nothing stored) when z is not zone i's place in
 * the geometry (start, len), its capacity or wp is not in 512-byte units
 * or lies outside the zone, or its type or cond is out of range. */
int zd_zstore_set(struct zd_zone_store *s, uint32_t i, const struct zd_zone *z);

static inline uint64_t zd_zstore_start(const struct zd_zone_store *s, uint32_t i)
{
	return (uint64_t)i * s->zone_size;
}

static inline uint64_t zd_zstore_len(const struct zd_zone_store *s, uint32_t i)
{
	return i + 1 == s->nr ? s->last_len : s->zone_size;
}

static inline uint8_t zd_zstore_cond(const struct zd_zone_store *s, uint32_t i)
{
	return s->tc[i] & 15;
}

static inline uint8_t zd_zstore_type(const struct zd_zone_store *s, uint32_t i)
{
	return s->tc[i] >> 4;
}

static inline uint64_t zd_zstore_capacity(const struct zd_zone_store *s, uint32_t i)
{
	return (uint64_t)s->cap[i] << ZD_ZS_SHIFT;
}

static inline uint64_t zd_zstore_wp(const struct zd_zone_store *s, uint32_t i)
{
	uint32_t w = s->wp[i];

	return w == ZD_ZS_WP_NONE ? UINT64_MAX : zd_zstore_start(s, i) + ((uint64_t)w << ZD_ZS_SHIFT);
}

/* Zone i, whole. */
static inline struct zd_zone zd_zstore_get(const struct zd_zone_store *s, uint32_t i)
{
	struct zd_zone z = {
		.start = zd_zstore_start(s, i),
		.len = zd_zstore_len(s, i),
		.capacity = zd_zstore_capacity(s, i),
		.wp = zd_zstore_wp(s, i),
		.type = zd_zstore_type(s, i),
		.cond = zd_zstore_cond(s, i),
	};

	return z;
}

#endif
