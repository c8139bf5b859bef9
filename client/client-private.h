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
	int fd;                  /* -1 once zc_close() ran */
	pthread_mutex_t lock;    /* serialises one request/response exchange */
	int64_t next_id;         /* under lock */
	char *buf;               /* receive buffer, ZP_MSG_MAX bytes, under lock */
	uint64_t serial;         /* tells clients apart in the per-thread error slots */
	atomic_uint refs;        /* the caller's, plus one per lease and iterator */
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

/* Records err (a negative errno) as the last error of c in this thread, with
 * msg, or zc_strerror(err) when msg is NULL. Returns err. */
int zc_fail(zc_client *c, int err, const char *msg);

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
