/* bench-rpc: the cost of zonedd's control path, as ratios against raw
 * SOCK_SEQPACKET exchanges of the same packets run in this process.
 *
 * --clients N client threads (default 1), each with a connection of its
 * own, run five phases, interleaved over several rounds (the order rotates
 * each round) so that drift — frequency scaling, a noisy neighbour — hits
 * every phase alike:
 *   raw hello     the baseline of rpc: a request the size of daemon.hello's
 *                 answered with a packet the size of its reply;
 *   rpc           zc_hello() to the real zonedd through libzoned-client;
 *   raw cycle fd  the baseline of the lease cycle: every exchange a lease
 *                 cycle makes, request and reply of the same sizes, the
 *                 acquire's reply carrying as many fds (SCM_RIGHTS) as the
 *                 daemon's does;
 *   raw cycle     the same exchanges without the fds: what passing them
 *                 costs;
 *   lease cycle   zc_lease_acquire (buffered) + zc_lease_release(KEEP).
 * The raw phases' peer is a thread of this process: with one client, an
 * echo thread blocked in recv() on the other end of a socketpair (a plain
 * ping-pong: the cheapest round trip there is); with more, one thread
 * serving every client's socketpair from one epoll set, as a single-threaded
 * event-loop server would (the daemon is one, plus its pool).
 *
 * The packets are not guessed: at start every call is made once through a
 * relay thread between the library and the daemon, which records each
 * request and reply (bytes, and fds attached), so the raw phases send the
 * library's own requests and answer with the daemon's own replies, whatever
 * version either is.
 *
 * Where the threads run matters more than anything measured: waking an idle
 * CPU can cost more than the whole round trip (about 55 us of a 67 us one on
 * a 2-vCPU VM). So the client threads, the raw peer and every thread of
 * zonedd are pinned, either all to one CPU (--cpus same, the default: the
 * software path alone) or clients on one CPU and raw peer and daemon on
 * another (--cpus split: a cross-CPU wakeup in every round trip of both).
 * The daemon's affinity is restored at the end. The absolute figures depend
 * on the machine; the ratios are the result. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>

#include "proto/proto.h"
#include "tests/fixture.h"
#include "bench/bench-util.h"

/* The library's receive buffer is one whole packet of the protocol's
 * largest size, with room for its most fds; the raw phases receive into
 * the same. */
#define PACKET_MAX ZP_MSG_MAX
#define MAX_FDS ZP_MAX_FDS
#define MAX_ROUNDS 100
#define MAX_CLIENTS 1024
/* The exchanges of one lease cycle the relay keeps (two today: acquire and
 * release). */
#define MAX_EXCHANGES 8
/* Untimed time each phase runs before the first round (at most; no more
 * than a round's slice): page faults, the daemon's first allocations, the
 * peer's first wakeups. */
#define WARMUP_S 0.2
/* Past this share of our CPUs' time going to others, the report says the
 * ratios are unsure. */
#define OTHER_LOAD_WARN 0.05

enum phase_id { PH_RAW_HELLO, PH_RPC, PH_RAW_CYCLE_FD, PH_RAW_CYCLE, PH_LEASE, PH_COUNT };
enum cpus { CPUS_SAME, CPUS_SPLIT, CPUS_NONE };
static const char *const cpus_name[] = { "same", "split", "none" };

static const char *const phase_key[PH_COUNT] = {
	"raw_hello", "rpc", "raw_cycle_fd", "raw_cycle", "lease_cycle",
};
static const char *const phase_label[PH_COUNT] = {
	"raw hello (baseline of rpc)",
	"rpc (zc_hello)",
	"raw cycle, fd passed",
	"raw cycle, no fd",
	"lease cycle (acquire+release)",
};

/* What the raw peer answers: hello-sized replies, or the steps of a lease
 * cycle with or without the fds. */
enum echo_mode { EM_HELLO, EM_CYCLE_FD, EM_CYCLE };

/* Latencies in nanoseconds; grows as needed. */
struct samples {
	uint64_t *v;
	size_t n, cap;
};

/* One request and the reply it got, as the relay saw them. */
struct exchange {
	char *req, *rep;
	size_t req_len, rep_len;
	unsigned rep_nfds;
};

struct phase {
	struct samples all;      /* every round pooled, every client */
	uint64_t ops;
	uint64_t wall_ns;        /* time spent in the phase, all rounds */
	double round_p50[MAX_ROUNDS];
	double round_ops_s[MAX_ROUNDS];
	/* lease cycle only: the two halves, pooled */
	struct samples acquire, release;
};

/* A raw peer's end of one client's socketpair, and where that client is in
 * the lease cycle's exchanges. */
struct echo_conn {
	int fd;
	unsigned step;
};

struct echo {
	struct bench *b;
	struct echo_conn *conns;
	size_t nconns;
	int epfd, stopfd;       /* epoll peer only: stopfd ends it */
	char *buf;
	pthread_t thread;
	bool running;
	int err;
};

/* A daemon thread we pinned, and the mask to give back. */
struct pinned_task {
	pid_t tid;
	cpu_set_t old;
};

struct pinning {
	enum cpus mode;
	int client_cpu, peer_cpu;        /* -1 when not pinned */
	cpu_set_t self_old;
	bool self_pinned;
	pid_t daemon_pid;
	struct pinned_task *tasks;
	size_t ntasks;
};

struct worker {
	struct bench *b;
	unsigned idx;
	pthread_t thread;
	bool started;
	zc_client *c;
	int raw_fd;                      /* our end of the socketpair to the raw peer */
	char *rbuf;                      /* PACKET_MAX bytes */
	/* This slice: samples of the phase under way, its first start and
	 * last end. */
	struct samples s, acq, rel;
	uint64_t first_ns, last_ns;
	int err;
	char errmsg[256];
};

struct bench {
	pid_t daemon_pid;        /* in our pid namespace (SO_PEERCRED) */
	struct pinning pin;
	const char *device;      /* NULL: any device serves the leases */
	unsigned nclients;
	struct worker *w;
	struct echo echo;
	int pass_fd;             /* what the raw peer passes: a file of ours */
	_Atomic int mode;        /* enum echo_mode, set between phases */
	/* The packets, captured by the relay. */
	struct exchange hello;
	struct exchange cycle[MAX_EXCHANGES];
	unsigned ncycle;
	/* The phase the workers run next, set before the start barrier. */
	enum phase_id phase;
	uint64_t slice_ns;
	bool quit;
	pthread_barrier_t start, end;
	char dir[256];           /* ours: the relay's socket, the passed file */
	double other_load, steal; /* shares of our CPUs' time, over the rounds */
	char err[256];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
	return 0;
}

static int samples_append(struct samples *to, const struct samples *from)
{
	for (size_t i = 0; i < from->n; i++)
		if (samples_add(to, from->v[i]) < 0)
			return -ENOMEM;
	return 0;
}

static void samples_free(struct samples *s)
{
	free(s->v);
	*s = (struct samples){ 0 };
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return (double)v[i < n ? i : n - 1] / 1e3;
}

static double median_us_of(uint64_t *v, size_t n)
{
	if (n == 0)
		return 0; /* a phase left out (--only): v may be NULL */
	qsort(v, n, sizeof(*v), cmp_u64);
	return pct_us(v, n, 50);
}

/* --- packets: send, and receive with fds -------------------------------- */

