/* End-to-end tests of what a lease's descriptors reach, against a real
 * zonedd on an emulated device, over a raw socket so that every descriptor
 * of a reply is seen: fd_offset, leases of several zones (lease.acquire
 * count) with their fds, their release and their survival across a daemon
 * SIGKILL, device.open of one zone, and device.info's isolation mode. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "proto/proto.h"
#include "tests/fixture.h"

#define BLOCK 4096
#define ZONE (1024 * 1024)

static struct zt_daemon z;
static char emu[600];

static void start_daemon(void)
{
	const char *args[] = { "--emulate", emu, "--grace-ms", "20000", NULL };

	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
}

/* 16 zones of 1 MiB, 1 conventional, max open 4. */
static void start(void)
{
	memset(&z, 0, sizeof(z));
	/* The fixture makes the directory; the device goes inside it. */
	ck_assert_int_eq(zt_daemon_start(&z, (const char *const[]){ NULL }), 0);
	zt_daemon_stop(&z);
	snprintf(emu, sizeof(emu),
		 "%s/dev.img,id=emu0,size=16M,zone-size=1M,conv=1,max-open=4,max-active=4", z.dir);
	start_daemon();
}

static void stop(void)
{
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memcpy(sa.sun_path, z.sock, strlen(z.sock) + 1);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

struct reply {
	struct json_object *msg;  /* the whole response */
	struct json_object *res;  /* its result, or NULL */
	int code;                 /* its error code, or 0 */
	int fds[ZP_MAX_FDS];
	size_t nfds;
};

static void reply_free(struct reply *r)
{
	for (size_t i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	json_object_put(r->msg);
	memset(r, 0, sizeof(*r));
}

/* One call, its reply with every fd attached. */
static void call(int fd, const char *method, const char *params, struct reply *r)
{
	static char buf[ZP_MSG_MAX + 1];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct json_object *e, *c;
	int len = snprintf(buf, sizeof(buf),
			   "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}", method,
			   params);
	ssize_t n;

	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(zp_send(fd, buf, (size_t)len, -1, 0), 0);
	/* A lease's holder is told of its revocation unasked: not the reply. */
	for (;;) {
		ck_assert_int_eq(poll(&p, 1, 10000), 1);
		n = zp_recvv(fd, buf, sizeof(buf), r->fds, &r->nfds, 0);
		ck_assert_int_gt(n, 0);
		r->msg = zp_parse(buf, (size_t)n);
		ck_assert_ptr_nonnull(r->msg);
		if (!json_object_object_get_ex(r->msg, "method", NULL))
			break;
		reply_free(r);
	}
	if (json_object_object_get_ex(r->msg, "error", &e)) {
		ck_assert(json_object_object_get_ex(e, "code", &c));
		r->code = json_object_get_int(c);
	} else {
		ck_assert(json_object_object_get_ex(r->msg, "result", &r->res));
	}
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	ck_assert_msg(json_object_object_get_ex(o, key, &v), "no '%s' in %s", key,
		      json_object_to_json_string(o));
	return v;
}

static uint64_t get_u64(struct json_object *o, const char *key)
{
	return json_object_get_uint64(get(o, key));
}

/* The fd and offset in it of zone i of a lease reply. */
static int zone_fd(const struct reply *r, struct json_object *lease, unsigned i, off_t *off)
{
	unsigned first = (unsigned)get_u64(r->res, "fd"), nfds = (unsigned)get_u64(r->res, "nfds");

	ck_assert_uint_eq(nfds, r->nfds);
	if (nfds == 1) {
		*off = (off_t)(get_u64(lease, "fd_offset") + (uint64_t)i * ZONE);
		return r->fds[first];
	}
	ck_assert_uint_eq(nfds, get_u64(lease, "count"));
	ck_assert_uint_eq(get_u64(lease, "fd_offset"), 0);
	*off = 0;
	return r->fds[first + i];
}

static void fill(char *buf, size_t len, int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed * 31 + i * 7);
}

static const char *zone_cond(int fd, unsigned zone, uint64_t *wp)
{
	static char cond[32];
	char params[128];
	struct reply r;
	struct json_object *zo;

	snprintf(params, sizeof(params), "{\"device\":\"emu0\",\"from\":%u,\"count\":1}", zone);
	call(fd, "zone.report", params, &r);
	ck_assert_int_eq(r.code, 0);
	zo = json_object_array_get_idx(get(r.res, "zones"), 0);
	snprintf(cond, sizeof(cond), "%s", json_object_get_string(get(zo, "cond")));
	if (wp)
		*wp = get_u64(zo, "wp") - get_u64(zo, "start");
	reply_free(&r);
	return cond;
}

START_TEST(device_info_says_the_mode)
{
	int fd;
	struct reply r;

	start();
	fd = raw_connect();
	call(fd, "device.info", "{\"device\":\"emu0\"}", &r);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strcmp(json_object_get_string(get(r.res, "isolation")), "zone") == 0 ||
		  strcmp(json_object_get_string(get(r.res, "isolation")), "device") == 0);
	ck_assert_uint_gt(strlen(json_object_get_string(get(r.res, "isolation_reason"))), 0);
	reply_free(&r);
	close(fd);
	stop();
}
END_TEST

