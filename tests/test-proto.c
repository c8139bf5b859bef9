/* Protocol tests: the daemon's dispatcher driven over a real SOCK_SEQPACKET
 * socketpair with real fds — the JSON-RPC 2.0 specification's examples,
 * oversized packets, wrong parameter types, stray fds, leases. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/log.h"

#define HELLO1 "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1}"
#define HELLO3 "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":3}"

static struct zd_daemon d;
static uv_loop_t loop;
static int peer = -1;
static char tmpdir[256];

static void setup(void)
{
	struct zd_device_conf dc;
	char why[256] = "";
	int sv[2];

	zd_log_set_level(LOG_WARNING);
	snprintf(tmpdir, sizeof(tmpdir), "%s/zoned-proto-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(zd_daemon_init(&d, &loop), 0);
	zd_config_defaults(&d.cfg);
	snprintf(d.cfg.state_dir, sizeof(d.cfg.state_dir), "%s", tmpdir);
	ck_assert_int_eq(zd_state_generation_bump(&d), 0);
	memset(&dc, 0, sizeof(dc));
	dc.emulated = true;
	snprintf(dc.id, sizeof(dc.id), "emu0");
	snprintf(dc.path, sizeof(dc.path), "%s/emu0.img", tmpdir);
	/* 16 zones of 1 MiB, 2 conventional, limits 4/6. */
	snprintf(dc.spec, sizeof(dc.spec),
		 "size=16M,zone-size=1M,zone-capacity=768K,conv=2,max-open=4,max-active=6,lbs=4096");
	ck_assert_msg(zd_device_add(&d, &dc, why, sizeof(why)) == 0, "%s", why);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_eq(zd_conn_accept(&d, sv[0]), 0);
	peer = sv[1];
}

static void teardown(void)
{
	char cmd[300];

	close(peer);
	peer = -1;
	/* Let the daemon see the hang-up and give everything back. */
	for (int i = 0; i < 50; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	zd_daemon_stop(&d);
	uv_run(&loop, UV_RUN_DEFAULT);
	zd_daemon_fini(&d);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	zd_config_free(&d.cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Runs the loop until a reply packet is there or a bound is hit. Returns
 * the parsed reply (NULL if none came); *fd gets an attached fd or -1. */
static struct json_object *wait_reply(int *fd, int max_iter)
{
	static char buf[ZP_MSG_MAX + 1];

	for (int i = 0; i < max_iter; i++) {
		ssize_t n = zp_recv(peer, buf, sizeof(buf), fd, MSG_DONTWAIT);

		if (n > 0) {
			struct json_object *o = zp_parse(buf, (size_t)n);

			ck_assert_msg(o != NULL, "daemon sent invalid JSON: %.*s", (int)n, buf);
			return o;
		}
		ck_assert_int_eq(n, -EAGAIN);
		uv_run(&loop, UV_RUN_NOWAIT);
		if (i > 100)
			usleep(1000);
	}
	return NULL;
}

static struct json_object *rpc_raw_fd(const char *req, size_t len, int *fd)
{
	ck_assert_int_eq(zp_send(peer, req, len, -1, 0), 0);
	return wait_reply(fd, 5000);
}

static struct json_object *rpc(const char *req)
{
	return rpc_raw_fd(req, strlen(req), NULL);
}

static void no_reply(const char *req)
{
	struct json_object *o;

	ck_assert_int_eq(zp_send(peer, req, strlen(req), -1, 0), 0);
	o = wait_reply(NULL, 200);
	ck_assert_msg(o == NULL, "unexpected reply: %s", o ? zp_to_string(o, NULL) : "");
}

static int err_code(struct json_object *resp)
{
	struct json_object *e, *c;

	if (!json_object_object_get_ex(resp, "error", &e) ||
	    !json_object_object_get_ex(e, "code", &c))
		return 0;
	return json_object_get_int(c);
}

static const char *err_msg(struct json_object *resp)
{
	struct json_object *e, *m;

	if (!json_object_object_get_ex(resp, "error", &e) ||
	    !json_object_object_get_ex(e, "message", &m))
		return "";
	return json_object_get_string(m);
}

static struct json_object *result(struct json_object *resp)
{
	struct json_object *r = NULL;

	ck_assert_msg(json_object_object_get_ex(resp, "result", &r), "no result in %s",
		      zp_to_string(resp, NULL));
	return r;
}

static struct json_object *field(struct json_object *o, const char *name)
{
	struct json_object *v = NULL;

	ck_assert_msg(json_object_object_get_ex(o, name, &v), "no field %s in %s", name,
		      zp_to_string(o, NULL));
	return v;
}

static bool id_is_null(struct json_object *resp)
{
	struct json_object *id;

	return json_object_object_get_ex(resp, "id", &id) && id == NULL;
}

START_TEST(spec_call_named_params)
{
	struct json_object *r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"params\":{},\"id\":3}");

	ck_assert_int_eq(json_object_get_int(field(r, "id")), 3);
	ck_assert_int_eq(json_object_get_int(field(result(r), "protocol")), ZP_PROTOCOL_VERSION);
	ck_assert_int_eq(json_object_get_int(field(result(r), "pid")), getpid());
	ck_assert(json_object_get_boolean(field(result(r), "admin")));
	ck_assert_str_eq(json_object_get_string(field(r, "jsonrpc")), "2.0");
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":\"abc\"}");
	ck_assert_str_eq(json_object_get_string(field(r, "id")), "abc");
	json_object_put(r);
}
END_TEST

START_TEST(spec_notification)
{
	no_reply("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\"}");
	no_reply("{\"jsonrpc\":\"2.0\",\"method\":\"no.such.method\"}");
	/* A lease nobody would hear of is not granted. */
	no_reply("{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"direct\":false}}");
	ck_assert_uint_eq(d.stats.leases_granted, 0);
	ck_assert_uint_eq(zd_device_find(&d, "emu0")->class_count[ZD_ZC_LEASED], 0);
}
END_TEST

START_TEST(spec_method_not_found)
{
	struct json_object *r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"foobar\",\"id\":\"1\"}");

	ck_assert_int_eq(err_code(r), ZP_ERR_METHOD_NOT_FOUND);
	ck_assert_str_eq(json_object_get_string(field(r, "id")), "1");
	json_object_put(r);
}
END_TEST

