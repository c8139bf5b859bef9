/* libzoned-client's non-blocking core: the socket, the calls in flight
 * matched to their replies by id, the queue of requests the socket had no
 * room for, the poller role that blocking callers share, and the
 * completions and events handed to zc_client_process(). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/client-private.h"
#include "proto/proto.h"

/* The backoff of reconnect mode: the first retry after this, doubling up to
 * the cap. */
#define ZC_RECONNECT_FIRST_MS 10
#define ZC_RECONNECT_CAP_MS 1000

struct zc_sendbuf {
	struct zc_sendbuf *next;
	size_t len;
	char data[];
};

static atomic_uint_fast64_t client_serial;

uint64_t zc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void efd_signal(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, which is all we want. */
	}
}

static void efd_drain(int fd)
{
	uint64_t v;

	if (fd >= 0 && read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing was signalled. */
	}
}

/* --- Lists ------------------------------------------------------------- */

static void plist_add(struct zc_pending **head, struct zc_pending **tail, struct zc_pending *p)
{
	p->next = NULL;
	p->prev = *tail;
	if (*tail)
		(*tail)->next = p;
	else
		*head = p;
	*tail = p;
}

static void plist_del(struct zc_pending **head, struct zc_pending **tail, struct zc_pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		*head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		*tail = p->prev;
	p->prev = p->next = NULL;
}

static void fds_close(int *fds, unsigned *n)
{
	for (unsigned i = 0; i < *n; i++)
		close(fds[i]);
	*n = 0;
}

static void pending_free(struct zc_pending *p)
{
	if (!p)
		return;
	json_object_put(p->result);
	fds_close(p->fds, &p->nfds);
	free(p);
}

/* --- Wake-ups ---------------------------------------------------------- */

void zc_client_kick_locked(zc_client *c)
{
	pthread_cond_broadcast(&c->cond);
	if (c->reading)
		efd_signal(c->wake_fd);
	if (c->done_head || c->ev_head || c->lost)
		efd_signal(c->notify_fd);
}

/* EPOLLOUT is registered exactly while requests wait to be sent, so an
 * idle client's descriptor does not poll ready. */
