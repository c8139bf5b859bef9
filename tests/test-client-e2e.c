/* libzoned-client end to end: a real zonedd (tests/fixture.c) on two
 * emulated devices, driven through the public API: hello, devices, the lazy
 * zone iterator, zone operations and their errors, one client shared by
 * threads, and leases (append, read back, sync, the append stream, reset,
 * finish, release, revocation, exclusivity, limits, device.open). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>

#include "proto/proto.h"
#include "tests/fixture.h"

#define MiB (1024 * 1024ull)
#define BLOCK 4096

/* small: 600 zones of 1 MiB, 2 conventional: reports take three pages.
 * tiny: 16 zones of 4 MiB with 3 MiB capacity, 1 conventional, limits. */
#define SMALL_ZONES 600
#define TINY_ZONES 16

static struct zt_daemon z;

static void daemon_up(void)
{
	char small[400], tiny[400];
	const char *args[] = { "--emulate", small, "--emulate", tiny, NULL };

	memset(&z, 0, sizeof(z));
	snprintf(z.dir, sizeof(z.dir), "%s/zoned-client-e2e-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(z.dir));
	snprintf(z.sock, sizeof(z.sock), "%s/sock", z.dir);
	snprintf(z.state, sizeof(z.state), "%s/state", z.dir);
	snprintf(z.log, sizeof(z.log), "%s/zonedd.log", z.dir);
	snprintf(small, sizeof(small), "%s/small,id=small,size=600M,zone-size=1M,zone-capacity=1M,conv=2",
		 z.dir);
	snprintf(tiny, sizeof(tiny),
		 "%s/tiny,id=tiny,size=64M,zone-size=4M,zone-capacity=3M,conv=1,max-open=2,max-active=3",
		 z.dir);
	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
}

static void daemon_down(void)
{
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}

static zc_client *client(void)
{
	zc_client *c = NULL;

	ck_assert_int_eq(zc_connect(z.sock, &c), 0);
	return c;
}

static void *aligned_buf(size_t len)
{
	void *p = NULL;

	ck_assert_int_eq(posix_memalign(&p, BLOCK, len), 0);
	return p;
}

static void fill_pattern(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 12));
}

static struct zc_zone zone_of(zc_client *c, const char *dev, uint32_t index)
{
	struct zc_report_opts o = { .from = index, .count = 1 };
	struct zc_zone zz;
	zc_zone_iter *it;

	ck_assert_int_eq(zc_zone_iter_new(c, dev, &o, &it), 0);
	ck_assert_int_eq(zc_zone_iter_next(it, &zz), 1);
	ck_assert_uint_eq(zz.index, index);
	ck_assert_int_eq(zc_zone_iter_next(it, &zz), 0);
	zc_zone_iter_free(it);
	return zz;
}

static uint64_t stat_of(zc_client *c, const char *name)
{
	struct zc_stat st[128];
	int n = zc_daemon_stats(c, st, 128);

	ck_assert_int_gt(n, 0);
	ck_assert_int_le(n, 128);
	for (int i = 0; i < n; i++)
		if (strcmp(st[i].name, name) == 0)
			return st[i].value;
	ck_abort_msg("no counter %s", name);
	return 0;
}

/* --- Daemon and devices -------------------------------------------------- */

START_TEST(test_hello)
{
	zc_client *c = client();
	struct zc_hello h;

	ck_assert_int_eq(zc_hello(c, &h), 0);
	ck_assert_uint_eq(h.protocol, 3);
	ck_assert_str_eq(h.version, "0.1.0");
	ck_assert_int_eq(h.pid, z.pid);
	ck_assert_uint_eq(h.uid, getuid());
	ck_assert(h.admin);
	ck_assert(h.client);
	zc_close(c);
}
END_TEST

static void check_small(const struct zc_device *d)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/small", z.dir);
	ck_assert_str_eq(d->id, "small");
	ck_assert_str_eq(d->path, path);
	ck_assert_str_eq(d->backend, "emulated");
	ck_assert_str_eq(d->model, "host-managed");
	ck_assert_uint_eq(d->nr_zones, SMALL_ZONES);
	ck_assert_uint_eq(d->zone_size, MiB);
	ck_assert_uint_eq(d->capacity, SMALL_ZONES * MiB);
}

START_TEST(test_devices)
{
	zc_client *c = client();
	struct zc_device d[4];
	int small, tiny;

	ck_assert_int_eq(zc_device_list(c, NULL, 0), 2);
	memset(d, 0xa5, sizeof(d));
	ck_assert_int_eq(zc_device_list(c, d, 1), 2);
	ck_assert_uint_eq((unsigned char)d[1].id[0], 0xa5); /* max respected */
	ck_assert_int_eq(zc_device_list(c, d, 4), 2);
	small = strcmp(d[0].id, "small") == 0 ? 0 : 1;
	tiny = 1 - small;
	check_small(&d[small]);
	ck_assert_str_eq(d[tiny].id, "tiny");
	ck_assert_uint_eq(d[tiny].nr_zones, TINY_ZONES);
	ck_assert_uint_eq(d[tiny].zone_size, 4 * MiB);
	ck_assert_uint_eq(d[tiny].capacity, 64 * MiB);
	ck_assert_uint_eq(d[tiny].free_zones, TINY_ZONES - 1);
	ck_assert_uint_eq(d[tiny].leased_zones, 0);
	/* Fields only device.info fills stay zero. */
	ck_assert_uint_eq(d[tiny].max_open, 0);
	ck_assert_str_eq(d[tiny].vendor, "");
	zc_close(c);
}
END_TEST

