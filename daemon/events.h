/* The daemon's event stream (daemon/events.c): what happened to leases,
 * zones, devices and the daemon, told to the connections that subscribed,
 * each through a bounded queue of its own, apart from its replies. */
#ifndef ZONED_DAEMON_EVENTS_H
#define ZONED_DAEMON_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

struct zd_daemon;
struct zd_device;
struct zd_conn;
struct zd_lease;
struct zd_call;

enum zd_event_type {
	ZD_EV_LEASE_ACQUIRED,
	ZD_EV_LEASE_RELEASED,
	ZD_EV_LEASE_REVOKED,
	ZD_EV_LEASE_ORPHANED,   /* the lifecycle issue: a restart left it without its owner */
	ZD_EV_LEASE_RECLAIMED,  /* ... and its owner took it back */
	ZD_EV_ZONE_CHANGED,
	ZD_EV_DEVICE_ADDED,
	ZD_EV_DEVICE_FAILED,
	ZD_EV_DEVICE_REMOVED,
	ZD_EV_DAEMON_RELOADING,
	ZD_EV_COUNT
};

/* Events one connection may have queued in the daemon before it drops
 * them (and later says how many in an "overflow" event). */
#define ZD_EVENT_QUEUE_MAX 256

/* A lease event. reason (may be NULL) says why a lease ended ("release",
 * "disconnect", "force"). A revocation is also told to the lease's holder,
 * subscribed or not, through its reply queue: call it while l->conn still
 * names the holder. */
void zd_event_lease(struct zd_daemon *d, enum zd_event_type type, const struct zd_lease *l,
		    const char *reason);
/* A zone's condition changed in the daemon's view. */
void zd_event_zone(struct zd_device *dev, uint32_t zone, unsigned old_cond);
void zd_event_device(struct zd_daemon *d, enum zd_event_type type, const char *device,
		     const char *reason);
void zd_event_daemon(struct zd_daemon *d, enum zd_event_type type);

/* server.c's side: sends what the socket takes (0, or a negative errno
 * when the peer is gone), whether any waits, and the end of a connection. */
int zd_events_flush(struct zd_conn *conn);
bool zd_events_pending(const struct zd_conn *conn);
void zd_events_conn_free(struct zd_conn *conn);

int zd_events_subscribe_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p);
int zd_events_unsubscribe_method(struct zd_daemon *d, struct zd_call *call, struct json_object *p);

#endif
