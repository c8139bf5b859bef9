/* zonedd: command line, configuration, start-up and reload. The daemon's
 * machinery lives in libzoned-daemon so tests can link it. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/conf.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/log.h"

#define DEFAULT_CONFIG ZONED_SYSCONF_DIR "/zonedd.conf"

/* What main owns beside the daemon context: where the configuration came
 * from and what the command line forced, so a reload can redo the merge. */
struct zd_main {
	struct zd_daemon d;
	const char *config_path;
	bool config_explicit;
	struct zd_config cli;       /* only the fields set on the command line */
	bool cli_socket, cli_state_dir, cli_admin, cli_client, cli_log, cli_max_leases,
	     cli_grace, cli_isolation;
	unsigned reloads_running;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: zonedd [OPTION]...\n"
		"Share zoned block devices between processes through leased zones.\n\n"
		"  -c, --config FILE         configuration file (default " DEFAULT_CONFIG ")\n"
		"      --no-config           read no configuration file\n"
		"  -s, --socket PATH         listening socket (default " ZP_DEFAULT_SOCKET ")\n"
		"  -S, --state-dir DIR       state directory (default $STATE_DIRECTORY or\n"
		"                            " ZONED_STATE_DIR ")\n"
		"  -d, --device PATH[=ID]    serve a kernel zoned block device\n"
		"  -e, --emulate PATH[,KEY=VALUE...]\n"
		"                            serve an emulated zoned device backed by PATH;\n"
		"                            keys: id, size, zone-size, zone-capacity, conv,\n"
		"                            max-open, max-active, lbs\n"
		"      --admin-group GROUP   members may run zone operations and force\n"
		"      --client-group GROUP  only members (and admins) may use the daemon\n"
		"      --max-leases N        leases per connection (0 = no limit)\n"
		"      --grace-ms MS         how long a lease without its owner (after a\n"
		"                            restart) can be reclaimed (default 30000)\n"
		"      --isolation MODE      zone, device or auto (default): what a lease's\n"
		"                            fd reaches, for devices that do not say\n"
		"  -l, --log-level LEVEL     err, warning, notice, info or debug\n"
		"  -h, --help                show this help\n"
		"  -V, --version             show the version\n\n"
		"Devices given on the command line replace those of the configuration file.\n"
		"With no device at all, an emulated 4 GiB device 'emu0' is created in the\n"
		"state directory.\n");
}

static const char *basename_of(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* "--emulate PATH[,id=ID][,key=value...]": the id is ours, the rest is the
 * emulator's spec. */
static int parse_emulate(const char *arg, struct zd_device_conf *dc)
{
	const char *comma = strchr(arg, ',');
	size_t plen = comma ? (size_t)(comma - arg) : strlen(arg);
	char spec[sizeof(dc->spec)] = "";
	char *dup, *tok, *save = NULL;

	memset(dc, 0, sizeof(*dc));
	dc->emulated = true;
	if (plen == 0 || plen >= sizeof(dc->path))
		return -EINVAL;
	/* As in the configuration file: a device path that meant something
	 * else from another working directory (a reload, systemd's /) is refused. */
	if (arg[0] != '/')
		return -EDESTADDRREQ;
	memcpy(dc->path, arg, plen);
	if (comma) {
		dup = strdup(comma + 1);
		if (!dup)
			return -ENOMEM;
		for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (strncmp(tok, "id=", 3) == 0) {
				snprintf(dc->id, sizeof(dc->id), "%s", tok + 3);
				continue;
			}
			if (strlen(spec) + strlen(tok) + 2 > sizeof(spec)) {
				free(dup);
				return -EINVAL;
			}
			if (spec[0])
				strcat(spec, ",");
			strcat(spec, tok);
		}
		free(dup);
	}
	snprintf(dc->spec, sizeof(dc->spec), "%s", spec);
	if (!dc->id[0]) {
		/* The file name without its extension names the device. */
		char *dot;

		zd_strlcpy(dc->id, basename_of(dc->path), sizeof(dc->id));
		dot = strrchr(dc->id, '.');
		if (dot && dot != dc->id)
			*dot = '\0';
	}
	return 0;
}

static int parse_device(const char *arg, struct zd_device_conf *dc)
{
	const char *eq = strchr(arg, '=');
	size_t plen = eq ? (size_t)(eq - arg) : strlen(arg);

	memset(dc, 0, sizeof(*dc));
	if (plen == 0 || plen >= sizeof(dc->path))
		return -EINVAL;
	if (arg[0] != '/')
		return -EDESTADDRREQ;
	memcpy(dc->path, arg, plen);
	zd_strlcpy(dc->id, eq ? eq + 1 : basename_of(dc->path), sizeof(dc->id));
	return dc->id[0] ? 0 : -EINVAL;
}

