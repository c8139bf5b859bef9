/* zonectl: the command line client of zonedd. It uses only the public
 * libzoned-client API, and prints either aligned tables with readable sizes
 * or, with --json, the daemon's results as JSON built from the API's structs. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zoned/client.h>

#include "client/zonectl-bench.h"
#include "client/zonectl-device.h"
#include "client/zonectl-progress.h"

#define EXIT_USAGE 2

/* --output: json (also --json), csv (the tabular commands) or table. */
static bool opt_json;
static bool opt_csv;
static const char *opt_socket;

/* --- Errors ------------------------------------------------------------ */

static void json_string_to(FILE *f, const char *s);

/* Every error leaves through here: one line "zonectl: TEXT" on stderr, or
 * with --json one JSON object {"error": {...}} on stderr, so a script
 * reading JSON never has to parse prose. err is a negative errno, or 0 for
 * a usage error. */
void zonectl_error(int err, const char *text)
{
	zprogress_interrupt();
	if (!opt_json) {
		fprintf(stderr, "zonectl: %s\n", text);
		return;
	}
	fputs("{\"error\": {\"message\": ", stderr);
	json_string_to(stderr, text);
	if (err) {
		fprintf(stderr, ", \"errno\": %d, \"reason\": ", -err);
		json_string_to(stderr, zc_strerror(err));
	}
	fputs("}}\n", stderr);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	zonectl_error(0, text);
	if (!opt_json)
		fputs("Try 'zonectl --help' for more information.\n", stderr);
	exit(EXIT_USAGE);
}

/* Reports a failed call: the daemon's message when it sent one. Returns the
 * exit status. */
static int fail(zc_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(zc_client *c, int err, const char *fmt, ...)
{
	const char *msg = c ? zc_last_error(c) : "";
	char text[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(text))
		snprintf(text + n, sizeof(text) - (size_t)n, ": %s", *msg ? msg : zc_strerror(err));
	zonectl_error(err, text);
	return EXIT_FAILURE;
}

/* A failure with its whole text given (no errno, no daemon message). */
static int fail_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail_text(const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	zonectl_error(0, text);
	return EXIT_FAILURE;
}

/* A failure of a local operation (no daemon message applies). */
#define fail_local(err, ...) fail(NULL, err, __VA_ARGS__)

/* --- Parsing ----------------------------------------------------------- */

/* A byte count or index: decimal (or 0x hex) with an optional binary
 * suffix K, M, G, T (KiB, MiB... spelled either way). */
static bool parse_u64(const char *s, bool suffixes, uint64_t *out)
{
	unsigned long long v;
	char *end;
	unsigned shift = 0;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return false;
	if (*end && suffixes) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return false;
		}
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end)
		return false;
	if (shift && v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static uint32_t arg_u32(const char *opt, const char *s)
{
	uint64_t v;

	if (!parse_u64(s, false, &v) || v > UINT32_MAX)
		usage_error("invalid %s '%s'", opt, s);
	return (uint32_t)v;
}

static uint64_t arg_bytes(const char *opt, const char *s)
{
	uint64_t v;

	if (!parse_u64(s, true, &v))
		usage_error("invalid %s '%s'", opt, s);
	return v;
}

/* A comma separated list of names into a bit mask. */
static uint32_t arg_names(const char *opt, const char *s, int (*from_name)(const char *))
{
	char *copy = strdup(s), *tok, *save = NULL;
	uint32_t mask = 0;

	if (!copy)
		usage_error("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int v = from_name(tok);

		if (v < 0)
			usage_error("unknown %s '%s'", opt, tok);
		mask |= 1u << v;
	}
	free(copy);
	if (!mask)
		usage_error("empty %s list", opt);
	return mask;
}

/* --- Human output ------------------------------------------------------ */

const char *zonectl_size_str(uint64_t v, char *buf, size_t cap)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	while (u + 1 < sizeof(units) / sizeof(units[0]) && v >= (1ull << (10 * (u + 1))))
		u++;
	if (u == 0 || (v & ((1ull << (10 * u)) - 1)) == 0)
		snprintf(buf, cap, "%" PRIu64 " %s", v >> (10 * u), units[u]);
	else
		snprintf(buf, cap, "%.1f %s", (double)v / (double)(1ull << (10 * u)), units[u]);
	return buf;
}
#define SIZE(v) zonectl_size_str((v), (char[32]){ 0 }, 32)

/* An aligned table: cells are collected, widths computed, then printed;
 * with --output csv, RFC 4180 CSV under csv_header (the JSON keys), the
 * cells then being exact numbers (see SZ). */
struct table {
	unsigned ncols;
	const char *const *header;
	const char *const *csv_header;
	const bool *right; /* right-aligned columns (numbers) */
	char **cells;
	size_t nrows, cap;
};

static void table_add(struct table *t, ...)
{
	va_list ap;

	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (!t->cells) {
			fail_local(-ENOMEM, "table");
			exit(EXIT_FAILURE);
		}
	}
	va_start(ap, t);
	for (unsigned i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);

		t->cells[t->nrows * t->ncols + i] = strdup(s ? s : "");
	}
	va_end(ap);
	t->nrows++;
}

/* RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled. */
static void csv_field(const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	fputs(last ? "\r\n" : ",", stdout);
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

static void table_print(struct table *t)
{
	size_t w[16] = { 0 };

	if (opt_csv) {
		for (unsigned i = 0; i < t->ncols; i++)
			csv_field(t->csv_header[i], i + 1 == t->ncols);
		for (size_t r = 0; r < t->nrows; r++)
			for (unsigned i = 0; i < t->ncols; i++)
				csv_field(t->cells[r * t->ncols + i], i + 1 == t->ncols);
		table_free(t);
		return;
	}

	for (unsigned i = 0; i < t->ncols; i++)
		w[i] = strlen(t->header[i]);
	for (size_t r = 0; r < t->nrows; r++)
		for (unsigned i = 0; i < t->ncols; i++) {
			size_t l = strlen(t->cells[r * t->ncols + i]);

			if (l > w[i])
				w[i] = l;
		}
	for (size_t r = 0; r <= t->nrows; r++) {
		for (unsigned i = 0; i < t->ncols; i++) {
			const char *s = r ? t->cells[(r - 1) * t->ncols + i] : t->header[i];
			bool last = i + 1 == t->ncols;

			if (t->right[i])
				printf("%*s%s", (int)w[i], s, last ? "" : "  ");
			else if (last)
				printf("%s", s);
			else
				printf("%-*s  ", (int)w[i], s);
		}
		putchar('\n');
	}
	table_free(t);
}

static const char *u64s(uint64_t v, char *buf, size_t cap)
{
	snprintf(buf, cap, "%" PRIu64, v);
	return buf;
}
#define NUM(v) u64s((v), (char[24]){ 0 }, 24)
/* A size in a table cell: readable units, exact bytes in CSV. */
#define SZ(v) (opt_csv ? NUM(v) : SIZE(v))

/* --- JSON output ------------------------------------------------------- */

/* A small streaming writer: enough structure to place commas and indent. */
static struct {
	int depth;
	bool first[32];
} jw;

static void json_string_to(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f); /* UTF-8 passes through */
		}
	}
	fputc('"', f);
}

static void json_string(const char *s)
{
	json_string_to(stdout, s);
}

static void jw_key(const char *key)
{
	if (jw.depth > 0) {
		if (!jw.first[jw.depth])
			putchar(',');
		jw.first[jw.depth] = false;
		printf("\n%*s", jw.depth * 2, "");
	}
	if (key) {
		json_string(key);
		fputs(": ", stdout);
	}
}

static void jw_open(const char *key, char bracket)
{
	jw_key(key);
	putchar(bracket);
	jw.depth++;
	jw.first[jw.depth] = true;
}

static void jw_close(char bracket)
{
	bool empty = jw.first[jw.depth];

	jw.depth--;
	if (!empty)
		printf("\n%*s", jw.depth * 2, "");
	putchar(bracket);
	if (jw.depth == 0)
		putchar('\n');
}

#define jw_obj(key) jw_open((key), '{')
#define jw_obj_end() jw_close('}')
#define jw_arr(key) jw_open((key), '[')
#define jw_arr_end() jw_close(']')

static void jw_str(const char *key, const char *v)
{
	jw_key(key);
	json_string(v);
}

static void jw_u64(const char *key, uint64_t v)
{
	jw_key(key);
	printf("%" PRIu64, v);
}

static void jw_i64(const char *key, int64_t v)
{
	jw_key(key);
	printf("%" PRId64, v);
}

static void jw_bool(const char *key, bool v)
{
	jw_key(key);
	fputs(v ? "true" : "false", stdout);
}

static void jw_zone(const char *key, const struct zc_zone *z)
{
	jw_obj(key);
	jw_u64("index", z->index);
	jw_u64("start", z->start);
	jw_u64("len", z->len);
	jw_u64("capacity", z->capacity);
	jw_u64("wp", z->wp);
	jw_str("type", zc_type_name(z->type));
	jw_str("cond", zc_cond_name(z->cond));
	jw_obj_end();
}

/* --- Connection -------------------------------------------------------- */

static zc_client *connect_or_die(void)
{
	zc_client *c;
	int r = zc_connect(opt_socket, &c);

	if (r < 0) {
		const char *path = opt_socket ? opt_socket : getenv("ZONED_SOCKET");

		char text[1024];

		snprintf(text, sizeof(text), "cannot connect to %s: %s (" ZONECTL_START_HINT ")",
			 path && *path ? path : "/run/zoned/zonedd.sock", zc_last_error(NULL));
		zonectl_error(r, text);
		exit(EXIT_FAILURE);
	}
	return c;
}

/* Every command's synopsis and summary: the global help, each command's
 * --help, and (checked by tests/e2e-zonectl-help.sh) the man page and the
 * bash completion list the same options. */
static const struct cmd_help {
	const char *names; /* "|"-separated when several commands share it */
	const char *synopsis;
	const char *summary;
} helps[] = {
	{ "devices", "", "list the devices" },
	{ "info", "DEVICE [--sysfs]",
	  "show a device; --sysfs: a block device's\nproperties from sysfs, without the daemon" },
	{ "validate", "DEVICE...",
	  "check block devices for zonedd without the\ndaemon: one line per check, exit status 1\n"
	  "when one fails" },
	{ "report", "DEVICE [--cond C[,C]] [--type T[,T]] [--from N] [--scan N] [--count N] [--bytes]",
	  "list zones: --from and --scan give the range\nscanned, --count how many to print,\n"
	  "--bytes exact sizes" },
	{ "open|close|finish|reset", "DEVICE ZONE [--count N] [--force] | DEVICE --all [--force]",
	  "zone operations (admin); --all: every\nsequential zone" },
	{ "lease", "DEVICE [--zone N] [--count C] [--wait MS] [--hold SECONDS] [--label TEXT]",
	  "take a lease and hold it until the time is\nup or SIGINT/SIGTERM, then release it" },
	{ "write", "DEVICE [--zone N] [--input FILE|-] [--label TEXT] [--split]",
	  "append a file to a leased zone (padded to\na block) and tell where it landed; the size\n"
	  "is checked first, --split spans several zones" },
	{ "read", "DEVICE ZONE [--offset B] [--length B] [--hexdump]",
	  "read a zone (default: what was written, never\npast its capacity)" },
	{ "leases", "[--all]", "list leases" },
	{ "hello", "", "show the daemon's greeting" },
	{ "stats", "", "show the daemon's counters" },
	{ "watch", "[DEVICE] [--count N]",
	  "print events as they happen, one line each\n(JSON lines with --json) until SIGINT/SIGTERM,\n"
	  "--count events, or the daemon goes away" },
	{ "status", "", "the daemon at a glance: uptime, devices,\nlimits, leases by client, waits, counters" },
	{ "map", "DEVICE [--watch]",
	  "the device as a grid of zones: condition,\nfill, leases; --watch redraws on events" },
	{ "bench", "DEVICE [--writers N] [--zones Z] [--block B] [--size S] [--rounds R] [--buffered]",
	  "lease-and-append throughput against plain\npwrite in the same run" },
};

static const struct cmd_help *help_of(const char *cmd)
{
	size_t len = strlen(cmd);

	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		const char *p = helps[i].names;

		for (;;) {
			const char *bar = strchr(p, '|');
			size_t l = bar ? (size_t)(bar - p) : strlen(p);

			if (l == len && strncmp(p, cmd, len) == 0)
				return &helps[i];
			if (!bar)
				break;
			p = bar + 1;
		}
	}
	return NULL;
}

