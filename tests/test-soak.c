/* Soak test in the style of sanlock's devcount: K client processes acquire
 * zones and append blocks tagged with their lease token while the parent
 * SIGKILLs clients and the daemon at random and restarts them (the daemon on
 * the same state directory). Clients that lose the daemon stop writing at
 * once, reconnect and reclaim their leases with the token, or give a lease
 * up when the reclaim fails. Every grant, release, reset and acknowledged
 * write is logged in shared memory, which outlives a killed client.
 *
 * Afterwards the zones are read from the emulated backing file and checked:
 * every block was written by a client that held that zone under the token
 * it carries, writers follow each other in grant order, no acknowledged
 * write is lost (unless a holder reset the zone later), no zone was held by
 * two clients at overlapping times, and the daemon holds as many fds as it
 * did before any client came.
 *
 * ZT_SOAK_SECONDS (default 15) sets the duration, ZT_SOAK_CLIENTS (default
 * 6) the number of clients, ZT_SOAK_SEED the seed. Plain C (no Check): it
 * prints the figures and "N passed, M failed" and exits 0 only if all
 * checks pass.
 *
 * Timing assumption (the same one every lease manager makes): a client
 * notices a lost connection before it writes the next block (it polls the
 * socket before each write), and never takes grace_ms between that poll and
 * the write. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/proto.h"
#include "tests/fixture.h"

#define MAX_CLIENTS 32
#define MAX_HELD 2
#define BLOCK 4096
#define NR_ZONES 32
#define NR_CONV 2
#define DEV_SPEC "size=32M,zone-size=1M,zone-capacity=512K,conv=2,lbs=4096"
#define GRACE_MS 3000
#define RPC_TIMEOUT_MS 30000
#define MAGIC 0x5a4f4e45534f414bULL /* "ZONESOAK" */
#define MAX_LREC 32768
#define MAX_AREC 131072
#define MAX_RREC 32768

/* --- the shared log ------------------------------------------------------ */

struct lrec {            /* one lease as a client held it */
	uint64_t token, id;
	uint32_t zone, client;
	uint64_t t_grant;       /* after the grant (or reclaim) reply */
	uint64_t t_end;         /* before the release was sent; 0 = open */
};
struct arec {            /* acknowledged writes: [from, to) of one lease */
	uint64_t token;
	uint32_t zone, client;
	uint64_t from, to, first_seq, t_ack;
};
struct rrec {            /* a reset of a zone (intent, logged before sending) */
	uint32_t zone;
	uint64_t t;
};

struct slot_log {
	uint32_t nl, na, nr;
	struct lrec l[MAX_LREC];
	struct arec a[MAX_AREC];
	struct rrec r[MAX_RREC];
};

enum counter {
	C_ACQ_TRY, C_ACQ_OK, C_ACQ_BUSY, C_ACQ_NOSPC, C_ACQ_TIMEDOUT, C_ACQ_OTHER,
	C_WRITES, C_SYNCS, C_REL_KEEP, C_REL_RESET, C_REL_FINISH, C_RESETS, C_FINISHES,
	C_LOST, C_RECONNECTS, C_RECLAIM_OK, C_RECLAIM_FAIL, C_ANOMALY, C_LOG_FULL,
	C_GRANT_CHECKS, C_GRANT_BLOCKS, C_COUNT
};
static const char *const counter_name[C_COUNT] = {
	"acquires tried", "acquires granted", "acquires busy (-32004)", "acquires no zone (-32005)",
	"acquires timed out (-32008)", "acquires limit or state (-32006/9)", "blocks written",
	"syncs acknowledged", "releases keep", "releases reset", "releases finish", "lease.reset", "lease.finish",
	"connections lost", "reconnects", "reclaims ok", "reclaims failed", "client anomalies",
	"log full", "zones verified at grant", "acked blocks verified then",
};

struct shared {
	int stop;
	int nslots;
	uint64_t count[C_COUNT];
	struct slot_log slot[];
};

static struct shared *sh;
static struct zt_daemon z;

static uint64_t now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

static void bump(enum counter c)
{
	__atomic_add_fetch(&sh->count[c], 1, __ATOMIC_RELAXED);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : def;
}

/* splitmix64 */
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

/* --- blocks ---------------------------------------------------------------- */

struct tag {
	uint64_t magic, token;
	uint32_t client, zone;
	uint64_t seq, off;
};

static uint64_t fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static void block_fill(unsigned char *b, const struct tag *t)
{
	uint64_t x = t->token ^ t->seq ^ t->off;

	memcpy(b, t, sizeof(*t));
	for (size_t i = sizeof(*t); i < BLOCK - 8; i += 8) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		memcpy(b + i, &x, 8);
	}
	x = fnv(b, BLOCK - 8);
	memcpy(b + BLOCK - 8, &x, 8);
}

/* 1 tagged and intact, 0 all zeros, -1 anything else. */
static int block_parse(const unsigned char *b, struct tag *t)
{
	uint64_t sum;
	bool zero = true;

	for (size_t i = 0; i < BLOCK && zero; i++)
		zero = !b[i];
	if (zero)
		return 0;
	memcpy(t, b, sizeof(*t));
	memcpy(&sum, b + BLOCK - 8, 8);
	return t->magic == MAGIC && sum == fnv(b, BLOCK - 8) ? 1 : -1;
}

/* --- a small SEQPACKET JSON-RPC client --------------------------------------- */

struct conn {
	int fd;
	int64_t next_id;
};

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

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Whether the daemon hung up (polled without waiting). */
static bool conn_gone(struct conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };

	if (c->fd < 0)
		return true;
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

/* One call. Returns 0 with *result (owned) and *fd (or -1), a JSON-RPC error
 * code (< -32000 + 1000, i.e. <= -31000) with *msg filled, or -ECONNRESET when
 * the connection is gone, -ETIMEDOUT when no reply came in time. */