/* The raw phases move their packets with the library's own transport
 * (proto/wire.c): the same sendmsg, the same recvmsg with MSG_CMSG_CLOEXEC
 * and room for ZP_MAX_FDS fds, so what differs from the daemon's path is
 * only what lies above the socket. */
static int send_packet(int fd, const void *buf, size_t len, const int *fds, unsigned nfds,
		       int flags)
{
	return zp_sendv(fd, buf, len, fds, nfds, flags);
}

/* One packet into buf (PACKET_MAX), its fds into fds[MAX_FDS]. */
static ssize_t recv_packet(int fd, char *buf, int *fds, unsigned *nfds, int flags)
{
	size_t k = 0;
	ssize_t n = zp_recvv(fd, buf, PACKET_MAX, fds, &k, flags);

	*nfds = (unsigned)k;
	return n;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

/* --- the relay: what the library and the daemon say to each other ------ */

struct relay {
	int listen_fd, up_fd;
	/* Every request and every reply, in order; replies matched by id. */
	struct exchange log[64];
	unsigned nlog;
	int err;
};

static char *dup_bytes(const char *p, size_t n)
{
	char *d = malloc(n ? n : 1);

	if (d)
		memcpy(d, p, n);
	return d;
}

/* The "id" member's value of a request or a reply, or -1. The library's
 * ids are integers; the daemon echoes them. The id is the last member of
 * both, so the last "id": is the one. */
static long packet_id(const char *p, size_t n)
{
	const char *key = "\"id\":", *last = NULL;
	size_t kl = strlen(key);

	for (size_t i = 0; i + kl <= n; i++)
		if (memcmp(p + i, key, kl) == 0)
			last = p + i + kl;
	if (!last || last >= p + n || *last < '0' || *last > '9')
		return -1;
	return strtol(last, NULL, 10);
}

static bool contains(const char *p, size_t n, const char *str)
{
	size_t k = strlen(str);

	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(p + i, str, k) == 0)
			return true;
	return false;
}

/* A packet of the daemon's that answers no request: a notification. */
static bool is_event(const char *p, size_t n)
{
	return !contains(p, n, "\"result\":") && !contains(p, n, "\"error\":");
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	char *buf = malloc(PACKET_MAX);
	int cfd = -1, fds[MAX_FDS];
	unsigned nfds;

	if (!buf) {
		r->err = -ENOMEM;
		return NULL;
	}
	cfd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (cfd < 0) {
		r->err = -errno;
		goto out;
	}
	for (;;) {
		struct pollfd pf[2] = { { .fd = cfd, .events = POLLIN },
					{ .fd = r->up_fd, .events = POLLIN } };
		ssize_t n;

		if (poll(pf, 2, 10000) <= 0) {
			r->err = -ETIMEDOUT;
			break;
		}
		if (pf[0].revents) {
			/* The library's request: kept, passed on. */
			n = recv_packet(cfd, buf, fds, &nfds, 0);
			if (n <= 0) {
				r->err = n < 0 ? (int)n : 0;
				break;
			}
			if (r->nlog < 64) {
				struct exchange *e = &r->log[r->nlog++];

				e->req = dup_bytes(buf, (size_t)n);
				e->req_len = (size_t)n;
			}
			r->err = send_packet(r->up_fd, buf, (size_t)n, fds, nfds, 0);
			close_fds(fds, nfds);
			if (r->err < 0)
				break;
		}
		if (pf[1].revents) {
			struct exchange *e;
			long id;

			/* The daemon's reply: given to the request of its id. */
			n = recv_packet(r->up_fd, buf, fds, &nfds, 0);
			if (n <= 0) {
				r->err = n < 0 ? (int)n : -ECONNRESET;
				break;
			}
			id = packet_id(buf, (size_t)n);
			e = NULL;
			for (unsigned i = 0; i < r->nlog && !e; i++)
				if (!r->log[i].rep && packet_id(r->log[i].req, r->log[i].req_len) == id)
					e = &r->log[i];
			/* An id we cannot read: the library has one call out at a
			 * time, so it is the oldest unanswered one's — unless the
			 * packet is an event, which answers nothing. */
			for (unsigned i = 0; i < r->nlog && !e && !is_event(buf, (size_t)n); i++)
				if (!r->log[i].rep)
					e = &r->log[i];
			if (e) {
				e->rep = dup_bytes(buf, (size_t)n);
				e->rep_len = (size_t)n;
				e->rep_nfds = nfds;
			}
			r->err = send_packet(cfd, buf, (size_t)n, fds, nfds, 0);
			close_fds(fds, nfds);
			if (r->err < 0)
				break;
		}
	}
out:
	if (cfd >= 0)
		close(cfd);
	free(buf);
	return NULL;
}

static bool has_method(const struct exchange *e, const char *method)
{
	char key[80];

	snprintf(key, sizeof(key), "\"method\":\"%s\"", method);
	return contains(e->req, e->req_len, key);
}

/* The method a captured request calls, for the report. */
static void method_of(const struct exchange *e, char *out, size_t cap)
{
	const char *key = "\"method\":\"";
	size_t kl = strlen(key);

	snprintf(out, cap, "?");
	for (size_t i = 0; i + kl <= e->req_len; i++)
		if (memcmp(e->req + i, key, kl) == 0) {
			size_t j = i + kl, k = 0;

			while (j < e->req_len && e->req[j] != '"' && k + 1 < cap)
				out[k++] = e->req[j++];
			out[k] = '\0';
			return;
		}
}

static void exchange_free(struct exchange *e)
{
	free(e->req);
	free(e->rep);
	*e = (struct exchange){ 0 };
}

/* Makes every call of the benchmark once through the relay: the packets of
 * daemon.hello (the last one: zc_connect may send its own first) and every
 * exchange from lease.acquire's request to lease.release's reply. Also
 * learns the daemon's pid, to pin it. */