START_TEST(test_info)
{
	zc_client *c = client();
	struct zc_device d;
	char path[400];

	ck_assert_int_eq(zc_device_info(c, "tiny", &d), 0);
	ck_assert_str_eq(d.id, "tiny");
	ck_assert_str_eq(d.backend, "emulated");
	ck_assert_str_eq(d.vendor, "zoned");
	ck_assert_str_eq(d.product, "emulated");
	ck_assert_str_eq(d.scheduler, "none");
	ck_assert_uint_eq(d.nr_zones, TINY_ZONES);
	ck_assert_uint_eq(d.zone_size, 4 * MiB);
	ck_assert_uint_eq(d.zone_capacity, 3 * MiB);
	ck_assert_uint_eq(d.capacity, 64 * MiB);
	ck_assert_uint_eq(d.logical_block_size, 4096);
	ck_assert_uint_eq(d.physical_block_size, 4096);
	ck_assert_uint_eq(d.max_open, 2);
	ck_assert_uint_eq(d.max_active, 3);
	ck_assert_uint_eq(d.nr_conventional, 1);
	ck_assert_uint_eq(d.cond_count[ZC_COND_NOT_WP], 1);
	ck_assert_uint_eq(d.cond_count[ZC_COND_EMPTY] + d.cond_count[ZC_COND_IMP_OPEN] +
				  d.cond_count[ZC_COND_EXP_OPEN] + d.cond_count[ZC_COND_CLOSED] +
				  d.cond_count[ZC_COND_FULL],
			  TINY_ZONES - 1);
	ck_assert_uint_eq(d.cond_count[ZC_COND_READONLY], 0);
	ck_assert_uint_eq(d.cond_count[ZC_COND_OFFLINE], 0);

	snprintf(path, sizeof(path), "%s/small", z.dir);
	ck_assert_int_eq(zc_device_info(c, path, &d), 0);
	check_small(&d);
	ck_assert_uint_eq(d.max_open, 14); /* the emulator's default */

	ck_assert_int_eq(zc_device_info(c, "nodev", &d), -ENODEV);
	ck_assert_str_eq(zc_last_error(c), "no such device 'nodev'");
	zc_close(c);
}
END_TEST

/* --- Zone report iterator ------------------------------------------------ */

START_TEST(test_iter_all_lazy)
{
	zc_client *c = client();
	struct zc_zone zz;
	zc_zone_iter *it;
	uint64_t r0, r1, r2, r3, r4;
	uint32_t n = 0;

	/* Each stats call counts itself once. Pages come one request at a
	 * time, when the previous page is used up: the daemon has runs, so
	 * the 600 zones are one page. */
	r0 = stat_of(c, "requests");
	ck_assert_int_eq(zc_zone_iter_new(c, "small", NULL, &it), 0);
	r1 = stat_of(c, "requests");
	ck_assert_uint_eq(r1 - r0, 1);
	ck_assert_int_eq(zc_zone_iter_next(it, &zz), 1);
	n++;
	r2 = stat_of(c, "requests");
	ck_assert_uint_eq(r2 - r1, 2);
	ck_assert_uint_eq(zz.index, 0);
	ck_assert_int_eq(zz.type, ZC_TYPE_CONV);
	ck_assert_int_eq(zz.cond, ZC_COND_NOT_WP);
	for (; n < 256; n++) {
		ck_assert_int_eq(zc_zone_iter_next(it, &zz), 1);
		ck_assert_uint_eq(zz.index, n);
	}
	r3 = stat_of(c, "requests");
	ck_assert_uint_eq(r3 - r2, 1);
	ck_assert_int_eq(zc_zone_iter_next(it, &zz), 1);
	ck_assert_uint_eq(zz.index, 256);
	n++;
	r4 = stat_of(c, "requests");
	ck_assert_uint_eq(r4 - r3, 1);
	while (zc_zone_iter_next(it, &zz) == 1) {
		ck_assert_uint_eq(zz.index, n);
		ck_assert_uint_eq(zz.start, n * MiB);
		ck_assert_uint_eq(zz.len, MiB);
		ck_assert_uint_eq(zz.capacity, MiB);
		ck_assert_int_eq(zz.type, ZC_TYPE_SWR);
		n++;
	}
	ck_assert_uint_eq(n, SMALL_ZONES);
	ck_assert_int_eq(zc_zone_iter_next(it, &zz), 0);
	zc_zone_iter_free(it);
	zc_close(c);
}
END_TEST

/* Zones [from, from + count) as zone.report's objects say (no format: what
 * a library before runs asks for), over a connection of its own. */
static int report_objects(const char *dev, uint32_t from, uint32_t count, const char *cond,
			  struct zc_zone *out, int max)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static char buf[ZP_MSG_MAX + 1];
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), n = 0;
	uint64_t left = count;

	ck_assert_uint_lt(strlen(z.sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, z.sock, strlen(z.sock) + 1);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (;;) {
		struct json_object *o, *res, *arr, *next;
		ssize_t len;

		snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":"
			 "{\"device\":\"%s\",\"from\":%u,\"count\":%llu%s%s%s},\"id\":1}", dev, from,
			 (unsigned long long)left, cond ? ",\"cond\":\"" : "", cond ? cond : "",
			 cond ? "\"" : "");
		ck_assert_int_eq(zp_send(s, buf, strlen(buf), -1, 0), 0);
		len = zp_recv(s, buf, sizeof(buf), NULL, 0);
		ck_assert_int_gt(len, 0);
		o = zp_parse(buf, (size_t)len);
		ck_assert_ptr_nonnull(o);
		ck_assert(json_object_object_get_ex(o, "result", &res));
		ck_assert(json_object_object_get_ex(res, "zones", &arr));
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *zo = json_object_array_get_idx(arr, i), *v;
			struct zc_zone *zz = &out[n++];

			ck_assert_int_le(n, max);
			json_object_object_get_ex(zo, "index", &v);
			zz->index = (uint32_t)json_object_get_int64(v);
			json_object_object_get_ex(zo, "start", &v);
			zz->start = json_object_get_uint64(v);
			json_object_object_get_ex(zo, "len", &v);
			zz->len = json_object_get_uint64(v);
			json_object_object_get_ex(zo, "capacity", &v);
			zz->capacity = json_object_get_uint64(v);
			json_object_object_get_ex(zo, "wp", &v);
			zz->wp = json_object_get_uint64(v);
			json_object_object_get_ex(zo, "type", &v);
			zz->type = (enum zc_type)zp_type_from_name(json_object_get_string(v));
			json_object_object_get_ex(zo, "cond", &v);
			zz->cond = (enum zc_cond)zp_cond_from_name(json_object_get_string(v));
		}
		json_object_object_get_ex(res, "next", &next);
		if (!next) {
			json_object_put(o);
			break;
		}
		left -= (uint64_t)json_object_get_int64(next) - from;
		from = (uint32_t)json_object_get_int64(next);
		json_object_put(o);
	}
	close(s);
	return n;
}

/* The library's runs and the objects say the same of every zone, whatever
 * the zones hold: written to different depths (each its own run),
 * finished, explicitly open; over the whole device, a range, and filters. */
