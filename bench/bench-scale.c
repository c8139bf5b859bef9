/* bench-scale: what the size of a device costs, measured on emulated
 * devices of 1 MiB zones at several sizes (default 1,000, 100,000 and
 * 1,000,000 zones), each served by a zonedd this program starts:
 *   start fresh   exec to READY=1 (sd_notify, on a socket of ours) with no
 *                 device yet: it is created;
 *   start state   the same for the device as the last stop left it;
 *   rss           the daemon's VmRSS right after READY, per zone;
 *   report        every zone through the library (zc_zone_iter), fresh
 *                 device, and with --varied again with every zone written
 *                 to another depth than its neighbours (each its own run);
 *   cycle         zc_lease_acquire + zc_lease_release(KEEP) of an
 *                 untouched zone, median; every size's daemon runs at once
 *                 and the cycles alternate between them in batches, so a
 *                 machine busy with something else slows them all alike.
 * bench-scale and every zonedd it starts (their threads included: the
 * affinity is inherited) run on one CPU, --cpu (default 0): where the
 * threads land otherwise moves a round trip by more than anything measured
 * here (see bench-rpc). Every figure is printed beside the smallest size's,
 * measured in the same run, and the ratio. Sizes run interleaved over --rounds rounds; each
 * figure is the median of its rounds. */
#include <config.h>

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>
#include "bench/bench-util.h"

extern char **environ;

#define MAX_SIZES 8
#define VARIED_MAX 1000000
#define MAX_ROUNDS 20

struct opts {
	const char *zonedd, *tmp;
	uint32_t sizes[MAX_SIZES];
	unsigned nsizes, rounds, cycles;
	int cpu;                  /* every process of the run on it; -1: unpinned */
	bool json, varied;
};

enum { F_START_FRESH, F_START_STATE, F_RSS, F_REPORT, F_REPORT_VARIED, F_CYCLE, F_COUNT };
static const char *const key[F_COUNT] = {
	"start_fresh_ms", "start_state_ms", "rss_bytes_per_zone", "report_ms", "report_varied_ms",
	"cycle_us",
};
static const char *const label[F_COUNT] = {
	"start-up, fresh (ms)", "start-up, from state (ms)", "RSS per zone (bytes)",
	"report, all zones (ms)", "report, every zone differs (ms)", "acquire+release (us)",
};

static double fig[MAX_SIZES][F_COUNT][MAX_ROUNDS];

static double median(const double *v, unsigned n)
{
	double *s = malloc((n ? n : 1) * sizeof(*s)), m;

	if (n == 0 || !s) {
		free(s);
		return 0;
	}
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return m;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-scale: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* One daemon of one size. */
struct run {
	char dir[256], sock[300], notify[300], conf[300], log[300];
	pid_t pid;
	int nfd;
	unsigned starts;
};

static void run_setup(struct run *r, const struct opts *o, uint32_t zones)
{
	FILE *f;

	snprintf(r->dir, sizeof(r->dir), "%s/zoned-bench-scale-XXXXXX", o->tmp);
	if (!mkdtemp(r->dir))
		die("mkdtemp", errno);
	snprintf(r->conf, sizeof(r->conf), "%s/zonedd.conf", r->dir);
	snprintf(r->log, sizeof(r->log), "%s/zonedd.log", r->dir);
	f = fopen(r->conf, "w");
	if (!f)
		die("config", errno);
	/* No limits on open and active zones: --varied writes every zone. */
	fprintf(f, "{ \"devices\": [ { \"id\": \"emu0\", \"emulate\": \"%s/dev\", "
		"\"spec\": \"size=%" PRIu32 "M,zone-size=1M,max-open=0,max-active=0\" } ] }\n",
		r->dir, zones);
	fclose(f);
	r->pid = -1;
}

/* Reads notifications until READY=1; fds the daemon stores (its claims,
 * its listener: we are its "systemd") are closed. */
static int wait_ready(struct run *r)
{
	char buf[4096], cbuf[CMSG_SPACE(16 * sizeof(int))];

	for (;;) {
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm;
		ssize_t n = recvmsg(r->nfd, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				int *fds = (int *)CMSG_DATA(cm);

				for (size_t i = 0; i < k; i++)
					close(fds[i]);
			}
		}
		buf[n] = '\0';
		if (strstr(buf, "READY=1"))
			return 0;
	}
}

