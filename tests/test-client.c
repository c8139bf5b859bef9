/* libzoned-client behaviour that needs no daemon: error strings, names,
 * connection failures, and the reply handling of the exchange against a
 * scripted fake daemon on a socketpair-like listening socket. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "include/zoned/client.h"
#include "proto/proto.h"

START_TEST(test_strerror)
{
	ck_assert_str_eq(zc_strerror(-ENOENT), "No such file or directory");
	ck_assert_str_eq(zc_strerror(ENOENT), "No such file or directory");
	ck_assert_str_eq(zc_strerror(-EBUSY), "Device or resource busy");
	ck_assert_str_eq(zc_strerror(-ESTALE), "Stale file handle");
	ck_assert_str_eq(zc_strerror(-EPROTO), "Protocol error");
	ck_assert_str_eq(zc_strerror(0), "Success");
	ck_assert_str_eq(zc_strerror(-100000), "Unknown error");
	ck_assert_str_eq(zc_strerror(100000), "Unknown error");
	/* Not JSON-RPC codes: the library maps those to errnos first. */
	ck_assert_str_eq(zc_strerror(-32004), "Unknown error");
}
END_TEST

START_TEST(test_names)
{
	static const char *const conds[] = { "not-wp", "empty", "implicit-open", "explicit-open",
					     "closed", "full", "read-only", "offline" };
	static const char *const types[] = { "conventional", "seq-write-required",
					     "seq-write-preferred" };

	ck_assert_int_eq(ZC_COND_COUNT, 8);
	for (int i = 0; i < ZC_COND_COUNT; i++) {
		ck_assert_str_eq(zc_cond_name((enum zc_cond)i), conds[i]);
		ck_assert_int_eq(zc_cond_from_name(conds[i]), i);
	}
	ck_assert_int_eq(ZC_TYPE_COUNT, 3);
	for (int i = 0; i < ZC_TYPE_COUNT; i++) {
		ck_assert_str_eq(zc_type_name((enum zc_type)i), types[i]);
		ck_assert_int_eq(zc_type_from_name(types[i]), i);
	}
	ck_assert_str_eq(zc_cond_name(ZC_COND_COUNT), "unknown");
	ck_assert_str_eq(zc_type_name((enum zc_type)99), "unknown");
	ck_assert_int_eq(zc_cond_from_name("Empty"), -EINVAL);
	ck_assert_int_eq(zc_cond_from_name(""), -EINVAL);
	ck_assert_int_eq(zc_cond_from_name(NULL), -EINVAL);
	ck_assert_int_eq(zc_type_from_name("conv"), -EINVAL);
	ck_assert_int_eq(zc_type_from_name(NULL), -EINVAL);
}
END_TEST

/* The shared library exports exactly the ZC_EXPORT functions of the header,
 * under the version node ZONED_CLIENT_0, and nothing of its internals. */
START_TEST(test_abi)
{
	const char *top = getenv("top_builddir"), *src = getenv("top_srcdir");
	char so[512], hdr[512], line[512], names[128][48], cmd[600];
	int n = 0, exported = 0;
	void *h;
	FILE *f;

	if (!top || !src) {
		fprintf(stderr, "test_abi: skipped, top_builddir/top_srcdir not set\n");
		return;
	}
	snprintf(so, sizeof(so), "%s/client/.libs/libzoned-client.so", top);
	snprintf(hdr, sizeof(hdr), "%s/include/zoned/client.h", src);
	f = fopen(hdr, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *q;

		if (strncmp(line, "ZC_EXPORT ", 10) != 0 || !(q = strchr(p, '(')))
			continue;
		while (q > p && (q[-1] == '_' || (q[-1] >= 'a' && q[-1] <= 'z')))
			q--;
		ck_assert_int_lt(n, 128);
		sscanf(q, "%47[a-z_]", names[n++]);
	}
	fclose(f);
	ck_assert_int_ge(n, 40);

	h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(h != NULL, "dlopen %s: %s", so, dlerror());
	/* 0.1's symbols keep their node; what came later has its own. */
	for (int i = 0; i < n; i++)
		ck_assert_msg(dlvsym(h, names[i], "ZONED_CLIENT_0") != NULL ||
				      dlvsym(h, names[i], "ZONED_CLIENT_0.2") != NULL,
			      "%s not exported", names[i]);
	ck_assert_ptr_nonnull(dlvsym(h, "zc_lease_acquire", "ZONED_CLIENT_0"));
	ck_assert_ptr_nonnull(dlvsym(h, "zc_daemon_stats", "ZONED_CLIENT_0"));
	ck_assert_ptr_nonnull(dlvsym(h, "zc_client_process", "ZONED_CLIENT_0.2"));
	ck_assert_ptr_null(dlvsym(h, "zc_client_process", "ZONED_CLIENT_0"));
	/* Internals stay inside. */
	ck_assert_ptr_null(dlsym(h, "zc_call"));
	ck_assert_ptr_null(dlsym(h, "zc_fail"));
	ck_assert_ptr_null(dlsym(h, "zp_recv"));
	ck_assert_ptr_null(dlsym(h, "zp_parse"));
	dlclose(h);

	/* And nothing else: the dynamic symbol table, as nm sees it. */
	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s' 2>/dev/null", so);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		char type, name[256];
		bool known = false;

		if (sscanf(line, "%*s %c %255[^@\n]", &type, name) != 2 || type == 'A')
			continue;
		for (int i = 0; i < n && !known; i++)
			known = strcmp(names[i], name) == 0;
		ck_assert_msg(known, "unexpected export %s", name);
		exported++;
	}
	if (pclose(f) == 0)
		ck_assert_int_eq(exported, n);
}
END_TEST

