/* zonectl bench: lease-and-append throughput against a raw pwrite baseline
 * measured in the same run. */
#ifndef ZONECTL_BENCH_H
#define ZONECTL_BENCH_H

#include <stdbool.h>

/* argv as getopt sees it (argv[0] the command name), options then the
 * device as the one operand. Returns a process exit status. */
int zonectl_bench(const char *socket_path, bool json, int argc, char **argv);

#endif
