/* Subscriptions and the event stream: events.subscribe/unsubscribe, who
 * may see which event, and each subscriber's bounded queue, kept apart
 * from its replies so that a slow reader loses events (and is told how
 * many), never its leases, and never grows the daemon's memory. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/log.h"

#define ZD_EVENT_DEVICES_MAX 16

static const char *const type_names[ZD_EV_COUNT] = {
	[ZD_EV_LEASE_ACQUIRED] = "lease.acquired",
	[ZD_EV_LEASE_RELEASED] = "lease.released",
	[ZD_EV_LEASE_REVOKED] = "lease.revoked",
	[ZD_EV_LEASE_ORPHANED] = "lease.orphaned",
	[ZD_EV_LEASE_RECLAIMED] = "lease.reclaimed",
	[ZD_EV_ZONE_CHANGED] = "zone.changed",
	[ZD_EV_DEVICE_ADDED] = "device.added",
	[ZD_EV_DEVICE_FAILED] = "device.failed",
	[ZD_EV_DEVICE_REMOVED] = "device.removed",
	[ZD_EV_DAEMON_RELOADING] = "daemon.reloading",
};

struct zd_evmsg {
	struct zd_list link;
	size_t len;
	char data[];
};

/* A connection's subscription. */
struct zd_subscription {
	uint32_t types;                 /* bit per enum zd_event_type */
	unsigned nr_devices;            /* 0 = every device */
	char devices[ZD_EVENT_DEVICES_MAX][ZD_ID_MAX];
	struct zd_list queue;           /* serialised notifications, oldest first */
	unsigned len;
	uint64_t lost, lost_seq;        /* dropped since the last overflow event */
};

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* {"jsonrpc":"2.0","method":"event","params":params}, serialised; takes
 * nothing. NULL when out of memory. */
static struct zd_evmsg *evmsg_new(struct json_object *params)
{
	struct json_object *n = json_object_new_object();
	struct zd_evmsg *m = NULL;
	const char *s;
	size_t len;