/* Starts the daemon; the time from spawn to READY=1 in ms. */
static double run_start(struct run *r, const struct opts *o)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char state[300], env_notify[320], **env;
	const char *argv[] = { o->zonedd, "--config", r->conf, "--socket", r->sock, "--state-dir",
			       state, "--log-level", "warning", NULL };
	posix_spawn_file_actions_t fa;
	struct timeval tv = { .tv_sec = 120 };
	size_t ne = 0, k = 0;
	uint64_t t0;

	snprintf(state, sizeof(state), "%s/state", r->dir);
	/* A socket name per start: one the daemon stored in "our" fd store
	 * is not unlinked at its stop. */
	snprintf(r->sock, sizeof(r->sock), "%s/sock%u", r->dir, r->starts);
	snprintf(r->notify, sizeof(r->notify), "%s/notify%u", r->dir, r->starts++);
	r->nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (r->nfd < 0)
		die("socket", errno);
	memcpy(sa.sun_path, r->notify, strlen(r->notify) + 1);
	if (bind(r->nfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind notify socket", errno);
	setsockopt(r->nfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", r->notify);
	while (environ[ne])
		ne++;
	env = calloc(ne + 2, sizeof(*env));
	if (!env)
		die("calloc", ENOMEM);
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], "NOTIFY_SOCKET=", 14) && strncmp(environ[i], "LISTEN_", 7) &&
		    strncmp(environ[i], "WATCHDOG_", 9))
			env[k++] = environ[i];
	env[k++] = env_notify;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, r->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	t0 = now_ns();
	if (posix_spawn(&r->pid, o->zonedd, &fa, NULL, (char **)argv, env) != 0)
		die("spawn zonedd", errno);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	if (wait_ready(r) < 0) {
		fprintf(stderr, "bench-scale: zonedd did not get ready; see %s\n", r->log);
		exit(1);
	}
	return (double)(now_ns() - t0) / 1e6;
}

static uint64_t rss_bytes(pid_t pid)
{
	char path[64], line[256];
	uint64_t kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		die("/proc/PID/status", errno);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

static void run_stop(struct run *r)
{
	int st;

	kill(r->pid, SIGTERM);
	if (waitpid(r->pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench-scale: zonedd did not stop cleanly; see %s\n", r->log);
		exit(1);
	}
	close(r->nfd);
	unlink(r->notify);
	r->pid = -1;
}

static void run_cleanup(struct run *r)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%.255s'", r->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-scale: cannot remove %s\n", r->dir);
}

/* Every zone through the iterator; ms. */
static double report_all(zc_client *c, uint32_t zones)
{
	struct zc_zone z;
	zc_zone_iter *it;
	uint64_t t0 = now_ns(), sum = 0;
	uint32_t n = 0;
	int r;

	if ((r = zc_zone_iter_new(c, "emu0", NULL, &it)) < 0)
		die("zc_zone_iter_new", r);
	while ((r = zc_zone_iter_next(it, &z)) == 1) {
		sum += z.wp; /* used, so nothing is optimised away */
		n++;
	}
	if (r < 0)
		die("zc_zone_iter_next", r);
	zc_zone_iter_free(it);
	if (n != zones || sum == 0)
		die("report: wrong number of zones", EPROTO);
	return (double)(now_ns() - t0) / 1e6;
}

/* n acquire + release(KEEP) cycles, their latencies (us) into lat. */
static void cycles(zc_client *c, unsigned n, double *lat)
{
	struct zc_lease_opts lo;

	zc_lease_opts_init(&lo);
	lo.device = "emu0";
	lo.buffered = true;
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		zc_lease *l;
		int r = zc_lease_acquire(c, &lo, &l);

		if (r < 0)
			die("zc_lease_acquire", r);
		if ((r = zc_lease_release(l, ZC_RELEASE_KEEP)) < 0)
			die("zc_lease_release", r);
		if (lat)
			lat[i] = (double)(now_ns() - t0) / 1e3;
	}
}

#define CYCLE_BATCH 25

/* Every size's daemon at once; rounds x --cycles cycles each, taken in
 * batches that alternate between the sizes; the median of each round's. */
