/* The wire contract shared by zonedd and libzoned-client: protocol version,
 * message limits, error codes and the packet transport. Nothing else knows the wire. */
#ifndef ZONED_PROTO_H
#define ZONED_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

/* Bump when a change is incompatible; see proto/PROTOCOL.md. */
#define ZP_PROTOCOL_VERSION 3

/* One JSON-RPC message per SOCK_SEQPACKET packet, at most this many bytes. */
#define ZP_MSG_MAX 65536
/* Most fds one packet carries (a batch of lease.acquire calls, a lease
 * of several zones on a device that passes one fd per zone). */
#define ZP_MAX_FDS 64
/* Most zones one lease spans (lease.acquire's count). */
#define ZP_LEASE_ZONES_MAX 64

#define ZP_DEFAULT_SOCKET "/run/zoned/zonedd.sock"
#define ZP_SOCKET_ENV "ZONED_SOCKET"

/* JSON-RPC 2.0 standard errors. */
#define ZP_ERR_PARSE            (-32700)
#define ZP_ERR_INVALID_REQUEST  (-32600)
#define ZP_ERR_METHOD_NOT_FOUND (-32601)
#define ZP_ERR_INVALID_PARAMS   (-32602)
#define ZP_ERR_INTERNAL         (-32603)

/* Application errors. */
#define ZP_ERR_IO               (-32000)
#define ZP_ERR_PERM             (-32001)
#define ZP_ERR_NO_DEVICE        (-32002)
#define ZP_ERR_NO_ZONE          (-32003)
#define ZP_ERR_ZONE_LEASED      (-32004)
#define ZP_ERR_NO_FREE_ZONE     (-32005)
#define ZP_ERR_LIMIT            (-32006)
#define ZP_ERR_STALE_LEASE      (-32007)
#define ZP_ERR_TIMEOUT          (-32008)
#define ZP_ERR_ZONE_STATE       (-32009)
#define ZP_ERR_TOO_LARGE        (-32010)

const char *zp_error_message(int code);
/* The errno a client library reports for a JSON-RPC error code. */
int zp_error_to_errno(int code);

/* Zone conditions and types, with the names the protocol uses. */
enum zp_cond {
	ZP_COND_NOT_WP,
	ZP_COND_EMPTY,
	ZP_COND_IMP_OPEN,
	ZP_COND_EXP_OPEN,
	ZP_COND_CLOSED,
	ZP_COND_FULL,
	ZP_COND_READONLY,
	ZP_COND_OFFLINE,
	ZP_COND_COUNT
};

enum zp_type {
	ZP_TYPE_CONV,
	ZP_TYPE_SWR,
	ZP_TYPE_SWP,
	ZP_TYPE_COUNT
};

const char *zp_cond_name(unsigned cond);
const char *zp_type_name(unsigned type);
/* Returns the enum value, or -EINVAL for an unknown name. */
int zp_cond_from_name(const char *name);
int zp_type_from_name(const char *name);

/* Packet transport over SOCK_SEQPACKET.
 *
 * zp_send: sends one packet, with fd_to_pass attached (SCM_RIGHTS) when >= 0.
 * The fd is borrowed, not consumed. Returns 0 or a negative errno (-EAGAIN on
 * a non-blocking socket that is full). */
int zp_send(int sock, const void *buf, size_t len, int fd_to_pass, int flags);
/* As zp_send with any number (<= ZP_MAX_FDS) of fds attached, borrowed. */
int zp_sendv(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags);

/* zp_recv: receives one packet into buf (cap bytes). Returns the packet's
 * length (which may exceed cap: the packet was truncated and must be refused
 * as too large), 0 on orderly shutdown, or a negative errno. Received fds are
 * close-on-exec; the first one is stored in *fd_out (or -1) when fd_out is
 * non-NULL, every other one is closed at once. */
ssize_t zp_recv(int sock, void *buf, size_t cap, int *fd_out, int flags);
/* As zp_recv keeping every fd (up to ZP_MAX_FDS) in fds_out[0..*nfds_out). */
ssize_t zp_recvv(int sock, void *buf, size_t cap, int *fds_out, size_t *nfds_out, int flags);

/* JSON helpers. */

/* Parses a packet (proto/json.c). Returns NULL on invalid JSON, text that
 * is not UTF-8 (RFC 3629), a nesting deeper than 32, a bare null, and on
 * JSON that would not survive a round trip unchanged: NaN or Infinity,
 * integers beyond 64 bits, lone UTF-16 surrogates, U+0000 in a string or
 * key, unescaped control characters, repeated keys (proto/PROTOCOL.md,
 * "Strictness"). */
struct json_object *zp_parse(const char *buf, size_t len);
struct zp_err;
/* As zp_parse; on failure *err (may be NULL) says why, code ZP_ERR_PARSE
 * (or ZP_ERR_INTERNAL when out of memory). */
struct json_object *zp_parse_ex(const char *buf, size_t len, struct zp_err *err);

/* Serialises obj compactly. The string lives as long as obj. */
const char *zp_to_string(struct json_object *obj, size_t *len);
/* The same text as zp_to_string, written into buf (cap bytes, no NUL):
 * its length, or -EMSGSIZE when it does not fit. For the message paths,
 * which have a buffer of their own and no use for json-c's. */
