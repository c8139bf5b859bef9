/* Unit tests of the daemon's structures for large devices: the compact
 * cached zone table (daemon/zstore.c) against the zones it was given, and
 * the index of runs of empty zones (daemon/alloc.c) against a scan. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/alloc.h"
#include "daemon/zstore.h"

#define MIB (1024ull * 1024ull)

static struct zd_zone mk(uint64_t start, uint64_t len, uint64_t cap, uint64_t wp, uint8_t type,
			 uint8_t cond)
{
	return (struct zd_zone){ .start = start, .len = len, .capacity = cap, .wp = wp,
				 .type = type, .cond = cond };
}

static void assert_zone_eq(const struct zd_zone *a, const struct zd_zone *b)
{
	ck_assert_uint_eq(a->start, b->start);
	ck_assert_uint_eq(a->len, b->len);
	ck_assert_uint_eq(a->capacity, b->capacity);
	ck_assert_uint_eq(a->wp, b->wp);
	ck_assert_uint_eq(a->type, b->type);
	ck_assert_uint_eq(a->cond, b->cond);
}

/* Whatever a backend can report comes back exactly: random zones against a
 * plain array of struct zd_zone, a runt last zone included. */
START_TEST(zstore_round_trips)
{
	const uint64_t zs = 4 * MIB, size = 99 * zs + 3 * MIB;
	const uint32_t nr = 100;
	struct zd_zone_store s;
	struct zd_zone *ref = calloc(nr, sizeof(*ref));
	unsigned seed = 42;

	ck_assert_ptr_nonnull(ref);
	ck_assert_int_eq(zd_zstore_init(&s, nr, zs, size), 0);
	for (uint32_t i = 0; i < nr; i++) {
		uint64_t len = i + 1 == nr ? 3 * MIB : zs;
		struct zd_zone got = zd_zstore_get(&s, i);

		/* Fresh: conventional, its end as wp, as the emulator reports. */
		ref[i] = mk(i * zs, len, len, i * zs + len, ZP_TYPE_CONV, ZP_COND_NOT_WP);
		assert_zone_eq(&got, &ref[i]);
	}
	ck_assert_uint_eq(zd_zstore_len(&s, nr - 1), 3 * MIB);
	for (int round = 0; round < 20000; round++) {
		uint32_t i = (uint32_t)rand_r(&seed) % nr;
		uint64_t len = zd_zstore_len(&s, i);
		uint64_t cap = len - (uint64_t)(rand_r(&seed) % 4) * 512 * 100;
		uint8_t cond = (uint8_t)(rand_r(&seed) % ZP_COND_COUNT);
		uint64_t wp = cond >= ZP_COND_READONLY ? UINT64_MAX :
			      i * zs + (uint64_t)(rand_r(&seed) % (len / 512 + 1)) * 512;
		struct zd_zone z = mk(i * zs, len, cap, wp, (uint8_t)(rand_r(&seed) % ZP_TYPE_COUNT),
				      cond), got;

		ck_assert_int_eq(zd_zstore_set(&s, i, &z), 0);
		ref[i] = z;
		i = (uint32_t)rand_r(&seed) % nr;
		got = zd_zstore_get(&s, i);
		assert_zone_eq(&got, &ref[i]);
		ck_assert_uint_eq(zd_zstore_cond(&s, i), ref[i].cond);
		ck_assert_uint_eq(zd_zstore_wp(&s, i), ref[i].wp);
	}
	zd_zstore_fini(&s);
	free(ref);
}
END_TEST

