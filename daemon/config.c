/* zonedd.conf: the defaults, the JSON configuration file and its validation.
 * Every rejected file gets one "FILE:LINE: key: reason" line. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <json-c/json.h>

#include "daemon/conf.h"
#include "daemon/log.h"
#include "daemon/zdev.h"
#include "proto/proto.h"

/* A configuration is a few hundred bytes; anything near this is a mistake
 * (the wrong file), and the bound keeps reading it cheap. */
#define CONF_MAX_SIZE (1024 * 1024)
/* No object of the schema has more than a dozen keys; the duplicate check
 * is quadratic, so an object beyond this is refused before it gets costly. */
#define CONF_MAX_KEYS 64
#define CONF_PATH_MAX 256

void zd_config_defaults(struct zd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", ZP_DEFAULT_SOCKET);
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", ZONED_STATE_DIR);
	cfg->max_leases_per_conn = 64;
	/* The cap keeps one user from taking every descriptor the daemon
	 * has, not from running a thread pool: a client commonly holds one
	 * connection per thread, and 64 threads of one uid must work with the
	 * defaults (issue 12). 256 leaves such a client room for several
	 * pools, and 256 uids at the cap still fit the 65536 descriptors of
	 * zonedd.service (LimitNOFILE), which main() also asks for where the
	 * hard limit allows: a connection is one descriptor of the daemon's,
	 * and the descriptors a lease reply carries are the client's once
	 * sent. */
	cfg->max_conns_per_uid = 256;
	cfg->max_wait_ms = 60000;
	cfg->max_waiters_per_conn = 256;
	cfg->max_waiters_per_uid = 1024;
	cfg->grace_ms = 30000;
	cfg->log_level = LOG_INFO;
}

void zd_config_free(struct zd_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->devices);
	cfg->devices = NULL;
	cfg->nr_devices = 0;
}

/* Device ids travel in JSON, on command lines and through shell completion:
 * keep them to characters none of those needs to quote. */
static bool id_valid(const char *id, size_t size)
{
	size_t len = strnlen(id, size);

	if (len == 0 || len == size || id[0] == '-' || id[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		/* ASCII by design, whatever the locale. */
		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
		    !strchr("._:@+-", c))
			return false;
	}
	return true;
}

int zd_config_add_device(struct zd_config *cfg, const struct zd_device_conf *dev)
{
	struct zd_device_conf *n;

	if (!cfg || !dev || !id_valid(dev->id, sizeof(dev->id)) || !dev->path[0] ||
	    strnlen(dev->path, sizeof(dev->path)) == sizeof(dev->path) ||
	    strnlen(dev->spec, sizeof(dev->spec)) == sizeof(dev->spec))
		return -EINVAL;
	for (size_t i = 0; i < cfg->nr_devices; i++)
		if (strcmp(cfg->devices[i].id, dev->id) == 0)
			return -EEXIST;
	n = realloc(cfg->devices, (cfg->nr_devices + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	n[cfg->nr_devices++] = *dev;
	cfg->devices = n;
	return 0;
}

/* --- the file ------------------------------------------------------------ */

struct conf_file {
	const char *name;
	char *text;             /* comments blanked, NUL-terminated */
	size_t len;
	char *err;
	size_t err_len;
	const struct zd_device_conf *running; /* on reload: the devices served now */
	size_t nr_running;
};

static unsigned line_at(const char *text, size_t off)
{
	unsigned line = 1;

	for (size_t i = 0; i < off; i++)
		if (text[i] == '\n')
			line++;
	return line;
}

static const char *file_type(mode_t mode)
{
	if (S_ISDIR(mode)) return "a directory";
	if (S_ISFIFO(mode)) return "a FIFO";
	if (S_ISSOCK(mode)) return "a socket";
	if (S_ISCHR(mode)) return "a character device";
	if (S_ISBLK(mode)) return "a block device";
	return "a special file";
}

/* *type names what path is when it is not a regular file (-EINVAL). */
static int read_file(const char *path, char **out, size_t *len, const char **type)
{
	struct stat st;
	char *buf;
	size_t n = 0;
	int fd, r;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer (start-up would
	 * hang); what is not a regular file is refused before any read. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto fail_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		*type = file_type(st.st_mode);
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto fail_fd;
	}
	/* One byte more than allowed, to tell "too large" from "just fits";
	 * st_size is not trusted (a file that grows meanwhile). */
	buf = malloc(CONF_MAX_SIZE + 2);
	if (!buf) {
		r = -ENOMEM;
		goto fail_fd;
	}
	for (;;) {
		ssize_t k = read(fd, buf + n, CONF_MAX_SIZE + 1 - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			free(buf);
			goto fail_fd;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n > CONF_MAX_SIZE) {
			free(buf);
			r = -EFBIG;
			goto fail_fd;
		}
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
fail_fd:
	close(fd);
	return r;
}

/* Comments are not JSON, but a configuration file without them is
 * unfriendly: '#' and '//' start a comment that runs to the end of the line.
 * They are blanked in place (newlines kept) so that offsets and lines
 * reported by the JSON parser stay those of the file. */
static void blank_comments(char *text, size_t len)
{
	char quote = 0;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (quote) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == quote)
				quote = 0;
		} else if (c == '"' || c == '\'') {
			quote = c;
		} else if (c == '#' || (c == '/' && i + 1 < len && text[i + 1] == '/')) {
			for (; i < len && text[i] != '\n'; i++)
				text[i] = ' ';
		}
	}
}