/* Prints text with each line after the first indented by indent. */
static void print_indented(FILE *f, const char *text, int indent)
{
	for (const char *p = text; *p; p++) {
		fputc(*p, f);
		if (*p == '\n')
			fprintf(f, "%*s", indent, "");
	}
	fputc('\n', f);
}

static void cmd_usage(const char *cmd)
{
	const struct cmd_help *h = help_of(cmd);

	printf("Usage: zonectl [--socket PATH] [--json] %s%s%s\n\n  ", cmd, *h->synopsis ? " " : "",
	       h->synopsis);
	print_indented(stdout, h->summary, 2);
	fputs("\nOptions of every command: --socket PATH, --json, --output json|csv|table,\n"
	      "--help (-h).\n", stdout);
}

/* Per-command option parsing: getopt_long over the command's arguments,
 * also accepting the global --json, --socket and --help after the command. */
enum { OPT_JSON = 0x100, OPT_SOCKET, OPT_OUTPUT };
#define COMMON_OPTS { "json", no_argument, NULL, OPT_JSON }, \
	{ "socket", required_argument, NULL, OPT_SOCKET }, \
	{ "output", required_argument, NULL, OPT_OUTPUT }, { "help", no_argument, NULL, 'h' }

static const char *cmd_name = "";
static const char *cur_cmd; /* the command whose options are parsed, NULL before */
static void usage(FILE *f);

/* The commands whose output is one table (or rows of them), so CSV. */
static bool csv_command(const char *cmd)
{
	static const char *const tabular[] = { "devices", "report", "open", "close", "finish",
					       "reset", "leases", "stats", NULL };

	for (const char *const *t = tabular; *t; t++)
		if (strcmp(*t, cmd) == 0)
			return true;
	return false;
}

static int next_opt(int argc, char **argv, const struct option *opts)
{
	for (;;) {
		int o = getopt_long(argc, argv, "+:h", opts, NULL);

		if (o == 'h') {
			if (cur_cmd)
				cmd_usage(cur_cmd);
			else
				usage(stdout);
			exit(0);
		} else if (o == OPT_JSON) {
			opt_json = true;
			opt_csv = false;
		} else if (o == OPT_SOCKET) {
			opt_socket = optarg;
		} else if (o == OPT_OUTPUT) {
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "csv") != 0 &&
			    strcmp(optarg, "table") != 0)
				usage_error("%s--output takes json, csv or table, not '%s'", cmd_name,
					    optarg);
			opt_json = strcmp(optarg, "json") == 0;
			opt_csv = strcmp(optarg, "csv") == 0;
		} else if (o == -1 && opt_csv && cur_cmd && !csv_command(cur_cmd)) {
			opt_csv = false; /* the error itself is not CSV */
			usage_error("%s--output csv is for the tabular commands (devices, report, "
				    "zone operations, leases, stats); use json", cmd_name);
		} else if (o == '?') {
			usage_error("%sunknown option '%s'", cmd_name, argv[optind - 1]);
		} else if (o == ':') {
			usage_error("%soption '%s' needs an argument", cmd_name, argv[optind - 1]);
		} else {
			return o;
		}
	}
}

/* Positional arguments left after the options: exactly n, or usage error. */
static void want_args(int argc, char **argv, int n, const char *what)
{
	if (argc - optind != n)
		usage_error("%s: expected %s", argv[0], what);
}

/* getopt with "+" stops at the first operand; commands take options after
 * their operands too, so move operands to the end first. */
static void options_first(int argc, char **argv, const struct option *opts)
{
	char **ops = calloc((size_t)argc, sizeof(*ops));
	int nops = 0, w = 1;
	bool dashdash = false;

	if (!ops)
		usage_error("out of memory");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			dashdash = true;
			for (i++; i < argc; i++)
				ops[nops++] = argv[i];
			break;
		}
		if (strcmp(a, "-h") == 0) {
			argv[w++] = argv[i];
		} else if (a[0] == '-' && a[1] == '-' && a[2]) {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			bool takes = false;

			for (const struct option *o = opts; o->name; o++)
				if (strlen(o->name) == len && strncmp(o->name, a + 2, len) == 0)
					takes = o->has_arg == required_argument;
			if (takes && !eq && i + 1 >= argc)
				usage_error("%soption '%s' needs an argument", cmd_name, a);
			argv[w++] = argv[i];
			if (takes && !eq)
				argv[w++] = argv[++i];
		} else {
			ops[nops++] = argv[i];
		}
	}
	/* Operands that look like options need the "--" back; it only ever
	 * takes the slot the original one had. */
	if (dashdash)
		argv[w++] = "--";
	for (int i = 0; i < nops; i++)
		argv[w++] = ops[i];
	free(ops);
}

/* --- Commands ---------------------------------------------------------- */

static int cmd_hello(int argc, char **argv)
{
	static const struct option opts[] = { COMMON_OPTS, { 0 } };
	struct zc_hello h;
	zc_client *c;
	int r;

	options_first(argc, argv, opts);
	next_opt(argc, argv, opts);
	want_args(argc, argv, 0, "no arguments");
	c = connect_or_die();
	r = zc_hello(c, &h);
	if (r < 0) {
		r = fail(c, r, "hello");
		goto out;
	}
	if (opt_json) {
		jw_obj(NULL);
		jw_u64("protocol", h.protocol);
		jw_str("version", h.version);
		jw_i64("pid", h.pid);
		jw_u64("uid", h.uid);
		jw_bool("admin", h.admin);
		jw_bool("client", h.client);
		jw_obj_end();
	} else {
		printf("protocol: %" PRIu32 "\nversion:  %s\npid:      %" PRId32 "\nuid:      %" PRIu32
		       "\nadmin:    %s\nclient:   %s\n",
		       h.protocol, h.version, h.pid, h.uid, h.admin ? "yes" : "no",
		       h.client ? "yes" : "no");
	}
	r = 0;
out:
	zc_close(c);
	return r;
}

/* Lists the devices into a malloc'd array; returns the count or an error. */
static int list_devices(zc_client *c, struct zc_device **out)
{
	struct zc_device *devs = NULL;
	size_t max = 8;
	int r;

	for (;;) {
		struct zc_device *n = realloc(devs, max * sizeof(*devs));

		if (!n) {
			free(devs);
			return -ENOMEM;
		}
		devs = n;
		r = zc_device_list(c, devs, max);
		if (r < 0 || (size_t)r <= max)
			break;
		max = (size_t)r; /* devices appeared meanwhile: ask again */
	}
	if (r < 0)
		free(devs);
	else
		*out = devs;
	return r;
}

static void json_device_common(const struct zc_device *d)
{
	jw_str("id", d->id);
	jw_str("path", d->path);
	jw_str("backend", d->backend);
	jw_str("model", d->model);
	jw_u64("nr_zones", d->nr_zones);
	jw_u64("zone_size", d->zone_size);
	jw_u64("capacity", d->capacity);
	jw_u64("free_zones", d->free_zones);
	jw_u64("leased_zones", d->leased_zones);
}

static int cmd_devices(int argc, char **argv)
{
	static const struct option opts[] = { COMMON_OPTS, { 0 } };
	static const char *const hdr[] = { "ID", "BACKEND", "MODEL", "ZONES", "ZONE SIZE",
					   "CAPACITY", "FREE", "LEASED", "PATH" };
	static const bool right[] = { 0, 0, 0, 1, 1, 1, 1, 1, 0 };
	static const char *const csv[] = { "id", "backend", "model", "nr_zones", "zone_size",
					   "capacity", "free_zones", "leased_zones", "path" };
	struct table t = { .ncols = 9, .header = hdr, .csv_header = csv, .right = right };
	struct zc_device *devs;
	zc_client *c;
	int r, n;

	options_first(argc, argv, opts);
	next_opt(argc, argv, opts);
	want_args(argc, argv, 0, "no arguments");
	c = connect_or_die();
	n = list_devices(c, &devs);
	if (n < 0) {
		r = fail(c, n, "devices");
		goto out;
	}
	if (opt_json) {
		jw_obj(NULL);
		jw_arr("devices");
		for (int i = 0; i < n; i++) {
			jw_obj(NULL);
			json_device_common(&devs[i]);
			jw_obj_end();
		}
		jw_arr_end();
		jw_obj_end();
	} else {
		for (int i = 0; i < n; i++)
			table_add(&t, devs[i].id, devs[i].backend, devs[i].model, NUM(devs[i].nr_zones),
				  SZ(devs[i].zone_size), SZ(devs[i].capacity), NUM(devs[i].free_zones),
				  NUM(devs[i].leased_zones), devs[i].path);
		table_print(&t);
	}
	free(devs);
	r = 0;
out:
	zc_close(c);
	return r;
}

static const char *limit(uint32_t v, char *buf, size_t cap)
{
	if (!v)
		return "no limit";
	snprintf(buf, cap, "%" PRIu32, v);
	return buf;
}

static int cmd_info(int argc, char **argv)
{
	enum { O_SYSFS = 1 };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "sysfs", no_argument, NULL, O_SYSFS },
		{ 0 },
	};
	struct zc_device d;
	zc_client *c;
	char b1[24], b2[24];
	bool sysfs = false;
	int r;

	options_first(argc, argv, opts);
	while (next_opt(argc, argv, opts) == O_SYSFS)
		sysfs = true;
	want_args(argc, argv, 1, "DEVICE");
	if (sysfs)
		return zonectl_info_sysfs(argv[optind], opt_json);
	c = connect_or_die();
	r = zc_device_info(c, argv[optind], &d);
	if (r < 0) {
		r = fail(c, r, "info %s", argv[optind]);
		goto out;
	}
	if (opt_json) {
		jw_obj(NULL);
		json_device_common(&d);
		jw_str("vendor", d.vendor);
		jw_str("product", d.product);
		jw_u64("logical_block_size", d.logical_block_size);
		jw_u64("physical_block_size", d.physical_block_size);
		jw_u64("max_open", d.max_open);
		jw_u64("max_active", d.max_active);
		jw_str("scheduler", d.scheduler);
		jw_u64("nr_conventional", d.nr_conventional);
		jw_u64("zone_capacity", d.zone_capacity);
		jw_obj("zones_by_cond");
		for (int i = 0; i < ZC_COND_COUNT; i++)
			jw_u64(zc_cond_name((enum zc_cond)i), d.cond_count[i]);
		jw_obj_end();
		jw_obj_end();
	} else {
		printf("id:                  %s\n", d.id);
		printf("path:                %s\n", d.path);
		printf("backend:             %s\n", d.backend);
		printf("model:               %s\n", d.model);
		printf("vendor:              %s\n", d.vendor);
		printf("product:             %s\n", d.product);
		printf("capacity:            %s (%" PRIu64 " bytes)\n", SIZE(d.capacity), d.capacity);
		printf("zones:               %" PRIu32 " (%" PRIu32 " conventional)\n", d.nr_zones,
		       d.nr_conventional);
		printf("zone size:           %s\n", SIZE(d.zone_size));
		printf("zone capacity:       %s\n", SIZE(d.zone_capacity));
		printf("logical block size:  %" PRIu32 "\n", d.logical_block_size);
		printf("physical block size: %" PRIu32 "\n", d.physical_block_size);
		printf("max open:            %s\n", limit(d.max_open, b1, sizeof(b1)));
		printf("max active:          %s\n", limit(d.max_active, b2, sizeof(b2)));
		printf("scheduler:           %s\n", d.scheduler);
		printf("free zones:          %" PRIu32 "\n", d.free_zones);
		printf("leased zones:        %" PRIu32 "\n", d.leased_zones);
		printf("zones by condition:\n");
		for (int i = 0; i < ZC_COND_COUNT; i++)
			printf("  %-18s %" PRIu32 "\n", zc_cond_name((enum zc_cond)i), d.cond_count[i]);
	}
	r = 0;
out:
	zc_close(c);
	return r;
}

/* Needs no daemon: the checks zonedd's kernel backend makes, each shown. */
static int cmd_validate(int argc, char **argv)
{
	static const struct option opts[] = { COMMON_OPTS, { 0 } };

	options_first(argc, argv, opts);
	next_opt(argc, argv, opts);
	if (optind >= argc)
		usage_error("%s: expected DEVICE...", argv[0]);
	return zonectl_validate(argv + optind, argc - optind, opt_json);
}