START_TEST(spec_invalid_json)
{
	struct json_object *r =
		rpc("{\"jsonrpc\":\"2.0\",\"method\":\"foobar, \"params\":\"bar\",\"baz]");

	ck_assert_int_eq(err_code(r), ZP_ERR_PARSE);
	ck_assert(id_is_null(r));
	json_object_put(r);
	/* Trailing garbage and invalid UTF-8 are parse errors too. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1} x");
	ck_assert_int_eq(err_code(r), ZP_ERR_PARSE);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\xff\",\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_PARSE);
	json_object_put(r);
}
END_TEST

START_TEST(spec_invalid_request)
{
	struct json_object *r = rpc("{\"jsonrpc\":\"2.0\",\"method\":1,\"params\":\"bar\"}");

	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	ck_assert(id_is_null(r));
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"1.0\",\"method\":\"daemon.hello\",\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":{}}");
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	ck_assert(id_is_null(r));
	json_object_put(r);
	r = rpc("\"just a string\"");
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	json_object_put(r);
	/* A bare number is valid JSON but no request. */
	r = rpc("17");
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	json_object_put(r);
}
END_TEST

START_TEST(spec_batch_invalid_json)
{
	struct json_object *r = rpc("[{\"jsonrpc\":\"2.0\",\"method\":\"sum\",\"params\":[1,2,4],"
				    "\"id\":\"1\"},{\"jsonrpc\":\"2.0\",\"method\"]");

	ck_assert(json_object_is_type(r, json_type_object));
	ck_assert_int_eq(err_code(r), ZP_ERR_PARSE);
	json_object_put(r);
}
END_TEST

START_TEST(spec_batch_empty)
{
	struct json_object *r = rpc("[]");

	ck_assert(json_object_is_type(r, json_type_object));
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	json_object_put(r);
}
END_TEST

START_TEST(spec_batch_invalid)
{
	struct json_object *r = rpc("[1]");

	ck_assert(json_object_is_type(r, json_type_array));
	ck_assert_int_eq(json_object_array_length(r), 1);
	ck_assert_int_eq(err_code(json_object_array_get_idx(r, 0)), ZP_ERR_INVALID_REQUEST);
	json_object_put(r);
	r = rpc("[1,2,3]");
	ck_assert_int_eq(json_object_array_length(r), 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(err_code(json_object_array_get_idx(r, i)), ZP_ERR_INVALID_REQUEST);
		ck_assert(id_is_null(json_object_array_get_idx(r, i)));
	}
	json_object_put(r);
}
END_TEST

START_TEST(spec_batch_mixed)
{
	struct json_object *r = rpc(
		"[{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":\"1\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"device.info\",\"params\":{\"device\":\"emu0\"},\"id\":\"2\"},"
		"{\"foo\":\"boo\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"foo.get\",\"params\":{\"name\":\"myself\"},\"id\":\"5\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"count\":2},\"id\":\"9\"}]");

	ck_assert(json_object_is_type(r, json_type_array));
	ck_assert_int_eq(json_object_array_length(r), 5);
	ck_assert_str_eq(json_object_get_string(field(json_object_array_get_idx(r, 0), "id")), "1");
	ck_assert_str_eq(json_object_get_string(field(json_object_array_get_idx(r, 1), "id")), "2");
	ck_assert_int_eq(json_object_get_int(field(result(json_object_array_get_idx(r, 1)),
						   "nr_zones")), 16);
	ck_assert_int_eq(err_code(json_object_array_get_idx(r, 2)), ZP_ERR_INVALID_REQUEST);
	ck_assert_int_eq(err_code(json_object_array_get_idx(r, 3)), ZP_ERR_METHOD_NOT_FOUND);
	ck_assert_str_eq(json_object_get_string(field(json_object_array_get_idx(r, 4), "id")), "9");
	ck_assert_int_eq(json_object_array_length(field(result(json_object_array_get_idx(r, 4)),
							"zones")), 2);
	json_object_put(r);
}
END_TEST

START_TEST(spec_batch_all_notifications)
{
	no_reply("[{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\"},"
		 "{\"jsonrpc\":\"2.0\",\"method\":\"device.list\"}]");
}
END_TEST

START_TEST(oversized_packet)
{
	size_t len = ZP_MSG_MAX + 100;
	char *big = malloc(len);
	struct json_object *r;

	memset(big, ' ', len);
	memcpy(big, HELLO1, strlen(HELLO1));
	r = rpc_raw_fd(big, len, NULL);
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "too large"));
	json_object_put(r);
	free(big);
	/* The connection stays usable. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":2}");
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
	/* Exactly the limit is accepted. */
	big = malloc(ZP_MSG_MAX);
	memset(big, ' ', ZP_MSG_MAX);
	memcpy(big, HELLO3, strlen(HELLO3));
	r = rpc_raw_fd(big, ZP_MSG_MAX, NULL);
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
	free(big);
}
END_TEST

static void expect_invalid_param(const char *req, const char *field_name)
{
	struct json_object *r = rpc(req);

	ck_assert_msg(err_code(r) == ZP_ERR_INVALID_PARAMS, "%s -> %s", req, zp_to_string(r, NULL));
	ck_assert_msg(strstr(err_msg(r), field_name), "message '%s' does not name '%s'", err_msg(r),
		      field_name);
	json_object_put(r);
}

