/* The daemon's event loop side: the listening socket, connections with
 * their credentials and outgoing queues, JSON-RPC framing, batches and the
 * dispatch of calls to the method table. Nothing here blocks. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/log.h"

/* Limits on what one client controls. */
#define ZD_MAX_BATCH 128
#define ZD_MAX_OUT_BYTES (4u << 20)
/* Packets of one connection in flight (waiting acquires, device work) before
 * the daemon stops reading from it: back-pressure instead of unbounded memory. */
#define ZD_MAX_INFLIGHT 64
/* Out of fds: how long accepting rests, and at most one log line per. */
#define ZD_ACCEPT_BACKOFF_MS 100
#define ZD_ACCEPT_LOG_MS 10000
/* Bytes the daemon may hold for one connection's requests in flight, their
 * finished responses and its queued replies, and for one uid over all its
 * connections. Past either the daemon stops reading from the connection
 * (every connection of the uid) until work completes; memory is bounded by
 * the cap plus one packet's worth of work. */
#define ZD_MAX_CONN_MEM (8u << 20)
#define ZD_MAX_UID_MEM (64u << 20)
/* What a call costs beyond its struct while it runs: the device work, the
 * lease or acquire record. Large buffers (a report's zones) are allocated
 * only while the work runs, one at a time per device. */
#define ZD_CALL_COST 512
/* Held bytes above which the daemon returns freed memory to the system
 * (malloc_trim) once they fall below the low mark again. */
#define ZD_TRIM_HIGH (16u << 20)
#define ZD_TRIM_LOW (1u << 20)

struct zd_batch {
	struct zd_conn *conn;
	bool is_array;
	bool too_large;             /* the responses passed one packet: dropped */
	size_t nr_calls;
	size_t pending;
	size_t charged;             /* bytes charged to the connection */
	size_t resp_bytes;          /* of the responses kept */
	int fds[ZP_MAX_FDS];        /* attached to the reply, in completion order */
	size_t nfds;
	struct zd_call *calls;
};

struct zd_outmsg {
	struct zd_list link;
	size_t len;
	int fds[ZP_MAX_FDS];
	size_t nfds;
	char data[];
};

uint64_t zd_now_ms(struct zd_daemon *d)
{
	return uv_now(d->loop);
}

static void count_error(struct zd_daemon *d, int code)
{
	static const int std[] = { ZP_ERR_PARSE, ZP_ERR_INVALID_REQUEST, ZP_ERR_METHOD_NOT_FOUND,
				   ZP_ERR_INVALID_PARAMS, ZP_ERR_INTERNAL };

	if (code <= -32000 && code > -32016) {
		d->stats.errors[-(code + 32000)]++;
		return;
	}
	for (size_t i = 0; i < 5; i++)
		if (std[i] == code)
			d->stats.std_errors[i]++;
}

void zd_call_error(struct zd_call *call, int code, const char *fmt, ...)
{
	va_list ap;

	call->err_code = code;
	va_start(ap, fmt);
	vsnprintf(call->err_msg, sizeof(call->err_msg), fmt, ap);
	va_end(ap);
	/* What the client sent is quoted in messages, cut to their size
	 * (and to a precision): never in the middle of a character, or the
	 * reply is no longer the UTF-8 its reader requires. */
	zp_utf8_clean(call->err_msg);
}

void zd_call_errno(struct zd_call *call, int err, const char *what)
{
	int code;

	switch (-err) {
	case ERANGE:
		code = ZP_ERR_NO_ZONE;
		break;
	case EPERM:
		code = ZP_ERR_ZONE_STATE;
		break;
	case EBUSY:
	case ETOOMANYREFS:
	case EOVERFLOW:
		code = ZP_ERR_LIMIT;
		break;
	case EINVAL:
		code = ZP_ERR_INVALID_PARAMS;
		break;
	case EACCES:
		code = ZP_ERR_PERM;
		break;
	case ENODEV:
	case ENXIO:
		code = ZP_ERR_NO_DEVICE;
		break;
	case ETIMEDOUT:
		code = ZP_ERR_TIMEOUT;
		break;
	case ENOMEM:
		code = ZP_ERR_INTERNAL;
		break;
	default:
		code = ZP_ERR_IO;
		break;
	}
	/* The device layer's EBUSY is always a zone resource limit. */
	zd_call_error(call, code, "%s: %s", what,
		      code == ZP_ERR_LIMIT ? "open/active zone limit reached" : strerror(-err));
	json_object_put(call->err_data);
	call->err_data = json_object_new_object();
	json_object_object_add(call->err_data, "errno", json_object_new_int(-err));
}