static int capture(struct bench *b, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, up = { .sun_family = AF_UNIX };
	struct relay r = { .listen_fd = -1, .up_fd = -1 };
	struct zc_lease_opts lo;
	struct zc_hello h;
	zc_client *c = NULL;
	zc_lease *l = NULL;
	const char *what;
	pthread_t th;
	int ret = 0, first = -1, last = -1, hello = -1;

	if (strlen(sock) >= sizeof(up.sun_path) ||
	    (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/relay", b->dir) >=
		    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(up.sun_path, sock, strlen(sock) + 1);
	r.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	r.up_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (r.listen_fd < 0 || r.up_fd < 0 ||
	    bind(r.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(r.listen_fd, 1) < 0 ||
	    connect(r.up_fd, (struct sockaddr *)&up, sizeof(up)) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "relay to %s: %s", sock, strerror(errno));
		goto out;
	}
	{
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(r.up_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			b->daemon_pid = cred.pid;
	}
	if ((ret = -pthread_create(&th, NULL, relay_main, &r)) < 0)
		goto out;
	what = "zc_connect";
	ret = zc_connect(sa.sun_path, &c);
	if (ret == 0) {
		what = "zc_hello";
		ret = zc_hello(c, &h);
	}
	if (ret == 0) {
		zc_lease_opts_init(&lo);
		lo.device = b->device;
		lo.buffered = true;
		lo.label = "bench-rpc";
		what = "zc_lease_acquire";
		ret = zc_lease_acquire(c, &lo, &l);
	}
	if (ret == 0) {
		what = "zc_lease_release";
		ret = zc_lease_release(l, ZC_RELEASE_KEEP);
	}
	if (ret < 0)
		snprintf(b->err, sizeof(b->err), "%s through the relay: %s", what,
			 zc_last_error(c));
	/* Our end closed, the relay sees end-of-file and stops. */
	zc_close(c);
	pthread_join(th, NULL);
	if (ret < 0)
		goto out;
	if (r.err < 0) {
		ret = r.err;
		snprintf(b->err, sizeof(b->err), "relay: %s", strerror(-r.err));
		goto out;
	}
	for (unsigned i = 0; i < r.nlog; i++) {
		if (has_method(&r.log[i], "daemon.hello"))
			hello = (int)i;
		if (first < 0 && has_method(&r.log[i], "lease.acquire"))
			first = (int)i;
		if (first >= 0 && has_method(&r.log[i], "lease.release"))
			last = (int)i;
	}
	if (hello < 0 || first < 0 || last < 0 || last - first + 1 > MAX_EXCHANGES) {
		ret = -EPROTO;
		snprintf(b->err, sizeof(b->err), "the relay did not see hello, acquire and release");
		goto out;
	}
	for (int i = first; i <= last; i++)
		if (!r.log[i].rep) {
			ret = -EPROTO;
			snprintf(b->err, sizeof(b->err), "a lease cycle request went unanswered");
			goto out;
		}
	if (!r.log[hello].rep || r.log[hello].rep_nfds) {
		ret = -EPROTO;
		snprintf(b->err, sizeof(b->err), "daemon.hello's reply missing or carrying fds");
		goto out;
	}
	b->hello = r.log[hello];
	r.log[hello] = (struct exchange){ 0 };
	b->ncycle = (unsigned)(last - first + 1);
	for (unsigned i = 0; i < b->ncycle; i++) {
		b->cycle[i] = r.log[first + (int)i];
		r.log[first + (int)i] = (struct exchange){ 0 };
	}
out:
	for (unsigned i = 0; i < r.nlog; i++)
		exchange_free(&r.log[i]);
	if (r.listen_fd >= 0)
		close(r.listen_fd);
	if (r.up_fd >= 0)
		close(r.up_fd);
	unlink(sa.sun_path);
	return ret;
}

/* --- the raw peer ------------------------------------------------------- */

/* Reads one request of a client and answers it as the daemon would: the
 * reply of the same size, with as many fds. 0 when answered, 1 when there
 * was nothing to read (epoll), -ECONNRESET at the client's end. */
static int echo_answer(struct echo *e, struct echo_conn *c, int flags)
{
	struct bench *b = e->b;
	const struct exchange *x;
	unsigned nfds = 0;
	int fds[MAX_FDS], mode, r;
	ssize_t n;

	/* Received as the daemon receives a request: room for fds a client
	 * might send (ours send none). */
	n = recv_packet(c->fd, e->buf, fds, &nfds, flags);
	if (n == -EAGAIN)
		return 1;
	if (n <= 0)
		return -ECONNRESET;
	close_fds(fds, nfds);
	nfds = 0;
	mode = atomic_load_explicit(&b->mode, memory_order_acquire);
	if (mode == EM_HELLO) {
		x = &b->hello;
	} else {
		x = &b->cycle[c->step];
		c->step = (c->step + 1) % b->ncycle;
		if (mode == EM_CYCLE_FD)
			nfds = x->rep_nfds;
	}
	for (unsigned i = 0; i < nfds; i++)
		fds[i] = b->pass_fd;
	r = send_packet(c->fd, x->rep, x->rep_len, fds, nfds, 0);
	return r < 0 ? r : 0;
}

/* One client: blocked in recv() on its socketpair, a plain ping-pong. */
static void *pingpong_main(void *arg)
{
	struct echo *e = arg;

	while (echo_answer(e, &e->conns[0], 0) >= 0)
		;
	return NULL;
}

/* Several clients: one thread, one epoll set, as a single-threaded
 * event-loop server. Level-triggered, one request read per ready client
 * per wakeup (a client has one request out at a time). */
static void *epoll_main(void *arg)
{
	struct echo *e = arg;
	struct epoll_event ev[64];

	for (;;) {
		int n = epoll_wait(e->epfd, ev, 64, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e->err = -errno;
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			struct echo_conn *c = ev[i].data.ptr;

			if (!c)
				return NULL; /* stopfd */
			if (echo_answer(e, c, MSG_DONTWAIT) < 0)
				epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		}
	}
}

static int echo_start(struct bench *b)
{
	struct echo *e = &b->echo;
	pthread_attr_t attr;
	cpu_set_t set;
	int r;

	e->b = b;
	e->epfd = e->stopfd = -1;
	e->nconns = b->nclients;
	e->conns = calloc(e->nconns, sizeof(*e->conns));
	e->buf = malloc(PACKET_MAX);
	if (!e->conns || !e->buf)
		return -ENOMEM;
	for (size_t i = 0; i < e->nconns; i++)
		e->conns[i].fd = -1;
	for (size_t i = 0; i < e->nconns; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			return -errno;
		b->w[i].raw_fd = sv[0];
		e->conns[i].fd = sv[1];
	}
	if (b->nclients > 1) {
		struct epoll_event ev = { .events = EPOLLIN };

		e->epfd = epoll_create1(EPOLL_CLOEXEC);
		e->stopfd = eventfd(0, EFD_CLOEXEC);
		if (e->epfd < 0 || e->stopfd < 0)
			return -errno;
		ev.data.ptr = NULL;
		if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->stopfd, &ev) < 0)
			return -errno;
		for (size_t i = 0; i < e->nconns; i++) {
			ev.data.ptr = &e->conns[i];
			if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->conns[i].fd, &ev) < 0)
				return -errno;
		}
	}
	pthread_attr_init(&attr);
	if (b->pin.peer_cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(b->pin.peer_cpu, &set);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	}
	r = pthread_create(&e->thread, &attr, b->nclients > 1 ? epoll_main : pingpong_main, e);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return -r;
	e->running = true;
	return 0;
}

static void echo_stop(struct bench *b)
{
	struct echo *e = &b->echo;

	if (e->running) {
		if (e->stopfd >= 0) {
			uint64_t one = 1;

			if (write(e->stopfd, &one, sizeof(one)) < 0)
				pthread_cancel(e->thread);
		} else if (b->w && b->w[0].raw_fd >= 0) {
			shutdown(b->w[0].raw_fd, SHUT_RDWR);
		}
		pthread_join(e->thread, NULL);
		e->running = false;
	}
	for (size_t i = 0; e->conns && i < e->nconns; i++)
		if (e->conns[i].fd >= 0)
			close(e->conns[i].fd);
	if (e->epfd >= 0)
		close(e->epfd);
	if (e->stopfd >= 0)
		close(e->stopfd);
	free(e->conns);
	free(e->buf);
	e->conns = NULL;
	e->buf = NULL;
	e->epfd = e->stopfd = -1;
}

/* --- the client threads ------------------------------------------------- */