/* --- locating keys --------------------------------------------------------
 * json-c says where a syntax error is but not where a key is. This walk
 * over the (already parsed, so well-formed) text recovers the line of each
 * key path ("devices[1].id"), and checks what json-c lets through: repeated
 * keys (it silently keeps the last) and single-quoted strings. */

struct scan {
	const char *p, *end;
	unsigned line;
	const char *target;     /* path to find, or NULL to check the whole text */
	unsigned found;         /* line of target, 0 = not found */
	bool stop;
	/* The first problem the check found. */
	unsigned bad_line;
	char bad_path[CONF_PATH_MAX];
	char bad_msg[160];
};

static void scan_adv(struct scan *s)
{
	if (s->p < s->end) {
		if (*s->p == '\n')
			s->line++;
		s->p++;
	}
}

static void scan_ws(struct scan *s)
{
	while (s->p < s->end && isspace((unsigned char)*s->p))
		scan_adv(s);
}

static void scan_string(struct scan *s)
{
	char quote = *s->p;

	scan_adv(s);
	while (s->p < s->end && *s->p != quote) {
		if (*s->p == '\\')
			scan_adv(s);
		scan_adv(s);
	}
	scan_adv(s);
}

static void scan_problem(struct scan *s, unsigned line, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void scan_problem(struct scan *s, unsigned line, const char *path, const char *fmt, ...)
{
	va_list ap;

	s->stop = true;
	s->bad_line = line;
	snprintf(s->bad_path, sizeof(s->bad_path), "%s", path);
	va_start(ap, fmt);
	vsnprintf(s->bad_msg, sizeof(s->bad_msg), fmt, ap);
	va_end(ap);
}

/* A key as JSON means it: escapes decoded by json-c itself. quoted spans
 * the key with its quotes. */
static char *scan_key(const char *quoted, size_t len)
{
	char *raw, *key = NULL;
	struct json_object *o;

	if (!memchr(quoted, '\\', len))
		return strndup(quoted + 1, len - 2);
	raw = strndup(quoted, len);
	if (!raw)
		return NULL;
	o = json_tokener_parse(raw);
	if (o && json_object_is_type(o, json_type_string))
		key = strdup(json_object_get_string(o));
	json_object_put(o);
	free(raw);
	return key;
}

static bool scan_visit(struct scan *s, const char *path)
{
	if (s->target && strcmp(s->target, path) == 0) {
		s->found = s->line;
		s->stop = true;
	}
	return s->stop;
}

static void scan_value(struct scan *s, const char *path);

static void scan_object(struct scan *s, const char *path)
{
	char *keys[CONF_MAX_KEYS];
	unsigned nkeys = 0;
	char child[CONF_PATH_MAX];

	scan_adv(s); /* { */
	while (!s->stop && s->p < s->end) {
		const char *kstart;
		unsigned kline;
		char *key;

		scan_ws(s);
		if (s->p >= s->end || *s->p == '}')
			break;
		kline = s->line;
		kstart = s->p;
		if (*s->p == '\'' && !s->target) {
			scan_problem(s, kline, path, "strings must be in double quotes");
			break;
		}
		scan_string(s);
		key = scan_key(kstart, (size_t)(s->p - kstart));
		if (!key) {
			scan_problem(s, kline, path, "out of memory");
			break;
		}
		snprintf(child, sizeof(child), "%s%s%s", path, path[0] ? "." : "", key);
		if (!s->target) {
			for (unsigned i = 0; i < nkeys; i++) {
				if (strcmp(keys[i], key) == 0) {
					scan_problem(s, kline, child, "key given twice");
					break;
				}
			}
			if (!s->stop && nkeys == CONF_MAX_KEYS)
				scan_problem(s, kline, path, "more than %d keys in one object",
					     CONF_MAX_KEYS);
		}
		if (s->stop || scan_visit(s, child)) {
			free(key);
			break;
		}
		keys[nkeys++] = key;
		scan_ws(s);
		scan_adv(s); /* : */
		scan_value(s, child);
		scan_ws(s);
		if (s->p < s->end && *s->p == ',')
			scan_adv(s);
	}
	if (!s->stop)
		scan_adv(s); /* } */
	for (unsigned i = 0; i < nkeys; i++)
		free(keys[i]);
}

static void scan_array(struct scan *s, const char *path)
{
	char child[CONF_PATH_MAX];

	scan_adv(s); /* [ */
	for (unsigned idx = 0; !s->stop && s->p < s->end; idx++) {
		scan_ws(s);
		if (s->p >= s->end || *s->p == ']')
			break;
		snprintf(child, sizeof(child), "%s[%u]", path, idx);
		if (scan_visit(s, child))
			break;
		scan_value(s, child);
		scan_ws(s);
		if (s->p < s->end && *s->p == ',')
			scan_adv(s);
	}
	if (!s->stop)
		scan_adv(s); /* ] */
}

static void scan_value(struct scan *s, const char *path)
{
	scan_ws(s);
	if (s->p >= s->end)
		return;
	switch (*s->p) {
	case '{':
		scan_object(s, path);
		break;
	case '[':
		scan_array(s, path);
		break;
	case '\'':
		if (!s->target) {
			scan_problem(s, s->line, path, "strings must be in double quotes");
			break;
		}
		/* fall through */
	case '"':
		scan_string(s);
		break;
	default:
		while (s->p < s->end && !strchr(",]}", *s->p) && !isspace((unsigned char)*s->p))
			scan_adv(s);
		break;
	}
}

static void scan_init(struct scan *s, const struct conf_file *f, const char *target)
{
	memset(s, 0, sizeof(*s));
	s->p = f->text;
	s->end = f->text + f->len;
	s->line = 1;
	s->target = target;
}

/* The line of a key path; "" is the top-level value. 0 when not found. */
static unsigned locate(const struct conf_file *f, const char *path)
{
	struct scan s;

	scan_init(&s, f, path);
	scan_ws(&s);
	if (!path[0])
		return s.p < s.end ? s.line : 0;
	scan_value(&s, "");
	return s.found;
}

/* --- errors ---------------------------------------------------------------- */

static int conf_error(struct conf_file *f, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int conf_error(struct conf_file *f, const char *path, const char *fmt, ...)
{
	char msg[512];
	unsigned line = locate(f, path);
	va_list ap;
	int off;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		off = snprintf(f->err, f->err_len, "%s:%u: ", f->name, line);
	else
		off = snprintf(f->err, f->err_len, "%s: ", f->name);
	if (off >= 0 && (size_t)off < f->err_len)
		snprintf(f->err + off, f->err_len - (size_t)off, "%s%s%s", path,
			 path[0] ? ": " : "", msg);
	return -EINVAL;
}

/* --- values ---------------------------------------------------------------- */

static const char *type_name(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "null";
	case json_type_boolean: return "a boolean";
	case json_type_double: return "a number with a fraction or exponent";
	case json_type_int: return "a number";
	case json_type_object: return "an object";
	case json_type_array: return "an array";
	case json_type_string: return "a string";
	}
	return "unknown";
}

/* Copies a string value into out[size]. */
static int get_string(struct conf_file *f, const char *path, struct json_object *v, char *out,
		      size_t size)
{
	const char *s;
	size_t len;

	if (!json_object_is_type(v, json_type_string))
		return conf_error(f, path, "must be a string, not %s", type_name(v));
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (strlen(s) != len)
		return conf_error(f, path, "must not contain a NUL character");
	if (len >= size)
		return conf_error(f, path, "too long (%zu bytes, at most %zu)", len, size - 1);
	memcpy(out, s, len + 1);
	return 0;
}

static int get_abs_path(struct conf_file *f, const char *path, struct json_object *v, char *out,
			size_t size)
{
	int r = get_string(f, path, v, out, size);

	if (r < 0)
		return r;
	if (out[0] != '/')
		return conf_error(f, path, "'%s' is not an absolute path", out);
	return 0;
}

static int get_u32(struct conf_file *f, const char *path, struct json_object *v, uint32_t *out)
{
	if (!json_object_is_type(v, json_type_int))
		return conf_error(f, path, "must be a whole number, not %s", type_name(v));
	/* json-c keeps values past INT64_MAX as uint64; get_int64 saturates
	 * those to INT64_MAX, so the sign test is sound for every value. */
	if (json_object_get_int64(v) < 0)
		return conf_error(f, path, "must not be negative");
	if (json_object_get_uint64(v) > UINT32_MAX)
		return conf_error(f, path, "%s is too large (at most %u)", json_object_to_json_string(v),
				  UINT32_MAX);
	*out = (uint32_t)json_object_get_uint64(v);
	return 0;
}

/* Group names are looked up when the daemon applies the configuration; here
 * only what no group database allows is refused (':' and ',' separate
 * fields of /etc/group), and blanks at either end, which are typos. */
static int get_group(struct conf_file *f, const char *path, struct json_object *v, char *out,
		     size_t size)
{
	int r = get_string(f, path, v, out, size);
	size_t len = strlen(out);

	if (r < 0)
		return r;
	for (size_t i = 0; i < len; i++)
		if (iscntrl((unsigned char)out[i]) || out[i] == ':' || out[i] == ',')
			return conf_error(f, path, "'%s' is not a valid group name", out);
	if (len && (isspace((unsigned char)out[0]) || isspace((unsigned char)out[len - 1])))
		return conf_error(f, path, "'%s' has blanks at an end", out);
	if (out[0] == '-')
		return conf_error(f, path, "'%s' is not a valid group name", out);
	return 0;
}

static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned row[64];

	if (la >= 64 || lb >= 64)
		return 64;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];

		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