START_TEST(wrong_param_types)
{
	struct json_object *r;

	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"device.info\",\"params\":{\"device\":7},\"id\":1}", "device");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"device.info\",\"params\":{},\"id\":1}", "device");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"from\":\"3\"},\"id\":1}", "from");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"count\":-1},\"id\":1}", "count");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"cond\":[\"empty\",3]},\"id\":1}", "cond");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"cond\":\"bogus\"},\"id\":1}", "cond");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"params\":{\"device\":\"emu0\",\"zone\":2.5},\"id\":1}", "zone");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"force\":1},\"id\":1}", "force");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"count\":0},\"id\":1}", "count");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"wait_ms\":true},\"id\":1}", "wait_ms");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"prefer\":\"big\"},\"id\":1}", "prefer");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"zone\":3},\"id\":1}", "zone");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\",\"params\":{\"id\":\"1\",\"token\":1},\"id\":1}", "id");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"lease.release\",\"params\":{\"id\":1},\"id\":1}", "token");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"params\":[1,2],\"id\":1}", "params");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"wait\":5},\"id\":1}", "wait");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"device.list\",\"params\":{\"x\":null},\"id\":1}", "x");
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"device.info\",\"params\":{\"device\":\"nope\"},\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_NO_DEVICE);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"params\":{\"device\":\"emu0\",\"zone\":16},\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_NO_ZONE);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"params\":{\"device\":\"emu0\",\"zone\":0},\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_ZONE_STATE);
	json_object_put(r);
}
END_TEST

START_TEST(stray_fd_is_closed)
{
	int p[2];
	struct json_object *r;
	char c = 'x';

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(zp_send(peer, HELLO1, strlen(HELLO1),
				 p[0], 0), 0);
	close(p[0]);
	r = wait_reply(NULL, 5000);
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
	/* The daemon kept no copy of the read end: the pipe has no reader. */
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(write(p[1], &c, 1), -1);
	ck_assert_int_eq(errno, EPIPE);
	close(p[1]);
}
END_TEST

START_TEST(report_paging_and_filters)
{
	struct json_object *r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"from\":1,\"count\":3},\"id\":1}");
	struct json_object *zones = field(result(r), "zones"), *z;

	ck_assert_int_eq(json_object_array_length(zones), 3);
	z = json_object_array_get_idx(zones, 0);
	ck_assert_int_eq(json_object_get_int(field(z, "index")), 1);
	ck_assert_str_eq(json_object_get_string(field(z, "type")), "conventional");
	ck_assert_str_eq(json_object_get_string(field(z, "cond")), "not-wp");
	z = json_object_array_get_idx(zones, 2);
	ck_assert_int_eq(json_object_get_int64(field(z, "start")), 3 << 20);
	ck_assert_int_eq(json_object_get_int64(field(z, "len")), 1 << 20);
	ck_assert_int_eq(json_object_get_int64(field(z, "capacity")), 768 << 10);
	ck_assert_int_eq(json_object_get_int64(field(z, "wp")), 3 << 20);
	ck_assert_str_eq(json_object_get_string(field(z, "cond")), "empty");
	ck_assert(field(result(r), "next") == NULL);
	json_object_put(r);

	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"type\":[\"conventional\"]},\"id\":1}");
	ck_assert_int_eq(json_object_array_length(field(result(r), "zones")), 2);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":5,\"count\":2},\"id\":1}");
	ck_assert_int_eq(err_code(r), 0);
	ck_assert_str_eq(json_object_get_string(field(json_object_array_get_idx(field(result(r), "zones"), 1), "cond")), "explicit-open");
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"cond\":\"explicit-open\"},\"id\":1}");
	zones = field(result(r), "zones");
	ck_assert_int_eq(json_object_array_length(zones), 2);
	ck_assert_int_eq(json_object_get_int(field(json_object_array_get_idx(zones, 0), "index")), 5);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"device.info\",\"params\":{\"device\":\"emu0\"},\"id\":1}");
	ck_assert_int_eq(json_object_get_int(field(field(result(r), "zones_by_cond"), "explicit-open")), 2);
	ck_assert_int_eq(json_object_get_int(field(field(result(r), "zones_by_cond"), "empty")), 12);
	ck_assert_int_eq(json_object_get_int(field(result(r), "max_open")), 4);
	ck_assert_int_eq(json_object_get_int(field(result(r), "max_active")), 6);
	json_object_put(r);
}
END_TEST

static const char *runs_of(struct json_object *r)
{
	return json_object_get_string(field(result(r), "runs"));
}

/* zone.report {"format": "runs"}: zones alike but for their start are one
 * run; capacity and length only where they differ from the page's;
 * filtered-out zones are a bare count; from/count and cached as for the
 * objects. */
START_TEST(report_runs)
{
	struct json_object *r;

	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":5,\"count\":2},\"id\":1}");
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.finish\",\"params\":{\"device\":\"emu0\",\"zone\":8},\"id\":1}");
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
	for (int cached = 0; cached < 2; cached++) {
		char req[300];

		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":"
			 "{\"device\":\"emu0\",\"format\":\"runs\",\"cached\":%s},\"id\":1}",
			 cached ? "true" : "false");
		r = rpc(req);
		/* 2 conventional zones (their capacity is not the page's),
		 * empty 2-4, explicitly open 5-6, empty 7, full 8 (wp at its
		 * capacity's end), empty 9-15. */
		ck_assert_str_eq(runs_of(r), "2,0,0,1048576,1048576 3,1,1,0 2,1,3,0 1,1,1,0 "
			       "1,1,5,786432 7,1,1,0");
		ck_assert_int_eq(json_object_get_int64(field(result(r), "from")), 0);
		ck_assert_int_eq(json_object_get_int64(field(result(r), "zone_size")), 1 << 20);
		ck_assert_int_eq(json_object_get_int64(field(result(r), "capacity")), 768 << 10);
		ck_assert(field(result(r), "next") == NULL);
		json_object_put(r);
	}
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"format\":\"runs\",\"cond\":\"empty\"},\"id\":1}");
	ck_assert_str_eq(runs_of(r), "2 3,1,1,0 2 1,1,1,0 1 7,1,1,0");
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"format\":\"runs\",\"from\":3,\"count\":4},\"id\":1}");
	ck_assert_str_eq(runs_of(r), "2,1,1,0 2,1,3,0");
	ck_assert_int_eq(json_object_get_int64(field(result(r), "from")), 3);
	ck_assert(field(result(r), "next") == NULL);
	json_object_put(r);
	/* The objects are still the default, and "zones" names them. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"format\":\"zones\",\"from\":8,\"count\":1},\"id\":1}");
	ck_assert_str_eq(json_object_get_string(field(json_object_array_get_idx(field(result(r), "zones"), 0), "cond")), "full");
	json_object_put(r);
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"format\":\"bits\"},\"id\":1}", "format");
	expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"format\":1},\"id\":1}", "format");
	/* The daemon says it has them. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1}");
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(field(result(r), "features"), 0)), "report-runs");
	json_object_put(r);
}
END_TEST

/* Pages of runs stay inside the packet however the zones differ, scan no
 * more than their bound, and together say every zone once: 20,000 zones
 * whose every neighbour differs (each page full of text), and a run that
 * crosses a page's scan bound. */
