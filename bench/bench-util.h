/* What every benchmark program here needs alike: one clock and the
 * comparators its medians sort with. Header-only: each bench is a program
 * of its own. */
#ifndef ZONED_BENCH_UTIL_H
#define ZONED_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds: the one clock every figure is read from. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

#endif