static int rpc(struct conn *c, const char *method, const char *params, struct json_object **result,
	       int *fd, char *msg, size_t msglen)
{
	static char buf[ZP_MSG_MAX + 1];
	int64_t id = c->next_id++;
	int n;
	ssize_t w;
	uint64_t until = now_us() + (uint64_t)RPC_TIMEOUT_MS * 1000;

	*result = NULL;
	if (fd)
		*fd = -1;
	if (msg && msglen)
		msg[0] = '\0';
	if (c->fd < 0)
		return -ECONNRESET;
	n = snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":%" PRId64 "}",
		     method, params ? params : "{}", id);
	do
		w = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return -ECONNRESET;
	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int) * ZP_MAX_FDS)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b) };
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int fds[ZP_MAX_FDS], nfds = 0, code = 0;
		struct json_object *o, *v, *e;
		uint64_t t = now_us();
		ssize_t r;

		if (t >= until)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)((until - t) / 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ECONNRESET;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

				memcpy(fds + nfds, CMSG_DATA(cm), sizeof(int) * (size_t)k);
				nfds += k;
			}
		buf[r] = '\0';
		o = json_tokener_parse(buf);
		if (!o || !json_object_object_get_ex(o, "id", &v) ||
		    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != id) {
			/* A notification or a stale reply: not ours. */
			json_object_put(o);
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			continue;
		}
		if (json_object_object_get_ex(o, "error", &e)) {
			json_object_object_get_ex(e, "code", &v);
			code = json_object_get_int(v);
			if (msg && json_object_object_get_ex(e, "message", &v))
				snprintf(msg, msglen, "%s", json_object_get_string(v));
			json_object_put(o);
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			return code ? code : -32603;
		}
		json_object_object_get_ex(o, "result", &v);
		*result = json_object_get(v);
		json_object_put(o);
		for (int i = 0; i < nfds; i++) {
			if (fd && *fd < 0)
				*fd = fds[i];
			else
				close(fds[i]);
		}
		return 0;
	}
}

static uint64_t jget(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : UINT64_MAX;
}

static struct json_object *jobj(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(o, key, &v);
	return v;
}

/* --- the client ------------------------------------------------------------ */

/* Reads the block at device offset off from the emulated device's zone
 * file (what a zone's fd reaches); past the file's end reads as zeros. */
static ssize_t img_read(const char *dir, unsigned char *b, uint64_t off)
{
	const uint64_t zs = 1u << 20; /* DEV_SPEC's zone size */
	uint32_t zn = (uint32_t)(off / zs);
	char p[700];
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "%s/%s-%06u", dir, zn < NR_CONV ? "cnv" : "seq", zn);
	memset(b, 0, BLOCK);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? BLOCK : -1;
	n = pread(fd, b, BLOCK, (off_t)(off % zs));
	close(fd);
	return n < 0 ? -1 : BLOCK;
}

struct held {
	bool used;
	uint64_t id, token, start, cap, wp, acked_to, seq, acked_seq;
	uint64_t fd_offset; /* where the zone starts in fd */
	uint32_t zone, rec;
	int fd;
	int uncertain; /* an op whose outcome the lost connection hid: 1 reset, 2 finish */
};

struct client {
	int slot;
	uint32_t cid;
	struct slot_log *log;
	struct conn c;
	struct held h[MAX_HELD];
	struct rng r;
	unsigned char *blk;
	uint64_t t_lost;
};

static void __attribute__((format(printf, 2, 3))) anomaly(struct client *cl, const char *fmt, ...)
{
	va_list ap;

	bump(C_ANOMALY);
	fprintf(stderr, "soak client %d (cid %#x, pid %d): ", cl->slot, cl->cid, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void set_end(struct client *cl, struct held *h, uint64_t t)
{
	__atomic_store_n(&cl->log->l[h->rec].t_end, t, __ATOMIC_RELEASE);
}

static void drop(struct held *h)
{
	if (h->fd >= 0)
		close(h->fd);
	memset(h, 0, sizeof(*h));
	h->fd = -1;
}

static void log_reset(struct client *cl, uint32_t zone)
{
	uint32_t n = cl->log->nr;

	if (n >= MAX_RREC) {
		bump(C_LOG_FULL);
		return;
	}
	cl->log->r[n] = (struct rrec){ .zone = zone, .t = now_us() };
	__atomic_store_n(&cl->log->nr, n + 1, __ATOMIC_RELEASE);
}

static void lost(struct client *cl)
{
	if (cl->c.fd < 0)
		return;
	cl->t_lost = now_us();
	bump(C_LOST);
	conn_close(&cl->c);
	/* Stop writing at once: the fd reaches the whole device, and the
	 * zone may be someone else's once the grace ends. */
	for (int i = 0; i < MAX_HELD; i++)
		if (cl->h[i].used && cl->h[i].fd >= 0) {
			close(cl->h[i].fd);
			cl->h[i].fd = -1;
		}
}

/* Reconnects and reclaims every held lease. 0, or -ETIMEDOUT when the
 * daemon stayed away too long (then the client gives up its leases). */
static int reconnect(struct client *cl)
{
	uint64_t until = now_us() + 20000000;

	while (cl->c.fd < 0) {
		int fd;

		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE) || now_us() > until) {
			for (int i = 0; i < MAX_HELD; i++)
				if (cl->h[i].used) {
					set_end(cl, &cl->h[i], cl->t_lost);
					drop(&cl->h[i]);
				}
			return -ETIMEDOUT;
		}
		sleep_ms(10 + rnd_below(&cl->r, 40));
		fd = sock_connect();
		if (fd < 0)
			continue;
		cl->c.fd = fd;
		cl->c.next_id = 1;
		bump(C_RECONNECTS);
		for (int i = 0; i < MAX_HELD && cl->c.fd >= 0; i++) {
			struct held *h = &cl->h[i];
			struct json_object *res;
			char p[128], msg[256];
			int nfd, r;
			uint64_t wp;

			if (!h->used || h->fd >= 0)
				continue;
			snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h->id,
				 h->token);
			r = rpc(&cl->c, "lease.reclaim", p, &res, &nfd, msg, sizeof(msg));
			if (r == -ECONNRESET || r == -ETIMEDOUT) {
				lost(cl);
				break;
			}
			if (r) {
				/* Given up: it ended, for us, when we stopped writing. */
				bump(C_RECLAIM_FAIL);
				fprintf(stderr, "soak client %d: reclaim of lease %" PRIu64 " zone %u failed: %d %s\n",
					cl->slot, h->id, h->zone, r, msg);
				set_end(cl, h, cl->t_lost);
				drop(h);
				continue;
			}
			wp = jget(jobj(res, "lease"), "wp");
			json_object_put(res);
			if (nfd < 0) {
				anomaly(cl, "reclaim of lease %" PRIu64 " passed no fd", h->id);
				set_end(cl, h, now_us());
				drop(h);
				continue;
			}
			h->fd = nfd;
			bump(C_RECLAIM_OK);
			if (wp != h->wp && !(h->uncertain == 1 && wp == h->start) &&
			    !(h->uncertain == 2 && wp == h->start + h->cap))
				anomaly(cl, "reclaimed lease %" PRIu64 " zone %u: daemon wp %" PRIu64
					    " != holder's %" PRIu64, h->id, h->zone, wp, h->wp);
			if (wp != h->wp) {
				h->wp = wp;
				if (h->acked_to > wp || h->uncertain)
					h->acked_to = wp;
				h->acked_seq = h->seq;
			}
			h->uncertain = 0;
		}
	}
	return 0;
}

