/* bench-rpc: the cost of a zonedd round trip, as ratios against a raw
 * SOCK_SEQPACKET ping-pong of the same packet sizes run in this process.
 *
 * Three phases, interleaved over several rounds (the order rotates each
 * round) so that drift — frequency scaling, a noisy neighbour — hits every
 * phase alike:
 *   baseline     two threads of this process bounce packets the size of a
 *                daemon.hello request and reply over a socketpair;
 *   rpc          zc_hello() to a real zonedd through libzoned-client;
 *   lease cycle  zc_lease_acquire (buffered) + zc_lease_release(KEEP).
 * Where the threads run matters more than anything measured: waking an idle
 * CPU can cost more than the whole round trip (about 55 us of a 67 us one on
 * a 2-vCPU VM). So the client thread, the baseline's echo thread and every
 * thread of zonedd are pinned, either all to one CPU (--cpus same, the
 * default: the software path alone) or client on one CPU and echo thread and
 * daemon on another (--cpus split: a cross-CPU wakeup in every round trip of
 * both). The daemon's affinity is restored at the end. The absolute figures
 * depend on the machine; the ratios are the result. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>

#include "tests/fixture.h"

/* The library's receive buffer is one whole packet of the protocol's
 * largest size; the baseline receives into the same. */
#define PACKET_MAX 65536
#define MAX_ROUNDS 100
/* Untimed calls of each phase before the first round: page faults, the
 * daemon's first allocations, the echo thread's first wakeup. */
#define WARMUP_OPS 200

enum phase_id { PH_BASELINE, PH_RPC, PH_LEASE, PH_COUNT };
enum cpus { CPUS_SAME, CPUS_SPLIT, CPUS_NONE };
static const char *const cpus_name[] = { "same", "split", "none" };

static const char *const phase_key[PH_COUNT] = { "baseline", "rpc", "lease_cycle" };
static const char *const phase_label[PH_COUNT] = {
	"baseline (socketpair ping-pong)",
	"rpc (zc_hello)",
	"lease cycle (acquire+release)",
};

/* Latencies in nanoseconds; grows as needed. */
struct samples {
	uint64_t *v;
	size_t n, cap;
};

struct phase {
	struct samples all;      /* every round pooled */
	uint64_t wall_ns;        /* time spent in the phase, all rounds */
	double round_p50[MAX_ROUNDS];
	/* lease cycle only: the two halves, pooled */
	struct samples acquire, release;
};

