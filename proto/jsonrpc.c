/* JSON-RPC 2.0 message helpers, error codes and names shared by the daemon
 * and the client library. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static const struct {
	int code;
	int err;
	const char *message;
} zp_errors[] = {
	{ ZP_ERR_PARSE, EPROTO, "Parse error" },
	{ ZP_ERR_INVALID_REQUEST, EPROTO, "Invalid Request" },
	{ ZP_ERR_METHOD_NOT_FOUND, EOPNOTSUPP, "Method not found" },
	{ ZP_ERR_INVALID_PARAMS, EINVAL, "Invalid params" },
	{ ZP_ERR_INTERNAL, EREMOTEIO, "Internal error" },
	{ ZP_ERR_IO, EIO, "Device I/O error" },
	{ ZP_ERR_PERM, EACCES, "Permission denied" },
	{ ZP_ERR_NO_DEVICE, ENODEV, "No such device" },
	{ ZP_ERR_NO_ZONE, ERANGE, "No such zone" },
	{ ZP_ERR_ZONE_LEASED, EBUSY, "Zone is leased" },
	{ ZP_ERR_NO_FREE_ZONE, ENOSPC, "No zone available" },
	{ ZP_ERR_LIMIT, EUSERS, "Open/active zone limit reached" },
	{ ZP_ERR_STALE_LEASE, ESTALE, "Unknown or stale lease" },
	{ ZP_ERR_TIMEOUT, ETIMEDOUT, "Timed out" },
	{ ZP_ERR_ZONE_STATE, EPERM, "Operation not valid in the zone's condition or type" },
	{ ZP_ERR_TOO_LARGE, EMSGSIZE, "Message too large" },
};

const char *zp_error_message(int code)
{
	for (size_t i = 0; i < sizeof(zp_errors) / sizeof(zp_errors[0]); i++)
		if (zp_errors[i].code == code)
			return zp_errors[i].message;
	return "Server error";
}

int zp_error_to_errno(int code)
{
	for (size_t i = 0; i < sizeof(zp_errors) / sizeof(zp_errors[0]); i++)
		if (zp_errors[i].code == code)
			return zp_errors[i].err;
	return EREMOTEIO;
}

static const char *const cond_names[ZP_COND_COUNT] = {
	[ZP_COND_NOT_WP] = "not-wp",
	[ZP_COND_EMPTY] = "empty",
	[ZP_COND_IMP_OPEN] = "implicit-open",
	[ZP_COND_EXP_OPEN] = "explicit-open",
	[ZP_COND_CLOSED] = "closed",
	[ZP_COND_FULL] = "full",
	[ZP_COND_READONLY] = "read-only",
	[ZP_COND_OFFLINE] = "offline",
};

static const char *const type_names[ZP_TYPE_COUNT] = {
	[ZP_TYPE_CONV] = "conventional",
	[ZP_TYPE_SWR] = "seq-write-required",
	[ZP_TYPE_SWP] = "seq-write-preferred",
};

const char *zp_cond_name(unsigned cond)
{
	return cond < ZP_COND_COUNT ? cond_names[cond] : "unknown";
}

const char *zp_type_name(unsigned type)
{
	return type < ZP_TYPE_COUNT ? type_names[type] : "unknown";
}

int zp_cond_from_name(const char *name)
{
	for (int i = 0; i < ZP_COND_COUNT; i++)
		if (name && strcmp(name, cond_names[i]) == 0)
			return i;
	return -EINVAL;
}

int zp_type_from_name(const char *name)
{
	for (int i = 0; i < ZP_TYPE_COUNT; i++)
		if (name && strcmp(name, type_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *zp_to_string(struct json_object *obj, size_t *len)
{
	return json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

struct json_object *zp_error_response(struct json_object *id, int code, const char *message,
				      struct json_object *data)
{
	struct json_object *resp = json_object_new_object();
	struct json_object *err = json_object_new_object();

	zp_add(err, "code", json_object_new_int(code));
	zp_add(err, "message",
			       json_object_new_string(message ? message : zp_error_message(code)));
	if (data)
		zp_add(err, "data", data);
	zp_add(resp, "jsonrpc", json_object_new_string("2.0"));
	zp_add(resp, "error", err);
	zp_add(resp, "id", id);
	return resp;
}

struct json_object *zp_result_response(struct json_object *id, struct json_object *result)
{
	struct json_object *resp = json_object_new_object();

	zp_add(resp, "jsonrpc", json_object_new_string("2.0"));
	zp_add(resp, "result", result ? result : json_object_new_object());
	zp_add(resp, "id", id);
	return resp;
}

void zp_err_set(struct zp_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	zp_utf8_clean(err->message);
}

/* Looks name up and checks its JSON type; returns 0 with *val set, -ENOENT
 * when absent and optional, or -EINVAL with err naming the field. A JSON
 * null counts as absent. */