static bool transport_err(int r)
{
	return r == -ECONNRESET || r == -ETIMEDOUT;
}

/* The handover check: a zone just granted holds every write acknowledged
 * on it since its last reset, below the wp the grant named. The log is
 * append-only and each slot's part in time order, so the acks to check are
 * at the end of each slot's part. */
static void verify_at_grant(struct client *cl, struct held *h)
{
	uint64_t tr = 0;
	int n = sh->nslots;

	for (int s = 0; s < n; s++) {
		const struct slot_log *lg = &sh->slot[s];

		for (uint32_t i = __atomic_load_n(&lg->nr, __ATOMIC_ACQUIRE); i-- > 0;)
			if (lg->r[i].zone == h->zone) {
				if (lg->r[i].t > tr)
					tr = lg->r[i].t;
				break;
			}
	}
	bump(C_GRANT_CHECKS);
	for (int s = 0; s < n; s++) {
		const struct slot_log *lg = &sh->slot[s];

		for (uint32_t i = __atomic_load_n(&lg->na, __ATOMIC_ACQUIRE); i-- > 0;) {
			const struct arec *a = &lg->a[i];

			if (a->t_ack <= tr)
				break;
			if (a->zone != h->zone)
				continue;
			for (uint64_t off = a->from, q = a->first_seq; off < a->to; off += BLOCK, q++) {
				struct tag t;

				if (off >= h->wp ||
				    pread(h->fd, cl->blk, BLOCK, (off_t)(off - h->start + h->fd_offset)) != BLOCK ||
				    block_parse(cl->blk, &t) != 1 || t.token != a->token || t.seq != q) {
					anomaly(cl, "lease %" PRIu64 " granted zone %u with wp %" PRIu64
						    " missing the write acknowledged to token %#" PRIx64
						    " at %" PRIu64, h->id, h->zone, h->wp, a->token, off);
					return;
				}
				bump(C_GRANT_BLOCKS);
			}
		}
	}
}

static void do_acquire(struct client *cl)
{
	struct held *h = NULL;
	struct json_object *res, *l;
	char p[256], msg[256];
	int fd, r, n;
	uint32_t nl = cl->log->nl;

	for (int i = 0; i < MAX_HELD && !h; i++)
		if (!cl->h[i].used)
			h = &cl->h[i];
	if (!h)
		return;
	if (nl >= MAX_LREC) {
		bump(C_LOG_FULL);
		sleep_ms(50);
		return;
	}
	n = snprintf(p, sizeof(p), "{\"label\":\"soak-%d\"", cl->slot);
	if (chance(&cl->r, 30))
		n += snprintf(p + n, sizeof(p) - (size_t)n, ",\"device\":\"emu0\",\"zone\":%u",
			      NR_CONV + rnd_below(&cl->r, NR_ZONES - NR_CONV));
	if (chance(&cl->r, 30))
		n += snprintf(p + n, sizeof(p) - (size_t)n, ",\"wait_ms\":%u", 50 + rnd_below(&cl->r, 300));
	if (chance(&cl->r, 50))
		n += snprintf(p + n, sizeof(p) - (size_t)n, ",\"reclaimable\":true");
	snprintf(p + n, sizeof(p) - (size_t)n, "}");
	bump(C_ACQ_TRY);
	r = rpc(&cl->c, "lease.acquire", p, &res, &fd, msg, sizeof(msg));
	if (transport_err(r)) {
		lost(cl);
		return;
	}
	if (r) {
		bump(r == ZP_ERR_ZONE_LEASED ? C_ACQ_BUSY :
		     r == ZP_ERR_NO_FREE_ZONE ? C_ACQ_NOSPC :
		     r == ZP_ERR_TIMEOUT ? C_ACQ_TIMEDOUT : C_ACQ_OTHER);
		if (r != ZP_ERR_ZONE_LEASED && r != ZP_ERR_NO_FREE_ZONE && r != ZP_ERR_TIMEOUT &&
		    r != ZP_ERR_ZONE_STATE && r != ZP_ERR_LIMIT)
			anomaly(cl, "acquire %s: %d %s", p, r, msg);
		else if (r != ZP_ERR_ZONE_LEASED && r != ZP_ERR_NO_FREE_ZONE && r != ZP_ERR_TIMEOUT &&
			 getenv("ZT_SOAK_VERBOSE"))
			fprintf(stderr, "soak client %d: acquire %s: %d %s\n", cl->slot, p, r, msg);
		return;
	}
	l = jobj(res, "lease");
	memset(h, 0, sizeof(*h));
	h->used = true;
	h->fd = fd;
	h->id = jget(l, "id");
	h->token = jget(l, "token");
	h->zone = (uint32_t)jget(l, "zone");
	h->start = jget(l, "start");
	h->fd_offset = jget(l, "fd_offset");
	h->cap = jget(l, "capacity");
	h->wp = h->acked_to = jget(l, "wp");
	json_object_put(res);
	h->rec = nl;
	cl->log->l[nl] = (struct lrec){ .token = h->token, .id = h->id, .zone = h->zone,
					.client = cl->cid, .t_grant = now_us() };
	__atomic_store_n(&cl->log->nl, nl + 1, __ATOMIC_RELEASE);
	bump(C_ACQ_OK);
	if (fd < 0)
		anomaly(cl, "lease %" PRIu64 " granted without an fd", h->id);
	else if (h->wp > h->start && chance(&cl->r, 50))
		verify_at_grant(cl, h);
}