static char tmpdir[64];

static void tmp_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/zc-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_connect_missing)
{
	char path[128];
	zc_client *c = (zc_client *)1;

	snprintf(path, sizeof(path), "%s/nothing", tmpdir);
	ck_assert_int_eq(zc_connect(path, &c), -ENOENT);
	ck_assert_ptr_null(c);
	/* $ZONED_SOCKET is the fallback when no path is given. */
	setenv("ZONED_SOCKET", path, 1);
	ck_assert_int_eq(zc_connect(NULL, &c), -ENOENT);
	unsetenv("ZONED_SOCKET");
	ck_assert_int_eq(zc_connect(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_connect_refused)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	zc_client *c = NULL;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	/* A socket file nobody listens on any more. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/dead", tmpdir);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(zc_connect(sa.sun_path, &c), -ECONNREFUSED);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_connect_too_long)
{
	char path[200];
	zc_client *c = NULL;

	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	ck_assert_int_eq(zc_connect(path, &c), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_null_args)
{
	struct zc_lease_opts o;

	zc_close(NULL);
	zc_zone_iter_free(NULL);
	ck_assert_int_eq(zc_lease_release(NULL, ZC_RELEASE_KEEP), 0);
	/* NULL names the last failed zc_connect of this thread, if any. */
	ck_assert_ptr_nonnull(zc_last_error(NULL));
	ck_assert_int_eq(zc_hello(NULL, NULL), -EINVAL);
	ck_assert_int_eq(zc_device_list(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(zc_lease_append(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(zc_lease_sync(NULL), -EINVAL);
	errno = 0;
	ck_assert_ptr_null(zc_lease_fopen(NULL, "w"));
	ck_assert_int_eq(errno, EINVAL);
	zc_lease_opts_init(&o);
	ck_assert_ptr_null(o.device);
	ck_assert_int_eq(o.zone, -1);
	ck_assert_int_eq(o.min_free, 0);
	ck_assert_int_eq(o.prefer, ZC_PREFER_ANY);
	ck_assert_int_eq(o.wait_ms, 0);
	ck_assert(!o.buffered);
	ck_assert_ptr_null(o.label);
}
END_TEST

/* --- A scripted fake daemon --------------------------------------------
 * A thread accepts one connection and answers each request with the next
 * scripted step: a list of raw packets to send (possibly with an fd), so
 * the tests control exactly what the library sees. */

struct step {
	const char *packets[4]; /* "%ID%" is replaced by the request's id */
	int fd_on;              /* packet index (1-based) that carries an fd; 0 none */
	int fd;
};

struct fake {
	char path[100];
	int listen_fd;
	pthread_t thread;
	const struct step *steps;
	size_t nsteps;
	char last_req[ZP_MSG_MAX];
	int64_t last_id;
	int requests;
	int protocol;           /* what the greeting says; 0 = ours */
	const char *features;   /* the greeting's "features" array, NULL: none */
	atomic_int accepted;
};

static void substitute(char *out, size_t cap, const char *tmpl, int64_t id)
{
	const char *m = strstr(tmpl, "%ID%");

	if (!m) {
		snprintf(out, cap, "%s", tmpl);
		return;
	}
	snprintf(out, cap, "%.*s%lld%s", (int)(m - tmpl), tmpl, (long long)id, m + 4);
}

/* zc_connect checks the daemon's protocol version first. */
static void fake_greet(int s, char *buf, int protocol, const char *features)
{
	struct json_object *req, *id;
	ssize_t n = zp_recv(s, buf, ZP_MSG_MAX + 1, NULL, 0);
	char out[512];

	if (n <= 0)
		return;
	req = zp_parse(buf, (size_t)n);
	snprintf(out, sizeof(out),
		 "{\"jsonrpc\":\"2.0\",\"result\":{\"protocol\":%d,\"version\":\"0.2.0\","
		 "\"pid\":42,\"uid\":7,\"admin\":true%s%s},\"id\":%lld}", protocol,
		 features ? ",\"features\":" : "", features ? features : "",
		 req && json_object_object_get_ex(req, "id", &id) ? (long long)json_object_get_int64(id) : 0LL);
	json_object_put(req);
	zp_send(s, out, strlen(out), -1, 0);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	char *buf = malloc(ZP_MSG_MAX + 1);
	int s = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (s >= 0)
		fake_greet(s, buf, f->protocol ? f->protocol : ZP_PROTOCOL_VERSION, f->features);
	atomic_store(&f->accepted, 1);

	for (size_t i = 0; s >= 0 && i < f->nsteps; i++) {
		const struct step *st = &f->steps[i];
		struct json_object *req, *id;
		ssize_t n = zp_recv(s, buf, ZP_MSG_MAX + 1, NULL, 0);

		if (n <= 0)
			break;
		buf[n] = '\0';
		memcpy(f->last_req, buf, (size_t)n + 1);
		f->requests++;
		req = zp_parse(buf, (size_t)n);
		f->last_id = req && json_object_object_get_ex(req, "id", &id) ? json_object_get_int64(id) : -1;
		json_object_put(req);
		for (int p = 0; p < 4 && st->packets[p]; p++) {
			char out[4096];

			substitute(out, sizeof(out), st->packets[p], f->last_id);
			zp_send(s, out, strlen(out), st->fd_on == p + 1 ? st->fd : -1, 0);
		}
	}
	/* Past the script, hang up at the next request (or when the client
	 * leaves), not before: the fd count of an idle client stays put. */
	if (s >= 0 && zp_recv(s, buf, ZP_MSG_MAX + 1, NULL, 0) > 0)
		f->requests++;
	free(buf);
	if (s >= 0)
		close(s);
	return NULL;
}

static void fake_start_f(struct fake *f, const struct step *steps, size_t nsteps, int protocol,
			 const char *features)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(f, 0, sizeof(*f));
	f->protocol = protocol;
	f->features = features;
	snprintf(f->path, sizeof(f->path), "%s/fake.sock", tmpdir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(f->listen_fd, 0);
	unlink(f->path);
	ck_assert_int_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->listen_fd, 4), 0);
	f->steps = steps;
	f->nsteps = nsteps;
	ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_start_v(struct fake *f, const struct step *steps, size_t nsteps, int protocol)
{
	fake_start_f(f, steps, nsteps, protocol, NULL);
}

static void fake_start(struct fake *f, const struct step *steps, size_t nsteps)
{
	fake_start_v(f, steps, nsteps, 0);
}

/* A fake daemon that greets with another protocol version. */
static void fake_start_proto(struct fake *f, int protocol)
{
	fake_start_v(f, NULL, 0, protocol);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	unlink(f->path);
}

/* Counts the open fds of this process, to catch leaks of received fds.
 * Call it once the fake daemon holds its end, so its accept does not count. */
static int count_fds(struct fake *f)
{
	int n = 0;

	while (!atomic_load(&f->accepted))
		usleep(1000);

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

#define HELLO_RESULT "{\"protocol\":1,\"version\":\"0.1.0\",\"pid\":42,\"uid\":7,\"admin\":true}"

START_TEST(test_exchange_hello)
{
	static const struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":" HELLO_RESULT ",\"id\":%ID%}" } },
	};
	struct fake f;
	struct zc_hello h;
	zc_client *c;

	fake_start(&f, steps, 1);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_hello(c, &h), 0);
	ck_assert_uint_eq(h.protocol, 1);
	ck_assert_str_eq(h.version, "0.1.0");
	ck_assert_int_eq(h.pid, 42);
	ck_assert_uint_eq(h.uid, 7);
	ck_assert(h.admin);
	ck_assert_int_eq(f.last_id, 2); /* 1 was zc_connect's own hello */
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"method\":\"daemon.hello\""));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"jsonrpc\":\"2.0\""));
	zc_close(c);
	fake_stop(&f);
}
END_TEST

