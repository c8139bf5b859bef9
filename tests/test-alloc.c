/* Unit tests of the zone allocator (daemon/alloc.c): the free-space index
 * against a brute-force search, and zone picking on a device's cached zone
 * table — more partly written zones than any scan bound, the open and
 * active limits, named zones. */
#include <config.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/alloc.h"
#include "daemon/daemon.h"
#include "daemon/log.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

START_TEST(free_index_matches_brute_force)
{
	static const uint32_t sizes[] = { 1, 2, 3, 7, 64, 100, 1000, 4097 };
	unsigned seed = 12345;

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint32_t n = sizes[s];
		struct zd_free_index x;
		uint64_t *ref = calloc(n, sizeof(*ref));

		ck_assert_ptr_nonnull(ref);
		ck_assert_int_eq(zd_free_index_init(&x, n, 4096), 0);
		ck_assert_uint_eq(zd_free_index_find(&x, 0), UINT32_MAX);
		for (int round = 0; round < 4000; round++) {
			uint32_t z = (uint32_t)rand_r(&seed) % n;
			uint64_t v = rand_r(&seed) % 3 == 0 ? 0 : (uint64_t)(rand_r(&seed) % 256) * 4096;
			uint64_t want = (uint64_t)(rand_r(&seed) % 260) * 4096 - (rand_r(&seed) % 2) * 100;
			uint32_t got;
			bool any = false;

			zd_free_index_set(&x, z, v);
			ref[z] = v;
			if (want > (1ull << 40))
				want = 0;
			for (uint32_t i = 0; i < n; i++)
				if (ref[i] && ref[i] >= want)
					any = true;
			got = zd_free_index_find(&x, want);
			if (!any) {
				ck_assert_msg(got == UINT32_MAX, "n %u: found zone %u for %llu", n, got,
					      (unsigned long long)want);
			} else {
				ck_assert_msg(got < n, "n %u: nothing found for %llu", n,
					      (unsigned long long)want);
				ck_assert_uint_gt(ref[got], 0);
				ck_assert_uint_ge(ref[got], want);
			}
		}
		zd_free_index_fini(&x);
		free(ref);
	}
}
END_TEST

/* --- picking on a device ------------------------------------------------ */

static char tmpdir[256];
static struct zd_device *dev;
static struct zd_lease fake_lease;

