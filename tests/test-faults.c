/* Device faults: the emulator's fault injection (unit, on the backend), and
 * the real daemon under each fault kind: a failing operation answers -32000
 * with its errno and changes no other zone, a zone that turns read-only or
 * offline leaves the allocator and fails its holder clearly, a vanished or
 * repeatedly failing device is marked failed with its leases revoked while
 * a second device is served as before. After every fault the daemon's zone
 * table (zone.report {"cached": true}) equals the device's own state, read
 * straight from the emulator's files in this process (zd_emul_peek). Raw
 * JSON over the socket, so every error code and field is seen as sent. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "daemon/log.h"
#include "daemon/zdev.h"
#include "proto/proto.h"
#include "tests/fixture.h"

#define BLOCK 4096
#define MIB (1u << 20)

/* --- the backend -------------------------------------------------------- */

static char tmpdir[256], img[300];

static struct zd_dev *emul_new(const char *faults)
{
	struct zd_emul_params p;
	struct zd_dev *dev = NULL;

	zd_log_set_level(LOG_CRIT);
	snprintf(tmpdir, sizeof(tmpdir), "%s/zoned-faults-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(img, sizeof(img), "%s/dev.img", tmpdir);
	zd_emul_default_params(&p);
	ck_assert_int_eq(zd_emul_parse_spec("size=16M,zone-size=1M,conv=1,lbs=4096", &p), 0);
	ck_assert_int_eq(zd_emul_open(img, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_int_eq(zd_emul_set_faults(dev, faults), 0);
	return dev;
}

static void emul_free(struct zd_dev *dev)
{
	char cmd[400];

	zd_dev_close(dev);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* What a load makes of a zone: an open one is closed (empty at wp 0), so
 * the files need not record a close (daemon/emul.c, zone_close). */
static uint8_t as_loaded(const struct zd_zone *z)
{
	if (z->cond == ZP_COND_IMP_OPEN || z->cond == ZP_COND_EXP_OPEN)
		return z->wp > z->start ? ZP_COND_CLOSED : ZP_COND_EMPTY;
	return z->cond;
}

/* The device's files say what the backend reports (an open device), but
 * for open against closed. */
static void backend_matches_files(struct zd_dev *dev)
{
	struct zd_zone *files, rep[16];
	uint32_t nr, n = 16;

	ck_assert_int_eq(zd_emul_peek(img, &files, &nr), 0);
	ck_assert_uint_eq(nr, 16);
	ck_assert_int_eq(dev->ops->report(dev, 0, rep, &n), 0);
	for (uint32_t i = 0; i < nr; i++) {
		ck_assert_uint_eq(as_loaded(&files[i]), as_loaded(&rep[i]));
		ck_assert_uint_eq(files[i].wp, rep[i].wp);
		ck_assert_uint_eq(files[i].start, rep[i].start);
	}
	free(files);
}

START_TEST(spec_grammar)
{
	static const char *const good[] = {
		"", "crash:data-sync:2", "eio:report", "eio:zone-op:3", "eio:zone_op:3:0",
		"enospc:pwrite:1:2", "eio-zone:5", "readonly:4", "offline:4:refresh:2",
		"vanish", "vanish:open-fd:3", "eio:any:2:0,readonly:3:any:1,vanish:pread:9",
	};
	static const struct {
		const char *spec, *why;
	} bad[] = {
		{ "eio", "need an operation" },
		{ "eio:write", "need an operation" },
		{ "eio:report:0", "positive" },
		{ "eio:report:1:x", "non-negative" },
		{ "eio-zone", "zone index" },
		{ "readonly:x", "zone index" },
		{ "offline:3:flush", "unknown operation" },
		{ "vanish:any:1:2", "too many fields" },
		{ "explode", "unknown fault kind" },
		{ "crash:nowhere", "unknown step" },
	};
	const char *why;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(zd_emul_check_faults(good[i], &why) == 0, "%s: %s", good[i], why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		ck_assert_int_eq(zd_emul_check_faults(bad[i].spec, &why), -EINVAL);
		ck_assert_msg(why && strstr(why, bad[i].why), "%s: %s", bad[i].spec, why);
	}
}
END_TEST

/* $ZONED_EMUL_FAULT arms every device opened; a bad one refuses it. */
START_TEST(backend_env)
{
	struct zd_emul_params p;
	struct zd_dev *dev;
	struct zd_zone z[16];
	uint32_t n = 16;

	setenv("ZONED_EMUL_FAULT", "vanish:report:2", 1);
	dev = emul_new("");
	unsetenv("ZONED_EMUL_FAULT");
	/* emul_new re-armed it with "": the environment's fault is gone. */
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), 0);
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), 0);
	zd_dev_close(dev);
	zd_emul_default_params(&p);
	setenv("ZONED_EMUL_FAULT", "vanish:report:2", 1);
	ck_assert_int_eq(zd_emul_open(img, &p, true, ZD_ISOLATION_AUTO, &dev), 0);
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), 0);
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), -ENODEV);
	zd_dev_close(dev);
	setenv("ZONED_EMUL_FAULT", "vanish:write", 1);
	ck_assert_int_eq(zd_emul_open(img, &p, true, ZD_ISOLATION_AUTO, &dev), -EINVAL);
	unsetenv("ZONED_EMUL_FAULT");
	emul_free(NULL);
}
END_TEST