/* Notifications, replies to other ids, garbage-free but unrelated packets
 * and their fds are skipped; the fds are closed. */
START_TEST(test_exchange_skips)
{
	int p[2];
	struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"method\":\"zone.changed\",\"params\":{}}",
			       "{\"jsonrpc\":\"2.0\",\"result\":{},\"id\":999}",
			       "{\"jsonrpc\":\"2.0\",\"result\":" HELLO_RESULT ",\"id\":%ID%}" },
		  .fd_on = 1 },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{},\"id\":12345}",
			       "{\"jsonrpc\":\"2.0\",\"result\":" HELLO_RESULT ",\"id\":%ID%}" },
		  .fd_on = 1 },
	};
	struct fake f;
	struct zc_hello h;
	zc_client *c;
	int before;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	steps[0].fd = steps[1].fd = p[0];
	fake_start(&f, steps, 2);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	before = count_fds(&f);
	ck_assert_int_eq(zc_hello(c, &h), 0);
	ck_assert_int_eq(zc_hello(c, &h), 0);
	ck_assert_int_eq(f.last_id, 3);
	ck_assert_int_eq(count_fds(&f), before);
	zc_close(c);
	fake_stop(&f);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_exchange_errors)
{
	static const struct step steps[] = {
		/* A daemon error: mapped errno and the daemon's message. */
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32002,\"message\":"
			       "\"no device 'sdz'\",\"data\":{\"field\":\"device\"}},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32004,\"message\":\"busy\"},"
			       "\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,\"message\":\"bad\"},"
			       "\"id\":null}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-31999,\"message\":\"odd\"},"
			       "\"id\":%ID%}" } },
		/* Malformed: not JSON, then a result missing fields. */
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"protocol\":1},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"protocol\":\"1\",\"version\":\"x\","
			       "\"pid\":1,\"uid\":1,\"admin\":true},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"id\":%ID%}" } },
	};
	struct fake f;
	struct zc_device d;
	struct zc_hello h;
	zc_client *c;

	fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_str_eq(zc_last_error(c), "");
	ck_assert_int_eq(zc_device_info(c, "sdz", &d), -ENODEV);
	ck_assert_str_eq(zc_last_error(c), "no device 'sdz'");
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"device\":\"sdz\""));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"method\":\"device.info\""));
	ck_assert_int_eq(zc_hello(c, &h), -EBUSY);
	ck_assert_str_eq(zc_last_error(c), "busy");
	ck_assert_int_eq(zc_hello(c, &h), -EINVAL);
	ck_assert_str_eq(zc_last_error(c), "bad");
	ck_assert_int_eq(zc_hello(c, &h), -EREMOTEIO);
	ck_assert_int_eq(zc_hello(c, &h), -EPROTO);
	ck_assert_str_eq(zc_last_error(c), "unreadable reply from the daemon");
	ck_assert_int_eq(zc_hello(c, &h), -EPROTO);
	ck_assert_int_eq(zc_hello(c, &h), -EPROTO);
	ck_assert_int_eq(zc_hello(c, &h), -EPROTO);
	/* The script is over: the fake daemon hangs up. */
	ck_assert_int_eq(zc_hello(c, &h), -ECONNRESET);
	ck_assert_str_eq(zc_last_error(c), "the daemon closed the connection");
	zc_close(c);
	fake_stop(&f);
}
END_TEST