START_TEST(test_iter_runs_match_objects)
{
	static struct zc_zone a[SMALL_ZONES], b[SMALL_ZONES];
	static const struct { uint32_t from, count; const char *cond; } q[] = {
		{ 0, SMALL_ZONES, NULL }, { 3, 250, NULL }, { 0, SMALL_ZONES, "closed" },
		{ 0, SMALL_ZONES, "empty" },
	};
	unsigned char *buf = aligned_buf(64 * BLOCK);
	zc_client *c = client();

	fill_pattern(buf, 64 * BLOCK, 3);
	/* Within the device's 14 active zones: 10 written, 2 opened. */
	for (uint32_t i = 0; i < 10; i++) {
		struct zc_lease_opts o;
		zc_lease *l;

		zc_lease_opts_init(&o);
		o.device = "small";
		o.zone = 10 + 3 * i;
		ck_assert_int_eq(zc_lease_acquire(c, &o, &l), 0);
		ck_assert_int_eq(zc_lease_append(l, buf, (i % 16 + 1) * BLOCK), 0);
		ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	}
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_FINISH, 200, 5, false, NULL, 0), 5);
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_OPEN, 300, 2, false, NULL, 0), 2);
	for (size_t k = 0; k < sizeof(q) / sizeof(q[0]); k++) {
		struct zc_report_opts o = { .from = q[k].from, .count = q[k].count };
		struct zc_zone zz;
		zc_zone_iter *it;
		int n = 0, m, r;

		if (q[k].cond)
			o.cond_mask = 1u << zp_cond_from_name(q[k].cond);
		ck_assert_int_eq(zc_zone_iter_new(c, "small", &o, &it), 0);
		while ((r = zc_zone_iter_next(it, &zz)) == 1) {
			ck_assert_int_lt(n, SMALL_ZONES);
			a[n++] = zz;
		}
		ck_assert_int_eq(r, 0);
		zc_zone_iter_free(it);
		m = report_objects("small", q[k].from, q[k].count, q[k].cond, b, SMALL_ZONES);
		ck_assert_int_eq(n, m);
		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++) {
			ck_assert_uint_eq(a[i].index, b[i].index);
			ck_assert_uint_eq(a[i].start, b[i].start);
			ck_assert_uint_eq(a[i].len, b[i].len);
			ck_assert_uint_eq(a[i].capacity, b[i].capacity);
			ck_assert_uint_eq(a[i].wp, b[i].wp);
			ck_assert_int_eq(a[i].type, b[i].type);
			ck_assert_int_eq(a[i].cond, b[i].cond);
		}
		if (k == 2)
			ck_assert_int_eq(n, 10); /* the written zones, closed once released */
	}
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_RESET, 10, 28, false, NULL, 0), 28);
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_RESET, 200, 5, false, NULL, 0), 5);
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_RESET, 300, 2, false, NULL, 0), 2);
	free(buf);
	zc_close(c);
}
END_TEST

/* Collects the indexes a report yields. */
static int collect(zc_client *c, const char *dev, const struct zc_report_opts *o, uint32_t *idx,
		   int max)
{
	struct zc_zone zz;
	zc_zone_iter *it;
	int n = 0, r;

	r = zc_zone_iter_new(c, dev, o, &it);
	if (r < 0)
		return r;
	while ((r = zc_zone_iter_next(it, &zz)) == 1) {
		ck_assert_int_lt(n, max);
		idx[n++] = zz.index;
	}
	zc_zone_iter_free(it);
	return r < 0 ? r : n;
}

START_TEST(test_iter_filters)
{
	zc_client *c = client();
	uint32_t idx[SMALL_ZONES];
	struct zc_report_opts o;
	int n;


	/* Types. */
	o = (struct zc_report_opts){ .type_mask = 1u << ZC_TYPE_CONV };
	ck_assert_int_eq(collect(c, "small", &o, idx, SMALL_ZONES), 2);
	ck_assert_uint_eq(idx[0], 0);
	ck_assert_uint_eq(idx[1], 1);
	o = (struct zc_report_opts){ .type_mask = 1u << ZC_TYPE_SWP };
	ck_assert_int_eq(collect(c, "small", &o, idx, SMALL_ZONES), 0);
	/* A range: from 250, 300 zones, over a page boundary. */
	o = (struct zc_report_opts){ .from = 250, .count = 300 };
	ck_assert_int_eq(collect(c, "small", &o, idx, SMALL_ZONES), 300);
	for (int i = 0; i < 300; i++)
		ck_assert_uint_eq(idx[i], 250 + i);
	/* Filters with a range that starts on conventional zones. */
	o = (struct zc_report_opts){ .from = 0, .count = 10,
				     .cond_mask = 1u << ZC_COND_EMPTY | 1u << ZC_COND_FULL };
	n = collect(c, "small", &o, idx, SMALL_ZONES);
	ck_assert_int_eq(n, 8); /* nothing touched zones 2..9 */
	for (int i = 0; i < n; i++)
		ck_assert_uint_eq(idx[i], 2 + i);
	/* Filters over the whole device with a condition nobody has. */
	o = (struct zc_report_opts){ .cond_mask = 1u << ZC_COND_OFFLINE | 1u << ZC_COND_READONLY };
	ck_assert_int_eq(collect(c, "small", &o, idx, SMALL_ZONES), 0);
	/* The tail. */
	o = (struct zc_report_opts){ .from = 598 };
	ck_assert_int_eq(collect(c, "small", &o, idx, SMALL_ZONES), 2);
	ck_assert_uint_eq(idx[0], 598);
	ck_assert_uint_eq(idx[1], 599);
	/* Errors come from the first page. */
	o = (struct zc_report_opts){ .from = SMALL_ZONES };
	ck_assert_int_eq(collect(c, "small", &o, idx, SMALL_ZONES), -ERANGE);
	ck_assert_int_eq(collect(c, "nodev", NULL, idx, SMALL_ZONES), -ENODEV);
	zc_close(c);
}
END_TEST

/* --- Zone operations ------------------------------------------------------ */