/* What it cannot hold is refused, and leaves the zone as it was. */
START_TEST(zstore_refuses_what_it_cannot_hold)
{
	const uint64_t zs = 1 * MIB;
	struct zd_zone_store s;
	struct zd_zone before, after, z;

	ck_assert_int_eq(zd_zstore_init(&s, 4, zs, 4 * zs), 0);
	z = mk(zs, zs, zs, zs + 4096, ZP_TYPE_SWR, ZP_COND_IMP_OPEN);
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), 0);
	before = zd_zstore_get(&s, 1);
	z.start = 0; /* not zone 1's place */
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs / 2, zs / 2, zs, ZP_TYPE_SWR, ZP_COND_EMPTY); /* wrong len */
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs, zs, zs + 100, ZP_TYPE_SWR, ZP_COND_IMP_OPEN); /* wp not in units */
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs, zs, zs - 512, ZP_TYPE_SWR, ZP_COND_IMP_OPEN); /* wp before the zone */
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs, zs, 2 * zs + 512, ZP_TYPE_SWR, ZP_COND_IMP_OPEN); /* past its end */
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs, zs + 512, zs, ZP_TYPE_SWR, ZP_COND_EMPTY); /* capacity > len */
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs, zs, zs, ZP_TYPE_COUNT, ZP_COND_EMPTY);
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(zs, zs, zs, zs, ZP_TYPE_SWR, ZP_COND_COUNT);
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), -EINVAL);
	z = mk(4 * zs, zs, zs, 4 * zs, ZP_TYPE_SWR, ZP_COND_EMPTY);
	ck_assert_int_eq(zd_zstore_set(&s, 4, &z), -EINVAL); /* no zone 4 */
	after = zd_zstore_get(&s, 1);
	assert_zone_eq(&after, &before);
	/* A full zone at its end is fine; so is the largest zone it holds. */
	z = mk(zs, zs, zs, 2 * zs, ZP_TYPE_SWR, ZP_COND_FULL);
	ck_assert_int_eq(zd_zstore_set(&s, 1, &z), 0);
	zd_zstore_fini(&s);
	/* Geometries it cannot hold. */
	ck_assert_int_eq(zd_zstore_init(&s, 0, zs, zs), -EINVAL);
	ck_assert_int_eq(zd_zstore_init(&s, 2, 1000, 2000), -EINVAL);
	ck_assert_int_eq(zd_zstore_init(&s, 2, zs, zs), -EINVAL);        /* no room for zone 1 */
	ck_assert_int_eq(zd_zstore_init(&s, 2, zs, 3 * zs), -EINVAL);    /* too much for 2 */
	ck_assert_int_eq(zd_zstore_init(&s, 1, 1ull << 41, 1ull << 41), -EINVAL); /* 2 TiB */
	/* Its length in units must stay below ZD_ZS_WP_NONE. */
	ck_assert_int_eq(zd_zstore_init(&s, 1, (1ull << 41) - 512, (1ull << 41) - 512), -EINVAL);
	ck_assert_int_eq(zd_zstore_init(&s, 1, (1ull << 41) - 1024, (1ull << 41) - 1024), 0);
	zd_zstore_fini(&s);
}
END_TEST

/* The lowest start of count candidates in a row, by a scan. */
static uint32_t brute_run(const bool *c, uint32_t n, uint32_t count)
{
	uint32_t run = 0;

	for (uint32_t i = 0; i < n; i++) {
		run = c[i] ? run + 1 : 0;
		if (run == count)
			return i + 1 - count;
	}
	return UINT32_MAX;
}

/* Random sets and clears, dense and sparse, over sizes around the word and
 * tree boundaries, built in bulk and kept up to date: every count from 1
 * to 70 (runs across words, and longer than one) agrees with the scan. */