/* The Nth operation of a kind fails, once or COUNT times, and changes
 * nothing; the operations around it work. */
START_TEST(backend_nth_op)
{
	struct zd_dev *dev = emul_new("eio:refresh:2,enospc:pwrite:1:2,eio:zone-op:1");
	struct zd_zone z;
	static char buf[BLOCK];
	int fd;

	ck_assert_int_eq(dev->ops->refresh_zone(dev, 3, UINT64_MAX, &z), 0);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 3, UINT64_MAX, &z), -EIO);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 3, UINT64_MAX, &z), 0);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 3 * MIB), -ENOSPC);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 3 * MIB), -ENOSPC);
	backend_matches_files(dev);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 3, UINT64_MAX, &z), 0);
	ck_assert_uint_eq(z.wp, 3 * MIB); /* nothing was written */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 3 * MIB), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, 3, 1), -EIO);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_FINISH, 3, 1), 0);
	backend_matches_files(dev);
	/* Re-armed with "every one from the 2nd on". */
	ck_assert_int_eq(zd_emul_set_faults(dev, "eio:open-fd:2:0"), 0);
	fd = zd_dev_open_zone(dev, 0, O_RDONLY, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(zd_dev_open_zone(dev, 0, O_RDONLY, NULL), -EIO);
	emul_free(dev);
}
END_TEST

START_TEST(backend_zone_eio)
{
	struct zd_dev *dev = emul_new("eio-zone:5");
	static char buf[BLOCK];
	struct zd_zone z[16];
	uint32_t n = 16;

	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 5 * MIB), -EIO);
	ck_assert_int_eq(dev->ops->pread(dev, buf, BLOCK, 5 * MIB), -EIO);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 5, UINT64_MAX, z), -EIO);
	/* A range holding it stops there, as a device does. */
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, 4, 3), -EIO);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_OPEN, 5, 2), -EIO);
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), 0);
	ck_assert_uint_eq(z[4].cond, ZP_COND_EXP_OPEN);
	ck_assert_uint_eq(z[5].cond, ZP_COND_EMPTY);
	ck_assert_uint_eq(z[6].cond, ZP_COND_EMPTY);
	/* Its neighbours are whole. */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 6 * MIB), 0);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_CLOSE, 4, 1), 0);
	backend_matches_files(dev);
	emul_free(dev);
}
END_TEST