static const char *const zone_hdr[] = { "INDEX", "TYPE", "COND", "START", "LEN", "CAPACITY", "WRITTEN" };
static const char *const zone_csv[] = { "index", "type", "cond", "start", "len", "capacity",
					"written" };
static const bool zone_right[] = { 1, 0, 0, 1, 1, 1, 1 };

/* exact: sizes as byte counts, usable as addresses (rounded units are
 * not). */
static void zone_row(struct table *t, const struct zc_zone *z, bool exact)
{
	/* The write pointer, shown as what was written into the zone (a
	 * full zone's wp may point past its capacity); meaningless for
	 * conventional zones. */
	uint64_t w = z->wp - z->start < z->capacity ? z->wp - z->start : z->capacity;
	const char *written;

	exact = exact || opt_csv;
	written = z->type == ZC_TYPE_CONV ? (opt_csv ? "" : "-") : exact ? NUM(w) : SIZE(w);

	if (exact)
		table_add(t, NUM(z->index), zc_type_name(z->type), zc_cond_name(z->cond),
			  NUM(z->start), NUM(z->len), NUM(z->capacity), written);
	else
		table_add(t, NUM(z->index), zc_type_name(z->type), zc_cond_name(z->cond),
			  SIZE(z->start), SIZE(z->len), SIZE(z->capacity), written);
}

static int cmd_report(int argc, char **argv)
{
	enum { O_COND = 1, O_TYPE, O_FROM, O_COUNT, O_SCAN, O_BYTES };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "cond", required_argument, NULL, O_COND },
		{ "type", required_argument, NULL, O_TYPE },
		{ "from", required_argument, NULL, O_FROM },
		{ "count", required_argument, NULL, O_COUNT },
		{ "scan", required_argument, NULL, O_SCAN },
		{ "bytes", no_argument, NULL, O_BYTES },
		{ 0 },
	};
	uint32_t want = 0; /* zones to print, 0 = all that match */
	bool exact = false;
	struct table t = { .ncols = 7, .header = zone_hdr, .csv_header = zone_csv,
			   .right = zone_right };
	struct zc_report_opts ro = { 0 };
	struct zc_zone *zones = NULL;
	struct zprogress pg;
	struct zc_device d;
	char what[96];
	size_t n = 0, cap = 0;
	zc_zone_iter *it;
	zc_client *c;
	int o, r;

	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1) {
		switch (o) {
		case O_COND: ro.cond_mask |= arg_names("--cond", optarg, zc_cond_from_name); break;
		case O_TYPE: ro.type_mask |= arg_names("--type", optarg, zc_type_from_name); break;
		case O_FROM: ro.from = arg_u32("--from", optarg); break;
		case O_COUNT:
			want = arg_u32("--count", optarg);
			if (!want)
				usage_error("report: --count must be at least 1");
			break;
		case O_SCAN:
			ro.count = arg_u32("--scan", optarg);
			if (!ro.count)
				usage_error("report: --scan must be at least 1");
			break;
		case O_BYTES: exact = true; break;
		}
	}
	want_args(argc, argv, 1, "DEVICE");
	c = connect_or_die();
	r = zc_zone_iter_new(c, argv[optind], &ro, &it);
	if (r < 0) {
		r = fail(c, r, "report %s", argv[optind]);
		goto out;
	}
	/* On a terminal, a bar of the zones scanned (all are listed when
	 * nothing filters them, so their count is known). */
	snprintf(what, sizeof(what), "report %s: zones", argv[optind]);
	zprogress_start(&pg, what, 0, false);
	if (pg.on && !ro.cond_mask && !ro.type_mask && zc_device_info(c, argv[optind], &d) == 0 &&
	    ro.from < d.nr_zones) {
		pg.total = d.nr_zones - ro.from;
		if (ro.count && ro.count < pg.total)
			pg.total = ro.count;
		if (want && want < pg.total)
			pg.total = want;
	}
	/* Collect everything first: a report that fails half way prints
	 * nothing but the error. The iterator is lazy: stopping at --count
	 * fetches no further page. */
	while (!want || n < want) {
		if (n == cap) {
			struct zc_zone *nz = realloc(zones, (cap = cap ? cap * 2 : 256) * sizeof(*zones));

			if (!nz) {
				r = -ENOMEM;
				break;
			}
			zones = nz;
		}
		r = zc_zone_iter_next(it, &zones[n]);
		if (r <= 0)
			break;
		n++;
		zprogress_update(&pg, n);
	}
	zprogress_end(&pg);
	if (r < 0)
		r = fail(c, r, "report %s", argv[optind]);
	else
		r = 0; /* 1 when --count stopped the scan */
	if (r) {
		/* reported */
	} else if (opt_json) {
		jw_obj(NULL);
		jw_arr("zones");
		for (size_t i = 0; i < n; i++)
			jw_zone(NULL, &zones[i]);
		jw_arr_end();
		jw_obj_end();
	} else {
		for (size_t i = 0; i < n; i++)
			zone_row(&t, &zones[i], exact);
		table_print(&t);
	}
	free(zones);
	zc_zone_iter_free(it);
out:
	zc_close(c);
	return r;
}

/* --all: every sequential zone of the device, in runs of consecutive ones
 * (conventional zones take no zone operation), a batch per call, with a
 * progress bar on a terminal. Returns the number of zones done into
 * *zones (malloc'd) or an exit status through *status. */
#define ALL_BATCH 64u
static int zone_op_all(zc_client *c, const char *dev, enum zc_zone_op op, const char *name,
		       bool force, struct zc_zone **out, int *status)
{
	struct zc_report_opts ro = { .type_mask = 1u << ZC_TYPE_SWR | 1u << ZC_TYPE_SWP };
	struct zc_zone *seq = NULL, *done = NULL, z;
	size_t nseq = 0, cap = 0, ndone = 0;
	struct zprogress pg;
	zc_zone_iter *it = NULL;
	char what[96];
	int r;

	r = zc_zone_iter_new(c, dev, &ro, &it);
	while (r >= 0 && (r = zc_zone_iter_next(it, &z)) > 0) {
		if (nseq == cap) {
			struct zc_zone *n = realloc(seq, (cap = cap ? cap * 2 : 256) * sizeof(*seq));

			if (!n) {
				r = -ENOMEM;
				break;
			}
			seq = n;
		}
		seq[nseq++] = z;
	}
	zc_zone_iter_free(it);
	if (r < 0) {
		free(seq);
		*status = fail(c, r, "%s %s", name, dev);
		return -1;
	}
	done = calloc(nseq ? nseq : 1, sizeof(*done));
	if (!done) {
		free(seq);
		*status = fail_local(-ENOMEM, "%s", name);
		return -1;
	}
	snprintf(what, sizeof(what), "%s %s: zones", name, dev);
	zprogress_start(&pg, what, nseq, false);
	for (size_t i = 0; i < nseq;) {
		uint32_t first = seq[i].index, count = 1;

		while (i + count < nseq && count < ALL_BATCH && seq[i + count].index == first + count)
			count++;
		r = zc_zone_op(c, dev, (enum zc_zone_op)op, first, count, force, done + ndone, count);
		if (r < 0) {
			zprogress_end(&pg);
			*status = fail(c, r, "%s %s zones %" PRIu32 "-%" PRIu32 " (%zu of %zu done)",
				       name, dev, first, first + count - 1, ndone, nseq);
			free(seq);
			free(done);
			return -1;
		}
		ndone += (uint32_t)r < count ? (uint32_t)r : count;
		i += count;
		zprogress_update(&pg, ndone);
	}
	zprogress_end(&pg);
	free(seq);
	*out = done;
	return (int)ndone;
}

static int cmd_zone_op(int argc, char **argv, enum zc_zone_op op)
{
	enum { O_COUNT = 1, O_FORCE, O_ALL };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "count", required_argument, NULL, O_COUNT },
		{ "force", no_argument, NULL, O_FORCE },
		{ "all", no_argument, NULL, O_ALL },
		{ 0 },
	};
	struct table t = { .ncols = 7, .header = zone_hdr, .csv_header = zone_csv,
			   .right = zone_right };
	uint32_t zone = 0, count = 1;
	bool force = false, all = false, counted = false;
	struct zc_zone *zones = NULL;
	zc_client *c;
	int o, r;

	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1) {
		if (o == O_COUNT) {
			count = arg_u32("--count", optarg);
			counted = true;
			if (!count)
				usage_error("%s: --count must be at least 1", argv[0]);
		} else if (o == O_FORCE) {
			force = true;
		} else if (o == O_ALL) {
			all = true;
		}
	}
	if (all) {
		if (counted)
			usage_error("%s: --all and --count exclude each other", argv[0]);
		want_args(argc, argv, 1, "DEVICE (with --all, no ZONE)");
	} else {
		want_args(argc, argv, 2, "DEVICE ZONE");
		zone = arg_u32("zone", argv[optind + 1]);
		zones = calloc(count, sizeof(*zones));
		if (!zones)
			return fail_local(-ENOMEM, "%s", argv[0]);
	}
	c = connect_or_die();
	if (all) {
		r = zone_op_all(c, argv[optind], op, argv[0], force, &zones, &o);
		if (r < 0) {
			r = o;
			goto out;
		}
	} else {
		r = zc_zone_op(c, argv[optind], op, zone, count, force, zones, count);
		if (r < 0) {
			r = fail(c, r, "%s %s zone %" PRIu32, argv[0], argv[optind], zone);
			goto out;
		}
		if ((uint32_t)r > count)
			r = (int)count;
	}
	if (opt_json) {
		jw_obj(NULL);
		jw_arr("zones");
		for (int i = 0; i < r; i++)
			jw_zone(NULL, &zones[i]);
		jw_arr_end();
		jw_obj_end();
	} else {
		for (int i = 0; i < r; i++)
			zone_row(&t, &zones[i], false);
		table_print(&t);
	}
	r = 0;
out:
	free(zones);
	zc_close(c);
	return r;
}

static void json_lease(const zc_lease *l)
{
	jw_obj("lease");
	jw_u64("id", zc_lease_id(l));
	jw_u64("token", zc_lease_token(l));
	jw_str("device", zc_lease_device(l));
	jw_u64("zone", zc_lease_zone(l));
	jw_u64("start", zc_lease_start(l));
	jw_u64("len", zc_lease_len(l));
	jw_u64("capacity", zc_lease_capacity(l));
	jw_u64("wp", zc_lease_wp(l));
	jw_u64("block_size", zc_lease_block_size(l));
	jw_str("label", zc_lease_label(l));
	jw_bool("direct", zc_lease_direct(l));
	jw_u64("count", zc_lease_count(l));
	jw_u64("fd_offset", zc_lease_fd_offset(l));
	jw_obj_end();
}

/* Waits until the deadline (ms, 0 = none) or SIGINT/SIGTERM, which the
 * caller blocked. */
static void hold(uint64_t ms, const sigset_t *sigs)
{
	struct timespec end, now, left;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += (time_t)(ms / 1000);
	end.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	for (;;) {
		int s;

		if (!ms) {
			s = sigwaitinfo(sigs, NULL);
		} else {
			clock_gettime(CLOCK_MONOTONIC, &now);
			left.tv_sec = end.tv_sec - now.tv_sec;
			left.tv_nsec = end.tv_nsec - now.tv_nsec;
			if (left.tv_nsec < 0) {
				left.tv_sec--;
				left.tv_nsec += 1000000000L;
			}
			if (left.tv_sec < 0)
				return;
			s = sigtimedwait(sigs, NULL, &left);
			if (s < 0 && errno == EAGAIN)
				return;
		}
		if (s >= 0)
			return;
	}
}

