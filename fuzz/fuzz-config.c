/* libFuzzer target: zd_config_load() on the input as a configuration file.
 * Beyond "no crash, no leak": a failure leaves the configuration as it was
 * and says why; a success yields only what the loader promises (valid ids,
 * absolute paths, no duplicates), and reloading the same file over its own
 * devices is accepted (a reload that moves nothing cannot be refused). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "fuzz/fuzz.h"

static struct {
	char dir[256];
	char path[300];
	int baseline_fds;
} h;

static void cleanup(void)
{
	if (h.path[0])
		unlink(h.path);
	if (h.dir[0])
		rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir(h.dir, sizeof(h.dir), "config");
	snprintf(h.path, sizeof(h.path), "%s/zonedd.conf", h.dir);
	atexit(cleanup);
	h.baseline_fds = fuzz_count_fds();
	return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
	int fd = open(h.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		fuzz_die("open %s: %m", h.path);
	while (size) {
		ssize_t k = write(fd, data, size);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			fuzz_die("write %s: %m", h.path);
		data += k;
		size -= (size_t)k;
	}
	close(fd);
}

static void check_loaded(const struct zd_config *cfg)
{
	for (size_t i = 0; i < cfg->nr_devices; i++) {
		const struct zd_device_conf *dc = &cfg->devices[i];

		if (!dc->id[0] || memchr(dc->id, '\0', sizeof(dc->id)) == NULL)
			fuzz_die("devices[%zu]: empty or unterminated id", i);
		if (dc->path[0] != '/')
			fuzz_die("devices[%zu]: path '%s' is not absolute", i, dc->path);
		if (dc->spec[0] && !dc->emulated)
			fuzz_die("devices[%zu]: a spec on a kernel device", i);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->devices[j].id, dc->id) || !strcmp(cfg->devices[j].path, dc->path))
				fuzz_die("devices[%zu] and devices[%zu] share an id or a path", j, i);
	}
	if (cfg->socket_path[0] && cfg->socket_path[0] != '/')
		fuzz_die("socket '%s' is not absolute", cfg->socket_path);
	if (cfg->state_dir[0] != '/')
		fuzz_die("state_dir '%s' is not absolute", cfg->state_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zd_config cfg, def, again;
	char err[1024];
	int r;

	write_input(data, size);
	zd_config_defaults(&cfg);
	zd_config_defaults(&def);
	memset(err, 'x', sizeof(err));
	r = zd_config_load(&cfg, h.path, err, sizeof(err));
	if (!memchr(err, '\0', sizeof(err)))
		fuzz_die("the error message is not terminated");
	if (r < 0) {
		if (!err[0])
			fuzz_die("load failed (%s) without saying why", strerror(-r));
		/* A refused file leaves the configuration untouched. */
		if (cfg.nr_devices || cfg.devices || memcmp(&cfg, &def, sizeof(cfg)))
			fuzz_die("a refused file changed the configuration: %s", err);
	} else {
		if (r != 0 || err[0])
			fuzz_die("load succeeded (%d) with an error message: %s", r, err);
		check_loaded(&cfg);
		zd_config_defaults(&again);
		r = zd_config_reload(&again, h.path, cfg.devices, cfg.nr_devices, err, sizeof(err));
		if (r < 0)
			fuzz_die("reloading the file over its own devices failed: %s", err);
		if (again.nr_devices != cfg.nr_devices)
			fuzz_die("the same file gave %zu devices, then %zu", cfg.nr_devices,
				 again.nr_devices);
		for (size_t i = 0; i < cfg.nr_devices; i++)
			if (memcmp(&cfg.devices[i], &again.devices[i], sizeof(cfg.devices[i])))
				fuzz_die("the same file gave two values of devices[%zu]", i);
		zd_config_free(&again);
	}
	zd_config_free(&cfg);
	zd_config_free(&def);
	fuzz_check_fds(h.baseline_fds);
	return 0;
}
