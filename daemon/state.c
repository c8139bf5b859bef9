/* Persisted daemon state: the state directory (checked once, then used
 * through a directory fd, never by following a name) and the token
 * generation kept in it. Issue 8's lease table belongs here too. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/log.h"

/* Two copies, each replaced by rename: a crash, a torn or a damaged file
 * leaves the other. The primary keeps its 0.1 name and format ("N\n"). */
static const char *const gen_files[2] = { "generation.copy", "generation" };
#define GEN_TMP ".generation.tmp"
/* Tokens are generation << 32 | sequence, so a generation must fit in 32
 * bits; UINT32_MAX itself is kept free so "max + 1" is always checked. */
#define GEN_MAX (UINT32_MAX - 1ull)
/* How often a refused token retries persisting the generation. */
#define GEN_RETRY_MS 1000

int zd_check_dir_fd(int fd, const char *path, bool root_ok, char *why, size_t why_len)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(why, why_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, why_len, "%s is not a directory", path);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid() && !(root_ok && st.st_uid == 0)) {
		snprintf(why, why_len, "%s is owned by uid %u, not by the daemon's user (uid %u): "
			 "another user could replace the files in it; chown it or choose another "
			 "directory", path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, why_len, "%s is writable by %s (mode %04o): another user could "
			 "replace the files in it; chmod go-w it", path,
			 (st.st_mode & S_IWOTH) ? "others" : "its group",
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

int zd_state_open(struct zd_daemon *d, char *why, size_t why_len)
{
	int fd, r;

	/* O_NOFOLLOW: a symlink in place of the directory is refused, not
	 * followed to wherever it points. */
	fd = open(d->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		struct stat st;

		r = -errno;
		/* O_DIRECTORY reports a symlink as ENOTDIR: say what it is. */
		if (lstat(d->cfg.state_dir, &st) == 0 && S_ISLNK(st.st_mode))
			r = -ELOOP;
		snprintf(why, why_len, "cannot open state directory %s: %s%s", d->cfg.state_dir,
			 strerror(-r), r == -ELOOP ? " (a symbolic link is not accepted)" : "");
		return r;
	}
	r = zd_check_dir_fd(fd, d->cfg.state_dir, false, why, why_len);
	if (r < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "refusing state directory: %s", why);
		snprintf(why, why_len, "%s", msg);
		close(fd);
		return r;
	}
	zd_state_close(d);
	d->state_fd = fd;
	d->have_state_fd = true;
	return 0;
}

void zd_state_close(struct zd_daemon *d)
{
	if (d->have_state_fd)
		close(d->state_fd);
	d->have_state_fd = false;
}

/* 1 and *gen for a valid copy, 0 for a missing one, -EUCLEAN (with *why)
 * for one that exists but does not hold a generation: -1, 2^32, garbage,
 * empty. Strict: sscanf("%lu") would read "-1" as 2^64 - 1. */
static int read_gen(int dfd, const char *name, uint64_t *gen, const char **why)
{
	char buf[32];
	struct stat st;
	uint64_t v = 0;
	ssize_t n;
	size_t i;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*why = errno == ELOOP ? "a symbolic link" : strerror(errno);
		return -EUCLEAN;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		*why = "not a regular file";
		return -EUCLEAN;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		*why = strerror(errno);
		return -EUCLEAN;
	}
	buf[n] = '\0';
	for (i = 0; i < (size_t)n && buf[i] >= '0' && buf[i] <= '9' && i < 11; i++)
		v = v * 10 + (uint64_t)(buf[i] - '0');
	if (i == 0 || (i < (size_t)n && !(buf[i] == '\n' && i + 1 == (size_t)n))) {
		*why = n == 0 ? "empty" : "not a decimal number";
		return -EUCLEAN;
	}
	if (v == 0 || v > GEN_MAX) {
		*why = "out of range (1 to 2^32 - 2)";
		return -EUCLEAN;
	}
	*gen = v;
	return 1;
}