static int cmd_lease(int argc, char **argv)
{
	enum { O_ZONE = 1, O_WAIT, O_HOLD, O_LABEL, O_BUFFERED, O_COUNT };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "zone", required_argument, NULL, O_ZONE },
		{ "count", required_argument, NULL, O_COUNT },
		{ "wait", required_argument, NULL, O_WAIT },
		{ "hold", required_argument, NULL, O_HOLD },
		{ "label", required_argument, NULL, O_LABEL },
		{ 0 },
	};
	struct zc_lease_opts lo;
	uint64_t hold_ms = 0;
	uint32_t count = 1;
	sigset_t sigs, old;
	zc_lease *l;
	zc_client *c;
	int o, r;

	zc_lease_opts_init(&lo);
	lo.label = "zonectl";
	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1) {
		switch (o) {
		case O_ZONE: lo.zone = arg_u32("--zone", optarg); break;
		case O_COUNT: count = arg_u32("--count", optarg); break;
		case O_WAIT: lo.wait_ms = arg_u32("--wait", optarg); break;
		case O_LABEL: lo.label = optarg; break;
		case O_HOLD: {
			char *end;
			double s;

			errno = 0;
			s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(s > 0) || s > 1e9)
				usage_error("lease: invalid --hold '%s'", optarg);
			hold_ms = (uint64_t)(s * 1000);
			if (!hold_ms)
				hold_ms = 1;
			break;
		}
		}
	}
	want_args(argc, argv, 1, "DEVICE");
	lo.device = argv[optind];
	c = connect_or_die();
	r = zc_lease_acquire_zones(c, &lo, count, &l);
	if (r < 0) {
		r = fail(c, r, "lease %s", lo.device);
		goto out;
	}
	/* From here a signal only ends the hold: block it and wait for it. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, &old);
	if (opt_json) {
		jw_obj(NULL);
		json_lease(l);
		jw_obj_end();
	} else {
		if (zc_lease_count(l) > 1) {
			printf("lease %" PRIu64 " on %s zones %" PRIu32 "-%" PRIu32 ": start %s, "
			       "%" PRIu32 " zones of %s\n", zc_lease_id(l), zc_lease_device(l),
			       zc_lease_zone(l), zc_lease_zone(l) + zc_lease_count(l) - 1,
			       SIZE(zc_lease_start(l)), zc_lease_count(l), SIZE(zc_lease_len(l)));
		} else {
			printf("lease %" PRIu64 " on %s zone %" PRIu32 ": start %s, len %s, "
			       "capacity %s, written %s, block size %" PRIu32 "%s\n",
			       zc_lease_id(l), zc_lease_device(l), zc_lease_zone(l),
			       SIZE(zc_lease_start(l)), SIZE(zc_lease_len(l)),
			       SIZE(zc_lease_capacity(l)), SIZE(zc_lease_wp(l) - zc_lease_start(l)),
			       zc_lease_block_size(l), zc_lease_direct(l) ? ", O_DIRECT" : "");
		}
	}
	fflush(stdout); /* whoever waits for the lease reads it now */
	hold(hold_ms, &sigs);
	sigprocmask(SIG_SETMASK, &old, NULL);
	r = zc_lease_release(l, ZC_RELEASE_KEEP);
	r = r < 0 ? fail(c, r, "release lease") : 0;
out:
	zc_close(c);
	return r;
}

/* Reads up to len bytes, stopping early only at end of input. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* One lease's share of a write. */
struct piece {
	char device[64];
	uint32_t zone;
	uint64_t start, offset, length, padded;
};

/* "N bytes landed: small zone 5 at offset 0 (device offset 5242880, N
 * bytes), ...": where the data of a write that stopped half way is. */
static void print_landed(FILE *f, const struct piece *p, size_t n)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n; i++)
		total += p[i].length;
	fprintf(f, "%" PRIu64 " bytes landed", total);
	for (size_t i = 0; i < n; i++)
		if (p[i].padded)
			fprintf(f, "%s %s zone %" PRIu32 " at offset %" PRIu64 " (device offset %" PRIu64
				   ", %" PRIu64 " bytes)", i ? "," : ":", p[i].device, p[i].zone,
				p[i].offset, p[i].start + p[i].offset, p[i].length);
}

/* A write that failed after some data reached a zone: the error, and
 * where every byte written so far is, on one line. */
static int fail_landed(zc_client *c, int err, const struct piece *p, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int fail_landed(zc_client *c, int err, const struct piece *p, size_t n, const char *fmt, ...)
{
	const char *msg = c ? zc_last_error(c) : "";
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	va_list ap;

	if (!f)
		return fail_local(-ENOMEM, "write");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fprintf(f, ": %s; ", *msg ? msg : zc_strerror(err));
	print_landed(f, p, n);
	fclose(f);
	zonectl_error(err, text);
	free(text);
	return EXIT_FAILURE;
}

/* The input of `zonectl write`: bytes read ahead (to learn the size of a
 * pipe before anything is written) are served first, then the fd. */
struct input {
	int fd;
	unsigned char *ahead;
	size_t ahead_len, ahead_pos;
};

static ssize_t input_read(struct input *in, void *buf, size_t len)
{
	size_t k = in->ahead_len - in->ahead_pos;
	ssize_t n;

	if (k) {
		if (k > len)
			k = len;
		memcpy(buf, in->ahead + in->ahead_pos, k);
		in->ahead_pos += k;
		if (k == len)
			return (ssize_t)k;
	}
	n = read_full(in->fd, (char *)buf + k, len - k);
	return n < 0 ? n : (ssize_t)k + n;
}

/* Reads up to max bytes ahead; returns how many, or a negative errno. */
static ssize_t input_ahead(struct input *in, size_t max)
{
	size_t cap = 0;

	for (;;) {
		size_t want = cap - in->ahead_len;
		ssize_t n;

		if (!want) {
			unsigned char *nb;

			if (cap >= max)
				return (ssize_t)in->ahead_len;
			cap = cap ? (cap > max / 2 ? max : cap * 2) : (max < (1u << 20) ? max : 1u << 20);
			nb = realloc(in->ahead, cap);
			if (!nb)
				return -ENOMEM;
			in->ahead = nb;
			continue;
		}
		n = read_full(in->fd, (char *)in->ahead + in->ahead_len, want);
		if (n < 0)
			return n;
		in->ahead_len += (size_t)n;
		if ((size_t)n < want)
			return (ssize_t)in->ahead_len;
	}
}

static int cmd_write(int argc, char **argv)
{
	enum { O_ZONE = 1, O_INPUT, O_LABEL, O_SPLIT };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "zone", required_argument, NULL, O_ZONE },
		{ "input", required_argument, NULL, O_INPUT },
		{ "label", required_argument, NULL, O_LABEL },
		{ "split", no_argument, NULL, O_SPLIT },
		{ 0 },
	};
	struct zc_lease_opts lo;
	struct zc_device info;
	struct input in = { .fd = STDIN_FILENO };
	struct piece *pieces = NULL, *cur = NULL;
	const char *input = "-";
	uint64_t size = 0, total = 0;
	bool known = false, split = false, regular;
	size_t npieces = 0, bufsz = 0, bs = 0, pending = 0, off = 0;
	zc_lease *l = NULL;
	zc_client *c;
	unsigned char *buf = NULL;
	bool eof = false;
	struct zprogress pg = { 0 };
	char what[96];
	struct stat st;
	int o, r;

	zc_lease_opts_init(&lo);
	lo.label = "zonectl write";
	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1) {
		switch (o) {
		case O_ZONE: lo.zone = arg_u32("--zone", optarg); break;
		case O_INPUT: input = optarg; break;
		case O_LABEL: lo.label = optarg; break;
		case O_SPLIT: split = true; break;
		}
	}
	want_args(argc, argv, 1, "DEVICE");
	lo.device = argv[optind];
	snprintf(what, sizeof(what), "write %s", lo.device);
	if (strcmp(input, "-") != 0) {
		in.fd = open(input, O_RDONLY | O_CLOEXEC);
		if (in.fd < 0)
			return fail_local(-errno, "%s", input);
	}
	c = connect_or_die();
	r = zc_device_info(c, lo.device, &info);
	if (r < 0) {
		r = fail(c, r, "write %s", lo.device);
		goto out;
	}
	/* The size first, so that data that cannot fit is refused before
	 * any of it is written: a regular file says it, a pipe is read ahead
	 * up to one zone's capacity (held in memory). */
	regular = fstat(in.fd, &st) == 0 && S_ISREG(st.st_mode);
	if (regular) {
		off_t at = lseek(in.fd, 0, SEEK_CUR);

		size = at >= 0 && st.st_size > at ? (uint64_t)(st.st_size - at) : 0;
		known = true;
	} else if (!split) {
		ssize_t n = input_ahead(&in, info.zone_capacity < SIZE_MAX ? (size_t)info.zone_capacity + 1
									 : SIZE_MAX);

		if (n < 0) {
			r = fail_local((int)n, "%s", input);
			goto out;
		}
		size = (uint64_t)n;
		known = true;
	}
	if (known && !split && size > info.zone_capacity) {
		r = fail_text("write %s: the input is %s%s a zone's capacity (%s):"
				" nothing written (--split spreads it over several zones)",
			lo.device, regular ? SIZE(size) : "", regular ? ", more than" : "larger than",
			SIZE(info.zone_capacity));
		goto out;
	}
	/* The allocator then picks a zone with room for all of it. */
	if (known && !split && lo.zone < 0 && size)
		lo.min_free = size;
	zprogress_start(&pg, what, known ? size : 0, true);
	pieces = calloc(1, sizeof(*pieces));
	if (!pieces) {
		r = fail_local(-ENOMEM, "write");
		goto out;
	}
	for (;;) {
		uint64_t room;
		size_t k, padded;

		if (!l) {
			r = zc_lease_acquire(c, &lo, &l);
			if (r < 0) {
				r = npieces ? fail_landed(c, r, pieces, npieces, "lease %s", lo.device)
					    : fail(c, r, "lease %s", lo.device);
				goto out;
			}
			if (!buf) {
				bs = zc_lease_block_size(l);
				bufsz = bs >= (1u << 20) ? bs : (1u << 20) / bs * bs;
				if (posix_memalign((void **)&buf, bs < sizeof(void *) ? sizeof(void *) : bs,
						   bufsz)) {
					buf = NULL;
					r = fail_local(-ENOMEM, "write");
					goto out;
				}
			}
			cur = &pieces[npieces++];
			snprintf(cur->device, sizeof(cur->device), "%s", zc_lease_device(l));
			cur->zone = zc_lease_zone(l);
			cur->start = zc_lease_start(l);
			cur->offset = zc_lease_wp(l) - cur->start;
			room = zc_lease_start(l) + zc_lease_capacity(l) - zc_lease_wp(l);
			if (known && !split && size > room) {
				if (room)
					r = fail_text("write %s zone %" PRIu32 ": the input is %s, "
							"the zone has %s free of %s: nothing written (--split "
							"spreads it over several zones)",
						cur->device, cur->zone, SIZE(size), SIZE(room),
						SIZE(zc_lease_capacity(l)));
				else
					r = fail_text("write %s zone %" PRIu32 ": the zone is full "
							"(%s written): nothing written (reset it, or write to "
							"another zone)",
						cur->device, cur->zone, SIZE(zc_lease_capacity(l)));
								goto out;
			}
			/* Later pieces go wherever the allocator finds room. */
			lo.zone = -1;
			lo.prefer = ZC_PREFER_EMPTY;
		}
		if (!pending && !eof) {
			ssize_t n = input_read(&in, buf, bufsz);

			if (n < 0) {
				r = npieces > 1 || cur->length
					    ? fail_landed(NULL, (int)n, pieces, npieces, "%s", input)
					    : fail_local((int)n, "%s", input);
				goto out;
			}
			pending = (size_t)n;
			off = 0;
			eof = (size_t)n < bufsz;
		}
		if (!pending)
			break;
		room = zc_lease_start(l) + zc_lease_capacity(l) - zc_lease_wp(l);
		if (!room) {
			struct piece *np;

			/* Only with --split (or a pipe that grew past what was
			 * read ahead): hand this zone back, take the next. */
			if (!split) {
				r = fail_landed(NULL, -ENOSPC, pieces, npieces, "write %s zone %" PRIu32,
						cur->device, cur->zone);
				goto out;
			}
			r = zc_lease_sync(l);
			if (r == 0)
				r = zc_lease_release(l, ZC_RELEASE_KEEP);
			else
				zc_lease_release(l, ZC_RELEASE_KEEP);
			l = NULL;
			if (r < 0) {
				r = fail_landed(c, r, pieces, npieces, "release lease");
				goto out;
			}
			np = realloc(pieces, (npieces + 1) * sizeof(*pieces));
			if (!np) {
				r = fail_landed(NULL, -ENOMEM, pieces, npieces, "write");
				goto out;
			}
			pieces = np;
			memset(&pieces[npieces], 0, sizeof(*pieces));
			continue;
		}
		/* A whole number of blocks, except the very end, padded with
		 * zeros (room is whole blocks, so the padding fits). */
		k = pending < room ? pending : (size_t)room;
		padded = (k + bs - 1) / bs * bs;
		memset(buf + off + k, 0, padded - k);
		r = zc_lease_append(l, buf + off, padded);
		if (r < 0) {
			uint64_t landed = zc_lease_wp(l) - cur->start - cur->offset - cur->padded;

			cur->length += landed < k ? landed : k;
			cur->padded += landed;
			r = fail_landed(c, r, pieces, npieces, "write %s zone %" PRIu32, cur->device,
					cur->zone);
			goto out;
		}
		cur->length += k;
		cur->padded += padded;
		total += k;
		zprogress_update(&pg, total);
		pending -= k;
		off += k;
	}
	zprogress_end(&pg);
	r = zc_lease_sync(l);
	if (r < 0) {
		r = fail_landed(c, r, pieces, npieces, "sync lease");
		goto out;
	}
	r = zc_lease_release(l, ZC_RELEASE_KEEP);
	l = NULL;
	if (r < 0) {
		r = fail_landed(c, r, pieces, npieces, "release lease");
		goto out;
	}
	/* A last lease that got nothing (the input ended on a zone's end)
	 * is not a piece. */
	if (npieces > 1 && !pieces[npieces - 1].padded)
		npieces--;
	if (opt_json) {
		jw_obj(NULL);
		if (split) {
			jw_u64("length", total);
			jw_arr("pieces");
		}
		for (size_t i = 0; i < npieces; i++) {
			if (split)
				jw_obj(NULL);
			jw_str("device", pieces[i].device);
			jw_u64("zone", pieces[i].zone);
			jw_u64("offset", pieces[i].offset);
			jw_u64("length", pieces[i].length);
			jw_u64("padded_length", pieces[i].padded);
			jw_u64("device_offset", pieces[i].start + pieces[i].offset);
			if (split)
				jw_obj_end();
		}
		if (split)
			jw_arr_end();
		jw_obj_end();
	} else {
		for (size_t i = 0; i < npieces; i++)
			printf("wrote %" PRIu64 " bytes (%" PRIu64 " with padding) to %s zone %" PRIu32
			       " at offset %" PRIu64 " (device offset %" PRIu64 ")\n",
			       pieces[i].length, pieces[i].padded, pieces[i].device, pieces[i].zone,
			       pieces[i].offset, pieces[i].start + pieces[i].offset);
	}
	r = 0;
