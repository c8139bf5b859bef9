/* Test fixture: a real zonedd process on a temporary socket and state
 * directory, started from the build tree and stopped at the end. */
#ifndef ZONED_TEST_FIXTURE_H
#define ZONED_TEST_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

struct zt_daemon {
	pid_t pid;
	char dir[256];      /* temporary directory, removed by zt_daemon_cleanup */
	char sock[300];
	char state[300];
	char log[300];
};

/* Makes the temporary directory (once) and starts zonedd with extra
 * arguments (NULL-terminated), waiting until it answers. 0 or -errno. */
int zt_daemon_start(struct zt_daemon *z, const char *const *extra);
/* SIGTERM, then SIGKILL after a timeout; returns the exit status or -errno. */
int zt_daemon_stop(struct zt_daemon *z);
void zt_daemon_cleanup(struct zt_daemon *z);
/* Path of a program of the build tree ($top_builddir/REL). */
const char *zt_build_path(const char *rel);

#endif