START_TEST(lease_of_three_zones)
{
	/* Aligned: the fds are O_DIRECT. */
	static char buf[2 * BLOCK] __attribute__((aligned(BLOCK)));
	static char back[2 * BLOCK] __attribute__((aligned(BLOCK)));
	struct json_object *lease, *zones;
	struct reply r, r2;
	char params[256];
	uint64_t id, token, wp;
	int fd, other;

	start();
	fd = raw_connect();
	other = raw_connect();
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":4,\"count\":3}", &r);
	ck_assert_msg(r.code == 0, "%s", json_object_to_json_string(r.msg));
	lease = get(r.res, "lease");
	ck_assert_uint_eq(get_u64(lease, "zone"), 4);
	ck_assert_uint_eq(get_u64(lease, "count"), 3);
	zones = get(lease, "zones");
	ck_assert_uint_eq(json_object_array_length(zones), 3);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_uint_eq(get_u64(json_object_array_get_idx(zones, i), "zone"), 4 + i);
	id = get_u64(lease, "id");
	token = get_u64(lease, "token");

	/* Every zone of the range is the lease's: nobody else gets one. */
	for (unsigned zn = 4; zn < 7; zn++) {
		snprintf(params, sizeof(params), "{\"device\":\"emu0\",\"zone\":%u}", zn);
		call(other, "lease.acquire", params, &r2);
		ck_assert_int_eq(r2.code, ZP_ERR_ZONE_LEASED);
		reply_free(&r2);
		ck_assert_str_eq(zone_cond(other, zn, NULL), "empty");
	}
	/* A range overlapping it is refused too. */
	call(other, "lease.acquire", "{\"device\":\"emu0\",\"zone\":2,\"count\":3}", &r2);
	ck_assert_int_eq(r2.code, ZP_ERR_ZONE_LEASED);
	reply_free(&r2);

	/* Written through the fds, each zone on its own. */
	for (unsigned i = 0; i < 3; i++) {
		off_t off;
		int zfd = zone_fd(&r, lease, i, &off);
		size_t len = i == 0 ? BLOCK : 2 * BLOCK;

		fill(buf, sizeof(buf), (int)i);
		ck_assert_int_eq(pwrite(zfd, buf, len, off), (ssize_t)len);
	}
	snprintf(params, sizeof(params), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", id, token);
	call(fd, "lease.sync", params, &r2);
	ck_assert_int_eq(r2.code, 0);
	zones = get(get(r2.res, "lease"), "zones");
	ck_assert_uint_eq(get_u64(json_object_array_get_idx(zones, 0), "wp"), 4 * (uint64_t)ZONE + BLOCK);
	ck_assert_uint_eq(get_u64(json_object_array_get_idx(zones, 1), "wp"),
			  5 * (uint64_t)ZONE + 2 * BLOCK);
	ck_assert_uint_eq(get_u64(json_object_array_get_idx(zones, 2), "wp"),
			  6 * (uint64_t)ZONE + 2 * BLOCK);
	reply_free(&r2);

	/* What each fd wrote is in its zone, read by someone without a lease. */
	call(other, "device.open", "{\"device\":\"emu0\",\"zone\":5}", &r2);
	ck_assert_int_eq(r2.code, 0);
	ck_assert_uint_eq(r2.nfds, 1);
	fill(buf, sizeof(buf), 1);
	ck_assert_int_eq(pread(r2.fds[0], back, 2 * BLOCK, (off_t)get_u64(r2.res, "fd_offset")),
			 2 * BLOCK);
	ck_assert_int_eq(memcmp(buf, back, 2 * BLOCK), 0);
	reply_free(&r2);

	/* Released with a reset: every zone of the range is empty and free. */
	snprintf(params, sizeof(params),
		 "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":\"reset\"}", id, token);
	call(fd, "lease.release", params, &r2);
	ck_assert_int_eq(r2.code, 0);
	ck_assert_uint_eq(json_object_array_length(get(r2.res, "zones")), 3);
	reply_free(&r2);
	for (unsigned zn = 4; zn < 7; zn++) {
		ck_assert_str_eq(zone_cond(other, zn, &wp), "empty");
		ck_assert_uint_eq(wp, 0);
	}
	call(other, "lease.acquire", "{\"device\":\"emu0\",\"zone\":5}", &r2);
	ck_assert_int_eq(r2.code, 0);
	reply_free(&r2);
	reply_free(&r);
	close(fd);
	close(other);
	stop();
}
END_TEST