out:
	zprogress_end(&pg);
	if (l) {
		int rr = zc_lease_release(l, ZC_RELEASE_KEEP);

		if (rr < 0 && r == 0)
			r = fail(c, rr, "release lease");
	}
	free(buf);
	free(pieces);
	free(in.ahead);
	if (in.fd != STDIN_FILENO)
		close(in.fd);
	zc_close(c);
	return r;
}

/* hexdump -C: 16 bytes a line; a line equal to the one before is shown
 * once as "*" however often it repeats; the end offset closes the dump.
 * Lines are assembled across read chunks. */
struct hexdump {
	uint64_t off;            /* offset of the line being filled */
	unsigned char line[16], prev[16];
	size_t n;
	bool have_prev, starred, any;
};

static void hexdump_flush(struct hexdump *h)
{
	if (!h->n)
		return;
	if (h->n == 16 && h->have_prev && memcmp(h->line, h->prev, 16) == 0) {
		if (!h->starred)
			puts("*");
		h->starred = true;
	} else {
		printf("%08" PRIx64 " ", h->off);
		for (size_t i = 0; i < 16; i++) {
			if (i == 8)
				putchar(' ');
			if (i < h->n)
				printf(" %02x", h->line[i]);
			else
				fputs("   ", stdout);
		}
		fputs("  |", stdout);
		for (size_t i = 0; i < h->n; i++)
			putchar(h->line[i] >= 0x20 && h->line[i] < 0x7f ? h->line[i] : '.');
		puts("|");
		h->starred = false;
	}
	memcpy(h->prev, h->line, 16);
	h->have_prev = h->n == 16;
	h->off += h->n;
	h->n = 0;
}

static void hexdump_add(struct hexdump *h, const unsigned char *p, size_t len)
{
	h->any = h->any || len;
	while (len) {
		size_t k = 16 - h->n < len ? 16 - h->n : len;

		memcpy(h->line + h->n, p, k);
		h->n += k;
		p += k;
		len -= k;
		if (h->n == 16)
			hexdump_flush(h);
	}
}

static void hexdump_end(struct hexdump *h)
{
	/* Like hexdump, nothing at all for no data. */
	hexdump_flush(h);
	if (h->any)
		printf("%08" PRIx64 "\n", h->off);
}

static int cmd_read(int argc, char **argv)
{
	enum { O_OFFSET = 1, O_LENGTH, O_HEXDUMP };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "offset", required_argument, NULL, O_OFFSET },
		{ "length", required_argument, NULL, O_LENGTH },
		{ "hexdump", no_argument, NULL, O_HEXDUMP },
		{ 0 },
	};
	struct zc_report_opts ro = { .count = 1 };
	uint64_t offset = 0, length = 0, pos, end, cap, written, fd_offset = 0;
	bool have_length = false, hex = false;
	struct hexdump hd = { 0 };
	const char *dev;
	struct zc_device info;
	struct zc_zone z;
	zc_zone_iter *it;
	zc_client *c;
	unsigned char *buf = NULL;
	size_t bufsz = 1u << 20;
	uint32_t lbs;
	int o, r, fd = -1;

	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1) {
		switch (o) {
		case O_OFFSET: offset = arg_bytes("--offset", optarg); break;
		case O_LENGTH: length = arg_bytes("--length", optarg); have_length = true; break;
		case O_HEXDUMP: hex = true; break;
		}
	}
	want_args(argc, argv, 2, "DEVICE ZONE");
	dev = argv[optind];
	ro.from = arg_u32("zone", argv[optind + 1]);
	c = connect_or_die();
	r = zc_device_info(c, dev, &info);
	if (r < 0) {
		r = fail(c, r, "read %s", dev);
		goto out;
	}
	r = zc_zone_iter_new(c, dev, &ro, &it);
	if (r == 0) {
		r = zc_zone_iter_next(it, &z);
		zc_zone_iter_free(it);
	}
	if (r <= 0) {
		r = r ? fail(c, r, "read %s zone %" PRIu32, dev, ro.from)
		      : fail_local(-ERANGE, "read %s zone %" PRIu32, dev, ro.from);
		goto out;
	}
	/* Nothing lies past a zone's capacity (a conventional zone's is its
	 * length): reads stop there. */
	cap = z.type == ZC_TYPE_CONV ? z.len : z.capacity;
	if (offset > cap) {
		r = fail_local(-EINVAL, "read: offset %" PRIu64 " is beyond zone %" PRIu32
			       "'s capacity (%" PRIu64 " bytes)", offset, z.index, cap);
		goto out;
	}
	/* By default: what was written, from offset to the write pointer (a
	 * conventional zone has none: all of it). A full zone's write pointer
	 * may be reported at its end rather than its capacity. */
	written = z.type == ZC_TYPE_CONV ? cap : z.wp - z.start < cap ? z.wp - z.start : cap;
	if (!have_length)
		length = written > offset ? written - offset : 0;
	if (length > cap - offset)
		length = cap - offset;

	fd = zc_zone_open(c, dev, z.index, &fd_offset);
	if (fd < 0) {
		r = fail(c, fd, "open %s", dev);
		goto out;
	}
	/* The fd may be O_DIRECT: read whole aligned blocks into an aligned
	 * buffer, and print the part asked for. */
	lbs = info.logical_block_size && !(info.logical_block_size & (info.logical_block_size - 1))
		      ? info.logical_block_size : 4096;
	if (lbs > bufsz)
		bufsz = lbs;
	if (posix_memalign((void **)&buf, lbs < 4096 ? 4096 : lbs, bufsz)) {
		buf = NULL;
		r = fail_local(-ENOMEM, "read");
		goto out;
	}
	if (opt_json) {
		jw_obj(NULL);
		jw_str("device", info.id);
		jw_u64("zone", z.index);
		jw_u64("offset", offset);
		jw_u64("length", length);
		jw_key("data");
		putchar('"');
	}
	pos = fd_offset + offset;
	end = pos + length;
	hd.off = offset;
	while (pos < end) {
		uint64_t a = pos & ~(uint64_t)(lbs - 1);
		size_t want = end - a > bufsz ? bufsz : (size_t)((end - a + lbs - 1) / lbs * lbs);
		size_t skip = (size_t)(pos - a), use;
		ssize_t n;

		do
			n = pread(fd, buf, want, (off_t)a);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (opt_json)
				putchar('\n');
			r = fail_local(-errno, "read %s zone %" PRIu32, dev, z.index);
			goto out;
		}
		/* The range is within the zone's capacity, which reads as zeros
		 * past the data; a zone's own file (an emulated device) just
		 * ends at its write pointer. */
		if ((size_t)n < want) {
			memset(buf + n, 0, want - (size_t)n);
			n = (ssize_t)want;
		}
		use = (size_t)n - skip;
		if (use > end - pos)
			use = (size_t)(end - pos);
		if (opt_json) {
			for (size_t i = 0; i < use; i++)
				printf("%02x", buf[skip + i]);
		} else if (hex) {
			hexdump_add(&hd, buf + skip, use);
		} else if (fwrite(buf + skip, 1, use, stdout) != use) {
			r = fail_local(-errno, "write to stdout");
			goto out;
		}
		pos += use;
	}
	if (opt_json) {
		putchar('"');
		jw_obj_end();
	} else if (hex) {
		hexdump_end(&hd);
	}
	r = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	zc_close(c);
	return r;
}

static int cmd_leases(int argc, char **argv)
{
	enum { O_ALL = 1 };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "all", no_argument, NULL, O_ALL },
		{ 0 },
	};
	static const char *const hdr[] = { "ID", "DEVICE", "ZONE", "WP", "PID", "UID", "AGE", "LABEL" };
	static const bool right[] = { 1, 0, 1, 1, 1, 1, 1, 0 };
	static const char *const csv[] = { "id", "device", "zone", "wp", "pid", "uid", "age_ms",
					   "label" };
	struct table t = { .ncols = 8, .header = hdr, .csv_header = csv, .right = right };
	struct zc_lease_info *li = NULL;
	bool all = false;
	size_t max = 16;
	zc_client *c;
	int o, r, n;

	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1)
		if (o == O_ALL)
			all = true;
	want_args(argc, argv, 0, "no arguments");
	c = connect_or_die();
	for (;;) {
		struct zc_lease_info *nl = realloc(li, max * sizeof(*li));

		if (!nl) {
			r = fail_local(-ENOMEM, "leases");
			goto out;
		}
		li = nl;
		n = zc_lease_list(c, all, li, max);
		if (n < 0 || (size_t)n <= max)
			break;
		max = (size_t)n;
	}
	if (n < 0) {
		r = fail(c, n, "leases");
		goto out;
	}
	if (opt_json) {
		jw_obj(NULL);
		jw_arr("leases");
		for (int i = 0; i < n; i++) {
			jw_obj(NULL);
			jw_u64("id", li[i].id);
			jw_str("device", li[i].device);
			jw_u64("zone", li[i].zone);
			jw_u64("wp", li[i].wp);
			jw_str("label", li[i].label);
			jw_i64("pid", li[i].pid);
			jw_u64("uid", li[i].uid);
			jw_u64("age_ms", li[i].age_ms);
			jw_obj_end();
		}
		jw_arr_end();
		jw_obj_end();
	} else {
		for (int i = 0; i < n; i++) {
			char age[32];

			if (opt_csv)
				snprintf(age, sizeof(age), "%" PRIu64, li[i].age_ms);
			else
				snprintf(age, sizeof(age), "%" PRIu64 ".%01" PRIu64 "s",
					 li[i].age_ms / 1000, li[i].age_ms % 1000 / 100);
			table_add(&t, NUM(li[i].id), li[i].device, NUM(li[i].zone), NUM(li[i].wp),
				  NUM((uint64_t)(int64_t)li[i].pid), NUM(li[i].uid), age, li[i].label);
		}
		table_print(&t);
	}
	r = 0;