/* Iterator: pages are fetched one at a time, only when the previous one is
 * consumed, and the continuation sends from=next with the count reduced. */
#define Z(i, c) "{\"index\":" #i ",\"start\":" #i "000,\"len\":1000,\"capacity\":900,\"wp\":" #i \
		"000,\"type\":\"seq-write-required\",\"cond\":\"" c "\"}"
START_TEST(test_iter_paging)
{
	static const struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"zones\":[" Z(2, "empty") "," Z(3, "full")
			       "],\"next\":4},\"id\":%ID%}" } },
		/* An empty page that is not the end. */
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"zones\":[],\"next\":6},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"zones\":[" Z(7, "closed")
			       "],\"next\":null},\"id\":%ID%}" } },
	};
	struct zc_report_opts o = { .from = 2, .count = 10,
				    .cond_mask = 1u << ZC_COND_EMPTY | 1u << ZC_COND_FULL | 1u << ZC_COND_CLOSED,
				    .type_mask = 1u << ZC_TYPE_SWR };
	struct fake f;
	struct zc_zone z;
	zc_zone_iter *it;
	zc_client *c;

	fake_start(&f, steps, 3);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_zone_iter_new(c, "emu0", &o, &it), 0);
	ck_assert_int_eq(f.requests, 0); /* lazy: nothing asked yet */
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 1);
	ck_assert_int_eq(f.requests, 1);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"from\":2"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"count\":10"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"cond\":[\"empty\",\"closed\",\"full\"]"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"type\":[\"seq-write-required\"]"));
	ck_assert_uint_eq(z.index, 2);
	ck_assert_uint_eq(z.start, 2000);
	ck_assert_uint_eq(z.len, 1000);
	ck_assert_uint_eq(z.capacity, 900);
	ck_assert_uint_eq(z.wp, 2000);
	ck_assert_int_eq(z.type, ZC_TYPE_SWR);
	ck_assert_int_eq(z.cond, ZC_COND_EMPTY);
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 1);
	ck_assert_uint_eq(z.index, 3);
	ck_assert_int_eq(z.cond, ZC_COND_FULL);
	ck_assert_int_eq(f.requests, 1);
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 1);
	ck_assert_int_eq(f.requests, 3);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"from\":6"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"count\":6")); /* 10 - (6 - 2) */
	ck_assert_uint_eq(z.index, 7);
	ck_assert_int_eq(z.cond, ZC_COND_CLOSED);
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 0);
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 0);
	ck_assert_int_eq(f.requests, 3);
	zc_zone_iter_free(it);
	zc_close(c);
	fake_stop(&f);
}
END_TEST

#define RUNS(from, runs, next) "{\"jsonrpc\":\"2.0\",\"result\":{\"from\":" #from \
	",\"zone_size\":1000,\"capacity\":900,\"runs\":\"" runs "\",\"next\":" #next "},\"id\":%ID%}"
/* A daemon with "report-runs" is asked for runs; they expand into zones
 * (starts from the zone size, wp from the zone start, the page's capacity
 * and length unless the run says), skips are left out, paging goes on. */