static void update_epoll_locked(zc_client *c)
{
	bool want = c->send_head != NULL;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0) };

	if (c->epoll_fd < 0 || c->fd < 0 || want == c->want_out)
		return;
	ev.data.fd = c->fd;
	if (epoll_ctl(c->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = want;
}

static void arm_timer_locked(zc_client *c)
{
	struct itimerspec its = { 0 };
	uint64_t first = 0, now;

	if (c->timer_fd < 0)
		return;
	for (struct zc_pending *p = c->pending_head; p; p = p->next)
		if (!(p->flags & ZC_P_SYNC) && p->deadline_ms && (!first || p->deadline_ms < first))
			first = p->deadline_ms;
	/* An event loop wakes for the next reconnect attempt too. */
	if (c->reconnecting && !c->reconnect_busy && (!first || c->reconnect_next_ms < first))
		first = c->reconnect_next_ms ? c->reconnect_next_ms : 1;
	if (first) {
		now = zc_now_ms();
		/* Zero would disarm: a deadline already passed fires at once. */
		first = first > now ? first - now : 1;
		its.it_value.tv_sec = (time_t)(first / 1000);
		its.it_value.tv_nsec = (long)(first % 1000) * 1000000;
	}
	timerfd_settime(c->timer_fd, 0, &its, NULL);
}

/* --- Completion -------------------------------------------------------- */

/* p is answered (or failed): hand it to whoever waits. */
static void complete_locked(zc_client *c, struct zc_pending *p)
{
	plist_del(&c->pending_head, &c->pending_tail, p);
	p->done = true;
	if (p->flags & ZC_P_SYNC) {
		pthread_cond_broadcast(&c->cond);
		if (c->reading)
			efd_signal(c->wake_fd);
		return;
	}
	if (p->flags & (ZC_P_ABANDONED | ZC_P_CANCELLED) && !p->complete) {
		pending_free(p);
		return;
	}
	plist_add(&c->done_head, &c->done_tail, p);
	efd_signal(c->notify_fd);
}

/* Gives back what a reply nobody wants grants: the lease, the fd. */
static void abandon_grant_locked(zc_client *c, struct zc_pending *p)
{
	struct json_object *lo, *id, *token;

	fds_close(p->fds, &p->nfds);
	if (p->result && json_object_object_get_ex(p->result, "lease", &lo) &&
	    json_object_object_get_ex(lo, "id", &id) &&
	    json_object_object_get_ex(lo, "token", &token)) {
		struct json_object *params = json_object_new_object();

		if (params) {
			json_object_object_add(params, "id", json_object_get(id));
			json_object_object_add(params, "token", json_object_get(token));
			zc_call_fire_locked(c, "lease.release", params);
		}
	}
}

static void fail_locked(struct zc_pending *p, int err, const char *msg)
{
	p->err = err;
	snprintf(p->msg, sizeof(p->msg), "%s", msg ? msg : zc_strerror(err));
}

/* Turns an error object into a negative errno and its message. */
static void reply_error(struct zc_pending *p, struct json_object *err)
{
	struct json_object *code = NULL, *msg = NULL;
	int e;

	if (!json_object_object_get_ex(err, "code", &code) ||
	    !json_object_is_type(code, json_type_int)) {
		fail_locked(p, -EPROTO, "malformed error reply");
		return;
	}
	e = zp_error_to_errno(json_object_get_int(code));
	if (json_object_object_get_ex(err, "message", &msg) && json_object_is_type(msg, json_type_string))
		fail_locked(p, -e, json_object_get_string(msg));
	else
		fail_locked(p, -e, zp_error_message(json_object_get_int(code)));
}

static void lose_locked(zc_client *c, int err);

/* One reply for p; takes the fds. */
static void answer_locked(zc_client *c, struct zc_pending *p, struct json_object *reply,
			  int *fds, unsigned nfds)
{
	struct json_object *v = NULL;

	if (json_object_object_get_ex(reply, "error", &v) && !json_object_is_type(v, json_type_null)) {
		reply_error(p, v);
		fds_close(fds, &nfds);
	} else if (!json_object_object_get_ex(reply, "result", &v) ||
		   json_object_is_type(v, json_type_null)) {
		fail_locked(p, -EPROTO, "reply without a result");
		fds_close(fds, &nfds);
	} else {
		p->result = json_object_get(v);
		memcpy(p->fds, fds, nfds * sizeof(int));
		p->nfds = nfds;
		if (p->flags & (ZC_P_ABANDONED | ZC_P_CANCELLED)) {
			abandon_grant_locked(c, p);
		} else if (p->flags & ZC_P_ACQUIRE) {
			/* Built here, under the lock, so that a revocation read
			 * right after this reply finds the lease. */
			int r = zc_lease_from_reply(c, p->result, p->fds, p->nfds, &p->lease, p->msg,
						    sizeof(p->msg));

			p->nfds = 0;
			if (r < 0)
				p->err = r;
		}
	}
	complete_locked(c, p);
}

static struct zc_pending *find_pending(zc_client *c, int64_t id)
{
	for (struct zc_pending *p = c->pending_head; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* One packet from the daemon; takes its fds. */
static void dispatch_locked(zc_client *c, const char *buf, size_t n, int *fds, unsigned nfds)
{
	struct json_object *msg = zp_parse(buf, n), *v = NULL, *id = NULL;
	struct zc_pending *p = NULL;

	if (!msg || !json_object_is_type(msg, json_type_object)) {
		/* Unreadable: if it was a reply, its caller would wait for
		 * ever; the oldest call is the likeliest owner. */
		if (c->pending_head) {
			p = c->pending_head;
			fail_locked(p, -EPROTO, "unreadable reply from the daemon");
			complete_locked(c, p);
		}
		fds_close(fds, &nfds);
		json_object_put(msg);
		return;
	}
	if (json_object_object_get_ex(msg, "method", &v)) {
		fds_close(fds, &nfds);
		if (json_object_is_type(v, json_type_string) &&
		    strcmp(json_object_get_string(v), "event") == 0 &&
		    json_object_object_get_ex(msg, "params", &v) &&
		    json_object_is_type(v, json_type_object))
			zc_event_arrived_locked(c, json_object_get(v));
		json_object_put(msg);
		return;
	}
	if (json_object_object_get_ex(msg, "id", &id) && id &&
	    json_object_is_type(id, json_type_int))
		p = find_pending(c, json_object_get_int64(id));
	else if (!id || json_object_is_type(id, json_type_null))
		/* The daemon refusing what it could not read (or a connection
		 * it will not serve): it answers requests in the order it
		 * reads them, so it is the oldest call's. */
		p = json_object_object_get_ex(msg, "error", NULL) ? c->pending_head : NULL;
	if (p)
		answer_locked(c, p, msg, fds, nfds);
	else
		fds_close(fds, &nfds); /* a stray reply: its caller gave up */
	json_object_put(msg);
}

/* Reads the packets waiting, without blocking: every one, or up to the one
 * after which until(c, arg) holds (a waiter that has its reply leaves the
 * rest to the next reader, and saves the read that would find nothing).
 * Returns how many. */
static int drain_until_locked(zc_client *c, bool (*until)(zc_client *c, void *arg), void *arg)
{
	int count = 0;

	while (!c->lost && !(count && until && until(c, arg))) {
		int fds[ZP_MAX_FDS];
		size_t nfds = 0;
		ssize_t n = zp_recvv(c->fd, c->buf, ZP_MSG_MAX, fds, &nfds, MSG_DONTWAIT);

		if (n == -EAGAIN)
			break;
		if (n == 0 || n == -ECONNRESET || n < 0) {
			/* On a reset the packets the daemon sent first may
			 * still be queued (a refusal says why): read them. */
			if (n == -ECONNRESET) {
				for (int i = 0; i < 4; i++) {
					n = zp_recvv(c->fd, c->buf, ZP_MSG_MAX, fds, &nfds,
						     MSG_DONTWAIT);
					if (n <= 0 || n > ZP_MSG_MAX)
						break;
					dispatch_locked(c, c->buf, (size_t)n, fds, (unsigned)nfds);
					nfds = 0;
				}
				for (size_t i = 0; i < nfds; i++)
					close(fds[i]);
			}
			lose_locked(c, -ECONNRESET);
			break;
		}
		count++;
		if (n > ZP_MSG_MAX) {
			for (size_t i = 0; i < nfds; i++)
				close(fds[i]);
			if (c->pending_head) {
				struct zc_pending *p = c->pending_head;

				fail_locked(p, -EPROTO, "reply larger than the packet limit");
				complete_locked(c, p);
			}
			continue;
		}
		dispatch_locked(c, c->buf, (size_t)n, fds, (unsigned)nfds);
	}
	return count;
}

static int drain_locked(zc_client *c)
{
	return drain_until_locked(c, NULL, NULL);
}

static int flush_locked(zc_client *c)
{
	while (c->send_head && !c->lost) {
		struct zc_sendbuf *b = c->send_head;
		int r = zp_send(c->fd, b->data, b->len, -1, MSG_DONTWAIT);

		if (r == -EAGAIN)
			break;
		c->send_head = b->next;
		if (!c->send_head)
			c->send_tail = NULL;
		free(b);
		if (r == -EPIPE || r == -ECONNRESET) {
			drain_locked(c);
			lose_locked(c, -ECONNRESET);
			return r;
		}
		/* Anything else (EMSGSIZE) cannot be retried: the request is
		 * lost; its call times out or fails with the connection. */
	}
	update_epoll_locked(c);
	return 0;
}

/* The connection is gone: every call in flight fails, every lease is
 * fenced. The socket is closed once no thread polls it. */
static void lose_locked(zc_client *c, int err)
{
	bool again = c->reconnect_ms && !c->closing;

	if (c->lost)
		return;
	c->lost = true;
	c->lost_err = err;
	/* In reconnect mode the leases are fenced all the same (the daemon
	 * may give a zone away once its grace ends), but wait for their
	 * reclaim (-EAGAIN) instead of dying. */
	zc_leases_lost(c, again ? -EAGAIN : -ENOTCONN);
	if (again) {
		uint64_t now = zc_now_ms();

		c->reconnecting = true;
		c->reconnect_next_ms = now;
		if (!c->reconnect_busy) {
			/* A fresh outage; a connection lost again while
			 * reclaiming keeps the outage's bound and backoff. */
			c->reconnect_delay_ms = ZC_RECONNECT_FIRST_MS;
			c->reconnect_until_ms = now + c->reconnect_ms;
		}
		arm_timer_locked(c);
	}
	while (c->pending_head) {
		struct zc_pending *p = c->pending_head;

		fail_locked(p, err, err == -ECONNRESET ? "the daemon closed the connection"
					: "not connected: the connection was closed");
		complete_locked(c, p);
	}
	while (c->send_head) {
		struct zc_sendbuf *b = c->send_head;

		c->send_head = b->next;
		free(b);
	}
	c->send_tail = NULL;
	if (c->fd >= 0) {
		shutdown(c->fd, SHUT_RDWR);
		if (!c->reading) {
			close(c->fd);
			c->fd = -1;
		}
	}
	zc_client_kick_locked(c);
}

/* --- Sending ----------------------------------------------------------- */

static int send_locked(zc_client *c, const char *s, size_t len)
{
	struct zc_sendbuf *b;
	int r;

	if (!c->send_head) {
		r = zp_send(c->fd, s, len, -1, MSG_DONTWAIT);
		if (r == 0)
			return 0;
		if (r == -EPIPE || r == -ECONNRESET) {
			/* A daemon that refused us may have said why first. */
			drain_locked(c);
			return -ECONNRESET;
		}
		if (r != -EAGAIN)
			return r;
	}
	b = malloc(sizeof(*b) + len);
	if (!b)
		return -ENOMEM;
	b->next = NULL;
	b->len = len;
	memcpy(b->data, s, len);
	if (c->send_tail)
		c->send_tail->next = b;
	else
		c->send_head = b;
	c->send_tail = b;
	update_epoll_locked(c);
	if (c->reading)
		efd_signal(c->wake_fd); /* the poller must wait for POLLOUT too */
	return 0;
}

static uint64_t deadline_of(zc_client *c, uint32_t timeout_ms)
{
	if (timeout_ms == 0)
		timeout_ms = c->timeout_ms;
	if (timeout_ms == ZC_TIMEOUT_NONE)
		return 0;
	return zc_now_ms() + timeout_ms;
}

/* Sends a request and puts p in flight; takes params. */
static int start_locked(zc_client *c, const char *method, struct json_object *params,
			struct zc_pending *p)
{
	ssize_t len;
	int r;

	if (c->lost) {
		json_object_put(params);
		return c->reconnecting ? -EAGAIN : -ENOTCONN;
	}
	p->id = c->next_id++;
	/* c->wbuf is free: requests are written under c->lock, and each
	 * is sent or copied before it is released. */
	len = zp_write_request(c->wbuf, ZP_MSG_MAX, method, params, p->id);
	json_object_put(params);
	if (len < 0)
		return (int)len;
	/* In flight before it is sent: a reply read by the send's own drain
	 * (a refusing daemon) must find it. */
	plist_add(&c->pending_head, &c->pending_tail, p);
	r = send_locked(c, c->wbuf, (size_t)len);
	if (r < 0) {
		if (!p->done)
			plist_del(&c->pending_head, &c->pending_tail, p);
		if (r == -ECONNRESET) {
			/* The refusal, if it came, answered p already. */
			if (p->done && p->err)
				r = p->err;
			lose_locked(c, -ECONNRESET);
		}
		return r;
	}
	return 0;
}

void zc_call_fire_locked(zc_client *c, const char *method, struct json_object *params)
{
	struct zc_pending *p = calloc(1, sizeof(*p));

	if (!p) {
		json_object_put(params);
		return;
	}
	p->flags = ZC_P_ABANDONED;
	p->deadline_ms = zc_now_ms() + ZC_TIMEOUT_DEFAULT_MS;
	if (start_locked(c, method, params, p) < 0 && !p->done)
		free(p);
	arm_timer_locked(c);
}

/* --- Waiting ----------------------------------------------------------- */

/* Serves the blocking callers: one of them polls the socket at a time (the
 * poller), reading every reply and event that comes and waking whoever it
 * is for; the others sleep on c->cond. The poller leaves when its own
 * condition holds, and the next waiter takes over. */
int zc_wait_locked(zc_client *c, bool (*pred)(zc_client *c, void *arg), void *arg,
		   uint64_t deadline_ms)
{
	for (;;) {
		uint64_t now;
		int ms = -1;

		/* What arrived while nobody polled is read after the poll
		 * below, which finds it at once: one syscall less than a read
		 * first, when nothing has come yet (the common case, just
		 * after a request was sent). */
		if (pred(c, arg))
			return 0;
		if (c->lost)
			return -ENOTCONN;
		now = zc_now_ms();
		if (deadline_ms) {
			if (now >= deadline_ms)
				return -ETIMEDOUT;
			ms = deadline_ms - now > INT32_MAX ? INT32_MAX : (int)(deadline_ms - now);
		}
		if (c->reading) {
			if (deadline_ms) {
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += ms / 1000;
				ts.tv_nsec += (long)(ms % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&c->cond, &c->lock, &ts);
			} else {
				pthread_cond_wait(&c->cond, &c->lock);
			}
			continue;
		}
		{
			struct pollfd pfd[2] = {
				{ .fd = c->fd, .events = POLLIN | (c->send_head ? POLLOUT : 0) },
				{ .fd = c->wake_fd, .events = POLLIN },
			};

			c->reading = true;
			pthread_mutex_unlock(&c->lock);
			poll(pfd, 2, ms);
			pthread_mutex_lock(&c->lock);
			c->reading = false;
			if (pfd[1].revents & POLLIN)
				efd_drain(c->wake_fd);
			if (c->lost) {
				if (c->fd >= 0) {
					close(c->fd);
					c->fd = -1;
				}
			} else {
				if (pfd[0].revents & POLLOUT)
					flush_locked(c);
				if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP))
					drain_until_locked(c, pred, arg);
			}
			/* Whoever sleeps may now be answered, or must poll. */
			pthread_cond_broadcast(&c->cond);
		}
	}
}

static bool pending_done(zc_client *c, void *arg)
{
	(void)c;
	return ((struct zc_pending *)arg)->done;
}

static int call_full(zc_client *c, const char *method, struct json_object *params,
		     uint32_t timeout_ms, unsigned flags, struct json_object **result, int *fds_out,
		     unsigned *nfds_out, struct zc_lease **lease_out)
{
	struct zc_pending *p;
	int r;

	*result = NULL;
	if (nfds_out)
		*nfds_out = 0;
	if (lease_out)
		*lease_out = NULL;
	if (!c) {
		json_object_put(params);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		json_object_put(params);
		return zc_fail(c, -ENOMEM, NULL);
	}
	p->flags = flags | ZC_P_SYNC;
	zc_client_ref(c);
	zc_reconnect_step(c);
	pthread_mutex_lock(&c->lock);
	r = start_locked(c, method, params, p);
	if (r < 0) {
		if (p->done && p->msg[0])
			zc_fail(c, r, p->msg);
		else
			zc_fail(c, r, r == -ENOTCONN ? "not connected: the connection was closed"
				      : r == -ECONNRESET ? "the daemon closed the connection"
				      : r == -EAGAIN ? "reconnecting to the daemon" : NULL);
		pthread_mutex_unlock(&c->lock);
		pending_free(p);
		zc_client_unref(c);
		return r;
	}
	r = zc_wait_locked(c, pending_done, p, deadline_of(c, timeout_ms));
	if (r == -ETIMEDOUT && !p->done) {
		/* Nobody waits for it any more. What its late reply grants is
		 * given back then; the rest is dropped with it. */
		p->flags &= ~ZC_P_SYNC;
		if (p->flags & ZC_P_GRANTS)
			p->flags |= ZC_P_ABANDONED;
		else
			plist_del(&c->pending_head, &c->pending_tail, p), free(p);
		pthread_mutex_unlock(&c->lock);
		zc_failf(c, -ETIMEDOUT, "%s: no reply within the call's timeout", method);
		zc_client_unref(c);
		return -ETIMEDOUT;
	}
	pthread_mutex_unlock(&c->lock);
	r = p->err;
	if (r < 0) {
		zc_fail(c, r, p->msg[0] ? p->msg : NULL);
	} else {
		*result = p->result;
		p->result = NULL;
		if (nfds_out) {
			memcpy(fds_out, p->fds, p->nfds * sizeof(int));
			*nfds_out = p->nfds;
			p->nfds = 0;
		}
		if (lease_out) {
			*lease_out = p->lease;
			p->lease = NULL;
		}
	}
	pending_free(p);
	zc_client_unref(c);
	return r;
}

int zc_call_fds(zc_client *c, const char *method, struct json_object *params,
		uint32_t timeout_ms, unsigned flags, struct json_object **result, int *fds_out,
		unsigned *nfds_out)
{
	return call_full(c, method, params, timeout_ms, flags, result, fds_out, nfds_out, NULL);
}

int zc_call_full(zc_client *c, const char *method, struct json_object *params,
		 uint32_t timeout_ms, unsigned flags, struct json_object **result, int *fd_out,
		 struct zc_lease **lease_out)
{
	int fds[ZP_MAX_FDS];
	unsigned n = 0;
	int r = call_full(c, method, params, timeout_ms, flags, result, fds, &n, lease_out);

	/* The first fd, the rest closed: a caller of one descriptor. */
	if (fd_out)
		*fd_out = n ? fds[0] : -1;
	for (unsigned i = fd_out ? 1 : 0; i < n; i++)
		close(fds[i]);
	return r;
}

int zc_call(zc_client *c, const char *method, struct json_object *params,
	    struct json_object **result, int *fd_out)
{
	return zc_call_full(c, method, params, 0, 0, result, fd_out, NULL);
}

int64_t zc_call_start(zc_client *c, const char *method, struct json_object *params,
		      const struct zc_call_opts *opts, unsigned flags, zc_complete_fn *complete,
		      void (*cb)(void), void *ud, void *arg)
{
	uint32_t timeout = 0;
	struct zc_pending *p;
	int r;

	if (opts && opts->size >= offsetof(struct zc_call_opts, timeout_ms) + sizeof(uint32_t))
		timeout = opts->timeout_ms;
	p = calloc(1, sizeof(*p));
	if (!p) {
		json_object_put(params);
		return zc_fail(c, -ENOMEM, NULL);
	}
	p->flags = flags & ~ZC_P_SYNC;
	p->complete = complete;
	p->cb = cb;
	p->ud = ud;
	p->arg = arg;
	/* A waiting acquire has no bound unless one is asked for. */
	p->deadline_ms = timeout == 0 && (flags & ZC_P_NOBOUND) ? 0 : deadline_of(c, timeout);
	zc_reconnect_step(c);
	pthread_mutex_lock(&c->lock);
	r = start_locked(c, method, params, p);
	if (r < 0) {
		zc_fail(c, r, p->done && p->msg[0] ? p->msg : NULL);
		if (!p->done)
			free(p);
		/* else: it sits in the done queue and runs with the failure... */
		else
			p->complete = NULL, p->flags |= ZC_P_CANCELLED;
		pthread_mutex_unlock(&c->lock);
		return r;
	}
	arm_timer_locked(c);
	pthread_mutex_unlock(&c->lock);
	return p->id;
}

ZC_EXPORT int zc_call_cancel(zc_client *c, uint64_t call_id)
{
	struct zc_pending *p;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	p = find_pending(c, (int64_t)call_id);
	if (!p || (p->flags & (ZC_P_SYNC | ZC_P_CANCELLED | ZC_P_ABANDONED))) {
		pthread_mutex_unlock(&c->lock);
		return zc_failf(c, -ENOENT, "no asynchronous call %llu in flight",
				(unsigned long long)call_id);
	}
	/* The callback runs now (at the next zc_client_process); the entry
	 * stays in flight when its reply may grant something to give back. */
	if (p->flags & ZC_P_GRANTS) {
		struct zc_pending *q = calloc(1, sizeof(*q));

		if (!q) {
			pthread_mutex_unlock(&c->lock);
			return zc_fail(c, -ENOMEM, NULL);
		}
		*q = *p;
		q->prev = q->next = NULL;
		q->nfds = 0;
		fail_locked(q, -ECANCELED, "the call was cancelled");
		q->flags |= ZC_P_CANCELLED;
		plist_add(&c->done_head, &c->done_tail, q);
		p->complete = NULL;
		p->flags |= ZC_P_CANCELLED;
		p->deadline_ms = 0;
	} else {
		fail_locked(p, -ECANCELED, "the call was cancelled");
		complete_locked(c, p);
	}
	efd_signal(c->notify_fd);
	arm_timer_locked(c);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- The event loop's side --------------------------------------------- */

ZC_EXPORT int zc_client_fd(zc_client *c)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int r = 0;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (c->epoll_fd >= 0) {
		r = c->epoll_fd;
		goto out;
	}
	c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	c->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (c->epoll_fd < 0 || c->notify_fd < 0 || c->timer_fd < 0) {
		r = -errno;
		goto fail;
	}
	ev.data.fd = c->notify_fd;
	if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->notify_fd, &ev) < 0)
		goto fail_errno;
	ev.data.fd = c->timer_fd;
	if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->timer_fd, &ev) < 0)
		goto fail_errno;
	if (c->fd >= 0) {
		ev.data.fd = c->fd;
		ev.events = EPOLLIN | (c->send_head ? EPOLLOUT : 0);
		c->want_out = c->send_head != NULL;
		if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			goto fail_errno;
	}
	arm_timer_locked(c);
	if (c->done_head || c->ev_head || c->lost)
		efd_signal(c->notify_fd);
	r = c->epoll_fd;
	goto out;