static int wfail(struct worker *w, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int wfail(struct worker *w, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
	va_end(ap);
	return r;
}

/* The exchanges of one raw phase: the captured requests, byte for byte,
 * each answered by a packet of the reply's size (and its fds). The fds are
 * closed once the cycle is done, as the library closes a lease's at its
 * release. */
static int raw_op(struct worker *w, const struct exchange *x, unsigned nx, bool with_fds)
{
	int keep[MAX_FDS * MAX_EXCHANGES], fds[MAX_FDS], r = 0;
	unsigned nkeep = 0, nfds;

	for (unsigned i = 0; i < nx && r == 0; i++) {
		ssize_t n;
		unsigned want = with_fds ? x[i].rep_nfds : 0;

		r = send_packet(w->raw_fd, x[i].req, x[i].req_len, NULL, 0, 0);
		if (r < 0)
			return wfail(w, r, "raw send: %s", strerror(-r));
		n = recv_packet(w->raw_fd, w->rbuf, fds, &nfds, 0);
		if (n < 0)
			r = wfail(w, (int)n, "raw recv: %s", strerror((int)-n));
		else if ((size_t)n != x[i].rep_len || nfds != want)
			r = wfail(w, -EPROTO, "raw reply: %s", "not the size or fds expected");
		memcpy(keep + nkeep, fds, nfds * sizeof(int));
		nkeep += nfds;
	}
	close_fds(keep, nkeep);
	return r;
}

static int rpc_op(struct worker *w)
{
	struct zc_hello h;
	int r = zc_hello(w->c, &h);

	if (r < 0)
		return wfail(w, r, "zc_hello: %s", zc_last_error(w->c));
	return 0;
}

static int lease_op(struct worker *w)
{
	struct zc_lease_opts lo;
	zc_lease *l = NULL;
	uint64_t t0, t1, t2;
	int r;

	zc_lease_opts_init(&lo);
	lo.device = w->b->device;
	/* Buffered: an O_DIRECT open may cost differently per filesystem,
	 * and it is the protocol and the daemon being measured here. */
	lo.buffered = true;
	lo.label = "bench-rpc";
	t0 = now_ns();
	r = zc_lease_acquire(w->c, &lo, &l);
	t1 = now_ns();
	if (r < 0)
		return wfail(w, r, "zc_lease_acquire: %s (with many clients: a device with room for "
				   "that many open zones?)", zc_last_error(w->c));
	r = zc_lease_release(l, ZC_RELEASE_KEEP);
	t2 = now_ns();
	if (r < 0)
		return wfail(w, r, "zc_lease_release: %s", zc_last_error(w->c));
	if (samples_add(&w->acq, t1 - t0) < 0 || samples_add(&w->rel, t2 - t1) < 0)
		return wfail(w, -ENOMEM, "%s", "out of memory");
	return 0;
}

static int one_op(struct worker *w, enum phase_id ph)
{
	struct bench *b = w->b;

	switch (ph) {
	case PH_RAW_HELLO: return raw_op(w, &b->hello, 1, false);
	case PH_RPC: return rpc_op(w);
	case PH_RAW_CYCLE_FD: return raw_op(w, b->cycle, b->ncycle, true);
	case PH_RAW_CYCLE: return raw_op(w, b->cycle, b->ncycle, false);
	default: return lease_op(w);
	}
}

/* Each slice: wait for the start, run the phase until the slice's time is
 * up, one clock read per operation (a sample is the time from the end of
 * the previous operation to the end of this one), wait at the end. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;

	for (;;) {
		uint64_t start, end, prev, t;

		pthread_barrier_wait(&b->start);
		if (b->quit)
			break;
		start = prev = t = now_ns();
		end = start + b->slice_ns;
		while (w->err == 0 && t < end && !interrupted) {
			int r = one_op(w, b->phase);

			t = now_ns();
			if (r == 0 && samples_add(&w->s, t - prev) < 0)
				r = wfail(w, -ENOMEM, "%s", "out of memory");
			if (r < 0)
				w->err = r;
			prev = t;
		}
		w->first_ns = start;
		w->last_ns = t;
		pthread_barrier_wait(&b->end);
	}
	return NULL;
}

static const enum echo_mode phase_mode[PH_COUNT] = {
	[PH_RAW_HELLO] = EM_HELLO, [PH_RPC] = EM_HELLO, [PH_RAW_CYCLE_FD] = EM_CYCLE_FD,
	[PH_RAW_CYCLE] = EM_CYCLE, [PH_LEASE] = EM_HELLO,
};

/* Runs one phase on every client thread at once for `seconds`; round < 0
 * is the warm-up, whose samples are dropped. Throughput is every client's
 * operations over the time from the first start to the last end. */
static int run_phase(struct bench *b, enum phase_id ph, struct phase *p, double seconds,
		     int round)
{
	uint64_t first = UINT64_MAX, last = 0, ops = 0;
	struct samples s = { 0 };
	int r = 0;

	atomic_store_explicit(&b->mode, (int)phase_mode[ph], memory_order_release);
	b->phase = ph;
	b->slice_ns = (uint64_t)(seconds * 1e9);
	for (unsigned i = 0; i < b->nclients; i++)
		b->w[i].s.n = b->w[i].acq.n = b->w[i].rel.n = 0;
	pthread_barrier_wait(&b->start);
	pthread_barrier_wait(&b->end);
	for (unsigned i = 0; i < b->nclients; i++) {
		struct worker *w = &b->w[i];

		if (w->err < 0) {
			snprintf(b->err, sizeof(b->err), "client %u: %.200s", i, w->errmsg);
			return w->err;
		}
		if (w->first_ns < first)
			first = w->first_ns;
		if (w->last_ns > last)
			last = w->last_ns;
		ops += w->s.n;
		if (round >= 0 && (samples_append(&s, &w->s) < 0 ||
				   samples_append(&p->all, &w->s) < 0 ||
				   samples_append(&p->acquire, &w->acq) < 0 ||
				   samples_append(&p->release, &w->rel) < 0))
			r = -ENOMEM;
	}
	if (r == 0 && round >= 0) {
		p->ops += ops;
		p->wall_ns += last - first;
		p->round_p50[round] = median_us_of(s.v, s.n);
		p->round_ops_s[round] = last > first ? (double)ops / ((double)(last - first) / 1e9) : 0;
	}
	if (r < 0)
		snprintf(b->err, sizeof(b->err), "out of memory");
	samples_free(&s);
	return r;
}

/* --- CPU placement ----------------------------------------------------- */

static int pin_task(struct pinning *p, pid_t tid, int cpu)
{
	struct pinned_task *t;
	cpu_set_t set;

	for (size_t i = 0; i < p->ntasks; i++)
		if (p->tasks[i].tid == tid)
			return 0;
	t = realloc(p->tasks, (p->ntasks + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	p->tasks = t;
	t = &p->tasks[p->ntasks];
	t->tid = tid;
	if (sched_getaffinity(tid, sizeof(t->old), &t->old) < 0)
		return errno == ESRCH ? 0 : -errno; /* a thread that just ended */
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(tid, sizeof(set), &set) < 0)
		return errno == ESRCH ? 0 : -errno;
	p->ntasks++;
	return 0;
}

/* Pins every thread of the daemon; threads it starts later inherit the
 * mask of the thread that starts them. */
static int pin_daemon(struct pinning *p, pid_t pid, int cpu)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while (r == 0 && (d = readdir(dir)))
		if (d->d_name[0] != '.')
			r = pin_task(p, (pid_t)atoi(d->d_name), cpu);
	closedir(dir);
	return r;
}

/* Picks the CPUs among those we may run on, pins this thread, and the
 * daemon when we know its pid. */
static int pin_setup(struct pinning *p, pid_t daemon_pid)
{
	cpu_set_t allowed, set;
	int cpus[2] = { -1, -1 }, found = 0, r;

	p->client_cpu = p->peer_cpu = -1;
	if (p->mode == CPUS_NONE)
		return 0;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return -errno;
	for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[found++] = c;
	if (p->mode == CPUS_SPLIT && found < 2) {
		fprintf(stderr, "bench-rpc: --cpus split needs two CPUs, this process may use %d\n",
			found);
		return -EINVAL;
	}
	p->client_cpu = cpus[0];
	p->peer_cpu = p->mode == CPUS_SPLIT ? cpus[1] : cpus[0];
	if (daemon_pid <= 0) {
		fprintf(stderr, "bench-rpc: the daemon's pid is unknown (SO_PEERCRED): cannot pin "
				"it; use --cpus none\n");
		return -ESRCH;
	}
	p->daemon_pid = daemon_pid;
	r = pin_daemon(p, daemon_pid, p->peer_cpu);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: cannot pin zonedd (pid %d) to CPU %d: %s; use --cpus "
				"none\n", (int)daemon_pid, p->peer_cpu, strerror(-r));
		return r;
	}
	if ((r = pthread_getaffinity_np(pthread_self(), sizeof(p->self_old), &p->self_old)) != 0)
		return -r;
	CPU_ZERO(&set);
	CPU_SET(p->client_cpu, &set);
	if ((r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set)) != 0)
		return -r;
	p->self_pinned = true;
	return 0;
}

