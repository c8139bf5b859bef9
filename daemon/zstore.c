/* The compact cached zone table; see zstore.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "daemon/zstore.h"

#define UNIT (1ull << ZD_ZS_SHIFT)

int zd_zstore_init(struct zd_zone_store *s, uint32_t nr, uint64_t zone_size, uint64_t dev_size)
{
	uint64_t last;

	*s = (struct zd_zone_store){ 0 };
	if (nr == 0 || zone_size == 0 || zone_size % UNIT || (zone_size >> ZD_ZS_SHIFT) >= UINT32_MAX)
		return -EINVAL;
	/* The last zone is whatever the size leaves past the others: one
	 * zone's worth at most, and something. */
	if (dev_size <= (uint64_t)(nr - 1) * zone_size)
		return -EINVAL;
	last = dev_size - (uint64_t)(nr - 1) * zone_size;
	if (last > zone_size || last % UNIT)
		return -EINVAL;
	s->nr = nr;
	s->zone_size = zone_size;
	s->last_len = last;
	s->wp = malloc((size_t)nr * sizeof(*s->wp));
	s->cap = malloc((size_t)nr * sizeof(*s->cap));
	s->tc = malloc(nr);
	if (!s->wp || !s->cap || !s->tc) {
		zd_zstore_fini(s);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nr; i++) {
		uint64_t len = zd_zstore_len(s, i);

		s->wp[i] = s->cap[i] = (uint32_t)(len >> ZD_ZS_SHIFT);
		s->tc[i] = ZP_TYPE_CONV << 4 | ZP_COND_NOT_WP;
	}
	return 0;
}

void zd_zstore_fini(struct zd_zone_store *s)
{
	free(s->wp);
	free(s->cap);
	free(s->tc);
	s->wp = s->cap = NULL;
	s->tc = NULL;
	s->nr = 0;
}

int zd_zstore_set(struct zd_zone_store *s, uint32_t i, const struct zd_zone *z)
{
	uint64_t start, len;
	uint32_t wp;

	if (i >= s->nr || z->type >= ZP_TYPE_COUNT || z->cond >= ZP_COND_COUNT)
		return -EINVAL;
	start = zd_zstore_start(s, i);
	len = zd_zstore_len(s, i);
	if (z->start != start || z->len != len || z->capacity > len || z->capacity % UNIT)
		return -EINVAL;
	if (z->wp == UINT64_MAX) {
		wp = ZD_ZS_WP_NONE;
	} else {
		if (z->wp < start || z->wp - start > len || (z->wp - start) % UNIT)
			return -EINVAL;
		wp = (uint32_t)((z->wp - start) >> ZD_ZS_SHIFT);
	}
	s->wp[i] = wp;
	s->cap[i] = (uint32_t)(z->capacity >> ZD_ZS_SHIFT);
	s->tc[i] = (uint8_t)(z->type << 4 | z->cond);
	return 0;
}
