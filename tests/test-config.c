/* Configuration file tests: the defaults, valid files, every kind of invalid
 * file with the exact "FILE:LINE: key: reason" it earns, and the guarantee
 * that a rejected file leaves the configuration untouched. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "daemon/zdev.h"
#include "proto/proto.h"

static char tmpdir[256];
static char conf_path[300];

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/zoned-config-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(conf_path, sizeof(conf_path), "%s/zonedd.conf", tmpdir);
}

static void teardown(void)
{
	unlink(conf_path);
	rmdir(tmpdir);
}

static void write_conf_len(const char *text, size_t len)
{
	FILE *f = fopen(conf_path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static void write_conf(const char *text)
{
	write_conf_len(text, strlen(text));
}

/* Loads text over the defaults; err gets the message without the file name. */
static int load_text(struct zd_config *cfg, const char *text, char *err, size_t err_len)
{
	char full[1024];
	size_t plen = strlen(conf_path);
	int r;

	write_conf(text);
	zd_config_defaults(cfg);
	r = zd_config_load(cfg, conf_path, full, sizeof(full));
	if (r < 0) {
		ck_assert_msg(strncmp(full, conf_path, plen) == 0 && full[plen] == ':',
			      "error does not start with the file name: %s", full);
		/* "FILE:LINE: ..." keeps "LINE: ...", "FILE: ..." keeps "...". */
		snprintf(err, err_len, "%s", full + plen + 1 + (full[plen + 1] == ' '));
	} else {
		ck_assert_str_eq(full, "");
		err[0] = '\0';
	}
	return r;
}

START_TEST(test_defaults)
{
	struct zd_config cfg;

	zd_config_defaults(&cfg);
	ck_assert_str_eq(cfg.socket_path, ZP_DEFAULT_SOCKET);
	ck_assert_str_eq(cfg.socket_path, "/run/zoned/zonedd.sock");
	ck_assert_str_eq(cfg.state_dir, ZONED_STATE_DIR);
	ck_assert_ptr_null(cfg.devices);
	ck_assert_uint_eq(cfg.nr_devices, 0);
	ck_assert_str_eq(cfg.client_group, "");
	ck_assert_str_eq(cfg.admin_group, "");
	ck_assert_uint_eq(cfg.max_leases_per_conn, 64);
	ck_assert_uint_eq(cfg.max_conns_per_uid, 256);
	ck_assert_uint_eq(cfg.max_wait_ms, 60000);
	ck_assert_uint_eq(cfg.grace_ms, 30000);
	ck_assert(!cfg.lease_table_sync_always);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);
	zd_config_free(&cfg);
	zd_config_free(&cfg); /* idempotent */
	zd_config_free(NULL);
}
END_TEST