static void out_free(struct zd_outmsg *m)
{
	for (size_t i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	free(m);
}

static void conn_poll_cb(uv_poll_t *h, int status, int events);

static bool conn_over_mem(const struct zd_conn *conn)
{
	return conn->mem >= ZD_MAX_CONN_MEM || conn->user->mem >= ZD_MAX_UID_MEM;
}

static void conn_update_poll(struct zd_conn *conn)
{
	int events = UV_DISCONNECT;

	/* poll.data is set once the handle is initialised. */
	if (conn->closing || !conn->poll.data)
		return;
	if (conn->batches < ZD_MAX_INFLIGHT && !conn_over_mem(conn))
		events |= UV_READABLE;
	if (!zd_list_empty(&conn->out) || zd_events_pending(conn))
		events |= UV_WRITABLE;
	/* uv_poll_start() always takes the fd out of epoll and puts it back
	 * (EPOLL_CTL_DEL, then ADD on the next poll): two syscalls a reply
	 * when nothing changed. */
	if (events == conn->poll_events)
		return;
	conn->poll_events = events;
	uv_poll_start(&conn->poll, events, conn_poll_cb);
}

void zd_conn_update_poll(struct zd_conn *conn)
{
	conn_update_poll(conn);
}

/* Charges (delta > 0) or gives back bytes held for conn; a connection held
 * back by the caps reads again once under them. */
static void conn_charge(struct zd_conn *conn, ssize_t delta)
{
	struct zd_user *u = conn->user;
	bool was_over = conn_over_mem(conn), user_over = u->mem >= ZD_MAX_UID_MEM;

	struct zd_daemon *d = conn->d;

	conn->mem += (size_t)delta;
	u->mem += (size_t)delta;
	d->mem += (size_t)delta;
	if (d->mem > ZD_TRIM_HIGH)
		d->mem_high = true;
	if (delta >= 0)
		return;
#ifdef __GLIBC__
	/* A flood that is over leaves the allocator's free lists full; give
	 * the pages back to the system once, not on every close. */
	if (d->mem_high && d->mem < ZD_TRIM_LOW) {
		d->mem_high = false;
		malloc_trim(0);
	}
#endif
	if (user_over && u->mem < ZD_MAX_UID_MEM) {
		struct zd_list *pos, *tmp;

		zd_list_for_each_safe(pos, tmp, &u->conns)
			conn_update_poll(zd_container_of(pos, struct zd_conn, user_link));
	} else if (was_over && !conn_over_mem(conn)) {
		conn_update_poll(conn);
	}
}

/* Sends what is queued; returns 0, or a negative errno when the peer is gone. */
static int conn_flush(struct zd_conn *conn)
{
	while (!zd_list_empty(&conn->out)) {
		struct zd_outmsg *m = zd_container_of(conn->out.next, struct zd_outmsg, link);
		int r = zp_sendv(conn->fd, m->data, m->len, m->fds, m->nfds, MSG_DONTWAIT);

		if (r == -EAGAIN)
			return 0;
		zd_list_del(&m->link);
		conn->out_bytes -= m->len;
		conn_charge(conn, -(ssize_t)m->len);
		out_free(m);
		if (r < 0)
			return r;
	}
	/* Events go once the replies are out, from their own queue. */
	return zd_events_flush(conn);
}

/* Queues one packet; takes the fds. */
static void conn_send(struct zd_conn *conn, const char *buf, size_t len, int *fds, size_t nfds)
{
	struct zd_outmsg *m;

	if (conn->closing) {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		return;
	}
	/* Nothing queued before it (the common case): straight out, without
	 * a copy; queued only when the socket is full. */
	if (zd_list_empty(&conn->out)) {
		int r = zp_sendv(conn->fd, buf, len, fds, nfds, MSG_DONTWAIT);

		if (r != -EAGAIN) {
			for (size_t i = 0; i < nfds; i++)
				close(fds[i]);
			if (r < 0 || zd_events_flush(conn) < 0)
				zd_conn_close(conn);
			else
				conn_update_poll(conn);
			return;
		}
	}
	m = malloc(sizeof(*m) + len);
	if (!m) {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		zd_conn_close(conn);
		return;
	}
	memcpy(m->data, buf, len);
	m->len = len;
	m->nfds = nfds;
	if (nfds)
		memcpy(m->fds, fds, nfds * sizeof(int));
	zd_list_add_tail(&conn->out, &m->link);
	conn->out_bytes += len;
	conn_charge(conn, (ssize_t)len);
	if (conn_flush(conn) < 0) {
		zd_conn_close(conn);
		return;
	}
	/* A client that never reads must not make the daemon hold its replies
	 * without bound. */
	if (conn->out_bytes > ZD_MAX_OUT_BYTES) {
		zd_warn("client pid %d does not read its replies; closing it", (int)conn->pid);
		zd_conn_close(conn);
		return;
	}
	conn_update_poll(conn);
}

void zd_conn_send_raw(struct zd_conn *conn, const char *buf, size_t len)
{
	struct zd_outmsg *m;

	/* Unlike conn_send, this never closes conn: its caller (a revocation)
	 * is half way through changing the lease that closing would release.
	 * A peer that is gone is noticed by the poll. What a connection can
	 * have queued here is bounded by its leases. */
	if (conn->closing || !(m = malloc(sizeof(*m) + len)))
		return;
	memcpy(m->data, buf, len);
	m->len = len;
	m->nfds = 0;
	zd_list_add_tail(&conn->out, &m->link);
	conn->out_bytes += len;
	conn_charge(conn, (ssize_t)len);
	(void)conn_flush(conn);
	conn_update_poll(conn);
}

static void conn_send_json(struct zd_conn *conn, struct json_object *obj)
{
	ssize_t len = zp_write(obj, conn->d->outbuf, ZP_MSG_MAX);

	if (len >= 0)
		conn_send(conn, conn->d->outbuf, (size_t)len, NULL, 0);
}

static struct json_object *call_response(struct zd_daemon *d, struct zd_call *call)
{
	struct json_object *id = call->id ? json_object_get(call->id) : NULL;

	if (call->err_code) {
		count_error(d, call->err_code);
		struct json_object *data = call->err_data;

		call->err_data = NULL;
		return zp_error_response(id, call->err_code, call->err_msg[0] ? call->err_msg : NULL,
					 data);
	}
	struct json_object *res = call->result;

	call->result = NULL;
	return zp_result_response(id, res);
}

int zd_call_result_begin(struct zd_call *call, struct zp_jw *w, size_t cap, const char *what)
{
	free(call->result_text);
	json_object_put(call->result);
	call->result = NULL;
	call->result_len = 0;
	call->result_text = malloc(cap);
	if (!call->result_text) {
		zd_call_errno(call, -ENOMEM, what);
		return -ENOMEM;
	}
	zp_jw_init(w, call->result_text, cap);
	return 0;
}

void zd_call_result_end(struct zd_call *call, const struct zp_jw *w, const char *what)
{
	if (w->over) {
		free(call->result_text);
		call->result_text = NULL;
		zd_call_errno(call, -EMSGSIZE, what);
		return;
	}
	call->result_len = w->len;
}

static void call_clear(struct zd_call *call)
{
	json_object_put(call->id);
	free(call->result_text);
	call->result_text = NULL;
	json_object_put(call->result);
	json_object_put(call->err_data);
	for (unsigned i = 0; i < call->nfds; i++)
		close(call->fds[i]);
	free(call->resp);
	call->id = call->result = call->err_data = NULL;
	call->resp = NULL;
	call->nfds = 0;
}

static void batch_free(struct zd_batch *b)
{
	for (size_t i = 0; i < b->nr_calls; i++)
		call_clear(&b->calls[i]);
	for (size_t i = 0; i < b->nfds; i++)
		close(b->fds[i]);
	conn_charge(b->conn, -(ssize_t)b->charged);
	free(b->calls);
	free(b);
}

/* A call is done: its response is serialised at once and its JSON freed, so
 * a batch holds at most one packet of text however large its results were;
 * past a packet the rest is dropped (the reply becomes -32010 anyway). */
static void call_finish(struct zd_batch *b, struct zd_call *call)
{
	struct zd_daemon *d = b->conn->d;
	struct json_object *resp = NULL;
	unsigned fd = 0, nfds = 0;
	bool resp_written = false;
	ssize_t len = 0;

	if (call->is_notification) {
		json_object_put(call->result);
		call->result = NULL;
		free(call->result_text);
		call->result_text = NULL;
		return;
	}
	if (!call->err_code && call->nfds) {
		if (b->nfds + call->nfds <= ZP_MAX_FDS && (call->result || call->result_text)) {
			fd = (unsigned)b->nfds;
			nfds = call->nfds;
			if (call->result) {
				json_object_object_add(call->result, "fd",
						       json_object_new_int((int)fd));
				json_object_object_add(call->result, "nfds",
						       json_object_new_int((int)nfds));
			}
			memcpy(b->fds + b->nfds, call->fds, call->nfds * sizeof(int));
			b->nfds += call->nfds;
			call->nfds = 0;
		} else {
			zd_call_error(call, ZP_ERR_TOO_LARGE,
				      "too many descriptors for one reply (limit %d)", ZP_MAX_FDS);
		}
	}
	if (!call->err_code && call->result_text) {
		resp_written = true;
		/* Written as text: so is the reply (zp_write_result adds "fd"
		 * and "nfds" where the object path above does). */
		len = b->too_large || b->resp_bytes + 2 >= ZP_MSG_MAX ? -EMSGSIZE
		      : zp_write_result(d->outbuf, ZP_MSG_MAX - b->resp_bytes - 2,
					call->result_text, call->result_len, fd, nfds, call->id);
		if (len == -EINVAL) {
			zd_call_error(call, ZP_ERR_INTERNAL, "internal error: a malformed result");
			len = 0;
		}
	}
	free(call->result_text);
	call->result_text = NULL;
	if (call->err_code || !resp_written) {
		resp = call_response(d, call);
		len = !b->too_large && b->resp_bytes + 2 < ZP_MSG_MAX
			      ? zp_write(resp, d->outbuf, ZP_MSG_MAX - b->resp_bytes - 2) : -EMSGSIZE;
	}
	if (!b->too_large) {
		if (len < 0) {
			b->too_large = true;
		} else {
			call->resp = malloc((size_t)len);
			if (call->resp) {
				memcpy(call->resp, d->outbuf, (size_t)len);
				call->resp_len = (size_t)len;
				b->resp_bytes += (size_t)len + 1;
				b->charged += (size_t)len;
				conn_charge(b->conn, len);
			} else {
				b->too_large = true;
			}
		}
	}
	json_object_put(resp);
}

/* All calls of a packet are done: assemble and send the one reply. */
static void batch_finish(struct zd_batch *b)
{
	struct zd_conn *conn = b->conn;
	struct zd_daemon *d = conn->d;
	size_t nresp = 0;

	for (size_t i = 0; i < b->nr_calls; i++)
		if (b->calls[i].resp)
			nresp++;
	if (b->too_large) {
		/* The work is done (leases stay with the connection and show
		 * in lease.list); only this reply cannot be carried. */
		struct json_object *e = zp_error_response(
			NULL, ZP_ERR_TOO_LARGE, "reply exceeds the 64 KiB packet limit", NULL);

		count_error(d, ZP_ERR_TOO_LARGE);
		conn_send_json(conn, e);
		json_object_put(e);
	} else if (nresp) {
		char *buf = b->is_array ? malloc(b->resp_bytes + 2) : NULL;

		if (!b->is_array) {
			conn_send(conn, b->calls[0].resp, b->calls[0].resp_len, b->fds, b->nfds);
			b->nfds = 0;
		} else if (buf) {
			size_t len = 0;

			buf[len++] = '[';
			for (size_t i = 0; i < b->nr_calls; i++) {
				if (!b->calls[i].resp)
					continue;
				if (len > 1)
					buf[len++] = ',';
				memcpy(buf + len, b->calls[i].resp, b->calls[i].resp_len);
				len += b->calls[i].resp_len;
			}
			buf[len++] = ']';
			conn_send(conn, buf, len, b->fds, b->nfds);
			b->nfds = 0;
			free(buf);
		} else {
			zd_conn_close(conn);
		}
	}
	batch_free(b);
	if (conn->batches-- == ZD_MAX_INFLIGHT)
		conn_update_poll(conn);
	zd_conn_put(conn);
}

void zd_call_complete(struct zd_call *call)
{
	struct zd_batch *b = call->batch;

	call_finish(b, call);
	if (--b->pending == 0)
		batch_finish(b);
}

/* An id is echoed in the reply: it must be one JSON can carry. zp_parse
 * already refuses NaN and Infinity; a number too large for a double
 * (1e400) parses as infinite and is refused here, as is any non-finite
 * double that reaches the dispatcher some other way. */
static bool valid_id(struct json_object *id)
{
	if (json_object_is_type(id, json_type_double))
		return isfinite(json_object_get_double(id));
	if (json_object_is_type(id, json_type_string))
		return strlen(json_object_get_string(id)) ==
		       (size_t)json_object_get_string_len(id);
	return json_object_is_type(id, json_type_int) || json_object_is_type(id, json_type_null);
}

/* Runs one request object; always ends in zd_call_complete, now or later. */
static void call_dispatch(struct zd_conn *conn, struct zd_call *call, struct json_object *req)
{
	struct zd_daemon *d = conn->d;
	struct json_object *v, *params = NULL;
	const struct zd_method *m;
	const char *method;
	int r;

	d->stats.requests++;
	if (!json_object_is_type(req, json_type_object)) {
		zd_call_error(call, ZP_ERR_INVALID_REQUEST, "a request must be a JSON object");
		goto done;
	}
	if (json_object_object_get_ex(req, "id", &v)) {
		if (!valid_id(v)) {
			zd_call_error(call, ZP_ERR_INVALID_REQUEST,
				      "'id' must be a string, a finite number or null");
			goto done;
		}
		call->id = json_object_get(v);
	} else {
		call->is_notification = true;
	}
	if (!json_object_object_get_ex(req, "jsonrpc", &v) ||
	    !json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "2.0")) {
		zd_call_error(call, ZP_ERR_INVALID_REQUEST, "'jsonrpc' must be \"2.0\"");
		call->is_notification = false; /* invalid requests are always answered */
		goto done;
	}
	if (!json_object_object_get_ex(req, "method", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		zd_call_error(call, ZP_ERR_INVALID_REQUEST, "'method' must be a string");
		call->is_notification = false;
		goto done;
	}
	method = json_object_get_string(v);
	/* The method table is searched as a C string: "daemon.hello\u0000x"
	 * must not run daemon.hello. */
	if (strlen(method) != (size_t)json_object_get_string_len(v)) {
		zd_call_error(call, ZP_ERR_INVALID_REQUEST, "'method' contains a NUL character");
		call->is_notification = false;
		goto done;
	}
	if (json_object_object_get_ex(req, "params", &params)) {
		if (json_object_is_type(params, json_type_array)) {
			zd_call_error(call, ZP_ERR_INVALID_PARAMS,
				      "params must be an object: zonedd takes named parameters only");
			goto done;
		}
		if (!json_object_is_type(params, json_type_object)) {
			zd_call_error(call, ZP_ERR_INVALID_REQUEST,
				      "'params' must be an object or an array");
			call->is_notification = false;
			goto done;
		}
	}
	m = zd_method_find(d, method);
	if (!m) {
		zd_call_error(call, ZP_ERR_METHOD_NOT_FOUND, "method '%.128s' not found", method);
		goto done;
	}
	if ((m->flags & ZD_M_REPLY) && call->is_notification)
		goto done; /* nothing to answer, so nothing to grant */
	if ((m->flags & ZD_M_ADMIN) && !conn->admin) {
		zd_call_error(call, ZP_ERR_PERM, "%s needs admin rights", m->name);
		goto done;
	}
	if ((m->flags & ZD_M_CLIENT) && !conn->client && !conn->admin) {
		zd_call_error(call, ZP_ERR_PERM, "%s: not a member of the client group", m->name);
		goto done;
	}
	if (params) {
		json_object_object_foreach(params, key, val) {
			bool known = false;

			(void)val;
			for (size_t i = 0; m->params[i]; i++)
				if (strcmp(m->params[i], key) == 0)
					known = true;
			if (!known) {
				zd_call_error(call, ZP_ERR_INVALID_PARAMS, "unknown parameter '%.64s'",
					      key);
				goto done;
			}
		}
	}
	r = m->handler(d, call, params);
	if (r == ZD_ASYNC)
		return;
done:
	zd_call_complete(call);
}

static void conn_reply_error(struct zd_conn *conn, int code, const char *msg)
{
	struct json_object *e = zp_error_response(NULL, code, msg, NULL);

	count_error(conn->d, code);
	conn_send_json(conn, e);
	json_object_put(e);
}

void zd_conn_handle_packet(struct zd_conn *conn, const char *buf, size_t len, bool truncated)
{
	struct json_object *msg;
	struct zp_err perr;
	struct zd_batch *b;
	size_t n;

	if (truncated) {
		char m[128];

		snprintf(m, sizeof(m), "message too large: %zu bytes, the limit is %d", len,
			 ZP_MSG_MAX);
		conn_reply_error(conn, ZP_ERR_INVALID_REQUEST, m);
		return;
	}
	msg = zp_parse_ex(buf, len, &perr);
	if (!msg) {
		conn_reply_error(conn, perr.code, perr.message);
		return;
	}
	if (json_object_is_type(msg, json_type_array)) {
		n = json_object_array_length(msg);
		if (n == 0 || n > ZD_MAX_BATCH) {
			conn_reply_error(conn, ZP_ERR_INVALID_REQUEST,
					 n ? "batch too long (limit 128 requests)" : "empty batch");
			json_object_put(msg);
			return;
		}
	} else {
		n = 1;
	}
	b = calloc(1, sizeof(*b));
	if (b)
		b->calls = calloc(n, sizeof(*b->calls));
	if (!b || !b->calls) {
		free(b);
		json_object_put(msg);
		conn_reply_error(conn, ZP_ERR_INTERNAL, "out of memory");
		return;
	}
	b->conn = conn;
	conn->refs++;
	conn->batches++;
	b->charged = sizeof(*b) + n * (sizeof(*b->calls) + ZD_CALL_COST);
	conn_charge(conn, (ssize_t)b->charged);
	b->is_array = json_object_is_type(msg, json_type_array);
	b->nr_calls = n;
	/* One extra pending count so the batch cannot finish while calls are
	 * still being started. */
	b->pending = n + 1;
	for (size_t i = 0; i < n; i++) {
		b->calls[i].nfds = 0;
		b->calls[i].batch = b;
		b->calls[i].conn = conn;
	}
	for (size_t i = 0; i < n; i++)
		call_dispatch(conn, &b->calls[i],
			      b->is_array ? json_object_array_get_idx(msg, i) : msg);
	json_object_put(msg);
	if (--b->pending == 0)
		batch_finish(b);
}

/* On SOCK_SEQPACKET a zero-length packet reads like end-of-file; only the
 * peer's hang-up (what UV_DISCONNECT reports too) is one. */
static bool peer_hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };
	int r = poll(&p, 1, 0);

	return r < 0 || (r == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/* Reads up to `budget` packets. The poll is level-triggered, so a packet
 * left unread wakes the loop again: one a wakeup is fair to the other
 * clients and spares the recvmsg that would only say EAGAIN, one per
 * request of a client that waits for each reply. */
static void conn_read(struct zd_conn *conn, int budget)
{
	struct zd_daemon *d = conn->d;

	for (int i = 0; i < budget && !conn->closing; i++) {
		ssize_t n;

		if (conn->batches >= ZD_MAX_INFLIGHT || conn_over_mem(conn)) {
			conn_update_poll(conn);
			return;
		}
		n = zp_recv(conn->fd, d->msgbuf, ZP_MSG_MAX + 1, NULL, MSG_DONTWAIT);

		if (n == -EAGAIN)
			return;
		/* An empty packet from a live client is bad input, answered as
		 * invalid JSON: it must not cost the client its leases. */
		if (n < 0 || (n == 0 && peer_hung_up(conn->fd))) {
			zd_conn_close(conn);
			return;
		}
		conn->refs++;
		zd_conn_handle_packet(conn, d->msgbuf, (size_t)n, n > ZP_MSG_MAX);
		zd_conn_put(conn);
	}
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
	struct zd_conn *conn = h->data;

	if (status < 0 || (events & UV_DISCONNECT)) {
		/* Read what is still queued first: a client may send its last
		 * request and close. */
		if (status >= 0)
			conn_read(conn, 16);
		zd_conn_close(conn);
		return;
	}
	if (events & UV_WRITABLE) {
		if (conn_flush(conn) < 0) {
			zd_conn_close(conn);
			return;
		}
		conn_update_poll(conn);
	}
	if (events & UV_READABLE)
		conn_read(conn, 1);
}

static void conn_poll_closed(uv_handle_t *h)
{
	zd_conn_put(h->data);
}

static bool uid_in_group(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups, gid_t want)
{
	(void)uid;
	if (gid == want)
		return true;
	for (size_t i = 0; i < ngroups; i++)
		if (groups[i] == want)
			return true;
	return false;
}

static void conn_credentials(struct zd_conn *conn)
{
	struct zd_daemon *d = conn->d;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t groups[256];
	socklen_t glen = sizeof(groups);
	size_t ngroups = 0;

	conn->pid = -1;
	conn->uid = (uid_t)-1;
	conn->gid = (gid_t)-1;
	if (getsockopt(conn->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		conn->pid = cred.pid;
		conn->uid = cred.uid;
		conn->gid = cred.gid;
	}
	/* The peer's supplementary groups as they were at connect time. */
	if (getsockopt(conn->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0)
		ngroups = glen / sizeof(gid_t);
	conn->admin = conn->uid == 0 || conn->uid == d->uid ||
		      (d->have_admin_gid &&
		       uid_in_group(conn->uid, conn->gid, groups, ngroups, d->admin_gid));
	conn->client = !d->have_client_gid || conn->admin ||
		       uid_in_group(conn->uid, conn->gid, groups, ngroups, d->client_gid);
}

/* The uid's accounting entry, made on its first connection. Users are few
 * (one per uid connected) and looked up once per connection. */
static struct zd_user *user_get(struct zd_daemon *d, uid_t uid)
{
	struct zd_list *pos, *tmp;
	struct zd_user *u;

	zd_list_for_each_safe(pos, tmp, &d->users) {
		u = zd_container_of(pos, struct zd_user, link);
		if (u->uid == uid) {
			u->refs++;
			return u;
		}
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->uid = uid;
	u->refs = 1;
	zd_list_init(&u->conns);
	zd_list_add_tail(&d->users, &u->link);
	return u;
}

static void user_put(struct zd_user *u)
{
	if (u && --u->refs == 0) {
		zd_list_del(&u->link);
		free(u);
	}
}

void zd_hooks_add(struct zd_daemon *d, struct zd_hooks *hook)
{
	zd_list_add_tail(&d->hooks, &hook->link);
}

void zd_method_table_bind(struct zd_daemon *d, struct zd_method_table *t)
{
	zd_list_add_tail(&d->method_tables, &t->link);
}

const struct zd_method *zd_method_find(struct zd_daemon *d, const char *name)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &d->method_tables) {
		const struct zd_method_table *t = zd_container_of(pos, struct zd_method_table, link);

		for (size_t i = 0; i < t->nr_methods; i++)
			if (strcmp(t->methods[i].name, name) == 0)
				return &t->methods[i];
	}
	return NULL;
}

struct zd_conn *zd_conn_new(struct zd_daemon *d, int fd)
{
	struct zd_conn *conn = calloc(1, sizeof(*conn));
	struct zd_list *pos, *tmp;

	if (!conn)
		return NULL;
	conn->d = d;
	conn->fd = fd;
	conn->refs = 1;
	zd_list_init(&conn->link);
	zd_list_init(&conn->out);
	zd_list_init(&conn->user_link);
	conn_credentials(conn);
	conn->user = user_get(d, conn->uid);
	if (!conn->user) {
		free(conn);
		return NULL;
	}
	conn->user->nr_conns++;
	zd_list_add_tail(&conn->user->conns, &conn->user_link);
	zd_list_add_tail(&d->conns, &conn->link);
	d->nr_conns++;
	zd_list_for_each_safe(pos, tmp, &d->hooks) {
		struct zd_hooks *h = zd_container_of(pos, struct zd_hooks, link);

		if (h->conn_open)
			h->conn_open(conn);
	}
	return conn;
}

void zd_conn_close(struct zd_conn *conn)
{
	struct zd_daemon *d = conn->d;
	struct zd_list *pos, *tmp;

	if (conn->closing)
		return;
	conn->closing = true;
	zd_list_del(&conn->link);
	d->nr_conns--;
	conn->user->nr_conns--;
	zd_list_del(&conn->user_link);
	/* The modules let go of what the connection held (its leases, its
	 * waiting calls) while it is still whole. */
	zd_list_for_each_safe(pos, tmp, &d->hooks) {
		struct zd_hooks *h = zd_container_of(pos, struct zd_hooks, link);

		if (h->conn_close)
			h->conn_close(conn);
	}
	while (!zd_list_empty(&conn->out)) {
		struct zd_outmsg *m = zd_container_of(conn->out.next, struct zd_outmsg, link);

		zd_list_del(&m->link);
		conn_charge(conn, -(ssize_t)m->len);
		out_free(m);
	}
	conn->out_bytes = 0;
	zd_events_conn_free(conn);
	if (uv_is_active((uv_handle_t *)&conn->poll) || conn->poll.data) {
		uv_poll_stop(&conn->poll);
		conn->refs++;
		uv_close((uv_handle_t *)&conn->poll, conn_poll_closed);
	}
	close(conn->fd);
	conn->fd = -1;
	zd_debug("client pid %d uid %u disconnected", (int)conn->pid, (unsigned)conn->uid);
	zd_conn_put(conn);
}

void zd_conn_put(struct zd_conn *conn)
{
	if (--conn->refs == 0) {
		user_put(conn->user);
		free(conn);
	}
}

/* The connection over its uid's cap: the client is told why before the
 * hang-up. Closing a Unix socket with unread data resets the peer, and the
 * peer's reset is reported before the reply already queued for it, so the
 * socket is shut first (the client can send nothing more and reads our
 * reply, then end-of-file) and what it had sent is drained. */
static void conn_refuse(struct zd_conn *conn)
{
	struct zd_daemon *d = conn->d;
	char msg[128];
	uint64_t now = zd_now_ms(d);

	d->stats.connections_refused++;
	snprintf(msg, sizeof(msg), "too many connections for uid %u (the limit is %u)",
		 (unsigned)conn->uid, d->cfg.max_conns_per_uid);
	conn_reply_error(conn, ZP_ERR_PERM, msg);
	if (conn->fd >= 0) {
		shutdown(conn->fd, SHUT_RDWR);
		while (recv(conn->fd, d->msgbuf, ZP_MSG_MAX + 1, MSG_DONTWAIT) > 0)
			;
	}
	/* One line per second at most: a client retrying in a loop must not
	 * flood the journal. */
	if (now - d->refused_log_ms >= 1000 || d->refused_log_ms == 0) {
		zd_warn("refused a connection of client pid %d uid %u: %u connections is the "
			"limit (max_connections_per_uid); %llu more refused since the last "
			"such line", (int)conn->pid, (unsigned)conn->uid, d->cfg.max_conns_per_uid,
			(unsigned long long)d->refused_unlogged);
		d->refused_log_ms = now ? now : 1;
		d->refused_unlogged = 0;
	} else {
		d->refused_unlogged++;
	}
	zd_conn_close(conn);
}

int zd_conn_accept(struct zd_daemon *d, int fd)
{
	struct zd_conn *conn = zd_conn_new(d, fd);

	if (!conn) {
		close(fd);
		return -ENOMEM;
	}
	d->stats.connections++;
	if (d->cfg.max_conns_per_uid &&
	    conn->user->nr_conns > d->cfg.max_conns_per_uid) {
		conn_refuse(conn);
		return -EUSERS;
	}
	conn->poll.data = conn;
	if (uv_poll_init(d->loop, &conn->poll, fd) < 0) {
		conn->poll.data = NULL;
		zd_conn_close(conn);
		return -EIO;
	}
	conn->poll_events = UV_READABLE | UV_DISCONNECT;
	uv_poll_start(&conn->poll, conn->poll_events, conn_poll_cb);
	zd_debug("client pid %d uid %u connected%s", (int)conn->pid, (unsigned)conn->uid,
		 conn->admin ? " (admin)" : "");
	return 0;
}

static void listen_cb(uv_poll_t *h, int status, int events);

static void accept_resume(uv_timer_t *t)
{
	struct zd_daemon *d = t->data;

	if (!d->stopping && d->listen_poll.data)
		uv_poll_start(&d->listen_poll, UV_READABLE, listen_cb);
}

/* accept() failed with the connection still queued: the socket stays
 * readable, so polling on would spin at full speed (and log millions of
 * lines) until an fd frees. Instead the connections wait in the backlog
 * and accepting resumes after a pause. */
static void accept_pause(struct zd_daemon *d, int err)
{
	uint64_t now = zd_now_ms(d);

	uv_poll_stop(&d->listen_poll);
	uv_timer_start(&d->accept_timer, accept_resume, ZD_ACCEPT_BACKOFF_MS, 0);
	if (d->accept_logged && now - d->accept_log_ms < ZD_ACCEPT_LOG_MS) {
		d->accept_failures++;
		return;
	}
	if (d->accept_failures)
		zd_warn("accept: %s; new connections wait in the backlog, retried every %d ms "
			"(%llu more failures in the last %llu s)", strerror(err),
			ZD_ACCEPT_BACKOFF_MS, (unsigned long long)d->accept_failures,
			(unsigned long long)(now - d->accept_log_ms) / 1000);
	else
		zd_warn("accept: %s; new connections wait in the backlog, retried every %d ms",
			strerror(err), ZD_ACCEPT_BACKOFF_MS);
	d->accept_logged = true;
	d->accept_log_ms = now;
	d->accept_failures = 0;
}

static void listen_cb(uv_poll_t *h, int status, int events)
{
	struct zd_daemon *d = h->data;

	(void)events;
	if (status < 0)
		return;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything else that
			 * would fail again at once. */
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				accept_pause(d, errno);
			return;
		}
		zd_conn_accept(d, fd);
	}
}