START_TEST(backend_cond_and_vanish)
{
	struct zd_dev *dev = emul_new("readonly:4:pwrite:2,offline:6:refresh,vanish:report:4");
	static char buf[BLOCK];
	struct zd_zone z[16];
	uint32_t n = 16;

	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 4 * MIB), 0);
	/* Read-only right before this write, which it then refuses. */
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 4 * MIB + BLOCK), -EPERM);
	ck_assert_int_eq(dev->ops->pread(dev, buf, BLOCK, 4 * MIB), 0);
	ck_assert_int_eq(dev->ops->refresh_zone(dev, 7, UINT64_MAX, z), 0);
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), 0);
	ck_assert_uint_eq(z[4].cond, ZP_COND_READONLY);
	ck_assert_uint_eq(z[6].cond, ZP_COND_OFFLINE);
	ck_assert_uint_eq(z[5].cond, ZP_COND_EMPTY);
	ck_assert_int_eq(dev->ops->pread(dev, buf, BLOCK, 6 * MIB), -EIO);
	backend_matches_files(dev);
	n = 16;
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), 0);
	/* Report #4: gone, and everything after it. */
	ck_assert_int_eq(dev->ops->report(dev, 0, z, &n), -ENODEV);
	ck_assert_int_eq(zd_dev_open_zone(dev, 0, O_RDONLY, NULL), -ENODEV);
	ck_assert_int_eq(dev->ops->zone_op(dev, ZD_OP_RESET, 5, 1), -ENODEV);
	ck_assert_int_eq(dev->ops->pwrite(dev, buf, BLOCK, 5 * MIB), -ENODEV);
	/* Persistent: the files say so after the device is closed. */
	zd_dev_close(dev);
	{
		struct zd_zone *files;
		uint32_t nr;

		ck_assert_int_eq(zd_emul_peek(img, &files, &nr), 0);
		ck_assert_uint_eq(files[4].cond, ZP_COND_READONLY);
		ck_assert_uint_eq(files[6].cond, ZP_COND_OFFLINE);
		free(files);
	}
	emul_free(NULL);
}
END_TEST

/* --- the daemon ---------------------------------------------------------- */

static struct zt_daemon z;
static char conf[400], path_a[400], path_b[400];

/* Devices "a" (faults_a) and "b" (no faults) from a configuration file:
 * the device key is how a fault is given to one device only. */
/* Device "a" with faults_a and isolation iso_a ("auto", "device"). */
static void start_iso(const char *faults_a, const char *iso_a)
{
	const char *args[] = { "--config", conf, NULL };
	FILE *f;

	memset(&z, 0, sizeof(z));
	ck_assert_int_eq(zt_daemon_start(&z, (const char *const[]){ NULL }), 0);
	zt_daemon_stop(&z);
	snprintf(conf, sizeof(conf), "%s/zonedd.conf", z.dir);
	snprintf(path_a, sizeof(path_a), "%s/a.img", z.dir);
	snprintf(path_b, sizeof(path_b), "%s/b.img", z.dir);
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"devices\":[{\"id\":\"a\",\"emulate\":\"%s\",\"spec\":\"size=16M,zone-size=1M,"
		"conv=1\",\"faults\":\"%s\",\"isolation\":\"%s\"},{\"id\":\"b\",\"emulate\":\"%s\","
		"\"spec\":\"size=16M,zone-size=1M,conv=1\"}]}\n", path_a, faults_a, iso_a, path_b);
	fclose(f);
	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
}

static void start(const char *faults_a)
{
	start_iso(faults_a, "auto");
}

static void stop(void)
{
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}

static int conn(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memcpy(sa.sun_path, z.sock, strlen(z.sock) + 1);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_call(int s, const char *method, const char *params)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf),
			 "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}", method,
			 params);

	ck_assert_int_eq(zp_send(s, buf, (size_t)n, -1, 0), 0);
}

/* Revocations a holder was told of (lease.revoked events, which arrive
 * on its connection between replies), as "lease-id:reason". */
static char revoked_seen[512];

static struct json_object *get(struct json_object *o, const char *path);

/* The next message on s: a reply, or with events_too an event. */
static struct json_object *recv_msg(int s, int *fd_out, bool events_too)
{
	static char buf[ZP_MSG_MAX + 1];
	struct pollfd p = { .fd = s, .events = POLLIN };
	struct json_object *m, *t;
	int rfd = -1;
	ssize_t len;

	for (;;) {
		ck_assert_int_eq(poll(&p, 1, 20000), 1);
		len = zp_recv(s, buf, sizeof(buf), &rfd, 0);
		ck_assert_int_gt(len, 0);
		m = zp_parse(buf, (size_t)len);
		ck_assert_ptr_nonnull(m);
		if (events_too || !get(m, "method"))
			break;
		t = get(m, "params.type");
		if (t && strcmp(json_object_get_string(t), "lease.revoked") == 0)
			snprintf(revoked_seen + strlen(revoked_seen),
				 sizeof(revoked_seen) - strlen(revoked_seen), " %" PRIu64 ":%s",
				 json_object_get_uint64(get(m, "params.lease")),
				 json_object_get_string(get(m, "params.reason")));
		json_object_put(m);
	}
	if (fd_out)
		*fd_out = rfd;
	else if (rfd >= 0)
		close(rfd);
	return m;
}