static void do_sync(struct client *cl, struct held *h)
{
	struct json_object *res;
	char p[192], msg[256];
	uint64_t wp;
	uint32_t na = cl->log->na;
	int r;

	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"wp\":%" PRIu64 "}", h->id,
		 h->token, h->wp);
	r = rpc(&cl->c, "lease.sync", p, &res, NULL, msg, sizeof(msg));
	if (transport_err(r)) {
		lost(cl);
		return;
	}
	if (r) {
		anomaly(cl, "sync of lease %" PRIu64 ": %d %s", h->id, r, msg);
		return;
	}
	wp = jget(jobj(res, "lease"), "wp");
	json_object_put(res);
	bump(C_SYNCS);
	if (wp != h->wp)
		anomaly(cl, "sync of lease %" PRIu64 " zone %u: daemon wp %" PRIu64 " != %" PRIu64,
			h->id, h->zone, wp, h->wp);
	if (h->wp <= h->acked_to)
		return;
	if (na >= MAX_AREC) {
		bump(C_LOG_FULL);
		return;
	}
	cl->log->a[na] = (struct arec){ .token = h->token, .zone = h->zone, .client = cl->cid,
					.from = h->acked_to, .to = h->wp, .first_seq = h->acked_seq,
					.t_ack = now_us() };
	__atomic_store_n(&cl->log->na, na + 1, __ATOMIC_RELEASE);
	h->acked_to = h->wp;
	h->acked_seq = h->seq;
}

static void do_zone_op(struct client *cl, struct held *h, bool reset)
{
	struct json_object *res;
	char p[128], msg[256];
	int r;

	if (reset)
		log_reset(cl, h->zone);
	h->uncertain = reset ? 1 : 2;
	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 "}", h->id, h->token);
	r = rpc(&cl->c, reset ? "lease.reset" : "lease.finish", p, &res, NULL, msg, sizeof(msg));
	if (transport_err(r)) {
		lost(cl);
		return;
	}
	h->uncertain = 0;
	if (r) {
		anomaly(cl, "%s of lease %" PRIu64 ": %d %s", reset ? "reset" : "finish", h->id, r, msg);
		return;
	}
	json_object_put(res);
	bump(reset ? C_RESETS : C_FINISHES);
	h->wp = reset ? h->start : h->start + h->cap;
	h->acked_to = h->wp;
	h->acked_seq = h->seq;
}

static void do_release(struct client *cl, struct held *h, int then)
{
	static const char *const name[] = { "keep", "reset", "finish" };
	struct json_object *res;
	char p[160], msg[256];
	int r;

	if (then == 1)
		log_reset(cl, h->zone);
	/* Ended for the log before the daemon can give the zone away. */
	set_end(cl, h, now_us());
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	snprintf(p, sizeof(p), "{\"id\":%" PRIu64 ",\"token\":%" PRIu64 ",\"then\":\"%s\"}", h->id,
		 h->token, name[then]);
	r = rpc(&cl->c, "lease.release", p, &res, NULL, msg, sizeof(msg));
	drop(h);
	if (transport_err(r)) {
		lost(cl);
		return;
	}
	if (r) {
		anomaly(cl, "release: %d %s", r, msg);
		return;
	}
	json_object_put(res);
	bump(then == 0 ? C_REL_KEEP : then == 1 ? C_REL_RESET : C_REL_FINISH);
}

static int do_write(struct client *cl, struct held *h, unsigned nblk)
{
	for (unsigned i = 0; i < nblk && h->wp + BLOCK <= h->start + h->cap; i++) {
		struct tag t = { .magic = MAGIC, .token = h->token, .client = cl->cid,
				 .zone = h->zone, .seq = h->seq, .off = h->wp };
		ssize_t w;

		/* The last look before the write: a daemon gone means the
		 * zone may soon be someone else's. */
		if (conn_gone(&cl->c)) {
			lost(cl);
			return -ECONNRESET;
		}
		block_fill(cl->blk, &t);
		w = pwrite(h->fd, cl->blk, BLOCK, (off_t)(h->wp - h->start + h->fd_offset));
		if (w != BLOCK) {
			anomaly(cl, "pwrite zone %u at %" PRIu64 ": %s", h->zone, h->wp,
				w < 0 ? strerror(errno) : "short");
			return -EIO;
		}
		h->wp += BLOCK;
		h->seq++;
		bump(C_WRITES);
	}
	return 0;
}