static void cycle_phase(const struct opts *o)
{
	struct run r[MAX_SIZES];
	zc_client *c[MAX_SIZES];
	double *lat[MAX_SIZES];

	for (unsigned s = 0; s < o->nsizes; s++) {
		int e;

		memset(&r[s], 0, sizeof(r[s]));
		run_setup(&r[s], o, o->sizes[s]);
		run_start(&r[s], o);
		if ((e = zc_connect(r[s].sock, &c[s])) < 0)
			die("zc_connect", e);
		lat[s] = calloc(o->cycles, sizeof(**lat));
		if (!lat[s])
			die("calloc", ENOMEM);
		cycles(c[s], 20, NULL); /* warm-up */
	}
	for (unsigned round = 0; round < o->rounds; round++) {
		for (unsigned done = 0; done < o->cycles; done += CYCLE_BATCH) {
			unsigned n = o->cycles - done < CYCLE_BATCH ? o->cycles - done : CYCLE_BATCH;

			for (unsigned k = 0; k < o->nsizes; k++) {
				unsigned s = (k + done / CYCLE_BATCH) % o->nsizes;

				cycles(c[s], n, lat[s] + done);
			}
		}
		for (unsigned s = 0; s < o->nsizes; s++)
			fig[s][F_CYCLE][round] = median(lat[s], o->cycles);
	}
	for (unsigned s = 0; s < o->nsizes; s++) {
		zc_close(c[s]);
		run_stop(&r[s]);
		run_cleanup(&r[s]);
		free(lat[s]);
	}
}

/* Every sequential zone gets a write pointer its neighbours do not share
 * (1 to 255 blocks), the cheap way: the daemon is killed, which leaves the
 * device "in use", each zone's file (the emulator's layout, daemon/emul.c)
 * is made that long (sparse), and the next start's repair takes every wp
 * from its file. A lease and an append per zone would do the same at the
 * cost of a release per zone. */
static void make_varied(struct run *r, uint32_t zones, const struct opts *o)
{
	char name[400];

	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	close(r->nfd);
	unlink(r->notify);
	for (uint32_t i = 2; i < zones; i++) {
		int fd;

		snprintf(name, sizeof(name), "%s/dev/seq-%06" PRIu32, r->dir, i);
		fd = open(name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0 || ftruncate(fd, (off_t)(i % 255 + 1) * 4096) < 0)
			die("varied: zone file", errno);
		close(fd);
	}
	run_start(r, o);
}