START_TEST(test_zone_ops)
{
	zc_client *c = client();
	struct zc_zone zs[4];
	uint32_t idx[16];
	struct zc_report_opts o = { .cond_mask = 1u << ZC_COND_EXP_OPEN };

	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_OPEN, 500, 1, false, zs, 4), 1);
	ck_assert_uint_eq(zs[0].index, 500);
	ck_assert_uint_eq(zs[0].start, 500 * MiB);
	ck_assert_uint_eq(zs[0].wp, 500 * MiB);
	ck_assert_int_eq(zs[0].cond, ZC_COND_EXP_OPEN);
	ck_assert_int_eq(collect(c, "small", &o, idx, 16), 1);
	ck_assert_uint_eq(idx[0], 500);
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_CLOSE, 500, 1, false, zs, 4), 1);
	ck_assert_int_eq(zs[0].cond, ZC_COND_EMPTY);
	/* A range; zones NULL only counts. */
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_FINISH, 501, 3, false, NULL, 0), 3);
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_RESET, 501, 3, false, zs, 2), 3);
	ck_assert_uint_eq(zs[0].index, 501);
	ck_assert_uint_eq(zs[1].index, 502);
	ck_assert_int_eq(zs[1].cond, ZC_COND_EMPTY);
	ck_assert_uint_eq(zone_of(c, "small", 503).wp, 503 * MiB);
	ck_assert_int_eq(zone_of(c, "small", 503).cond, ZC_COND_EMPTY);
	/* Errors, each with the daemon's errno and message. */
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_RESET, 0, 1, false, NULL, 0), -EPERM);
	ck_assert_str_ne(zc_last_error(c), "");
	ck_assert_int_eq(zc_zone_op(c, "small", ZC_ZONE_OPEN, SMALL_ZONES, 1, false, NULL, 0), -ERANGE);
	ck_assert_str_eq(zc_last_error(c), "no zone 600 on small (600 zones)");
	ck_assert_int_eq(zc_zone_op(c, "nodev", ZC_ZONE_OPEN, 3, 1, false, NULL, 0), -ENODEV);
	ck_assert_int_eq(zc_zone_op(c, "small", (enum zc_zone_op)9, 3, 1, false, NULL, 0), -EINVAL);
	/* tiny opens two zones at most (-32006, EUSERS). */
	ck_assert_int_eq(zc_zone_op(c, "tiny", ZC_ZONE_OPEN, 10, 2, false, NULL, 0), 2);
	ck_assert_int_eq(zc_zone_op(c, "tiny", ZC_ZONE_OPEN, 12, 1, false, NULL, 0), -EUSERS);
	ck_assert_int_eq(zc_zone_op(c, "tiny", ZC_ZONE_CLOSE, 10, 2, false, NULL, 0), 2);
	zc_close(c);
}
END_TEST

/* --- One client, several threads ---------------------------------------- */

#define NTHREADS 4
static zc_client *shared;

static void *worker(void *arg)
{
	uintptr_t id = (uintptr_t)arg, bad = 0;

	for (int i = 0; i < 40; i++) {
		struct zc_hello h;
		struct zc_device d;
		struct zc_report_opts o = { .from = (uint32_t)(id * 100 + (uintptr_t)i), .count = 50 };
		struct zc_zone zz;
		zc_zone_iter *it;
		uint32_t want = o.from;

		switch ((id + (uintptr_t)i) % 3) {
		case 0:
			if (zc_hello(shared, &h) != 0 || h.pid != z.pid)
				bad++;
			break;
		case 1:
			if (zc_device_info(shared, id & 1 ? "tiny" : "small", &d) != 0 ||
			    d.nr_zones != (id & 1 ? TINY_ZONES : SMALL_ZONES))
				bad++;
			break;
		default:
			if (zc_zone_iter_new(shared, "small", &o, &it) != 0) {
				bad++;
				break;
			}
			while (zc_zone_iter_next(it, &zz) == 1)
				if (zz.index != want++ || zz.start != zz.index * MiB)
					bad++;
			if (want != o.from + 50)
				bad++;
			zc_zone_iter_free(it);
		}
		/* An error in one thread is seen in that thread only. */
		if (i % 10 == 0) {
			if (zc_device_info(shared, "nodev", &d) != -ENODEV ||
			    strcmp(zc_last_error(shared), "no such device 'nodev'") != 0)
				bad++;
		}
	}
	return (void *)bad;
}

START_TEST(test_threads)
{
	pthread_t t[NTHREADS];
	struct zc_hello h;

	shared = client();
	ck_assert_int_eq(zc_hello(shared, &h), 0);
	for (uintptr_t i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker, (void *)i), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *bad;

		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_ptr_null(bad);
	}
	/* This thread made no failed call. */
	ck_assert_str_eq(zc_last_error(shared), "");
	zc_close(shared);
}
END_TEST

/* --- Leases --------------------------------------------------------------- */

static zc_lease *lease_on(zc_client *c, const char *dev, int64_t zone, bool buffered)
{
	struct zc_lease_opts o;
	zc_lease *l = NULL;

	zc_lease_opts_init(&o);
	o.device = dev;
	o.zone = zone;
	o.buffered = buffered;
	o.label = "e2e";
	ck_assert_int_eq(zc_lease_acquire(c, &o, &l), 0);
	return l;
}