/* Builds the effective configuration: defaults, the file, the command line.
 * On reload, running lists the devices served now (see zd_config_reload). */
static int build_config(struct zd_main *m, struct zd_config *cfg,
			const struct zd_device_conf *running, size_t nr_running, char *err,
			size_t err_len)
{
	const char *sd = getenv("STATE_DIRECTORY");
	int r;

	zd_config_defaults(cfg);
	/* systemd may pass several colon-separated directories; the first is ours. */
	if (sd && sd[0]) {
		snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", sd);
		char *colon = strchr(cfg->state_dir, ':');
		if (colon)
			*colon = '\0';
	}
	/* Devices of the command line replace the file's: only the file's own
	 * are checked against the running ones there (the rest below). */
	r = m->config_path ? zd_config_reload(cfg, m->config_path, m->cli.nr_devices ? NULL : running,
					      m->cli.nr_devices ? 0 : nr_running, err, err_len)
			   : 0;
	if (r == -ENOENT && !m->config_explicit)
		r = 0;
	if (r < 0)
		return r;
	if (m->cli_socket)
		memcpy(cfg->socket_path, m->cli.socket_path, sizeof(cfg->socket_path));
	if (m->cli_state_dir)
		memcpy(cfg->state_dir, m->cli.state_dir, sizeof(cfg->state_dir));
	if (m->cli_admin)
		memcpy(cfg->admin_group, m->cli.admin_group, sizeof(cfg->admin_group));
	if (m->cli_client)
		memcpy(cfg->client_group, m->cli.client_group, sizeof(cfg->client_group));
	if (m->cli_log)
		cfg->log_level = m->cli.log_level;
	if (m->cli_max_leases)
		cfg->max_leases_per_conn = m->cli.max_leases_per_conn;
	if (m->cli_grace)
		cfg->grace_ms = m->cli.grace_ms;
	if (m->cli_isolation)
		cfg->isolation = m->cli.isolation;
	if (m->cli.nr_devices) {
		free(cfg->devices);
		cfg->devices = NULL;
		cfg->nr_devices = 0;
		for (size_t i = 0; i < m->cli.nr_devices; i++) {
			r = zd_config_add_device(cfg, &m->cli.devices[i]);
			if (r < 0) {
				snprintf(err, err_len, "device id '%s' given twice",
					 m->cli.devices[i].id);
				return r;
			}
		}
	}
	if (cfg->nr_devices == 0) {
		struct zd_device_conf dc;

		memset(&dc, 0, sizeof(dc));
		dc.emulated = true;
		snprintf(dc.id, sizeof(dc.id), "emu0");
		if (snprintf(dc.path, sizeof(dc.path), "%s/emu0.img", cfg->state_dir) >=
		    (int)sizeof(dc.path)) {
			snprintf(err, err_len, "state directory path too long");
			return -ENAMETOOLONG;
		}
		r = zd_config_add_device(cfg, &dc);
		if (r < 0)
			return r;
	}
	/* A device's own isolation wins over the default; a reload does not
	 * change the mode of a device already served (it is not reopened). */
	for (size_t i = 0; i < cfg->nr_devices; i++)
		if (cfg->devices[i].isolation == ZD_ISOLATION_AUTO)
			cfg->devices[i].isolation = cfg->isolation;
	/* The default device (the file dropped its devices) is checked here. */
	for (size_t i = 0; i < cfg->nr_devices; i++) {
		for (size_t j = 0; j < nr_running; j++) {
			if (strcmp(cfg->devices[i].id, running[j].id) != 0 ||
			    zd_config_same_device(&cfg->devices[i], &running[j]))
				continue;
			snprintf(err, err_len, "%.100s: device '%s' is served from %.100s, the "
				 "configuration now names %.100s; a reload cannot move it (restart "
				 "zonedd)",
				 m->config_path ? m->config_path : "reload", running[j].id,
				 running[j].path, cfg->devices[i].path);
			return -EINVAL;
		}
	}
	return 0;
}

/* Every connection is a descriptor, and the soft limit a shell or a
 * service manager hands down is often 1024: four users at their
 * connection cap (max_connections_per_uid, 256) would reach it. zonedd
 * never uses select(), so it raises the soft limit to the hard one, up to
 * what zonedd.service sets (LimitNOFILE=65536). Under that unit the limit
 * is there already and no setrlimit is made (its seccomp filter would
 * refuse it). Failing is not fatal: the accept back-off copes with EMFILE. */