static struct json_object *recv_reply(int s, int *fd_out)
{
	return recv_msg(s, fd_out, false);
}

static struct json_object *call(int s, const char *method, const char *params, int *fd_out)
{
	send_call(s, method, params);
	return recv_reply(s, fd_out);
}

static struct json_object *get(struct json_object *o, const char *path)
{
	char key[64];
	const char *dot;

	while (o && *path) {
		dot = strchr(path, '.');
		snprintf(key, sizeof(key), "%.*s", dot ? (int)(dot - path) : (int)strlen(path), path);
		if (!json_object_object_get_ex(o, key, &o))
			return NULL;
		path = dot ? dot + 1 : "";
	}
	return o;
}

static int code_of(struct json_object *r)
{
	struct json_object *c = get(r, "error.code");

	return c ? json_object_get_int(c) : 0;
}

/* A call expected to fail with code and, if errno_want, data.errno. */
static struct json_object *call_fails(int s, const char *method, const char *params, int code,
				      int errno_want)
{
	struct json_object *r = call(s, method, params, NULL), *e;

	ck_assert_msg(code_of(r) == code, "%s %s: %s", method, params, json_object_to_json_string(r));
	if (errno_want) {
		e = get(r, "error.data.errno");
		ck_assert_msg(e && json_object_get_int(e) == errno_want, "%s",
			      json_object_to_json_string(r));
	}
	return r;
}

static void call_ok(int s, const char *method, const char *params)
{
	struct json_object *r = call(s, method, params, NULL);

	ck_assert_msg(code_of(r) == 0, "%s %s: %s", method, params, json_object_to_json_string(r));
	json_object_put(r);
}

struct held {
	uint64_t id, token;
	unsigned zone;
	char dev[8];
};

static struct held acquire(int s, const char *dev, int zone)
{
	char p[160];
	struct held h = { 0 };
	struct json_object *r;
	int fd = -1;

	if (zone >= 0)
		snprintf(p, sizeof(p), "{\"device\":\"%s\",\"zone\":%d,\"direct\":false}", dev, zone);
	else
		snprintf(p, sizeof(p), "{\"device\":\"%s\",\"direct\":false}", dev);
	r = call(s, "lease.acquire", p, &fd);
	ck_assert_msg(code_of(r) == 0, "%s: %s", p, json_object_to_json_string(r));
	h.id = json_object_get_uint64(get(r, "result.lease.id"));
	h.token = json_object_get_uint64(get(r, "result.lease.token"));
	h.zone = (unsigned)json_object_get_int(get(r, "result.lease.zone"));
	snprintf(h.dev, sizeof(h.dev), "%s", dev);
	ck_assert_int_ge(fd, 0);
	close(fd);
	json_object_put(r);
	return h;
}

static const char *lp(const struct held *h, const char *extra)
{
	static char p[200];

	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "%s}", h->id, h->token,
		 extra);
	return p;
}

static bool failed(int s, const char *dev, char *why, size_t why_len)
{
	char p[64];
	struct json_object *r, *f, *w;
	bool yes;

	snprintf(p, sizeof(p), "{\"device\":\"%s\"}", dev);
	r = call(s, "device.info", p, NULL);
	f = get(r, "result.failed");
	ck_assert_msg(f, "%s", json_object_to_json_string(r));
	yes = json_object_get_boolean(f);
	w = get(r, "result.failure");
	ck_assert(yes == (w != NULL));
	if (why)
		snprintf(why, why_len, "%s", w ? json_object_get_string(w) : "");
	json_object_put(r);
	return yes;
}

/* The daemon's view of dev, zone by zone and by condition, equals what the
 * device's files hold: nothing the daemon keeps drifted from the device. */
