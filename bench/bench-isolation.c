/* bench-isolation: what zone isolation costs, as ratios measured side by
 * side in one process against one zonedd serving two devices of the same
 * kind, one in each isolation mode (bench/run configures them):
 *   cycle    zc_lease_acquire + zc_lease_release(KEEP) of an untouched
 *            zone: the isolated device's cycle against the other's (the
 *            cost of creating and dropping the lease's own path);
 *   written  the same with BLOCK bytes appended first: the release must
 *            then cut a path that has data behind it;
 *   write    SIZE bytes appended in BLOCK pieces (O_DIRECT) through a
 *            lease of each device, against plain pwrite()s of the same
 *            pieces to a file of the same file system (--raw FILE) or,
 *            without one, only the two leases against each other.
 * Phases run interleaved over rounds (order rotating) so drift hits all
 * alike. Absolute figures depend on the machine; the ratios are the
 * result. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zoned/client.h>
#include "bench/bench-util.h"

#define MAX_ROUNDS 50

struct opts {
	const char *sock, *iso_dev, *dev_dev, *raw;
	unsigned rounds, cycles;
	uint64_t block, size;
	bool json;
};

enum { P_CYCLE_ISO, P_CYCLE_DEV, P_WRITTEN_ISO, P_WRITTEN_DEV, P_WRITE_ISO, P_WRITE_DEV,
       P_WRITE_RAW, P_COUNT };
static const char *const key[P_COUNT] = {
	"cycle_zone", "cycle_device", "written_cycle_zone", "written_cycle_device",
	"write_zone", "write_device", "write_raw",
};

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int acquire(zc_client *c, const char *dev, zc_lease **l)
{
	struct zc_lease_opts o;

	zc_lease_opts_init(&o);
	o.device = dev;
	o.prefer = ZC_PREFER_EMPTY;
	return zc_lease_acquire(c, &o, l);
}

/* Mean µs of one acquire + (append) + release, over o->cycles. */
static int cycle(zc_client *c, const struct opts *o, const char *dev, const void *buf,
		 size_t len, double *us)
{
	uint64_t t0 = now_ns();

	for (unsigned i = 0; i < o->cycles; i++) {
		zc_lease *l;
		int r = acquire(c, dev, &l);

		if (r < 0)
			return r;
		if (len && (r = zc_lease_append(l, buf, len)) < 0) {
			zc_lease_release(l, ZC_RELEASE_RESET);
			return r;
		}
		r = zc_lease_release(l, len ? ZC_RELEASE_RESET : ZC_RELEASE_KEEP);
		if (r < 0)
			return r;
	}
	*us = (double)(now_ns() - t0) / 1e3 / o->cycles;
	return 0;
}

/* MiB/s of o->size bytes appended in o->block pieces through one lease;
 * the acquire and the release are outside the timed part. */
static int write_lease(zc_client *c, const struct opts *o, const char *dev, const void *buf,
		       double *mib_s)
{
	zc_lease *l;
	uint64_t t0, done = 0;
	int r = acquire(c, dev, &l);

	if (r < 0)
		return r;
	t0 = now_ns();
	while (done < o->size && r == 0) {
		r = zc_lease_append(l, buf, o->block);
		done += o->block;
	}
	if (r == 0 && fdatasync(zc_lease_fd(l)) < 0)
		r = -errno;
	*mib_s = (double)o->size / (1 << 20) / ((double)(now_ns() - t0) / 1e9);
	zc_lease_release(l, ZC_RELEASE_RESET);
	return r;
}

