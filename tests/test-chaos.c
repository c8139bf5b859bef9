/* Chaos test: a real zonedd on a small emulated device with tight limits is
 * hammered for a few seconds by forked clients that acquire, write, sync,
 * release, batch, revoke, send garbage and die at random points (SIGKILL
 * mid-request included). Afterwards the daemon must still answer, hold no
 * lease, hold the fds it started with and exit 0 on SIGTERM — under valgrind
 * (ZT_DAEMON_WRAPPER) and in the ASan build too.
 *
 * Every random choice comes from a seeded generator (ZT_CHAOS_SEED, default
 * fixed; ZT_CHAOS_MS sets the duration), so a run is repeatable as far as
 * process scheduling allows. The checks are invariants that hold whatever the
 * interleaving, so the test cannot flake on timing, only fail on a bug. */
#include <config.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/proto.h"
#include "tests/fixture.h"

#define NCHILD 6
#define CHAOS_MS_DEFAULT 5000
#define SEED_DEFAULT 0x5eedc4a05ULL
/* Generous: a daemon under valgrind with six clients also under valgrind is
 * slow, but never a minute per request unless it is stuck. */
#define REPLY_TIMEOUT_MS 60000
#define SETTLE_MS 60000
#define BLOCK 4096
#define ZONE_SIZE (1u << 20)
#define ZONE_CAP (768u << 10)
#define NR_ZONES 16
#define NR_CONV 2
/* 14 sequential zones, capacity below the zone size, at most 4 leases at a
 * time (every lease counts as open) and 3 per connection: clients contend. */
#define DEV_SPEC "size=16M,zone-size=1M,zone-capacity=768K,conv=2,max-open=4,max-active=6,lbs=4096"
#define MAX_LEASES "3"
#define MAX_RX_FDS (ZP_MAX_FDS + 8)

static struct zt_daemon z;

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* --- seeded randomness (splitmix64) ----------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t x = (r->s += 0x9e3779b97f4a7c15ULL);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint32_t rnd_below(struct rng *r, uint32_t n)
{
	return n ? (uint32_t)(rnd(r) % n) : 0;
}

static bool chance(struct rng *r, unsigned pct)
{
	return rnd_below(r, 100) < pct;
}

/* --- a child's view of the wire ---------------------------------------- */

static int child_slot = -1;
static char rxbuf[ZP_MSG_MAX + 1];

/* A child that sees the daemon misbehave says what and exits non-zero; the
 * parent fails the test on it. */
static void __attribute__((noreturn, format(printf, 1, 2))) child_fail(const char *fmt, ...)
{
	va_list ap;

	if (child_slot < 0)
		fprintf(stderr, "chaos parent: ");
	else
		fprintf(stderr, "chaos child %d (pid %d): ", child_slot, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1);
}

/* Dies the way a crashing client does: no close, no goodbye. */
static void __attribute__((noreturn)) die_now(void)
{
	raise(SIGKILL);
	_exit(3); /* not reached */
}

static int sock_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (strlen(z.sock) >= sizeof(sa.sun_path)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, z.sock, strlen(z.sock) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

struct conn {
	int fd;
	int64_t next_id;
	bool refused;   /* the daemon turned the connection away (too many) */
	bool lost;      /* the daemon closed it */
};

static void conn_open(struct conn *c)
{
	c->fd = sock_connect();
	c->next_id = 1;
	c->refused = c->lost = false;
	/* The daemon never stops listening while it lives. */
	if (c->fd < 0)
		child_fail("cannot connect to %s: %s", z.sock, strerror(-c->fd));
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Sends one packet with any number of fds (more than the daemon takes
 * too). Returns 0 or a negative errno. */
static int send_raw(int fd, const void *buf, size_t len, const int *fds, size_t nfds, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > 64)
		return -E2BIG;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

static int conn_send_str(struct conn *c, const char *s, size_t len)
{
	int r = send_raw(c->fd, s, len, NULL, 0, 0);

	if (r == -EPIPE || r == -ECONNRESET)
		c->lost = true;
	return r;
}

/* Builds and sends {"jsonrpc":"2.0","method":M[,"params":P][,"id":N]}.
 * params is JSON text or NULL. Returns the id (0 for a notification) or a
 * negative errno. */
static int64_t conn_call(struct conn *c, const char *method, bool notify, const char *params_fmt,
			 ...) __attribute__((format(printf, 4, 5)));
static int64_t conn_call(struct conn *c, const char *method, bool notify, const char *params_fmt,
			 ...)
{
	char params[2048] = "", buf[4096];
	int64_t id = notify ? 0 : c->next_id++;
	int n, r;

	if (params_fmt) {
		va_list ap;

		va_start(ap, params_fmt);
		vsnprintf(params, sizeof(params), params_fmt, ap);
		va_end(ap);
	}
	n = snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\"%s%s", method,
		     params_fmt ? ",\"params\":" : "", params);
	if (!notify)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"id\":%" PRId64, id);
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "}");
	r = conn_send_str(c, buf, (size_t)n);
	return r < 0 ? r : id;
}

struct reply {
	struct json_object *msg; /* a response object, or an array of them */
	int fds[MAX_RX_FDS];
	size_t nfds;
};

static void reply_clear(struct reply *rep)
{
	json_object_put(rep->msg);
	rep->msg = NULL;
	for (size_t i = 0; i < rep->nfds; i++)
		close(rep->fds[i]);
	rep->nfds = 0;
}

static int64_t resp_id(struct json_object *resp)
{
	struct json_object *v;

	if (!json_object_object_get_ex(resp, "id", &v) || !json_object_is_type(v, json_type_int))
		return -1;
	return json_object_get_int64(v);
}

/* 0 for a result, else the error code. */
static int resp_code(struct json_object *resp)
{
	struct json_object *e, *v;

	if (!json_object_object_get_ex(resp, "error", &e))
		return 0;
	json_object_object_get_ex(e, "code", &v);
	return json_object_get_int(v);
}

static struct json_object *resp_result(struct json_object *resp)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(resp, "result", &v);
	return v;
}

static uint64_t jget_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		child_fail("field '%s' missing in %s", key, json_object_to_json_string(o));
	return json_object_get_uint64(v);
}

/* A response as JSON-RPC 2.0 has it: exactly one of result and error; an
 * error with an integer code and a message. */
static void check_response(struct json_object *resp)
{
	struct json_object *v, *e;
	bool has_res = json_object_object_get_ex(resp, "result", &v);
	bool has_err = json_object_object_get_ex(resp, "error", &e);

	if (!json_object_is_type(resp, json_type_object) ||
	    !json_object_object_get_ex(resp, "jsonrpc", &v) ||
	    strcmp(json_object_get_string(v), "2.0") || !json_object_object_get_ex(resp, "id", &v) ||
	    has_res == has_err)
		child_fail("malformed response %s", json_object_to_json_string(resp));
	if (has_err && (!json_object_object_get_ex(e, "code", &v) ||
			!json_object_is_type(v, json_type_int) ||
			!json_object_object_get_ex(e, "message", &v) ||
			!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v)))
		child_fail("malformed error %s", json_object_to_json_string(resp));
	/* Nothing is ever answered with an internal error: no allocation
	 * fails here. */
	if (has_err && resp_code(resp) == ZP_ERR_INTERNAL)
		child_fail("internal error: %s", json_object_to_json_string(resp));
}

/* Receives one packet. 0, -ECONNRESET when the daemon closed the
 * connection, -EUSERS when it refused it, -ETIMEDOUT after timeout_ms (only
 * when the caller asked for a short wait; a reply the client is owed fails
 * the child instead). */
static int conn_recv_timeout(struct conn *c, struct reply *rep, int timeout_ms, bool owed)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_RX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = rxbuf, .iov_len = sizeof(rxbuf) };
	struct msghdr msg;
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	ssize_t n;
	int r;

	memset(rep, 0, sizeof(*rep));
	for (;;) {
		do
			r = poll(&pfd, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			if (owed)
				child_fail("no reply within %d ms: the daemon is stuck", timeout_ms);
			return -ETIMEDOUT;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != ECONNRESET)
			child_fail("recvmsg: %s", strerror(errno));
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n >= 0 && cm;
		     cm = CMSG_NXTHDR(&msg, cm)) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < k && rep->nfds < MAX_RX_FDS; i++)
				memcpy(&rep->fds[rep->nfds++], CMSG_DATA(cm) + i * sizeof(int),
				       sizeof(int));
		}
		if (n <= 0) {
			/* The daemon sends no empty packets: this is its close. */
			reply_clear(rep);
			c->lost = true;
			return c->refused ? -EUSERS : -ECONNRESET;
		}
		if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			child_fail("reply truncated (%zd bytes, flags %#x)", n, msg.msg_flags);
		rep->msg = zp_parse(rxbuf, (size_t)n);
		if (!rep->msg)
			child_fail("reply is not JSON: %.200s", rxbuf);
		if (json_object_is_type(rep->msg, json_type_array)) {
			size_t len = json_object_array_length(rep->msg);

			if (len == 0)
				child_fail("empty batch reply");
			for (size_t i = 0; i < len; i++)
				check_response(json_object_array_get_idx(rep->msg, i));
		} else if (json_object_object_get_ex(rep->msg, "method", NULL)) {
			/* Protocol 2: a holder is told of its lease's revocation
			 * by a notification, subscribed or not; a client that did
			 * not subscribe gets no other. */
			struct json_object *v, *p;

			if (!json_object_object_get_ex(rep->msg, "method", &v) ||
			    strcmp(json_object_get_string(v), "event") ||
			    json_object_object_get_ex(rep->msg, "id", NULL) ||
			    !json_object_object_get_ex(rep->msg, "params", &p) ||
			    !json_object_object_get_ex(p, "type", &v) ||
			    strcmp(json_object_get_string(v), "lease.revoked") ||
			    !json_object_object_get_ex(p, "lease", &v) || !json_object_is_type(v, json_type_int))
				child_fail("unexpected notification %s", json_object_to_json_string(rep->msg));
			reply_clear(rep);
			continue;
		} else {
			check_response(rep->msg);
			/* A refused connection gets one error, then the close. */
			if (resp_code(rep->msg) == ZP_ERR_PERM && resp_id(rep->msg) < 0) {
				c->refused = true;
				reply_clear(rep);
				continue;
			}
		}
		return 0;
	}
}