	if (!n)
		return NULL;
	json_object_object_add(n, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(n, "method", json_object_new_string("event"));
	json_object_object_add(n, "params", json_object_get(params));
	s = zp_to_string(n, &len);
	if (s && len <= ZP_MSG_MAX && (m = malloc(sizeof(*m) + len))) {
		m->len = len;
		memcpy(m->data, s, len);
	}
	json_object_put(n);
	return m;
}

static void queue_push(struct zd_subscription *s, struct zd_evmsg *m)
{
	zd_list_add_tail(&s->queue, &m->link);
	s->len++;
}

/* The loss is told where it happened in the stream, as soon as there is
 * room for it. */
static void queue_overflow(struct zd_subscription *s)
{
	struct json_object *p;
	struct zd_evmsg *m;

	if (!s->lost || s->len >= ZD_EVENT_QUEUE_MAX)
		return;
	p = json_object_new_object();
	if (!p)
		return;
	json_object_object_add(p, "seq", json_object_new_uint64(s->lost_seq));
	json_object_object_add(p, "time", json_object_new_uint64(wall_ms()));
	json_object_object_add(p, "type", json_object_new_string("overflow"));
	json_object_object_add(p, "lost", json_object_new_uint64(s->lost));
	m = evmsg_new(p);
	json_object_put(p);
	if (!m)
		return;
	queue_push(s, m);
	s->lost = 0;
}

int zd_events_flush(struct zd_conn *conn)
{
	struct zd_subscription *s = conn->events;

	if (!s || conn->closing)
		return 0;
	/* Replies first: they are what a caller waits for. */
	if (!zd_list_empty(&conn->out))
		return 0;
	for (;;) {
		struct zd_evmsg *m;
		int r;

		if (zd_list_empty(&s->queue))
			queue_overflow(s);
		if (zd_list_empty(&s->queue))
			return 0;
		m = zd_container_of(s->queue.next, struct zd_evmsg, link);
		r = zp_send(conn->fd, m->data, m->len, -1, MSG_DONTWAIT);
		if (r == -EAGAIN)
			return 0;
		zd_list_del(&m->link);
		s->len--;
		free(m);
		if (r < 0)
			return r;
	}
}

bool zd_events_pending(const struct zd_conn *conn)
{
	const struct zd_subscription *s = conn->events;

	return s && (!zd_list_empty(&s->queue) || s->lost);
}

static void subscription_free(struct zd_subscription *s)
{
	if (!s)
		return;
	while (!zd_list_empty(&s->queue)) {
		struct zd_evmsg *m = zd_container_of(s->queue.next, struct zd_evmsg, link);

		zd_list_del(&m->link);
		free(m);
	}
	free(s);
}

void zd_events_conn_free(struct zd_conn *conn)
{
	subscription_free(conn->events);
	conn->events = NULL;
}

/* Visibility: an admin sees everything; anyone else the events of leases
 * of its own uid, and the zone, device and daemon events (what
 * zone.report and device.list already show every client). */
static bool visible(const struct zd_conn *conn, enum zd_event_type type, const struct zd_lease *l)
{
	if (conn->admin)
		return true;
	if (type <= ZD_EV_LEASE_RECLAIMED)
		return l && l->uid == conn->uid;
	return conn->client;
}

static bool wanted(const struct zd_subscription *s, enum zd_event_type type, const char *device)
{
	if (!(s->types & (1u << type)))
		return false;
	if (!s->nr_devices || !device)
		return true;
	for (unsigned i = 0; i < s->nr_devices; i++)
		if (strcmp(s->devices[i], device) == 0)
			return true;
	return false;
}

/* Sends params (with seq, time and type added) to every subscriber that
 * may see it and asked for it; skip (may be NULL) already got it. Takes
 * params. */
static void emit(struct zd_daemon *d, enum zd_event_type type, const char *device,
		 const struct zd_lease *l, struct json_object *params, const struct zd_conn *skip)
{
	struct zd_evmsg *m = NULL;
	struct zd_list *pos, *tmp;
	size_t len = 0;

	zd_list_for_each_safe(pos, tmp, &d->conns) {
		struct zd_conn *conn = zd_container_of(pos, struct zd_conn, link);
		struct zd_subscription *s = conn->events;
		struct zd_evmsg *copy;

		if (!s || conn->closing || conn == skip || !visible(conn, type, l) ||
		    !wanted(s, type, device))
			continue;
		if (s->len >= ZD_EVENT_QUEUE_MAX || (s->lost && s->len + 1 >= ZD_EVENT_QUEUE_MAX)) {
			/* Full: dropped, counted, told later. */
			s->lost++;
			s->lost_seq = d->event_seq;
			continue;
		}
		queue_overflow(s);
		if (!m) {
			m = evmsg_new(params);
			if (!m)
				break;
			len = m->len;
		}
		copy = malloc(sizeof(*copy) + len);
		if (!copy) {
			s->lost++;
			s->lost_seq = d->event_seq;
			continue;
		}
		copy->len = len;
		memcpy(copy->data, m->data, len);
		queue_push(s, copy);
		/* A send error is the poll's to notice: closing a connection
		 * here would change d->conns under this loop. */
		zd_events_flush(conn);
		zd_conn_update_poll(conn);
	}
	free(m);
	json_object_put(params);
}

static struct json_object *event_params(struct zd_daemon *d, enum zd_event_type type,
					const char *device)
{
	struct json_object *p = json_object_new_object();

	if (!p)
		return NULL;
	json_object_object_add(p, "seq", json_object_new_uint64(++d->event_seq));
	json_object_object_add(p, "time", json_object_new_uint64(wall_ms()));
	json_object_object_add(p, "type", json_object_new_string(type_names[type]));
	if (device)
		json_object_object_add(p, "device", json_object_new_string(device));
	return p;
}

static bool anyone_listens(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &d->conns) {
		if (zd_container_of(pos, struct zd_conn, link)->events)
			return true;
	}
	return false;
}

void zd_event_lease(struct zd_daemon *d, enum zd_event_type type, const struct zd_lease *l,
		    const char *reason)
{
	struct zd_conn *holder = type == ZD_EV_LEASE_REVOKED ? l->conn : NULL;
	const struct zd_zone zone = zd_device_zone(l->dev, l->zone), *z = &zone;
	struct json_object *p;

	if (!holder && !anyone_listens(d))
		return;
	p = event_params(d, type, l->dev->id);
	if (!p)
		return;
	json_object_object_add(p, "zone", json_object_new_uint64(l->zone));
	if (l->count > 1)
		json_object_object_add(p, "count", json_object_new_uint64(l->count));
	json_object_object_add(p, "lease", json_object_new_uint64(l->id));
	json_object_object_add(p, "pid", json_object_new_int(l->pid));
	json_object_object_add(p, "uid", json_object_new_uint64(l->uid));
	json_object_object_add(p, "label", json_object_new_string(l->label));
	json_object_object_add(p, "wp", json_object_new_uint64(z->wp));
	json_object_object_add(p, "cond", json_object_new_string(zp_cond_name(z->cond)));
	if (reason)
		json_object_object_add(p, "reason", json_object_new_string(reason));
	/* Its holder is always told, subscribed or not, and through its reply
	 * queue: the library must fence the lease, an overflow may not drop
	 * that. What it holds is bounded by its lease limit. */
	if (holder && !holder->closing) {
		struct zd_evmsg *m = evmsg_new(p);

		if (m) {
			zd_conn_send_raw(holder, m->data, m->len);
			free(m);
		}
	}
	emit(d, type, l->dev->id, l, p, holder);
}

