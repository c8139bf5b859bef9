/* zonectl bench: lease-and-append throughput against a raw pwrite baseline
 * measured in the same run. */
#ifndef ZONECTL_BENCH_H
#define ZONECTL_BENCH_H

#include <stdbool.h>

/* argv[0] is the device; options follow. Returns a process exit status. */
int zonectl_bench(const char *socket_path, bool json, int argc, char **argv);

#endif