ssize_t zp_write(struct json_object *obj, char *buf, size_t cap);

/* JSON text written straight into a buffer, for the replies that are
 * built often enough that json-c objects would be most of their cost (a
 * lease's). The writer puts the commas; text that does not fit sets
 * `over` and the rest is dropped. Its text is what zp_write would give
 * for the same members in the same order. */
struct zp_jw {
	char *buf;
	size_t cap, len;
	bool over;
	bool after_key;
	unsigned depth;
	uint32_t first;  /* bit n: the container at depth n has nothing yet */
};
void zp_jw_init(struct zp_jw *w, char *buf, size_t cap);
void zp_jw_begin(struct zp_jw *w, char open);  /* '{' or '[' */
void zp_jw_end(struct zp_jw *w, char close);
void zp_jw_key(struct zp_jw *w, const char *key);
void zp_jw_u64(struct zp_jw *w, uint64_t v);
void zp_jw_i64(struct zp_jw *w, int64_t v);
void zp_jw_str(struct zp_jw *w, const char *s);
void zp_jw_bool(struct zp_jw *w, bool v);
void zp_jw_json(struct zp_jw *w, struct json_object *o);  /* NULL: null */
/* A value already written as JSON text. */
void zp_jw_raw(struct zp_jw *w, const char *text, size_t len);
static inline void zp_jw_key_u64(struct zp_jw *w, const char *key, uint64_t v)
{
	zp_jw_key(w, key);
	zp_jw_u64(w, v);
}
static inline void zp_jw_key_i64(struct zp_jw *w, const char *key, int64_t v)
{
	zp_jw_key(w, key);
	zp_jw_i64(w, v);
}
static inline void zp_jw_key_str(struct zp_jw *w, const char *key, const char *v)
{
	zp_jw_key(w, key);
	zp_jw_str(w, v);
}
static inline void zp_jw_key_bool(struct zp_jw *w, const char *key, bool v)
{
	zp_jw_key(w, key);
	zp_jw_bool(w, v);
}

/* The text zp_write gives for zp_result_response(id, result) where result
 * is the object written as `result` (len bytes, "{...}"), with "fd" and
 * "nfds" added to it when nfds > 0: the reply of a call whose result was
 * written as text. Its length, or -EMSGSIZE (-EINVAL when result is not
 * an object's text). */
ssize_t zp_write_result(char *buf, size_t cap, const char *result, size_t len,
			unsigned fd, unsigned nfds, struct json_object *id);
/* {"jsonrpc":"2.0","method":method[,"params":params][,"id":id]}: a request
 * (id < 0: a notification), written without building its object; params
 * is borrowed. */
ssize_t zp_write_request(char *buf, size_t cap, const char *method, struct json_object *params,
			 int64_t id);

/* Drops from s (NUL-terminated) every byte that is no part of a
 * well-formed UTF-8 sequence (RFC 3629), such as what is left of a
 * character a snprintf cut in two; returns the new length. For messages
 * that quote what a peer sent. */
size_t zp_utf8_clean(char *s);

/* Adds val under key, which obj does not hold yet and which outlives obj
 * (a string literal): the key is neither copied nor looked up, as the
 * builders of every reply would otherwise do for each member. */
static inline int zp_add(struct json_object *obj, const char *key, struct json_object *val)
{
	return json_object_object_add_ex(obj, key, val, JSON_C_OBJECT_ADD_KEY_IS_NEW |
						       JSON_C_OBJECT_ADD_CONSTANT_KEY);
}

/* Builds {"jsonrpc":"2.0","error":{code,message[,data]},"id":id}. Takes id
 * and data (either may be NULL; a NULL id becomes JSON null). */
struct json_object *zp_error_response(struct json_object *id, int code,
				      const char *message, struct json_object *data);

/* Builds {"jsonrpc":"2.0","result":result,"id":id}. Takes id and result. */
struct json_object *zp_result_response(struct json_object *id, struct json_object *result);

/* Typed parameter access. Each returns 0, -ENOENT when the field is absent
 * and optional, or -EINVAL with *err set to an -32602 error object naming the
 * field (the caller takes *err). */
enum zp_param_flags {
	ZP_OPTIONAL = 0,
	ZP_REQUIRED = 1,
};
struct zp_err {
	int code;
	char message[256];
};
int zp_param_u64(struct json_object *params, const char *name, int flags,
		 uint64_t *out, struct zp_err *err);
int zp_param_i64(struct json_object *params, const char *name, int flags,
		 int64_t *out, struct zp_err *err);
int zp_param_bool(struct json_object *params, const char *name, int flags,
		  bool *out, struct zp_err *err);
/* The string is borrowed from params. */
int zp_param_string(struct json_object *params, const char *name, int flags,
		    const char **out, struct zp_err *err);
/* A string or an array of strings; borrowed. */
int zp_param_array(struct json_object *params, const char *name, int flags,
		   struct json_object **out, struct zp_err *err);

void zp_err_set(struct zp_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