static int client_main(int slot, unsigned gen, uint64_t seed)
{
	struct client cl = { .slot = slot, .cid = (uint32_t)slot << 16 | (gen & 0xffff),
			     .log = &sh->slot[slot], .c = { .fd = -1 } };
	void *blk;

	cl.r.s = seed ^ ((uint64_t)slot << 40) ^ ((uint64_t)gen << 20);
	if (posix_memalign(&blk, BLOCK, BLOCK))
		return 2;
	cl.blk = blk;
	for (int i = 0; i < MAX_HELD; i++)
		cl.h[i].fd = -1;
	cl.t_lost = now_us();
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		unsigned nheld = 0;
		struct held *h;

		if (cl.c.fd < 0 && reconnect(&cl) < 0)
			continue;
		for (int i = 0; i < MAX_HELD; i++)
			nheld += cl.h[i].used;
		if (nheld == 0 || (nheld < MAX_HELD && chance(&cl.r, 15))) {
			do_acquire(&cl);
			continue;
		}
		h = &cl.h[rnd_below(&cl.r, MAX_HELD)];
		if (!h->used)
			continue;
		if (h->wp + BLOCK > h->start + h->cap || chance(&cl.r, 6)) {
			unsigned x = rnd_below(&cl.r, 100);

			if (chance(&cl.r, 40))
				do_sync(&cl, h);
			if (cl.c.fd >= 0)
				do_release(&cl, h, x < 25 ? 1 : x < 80 ? 0 : 2);
		} else if (chance(&cl.r, 2)) {
			do_zone_op(&cl, h, true);
		} else if (chance(&cl.r, 1)) {
			do_zone_op(&cl, h, false);
		} else {
			if (do_write(&cl, h, 1 + rnd_below(&cl.r, 8)) == 0 && chance(&cl.r, 40))
				do_sync(&cl, h);
		}
		if (chance(&cl.r, 30))
			sleep_ms(rnd_below(&cl.r, 3));
	}
	/* The end: sync and give everything back. */
	if (cl.c.fd < 0)
		reconnect(&cl);
	for (int i = 0; i < MAX_HELD; i++)
		if (cl.h[i].used) {
			if (cl.c.fd >= 0 && cl.h[i].fd >= 0)
				do_sync(&cl, &cl.h[i]);
			if (cl.c.fd < 0)
				reconnect(&cl);
			if (cl.h[i].used) {
				if (cl.c.fd >= 0) {
					do_release(&cl, &cl.h[i], 0);
				} else {
					set_end(&cl, &cl.h[i], cl.t_lost);
					drop(&cl.h[i]);
				}
			}
		}
	conn_close(&cl.c);
	free(blk);
	return 0;
}

/* --- the parent -------------------------------------------------------------- */

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
		if (!show)
			continue;
		snprintf(lp, sizeof(lp), "%s/%s", path, e->d_name);
		len = readlink(lp, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = '\0';
		fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
	}
	closedir(dir);
	return n;
}

static int settled_fds(pid_t pid, int want, unsigned max_ms)
{
	uint64_t until = now_us() + (uint64_t)max_ms * 1000;
	int n = count_fds(pid, false), same = 0;

	while (now_us() < until) {
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

static pid_t spawn(int slot, unsigned gen, uint64_t seed)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0)
		_exit(client_main(slot, gen, seed));
	return pid;
}

/* A killed client's open leases end, for the log, when the kill was sent:
 * the daemon cannot hand its zones on before it died. */
static void close_slot(int slot, uint64_t t)
{
	struct slot_log *lg = &sh->slot[slot];
	uint32_t n = __atomic_load_n(&lg->nl, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; i < n; i++)
		if (!lg->l[i].t_end)
			lg->l[i].t_end = t;
}

static int checks_passed, checks_failed;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (ok)
		checks_passed++;
	else
		checks_failed++;
}

struct zinfo {
	uint64_t start, cap, wp;
};

static const struct lrec **lidx;
static size_t nlidx;

static int cmp_token(const void *a, const void *b)
{
	const struct lrec *x = *(const struct lrec *const *)a, *y = *(const struct lrec *const *)b;

	return x->token < y->token ? -1 : x->token > y->token;
}

