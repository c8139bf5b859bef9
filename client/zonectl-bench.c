/* zonectl bench: N writers (threads, one connection each) lease zones and
 * append to them through libzoned-client; the same writes are then issued
 * with plain pwrite on an fd the bench opens itself on the same kind of
 * zone (a fresh open of what the lease reaches, so nothing of the library
 * is on that path). Only the writes are timed in both, the same way, so
 * their ratio is the library's data-path cost; what a lease costs around
 * them (acquire, release) is its own figure. Both are measured in this one
 * run: the ratio, not the absolute number, is what a reader compares. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>

#include "client/zonectl-bench.h"
#include "client/zonectl-progress.h"

struct bench_opts {
	const char *socket;
	const char *device;
	unsigned writers;
	unsigned zones;       /* zones per writer per phase */
	uint64_t block;
	uint64_t size;        /* bytes per zone */
	bool buffered;
	atomic_uint *zones_done;   /* progress of the running phase */
	atomic_uint *writers_done;
};

struct writer {
	pthread_t thread;
	const struct bench_opts *o;
	/* Every writer connects (or fails to) before any writes: the phase's
	 * writers are all there at once, and a cap on connections is met
	 * whatever the timing. */
	pthread_barrier_t *connected;
	bool raw;
	int err;
	const char *what;
	char msg[256];        /* the library's (daemon's) message for err */
	uint64_t bytes;
	double *acq_lat;      /* seconds, one per zone: acquire, then release */
	double *rel_lat;
	unsigned nacq, nrel;
	double busy;          /* seconds spent writing (the timed part) */
};