START_TEST(test_lease_append_read)
{
	zc_client *c = client();
	unsigned char *buf = aligned_buf(8 * BLOCK), *back = aligned_buf(8 * BLOCK);
	struct iovec iov[2];
	struct zc_zone zz;
	zc_lease *l = lease_on(c, "small", 100, false);
	uint64_t start = 100 * MiB;
	int fl;

	ck_assert_str_eq(zc_lease_device(l), "small");
	ck_assert_uint_eq(zc_lease_zone(l), 100);
	ck_assert_uint_eq(zc_lease_start(l), start);
	ck_assert_uint_eq(zc_lease_len(l), MiB);
	ck_assert_uint_eq(zc_lease_capacity(l), MiB);
	ck_assert_uint_eq(zc_lease_wp(l), start);
	ck_assert_uint_eq(zc_lease_block_size(l), BLOCK);
	ck_assert_str_eq(zc_lease_label(l), "e2e");
	ck_assert_uint_gt(zc_lease_id(l), 0);
	/* The fd is what the lease says it is. */
	fl = fcntl(zc_lease_fd(l), F_GETFL);
	ck_assert_int_ge(fl, 0);
	ck_assert_int_eq((fl & O_ACCMODE), O_RDWR);
	ck_assert_int_eq(!!(fl & O_DIRECT), zc_lease_direct(l));
	ck_assert(fcntl(zc_lease_fd(l), F_GETFD) & FD_CLOEXEC);

	fill_pattern(buf, 8 * BLOCK, 1);
	ck_assert_int_eq(zc_lease_append(l, buf, 3 * BLOCK), 0);
	ck_assert_uint_eq(zc_lease_wp(l), start + 3 * BLOCK);
	iov[0] = (struct iovec){ buf + 3 * BLOCK, BLOCK };
	iov[1] = (struct iovec){ buf + 4 * BLOCK, 2 * BLOCK };
	ck_assert_int_eq(zc_lease_appendv(l, iov, 2), 0);
	ck_assert_uint_eq(zc_lease_wp(l), start + 6 * BLOCK);
	/* Not synced yet: the daemon does not know. Then it does. */
	ck_assert_int_eq(zc_lease_sync(l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), start + 6 * BLOCK);
	zz = zone_of(c, "small", 100);
	ck_assert_uint_eq(zz.wp, start + 6 * BLOCK);
	ck_assert_int_eq(zz.cond, ZC_COND_IMP_OPEN);

	/* Read back byte for byte, whole and in pieces. */
	memset(back, 0, 8 * BLOCK);
	ck_assert_int_eq(zc_lease_pread(l, back, 6 * BLOCK, 0), 6 * BLOCK);
	ck_assert_int_eq(memcmp(back, buf, 6 * BLOCK), 0);
	memset(back, 0, 8 * BLOCK);
	iov[0] = (struct iovec){ back, BLOCK };
	iov[1] = (struct iovec){ back + BLOCK, BLOCK };
	ck_assert_int_eq(zc_lease_preadv(l, iov, 2, 2 * BLOCK), 2 * BLOCK);
	ck_assert_int_eq(memcmp(back, buf + 2 * BLOCK, 2 * BLOCK), 0);
	/* Reads stop at the zone's end. */
	ck_assert_int_eq(zc_lease_pread(l, back, 8 * BLOCK, MiB - 2 * BLOCK), 2 * BLOCK);
	ck_assert_int_eq(zc_lease_pread(l, back, BLOCK, MiB), 0);

	/* The checks made before any syscall, on a real lease. */
	ck_assert_int_eq(zc_lease_append(l, buf, 100), -EINVAL);
	if (zc_lease_direct(l))
		ck_assert_int_eq(zc_lease_append(l, buf + 1, BLOCK), -EINVAL);
	ck_assert_int_eq(zc_lease_append(l, buf, MiB), -ENOSPC);
	ck_assert_uint_eq(zc_lease_wp(l), start + 6 * BLOCK);

	/* Release keeps the data; the zone is free again. */
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	zz = zone_of(c, "small", 100);
	ck_assert_uint_eq(zz.wp, start + 6 * BLOCK);
	free(buf);
	free(back);
	zc_close(c);
}
END_TEST

/* The device's read-only fd sees what a lease wrote. */
START_TEST(test_device_open)
{
	zc_client *c = client();
	unsigned char *buf = aligned_buf(2 * BLOCK), *back = aligned_buf(2 * BLOCK);
	zc_lease *l = lease_on(c, "small", 101, true);
	uint64_t off = 0;
	int fd, fl;

	fill_pattern(buf, 2 * BLOCK, 2);
	ck_assert_int_eq(zc_lease_append(l, buf, 2 * BLOCK), 0);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	fd = zc_zone_open(c, "small", 101, &off);
	ck_assert_int_ge(fd, 0);
	fl = fcntl(fd, F_GETFL);
	ck_assert_int_eq(fl & O_ACCMODE, O_RDONLY);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert_int_eq(pread(fd, back, 2 * BLOCK, (off_t)off), 2 * BLOCK);
	ck_assert_int_eq(memcmp(back, buf, 2 * BLOCK), 0);
	ck_assert_int_eq(pwrite(fd, buf, BLOCK, (off_t)off + 2 * BLOCK), -1);
	ck_assert_int_eq(errno, EBADF);
	close(fd);
	/* The whole device where the backend has one fd for it, else a
	 * clear refusal. */
	fd = zc_device_open(c, "small");
	if (fd >= 0) {
		ck_assert_int_eq(pread(fd, back, 2 * BLOCK, 101 * MiB), 2 * BLOCK);
		ck_assert_int_eq(memcmp(back, buf, 2 * BLOCK), 0);
		close(fd);
	} else {
		ck_assert_int_eq(fd, -EINVAL);
	}
	ck_assert_int_eq(zc_zone_open(c, "small", 1u << 30, NULL), -ERANGE);
	ck_assert_int_eq(zc_device_open(c, "nodev"), -ENODEV);
	free(buf);
	free(back);
	zc_close(c);
}
END_TEST

START_TEST(test_lease_fopen)
{
	zc_client *c = client();
	zc_lease *l = lease_on(c, "small", 102, false);
	uint64_t start = 102 * MiB;
	size_t total = 0, padded;
	unsigned char *want = malloc(300000), *back = aligned_buf(80 * BLOCK);
	FILE *f;

	/* A block first through append, then the stream continues at wp. */
	fill_pattern(back, BLOCK, 9);
	ck_assert_int_eq(zc_lease_append(l, back, BLOCK), 0);
	fill_pattern(want, 300000, 3);
	f = zc_lease_fopen(l, "w");
	ck_assert_ptr_nonnull(f);
	/* Odd sizes across the 64 KiB buffer boundary. */
	for (size_t step = 1; total < 200000; step = step * 3 + 1) {
		size_t k = step % 7001 + 1;

		if (k > 200000 - total)
			k = 200000 - total;
		ck_assert_uint_eq(fwrite(want + total, 1, k, f), k);
		total += k;
	}
	ck_assert_int_eq(fputc('!', f), '!');
	want[total++] = '!';
	ck_assert_int_eq(fprintf(f, "%s", "tail"), 4);
	memcpy(want + total, "tail", 4);
	total += 4;
	ck_assert_int_eq(fclose(f), 0);
	/* Padded to a block, appended and synced by fclose. */
	padded = (total + BLOCK - 1) / BLOCK * BLOCK;
	ck_assert_uint_eq(zc_lease_wp(l), start + BLOCK + padded);
	ck_assert_uint_eq(zone_of(c, "small", 102).wp, start + BLOCK + padded);
	for (size_t off = 0; off < padded; off += 64 * BLOCK) {
		size_t k = padded - off < 64 * BLOCK ? padded - off : 64 * BLOCK;

		ck_assert_int_eq(zc_lease_pread(l, back, k, BLOCK + off), (ssize_t)k);
		for (size_t i = 0; i < k; i++) {
			unsigned char exp = off + i < total ? want[off + i] : 0;

			ck_assert_msg(back[i] == exp, "byte %zu: %u != %u", off + i, back[i], exp);
		}
	}
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	free(want);
	free(back);
	zc_close(c);
}
END_TEST