fail_errno:
	r = -errno;
fail:
	for (int *fd = &c->epoll_fd; fd; fd = fd == &c->epoll_fd ? &c->notify_fd
					 : fd == &c->notify_fd ? &c->timer_fd : NULL) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
	zc_fail(c, r, "cannot set up the client's poll descriptor");
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Runs the completion of p (outside the lock) and frees it. */
static void run_completion(zc_client *c, struct zc_pending *p)
{
	if (p->err < 0)
		zc_fail(c, p->err, p->msg[0] ? p->msg : NULL);
	if (p->complete)
		p->complete(c, p);
	pending_free(p);
}

ZC_EXPORT int zc_client_process(zc_client *c)
{
	struct zc_pending *done, *p;
	uint64_t now;
	int n = 0;

	if (!c)
		return -EINVAL;
	zc_client_ref(c);
	zc_reconnect_step(c);
	pthread_mutex_lock(&c->lock);
	efd_drain(c->notify_fd);
	efd_drain(c->timer_fd);
	if (!c->lost) {
		flush_locked(c);
		drain_locked(c);
	}
	/* Calls whose time is up. */
	now = zc_now_ms();
	for (p = c->pending_head; p;) {
		struct zc_pending *next = p->next;

		if (!(p->flags & ZC_P_SYNC) && p->deadline_ms && p->deadline_ms <= now) {
			if (p->flags & ZC_P_GRANTS) {
				struct zc_pending *q = calloc(1, sizeof(*q));

				if (q) {
					*q = *p;
					q->prev = q->next = NULL;
					q->nfds = 0;
					fail_locked(q, -ETIMEDOUT, "no reply within the call's timeout");
					plist_add(&c->done_head, &c->done_tail, q);
					p->complete = NULL;
					p->flags |= ZC_P_ABANDONED;
					p->deadline_ms = 0;
				}
			} else {
				fail_locked(p, -ETIMEDOUT, "no reply within the call's timeout");
				complete_locked(c, p);
			}
		}
		p = next;
	}
	arm_timer_locked(c);
	if (c->reading)
		efd_signal(c->wake_fd); /* its reply may have been read here */
	pthread_cond_broadcast(&c->cond);
	done = c->done_head;
	c->done_head = c->done_tail = NULL;
	pthread_mutex_unlock(&c->lock);

	while (done) {
		p = done;
		done = p->next;
		run_completion(c, p);
		n++;
	}
	/* Events, in the order they came, one at a time: the callback may
	 * change the callback. */
	for (;;) {
		struct zc_event *ev = NULL;
		zc_event_cb cb;
		void *ud;

		pthread_mutex_lock(&c->lock);
		cb = c->event_cb;
		ud = c->event_ud;
		if (cb)
			ev = zc_event_pop_locked(c);
		pthread_mutex_unlock(&c->lock);
		if (!ev)
			break;
		cb(c, ev, ud);
		zc_event_free(ev);
		n++;
	}
	pthread_mutex_lock(&c->lock);
	if (c->lost && !c->reconnecting && !c->done_head)
		n = -ENOTCONN;
	pthread_mutex_unlock(&c->lock);
	zc_client_unref(c);
	return n;
}