static void view_matches_device(int s, const char *dev, const char *path)
{
	struct zd_zone *files;
	uint32_t nr, seen = 0, by_cond[ZP_COND_COUNT] = { 0 };
	char p[128];
	int64_t from = 0;
	struct json_object *r, *conds;

	ck_assert_int_eq(zd_emul_peek(path, &files, &nr), 0);
	while (from >= 0) {
		struct json_object *arr, *next;

		snprintf(p, sizeof(p), "{\"device\":\"%s\",\"cached\":true,\"from\":%" PRId64 "}", dev,
			 from);
		r = call(s, "zone.report", p, NULL);
		arr = get(r, "result.zones");
		ck_assert_msg(arr, "%s", json_object_to_json_string(r));
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *o = json_object_array_get_idx(arr, i);
			uint32_t idx = (uint32_t)json_object_get_int(get(o, "index"));
			struct zd_zone *f;
			uint64_t wp;

			ck_assert_uint_lt(idx, nr);
			f = &files[idx];
			/* Above the backends a full zone's wp is start + capacity. */
			wp = f->cond == ZP_COND_FULL && f->type != ZP_TYPE_CONV ?
				     f->start + f->capacity : f->wp;
			ck_assert_msg(strcmp(json_object_get_string(get(o, "cond")),
					     zp_cond_name(f->cond)) == 0,
				      "%s zone %u: daemon %s, device %s", dev, idx,
				      json_object_get_string(get(o, "cond")), zp_cond_name(f->cond));
			ck_assert_msg(json_object_get_uint64(get(o, "wp")) == wp,
				      "%s zone %u: daemon wp %" PRIu64 ", device %" PRIu64, dev, idx,
				      json_object_get_uint64(get(o, "wp")), wp);
			ck_assert_uint_eq(json_object_get_uint64(get(o, "start")), f->start);
			ck_assert_uint_eq(json_object_get_uint64(get(o, "capacity")), f->capacity);
			seen++;
		}
		next = get(r, "result.next");
		from = next ? json_object_get_int64(next) : -1;
		json_object_put(r);
	}
	ck_assert_uint_eq(seen, nr);
	for (uint32_t i = 0; i < nr; i++)
		by_cond[files[i].cond]++;
	snprintf(p, sizeof(p), "{\"device\":\"%s\"}", dev);
	r = call(s, "device.info", p, NULL);
	conds = get(r, "result.zones_by_cond");
	ck_assert_msg(conds, "%s", json_object_to_json_string(r));
	for (unsigned c = 0; c < ZP_COND_COUNT; c++)
		ck_assert_msg(json_object_get_int64(get(conds, zp_cond_name(c))) == by_cond[c],
			      "%s: %u zones %s on the device", dev, by_cond[c], zp_cond_name(c));
	json_object_put(r);
	free(files);
}

static void views_match(int s)
{
	view_matches_device(s, "a", path_a);
	view_matches_device(s, "b", path_b);
}

static unsigned nr_leases(int s)
{
	struct json_object *r = call(s, "lease.list", "{}", NULL);
	unsigned n = (unsigned)json_object_array_length(get(r, "result.leases"));

	json_object_put(r);
	return n;
}

/* Device "a" ran report #1 at start-up. Each operation kind fails once,
 * with -32000 and its errno, and the zones and leases around it stay as
 * they were. */
START_TEST(eio_on_nth_op)
{
	struct json_object *r;
	struct held h3, h4, h5;
	int s;

	start("eio:report:2,eio:refresh:3,enospc:refresh:5,eio:open-fd:3,eio:zone-op:2");
	s = conn();
	h3 = acquire(s, "a", 3); /* refresh #1, open-fd #1 */
	h4 = acquire(s, "a", 4); /* refresh #2, open-fd #2 */
	views_match(s);

	json_object_put(call_fails(s, "zone.report", "{\"device\":\"a\"}", ZP_ERR_IO, EIO));
	views_match(s);
	call_ok(s, "zone.report", "{\"device\":\"a\"}");

	/* refresh #3 fails; the lease stays held, the other is untouched. */
	json_object_put(call_fails(s, "lease.sync", lp(&h3, ""), ZP_ERR_IO, EIO));
	views_match(s);
	call_ok(s, "lease.sync", lp(&h3, ""));
	/* refresh #5: ENOSPC is -32000 too, with its own errno. */
	json_object_put(call_fails(s, "lease.sync", lp(&h4, ""), ZP_ERR_IO, ENOSPC));
	call_ok(s, "lease.sync", lp(&h4, ""));
	views_match(s);

	/* open-fd #3: no lease, no zone kept, the zone can be leased again. */
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":5}", ZP_ERR_IO,
				   EIO));
	ck_assert_uint_eq(nr_leases(s), 2);
	views_match(s);
	h5 = acquire(s, "a", 5);
	ck_assert_uint_eq(nr_leases(s), 3);

	/* zone-op #2: nothing done, and said so. */
	call_ok(s, "zone.finish", "{\"device\":\"a\",\"zone\":7}");
	r = call_fails(s, "zone.reset", "{\"device\":\"a\",\"zone\":7}", ZP_ERR_IO, EIO);
	ck_assert_int_eq(json_object_get_int(get(r, "error.data.done")), 0);
	json_object_put(r);
	views_match(s);
	call_ok(s, "zone.reset", "{\"device\":\"a\",\"zone\":7}");

	/* Single failures with successes between them fail no device. */
	ck_assert(!failed(s, "a", NULL, 0));
	call_ok(s, "lease.release", lp(&h3, ""));
	call_ok(s, "lease.release", lp(&h4, ""));
	call_ok(s, "lease.release", lp(&h5, ""));
	views_match(s);
	close(s);
	stop();
}
END_TEST