START_TEST(ranges_the_allocator_picks)
{
	struct reply a, b, r;
	uint64_t za, zb;
	int fd;

	start();
	fd = raw_connect();
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"count\":2}", &a);
	ck_assert_int_eq(a.code, 0);
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"count\":2}", &b);
	ck_assert_int_eq(b.code, 0);
	za = get_u64(get(a.res, "lease"), "zone");
	zb = get_u64(get(b.res, "lease"), "zone");
	/* Sequential zones (zone 0 is conventional), not overlapping. */
	ck_assert_uint_ge(za, 1);
	ck_assert_uint_ge(zb, 1);
	ck_assert(za + 2 <= zb || zb + 2 <= za);
	/* Four zones leased, the open limit of 4: a fifth cannot be written. */
	call(fd, "lease.acquire", "{\"device\":\"emu0\"}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_LIMIT);
	reply_free(&r);
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"count\":0}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_INVALID_PARAMS);
	reply_free(&r);
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"count\":65}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_INVALID_PARAMS);
	reply_free(&r);
	/* Past the device's end. */
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":15,\"count\":2}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_NO_ZONE);
	reply_free(&r);
	/* Over the limit by itself: refused at once, not waited for. */
	reply_free(&a);
	reply_free(&b);
	close(fd);
	fd = raw_connect();
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"count\":5,\"wait_ms\":2000}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_INVALID_PARAMS);
	reply_free(&r);
	close(fd);
	stop();
}
END_TEST