static const struct lrec *find_lease(uint64_t token)
{
	size_t lo = 0, hi = nlidx;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (lidx[mid]->token == token)
			return lidx[mid];
		if (lidx[mid]->token < token)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cmp_grant(const void *a, const void *b)
{
	const struct lrec *x = *(const struct lrec *const *)a, *y = *(const struct lrec *const *)b;

	if (x->zone != y->zone)
		return x->zone < y->zone ? -1 : 1;
	return x->t_grant < y->t_grant ? -1 : x->t_grant > y->t_grant;
}

static int report_zones(struct zinfo *zi)
{
	struct conn c = { .fd = sock_connect(), .next_id = 1 };
	struct json_object *res, *zones;
	char msg[256];
	int r;

	if (c.fd < 0)
		return c.fd;
	r = rpc(&c, "zone.report", "{\"device\":\"emu0\"}", &res, NULL, msg, sizeof(msg));
	conn_close(&c);
	if (r)
		return r < 0 && r > -4096 ? r : -EIO;
	zones = jobj(res, "zones");
	for (size_t i = 0; i < json_object_array_length(zones); i++) {
		struct json_object *o = json_object_array_get_idx(zones, i);
		uint64_t idx = jget(o, "index");

		if (idx < NR_ZONES)
			zi[idx] = (struct zinfo){ jget(o, "start"), jget(o, "capacity"), jget(o, "wp") };
	}
	json_object_put(res);
	return 0;
}

static int leases_left(void)
{
	struct conn c = { .fd = sock_connect(), .next_id = 1 };
	struct json_object *res;
	char msg[256];
	int r, n;

	if (c.fd < 0)
		return c.fd;
	r = rpc(&c, "lease.list", "{\"all\":true}", &res, NULL, msg, sizeof(msg));
	conn_close(&c);
	if (r)
		return -EIO;
	n = (int)json_object_array_length(jobj(res, "leases"));
	json_object_put(res);
	return n;
}

/* Free zones the daemon holds open ahead (device.list's ready_zones): two
 * fds each, which are the ready set's, not a leak. */
static int ready_zones(void)
{
	struct conn c = { .fd = sock_connect(), .next_id = 1 };
	struct json_object *res, *devs;
	char msg[256];
	int r, n = 0;

	if (c.fd < 0)
		return c.fd;
	r = rpc(&c, "device.list", NULL, &res, NULL, msg, sizeof(msg));
	conn_close(&c);
	if (r)
		return -EIO;
	devs = jobj(res, "devices");
	for (size_t i = 0; devs && i < json_object_array_length(devs); i++)
		n += (int)json_object_get_int64(jobj(json_object_array_get_idx(devs, i),
						     "ready_zones"));
	json_object_put(res);
	return n;
}

/* What the log knows of one zone, for a failure's report. */
static void zone_history(int nclients, uint32_t zone, uint64_t t0)
{
	for (int s = 0; s < nclients; s++) {
		const struct slot_log *lg = &sh->slot[s];

		for (uint32_t i = 0; i < lg->nl; i++)
			if (lg->l[i].zone == zone)
				fprintf(stderr, "  zone %u: lease %" PRIu64 " token %#" PRIx64
					" client %#x [%" PRIu64 ", %" PRIu64 ") us\n", zone, lg->l[i].id,
					lg->l[i].token, lg->l[i].client, lg->l[i].t_grant - t0,
					lg->l[i].t_end - t0);
		for (uint32_t i = 0; i < lg->na; i++)
			if (lg->a[i].zone == zone)
				fprintf(stderr, "  zone %u: ack token %#" PRIx64 " [%" PRIu64 ", %" PRIu64
					") blocks at %" PRIu64 " us\n", zone, lg->a[i].token,
					(lg->a[i].from % (1u << 20)) / BLOCK,
					(lg->a[i].to % (1u << 20)) / BLOCK, lg->a[i].t_ack - t0);
		for (uint32_t i = 0; i < lg->nr; i++)
			if (lg->r[i].zone == zone)
				fprintf(stderr, "  zone %u: reset by slot %d at %" PRIu64 " us\n", zone, s,
					lg->r[i].t - t0);
	}
}

int main(void)
{
	uint64_t seconds = env_u64("ZT_SOAK_SECONDS", 15);
	int nclients = (int)env_u64("ZT_SOAK_CLIENTS", 6);
	uint64_t seed = env_u64("ZT_SOAK_SEED", 0x50a4c0ffeeULL);
	char emu[600], spec[700], grace[32];
	const char *args[] = { "--emulate", spec, "--max-leases", "3", "--grace-ms", grace, NULL };
	struct rng pr = { seed ^ 0xfeedULL };
	pid_t pids[MAX_CLIENTS];
	unsigned gen[MAX_CLIENTS] = { 0 };
	unsigned client_kills = 0, daemon_kills = 0, restart_fail = 0, client_fail = 0;
	unsigned daemon_died = 0, sanitizer = 0;
	int dst;
	uint64_t t0, deadline, next_ckill, next_dkill;
	size_t shsize;
	int base_fds, end_fds, base_ready, end_ready, left, r;
	struct zinfo zi[NR_ZONES] = { 0 };
	uint64_t overlaps = 0, foreign = 0, corrupt = 0, order = 0, lost_acks = 0, excused = 0;
	uint64_t blocks = 0, acks_checked = 0, nresets = 0;
	int img;

	if (nclients < 1 || nclients > MAX_CLIENTS)
		nclients = 6;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	shsize = sizeof(struct shared) + sizeof(struct slot_log) * (size_t)nclients;
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 99;
	}
	sh->nslots = nclients;

	/* The fixture makes the directory; the device file goes inside it. */
	if (zt_daemon_start(&z, (const char *const[]){ NULL }) < 0) {
		fprintf(stderr, "zonedd did not start\n");
		return 99;
	}
	zt_daemon_stop(&z);
	snprintf(emu, sizeof(emu), "%s/dev.img", z.dir);
	snprintf(spec, sizeof(spec), "%s,id=emu0,%s", emu, DEV_SPEC);
	snprintf(grace, sizeof(grace), "%d", GRACE_MS);
	if (zt_daemon_start(&z, args) < 0) {
		fprintf(stderr, "zonedd did not start, see %s\n", z.log);
		return 99;
	}
	base_fds = settled_fds(z.pid, -1, 2000);
	base_ready = ready_zones();
	if (base_ready > 0)
		base_fds -= 2 * base_ready;
	printf("soak: %" PRIu64 " s, %d clients, seed %#" PRIx64 ", grace %d ms, daemon pid %d, %d fds\n",
	       seconds, nclients, seed, GRACE_MS, (int)z.pid, base_fds);

	t0 = now_us();
	deadline = t0 + seconds * 1000000;
	next_ckill = t0 + (300 + rnd_below(&pr, 1200)) * 1000ULL;
	next_dkill = t0 + (1000 + rnd_below(&pr, 3000)) * 1000ULL;
	for (int i = 0; i < nclients; i++)
		pids[i] = spawn(i, 0, seed);
	while (now_us() < deadline) {
		uint64_t t;

		sleep_ms(20);
		for (int i = 0; i < nclients; i++) {
			int st;

			if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				/* A client never ends by itself before the stop. */
				fprintf(stderr, "soak: client %d exited early (status %#x)\n", i, st);
				client_fail++;
				close_slot(i, now_us());
				pids[i] = spawn(i, ++gen[i], seed);
			}
		}
		if (waitpid(z.pid, &dst, WNOHANG) == z.pid) {
			/* The daemon never ends unless killed. */
			fprintf(stderr, "soak: zonedd died by itself (status %#x), see %s\n", dst, z.log);
			daemon_died++;
			z.pid = 0;
			if (zt_daemon_start(&z, args) < 0) {
				restart_fail++;
				break;
			}
		}
		t = now_us();
		if (t >= next_ckill) {
			int i = (int)rnd_below(&pr, (uint32_t)nclients);

			t = now_us();
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			close_slot(i, t);
			client_kills++;
			pids[i] = spawn(i, ++gen[i], seed);
			next_ckill = now_us() + (200 + rnd_below(&pr, 1500)) * 1000ULL;
		}
		if (t >= next_dkill) {
			kill(z.pid, SIGKILL);
			waitpid(z.pid, &dst, 0);
			if (!WIFSIGNALED(dst) || WTERMSIG(dst) != SIGKILL)
				daemon_died++;
			z.pid = 0;
			daemon_kills++;
			sleep_ms(rnd_below(&pr, 300));
			if (zt_daemon_start(&z, args) < 0) {
				fprintf(stderr, "soak: zonedd did not restart, see %s\n", z.log);
				restart_fail++;
				break;
			}
			next_dkill = now_us() + (1000 + rnd_below(&pr, 3000)) * 1000ULL;
		}
	}

	/* The end: clients give their leases back and exit. */
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < nclients; i++) {
		uint64_t until = now_us() + 30000000;
		int st = 0;

		while (waitpid(pids[i], &st, WNOHANG) != pids[i]) {
			if (now_us() > until) {
				fprintf(stderr, "soak: client %d did not stop\n", i);
				client_fail++;
				kill(pids[i], SIGKILL);
				waitpid(pids[i], &st, 0);
				close_slot(i, now_us());
				break;
			}
			sleep_ms(10);
		}
		if (WIFEXITED(st) && WEXITSTATUS(st))
			client_fail++;
	}

	/* Orphans of killed clients end with the grace; then the daemon must
	 * hold what it held before any client. */
	left = -1;
	for (uint64_t until = now_us() + (GRACE_MS + 10000) * 1000ULL; now_us() < until;) {
		left = z.pid > 0 ? leases_left() : -ESRCH;
		if (left <= 0)
			break;
		sleep_ms(100);
	}
	/* Nothing runs now: the set holds still. */
	end_ready = z.pid > 0 ? ready_zones() : -1;
	end_fds = z.pid > 0 && end_ready >= 0 ?
		  settled_fds(z.pid, base_fds + 2 * end_ready, 10000) - 2 * end_ready : -1;
	r = z.pid > 0 ? report_zones(zi) : -ESRCH;
	if (end_fds != base_fds && z.pid > 0)
		count_fds(z.pid, true);

	printf("soak: %.1f s run\n", (double)(now_us() - t0) / 1e6);
	for (int c = 0; c < C_COUNT; c++)
		printf("  %-28s %" PRIu64 "\n", counter_name[c], sh->count[c]);
	printf("  %-28s %u\n", "client kills", client_kills);
	printf("  %-28s %u\n", "daemon kills+restarts", daemon_kills);

	check(daemon_died == 0, "the daemon never died but by SIGKILL (%u)", daemon_died);
	check(restart_fail == 0, "the daemon restarted after each of %u SIGKILLs", daemon_kills);
	check(client_fail == 0, "no client failed (%u)", client_fail);
	check(sh->count[C_ANOMALY] == 0, "no client saw the daemon misbehave (%" PRIu64 ")",
	      sh->count[C_ANOMALY]);
	check(left == 0, "no lease left once the grace ended (%d)", left);
	check(end_fds == base_fds, "daemon fds back to the baseline (%d, baseline %d, not "
	      "counting %d zones held open ahead)", end_fds, base_fds, end_ready);
	check(r == 0, "zone.report after the soak (%d)", r);
	check(z.pid > 0 && zt_daemon_stop(&z) == 0, "the daemon exits 0 on SIGTERM");
	{
		/* Sanitizer and valgrind reports of every daemon life land in
		 * its log, which is removed on success. */
		FILE *f = fopen(z.log, "re");
		char line[1024];

		while (f && fgets(line, sizeof(line), f))
			if (strstr(line, "Sanitizer") || strstr(line, "runtime error") ||
			    !strncmp(line, "==", 2)) {
				if (sanitizer++ < 5)
					fprintf(stderr, "soak: daemon log: %s", line);
			}
		if (f)
			fclose(f);
		check(f && sanitizer == 0, "no sanitizer or valgrind report in the daemon's log (%u)",
		      sanitizer);
	}

	/* The log, as one list of leases. */
	for (int s = 0; s < nclients; s++) {
		nlidx += sh->slot[s].nl;
		nresets += sh->slot[s].nr;
	}
	lidx = calloc(nlidx ? nlidx : 1, sizeof(*lidx));
	nlidx = 0;
	for (int s = 0; s < nclients; s++)
		for (uint32_t i = 0; i < sh->slot[s].nl; i++) {
			struct lrec *l = &sh->slot[s].l[i];

			if (!l->t_end)
				l->t_end = now_us();
			lidx[nlidx++] = l;
		}

	/* No zone held twice: [grant, end) intervals on one zone are disjoint. */
	qsort(lidx, nlidx, sizeof(*lidx), cmp_grant);
	for (size_t i = 0; i < nlidx; i++)
		for (size_t j = i + 1; j < nlidx && lidx[j]->zone == lidx[i]->zone; j++) {
			if (lidx[j]->t_grant >= lidx[i]->t_end)
				break;
			if (overlaps++ < 10)
				fprintf(stderr, "soak: zone %u held twice: lease %" PRIu64 " (client %#x) [%"
					PRIu64 ", %" PRIu64 ") and lease %" PRIu64 " (client %#x) [%"
					PRIu64 ", %" PRIu64 ")\n", lidx[i]->zone, lidx[i]->id,
					lidx[i]->client, lidx[i]->t_grant - t0, lidx[i]->t_end - t0,
					lidx[j]->id, lidx[j]->client, lidx[j]->t_grant - t0,
					lidx[j]->t_end - t0);
		}
	check(overlaps == 0, "no zone held by two clients at once (%zu leases, %" PRIu64 " overlaps)",
	      nlidx, overlaps);
	qsort(lidx, nlidx, sizeof(*lidx), cmp_token);

	/* Every block up to the wp: tagged by the holder of the zone, in grant
	 * order, each lease's blocks in one run in the order written. */
	img = open(emu, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(img >= 0, "the device directory opens (%s)", img < 0 ? strerror(errno) : "ok");
	for (uint32_t zn = NR_CONV; img >= 0 && r == 0 && zn < NR_ZONES; zn++) {
		unsigned char b[BLOCK];
		const struct lrec *prev = NULL;
		uint64_t prev_seq = 0;
		bool zeros = false;

		for (uint64_t off = zi[zn].start; off < zi[zn].wp; off += BLOCK) {
			struct tag t;
			const struct lrec *l;
			int k;

			if (img_read(emu, b, off) != BLOCK) {
				corrupt++;
				break;
			}
			k = block_parse(b, &t);
			if (k == 0) {
				zeros = true; /* a finished zone's unwritten tail */
				continue;
			}
			blocks++;
			l = k > 0 ? find_lease(t.token) : NULL;
			if (k < 0 || t.off != off || t.zone != zn || zeros) {
				if (corrupt++ < 10)
					fprintf(stderr, "soak: zone %u block at %" PRIu64 ": %s\n", zn, off,
						k < 0 ? "corrupt" : zeros ? "after a gap" : "misplaced");
				continue;
			}
			if (!l || l->zone != zn || l->client != t.client) {
				if (foreign++ < 10)
					fprintf(stderr, "soak: zone %u block at %" PRIu64 " by client %#x token %#"
						PRIx64 ": %s\n", zn, off, t.client, t.token,
						!l ? "no such lease" : "not the holder of this zone");
				continue;
			}
			if (l != prev) {
				if (prev && l->t_grant <= prev->t_grant && order++ < 10)
					fprintf(stderr, "soak: zone %u at %" PRIu64 ": lease %" PRIu64
						" follows lease %" PRIu64 " granted after it\n", zn, off, l->id,
						prev->id);
			} else if (t.seq <= prev_seq && order++ < 10) {
				fprintf(stderr, "soak: zone %u at %" PRIu64 ": seq %" PRIu64 " after %" PRIu64 "\n",
					zn, off, t.seq, prev_seq);
			}
			prev = l;
			prev_seq = t.seq;
		}
	}
	check(corrupt == 0, "every written block intact and in place (%" PRIu64 " blocks, %" PRIu64 " bad)",
	      blocks, corrupt);
	check(foreign == 0, "no block written by a client that did not hold the zone (%" PRIu64 ")",
	      foreign);
	check(order == 0, "writers of a zone follow each other in grant order (%" PRIu64 ")", order);

	/* No acknowledged write lost, unless a holder reset the zone later. */
	for (int s = 0; img >= 0 && r == 0 && s < nclients; s++)
		for (uint32_t i = 0; i < sh->slot[s].na; i++) {
			const struct arec *a = &sh->slot[s].a[i];
			bool reset_later = false;

			for (int s2 = 0; s2 < nclients && !reset_later; s2++)
				for (uint32_t j = 0; j < sh->slot[s2].nr && !reset_later; j++)
					reset_later = sh->slot[s2].r[j].zone == a->zone &&
						      sh->slot[s2].r[j].t >= a->t_ack;
			if (reset_later) {
				excused++;
				continue;
			}
			acks_checked++;
			for (uint64_t off = a->from, q = a->first_seq; off < a->to; off += BLOCK, q++) {
				unsigned char b[BLOCK];
				struct tag t;

				int k = -2;

				if (off >= zi[a->zone].wp || img_read(emu, b, off) != BLOCK ||
				    (k = block_parse(b, &t)) != 1 || t.token != a->token || t.seq != q) {
					if (lost_acks < 3 && getenv("ZT_SOAK_VERBOSE"))
						zone_history(nclients, a->zone, t0);
					if (lost_acks++ < 10)
						fprintf(stderr, "soak: acknowledged block lost: zone %u at %" PRIu64
							" token %#" PRIx64 " seq %" PRIu64 " acked at %" PRIu64
							" us (zone wp %" PRIu64 "): found %s token %#" PRIx64
							" seq %" PRIu64 "\n", a->zone, off, a->token, q,
							a->t_ack - t0, zi[a->zone].wp,
							k == 1 ? "block of" : k == 0 ? "zeros" : "bad block",
							k == 1 ? t.token : 0, k == 1 ? t.seq : 0);
					break;
				}
			}
		}
	check(lost_acks == 0, "no acknowledged write lost (%" PRIu64 " syncs checked, %" PRIu64
	      " before a later reset, %" PRIu64 " resets logged, %" PRIu64 " lost)", acks_checked,
	      excused, nresets, lost_acks);
	if (img >= 0)
		close(img);
	free(lidx);

	printf("%d passed, %d failed\n", checks_passed, checks_failed);
	if (checks_failed)
		fprintf(stderr, "soak: daemon log kept in %s\n", z.log);
	else
		zt_daemon_cleanup(&z);
	munmap(sh, shsize);
	return checks_failed ? 1 : 0;
}