static int conn_recv(struct conn *c, struct reply *rep)
{
	return conn_recv_timeout(c, rep, REPLY_TIMEOUT_MS, true);
}

/* The connection went away under us: fine if the daemon refused it (too
 * many connections of our uid while killed ones are being reaped), a bug
 * otherwise — the daemon closes nobody who plays by the rules. */
static void conn_check_lost(struct conn *c, const char *what)
{
	if (c->refused)
		return;
	child_fail("the daemon closed the connection during %s", what);
}

/* Waits for the response to request id; earlier responses to other
 * requests of the same connection are dropped. 0 or a negative errno. */
static int conn_wait(struct conn *c, int64_t id, struct reply *rep, const char *what)
{
	for (;;) {
		int r = conn_recv(c, rep);

		if (r < 0) {
			conn_check_lost(c, what);
			return r;
		}
		if (!json_object_is_type(rep->msg, json_type_array) && resp_id(rep->msg) == id)
			return 0;
		if (!json_object_is_type(rep->msg, json_type_array) && resp_id(rep->msg) < 0)
			child_fail("%s: error without id: %s", what,
				   json_object_to_json_string(rep->msg));
		reply_clear(rep);
	}
}

/* Sends a request and waits for its response. 0 with rep filled, or a
 * negative errno when the connection is gone (refused). */
static int conn_rpc(struct conn *c, struct reply *rep, const char *method, const char *params)
{
	int64_t id = conn_call(c, method, false, params ? "%s" : NULL, params);

	if (id < 0) {
		/* A refused connection may fail the send before we read
		 * the refusal. */
		struct reply tmp;

		if (conn_recv_timeout(c, &tmp, REPLY_TIMEOUT_MS, false) == 0)
			reply_clear(&tmp);
		conn_check_lost(c, method);
		return (int)id;
	}
	return conn_wait(c, id, rep, method);
}

/* Copies tmpl into out with "@ID@" replaced by id; returns the length. */
static size_t fill_id(char *out, size_t size, const char *tmpl, int64_t id)
{
	const char *at = strstr(tmpl, "@ID@");

	if (!at)
		return (size_t)snprintf(out, size, "%s", tmpl);
	return (size_t)snprintf(out, size, "%.*s%" PRId64 "%s", (int)(at - tmpl), tmpl, id, at + 4);
}

static bool code_in(int code, const int *allowed)
{
	for (; *allowed; allowed++)
		if (*allowed == code)
			return true;
	return false;
}

static void expect_code(struct json_object *resp, const int *allowed, const char *what)
{
	int code = resp_code(resp);

	if (code && !code_in(code, allowed))
		child_fail("%s: unexpected error %s", what, json_object_to_json_string(resp));
}

#define CODES(...) ((const int[]){ __VA_ARGS__, 0 })
/* What lease.acquire may answer under contention: leased, nothing free, a
 * limit, timed out, conventional, out of range, revoked as it was granted. */
#define ACQUIRE_ERRORS                                                                   \
	CODES(ZP_ERR_ZONE_LEASED, ZP_ERR_NO_FREE_ZONE, ZP_ERR_LIMIT, ZP_ERR_TIMEOUT,       \
	      ZP_ERR_ZONE_STATE, ZP_ERR_NO_ZONE, ZP_ERR_STALE_LEASE)
/* What an operation on a held lease may answer: revoked, a refused wp, a
 * limit (an admin opened zones explicitly). */
#define LEASEOP_ERRORS CODES(ZP_ERR_STALE_LEASE, ZP_ERR_INVALID_PARAMS, ZP_ERR_LIMIT)
/* Admin zone operations: leased (no force), a limit, conventional, out of
 * range, a bad count, and the emulator's EIO for opening a full zone. */
#define ZONEOP_ERRORS                                                                    \
	CODES(ZP_ERR_ZONE_LEASED, ZP_ERR_LIMIT, ZP_ERR_ZONE_STATE, ZP_ERR_NO_ZONE,         \
	      ZP_ERR_INVALID_PARAMS, ZP_ERR_IO)

/* --- a lease as a child holds it --------------------------------------- */

struct held {
	uint64_t id, token, start, wp;
	uint32_t zone;
	int fd;
};

/* What the child saw last, to guess the daemon's next lease id and token. */
static uint64_t last_id, last_token;

/* Takes the lease out of an acquire response; the fd moves from rep. */
static void held_from(struct held *h, struct json_object *resp, struct reply *rep)
{
	struct json_object *res = resp_result(resp), *l, *fdv;
	uint64_t idx;

	if (!json_object_object_get_ex(res, "lease", &l) ||
	    !json_object_object_get_ex(res, "fd", &fdv))
		child_fail("acquire result without lease or fd: %s", json_object_to_json_string(res));
	idx = (uint64_t)json_object_get_int64(fdv);
	/* Each lease names its own fd of the packet: in range, not taken. */
	if (idx >= rep->nfds || rep->fds[idx] < 0)
		child_fail("acquire result names fd %" PRIu64 " of %zu", idx, rep->nfds);
	h->fd = rep->fds[idx];
	rep->fds[idx] = -1; /* taken */
	h->id = jget_u64(l, "id");
	h->token = jget_u64(l, "token");
	h->zone = (uint32_t)jget_u64(l, "zone");
	h->start = jget_u64(l, "start");
	h->wp = jget_u64(l, "wp");
	if (h->zone < NR_CONV || h->zone >= NR_ZONES || h->start != (uint64_t)h->zone * ZONE_SIZE)
		child_fail("lease of an impossible zone: %s", json_object_to_json_string(l));
	if (h->id > last_id) {
		last_id = h->id;
		last_token = h->token;
	}
}

static void reply_close_taken(struct reply *rep)
{
	size_t k = 0;

	for (size_t i = 0; i < rep->nfds; i++)
		if (rep->fds[i] >= 0)
			rep->fds[k++] = rep->fds[i];
	rep->nfds = k;
	reply_clear(rep);
}

static void held_update(struct held *h, struct json_object *resp)
{
	struct json_object *l;

	if (json_object_object_get_ex(resp_result(resp), "lease", &l))
		h->wp = jget_u64(l, "wp");
}

/* Writes a few blocks at the write pointer, as a lease holder does. Errors
 * do not matter: an admin may have taken the zone away meanwhile. */
static void held_write(struct rng *r, struct held *h)
{
	static char *buf;
	size_t n = (1 + rnd_below(r, 3)) * BLOCK;

	if (!buf && posix_memalign((void **)&buf, BLOCK, 3 * BLOCK))
		child_fail("out of memory");
	if (h->wp < h->start || h->wp + n > h->start + ZONE_CAP)
		return;
	memset(buf, 'a' + (int)rnd_below(r, 26), n);
	if (pwrite(h->fd, buf, n, (off_t)h->wp) == (ssize_t)n)
		h->wp += n;
}