/* The socket's directory decides who can replace the socket (and so stand
 * in for the daemon) or swap a name under the daemon between two calls:
 * only the daemon's user or root may own it, and nobody else may write it.
 * The sticky bit is no exception: it keeps others from removing the socket
 * but not from creating the name first while no daemon runs. */
static int open_socket_dir(const char *dir, char *why, size_t why_len)
{
	int dfd, r;

	/* Only the last component: the parents are the administrator's. */
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		snprintf(why, why_len, "cannot create %s: %s", dir, strerror(-r));
		return r;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot open directory %s: %s", dir, strerror(-r));
		return r;
	}
	r = zd_check_dir_fd(dfd, dir, true, why, why_len);
	if (r < 0) {
		close(dfd);
		return r;
	}
	return dfd;
}

/* Fills sa with a name for `name` inside the directory dfd. Through
 * /proc/self/fd the name resolves in the very directory that was checked,
 * even if a parent is renamed meanwhile; without /proc, or when that form
 * does not fit, the path as given (the directory check still holds). */
static void socket_addr_at(struct sockaddr_un *sa, int dfd, const char *name, const char *path)
{
	char buf[sizeof(sa->sun_path) + 32];
	struct stat st;
	int n;

	n = snprintf(buf, sizeof(buf), "/proc/self/fd/%d/%s", dfd, name);
	if (n > 0 && (size_t)n < sizeof(sa->sun_path) && stat("/proc/self/fd", &st) == 0)
		memcpy(sa->sun_path, buf, (size_t)n + 1);
	else
		snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
}