struct echo {
	int fd;
	const char *reply;
	size_t reply_len;
	pthread_t thread;
	bool running;
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

struct bench {
	zc_client *c;
	pid_t daemon_pid;        /* in our pid namespace (SO_PEERCRED) */
	struct pinning pin;
	const char *device;      /* NULL: any device serves the leases */
	int ping_fd;             /* our end of the socketpair */
	struct echo echo;
	char request[256];       /* a daemon.hello request, as the library sends it */
	size_t request_len;
	char reply[PACKET_MAX];  /* the daemon's reply to it, byte for byte */
	size_t reply_len;
	char *rbuf;              /* PACKET_MAX bytes */
	char err[256];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

static void samples_free(struct samples *s)
{
	free(s->v);
	*s = (struct samples){ 0 };
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
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
	qsort(v, n, sizeof(*v), cmp_u64);
	return pct_us(v, n, 50);
}

/* --- baseline: raw SOCK_SEQPACKET ping-pong between two threads ------- */

/* The other end: answers every packet with the reply, as the daemon would,
 * until our end shuts down. */
static void *echo_main(void *arg)
{
	struct echo *e = arg;
	char *buf = malloc(PACKET_MAX);

	while (buf) {
		ssize_t n = recv(e->fd, buf, PACKET_MAX, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (send(e->fd, e->reply, e->reply_len, MSG_NOSIGNAL) < 0)
			break;
	}
	free(buf);
	return NULL;
}

static int baseline_op(struct bench *b)
{
	ssize_t n;

	if (send(b->ping_fd, b->request, b->request_len, MSG_NOSIGNAL) < 0)
		return -errno;
	do
		n = recv(b->ping_fd, b->rbuf, PACKET_MAX, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == b->reply_len ? 0 : -EPROTO;
}

static int baseline_start(struct bench *b)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	b->ping_fd = sv[0];
	b->echo.fd = sv[1];
	b->echo.reply = b->reply;
	b->echo.reply_len = b->reply_len;
	{
		pthread_attr_t attr;
		cpu_set_t set;
		int e;

		pthread_attr_init(&attr);
		if (b->pin.peer_cpu >= 0) {
			CPU_ZERO(&set);
			CPU_SET(b->pin.peer_cpu, &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		e = pthread_create(&b->echo.thread, &attr, echo_main, &b->echo);
		pthread_attr_destroy(&attr);
		if (e != 0)
			return -e;
	}
	b->echo.running = true;
	return 0;
}

static void baseline_stop(struct bench *b)
{
	if (b->ping_fd >= 0)
		shutdown(b->ping_fd, SHUT_RDWR);
	if (b->echo.running)
		pthread_join(b->echo.thread, NULL);
	b->echo.running = false;
	if (b->ping_fd >= 0)
		close(b->ping_fd);
	if (b->echo.fd >= 0)
		close(b->echo.fd);
	b->ping_fd = b->echo.fd = -1;
}

/* --- the daemon side --------------------------------------------------- */

static int rpc_op(struct bench *b)
{
	struct zc_hello h;
	int r = zc_hello(b->c, &h);

	if (r < 0)
		snprintf(b->err, sizeof(b->err), "zc_hello: %s", zc_last_error(b->c));
	return r;
}

static int lease_op(struct bench *b, uint64_t *acquire_ns, uint64_t *release_ns)
{
	struct zc_lease_opts lo;
	zc_lease *l = NULL;
	uint64_t t0, t1;
	int r;

	zc_lease_opts_init(&lo);
	lo.device = b->device;
	/* Buffered: an O_DIRECT open may cost differently per filesystem,
	 * and it is the protocol and the daemon being measured here. */
	lo.buffered = true;
	lo.label = "bench-rpc";
	t0 = now_ns();
	r = zc_lease_acquire(b->c, &lo, &l);
	t1 = now_ns();
	if (r < 0) {
		snprintf(b->err, sizeof(b->err), "zc_lease_acquire: %s", zc_last_error(b->c));
		return r;
	}
	r = zc_lease_release(l, ZC_RELEASE_KEEP);
	if (r < 0) {
		snprintf(b->err, sizeof(b->err), "zc_lease_release: %s", zc_last_error(b->c));
		return r;
	}
	*acquire_ns = t1 - t0;
	*release_ns = now_ns() - t1;
	return 0;
}

static int one_op(struct bench *b, enum phase_id ph, struct phase *p)
{
	uint64_t acq, rel;
	int r;

	switch (ph) {
	case PH_BASELINE:
		r = baseline_op(b);
		if (r < 0)
			snprintf(b->err, sizeof(b->err), "ping-pong: %s", strerror(-r));
		return r;
	case PH_RPC:
		return rpc_op(b);
	default:
		r = lease_op(b, &acq, &rel);
		if (r == 0 && p && ((r = samples_add(&p->acquire, acq)) < 0 ||
				    (r = samples_add(&p->release, rel)) < 0))
			snprintf(b->err, sizeof(b->err), "out of memory");
		return r;
	}
}

/* Runs one phase for `seconds`, one clock read per operation: each sample
 * is the time from the end of the previous operation to the end of this one. */
static int run_slice(struct bench *b, enum phase_id ph, struct phase *p, double seconds,
		     unsigned round)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), prev = start, t;
	size_t first = p->all.n;
	int r;

	do {
		r = one_op(b, ph, p);
		t = now_ns();
		if (r == 0 && (r = samples_add(&p->all, t - prev)) < 0)
			snprintf(b->err, sizeof(b->err), "out of memory");
		if (r < 0)
			return r;
		prev = t;
	} while (t < end && !interrupted);
	p->wall_ns += t - start;
	/* This round's median, on a sorted copy of its samples. */
	{
		size_t n = p->all.n - first;
		uint64_t *copy = malloc(n * sizeof(*copy));

		if (!copy) {
			snprintf(b->err, sizeof(b->err), "out of memory");
			return -ENOMEM;
		}
		memcpy(copy, p->all.v + first, n * sizeof(*copy));
		p->round_p50[round] = median_us_of(copy, n);
		free(copy);
	}
	return 0;
}

/* Sends a daemon.hello on a raw connection of its own to learn the exact
 * packet sizes the baseline must use. The request is built as the library
 * builds it (zp_request, compact). */
static int probe_sizes(struct bench *b, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r = 0;
	ssize_t n;

	b->request_len = (size_t)snprintf(b->request, sizeof(b->request),
					  "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":%d}",
					  1000);
	if (strlen(sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, b->request, b->request_len, MSG_NOSIGNAL) < 0) {
		r = -errno;
		goto out;
	}
	n = recv(fd, b->reply, sizeof(b->reply), 0);
	{
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			b->daemon_pid = cred.pid;
	}
	if (n < 0)
		r = -errno;
	else if (n == 0 || n > (ssize_t)sizeof(b->reply))
		r = -EPROTO;
	else
		b->reply_len = (size_t)n;
out:
	close(fd);
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

static void describe_cpus(const struct pinning *p, char *out, size_t cap)
{
	if (p->mode == CPUS_NONE)
		snprintf(out, cap, "none (unpinned: the scheduler decides, ratios vary)");
	else if (p->mode == CPUS_SAME)
		snprintf(out, cap, "same (client, echo thread and zonedd on CPU %d)", p->client_cpu);
	else
		snprintf(out, cap, "split (client on CPU %d; echo thread and zonedd on CPU %d)",
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
 * emulated device, "emu0", of 1 GiB in 8 MiB zones. */
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
	snprintf(emul, sizeof(emul), "%s/dev.img,id=emu0,size=1G,zone-size=8M", z->dir);
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
	enum cpus cpus;
	bool json;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bench-rpc [--socket PATH [--device ID]] [--build-dir DIR] [--seconds N]\n"
		"                 [--rounds N] [--cpus same|split|none] [--json]\n"
		"Measures zonedd round trips (zc_hello) against a raw SOCK_SEQPACKET ping-pong of\n"
		"the same packet sizes between two threads of this process, and a lease cycle\n"
		"(acquire + release keep) against the round trip; phases are interleaved.\n"
		"  --socket PATH    a running zonedd (default: start one from the build tree with\n"
		"                   an emulated device on a temporary directory)\n"
		"  --device ID      device the lease cycle leases on (default: emu0 of the\n"
		"                   daemon started here; with --socket, any device)\n"
		"  --build-dir DIR  build tree holding daemon/zonedd (default: $top_builddir,\n"
		"                   else the tree this program was built in)\n"
		"  --seconds N      measuring time per phase, split over the rounds (default 2)\n"
		"  --rounds N       rounds (default 3, at most %d)\n"
		"  --cpus same      client, echo thread and every zonedd thread on one CPU (default)\n"
		"  --cpus split     client on one CPU, echo thread and zonedd on another\n"
		"  --cpus none      no pinning: cross-CPU wakeups come and go, so do the ratios\n"
		"                   (same and split change the daemon's CPU affinity for the run\n"
		"                   and restore it at the end)\n"
		"  --json           one JSON object on stdout\n",
		MAX_ROUNDS);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "device", required_argument, NULL, 'd' },
		{ "build-dir", required_argument, NULL, 'B' },
		{ "seconds", required_argument, NULL, 't' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
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
		case 'r': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || v == 0 || v > MAX_ROUNDS) {
				fprintf(stderr, "bench-rpc: --rounds %s: want 1..%d\n", optarg,
					MAX_ROUNDS);
				return 2;
			}
			o->rounds = (unsigned)v;
			break;
		}
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

struct result {
	double p50, p99, ops_s;
	size_t ops;
};

static struct result summarise(struct phase *p)
{
	struct result res = { 0 };