START_TEST(test_full_file)
{
	struct zd_config cfg;
	char err[512];
	int r;

	r = load_text(&cfg,
		      "# /etc/zoned/zonedd.conf\n"
		      "{\n"
		      "  // where clients connect\n"
		      "  \"socket\": \"/run/zoned/other#not-a-comment.sock\",\n"
		      "  \"state_dir\": \"/var/lib/zoned-test\",   # trailing comment\n"
		      "  \"devices\": [\n"
		      "    { \"id\": \"ssd0\", \"path\": \"/dev/nvme0n2\", \"isolation\": \"device\" },\n"
		      "    { \"id\": \"emu0\", \"emulate\": \"/var/lib/zoned/emu0.img\",\n"
		      "      \"spec\": \"size=4G,zone-size=32M\" },\n"
		      "    { \"id\": \"smr-1:a@b+c\", \"emulate\": \"/srv/e.img\" }\n"
		      "  ],\n"
		      "  \"client_group\": \"zoned\",\n"
		      "  \"admin_group\": \"zoned-admin\",\n"
		      "  \"max_leases_per_connection\": 8,\n"
		      "  \"max_connections_per_uid\": 0,\n"
		      "  \"max_wait_ms\": 4294967295,\n"
		      "  \"grace_ms\": 1500,\n"
		      "  \"lease_table_sync\": \"always\",\n"
		      "  \"log_level\": \"debug\",\n"
		      "  \"isolation\": \"zone\"\n"
		      "}\n",
		      err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(cfg.socket_path, "/run/zoned/other#not-a-comment.sock");
	ck_assert_str_eq(cfg.state_dir, "/var/lib/zoned-test");
	ck_assert_uint_eq(cfg.nr_devices, 3);
	ck_assert_str_eq(cfg.devices[0].id, "ssd0");
	ck_assert_str_eq(cfg.devices[0].path, "/dev/nvme0n2");
	ck_assert(!cfg.devices[0].emulated);
	ck_assert_str_eq(cfg.devices[0].spec, "");
	ck_assert_str_eq(cfg.devices[1].id, "emu0");
	ck_assert_str_eq(cfg.devices[1].path, "/var/lib/zoned/emu0.img");
	ck_assert(cfg.devices[1].emulated);
	ck_assert_str_eq(cfg.devices[1].spec, "size=4G,zone-size=32M");
	ck_assert_str_eq(cfg.devices[2].id, "smr-1:a@b+c");
	ck_assert(cfg.devices[2].emulated);
	ck_assert_str_eq(cfg.devices[2].spec, "");
	ck_assert_str_eq(cfg.client_group, "zoned");
	ck_assert_str_eq(cfg.admin_group, "zoned-admin");
	ck_assert_uint_eq(cfg.max_leases_per_conn, 8);
	ck_assert_uint_eq(cfg.max_conns_per_uid, 0);
	ck_assert_uint_eq(cfg.max_wait_ms, 4294967295u);
	ck_assert_uint_eq(cfg.grace_ms, 1500);
	ck_assert(cfg.lease_table_sync_always);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	ck_assert_int_eq(cfg.isolation, ZD_ISOLATION_ZONE);
	ck_assert_int_eq(cfg.devices[0].isolation, ZD_ISOLATION_DEVICE);
	ck_assert_int_eq(cfg.devices[1].isolation, ZD_ISOLATION_AUTO);
	zd_config_free(&cfg);
}
END_TEST

/* What the file does not name keeps the value it had. */
START_TEST(test_partial_file)
{
	struct zd_config cfg;
	char err[512];

	ck_assert_int_eq(load_text(&cfg, "{}", err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.socket_path, ZP_DEFAULT_SOCKET);
	ck_assert_uint_eq(cfg.max_leases_per_conn, 64);
	zd_config_free(&cfg);

	ck_assert_int_eq(load_text(&cfg, "{\"log_level\": \"warning\", \"grace_ms\": 0}\n", err,
				   sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_WARNING);
	ck_assert_uint_eq(cfg.grace_ms, 0);
	ck_assert_str_eq(cfg.state_dir, ZONED_STATE_DIR);
	ck_assert_uint_eq(cfg.max_wait_ms, 60000);
	zd_config_free(&cfg);

	/* Every level name the command line takes, and digits. */
	ck_assert_int_eq(load_text(&cfg, "{\"log_level\": \"err\"}", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_ERR);
	ck_assert_int_eq(load_text(&cfg, "{\"log_level\": \"notice\"}", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_NOTICE);
	ck_assert_int_eq(load_text(&cfg, "{\"log_level\": \"6\"}", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);

	/* Groups may be emptied to lift the restriction. */
	ck_assert_int_eq(load_text(&cfg, "{\"client_group\": \"\", \"admin_group\": \"wheel\"}",
				   err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.client_group, "");
	ck_assert_str_eq(cfg.admin_group, "wheel");
	/* Escapes are JSON's: the key is log_level. */
	ck_assert_int_eq(load_text(&cfg, "{\"log\\u005flevel\": \"debug\"}", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	/* A zone size alone sets the zone capacity too, as the emulator does. */
	ck_assert_int_eq(load_text(&cfg, "{\"devices\": [{\"id\": \"e\", \"emulate\": \"/e\",\n"
				   "\"spec\": \"size=64M,zone-size=4M\"}]}", err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nr_devices, 1);
	zd_config_free(&cfg);
	/* CRLF line ends. */
	ck_assert_int_eq(load_text(&cfg, "{\r\n\"grace_ms\": 7\r\n}\r\n", err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.grace_ms, 7);
}
END_TEST

/* Devices from the file replace those already in cfg; no "devices" key
 * keeps them; an empty list clears them. */
START_TEST(test_devices_replace)
{
	struct zd_config cfg;
	struct zd_device_conf dc;
	char err[512];

	zd_config_defaults(&cfg);
	memset(&dc, 0, sizeof(dc));
	snprintf(dc.id, sizeof(dc.id), "cli0");
	snprintf(dc.path, sizeof(dc.path), "/dev/sdz");
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), 0);

	write_conf("{\"grace_ms\": 1}");
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nr_devices, 1);
	ck_assert_str_eq(cfg.devices[0].id, "cli0");

	write_conf("{\"devices\": [{\"id\": \"f0\", \"path\": \"/dev/sdy\"}]}");
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nr_devices, 1);
	ck_assert_str_eq(cfg.devices[0].id, "f0");

	write_conf("{\"devices\": []}");
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nr_devices, 0);
	zd_config_free(&cfg);
}
END_TEST

/* A rejected file changes nothing: a reload with a broken file keeps the
 * running configuration. */
START_TEST(test_error_keeps_config)
{
	struct zd_config cfg;
	struct zd_device_conf dc;
	char err[512];

	zd_config_defaults(&cfg);
	memset(&dc, 0, sizeof(dc));
	snprintf(dc.id, sizeof(dc.id), "keep");
	snprintf(dc.path, sizeof(dc.path), "/dev/sdk");
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), 0);
	write_conf("{\"socket\": \"/tmp/changed\", \"grace_ms\": 5,\n"
		   " \"devices\": [{\"id\": \"new\", \"path\": \"/dev/sdn\"}],\n"
		   " \"max_wait_ms\": -1}\n");
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(cfg.socket_path, ZP_DEFAULT_SOCKET);
	ck_assert_uint_eq(cfg.grace_ms, 30000);
	ck_assert_uint_eq(cfg.nr_devices, 1);
	ck_assert_str_eq(cfg.devices[0].id, "keep");
	zd_config_free(&cfg);
}
END_TEST

START_TEST(test_missing_file)
{
	struct zd_config cfg;
	char err[512], path[400];

	zd_config_defaults(&cfg);
	snprintf(path, sizeof(path), "%s/nope.conf", tmpdir);
	/* main tolerates -ENOENT for the default path only. */
	ck_assert_int_eq(zd_config_load(&cfg, path, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	ck_assert_int_eq(zd_config_load(&cfg, tmpdir, err, sizeof(err)), -EISDIR);
	ck_assert_ptr_nonnull(strstr(err, "directory"));
	/* A NULL err buffer is allowed. */
	ck_assert_int_eq(zd_config_load(&cfg, path, NULL, 0), -ENOENT);
	ck_assert_str_eq(cfg.socket_path, ZP_DEFAULT_SOCKET);
	zd_config_free(&cfg);
}
END_TEST

START_TEST(test_unreadable)
{
	struct zd_config cfg;
	char err[512];

	if (geteuid() == 0)
		return; /* root reads anything; nothing to see */
	write_conf("{}");
	ck_assert_int_eq(chmod(conf_path, 0), 0);
	zd_config_defaults(&cfg);
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "Permission denied"));
}
END_TEST

START_TEST(test_too_large)
{
	struct zd_config cfg;
	size_t n = 1024 * 1024 + 1;
	char *big = malloc(n), err[512];

	ck_assert_ptr_nonnull(big);
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	write_conf_len(big, n);
	zd_config_defaults(&cfg);
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), -EFBIG);
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	/* One byte less is fine. */
	big[n - 2] = '}';
	write_conf_len(big, n - 1);
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), 0);
	free(big);
}
END_TEST