/* Gives the daemon its own masks back: with --socket it is someone's
 * running daemon. Threads it started during the run (libuv's pool starts
 * lazily) inherited the pinned mask: they get the main thread's old one. */
static void pin_restore(struct pinning *p)
{
	const cpu_set_t *main_old = NULL;
	char path[64];
	struct dirent *d;
	DIR *dir;

	for (size_t i = 0; i < p->ntasks; i++) {
		sched_setaffinity(p->tasks[i].tid, sizeof(p->tasks[i].old), &p->tasks[i].old);
		if (p->tasks[i].tid == p->daemon_pid)
			main_old = &p->tasks[i].old;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)p->daemon_pid);
	dir = main_old ? opendir(path) : NULL;
	while (dir && (d = readdir(dir))) {
		pid_t tid = (pid_t)atoi(d->d_name);
		bool known = false;

		for (size_t i = 0; i < p->ntasks && !known; i++)
			known = p->tasks[i].tid == tid;
		if (tid > 0 && !known)
			sched_setaffinity(tid, sizeof(*main_old), main_old);
	}
	if (dir)
		closedir(dir);
	free(p->tasks);
	p->tasks = NULL;
	p->ntasks = 0;
	if (p->self_pinned)
		pthread_setaffinity_np(pthread_self(), sizeof(p->self_old), &p->self_old);
	p->self_pinned = false;
}

/* --- other load on our CPUs --------------------------------------------- */

/* The CPU time of the CPUs the benchmark runs on, and of this process and
 * the daemon, at one moment: what the CPUs did that neither of us did was
 * someone else's work, and a ratio measured beside it means less (one
 * thread of the raw peer loses more to a competitor than the daemon's
 * five do). In clock ticks. */
struct cpu_snap {
	uint64_t busy, steal, total; /* over the CPUs measured */
	uint64_t ours;               /* this process and the daemon */
	unsigned ncpus;
};

static uint64_t proc_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the command's closing parenthesis: state is field 3, utime
	 * and stime fields 14 and 15. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			 &st) != 2)
		return 0;
	return ut + st;
}

static bool cpu_measured(const struct pinning *p, int cpu, const cpu_set_t *allowed)
{
	if (p->mode == CPUS_NONE)
		return CPU_ISSET(cpu, allowed);
	return cpu == p->client_cpu || cpu == p->peer_cpu;
}

static int cpu_snapshot(const struct pinning *pin, pid_t daemon_pid, struct cpu_snap *s)
{
	char line[512];
	cpu_set_t allowed;
	FILE *f;

	*s = (struct cpu_snap){ 0 };
	/* The original mask: ours is pinned by now. */
	if (pin->self_pinned)
		allowed = pin->self_old;
	else if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return -errno;
	f = fopen("/proc/stat", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v[8] = { 0 };
		int cpu;

		if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9')
			continue;
		if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0],
			   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 9 ||
		    cpu < 0 || cpu >= CPU_SETSIZE || !cpu_measured(pin, cpu, &allowed))
			continue;
		/* user nice system idle iowait irq softirq steal */
		s->busy += v[0] + v[1] + v[2] + v[5] + v[6];
		s->steal += v[7];
		s->total += v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
		s->ncpus++;
	}
	fclose(f);
	s->ours = proc_ticks(getpid()) + proc_ticks(daemon_pid);
	return s->ncpus ? 0 : -ENOENT;
}

/* Shares of the measured CPUs' time: others' work, and what the
 * hypervisor gave to other guests. */
static void cpu_foreign(const struct cpu_snap *a, const struct cpu_snap *b, double *other,
			double *steal)
{
	uint64_t total = b->total - a->total, busy = b->busy - a->busy, ours = b->ours - a->ours;

	*other = *steal = 0;
	if (total == 0)
		return;
	*other = busy > ours ? (double)(busy - ours) / (double)total : 0;
	*steal = (double)(b->steal - a->steal) / (double)total;
}

static void describe_cpus(const struct pinning *p, char *out, size_t cap)
{
	if (p->mode == CPUS_NONE)
		snprintf(out, cap, "none (unpinned: the scheduler decides, ratios vary)");
	else if (p->mode == CPUS_SAME)
		snprintf(out, cap, "same (clients, raw peer and zonedd on CPU %d)", p->client_cpu);
	else
		snprintf(out, cap, "split (clients on CPU %d; raw peer and zonedd on CPU %d)",
			 p->client_cpu, p->peer_cpu);
}

/* The top of the build tree: $top_builddir, else two levels above this
 * program (bench/bench-rpc, or bench/.libs/bench-rpc behind libtool's
 * wrapper). */
static int find_build_dir(char *out, size_t cap)
{
	const char *top = getenv("top_builddir");
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (top && *top) {
		snprintf(out, cap, "%s", top);
		return 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -ENOENT;
	exe[n] = '\0';
	for (int up = 0; up < 2; up++) {
		slash = strrchr(exe, '/');
		if (!slash)
			return -ENOENT;
		*slash = '\0';
		if (up == 0 && (slash = strrchr(exe, '/')) && strcmp(slash, "/.libs") == 0)
			*slash = '\0';
	}
	snprintf(out, cap, "%s", exe[0] ? exe : "/");
	return 0;
}

static void dump_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return;
	fprintf(stderr, "--- zonedd log ---\n");
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

/* Starts zonedd of the build tree on a temporary directory with one
 * emulated device, "emu0", of 1 GiB in 8 MiB zones, without open or
 * active zone limits: every client holds a lease at once. */
static int start_daemon(struct zt_daemon *z, const char *build_dir)
{
	char emul[600], exe[PATH_MAX + 32];
	const char *args[] = { "--emulate", emul, "--log-level", "warning", NULL };
	struct stat st;
	int r;

	snprintf(exe, sizeof(exe), "%s/daemon/zonedd", build_dir);
	if (stat(exe, &st) < 0) {
		fprintf(stderr, "bench-rpc: no zonedd at %s: pass --build-dir or --socket\n", exe);
		return -ENOENT;
	}
	/* The fixture finds zonedd through $top_builddir. */
	if (setenv("top_builddir", build_dir, 1) < 0)
		return -errno;
	memset(z, 0, sizeof(*z));
	snprintf(z->dir, sizeof(z->dir), "%s/zoned-bench-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(z->dir)) {
		r = -errno;
		z->dir[0] = '\0';
		return r;
	}
	snprintf(z->sock, sizeof(z->sock), "%s/sock", z->dir);
	snprintf(z->state, sizeof(z->state), "%s/state", z->dir);
	snprintf(z->log, sizeof(z->log), "%s/zonedd.log", z->dir);
	snprintf(emul, sizeof(emul), "%s/dev.img,id=emu0,size=1G,zone-size=8M,max-open=0,max-active=0", z->dir);
	r = zt_daemon_start(z, args);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: cannot start %s: %s\n", exe, strerror(-r));
		dump_log(z->log);
	}
	return r;
}

