/* Starts and stops a real zonedd for end-to-end tests. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/fixture.h"

const char *zt_build_path(const char *rel)
{
	static char buf[4096];
	const char *top = getenv("top_builddir");

	snprintf(buf, sizeof(buf), "%s/%s", top && *top ? top : ".", rel);
	return buf;
}

static bool daemon_answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int zt_daemon_start(struct zt_daemon *z, const char *const *extra)
{
	const char *argv[64];
	char exe[4096];
	size_t n = 0;
	pid_t pid;

	if (!z->dir[0]) {
		snprintf(z->dir, sizeof(z->dir), "%s/zoned-e2e-XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(z->dir))
			return -errno;
		snprintf(z->sock, sizeof(z->sock), "%s/sock", z->dir);
		snprintf(z->state, sizeof(z->state), "%s/state", z->dir);
		snprintf(z->log, sizeof(z->log), "%s/zonedd.log", z->dir);
	}
	char wrap[1024] = "";
	const char *w = getenv("ZT_DAEMON_WRAPPER");

	/* ZT_DAEMON_WRAPPER="valgrind --error-exitcode=99" runs the daemon
	 * under a tool; words are split on spaces. */
	if (w && *w) {
		char *save = NULL;

		snprintf(wrap, sizeof(wrap), "%s", w);
		for (char *t = strtok_r(wrap, " ", &save); t && n < 16; t = strtok_r(NULL, " ", &save))
			argv[n++] = t;
	}
	/* zonedd links only static convenience libraries: no libtool wrapper. */
	snprintf(exe, sizeof(exe), "%s", zt_build_path("daemon/zonedd"));
	argv[n++] = exe;
	argv[n++] = "--socket";
	argv[n++] = z->sock;
	argv[n++] = "--state-dir";
	argv[n++] = z->state;
	argv[n++] = "--no-config"; /* never the host's configuration */
	for (size_t i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(z->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
		}
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	z->pid = pid;
	for (int i = 0; i < 1000; i++) {
		int status;

		if (daemon_answers(z->sock))
			return 0;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			z->pid = 0;
			return -ECHILD;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	z->pid = 0;
	return -ETIMEDOUT;
}

int zt_daemon_stop(struct zt_daemon *z)
{
	int status = 0;

	if (z->pid <= 0)
		return -ESRCH;
	kill(z->pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(z->pid, &status, WNOHANG) == z->pid) {
			z->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		usleep(10000);
	}
	kill(z->pid, SIGKILL);
	waitpid(z->pid, &status, 0);
	z->pid = 0;
	return -ETIMEDOUT;
}

void zt_daemon_cleanup(struct zt_daemon *z)
{
	char cmd[400];

	if (z->pid > 0)
		zt_daemon_stop(z);
	if (z->dir[0]) {
		/* Keep the daemon's log visible in the test output on failure. */
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", z->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", z->dir);
		z->dir[0] = '\0';
	}
}