START_TEST(test_nul_byte)
{
	struct zd_config cfg;
	char err[512];

	write_conf_len("{\n\"grace_ms\": 1\0}", 17);
	zd_config_defaults(&cfg);
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":2: the file contains a NUL byte"));
}
END_TEST

/* Every kind of invalid file and the exact message after "FILE:". */
static const struct {
	const char *text;
	const char *err;
} bad[] = {
	/* Not JSON. */
	{ "", "the file is empty (an empty configuration is {})" },
	{ "  \n# only a comment\n// and another\n", "the file is empty (an empty configuration is {})" },
	{ "{\n\"grace_ms\": 1\n\"max_wait_ms\": 2\n}", "3:1: syntax error: *" },
	{ "{\"grace_ms\": 1,}", "1:16: syntax error: *" },
	{ "{\n  \"devices\": [\n", "3: unexpected end of file (an object, array or string is not closed)" },
	{ "{\"socket\": \"/run/x}\n", "2: unexpected end of file (an object, array or string is not closed)" },
	{ "{} {}", "1:4: syntax error: *" },
	{ "{}\n}\n", "2:1: syntax error: *" },
	{ "{\"grace_ms\": 01}", "1:16: syntax error: *" },
	{ "{\"grace_ms\": True}", "1:14: syntax error: *" },
	{ "{\n /* no */ }", "2:2: syntax error: *" },
	{ "{\"admin_group\": \"\xff\"}", "1:18: syntax error: invalid utf-8 string" },
	{ "{\"grace_ms\": 5", "1: unexpected end of file (an object, array or string is not closed)" },
	{ "{\"devices\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	  "1:44: syntax error: *" },
	{ "{\n'grace_ms': 1}", "2: strings must be in double quotes" },
	{ "{\"admin_group\": 'x'}", "1:17: syntax error: *" },
	/* Not the schema. */
	{ "[]", "1: the configuration must be a JSON object ({...}), not an array" },
	{ "\n\n\"x\"", "3: the configuration must be a JSON object ({...}), not a string" },
	{ "null", "1: the configuration must be a JSON object ({...}), not null" },
	{ "{\"grace_ms\": 1,\n \"grace_ms\": 2}", "2: grace_ms: key given twice" },
	{ "{\"log_level\": \"info\",\n \"log\\u005flevel\": \"info\"}", "2: log_level: key given twice" },
	{ "{\"devices\": [\n {\"id\": \"a\", \"path\": \"/dev/a\",\n  \"id\": \"b\"}]}",
	  "3: devices[0].id: key given twice" },
	{ "{\n\"max_wiat_ms\": 5}", "2: max_wiat_ms: unknown key (did you mean 'max_wait_ms'?)" },
	{ "{\"listen\": \"/x\"}", "1: listen: unknown key (known: socket, state_dir, devices, "
	  "client_group, admin_group, max_leases_per_connection, max_connections_per_uid, "
	  "max_wait_ms, max_waiters_per_connection, max_waiters_per_uid, grace_ms, "
	  "lease_table_sync, log_level, isolation)" },
	{ "{\"isolation\": \"zones\"}",
	  "1: isolation: 'zones' is not an isolation mode (auto, zone, device)" },
	{ "{\"devices\": [{\"id\": \"a\", \"path\": \"/dev/a\",\n \"isolation\": 1}]}",
	  "2: devices[0].isolation: must be a string, not a number" },
	{ "{\"lease_table_sync\": \"never\"}",
	  "1: lease_table_sync: must be \"background\" or \"always\", not 'never'" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\",\n \"size\": \"1G\"}]}",
	  "2: devices[0].size: unknown key (known: id, path, emulate, spec, faults, isolation)" },
	/* Types and ranges. */
	{ "{\"socket\": 5}", "1: socket: must be a string, not a number" },
	{ "{\"socket\": \"run/zoned.sock\"}", "1: socket: 'run/zoned.sock' is not an absolute path" },
	{ "{\"socket\": \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	  "1: socket: too long (113 bytes, at most 107)" },
	{ "{\"socket\": \"/a\\u0000b\"}", "1: socket: must not contain a NUL character" },
	{ "{\"state_dir\": null}", "1: state_dir: must be a string, not null" },
	{ "{\"state_dir\": \"\"}", "1: state_dir: '' is not an absolute path" },
	{ "{\n\n\"max_leases_per_connection\": \"64\"}",
	  "3: max_leases_per_connection: must be a whole number, not a string" },
	{ "{\"max_connections_per_uid\": -1}", "1: max_connections_per_uid: must not be negative" },
	{ "{\"max_wait_ms\": 1.5}",
	  "1: max_wait_ms: must be a whole number, not a number with a fraction or exponent" },
	{ "{\"max_wait_ms\": 1e3}",
	  "1: max_wait_ms: must be a whole number, not a number with a fraction or exponent" },
	{ "{\"grace_ms\": NaN}",
	  "1: grace_ms: must be a whole number, not a number with a fraction or exponent" },
	{ "{\"grace_ms\": 4294967296}", "1: grace_ms: 4294967296 is too large (at most 4294967295)" },
	{ "{\"grace_ms\": 99999999999999999999999}",
	  "1: grace_ms: 18446744073709551615 is too large (at most 4294967295)" },
	{ "{\"grace_ms\": true}", "1: grace_ms: must be a whole number, not a boolean" },
	{ "{\"log_level\": \"verbose\"}",
	  "1: log_level: unknown level 'verbose' (err, warning, notice, info or debug)" },
	{ "{\"log_level\": 7}", "1: log_level: must be a string, not a number" },
	{ "{\"client_group\": \"a:b\"}", "1: client_group: 'a:b' is not a valid group name" },
	{ "{\"client_group\": \"-x\"}", "1: client_group: '-x' is not a valid group name" },
	{ "{\"admin_group\": \"wheel \"}", "1: admin_group: 'wheel ' has blanks at an end" },
	{ "{\"admin_group\": [\"wheel\"]}", "1: admin_group: must be a string, not an array" },
	/* Devices. */
	{ "{\"devices\": {\"id\": \"a\"}}", "1: devices: must be an array, not an object" },
	{ "{\"devices\": [\n \"/dev/sda\"]}", "2: devices[0]: must be an object, not a string" },
	{ "{\"devices\": [\n {\"id\": \"a\", \"path\": \"/dev/a\"},\n {\"path\": \"/dev/b\"}]}",
	  "3: devices[1]: missing \"id\" (the name clients use for the device)" },
	{ "{\"devices\": [{\"id\": \"\", \"path\": \"/dev/a\"}]}",
	  "1: devices[0].id: '' is not a valid id (letters, digits and ._:@+- , not starting with - or .)" },
	{ "{\"devices\": [{\"id\": \"a b\", \"path\": \"/dev/a\"}]}",
	  "1: devices[0].id: 'a b' is not a valid id (letters, digits and ._:@+- , not starting with - or .)" },
	{ "{\"devices\": [{\"id\": \"../x\", \"path\": \"/dev/a\"}]}",
	  "1: devices[0].id: '../x' is not a valid id (letters, digits and ._:@+- , not starting with - or .)" },
	{ "{\"devices\": [{\"id\": \"-a\", \"path\": \"/dev/a\"}]}",
	  "1: devices[0].id: '-a' is not a valid id (letters, digits and ._:@+- , not starting with - or .)" },
	{ "{\"devices\": [{\"id\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"path\": \"/dev/a\"}]}",
	  "1: devices[0].id: too long (64 bytes, at most 63)" },
	{ "{\"devices\": [{\"id\": 1, \"path\": \"/dev/a\"}]}", "1: devices[0].id: must be a string, not a number" },
	{ "{\"devices\": [{\"id\": \"a\"}]}",
	  "1: devices[0]: needs \"path\" (a zoned block device) or \"emulate\" (the backing file of an emulated device)" },
	{ "{\"devices\": [{\"id\": \"a\", \"path\": \"/dev/a\", \"emulate\": \"/a.img\"}]}",
	  "1: devices[0]: \"path\" and \"emulate\" exclude each other" },
	{ "{\"devices\": [{\"id\": \"a\", \"path\": \"sda\"}]}", "1: devices[0].path: 'sda' is not an absolute path" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"a.img\"}]}",
	  "1: devices[0].emulate: 'a.img' is not an absolute path" },
	{ "{\"devices\": [{\"id\": \"a\", \"path\": \"/dev/a\", \"spec\": \"size=1G\"}]}",
	  "1: devices[0].spec: only an emulated device (\"emulate\") takes a spec" },
	{ "{\"devices\": [{\"id\": \"a\", \"path\": \"/dev/a\", \"faults\": \"vanish\"}]}",
	  "1: devices[0].faults: only an emulated device (\"emulate\") takes faults" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"faults\": \"eio:write\"}]}",
	  "1: devices[0].faults: 'eio:write': eio and enospc need an operation (report, zone-op, "
	  "refresh, open-fd, pwrite, pread, fence, any): eio:OP[:N[:COUNT]]" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": 4}]}",
	  "1: devices[0].spec: must be a string, not a number" },
	{ "{\"devices\": [\n{\"id\": \"a\", \"path\": \"/dev/a\"},\n{\"id\": \"a\", \"path\": \"/dev/b\"}]}",
	  "3: devices[1].id: 'a' is already the id of devices[0]" },
	{ "{\"devices\": [\n{\"id\": \"a\", \"emulate\": \"/x\"},\n{\"id\": \"b\", \"path\": \"/x\"}]}",
	  "3: devices[1].path: '/x' is already devices[0]" },
	/* Emulated device specs. */
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\",\n \"spec\": \"size=1G,,conv=1\"}]}",
	  "2: devices[0].spec: empty item in 'size=1G,,conv=1'" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"size\"}]}",
	  "1: devices[0].spec: 'size' is not KEY=VALUE" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"zonesize=1M\"}]}",
	  "1: devices[0].spec: unknown parameter 'zonesize' (did you mean 'zone-size'?)" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"colour=red\"}]}",
	  "1: devices[0].spec: unknown parameter 'colour' (known: size, zone-size, zone-capacity, conv, max-open, max-active, lbs)" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"size=1G,size=2G\"}]}",
	  "1: devices[0].spec: parameter 'size' given twice" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"size=1Q\"}]}",
	  "1: devices[0].spec: size=1Q: not a size (a number of bytes with an optional K, M, G or T suffix)" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"conv=-1\"}]}",
	  "1: devices[0].spec: conv=-1: not a whole number" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"max-open=99999999999\"}]}",
	  "1: devices[0].spec: max-open=99999999999: too large" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"zone-size=4M,zone-capacity=8M\"}]}",
	  "1: devices[0].spec: 'zone-size=4M,zone-capacity=8M': zone-capacity exceeds zone-size" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"zone-capacity=6000\"}]}",
	  "1: devices[0].spec: 'zone-capacity=6000': zone-capacity must be a non-zero multiple of lbs" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"size=1T,zone-size=4K\"}]}",
	  "1: devices[0].spec: 'size=1T,zone-size=4K': the emulator refuses this geometry (too large, or too many zones)" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"zone-capacity=48M\"}]}",
	  "1: devices[0].spec: 'zone-capacity=48M': zone-capacity exceeds zone-size" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"zone-size=24M\"}]}",
	  "1: devices[0].spec: 'zone-size=24M': zone-size must be a power of two, at least lbs" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"size=100M\"}]}",
	  "1: devices[0].spec: 'size=100M': size must be a non-zero multiple of zone-size" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"size=64M,conv=2\"}]}",
	  "1: devices[0].spec: 'size=64M,conv=2': conv leaves no sequential zone (the default is 2)" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"lbs=1K\"}]}",
	  "1: devices[0].spec: 'lbs=1K': lbs must be 512 or 4096" },
	{ "{\"devices\": [{\"id\": \"a\", \"emulate\": \"/a\", \"spec\": \"max-open=20\"}]}",
	  "1: devices[0].spec: 'max-open=20': max-open exceeds max-active" },
};

START_TEST(test_invalid)
{
	struct zd_config cfg;
	char err[1024];
	size_t want_len;
	int r;

	r = load_text(&cfg, bad[_i].text, err, sizeof(err));
	ck_assert_msg(r == -EINVAL, "case %d accepted (%d): %s", _i, r, bad[_i].text);
	/* A trailing '*' stands for json-c's own words for a syntax error. */
	want_len = strlen(bad[_i].err);
	if (want_len && bad[_i].err[want_len - 1] == '*')
		want_len--;
	else
		want_len = sizeof(err);
	ck_assert_msg(strncmp(err, bad[_i].err, want_len) == 0, "case %d:\n  want '%s'\n  got  '%s'",
		      _i, bad[_i].err, err);
	ck_assert_uint_eq(cfg.nr_devices, 0);
	zd_config_free(&cfg);
}
END_TEST

/* An object with an absurd number of keys is refused before the quadratic
 * duplicate check gets expensive. */
START_TEST(test_too_many_keys)
{
	struct zd_config cfg;
	char *text = malloc(65536), err[1024];
	size_t off = 0;

	ck_assert_ptr_nonnull(text);
	off += (size_t)sprintf(text + off, "{");
	for (int i = 0; i < 100; i++)
		off += (size_t)sprintf(text + off, "%s\n\"k%d\": 1", i ? "," : "", i);
	sprintf(text + off, "}");
	ck_assert_int_eq(load_text(&cfg, text, err, sizeof(err)), -EINVAL);
	/* The 65th key, on line 66. */
	ck_assert_str_eq(err, "66: more than 64 keys in one object");
	free(text);
}
END_TEST

START_TEST(test_deep_nesting)
{
	struct zd_config cfg;
	char text[2048], err[1024];
	int n = 0;

	for (int i = 0; i < 200; i++)
		text[n++] = '[';
	for (int i = 0; i < 200; i++)
		text[n++] = ']';
	text[n] = '\0';
	ck_assert_int_eq(load_text(&cfg, text, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "syntax error"));
}
END_TEST

/* An error message never overflows the buffer it is given. */
START_TEST(test_small_err_buffer)
{
	struct zd_config cfg;
	char err[12];

	write_conf("{\"no_such_key\": 1}");
	zd_config_defaults(&cfg);
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), -EINVAL);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
}
END_TEST