START_TEST(test_iter_runs)
{
	static const struct step steps[] = {
		{ .packets = { RUNS(2, "2,1,1,0 1 1,1,4,300,800 1,1,7,x", 7) } },
		{ .packets = { RUNS(7, "2", 9) } },
		{ .packets = { RUNS(9, "2,0,0,1000,1000 1,1,5,500,500,500", null) } },
	};
	static const struct { uint32_t index; uint64_t len, cap, wp; int type, cond; } want[] = {
		{ 2, 1000, 900, 2000, ZC_TYPE_SWR, ZC_COND_EMPTY },
		{ 3, 1000, 900, 3000, ZC_TYPE_SWR, ZC_COND_EMPTY },
		{ 5, 1000, 800, 5300, ZC_TYPE_SWR, ZC_COND_CLOSED },
		{ 6, 1000, 900, UINT64_MAX, ZC_TYPE_SWR, ZC_COND_OFFLINE },
		{ 9, 1000, 1000, 10000, ZC_TYPE_CONV, ZC_COND_NOT_WP },
		{ 10, 1000, 1000, 11000, ZC_TYPE_CONV, ZC_COND_NOT_WP },
		{ 11, 500, 500, 11500, ZC_TYPE_SWR, ZC_COND_FULL },
	};
	struct fake f;
	struct zc_zone z;
	zc_zone_iter *it;
	zc_client *c;

	fake_start_f(&f, steps, 3, 0, "[\"report-runs\",\"something-newer\"]");
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_zone_iter_new(c, "emu0", &(struct zc_report_opts){ .from = 2 }, &it), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ck_assert_int_eq(zc_zone_iter_next(it, &z), 1);
		if (i == 0) {
			ck_assert_ptr_nonnull(strstr(f.last_req, "\"format\":\"runs\""));
			ck_assert_ptr_nonnull(strstr(f.last_req, "\"from\":2"));
		}
		ck_assert_uint_eq(z.index, want[i].index);
		ck_assert_uint_eq(z.start, (uint64_t)z.index * 1000);
		ck_assert_uint_eq(z.len, want[i].len);
		ck_assert_uint_eq(z.capacity, want[i].cap);
		ck_assert_uint_eq(z.wp, want[i].wp);
		ck_assert_int_eq(z.type, want[i].type);
		ck_assert_int_eq(z.cond, want[i].cond);
	}
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 0);
	ck_assert_int_eq(f.requests, 3);
	zc_zone_iter_free(it);
	zc_close(c);
	fake_stop(&f);
}
END_TEST

/* Runs out of shape are a protocol error, not zones made up. */
START_TEST(test_iter_runs_malformed)
{
	static const char *const bad[] = {
		RUNS(0, "0,1,1,0", null),        /* an empty run */
		RUNS(0, "1,3,1,0", null),        /* no such type */
		RUNS(0, "1,1,8,0", null),        /* no such condition */
		RUNS(0, "1,1,1", null),          /* no wp */
		RUNS(0, "1,1,1,0,1,1,1", null),  /* too many fields */
		RUNS(0, "1,1,1,0,1001", null),   /* capacity past the length */
		RUNS(0, "1,1,1,1001", null),     /* wp past the zone */
		RUNS(0, "1,1,1,-1", null),       /* a sign */
		RUNS(0, "1,1,1,0  1", null),     /* two spaces */
		RUNS(0, "1,1,1,0 ", null),       /* a trailing space */
		RUNS(0, "2,1,1,0", 3),           /* runs short of next */
		RUNS(1, "1,1,1,0", null),        /* another page than asked */
		RUNS(0, "99999999999999999999,1,1,0", null),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct step steps[1] = { { .packets = { bad[i] } } };
		struct fake f;
		struct zc_zone z;
		zc_zone_iter *it;
		zc_client *c;

		fake_start_f(&f, steps, 1, 0, "[\"report-runs\"]");
		ck_assert_int_eq(zc_connect(f.path, &c), 0);
		ck_assert_int_eq(zc_zone_iter_new(c, "emu0", NULL, &it), 0);
		ck_assert_msg(zc_zone_iter_next(it, &z) == -EPROTO, "accepted %s", bad[i]);
		ck_assert_int_eq(zc_zone_iter_next(it, &z), 0);
		zc_zone_iter_free(it);
		zc_close(c);
		fake_stop(&f);
	}
}
END_TEST

START_TEST(test_iter_no_progress)
{
	static const struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"zones\":[],\"next\":0},\"id\":%ID%}" } },
	};
	struct fake f;
	struct zc_zone z;
	zc_zone_iter *it;
	zc_client *c;

	fake_start(&f, steps, 1);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_zone_iter_new(c, "emu0", NULL, &it), 0);
	ck_assert_int_eq(zc_zone_iter_next(it, &z), -EPROTO);
	ck_assert_ptr_null(strstr(f.last_req, "\"count\""));
	ck_assert_int_eq(zc_zone_iter_next(it, &z), 0);
	zc_zone_iter_free(it);
	/* Masks with bits beyond the names are refused before any call. */
	ck_assert_int_eq(zc_zone_iter_new(c, "emu0", &(struct zc_report_opts){ .cond_mask = 1u << 8 }, &it),
			 -EINVAL);
	zc_close(c);
	fake_stop(&f);
}
END_TEST

/* A lease served by the fake daemon over a plain file, for the argument
 * checks an append makes before any syscall. */
#define LEASE(wp) "{\"id\":5,\"token\":18446744073709551557,\"device\":\"emu0\",\"zone\":3," \
		  "\"start\":12288,\"len\":8192,\"capacity\":8192,\"wp\":" #wp ",\"block_size\":4096," \
		  "\"label\":\"t\",\"direct\":false}"