static int unknown_key(struct conf_file *f, const char *path, const char *key,
		       const char *const *known)
{
	const char *best = NULL;
	unsigned best_d = 3; /* suggest only close misspellings */

	for (size_t i = 0; known[i]; i++) {
		unsigned dist = edit_distance(key, known[i]);

		if (dist < best_d) {
			best_d = dist;
			best = known[i];
		}
	}
	if (best)
		return conf_error(f, path, "unknown key (did you mean '%s'?)", best);
	{
		char list[256] = "";
		size_t off = 0;

		for (size_t i = 0; known[i] && off < sizeof(list); i++) {
			int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
					 known[i]);
			if (w < 0)
				break;
			off += (size_t)w;
		}
		return conf_error(f, path, "unknown key (known: %s)", list);
	}
}

/* Checks a spec item by item so the error names the item, then the whole
 * geometry with the emulator's own rules. */
static int check_spec(struct conf_file *f, const char *path, const char *spec)
{
	/* The first four are sizes, the rest counts. */
	static const char *const all[] = { "size", "zone-size", "zone-capacity", "lbs", "conv",
					   "max-open", "max-active", NULL };
	struct zd_emul_params p, def;
	uint64_t vals[7];
	unsigned seen = 0;
	const char *item = spec;
	const char *why = NULL;

	while (*spec && item) {
		const char *comma = strchr(item, ',');
		size_t ilen = comma ? (size_t)(comma - item) : strlen(item);
		char buf[128], *val;
		uint64_t v;
		size_t k;

		if (ilen == 0)
			return conf_error(f, path, "empty item in '%s'", spec);
		if (ilen >= sizeof(buf))
			return conf_error(f, path, "item too long in '%s'", spec);
		memcpy(buf, item, ilen);
		buf[ilen] = '\0';
		val = strchr(buf, '=');
		if (!val || val == buf || !val[1])
			return conf_error(f, path, "'%s' is not KEY=VALUE", buf);
		*val++ = '\0';
		for (k = 0; all[k]; k++)
			if (strcmp(buf, all[k]) == 0)
				break;
		if (!all[k]) {
			unsigned best_d = 3;
			const char *best = NULL;

			for (size_t i = 0; all[i]; i++) {
				unsigned dist = edit_distance(buf, all[i]);

				if (dist < best_d) {
					best_d = dist;
					best = all[i];
				}
			}
			if (best)
				return conf_error(f, path, "unknown parameter '%s' (did you mean '%s'?)",
						  buf, best);
			return conf_error(f, path, "unknown parameter '%s' (known: size, zone-size, "
					  "zone-capacity, conv, max-open, max-active, lbs)", buf);
		}
		if (seen & (1u << k))
			return conf_error(f, path, "parameter '%s' given twice", buf);
		seen |= 1u << k;
		if (k < 4 && zd_parse_size(val, &v) < 0)
			return conf_error(f, path, "%s=%s: not a size (a number of bytes with an "
					  "optional K, M, G or T suffix)", buf, val);
		if (k >= 4) {
			for (const char *c = val; *c; c++)
				if (!isdigit((unsigned char)*c))
					return conf_error(f, path, "%s=%s: not a whole number", buf, val);
			if (strlen(val) > 10 || strtoull(val, NULL, 10) > UINT32_MAX)
				return conf_error(f, path, "%s=%s: too large", buf, val);
			v = strtoull(val, NULL, 10);
		}
		vals[k] = v;
		item = comma ? comma + 1 : NULL;
	}
	/* The geometry this spec and the defaults make together, checked here
	 * first so the error names the rule broken (the emulator would only
	 * log it), then by the emulator itself, which has the last word. */
	zd_emul_default_params(&def);
	p = def;
	if (seen & 1u << 0) p.size = vals[0];
	if (seen & 1u << 1) p.zone_size = vals[1];
	if (seen & 1u << 2) p.zone_capacity = vals[2];
	else if (seen & 1u << 1) p.zone_capacity = p.zone_size; /* as the emulator does */
	if (seen & 1u << 3) p.logical_block_size = vals[3] > UINT32_MAX ? 0 : (uint32_t)vals[3];
	if (seen & 1u << 4) p.nr_conventional = (uint32_t)vals[4];
	if (seen & 1u << 5) p.max_open = (uint32_t)vals[5];
	if (seen & 1u << 6) p.max_active = (uint32_t)vals[6];
	if (p.logical_block_size != 512 && p.logical_block_size != 4096)
		why = "lbs must be 512 or 4096";
	else if (p.zone_size < p.logical_block_size || (p.zone_size & (p.zone_size - 1)))
		why = "zone-size must be a power of two, at least lbs";
	else if (p.zone_capacity == 0 || p.zone_capacity % p.logical_block_size)
		why = "zone-capacity must be a non-zero multiple of lbs";
	else if (p.zone_capacity > p.zone_size)
		why = "zone-capacity exceeds zone-size";
	else if (p.size == 0 || p.size % p.zone_size)
		why = "size must be a non-zero multiple of zone-size";
	else if (p.nr_conventional >= p.size / p.zone_size)
		why = "conv leaves no sequential zone (the default is 2)";
	else if (p.max_open && p.max_active && p.max_open > p.max_active)
		why = "max-open exceeds max-active";
	if (why)
		return conf_error(f, path, "'%s': %s", spec, why);
	p = def;
	if (zd_emul_parse_spec(spec, &p) < 0)
		return conf_error(f, path, "'%s': the emulator refuses this geometry (too large, or "
				  "too many zones)", spec);
	return 0;
}