START_TEST(test_lease_reset_finish_release)
{
	zc_client *c = client();
	unsigned char *buf = aligned_buf(BLOCK);
	zc_lease *l = lease_on(c, "small", 103, false);
	uint64_t start = 103 * MiB;
	struct zc_zone zz;

	fill_pattern(buf, BLOCK, 4);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), 0);
	ck_assert_int_eq(zc_lease_reset(l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), start);
	ck_assert_int_eq(zone_of(c, "small", 103).cond, ZC_COND_EMPTY);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), 0);
	ck_assert_int_eq(zc_lease_finish(l), 0);
	ck_assert_int_eq(zone_of(c, "small", 103).cond, ZC_COND_FULL);
	/* Full: nothing more fits. */
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), -ENOSPC);
	ck_assert_int_eq(zc_lease_reset(l), 0);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), 0);
	/* Release then reset: the zone goes back empty. */
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	zz = zone_of(c, "small", 103);
	ck_assert_int_eq(zz.cond, ZC_COND_EMPTY);
	ck_assert_uint_eq(zz.wp, start);
	/* Release then finish. */
	l = lease_on(c, "small", 103, false);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), 0);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_FINISH), 0);
	ck_assert_int_eq(zone_of(c, "small", 103).cond, ZC_COND_FULL);
	/* A lease on a full zone has no room. */
	l = lease_on(c, "small", 103, false);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), -ENOSPC);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	free(buf);
	zc_close(c);
}
END_TEST

START_TEST(test_lease_exclusive)
{
	zc_client *a = client(), *b = client();
	struct zc_lease_info li[8];
	struct zc_lease_opts o;
	zc_lease *l = lease_on(a, "small", 104, false), *l2 = (zc_lease *)1;
	int n;

	zc_lease_opts_init(&o);
	o.device = "small";
	o.zone = 104;
	ck_assert_int_eq(zc_lease_acquire(b, &o, &l2), -EBUSY);
	ck_assert_ptr_null(l2);
	ck_assert_str_ne(zc_last_error(b), "");
	/* The zone is leased: admin ops refuse it without force. */
	ck_assert_int_eq(zc_zone_op(b, "small", ZC_ZONE_RESET, 104, 1, false, NULL, 0), -EBUSY);
	/* Lists: a sees its lease, b none of its own, all of them with all. */
	n = zc_lease_list(a, false, li, 8);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(li[0].id, zc_lease_id(l));
	ck_assert_str_eq(li[0].device, "small");
	ck_assert_uint_eq(li[0].zone, 104);
	ck_assert_uint_eq(li[0].wp, 104 * MiB);
	ck_assert_str_eq(li[0].label, "e2e");
	ck_assert_int_eq(li[0].pid, getpid());
	ck_assert_uint_eq(li[0].uid, getuid());
	ck_assert_int_eq(zc_lease_list(b, false, li, 8), 0);
	ck_assert_int_eq(zc_lease_list(b, true, li, 8), 1);
	ck_assert_uint_eq(li[0].zone, 104);
	/* Another zone for b; any zone for b is never 104. */
	l2 = lease_on(b, "small", -1, false);
	ck_assert_uint_ne(zc_lease_zone(l2), 104);
	ck_assert_int_eq(zc_lease_list(b, true, NULL, 0), 2);
	ck_assert_int_eq(zc_lease_release(l2, ZC_RELEASE_KEEP), 0);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	/* Free again. */
	l = lease_on(b, "small", 104, false);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	zc_close(a);
	zc_close(b);
}
END_TEST

/* A lease revoked by a forced zone op is stale for its holder. */
START_TEST(test_lease_revoked)
{
	zc_client *a = client(), *admin = client();
	unsigned char *buf = aligned_buf(BLOCK);
	zc_lease *l = lease_on(a, "small", 105, false);

	ck_assert_int_eq(zc_zone_op(admin, "small", ZC_ZONE_RESET, 105, 1, true, NULL, 0), 1);
	ck_assert_int_eq(zc_lease_sync(l), -ESTALE);
	ck_assert_str_ne(zc_last_error(a), "");
	/* Known stale now: refused locally, before any syscall. */
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), -ESTALE);
	ck_assert_int_eq(zc_lease_pread(l, buf, BLOCK, 0), -ESTALE);
	ck_assert_int_eq(zc_lease_reset(l), -ESTALE);
	ck_assert(zc_lease_fopen(l, "w") == NULL && errno == ESTALE);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ESTALE);
	ck_assert_int_eq(zc_lease_list(a, false, NULL, 0), 0);
	free(buf);
	zc_close(a);
	zc_close(admin);
}
END_TEST

/* A token the daemon no longer knows gets -32007 (ESTALE): the stale
 * token is replayed after release on the raw protocol, since the library
 * frees a released lease. */
static int raw_call(int s, const char *req, char *reply, size_t cap, int *fd)
{
	struct msghdr m = { 0 };
	struct iovec iov = { (void *)req, strlen(req) };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} ctl;
	ssize_t n;

	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (sendmsg(s, &m, MSG_NOSIGNAL) < 0)
		return -errno;
	iov = (struct iovec){ reply, cap - 1 };
	m.msg_control = ctl.b;
	m.msg_controllen = sizeof(ctl.b);
	n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	reply[n] = '\0';
	*fd = -1;
	if (m.msg_controllen && CMSG_FIRSTHDR(&m)->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	return 0;
}

START_TEST(test_stale_token)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char reply[4096], req[512];
	unsigned long long id, token;
	const char *p;
	int s, fd;

	ck_assert_uint_lt(strlen(z.sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, z.sock, strlen(z.sock) + 1);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(raw_call(s, "{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":"
				     "{\"device\":\"small\",\"zone\":106,\"direct\":false},\"id\":1}",
				  reply, sizeof(reply), &fd), 0);
	ck_assert_int_ge(fd, 0);
	close(fd);
	p = strstr(reply, "\"id\":");
	ck_assert_ptr_nonnull(p);
	id = strtoull(p + 5, NULL, 10);
	p = strstr(reply, "\"token\":");
	ck_assert_ptr_nonnull(p);
	token = strtoull(p + 8, NULL, 10);
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.release\",\"params\":"
		 "{\"id\":%llu,\"token\":%llu},\"id\":2}", id, token);
	ck_assert_int_eq(raw_call(s, req, reply, sizeof(reply), &fd), 0);
	ck_assert_ptr_nonnull(strstr(reply, "\"result\""));
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\",\"params\":"
		 "{\"id\":%llu,\"token\":%llu},\"id\":3}", id, token);
	ck_assert_int_eq(raw_call(s, req, reply, sizeof(reply), &fd), 0);
	ck_assert_ptr_nonnull(strstr(reply, "\"code\":-32007"));
	close(s);
}
END_TEST