/* A wp for lease.sync: mostly right, sometimes every kind of wrong. */
static void sync_params(struct rng *r, const struct held *h, char *buf, size_t len)
{
	uint64_t wp;

	switch (rnd_below(r, 10)) {
	case 0: snprintf(buf, len, "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h->id, h->token); return;
	case 1: wp = h->start + (uint64_t)rnd_below(r, ZONE_CAP / BLOCK + 2) * BLOCK; break;
	case 2: wp = h->wp + 1; break;                 /* misaligned */
	case 3: wp = h->start; break;                  /* maybe behind */
	case 4: wp = h->start + ZONE_SIZE; break;      /* past capacity */
	case 5: wp = rnd(r) >> 1; break;               /* anything */
	case 6:
		snprintf(buf, len, "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"wp\":\"x\"}", h->id,
			 h->token);
		return;
	case 7:
		snprintf(buf, len, "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"wp\":-4096}", h->id,
			 h->token);
		return;
	default: wp = h->wp; break;
	}
	snprintf(buf, len, "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"wp\":%" PRIu64 "}", h->id,
		 h->token, wp);
}

static const char *random_then(struct rng *r)
{
	static const char *const t[] = { "\"keep\"", "\"finish\"", "\"reset\"", "\"keep\"",
					 "\"reset\"", "\"bogus\"", "7", "null" };

	return t[rnd_below(r, 8)];
}

/* lease.acquire parameters, valid ones. */
static void acquire_params(struct rng *r, char *buf, size_t len, unsigned max_wait)
{
	int n = snprintf(buf, len, "{\"label\":\"chaos %d\"", child_slot);

	if (chance(r, 85))
		n += snprintf(buf + n, len - (size_t)n, ",\"device\":\"emu0\"");
	if (chance(r, 15) && strstr(buf, "device"))
		n += snprintf(buf + n, len - (size_t)n, ",\"zone\":%u", rnd_below(r, NR_ZONES + 2));
	if (max_wait && chance(r, 50))
		n += snprintf(buf + n, len - (size_t)n, ",\"wait_ms\":%u", 1 + rnd_below(r, max_wait));
	if (chance(r, 50))
		n += snprintf(buf + n, len - (size_t)n, ",\"direct\":%s",
			      chance(r, 50) ? "true" : "false");
	if (chance(r, 20))
		n += snprintf(buf + n, len - (size_t)n, ",\"prefer\":\"%s\"",
			      chance(r, 50) ? "partial" : "empty");
	/* At most the capacity: more is a bad request (-32602) since issue 13,
	 * which the checker would count as misbehaviour. */
	if (chance(r, 15))
		n += snprintf(buf + n, len - (size_t)n, ",\"min_free\":%u",
			      rnd_below(r, ZONE_CAP / BLOCK + 1) * BLOCK);
	snprintf(buf + n, len - (size_t)n, "}");
}

/* --- the actions -------------------------------------------------------- */

/* Acquire, use, then let go in one of many ways — or die holding it. */
static void act_hold(struct rng *r)
{
	struct conn c;
	struct reply rep;
	struct held h;
	char p[512];
	int64_t id;
	unsigned steps;

	conn_open(&c);
	acquire_params(r, p, sizeof(p), 400);
	id = conn_call(&c, "lease.acquire", false, "%s", p);
	if (id > 0 && chance(r, 6))
		die_now(); /* mid-request, maybe while waiting */
	if (id < 0 || chance(r, 5)) {
		conn_close(&c);
		return;
	}
	if (conn_wait(&c, id, &rep, "lease.acquire") < 0) {
		conn_close(&c);
		return;
	}
	if (resp_code(rep.msg)) {
		expect_code(rep.msg, ACQUIRE_ERRORS, "lease.acquire");
		if (rep.nfds)
			child_fail("an error came with %zu fds", rep.nfds);
		reply_clear(&rep);
		conn_close(&c);
		return;
	}
	if (rep.nfds != 1)
		child_fail("a lease came with %zu fds", rep.nfds);
	held_from(&h, rep.msg, &rep);
	reply_close_taken(&rep);

	steps = rnd_below(r, 6);
	for (unsigned i = 0; i < steps && !c.lost; i++) {
		const char *m = NULL;

		switch (rnd_below(r, 8)) {
		case 0:
		case 1:
			held_write(r, &h);
			continue;
		case 2:
		case 3:
			sync_params(r, &h, p, sizeof(p));
			m = "lease.sync";
			break;
		case 4:
			m = chance(r, 50) ? "lease.reset" : "lease.finish";
			snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h.id,
				 h.token);
			break;
		case 5:
			m = "lease.list";
			snprintf(p, sizeof(p), "{\"all\":%s}", chance(r, 50) ? "true" : "false");
			break;
		case 6: {
			/* Two operations on one lease in flight at once. */
			char s1[256], s2[256], b[700];
			int64_t i1 = c.next_id++, i2 = c.next_id++;
			int n;

			sync_params(r, &h, s1, sizeof(s1));
			sync_params(r, &h, s2, sizeof(s2));
			n = snprintf(b, sizeof(b),
				     "[{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\","
				     "\"params\":%s,\"id\":%" PRId64 "},"
				     "{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\","
				     "\"params\":%s,\"id\":%" PRId64 "}]",
				     s1, i1, s2, i2);
			/* On failure the loop ends: the connection is lost. */
			if (conn_send_str(&c, b, (size_t)n) < 0) {
				c.lost = true;
				continue;
			}
			if (conn_recv(&c, &rep) < 0) {
				conn_check_lost(&c, "a batch of syncs");
				continue;
			}
			if (!json_object_is_type(rep.msg, json_type_array) ||
			    json_object_array_length(rep.msg) != 2)
				child_fail("batch of 2 answered with %s",
					   json_object_to_json_string(rep.msg));
			for (size_t k = 0; k < 2; k++) {
				struct json_object *e = json_object_array_get_idx(rep.msg, k);

				expect_code(e, LEASEOP_ERRORS, "batched lease.sync");
				held_update(&h, e);
			}
			reply_clear(&rep);
			continue;
		}
		default:
			if (chance(r, 25))
				die_now(); /* holding a lease */
			continue;
		}
		if (conn_rpc(&c, &rep, m, p) < 0)
			break;
		expect_code(rep.msg, strcmp(m, "lease.list") ? LEASEOP_ERRORS : CODES(ZP_ERR_PERM), m);
		held_update(&h, rep.msg);
		reply_clear(&rep);
	}

	switch (rnd_below(r, 10)) {
	case 0:
	case 1:
		/* Drop it with the connection. */
		break;
	case 2:
		die_now();
	case 3:
	case 4:
		/* Release, and go without reading the answer (or die). */
		conn_call(&c, "lease.release", false,
			  "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":%s}", h.id, h.token,
			  random_then(r));
		if (chance(r, 40))
			die_now();
		break;
	default:
		snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":%s}", h.id,
			 h.token, random_then(r));
		if (conn_rpc(&c, &rep, "lease.release", p) == 0) {
			expect_code(rep.msg, LEASEOP_ERRORS, "lease.release");
			reply_clear(&rep);
		}
		break;
	}
	close(h.fd);
	conn_close(&c);
}

/* An acquire that waits, then its client dies or hangs up. */
static void act_wait_die(struct rng *r)
{
	struct conn c;

	conn_open(&c);
	if (chance(r, 50))
		conn_call(&c, "lease.acquire", false, "{\"device\":\"emu0\",\"zone\":%u,\"wait_ms\":%u}",
			  NR_CONV + rnd_below(r, NR_ZONES - NR_CONV), 500 + rnd_below(r, 3000));
	else
		conn_call(&c, "lease.acquire", false, "{\"wait_ms\":%u}", 500 + rnd_below(r, 3000));
	sleep_ms(rnd_below(r, 60));
	if (chance(r, 50))
		die_now();
	conn_close(&c);
}

/* A request of any kind, then death or a hang-up without reading it. */
static void act_raw_die(struct rng *r)
{
	struct conn c;
	char p[512];

	conn_open(&c);
	switch (rnd_below(r, 6)) {
	case 0:
		acquire_params(r, p, sizeof(p), 2000);
		conn_call(&c, "lease.acquire", false, "%s", p);
		break;
	case 1:
		conn_call(&c, "device.open", false, "{\"device\":\"emu0\",\"zone\":%u}",
			  rnd_below(r, NR_ZONES));
		break;
	case 2:
		conn_call(&c, "zone.report", false, "{\"device\":\"emu0\"}");
		break;
	case 3:
		conn_call(&c, "lease.sync", false, "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}",
			  last_id, last_token);
		break;
	case 4:
		conn_call(&c, rnd_below(r, 2) ? "zone.reset" : "zone.finish", false,
			  "{\"device\":\"emu0\",\"zone\":%u,\"force\":true}",
			  NR_CONV + rnd_below(r, NR_ZONES - NR_CONV));
		break;
	default: {
		/* Two acquires in one packet: two fds in flight. */
		static const char two[] =
			"[{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"id\":1},"
			"{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\","
			"\"params\":{\"wait_ms\":900},\"id\":2}]";

		conn_send_str(&c, two, sizeof(two) - 1);
		break;
	}
	}
	if (chance(r, 50)) {
		sleep_ms(rnd_below(r, 5));
		die_now();
	}
	conn_close(&c);
}

/* What one element of a batch is, and what it must be answered with. */
enum bkind { BK_ACQUIRE, BK_BADPARAM, BK_BADREQ, BK_NOTIFY, BK_HELLO, BK_GUESS };

static const char *const bad_acquire_params[] = {
	"{\"device\":\"emu0\",\"zone\":\"x\"}",
	"{\"wait_ms\":-1}",
	"{\"bogus\":1}",
	"{\"zone\":3}",
	"{\"prefer\":\"late\"}",
	"{\"direct\":\"yes\"}",
	"{\"device\":7}",
	"{\"min_free\":1.5}",
	"[\"emu0\"]",
	"{\"label\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
};

