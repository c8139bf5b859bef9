/* Daemon logging: structured journal entries under systemd, priority-tagged
 * stderr lines (sd-daemon(3) "<N>" prefixes) otherwise. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "daemon/log.h"

/* The process-wide log threshold is the one piece of state outside the
 * daemon context: logging must work before the context exists and from
 * every file without threading a pointer through. */
static int log_level = LOG_INFO;
static int journal_state = -1; /* -1 unknown, 0 stderr, 1 journal */

void zd_log_set_level(int level)
{
	log_level = level;
}

int zd_log_get_level(void)
{
	return log_level;
}

int zd_log_level_from_name(const char *name)
{
	static const char *const names[] = { "emerg", "alert", "crit", "err",
					     "warning", "notice", "info", "debug" };

	if (!name)
		return -EINVAL;
	if (name[0] >= '0' && name[0] <= '7' && name[1] == '\0')
		return name[0] - '0';
	for (int i = 0; i < 8; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	if (strcmp(name, "error") == 0)
		return LOG_ERR;
	if (strcmp(name, "warn") == 0)
		return LOG_WARNING;
	return -EINVAL;
}

/* stderr is the journal when JOURNAL_STREAM names its device and inode. */
static bool stderr_is_journal(void)
{
	const char *e;
	struct stat st;
	unsigned long long dev, ino;

	if (journal_state >= 0)
		return journal_state;
	journal_state = 0;
	e = getenv("JOURNAL_STREAM");
	if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	    st.st_dev == dev && st.st_ino == ino)
		journal_state = 1;
	return journal_state;
}

void zd_logv_fields(int prio, const char *const *fields, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int saved = errno;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (stderr_is_journal()) {
		struct iovec iov[16];
		char mbuf[1100], pbuf[16];
		size_t n = 0;

		snprintf(mbuf, sizeof(mbuf), "MESSAGE=%s", msg);
		snprintf(pbuf, sizeof(pbuf), "PRIORITY=%d", prio);
		iov[n++] = (struct iovec){ mbuf, strlen(mbuf) };
		iov[n++] = (struct iovec){ pbuf, strlen(pbuf) };
		iov[n++] = (struct iovec){ (void *)"SYSLOG_IDENTIFIER=zonedd", 24 };
		for (size_t i = 0; fields && fields[i] && n < 16; i++)
			iov[n++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
		if (sd_journal_sendv(iov, (int)n) >= 0) {
			errno = saved;
			return;
		}
	}
	{
		char extra[512] = "";
		size_t off = 0;

		for (size_t i = 0; fields && fields[i] && off < sizeof(extra) - 1; i++) {
			int w = snprintf(extra + off, sizeof(extra) - off, " %s", fields[i]);
			if (w < 0)
				break;
			off += (size_t)w;
		}
		fprintf(stderr, "<%d>zonedd: %s%s%s\n", prio, msg, off ? " |" : "", extra);
	}
	errno = saved;
}