struct opts {
	const char *socket;
	const char *device;
	const char *build_dir;
	double seconds;
	unsigned rounds;
	unsigned clients;
	int only;               /* a phase_id: that phase alone (profiling); -1: all */
	enum cpus cpus;
	bool json;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bench-rpc [--socket PATH [--device ID]] [--build-dir DIR] [--clients N]\n"
		"                 [--seconds N] [--rounds N] [--cpus same|split|none] [--json]\n"
		"Measures zonedd's round trips (zc_hello) and lease cycles (acquire + release keep)\n"
		"against raw SOCK_SEQPACKET exchanges of the same packets with a peer thread of this\n"
		"process (a ping-pong with one client, a single-threaded epoll server with more),\n"
		"from N client threads at once; phases are interleaved.\n"
		"  --socket PATH    a running zonedd (default: start one from the build tree with\n"
		"                   an emulated device on a temporary directory)\n"
		"  --device ID      device the lease cycle leases on (default: emu0 of the\n"
		"                   daemon started here; with --socket, any device)\n"
		"  --build-dir DIR  build tree holding daemon/zonedd (default: $top_builddir,\n"
		"                   else the tree this program was built in)\n"
		"  --clients N      client threads, one connection each (default 1, at most %d)\n"
		"  --seconds N      measuring time per phase, split over the rounds (default 2)\n"
		"  --rounds N       rounds (default 3, at most %d)\n"
		"  --cpus same      clients, raw peer and every zonedd thread on one CPU (default)\n"
		"  --cpus split     clients on one CPU, raw peer and zonedd on another\n"
		"  --cpus none      no pinning: cross-CPU wakeups come and go, so do the ratios\n"
		"                   (same and split change the daemon's CPU affinity for the run\n"
		"                   and restore it at the end)\n"
		"  --only PHASE     that phase alone, no baseline and no ratio: to profile the\n"
		"                   daemon under one load (raw_hello, rpc, raw_cycle_fd,\n"
		"                   raw_cycle, lease_cycle)\n"
		"  --json           one JSON object on stdout\n",
		MAX_CLIENTS, MAX_ROUNDS);
}

static int parse_uint(const char *opt, const char *arg, unsigned long max, unsigned *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || *arg == '-' || v == 0 || v > max) {
		fprintf(stderr, "bench-rpc: --%s %s: want 1..%lu\n", opt, arg, max);
		return 2;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "device", required_argument, NULL, 'd' },
		{ "build-dir", required_argument, NULL, 'B' },
		{ "clients", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 't' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "only", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 's': o->socket = optarg; break;
		case 'd': o->device = optarg; break;
		case 'B': o->build_dir = optarg; break;
		case 'j': o->json = true; break;
		case 'c':
			for (c = 0; c < 3 && strcmp(optarg, cpus_name[c]); c++)
				;
			if (c == 3) {
				fprintf(stderr, "bench-rpc: --cpus %s: want same, split or none\n",
					optarg);
				return 2;
			}
			o->cpus = (enum cpus)c;
			break;
		case 't':
			errno = 0;
			o->seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o->seconds > 0) || o->seconds > 3600) {
				fprintf(stderr, "bench-rpc: --seconds %s: want a number in (0, 3600]\n",
					optarg);
				return 2;
			}
			break;
		case 'r':
			if (parse_uint("rounds", optarg, MAX_ROUNDS, &o->rounds))
				return 2;
			break;
		case 'n':
			if (parse_uint("clients", optarg, MAX_CLIENTS, &o->clients))
				return 2;
			break;
		case 'o':
			for (c = 0; c < PH_COUNT && strcmp(optarg, phase_key[c]); c++)
				;
			if (c == PH_COUNT) {
				fprintf(stderr, "bench-rpc: --only %s: not a phase\n", optarg);
				return 2;
			}
			o->only = c;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	return 0;
}

/* --- the report --------------------------------------------------------- */

struct result {
	double p50, p99, ops_s;
	uint64_t ops;
};

static struct result summarise(struct phase *p)
{
	struct result res = { 0 };

	/* A phase left out (--only) has no samples and no array at all. */
	if (p->all.n)
		qsort(p->all.v, p->all.n, sizeof(uint64_t), cmp_u64);
	res.ops = p->ops;
	res.p50 = pct_us(p->all.v, p->all.n, 50);
	res.p99 = pct_us(p->all.v, p->all.n, 99);
	res.ops_s = p->wall_ns ? (double)p->ops / ((double)p->wall_ns / 1e9) : 0;
	return res;
}

/* Each figure beside its baseline: measured / baseline. */
struct pair {
	const char *key, *label;
	enum phase_id num, den;
};

static const struct pair pairs[] = {
	{ "rpc_over_raw_hello", "rpc / raw hello", PH_RPC, PH_RAW_HELLO },
	{ "lease_cycle_over_raw_cycle_fd", "lease cycle / raw cycle with fd", PH_LEASE,
	  PH_RAW_CYCLE_FD },
	{ "raw_cycle_fd_over_raw_cycle", "raw cycle with fd / without", PH_RAW_CYCLE_FD,
	  PH_RAW_CYCLE },
	{ "lease_cycle_over_rpc", "lease cycle / rpc", PH_LEASE, PH_RPC },
};
#define NPAIRS (sizeof(pairs) / sizeof(pairs[0]))