/* Creates the listening socket with its mode and group set without ever
 * following a name: the mode comes from the umask at bind() (fchmod on a
 * socket fd does not reach the file bind creates), the group from fchownat
 * on the name in the checked directory, never following a symlink. A
 * chmod/chown by path after bind() would let anyone who can write the
 * directory swap in a symlink and have the daemon (root) change another
 * file. */
static int make_listen_socket(struct zd_daemon *d, char *why, size_t why_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = d->cfg.socket_path;
	char dir[sizeof(sa.sun_path)];
	const char *name;
	char *slash;
	struct stat st;
	mode_t mask;
	int fd, dfd, r;

	if (strlen(path) >= sizeof(sa.sun_path) || !path[0]) {
		snprintf(why, why_len, "%s", strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash) {
		name = path;
		snprintf(dir, sizeof(dir), ".");
	} else {
		name = path + (slash - dir) + 1;
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		snprintf(why, why_len, "the socket path must name a file");
		return -EINVAL;
	}
	dfd = open_socket_dir(dir, why, why_len);
	if (dfd < 0)
		return dfd;
	socket_addr_at(&sa, dfd, name, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(why, why_len, "socket: %s", strerror(-r));
		goto out;
	}
	/* A socket file left by a daemon that died is stale and replaced; one
	 * that answers belongs to a running daemon and is left alone; anything
	 * else at the name (a file, a symlink) is not ours to remove. */
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			r = -EEXIST;
			snprintf(why, why_len, "%s exists and is not a socket; remove it", path);
			goto out;
		}
		probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (probe >= 0) {
			r = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
			close(probe);
			if (r == 0) {
				r = -EADDRINUSE;
				snprintf(why, why_len, "another zonedd is running there");
				goto out;
			}
		}
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
			r = -errno;
			snprintf(why, why_len, "cannot remove the stale socket: %s", strerror(-r));
			goto out;
		}
	}
	/* The umask is the process's: held only around bind(), at start-up,
	 * before the thread pool runs anything. */
	mask = umask(d->have_client_gid ? 0117 : 0111);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(mask);
	if (r < 0) {
		snprintf(why, why_len, "bind: %s", strerror(-r));
		goto out;
	}
	/* Access is the daemon's decision (client and admin groups), so the
	 * socket is open to all unless a client group narrows who may reach it. */
	if (d->have_client_gid) {
		if (fchownat(dfd, name, (uid_t)-1, d->client_gid, AT_SYMLINK_NOFOLLOW) < 0)
			zd_warn("cannot give %s to the client group: %s; only the daemon's own "
				"group can connect", path, strerror(errno));
	} else {
		zd_warn("%s is open to every local user (mode 0666, no client group): any local "
			"user may lease zones and write to the devices; set client_group to "
			"restrict it", path);
	}
	if (listen(fd, 128) < 0) {
		r = -errno;
		snprintf(why, why_len, "listen: %s", strerror(-r));
		unlinkat(dfd, name, 0);
		goto out;
	}
	d->listen_owned = true;
	d->listen_fd = fd;
	fd = -1;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	close(dfd);
	return r;
}