/* Not requests at all, or broken ones: -32600 each (@ID@ takes the id). */
static const char *const bad_requests[] = {
	"42",
	"\"daemon.hello\"",
	"{}",
	"{\"jsonrpc\":\"2.0\",\"id\":@ID@}",
	"{\"jsonrpc\":\"1.0\",\"method\":\"daemon.hello\",\"id\":@ID@}",
	"{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":@ID@}",
	"{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":5,\"id\":@ID@}",
	"[]",
};

#define NBAD_PARAMS (sizeof(bad_acquire_params) / sizeof(bad_acquire_params[0]))
#define ACQUIRE_FMT \
	"{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":%s,\"id\":%" PRId64 "}"

/* An array of requests, some bad, some acquires; answered, or not read. */
static void act_batch(struct rng *r)
{
	static char b[ZP_MSG_MAX];
	enum bkind kinds[24];
	int64_t ids[24];
	unsigned n = 1 + rnd_below(r, 16), answers = 0, leases = 0;
	struct conn c;
	struct reply rep;
	size_t len = 0;
	struct held h[24];

	conn_open(&c);
	len += (size_t)snprintf(b + len, sizeof(b) - len, "[");
	for (unsigned i = 0; i < n; i++) {
		char p[512];
		int64_t id = c.next_id++;
		unsigned k = rnd_below(r, 12);

		kinds[i] = k < 5 ? BK_ACQUIRE : k < 7 ? BK_BADPARAM : k < 8 ? BK_BADREQ :
			   k < 9 ? BK_NOTIFY : k < 10 ? BK_HELLO : BK_GUESS;
		if (kinds[i] == BK_GUESS && !last_id)
			kinds[i] = BK_HELLO;
		ids[i] = id;
		if (i)
			b[len++] = ',';
		switch (kinds[i]) {
		case BK_ACQUIRE:
			acquire_params(r, p, sizeof(p), 200);
			len += (size_t)snprintf(b + len, sizeof(b) - len, ACQUIRE_FMT, p, id);
			break;
		case BK_BADPARAM:
			len += (size_t)snprintf(b + len, sizeof(b) - len, ACQUIRE_FMT,
						bad_acquire_params[rnd_below(r, NBAD_PARAMS)], id);
			break;
		case BK_BADREQ:
			len += fill_id(b + len, sizeof(b) - len,
				       bad_requests[rnd_below(r, sizeof(bad_requests) /
								    sizeof(bad_requests[0]))],
				       id);
			break;
		case BK_NOTIFY:
			len += (size_t)snprintf(b + len, sizeof(b) - len,
						"{\"jsonrpc\":\"2.0\",\"method\":\"%s\"}",
						chance(r, 50) ? "daemon.hello" : "no.such.method");
			break;
		case BK_HELLO:
			len += (size_t)snprintf(b + len, sizeof(b) - len,
						"{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\","
						"\"id\":%" PRId64 "}",
						id);
			break;
		case BK_GUESS: {
			/* The daemon's next lease id and token are guessable:
			 * aim at the one an acquire earlier in this batch makes. */
			static const char *const m[] = { "lease.release", "lease.sync", "lease.reset",
							 "lease.finish" };
			uint64_t k2 = 1 + rnd_below(r, 4);

			len += (size_t)snprintf(b + len, sizeof(b) - len,
						"{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":"
						"{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "},"
						"\"id\":%" PRId64 "}",
						m[rnd_below(r, 4)], last_id + k2, last_token + k2, id);
			break;
		}
		}
		if (kinds[i] != BK_NOTIFY)
			answers++;
	}
	len += (size_t)snprintf(b + len, sizeof(b) - len, "]");
	if (conn_send_str(&c, b, len) < 0) {
		conn_close(&c);
		return;
	}
	if (chance(r, 15))
		die_now();
	if (chance(r, 30)) {
		conn_close(&c); /* before the reply */
		return;
	}
	if (answers == 0) {
		/* Only notifications: no reply at all, so the next packet is
		 * the answer to this hello. */
		int64_t id = conn_call(&c, "daemon.hello", false, NULL);

		if (id > 0 && conn_recv(&c, &rep) == 0) {
			if (resp_id(rep.msg) != id)
				child_fail("a batch of notifications was answered: %s",
					   json_object_to_json_string(rep.msg));
			reply_clear(&rep);
		} else if (id > 0) {
			conn_check_lost(&c, "hello after notifications");
		}
		conn_close(&c);
		return;
	}
	if (conn_recv(&c, &rep) < 0) {
		conn_check_lost(&c, "a batch");
		conn_close(&c);
		return;
	}
	/* The bad-request elements with an array inside ("[]") make the batch
	 * element itself an array: still one answer each. */
	if (!json_object_is_type(rep.msg, json_type_array) ||
	    json_object_array_length(rep.msg) != answers)
		child_fail("batch of %u answers came back as %s", answers,
			   json_object_to_json_string(rep.msg));
	{
		size_t with_fd = 0, a = 0;

		for (unsigned i = 0; i < n; i++) {
			struct json_object *e;
			int code;

			if (kinds[i] == BK_NOTIFY)
				continue;
			e = json_object_array_get_idx(rep.msg, a++);
			code = resp_code(e);
			/* Responses come in request order. */
			if (kinds[i] != BK_BADREQ && resp_id(e) != ids[i])
				child_fail("batch answer %zu has id %" PRId64 ", want %" PRId64, a - 1,
					   resp_id(e), ids[i]);
			switch (kinds[i]) {
			case BK_ACQUIRE:
				expect_code(e, ACQUIRE_ERRORS, "batched lease.acquire");
				if (!code) {
					held_from(&h[leases++], e, &rep);
					with_fd++;
				}
				break;
			case BK_BADPARAM:
				if (code != ZP_ERR_INVALID_PARAMS)
					child_fail("bad acquire params answered with %s",
						   json_object_to_json_string(e));
				break;
			case BK_BADREQ:
				if (code != ZP_ERR_INVALID_REQUEST)
					child_fail("bad request answered with %s",
						   json_object_to_json_string(e));
				break;
			case BK_HELLO:
				if (code)
					child_fail("hello answered with %s", json_object_to_json_string(e));
				break;
			case BK_GUESS:
				expect_code(e, LEASEOP_ERRORS, "guessed lease operation");
				break;
			case BK_NOTIFY:
				break;
			}
		}
		if (with_fd != rep.nfds)
			child_fail("%zu leases in a batch reply with %zu fds", with_fd, rep.nfds);
	}
	reply_close_taken(&rep);
	if (leases && conn_rpc(&c, &rep, "lease.list", NULL) == 0) {
		struct json_object *arr = NULL;

		/* Waiting acquires served late count against the connection's
		 * limit as much as immediate ones. (The batch reply itself may
		 * carry more: a lease revoked meanwhile frees its slot.) */
		json_object_object_get_ex(resp_result(rep.msg), "leases", &arr);
		if (!arr || json_object_array_length(arr) > (size_t)atoi(MAX_LEASES))
			child_fail("one connection holds %s, the limit is %s",
				   json_object_to_json_string(rep.msg), MAX_LEASES);
		reply_clear(&rep);
	}
	if (leases && chance(r, 50)) {
		/* Give them back in one batch; some may be gone already
		 * (released by a guessed release, revoked). */
		char *p = b;
		size_t left = sizeof(b);
		int w = snprintf(p, left, "[");

		for (unsigned i = 0; i < leases; i++) {
			p += w;
			left -= (size_t)w;
			w = snprintf(p, left,
				     "%s{\"jsonrpc\":\"2.0\",\"method\":\"lease.release\",\"params\":"
				     "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":%s},\"id\":%u}",
				     i ? "," : "", h[i].id, h[i].token, random_then(r), 1000 + i);
		}
		p += w;
		left -= (size_t)w;
		snprintf(p, left, "]");
		if (conn_send_str(&c, b, strlen(b)) == 0 && conn_recv(&c, &rep) == 0) {
			if (!json_object_is_type(rep.msg, json_type_array) ||
			    json_object_array_length(rep.msg) != leases)
				child_fail("release batch answered with %s",
					   json_object_to_json_string(rep.msg));
			for (unsigned i = 0; i < leases; i++)
				expect_code(json_object_array_get_idx(rep.msg, i), LEASEOP_ERRORS,
					    "batched lease.release");
			reply_clear(&rep);
		} else if (!c.refused && c.lost) {
			conn_check_lost(&c, "a release batch");
		}
	}
	for (unsigned i = 0; i < leases; i++)
		close(h[i].fd);
	conn_close(&c);
}

/* An admin takes a leased zone away (force) while its owner syncs,
 * resets or releases it. */
