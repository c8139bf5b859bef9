/* libFuzzer target: one packet into the daemon's real message handling.
 * A zd_daemon with two small emulated devices is set up once; each input is
 * handed to zd_conn_handle_packet() on a fresh connection over a socketpair,
 * the loop runs until the reply is out, and the connection is then closed
 * and everything it held must come back (leases, zones, fds, connections). */
#include <config.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/log.h"
#include "fuzz/fuzz.h"

/* Far more loop iterations than any reply needs (device work is one thread
 * pool round trip per operation, a waiting acquire at most max_wait_ms);
 * past it the daemon lost a call, which is a finding. */
#define LOOP_BOUND 100000

/* libFuzzer's entry points: the whole state of the harness. */
static struct {
	struct zd_daemon d;
	uv_loop_t loop;
	char dir[256];
	char buf[ZP_MSG_MAX + 1];
	int baseline_fds;
	bool verbose;               /* $FUZZ_VERBOSE: daemon log and replies */
} h;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

static void cleanup(void)
{
	if (h.dir[0])
		nftw(h.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void add_device(const char *id, const char *spec)
{
	struct zd_device_conf dc;
	char why[256] = "";

	memset(&dc, 0, sizeof(dc));
	dc.emulated = true;
	snprintf(dc.id, sizeof(dc.id), "%s", id);
	snprintf(dc.path, sizeof(dc.path), "%s/%s.img", h.dir, id);
	snprintf(dc.spec, sizeof(dc.spec), "%s", spec);
	if (zd_device_add(&h.d, &dc, why, sizeof(why)) < 0)
		fuzz_die("cannot add device %s: %s", id, why);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	h.verbose = getenv("FUZZ_VERBOSE") != NULL;
	zd_log_set_level(h.verbose ? LOG_DEBUG : LOG_EMERG);
	fuzz_tmpdir(h.dir, sizeof(h.dir), "message");
	atexit(cleanup);
	if (uv_loop_init(&h.loop) < 0 || zd_daemon_init(&h.d, &h.loop) < 0)
		fuzz_die("cannot initialise the daemon");
	zd_config_defaults(&h.d.cfg);
	snprintf(h.d.cfg.state_dir, sizeof(h.d.cfg.state_dir), "%s", h.dir);
	/* A waiting acquire ends within a millisecond: each input stays short,
	 * and the waiter paths still run. */
	h.d.cfg.max_wait_ms = 1;
	/* Few leases per connection, so the limit is reachable in one batch. */
	h.d.cfg.max_leases_per_conn = 8;
	/* A reclaimable lease outlives its connection for the grace: none,
	 * so it is released on the next loop turn and no lease is left
	 * between inputs. */
	h.d.cfg.grace_ms = 0;
	if (zd_state_generation_bump(&h.d) < 0)
		fuzz_die("cannot persist the token generation in %s", h.dir);
	/* The device of tests/test-proto.c (16 zones, 2 conventional, open and
	 * active limits), and one without limits or conventional zones. */
	add_device("emu0", "size=16M,zone-size=1M,zone-capacity=768K,conv=2,max-open=4,"
		   "max-active=6,lbs=4096");
	add_device("emu1", "size=4M,zone-size=512K,conv=0,max-open=0,max-active=0,lbs=512");
	/* As zonedd starts: the lease table is opened (its fd counts in the
	 * baseline). */
	if (zd_lease_adopt(&h.d) < 0)
		fuzz_die("cannot open the lease table in %s", h.dir);
	h.baseline_fds = fuzz_count_fds();
	return 0;
}

/* Replies must be what a client can parse: strict JSON, one per packet. */
static unsigned drain(int peer)
{
	unsigned n = 0;

	for (;;) {
		int fd = -1;
		ssize_t len = zp_recv(peer, h.buf, sizeof(h.buf), &fd, MSG_DONTWAIT);
		struct json_object *o;

		if (fd >= 0)
			close(fd);
		if (len == -EAGAIN || len == 0)
			return n;
		if (len < 0)
			fuzz_die("recv from the daemon: %s", strerror((int)-len));
		if (len > ZP_MSG_MAX)
			fuzz_die("the daemon sent a %zd-byte packet, past the %d limit", len, ZP_MSG_MAX);
		o = zp_parse(h.buf, (size_t)len);
		if (!o)
			fuzz_die("the daemon sent a reply it would refuse itself: %.*s", (int)len, h.buf);
		if (h.verbose)
			fprintf(stderr, "fuzz: reply: %.*s\n", (int)len, h.buf);
		/* Events (protocol 2) are notifications, not replies: a
		 * subscribed input, or the revocation of the harness's lease. */
		if (!json_object_is_type(o, json_type_object) ||
		    !json_object_object_get_ex(o, "method", NULL))
			n++;
		json_object_put(o);
	}
}

static bool device_idle(const struct zd_device *dev)
{
	return !dev->nr_running && zd_list_empty(&dev->work_queue) && dev->refs == 0;
}

static bool daemon_idle(struct zd_conn *conn)
{
	struct zd_list *pos, *tmp;

	if (conn->refs != 1 || h.d.nr_releasing || conn->nr_waiters || h.d.log_busy ||
	    !zd_list_empty(&h.d.log_pending) || !zd_list_empty(&h.d.log_done) ||
	    !zd_list_empty(&h.d.orphans) ||
	    !zd_list_empty(&h.d.any_waiters.list) || !zd_list_empty(&h.d.release_waiters))
		return false;
	zd_list_for_each_safe(pos, tmp, &h.d.devices)
		if (!device_idle(zd_container_of(pos, struct zd_device, link)))
			return false;
	return true;
}

/* Every input starts from all sequential zones empty, so what an input does
 * depends on the input alone (lease ids and counters aside) and a crash
 * reproduces from its file. Done through the backend directly: the daemon
 * is idle and no lease exists. */
static void reset_devices(void)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &h.d.devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);
		uint32_t first = dev->info.nr_conventional, nseq = dev->info.nr_zones - first;
		struct zd_zone z;
		uint32_t one;
		int r;

		if (dev->class_count[ZD_ZC_LEASED])
			fuzz_die("%s: %u zones still leased after the connection closed", dev->id,
				 dev->class_count[ZD_ZC_LEASED]);
		/* The zones opened ahead are the daemon's, not a leak; gone
		 * between inputs, so each starts from the same daemon. */
		zd_device_ready_clear(dev);
		if (dev->cond_count[ZP_COND_EMPTY] == nseq)
			continue;
		r = dev->dev->ops->zone_op(dev->dev, ZD_OP_RESET, first, nseq);
		if (r < 0)
			fuzz_die("%s: resetting the sequential zones: %s", dev->id, strerror(-r));
		for (uint32_t i = first; i < dev->info.nr_zones; i++) {
			one = 1;
			r = dev->dev->ops->report(dev->dev, i, &z, &one);
			if (r < 0 || one != 1)
				fuzz_die("%s: report of zone %u: %s", dev->id, i, strerror(-r));
			zd_device_zone_update(dev, i, &z);
		}
		if (dev->cond_count[ZP_COND_EMPTY] != nseq)
			fuzz_die("%s: %u of %u sequential zones empty after a reset", dev->id,
				 dev->cond_count[ZP_COND_EMPTY], nseq);
	}
}