START_TEST(report_runs_pages)
{
	struct zd_device_conf dc;
	struct zd_device *dev;
	char why[256] = "", req[300];
	uint32_t from = 0, pages = 0, seen = 0;
	const uint32_t nz = 20000;

	memset(&dc, 0, sizeof(dc));
	dc.emulated = true;
	snprintf(dc.id, sizeof(dc.id), "emu1");
	snprintf(dc.path, sizeof(dc.path), "%s/emu1.img", tmpdir);
	snprintf(dc.spec, sizeof(dc.spec),
		 "size=1250M,zone-size=64K,conv=0,max-open=0,max-active=0,lbs=4096");
	ck_assert_msg(zd_device_add(&d, &dc, why, sizeof(why)) == 0, "%s", why);
	dev = zd_device_find(&d, "emu1");
	ck_assert_uint_eq(dev->info.nr_zones, nz);
	/* The cache only (cached: true reads nothing else): zones 0-9999
	 * closed at 1..15 blocks, alternating; the rest empty. */
	for (uint32_t i = 0; i < nz / 2; i++) {
		struct zd_zone z = zd_device_zone(dev, i);

		z.wp = z.start + (i % 15 + 1) * 4096;
		z.cond = ZP_COND_CLOSED;
		zd_device_zone_update(dev, i, &z);
	}
	for (;;) {
		struct json_object *r, *next;
		const char *p;
		size_t len;

		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":"
			 "{\"device\":\"emu1\",\"format\":\"runs\",\"cached\":true,\"from\":%u},"
			 "\"id\":1}", from);
		r = rpc(req);
		ck_assert_int_eq(err_code(r), 0);
		p = runs_of(r);
		len = strlen(p);
		ck_assert_uint_le(len, 61440);
		/* A page ends early only where its text ran out of room. */
		if (field(result(r), "next") && seen < nz / 2)
			ck_assert_uint_gt(len, 61440 - 2 * 96);
		pages++;
		/* Every run: one zone of the closed part, its wp its index's. */
		while (*p) {
			unsigned long n = strtoul(p, (char **)&p, 10), t, c, w;

			ck_assert_int_eq(*p++, ',');
			t = strtoul(p, (char **)&p, 10);
			ck_assert_int_eq(*p++, ',');
			c = strtoul(p, (char **)&p, 10);
			ck_assert_int_eq(*p++, ',');
			w = strtoul(p, (char **)&p, 10);
			ck_assert_uint_eq(t, ZP_TYPE_SWR);
			if (seen < nz / 2) {
				ck_assert_uint_eq(n, 1);
				ck_assert_uint_eq(c, ZP_COND_CLOSED);
				ck_assert_uint_eq(w, (seen % 15 + 1) * 4096);
			} else {
				ck_assert_uint_eq(c, ZP_COND_EMPTY);
				ck_assert_uint_eq(w, 0);
				/* A page scans at most 16384 zones. */
				ck_assert_uint_le(n, 16384);
			}
			seen += (uint32_t)n;
			if (*p == ' ')
				p++;
		}
		next = field(result(r), "next");
		if (!next) {
			json_object_put(r);
			break;
		}
		ck_assert_uint_eq(json_object_get_int64(next), seen);
		from = seen;
		json_object_put(r);
	}
	ck_assert_uint_eq(seen, nz);
	/* 10,000 zones of ~11 bytes need two pages; the empty rest fits in
	 * the second one's scan or one more. */
	ck_assert_uint_ge(pages, 2);
	ck_assert_uint_le(pages, 3);
}
END_TEST

static struct json_object *acquire(const char *params, int *fd)
{
	char req[512];

	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":%s,\"id\":7}",
		 params);
	return rpc_raw_fd(req, strlen(req), fd);
}

START_TEST(lease_round_trip_with_fd)
{
	int fd = -1;
	struct json_object *r = acquire("{\"device\":\"emu0\",\"label\":\"t\",\"direct\":false}", &fd);
	struct json_object *l = field(result(r), "lease");
	uint64_t id = json_object_get_uint64(field(l, "id"));
	uint64_t token = json_object_get_uint64(field(l, "token"));
	uint64_t start = json_object_get_uint64(field(l, "start"));
	uint64_t fd_offset = json_object_get_uint64(field(l, "fd_offset"));
	char buf[8192], req[256], back[8192];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(json_object_get_int(field(result(r), "fd")), 0);
	ck_assert_int_eq(json_object_get_uint64(field(l, "wp")), start);
	ck_assert_int_eq(token >> 32, d.generation);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	json_object_put(r);

	memset(buf, 0xab, sizeof(buf));
	/* Where the zone starts in the fd: 0 on its own zone file. */
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)fd_offset), (ssize_t)sizeof(buf));
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\",\"params\":{\"id\":%llu,\"token\":%llu,\"wp\":%llu},\"id\":8}",
		 (unsigned long long)id, (unsigned long long)token, (unsigned long long)(start + sizeof(buf)));
	r = rpc(req);
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	ck_assert_int_eq(json_object_get_uint64(field(field(result(r), "lease"), "wp")), start + sizeof(buf));
	ck_assert_str_eq(json_object_get_string(field(field(result(r), "lease"), "cond")), "implicit-open");
	json_object_put(r);
	/* A write pointer that goes backwards is refused. */
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\",\"params\":{\"id\":%llu,\"token\":%llu,\"wp\":%llu},\"id\":8}",
		 (unsigned long long)id, (unsigned long long)token, (unsigned long long)start);
	r = rpc(req);
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_PARAMS);
	json_object_put(r);
	/* Stale token. */
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.sync\",\"params\":{\"id\":%llu,\"token\":%llu},\"id\":8}",
		 (unsigned long long)id, (unsigned long long)token + 1);
	r = rpc(req);
	ck_assert_int_eq(err_code(r), ZP_ERR_STALE_LEASE);
	json_object_put(r);
	/* The zone is leased: admin reset without force fails, read back works. */
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"params\":{\"device\":\"emu0\",\"zone\":%llu},\"id\":9}",
		 (unsigned long long)(start >> 20));
	r = rpc(req);
	ck_assert_int_eq(err_code(r), ZP_ERR_ZONE_LEASED);
	json_object_put(r);
	ck_assert_int_eq(pread(fd, back, sizeof(back), (off_t)fd_offset), (ssize_t)sizeof(back));
	ck_assert_mem_eq(back, buf, sizeof(buf));
	close(fd);

	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"lease.release\",\"params\":{\"id\":%llu,\"token\":%llu,\"then\":\"finish\"},\"id\":10}",
		 (unsigned long long)id, (unsigned long long)token);
	r = rpc(req);
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	ck_assert_str_eq(json_object_get_string(field(field(result(r), "zone"), "cond")), "full");
	json_object_put(r);
	r = rpc(req);
	ck_assert_int_eq(err_code(r), ZP_ERR_STALE_LEASE);
	json_object_put(r);
}
END_TEST