#define NOFILE_WANTED 65536

static void raise_nofile(void)
{
	struct rlimit rl;
	rlim_t want;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > NOFILE_WANTED ? NOFILE_WANTED
									  : rl.rlim_max;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rlim_t old = rl.rlim_cur;

		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			zd_warn("cannot raise the open-file limit from %llu to %llu: %s",
				(unsigned long long)old, (unsigned long long)want, strerror(errno));
		else
			zd_debug("open-file limit raised from %llu to %llu",
				 (unsigned long long)old, (unsigned long long)want);
	}
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Emulated devices are sparse files: the default one is 4 GiB in the
 * state directory. Say so at start when clients could fill the filesystem
 * before the device is full; writes would then fail with ENOSPC. */
static void warn_sparse_space(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);
		uint64_t used, avail, grow;
		struct statvfs vfs;
		struct stat st;

		if (strcmp(dev->info.backend, "emulated") != 0 || stat(dev->path, &st) < 0 ||
		    statvfs(dev->path, &vfs) < 0)
			continue;
		used = (uint64_t)st.st_blocks * 512;
		avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		grow = dev->info.size > used ? dev->info.size - used : 0;
		if (grow > avail)
			zd_warn("device %s: backing file %s can grow by %llu MiB but its filesystem "
				   "has %llu MiB free; writes will fail once it is full",
				   dev->id, dev->path, (unsigned long long)(grow >> 20),
				   (unsigned long long)(avail >> 20));
	}
}

/* --- reload ------------------------------------------------------------ */

struct reload_work {
	uv_work_t req;
	struct zd_main *m;
	struct zd_device_conf conf;
	struct zd_device *dev;
	char why[512];
	int status;
};

static void reload_open_run(uv_work_t *req)
{
	struct reload_work *rw = zd_container_of(req, struct reload_work, req);

	rw->status = zd_device_open(&rw->conf, -1, &rw->dev, rw->why, sizeof(rw->why));
}

static void reload_open_done(uv_work_t *req, int status)
{
	struct reload_work *rw = zd_container_of(req, struct reload_work, req);
	struct zd_daemon *d = &rw->m->d;

	rw->m->reloads_running--;
	if (status < 0 || d->stopping) {
		zd_device_discard(rw->dev);
	} else if (rw->status < 0) {
		zd_err("reload: device %s not added: %s", rw->conf.id, rw->why);
	} else if (zd_device_attach(d, rw->dev, rw->why, sizeof(rw->why)) < 0) {
		zd_err("reload: device %s not added: %s", rw->conf.id, rw->why);
		zd_device_discard(rw->dev);
	} else {
		zd_notice("reload: device %s added", rw->conf.id);
	}
	free(rw);
}

static void maybe_close_drained(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);

		if (dev->draining && dev->class_count[ZD_ZC_LEASED] == 0) {
			zd_notice("device %s drained and closed", dev->id);
			zd_event_device(d, ZD_EV_DEVICE_REMOVED, dev->id, "configuration");
			zd_device_unstore(dev);
			zd_list_del(&dev->link);
			zd_device_release(dev);
		}
	}
}

static void drain_timer_cb(uv_timer_t *t)
{
	maybe_close_drained(t->data);
}