static int write_raw(const struct opts *o, const void *buf, double *mib_s)
{
	int fd = open(o->raw, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	uint64_t t0, done = 0;
	int r = 0;

	if (fd < 0)
		return -errno;
	t0 = now_ns();
	while (done < o->size) {
		ssize_t n = pwrite(fd, buf, o->block, (off_t)done);

		if (n != (ssize_t)o->block) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		done += o->block;
	}
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	*mib_s = (double)o->size / (1 << 20) / ((double)(now_ns() - t0) / 1e9);
	close(fd);
	unlink(o->raw);
	return r;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t mul = 1;

	if (end == s)
		return -EINVAL;
	if (*end == 'K')
		mul = 1024, end++;
	else if (*end == 'M')
		mul = 1024 * 1024, end++;
	if (*end || !v)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: bench-isolation --socket PATH --zone-device ID --device-device ID\n"
		   "                       [--raw FILE] [--rounds N] [--cycles N] [--block SIZE]\n"
		   "                       [--size SIZE] [--json]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "zone-device", required_argument, NULL, 'z' },
		{ "device-device", required_argument, NULL, 'd' },
		{ "raw", required_argument, NULL, 'r' },
		{ "rounds", required_argument, NULL, 'n' },
		{ "cycles", required_argument, NULL, 'c' },
		{ "block", required_argument, NULL, 'b' },
		{ "size", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct opts o = { .rounds = 5, .cycles = 200, .block = 1 << 20, .size = 4 << 20 };
	double v[P_COUNT][MAX_ROUNDS], med[P_COUNT];
	zc_client *c = NULL;
	void *buf;
	int ch, r;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': o.sock = optarg; break;
		case 'z': o.iso_dev = optarg; break;
		case 'd': o.dev_dev = optarg; break;
		case 'r': o.raw = optarg; break;
		case 'n': o.rounds = (unsigned)atoi(optarg); break;
		case 'c': o.cycles = (unsigned)atoi(optarg); break;
		case 'b':
			if (parse_size(optarg, &o.block) < 0 || o.block % 4096) {
				fprintf(stderr, "bench-isolation: --block %s: not a multiple of 4K\n",
					optarg);
				return 2;
			}
			break;
		case 'S':
			if (parse_size(optarg, &o.size) < 0) {
				fprintf(stderr, "bench-isolation: --size %s: not a size\n", optarg);
				return 2;
			}
			break;
		case 'j': o.json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!o.iso_dev || !o.dev_dev || !o.rounds || o.rounds > MAX_ROUNDS || !o.cycles ||
	    o.size % o.block) {
		usage(stderr);
		return 2;
	}
	if (posix_memalign(&buf, 4096, o.block)) {
		fprintf(stderr, "bench-isolation: out of memory\n");
		return 1;
	}
	memset(buf, 0x5a, o.block);
	r = zc_connect(o.sock, &c);
	if (r < 0) {
		fprintf(stderr, "bench-isolation: connect: %s\n", zc_strerror(r));
		return 1;
	}
	for (unsigned round = 0; round < o.rounds; round++) {
		for (unsigned k = 0; k < P_COUNT; k++) {
			unsigned p = (k + round) % P_COUNT;

			switch (p) {
			case P_CYCLE_ISO: r = cycle(c, &o, o.iso_dev, NULL, 0, &v[p][round]); break;
			case P_CYCLE_DEV: r = cycle(c, &o, o.dev_dev, NULL, 0, &v[p][round]); break;
			case P_WRITTEN_ISO: r = cycle(c, &o, o.iso_dev, buf, 4096, &v[p][round]); break;
			case P_WRITTEN_DEV: r = cycle(c, &o, o.dev_dev, buf, 4096, &v[p][round]); break;
			case P_WRITE_ISO: r = write_lease(c, &o, o.iso_dev, buf, &v[p][round]); break;
			case P_WRITE_DEV: r = write_lease(c, &o, o.dev_dev, buf, &v[p][round]); break;
			default:
				v[p][round] = 0;
				r = o.raw ? write_raw(&o, buf, &v[p][round]) : 0;
			}
			if (r < 0) {
				fprintf(stderr, "bench-isolation: %s: %s (%s)\n", key[p], zc_strerror(r),
					zc_last_error(c));
				return 1;
			}
		}
	}
	for (unsigned p = 0; p < P_COUNT; p++)
		med[p] = median(v[p], o.rounds);
	if (o.json) {
		printf("{\"rounds\":%u,\"cycles\":%u,\"block\":%" PRIu64 ",\"size\":%" PRIu64, o.rounds,
		       o.cycles, o.block, o.size);
		for (unsigned p = 0; p < P_COUNT; p++)
			printf(",\"%s_%s\":%.2f", key[p], p < P_WRITE_ISO ? "us" : "mib_s", med[p]);
		printf(",\"cycle_zone_over_device\":%.3f,\"written_cycle_zone_over_device\":%.3f,"
		       "\"write_zone_over_device\":%.3f",
		       med[P_CYCLE_ISO] / med[P_CYCLE_DEV], med[P_WRITTEN_ISO] / med[P_WRITTEN_DEV],
		       med[P_WRITE_ISO] / med[P_WRITE_DEV]);
		if (o.raw)
			printf(",\"write_zone_over_raw\":%.3f,\"write_device_over_raw\":%.3f",
			       med[P_WRITE_ISO] / med[P_WRITE_RAW], med[P_WRITE_DEV] / med[P_WRITE_RAW]);
		printf("}\n");
	} else {
		printf("medians of %u rounds (%u cycles each; writes of %" PRIu64 " MiB in %" PRIu64
		       " KiB pieces)\n", o.rounds, o.cycles, o.size >> 20, o.block >> 10);
		printf("  lease cycle, untouched zone: zone %.1f us, device %.1f us, ratio %.2f\n",
		       med[P_CYCLE_ISO], med[P_CYCLE_DEV], med[P_CYCLE_ISO] / med[P_CYCLE_DEV]);
		printf("  lease cycle, 4 KiB written:  zone %.1f us, device %.1f us, ratio %.2f\n",
		       med[P_WRITTEN_ISO], med[P_WRITTEN_DEV], med[P_WRITTEN_ISO] / med[P_WRITTEN_DEV]);
		printf("  append bandwidth:            zone %.0f MiB/s, device %.0f MiB/s, ratio %.2f\n",
		       med[P_WRITE_ISO], med[P_WRITE_DEV], med[P_WRITE_ISO] / med[P_WRITE_DEV]);
		if (o.raw)
			printf("  raw pwrite %.0f MiB/s: zone/raw %.2f, device/raw %.2f\n",
			       med[P_WRITE_RAW], med[P_WRITE_ISO] / med[P_WRITE_RAW],
			       med[P_WRITE_DEV] / med[P_WRITE_RAW]);
	}
	zc_close(c);
	free(buf);
	return 0;
}