out:
	free(li);
	zc_close(c);
	return r;
}

/* Counts the leading components two dotted names share. */
static int common_depth(const char *a, const char *b)
{
	int d = 0;

	for (;;) {
		const char *da = strchr(a, '.'), *db = strchr(b, '.');
		size_t la, lb;

		if (!da || !db)
			return d;
		la = (size_t)(da - a);
		lb = (size_t)(db - b);
		if (la != lb || strncmp(a, b, la) != 0)
			return d;
		d++;
		a = da + 1;
		b = db + 1;
	}
}

/* The daemon counts errors by JSON-RPC code ("errors.-32004"); people
 * read names. The names follow the codes of proto/PROTOCOL.md; an unknown
 * code keeps its number. */
static void name_error_counter(char *name, size_t cap)
{
	static const struct {
		int code;
		const char *name;
	} names[] = {
		{ -32700, "parse-error" },     { -32600, "invalid-request" },
		{ -32601, "method-not-found" }, { -32602, "invalid-params" },
		{ -32603, "internal-error" },  { -32000, "io-error" },
		{ -32001, "permission-denied" }, { -32002, "no-such-device" },
		{ -32003, "no-such-zone" },    { -32004, "zone-leased" },
		{ -32005, "no-free-zone" },    { -32006, "limit-reached" },
		{ -32007, "stale-lease" },     { -32008, "timed-out" },
		{ -32009, "wrong-zone-state" }, { -32010, "too-large" },
	};
	char *dot = strrchr(name, '.'), *end;
	long code;

	if (!dot || strncmp(name, "errors.", 7) != 0 || dot != name + 6)
		return;
	errno = 0;
	code = strtol(dot + 1, &end, 10);
	if (errno || end == dot + 1 || *end)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].code == code) {
			snprintf(dot + 1, cap - (size_t)(dot + 1 - name), "%s", names[i].name);
			return;
		}
}

/* The counters as JSON members of the open object. The library flattens
 * nested counters to "a.b"; rebuild the nesting from the names (they come
 * depth first). */
static void jw_counters(const struct zc_stat *st, int n)
{
	int depth = 0;

	for (int i = 0; i < n; i++) {
		const char *name = st[i].name, *p;
		int keep = i ? common_depth(st[i - 1].name, name) : 0;

		if (keep > depth)
			keep = depth;
		for (; depth > keep; depth--)
			jw_obj_end();
		p = name;
		for (int k = 0; k < keep; k++)
			p = strchr(p, '.') + 1;
		for (const char *dot; (dot = strchr(p, '.')); p = dot + 1) {
			char key[64];

			snprintf(key, sizeof(key), "%.*s", (int)(dot - p), p);
			jw_obj(key);
			depth++;
		}
		jw_u64(p, st[i].value);
	}
	for (; depth > 0; depth--)
		jw_obj_end();
}

/* The daemon's counters, error counters named; returns the count or an
 * error, *out malloc'd. */
static int get_stats(zc_client *c, struct zc_stat **out)
{
	struct zc_stat *st = NULL;
	size_t max = 64;
	int n;

	for (;;) {
		struct zc_stat *ns = realloc(st, max * sizeof(*st));

		if (!ns) {
			free(st);
			return -ENOMEM;
		}
		st = ns;
		n = zc_daemon_stats(c, st, max);
		if (n < 0 || (size_t)n <= max)
			break;
		max = (size_t)n;
	}
	if (n < 0) {
		free(st);
		return n;
	}
	for (int i = 0; i < n; i++)
		name_error_counter(st[i].name, sizeof(st[i].name));
	*out = st;
	return n;
}

static int cmd_stats(int argc, char **argv)
{
	static const struct option opts[] = { COMMON_OPTS, { 0 } };
	struct zc_stat *st = NULL;
	size_t w = 0;
	zc_client *c;
	int r, n;

	options_first(argc, argv, opts);
	next_opt(argc, argv, opts);
	want_args(argc, argv, 0, "no arguments");
	c = connect_or_die();
	n = get_stats(c, &st);
	if (n < 0) {
		r = fail(c, n, "stats");
		goto out;
	}
	if (opt_json) {
		jw_obj(NULL);
		jw_counters(st, n);
		jw_obj_end();
	} else if (opt_csv) {
		static const char *const csv[] = { "name", "value" };
		struct table t = { .ncols = 2, .header = csv, .csv_header = csv };

		for (int i = 0; i < n; i++)
			table_add(&t, st[i].name, NUM(st[i].value));
		table_print(&t);
	} else {
		for (int i = 0; i < n; i++)
			if (strlen(st[i].name) > w)
				w = strlen(st[i].name);
		for (int i = 0; i < n; i++)
			printf("%-*s  %" PRIu64 "\n", (int)w, st[i].name, st[i].value);
	}
	r = 0;
out:
	free(st);
	zc_close(c);
	return r;
}

/* --- status -------------------------------------------------------------- */

/* The leases this caller may see (all: every client's, admins only);
 * returns the count or an error, *out malloc'd. */
static int get_leases(zc_client *c, bool all, struct zc_lease_info **out)
{
	struct zc_lease_info *li = NULL;
	size_t max = 16;
	int n;

	for (;;) {
		struct zc_lease_info *nl = realloc(li, max * sizeof(*li));

		if (!nl) {
			free(li);
			return -ENOMEM;
		}
		li = nl;
		n = zc_lease_list(c, all, li, max);
		if (n < 0 || (size_t)n <= max)
			break;
		max = (size_t)n;
	}
	if (n < 0)
		free(li);
	else
		*out = li;
	return n;
}

static uint64_t stat_value(const struct zc_stat *st, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(st[i].name, name) == 0)
			return st[i].value;
	return 0;
}

/* Clients in order of pid, then uid; a client's leases in order of id. */
static int by_client(const void *a, const void *b)
{
	const struct zc_lease_info *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool same_client(const struct zc_lease_info *a, const struct zc_lease_info *b)
{
	return a->pid == b->pid && a->uid == b->uid;
}

static const char *fmt_uptime(uint64_t ms, char *buf, size_t cap)
{
	uint64_t s = ms / 1000;

	if (s >= 86400)
		snprintf(buf, cap, "%" PRIu64 "d %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 86400,
			 s % 86400 / 3600, s % 3600 / 60, s % 60);
	else
		snprintf(buf, cap, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s % 3600 / 60,
			 s % 60);
	return buf;
}

static const char *of_limit(uint32_t n, uint32_t max, char *buf, size_t cap)
{
	if (max)
		snprintf(buf, cap, "%" PRIu32 "/%" PRIu32, n, max);
	else
		snprintf(buf, cap, "%" PRIu32 "/-", n);
	return buf;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = { COMMON_OPTS, { 0 } };
	static const char *const dhdr[] = { "DEVICE", "ZONES", "NOT-WP", "EMPTY", "IMP-OPEN",
					    "EXP-OPEN", "CLOSED", "FULL", "READ-ONLY", "OFFLINE",
					    "OPEN", "ACTIVE", "LEASED", "FREE" };
	static const bool dright[] = { 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	static const char *const lhdr[] = { "PID", "UID", "LEASES", "ZONES", "LABELS" };
	static const bool lright[] = { 1, 1, 1, 0, 0 };
	struct table dt = { .ncols = 14, .header = dhdr, .right = dright };
	struct table lt = { .ncols = 5, .header = lhdr, .right = lright };
	struct zc_device *devs = NULL, *infos = NULL;
	struct zc_lease_info *li = NULL;
	struct zc_stat *st = NULL;
	struct zc_hello h;
	int ndev = 0, nl = 0, ns = 0, r;
	zc_client *c;

	options_first(argc, argv, opts);
	next_opt(argc, argv, opts);
	want_args(argc, argv, 0, "no arguments");
	c = connect_or_die();
	r = zc_hello(c, &h);
	if (r < 0) {
		r = fail(c, r, "status: hello");
		goto out;
	}
	ns = get_stats(c, &st);
	if (ns < 0) {
		r = fail(c, ns, "status: stats");
		goto out;
	}
	ndev = list_devices(c, &devs);
	if (ndev < 0) {
		r = fail(c, ndev, "status: devices");
		goto out;
	}
	infos = calloc((size_t)ndev + 1, sizeof(*infos));
	if (!infos) {
		r = fail_local(-ENOMEM, "status");
		goto out;
	}
	for (int i = 0; i < ndev; i++) {
		r = zc_device_info(c, devs[i].id, &infos[i]);
		if (r < 0) {
			r = fail(c, r, "status: info %s", devs[i].id);
			goto out;
		}
	}
	/* Admins see every client's leases, others their own. */
	nl = get_leases(c, h.admin, &li);
	if (nl < 0) {
		r = fail(c, nl, "status: leases");
		goto out;
	}
	qsort(li, (size_t)nl, sizeof(*li), by_client);

	if (opt_json) {
		jw_obj(NULL);
		jw_str("version", h.version);
		jw_u64("protocol", h.protocol);
		jw_i64("pid", h.pid);
		jw_u64("uptime_ms", stat_value(st, ns, "uptime_ms"));
		jw_bool("admin", h.admin);
		jw_arr("devices");
		for (int i = 0; i < ndev; i++) {
			const struct zc_device *d = &infos[i];
			uint32_t open = d->cond_count[ZC_COND_IMP_OPEN] + d->cond_count[ZC_COND_EXP_OPEN];

			jw_obj(NULL);
			jw_str("id", d->id);
			jw_u64("nr_zones", d->nr_zones);
			jw_obj("zones_by_cond");
			for (int k = 0; k < ZC_COND_COUNT; k++)
				jw_u64(zc_cond_name((enum zc_cond)k), d->cond_count[k]);
			jw_obj_end();
			jw_u64("open", open);
			jw_u64("max_open", d->max_open);
			jw_u64("active", open + d->cond_count[ZC_COND_CLOSED]);
			jw_u64("max_active", d->max_active);
			jw_u64("leased_zones", d->leased_zones);
			jw_u64("free_zones", d->free_zones);
			jw_obj_end();
		}
		jw_arr_end();
		jw_str("leases_of", h.admin ? "all" : "own");
		jw_arr("clients");
		for (int i = 0; i < nl;) {
			int j = i;

			jw_obj(NULL);
			jw_i64("pid", li[i].pid);
			jw_u64("uid", li[i].uid);
			jw_arr("leases");
			for (; j < nl && same_client(&li[i], &li[j]); j++) {
				jw_obj(NULL);
				jw_u64("id", li[j].id);
				jw_str("device", li[j].device);
				jw_u64("zone", li[j].zone);
				jw_u64("wp", li[j].wp);
				jw_str("label", li[j].label);
				jw_u64("age_ms", li[j].age_ms);
				jw_obj_end();
			}
			jw_arr_end();
			jw_obj_end();
			i = j;
		}
		jw_arr_end();
		jw_u64("waiting", stat_value(st, ns, "waiting"));
		jw_obj("counters");
		jw_counters(st, ns);
		jw_obj_end();
		jw_obj_end();
		r = 0;
		goto out;
	}

	printf("zonedd %s, protocol %" PRIu32 ", pid %" PRId32 ", up %s\n", h.version, h.protocol,
	       h.pid, fmt_uptime(stat_value(st, ns, "uptime_ms"), (char[48]){ 0 }, 48));
	printf("clients %" PRIu64 ", leases %" PRIu64 ", waiting acquires %" PRIu64 "\n\n",
	       stat_value(st, ns, "clients"), stat_value(st, ns, "leases_active"),
	       stat_value(st, ns, "waiting"));
	for (int i = 0; i < ndev; i++) {
		const struct zc_device *d = &infos[i];
		uint32_t open = d->cond_count[ZC_COND_IMP_OPEN] + d->cond_count[ZC_COND_EXP_OPEN];
		char b1[32], b2[32];

		table_add(&dt, d->id, NUM(d->nr_zones), NUM(d->cond_count[ZC_COND_NOT_WP]),
			  NUM(d->cond_count[ZC_COND_EMPTY]), NUM(d->cond_count[ZC_COND_IMP_OPEN]),
			  NUM(d->cond_count[ZC_COND_EXP_OPEN]), NUM(d->cond_count[ZC_COND_CLOSED]),
			  NUM(d->cond_count[ZC_COND_FULL]), NUM(d->cond_count[ZC_COND_READONLY]),
			  NUM(d->cond_count[ZC_COND_OFFLINE]), of_limit(open, d->max_open, b1, sizeof(b1)),
			  of_limit(open + d->cond_count[ZC_COND_CLOSED], d->max_active, b2, sizeof(b2)),
			  NUM(d->leased_zones), NUM(d->free_zones));
	}
	table_print(&dt);
	printf("\nleases by client (%s):\n", h.admin ? "all clients" : "this uid's");
	for (int i = 0; i < nl;) {
		char *zones = NULL, *labels = NULL;
		size_t zl = 0, ll = 0;
		FILE *zf = open_memstream(&zones, &zl), *lf = open_memstream(&labels, &ll);
		int j = i;

		if (!zf || !lf) {
			if (zf)
				fclose(zf);
			if (lf)
				fclose(lf);
			free(zones);
			free(labels);
			r = fail_local(-ENOMEM, "status");
			goto out;
		}
		for (; j < nl && same_client(&li[i], &li[j]); j++) {
			bool dup = false;

			fprintf(zf, "%s%s:%" PRIu32, j > i ? "," : "", li[j].device, li[j].zone);
			for (int k = i; k < j; k++)
				dup = dup || strcmp(li[k].label, li[j].label) == 0;
			if (!dup)
				fprintf(lf, "%s%s", ftell(lf) ? "," : "", li[j].label);
		}
		fclose(zf);
		fclose(lf);
		table_add(&lt, NUM((uint64_t)(int64_t)li[i].pid), NUM(li[i].uid), NUM((uint64_t)(j - i)),
			  zones, labels);
		free(zones);
		free(labels);
		i = j;
	}
	table_print(&lt);
	printf("\ncounters:\n");
	{
		size_t w = 0;

		for (int i = 0; i < ns; i++)
			if (strlen(st[i].name) > w)
				w = strlen(st[i].name);
		/* uptime is on the first line */
		for (int i = 0; i < ns; i++)
			if (strcmp(st[i].name, "uptime_ms") != 0)
				printf("  %-*s  %" PRIu64 "\n", (int)w, st[i].name, st[i].value);
	}
	r = 0;
out:
	free(li);
	free(infos);
	free(devs);
	free(st);
	zc_close(c);
	return r;
}

/* --- Events: watch ----------------------------------------------------- */

/* Blocks SIGINT and SIGTERM and returns a signalfd that reads them, so a
 * loop can poll for them beside the connection. */
static int stop_signals_fd(void)
{
	sigset_t sigs;
	int fd;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* The next event: 1 with *ev, 0 when SIGINT or SIGTERM came (or, with
 * timeout_ms >= 0, when that passed with no event: then *ev stays NULL), or
 * a negative errno: -ENOTCONN when the daemon went away. */
static int next_event(zc_client *c, int sfd, int timeout_ms, zc_event **ev)
{
	*ev = NULL;
	for (;;) {
		struct pollfd p[2] = { { zc_client_fd(c), POLLIN, 0 }, { sfd, POLLIN, 0 } };
		int r = zc_event_next(c, 0, ev);

		if (r != 0)
			return r;
		r = poll(p, 2, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0 || p[1].revents)
			return 0;
		/* The descriptor stays readable until the library has
		 * processed what woke it (a reply, a timer, an event). */
		r = zc_client_process(c);
		if (r < 0 && r != -ENOTCONN)
			return r;
	}
}

static bool was_signal(int sfd)
{
	struct signalfd_siginfo si;

	return read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si);
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	return json_object_get_string(v);
}

/* "12:34:56.789", local time. */
static const char *fmt_clock(uint64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm))
		snprintf(buf, cap, "%" PRIu64, ms);
	else
		snprintf(buf, cap, "%02d:%02d:%02d.%03u", tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (unsigned)(ms % 1000));
	return buf;
}

