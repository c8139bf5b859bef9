/* uv-leases: drives leases of zonedd from a libuv loop through
 * libzoned-client's non-blocking core. It keeps IN_FLIGHT acquires going at
 * once (they wait in the daemon when the device has fewer free zones),
 * appends a block to every lease it gets, releases it with a reset and
 * starts the next acquire, until TOTAL leases have been used; meanwhile it
 * prints the daemon's events as they come, between the replies.
 *
 *   uv-leases [-s SOCKET] [-n IN_FLIGHT] [-t TOTAL] [-q] DEVICE
 *
 * Prints one summary line (and, without -q, one line per event); exits 0
 * when every lease was acquired, written and released. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <zoned/client.h>

struct app {
	uv_loop_t *loop;
	uv_poll_t poll;
	uv_timer_t deadline;
	zc_client *c;
	const char *device;
	void *block;
	unsigned total, started, acquired, written, released, failed;
	unsigned in_flight, max_in_flight, events, revoked;
	bool quiet, done;
};

static void start_acquire(struct app *a);

static void finish(struct app *a)
{
	if (a->done)
		return;
	a->done = true;
	uv_poll_stop(&a->poll);
	uv_close((uv_handle_t *)&a->poll, NULL);
	uv_timer_stop(&a->deadline);
	uv_close((uv_handle_t *)&a->deadline, NULL);
}

static void released(zc_client *c, int err, void *userdata)
{
	struct app *a = userdata;

	(void)c;
	if (err < 0) {
		fprintf(stderr, "uv-leases: release: %s\n", zc_last_error(c));
		a->failed++;
	} else {
		a->released++;
	}
	a->in_flight--;
	if (a->started < a->total)
		start_acquire(a);
	else if (a->in_flight == 0)
		finish(a);
}

static void acquired(zc_client *c, int err, zc_lease *l, void *userdata)
{
	struct app *a = userdata;
	int r;

	if (err < 0) {
		fprintf(stderr, "uv-leases: acquire: %s\n", zc_last_error(c));
		a->failed++;
		a->in_flight--;
		if (a->in_flight == 0)
			finish(a);
		return;
	}
	a->acquired++;
	r = zc_lease_append(l, a->block, zc_lease_block_size(l));
	if (r < 0) {
		fprintf(stderr, "uv-leases: append: %s\n", zc_last_error(c));
		a->failed++;
	} else {
		a->written++;
	}
	if (zc_lease_release_async(l, ZC_RELEASE_RESET, NULL, released, a) < 0) {
		a->failed++;
		a->in_flight--;
	}
}

static void start_acquire(struct app *a)
{
	struct zc_lease_opts o;

	zc_lease_opts_init(&o);
	o.device = a->device;
	o.wait_ms = 20000;
	o.buffered = true;
	o.label = "uv-leases";
	a->started++;
	if (zc_lease_acquire_async(a->c, &o, NULL, acquired, a) < 0) {
		fprintf(stderr, "uv-leases: acquire: %s\n", zc_last_error(a->c));
		a->failed++;
		return;
	}
	if (++a->in_flight > a->max_in_flight)
		a->max_in_flight = a->in_flight;
}

static void on_event(zc_client *c, const zc_event *ev, void *userdata)
{
	struct app *a = userdata;

	(void)c;
	a->events++;
	if (strcmp(zc_event_type(ev), "lease.revoked") == 0)
		a->revoked++;
	if (!a->quiet)
		printf("event %" PRIu64 " %s device %s zone %" PRId64 " lease %" PRIu64 "\n",
		       zc_event_seq(ev), zc_event_type(ev), zc_event_device(ev) ? zc_event_device(ev) : "-",
		       zc_event_zone(ev), zc_event_lease(ev));
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct app *a = h->data;

	(void)events;
	if (status < 0 || zc_client_process(a->c) == -ENOTCONN) {
		fprintf(stderr, "uv-leases: the connection is gone\n");
		a->failed++;
		finish(a);
	}
}

static void on_deadline(uv_timer_t *t)
{
	struct app *a = t->data;

	fprintf(stderr, "uv-leases: timed out with %u in flight\n", a->in_flight);
	a->failed++;
	finish(a);
}

int main(int argc, char **argv)
{
	struct app a = { .total = 64 };
	const char *sock = NULL;
	unsigned n = 16;
	int opt, r, fd;

	while ((opt = getopt(argc, argv, "s:n:t:q")) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'n': n = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': a.total = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'q': a.quiet = true; break;
		default:
			fprintf(stderr, "usage: uv-leases [-s SOCKET] [-n IN_FLIGHT] [-t TOTAL] [-q] DEVICE\n");
			return 2;
		}
	}
	if (optind + 1 != argc || n == 0 || a.total == 0) {
		fprintf(stderr, "usage: uv-leases [-s SOCKET] [-n IN_FLIGHT] [-t TOTAL] [-q] DEVICE\n");
		return 2;
	}
	a.device = argv[optind];
	r = zc_connect(sock, &a.c);
	if (r < 0) {
		fprintf(stderr, "uv-leases: connect: %s\n", zc_last_error(NULL));
		return 1;
	}
	a.block = aligned_alloc(65536, 65536);
	if (!a.block)
		return 1;
	memset(a.block, 0xa5, 65536);
	zc_client_set_event_cb(a.c, on_event, &a);
	r = zc_events_subscribe(a.c, (const char *const[]){ "lease", "zone", NULL },
				(const char *const[]){ a.device, NULL });
	if (r < 0) {
		fprintf(stderr, "uv-leases: subscribe: %s\n", zc_last_error(a.c));
		return 1;
	}
	fd = zc_client_fd(a.c);
	if (fd < 0) {
		fprintf(stderr, "uv-leases: %s\n", zc_strerror(fd));
		return 1;
	}
	a.loop = uv_default_loop();
	a.poll.data = a.deadline.data = &a;
	uv_poll_init(a.loop, &a.poll, fd);
	uv_poll_start(&a.poll, UV_READABLE, on_readable);
	uv_timer_init(a.loop, &a.deadline);
	uv_timer_start(&a.deadline, on_deadline, 60000, 0);
	for (unsigned i = 0; i < n && a.started < a.total; i++)
		start_acquire(&a);
	uv_run(a.loop, UV_RUN_DEFAULT);
	/* Events that came with the last replies. */
	zc_client_process(a.c);
	printf("acquired %u written %u released %u failed %u max-in-flight %u events %u\n",
	       a.acquired, a.written, a.released, a.failed, a.max_in_flight, a.events);
	zc_close(a.c);
	uv_loop_close(a.loop);
	free(a.block);
	return a.failed || a.released != a.total ? 1 : 0;
}