START_TEST(lease_limits)
{
	/* max_open 4: four writers at most, the fifth is refused at once. */
	int fds[5];
	struct json_object *r;

	for (int i = 0; i < 4; i++) {
		r = acquire("{\"device\":\"emu0\",\"direct\":false}", &fds[i]);
		ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
		ck_assert_int_ge(fds[i], 0);
		json_object_put(r);
	}
	r = acquire("{\"device\":\"emu0\",\"direct\":false}", &fds[4]);
	ck_assert_int_eq(err_code(r), ZP_ERR_LIMIT);
	ck_assert_int_eq(fds[4], -1);
	json_object_put(r);
	/* With a wait it times out. */
	r = acquire("{\"device\":\"emu0\",\"wait_ms\":50}", &fds[4]);
	ck_assert_int_eq(err_code(r), ZP_ERR_TIMEOUT);
	json_object_put(r);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}
END_TEST

START_TEST(batch_carries_fds)
{
	int fd = -1;
	struct json_object *r = rpc_raw_fd(
		"[{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"direct\":false},\"id\":1},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"direct\":false},\"id\":2}]",
		strlen("[{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"direct\":false},\"id\":1},"
		       "{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"direct\":false},\"id\":2}]"),
		&fd);

	ck_assert(json_object_is_type(r, json_type_array));
	ck_assert_int_eq(json_object_get_int(field(result(json_object_array_get_idx(r, 0)), "fd")), 0);
	ck_assert_int_eq(json_object_get_int(field(result(json_object_array_get_idx(r, 1)), "fd")), 1);
	ck_assert_int_ne(json_object_get_int(field(field(result(json_object_array_get_idx(r, 0)), "lease"), "zone")),
			 json_object_get_int(field(field(result(json_object_array_get_idx(r, 1)), "lease"), "zone")));
	ck_assert_int_ge(fd, 0); /* zp_recv keeps the first, closes the rest */
	close(fd);
	json_object_put(r);
}
END_TEST

START_TEST(lease_limit_per_connection)
{
	int fds[3];
	struct json_object *r;

	d.cfg.max_leases_per_conn = 2;
	for (int i = 0; i < 2; i++) {
		r = acquire("{\"direct\":false}", &fds[i]);
		ck_assert_int_eq(err_code(r), 0);
		json_object_put(r);
	}
	r = acquire("{\"direct\":false}", &fds[2]);
	ck_assert_int_eq(err_code(r), ZP_ERR_LIMIT);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "limit"));
	json_object_put(r);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(connection_limit_per_uid)
{
	int sv[2];
	struct json_object *o;
	char buf[1024];
	ssize_t n;

	d.cfg.max_conns_per_uid = 1;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_eq(zd_conn_accept(&d, sv[0]), -EUSERS);
	/* The refused peer gets one error and a hang-up. */
	n = zp_recv(sv[1], buf, sizeof(buf), NULL, 0);
	ck_assert_int_gt(n, 0);
	o = zp_parse(buf, (size_t)n);
	ck_assert_int_eq(err_code(o), ZP_ERR_PERM);
	json_object_put(o);
	ck_assert_int_eq(zp_recv(sv[1], buf, sizeof(buf), NULL, 0), 0);
	close(sv[1]);
	/* The first connection still works. */
	o = rpc(HELLO1);
	ck_assert_int_eq(err_code(o), 0);
	json_object_put(o);
}
END_TEST

START_TEST(foreign_lease_is_unknown)
{
	int sv[2], fd = -1;
	struct json_object *r, *l;
	char req[256], buf[4096];
	ssize_t n;

	r = acquire("{\"direct\":false}", &fd);
	l = field(result(r), "lease");
	snprintf(req, sizeof(req),
		 "{\"jsonrpc\":\"2.0\",\"method\":\"lease.release\",\"params\":{\"id\":%llu,\"token\":%llu},\"id\":1}",
		 (unsigned long long)json_object_get_uint64(field(l, "id")),
		 (unsigned long long)json_object_get_uint64(field(l, "token")));
	json_object_put(r);
	close(fd);
	/* Another connection presents the right id and token: still unknown. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_eq(zd_conn_accept(&d, sv[0]), 0);
	ck_assert_int_eq(zp_send(sv[1], req, strlen(req), -1, 0), 0);
	n = -EAGAIN;
	for (int i = 0; i < 5000 && n == -EAGAIN; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		n = zp_recv(sv[1], buf, sizeof(buf), NULL, MSG_DONTWAIT);
	}
	ck_assert_int_gt(n, 0);
	r = zp_parse(buf, (size_t)n);
	ck_assert_int_eq(err_code(r), ZP_ERR_STALE_LEASE);
	json_object_put(r);
	close(sv[1]);
	/* The owner can still release it. */
	r = rpc(req);
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
}
END_TEST