/* An error line through zonectl's one error path (text or JSON). */
static void berr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void berr(int err, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	zonectl_error(err, text);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end || v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

/* An fd of the bench's own on what the lease's fd reaches (its zone's file,
 * its mapping, the device), opened afresh: the raw path. */
static int open_raw(const struct bench_opts *o, zc_lease *l)
{
	char self[64];
	int fd;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", zc_lease_fd(l));
	fd = open(self, O_WRONLY | O_CLOEXEC | (o->buffered ? 0 : O_DIRECT));
	if (fd < 0 && errno == EINVAL && !o->buffered) /* no O_DIRECT there (tmpfs) */
		fd = open(self, O_WRONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Writes o->size bytes in o->block pieces, timed: appends through the
 * lease, or pwrite on raw_fd. */
static int fill_zone(struct writer *w, zc_lease *l, int raw_fd, const void *buf)
{
	const struct bench_opts *o = w->o;
	uint64_t off = zc_lease_fd_offset(l) + (zc_lease_wp(l) - zc_lease_start(l));
	uint64_t done = 0;
	double t0 = now_s();
	int r;

	while (done < o->size) {
		uint64_t n = o->size - done < o->block ? o->size - done : o->block;

		if (w->raw) {
			ssize_t k = pwrite(raw_fd, buf, n, (off_t)(off + done));

			if (k < 0)
				return -errno;
			if ((uint64_t)k != n)
				return -EIO;
		} else {
			r = zc_lease_append(l, buf, n);
			if (r < 0)
				return r;
		}
		done += n;
	}
	w->busy += now_s() - t0;
	w->bytes += done;
	return 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	const struct bench_opts *o = w->o;
	struct zc_lease_opts lo;
	zc_client *c = NULL;
	void *buf = NULL;
	int r;

	r = zc_connect(o->socket, &c);
	if (r < 0) {
		/* The daemon's words: the connection cap, say. */
		w->what = "connect";
		snprintf(w->msg, sizeof(w->msg), "%s", zc_last_error(NULL));
	}
	pthread_barrier_wait(w->connected);
	if (r < 0)
		goto out;
	if (posix_memalign(&buf, 4096, o->block)) {
		r = -ENOMEM;
		w->what = "allocate";
		goto out;
	}
	memset(buf, 0x5a, o->block);
	zc_lease_opts_init(&lo);
	lo.device = o->device;
	lo.wait_ms = 30000;
	lo.buffered = o->buffered;
	lo.label = w->raw ? "bench-raw" : "bench";
	for (unsigned i = 0; i < o->zones; i++) {
		zc_lease *l = NULL;
		double t0 = now_s(), t1;

		r = zc_lease_acquire(c, &lo, &l);
		t1 = now_s();
		if (r < 0) {
			w->what = "lease";
			goto out;
		}
		if (!w->raw)
			w->acq_lat[w->nacq++] = t1 - t0;
		/* Writes start at the zone's write pointer: a resumed zone may
		 * have less room than asked; reset it and take another. A zone
		 * too small even when empty would loop here for ever (the
		 * size is checked up front; this is the backstop). */
		if (zc_lease_capacity(l) < o->size) {
			r = -ENOSPC;
			snprintf(w->msg, sizeof(w->msg), "zone %u holds %" PRIu64 " bytes, less than --size",
				 zc_lease_zone(l), zc_lease_capacity(l));
			w->what = "lease";
			zc_lease_release(l, ZC_RELEASE_KEEP);
			goto out;
		}
		if (zc_lease_capacity(l) - (zc_lease_wp(l) - zc_lease_start(l)) < o->size) {
			zc_lease_release(l, ZC_RELEASE_RESET);
			i--;
			continue;
		}
		uint32_t zone = zc_lease_zone(l);
		int raw_fd = -1;

		if (w->raw && (r = raw_fd = open_raw(o, l)) < 0) {
			w->what = "open";
			zc_lease_release(l, ZC_RELEASE_KEEP);
			goto out;
		}
		r = fill_zone(w, l, raw_fd, buf);
		if (raw_fd >= 0)
			close(raw_fd);
		if (!w->raw && r == 0) {
			t0 = now_s();
			r = zc_lease_release(l, ZC_RELEASE_KEEP);
			w->rel_lat[w->nrel++] = now_s() - t0;
			l = NULL;
		}
		if (r < 0) {
			w->what = w->raw ? "pwrite" : "append";
			zc_lease_release(l, ZC_RELEASE_KEEP);
			goto out;
		}
		/* Reset outside the timed part so both phases see empty zones
		 * and the device can be reused: the lease phase takes its zone
		 * back by index to do it. */
		if (!l) {
			struct zc_lease_opts again = lo;

			again.zone = zone;
			r = zc_lease_acquire(c, &again, &l);
			if (r < 0) {
				w->what = "re-lease for reset";
				goto out;
			}
		}
		r = zc_lease_release(l, ZC_RELEASE_RESET);
		if (r < 0) {
			w->what = "release";
			goto out;
		}
		atomic_fetch_add(o->zones_done, 1);
	}
	r = 0;
out:
	w->err = r;
	/* Keep the daemon's word for the failure before the client goes. */
	if (r < 0 && c && !w->msg[0])
		snprintf(w->msg, sizeof(w->msg), "%s", zc_last_error(c));
	free(buf);
	zc_close(c);
	atomic_fetch_add(o->writers_done, 1);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* One phase: all writers at once, with a progress line on a terminal.
 * Returns 0 and the wall time. */
static int run_phase(const struct bench_opts *o, bool raw, struct writer *ws, double *wall,
		     const char *label)
{
	unsigned total = o->writers * o->zones;
	struct zprogress pg;
	char what[96];
	double t0 = now_s();
	int r = 0;

	pthread_barrier_t connected;

	atomic_store(o->zones_done, 0);
	atomic_store(o->writers_done, 0);
	for (unsigned i = 0; i < o->writers; i++) {
		memset(&ws[i], 0, sizeof(ws[i]));
		ws[i].o = o;
		ws[i].raw = raw;
		ws[i].connected = &connected;
		ws[i].acq_lat = calloc(o->zones, sizeof(double));
		ws[i].rel_lat = calloc(o->zones, sizeof(double));
		if (!ws[i].acq_lat || !ws[i].rel_lat)
			return -ENOMEM;
	}
	if (pthread_barrier_init(&connected, NULL, o->writers))
		return -ENOMEM;
	for (unsigned i = 0; i < o->writers; i++) {
		/* The others wait for this one at the barrier: no way back. */
		if (pthread_create(&ws[i].thread, NULL, writer_main, &ws[i])) {
			berr(-EAGAIN, "bench: cannot start writer thread %u", i);
			exit(1);
		}
	}
	snprintf(what, sizeof(what), "bench: %s: zones", label);
	zprogress_start(&pg, what, total, false);
	while (pg.on && atomic_load(o->writers_done) < o->writers) {
		zprogress_update(&pg, atomic_load(o->zones_done));
		usleep(20000);
	}
	zprogress_end(&pg);
	for (unsigned i = 0; i < o->writers; i++) {
		pthread_join(ws[i].thread, NULL);
		if (ws[i].err < 0 && r == 0) {
			berr(ws[i].err, "bench: writer %u: %s: %s", i, ws[i].what,
				ws[i].msg[0] ? ws[i].msg : zc_strerror(ws[i].err));
			r = ws[i].err;
		}
	}
	pthread_barrier_destroy(&connected);
	*wall = now_s() - t0;
	return r;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: zonectl bench DEV [--writers N] [--zones Z] [--block B] [--size S] "
		   "[--rounds R] [--buffered] [--json]\n"
		   "  N writers each fill Z zones with S bytes in B-byte appends, once through\n"
		   "  leases and libzoned-client, once with plain pwrite on the same kind of zones;\n"
		   "  the two alternate for R rounds (default 3) in this one run.\n");
}

int zonectl_bench(const char *socket_path, bool json, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "writers", required_argument, NULL, 'w' },
		{ "zones", required_argument, NULL, 'z' },
		{ "block", required_argument, NULL, 'b' },
		{ "size", required_argument, NULL, 's' },
		{ "buffered", no_argument, NULL, 'B' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		/* json or table; zonectl refused anything else already */
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct bench_opts o = { .socket = socket_path, .writers = 2, .zones = 4,
				.block = 1 << 20, .size = 16 << 20 };
	struct writer *lease_w = NULL, *raw_w = NULL;
	double lease_wall = 0, raw_wall = 0, lease_busy = 0, raw_busy = 0, *lat = NULL, *rlat = NULL;
	uint64_t lease_bytes = 0, raw_bytes = 0, v;
	size_t nlat = 0, nrlat = 0;
	unsigned rounds = 3;
	atomic_uint zones_done, writers_done;
	int c, r = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:w:z:b:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
		case 'z':
			if (parse_size(optarg, &v) < 0 || v == 0 || v > 4096) {
				berr(0, "bench: --%s %s: want 1..4096",
					c == 'w' ? "writers" : "zones", optarg);
				return 2;
			}
			if (c == 'w')
				o.writers = (unsigned)v;
			else
				o.zones = (unsigned)v;
			break;
		case 'b':
		case 's':
			if (parse_size(optarg, &v) < 0 || v == 0) {
				berr(0, "bench: --%s %s: not a size",
					c == 'b' ? "block" : "size", optarg);
				return 2;
			}
			if (c == 'b')
				o.block = v;
			else
				o.size = v;
			break;
		case 'B':
			o.buffered = true;
			break;
		case 'r':
			if (parse_size(optarg, &v) < 0 || v == 0 || v > 100) {
				berr(0, "bench: --rounds %s: want 1..100", optarg);
				return 2;
			}
			rounds = (unsigned)v;
			break;
		case 'j':
			json = true;
			break;
		case 'o':
			json = strcmp(optarg, "json") == 0;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case '?':
			berr(0, "bench: unknown option '%s'", argv[optind - 1]);
			return 2;
		case ':':
			berr(0, "bench: option '%s' needs an argument", argv[optind - 1]);
			return 2;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	o.device = argv[optind];
	if (o.block % 4096 || o.size % o.block) {
		berr(0, "bench: --block must be a multiple of 4096 and --size a multiple of --block");
		return 2;
	}
	/* Everything that can be known before the writers start is checked
	 * here, with the daemon's own words: a device that is not there, a
	 * size no zone can hold (the writers would lease and reset for ever). */
	{
		struct zc_device info;
		zc_client *cl;

		r = zc_connect(socket_path, &cl);
		if (r < 0) {
			berr(r, "bench: cannot connect to %s: %s (" ZONECTL_START_HINT ")",
			     socket_path ? socket_path : getenv("ZONED_SOCKET") ? getenv("ZONED_SOCKET")
						     : "/run/zoned/zonedd.sock", zc_last_error(NULL));
			return 1;
		}
		r = zc_device_info(cl, o.device, &info);
		if (r < 0) {
			berr(r, "bench %s: %s", o.device, zc_last_error(cl));
			zc_close(cl);
			return 1;
		}
		zc_close(cl);
		if (o.size > info.zone_capacity) {
			berr(0, "bench %s: --size %" PRIu64 " is larger than the zone capacity (%" PRIu64
			     " bytes)", o.device, o.size, info.zone_capacity);
			return 2;
		}
	}
	o.zones_done = &zones_done;
	o.writers_done = &writers_done;
	lease_w = calloc(o.writers, sizeof(*lease_w));
	raw_w = calloc(o.writers, sizeof(*raw_w));
	if (!lease_w || !raw_w)
		return 1;
	/* Both paths in the same process and run, alternating for several
	 * rounds and starting with the other one each round, so warm-up and
	 * drift fall on both alike. */
	lat = calloc((size_t)o.writers * o.zones * rounds, sizeof(double));
	rlat = calloc((size_t)o.writers * o.zones * rounds, sizeof(double));
	if (!lat || !rlat) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned round = 0; round < rounds && r == 0; round++) {
		for (int k = 0; k < 2 && r == 0; k++) {
			bool raw = (round + (unsigned)k) % 2 == 0;
			struct writer *ws = raw ? raw_w : lease_w;
			double wall = 0;

			for (unsigned i = 0; i < o.writers; i++) {
				free(ws[i].acq_lat);
				free(ws[i].rel_lat);
				ws[i].acq_lat = ws[i].rel_lat = NULL;
			}
			char label[64];

			snprintf(label, sizeof(label), "round %u/%u, %s", round + 1, rounds,
				 raw ? "raw pwrite" : "leases");
			r = run_phase(&o, raw, ws, &wall, label);
			if (r < 0)
				break;
			*(raw ? &raw_wall : &lease_wall) += wall;
			for (unsigned i = 0; i < o.writers; i++) {
				*(raw ? &raw_bytes : &lease_bytes) += ws[i].bytes;
				/* Writers run at once: a phase's write time is
				 * the mean of theirs. */
				*(raw ? &raw_busy : &lease_busy) += ws[i].busy / o.writers;
				for (unsigned n = 0; n < ws[i].nacq; n++)
					lat[nlat++] = ws[i].acq_lat[n];
				for (unsigned n = 0; n < ws[i].nrel; n++)
					rlat[nrlat++] = ws[i].rel_lat[n];
			}
		}
	}
	if (r < 0)
		goto out;
	qsort(lat, nlat, sizeof(double), cmp_double);
	qsort(rlat, nrlat, sizeof(double), cmp_double);
	{
		double lease_mibs = lease_busy > 0 ? (double)lease_bytes / (1 << 20) / lease_busy : 0;
		double raw_mibs = raw_busy > 0 ? (double)raw_bytes / (1 << 20) / raw_busy : 0;
		double ratio = raw_mibs > 0 ? lease_mibs / raw_mibs : 0;

		if (json) {
			printf("{\"device\":\"%s\",\"writers\":%u,\"zones_per_writer\":%u,"
			       "\"rounds\":%u,\"block\":%" PRIu64 ",\"size\":%" PRIu64 ","
			       "\"lease\":{\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"mib_s\":%.2f,"
			       "\"wall_seconds\":%.6f},"
			       "\"raw_pwrite\":{\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"mib_s\":%.2f,"
			       "\"wall_seconds\":%.6f},"
			       "\"ratio\":%.4f,\"acquire_us\":{\"p50\":%.1f,\"p90\":%.1f,"
			       "\"p99\":%.1f,\"max\":%.1f},\"release_us\":{\"p50\":%.1f,\"p90\":%.1f,"
			       "\"p99\":%.1f,\"max\":%.1f}}\n",
			       o.device, o.writers, o.zones, rounds, o.block, o.size, lease_bytes, lease_busy,
			       lease_mibs, lease_wall, raw_bytes, raw_busy, raw_mibs, raw_wall, ratio,
			       pct(lat, nlat, 50) * 1e6, pct(lat, nlat, 90) * 1e6,
			       pct(lat, nlat, 99) * 1e6, nlat ? lat[nlat - 1] * 1e6 : 0,
			       pct(rlat, nrlat, 50) * 1e6, pct(rlat, nrlat, 90) * 1e6,
			       pct(rlat, nrlat, 99) * 1e6, nrlat ? rlat[nrlat - 1] * 1e6 : 0);
		} else {
			printf("device %s: %u writers x %u zones x %" PRIu64 " MiB in %" PRIu64
			       " KiB appends, %u rounds; only the writes are timed\n",
			       o.device, o.writers, o.zones, o.size >> 20, o.block >> 10, rounds);
			printf("  %-22s %10.1f MiB/s  (%.3f s writing)\n", "lease append", lease_mibs,
			       lease_busy);
			printf("  %-22s %10.1f MiB/s  (%.3f s writing)\n", "raw pwrite (baseline)",
			       raw_mibs, raw_busy);
			printf("  %-22s %10.3f\n", "ratio lease/raw", ratio);
			printf("  acquire latency        p50 %.0f us  p90 %.0f us  p99 %.0f us  max %.0f us\n",
			       pct(lat, nlat, 50) * 1e6, pct(lat, nlat, 90) * 1e6,
			       pct(lat, nlat, 99) * 1e6, nlat ? lat[nlat - 1] * 1e6 : 0);
			printf("  release latency        p50 %.0f us  p90 %.0f us  p99 %.0f us  max %.0f us\n",
			       pct(rlat, nrlat, 50) * 1e6, pct(rlat, nrlat, 90) * 1e6,
			       pct(rlat, nrlat, 99) * 1e6, nrlat ? rlat[nrlat - 1] * 1e6 : 0);
		}
	}
out:
	for (unsigned i = 0; i < o.writers; i++) {
		free(lease_w[i].acq_lat);
		free(raw_w[i].acq_lat);
		free(lease_w[i].rel_lat);
		free(raw_w[i].rel_lat);
	}
	free(lease_w);
	free(raw_w);
	free(lat);
	free(rlat);
	return r < 0 ? 1 : 0;
}