/* Every leased zone counts as open, and tiny opens two zones at most: the
 * third lease fails with the limit (EUSERS), or times out waiting
 * (ETIMEDOUT). */
START_TEST(test_lease_limits)
{
	zc_client *c = client();
	struct zc_lease_opts o;
	struct timespec t0, t1;
	zc_lease *l[3] = { 0 };
	double ms;

	for (int i = 0; i < 2; i++)
		l[i] = lease_on(c, "tiny", -1, false);
	zc_lease_opts_init(&o);
	o.device = "tiny";
	ck_assert_int_eq(zc_lease_acquire(c, &o, &l[2]), -EUSERS);
	ck_assert_ptr_null(l[2]);
	o.wait_ms = 300;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(zc_lease_acquire(c, &o, &l[2]), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	ck_assert_msg(ms >= 290 && ms < 5000, "waited %.0f ms", ms);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(zc_lease_release(l[i], ZC_RELEASE_RESET), 0);
	/* Room again. */
	o.wait_ms = 0;
	ck_assert_int_eq(zc_lease_acquire(c, &o, &l[2]), 0);
	ck_assert_int_eq(zc_lease_release(l[2], ZC_RELEASE_RESET), 0);
	zc_close(c);
}
END_TEST

/* Closing the client ends its leases in the daemon; the lease objects
 * left over fail cleanly and still free. */
START_TEST(test_close_with_lease)
{
	zc_client *a = client(), *b = client();
	unsigned char *buf = aligned_buf(BLOCK);
	zc_lease *l = lease_on(a, "small", 107, false);
	zc_lease *l2;

	ck_assert_int_eq(zc_lease_list(b, true, NULL, 0), 1);
	zc_close(a);
	ck_assert_int_eq(zc_lease_sync(l), -ENOTCONN);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), -ENOTCONN);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ENOTCONN);
	/* The daemon saw the connection go; the zone is free. Give it a
	 * moment: the close is asynchronous to us. */
	for (int i = 0; i < 100 && zc_lease_list(b, true, NULL, 0) != 0; i++)
		usleep(10000);
	ck_assert_int_eq(zc_lease_list(b, true, NULL, 0), 0);
	l2 = lease_on(b, "small", 107, false);
	ck_assert_int_eq(zc_lease_release(l2, ZC_RELEASE_KEEP), 0);
	free(buf);
	zc_close(b);
}
END_TEST

/* zc_close() ends the leases in the daemon, which may give the zone to
 * someone else at once: a lease left over must not write. Every data call
 * fails before any syscall, and the fd the application borrowed no longer
 * reaches the device. */
START_TEST(test_close_fences_lease)
{
	zc_client *a = client(), *b = client();
	unsigned char *buf = aligned_buf(2 * BLOCK);
	zc_lease *l = lease_on(a, "small", 108, false);
	struct zc_zone zz;
	int fd = zc_lease_fd(l);

	fill_pattern(buf, 2 * BLOCK, 8);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), 0);
	zc_close(a);
	ck_assert_int_eq(zc_lease_append(l, buf, BLOCK), -ENOTCONN);
	ck_assert_int_eq(zc_lease_appendv(l, &(struct iovec){ buf, BLOCK }, 1), -ENOTCONN);
	ck_assert_int_eq(zc_lease_pread(l, buf, BLOCK, 0), -ENOTCONN);
	ck_assert(zc_lease_fopen(l, "w") == NULL && errno == ENOTCONN);
	ck_assert_uint_eq(zc_lease_wp(l), zc_lease_start(l) + BLOCK);
	/* The borrowed number stays taken, but writes go nowhere. */
	ck_assert_int_eq(zc_lease_fd(l), fd);
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
	ck_assert_int_eq(pwrite(fd, buf, BLOCK, (off_t)zc_lease_wp(l)), -1);
	ck_assert_int_eq(write(fd, buf, BLOCK), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(zc_lease_sync(l), -ENOTCONN);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ENOTCONN);
	for (int i = 0; i < 100 && zc_lease_list(b, true, NULL, 0) != 0; i++)
		usleep(10000);
	zz = zone_of(b, "small", 108);
	ck_assert_uint_eq(zz.wp, zz.start + BLOCK);
	ck_assert_int_eq(zc_zone_op(b, "small", ZC_ZONE_RESET, 108, 1, false, NULL, 0), 1);
	free(buf);
	zc_close(b);
}
END_TEST

/* A local validation error says what was wrong, like a daemon error. */
START_TEST(test_local_errors_named)
{
	zc_client *c = client();
	unsigned char *buf = aligned_buf(2 * BLOCK);
	zc_lease *l = lease_on(c, "small", 109, false);
	struct zc_lease_opts o;
	zc_zone_iter *it;

	ck_assert_int_eq(zc_lease_append(l, buf, 13), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "not a multiple of the block size"));
	ck_assert_int_eq(zc_lease_append(l, buf, 2 * MiB), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "do not fit"));
	ck_assert_int_eq(zc_lease_appendv(l, NULL, 1), -EINVAL);
	ck_assert_str_ne(zc_last_error(c), "");
	ck_assert_int_eq(zc_lease_pread(l, buf, BLOCK, 2 * MiB), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "past the zone's capacity"));
	ck_assert_int_eq(zc_lease_release(l, (enum zc_release_then)7), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "then"));
	zc_lease_opts_init(&o);
	o.zone = -5;
	ck_assert_int_eq(zc_lease_acquire(c, &o, &l), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "zone -5"));
	ck_assert_int_eq(zc_zone_iter_new(c, "small", &(struct zc_report_opts){ .cond_mask = 1u << 20 },
					  &it), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "cond_mask"));
	ck_assert_int_eq(zc_zone_op(c, "small", (enum zc_zone_op)9, 0, 1, false, NULL, 0), -EINVAL);
	ck_assert_ptr_nonnull(strstr(zc_last_error(c), "unknown operation"));
	ck_assert_int_eq(zc_device_info(c, NULL, NULL), -EINVAL);
	ck_assert_str_ne(zc_last_error(c), "");
	free(buf);
	zc_close(c);
}
END_TEST

/* A read stops at the zone's capacity, not its length: tiny has 4 MiB
 * zones with 3 MiB capacity. */