START_TEST(test_lease_checks)
{
	char path[128];
	struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":" LEASE(12288)
			       ",\"fd\":0},\"id\":%ID%}" },
		  .fd_on = 1 },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":" LEASE(20480) "},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32007,\"message\":\"stale\"},"
			       "\"id\":%ID%}" } },
	};
	static char block[2 * 4096] __attribute__((aligned(4096)));
	struct zc_lease_opts o;
	struct fake f;
	zc_lease *l;
	zc_client *c;
	char rd[16];
	int fd, before;

	snprintf(path, sizeof(path), "%s/backing", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 32768), 0);
	steps[0].fd = fd;
	fake_start(&f, steps, 3);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	before = count_fds(&f);
	zc_lease_opts_init(&o);
	o.device = "emu0";
	o.label = "t";
	o.buffered = true;
	ck_assert_int_eq(zc_lease_acquire(c, &o, &l), 0);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"direct\":false"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"label\":\"t\""));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"device\":\"emu0\""));
	ck_assert_ptr_null(strstr(f.last_req, "\"zone\""));
	ck_assert_int_eq(count_fds(&f), before + 1);
	ck_assert_uint_eq(zc_lease_id(l), 5);
	ck_assert_uint_eq(zc_lease_token(l), 18446744073709551557ull);
	ck_assert_str_eq(zc_lease_device(l), "emu0");
	ck_assert_uint_eq(zc_lease_zone(l), 3);
	ck_assert_uint_eq(zc_lease_start(l), 12288);
	ck_assert_uint_eq(zc_lease_len(l), 8192);
	ck_assert_uint_eq(zc_lease_capacity(l), 8192);
	ck_assert_uint_eq(zc_lease_wp(l), 12288);
	ck_assert_uint_eq(zc_lease_block_size(l), 4096);
	ck_assert(!zc_lease_direct(l));
	ck_assert_str_eq(zc_lease_label(l), "t");
	ck_assert_int_ge(zc_lease_fd(l), 0);

	/* Checks before any syscall. */
	ck_assert_int_eq(zc_lease_append(l, block, 100), -EINVAL);
	ck_assert_int_eq(zc_lease_append(l, block, 3 * 4096), -ENOSPC);
	ck_assert_int_eq(zc_lease_appendv(l, NULL, -1), -EINVAL);
	ck_assert_int_eq(zc_lease_appendv(l, (struct iovec[]){ { block, 100 }, { block, 100 } }, 2),
			 -EINVAL);
	ck_assert_uint_eq(zc_lease_wp(l), 12288);
	/* Buffered: any alignment, whole blocks in total. */
	memset(block, 'a', sizeof(block));
	ck_assert_int_eq(zc_lease_appendv(l, (struct iovec[]){ { block + 1, 4000 }, { block, 96 } }, 2), 0);
	ck_assert_uint_eq(zc_lease_wp(l), 16384);
	ck_assert_int_eq(zc_lease_append(l, block, 4096), 0);
	ck_assert_uint_eq(zc_lease_wp(l), 20480);
	ck_assert_int_eq(zc_lease_append(l, block, 4096), -ENOSPC);
	ck_assert_int_eq(zc_lease_append(l, block, 0), 0);
	/* It landed at the zone start of the file. */
	ck_assert_int_eq(pread(fd, rd, sizeof(rd), 12288), (ssize_t)sizeof(rd));
	ck_assert_int_eq(memcmp(rd, "aaaaaaaaaaaaaaaa", sizeof(rd)), 0);
	/* Reads are clamped to the zone. */
	ck_assert_int_eq(zc_lease_pread(l, block, sizeof(block), 4096), 4096);
	ck_assert_int_eq(zc_lease_pread(l, block, 16, 8192), 0);
	ck_assert_int_eq(zc_lease_pread(l, block, 16, 8193), -EINVAL);

	ck_assert_int_eq(zc_lease_sync(l), 0);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"wp\":20480"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"token\":18446744073709551557"));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"method\":\"lease.sync\""));
	/* The daemon forgot the lease: from now on it is stale locally. */
	ck_assert_int_eq(zc_lease_reset(l), -ESTALE);
	ck_assert_str_eq(zc_last_error(c), "stale");
	ck_assert_int_eq(zc_lease_append(l, block, 4096), -ESTALE);
	ck_assert_int_eq(zc_lease_pread(l, block, 16, 0), -ESTALE);
	ck_assert_int_eq(zc_lease_sync(l), -ESTALE);
	ck_assert_int_eq(f.requests, 3);
	/* Release of a stale lease fails, and frees and closes anyway. */
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ESTALE);
	ck_assert_int_eq(count_fds(&f), before);
	zc_close(c);
	fake_stop(&f);
	close(fd);
}
END_TEST

