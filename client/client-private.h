/* Internals shared by client.c (connection, calls, devices, zones) and
 * lease.c (leases and their I/O). Nothing here is installed. */
#ifndef ZONED_CLIENT_PRIVATE_H
#define ZONED_CLIENT_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "include/zoned/client.h"

struct zc_client {
	int fd;                  /* -1 once zc_close() ran or the connection was lost */
	pthread_mutex_t lock;    /* serialises one request/response exchange */
	int64_t next_id;         /* under lock */
	char *buf;               /* receive buffer, ZP_MSG_MAX bytes, under lock */
	uint64_t serial;         /* tells clients apart in the per-thread error slots */
	atomic_uint refs;        /* the caller's, plus one per lease and iterator */
	/* The live leases of this connection, so that losing the connection
	 * can mark and fence every one of them at once (and, later, an event
	 * can find a lease by id). A lock of its own: a blocking call holding
	 * `lock` must not delay a lease being freed or fenced. */
	pthread_mutex_t leases_lock;
	struct zc_lease *leases; /* under leases_lock */
};

/* Takes and drops references: leases and iterators keep the client alive so
 * that releasing a lease after zc_close() fails cleanly instead of touching
 * freed memory. */
void zc_client_ref(zc_client *c);
void zc_client_unref(zc_client *c);

/* One call: sends method with params (taken, may be NULL), waits for the
 * reply with the same id, skipping notifications and stray replies. On
 * success *result holds the result (the caller puts it) and, when fd_out is
 * non-NULL, *fd_out the attached fd or -1; an fd nobody asked for is closed.
 * On failure returns a negative errno and records the message for
 * zc_last_error(). */
int zc_call(zc_client *c, const char *method, struct json_object *params,
	    struct json_object **result, int *fd_out);

/* The connection is gone (zc_close, or the daemon hung up): every lease of
 * c fails its next call with err (-ENOTCONN) and its fd is replaced by one
 * that refuses I/O, so that no write reaches a zone the daemon took back.
 * Called without c->lock held. */
void zc_leases_lost(zc_client *c, int err);

/* Records err (a negative errno) as the last error of c in this thread, with
 * msg, or zc_strerror(err) when msg is NULL. Returns err. */
int zc_fail(zc_client *c, int err, const char *msg);
/* zc_fail with a formatted message. */
int zc_failf(zc_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Strict readers of reply fields: a missing field or a wrong type is -EPROTO.
 * Strings are copied and truncated to cap. */
int zc_get_u64(struct json_object *obj, const char *key, uint64_t *out);
int zc_get_u32(struct json_object *obj, const char *key, uint32_t *out);
int zc_get_i32(struct json_object *obj, const char *key, int32_t *out);
int zc_get_bool(struct json_object *obj, const char *key, bool *out);
int zc_get_str(struct json_object *obj, const char *key, char *out, size_t cap);
/* Optional variants: leave *out untouched when the field is absent or null. */
int zc_opt_u64(struct json_object *obj, const char *key, uint64_t *out);
int zc_opt_u32(struct json_object *obj, const char *key, uint32_t *out);
int zc_opt_str(struct json_object *obj, const char *key, char *out, size_t cap);
int zc_get_object(struct json_object *obj, const char *key, struct json_object **out);
int zc_get_array(struct json_object *obj, const char *key, struct json_object **out);

/* Parses one zone object of the protocol. */
int zc_parse_zone(struct json_object *obj, struct zc_zone *z);

#endif