bool zd_config_same_device(const struct zd_device_conf *a, const struct zd_device_conf *b)
{
	struct stat sa, sb;

	if (a->emulated != b->emulated)
		return false;
	if (strcmp(a->path, b->path) == 0)
		return true;
	/* Two names of one file ("/a/./b", a symlink) are the same device. */
	return stat(a->path, &sa) == 0 && stat(b->path, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* A reload may add and remove devices, not move one: a device keeps the
 * path it was opened with while it runs (its leases' fds point there). */
static int check_running(struct conf_file *f, const char *key, const struct zd_device_conf *dc)
{
	for (size_t i = 0; i < f->nr_running; i++) {
		const struct zd_device_conf *rd = &f->running[i];

		if (strcmp(rd->id, dc->id) != 0 || zd_config_same_device(rd, dc))
			continue;
		return conf_error(f, key, "device '%s' is served from %s%s; a reload cannot move "
				  "it (remove it, reload, and add it back once it is closed, or "
				  "restart zonedd)", dc->id, rd->path,
				  rd->emulated == dc->emulated ? "" :
				  rd->emulated ? " (emulated)" : " (a kernel device)");
	}
	return 0;
}

static int get_isolation(struct conf_file *f, const char *k, struct json_object *v, int *out)
{
	enum zd_isolation iso;
	char s[16];
	int r = get_string(f, k, v, s, sizeof(s));

	if (r < 0)
		return r;
	if (zd_isolation_parse(s, &iso) < 0)
		return conf_error(f, k, "'%s' is not an isolation mode (auto, zone, device)", s);
	*out = iso;
	return 0;
}

static int parse_device(struct conf_file *f, struct zd_config *cfg, size_t idx,
			struct json_object *o)
{
	static const char *const known[] = { "id", "path", "emulate", "spec", "faults",
					     "isolation", NULL };
	struct json_object *id = NULL, *path = NULL, *emulate = NULL, *spec = NULL;
	struct json_object *faults = NULL, *isolation = NULL;
	struct zd_device_conf dc;
	char p[32], k[CONF_PATH_MAX];
	int r;

	snprintf(p, sizeof(p), "devices[%zu]", idx);
	if (!json_object_is_type(o, json_type_object))
		return conf_error(f, p, "must be an object, not %s", type_name(o));
	json_object_object_foreach(o, key, val) {
		snprintf(k, sizeof(k), "%s.%s", p, key);
		if (strcmp(key, "id") == 0)
			id = val;
		else if (strcmp(key, "path") == 0)
			path = val;
		else if (strcmp(key, "emulate") == 0)
			emulate = val;
		else if (strcmp(key, "spec") == 0)
			spec = val;
		else if (strcmp(key, "faults") == 0)
			faults = val;
		else if (strcmp(key, "isolation") == 0)
			isolation = val;
		else
			return unknown_key(f, k, key, known);
	}
	memset(&dc, 0, sizeof(dc));
	if (!id)
		return conf_error(f, p, "missing \"id\" (the name clients use for the device)");
	snprintf(k, sizeof(k), "%s.id", p);
	r = get_string(f, k, id, dc.id, sizeof(dc.id));
	if (r < 0)
		return r;
	if (!id_valid(dc.id, sizeof(dc.id)))
		return conf_error(f, k, "'%s' is not a valid id (letters, digits and ._:@+- , "
				  "not starting with - or .)", dc.id);
	if (path && emulate)
		return conf_error(f, p, "\"path\" and \"emulate\" exclude each other");
	if (!path && !emulate)
		return conf_error(f, p, "needs \"path\" (a zoned block device) or \"emulate\" "
				  "(the backing file of an emulated device)");
	snprintf(k, sizeof(k), "%s.%s", p, path ? "path" : "emulate");
	r = get_abs_path(f, k, path ? path : emulate, dc.path, sizeof(dc.path));
	if (r < 0)
		return r;
	dc.emulated = emulate != NULL;
	r = check_running(f, k, &dc);
	if (r < 0)
		return r;
	if (spec) {
		snprintf(k, sizeof(k), "%s.spec", p);
		if (!emulate)
			return conf_error(f, k, "only an emulated device (\"emulate\") takes a spec");
		r = get_string(f, k, spec, dc.spec, sizeof(dc.spec));
		if (r == 0)
			r = check_spec(f, k, dc.spec);
		if (r < 0)
			return r;
	}
	if (faults) {
		const char *why = NULL;

		snprintf(k, sizeof(k), "%s.faults", p);
		if (!emulate)
			return conf_error(f, k, "only an emulated device (\"emulate\") takes faults");
		r = get_string(f, k, faults, dc.faults, sizeof(dc.faults));
		if (r < 0)
			return r;
		if (zd_emul_check_faults(dc.faults, &why) < 0)
			return conf_error(f, k, "'%s': %s", dc.faults, why ? why : "invalid");
	}
	if (isolation) {
		snprintf(k, sizeof(k), "%s.isolation", p);
		r = get_isolation(f, k, isolation, &dc.isolation);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < cfg->nr_devices; i++) {
		if (strcmp(cfg->devices[i].path, dc.path) == 0) {
			snprintf(k, sizeof(k), "%s.%s", p, path ? "path" : "emulate");
			return conf_error(f, k, "'%s' is already devices[%zu]", dc.path, i);
		}
	}
	r = zd_config_add_device(cfg, &dc);
	if (r == -EEXIST) {
		size_t i = 0;

		while (i < cfg->nr_devices && strcmp(cfg->devices[i].id, dc.id) != 0)
			i++;
		snprintf(k, sizeof(k), "%s.id", p);
		return conf_error(f, k, "'%s' is already the id of devices[%zu]", dc.id, i);
	}
	if (r < 0)
		return conf_error(f, p, "%s", strerror(-r));
	return 0;
}

static int parse_devices(struct conf_file *f, struct zd_config *cfg, struct json_object *v)
{
	size_t n;
	int r;

	if (!json_object_is_type(v, json_type_array))
		return conf_error(f, "devices", "must be an array, not %s", type_name(v));
	/* The file's list replaces the devices cfg held. */
	zd_config_free(cfg);
	n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		r = parse_device(f, cfg, i, json_object_array_get_idx(v, i));
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_top(struct conf_file *f, struct zd_config *cfg, struct json_object *root)
{
	static const char *const known[] = {
		"socket", "state_dir", "devices", "client_group", "admin_group",
		"max_leases_per_connection", "max_connections_per_uid", "max_wait_ms",
		"max_waiters_per_connection", "max_waiters_per_uid", "grace_ms", "lease_table_sync",
		"log_level", "isolation", NULL
	};
	int r = 0;

	if (!json_object_is_type(root, json_type_object))
		return conf_error(f, "", "the configuration must be a JSON object ({...}), not %s",
				  type_name(root));
	json_object_object_foreach(root, key, val) {
		if (strcmp(key, "socket") == 0) {
			r = get_abs_path(f, key, val, cfg->socket_path, sizeof(cfg->socket_path));
		} else if (strcmp(key, "state_dir") == 0) {
			r = get_abs_path(f, key, val, cfg->state_dir, sizeof(cfg->state_dir));
		} else if (strcmp(key, "devices") == 0) {
			r = parse_devices(f, cfg, val);
		} else if (strcmp(key, "client_group") == 0) {
			r = get_group(f, key, val, cfg->client_group, sizeof(cfg->client_group));
		} else if (strcmp(key, "admin_group") == 0) {
			r = get_group(f, key, val, cfg->admin_group, sizeof(cfg->admin_group));
		} else if (strcmp(key, "max_leases_per_connection") == 0) {
			r = get_u32(f, key, val, &cfg->max_leases_per_conn);
		} else if (strcmp(key, "max_connections_per_uid") == 0) {
			r = get_u32(f, key, val, &cfg->max_conns_per_uid);
		} else if (strcmp(key, "max_wait_ms") == 0) {
			r = get_u32(f, key, val, &cfg->max_wait_ms);
		} else if (strcmp(key, "max_waiters_per_connection") == 0) {
			r = get_u32(f, key, val, &cfg->max_waiters_per_conn);
		} else if (strcmp(key, "max_waiters_per_uid") == 0) {
			r = get_u32(f, key, val, &cfg->max_waiters_per_uid);
		} else if (strcmp(key, "grace_ms") == 0) {
			r = get_u32(f, key, val, &cfg->grace_ms);
		} else if (strcmp(key, "lease_table_sync") == 0) {
			char mode[16];

			r = get_string(f, key, val, mode, sizeof(mode));
			if (r == 0 && strcmp(mode, "always") == 0)
				cfg->lease_table_sync_always = true;
			else if (r == 0 && strcmp(mode, "background") == 0)
				cfg->lease_table_sync_always = false;
			else if (r == 0)
				r = conf_error(f, key, "must be \"background\" or \"always\", not '%s'",
					       mode);
		} else if (strcmp(key, "isolation") == 0) {
			r = get_isolation(f, key, val, &cfg->isolation);
		} else if (strcmp(key, "log_level") == 0) {
			char name[32];

			r = get_string(f, key, val, name, sizeof(name));
			if (r == 0) {
				int level = zd_log_level_from_name(name);

				if (level < 0)
					r = conf_error(f, key, "unknown level '%s' (err, warning, notice, "
						       "info or debug)", name);
				else
					cfg->log_level = level;
			}
		} else {
			r = unknown_key(f, key, key, known);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Parses f->text; the JSON is strict apart from the blanked comments. */
static int parse_text(struct conf_file *f, struct zd_config *cfg)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error jerr;
	const char *nul = memchr(f->text, '\0', f->len);
	struct scan s;
	size_t end;
	int r;

	if (nul) {
		snprintf(f->err, f->err_len, "%s:%u: the file contains a NUL byte (not a text file?)",
			 f->name, line_at(f->text, (size_t)(nul - f->text)));
		return -EINVAL;
	}
	blank_comments(f->text, f->len);
	end = 0;
	while (end < f->len && isspace((unsigned char)f->text[end]))
		end++;
	if (end == f->len) {
		snprintf(f->err, f->err_len, "%s: the file is empty (an empty configuration is {})",
			 f->name);
		return -EINVAL;
	}

	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	/* The terminating NUL goes in too: it ends a top-level number or
	 * literal, and makes a truncated file an error rather than "more
	 * input needed". */
	root = json_tokener_parse_ex(tok, f->text, (int)f->len + 1);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr != json_tokener_success) {
		size_t bol = end;

		json_object_put(root);
		if (jerr == json_tokener_continue || jerr == json_tokener_error_parse_eof) {
			snprintf(f->err, f->err_len, "%s:%u: unexpected end of file (an object, array "
				 "or string is not closed)", f->name, line_at(f->text, f->len));
			return -EINVAL;
		}
		if (end > f->len)
			end = bol = f->len;
		while (bol > 0 && f->text[bol - 1] != '\n')
			bol--;
		snprintf(f->err, f->err_len, "%s:%u:%zu: syntax error: %s", f->name,
			 line_at(f->text, end), end - bol + 1, json_tokener_error_desc(jerr));
		return -EINVAL;
	}
	/* Strict mode refuses trailing text, but not trailing blanks. */
	if (end > f->len)
		end = f->len;
	while (end < f->len && isspace((unsigned char)f->text[end]))
		end++;
	if (end < f->len) {
		json_object_put(root);
		snprintf(f->err, f->err_len, "%s:%u: syntax error: text after the end of the "
			 "configuration", f->name, line_at(f->text, end));
		return -EINVAL;
	}

	scan_init(&s, f, NULL);
	scan_value(&s, "");
	if (s.bad_line) {
		json_object_put(root);
		snprintf(f->err, f->err_len, "%s:%u: %s%s%s", f->name, s.bad_line, s.bad_path,
			 s.bad_path[0] ? ": " : "", s.bad_msg);
		return -EINVAL;
	}
	r = parse_top(f, cfg, root);
	json_object_put(root);
	return r;
}

int zd_config_load(struct zd_config *cfg, const char *path, char *err, size_t err_len)
{
	return zd_config_reload(cfg, path, NULL, 0, err, err_len);
}

int zd_config_reload(struct zd_config *cfg, const char *path,
		     const struct zd_device_conf *running, size_t nr_running, char *err,
		     size_t err_len)
{
	struct conf_file f = { .name = path, .err = err, .err_len = err_len,
			       .running = running, .nr_running = nr_running };
	const char *type = NULL;
	struct zd_config tmp;
	char dummy[1];
	int r;

	if (!err || !err_len) {
		err = dummy;
		err_len = sizeof(dummy);
		f.err = err;
		f.err_len = err_len;
	}
	err[0] = '\0';
	if (!cfg || !path)
		return -EINVAL;
	r = read_file(path, &f.text, &f.len, &type);
	if (r < 0) {
		if (type)
			snprintf(err, err_len, "%s: is %s, not a regular file: a configuration is read "
				 "from a regular file", path, type);
		else if (r == -EFBIG)
			snprintf(err, err_len, "%s: larger than %d bytes; not a configuration file?",
				 path, CONF_MAX_SIZE);
		else
			snprintf(err, err_len, "%s: %s", path, strerror(-r));
		return r;
	}

	/* Work on a copy so that a rejected file leaves cfg as it was: a
	 * reload with a broken file keeps the running configuration. */
	tmp = *cfg;
	tmp.devices = NULL;
	tmp.nr_devices = 0;
	if (cfg->nr_devices) {
		tmp.devices = malloc(cfg->nr_devices * sizeof(*tmp.devices));
		if (!tmp.devices) {
			free(f.text);
			return -ENOMEM;
		}
		memcpy(tmp.devices, cfg->devices, cfg->nr_devices * sizeof(*tmp.devices));
		tmp.nr_devices = cfg->nr_devices;
	}
	r = parse_text(&f, &tmp);
	if (r < 0)
		goto out;
	zd_config_free(cfg);
	*cfg = tmp;
	tmp.devices = NULL;
out:
	zd_config_free(&tmp);
	free(f.text);
	return r;
}