static void update_status(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;
	unsigned ndev = 0, nleased = 0;

	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);

		ndev++;
		nleased += dev->class_count[ZD_ZC_LEASED];
	}
	sd_notifyf(0, "STATUS=%u device%s, %u lease%s, %u client%s", ndev, ndev == 1 ? "" : "s",
		   nleased, nleased == 1 ? "" : "s", d->nr_conns, d->nr_conns == 1 ? "" : "s");
}

static void watchdog_cb(uv_timer_t *t)
{
	struct zd_daemon *d = t->data;

	/* Sent from the loop itself: if the loop wedges, the pings stop and
	 * systemd restarts the service. */
	sd_notify(0, "WATCHDOG=1");
	update_status(d);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct zd_daemon *d = s->data;

	if (signum == SIGHUP) {
		zd_notice("SIGHUP: reloading is handled by the configuration layer");
		zd_event_daemon(d, ZD_EV_DAEMON_RELOADING);
		if (d->reload)
			d->reload(d);
		return;
	}
	zd_notice("received %s, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	zd_daemon_stop(d);
}

int zd_daemon_init(struct zd_daemon *d, uv_loop_t *loop)
{
	d->loop = loop;
	d->listen_fd = -1;
	uv_update_time(loop);
	d->start_ms = zd_now_ms(d);
	d->pid = getpid();
	d->uid = geteuid();
	zd_list_init(&d->devices);
	zd_list_init(&d->conns);
	zd_list_init(&d->users);
	zd_list_init(&d->hooks);
	zd_list_init(&d->method_tables);
	d->msgbuf = malloc(ZP_MSG_MAX + 1);
	d->outbuf = malloc(ZP_MSG_MAX);
	if (!d->msgbuf || !d->outbuf)
		return -ENOMEM;
	return zd_modules_init(d);
}

int zd_daemon_resolve_groups(struct zd_daemon *d, char *why, size_t why_len)
{
	struct group *g;

	d->have_admin_gid = d->have_client_gid = false;
	if (d->cfg.admin_group[0]) {
		g = getgrnam(d->cfg.admin_group);
		if (!g) {
			snprintf(why, why_len, "admin group '%s' does not exist", d->cfg.admin_group);
			return -ENOENT;
		}
		d->admin_gid = g->gr_gid;
		d->have_admin_gid = true;
	}
	if (d->cfg.client_group[0]) {
		g = getgrnam(d->cfg.client_group);
		if (!g) {
			snprintf(why, why_len, "client group '%s' does not exist", d->cfg.client_group);
			return -ENOENT;
		}
		d->client_gid = g->gr_gid;
		d->have_client_gid = true;
	}
	return 0;
}

int zd_daemon_take_passed(struct zd_daemon *d)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	if (n < 0) {
		zd_err("cannot read the descriptors passed by systemd: %s", strerror(-n));
		return n;
	}
	d->passed = n ? calloc((size_t)n, sizeof(*d->passed)) : NULL;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		/* Ours now, and not a child's. */
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (!d->passed) {
			close(fd);
			continue;
		}
		d->passed[i].fd = fd;
		snprintf(d->passed[i].name, sizeof(d->passed[i].name), "%s",
			 names && names[i] ? names[i] : "");
	}
	if (d->passed)
		d->nr_passed = (size_t)n;
	if (names)
		for (int i = 0; i < n; i++)
			free(names[i]);
	free(names);
	return n && !d->passed ? -ENOMEM : 0;
}