/* Written to a new file, synced, then renamed over the old one: a crash
 * leaves the old or the new number, never a torn one. The temporary name
 * is removed first and created with O_EXCL | O_NOFOLLOW, so whatever was
 * planted under it (a symlink to a file of root's) is never written. */
static int write_gen(int dfd, const char *name, uint64_t gen)
{
	char buf[32];
	int fd, n, r = 0;

	if (unlinkat(dfd, GEN_TMP, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(dfd, GEN_TMP, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", gen);
	if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
		r = errno ? -errno : -EIO;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (!r && renameat(dfd, GEN_TMP, dfd, name) < 0)
		r = -errno;
	if (r)
		unlinkat(dfd, GEN_TMP, 0);
	return r;
}

int zd_state_generation_bump(struct zd_daemon *d)
{
	uint64_t gen = 0, v;
	bool damaged = false, any = false, clock_wait = false;
	const char *why;
	int r;

	if (!d->have_state_fd) {
		char msg[512];

		r = zd_state_open(d, msg, sizeof(msg));
		if (r < 0) {
			zd_err("%s", msg);
			return r;
		}
	}
	for (int i = 0; i < 2; i++) {
		r = read_gen(d->state_fd, gen_files[i], &v, &why);
		if (r > 0) {
			any = true;
			if (v > gen)
				gen = v;
		} else if (r < 0) {
			damaged = true;
			zd_warn("%s/%s is damaged (%s)", d->cfg.state_dir, gen_files[i], why);
		}
	}
	if (damaged && !any) {
		/* Which generations were used is lost. The wall clock in
		 * seconds is above the count of starts of any daemon that has
		 * not started more than once a second on average since 1970,
		 * so the new tokens do not repeat old ones; the count goes on
		 * from there. Waiting until the clock has passed the new value
		 * keeps a second damaged start from taking it again. */
		gen = (uint64_t)time(NULL);
		zd_err("no valid token generation in %s; continuing from the clock, generation %"
		       PRIu64, d->cfg.state_dir, gen + 1);
		clock_wait = true;
	}
	if (d->generation > gen)
		gen = d->generation; /* never go back within one run */
	gen++;
	if (gen > GEN_MAX) {
		zd_err("token generations are exhausted (%" PRIu64 "); new leases are refused", gen);
		return -EOVERFLOW;
	}
	for (int i = 0; i < 2; i++) {
		r = write_gen(d->state_fd, gen_files[i], gen);
		if (r < 0)
			return r;
	}
	if (fsync(d->state_fd) < 0)
		return -errno;
	for (int i = 0; clock_wait && i < 30 && (uint64_t)time(NULL) <= gen; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	d->generation = gen;
	d->next_token_seq = 0;
	d->generation_ok = true;
	return 0;
}

/* Tokens are (generation << 32 | sequence): unique over the daemon's life
 * and across restarts, since each start (and each sequence wrap) takes a
 * new generation, persisted first. A generation that could not be
 * persisted hands out no token at all: after a restart it could be handed
 * out again. Retried at most once a second. */
int zd_state_next_token(struct zd_daemon *d, uint64_t *token)
{
	if (!d->generation_ok || d->next_token_seq >= UINT32_MAX) {
		uint64_t now = zd_now_ms(d);
		int r;

		d->generation_ok = false;
		if (d->generation_retry_ms && now < d->generation_retry_ms)
			return d->generation_err;
		r = zd_state_generation_bump(d);
		if (r < 0) {
			d->generation_retry_ms = now + GEN_RETRY_MS;
			d->generation_err = r;
			zd_err("cannot persist the token generation in %s: %s; new leases are "
			       "refused until it can be", d->cfg.state_dir, strerror(-r));
			return r;
		}
		d->generation_retry_ms = 0;
		zd_notice("token generation %" PRIu64 " persisted; leases are granted again",
			  d->generation);
	}
	*token = (d->generation << 32) | ++d->next_token_seq;
	return 0;
}