START_TEST(zone_being_released_is_not_taken)
{
	const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\","
			  "\"params\":{\"device\":\"emu0\",\"zone\":5,\"direct\":false},\"id\":1}";
	int sv[2], fd = -1, i;
	char buf[4096];
	ssize_t n = -EAGAIN;
	struct json_object *r;

	/* Another client holds zone 5 and goes away. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_eq(zd_conn_accept(&d, sv[0]), 0);
	ck_assert_int_eq(zp_send(sv[1], req, strlen(req), -1, 0), 0);
	for (i = 0; i < 5000 && n == -EAGAIN; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		n = zp_recv(sv[1], buf, sizeof(buf), &fd, MSG_DONTWAIT);
		if (n == -EAGAIN && i > 100)
			usleep(1000); /* the thread pool may be slow on a busy machine */
	}
	ck_assert_int_gt(n, 0);
	ck_assert_int_ge(fd, 0);
	close(fd);
	close(sv[1]);
	for (i = 0; i < 5000 && d.nr_releasing == 0; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	/* Its release is on the device queue right now... */
	ck_assert_uint_eq(d.nr_releasing, 1);
	/* ...and a caller who will not wait gets the zone all the same. */
	r = rpc_raw_fd(req, strlen(req), &fd);
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	ck_assert_int_eq(json_object_get_int(field(field(result(r), "lease"), "zone")), 5);
	close(fd);
	json_object_put(r);
}
END_TEST

/* The raw text of the reply to req (NUL-terminated), for checks of how
 * an id comes back byte for byte. */
static const char *raw_reply(const char *req)
{
	static char buf[ZP_MSG_MAX + 1];

	ck_assert_int_eq(zp_send(peer, req, strlen(req), -1, 0), 0);
	for (int i = 0; i < 5000; i++) {
		ssize_t n = zp_recv(peer, buf, sizeof(buf) - 1, NULL, MSG_DONTWAIT);

		if (n > 0) {
			buf[n] = '\0';
			return buf;
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		if (i > 100)
			usleep(1000);
	}
	ck_abort_msg("no reply to %s", req);
	return NULL;
}

#define REQ_ID(id) "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":" id "}"

START_TEST(strict_json_refused)
{
	static const struct {
		const char *req, *why;
	} bad[] = {
		{ REQ_ID("NaN"), "NaN" },
		{ REQ_ID("Infinity"), "Infinity" },
		{ REQ_ID("-Infinity"), "Infinity" },
		{ REQ_ID("123456789012345678901234567890"), "out of range" },
		{ REQ_ID("18446744073709551616"), "out of range" },
		{ REQ_ID("-9223372036854775809"), "out of range" },
		{ REQ_ID("1."), "decimal point" },
		{ REQ_ID("1e"), "number" },
		{ REQ_ID("\"\\ud800\""), "surrogate" },
		{ REQ_ID("\"\\udc00x\""), "surrogate" },
		{ REQ_ID("\"\\ud800\\u0041\""), "surrogate" },
		{ REQ_ID("\"a\\u0000b\""), "NUL" },
		{ REQ_ID("\"a\x01z\""), "control character" },
		{ "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\\u0000zone.reset\",\"id\":1}", "NUL" },
		{ "{\"jsonrpc\":\"2.0\",\"method\\u0000x\":\"daemon.hello\",\"id\":1}", "NUL" },
		{ "{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"method\":\"daemon.hello\",\"id\":1}",
		  "duplicate key 'method'" },
		{ "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1,\"\\u0069d\":2}",
		  "duplicate key 'id'" },
		{ "{\"jsonrpc\":\"2.0\",\"method\":\"device.info\",\"params\":{\"device\":\"x\","
		  "\"device\":\"emu0\"},\"id\":1}", "duplicate key 'device'" },
		/* One bad request spoils its packet: the batch is not JSON zonedd reads. */
		{ "[" REQ_ID("1") ",{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\","
		  "\"id\":2}]", "duplicate key 'jsonrpc'" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_object *r = rpc(bad[i].req);

		ck_assert_msg(json_object_is_type(r, json_type_object), "%s -> %s", bad[i].req,
			      zp_to_string(r, NULL));
		ck_assert_msg(err_code(r) == ZP_ERR_PARSE, "%s -> %s", bad[i].req,
			      zp_to_string(r, NULL));
		ck_assert(id_is_null(r));
		ck_assert_msg(strstr(err_msg(r), bad[i].why), "%s: message '%s' does not say '%s'",
			      bad[i].req, err_msg(r), bad[i].why);
		json_object_put(r);
	}
	/* Nothing of it ran: no zone was reset, and the connection still works. */
	ck_assert_uint_eq(d.stats.requests, 0);
	json_object_put(rpc(HELLO1));
}
END_TEST

/* Messages quote what the client sent, cut to their size: never in the
 * middle of a character (fuzz-message found a method name cut so), at any
 * alignment and for 2-, 3- and 4-byte characters alike, in the daemon's
 * messages (an unknown method) and the parser's (a repeated key). */
START_TEST(quoted_text_is_cut_between_characters)
{
	static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
	char req[4096], name[700];

	for (size_t c = 0; c < 3; c++)
		for (int pad = 0; pad < 4; pad++) {
			struct json_object *r;
			size_t n = 0;

			for (int i = 0; i < pad; i++)
				name[n++] = 'x';
			while (n + 4 < 600) {
				memcpy(name + n, chars[c], strlen(chars[c]));
				n += strlen(chars[c]);
			}
			name[n] = '\0';
			snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"id\":1}", name);
			r = rpc(req); /* wait_reply parses it strictly: UTF-8 or it fails */
			ck_assert_int_eq(err_code(r), ZP_ERR_METHOD_NOT_FOUND);
			ck_assert_ptr_nonnull(strstr(err_msg(r), "method '"));
			json_object_put(r);
			snprintf(req, sizeof(req), "{\"%s\":1,\"%s\":2}", name, name);
			r = rpc(req);
			ck_assert_int_eq(err_code(r), ZP_ERR_PARSE);
			ck_assert_ptr_nonnull(strstr(err_msg(r), "duplicate key '"));
			json_object_put(r);
		}
}
END_TEST

START_TEST(ids_echoed_unchanged)
{
	static const char *const ids[] = {
		"18446744073709551615", "-9223372036854775808", "0", "1.5", "1e2", "-0.0",
		"\"\\ud83d\\ude00\"", "\"a\\\"b\"", "null",
	};
	static const char *const back[] = {
		"18446744073709551615", "-9223372036854775808", "0", "1.5", "1e2", "-0.0",
		"\"\xf0\x9f\x98\x80\"", "\"a\\\"b\"", "null",
	};
	struct json_object *r;
	char req[256], want[128];

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		const char *text;

		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":%s}",
			 ids[i]);
		text = raw_reply(req);
		snprintf(want, sizeof(want), "\"id\":%s}", back[i]);
		ck_assert_msg(strstr(text, want), "id %s came back as %s", ids[i], text);
		ck_assert_msg(!strstr(text, "\"error\""), "id %s refused: %s", ids[i], text);
	}
	/* A number no double holds is no id the reply could carry exactly. */
	r = rpc(REQ_ID("1e400"));
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_REQUEST);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "finite"));
	ck_assert(id_is_null(r));
	json_object_put(r);
}
END_TEST