static void watch_header(void)
{
	printf("%-12s  %-16s  %-12s  %5s  %6s  %7s  %6s  %s\n", "TIME", "TYPE", "DEVICE", "ZONE",
	       "LEASE", "PID", "UID", "DETAILS");
}

/* One aligned line: the fields every event may carry in columns ("-" when
 * it has none), then the rest as key=value. */
static void watch_line(const zc_event *ev)
{
	static const char *const details[] = { "label", "cond", "old_cond", "reason", "wp", "lost" };
	struct json_object *o = json_tokener_parse(zc_event_json(ev));
	const char *dev = zc_event_device(ev), *pid = o ? jstr(o, "pid") : NULL;
	const char *uid = o ? jstr(o, "uid") : NULL;
	int64_t zone = zc_event_zone(ev);
	uint64_t lease = zc_event_lease(ev);
	char clock[32], zbuf[24], lbuf[24];
	bool first = true;

	snprintf(zbuf, sizeof(zbuf), "%" PRId64, zone);
	snprintf(lbuf, sizeof(lbuf), "%" PRIu64, lease);
	printf("%-12s  %-16s  %-12s  %5s  %6s  %7s  %6s  ",
	       fmt_clock(zc_event_time_ms(ev), clock, sizeof(clock)), zc_event_type(ev),
	       dev ? dev : "-", zone >= 0 ? zbuf : "-", lease ? lbuf : "-", pid ? pid : "-",
	       uid ? uid : "-");
	for (size_t i = 0; o && i < sizeof(details) / sizeof(details[0]); i++) {
		const char *v = jstr(o, details[i]);

		if (!v)
			continue;
		printf("%s%s=", first ? "" : " ", details[i]);
		if (strcmp(details[i], "label") == 0)
			json_string(v);
		else
			fputs(v, stdout);
		first = false;
	}
	putchar('\n');
	json_object_put(o);
}

static void watch_json(const zc_event *ev)
{
	struct json_object *o = json_tokener_parse(zc_event_json(ev));

	/* One line per event whatever the daemon's spacing. */
	puts(o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : zc_event_json(ev));
	json_object_put(o);
}

static int cmd_watch(int argc, char **argv)
{
	enum { O_COUNT = 1 };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "count", required_argument, NULL, O_COUNT },
		{ 0 },
	};
	const char *devs[2] = { NULL, NULL };
	uint64_t count = 0, seen = 0;
	zc_client *c;
	int o, r, sfd;

	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1) {
		if (o == O_COUNT) {
			count = arg_u32("--count", optarg);
			if (!count)
				usage_error("watch: --count must be at least 1");
		}
	}
	if (argc - optind > 1)
		usage_error("watch: expected [DEVICE]");
	devs[0] = argc - optind == 1 ? argv[optind] : NULL;
	sfd = stop_signals_fd();
	if (sfd < 0)
		return fail_local(sfd, "watch: signals");
	c = connect_or_die();
	r = zc_events_subscribe(c, NULL, devs[0] ? devs : NULL);
	if (r < 0) {
		r = fail(c, r, "watch: subscribe");
		goto out;
	}
	if (!opt_json)
		watch_header();
	fflush(stdout); /* subscribed: whoever waits for the header may act now */
	while (!count || seen < count) {
		zc_event *ev;

		r = next_event(c, sfd, -1, &ev);
		if (r == 0 && was_signal(sfd))
			break;
		if (r == 0)
			continue;
		if (r < 0) {
			r = r == -ENOTCONN ? fail_text("watch: the daemon closed the connection")
					   : fail(c, r, "watch");
			goto out;
		}
		if (opt_json)
			watch_json(ev);
		else
			watch_line(ev);
		fflush(stdout);
		zc_event_free(ev);
		seen++;
	}
	r = 0;
out:
	close(sfd);
	zc_close(c);
	return r;
}

/* --- map ----------------------------------------------------------------- */

/* A cell's first glyph: its condition (capital when a zone of it is
 * leased); the second its fill. Colour, where used, is by condition. */
static const char map_glyph[ZC_COND_COUNT] = {
	[ZC_COND_NOT_WP] = 'n', [ZC_COND_EMPTY] = 'e', [ZC_COND_IMP_OPEN] = 'i',
	[ZC_COND_EXP_OPEN] = 'x', [ZC_COND_CLOSED] = 'c', [ZC_COND_FULL] = 'f',
	[ZC_COND_READONLY] = 'r', [ZC_COND_OFFLINE] = 'o',
};
static const char *const map_sgr[ZC_COND_COUNT] = {
	[ZC_COND_NOT_WP] = "37;100", [ZC_COND_EMPTY] = "2",       [ZC_COND_IMP_OPEN] = "30;42",
	[ZC_COND_EXP_OPEN] = "30;43", [ZC_COND_CLOSED] = "30;46", [ZC_COND_FULL] = "37;44",
	[ZC_COND_READONLY] = "30;45", [ZC_COND_OFFLINE] = "37;41",
};

struct map_cell {
	uint32_t count[ZC_COND_COUNT];
	uint64_t written, capacity; /* of its sequential zones */
	bool leased, seq;
};

/* What a cell of several zones shows: the most telling condition present
 * (offline, read-only, explicit-open, implicit-open, closed, in that
 * order), else the commonest of full, empty and not-wp. */
static enum zc_cond cell_cond(const struct map_cell *m)
{
	static const enum zc_cond first[] = { ZC_COND_OFFLINE, ZC_COND_READONLY, ZC_COND_EXP_OPEN,
					       ZC_COND_IMP_OPEN, ZC_COND_CLOSED };
	static const enum zc_cond rest[] = { ZC_COND_FULL, ZC_COND_EMPTY, ZC_COND_NOT_WP };
	enum zc_cond best = ZC_COND_EMPTY;

	for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++)
		if (m->count[first[i]])
			return first[i];
	for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
		if (m->count[rest[i]] > m->count[best])
			best = rest[i];
	return best;
}

static char cell_fill(const struct map_cell *m)
{
	if (!m->seq)
		return '-';
	if (!m->written)
		return '.';
	if (m->written >= m->capacity)
		return '#';
	return (char)('0' + m->written * 10 / m->capacity);
}

struct map_view {
	bool color;
	unsigned width, max_rows;
};