static void act_revoke(struct rng *r)
{
	struct conn o, a;
	struct reply rep;
	struct held h;
	char p[512];
	int64_t oids[4], aid;
	unsigned no = 0, got = 0;
	bool released = false, admin_done = false;
	int acode = 0;

	conn_open(&o);
	if (conn_rpc(&o, &rep, "lease.acquire", "{\"device\":\"emu0\",\"wait_ms\":200}") < 0) {
		conn_close(&o);
		return;
	}
	if (resp_code(rep.msg)) {
		expect_code(rep.msg, ACQUIRE_ERRORS, "lease.acquire");
		reply_clear(&rep);
		conn_close(&o);
		return;
	}
	held_from(&h, rep.msg, &rep);
	reply_close_taken(&rep);
	if (chance(r, 60))
		held_write(r, &h);
	conn_open(&a);

	/* The owner's operations go out first, the admin's right after. */
	for (unsigned k = 1 + rnd_below(r, 3); k > 0 && !released; k--) {
		switch (rnd_below(r, 5)) {
		case 0:
		case 1:
			sync_params(r, &h, p, sizeof(p));
			oids[no++] = conn_call(&o, "lease.sync", false, "%s", p);
			break;
		case 2:
			oids[no++] = conn_call(&o, chance(r, 50) ? "lease.reset" : "lease.finish", false,
					       "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h.id, h.token);
			break;
		default:
			oids[no++] = conn_call(&o, "lease.release", false,
					       "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":%s}",
					       h.id, h.token, random_then(r));
			released = true;
			break;
		}
	}
	aid = conn_call(&a, chance(r, 50) ? "zone.reset" : "zone.finish", false,
			"{\"device\":\"emu0\",\"zone\":%u,\"count\":%u,\"force\":true}", h.zone,
			h.zone + 1 < NR_ZONES && chance(r, 30) ? 2u : 1u);
	if (chance(r, 10))
		die_now();
	/* Every request is answered, on both connections. */
	if (aid > 0 && conn_wait(&a, aid, &rep, "forced zone operation") == 0) {
		acode = resp_code(rep.msg);
		expect_code(rep.msg, ZONEOP_ERRORS, "forced zone operation");
		admin_done = true;
		reply_clear(&rep);
	}
	while (got < no) {
		if (oids[got] < 0 || conn_recv(&o, &rep) < 0) {
			if (oids[got] >= 0)
				conn_check_lost(&o, "operations racing a revocation");
			break;
		}
		expect_code(rep.msg, LEASEOP_ERRORS, "operation racing a revocation");
		held_update(&h, rep.msg);
		reply_clear(&rep);
		got++;
	}
	/* The forced operation revoked the lease before it ran, whatever the
	 * device then said: the owner's next call must find it stale. */
	if (!released && admin_done && (acode == 0 || acode == ZP_ERR_LIMIT) && got == no) {
		snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h.id, h.token);
		if (conn_rpc(&o, &rep, "lease.sync", p) == 0) {
			if (resp_code(rep.msg) != ZP_ERR_STALE_LEASE)
				child_fail("a revoked lease still answers: %s",
					   json_object_to_json_string(rep.msg));
			reply_clear(&rep);
		}
	}
	close(h.fd);
	conn_close(&a);
	conn_close(&o);
}

struct garbage {
	const char *text; /* @ID@ takes the request's id where there is one */
	int code;
};

/* A request with an id to fill in, with and without params. */
#define RQ(method, params) \
	"{\"jsonrpc\":\"2.0\",\"method\":\"" method "\",\"params\":" params ",\"id\":@ID@}"
#define RQ0(method) "{\"jsonrpc\":\"2.0\",\"method\":\"" method "\",\"id\":@ID@}"