/* One zone that fails every command: its operations fail with EIO, every
 * other zone works, and however often it is tried the device is not failed
 * (the failure rule needs more than one zone). */
START_TEST(eio_on_one_zone)
{
	struct json_object *r;
	struct held h;
	int s;

	start("eio-zone:5");
	s = conn();
	for (int i = 0; i < 2 * 3; i++)
		json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":5}",
					   ZP_ERR_IO, EIO));
	r = call_fails(s, "zone.finish", "{\"device\":\"a\",\"zone\":4,\"count\":3}", ZP_ERR_IO,
		       EIO);
	ck_assert_int_eq(json_object_get_int(get(r, "error.data.done")), 1);
	json_object_put(r);
	ck_assert(!failed(s, "a", NULL, 0));
	ck_assert_uint_eq(nr_leases(s), 0);
	views_match(s);
	h = acquire(s, "a", 6);
	call_ok(s, "lease.finish", lp(&h, ""));
	call_ok(s, "zone.finish", "{\"device\":\"a\",\"zone\":7}");
	views_match(s);
	close(s);
	stop();
}
END_TEST

/* A leased zone turns read-only under its holder: the holder's next calls
 * fail with -32009 naming the condition, its release ends the lease, the
 * zone leaves the allocator and a waiter for it is refused rather than
 * given it. */
START_TEST(zone_turns_readonly)
{
	struct json_object *r;
	struct held h5, h6;
	int s, s2, ev;

	start("readonly:5:refresh:3");
	s = conn();
	s2 = conn();
	ev = conn();
	call_ok(ev, "events.subscribe", "{\"types\":\"zone\"}");
	h5 = acquire(s, "a", 5); /* refresh #1 */
	h6 = acquire(s, "a", 6); /* refresh #2 */
	send_call(s2, "lease.acquire", "{\"device\":\"a\",\"zone\":5,\"wait_ms\":20000}");
	usleep(100 * 1000);

	r = call_fails(s, "lease.sync", lp(&h5, ""), ZP_ERR_ZONE_STATE, EPERM);
	ck_assert_str_eq(json_object_get_string(get(r, "error.data.cond")), "read-only");
	json_object_put(r);
	views_match(s);
	/* The change of condition is an event too. */
	for (;;) {
		r = recv_msg(ev, NULL, true);
		if (json_object_get_int(get(r, "params.zone")) == 5 &&
		    strcmp(json_object_get_string(get(r, "params.cond")), "read-only") == 0)
			break;
		json_object_put(r);
	}
	json_object_put(r);
	close(ev);
	/* Known now: refused without a trip to the device. */
	r = call_fails(s, "lease.finish", lp(&h5, ""), ZP_ERR_ZONE_STATE, EPERM);
	ck_assert_str_eq(json_object_get_string(get(r, "error.data.cond")), "read-only");
	json_object_put(r);
	/* The other zone is untouched. */
	call_ok(s, "lease.sync", lp(&h6, ""));
	r = call(s, "lease.release", lp(&h5, ""), NULL);
	ck_assert_msg(code_of(r) == 0, "%s", json_object_to_json_string(r));
	ck_assert_str_eq(json_object_get_string(get(r, "result.zone.cond")), "read-only");
	json_object_put(r);
	/* The waiter learns the zone cannot be leased. */
	r = recv_reply(s2, NULL);
	ck_assert_msg(code_of(r) == ZP_ERR_ZONE_STATE, "%s", json_object_to_json_string(r));
	json_object_put(r);
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":5}",
				   ZP_ERR_ZONE_STATE, 0));
	views_match(s);
	call_ok(s, "lease.release", lp(&h6, ""));
	views_match(s);
	close(s2);
	close(s);
	stop();
}
END_TEST