static int param_get(struct json_object *params, const char *name, int flags,
		     enum json_type type, const char *want, struct json_object **val,
		     struct zp_err *err)
{
	*val = NULL;
	if (!params || !json_object_object_get_ex(params, name, val) ||
	    json_object_is_type(*val, json_type_null)) {
		if (flags & ZP_REQUIRED) {
			zp_err_set(err, ZP_ERR_INVALID_PARAMS, "missing parameter '%s'", name);
			return -EINVAL;
		}
		return -ENOENT;
	}
	if (!json_object_is_type(*val, type)) {
		zp_err_set(err, ZP_ERR_INVALID_PARAMS, "parameter '%s' must be %s", name, want);
		return -EINVAL;
	}
	return 0;
}

int zp_param_u64(struct json_object *params, const char *name, int flags, uint64_t *out,
		 struct zp_err *err)
{
	static const char want[] = "a non-negative integer";
	struct json_object *v;
	int r = param_get(params, name, flags, json_type_int, want, &v, err);

	if (r < 0)
		return r;
	/* json-c keeps integers as int64 or uint64; a negative one is refused
	 * rather than wrapped around. */
	if (json_object_get_int64(v) < 0) {
		zp_err_set(err, ZP_ERR_INVALID_PARAMS, "parameter '%s' must be %s", name, want);
		return -EINVAL;
	}
	*out = json_object_get_uint64(v);
	return 0;
}

int zp_param_i64(struct json_object *params, const char *name, int flags, int64_t *out,
		 struct zp_err *err)
{
	struct json_object *v;
	int r = param_get(params, name, flags, json_type_int, "an integer", &v, err);

	if (r == 0)
		*out = json_object_get_int64(v);
	return r;
}

int zp_param_bool(struct json_object *params, const char *name, int flags, bool *out,
		  struct zp_err *err)
{
	struct json_object *v;
	int r = param_get(params, name, flags, json_type_boolean, "a boolean", &v, err);

	if (r == 0)
		*out = json_object_get_boolean(v);
	return r;
}

int zp_param_string(struct json_object *params, const char *name, int flags, const char **out,
		    struct zp_err *err)
{
	struct json_object *v;
	int r = param_get(params, name, flags, json_type_string, "a string", &v, err);

	if (r == 0)
		*out = json_object_get_string(v);
	return r;
}

int zp_param_array(struct json_object *params, const char *name, int flags,
		   struct json_object **out, struct zp_err *err)
{
	static const char want[] = "a string or an array of strings";
	struct json_object *v;
	int r = param_get(params, name, flags, json_type_string, want, &v, err);

	if (r == 0 || r == -ENOENT) {
		if (r == 0)
			*out = v;
		return r;
	}
	if (!v || !json_object_is_type(v, json_type_array))
		return r;
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string)) {
			zp_err_set(err, ZP_ERR_INVALID_PARAMS, "parameter '%s' must be %s", name,
				   want);
			return -EINVAL;
		}
	}
	*out = v;
	return 0;
}