static const struct garbage garbage[] = {
	{ "{\"jsonrpc\":\"2.0\",\"method\":", ZP_ERR_PARSE },
	{ "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1,\"x\":\"\xff\xfe\"}", ZP_ERR_PARSE },
	{ "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1} trailing", ZP_ERR_PARSE },
	{ "nul", ZP_ERR_PARSE },
	{ "[]", ZP_ERR_INVALID_REQUEST },
	/* A bare number needs something after it: json-c's tokener cannot
	 * tell "17" is complete (zp_parse answers it with -32700). */
	{ "17 ", ZP_ERR_INVALID_REQUEST },
	{ RQ0("zone.explode"), ZP_ERR_METHOD_NOT_FOUND },
	{ RQ("device.info", "{\"device\":7}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("lease.acquire", "{\"wait_ms\":\"x\"}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("lease.acquire", "{\"device\":\"emu0\",\"zone\":-1}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("lease.sync", "{\"id\":\"1\",\"token\":1}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("lease.release", "{\"id\":-1,\"token\":1}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("zone.report", "{\"device\":\"emu0\",\"from\":\"0\"}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("zone.report", "{\"device\":\"emu0\",\"cond\":[1]}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("zone.reset", "{\"device\":\"emu0\",\"zone\":2,\"force\":\"yes\"}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("zone.finish", "{\"device\":\"emu0\",\"zone\":2,\"count\":0}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("lease.list", "{\"all\":1}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("daemon.hello", "{\"x\":1}"), ZP_ERR_INVALID_PARAMS },
	{ RQ("daemon.hello", "[]"), ZP_ERR_INVALID_PARAMS },
	{ RQ("daemon.hello", "5"), ZP_ERR_INVALID_REQUEST },
	{ "{\"jsonrpc\":\"1.0\",\"method\":\"daemon.hello\",\"id\":@ID@}", ZP_ERR_INVALID_REQUEST },
	{ "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":{}}", ZP_ERR_INVALID_REQUEST },
	{ "{\"jsonrpc\":\"2.0\",\"method\":true,\"id\":@ID@}", ZP_ERR_INVALID_REQUEST },
	{ RQ("lease.release", "{\"id\":1,\"token\":18446744073709551615}"), ZP_ERR_STALE_LEASE },
	{ RQ("device.info", "{\"device\":\"nope\"}"), ZP_ERR_NO_DEVICE },
	{ RQ("zone.report", "{\"device\":\"emu0\",\"from\":99}"), ZP_ERR_NO_ZONE },
};

/* Sends a padded hello of exactly len bytes. */
static int send_padded_hello(struct conn *c, size_t len, int64_t id, const int *fds, size_t nfds)
{
	static char b[(1 << 17) + 64];
	int n = snprintf(b, sizeof(b),
			 "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":%" PRId64 ",\"p\":\"",
			 id);
	int r;

	if (len > sizeof(b) || len < (size_t)n + 2)
		return -EINVAL;
	memset(b + n, 'p', len - (size_t)n - 2);
	memcpy(b + len - 2, "\"}", 2);
	r = send_raw(c->fd, b, len, fds, nfds, 0);
	if (r == -EPIPE || r == -ECONNRESET)
		c->lost = true;
	return r;
}

/* Garbage of every kind; each gets its own clear error and the connection
 * stays usable. */
static void act_garbage(struct rng *r)
{
	struct conn c;
	struct reply rep;
	int want = 0, k = (int)rnd_below(r, 7), rc = 0;
	int64_t id = 0;

	conn_open(&c);
	switch (k) {
	case 0: {
		/* One of the table. */
		const struct garbage *g = &garbage[rnd_below(r, sizeof(garbage) / sizeof(garbage[0]))];
		char b[512];
		size_t len;

		id = c.next_id++;
		len = fill_id(b, sizeof(b), g->text, id);
		if (!strstr(g->text, "@ID@"))
			id = -1;
		want = g->code;
		rc = conn_send_str(&c, b, len);
		break;
	}
	case 1: {
		/* Too large by a little or by a lot; or exactly the limit,
		 * which is fine. */
		size_t len = ZP_MSG_MAX + 1 + rnd_below(r, 1 << 16);

		id = c.next_id++;
		if (chance(r, 30))
			len = ZP_MSG_MAX;
		want = len > ZP_MSG_MAX ? ZP_ERR_INVALID_REQUEST : 0;
		if (want)
			id = -1;
		rc = send_padded_hello(&c, len, id > 0 ? id : 0, NULL, 0);
		if (rc == -EMSGSIZE || rc == -ENOBUFS) {
			conn_close(&c); /* our socket buffer cannot carry it */
			return;
		}
		break;
	}
	case 2: {
		/* Stray fds on a request: the daemon closes them, the answer
		 * is unchanged. Up to 24, more than the daemon takes. */
		int fds[24];
		size_t nfds = 1 + rnd_below(r, 24);
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0)
			child_fail("pipe: %s", strerror(errno));
		for (size_t i = 0; i < nfds; i++)
			fds[i] = i % 3 == 0 ? p[0] : i % 3 == 1 ? p[1] : c.fd;
		id = c.next_id++;
		if (chance(r, 20)) {
			/* On a too-large packet too. */
			rc = send_padded_hello(&c, ZP_MSG_MAX + 100, 0, fds, nfds);
			want = ZP_ERR_INVALID_REQUEST;
			id = -1;
		} else {
			rc = send_padded_hello(&c, 200, id, fds, nfds);
		}
		close(p[0]);
		close(p[1]);
		break;
	}
	case 3: {
		/* A notification of anything gets no answer: the next packet
		 * answers the hello after it. */
		conn_call(&c, chance(r, 50) ? "no.such.method" : "lease.acquire", true,
			  chance(r, 50) ? "{\"device\":\"nope\"}" : NULL);
		id = conn_call(&c, "daemon.hello", false, NULL);
		rc = id < 0 ? (int)id : 0;
		break;
	}
	case 4:
		/* An empty packet: invalid JSON, not a hang-up. */
		rc = conn_send_str(&c, "", 0);
		want = ZP_ERR_PARSE;
		id = -1;
		break;
	case 5: {
		/* Random bytes. */
		char b[256];
		size_t len = 1 + rnd_below(r, sizeof(b));

		for (size_t i = 0; i < len; i++)
			b[i] = (char)rnd_below(r, 256);
		b[0] = (char)('{' + rnd_below(r, 2)); /* '{' or '|': never a number */
		if (chance(r, 30)) {
			/* A valid request, then a NUL and more. */
			static const char nul[] =
				"{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1}\0{}";

			memcpy(b, nul, sizeof(nul) - 1);
			len = sizeof(nul) - 1;
		}
		want = ZP_ERR_PARSE;
		id = -1;
		rc = conn_send_str(&c, b, len);
		break;
	}
	default: {
		/* Too long a batch. */
		static char b[129 * 64 + 8];
		size_t len = 0;

		for (int i = 0; i < 129; i++)
			len += (size_t)snprintf(b + len, sizeof(b) - len,
						"%s{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":%d}",
						i ? "," : "[", i);
		len += (size_t)snprintf(b + len, sizeof(b) - len, "]");
		want = ZP_ERR_INVALID_REQUEST;
		id = -1;
		rc = conn_send_str(&c, b, len);
		break;
	}
	}
	if (rc < 0) {
		if (c.lost && conn_recv_timeout(&c, &rep, REPLY_TIMEOUT_MS, false) == 0)
			reply_clear(&rep);
		conn_check_lost(&c, "garbage");
		conn_close(&c);
		return;
	}
	if (chance(r, 10))
		die_now();
	if (conn_recv(&c, &rep) < 0) {
		conn_check_lost(&c, "garbage");
		conn_close(&c);
		return;
	}
	if (json_object_is_type(rep.msg, json_type_array) || resp_code(rep.msg) != want ||
	    resp_id(rep.msg) != id)
		child_fail("garbage kind %d: want error %d id %" PRId64 ", got %s", k, want, id,
			   json_object_to_json_string(rep.msg));
	if (rep.nfds)
		child_fail("garbage answered with %zu fds", rep.nfds);
	reply_clear(&rep);
	/* The connection still works. */
	if (chance(r, 60) && conn_rpc(&c, &rep, "daemon.hello", NULL) == 0) {
		if (resp_code(rep.msg))
			child_fail("hello after garbage: %s", json_object_to_json_string(rep.msg));
		reply_clear(&rep);
	}
	conn_close(&c);
}

/* A client that sends and never reads, replies with fds included: the
 * daemon queues, then disconnects it at 4 MiB. */
static void act_slow_reader(struct rng *r)
{
	static char b[8192];
	struct conn c;
	size_t len = 0;
	unsigned packets = 20 + rnd_below(r, 80);

	conn_open(&c);
	for (int i = 0; i < 60; i++)
		len += (size_t)snprintf(b + len, sizeof(b) - len,
					"%s{\"jsonrpc\":\"2.0\",\"method\":\"device.info\","
					"\"params\":{\"device\":\"emu0\"},\"id\":%d}",
					i ? "," : "[", i);
	for (int i = 0; i < 2; i++)
		len += (size_t)snprintf(b + len, sizeof(b) - len,
					",{\"jsonrpc\":\"2.0\",\"method\":\"device.open\",\"params\":{\"device\":\"emu0\",\"zone\":1},\"id\":%d}",
					100 + i);
	len += (size_t)snprintf(b + len, sizeof(b) - len, "]");
	for (unsigned i = 0; i < packets; i++) {
		int rc = send_raw(c.fd, b, len, NULL, 0, MSG_DONTWAIT);

		if (rc == -EAGAIN) {
			struct pollfd pfd = { .fd = c.fd, .events = POLLOUT };

			if (poll(&pfd, 1, 100) <= 0)
				break;
			continue;
		}
		if (rc < 0)
			break; /* disconnected: what the daemon does to us */
	}
	sleep_ms(rnd_below(r, 100));
	if (chance(r, 50))
		die_now();
	conn_close(&c);
}

/* Read-only methods and device.open, checked for a sane answer. */
static void act_misc(struct rng *r)
{
	struct conn c;
	struct reply rep;
	char p[256];
	const char *m;
	int want_fd = 0;

	conn_open(&c);
	switch (rnd_below(r, 7)) {
	case 0: m = "daemon.stats"; p[0] = 0; break;
	case 1: m = "device.list"; p[0] = 0; break;
	case 2: m = "device.info"; snprintf(p, sizeof(p), "{\"device\":\"emu0\"}"); break;
	case 3: m = "lease.list"; snprintf(p, sizeof(p), "{\"all\":true}"); break;
	case 4:
		/* An emulated device has no whole-device fd: one zone's. */
		m = "device.open";
		snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%u}", rnd_below(r, NR_ZONES));
		want_fd = 1;
		break;
	default:
		m = "zone.report";
		snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"from\":%u,\"count\":%u%s}",
			 rnd_below(r, NR_ZONES), rnd_below(r, NR_ZONES + 2),
			 chance(r, 50) ? ",\"cond\":[\"empty\",\"full\",\"closed\"]" : "");
		break;
	}
	if (conn_rpc(&c, &rep, m, p[0] ? p : NULL) == 0) {
		if (resp_code(rep.msg))
			child_fail("%s: %s", m, json_object_to_json_string(rep.msg));
		if ((int)rep.nfds != want_fd)
			child_fail("%s came with %zu fds", m, rep.nfds);
		reply_clear(&rep);
	}
	conn_close(&c);
}

/* Admin zone operations on random zones, leased or not. */
static void act_admin(struct rng *r)
{
	static const char *const ops[] = { "zone.reset", "zone.reset", "zone.close",
					   "zone.finish", "zone.open" };
	struct conn c;
	struct reply rep;
	char p[256];
	const char *m = ops[rnd_below(r, 5)];

	conn_open(&c);
	snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%u,\"count\":%u,\"force\":%s}",
		 rnd_below(r, NR_ZONES + 1), 1 + rnd_below(r, 3), chance(r, 60) ? "true" : "false");
	if (conn_rpc(&c, &rep, m, p) == 0) {
		expect_code(rep.msg, ZONEOP_ERRORS, m);
		reply_clear(&rep);
	}
	/* Explicitly open zones pin the open limit: close them again soon. */
	if (!strcmp(m, "zone.open") && conn_rpc(&c, &rep, "zone.close", p) == 0) {
		expect_code(rep.msg, ZONEOP_ERRORS, "zone.close");
		reply_clear(&rep);
	}
	conn_close(&c);
}

static int child_main(int slot, uint64_t seed, uint64_t deadline)
{
	struct rng r = { seed };

	child_slot = slot;
	signal(SIGPIPE, SIG_IGN);
	while (now_ms() < deadline) {
		unsigned w = rnd_below(&r, 100);

		if (w < 24)
			act_hold(&r);
		else if (w < 32)
			act_wait_die(&r);
		else if (w < 40)
			act_raw_die(&r);
		else if (w < 54)
			act_batch(&r);
		else if (w < 68)
			act_revoke(&r);
		else if (w < 84)
			act_garbage(&r);
		else if (w < 86)
			act_slow_reader(&r);
		else if (w < 94)
			act_misc(&r);
		else
			act_admin(&r);
	}
	return 0;
}

/* --- the parent --------------------------------------------------------- */

static void dump_log(void)
{
	char cmd[1024];

	/* A sanitizer's or valgrind's report if there is one, else the end. */
	snprintf(cmd, sizeof(cmd),
		 "{ grep -A60 -m1 -E 'ERROR: [A-Za-z]+Sanitizer|runtime error|^==[0-9]+== [A-Z]' '%s' "
		 "|| tail -n 40 '%s'; } >&2",
		 z.log, z.log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no daemon log)\n");
}

#define chaos_assert(cond, ...)                                                          \
	do {                                                                               \
		if (!(cond)) {                                                             \
			dump_log();                                                        \
			ck_abort_msg(__VA_ARGS__);                                         \
		}                                                                          \
	} while (0)

static int count_fds(pid_t pid, bool show)
{
	char path[64];
	DIR *dir;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((e = readdir(dir))) {
		char lp[320], target[PATH_MAX];
		ssize_t len;

		if (e->d_name[0] == '.')
			continue;
		n++;
		if (!show || n > 64)
			continue;
		snprintf(lp, sizeof(lp), "%s/%s", path, e->d_name);
		len = readlink(lp, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = '\0';
		fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
	}
	closedir(dir);
	return n;
}

/* The count once it stops moving (a closed connection is reaped a moment
 * after the client's close). */
static int settled_fds(pid_t pid, int want, unsigned max_ms)
{
	uint64_t until = now_ms() + max_ms;
	int n = count_fds(pid, false), same = 0;

	while (now_ms() < until) {
		int m;

		sleep_ms(20);
		m = count_fds(pid, false);
		if (m == n && (want < 0 || m == want)) {
			if (++same >= 5)
				break;
		} else {
			same = 0;
		}
		n = m;
	}
	return n;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : def;
}

/* One request from the parent; the reply's response in *out (owned). */
static int parent_rpc(struct conn *c, const char *method, const char *params,
		      struct json_object **out, int *fd)
{
	struct reply rep;
	int64_t id;
	int r;

	*out = NULL;
	if (fd)
		*fd = -1;
	id = conn_call(c, method, false, params ? "%s" : NULL, params);
	if (id < 0)
		return (int)id;
	do {
		r = conn_recv_timeout(c, &rep, REPLY_TIMEOUT_MS, false);
		if (r < 0)
			return r;
		if (resp_id(rep.msg) == id)
			break;
		reply_clear(&rep);
	} while (1);
	*out = json_object_get(rep.msg);
	if (fd && rep.nfds) {
		*fd = rep.fds[0];
		rep.fds[0] = -1;
		reply_close_taken(&rep);
	} else {
		reply_clear(&rep);
	}
	return 0;
}

struct snapshot {
	int64_t leased_zones, leases_active, clients, granted, revoked, released, waits;
	int64_t ready_zones;        /* free zones the daemon holds open ahead (2 fds each) */
	char stats[2048];
};

static int snapshot(struct conn *c, struct snapshot *s)
{
	struct json_object *resp, *devs, *v;
	int r;

	r = parent_rpc(c, "device.list", NULL, &resp, NULL);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(resp_result(resp), "devices", &devs)) {
		json_object_put(resp);
		return -EPROTO;
	}
	s->leased_zones = s->ready_zones = 0;
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		struct json_object *dev = json_object_array_get_idx(devs, i), *rz;

		if (!json_object_object_get_ex(dev, "leased_zones", &v) ||
		    !json_object_object_get_ex(dev, "ready_zones", &rz)) {
			json_object_put(resp);
			return -EPROTO;
		}
		s->leased_zones += json_object_get_int64(v);
		s->ready_zones += json_object_get_int64(rz);
	}
	json_object_put(resp);
	r = parent_rpc(c, "daemon.stats", NULL, &resp, NULL);
	if (r < 0)
		return r;
	v = resp_result(resp);
	if (!v) {
		json_object_put(resp);
		return -EPROTO;
	}
	s->leases_active = (int64_t)jget_u64(v, "leases_active");
	s->clients = (int64_t)jget_u64(v, "clients");
	s->granted = (int64_t)jget_u64(v, "leases_granted");
	s->released = (int64_t)jget_u64(v, "leases_released");
	s->revoked = (int64_t)jget_u64(v, "leases_revoked");
	s->waits = (int64_t)jget_u64(v, "waits");
	snprintf(s->stats, sizeof(s->stats), "%s", json_object_to_json_string(v));
	json_object_put(resp);
	return 0;
}

/* A failed assertion leaves the test early: the daemon it started must not
 * outlive it (it may be the one spinning). Check exits the test process on
 * a failure in fork mode (atexit), and jumps to the next test with
 * CK_FORK=no (each test starts with this). */
static void daemon_leftover_cleanup(void)
{
	if (z.pid > 0)
		zt_daemon_cleanup(&z);
}

static pid_t spawn(int slot, uint64_t seed, uint64_t deadline)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0)
		_exit(child_main(slot, seed, deadline));
	return pid;
}

START_TEST(chaos)
{
	char emu[600], spec[700];
	const char *args[] = { "--emulate", spec, "--max-leases", MAX_LEASES, "--log-level", "info",
			       NULL };
	uint64_t seed = env_u64("ZT_CHAOS_SEED", SEED_DEFAULT);
	uint64_t chaos_ms = env_u64("ZT_CHAOS_MS", CHAOS_MS_DEFAULT);
	uint64_t t0, deadline;
	struct rng pr = { seed ^ 0xdeadbeefULL };
	pid_t pids[NCHILD];
	unsigned gens[NCHILD] = { 0 }, spawned = 0, killed = 0, failed = 0;
	struct snapshot s;
	struct conn c;
	struct json_object *resp;
	int base_fds, fds, r;

	daemon_leftover_cleanup();
	memset(&z, 0, sizeof(z));
	signal(SIGPIPE, SIG_IGN);
	/* The fixture makes the directory; the device file goes inside it. */
	ck_assert_int_eq(zt_daemon_start(&z, (const char *const[]){ NULL }), 0);
	zt_daemon_stop(&z);
	snprintf(emu, sizeof(emu), "%s/dev.img", z.dir);
	snprintf(spec, sizeof(spec), "%s,id=emu0,%s", emu, DEV_SPEC);
	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);
	fprintf(stderr, "chaos: seed %#" PRIx64 ", %" PRIu64 " ms, %d clients, daemon pid %d\n", seed,
		chaos_ms, NCHILD, (int)z.pid);

	/* The baseline: the daemon as it serves, with no client. */
	conn_open(&c);
	ck_assert_int_eq(parent_rpc(&c, "daemon.hello", NULL, &resp, NULL), 0);
	ck_assert_int_eq(resp_code(resp), 0);
	json_object_put(resp);
	conn_close(&c);
	base_fds = settled_fds(z.pid, -1, 10000);
	ck_assert_int_gt(base_fds, 0);

	/* The chaos: children act until the deadline; the parent kills one
	 * at random now and then (mid-request, mid-wait, holding leases) and
	 * starts a new one in its place. */
	t0 = now_ms();
	deadline = t0 + chaos_ms;
	for (int i = 0; i < NCHILD; i++) {
		pids[i] = spawn(i, seed + (uint64_t)i * 0x10001, deadline);
		ck_assert_int_gt(pids[i], 0);
		spawned++;
	}
	for (;;) {
		uint64_t now = now_ms();
		bool any = false;
		int status;
		pid_t pid;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int slot = -1;

			for (int i = 0; i < NCHILD; i++)
				if (pids[i] == pid)
					slot = i;
			if (slot < 0)
				continue;
			pids[slot] = 0;
			/* Killed (by us or by itself) or done: fine. */
			if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) &&
			    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
				fprintf(stderr, "chaos: child %d (pid %d) failed: status %#x\n", slot,
					(int)pid, status);
				failed++;
			}
			if (now + 200 < deadline) {
				gens[slot]++;
				pids[slot] = spawn(slot,
						   seed + (uint64_t)slot * 0x10001 +
							   (uint64_t)gens[slot] * 0x9e3779b9ULL,
						   deadline);
				ck_assert_int_gt(pids[slot], 0);
				spawned++;
			}
		}
		for (int i = 0; i < NCHILD; i++)
			any |= pids[i] > 0;
		if (!any && now >= deadline)
			break;
		if (now < deadline && chance(&pr, 6)) {
			int slot = (int)rnd_below(&pr, NCHILD);

			if (pids[slot] > 0 && kill(pids[slot], SIGKILL) == 0)
				killed++;
		}
		/* A child owes the parent an exit within a reply timeout of
		 * the deadline; past that something hangs. */
		if (now > deadline + REPLY_TIMEOUT_MS + 30000) {
			for (int i = 0; i < NCHILD; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGKILL);
			chaos_assert(0, "children still running long after the deadline");
		}
		sleep_ms(10);
	}
	fprintf(stderr, "chaos: %u clients started, %u killed by the parent, %.1f s\n", spawned,
		killed, (double)(now_ms() - t0) / 1000.0);
	chaos_assert(failed == 0, "%u chaos clients saw the daemon misbehave", failed);

	/* (a) it answers. */
	conn_open(&c);
	r = parent_rpc(&c, "daemon.hello", NULL, &resp, NULL);
	chaos_assert(r == 0 && resp_code(resp) == 0, "daemon.hello after the chaos failed: %d", r);
	json_object_put(resp);

	/* (b) no lease is left once the daemon has reaped every dead client
	 * (their releases run on the device queue). */
	{
		uint64_t until = now_ms() + SETTLE_MS;

		for (;;) {
			r = snapshot(&c, &s);
			chaos_assert(r == 0, "stats after the chaos failed: %d", r);
			if ((s.leased_zones == 0 && s.leases_active == 0 && s.clients == 1) ||
			    now_ms() > until)
				break;
			sleep_ms(50);
		}
	}
	fprintf(stderr, "chaos: stats %s\n", s.stats);
	chaos_assert(s.leased_zones == 0, "%" PRId64 " zones still leased", s.leased_zones);
	chaos_assert(s.leases_active == 0, "%" PRId64 " leases still active", s.leases_active);
	chaos_assert(s.clients == 1, "%" PRId64 " clients still connected", s.clients);
	chaos_assert(s.granted > 0, "the chaos granted no lease at all");

	/* Nothing is stuck: with every zone reset, each sequential zone can
	 * be leased again, one after another. */
	{
		char p[128];
		struct json_object *zr;
		int fd_full;

		snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%d,\"count\":%d}", NR_CONV,
			 NR_ZONES - NR_CONV);
		r = parent_rpc(&c, "zone.reset", p, &resp, NULL);
		chaos_assert(r == 0 && resp_code(resp) == 0, "resetting every zone failed: %s",
			     resp ? json_object_to_json_string(resp) : "no reply");
		json_object_put(resp);
		for (int i = NR_CONV; i < NR_ZONES; i++) {
			struct json_object *l;
			int fd;

			snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%d}", i);
			r = parent_rpc(&c, "lease.acquire", p, &resp, &fd);
			chaos_assert(r == 0 && resp_code(resp) == 0 && fd >= 0,
				     "zone %d cannot be leased after the chaos: %s", i,
				     resp ? json_object_to_json_string(resp) : "no reply");
			close(fd);
			json_object_object_get_ex(resp_result(resp), "lease", &l);
			snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":\"reset\"}",
				 jget_u64(l, "id"), jget_u64(l, "token"));
			json_object_put(resp);
			r = parent_rpc(&c, "lease.release", p, &zr, NULL);
			chaos_assert(r == 0 && resp_code(zr) == 0, "releasing zone %d failed", i);
			json_object_put(zr);
		}
		/* A full zone (its wp past the capacity) has no room at all. */
		snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%d}", NR_CONV);
		r = parent_rpc(&c, "zone.finish", p, &resp, NULL);
		chaos_assert(r == 0 && resp_code(resp) == 0, "zone.finish failed");
		json_object_put(resp);
		snprintf(p, sizeof(p), "{\"device\":\"emu0\",\"zone\":%d,\"min_free\":%d}", NR_CONV,
			 BLOCK);
		r = parent_rpc(&c, "lease.acquire", p, &resp, &fd_full);
		if (fd_full >= 0)
			close(fd_full);
		chaos_assert(r == 0 && resp_code(resp) == ZP_ERR_NO_FREE_ZONE,
			     "a full zone was leased with min_free: %s",
			     resp ? json_object_to_json_string(resp) : "no reply");
		json_object_put(resp);
		r = snapshot(&c, &s);
		chaos_assert(r == 0 && s.leased_zones == 0 && s.leases_active == 0,
			     "leases left after the final round");
	}

	/* (c) the fds it started with, and no more: but for this connection
	 * and the zones it opened ahead for the next leases, which it says it
	 * holds (read once the count stopped moving: a refill may be in
	 * flight after the last acquire). */
	fds = settled_fds(z.pid, -1, SETTLE_MS);
	r = snapshot(&c, &s);
	chaos_assert(r == 0 && s.ready_zones >= 0 && s.ready_zones <= 16,
		     "device.list: %d zones ready", (int)s.ready_zones);
	if (fds != base_fds + 1 + 2 * (int)s.ready_zones) {
		fprintf(stderr, "chaos: daemon fds now:\n");
		count_fds(z.pid, true);
	}
	chaos_assert(fds == base_fds + 1 + 2 * (int)s.ready_zones,
		     "the daemon has %d fds, %d at start, %d zones ready and one connection", fds,
		     base_fds, (int)s.ready_zones);
	conn_close(&c);

	/* (d) a clean exit: leak checkers make it non-zero on a leak. */
	r = zt_daemon_stop(&z);
	chaos_assert(r == 0, "zonedd exited with status %d", r);
	zt_daemon_cleanup(&z);
}
END_TEST