void zc_client_peek(zc_client *c)
{
	if (pthread_mutex_trylock(&c->lock) != 0)
		return; /* another thread holds it, and reads for us */
	if (!c->lost && !c->reading) {
		if (drain_locked(c) > 0)
			pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
}

ZC_EXPORT int zc_client_set_timeout(zc_client *c, uint32_t timeout_ms)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	c->timeout_ms = timeout_ms ? timeout_ms : ZC_TIMEOUT_DEFAULT_MS;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- Connection -------------------------------------------------------- */

/* Why this thread's last zc_connect failed: zc_last_error(NULL). */
static _Thread_local char connect_error[256];

const char *zc_connect_error(void)
{
	return connect_error;
}

static int connect_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int connect_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(connect_error, sizeof(connect_error), fmt, ap);
	va_end(ap);
	return err;
}

/* The daemon must speak our protocol: anything else would be misread.
 * Records the failure in c (zc_last_error). */
static int hello_check(zc_client *c)
{
	struct json_object *res, *v;
	int64_t proto;
	int r = zc_call(c, "daemon.hello", NULL, &res, NULL);

	if (r < 0)
		return r;
	if (!json_object_object_get_ex(res, "protocol", &v) || !json_object_is_type(v, json_type_int)) {
		json_object_put(res);
		return zc_fail(c, -EPROTO, "malformed daemon.hello reply (no protocol)");
	}
	proto = json_object_get_int64(v);
	{
		struct json_object *f;
		unsigned feat = 0;

		/* Unknown names are a newer daemon's: ignored. */
		if (json_object_object_get_ex(res, "features", &f) &&
		    json_object_is_type(f, json_type_array))
			for (size_t i = 0; i < json_object_array_length(f); i++) {
				const char *n = json_object_get_string(json_object_array_get_idx(f, i));

				if (n && strcmp(n, "report-runs") == 0)
					feat |= ZC_FEATURE_REPORT_RUNS;
			}
		atomic_store(&c->features, feat);
	}
	json_object_put(res);
	if (proto != ZP_PROTOCOL_VERSION)
		return zc_failf(c, -EPROTONOSUPPORT,
				"the daemon speaks protocol version %lld; this library speaks "
				"version %d (upgrade the older of the two)",
				(long long)proto, ZP_PROTOCOL_VERSION);
	return 0;
}