START_TEST(test_add_device)
{
	struct zd_config cfg;
	struct zd_device_conf dc;

	zd_config_defaults(&cfg);
	memset(&dc, 0, sizeof(dc));
	snprintf(dc.id, sizeof(dc.id), "emu0");
	snprintf(dc.path, sizeof(dc.path), "/var/lib/zoned/emu0.img");
	dc.emulated = true;
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), 0);
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), -EEXIST);
	snprintf(dc.id, sizeof(dc.id), "emu1");
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), 0);
	ck_assert_uint_eq(cfg.nr_devices, 2);
	ck_assert_str_eq(cfg.devices[1].id, "emu1");
	ck_assert(cfg.devices[1].emulated);

	snprintf(dc.id, sizeof(dc.id), "%s", "");
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), -EINVAL);
	snprintf(dc.id, sizeof(dc.id), "has space");
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), -EINVAL);
	snprintf(dc.id, sizeof(dc.id), "ok");
	dc.path[0] = '\0';
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), -EINVAL);
	memset(dc.id, 'a', sizeof(dc.id)); /* not terminated */
	snprintf(dc.path, sizeof(dc.path), "/dev/x");
	ck_assert_int_eq(zd_config_add_device(&cfg, &dc), -EINVAL);
	ck_assert_int_eq(zd_config_add_device(NULL, &dc), -EINVAL);
	ck_assert_uint_eq(cfg.nr_devices, 2);
	zd_config_free(&cfg);
	ck_assert_ptr_null(cfg.devices);
	ck_assert_uint_eq(cfg.nr_devices, 0);
}
END_TEST

