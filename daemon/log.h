/* Daemon logging: to the journal with structured fields when stderr is the
 * journal (JOURNAL_STREAM), else to stderr with a <N> priority prefix. */
#ifndef ZONED_LOG_H
#define ZONED_LOG_H

#include <syslog.h>

void zd_log_set_level(int level);
int zd_log_get_level(void);
/* Parses "err", "warning", "notice", "info", "debug" (or 0-7). Returns the level or -EINVAL. */
int zd_log_level_from_name(const char *name);

/* fields: NULL-terminated list of "KEY=value" strings (may be NULL). */
void zd_logv_fields(int prio, const char *const *fields, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define zd_log(prio, ...) zd_logv_fields((prio), NULL, __VA_ARGS__)
#define zd_err(...) zd_log(LOG_ERR, __VA_ARGS__)
#define zd_warn(...) zd_log(LOG_WARNING, __VA_ARGS__)
#define zd_notice(...) zd_log(LOG_NOTICE, __VA_ARGS__)
#define zd_info(...) zd_log(LOG_INFO, __VA_ARGS__)
#define zd_debug(...) zd_log(LOG_DEBUG, __VA_ARGS__)

#endif