static int draw_map(zc_client *c, const char *dev, bool admin, const struct map_view *v)
{
	struct zc_device info;
	struct zc_report_opts ro = { 0 };
	struct zc_lease_info *li = NULL;
	struct map_cell *cells = NULL;
	uint32_t cond_total[ZC_COND_COUNT] = { 0 }, group, ncells, cols, rows, nleased = 0;
	uint64_t written = 0, capacity = 0;
	unsigned char *leased = NULL;
	unsigned lw;
	zc_zone_iter *it = NULL;
	struct zc_zone z;
	int r, nl;

	r = zc_device_info(c, dev, &info);
	if (r < 0)
		return fail(c, r, "map %s", dev);
	nl = get_leases(c, admin, &li);
	if (nl < 0)
		return fail(c, nl, "map %s: leases", dev);
	leased = calloc(info.nr_zones ? info.nr_zones : 1, 1);
	if (!leased) {
		r = fail_local(-ENOMEM, "map");
		goto out;
	}
	for (int i = 0; i < nl; i++)
		if (strcmp(li[i].device, info.id) == 0 && li[i].zone < info.nr_zones)
			leased[li[i].zone] = 1;

	/* The grid: as many cells of 3 columns ("e. ") as fit beside the row
	 * label, a multiple of 8 for counting by eye, at most 64; zones are
	 * grouped when one each would take more than max_rows rows. */
	lw = (unsigned)snprintf(NULL, 0, "%" PRIu32, info.nr_zones ? info.nr_zones - 1 : 0);
	cols = v->width > lw + 2 + 3 ? (v->width - lw - 2) / 3 : 1;
	if (cols > 64)
		cols = 64;
	if (cols >= 8)
		cols -= cols % 8;
	group = info.nr_zones / ((uint64_t)cols * v->max_rows) +
		(info.nr_zones % ((uint64_t)cols * v->max_rows) ? 1 : 0);
	if (!group)
		group = 1;
	ncells = info.nr_zones / group + (info.nr_zones % group ? 1 : 0);
	if (ncells && ncells < cols)
		cols = ncells;
	rows = ncells / cols + (ncells % cols ? 1 : 0);
	cells = calloc(ncells ? ncells : 1, sizeof(*cells));
	if (!cells) {
		r = fail_local(-ENOMEM, "map");
		goto out;
	}
	r = zc_zone_iter_new(c, info.id, &ro, &it);
	while (r == 0 && (r = zc_zone_iter_next(it, &z)) > 0) {
		struct map_cell *m;
		uint64_t w;

		r = 0;
		if (z.index >= info.nr_zones || z.cond >= ZC_COND_COUNT)
			continue;
		m = &cells[z.index / group];
		m->count[z.cond]++;
		cond_total[z.cond]++;
		if (leased[z.index]) {
			m->leased = true;
			nleased++;
		}
		if (z.type == ZC_TYPE_CONV)
			continue;
		w = z.cond == ZC_COND_FULL ? z.capacity
		    : z.wp - z.start < z.capacity ? z.wp - z.start : z.capacity;
		m->seq = true;
		m->written += w;
		m->capacity += z.capacity;
		written += w;
		capacity += z.capacity;
	}
	zc_zone_iter_free(it);
	if (r < 0) {
		r = fail(c, r, "map %s: report", info.id);
		goto out;
	}

	if (opt_json) {
		jw_obj(NULL);
		jw_str("device", info.id);
		jw_u64("nr_zones", info.nr_zones);
		jw_u64("zone_size", info.zone_size);
		jw_u64("zones_per_cell", group);
		jw_u64("cells_per_row", cols);
		jw_str("leases_of", admin ? "all" : "own");
		jw_arr("cells");
		for (uint32_t k = 0; k < ncells; k++) {
			const struct map_cell *m = &cells[k];

			jw_obj(NULL);
			jw_u64("first", (uint64_t)k * group);
			jw_u64("zones", k + 1 < ncells ? group : info.nr_zones - k * group);
			jw_str("cond", zc_cond_name(cell_cond(m)));
			jw_bool("leased", m->leased);
			jw_u64("written", m->written);
			jw_u64("capacity", m->capacity);
			jw_obj_end();
		}
		jw_arr_end();
		jw_obj("totals");
		jw_obj("zones_by_cond");
		for (int i = 0; i < ZC_COND_COUNT; i++)
			jw_u64(zc_cond_name((enum zc_cond)i), cond_total[i]);
		jw_obj_end();
		jw_u64("leased", nleased);
		jw_u64("written", written);
		jw_u64("capacity", capacity);
		jw_obj_end();
		jw_obj_end();
		r = 0;
		goto out;
	}
	printf("%s: %" PRIu32 " zones of %s, ", info.id, info.nr_zones, SIZE(info.zone_size));
	if (group == 1)
		printf("one cell per zone");
	else
		printf("one cell per %" PRIu32 " zones", group);
	printf(", %" PRIu32 " cells per row\n", cols);
	for (uint32_t row = 0; row < rows; row++) {
		printf("%*" PRIu64 " ", lw, (uint64_t)row * cols * group);
		for (uint32_t k = 0; k < cols && row * cols + k < ncells; k++) {
			const struct map_cell *m = &cells[row * cols + k];
			enum zc_cond cd = cell_cond(m);
			char g = map_glyph[cd];

			if (m->leased)
				g = (char)(g - 'a' + 'A');
			if (v->color)
				printf(" \033[%s%sm%c%c\033[0m", map_sgr[cd], m->leased ? ";1;4" : "", g,
				       cell_fill(m));
			else
				printf(" %c%c", g, cell_fill(m));
		}
		putchar('\n');
	}
	printf("\nlegend: ");
	for (int i = 0; i < ZC_COND_COUNT; i++) {
		if (v->color)
			printf("%s\033[%sm%c\033[0m %s", i ? ", " : "", map_sgr[i], map_glyph[i],
			       zc_cond_name((enum zc_cond)i));
		else
			printf("%s%c %s", i ? ", " : "", map_glyph[i], zc_cond_name((enum zc_cond)i));
	}
	printf("\n        capital: leased; fill: . nothing written, 0-9 tenths written, # full, "
	       "- conventional\n");
	if (group > 1)
		printf("        a cell of %" PRIu32 " zones: the first of offline, read-only, "
		       "explicit-open,\n        implicit-open, closed it holds, else the commonest "
		       "condition; fill of\n        all its zones; capital if any is leased\n", group);
	printf("totals: %" PRIu32 " zones", info.nr_zones);
	for (int i = 0, first = 1; i < ZC_COND_COUNT; i++)
		if (cond_total[i]) {
			printf("%s%" PRIu32 " %s", first ? " (" : ", ", cond_total[i],
			       zc_cond_name((enum zc_cond)i));
			first = 0;
		}
	printf(")\n        %" PRIu32 " leased (%s), %s written of %s\n", nleased,
	       admin ? "every client's" : "this uid's", SIZE(written), SIZE(capacity));
	r = 0;
out:
	free(cells);
	free(leased);
	free(li);
	return r;
}

static int cmd_map(int argc, char **argv)
{
	enum { O_WATCH = 1 };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "watch", no_argument, NULL, O_WATCH },
		{ 0 },
	};
	struct map_view v = { .width = 80, .max_rows = 32 };
	const char *color_off = getenv("NO_COLOR"), *cols_env = getenv("COLUMNS");
	const char *devs[2] = { NULL, NULL };
	bool watch = false, tty = isatty(STDOUT_FILENO);
	struct winsize ws;
	struct zc_hello h;
	zc_client *c;
	int o, r, sfd = -1;

	options_first(argc, argv, opts);
	while ((o = next_opt(argc, argv, opts)) != -1)
		if (o == O_WATCH)
			watch = true;
	want_args(argc, argv, 1, "DEVICE");
	if (opt_json && watch)
		usage_error("map: --watch draws for people; 'zonectl watch --json' is the stream");
	devs[0] = argv[optind];
	v.color = tty && !(color_off && *color_off);
	if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col) {
		v.width = ws.ws_col;
		/* Room for the header, legend and totals. */
		v.max_rows = ws.ws_row > 14 ? ws.ws_row - 8u : 6u;
	} else if (cols_env) {
		uint64_t w;

		if (parse_u64(cols_env, false, &w) && w >= 16 && w <= 1000)
			v.width = (unsigned)w;
	}
	if (watch) {
		sfd = stop_signals_fd();
		if (sfd < 0)
			return fail_local(sfd, "map: signals");
	}
	c = connect_or_die();
	/* Subscribed first: nothing that happens after the first draw's
	 * snapshot is missed. */
	if (watch) {
		r = zc_events_subscribe(c, NULL, devs);
		if (r < 0) {
			r = fail(c, r, "map: subscribe");
			goto out;
		}
	}
	r = zc_hello(c, &h);
	if (r < 0) {
		r = fail(c, r, "map: hello");
		goto out;
	}
	for (;;) {
		zc_event *ev = NULL;

		if (watch && tty)
			fputs("\033[H\033[J", stdout);
		r = draw_map(c, devs[0], h.admin, &v);
		fflush(stdout);
		if (r || !watch)
			break;
		/* Redraw once per burst: wait for an event, then take what
		 * follows within 100 ms with it. */
		r = next_event(c, sfd, -1, &ev);
		while (r > 0) {
			zc_event_free(ev);
			r = next_event(c, sfd, 100, &ev);
			if (r == 0) {
				r = was_signal(sfd) ? 0 : 2; /* 2: the burst is over */
				break;
			}
		}
		if (r == 0)
			break; /* SIGINT or SIGTERM */
		if (r < 0) {
			r = r == -ENOTCONN ? fail_text("map: the daemon closed the connection")
					   : fail(c, r, "map");
			break;
		}
		if (!tty)
			putchar('\n');
	}
out:
	if (sfd >= 0)
		close(sfd);
	zc_close(c);
	return r;
}

static int cmd_bench(int argc, char **argv)
{
	/* Only to put operands last, as zonectl_bench's parser expects. */
	static const struct option opts[] = {
		{ "writers", required_argument, NULL, 0 }, { "zones", required_argument, NULL, 0 },
		{ "block", required_argument, NULL, 0 },   { "size", required_argument, NULL, 0 },
		{ "rounds", required_argument, NULL, 0 },  { "buffered", no_argument, NULL, 0 },
		{ "output", required_argument, NULL, 0 },
		{ 0 },
	};

	options_first(argc, argv, opts);
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *fmt = NULL;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			cmd_usage("bench");
			return 0;
		}
		if (strcmp(argv[i], "--json") == 0)
			opt_json = true; /* for the error lines too */
		if (strncmp(argv[i], "--output=", 9) == 0)
			fmt = argv[i] + 9;
		else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc)
			fmt = argv[++i];
		if (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "table") != 0)
			usage_error("bench: %s", strcmp(fmt, "csv") == 0 ?
				    "--output csv is for the tabular commands (devices, report, "
				    "zone operations, leases, stats); use json" :
				    "--output takes json, csv or table");
		if (fmt)
			opt_json = strcmp(fmt, "json") == 0;
	}
	return zonectl_bench(opt_socket, opt_json, argc, argv);
}

/* --- Main -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("Usage: zonectl [--socket PATH] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "Talks to zonedd, the zoned block device sharing daemon.\n"
	      "\n"
	      "Commands:\n", f);
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		const struct cmd_help *h = &helps[i];
		int n = fprintf(f, "  %s%s%s", h->names, *h->synopsis ? " " : "", h->synopsis);

		if (n > 35)
			fprintf(f, "\n%*s", 35, "");
		else
			fprintf(f, "%*s", 35 - n, "");
		print_indented(f, h->summary, 35);
	}
	fputs("\n"
	      "Options:\n"
	      "  --socket PATH   the daemon's socket (default: $ZONED_SOCKET, else\n"
	      "                  /run/zoned/zonedd.sock)\n"
	      "  --json          print results as JSON, sizes in bytes; errors as JSON\n"
	      "                  on stderr\n"
	      "  --output FMT    json (as --json), csv (tabular commands: a header line,\n"
	      "                  RFC 4180, sizes in bytes) or table (the default)\n"
	      "  -h, --help      show this help (after a command: the command's help)\n"
	      "  --version       show the version\n"
	      "\n"
	      "Conditions: not-wp, empty, implicit-open, explicit-open, closed, full,\n"
	      "read-only, offline. Types: conventional, seq-write-required,\n"
	      "seq-write-preferred. Byte counts take K, M, G, T suffixes (powers of 1024).\n",
	      f);
}

int main(int argc, char **argv)
{
	enum { O_VERSION = 1 };
	static const struct option opts[] = {
		COMMON_OPTS,
		{ "version", no_argument, NULL, O_VERSION },
		{ 0 },
	};
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
		int op; /* zone operation, -1 for others */
	} cmds[] = {
		{ "devices", cmd_devices, -1 },
		{ "info", cmd_info, -1 },
		{ "report", cmd_report, -1 },
		{ "open", NULL, ZC_ZONE_OPEN },
		{ "close", NULL, ZC_ZONE_CLOSE },
		{ "finish", NULL, ZC_ZONE_FINISH },
		{ "reset", NULL, ZC_ZONE_RESET },
		{ "lease", cmd_lease, -1 },
		{ "write", cmd_write, -1 },
		{ "read", cmd_read, -1 },
		{ "leases", cmd_leases, -1 },
		{ "hello", cmd_hello, -1 },
		{ "stats", cmd_stats, -1 },
		{ "bench", cmd_bench, -1 },
		{ "watch", cmd_watch, -1 },
		{ "status", cmd_status, -1 },
		{ "map", cmd_map, -1 },
		{ "validate", cmd_validate, -1 },
	};
	const char *cmd;
	int o;

	opterr = 0;
	while ((o = next_opt(argc, argv, opts)) != -1) {
		if (o == O_VERSION) {
			printf("zonectl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		}
	}
	if (optind >= argc)
		usage_error("no command given");
	cmd = argv[optind];
	if (asprintf((char **)&cmd_name, "%s: ", cmd) < 0)
		cmd_name = "";
	if (opt_csv && !csv_command(cmd)) {
		opt_csv = false;
		usage_error("%s--output csv is for the tabular commands (devices, report, zone "
			    "operations, leases, stats); use json", cmd_name);
	}
	argc -= optind;
	argv += optind;
	optind = 0; /* 0 makes getopt start over, GNU style */
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmd, cmds[i].name) != 0)
			continue;
		cur_cmd = cmds[i].name;
		if (cmds[i].fn)
			return cmds[i].fn(argc, argv);
		return cmd_zone_op(argc, argv, (enum zc_zone_op)cmds[i].op);
	}
	usage_error("unknown command '%s'", cmd);
}
