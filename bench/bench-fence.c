/* Cost of the emulator's lease_fence (daemon/emul.c): an empty zone, a
 * zone with 1 MiB written and nobody holding it, and the same with a
 * holder (the data moves to a new inode). Prints microseconds per fence,
 * the median of --rounds runs. Usage: bench-fence DIR [ROUNDS] */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "daemon/zdev.h"

#define ZS (4u << 20)

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct zd_emul_params p = { .size = 64ull * ZS, .zone_size = ZS, .zone_capacity = ZS,
				    .nr_conventional = 1, .logical_block_size = 4096 };
	static const char *const what[3] = { "empty zone, holder", "1 MiB, no holder",
					     "1 MiB, holder (copy)" };
	unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 20;
	char path[4096];
	struct statfs sf;
	struct zd_dev *dev;
	double *t;
	void *buf;

	if (argc < 2 || rounds == 0 || rounds > 1000) {
		fprintf(stderr, "usage: bench-fence DIR [ROUNDS]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/bench-fence.dev", argv[1]);
	if (zd_emul_open(path, &p, true, ZD_ISOLATION_ZONE, &dev) < 0 ||
	    statfs(argv[1], &sf) < 0 || posix_memalign(&buf, 4096, 1u << 20))
		return 1;
	memset(buf, 0x5a, 1u << 20);
	t = calloc(rounds, sizeof(*t));
	printf("filesystem magic %#lx\n", (unsigned long)sf.f_type);
	for (int k = 0; k < 3; k++) {
		for (unsigned i = 0; i < rounds; i++) {
			uint32_t z = 1 + i % 60;
			int fd = -1;
			double t0;

			dev->ops->zone_op(dev, ZD_OP_RESET, z, 1);
			if (k > 0 && dev->ops->pwrite(dev, buf, 1u << 20, (uint64_t)z * ZS) < 0)
				return 1;
			if (k != 1)
				fd = zd_dev_open_zone(dev, z, O_RDWR, NULL);
			t0 = now_us();
			if (dev->ops->lease_fence(dev, z, 1) < 0)
				return 1;
			t[i] = now_us() - t0;
			if (fd >= 0)
				close(fd);
			dev->ops->zone_op(dev, ZD_OP_RESET, z, 1);
			dev->ops->lease_fence(dev, z, 1);
		}
		qsort(t, rounds, sizeof(*t), cmp);
		printf("%-22s median %8.1f us  min %8.1f us\n", what[k], t[rounds / 2], t[0]);
	}
	zd_dev_close(dev);
	free(t);
	free(buf);
	return 0;
}