void zd_event_zone(struct zd_device *dev, uint32_t zone, unsigned old_cond)
{
	struct zd_daemon *d = dev->d;
	const struct zd_zone zc = zd_device_zone(dev, zone), *z = &zc;
	struct json_object *p;

	if (!d || !anyone_listens(d))
		return;
	p = event_params(d, ZD_EV_ZONE_CHANGED, dev->id);
	if (!p)
		return;
	json_object_object_add(p, "zone", json_object_new_uint64(zone));
	json_object_object_add(p, "cond", json_object_new_string(zp_cond_name(z->cond)));
	json_object_object_add(p, "old_cond", json_object_new_string(zp_cond_name(old_cond)));
	json_object_object_add(p, "wp", json_object_new_uint64(z->wp));
	emit(d, ZD_EV_ZONE_CHANGED, dev->id, NULL, p, NULL);
}

void zd_event_device(struct zd_daemon *d, enum zd_event_type type, const char *device,
		     const char *reason)
{
	struct json_object *p;

	if (!anyone_listens(d))
		return;
	p = event_params(d, type, device);
	if (!p)
		return;
	if (reason)
		json_object_object_add(p, "reason", json_object_new_string(reason));
	emit(d, type, device, NULL, p, NULL);
}

void zd_event_daemon(struct zd_daemon *d, enum zd_event_type type)
{
	struct json_object *p;

	if (!anyone_listens(d))
		return;
	p = event_params(d, type, NULL);
	if (p)
		emit(d, type, NULL, NULL, p, NULL);
}

/* --- Methods ----------------------------------------------------------- */

/* "lease.revoked" names one type, "lease" its family; 0 when neither. */
static uint32_t types_of(const char *name)
{
	uint32_t mask = 0;
	size_t n = strlen(name);

	for (int t = 0; t < ZD_EV_COUNT; t++) {
		if (strcmp(type_names[t], name) == 0 ||
		    (strncmp(type_names[t], name, n) == 0 && type_names[t][n] == '.'))
			mask |= 1u << t;
	}
	return mask;
}

int zd_events_subscribe_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	struct zd_conn *conn = call->conn;
	struct json_object *types = NULL, *devices = NULL, *names;
	struct zd_subscription *s;
	struct zp_err e;
	uint32_t mask = 0;
	size_t n;
	int r;

	if ((r = zp_param_array(p, "types", ZP_OPTIONAL, &types, &e)) == -EINVAL ||
	    (r = zp_param_array(p, "devices", ZP_OPTIONAL, &devices, &e)) == -EINVAL) {
		zd_call_error(call, e.code, "%s", e.message);
		return 0;
	}
	if (types) {
		n = json_object_is_type(types, json_type_array) ? json_object_array_length(types) : 1;
		for (size_t i = 0; i < n; i++) {
			struct json_object *t = json_object_is_type(types, json_type_array)
							? json_object_array_get_idx(types, i)
							: types;
			uint32_t m = types_of(json_object_get_string(t));

			if (!m) {
				zd_call_error(call, ZP_ERR_INVALID_PARAMS,
					      "parameter 'types': unknown event type '%.64s'",
					      json_object_get_string(t));
				return 0;
			}
			mask |= m;
		}
	} else {
		mask = (1u << ZD_EV_COUNT) - 1;
	}
	n = 0;
	if (devices) {
		n = json_object_is_type(devices, json_type_array) ? json_object_array_length(devices) : 1;
		if (n > ZD_EVENT_DEVICES_MAX) {
			zd_call_error(call, ZP_ERR_INVALID_PARAMS,
				      "parameter 'devices': at most %d devices", ZD_EVENT_DEVICES_MAX);
			return 0;
		}
	}
	s = conn->events;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
			return 0;
		}
		zd_list_init(&s->queue);
	}
	/* A new subscribe replaces the filters; what is queued stays. */
	s->types = mask;
	s->nr_devices = (unsigned)n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_is_type(devices, json_type_array)
						? json_object_array_get_idx(devices, i)
						: devices;

		snprintf(s->devices[i], ZD_ID_MAX, "%s", json_object_get_string(v));
	}
	conn->events = s;
	call->result = json_object_new_object();
	/* The stream starts after seq: a client pairs it with a snapshot
	 * (zone.report, lease.list) taken after this reply. */
	json_object_object_add(call->result, "seq", json_object_new_uint64(d->event_seq));
	names = json_object_new_array();
	for (int t = 0; t < ZD_EV_COUNT; t++)
		if (mask & (1u << t))
			json_object_array_add(names, json_object_new_string(type_names[t]));
	json_object_object_add(call->result, "types", names);
	json_object_object_add(call->result, "queue", json_object_new_int(ZD_EVENT_QUEUE_MAX));
	return 0;
}

int zd_events_unsubscribe_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	(void)d;
	(void)p;
	/* Queued events go with it: after this reply none comes. */
	zd_events_conn_free(call->conn);
	call->result = json_object_new_object();
	return 0;
}