int zd_daemon_passed_fd(struct zd_daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nr_passed; i++) {
		int fd = d->passed[i].fd;

		if (fd >= 0 && strcmp(d->passed[i].name, name) == 0) {
			d->passed[i].fd = -1;
			return fd;
		}
	}
	return -1;
}

/* The listener systemd passes: one stored in the service's fd store by an
 * earlier life of the daemon (named "listen"), which wins, or the socket
 * of socket activation. Whatever else is left is closed, and a device
 * claim nobody took (the device left the configuration) leaves the fd
 * store. Returns 1 when one was taken, 0 when none was passed. */
static int pick_listen_fd(struct zd_daemon *d)
{
	int n = (int)d->nr_passed, pick = -1, sockets = 0;
	bool stored = false;

	for (int i = 0; i < n; i++) {
		int fd = d->passed[i].fd;
		bool is_stored = strcmp(d->passed[i].name, "listen") == 0;

		/* Device claims are not listeners (taken or not). */
		if (strncmp(d->passed[i].name, "dev-", 4) == 0)
			continue;
		sockets++;
		if (fd < 0 || sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0)
			continue;
		if (pick < 0 || (is_stored && !stored)) {
			pick = fd;
			stored = is_stored;
		}
	}
	for (int i = 0; i < n; i++) {
		struct zd_passed_fd *p = &d->passed[i];

		if (p->fd < 0 || p->fd == pick)
			continue;
		close(p->fd);
		p->fd = -1;
		if (strncmp(p->name, "dev-", 4) == 0) {
			char msg[300];

			zd_info("the kept claim of device %s is no longer needed", p->name + 4);
			snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", p->name);
			sd_pid_notify(0, 0, msg);
		}
	}
	free(d->passed);
	d->passed = NULL;
	d->nr_passed = 0;
	if (sockets > 0 && pick < 0) {
		zd_err("systemd passed %d fd(s), none a listening AF_UNIX SOCK_SEQPACKET socket",
		       sockets);
		return -EINVAL;
	}
	if (pick < 0)
		return 0;
	d->listen_fd = pick;
	fcntl(d->listen_fd, F_SETFL, fcntl(d->listen_fd, F_GETFL) | O_NONBLOCK);
	fcntl(d->listen_fd, F_SETFD, FD_CLOEXEC);
	zd_info("listening on the socket %s", stored ? "kept in systemd's fd store" :
		"passed by systemd");
	return 1;
}