/* The client library reads replies with zp_parse: a reply with a repeated
 * key or a lone surrogate is a protocol error there too, not last-wins. */
START_TEST(replies_parsed_strictly)
{
	static const char *const bad[] = {
		"{\"jsonrpc\":\"2.0\",\"result\":{},\"result\":{\"x\":1},\"id\":1}",
		"{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":{\"id\":1,\"id\":2}},\"id\":1}",
		"{\"jsonrpc\":\"2.0\",\"result\":{\"label\":\"\\udfff\"},\"id\":1}",
		"{\"jsonrpc\":\"2.0\",\"result\":{\"wp\":99999999999999999999},\"id\":1}",
		"{\"jsonrpc\":\"2.0\",\"result\":{\"wp\":NaN},\"id\":1}",
	};
	struct zp_err e;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(zp_parse(bad[i], strlen(bad[i])) == NULL, "accepted %s", bad[i]);
		ck_assert_ptr_null(zp_parse_ex(bad[i], strlen(bad[i]), &e));
		ck_assert_int_eq(e.code, ZP_ERR_PARSE);
		ck_assert(e.message[0]);
	}
}
END_TEST

/* A device with 100 partly written zones and no empty one: only zone 80
 * has room for min_free. */
START_TEST(min_free_past_many_partial_zones)
{
	struct zd_device_conf dc;
	struct zd_device *dev;
	char why[256] = "";
	static char buf[60 * 1024];
	struct json_object *r;
	int fd = -1;

	memset(&dc, 0, sizeof(dc));
	dc.emulated = true;
	snprintf(dc.id, sizeof(dc.id), "emu1");
	snprintf(dc.path, sizeof(dc.path), "%s/emu1.img", tmpdir);
	snprintf(dc.spec, sizeof(dc.spec),
		 "size=6400K,zone-size=64K,conv=0,max-open=0,max-active=0,lbs=4096");
	ck_assert_msg(zd_device_add(&d, &dc, why, sizeof(why)) == 0, "%s", why);
	dev = zd_device_find(&d, "emu1");
	memset(buf, 'p', sizeof(buf));
	/* Zone 80 first: the zones written after it come before it in any
	 * most-recent-first list, so a bounded scan never reaches it. */
	for (uint32_t k = 0; k < 100; k++) {
		uint32_t i = k == 0 ? 80 : k <= 80 ? k - 1 : k;
		struct zd_zone z;
		uint32_t n = 1;
		uint64_t len = i == 80 ? 4096 : sizeof(buf);

		ck_assert_int_eq(dev->dev->ops->pwrite(dev->dev, buf, len, (uint64_t)i << 16), 0);
		ck_assert_int_eq(dev->dev->ops->zone_op(dev->dev, ZD_OP_CLOSE, i, 1), 0);
		ck_assert_int_eq(dev->dev->ops->report(dev->dev, i, &z, &n), 0);
		zd_device_zone_update(dev, i, &z);
	}
	r = acquire("{\"device\":\"emu1\",\"min_free\":32768,\"direct\":false}", &fd);
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	ck_assert_int_eq(json_object_get_int(field(field(result(r), "lease"), "zone")), 80);
	close(fd);
	json_object_put(r);
	/* Nothing else fits: "no zone", at once. */
	r = acquire("{\"device\":\"emu1\",\"min_free\":8192,\"direct\":false}", &fd);
	ck_assert_int_eq(err_code(r), ZP_ERR_NO_FREE_ZONE);
	json_object_put(r);
	/* More than any zone holds is a bad request, not "no zone now". */
	r = acquire("{\"device\":\"emu1\",\"min_free\":65537}", &fd);
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_PARAMS);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "min_free"));
	json_object_put(r);
	r = acquire("{\"min_free\":1048577}", &fd);
	ck_assert_int_eq(err_code(r), ZP_ERR_INVALID_PARAMS);
	json_object_put(r);
}
END_TEST

static uint64_t u64_of(struct json_object *o, const char *name)
{
	return json_object_get_uint64(field(o, name));
}

/* The test device's zones are 1 MiB with 768 KiB capacity: a full zone's
 * wp is start + capacity wherever the daemon shows it. */
