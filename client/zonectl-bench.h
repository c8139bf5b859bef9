/* zonectl bench: lease-and-append throughput against a raw pwrite baseline
 * measured in the same run. */
#ifndef ZONECTL_BENCH_H
#define ZONECTL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* argv as getopt sees it (argv[0] the command name), options then the
 * device as the one operand. Returns a process exit status. */
int zonectl_bench(const char *socket_path, bool json, int argc, char **argv);

/* zonectl's error line: "zonectl: TEXT" on stderr, or with --json a JSON
 * object {"error": {"message", "errno", "reason"}} there; err is a negative
 * errno or 0. */
void zonectl_error(int err, const char *text);
/* "512 B", "32 MiB", "4.5 GiB": exact when the value is a whole number of
 * the unit, one decimal otherwise; returns buf. */
const char *zonectl_size_str(uint64_t v, char *buf, size_t cap);
/* How to start the daemon, for "cannot connect" messages. */
#define ZONECTL_START_HINT "is zonedd running? Start it with 'systemctl start zonedd', or run " \
			   "'zonedd --socket PATH' and pass the same --socket to zonectl"

#endif
