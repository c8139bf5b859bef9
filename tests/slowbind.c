/* LD_PRELOAD shim for tests/test-socket: bind() on an AF_UNIX name ending in
 * $ZT_SLOW_BIND_NAME sleeps $ZT_SLOW_BIND_MS after binding, so the test can
 * swap the new socket for a symlink at the moment a path-based chmod would
 * follow it. Nothing else changes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	int (*real)(int, const struct sockaddr *, socklen_t) =
		(int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	const char *name = getenv("ZT_SLOW_BIND_NAME");
	const char *ms = getenv("ZT_SLOW_BIND_MS");
	int r = real(fd, sa, len);

	if (r == 0 && name && ms && sa->sa_family == AF_UNIX) {
		const char *p = ((const struct sockaddr_un *)sa)->sun_path;
		size_t pl = strnlen(p, sizeof(((struct sockaddr_un *)0)->sun_path));
		size_t nl = strlen(name);

		if (pl >= nl && memcmp(p + pl - nl, name, nl) == 0) {
			long v = strtol(ms, NULL, 10);
			struct timespec ts = { .tv_sec = v / 1000, .tv_nsec = (v % 1000) * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	return r;
}