	qsort(p->all.v, p->all.n, sizeof(uint64_t), cmp_u64);
	res.ops = p->all.n;
	res.p50 = pct_us(p->all.v, p->all.n, 50);
	res.p99 = pct_us(p->all.v, p->all.n, 99);
	res.ops_s = p->wall_ns ? (double)p->all.n / ((double)p->wall_ns / 1e9) : 0;
	return res;
}

static void ratio_range(const double *num, const double *den, unsigned n, double *lo, double *hi)
{
	*lo = *hi = 0;
	for (unsigned i = 0; i < n; i++) {
		double q = den[i] > 0 ? num[i] / den[i] : 0;

		if (i == 0 || q < *lo)
			*lo = q;
		if (i == 0 || q > *hi)
			*hi = q;
	}
}

static void print_json_ratios(const double *num, const double *den, unsigned n)
{
	putchar('[');
	for (unsigned i = 0; i < n; i++)
		printf("%s%.3f", i ? "," : "", den[i] > 0 ? num[i] / den[i] : 0);
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

static void report(const struct opts *o, struct bench *b, struct phase *ph, const char *daemon_desc)
{
	struct result res[PH_COUNT];
	char cpus[160];
	double acq50, rel50, rpc_base, lease_rpc, lo1, hi1, lo2, hi2;

	for (int i = 0; i < PH_COUNT; i++)
		res[i] = summarise(&ph[i]);
	acq50 = median_us_of(ph[PH_LEASE].acquire.v, ph[PH_LEASE].acquire.n);
	rel50 = median_us_of(ph[PH_LEASE].release.v, ph[PH_LEASE].release.n);
	rpc_base = res[PH_BASELINE].p50 > 0 ? res[PH_RPC].p50 / res[PH_BASELINE].p50 : 0;
	lease_rpc = res[PH_RPC].p50 > 0 ? res[PH_LEASE].p50 / res[PH_RPC].p50 : 0;
	ratio_range(ph[PH_RPC].round_p50, ph[PH_BASELINE].round_p50, o->rounds, &lo1, &hi1);
	ratio_range(ph[PH_LEASE].round_p50, ph[PH_RPC].round_p50, o->rounds, &lo2, &hi2);
	describe_cpus(&b->pin, cpus, sizeof(cpus));

	if (o->json) {
		printf("{\"daemon\":");
		print_json_string(daemon_desc);
		printf(",\"cpus\":\"%s\",\"client_cpu\":%d,\"peer_cpu\":%d", cpus_name[o->cpus],
		       b->pin.client_cpu, b->pin.peer_cpu);
		printf(",\"rounds\":%u,\"seconds_per_phase\":%.3f,"
		       "\"request_bytes\":%zu,\"reply_bytes\":%zu",
		       o->rounds, o->seconds, b->request_len, b->reply_len);
		for (int i = 0; i < PH_COUNT; i++) {
			printf(",\"%s\":{\"ops\":%zu,\"ops_s\":%.0f,\"median_us\":%.2f,\"p99_us\":%.2f",
			       phase_key[i], res[i].ops, res[i].ops_s, res[i].p50, res[i].p99);
			if (i == PH_LEASE)
				printf(",\"acquire_median_us\":%.2f,\"release_median_us\":%.2f", acq50,
				       rel50);
			putchar('}');
		}
		printf(",\"rpc_over_baseline\":%.3f,\"lease_cycle_over_rpc\":%.3f", rpc_base,
		       lease_rpc);
		printf(",\"rpc_over_baseline_rounds\":");
		print_json_ratios(ph[PH_RPC].round_p50, ph[PH_BASELINE].round_p50, o->rounds);
		printf(",\"lease_cycle_over_rpc_rounds\":");
		print_json_ratios(ph[PH_LEASE].round_p50, ph[PH_RPC].round_p50, o->rounds);
		printf("}\n");
		return;
	}
	printf("bench-rpc: %s; %u rounds, %.2f s per phase; hello packets %zu/%zu bytes\n",
	       daemon_desc, o->rounds, o->seconds, b->request_len, b->reply_len);
	printf("  cpus: %s\n", cpus);
	printf("  %-32s %11s %11s %11s\n", "", "median us", "p99 us", "ops/s");
	for (int i = 0; i < PH_COUNT; i++)
		printf("  %-32s %11.2f %11.2f %11.0f\n", phase_label[i], res[i].p50, res[i].p99,
		       res[i].ops_s);
	printf("  %-32s %11.2f (release %.2f)\n", "  of which acquire", acq50, rel50);
	printf("  ratio rpc / baseline             %11.2f  (per round %.2f..%.2f)\n", rpc_base,
	       lo1, hi1);
	printf("  ratio lease cycle / rpc          %11.2f  (per round %.2f..%.2f)\n", lease_rpc,
	       lo2, hi2);
}

int main(int argc, char **argv)
{
	struct opts o = { .seconds = 2, .rounds = 3 };
	struct bench b = { .ping_fd = -1, .echo = { .fd = -1 } };
	struct phase ph[PH_COUNT] = { 0 };
	struct zt_daemon z = { 0 };
	char build_dir[PATH_MAX], desc[400];
	const char *sock;
	struct sigaction sa = { .sa_handler = on_signal };
	int r, status = 1;

	r = parse_opts(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r;
	/* ^C ends the phase under way and still stops the daemon we started. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	b.rbuf = malloc(PACKET_MAX);
	if (!b.rbuf)
		return 1;
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

	r = probe_sizes(&b, sock);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: daemon.hello on %s: %s\n", sock, strerror(-r));
		goto out;
	}
	b.pin.mode = o.cpus;
	if (pin_setup(&b.pin, b.daemon_pid) < 0)
		goto out;
	r = zc_connect(sock, &b.c);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: connect %s: %s\n", sock, zc_strerror(r));
		goto out;
	}
	r = baseline_start(&b);
	if (r < 0) {
		fprintf(stderr, "bench-rpc: socketpair: %s\n", strerror(-r));
		goto out;
	}

	for (int i = 0; i < PH_COUNT; i++)
		for (int k = 0; k < WARMUP_OPS; k++)
			if ((r = one_op(&b, (enum phase_id)i, NULL)) < 0)
				goto failed;
	for (unsigned round = 0; round < o.rounds && !interrupted; round++) {
		/* Rotate the order so no phase always runs first or last. */
		for (int k = 0; k < PH_COUNT && !interrupted; k++) {
			enum phase_id i = (enum phase_id)((round + (unsigned)k) % PH_COUNT);

			r = run_slice(&b, i, &ph[i], o.seconds / o.rounds, round);
			if (r < 0)
				goto failed;
		}
	}
	if (interrupted) {
		fprintf(stderr, "bench-rpc: interrupted\n");
		goto out;
	}
	report(&o, &b, ph, desc);
	status = 0;
	goto out;
failed:
	fprintf(stderr, "bench-rpc: %s\n",
		interrupted ? "interrupted" : b.err[0] ? b.err : strerror(-r));
out:
	baseline_stop(&b);
	zc_close(b.c);
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
	free(b.rbuf);
	return status;
}