/* The example shipped as /etc/zoned/zonedd.conf must load. */
START_TEST(test_shipped_example)
{
	struct zd_config cfg;
	char path[1024], err[1024];
	const char *srcdir = getenv("top_srcdir");

	snprintf(path, sizeof(path), "%s/systemd/zonedd.conf", srcdir ? srcdir : TOP_SRCDIR);
	zd_config_defaults(&cfg);
	ck_assert_msg(zd_config_load(&cfg, path, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg.client_group, "zoned");
	ck_assert_str_eq(cfg.admin_group, "zoned-admin");
	zd_config_free(&cfg);
}
END_TEST

/* A FIFO (or any file that is not a regular one) is refused at once: the
 * open must not wait for a writer that never comes. */
START_TEST(test_not_regular_file)
{
	struct zd_config cfg;
	char err[512];
	time_t t0 = time(NULL);

	unlink(conf_path);
	ck_assert_int_eq(mkfifo(conf_path, 0600), 0);
	zd_config_defaults(&cfg);
	ck_assert_int_eq(zd_config_load(&cfg, conf_path, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strncmp(err, conf_path, strlen(conf_path)) == 0, "%s", err);
	ck_assert_msg(strstr(err, ": is a FIFO, not a regular file"), "%s", err);
	ck_assert_int_le(time(NULL) - t0, 1);
	ck_assert_int_eq(zd_config_load(&cfg, "/dev/null", err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/dev/null: is a character device"), "%s", err);
	ck_assert_str_eq(cfg.socket_path, ZP_DEFAULT_SOCKET);
	zd_config_free(&cfg);
	unlink(conf_path);
}
END_TEST

/* On reload, a device served now may stay or go, not move to another path
 * or backend: the file is refused with the line of the key. */
START_TEST(test_reload_keeps_device_paths)
{
	struct zd_device_conf running[2];
	struct zd_config cfg;
	char err[1024], text[1024], img[400], alias[400];
	int fd;

	memset(running, 0, sizeof(running));
	snprintf(img, sizeof(img), "%s/a.img", tmpdir);
	fd = open(img, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(running[0].id, sizeof(running[0].id), "emuA");
	snprintf(running[0].path, sizeof(running[0].path), "%s", img);
	running[0].emulated = true;
	snprintf(running[1].id, sizeof(running[1].id), "sdz");
	snprintf(running[1].path, sizeof(running[1].path), "/dev/sdz");

	/* The same paths (one by another name of the same file), and a new device. */
	snprintf(alias, sizeof(alias), "%s/./a.img", tmpdir);
	snprintf(text, sizeof(text),
		 "{\n  \"devices\": [\n    { \"id\": \"emuA\", \"emulate\": \"%s\" },\n"
		 "    { \"id\": \"sdz\", \"path\": \"/dev/sdz\" },\n"
		 "    { \"id\": \"emuB\", \"emulate\": \"%s/b.img\" }\n  ]\n}\n", alias, tmpdir);
	write_conf(text);
	zd_config_defaults(&cfg);
	ck_assert_msg(zd_config_reload(&cfg, conf_path, running, 2, err, sizeof(err)) == 0, "%s",
		      err);
	ck_assert_uint_eq(cfg.nr_devices, 3);
	zd_config_free(&cfg);

	/* emuA moved: refused, naming the line, the key and the running path. */
	snprintf(text, sizeof(text),
		 "{\n  \"devices\": [\n    { \"id\": \"sdz\", \"path\": \"/dev/sdz\" },\n"
		 "    { \"id\": \"emuA\",\n      \"emulate\": \"%s/moved.img\" }\n  ]\n}\n", tmpdir);
	write_conf(text);
	zd_config_defaults(&cfg);
	ck_assert_int_eq(zd_config_reload(&cfg, conf_path, running, 2, err, sizeof(err)), -EINVAL);
	snprintf(text, sizeof(text), "%s:5: devices[1].emulate: device 'emuA' is served from %s;",
		 conf_path, img);
	ck_assert_msg(strncmp(err, text, strlen(text)) == 0, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "a reload cannot move it"));
	ck_assert_ptr_null(cfg.devices);
	/* Without running devices (start-up) the same file is fine. */
	ck_assert_msg(zd_config_load(&cfg, conf_path, err, sizeof(err)) == 0, "%s", err);
	zd_config_free(&cfg);

	/* A kernel device turned into an emulated one at the same path. */
	write_conf("{ \"devices\": [ { \"id\": \"sdz\", \"emulate\": \"/dev/sdz\" } ] }");
	zd_config_defaults(&cfg);
	ck_assert_int_eq(zd_config_reload(&cfg, conf_path, running, 2, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, ":1: devices[0].emulate: device 'sdz' is served from /dev/sdz "
			      "(a kernel device);"), "%s", err);
	zd_config_free(&cfg);
	unlink(img);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_full_file);
	tcase_add_test(tc, test_partial_file);
	tcase_add_test(tc, test_devices_replace);
	tcase_add_test(tc, test_error_keeps_config);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_unreadable);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_loop_test(tc, test_invalid, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_too_many_keys);
	tcase_add_test(tc, test_deep_nesting);
	tcase_add_test(tc, test_small_err_buffer);
	tcase_add_test(tc, test_add_device);
	tcase_add_test(tc, test_shipped_example);
	tcase_add_test(tc, test_not_regular_file);
	tcase_add_test(tc, test_reload_keeps_device_paths);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