/* Under systemd, the listener goes into the service's fd store
 * (FileDescriptorStoreMax=): a restarted daemon gets it back, so the
 * socket never goes away and clients connecting meanwhile queue in its
 * backlog instead of being refused. systemd drops duplicates, so storing
 * a socket-activated or already stored listener again is harmless. A
 * stored socket's name is not unlinked at stop: the next life serves it. */
static void store_listen_fd(struct zd_daemon *d)
{
	int r;

	if (!getenv("NOTIFY_SOCKET"))
		return;
	r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=listen", &d->listen_fd, 1);
	if (r > 0) {
		d->listen_owned = false;
		zd_debug("listening socket stored in systemd's fd store");
	} else if (r < 0) {
		zd_warn("cannot store the listening socket in systemd's fd store: %s "
			"(a restart briefly refuses connections)", strerror(-r));
	}
}

int zd_daemon_listen(struct zd_daemon *d)
{
	int r;
	uint64_t usec = 0;

	/* Handled before the socket can be connected to: whoever sees it
	 * answer may stop the daemon at once (a test, systemd), and a SIGTERM
	 * must then be a clean stop, not the default action. */
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	uv_signal_init(d->loop, &d->sig_hup);
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
	uv_signal_start(&d->sig_term, signal_cb, SIGTERM);
	uv_signal_start(&d->sig_int, signal_cb, SIGINT);
	uv_signal_start(&d->sig_hup, signal_cb, SIGHUP);

	r = pick_listen_fd(d);
	if (r < 0)
		goto fail;
	if (r == 0) {
		char why[512] = "";

		r = make_listen_socket(d, why, sizeof(why));
		if (r < 0) {
			zd_err("cannot listen on %s: %s", d->cfg.socket_path, why);
			goto fail;
		}
		zd_info("listening on %s", d->cfg.socket_path);
	}
	store_listen_fd(d);
	d->listen_poll.data = d;
	uv_poll_init(d->loop, &d->listen_poll, d->listen_fd);
	uv_poll_start(&d->listen_poll, UV_READABLE, listen_cb);
	uv_timer_init(d->loop, &d->accept_timer);
	d->accept_timer.data = d;

	uv_timer_init(d->loop, &d->watchdog);
	d->watchdog.data = d;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		d->watchdog_usec = usec;
		uv_timer_start(&d->watchdog, watchdog_cb, 0, usec / 2 / 1000 ? usec / 2 / 1000 : 1);
	} else {
		uv_timer_start(&d->watchdog, watchdog_cb, 5000, 5000);
	}
	d->listening = true;
	update_status(d);
	sd_notify(0, "READY=1");
	return 0;
