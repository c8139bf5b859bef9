/* The lease lifecycle: the state machine's transition table (unit), the
 * persisted lease table (unit, on a temporary state directory), and leases
 * surviving a SIGKILLed daemon end to end: orphaned zones given to nobody
 * else during the grace, lease.reclaim with the right and a wrong token,
 * expiry, reclaimable leases on connection loss, ids and tokens that never
 * repeat. Raw JSON over the socket: the client library does not reclaim. */
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
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "daemon/daemon.h"
#include "daemon/log.h"
#include "proto/proto.h"
#include "tests/fixture.h"

#define BLOCK 4096
#define ZONE (1u << 20)

/* --- the state machine --------------------------------------------------- */

START_TEST(transitions_legal)
{
	static const struct {
		enum zd_lease_state from, to;
	} ok[] = {
		{ ZD_LEASE_GRANTING, ZD_LEASE_HELD },     { ZD_LEASE_GRANTING, ZD_LEASE_FREE },
		{ ZD_LEASE_GRANTING, ZD_LEASE_REVOKED },  { ZD_LEASE_HELD, ZD_LEASE_RELEASING },
		{ ZD_LEASE_HELD, ZD_LEASE_ORPHANED },     { ZD_LEASE_HELD, ZD_LEASE_REVOKED },
		{ ZD_LEASE_ORPHANED, ZD_LEASE_RECLAIMING }, { ZD_LEASE_ORPHANED, ZD_LEASE_RELEASING },
		{ ZD_LEASE_ORPHANED, ZD_LEASE_REVOKED },  { ZD_LEASE_RECLAIMING, ZD_LEASE_HELD },
		{ ZD_LEASE_RECLAIMING, ZD_LEASE_ORPHANED }, { ZD_LEASE_RECLAIMING, ZD_LEASE_REVOKED },
		{ ZD_LEASE_RELEASING, ZD_LEASE_FREE },    { ZD_LEASE_REVOKED, ZD_LEASE_FREE },
	};
	unsigned n = 0;

	/* Exactly these, nothing else: every pair is checked. */
	for (int f = 0; f < ZD_LEASE_NR_STATES; f++) {
		for (int t = 0; t < ZD_LEASE_NR_STATES; t++) {
			bool want = false;

			for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
				if (ok[i].from == (enum zd_lease_state)f &&
				    ok[i].to == (enum zd_lease_state)t)
					want = true;
			ck_assert_msg(zd_lease_transition_ok(f, t) == want, "%s -> %s",
				      zd_lease_state_name(f), zd_lease_state_name(t));
			n += want;
		}
	}
	ck_assert_uint_eq(n, sizeof(ok) / sizeof(ok[0]));
	/* A freed lease never comes back; nothing goes back to granting. */
	for (int s = 0; s < ZD_LEASE_NR_STATES; s++) {
		ck_assert(!zd_lease_transition_ok(ZD_LEASE_FREE, s));
		ck_assert(!zd_lease_transition_ok(s, ZD_LEASE_GRANTING));
	}
	ck_assert(!zd_lease_transition_ok(ZD_LEASE_NR_STATES, ZD_LEASE_FREE));
	ck_assert_str_eq(zd_lease_state_name(ZD_LEASE_ORPHANED), "orphaned");
}
END_TEST

START_TEST(set_state_follows_the_table)
{
	struct zd_lease l = { .state = ZD_LEASE_GRANTING, .id = 7 };

	zd_list_init(&l.orphan_link);
	ck_assert_int_eq(zd_lease_set_state(&l, ZD_LEASE_HELD), 0);
	ck_assert_int_eq(l.state, ZD_LEASE_HELD);
	ck_assert_int_eq(zd_lease_set_state(&l, ZD_LEASE_ORPHANED), 0);
	ck_assert_int_eq(zd_lease_set_state(&l, ZD_LEASE_RECLAIMING), 0);
	ck_assert_int_eq(zd_lease_set_state(&l, ZD_LEASE_HELD), 0);
	ck_assert_int_eq(zd_lease_set_state(&l, ZD_LEASE_RELEASING), 0);
	ck_assert_int_eq(zd_lease_set_state(&l, ZD_LEASE_FREE), 0);
}
END_TEST

