/* Persisted daemon state: the state directory (checked once, then used
 * through a directory fd, never by following a name) and the token
 * generation kept in it, and the lease table. */
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

/* --- the lease table ----------------------------------------------------
 *
 * An append log, "leases" in the state directory: one line per record,
 * each carrying its own checksum, appended before the reply that grants,
 * reclaims or ends a lease is sent, and fdatasync'd before that reply
 * (lease_table_sync "always") or within LOG_SYNC_MS ("background", the
 * default: see zonedd.conf(5) for why that is safe). A change costs one
 * small write, not a rewrite of the table; the log is
 * rewritten (new file, fsync, rename, directory fsync) at start-up and
 * whenever it holds more than twice the live leases plus LOG_SLACK
 * records, so its size stays O(live leases). The daemon's appends go
 * through a group commit on the thread pool (below): the loop never waits
 * for the disk, and changes arriving together share one fdatasync; a reply
 * waits for its record. The start-up rewrite runs on the loop, before the
 * socket is served.
 *
 *   <fnv1a-32 of the rest, 8 hex> N <next id>
 *   <crc> G <id> <token> <wp> <zone> <pid> <uid> <flags> <device hex> <label hex> [<count>]
 *   <crc> E <id>
 *
 * <count> (zones from <zone> on) is written only when it is not 1, so a
 * table of one-zone leases reads the same in 0.1.
 * A G for an id already present replaces it (a reclaim). A line whose
 * checksum does not match (a torn last append, a damaged block) is skipped
 * with a warning: skipping a G loses that lease, skipping an E keeps a
 * lease orphaned for one grace period, so a damaged table errs towards
 * keeping a zone from others. */
#define LEASE_LOG "leases"
#define LEASE_LOG_TMP ".leases.tmp"
#define LOG_SLACK 256
/* A rewrite costs two fsyncs, and the records that arrive meanwhile wait
 * for it. Under a steady stream of short leases (thousands of cycles a
 * second) the mark above came every 130 cycles, and the waits were an
 * eighth of the daemon's time: past the mark the table is rewritten at
 * most once per LOG_REWRITE_MS, unless it grows LOG_SLACK_MAX records past
 * the mark first (a few MB of log, read at the next start in a few ms). */
#define LOG_REWRITE_MS 1000
#define LOG_SLACK_MAX 65536
#define LOG_LINE_MAX ZD_LOG_LINE_MAX