fail:
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	return r;
}

void zd_daemon_stop(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	if (d->stopping)
		return;
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
	if (d->listen_poll.data) {
		uv_close((uv_handle_t *)&d->listen_poll, NULL);
		d->listen_poll.data = NULL;
	}
	zd_list_for_each_safe(pos, tmp, &d->conns)
		zd_conn_close(zd_container_of(pos, struct zd_conn, link));
	zd_list_for_each_safe(pos, tmp, &d->hooks) {
		struct zd_hooks *h = zd_container_of(pos, struct zd_hooks, link);

		if (h->stop)
			h->stop(d);
	}
	if (d->listening) {
		uv_close((uv_handle_t *)&d->sig_term, NULL);
		uv_close((uv_handle_t *)&d->sig_int, NULL);
		uv_close((uv_handle_t *)&d->sig_hup, NULL);
		uv_close((uv_handle_t *)&d->watchdog, NULL);
		uv_close((uv_handle_t *)&d->accept_timer, NULL);
	}
	if (d->stop_hook)
		d->stop_hook(d);
}

void zd_daemon_fini(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	if (d->listen_fd >= 0) {
		if (d->listen_owned)
			unlink(d->cfg.socket_path);
		close(d->listen_fd);
		d->listen_fd = -1;
	}
	zd_list_for_each_safe(pos, tmp, &d->hooks) {
		struct zd_hooks *h = zd_container_of(pos, struct zd_hooks, link);

		if (h->fini)
			h->fini(d);
	}
	zd_device_free_all(d);
	/* Left when the daemon stops before it listens (a device that will
	 * not open): the listener, claims nobody took. */
	for (size_t i = 0; i < d->nr_passed; i++)
		if (d->passed[i].fd >= 0)
			close(d->passed[i].fd);
	free(d->passed);
	d->passed = NULL;
	d->nr_passed = 0;
	free(d->msgbuf);
	d->msgbuf = NULL;
	free(d->outbuf);
	d->outbuf = NULL;
}