/* O_DIRECT leases need aligned buffers and segments. */
START_TEST(test_lease_direct_checks)
{
	char path[128];
	struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":{\"id\":1,\"token\":2,"
			       "\"device\":\"emu0\",\"zone\":0,\"start\":0,\"len\":65536,\"capacity\":"
			       "32768,\"wp\":0,\"block_size\":4096,\"label\":\"\",\"direct\":true},"
			       "\"fd\":0},\"id\":%ID%}" },
		  .fd_on = 1 },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"zone\":{}},\"id\":%ID%}" } },
	};
	static char block[2 * 4096] __attribute__((aligned(4096)));
	struct fake f;
	zc_lease *l;
	zc_client *c;
	int fd;

	snprintf(path, sizeof(path), "%s/backing", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	steps[0].fd = fd;
	fake_start(&f, steps, 2);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_lease_acquire(c, NULL, &l), 0);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"direct\":true"));
	ck_assert(zc_lease_direct(l));
	ck_assert_uint_eq(zc_lease_capacity(l), 32768);
	ck_assert_int_eq(zc_lease_append(l, block + 512, 4096), -EINVAL);
	ck_assert_int_eq(zc_lease_appendv(l, (struct iovec[]){ { block, 2048 }, { block, 2048 } }, 2),
			 -EINVAL);
	ck_assert_int_eq(zc_lease_append(l, block, 12 * 4096), -ENOSPC);
	ck_assert_uint_eq(zc_lease_wp(l), 0);
	/* fopen takes "w"/"a" only. */
	errno = 0;
	ck_assert_ptr_null(zc_lease_fopen(l, "r"));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(zc_lease_fopen(l, "w+"));
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"then\":\"reset\""));
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"id\":1"));
	zc_close(c);
	fake_stop(&f);
	close(fd);
}
END_TEST

/* A lease outliving its client's zc_close() fails cleanly. */
START_TEST(test_lease_after_close)
{
	char path[128];
	struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":" LEASE(12288)
			       ",\"fd\":0},\"id\":%ID%}" },
		  .fd_on = 1 },
	};
	static char block[4096];
	struct fake f;
	zc_lease *l;
	zc_client *c;
	int fd;

	snprintf(path, sizeof(path), "%s/backing", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	steps[0].fd = fd;
	fake_start(&f, steps, 1);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_lease_acquire(c, NULL, &l), 0);
	zc_close(c);
	ck_assert_int_eq(zc_lease_append(l, block, 4096), -ENOTCONN);
	ck_assert_int_eq(zc_lease_sync(l), -ENOTCONN);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ENOTCONN);
	fake_stop(&f);
	close(fd);
}
END_TEST

/* A reply without the promised fd is a protocol error. */
START_TEST(test_lease_no_fd)
{
	static const struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":" LEASE(12288)
			       ",\"fd\":0},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"zone\":{}},\"id\":%ID%}" } },
	};
	struct fake f;
	zc_lease *l = (zc_lease *)1;
	zc_client *c;

	fake_start(&f, steps, 2);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_lease_acquire(c, NULL, &l), -EPROTO);
	ck_assert_ptr_null(l);
	/* ... and the lease it names was handed back (without waiting for
	 * the answer: the fake daemon has it once it is stopped). */
	zc_close(c);
	fake_stop(&f);
	ck_assert_int_eq(f.requests, 2);
	ck_assert_ptr_nonnull(strstr(f.last_req, "\"method\":\"lease.release\""));
}
END_TEST

/* Several threads share one client; each gets its own reply. */
#define NTHREADS 4
#define NCALLS 50
static void *hello_thread(void *arg)
{
	zc_client *c = arg;
	struct zc_hello h;
	intptr_t bad = 0;

	for (int i = 0; i < NCALLS; i++)
		if (zc_hello(c, &h) != 0 || h.pid != 42)
			bad++;
	return (void *)bad;
}

START_TEST(test_threads)
{
	static struct step steps[NTHREADS * NCALLS];
	struct fake f;
	pthread_t t[NTHREADS];
	zc_client *c;

	for (size_t i = 0; i < NTHREADS * NCALLS; i++)
		steps[i].packets[0] = "{\"jsonrpc\":\"2.0\",\"result\":" HELLO_RESULT ",\"id\":%ID%}";
	fake_start(&f, steps, NTHREADS * NCALLS);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hello_thread, c), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *bad;

		pthread_join(t[i], &bad);
		ck_assert_ptr_null(bad);
	}
	ck_assert_int_eq(f.requests, NTHREADS * NCALLS);
	ck_assert_int_eq(f.last_id, NTHREADS * NCALLS + 1);
	zc_close(c);
	fake_stop(&f);
}
END_TEST

/* A daemon refusing a connection (too many for this uid) sends a null-id
 * error reply and hangs up before reading anything: the first call reports
 * that error, not "Connection reset by peer", and the connection counts as
 * lost from then on. */
static void *refuser_main(void *arg)
{
	struct fake *f = arg;
	static const char err[] = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32001,"
				  "\"message\":\"too many connections for this uid\"},\"id\":null}";
	int s = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (s >= 0) {
		zp_send(s, err, strlen(err), -1, 0);
		close(s);
	}
	atomic_store(&f->accepted, 1);
	return NULL;
}