START_TEST(test_pread_capacity)
{
	zc_client *c = client();
	unsigned char *buf = aligned_buf(2 * MiB);
	zc_lease *l = lease_on(c, "tiny", 5, false);

	ck_assert_uint_eq(zc_lease_capacity(l), 3 * MiB);
	ck_assert_int_eq(zc_lease_pread(l, buf, BLOCK, 3 * MiB + 512 * 1024), -EINVAL);
	ck_assert_int_eq(zc_lease_pread(l, buf, BLOCK, 3 * MiB), 0);
	ck_assert_int_eq(zc_lease_pread(l, buf, 2 * MiB, 2 * MiB), (ssize_t)MiB);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), 0);
	free(buf);
	zc_close(c);
}
END_TEST

/* The daemon's connection cap (256 per uid by default, so that a client
 * of 64 threads with a connection each fits) answers with its error
 * before it hangs up, and the library reports that error even though the
 * request it sent was never read. */
#define DEFAULT_CONN_CAP 256
START_TEST(test_connection_cap_message)
{
	zc_client *cs[DEFAULT_CONN_CAP], *extra;
	struct zc_hello h;

	for (int i = 0; i < DEFAULT_CONN_CAP; i++) {
		cs[i] = client();
		ck_assert_int_eq(zc_hello(cs[i], &h), 0);
	}
	/* Whether the daemon hangs up before or after our request arrives
	 * is a race; try often enough to see both. */
	for (int i = 0; i < 100; i++) {
		/* zc_connect's own hello meets the refusal. */
		ck_assert_int_eq(zc_connect(z.sock, &extra), -EACCES);
		ck_assert_pstr_eq(strstr(zc_last_error(NULL), "too many connections for uid"),
				  zc_last_error(NULL));
	}
	for (int i = 0; i < DEFAULT_CONN_CAP; i++)
		zc_close(cs[i]);
}
END_TEST

/* A lease of three zones: appends fill them in order, one write crossing a
 * zone's end goes on in the next, reads find every byte where it went,
 * and the zones are the lease's alone until it is released. */
START_TEST(test_lease_of_zones)
{
	const size_t big = MiB + 2 * BLOCK;
	zc_client *c = client();
	unsigned char *buf = aligned_buf(big), *back = aligned_buf(big);
	struct zc_lease_opts o;
	zc_lease *l = NULL, *other = NULL;
	uint64_t off;

	zc_lease_opts_init(&o);
	o.device = "small";
	o.zone = 200;
	ck_assert_int_eq(zc_lease_acquire_zones(c, &o, 0, &l), -EINVAL);
	ck_assert_int_eq(zc_lease_acquire_zones(c, &o, 3, &l), 0);
	ck_assert_uint_eq(zc_lease_count(l), 3);
	ck_assert_uint_eq(zc_lease_zone(l), 200);
	ck_assert_uint_eq(zc_lease_wp(l), 200 * MiB);
	for (uint32_t i = 0; i < 3; i++) {
		int fd = zc_lease_zone_fd(l, i, &off);

		ck_assert_int_ge(fd, 0);
		/* Either the whole device, or a descriptor of that zone. */
		ck_assert(off == (200 + i) * MiB || off == 0 || off == i * MiB);
	}
	ck_assert_int_eq(zc_lease_zone_fd(l, 3, &off), -EINVAL);
	o.zone = 201;
	ck_assert_int_eq(zc_lease_acquire(c, &o, &other), -EBUSY);

	fill_pattern(buf, big, 7);
	/* Zone 200 to 8 KiB short of its end, then across into 201. */
	ck_assert_int_eq(zc_lease_append(l, buf, MiB - 2 * BLOCK), 0);
	ck_assert_int_eq(zc_lease_append(l, buf + MiB - 2 * BLOCK, 4 * BLOCK), 0);
	ck_assert_uint_eq(zc_lease_wp(l), 201 * MiB + 2 * BLOCK);
	ck_assert_int_eq(zc_lease_sync(l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), 201 * MiB + 2 * BLOCK);
	ck_assert_int_eq(zone_of(c, "small", 200).cond, ZC_COND_FULL);
	ck_assert_uint_eq(zone_of(c, "small", 201).wp, 201 * MiB + 2 * BLOCK);
	ck_assert_uint_eq(zone_of(c, "small", 202).wp, 202 * MiB);
	/* Reads stop at the capacity of the zone they start in. */
	ck_assert_int_eq(zc_lease_pread(l, back, big, 0), MiB);
	ck_assert_int_eq(memcmp(back, buf, MiB), 0);
	ck_assert_int_eq(zc_lease_pread(l, back, 2 * BLOCK, MiB), 2 * BLOCK);
	ck_assert_int_eq(memcmp(back, buf + MiB, 2 * BLOCK), 0);
	ck_assert_int_lt(zc_lease_pread(l, back, BLOCK, 3 * MiB + BLOCK), 0);
	/* More than the rest of the range does not fit. */
	ck_assert_int_eq(zc_lease_append(l, buf, 2 * MiB), -ENOSPC);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	for (uint32_t i = 200; i < 203; i++)
		ck_assert_int_eq(zone_of(c, "small", i).cond, ZC_COND_EMPTY);
	ck_assert_int_eq(zc_lease_acquire(c, &o, &other), 0);
	ck_assert_int_eq(zc_lease_release(other, ZC_RELEASE_KEEP), 0);
	free(buf);
	free(back);
	zc_close(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("client-e2e");
	TCase *tc = tcase_create("zonedd");

	/* One daemon for the case; tests use disjoint zones. */
	tcase_add_unchecked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_devices);
	tcase_add_test(tc, test_info);
	tcase_add_test(tc, test_iter_all_lazy);
	tcase_add_test(tc, test_iter_filters);
	tcase_add_test(tc, test_iter_runs_match_objects);
	tcase_add_test(tc, test_zone_ops);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_lease_append_read);
	tcase_add_test(tc, test_device_open);
	tcase_add_test(tc, test_lease_of_zones);
	tcase_add_test(tc, test_lease_fopen);
	tcase_add_test(tc, test_lease_reset_finish_release);
	tcase_add_test(tc, test_lease_exclusive);
	tcase_add_test(tc, test_lease_revoked);
	tcase_add_test(tc, test_stale_token);
	tcase_add_test(tc, test_lease_limits);
	tcase_add_test(tc, test_close_with_lease);
	tcase_add_test(tc, test_close_fences_lease);
	tcase_add_test(tc, test_local_errors_named);
	tcase_add_test(tc, test_pread_capacity);
	tcase_add_test(tc, test_connection_cap_message);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (access(zt_build_path("daemon/zonedd"), X_OK) != 0) {
		fprintf(stderr, "SKIP: no %s\n", zt_build_path("daemon/zonedd"));
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