/* A debug build (this one: no NDEBUG) aborts on an illegal transition. */
START_TEST(illegal_transition_aborts)
{
	struct zd_lease l = { .state = ZD_LEASE_RELEASING, .id = 8 };

	zd_log_set_level(LOG_CRIT);
	zd_lease_set_state(&l, ZD_LEASE_HELD);
}
END_TEST

/* --- the persisted table ------------------------------------------------- */

static void state_dir(struct zd_daemon *d, char *dir, size_t size)
{
	char why[256];

	memset(d, 0, sizeof(*d));
	snprintf(dir, size, "%s/zoned-lc-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(chmod(dir, 0700), 0);
	snprintf(d->cfg.state_dir, sizeof(d->cfg.state_dir), "%s", dir);
	ck_assert_int_eq(zd_state_open(d, why, sizeof(why)), 0);
	d->next_lease_id = 1;
}

static void rm_state(struct zd_daemon *d, const char *dir)
{
	char cmd[600];

	zd_state_leases_close(d);
	zd_state_close(d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct zd_lease_rec rec(uint64_t id, uint32_t zone)
{
	struct zd_lease_rec r = { .id = id, .token = (5ull << 32) | id, .wp = zone * ZONE + BLOCK,
				  .zone = zone, .pid = 42, .uid = 1000, .direct = true };

	snprintf(r.device, sizeof(r.device), "emu 0");
	snprintf(r.label, sizeof(r.label), "label %u \"x\"", zone);
	return r;
}

START_TEST(table_round_trip)
{
	struct zd_daemon d, d2;
	struct zd_lease_rec *recs, a = rec(3, 2), b = rec(4, 5), c = rec(9, 6);
	char dir[256];
	size_t n;

	zd_log_set_level(LOG_CRIT);
	state_dir(&d, dir, sizeof(dir));
	ck_assert_int_eq(zd_state_leases_rewrite(&d, NULL, 0), 0);
	ck_assert_int_eq(zd_state_lease_put(&d, &a), 0);
	ck_assert_int_eq(zd_state_lease_put(&d, &b), 0);
	ck_assert_int_eq(zd_state_lease_put(&d, &c), 0);
	ck_assert_int_eq(zd_state_lease_end(&d, 4), 0);
	b.pid = 43; /* a reclaim rewrites a lease */
	c.pid = 44;
	ck_assert_int_eq(zd_state_lease_put(&d, &c), 0);

	memset(&d2, 0, sizeof(d2));
	d2.state_fd = d.state_fd;
	d2.have_state_fd = true;
	d2.next_lease_id = 1;
	snprintf(d2.cfg.state_dir, sizeof(d2.cfg.state_dir), "%s", dir);
	ck_assert_int_eq(zd_state_leases_load(&d2, &recs, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(d2.next_lease_id, 10);
	for (size_t i = 0; i < n; i++) {
		const struct zd_lease_rec *want = recs[i].id == 3 ? &a : &c;

		ck_assert_uint_eq(recs[i].token, want->token);
		ck_assert_uint_eq(recs[i].wp, want->wp);
		ck_assert_uint_eq(recs[i].zone, want->zone);
		ck_assert_int_eq(recs[i].pid, want->pid);
		ck_assert_uint_eq(recs[i].uid, want->uid);
		ck_assert(recs[i].direct && !recs[i].reclaimable);
		ck_assert_str_eq(recs[i].device, "emu 0");
		ck_assert_str_eq(recs[i].label, want->label);
	}
	free(recs);

	/* Rewritten with nothing live: the next id survives on its own. */
	d.next_lease_id = 10;
	ck_assert_int_eq(zd_state_leases_rewrite(&d, NULL, 0), 0);
	d2.next_lease_id = 1;
	ck_assert_int_eq(zd_state_leases_load(&d2, &recs, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(d2.next_lease_id, 10);
	free(recs);
	rm_state(&d, dir);
}
END_TEST

/* A torn last append and a damaged line are skipped; the rest is read. */
START_TEST(table_damage)
{
	struct zd_daemon d;
	struct zd_lease_rec *recs, a = rec(1, 2), b = rec(2, 3);
	char dir[256], path[300], buf[4096];
	size_t n;
	int fd;
	ssize_t len;

	zd_log_set_level(LOG_CRIT);
	state_dir(&d, dir, sizeof(dir));
	ck_assert_int_eq(zd_state_leases_rewrite(&d, NULL, 0), 0);
	ck_assert_int_eq(zd_state_lease_put(&d, &a), 0);
	ck_assert_int_eq(zd_state_lease_put(&d, &b), 0);
	snprintf(path, sizeof(path), "%s/leases", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	len = pread(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(len, 0);
	buf[len] = '\0';
	/* Flip a digit of lease 1's record (its zone), and append half a line. */
	char *g = strstr(buf, " G 1 ");
	ck_assert_ptr_nonnull(g);
	g[3] = '7';
	ck_assert_int_eq(pwrite(fd, buf, (size_t)len, 0), len);
	ck_assert_int_eq(pwrite(fd, "1234abcd E 2", 12, len), 12);
	close(fd);
	ck_assert_int_eq(zd_state_leases_load(&d, &recs, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(recs[0].id, 2);
	free(recs);
	rm_state(&d, dir);
}
END_TEST

/* --- end to end ---------------------------------------------------------- */

static struct zt_daemon z;
static char emu[600], grace[32];

static void start_daemon(unsigned grace_ms)
{
	const char *args[] = { "--emulate", emu, "--grace-ms", grace, NULL };

	snprintf(grace, sizeof(grace), "%u", grace_ms);
	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
}

static void start(unsigned grace_ms)
{
	memset(&z, 0, sizeof(z));
	ck_assert_int_eq(zt_daemon_start(&z, (const char *const[]){ NULL }), 0);
	zt_daemon_stop(&z);
	snprintf(emu, sizeof(emu), "%s/dev.img,id=emu0,size=16M,zone-size=1M,conv=1,lbs=4096",
		 z.dir);
	start_daemon(grace_ms);
}

static void crash(void)
{
	int status;

	ck_assert_int_eq(kill(z.pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(z.pid, &status, 0), z.pid);
	ck_assert(WIFSIGNALED(status));
	z.pid = 0;
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

/* One call; the reply (owned) and any fd passed with it. */
static struct json_object *call(int s, const char *method, const char *params, int *fd_out)
{
	static char buf[ZP_MSG_MAX + 1];
	struct pollfd p = { .fd = s, .events = POLLIN };
	int n, rfd = -1;
	ssize_t len;

	n = snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}",
		     method, params);
	ck_assert_int_eq(zp_send(s, buf, (size_t)n, -1, 0), 0);
	ck_assert_int_eq(poll(&p, 1, 20000), 1);
	len = zp_recv(s, buf, sizeof(buf), &rfd, 0);
	ck_assert_int_gt(len, 0);
	if (fd_out)
		*fd_out = rfd;
	else if (rfd >= 0)
		close(rfd);
	return zp_parse(buf, (size_t)len);
}

static int code_of(struct json_object *r)
{
	struct json_object *e, *c;

	if (!json_object_object_get_ex(r, "error", &e) || !json_object_object_get_ex(e, "code", &c))
		return 0;
	return json_object_get_int(c);
}

static uint64_t lease_u64(struct json_object *r, const char *key)
{
	struct json_object *res, *l, *v;

	ck_assert_msg(json_object_object_get_ex(r, "result", &res), "%s",
		      json_object_to_json_string(r));
	ck_assert(json_object_object_get_ex(res, "lease", &l));
	ck_assert(json_object_object_get_ex(l, key, &v));
	return json_object_get_uint64(v);
}

struct held {
	uint64_t id, token, start;
	uint64_t fd_offset; /* where the zone starts in fd */
	int fd;
};

static struct held acquire(int s, int zone, bool reclaimable)
{
	char p[160];
	struct held h;
	struct json_object *r;

	snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%d,\"direct\":false%s}", zone,
		 reclaimable ? ",\"reclaimable\":true" : "");
	r = call(s, "lease.acquire", p, &h.fd);
	h.id = lease_u64(r, "id");
	h.token = lease_u64(r, "token");
	h.start = lease_u64(r, "start");
	h.fd_offset = lease_u64(r, "fd_offset");
	ck_assert_int_ge(h.fd, 0);
	json_object_put(r);
	return h;
}

static int try_acquire(int s, int zone)
{
	char p[96];
	struct json_object *r;
	int code;

	snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%d}", zone);
	r = call(s, "lease.acquire", p, NULL);
	code = code_of(r);
	json_object_put(r);
	return code;
}

static struct json_object *reclaim(int s, uint64_t id, uint64_t token, int *fd)
{
	char p[96];

	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", id, token);
	return call(s, "lease.reclaim", p, fd);
}

static void release(int s, const struct held *h)
{
	char p[96];
	struct json_object *r;

	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h->id, h->token);
	r = call(s, "lease.release", p, NULL);
	ck_assert_msg(code_of(r) == 0, "%s", json_object_to_json_string(r));
	json_object_put(r);
}

/* The state of lease id in lease.list, or NULL. */
static const char *listed_state(int s, uint64_t id, struct json_object **keep)
{
	struct json_object *r = call(s, "lease.list", "{}", NULL), *res, *arr;

	*keep = r;
	ck_assert(json_object_object_get_ex(r, "result", &res));
	ck_assert(json_object_object_get_ex(res, "leases", &arr));
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *o = json_object_array_get_idx(arr, i), *v;

		ck_assert(json_object_object_get_ex(o, "id", &v));
		if (json_object_get_uint64(v) != id)
			continue;
		/* An orphan's token is its owner's secret. */
		ck_assert(!json_object_object_get_ex(o, "token", NULL) ||
			  !json_object_object_get_ex(o, "state", &v) ||
			  strcmp(json_object_get_string(v), "orphaned") != 0);
		ck_assert(json_object_object_get_ex(o, "state", &v));
		return json_object_get_string(v);
	}
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

START_TEST(restart_orphans_and_reclaims)
{
	static char data[2 * BLOCK], back[2 * BLOCK];
	struct json_object *r, *keep;
	struct held a, b, other;
	int s, s2, fd = -1;

	start(60000);
	s = conn();
	a = acquire(s, 3, false);
	b = acquire(s, 5, false);
	memset(data, 0x5a, sizeof(data));
	ck_assert_int_eq(pwrite(a.fd, data, sizeof(data), (off_t)a.fd_offset), (ssize_t)sizeof(data));
	ck_assert_int_eq(fdatasync(a.fd), 0);
	close(a.fd);
	close(b.fd);
	crash();
	close(s);
	start_daemon(60000);

	s = conn();
	/* Orphaned: given to nobody else, shown with its state. */
	ck_assert_int_eq(try_acquire(s, 3), ZP_ERR_ZONE_LEASED);
	ck_assert_int_eq(try_acquire(s, 5), ZP_ERR_ZONE_LEASED);
	ck_assert_str_eq(listed_state(s, a.id, &keep), "orphaned");
	json_object_put(keep);
	/* Other zones are served, with ids and tokens never seen before. */
	other = acquire(s, 4, false);
	ck_assert_uint_gt(other.id, b.id);
	ck_assert_uint_gt(other.token >> 32, a.token >> 32);
	close(other.fd);

	/* A wrong token is a stale lease, and changes nothing. */
	r = reclaim(s, a.id, a.token + 1, NULL);
	ck_assert_int_eq(code_of(r), ZP_ERR_STALE_LEASE);
	json_object_put(r);
	ck_assert_int_eq(try_acquire(s, 3), ZP_ERR_ZONE_LEASED);

	/* The right token from a new connection: a fresh fd, the wp read
	 * from the device, the data intact. */
	s2 = conn();
	r = reclaim(s2, a.id, a.token, &fd);
	ck_assert_msg(code_of(r) == 0, "%s", json_object_to_json_string(r));
	ck_assert_uint_eq(lease_u64(r, "id"), a.id);
	ck_assert_uint_eq(lease_u64(r, "token"), a.token);
	ck_assert_uint_eq(lease_u64(r, "wp"), a.start + sizeof(data));
	json_object_put(r);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, back, sizeof(back), (off_t)a.fd_offset), (ssize_t)sizeof(back));
	ck_assert_mem_eq(back, data, sizeof(data));
	close(fd);
	ck_assert_str_eq(listed_state(s2, a.id, &keep), "held");
	json_object_put(keep);
	/* Held by the new connection: a second reclaim finds no orphan. */
	r = reclaim(s, a.id, a.token, NULL);
	ck_assert_int_eq(code_of(r), ZP_ERR_STALE_LEASE);
	json_object_put(r);
	release(s2, &a);
	ck_assert_int_eq(try_acquire(s, 3), 0);

	/* A reclaimed lease is persisted again: it survives a second crash. */
	close(s2);
	close(s);
	crash();
	start_daemon(60000);
	s = conn();
	ck_assert_int_eq(try_acquire(s, 5), ZP_ERR_ZONE_LEASED);
	r = reclaim(s, b.id, b.token, &fd);
	ck_assert_int_eq(code_of(r), 0);
	json_object_put(r);
	close(fd);
	release(s, &b);
	close(s);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}
END_TEST

START_TEST(grace_expiry_releases)
{
	struct json_object *r;
	struct held a;
	uint64_t t0, dt;
	int s;

	start(400);
	s = conn();
	a = acquire(s, 6, false);
	close(a.fd);
	crash();
	close(s);
	start_daemon(400);
	t0 = now_ms();
	s = conn();
	/* A waiter for the orphaned zone waits until the grace is over. */
	r = call(s, "lease.acquire", "{\"device\":\"emu0\",\"zone\":6,\"wait_ms\":10000}", NULL);
	dt = now_ms() - t0;
	ck_assert_msg(code_of(r) == 0, "%s", json_object_to_json_string(r));
	ck_assert_uint_ne(lease_u64(r, "id"), a.id);
	json_object_put(r);
	ck_assert_msg(dt >= 300 && dt < 5000, "granted after %" PRIu64 " ms", dt);
	r = reclaim(s, a.id, a.token, NULL);
	ck_assert_int_eq(code_of(r), ZP_ERR_STALE_LEASE);
	json_object_put(r);
	close(s);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}
END_TEST

/* The next event on s is of this type and lease. */
static void expect_event(int s, const char *type, uint64_t id)
{
	static char buf[ZP_MSG_MAX + 1];
	struct pollfd p = { .fd = s, .events = POLLIN };
	struct json_object *r, *params, *v;
	ssize_t len;

	ck_assert_int_eq(poll(&p, 1, 10000), 1);
	len = zp_recv(s, buf, sizeof(buf), NULL, 0);
	ck_assert_int_gt(len, 0);
	r = zp_parse(buf, (size_t)len);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(json_object_object_get_ex(r, "params", &params), "%s", buf);
	ck_assert(json_object_object_get_ex(params, "type", &v));
	ck_assert_str_eq(json_object_get_string(v), type);
	ck_assert(json_object_object_get_ex(params, "lease", &v));
	ck_assert_uint_eq(json_object_get_uint64(v), id);
	json_object_put(r);
}

/* Without a restart: a dropped connection releases its leases at once,
 * except those acquired reclaimable, orphaned for the grace. */
START_TEST(connection_loss)
{
	struct json_object *r, *keep;
	struct held plain, rec;
	int s, s2, fd = -1;

	int ev;

	start(60000);
	/* A subscriber sees the orphan and the reclaim. */
	ev = conn();
	r = call(ev, "events.subscribe", "{\"types\":[\"lease.orphaned\",\"lease.reclaimed\"]}",
		 NULL);
	ck_assert_int_eq(code_of(r), 0);
	json_object_put(r);
	s = conn();
	plain = acquire(s, 7, false);
	rec = acquire(s, 8, true);
	close(plain.fd);
	close(rec.fd);
	close(s);
	expect_event(ev, "lease.orphaned", rec.id);
	s2 = conn();
	r = call(s2, "lease.acquire", "{\"device\":\"emu0\",\"zone\":7,\"wait_ms\":5000}", NULL);
	ck_assert_int_eq(code_of(r), 0);
	json_object_put(r);
	ck_assert_int_eq(try_acquire(s2, 8), ZP_ERR_ZONE_LEASED);
	ck_assert_str_eq(listed_state(s2, rec.id, &keep), "orphaned");
	json_object_put(keep);
	r = reclaim(s2, rec.id, rec.token, &fd);
	ck_assert_msg(code_of(r) == 0, "%s", json_object_to_json_string(r));
	json_object_put(r);
	ck_assert_int_ge(fd, 0);
	close(fd);
	expect_event(ev, "lease.reclaimed", rec.id);
	release(s2, &rec);
	close(s2);
	close(ev);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}
END_TEST

/* SIGTERM (a restart, an upgrade) keeps the leases like a crash does. */
START_TEST(stop_keeps_leases)
{
	struct json_object *r;
	struct held a;
	int s, fd = -1;

	start(60000);
	s = conn();
	a = acquire(s, 9, false);
	close(a.fd);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	close(s);
	start_daemon(60000);
	s = conn();
	ck_assert_int_eq(try_acquire(s, 9), ZP_ERR_ZONE_LEASED);
	r = reclaim(s, a.id, a.token, &fd);
	ck_assert_int_eq(code_of(r), 0);
	json_object_put(r);
	close(fd);
	release(s, &a);
	close(s);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}
END_TEST


static int table_lines(void)
{
	char path[400], line[1100];
	FILE *f;
	int lines = 0;

	snprintf(path, sizeof(path), "%s/leases", z.state);
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	return lines;
}

/* Several grants in one packet share a flush; hundreds of changes pass the
 * rewrite mark (the table is rewritten from a snapshot); after a crash
 * exactly the leases still held come back. */
START_TEST(group_commit_and_rewrite)
{
	static char buf[ZP_MSG_MAX + 1];
	struct held keep[2], h;
	struct json_object *r;
	size_t len = 0;
	int s, n = 0, lines;
	uint64_t t0;

	start(60000);
	s = conn();
	buf[len++] = '[';
	for (int i = 0; i < 6; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len,
					"%s{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\","
					"\"params\":{\"device\":\"emu0\",\"zone\":%d},\"id\":%d}",
					i ? "," : "", 2 + i, i);
	buf[len++] = ']';
	ck_assert_int_eq(zp_send(s, buf, len, -1, 0), 0);
	for (int got = 0; got < 6;) {
		/* The fds of the grants are closed by zp_recv. */
		ssize_t k = zp_recv(s, buf, sizeof(buf), NULL, 0);
		ck_assert_int_gt(k, 0);
		r = zp_parse(buf, (size_t)k);
		ck_assert_ptr_nonnull(r);
		if (json_object_is_type(r, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(r); i++) {
				ck_assert_int_eq(code_of(json_object_array_get_idx(r, i)), 0);
				got++;
			}
		} else {
			ck_assert_int_eq(code_of(r), 0);
			got++;
		}
		json_object_put(r);
	}
	/* 150 cycles on zone 10: 300 records, past 2 x live + 256. */
	keep[0] = acquire(s, 12, false);
	keep[1] = acquire(s, 13, false);
	close(keep[0].fd);
	close(keep[1].fd);
	for (int i = 0; i < 150; i++, n++) {
		h = acquire(s, 10, false);
		close(h.fd);
		release(s, &h);
	}
	/* Rewritten on the way: fewer lines than the 310 records written. */
	lines = table_lines();
	ck_assert_msg(lines > 8 && lines < 280, "%d lines in the lease table", lines);
	/* Past the mark again within the second: not rewritten again until
	 * a second has passed since the last (when the cycles were quick
	 * enough to tell: not under valgrind). */
	t0 = now_ms();
	for (int i = 0; i < 150; i++, n++) {
		h = acquire(s, 10, false);
		close(h.fd);
		release(s, &h);
	}
	lines = table_lines();
	if (now_ms() - t0 < 700)
		ck_assert_msg(lines > 300, "%d lines: rewritten within the second", lines);
	usleep(1100 * 1000);
	h = acquire(s, 10, false);
	close(h.fd);
	release(s, &h);
	n++;
	lines = table_lines();
	ck_assert_msg(lines > 8 && lines < 40, "%d lines after a second", lines);
	crash();
	close(s);
	start_daemon(60000);
	s = conn();
	for (int zone = 2; zone < 8; zone++)
		ck_assert_int_eq(try_acquire(s, zone), ZP_ERR_ZONE_LEASED);
	ck_assert_int_eq(try_acquire(s, 12), ZP_ERR_ZONE_LEASED);
	ck_assert_int_eq(try_acquire(s, 13), ZP_ERR_ZONE_LEASED);
	ck_assert_int_eq(try_acquire(s, 10), 0);
	r = reclaim(s, keep[1].id, keep[1].token, NULL);
	ck_assert_int_eq(code_of(r), 0);
	json_object_put(r);
	ck_assert_int_eq(n, 301);
	close(s);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	zt_daemon_cleanup(&z);
}
END_TEST

/* A lease table that cannot be read: every new lease is refused, the
 * rest is served. */
START_TEST(unreadable_table_refuses_leases)
{
	struct json_object *r;
	char path[400];
	int s;

	start(60000);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	snprintf(path, sizeof(path), "%s/leases", z.state);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	start_daemon(60000);
	s = conn();
	ck_assert_int_eq(try_acquire(s, 3), ZP_ERR_IO);
	r = call(s, "zone.report", "{\"device\":\"emu0\",\"count\":2}", NULL);
	ck_assert_int_eq(code_of(r), 0);
	json_object_put(r);
	close(s);
	ck_assert_int_eq(zt_daemon_stop(&z), 0);
	ck_assert_int_eq(rmdir(path), 0);
	zt_daemon_cleanup(&z);
}
END_TEST

static Suite *lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tcase_create("states");

	tcase_add_test(tc, transitions_legal);
	tcase_add_test(tc, set_state_follows_the_table);
	/* Needs its own process: without fork the abort ends the run. */
	if (!getenv("CK_FORK") || strcmp(getenv("CK_FORK"), "no") != 0)
		tcase_add_test_raise_signal(tc, illegal_transition_aborts, SIGABRT);
	suite_add_tcase(s, tc);
	tc = tcase_create("table");
	tcase_add_test(tc, table_round_trip);
	tcase_add_test(tc, table_damage);
	suite_add_tcase(s, tc);
	tc = tcase_create("restart");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, restart_orphans_and_reclaims);
	tcase_add_test(tc, grace_expiry_releases);
	tcase_add_test(tc, connection_loss);
	tcase_add_test(tc, stop_keeps_leases);
	tcase_add_test(tc, group_commit_and_rewrite);
	tcase_add_test(tc, unreadable_table_refuses_leases);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lifecycle_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