START_TEST(range_survives_a_crash)
{
	struct reply r, r2;
	char params[256];
	uint64_t id, token;
	int fd, status;

	start();
	fd = raw_connect();
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":8,\"count\":2,\"reclaimable\":true}",
	     &r);
	ck_assert_int_eq(r.code, 0);
	id = get_u64(get(r.res, "lease"), "id");
	token = get_u64(get(r.res, "lease"), "token");
	reply_free(&r);
	/* The table is written before the reply; the daemon dies hard. */
	ck_assert_int_eq(kill(z.pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(z.pid, &status, 0), z.pid);
	close(fd);
	start_daemon();
	fd = raw_connect();
	/* Both zones are kept for the owner during the grace. */
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":9}", &r2);
	ck_assert_int_eq(r2.code, ZP_ERR_ZONE_LEASED);
	reply_free(&r2);
	snprintf(params, sizeof(params), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", id, token);
	call(fd, "lease.reclaim", params, &r);
	ck_assert_msg(r.code == 0, "%s", json_object_to_json_string(r.msg));
	ck_assert_uint_eq(get_u64(get(r.res, "lease"), "count"), 2);
	ck_assert_uint_eq(get_u64(r.res, "nfds"), r.nfds);
	ck_assert(r.nfds == 1 || r.nfds == 2);
	reply_free(&r);
	snprintf(params, sizeof(params), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", id, token);
	call(fd, "lease.release", params, &r);
	ck_assert_int_eq(r.code, 0);
	reply_free(&r);
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":9}", &r2);
	ck_assert_int_eq(r2.code, 0);
	reply_free(&r2);
	close(fd);
	stop();
}
END_TEST

START_TEST(device_open_of_a_zone)
{
	struct reply r;
	int fd;

	start();
	fd = raw_connect();
	call(fd, "device.open", "{\"device\":\"emu0\",\"zone\":3}", &r);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(r.nfds, 1);
	ck_assert(get_u64(r.res, "fd_offset") == 0 || get_u64(r.res, "fd_offset") == 3 * ZONE);
	reply_free(&r);
	call(fd, "device.open", "{\"device\":\"emu0\",\"zone\":16}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_NO_ZONE);
	reply_free(&r);
	call(fd, "device.open", "{\"device\":\"emu0\",\"zone\":1,\"count\":65}", &r);
	ck_assert_int_eq(r.code, ZP_ERR_INVALID_PARAMS);
	reply_free(&r);
	close(fd);
	stop();
}
END_TEST

/* Through the daemon: a holder revoked by an admin's forced finish keeps
 * its fd, but what it writes afterwards reaches nothing the next holder
 * sees; a holder whose lease was released likewise. */
START_TEST(revoked_writes_vanish)
{
	static char mine[BLOCK] __attribute__((aligned(BLOCK)));
	static char theirs[BLOCK] __attribute__((aligned(BLOCK)));
	static char back[2 * BLOCK] __attribute__((aligned(BLOCK)));
	struct json_object *lease;
	struct reply a, b, r, o;
	char params[256];
	int fa, fb, fd, admin;
	ssize_t n;
	off_t off;

	start();
	fd = raw_connect();
	admin = raw_connect();
	call(fd, "device.info", "{\"device\":\"emu0\"}", &r);
	if (strcmp(json_object_get_string(get(r.res, "isolation")), "zone") != 0) {
		reply_free(&r);
		close(fd);
		close(admin);
		stop();
		return; /* nothing is fenced in device isolation */
	}
	reply_free(&r);
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":3}", &a);
	ck_assert_int_eq(a.code, 0);
	lease = get(a.res, "lease");
	fa = zone_fd(&a, lease, 0, &off);
	fill(mine, BLOCK, 1);
	ck_assert_int_eq(pwrite(fa, mine, BLOCK, off), BLOCK);
	/* Revoked: the zone is finished (its data stays), the lease gone. */
	call(admin, "zone.finish", "{\"device\":\"emu0\",\"zone\":3,\"force\":true}", &r);
	ck_assert_msg(r.code == 0, "%s", json_object_to_json_string(r.msg));
	reply_free(&r);
	/* The kept fd still takes writes, into a file no name reaches. */
	memset(mine, 0xee, BLOCK);
	ck_assert_int_eq(pwrite(fa, mine, BLOCK, off), BLOCK);
	ck_assert_int_eq(pwrite(fa, mine, BLOCK, off + BLOCK), BLOCK);
	call(fd, "device.open", "{\"device\":\"emu0\",\"zone\":3}", &o);
	ck_assert_int_eq(o.code, 0);
	fill(theirs, BLOCK, 1);
	memset(back, 0, sizeof(back));
	/* What it wrote before the revocation, and nothing of what came
	 * after (a zone file ends at its data: a short read is zeros). */
	n = pread(o.fds[0], back, 2 * BLOCK, (off_t)get_u64(o.res, "fd_offset"));
	ck_assert(n == BLOCK || n == 2 * BLOCK);
	ck_assert_int_eq(memcmp(back, theirs, BLOCK), 0);
	for (int i = 0; i < BLOCK; i++)
		ck_assert_int_eq(back[BLOCK + i], 0);
	reply_free(&o);
	/* The next holder of a reset zone 3 writes; the old fd cannot touch it. */
	call(admin, "zone.reset", "{\"device\":\"emu0\",\"zone\":3}", &r);
	ck_assert_int_eq(r.code, 0);
	reply_free(&r);
	call(fd, "lease.acquire", "{\"device\":\"emu0\",\"zone\":3}", &b);
	ck_assert_int_eq(b.code, 0);
	fb = zone_fd(&b, get(b.res, "lease"), 0, &off);
	fill(theirs, BLOCK, 2);
	ck_assert_int_eq(pwrite(fb, theirs, BLOCK, off), BLOCK);
	ck_assert_int_eq(pwrite(fa, mine, BLOCK, off), BLOCK);
	ck_assert_int_eq(pread(fb, back, BLOCK, off), BLOCK);
	ck_assert_int_eq(memcmp(back, theirs, BLOCK), 0);
	snprintf(params, sizeof(params), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}",
		 get_u64(get(b.res, "lease"), "id"), get_u64(get(b.res, "lease"), "token"));
	call(fd, "lease.sync", params, &r);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(get_u64(get(r.res, "lease"), "wp"), 3 * (uint64_t)ZONE + BLOCK);
	reply_free(&r);
	reply_free(&b);
	reply_free(&a);
	close(fd);
	close(admin);
	stop();
}
END_TEST