static uint32_t fnv1a(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static void hex_encode(char *out, const char *s)
{
	static const char x[] = "0123456789abcdef";

	if (!*s) {
		strcpy(out, "-");
		return;
	}
	for (; *s; s++) {
		*out++ = x[(unsigned char)*s >> 4];
		*out++ = x[(unsigned char)*s & 15];
	}
	*out = '\0';
}

static int hex_decode(char *out, size_t size, const char *s)
{
	size_t n = 0;

	if (strcmp(s, "-") == 0) {
		out[0] = '\0';
		return 0;
	}
	for (; s[0] && s[1]; s += 2) {
		unsigned v;

		if (sscanf(s, "%2x", &v) != 1 || v == 0 || n + 1 >= size)
			return -EINVAL;
		out[n++] = (char)v;
	}
	if (*s)
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/* Formats one record with its checksum; returns its length. */
static size_t log_line(char *buf, size_t size, const char *rec)
{
	int n = snprintf(buf, size, "%08x %s\n", fnv1a(rec, strlen(rec)), rec);

	return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

static void rec_format(char *rec, size_t size, const struct zd_lease_rec *r)
{
	char dev[2 * ZD_ID_MAX + 2], label[2 * sizeof(r->label) + 2];

	hex_encode(dev, r->device);
	hex_encode(label, r->label);
	int n = snprintf(rec, size, "G %" PRIu64 " %" PRIu64 " %" PRIu64 " %u %d %u %u %s %s",
			 r->id, r->token, r->wp, r->zone, (int)r->pid, (unsigned)r->uid,
			 (r->direct ? 1u : 0u) | (r->reclaimable ? 2u : 0u), dev, label);

	if (r->count > 1 && n > 0 && (size_t)n < size)
		snprintf(rec + n, size - (size_t)n, " %u", r->count);
}

static int rec_parse(const char *rec, struct zd_lease_rec *r)
{
	char dev[2 * ZD_ID_MAX + 2], label[2 * sizeof(r->label) + 2];
	unsigned flags, uid;
	int pid;

	memset(r, 0, sizeof(*r));
	int n = sscanf(rec, "G %" SCNu64 " %" SCNu64 " %" SCNu64 " %u %d %u %u %129s %257s %u",
		       &r->id, &r->token, &r->wp, &r->zone, &pid, &uid, &flags, dev, label,
		       &r->count);

	if (n == 9)
		r->count = 1;
	else if (n != 10 || r->count < 2)
		return -EINVAL;
	if (hex_decode(r->device, sizeof(r->device), dev) < 0 ||
	    hex_decode(r->label, sizeof(r->label), label) < 0 || !r->device[0])
		return -EINVAL;
	r->pid = pid;
	r->uid = uid;
	r->direct = flags & 1;
	r->reclaimable = flags & 2;
	return 0;
}

/* Appends whole lines, and syncs them when `sync`. Runs on the thread pool
 * for the daemon (one batch at a time), on the caller's thread in unit
 * tests; it alone touches the log's fd and size while a batch is in
 * flight. */
static int log_write(struct zd_daemon *d, const char *buf, size_t len, bool sync)
{
	ssize_t n;

	if (!d->have_lease_log) {
		/* Not opened by a start-up adoption (a daemon embedded in a
		 * test): appended to as found. */
		int fd;

		if (!d->have_state_fd)
			return -EBADF;
		fd = openat(d->state_fd, LEASE_LOG,
			    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		d->lease_log_fd = fd;
		d->have_lease_log = true;
		d->lease_log_size = (uint64_t)lseek(fd, 0, SEEK_END);
	}
	errno = 0;
	n = len ? write(d->lease_log_fd, buf, len) : 0;
	if (n != (ssize_t)len || (sync && fdatasync(d->lease_log_fd) < 0)) {
		int r = errno ? -errno : -EIO;

		/* A partial line would swallow the next record: cut it off. */
		if (ftruncate(d->lease_log_fd, (off_t)d->lease_log_size) < 0)
			zd_warn("%s/%s: cannot cut off a failed append: %s", d->cfg.state_dir,
				LEASE_LOG, strerror(errno));
		return r;
	}
	d->lease_log_size += len;
	d->log_unsynced = !sync;
	return 0;
}

static int log_append(struct zd_daemon *d, const char *rec)
{
	char line[LOG_LINE_MAX];
	size_t len = log_line(line, sizeof(line), rec);
	int r;

	if (len == 0)
		return -ENAMETOOLONG;
	r = log_write(d, line, len, true);
	if (r == 0)
		d->lease_log_records++;
	return r;
}

/* Rewrites the log with just the live leases; the old one stays until the
 * new one is safely on disk and renamed over it. */
static int log_rewrite(struct zd_daemon *d, const struct zd_lease_rec *recs, size_t n,
		       uint64_t next_id)
{
	char rec[LOG_LINE_MAX], line[LOG_LINE_MAX];
	size_t len, size = 0;
	int fd, r = 0;

	if (!d->have_state_fd)
		return -EBADF;
	if (unlinkat(d->state_fd, LEASE_LOG_TMP, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(d->state_fd, LEASE_LOG_TMP,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_APPEND, 0600);
	if (fd < 0)
		return -errno;
	snprintf(rec, sizeof(rec), "N %" PRIu64, next_id);
	for (size_t i = 0; i <= n && !r; i++) {
		if (i > 0)
			rec_format(rec, sizeof(rec), &recs[i - 1]);
		len = log_line(line, sizeof(line), rec);
		if (len == 0 || write(fd, line, len) != (ssize_t)len)
			r = errno ? -errno : -EIO;
		size += len;
	}
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (!r && renameat(d->state_fd, LEASE_LOG_TMP, d->state_fd, LEASE_LOG) < 0)
		r = -errno;
	if (!r && fsync(d->state_fd) < 0)
		r = -errno;
	if (r) {
		close(fd);
		unlinkat(d->state_fd, LEASE_LOG_TMP, 0);
		return r;
	}
	if (d->have_lease_log)
		close(d->lease_log_fd);
	d->lease_log_fd = fd;
	d->have_lease_log = true;
	d->lease_log_size = size;
	return 0;
}

int zd_state_leases_load(struct zd_daemon *d, struct zd_lease_rec **out, size_t *nr)
{
	struct zd_lease_rec *recs = NULL;
	size_t n = 0, cap = 0, bad = 0;
	char *buf = NULL, *line, *next;
	struct stat st;
	int fd, r = 0;

	*out = NULL;
	*nr = 0;
	if (!d->have_state_fd)
		return -EBADF;
	fd = openat(d->state_fd, LEASE_LOG, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = -EUCLEAN;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t got = 0; got < (size_t)st.st_size;) {
		ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);

		if (k < 0) {
			r = -errno;
			goto out;
		}
		if (k == 0) {
			st.st_size = (off_t)got;
			break;
		}
		got += (size_t)k;
	}
	buf[st.st_size] = '\0';
	for (line = buf; (next = strchr(line, '\n')); line = next + 1) {
		struct zd_lease_rec rec;
		unsigned crc;
		uint64_t v;
		size_t i;

		*next = '\0';
		if (strlen(line) < 10 || sscanf(line, "%8x", &crc) != 1 || line[8] != ' ' ||
		    fnv1a(line + 9, strlen(line + 9)) != crc) {
			bad++;
			continue;
		}
		line += 9;
		if (line[0] == 'N' && sscanf(line, "N %" SCNu64, &v) == 1) {
			if (v > d->next_lease_id)
				d->next_lease_id = v;
		} else if (line[0] == 'E' && sscanf(line, "E %" SCNu64, &v) == 1) {
			for (i = 0; i < n && recs[i].id != v; i++)
				;
			if (i < n)
				recs[i] = recs[--n];
		} else if (line[0] == 'G' && rec_parse(line, &rec) == 0) {
			if (rec.id >= d->next_lease_id)
				d->next_lease_id = rec.id + 1;
			for (i = 0; i < n && recs[i].id != rec.id; i++)
				;
			if (i == n) {
				if (n == cap) {
					struct zd_lease_rec *nr2;

					cap = cap ? 2 * cap : 16;
					nr2 = realloc(recs, cap * sizeof(*recs));
					if (!nr2) {
						r = -ENOMEM;
						goto out;
					}
					recs = nr2;
				}
				n++;
			}
			recs[i] = rec;
		} else {
			bad++;
		}
	}
	if (*line)
		bad++; /* a torn last append */
	if (bad)
		zd_warn("%s/%s: %zu damaged record(s) skipped", d->cfg.state_dir, LEASE_LOG, bad);
out:
	close(fd);
	free(buf);
	if (r < 0) {
		free(recs);
		return r;
	}
	*out = recs;
	*nr = n;
	return 0;
}

int zd_state_leases_rewrite(struct zd_daemon *d, const struct zd_lease_rec *recs, size_t n)
{
	int r = log_rewrite(d, recs, n, d->next_lease_id);

	if (r == 0)
		d->lease_log_records = n + 1;
	return r;
}

int zd_state_lease_put(struct zd_daemon *d, const struct zd_lease_rec *r)
{
	char rec[LOG_LINE_MAX];

	rec_format(rec, sizeof(rec), r);
	return log_append(d, rec);
}

int zd_state_lease_end(struct zd_daemon *d, uint64_t id)
{
	char rec[64];

	snprintf(rec, sizeof(rec), "E %" PRIu64, id);
	return log_append(d, rec);
}

bool zd_state_leases_want_rewrite(struct zd_daemon *d, size_t live)
{
	size_t mark = 2 * live + LOG_SLACK;

	if (d->lease_log_records <= mark)
		return false;
	return d->lease_log_records > mark + LOG_SLACK_MAX || !d->log_rewrite_ms ||
	       zd_now_ms(d) - d->log_rewrite_ms >= LOG_REWRITE_MS;
}

/* --- group commit --------------------------------------------------------
 *
 * The daemon's records go through here: queued on the loop, written and
 * synced by one thread-pool job per batch, their callbacks run on the loop
 * once the batch is on disk. While a batch is in flight the next one
 * gathers, so N changes arriving together cost one fdatasync, and the loop
 * never waits for the disk. A batch that finds the log grown past its
 * rewrite mark writes a snapshot of the live leases instead (which
 * already holds this batch's changes). */

static void log_batch_run(uv_work_t *w)
{
	struct zd_daemon *d = w->data;

	if (d->log_do_rewrite)
		d->log_status = log_rewrite(d, d->log_recs, d->log_nrecs, d->log_next_id);
	else
		d->log_status = log_write(d, d->log_buf, d->log_buf_len, d->log_do_sync);
}

static void log_batch_start(struct zd_daemon *d);

/* With lease_table_sync "background" the records reach the page cache
 * before the reply (a daemon crash, kill -9 or upgrade loses none of them)
 * and the disk within LOG_SYNC_MS: one fdatasync per interval instead of
 * one per change. */
#define LOG_SYNC_MS 1000

static void log_sync_cb(uv_timer_t *t)
{
	struct zd_daemon *d = t->data;

	d->log_sync_due = true;
	log_batch_start(d);
}

static void log_sync_later(struct zd_daemon *d)
{
	if (!d->log_unsynced || d->stopping)
		return;
	if (!d->log_sync_timer.data) {
		uv_timer_init(d->loop, &d->log_sync_timer);
		d->log_sync_timer.data = d;
	}
	if (!uv_is_active((uv_handle_t *)&d->log_sync_timer))
		uv_timer_start(&d->log_sync_timer, log_sync_cb, LOG_SYNC_MS, 0);
}

static void log_batch_after(uv_work_t *w, int status)
{
	struct zd_daemon *d = w->data;
	int r = status < 0 ? -ECANCELED : d->log_status;

	if (r < 0)
		zd_err("cannot write the lease table in %s: %s", d->cfg.state_dir, strerror(-r));
	free(d->log_buf);
	free(d->log_recs);
	d->log_buf = NULL;
	d->log_recs = NULL;
	while (!zd_list_empty(&d->log_batch)) {
		struct zd_log_req *q = zd_container_of(d->log_batch.next, struct zd_log_req, link);

		zd_list_del(&q->link);
		q->status = r;
		q->done(q);
	}
	d->log_busy = false;
	log_batch_start(d);
	log_sync_later(d);
}

/* The callbacks of records written on the loop run from an idle handle,
 * never inside log_submit(): its callers (a method handler, a lease being
 * freed) are half way through their own changes. */
static void log_done_cb(uv_idle_t *h)
{
	struct zd_daemon *d = h->data;
	struct zd_list done;

	/* What was submitted in the last turn of the loop, in one write. */
	if (!zd_list_empty(&d->log_pending))
		log_batch_start(d);
	uv_idle_stop(h);
	zd_list_init(&done);
	zd_list_splice_head(&done, &d->log_done);
	while (!zd_list_empty(&done)) {
		struct zd_log_req *q = zd_container_of(done.next, struct zd_log_req, link);

		zd_list_del(&q->link);
		q->done(q);
	}
}

/* The idle handle runs log_done_cb before the loop polls again. */
static void log_idle_start(struct zd_daemon *d)
{
	if (!d->log_idle.data) {
		uv_idle_init(d->loop, &d->log_idle);
		d->log_idle.data = d;
	}
	uv_idle_start(&d->log_idle, log_done_cb);
}

/* A batch that needs no fdatasync (lease_table_sync "background") is
 * written here, on the loop: a few hundred bytes appended into the page
 * cache, where the thread pool's round trip (a futex wakeup there and an
 * eventfd back) cost more than the write, twice per lease cycle. It does
 * not wait for the disk; the kernel's dirty throttling pauses a task in
 * proportion to what it dirties, and the daemon dirties a few pages a
 * second. What syncs (the interval's fdatasync, "always", a rewrite) stays
 * on the pool. */
static void log_write_here(struct zd_daemon *d)
{
	int r = log_write(d, d->log_buf, d->log_buf_len, false);

	if (r < 0)
		zd_err("cannot write the lease table in %s: %s", d->cfg.state_dir, strerror(-r));
	free(d->log_buf);
	d->log_buf = NULL;
	while (!zd_list_empty(&d->log_batch)) {
		struct zd_log_req *q = zd_container_of(d->log_batch.next, struct zd_log_req, link);

		zd_list_del(&q->link);
		q->status = r;
		zd_list_add_tail(&d->log_done, &q->link);
	}
	log_idle_start(d);
	log_sync_later(d);
}

static void log_batch_start(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;
	size_t len = 0, count = 0;
	int r;

	if (d->log_busy || (zd_list_empty(&d->log_pending) && !d->log_sync_due))
		return;
	d->log_do_sync = d->cfg.lease_table_sync_always || d->log_sync_due;
	d->log_sync_due = false;
	zd_list_splice_head(&d->log_batch, &d->log_pending);
	if (d->lease_table_err) {
		d->log_status = d->lease_table_err;
		goto fail;
	}
	d->log_do_rewrite = false;
	if (zd_state_leases_want_rewrite(d, d->nr_persisted) &&
	    zd_lease_snapshot(d, &d->log_recs, &d->log_nrecs) == 0) {
		d->log_do_rewrite = true;
		d->log_rewrite_ms = zd_now_ms(d);
		d->log_next_id = d->next_lease_id;
		d->lease_log_records = d->log_nrecs + 1;
	} else {
		zd_list_for_each_safe(pos, tmp, &d->log_batch)
			len += zd_container_of(pos, struct zd_log_req, link)->len;
		d->log_buf = malloc(len ? len : 1);
		if (!d->log_buf) {
			d->log_status = -ENOMEM;
			goto fail;
		}
		d->log_buf_len = 0;
		zd_list_for_each_safe(pos, tmp, &d->log_batch) {
			struct zd_log_req *q = zd_container_of(pos, struct zd_log_req, link);

			memcpy(d->log_buf + d->log_buf_len, q->line, q->len);
			d->log_buf_len += q->len;
			count++;
		}
		d->lease_log_records += count;
	}
	if (!d->log_do_sync && !d->log_do_rewrite && !d->stopping) {
		log_write_here(d);
		return;
	}
	d->log_busy = true;
	d->log_work.data = d;
	r = uv_queue_work(d->loop, &d->log_work, log_batch_run, log_batch_after);
	if (r == 0)
		return;
	d->log_busy = false;
	d->log_status = -EIO;
fail:
	/* Answered as a failed write, on the loop, now. */
	free(d->log_recs);
	d->log_recs = NULL;
	while (!zd_list_empty(&d->log_batch)) {
		struct zd_log_req *q = zd_container_of(d->log_batch.next, struct zd_log_req, link);

		zd_list_del(&q->link);
		q->status = d->log_status;
		q->done(q);
	}
}

static int log_submit(struct zd_daemon *d, const char *rec, struct zd_log_req *q,
		      void (*done)(struct zd_log_req *q))
{
	q->len = log_line(q->line, sizeof(q->line), rec);
	if (q->len == 0)
		return -ENAMETOOLONG;
	q->done = done;
	zd_list_add_tail(&d->log_pending, &q->link);
	/* The batch starts from the idle handle, before the loop polls
	 * again: the records of every request read in one turn (many, under
	 * load) share one write. Once the loop stops, at once. */
	if (d->stopping || d->log_idle_off) {
		log_batch_start(d);
		return 0;
	}
	log_idle_start(d);
	return 0;
}

int zd_state_lease_put_async(struct zd_daemon *d, const struct zd_lease_rec *r,
			     struct zd_log_req *q, void (*done)(struct zd_log_req *q))
{
	char rec[LOG_LINE_MAX];

	rec_format(rec, sizeof(rec), r);
	return log_submit(d, rec, q, done);
}

int zd_state_lease_end_async(struct zd_daemon *d, uint64_t id, struct zd_log_req *q,
			     void (*done)(struct zd_log_req *q))
{
	char rec[64];

	snprintf(rec, sizeof(rec), "E %" PRIu64, id);
	return log_submit(d, rec, q, done);
}

void zd_state_log_init(struct zd_daemon *d)
{
	zd_list_init(&d->log_pending);
	zd_list_init(&d->log_batch);
	zd_list_init(&d->log_done);
}

void zd_state_log_stop(struct zd_daemon *d)
{
	if (d->log_idle.data) {
		/* Records already written are answered now; later ones take
		 * the pool (log_batch_start), which needs no handle. */
		log_done_cb(&d->log_idle);
		uv_close((uv_handle_t *)&d->log_idle, NULL);
		d->log_idle.data = NULL;
	}
	d->log_idle_off = true;
	if (!zd_list_empty(&d->log_pending))
		log_batch_start(d);
	if (d->log_sync_timer.data) {
		uv_close((uv_handle_t *)&d->log_sync_timer, NULL);
		d->log_sync_timer.data = NULL;
	}
}

void zd_state_leases_close(struct zd_daemon *d)
{
	/* A clean stop leaves the table on disk: the next start reads it. */
	if (d->have_lease_log && d->log_unsynced && fdatasync(d->lease_log_fd) < 0)
		zd_warn("%s/%s: %s", d->cfg.state_dir, LEASE_LOG, strerror(errno));
	d->log_unsynced = false;
	if (d->have_lease_log)
		close(d->lease_log_fd);
	d->have_lease_log = false;
}