static void do_reload(struct zd_daemon *d)
{
	struct zd_main *m = zd_container_of(d, struct zd_main, d);
	struct zd_config cfg;
	char err[512] = "", why[256] = "";
	struct zd_list *pos, *tmp;
	int r;

	struct zd_device_conf *running = NULL;
	size_t nr_running = 0;

	sd_notify(0, "RELOADING=1");
	memset(&cfg, 0, sizeof(cfg));
	/* Draining devices included: one that comes back must come back as it was. */
	zd_list_for_each_safe(pos, tmp, &d->devices)
		nr_running++;
	running = calloc(nr_running ? nr_running : 1, sizeof(*running));
	if (!running) {
		zd_err("reload: out of memory; keeping the running configuration");
		sd_notify(0, "READY=1");
		return;
	}
	nr_running = 0;
	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);
		struct zd_device_conf *rc = &running[nr_running++];

		snprintf(rc->id, sizeof(rc->id), "%s", dev->id);
		snprintf(rc->path, sizeof(rc->path), "%s", dev->path);
		rc->emulated = strcmp(dev->info.backend, "emulated") == 0;
	}
	r = build_config(m, &cfg, running, nr_running, err, sizeof(err));
	free(running);
	if (r < 0) {
		zd_err("reload: %s; keeping the running configuration", err[0] ? err : strerror(-r));
		zd_config_free(&cfg);
		sd_notify(0, "READY=1");
		return;
	}
	/* The socket and state directory cannot move under a running daemon. */
	memcpy(cfg.socket_path, d->cfg.socket_path, sizeof(cfg.socket_path));
	memcpy(cfg.state_dir, d->cfg.state_dir, sizeof(cfg.state_dir));
	{
		struct zd_config old = d->cfg;

		d->cfg = cfg;
		r = zd_daemon_resolve_groups(d, why, sizeof(why));
		if (r < 0) {
			zd_err("reload: %s; keeping the running configuration", why);
			d->cfg = old;
			zd_daemon_resolve_groups(d, why, sizeof(why));
			zd_config_free(&cfg);
			sd_notify(0, "READY=1");
			return;
		}
		zd_config_free(&old);
	}
	zd_log_set_level(d->cfg.log_level);

	/* Devices no longer configured drain; new ones open on the pool. */
	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);
		bool keep = false;

		for (size_t i = 0; i < d->cfg.nr_devices; i++)
			if (strcmp(d->cfg.devices[i].id, dev->id) == 0)
				keep = true;
		if (!keep && !dev->draining) {
			dev->draining = true;
			zd_device_ready_clear(dev);
			zd_notice("reload: device %s removed from the configuration; draining "
				  "(%u leases)", dev->id, dev->class_count[ZD_ZC_LEASED]);
		} else if (keep && dev->draining) {
			dev->draining = false;
		}
	}
	for (size_t i = 0; i < d->cfg.nr_devices; i++) {
		struct reload_work *rw;

		if (zd_device_find(d, d->cfg.devices[i].id))
			continue;
		rw = calloc(1, sizeof(*rw));
		if (!rw)
			break;
		rw->m = m;
		rw->conf = d->cfg.devices[i];
		if (uv_queue_work(d->loop, &rw->req, reload_open_run, reload_open_done) < 0) {
			free(rw);
			continue;
		}
		m->reloads_running++;
	}
	maybe_close_drained(d);
	zd_notice("configuration reloaded");
	sd_notify(0, "READY=1");
}

static uv_timer_t drain_timer;