/* The zone the allocator picks goes offline as it is granted: the acquire
 * of "any zone" gets another one, and the dead zone is out of the
 * allocator from then on. */
START_TEST(zone_goes_offline_under_grant)
{
	struct json_object *r;
	struct held h;
	int s;

	start("offline:1:refresh:1");
	s = conn();
	h = acquire(s, "a", -1);
	ck_assert_uint_ne(h.zone, 1);
	views_match(s);
	r = call(s, "zone.report", "{\"device\":\"a\",\"cached\":true,\"from\":1,\"count\":1}", NULL);
	ck_assert_str_eq(json_object_get_string(
		json_object_array_get_idx(get(r, "result.zones"), 0) ? get(
			json_object_array_get_idx(get(r, "result.zones"), 0), "cond") : NULL), "offline");
	json_object_put(r);
	for (int i = 0; i < 13; i++) {
		struct held o = acquire(s, "a", -1);

		ck_assert_uint_ne(o.zone, 1);
	}
	/* 15 sequential zones, one offline, 14 leased: none left. */
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\"}", ZP_ERR_NO_FREE_ZONE,
				   0));
	views_match(s);
	close(s);
	stop();
}
END_TEST

/* Device "a" vanishes under a grant, with leases held on it and on "b" and
 * an acquire waiting for one of a's zones: a is failed, with the reason,
 * its leases revoked, its waiter answered -32002; b and its lease carry on,
 * and the daemon serves everyone else. */
START_TEST(device_vanishes)
{
	struct json_object *r, *arr;
	struct held a2, a3, b2;
	char why[256], want[64];
	int s, s2, sb, ev;

	start("vanish:open-fd:3");
	s = conn();
	s2 = conn();
	sb = conn();
	ev = conn();
	call_ok(ev, "events.subscribe", "{\"types\":\"device\"}");
	revoked_seen[0] = '\0';
	a2 = acquire(s, "a", 2);
	a3 = acquire(s, "a", 3);
	b2 = acquire(sb, "b", 2);
	send_call(s2, "lease.acquire", "{\"device\":\"a\",\"zone\":2,\"wait_ms\":20000}");
	usleep(100 * 1000);
	views_match(s);

	/* open-fd #3: the device is gone. */
	r = call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":4}", ZP_ERR_NO_DEVICE, 0);
	json_object_put(r);
	ck_assert(failed(s, "a", why, sizeof(why)));
	ck_assert_msg(strstr(why, "gone"), "%s", why);
	ck_assert(!failed(s, "b", NULL, 0));
	r = call(s, "device.list", "{}", NULL);
	arr = get(r, "result.devices");
	ck_assert(json_object_get_boolean(get(json_object_array_get_idx(arr, 0), "failed")));
	ck_assert(!json_object_get_boolean(get(json_object_array_get_idx(arr, 1), "failed")));
	json_object_put(r);

	/* Subscribers are told, with the reason. */
	r = recv_msg(ev, NULL, true);
	ck_assert_str_eq(json_object_get_string(get(r, "params.type")), "device.failed");
	ck_assert_str_eq(json_object_get_string(get(r, "params.device")), "a");
	ck_assert_str_eq(json_object_get_string(get(r, "params.reason")), why);
	json_object_put(r);

	/* The waiter is answered, the holder's leases are revoked. */
	r = recv_reply(s2, NULL);
	ck_assert_msg(code_of(r) == ZP_ERR_NO_DEVICE, "%s", json_object_to_json_string(r));
	ck_assert_ptr_nonnull(get(r, "error.data.failure"));
	json_object_put(r);
	json_object_put(call_fails(s, "lease.sync", lp(&a2, ""), ZP_ERR_STALE_LEASE, 0));
	json_object_put(call_fails(s, "lease.release", lp(&a3, ""), ZP_ERR_STALE_LEASE, 0));
	ck_assert_uint_eq(nr_leases(s), 0);
	/* The holder was told of both, and why. */
	snprintf(want, sizeof(want), " %" PRIu64 ":device-failed", a2.id);
	ck_assert_msg(strstr(revoked_seen, want), "told:%s", revoked_seen);
	snprintf(want, sizeof(want), " %" PRIu64 ":device-failed", a3.id);
	ck_assert_msg(strstr(revoked_seen, want), "told:%s", revoked_seen);
	/* A failed device takes no new work. */
	json_object_put(call_fails(s, "zone.report", "{\"device\":\"a\"}", ZP_ERR_NO_DEVICE, 0));
	json_object_put(call_fails(s, "zone.reset", "{\"device\":\"a\",\"zone\":5}",
				   ZP_ERR_NO_DEVICE, 0));
	json_object_put(call_fails(s, "device.open", "{\"device\":\"a\"}", ZP_ERR_NO_DEVICE, 0));
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\"}", ZP_ERR_NO_DEVICE, 0));

	/* b: its lease untouched, and served as before. */
	ck_assert_uint_eq(nr_leases(sb), 1);
	call_ok(sb, "lease.sync", lp(&b2, ""));
	{
		struct held any = acquire(s, "b", -1);

		ck_assert_uint_ne(any.zone, 2);
		call_ok(s, "lease.release", lp(&any, ""));
	}
	/* An acquire of any device skips the failed one. */
	{
		struct json_object *r2 = call(s, "lease.acquire", "{\"direct\":false}", NULL);

		ck_assert_msg(code_of(r2) == 0, "%s", json_object_to_json_string(r2));
		ck_assert_str_eq(json_object_get_string(get(r2, "result.lease.device")), "b");
		json_object_put(r2);
	}
	views_match(s);
	call_ok(sb, "lease.release", lp(&b2, ""));
	views_match(s);
	call_ok(s, "daemon.hello", "{}");
	close(ev);
	close(s2);
	close(sb);
	close(s);
	/* The lease table forgot the revoked leases: a restart orphans none
	 * of them (and a's fault is armed afresh, so a is served again). */
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	{
		const char *args[] = { "--config", conf, NULL };

		ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not restart, see %s", z.log);
	}
	s = conn();
	r = call(s, "lease.list", "{\"all\":true}", NULL);
	ck_assert_msg(json_object_array_length(get(r, "result.leases")) == 0, "%s",
		      json_object_to_json_string(r));
	json_object_put(r);
	ck_assert(!failed(s, "a", NULL, 0));
	views_match(s);
	close(s);
	stop();
}
END_TEST