START_TEST(run_index_matches_brute_force)
{
	static const uint32_t sizes[] = { 1, 2, 63, 64, 65, 127, 128, 129, 1000, 4097 };
	unsigned seed = 7;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint32_t n = sizes[k];
		bool *c = calloc(n, sizeof(*c));
		struct zd_run_index x;

		ck_assert_ptr_nonnull(c);
		ck_assert_int_eq(zd_run_index_init(&x, n, true), 0);
		/* Bulk: mostly candidates, so long runs exist. */
		for (uint32_t i = 0; i < n; i++) {
			c[i] = rand_r(&seed) % 16 != 0;
			zd_run_index_set(&x, i, c[i]);
		}
		zd_run_index_build(&x);
		for (int round = 0; round < 3000; round++) {
			uint32_t count = (uint32_t)rand_r(&seed) % 70 + 1;

			ck_assert_msg(zd_run_index_find(&x, count) == brute_run(c, n, count),
				      "n %u round %d count %u: %u, scan says %u", n, round, count,
				      zd_run_index_find(&x, count), brute_run(c, n, count));
			/* Drift from dense to sparse and back. */
			for (int m = 0; m < 3; m++) {
				uint32_t i = (uint32_t)rand_r(&seed) % n;
				bool v = round % 1000 < 500 ? rand_r(&seed) % 4 != 0 : rand_r(&seed) % 4 == 0;

				c[i] = v;
				zd_run_index_set(&x, i, v);
			}
		}
		ck_assert_uint_eq(zd_run_index_find(&x, 0), UINT32_MAX);
		ck_assert_uint_eq(zd_run_index_find(&x, n + 1), UINT32_MAX);
		/* All of them, then none. */
		for (uint32_t i = 0; i < n; i++)
			zd_run_index_set(&x, i, true);
		ck_assert_uint_eq(zd_run_index_find(&x, n), 0);
		zd_run_index_set(&x, n - 1, false);
		ck_assert_uint_eq(zd_run_index_find(&x, n), UINT32_MAX);
		if (n > 1)
			ck_assert_uint_eq(zd_run_index_find(&x, n - 1), 0);
		for (uint32_t i = 0; i < n; i++)
			zd_run_index_set(&x, i, false);
		ck_assert_uint_eq(zd_run_index_find(&x, 1), UINT32_MAX);
		zd_run_index_set(&x, n, true); /* past the end: ignored */
		ck_assert_uint_eq(zd_run_index_find(&x, 1), UINT32_MAX);
		zd_run_index_fini(&x);
		free(c);
	}
}
END_TEST

/* The free-space index filled in bulk and built once answers as one kept
 * up to date zone by zone. */
START_TEST(free_index_bulk_build)
{
	static const uint32_t sizes[] = { 1, 2, 3, 64, 1000, 4097 };
	unsigned seed = 99;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint32_t n = sizes[k];
		struct zd_free_index a, b;

		ck_assert_int_eq(zd_free_index_init(&a, n, 4096), 0);
		ck_assert_int_eq(zd_free_index_init(&b, n, 4096), 0);
		b.bulk = true;
		for (uint32_t i = n; i-- > 0;) {
			uint64_t v = rand_r(&seed) % 3 ? 0 : (uint64_t)(rand_r(&seed) % 300) * 4096;

			zd_free_index_set(&a, i, v);
			zd_free_index_set(&b, i, v);
		}
		zd_free_index_build(&b);
		ck_assert(!b.bulk);
		ck_assert_int_eq(memcmp(a.max + 1, b.max + 1, (2 * (size_t)n - 1) * sizeof(*a.max)), 0);
		for (uint64_t want = 0; want < 310 * 4096; want += 4096 * 7)
			ck_assert_uint_eq(zd_free_index_find(&a, want), zd_free_index_find(&b, want));
		/* Kept up to date after the build. */
		zd_free_index_set(&b, n - 1, 1000 * 4096);
		ck_assert_uint_eq(zd_free_index_find(&b, 999 * 4096), n - 1);
		zd_free_index_fini(&a);
		zd_free_index_fini(&b);
	}
}
END_TEST

static Suite *scale_suite(void)
{
	Suite *s = suite_create("scale");
	TCase *tc = tcase_create("zstore");

	tcase_add_test(tc, zstore_round_trips);
	tcase_add_test(tc, zstore_refuses_what_it_cannot_hold);
	suite_add_tcase(s, tc);
	tc = tcase_create("runs");
	tcase_add_test(tc, run_index_matches_brute_force);
	tcase_add_test(tc, free_index_bulk_build);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(scale_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