static void stop_hook(struct zd_daemon *d)
{
	(void)d;
	uv_close((uv_handle_t *)&drain_timer, NULL);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "no-config", no_argument, NULL, 'N' },
		{ "socket", required_argument, NULL, 's' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "device", required_argument, NULL, 'd' },
		{ "emulate", required_argument, NULL, 'e' },
		{ "admin-group", required_argument, NULL, 'A' },
		{ "client-group", required_argument, NULL, 'C' },
		{ "max-leases", required_argument, NULL, 'M' },
		{ "grace-ms", required_argument, NULL, 'G' },
		{ "isolation", required_argument, NULL, 'I' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	static struct zd_main m;
	struct zd_daemon *d = &m.d;
	struct zd_device_conf dc;
	char err[512] = "";
	uv_loop_t loop;
	int c, r;

	m.config_path = DEFAULT_CONFIG;
	zd_config_defaults(&m.cli);
	while ((c = getopt_long(argc, argv, "c:s:S:d:e:l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			m.config_path = optarg;
			m.config_explicit = true;
			break;
		case 'N':
			m.config_path = NULL;
			break;
		case 's':
			if (strlen(optarg) >= sizeof(m.cli.socket_path)) {
				fprintf(stderr, "zonedd: socket path too long: %s\n", optarg);
				return 2;
			}
			snprintf(m.cli.socket_path, sizeof(m.cli.socket_path), "%s", optarg);
			m.cli_socket = true;
			break;
		case 'S':
			snprintf(m.cli.state_dir, sizeof(m.cli.state_dir), "%s", optarg);
			m.cli_state_dir = true;
			break;
		case 'd':
		case 'e':
			r = c == 'd' ? parse_device(optarg, &dc) : parse_emulate(optarg, &dc);
			if (r == 0)
				r = zd_config_add_device(&m.cli, &dc);
			if (r < 0) {
				fprintf(stderr, "zonedd: --%s %s: %s\n", c == 'd' ? "device" : "emulate",
					optarg,
					r == -EEXIST         ? "device id given twice"
					: r == -EDESTADDRREQ ? "not an absolute path (as in the "
							       "configuration file; use $PWD/...)"
							     : "invalid");
				return 2;
			}
			break;
		case 'A':
			snprintf(m.cli.admin_group, sizeof(m.cli.admin_group), "%s", optarg);
			m.cli_admin = true;
			break;
		case 'C':
			snprintf(m.cli.client_group, sizeof(m.cli.client_group), "%s", optarg);
			m.cli_client = true;
			break;
		case 'M': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (!*optarg || *end || v > UINT32_MAX) {
				fprintf(stderr, "zonedd: --max-leases %s: not a number\n", optarg);
				return 2;
			}
			m.cli.max_leases_per_conn = (uint32_t)v;
			m.cli_max_leases = true;
			break;
		}
		case 'I': {
			enum zd_isolation iso;

			if (zd_isolation_parse(optarg, &iso) < 0) {
				fprintf(stderr, "zonedd: --isolation %s: not zone, device or auto\n",
					optarg);
				return 2;
			}
			m.cli.isolation = iso;
			m.cli_isolation = true;
			break;
		}
		case 'G': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (!*optarg || *end || v > UINT32_MAX) {
				fprintf(stderr, "zonedd: --grace-ms %s: not a number\n", optarg);
				return 2;
			}
			m.cli.grace_ms = (uint32_t)v;
			m.cli_grace = true;
			break;
		}
		case 'l':
			r = zd_log_level_from_name(optarg);
			if (r < 0) {
				fprintf(stderr, "zonedd: --log-level %s: unknown level\n", optarg);
				return 2;
			}
			m.cli.log_level = r;
			m.cli_log = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("zonedd %s (protocol %d)\n", PACKAGE_VERSION, ZP_PROTOCOL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "zonedd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (m.cli_log)
		zd_log_set_level(m.cli.log_level);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	uv_loop_init(&loop);
	r = zd_daemon_init(d, &loop);
	if (r == 0)
		r = build_config(&m, &d->cfg, NULL, 0, err, sizeof(err));
	/* Before any device opens: the claims a previous life kept. */
	if (r == 0)
		r = zd_daemon_take_passed(d);
	if (r < 0) {
		zd_err("%s", err[0] ? err : strerror(-r));
		return 1;
	}
	zd_log_set_level(d->cfg.log_level);
	r = mkdir_p(d->cfg.state_dir, 0750);
	if (r < 0) {
		zd_err("cannot create state directory %s: %s", d->cfg.state_dir, strerror(-r));
		return 1;
	}
	r = zd_state_open(d, err, sizeof(err));
	if (r < 0) {
		zd_err("%s", err);
		return 1;
	}
	r = zd_daemon_resolve_groups(d, err, sizeof(err));
	if (r < 0) {
		zd_err("%s", err);
		return 1;
	}
	/* A full or read-only state filesystem does not stop the daemon: what
	 * is on the devices is served, only new leases wait for a generation
	 * that is safely on disk (see zd_state_next_token()). */
	r = zd_state_generation_bump(d);
	if (r < 0)
		zd_err("cannot persist the token generation in %s: %s; serving, but new leases "
		       "are refused until it can be", d->cfg.state_dir, strerror(-r));
	for (size_t i = 0; i < d->cfg.nr_devices; i++) {
		r = zd_device_add(d, &d->cfg.devices[i], err, sizeof(err));
		if (r < 0) {
			zd_err("device %s: %s", d->cfg.devices[i].id, err);
			zd_daemon_fini(d);
			return 1;
		}
	}
	/* The leases of the previous life, orphaned for grace_ms. A table
	 * that cannot be rewritten does not stop the daemon, but no lease is
	 * granted until it can record one; one that cannot be read refuses
	 * every new lease until it is fixed and the daemon restarted. */
	r = zd_lease_adopt(d);
	if (r < 0)
		zd_err("the lease table in %s cannot be used: %s; new leases are refused",
		       d->cfg.state_dir, strerror(-r));
	warn_sparse_space(d);
	d->reload = do_reload;
	d->stop_hook = stop_hook;
	uv_timer_init(&loop, &drain_timer);
	drain_timer.data = d;
	uv_timer_start(&drain_timer, drain_timer_cb, 1000, 1000);

	r = zd_daemon_listen(d);
	if (r < 0) {
		zd_daemon_fini(d);
		return 1;
	}
	zd_notice("zonedd %s ready: %zu device(s), generation %llu", PACKAGE_VERSION,
		  d->cfg.nr_devices, (unsigned long long)d->generation);
	uv_run(&loop, UV_RUN_DEFAULT);
	zd_daemon_fini(d);
	zd_state_close(d);
	r = uv_loop_close(&loop);
	if (r < 0)
		zd_debug("loop closed with handles open: %s", uv_strerror(r));
	zd_config_free(&d->cfg);
	zd_config_free(&m.cli);
	return d->exit_status;
}