/* --- a waiter whose failure closes its own connection ------------------- */

static void write_config(const char *path, bool with_emu0)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"devices\": [");
	if (with_emu0)
		fprintf(f, "{\"id\": \"emu0\", \"emulate\": \"%s/d0.img\", "
			   "\"spec\": \"size=2M,zone-size=1M,conv=1,lbs=4096\"}, ", z.dir);
	fprintf(f, "{\"id\": \"emu1\", \"emulate\": \"%s/d1.img\", "
		   "\"spec\": \"size=2M,zone-size=1M,conv=1,lbs=4096\"}]}\n", z.dir);
	ck_assert_int_eq(fclose(f), 0);
}

/* Polls device.list until emu0 is in the state wanted. */
static void wait_emu0(struct conn *c, bool want_listed, bool want_draining)
{
	uint64_t until = now_ms() + SETTLE_MS;

	for (;;) {
		struct json_object *resp, *devs, *v;
		bool listed = false, draining = false;

		ck_assert_int_eq(parent_rpc(c, "device.list", NULL, &resp, NULL), 0);
		ck_assert(json_object_object_get_ex(resp_result(resp), "devices", &devs));
		for (size_t i = 0; i < json_object_array_length(devs); i++) {
			struct json_object *dev = json_object_array_get_idx(devs, i);

			json_object_object_get_ex(dev, "id", &v);
			if (strcmp(json_object_get_string(v), "emu0"))
				continue;
			listed = true;
			json_object_object_get_ex(dev, "draining", &v);
			draining = json_object_get_boolean(v);
		}
		json_object_put(resp);
		if (listed == want_listed && (!listed || draining == want_draining))
			return;
		chaos_assert(now_ms() < until, "emu0 never reached the state wanted");
		sleep_ms(20);
	}
}