START_TEST(test_refused_connection)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct zc_hello h;
	struct fake f;
	zc_client *c;

	memset(&f, 0, sizeof(f));
	snprintf(f.path, sizeof(f.path), "%s/fake.sock", tmpdir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f.path);
	f.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(f.listen_fd, 0);
	ck_assert_int_eq(bind(f.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f.listen_fd, 4), 0);
	ck_assert_int_eq(pthread_create(&f.thread, NULL, refuser_main, &f), 0);
	/* zc_connect's own hello meets the refusal, and says why. */
	(void)h;
	ck_assert_int_eq(zc_connect(f.path, &c), -EACCES);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(zc_last_error(NULL), "too many connections for this uid");
	fake_stop(&f);
}
END_TEST

/* zc_connect refuses a daemon of another protocol version, clearly. */
START_TEST(test_protocol_mismatch)
{
	struct fake f;
	zc_client *c;

	fake_start_proto(&f, ZP_PROTOCOL_VERSION + 1);
	ck_assert_int_eq(zc_connect(f.path, &c), -EPROTONOSUPPORT);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(zc_last_error(NULL), "protocol version"));
	fake_stop(&f);
	fake_start_proto(&f, 0);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_str_eq(zc_last_error(NULL), "");
	zc_close(c);
	fake_stop(&f);
}
END_TEST

/* The daemon hanging up mid-session marks and fences every lease. */
START_TEST(test_hangup_fences_leases)
{
	char path[128];
	struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":" LEASE(12288)
			       ",\"fd\":0},\"id\":%ID%}" },
		  .fd_on = 1 },
	};
	static char block[4096];
	struct zc_hello h;
	struct fake f;
	zc_lease *l;
	zc_client *c;
	int fd;

	snprintf(path, sizeof(path), "%s/backing", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	steps[0].fd = fd;
	fake_start(&f, steps, 1);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_lease_acquire(c, NULL, &l), 0);
	/* Past its script the fake hangs up at the next request. */
	ck_assert_int_eq(zc_hello(c, &h), -ECONNRESET);
	ck_assert_int_eq(zc_lease_append(l, block, 4096), -ENOTCONN);
	ck_assert_int_eq(pwrite(zc_lease_fd(l), block, 4096, 12288), -1);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_KEEP), -ENOTCONN);
	zc_close(c);
	fake_stop(&f);
	close(fd);
}
END_TEST

/* A full zone's write pointer may come back at the zone's end (start +
 * len) rather than at its capacity: the lease is granted, full. */
START_TEST(test_lease_full_zone)
{
	char path[128];
	struct step steps[] = {
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":{\"id\":1,\"token\":2,"
			       "\"device\":\"emu0\",\"zone\":1,\"start\":8192,\"len\":8192,\"capacity\":"
			       "4096,\"wp\":16384,\"block_size\":4096,\"label\":\"\",\"direct\":false},"
			       "\"fd\":0},\"id\":%ID%}" },
		  .fd_on = 1 },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":{\"id\":1,\"token\":2,"
			       "\"zone\":1,\"wp\":16384}},\"id\":%ID%}" } },
		{ .packets = { "{\"jsonrpc\":\"2.0\",\"result\":{},\"id\":%ID%}" } },
	};
	static char block[4096];
	struct fake f;
	zc_lease *l;
	zc_client *c;
	int fd;

	snprintf(path, sizeof(path), "%s/backing", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	steps[0].fd = fd;
	fake_start(&f, steps, 3);
	ck_assert_int_eq(zc_connect(f.path, &c), 0);
	ck_assert_int_eq(zc_lease_acquire(c, NULL, &l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), 8192 + 4096);
	ck_assert_int_eq(zc_lease_append(l, block, 4096), -ENOSPC);
	ck_assert_int_eq(zc_lease_sync(l), 0);
	ck_assert_uint_eq(zc_lease_wp(l), 8192 + 4096);
	ck_assert_int_eq(zc_lease_release(l, ZC_RELEASE_RESET), 0);
	zc_close(c);
	fake_stop(&f);
	close(fd);
}
END_TEST

static Suite *client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("offline");

	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_null_args);
	tcase_add_test(tc, test_abi);
	suite_add_tcase(s, tc);

	tc = tcase_create("fake-daemon");
	tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_connect_missing);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_connect_too_long);
	tcase_add_test(tc, test_exchange_hello);
	tcase_add_test(tc, test_exchange_skips);
	tcase_add_test(tc, test_exchange_errors);
	tcase_add_test(tc, test_iter_paging);
	tcase_add_test(tc, test_iter_no_progress);
	tcase_add_test(tc, test_iter_runs);
	tcase_add_test(tc, test_iter_runs_malformed);
	tcase_add_test(tc, test_lease_checks);
	tcase_add_test(tc, test_lease_direct_checks);
	tcase_add_test(tc, test_lease_after_close);
	tcase_add_test(tc, test_refused_connection);
	tcase_add_test(tc, test_protocol_mismatch);
	tcase_add_test(tc, test_lease_full_zone);
	tcase_add_test(tc, test_hangup_fences_leases);
	tcase_add_test(tc, test_lease_no_fd);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(client_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