/* EIO on every command from the 2nd on: the third failed operation on a
 * second zone fails the device; the other device's lease stays. Device
 * isolation: with zone isolation the fence after each failed acquire (not
 * faulted by "any") succeeds, which ends the streak of errors. */
START_TEST(repeated_eio_fails_device)
{
	struct held b;
	char why[256];
	int s;

	start_iso("eio:any:2:0", "device");
	s = conn();
	b = acquire(s, "b", 3);
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":2}", ZP_ERR_IO,
				   EIO));
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":3}", ZP_ERR_IO,
				   EIO));
	ck_assert(!failed(s, "a", NULL, 0));
	json_object_put(call_fails(s, "lease.acquire", "{\"device\":\"a\",\"zone\":2}", ZP_ERR_IO,
				   EIO));
	ck_assert(failed(s, "a", why, sizeof(why)));
	ck_assert_msg(strstr(why, "I/O error"), "%s", why);
	call_ok(s, "lease.sync", lp(&b, ""));
	views_match(s);
	close(s);
	stop();
}
END_TEST

static Suite *suite(void)
{
	Suite *su = suite_create("faults");
	TCase *tc = tcase_create("backend");

	tcase_add_test(tc, spec_grammar);
	tcase_add_test(tc, backend_env);
	tcase_add_test(tc, backend_nth_op);
	tcase_add_test(tc, backend_zone_eio);
	tcase_add_test(tc, backend_cond_and_vanish);
	suite_add_tcase(su, tc);
	tc = tcase_create("daemon");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, eio_on_nth_op);
	tcase_add_test(tc, eio_on_one_zone);
	tcase_add_test(tc, zone_turns_readonly);
	tcase_add_test(tc, zone_goes_offline_under_grant);
	tcase_add_test(tc, device_vanishes);
	tcase_add_test(tc, repeated_eio_fails_device);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed_n;

	srunner_run_all(sr, CK_NORMAL);
	failed_n = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed_n ? EXIT_FAILURE : EXIT_SUCCESS;
}