static int check_protocol(zc_client *c)
{
	int r = hello_check(c);

	return r < 0 ? connect_fail(r, "%s", zc_last_error(c)) : 0;
}

static int socket_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

ZC_EXPORT int zc_client_set_reconnect(zc_client *c, uint32_t max_ms)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	c->reconnect_ms = max_ms;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* Lost for good: every lease waiting for its reclaim fails with -ENOTCONN. */
static void give_up_locked(zc_client *c)
{
	c->reconnecting = false;
	zc_leases_lost(c, -ENOTCONN);
	arm_timer_locked(c);
	zc_client_kick_locked(c);
}

int zc_reconnect_step(zc_client *c)
{
	struct epoll_event ev = { .events = EPOLLIN };
	uint64_t now;
	int fd, r;

	pthread_mutex_lock(&c->lock);
	if (!c->reconnecting) {
		r = c->lost ? -ENOTCONN : 0;
		pthread_mutex_unlock(&c->lock);
		return r;
	}
	now = zc_now_ms();
	if (c->closing || (!c->reconnect_busy && now >= c->reconnect_until_ms)) {
		give_up_locked(c);
		pthread_mutex_unlock(&c->lock);
		return -ENOTCONN;
	}
	/* The old socket is closed by the thread still polling it. */
	if (c->reconnect_busy || now < c->reconnect_next_ms || c->reading) {
		pthread_mutex_unlock(&c->lock);
		return -EAGAIN;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	/* A local connect does not wait: it is taken or refused at once. */
	fd = socket_connect(c->path);
	if (fd < 0) {
		c->reconnect_next_ms = now + c->reconnect_delay_ms;
		c->reconnect_delay_ms = c->reconnect_delay_ms * 2 > ZC_RECONNECT_CAP_MS
						? ZC_RECONNECT_CAP_MS : c->reconnect_delay_ms * 2;
		arm_timer_locked(c);
		pthread_mutex_unlock(&c->lock);
		return -EAGAIN;
	}
	c->fd = fd;
	c->lost = false;
	c->lost_err = 0;
	c->want_out = false;
	c->reconnect_busy = true;
	if (c->epoll_fd >= 0) {
		ev.data.fd = fd;
		epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
	}
	arm_timer_locked(c);
	pthread_mutex_unlock(&c->lock);

	/* The calls of the reconnect run on the fresh connection (lost is
	 * false), while the leases still answer -EAGAIN. */
	r = hello_check(c);
	if (r == 0) {
		struct json_object *sub = NULL, *res;

		pthread_mutex_lock(&c->lock);
		if (c->ev_sub)
			sub = json_object_get(c->ev_sub);
		pthread_mutex_unlock(&c->lock);
		if (sub && (r = zc_call(c, "events.subscribe", sub, &res, NULL)) == 0)
			json_object_put(res);
	}
	if (r == 0)
		r = zc_leases_reclaim(c);

	pthread_mutex_lock(&c->lock);
	c->reconnect_busy = false;
	if (c->lost) {
		/* Lost again on the way: the next attempt after the backoff. */
		c->reconnect_next_ms = zc_now_ms() + c->reconnect_delay_ms;
		r = -EAGAIN;
	} else if (r < 0) {
		/* A daemon we cannot speak to (another protocol, a refused
		 * subscription): reconnecting again would not change it. */
		uint32_t keep = c->reconnect_ms;

		c->reconnect_ms = 0; /* this loss is final */
		lose_locked(c, r);
		c->reconnect_ms = keep;
		c->reconnecting = false;
		r = -ENOTCONN;
	} else {
		c->reconnecting = false;
	}
	arm_timer_locked(c);
	zc_client_kick_locked(c);
	pthread_mutex_unlock(&c->lock);
	return r;
}

ZC_EXPORT int zc_connect(const char *path, zc_client **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	zc_client *c;
	int fd, r;

	if (!out)
		return connect_fail(-EINVAL, "zc_connect: out is NULL");
	*out = NULL;
	connect_error[0] = '\0';
	if (!path || !*path)
		path = getenv(ZP_SOCKET_ENV);
	if (!path || !*path)
		path = ZP_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(sa.sun_path))
		return connect_fail(-ENAMETOOLONG, "%s", zc_strerror(-ENAMETOOLONG));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	_Static_assert(sizeof(c->path) >= sizeof(sa.sun_path), "path holds a socket path");

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = c->epoll_fd = c->notify_fd = c->timer_fd = -1;
	c->buf = malloc(ZP_MSG_MAX);
	c->wbuf = malloc(ZP_MSG_MAX);
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!c->buf || !c->wbuf || c->wake_fd < 0) {
		r = c->buf && c->wbuf ? -errno : -ENOMEM;
		goto fail;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		r = -errno;
		close(fd);
		goto fail;
	}
	c->fd = fd;
	memcpy(c->path, sa.sun_path, sizeof(sa.sun_path));
	c->next_id = 1;
	c->timeout_ms = ZC_TIMEOUT_DEFAULT_MS;
	c->serial = atomic_fetch_add(&client_serial, 1) + 1;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->leases_lock, NULL);
	{
		pthread_condattr_t ca;

		/* Timed waits use CLOCK_REALTIME; see zc_wait_locked. */
		pthread_condattr_init(&ca);
		pthread_cond_init(&c->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	r = check_protocol(c);
	if (r < 0) {
		zc_close(c);
		return r;
	}
	*out = c;
	return 0;
fail:
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	free(c->buf);
	free(c->wbuf);
	free(c);
	if (!connect_error[0])
		connect_fail(r, "%s", zc_strerror(r));
	return r;
}

void zc_client_ref(zc_client *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void zc_client_unref(zc_client *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->leases_lock);
	json_object_put(c->ev_sub);
	/* Here, not in zc_close: a thread may still be leaving poll(). */
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c->wbuf);
	free(c);
}