static double q(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static void ratio_range(const double *num, const double *den, unsigned n, double *lo, double *hi)
{
	*lo = *hi = 0;
	for (unsigned i = 0; i < n; i++) {
		double r = q(num[i], den[i]);

		if (i == 0 || r < *lo)
			*lo = r;
		if (i == 0 || r > *hi)
			*hi = r;
	}
}

static void print_json_ratios(const double *num, const double *den, unsigned n)
{
	putchar('[');
	for (unsigned i = 0; i < n; i++)
		printf("%s%.3f", i ? "," : "", q(num[i], den[i]));
	putchar(']');
}

/* desc is ours or a socket path: escape what JSON needs escaped. */
static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* The target for this run: at one client a lease cycle within 1.5
 * times the raw cycle with its fd (medians); with more, lease-cycle
 * throughput at least 0.7 of the epoll server's. */
struct target {
	const char *figure, *text;
	double value, limit;
	bool met;
};

static struct target target_of(const struct bench *b, const struct result *res)
{
	struct target t;

	if (b->nclients == 1) {
		t.figure = "median";
		t.text = "lease cycle <= 1.5 x raw cycle with fd (median latency)";
		t.value = q(res[PH_LEASE].p50, res[PH_RAW_CYCLE_FD].p50);
		t.limit = 1.5;
		t.met = t.value > 0 && t.value <= t.limit;
	} else {
		t.figure = "throughput";
		t.text = "lease cycles/s >= 0.7 x the epoll server's raw cycles with fd";
		t.value = q(res[PH_LEASE].ops_s, res[PH_RAW_CYCLE_FD].ops_s);
		t.limit = 0.7;
		t.met = t.value >= t.limit;
	}
	return t;
}

/* --only: the one phase's figures, nothing to compare them with. */
static void report_only(const struct opts *o, const struct bench *b, const struct result *res,
			const char *cpus, const char *daemon_desc)
{
	const char *key = phase_key[o->only];

	if (o->json) {
		printf("{\"daemon\":");
		print_json_string(daemon_desc);
		printf(",\"cpus\":\"%s\",\"clients\":%u,\"only\":\"%s\",\"%s\":{\"ops\":%" PRIu64
		       ",\"ops_s\":%.0f,\"median_us\":%.2f,\"p99_us\":%.2f}}\n",
		       cpus_name[o->cpus], b->nclients, key, key, res->ops, res->ops_s, res->p50,
		       res->p99);
		return;
	}
	printf("bench-rpc: %s; %u client%s, %.2f s of %s alone (no baseline: --only)\n",
	       daemon_desc, b->nclients, b->nclients > 1 ? "s" : "", o->seconds, key);
	printf("  cpus: %s\n", cpus);
	printf("  %-32s %11s %11s %11s\n", "", "median us", "p99 us", "ops/s");
	printf("  %-32s %11.2f %11.2f %11.0f\n", phase_label[o->only], res->p50, res->p99,
	       res->ops_s);
}

static void report(const struct opts *o, struct bench *b, struct phase *ph, const char *daemon_desc)
{
	struct result res[PH_COUNT];
	struct target t;
	char cpus[160], method[64];
	double acq50, rel50;

	for (int i = 0; i < PH_COUNT; i++)
		res[i] = summarise(&ph[i]);
	acq50 = median_us_of(ph[PH_LEASE].acquire.v, ph[PH_LEASE].acquire.n);
	rel50 = median_us_of(ph[PH_LEASE].release.v, ph[PH_LEASE].release.n);
	describe_cpus(&b->pin, cpus, sizeof(cpus));
	t = target_of(b, res);
	if (o->only >= 0) {
		report_only(o, b, &res[o->only], cpus, daemon_desc);
		return;
	}

	if (o->json) {
		printf("{\"daemon\":");
		print_json_string(daemon_desc);
		printf(",\"cpus\":\"%s\",\"client_cpu\":%d,\"peer_cpu\":%d", cpus_name[o->cpus],
		       b->pin.client_cpu, b->pin.peer_cpu);
		printf(",\"clients\":%u,\"raw_peer\":\"%s\"", b->nclients,
		       b->nclients > 1 ? "epoll" : "pingpong");
		printf(",\"rounds\":%u,\"seconds_per_phase\":%.3f", o->rounds, o->seconds);
		printf(",\"other_load\":%.3f,\"steal\":%.3f", b->other_load, b->steal);
		printf(",\"packets\":{\"hello\":{\"request_bytes\":%zu,\"reply_bytes\":%zu},"
		       "\"cycle\":[", b->hello.req_len, b->hello.rep_len);
		for (unsigned i = 0; i < b->ncycle; i++) {
			method_of(&b->cycle[i], method, sizeof(method));
			printf("%s{\"method\":", i ? "," : "");
			print_json_string(method);
			printf(",\"request_bytes\":%zu,\"reply_bytes\":%zu,\"reply_fds\":%u}",
			       b->cycle[i].req_len, b->cycle[i].rep_len, b->cycle[i].rep_nfds);
		}
		printf("]}");
		for (int i = 0; i < PH_COUNT; i++) {
			printf(",\"%s\":{\"ops\":%" PRIu64 ",\"ops_s\":%.0f,\"median_us\":%.2f,"
			       "\"p99_us\":%.2f", phase_key[i], res[i].ops, res[i].ops_s, res[i].p50,
			       res[i].p99);
			if (i == PH_LEASE)
				printf(",\"acquire_median_us\":%.2f,\"release_median_us\":%.2f", acq50,
				       rel50);
			putchar('}');
		}
		printf(",\"ratios\":{");
		for (size_t k = 0; k < NPAIRS; k++) {
			const struct pair *p = &pairs[k];

			printf("%s\"%s\":{\"median\":%.3f,\"p99\":%.3f,\"throughput\":%.3f,"
			       "\"median_rounds\":", k ? "," : "", p->key,
			       q(res[p->num].p50, res[p->den].p50), q(res[p->num].p99, res[p->den].p99),
			       q(res[p->num].ops_s, res[p->den].ops_s));
			print_json_ratios(ph[p->num].round_p50, ph[p->den].round_p50, o->rounds);
			printf(",\"throughput_rounds\":");
			print_json_ratios(ph[p->num].round_ops_s, ph[p->den].round_ops_s, o->rounds);
			putchar('}');
		}
		printf("},\"target\":{\"ratio\":\"lease_cycle_over_raw_cycle_fd\",\"figure\":\"%s\","
		       "\"value\":%.3f,\"limit\":%.2f,\"met\":%s}}\n", t.figure, t.value, t.limit,
		       t.met ? "true" : "false");
		return;
	}
	printf("bench-rpc: %s; %u client%s, %u rounds, %.2f s per phase\n", daemon_desc,
	       b->nclients, b->nclients > 1 ? "s" : "", o->rounds, o->seconds);
	printf("  cpus: %s\n", cpus);
	printf("  other load on these CPUs: %.0f %% of their time, steal %.0f %%%s\n",
	       b->other_load * 100, b->steal * 100,
	       b->other_load + b->steal > OTHER_LOAD_WARN ? ": the ratios are unsure" : "");
	if (b->nclients > 1)
		printf("  raw peer: one thread, one epoll set over %u socketpairs\n", b->nclients);
	else
		printf("  raw peer: a thread in recv() on the other end of a socketpair\n");
	printf("  packets (request/reply bytes): daemon.hello %zu/%zu", b->hello.req_len,
	       b->hello.rep_len);
	for (unsigned i = 0; i < b->ncycle; i++) {
		method_of(&b->cycle[i], method, sizeof(method));
		printf(", %s %zu/%zu", method, b->cycle[i].req_len, b->cycle[i].rep_len);
		if (b->cycle[i].rep_nfds)
			printf(" + %u fd", b->cycle[i].rep_nfds);
	}
	printf("\n\n  %-32s %11s %11s %11s\n", "", "median us", "p99 us", "ops/s");
	for (int i = 0; i < PH_COUNT; i++)
		printf("  %-32s %11.2f %11.2f %11.0f\n", phase_label[i], res[i].p50, res[i].p99,
		       res[i].ops_s);
	printf("  %-32s %11.2f (release %.2f)\n", "  of which acquire", acq50, rel50);
	printf("\n  %-32s %11s %11s %11s  %s\n", "measured / baseline", "median", "p99",
	       "ops/s", "median, per round");
	for (size_t k = 0; k < NPAIRS; k++) {
		const struct pair *p = &pairs[k];
		double lo, hi;

		ratio_range(ph[p->num].round_p50, ph[p->den].round_p50, o->rounds, &lo, &hi);
		printf("  %-32s %11.2f %11.2f %11.2f  %.2f..%.2f\n", p->label,
		       q(res[p->num].p50, res[p->den].p50), q(res[p->num].p99, res[p->den].p99),
		       q(res[p->num].ops_s, res[p->den].ops_s), lo, hi);
	}
	printf("\n  target (issue 12): %s: %.2f, %s\n", t.text, t.value, t.met ? "met" : "missed");
}

static void cleanup_dir(struct bench *b)
{
	char path[300];

	if (!b->dir[0])
		return;
	snprintf(path, sizeof(path), "%s/passed", b->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/relay", b->dir);
	unlink(path);
	rmdir(b->dir);
	b->dir[0] = '\0';
}

int main(int argc, char **argv)
{
	struct opts o = { .seconds = 2, .rounds = 3, .clients = 1, .only = -1 };
	struct bench b = { .pass_fd = -1 };
	struct phase ph[PH_COUNT] = { 0 };
	struct zt_daemon z = { 0 };
	char build_dir[PATH_MAX], desc[400], path[300];
	const char *sock;
	struct sigaction sa = { .sa_handler = on_signal };
	unsigned nstarted = 0;
	bool barriers = false, partial, have_snap = false;
	struct cpu_snap snap0, snap1;
	int r, status = 1;

	r = parse_opts(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r;
	/* ^C ends the phase under way and still stops the daemon we started. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	b.nclients = o.clients;
	snprintf(b.dir, sizeof(b.dir), "%s/zoned-bench-rpc-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(b.dir)) {
		fprintf(stderr, "bench-rpc: mkdtemp %s: %s\n", b.dir, strerror(errno));
		b.dir[0] = '\0';
		return 1;
	}
	if (o.socket) {
		sock = o.socket;
		b.device = o.device;
		snprintf(desc, sizeof(desc), "zonedd at %s", sock);
	} else {
		if (o.build_dir)
			snprintf(build_dir, sizeof(build_dir), "%s", o.build_dir);
		else if (find_build_dir(build_dir, sizeof(build_dir)) < 0) {
			fprintf(stderr, "bench-rpc: cannot tell where the build tree is: pass "
					"--build-dir or --socket\n");
			goto out;
		}
		if (start_daemon(&z, build_dir) < 0)
			goto out;
		sock = z.sock;
		b.device = o.device ? o.device : "emu0";
		snprintf(desc, sizeof(desc), "own zonedd, emulated 1 GiB device in 8 MiB zones");
	}

	r = capture(&b, sock);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: %s: %s\n", sock, b.err[0] ? b.err : strerror(-r));
		goto out;
	}
	/* What the raw peer passes: a regular file it holds, as the daemon
	 * passes an open zone file. */
	snprintf(path, sizeof(path), "%s/passed", b.dir);
	b.pass_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (b.pass_fd < 0) {
		fprintf(stderr, "bench-rpc: %s: %s\n", path, strerror(errno));
		goto out;
	}
	b.pin.mode = o.cpus;
	if (pin_setup(&b.pin, b.daemon_pid) < 0)
		goto out;
	b.w = calloc(b.nclients, sizeof(*b.w));
	if (!b.w)
		goto out;
	for (unsigned i = 0; i < b.nclients; i++) {
		b.w[i] = (struct worker){ .b = &b, .idx = i, .raw_fd = -1 };
		b.w[i].rbuf = malloc(PACKET_MAX);
		if (!b.w[i].rbuf)
			goto out;
		r = zc_connect(sock, &b.w[i].c);
		if (r < 0) {
			fprintf(stderr, "bench-rpc: connection %u of %u to %s: %s\n", i + 1, b.nclients,
				sock, zc_last_error(NULL));
			goto out;
		}
	}
	r = echo_start(&b);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: the raw peer: %s\n", strerror(-r));
		goto out;
	}
	if (pthread_barrier_init(&b.start, NULL, b.nclients + 1) != 0 ||
	    pthread_barrier_init(&b.end, NULL, b.nclients + 1) != 0)
		goto out;
	barriers = true;
	/* The client threads inherit this thread's CPU. */
	for (; nstarted < b.nclients; nstarted++)
		if ((r = pthread_create(&b.w[nstarted].thread, NULL, worker_main,
					&b.w[nstarted])) != 0) {
			fprintf(stderr, "bench-rpc: pthread_create: %s\n", strerror(r));
			goto out;
		}

	for (int i = 0; i < PH_COUNT && !interrupted; i++)
		if ((o.only < 0 || o.only == i) && (r = run_phase(&b, (enum phase_id)i, &ph[i],
				   o.seconds / o.rounds < WARMUP_S ? o.seconds / o.rounds : WARMUP_S,
				   -1)) < 0)
			goto failed;
	have_snap = cpu_snapshot(&b.pin, b.daemon_pid, &snap0) == 0;
	for (unsigned round = 0; round < o.rounds && !interrupted; round++) {
		/* Rotate the order so no phase always runs first or last. */
		for (int k = 0; k < PH_COUNT && !interrupted; k++) {
			enum phase_id i = (enum phase_id)((round + (unsigned)k) % PH_COUNT);

			if (o.only >= 0 && o.only != (int)i)
				continue;
			r = run_phase(&b, i, &ph[i], o.seconds / o.rounds, (int)round);
			if (r < 0)
				goto failed;
		}
	}
	if (interrupted) {
		fprintf(stderr, "bench-rpc: interrupted\n");
		goto out;
	}
	if (have_snap && cpu_snapshot(&b.pin, b.daemon_pid, &snap1) == 0)
		cpu_foreign(&snap0, &snap1, &b.other_load, &b.steal);
	report(&o, &b, ph, desc);
	status = 0;
	goto out;
failed:
	fprintf(stderr, "bench-rpc: %s\n",
		interrupted ? "interrupted" : b.err[0] ? b.err : strerror(-r));
out:
	/* Some client threads never started: the barrier cannot be met, those
	 * that did stay blocked in it (touching nothing but it) until the
	 * process exits. */
	partial = nstarted > 0 && nstarted < b.nclients;
	if (barriers && !partial && nstarted) {
		b.quit = true;
		pthread_barrier_wait(&b.start);
		for (unsigned i = 0; i < nstarted; i++)
			pthread_join(b.w[i].thread, NULL);
	}
	echo_stop(&b);
	if (barriers && !partial) {
		pthread_barrier_destroy(&b.start);
		pthread_barrier_destroy(&b.end);
	}
	for (unsigned i = 0; b.w && i < b.nclients; i++) {
		zc_close(b.w[i].c);
		if (b.w[i].raw_fd >= 0)
			close(b.w[i].raw_fd);
		free(b.w[i].rbuf);
		samples_free(&b.w[i].s);
		samples_free(&b.w[i].acq);
		samples_free(&b.w[i].rel);
	}
	free(b.w);
	pin_restore(&b.pin);
	if (z.pid > 0) {
		r = zt_daemon_stop(&z);
		if (r != 0) {
			fprintf(stderr, "bench-rpc: zonedd exited with status %d\n", r);
			dump_log(z.log);
			status = 1;
		}
	}
	zt_daemon_cleanup(&z);
	for (int i = 0; i < PH_COUNT; i++) {
		samples_free(&ph[i].all);
		samples_free(&ph[i].acquire);
		samples_free(&ph[i].release);
	}
	exchange_free(&b.hello);
	for (unsigned i = 0; i < b.ncycle; i++)
		exchange_free(&b.cycle[i]);
	if (b.pass_fd >= 0)
		close(b.pass_fd);
	cleanup_dir(&b);
	return status;
}
