/* libzoned-client events: the daemon's "event" notifications, what the
 * library itself does with them (a revoked lease is marked at once), the
 * bounded queue they wait in for the application, subscriptions and the
 * accessors of a zc_event. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client-private.h"
#include "proto/proto.h"

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

static uint64_t member_u64(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key);

	if (!v || !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return 0;
	return json_object_get_uint64(v);
}

static struct zc_event *event_new(struct json_object *params)
{
	struct zc_event *ev = calloc(1, sizeof(*ev));
	struct json_object *v;

	if (!ev) {
		json_object_put(params);
		return NULL;
	}
	ev->params = params;
	v = member(params, "type");
	ev->type = v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "unknown";
	v = member(params, "device");
	ev->device = v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
	v = member(params, "zone");
	ev->zone = v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	ev->seq = member_u64(params, "seq");
	ev->time_ms = member_u64(params, "time");
	ev->lease = member_u64(params, "lease");
	ev->lost = member_u64(params, "lost");
	return ev;
}

static void queue_add(zc_client *c, struct zc_event *ev)
{
	ev->next = NULL;
	if (c->ev_tail)
		c->ev_tail->next = ev;
	else
		c->ev_head = ev;
	c->ev_tail = ev;
	c->ev_len++;
}

struct zc_event *zc_event_pop_locked(zc_client *c)
{
	struct zc_event *ev = c->ev_head;

	if (!ev)
		return NULL;
	c->ev_head = ev->next;
	if (!c->ev_head)
		c->ev_tail = NULL;
	c->ev_len--;
	ev->next = NULL;
	/* Room again: the loss is told in its place in the stream. */
	if (c->ev_lost && c->ev_len < ZC_EVENT_QUEUE_MAX) {
		struct json_object *o = json_object_new_object();
		struct zc_event *ov;

		if (o) {
			json_object_object_add(o, "seq", json_object_new_uint64(c->ev_lost_seq));
			json_object_object_add(o, "type", json_object_new_string("overflow"));
			json_object_object_add(o, "lost", json_object_new_uint64(c->ev_lost));
			json_object_object_add(o, "by", json_object_new_string("library"));
			ov = event_new(o);
			if (ov) {
				queue_add(c, ov);
				c->ev_lost = 0;
			}
		}
	}
	return ev;
}

void zc_event_arrived_locked(zc_client *c, struct json_object *params)
{
	struct json_object *t = member(params, "type");
	struct zc_event *ev;

	/* The library's own business first, subscribed or not: a revoked
	 * lease must fail its next data call. */
	if (t && json_object_is_type(t, json_type_string) &&
	    strcmp(json_object_get_string(t), "lease.revoked") == 0) {
		uint64_t id = member_u64(params, "lease");

		if (id)
			zc_lease_revoked_locked(c, id);
	}
	if (!c->events_on && !c->event_cb) {
		json_object_put(params);
		return;
	}
	if (c->ev_len >= ZC_EVENT_QUEUE_MAX) {
		c->ev_lost++;
		c->ev_lost_seq = member_u64(params, "seq");
		json_object_put(params);
		return;
	}
	ev = event_new(params);
	if (!ev)
		return;
	queue_add(c, ev);
	zc_client_kick_locked(c);
}

void zc_events_free_locked(zc_client *c)
{
	struct zc_event *ev;

	while ((ev = c->ev_head)) {
		c->ev_head = ev->next;
		zc_event_free(ev);
	}
	c->ev_tail = NULL;
	c->ev_len = 0;
	c->ev_lost = 0;
}

ZC_EXPORT void zc_event_free(zc_event *ev)
{
	if (!ev)
		return;
	json_object_put(ev->params);
	free(ev);
}

ZC_EXPORT const char *zc_event_type(const zc_event *ev) { return ev ? ev->type : NULL; }
ZC_EXPORT uint64_t zc_event_seq(const zc_event *ev) { return ev ? ev->seq : 0; }
ZC_EXPORT uint64_t zc_event_time_ms(const zc_event *ev) { return ev ? ev->time_ms : 0; }
ZC_EXPORT const char *zc_event_device(const zc_event *ev) { return ev ? ev->device : NULL; }
ZC_EXPORT int64_t zc_event_zone(const zc_event *ev) { return ev ? ev->zone : -1; }
ZC_EXPORT uint64_t zc_event_lease(const zc_event *ev) { return ev ? ev->lease : 0; }
ZC_EXPORT uint64_t zc_event_lost(const zc_event *ev) { return ev ? ev->lost : 0; }