/* serve_waiters() answers a waiter whose device went away; sending that
 * answer fails (the client shut its reading side), which closes the
 * connection and drops its other waiter — the one the scan was about to
 * visit next. The daemon must neither touch the dropped waiter nor spin. */
START_TEST(failed_waiter_closes_its_connection)
{
	char conf[400];
	const char *args[] = { "--config", conf, "--log-level", "info", NULL };
	struct conn x, y;
	struct json_object *resp, *l;
	uint64_t id0, tok0;
	int fd, r;
	char p[200];

	daemon_leftover_cleanup();
	memset(&z, 0, sizeof(z));
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(zt_daemon_start(&z, (const char *const[]){ NULL }), 0);
	zt_daemon_stop(&z);
	snprintf(conf, sizeof(conf), "%s/zonedd.conf", z.dir);
	write_config(conf, true);
	ck_assert_msg(zt_daemon_start(&z, args) == 0, "zonedd did not start, see %s", z.log);

	/* y holds emu0's only sequential zone; x waits for it twice, in two
	 * packets so each answer is sent on its own. */
	conn_open(&y);
	ck_assert_int_eq(parent_rpc(&y, "lease.acquire", "{\"device\":\"emu0\"}", &resp, &fd), 0);
	ck_assert_int_eq(resp_code(resp), 0);
	close(fd);
	json_object_object_get_ex(resp_result(resp), "lease", &l);
	id0 = jget_u64(l, "id");
	tok0 = jget_u64(l, "token");
	json_object_put(resp);
	conn_open(&x);
	for (int i = 0; i < 2; i++)
		ck_assert_int_gt(conn_call(&x, "lease.acquire", false,
					   "{\"device\":\"emu0\",\"wait_ms\":60000}"),
				 0);
	{
		uint64_t until = now_ms() + SETTLE_MS;
		struct snapshot s;

		do {
			ck_assert_int_eq(snapshot(&y, &s), 0);
			chaos_assert(now_ms() < until, "the two acquires never waited");
		} while (s.waits < 2 && (sleep_ms(20), true));
	}
	/* Every answer to x now fails with EPIPE. */
	ck_assert_int_eq(shutdown(x.fd, SHUT_RD), 0);

	/* emu0 leaves the configuration, drains once y lets go, and is gone. */
	write_config(conf, false);
	ck_assert_int_eq(kill(z.pid, SIGHUP), 0);
	wait_emu0(&y, true, true);
	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", id0, tok0);
	ck_assert_int_eq(parent_rpc(&y, "lease.release", p, &resp, NULL), 0);
	ck_assert_int_eq(resp_code(resp), 0);
	json_object_put(resp);
	wait_emu0(&y, false, false);

	/* Any lease activity serves the waiters: x's first one fails (no
	 * such device), and so does sending that answer. */
	r = parent_rpc(&y, "lease.acquire", "{\"device\":\"emu1\"}", &resp, &fd);
	chaos_assert(r == 0 && resp_code(resp) == 0, "acquire on emu1 failed");
	json_object_put(resp);
	close(fd);
	r = parent_rpc(&y, "daemon.hello", NULL, &resp, NULL);
	chaos_assert(r == 0 && resp_code(resp) == 0, "the daemon stopped answering: %d", r);
	json_object_put(resp);
	conn_close(&x);
	conn_close(&y);
	r = zt_daemon_stop(&z);
	chaos_assert(r == 0, "zonedd exited with status %d", r);
	zt_daemon_cleanup(&z);
}
END_TEST

static Suite *chaos_suite(void)
{
	Suite *s = suite_create("chaos");
	TCase *tc = tcase_create("chaos");

	/* Seconds of chaos, then settling; valgrind makes everything slower. */
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, chaos);
	tcase_add_test(tc, failed_waiter_closes_its_connection);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(chaos_suite());
	int failed;

	atexit(daemon_leftover_cleanup);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