START_TEST(full_zone_wp_is_capacity_end)
{
	struct json_object *r, *z, *l, *arr;
	uint64_t start = 3u << 20, end = start + (768u << 10);
	int fd = -1;

	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.finish\",\"params\":{\"device\":\"emu0\",\"zone\":3},\"id\":1}");
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	z = json_object_array_get_idx(field(result(r), "zones"), 0);
	ck_assert_str_eq(json_object_get_string(field(z, "cond")), "full");
	ck_assert_uint_eq(u64_of(z, "wp"), end);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"from\":3,\"count\":1},\"id\":2}");
	ck_assert_uint_eq(u64_of(json_object_array_get_idx(field(result(r), "zones"), 0), "wp"), end);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\",\"params\":{\"device\":\"emu0\",\"cond\":\"full\"},\"id\":2}");
	arr = field(result(r), "zones");
	ck_assert_uint_eq(json_object_array_length(arr), 1);
	ck_assert_uint_eq(u64_of(json_object_array_get_idx(arr, 0), "wp"), end);
	json_object_put(r);
	/* An explicit acquire of the full zone is granted (to read it, or
	 * reset it), with the same wp. */
	r = acquire("{\"device\":\"emu0\",\"zone\":3,\"direct\":false}", &fd);
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	l = field(result(r), "lease");
	ck_assert_str_eq(json_object_get_string(field(l, "cond")), "full");
	ck_assert_uint_eq(u64_of(l, "wp"), end);
	ck_assert_int_ge(fd, 0);
	close(fd);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"lease.list\",\"id\":3}");
	arr = field(result(r), "leases");
	ck_assert_uint_eq(json_object_array_length(arr), 1);
	ck_assert_uint_eq(u64_of(json_object_array_get_idx(arr, 0), "wp"), end);
	json_object_put(r);
	/* With min_free it does not fit. */
	r = acquire("{\"device\":\"emu0\",\"zone\":4,\"min_free\":1,\"direct\":false}", &fd);
	ck_assert_int_eq(err_code(r), 0);
	close(fd);
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.finish\",\"params\":{\"device\":\"emu0\",\"zone\":5},\"id\":1}");
	json_object_put(r);
	r = acquire("{\"device\":\"emu0\",\"zone\":5,\"min_free\":4096,\"direct\":false}", &fd);
	ck_assert_int_eq(err_code(r), ZP_ERR_NO_FREE_ZONE);
	json_object_put(r);
}
END_TEST

static unsigned zones_in(const char *cond)
{
	char req[256];
	struct json_object *r;
	unsigned n;

	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"method\":\"zone.report\","
		 "\"params\":{\"device\":\"emu0\",\"cond\":\"%s\"},\"id\":9}", cond);
	r = rpc(req);
	n = (unsigned)json_object_array_length(field(result(r), "zones"));
	json_object_put(r);
	return n;
}

static int64_t err_data_i64(struct json_object *resp, const char *name)
{
	struct json_object *e, *data, *v;

	if (!json_object_object_get_ex(resp, "error", &e) ||
	    !json_object_object_get_ex(e, "data", &data) ||
	    !json_object_object_get_ex(data, name, &v))
		return -1;
	return json_object_get_int64(v);
}

/* max_open 4, max_active 6 on 14 sequential zones (2..15). */
START_TEST(multi_zone_ops_all_or_nothing)
{
	struct zd_device *dev = zd_device_find(&d, "emu0");
	struct json_object *r;

	/* Past the open limit: refused before any zone is opened. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"count\":10},\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_LIMIT);
	ck_assert_int_eq(err_data_i64(r, "done"), 0);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "nothing was done"));
	json_object_put(r);
	ck_assert_uint_eq(zones_in("explicit-open"), 0);
	/* Within it, it works. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"count\":4},\"id\":1}");
	ck_assert_msg(err_code(r) == 0, "%s", zp_to_string(r, NULL));
	json_object_put(r);
	ck_assert_uint_eq(zones_in("explicit-open"), 4);
	/* Finishing empty zones needs active slots: 4 open + 2 more = 6. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.close\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"count\":4},\"id\":1}");
	json_object_put(r);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.reset\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"count\":14},\"id\":1}");
	ck_assert_int_eq(err_code(r), 0);
	json_object_put(r);
	/* A conventional zone in the range: nothing is done either. */
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":1,\"count\":3},\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_ZONE_STATE);
	ck_assert_int_eq(err_data_i64(r, "done"), 0);
	json_object_put(r);
	ck_assert_uint_eq(zones_in("explicit-open"), 0);
	/* Three zones opened behind the daemon's back (as a stale cache would
	 * have it): the device stops after one zone, and the error says so. */
	for (uint32_t i = 10; i < 13; i++)
		ck_assert_int_eq(dev->dev->ops->zone_op(dev->dev, ZD_OP_OPEN, i, 1), 0);
	r = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"zone.open\",\"params\":{\"device\":\"emu0\",\"zone\":2,\"count\":3},\"id\":1}");
	ck_assert_int_eq(err_code(r), ZP_ERR_LIMIT);
	ck_assert_int_eq(err_data_i64(r, "done"), 1);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "1 of 3"));
	json_object_put(r);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("protocol");
	TCase *tc = tcase_create("jsonrpc-spec");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, spec_call_named_params);
	tcase_add_test(tc, spec_notification);
	tcase_add_test(tc, spec_method_not_found);
	tcase_add_test(tc, spec_invalid_json);
	tcase_add_test(tc, spec_invalid_request);
	tcase_add_test(tc, spec_batch_invalid_json);
	tcase_add_test(tc, spec_batch_empty);
	tcase_add_test(tc, spec_batch_invalid);
	tcase_add_test(tc, spec_batch_mixed);
	tcase_add_test(tc, spec_batch_all_notifications);
	suite_add_tcase(s, tc);

	tc = tcase_create("strictness");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, strict_json_refused);
	tcase_add_test(tc, quoted_text_is_cut_between_characters);
	tcase_add_test(tc, ids_echoed_unchanged);
	tcase_add_test(tc, replies_parsed_strictly);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits-and-types");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, oversized_packet);
	tcase_add_test(tc, wrong_param_types);
	tcase_add_test(tc, stray_fd_is_closed);
	suite_add_tcase(s, tc);

	tc = tcase_create("methods");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, report_paging_and_filters);
	tcase_add_test(tc, report_runs);
	tcase_add_test(tc, report_runs_pages);
	tcase_add_test(tc, lease_round_trip_with_fd);
	tcase_add_test(tc, lease_limits);
	tcase_add_test(tc, batch_carries_fds);
	tcase_add_test(tc, lease_limit_per_connection);
	tcase_add_test(tc, connection_limit_per_uid);
	tcase_add_test(tc, foreign_lease_is_unknown);
	tcase_add_test(tc, zone_being_released_is_not_taken);
	tcase_add_test(tc, min_free_past_many_partial_zones);
	tcase_add_test(tc, full_zone_wp_is_capacity_end);
	tcase_add_test(tc, multi_zone_ops_all_or_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