/* Hands one packet to the daemon as conn_read() would and runs the loop
 * until its reply is out; returns the number of replies the peer got. */
static unsigned run_packet(struct zd_conn *conn, int peer, const char *buf, size_t len)
{
	unsigned replies = 0;
	int i;

	conn->refs++;
	zd_conn_handle_packet(conn, buf, len, len > ZP_MSG_MAX);
	zd_conn_put(conn);
	for (i = 0; !conn->closing && conn->batches > 0; i++) {
		if (i == LOOP_BOUND)
			fuzz_die("a call never completed (%u batches pending)", conn->batches);
		replies += drain(peer);
		uv_run(&h.loop, UV_RUN_ONCE);
	}
	/* Queued replies go out on the next writable event. */
	for (i = 0; i < 16 && !conn->closing && !zd_list_empty(&conn->out); i++) {
		replies += drain(peer);
		uv_run(&h.loop, UV_RUN_NOWAIT);
	}
	return replies + drain(peer);
}

/* Each input finds the connection holding a lease it can name (lease 1,
 * token 1 << 32 | 1: the fresh state directory makes the generation 1), so
 * the lease methods reach a live lease: within one packet a lease being
 * acquired cannot be named yet. */
static const char pre_acquire[] =
	"{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\","
	"\"params\":{\"device\":\"emu0\",\"zone\":5,\"label\":\"fuzz\"},\"id\":0}";

/* One connection's life: the harness's lease, the input, the hang-up. A
 * plain client (admin false) is what a peer of another uid in the client
 * group would be: the socketpair's credentials are always our own. */
static void run_conn(const uint8_t *data, size_t size, bool parses, bool admin)
{
	struct zd_conn *conn;
	unsigned replies;
	int sv[2], i;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		fuzz_die("socketpair: %m");
	if (zd_conn_accept(&h.d, sv[0]) < 0)
		fuzz_die("zd_conn_accept failed");
	conn = zd_container_of(h.d.conns.prev, struct zd_conn, link);
	/* Held to look at it after the daemon has closed it. */
	conn->refs++;
	conn->admin = admin;
	conn->client = true;

	/* No lease exists between inputs, so numbering them from 1 again
	 * cannot make two alike; it makes each input's ids its own. */
	h.d.next_lease_id = 1;
	h.d.next_token_seq = 0;
	if (run_packet(conn, sv[1], pre_acquire, sizeof(pre_acquire) - 1) != 1 ||
	    conn->nr_leases != 1)
		fuzz_die("the harness's own lease.acquire failed");

	replies = run_packet(conn, sv[1], (const char *)data, size);
	if (replies > 1)
		fuzz_die("%u replies to one packet", replies);
	/* A packet that is not JSON is always answered (a parse error). */
	if (!parses && !conn->closing && replies != 1)
		fuzz_die("no reply to a packet that is not valid JSON");

	/* The client goes away: all it held must be given back. */
	if (!conn->closing)
		zd_conn_close(conn);
	close(sv[1]);
	for (i = 0; !daemon_idle(conn); i++) {
		if (i == LOOP_BOUND)
			fuzz_die("the daemon did not settle after the connection closed "
				 "(refs %u, releasing %u)", conn->refs, h.d.nr_releasing);
		uv_run(&h.loop, UV_RUN_ONCE);
	}
	if (!zd_list_empty(&conn->leases) || conn->nr_leases)
		fuzz_die("a closed connection still holds %u leases", conn->nr_leases);
	zd_conn_put(conn);
	if (h.d.nr_conns != 0)
		fuzz_die("%u connections left after the only one closed", h.d.nr_conns);
	reset_devices();
	fuzz_check_fds(h.baseline_fds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *o = size <= ZP_MSG_MAX ? zp_parse((const char *)data, size) : NULL;
	bool parses = o != NULL;

	json_object_put(o);
	run_conn(data, size, parses, true);
	/* Again as a plain client, where the permission checks and the
	 * owner-only views apply; a packet that does not parse never gets
	 * that far. */
	if (parses)
		run_conn(data, size, parses, false);
	return 0;
}