ZC_EXPORT void zc_close(zc_client *c)
{
	struct zc_pending *done, *p;

	if (!c)
		return;
	/* Closing the socket ends the daemon's side of every lease this
	 * connection holds. Fence the leases first, so that none can write
	 * once the daemon may have given its zone to someone else. */
	pthread_mutex_lock(&c->lock);
	c->closing = true;
	c->reconnecting = false;
	pthread_mutex_unlock(&c->lock);
	zc_leases_lost(c, -ENOTCONN);
	pthread_mutex_lock(&c->lock);
	lose_locked(c, -ENOTCONN);
	/* A thread still polling closes the socket when it wakes (the
	 * shutdown woke it); zc_close returns without waiting for it. */
	done = c->done_head;
	c->done_head = c->done_tail = NULL;
	zc_events_free_locked(c);
	c->event_cb = NULL;
	pthread_mutex_unlock(&c->lock);
	/* Every asynchronous call gets its callback, so that whatever its
	 * userdata holds is freed. */
	while (done) {
		p = done;
		done = p->next;
		run_completion(c, p);
	}
	pthread_mutex_lock(&c->lock);
	for (int *fd = &c->epoll_fd; fd; fd = fd == &c->epoll_fd ? &c->notify_fd
					 : fd == &c->notify_fd ? &c->timer_fd : NULL) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
	pthread_mutex_unlock(&c->lock);
	/* A lease granted by a call that was in flight meanwhile. */
	zc_leases_lost(c, -ENOTCONN);
	zc_client_unref(c);
}