static void open_dev(const char *spec)
{
	struct zd_device_conf dc;
	char why[256] = "";

	zd_log_set_level(LOG_WARNING);
	snprintf(tmpdir, sizeof(tmpdir), "%s/zoned-alloc-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	memset(&dc, 0, sizeof(dc));
	dc.emulated = true;
	snprintf(dc.id, sizeof(dc.id), "emu0");
	snprintf(dc.path, sizeof(dc.path), "%s/emu0.img", tmpdir);
	snprintf(dc.spec, sizeof(dc.spec), "%s", spec);
	ck_assert_msg(zd_device_open(&dc, -1, &dev, why, sizeof(why)) == 0, "%s", why);
}

static void close_dev(void)
{
	char cmd[300];

	zd_device_discard(dev);
	dev = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Sets the cached state of zone i: `used` bytes written (0 empty, the
 * capacity full), with cond for a partial zone. */
static void set_zone(uint32_t i, uint64_t used, uint8_t cond)
{
	struct zd_zone z = zd_device_zone(dev, i);

	z.wp = z.start + used;
	if (used == 0)
		z.cond = ZP_COND_EMPTY;
	else if (used >= z.capacity)
		z.cond = ZP_COND_FULL;
	else
		z.cond = cond;
	zd_device_zone_update(dev, i, &z);
}

static void lease(uint32_t i, bool on)
{
	dev->lease_of[i] = on ? &fake_lease : NULL;
	zd_device_zone_reclass(dev, i);
}

static int64_t pick(int64_t zone, uint64_t min_free, enum zd_prefer prefer)
{
	struct zd_alloc_req r = { .zone = zone, .min_free = min_free, .prefer = prefer };

	return zd_alloc_pick(dev, &r);
}

START_TEST(min_free_finds_a_zone_among_many_partial)
{
	/* 200 partly written zones with one block left, one with 1 MiB left:
	 * far more than the 64 zones the old allocator looked at. */
	open_dev("size=400M,zone-size=2M,zone-capacity=1536K,conv=0,max-open=0,max-active=0,lbs=4096");
	for (uint32_t i = 0; i < 200; i++)
		set_zone(i, zd_device_zone(dev, i).capacity - 4 * KIB, ZP_COND_CLOSED);
	set_zone(170, 512 * KIB, ZP_COND_CLOSED);
	ck_assert_int_eq(pick(-1, 1 * MIB, ZD_PREFER_EMPTY), 170);
	ck_assert_int_eq(pick(-1, 1 * MIB, ZD_PREFER_PARTIAL), 170);
	ck_assert_int_eq(pick(-1, 1 * MIB + 4 * KIB, ZD_PREFER_EMPTY), ZP_ERR_NO_FREE_ZONE);
	/* Any partial zone serves min_free 0 or one block. */
	ck_assert_int_ge(pick(-1, 0, ZD_PREFER_EMPTY), 0);
	ck_assert_int_ge(pick(-1, 4 * KIB, ZD_PREFER_EMPTY), 0);
	/* Leased, it is not offered; given back, it is again. */
	lease(170, true);
	ck_assert_int_eq(pick(-1, 1 * MIB, ZD_PREFER_EMPTY), ZP_ERR_NO_FREE_ZONE);
	lease(170, false);
	ck_assert_int_eq(pick(-1, 1 * MIB, ZD_PREFER_EMPTY), 170);
	/* It fills up: nothing fits; an empty zone appears: it serves. */
	set_zone(170, zd_device_zone(dev, 170).capacity, 0);
	ck_assert_int_eq(pick(-1, 1 * MIB, ZD_PREFER_EMPTY), ZP_ERR_NO_FREE_ZONE);
	set_zone(33, 0, 0);
	ck_assert_int_eq(pick(-1, 1 * MIB, ZD_PREFER_EMPTY), 33);
	ck_assert_int_eq(pick(-1, 1536 * KIB, ZD_PREFER_EMPTY), 33);
	/* prefer partial takes a written zone when one fits. */
	ck_assert_int_ne(pick(-1, 4 * KIB, ZD_PREFER_PARTIAL), 33);
	close_dev();
}
END_TEST

START_TEST(pick_agrees_with_brute_force)
{
	unsigned seed = 777;

	open_dev("size=256M,zone-size=1M,zone-capacity=768K,conv=0,max-open=0,max-active=0,lbs=4096");
	for (int round = 0; round < 3000; round++) {
		uint32_t i = (uint32_t)rand_r(&seed) % dev->info.nr_zones;
		uint64_t want = (uint64_t)(rand_r(&seed) % 200) * 4 * KIB;
		int64_t got;
		bool any = false;

		switch (rand_r(&seed) % 4) {
		case 0:
			set_zone(i, 0, 0);
			break;
		case 1:
			set_zone(i, zd_device_zone(dev, i).capacity, 0);
			break;
		case 2:
			set_zone(i, (uint64_t)(rand_r(&seed) % 191 + 1) * 4 * KIB,
				 rand_r(&seed) % 2 ? ZP_COND_CLOSED : ZP_COND_IMP_OPEN);
			break;
		default:
			lease(i, !dev->lease_of[i]);
		}
		for (uint32_t j = 0; j < dev->info.nr_zones; j++) {
			const struct zd_zone zc = zd_device_zone(dev, j), *z = &zc;

			if (!dev->lease_of[j] && z->cond != ZP_COND_FULL &&
			    z->start + z->capacity - z->wp >= want)
				any = true;
		}
		got = pick(-1, want, rand_r(&seed) % 2 ? ZD_PREFER_EMPTY : ZD_PREFER_PARTIAL);
		if (!any) {
			ck_assert_int_eq(got, ZP_ERR_NO_FREE_ZONE);
		} else {
			struct zd_zone zc;
			const struct zd_zone *z = &zc;

			ck_assert_msg(got >= 0, "round %d: nothing for %llu", round,
				      (unsigned long long)want);
			zc = zd_device_zone(dev, (uint32_t)got);
			ck_assert_ptr_null(dev->lease_of[got]);
			ck_assert_uint_ne(z->cond, ZP_COND_FULL);
			ck_assert_uint_ge(z->start + z->capacity - z->wp, want);
		}
	}
	close_dev();
}
END_TEST

START_TEST(limits_and_named_zones)
{
	open_dev("size=16M,zone-size=1M,conv=2,max-open=2,max-active=3,lbs=4096");
	/* Three partial (active) zones: no new active zone, but they resume. */
	for (uint32_t i = 2; i < 5; i++)
		set_zone(i, 4 * KIB, ZP_COND_CLOSED);
	{
		int64_t z = pick(-1, 0, ZD_PREFER_EMPTY);

		ck_assert(z >= 2 && z < 5);
	}
	ck_assert_int_eq(pick(5, 0, ZD_PREFER_EMPTY), ZP_ERR_LIMIT);
	/* Two leases: every lease counts as open, max_open is reached. */
	lease(2, true);
	lease(3, true);
	ck_assert_int_eq(pick(-1, 0, ZD_PREFER_EMPTY), ZP_ERR_LIMIT);
	ck_assert_int_eq(pick(2, 0, ZD_PREFER_EMPTY), ZP_ERR_ZONE_LEASED);
	lease(3, false);
	set_zone(3, 0, 0);
	set_zone(4, 0, 0);
	ck_assert_int_ge(pick(-1, 0, ZD_PREFER_EMPTY), 3);
	/* Explicitly open unleased zones hold open slots; a leased one counts
	 * once, as a lease. */
	set_zone(2, 4 * KIB, ZP_COND_EXP_OPEN);
	ck_assert_uint_eq(dev->leased_exp_open, 1);
	ck_assert_int_ge(pick(-1, 0, ZD_PREFER_EMPTY), 3);
	set_zone(6, 4 * KIB, ZP_COND_EXP_OPEN);
	ck_assert_int_eq(pick(-1, 0, ZD_PREFER_PARTIAL), ZP_ERR_LIMIT);
	lease(2, false);
	ck_assert_uint_eq(dev->leased_exp_open, 0);
	ck_assert_int_eq(pick(-1, 0, ZD_PREFER_PARTIAL), ZP_ERR_LIMIT);
	set_zone(6, zd_device_zone(dev, 6).capacity, 0);
	ck_assert_int_ge(pick(-1, 0, ZD_PREFER_PARTIAL), 2);
	/* Named zones: conventional, out of range, full. */
	ck_assert_int_eq(pick(0, 0, ZD_PREFER_EMPTY), ZP_ERR_ZONE_STATE);
	ck_assert_int_eq(pick(16, 0, ZD_PREFER_EMPTY), ZP_ERR_NO_ZONE);
	ck_assert_int_eq(pick(6, 0, ZD_PREFER_EMPTY), 6);
	ck_assert_int_eq(pick(6, 4 * KIB, ZD_PREFER_EMPTY), ZP_ERR_NO_FREE_ZONE);
	close_dev();
}
END_TEST

static int64_t pick_range(int64_t zone, uint32_t count, uint64_t min_free)
{
	struct zd_alloc_req r = { .zone = zone, .count = count, .min_free = min_free };

	return zd_alloc_pick(dev, &r);
}

/* Ranges: count empty zones in a row, none leased, within the limits as
 * count writers; a named range is refused for any zone of it. */
START_TEST(ranges)
{
	open_dev("size=16M,zone-size=1M,conv=2,max-open=4,max-active=5,lbs=4096");
	ck_assert_int_eq(pick_range(-1, 3, 0), 2);
	/* A partial zone breaks the run: the next run of three starts after. */
	set_zone(3, 4 * KIB, ZP_COND_CLOSED);
	ck_assert_int_eq(pick_range(-1, 3, 0), 4);
	lease(5, true);
	ck_assert_int_eq(pick_range(-1, 3, 0), 6);
	/* Open limit: one lease and three more writers is four. */
	ck_assert_int_eq(pick_range(-1, 4, 0), ZP_ERR_LIMIT);
	/* Active limit: the partial zone 3, the lease and three new ones. */
	ck_assert_int_eq(pick_range(-1, 3, 0), 6);
	set_zone(14, 4 * KIB, ZP_COND_CLOSED);
	ck_assert_int_eq(pick_range(-1, 3, 0), ZP_ERR_LIMIT);
	set_zone(14, 0, 0);
	/* More than count zones of capacity cannot fit. */
	ck_assert_int_eq(pick_range(-1, 2, 2 * MIB + 4 * KIB), ZP_ERR_NO_FREE_ZONE);
	ck_assert_int_eq(pick_range(-1, 2, 2 * MIB), 6);
	/* Named: every zone must be free; a partial one of the range is
	 * active already, it counts once; min_free is over the range. */
	ck_assert_int_eq(pick_range(4, 2, 0), ZP_ERR_ZONE_LEASED);
	ck_assert_int_eq(pick_range(1, 2, 0), ZP_ERR_ZONE_STATE);
	ck_assert_int_eq(pick_range(15, 2, 0), ZP_ERR_NO_ZONE);
	ck_assert_int_eq(pick_range(2, 2, 0), 2);
	ck_assert_int_eq(pick_range(2, 2, 2 * MIB - 4 * KIB), 2);
	ck_assert_int_eq(pick_range(2, 2, 2 * MIB), ZP_ERR_NO_FREE_ZONE);
	/* No run long enough. */
	for (uint32_t i = 6; i < 16; i += 2)
		set_zone(i, zd_device_zone(dev, i).capacity, 0);
	ck_assert_int_eq(pick_range(-1, 2, 0), ZP_ERR_NO_FREE_ZONE);
	close_dev();
}
END_TEST

/* A device's name in systemd's fd store: no ':' (LISTEN_FDNAMES splits on
 * it), unambiguous. */
START_TEST(fd_store_names)
{
	char name[64];

	zd_device_fdname("emu0", name, sizeof(name));
	ck_assert_str_eq(name, "dev-emu0");
	zd_device_fdname("smr-1:a@b+c", name, sizeof(name));
	ck_assert_str_eq(name, "dev-smr-1%3Aa@b+c");
	zd_device_fdname("::", name, 8);
	ck_assert_str_eq(name, "dev-%3A");
}
END_TEST

static Suite *alloc_suite(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = tcase_create("alloc");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, free_index_matches_brute_force);
	tcase_add_test(tc, min_free_finds_a_zone_among_many_partial);
	tcase_add_test(tc, pick_agrees_with_brute_force);
	tcase_add_test(tc, limits_and_named_zones);
	tcase_add_test(tc, ranges);
	tcase_add_test(tc, fd_store_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(alloc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