static void reply_fds_close(struct reply *r)
{
	for (size_t i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	r->nfds = 0;
}

static uint64_t stat_of(int fd, const char *key)
{
	struct reply r;
	uint64_t v;

	call(fd, "daemon.stats", "{}", &r);
	ck_assert_int_eq(r.code, 0);
	v = get_u64(r.res, key);
	reply_free(&r);
	return v;
}

static uint64_t ready_zones(int fd)
{
	struct reply r;
	uint64_t v;

	call(fd, "device.list", "{}", &r);
	ck_assert_int_eq(r.code, 0);
	v = get_u64(json_object_array_get_idx(get(r.res, "devices"), 0), "ready_zones");
	reply_free(&r);
	return v;
}

/* Waits for the refill an acquire started. */
static uint64_t ready_wait(int fd)
{
	uint64_t n = 0;

	for (int i = 0; i < 500 && (n = ready_zones(fd)) == 0; i++)
		usleep(10000);
	ck_assert_uint_gt(n, 0);
	return n;
}

/* One acquire of any zone: *zone, the fd (the caller's) and its offset. */
static void acquire_any(int fd, struct reply *a, uint32_t *zone, int *zfd, off_t *off)
{
	call(fd, "lease.acquire", "{\"device\":\"emu0\"}", a);
	ck_assert_msg(a->code == 0, "%s", json_object_to_json_string(a->msg));
	*zone = (uint32_t)get_u64(get(a->res, "lease"), "zone");
	*zfd = zone_fd(a, get(a->res, "lease"), 0, off);
}

static void release_keep(int fd, const struct reply *a, struct reply *r)
{
	char params[256];

	snprintf(params, sizeof(params), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}",
		 get_u64(get(a->res, "lease"), "id"), get_u64(get(a->res, "lease"), "token"));
	call(fd, "lease.release", params, r);
	ck_assert_msg(r->code == 0, "%s", json_object_to_json_string(r->msg));
}