ZC_EXPORT const char *zc_event_json(const zc_event *ev)
{
	return ev ? json_object_to_json_string_ext(ev->params, JSON_C_TO_STRING_PLAIN) : NULL;
}

static struct json_object *string_array(const char *const *list)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; a && list[i]; i++)
		json_object_array_add(a, json_object_new_string(list[i]));
	return a;
}

ZC_EXPORT int zc_events_subscribe(zc_client *c, const char *const *types, const char *const *devices)
{
	struct json_object *p, *res;
	bool was_on;
	int r;

	if (!c)
		return -EINVAL;
	p = json_object_new_object();
	if (!p)
		return zc_fail(c, -ENOMEM, NULL);
	if (types)
		json_object_object_add(p, "types", string_array(types));
	if (devices)
		json_object_object_add(p, "devices", string_array(devices));
	/* On before the call: events may come before its reply. */
	pthread_mutex_lock(&c->lock);
	was_on = c->events_on;
	c->events_on = true;
	pthread_mutex_unlock(&c->lock);
	r = zc_call(c, "events.subscribe", json_object_get(p), &res, NULL);
	if (r < 0) {
		/* Refused: the daemon's previous subscription, if any, stands. */
		pthread_mutex_lock(&c->lock);
		c->events_on = was_on;
		pthread_mutex_unlock(&c->lock);
		json_object_put(p);
		return r;
	}
	json_object_put(res);
	/* Reconnect mode renews it on the next connection. */
	pthread_mutex_lock(&c->lock);
	json_object_put(c->ev_sub);
	c->ev_sub = p;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

ZC_EXPORT int zc_events_unsubscribe(zc_client *c)
{
	struct json_object *res;
	int r;

	if (!c)
		return -EINVAL;
	r = zc_call(c, "events.unsubscribe", NULL, &res, NULL);
	if (r < 0)
		return r;
	json_object_put(res);
	pthread_mutex_lock(&c->lock);
	c->events_on = false;
	json_object_put(c->ev_sub);
	c->ev_sub = NULL;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

ZC_EXPORT int zc_client_set_event_cb(zc_client *c, zc_event_cb cb, void *userdata)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	c->event_cb = cb;
	c->event_ud = userdata;
	if (cb && c->ev_head)
		zc_client_kick_locked(c);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static bool have_event(zc_client *c, void *arg)
{
	(void)arg;
	return c->ev_head != NULL;
}

ZC_EXPORT int zc_event_next(zc_client *c, uint32_t timeout_ms, zc_event **out)
{
	uint64_t deadline;
	int r;

	if (!c || !out)
		return c ? zc_fail(c, -EINVAL, "event: out is NULL") : -EINVAL;
	*out = NULL;
	deadline = timeout_ms == ZC_TIMEOUT_NONE ? 0 : zc_now_ms() + timeout_ms;
	zc_client_ref(c);
	zc_reconnect_step(c);
	pthread_mutex_lock(&c->lock);
	/* A timeout of 0 reads what came and never sleeps. */
	r = zc_wait_locked(c, have_event, NULL, timeout_ms == 0 ? zc_now_ms() : deadline);
	if (c->ev_head) {
		*out = zc_event_pop_locked(c);
		r = 1;
	} else if (r == -ETIMEDOUT) {
		r = 0;
	} else if (r == -ENOTCONN && c->reconnecting) {
		r = -EAGAIN; /* reconnect mode: events come again once it is back */
	}
	pthread_mutex_unlock(&c->lock);
	if (r == -ENOTCONN)
		zc_fail(c, r, "not connected: the connection was closed");
	else if (r == -EAGAIN)
		zc_fail(c, r, "reconnecting to the daemon");
	zc_client_unref(c);
	return r;
}