static void one_size(const struct opts *o, unsigned s, unsigned round)
{
	uint32_t zones = o->sizes[s];
	struct run r = { 0 };
	zc_client *c;
	int e;

	run_setup(&r, o, zones);
	fig[s][F_START_FRESH][round] = run_start(&r, o);
	fig[s][F_RSS][round] = (double)rss_bytes(r.pid) / zones;
	if ((e = zc_connect(r.sock, &c)) < 0)
		die("zc_connect", e);
	fig[s][F_REPORT][round] = report_all(c, zones);
	zc_close(c);
	run_stop(&r);
	fig[s][F_START_STATE][round] = run_start(&r, o);
	if (o->varied && zones <= VARIED_MAX) {
		make_varied(&r, zones, o);
		if ((e = zc_connect(r.sock, &c)) < 0)
			die("zc_connect", e);
		fig[s][F_REPORT_VARIED][round] = report_all(c, zones);
		zc_close(c);
	}
	run_stop(&r);
	run_cleanup(&r);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: bench-scale --zonedd PATH [--zones N,N,...] [--rounds R] [--cycles C]\n"
		   "                   [--varied] [--cpu N] [--tmp DIR] [--json]\n"
		   "Start-up, memory, full report and lease cycle of zonedd against the number\n"
		   "of zones of an emulated device (1 MiB zones), each size against the first.\n"
		   "  --zones N,...  sizes (default 1000,100000,1000000)\n"
		   "  --rounds R     rounds, sizes interleaved, medians (default 3)\n"
		   "  --cycles C     acquire+release cycles per round (default 1000)\n"
		   "  --varied       also report with every zone written to another depth than\n"
		   "                 its neighbours (a file per zone: ~30 s at a million)\n"
		   "  --cpu N        run everything on CPU N (default 0; -1: unpinned)\n"
		   "  --tmp DIR      where devices go (default $TMPDIR or /tmp)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "zonedd", required_argument, NULL, 'd' }, { "zones", required_argument, NULL, 'z' },
		{ "rounds", required_argument, NULL, 'r' }, { "cycles", required_argument, NULL, 'c' },
		{ "varied", no_argument, NULL, 'v' },       { "tmp", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },         { "help", no_argument, NULL, 'h' },
		{ "cpu", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .rounds = 3, .cycles = 1000, .cpu = 0,
			  .sizes = { 1000, 100000, 1000000 }, .nsizes = 3 };
	double med[MAX_SIZES][F_COUNT];
	int ch;

	o.tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'd': o.zonedd = optarg; break;
		case 'z': {
			char *p = optarg;

			o.nsizes = 0;
			while (*p && o.nsizes < MAX_SIZES) {
				unsigned long v = strtoul(p, &p, 10);

				if (v < 3 || v > (1ul << 24) || (*p && *p != ',')) {
					usage(stderr);
					return 2;
				}
				o.sizes[o.nsizes++] = (uint32_t)v;
				p += *p == ',';
			}
			break;
		}
		case 'r': o.rounds = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': o.cycles = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'v': o.varied = true; break;
		case 't': o.tmp = optarg; break;
		case 'j': o.json = true; break;
		case 'p': o.cpu = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!o.zonedd || o.rounds == 0 || o.rounds > MAX_ROUNDS || o.cycles == 0 || !o.nsizes) {
		usage(stderr);
		return 2;
	}
	if (o.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			die("sched_setaffinity (--cpu -1 runs unpinned)", errno);
	}
	/* Interleaved, the order rotating, so drift falls on every size. */
	for (unsigned round = 0; round < o.rounds; round++)
		for (unsigned k = 0; k < o.nsizes; k++)
			one_size(&o, (k + round) % o.nsizes, round);
	cycle_phase(&o);
	for (unsigned s = 0; s < o.nsizes; s++)
		for (unsigned f = 0; f < F_COUNT; f++)
			med[s][f] = median(fig[s][f], o.rounds);

	if (o.json) {
		printf("{\"rounds\":%u,\"cycles\":%u,\"cpu\":%d,\"zone_size\":1048576,\"sizes\":[",
		       o.rounds, o.cycles, o.cpu);
		for (unsigned s = 0; s < o.nsizes; s++) {
			printf("%s{\"zones\":%" PRIu32, s ? "," : "", o.sizes[s]);
			for (unsigned f = 0; f < F_COUNT; f++) {
				if (f == F_REPORT_VARIED && (!o.varied || o.sizes[s] > VARIED_MAX))
					continue;
				printf(",\"%s\":%.3f", key[f], med[s][f]);
				if (s)
					printf(",\"%s_ratio\":%.3f", key[f],
					       med[0][f] ? med[s][f] / med[0][f] : 0);
			}
			printf("}");
		}
		printf("]}\n");
		return 0;
	}
	printf("bench-scale: emulated devices of 1 MiB zones, medians of %u round(s); "
	       "ratio = this size / %" PRIu32 " zones\n\n", o.rounds, o.sizes[0]);
	printf("%-34s", "zones");
	for (unsigned s = 0; s < o.nsizes; s++)
		printf(" %18" PRIu32, o.sizes[s]);
	printf("\n");
	for (unsigned f = 0; f < F_COUNT; f++) {
		if (f == F_REPORT_VARIED && !o.varied)
			continue;
		printf("%-34s", label[f]);
		for (unsigned s = 0; s < o.nsizes; s++) {
			char cell[64];

			if (f == F_REPORT_VARIED && o.sizes[s] > VARIED_MAX)
				snprintf(cell, sizeof(cell), "-");
			else if (s)
				snprintf(cell, sizeof(cell), "%.2f (x%.2f)", med[s][f],
					 med[0][f] ? med[s][f] / med[0][f] : 0);
			else
				snprintf(cell, sizeof(cell), "%.2f", med[s][f]);
			printf(" %18s", cell);
		}
		printf("\n");
	}
	return 0;
}