/* Zones opened ahead (the ready set) are granted on the loop, and a
 * release is answered there only when the zone is untouched and nothing
 * else holds it: a write, or an fd kept past the release, takes the
 * device's path, which sees the write and fences the kept fd. */
START_TEST(ready_set_grants_and_fences)
{
	static char buf[BLOCK] __attribute__((aligned(BLOCK)));
	static char back[2 * BLOCK] __attribute__((aligned(BLOCK)));
	struct reply a, r, o;
	uint64_t grants, here, recycled, wp;
	uint32_t zone;
	int fd, zfd, kept;
	off_t off;
	ssize_t n;

	start();
	fd = raw_connect();
	call(fd, "device.info", "{\"device\":\"emu0\"}", &r);
	if (strcmp(json_object_get_string(get(r.res, "isolation")), "zone") != 0) {
		reply_free(&r);
		close(fd);
		stop();
		return; /* the ready set is zone isolation's */
	}
	reply_free(&r);
	ck_assert_uint_eq(ready_zones(fd), 0); /* filled on demand */

	/* The first acquire takes the queue and starts a refill. */
	acquire_any(fd, &a, &zone, &zfd, &off);
	ck_assert_uint_eq(stat_of(fd, "grants_ready"), 0);
	reply_fds_close(&a);
	release_keep(fd, &a, &r);
	reply_free(&a);
	reply_free(&r);
	ready_wait(fd);

	/* Untouched: granted and released on the loop, still empty, and
	 * back in the set with a new descriptor. */
	grants = stat_of(fd, "grants_ready");
	here = stat_of(fd, "releases_untouched");
	recycled = stat_of(fd, "ready_recycled");
	acquire_any(fd, &a, &zone, &zfd, &off);
	ck_assert_uint_eq(stat_of(fd, "grants_ready"), grants + 1);
	ck_assert_str_eq(json_object_get_string(get(get(a.res, "lease"), "cond")), "empty");
	ck_assert_int_eq(fcntl(zfd, F_GETFL) & O_ACCMODE, O_RDWR);
	reply_fds_close(&a); /* as the library does before it releases */
	release_keep(fd, &a, &r);
	reply_free(&a);
	ck_assert_uint_eq(stat_of(fd, "releases_untouched"), here + 1);
	ck_assert_str_eq(json_object_get_string(get(get(r.res, "zone"), "cond")), "empty");
	reply_free(&r);
	ck_assert_str_eq(zone_cond(fd, zone, NULL), "empty");
	ck_assert_uint_eq(stat_of(fd, "ready_recycled"), recycled + 1);

	/* Written: the release reads the write pointer from the device. The
	 * zone is the one just recycled: its new descriptor reaches the
	 * zone's file (device.open reads the block back). */
	snprintf(buf, sizeof(buf), "{\"device\":\"emu0\",\"zone\":%u}", zone);
	call(fd, "lease.acquire", buf, &a);
	ck_assert_msg(a.code == 0, "%s", json_object_to_json_string(a.msg));
	zfd = zone_fd(&a, get(a.res, "lease"), 0, &off);
	ck_assert_uint_eq(stat_of(fd, "grants_ready"), grants + 2);
	ck_assert_int_eq(fcntl(zfd, F_GETFL) & O_ACCMODE, O_RDWR);
	fill(buf, BLOCK, 3);
	ck_assert_int_eq(pwrite(zfd, buf, BLOCK, off), BLOCK);
	reply_fds_close(&a);
	release_keep(fd, &a, &r);
	reply_free(&a);
	ck_assert_uint_eq(stat_of(fd, "releases_untouched"), here + 1);
	ck_assert_uint_eq(get_u64(get(r.res, "zone"), "wp") -
			  get_u64(get(r.res, "zone"), "start"), BLOCK);
	reply_free(&r);
	ck_assert_uint_eq(stat_of(fd, "ready_recycled"), recycled + 1); /* written: not again */
	snprintf(buf, sizeof(buf), "{\"device\":\"emu0\",\"zone\":%u}", zone);
	call(fd, "device.open", buf, &o);
	ck_assert_int_eq(o.code, 0);
	n = pread(o.fds[0], back, BLOCK, (off_t)get_u64(o.res, "fd_offset"));
	ck_assert_int_eq(n, BLOCK);
	fill(buf, BLOCK, 3);
	ck_assert(memcmp(back, buf, BLOCK) == 0);
	reply_free(&o);

	/* An fd kept past the release: fenced, its later writes land nowhere. */
	ready_wait(fd);
	acquire_any(fd, &a, &zone, &zfd, &off);
	ck_assert_uint_eq(stat_of(fd, "grants_ready"), grants + 3);
	kept = dup(zfd);
	ck_assert_int_ge(kept, 0);
	reply_fds_close(&a);
	release_keep(fd, &a, &r);
	reply_free(&a);
	ck_assert_uint_eq(stat_of(fd, "releases_untouched"), here + 1);
	reply_free(&r);
	fill(buf, BLOCK, 4);
	ck_assert_int_eq(pwrite(kept, buf, BLOCK, off), BLOCK);
	close(kept);
	ck_assert_str_eq(zone_cond(fd, zone, &wp), "empty");
	ck_assert_uint_eq(wp, 0);
	snprintf(buf, sizeof(buf), "{\"device\":\"emu0\",\"zone\":%u}", zone);
	call(fd, "device.open", buf, &o);
	ck_assert_int_eq(o.code, 0);
	n = pread(o.fds[0], back, sizeof(back), (off_t)get_u64(o.res, "fd_offset"));
	ck_assert_int_eq(n, 0);
	reply_free(&o);

	/* A zone operation over the free zones takes them out of the set
	 * first: nothing the daemon holds open reaches a finished zone. */
	ck_assert_uint_gt(ready_zones(fd), 0);
	call(fd, "zone.finish", "{\"device\":\"emu0\",\"zone\":1,\"count\":15}", &r);
	ck_assert_msg(r.code == 0, "%s", json_object_to_json_string(r.msg));
	reply_free(&r);
	ck_assert_uint_eq(ready_zones(fd), 0);
	call(fd, "zone.reset", "{\"device\":\"emu0\",\"zone\":1,\"count\":15}", &r);
	ck_assert_msg(r.code == 0, "%s", json_object_to_json_string(r.msg));
	reply_free(&r);
	acquire_any(fd, &a, &zone, &zfd, &off);
	ck_assert_str_eq(json_object_get_string(get(get(a.res, "lease"), "cond")), "empty");
	reply_free(&a);
	/* The emulator takes its operations one at a time, whatever ran. */
	call(fd, "device.info", "{\"device\":\"emu0\"}", &r);
	ck_assert_uint_eq(get_u64(r.res, "parallel_works"), 1);
	ck_assert_uint_eq(get_u64(r.res, "peak_parallel_works"), 1);
	reply_free(&r);
	close(fd);
	stop();
}
END_TEST

static Suite *isolation_suite(void)
{
	Suite *s = suite_create("isolation");
	TCase *tc = tcase_create("emulated");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, device_info_says_the_mode);
	tcase_add_test(tc, lease_of_three_zones);
	tcase_add_test(tc, ranges_the_allocator_picks);
	tcase_add_test(tc, range_survives_a_crash);
	tcase_add_test(tc, device_open_of_a_zone);
	tcase_add_test(tc, revoked_writes_vanish);
	tcase_add_test(tc, ready_set_grants_and_fences);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(isolation_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
