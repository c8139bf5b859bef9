/* libzoned-client: the connection to zonedd, request/response exchange,
 * error reporting, devices, zone reports and zone operations. Leases live in
 * lease.c. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client-private.h"
#include "proto/proto.h"

/* The public enums are the wire enums under another name. */
_Static_assert((int)ZC_COND_NOT_WP == (int)ZP_COND_NOT_WP && (int)ZC_COND_EMPTY == (int)ZP_COND_EMPTY &&
		       (int)ZC_COND_IMP_OPEN == (int)ZP_COND_IMP_OPEN &&
		       (int)ZC_COND_EXP_OPEN == (int)ZP_COND_EXP_OPEN &&
		       (int)ZC_COND_CLOSED == (int)ZP_COND_CLOSED && (int)ZC_COND_FULL == (int)ZP_COND_FULL &&
		       (int)ZC_COND_READONLY == (int)ZP_COND_READONLY &&
		       (int)ZC_COND_OFFLINE == (int)ZP_COND_OFFLINE &&
		       (int)ZC_COND_COUNT == (int)ZP_COND_COUNT,
	       "zc_cond and zp_cond differ");
_Static_assert((int)ZC_TYPE_CONV == (int)ZP_TYPE_CONV && (int)ZC_TYPE_SWR == (int)ZP_TYPE_SWR &&
		       (int)ZC_TYPE_SWP == (int)ZP_TYPE_SWP && (int)ZC_TYPE_COUNT == (int)ZP_TYPE_COUNT,
	       "zc_type and zp_type differ");

/* --- Errors ------------------------------------------------------------ */

ZC_EXPORT const char *zc_strerror(int err)
{
	const char *s;

	if (err < 0)
		err = -err;
	if (err == 0)
		return "Success";
	/* strerrordesc_np returns a constant string (no locale, no buffer),
	 * so it is thread-safe where strerror is not. */
	s = strerrordesc_np(err);
	return s ? s : "Unknown error";
}

/* zc_last_error() is per thread and per client, like errno: a handful of
 * thread-local slots keyed by the client's serial (not its address, which a
 * later client may reuse). A thread juggling more clients than slots loses
 * the oldest message, which then reads as "". */
#define ZC_ERR_SLOTS 4
struct zc_err_slot {
	uint64_t serial;
	char msg[256];
};
static _Thread_local struct zc_err_slot err_slots[ZC_ERR_SLOTS];
static _Thread_local unsigned err_next;

static struct zc_err_slot *err_slot(const zc_client *c, bool create)
{
	struct zc_err_slot *s;

	for (unsigned i = 0; i < ZC_ERR_SLOTS; i++)
		if (err_slots[i].serial == c->serial)
			return &err_slots[i];
	if (!create)
		return NULL;
	s = &err_slots[err_next++ % ZC_ERR_SLOTS];
	s->serial = c->serial;
	return s;
}

int zc_fail(zc_client *c, int err, const char *msg)
{
	struct zc_err_slot *s;

	if (!c)
		return err;
	s = err_slot(c, true);
	snprintf(s->msg, sizeof(s->msg), "%s", msg ? msg : zc_strerror(err));
	return err;
}

int zc_failf(zc_client *c, int err, const char *fmt, ...)
{
	struct zc_err_slot *s;
	va_list ap;

	if (!c)
		return err;
	s = err_slot(c, true);
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
	return err;
}

ZC_EXPORT const char *zc_last_error(zc_client *c)
{
	struct zc_err_slot *s;

	if (!c)
		return zc_connect_error();
	s = err_slot(c, false);
	return s ? s->msg : "";
}

/* --- Names ------------------------------------------------------------- */

ZC_EXPORT const char *zc_cond_name(enum zc_cond cond)
{
	return zp_cond_name((unsigned)cond);
}

ZC_EXPORT const char *zc_type_name(enum zc_type type)
{
	return zp_type_name((unsigned)type);
}

ZC_EXPORT int zc_cond_from_name(const char *name)
{
	return zp_cond_from_name(name);
}

ZC_EXPORT int zc_type_from_name(const char *name)
{
	return zp_type_from_name(name);
}

/* --- Reply field readers ------------------------------------------------ */

static struct json_object *field(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	if (!obj || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

int zc_get_u64(struct json_object *obj, const char *key, uint64_t *out)
{
	struct json_object *v = field(obj, key);

	if (!v || !json_object_is_type(v, json_type_int))
		return -EPROTO;
	/* json-c keeps large values as uint64; a negative one is refused. */
	if (json_object_get_int64(v) < 0)
		return -EPROTO;
	*out = json_object_get_uint64(v);
	return 0;
}

int zc_get_u32(struct json_object *obj, const char *key, uint32_t *out)
{
	uint64_t v;
	int r = zc_get_u64(obj, key, &v);

	if (r < 0)
		return r;
	if (v > UINT32_MAX)
		return -EPROTO;
	*out = (uint32_t)v;
	return 0;
}

int zc_get_i32(struct json_object *obj, const char *key, int32_t *out)
{
	struct json_object *v = field(obj, key);
	int64_t x;

	if (!v || !json_object_is_type(v, json_type_int))
		return -EPROTO;
	x = json_object_get_int64(v);
	if (x < INT32_MIN || x > INT32_MAX)
		return -EPROTO;
	*out = (int32_t)x;
	return 0;
}

int zc_get_bool(struct json_object *obj, const char *key, bool *out)
{
	struct json_object *v = field(obj, key);

	if (!v || !json_object_is_type(v, json_type_boolean))
		return -EPROTO;
	*out = json_object_get_boolean(v);
	return 0;
}

int zc_get_str(struct json_object *obj, const char *key, char *out, size_t cap)
{
	struct json_object *v = field(obj, key);

	if (!v || !json_object_is_type(v, json_type_string))
		return -EPROTO;
	snprintf(out, cap, "%s", json_object_get_string(v));
	return 0;
}

int zc_opt_u64(struct json_object *obj, const char *key, uint64_t *out)
{
	return field(obj, key) ? zc_get_u64(obj, key, out) : 0;
}

int zc_opt_u32(struct json_object *obj, const char *key, uint32_t *out)
{
	return field(obj, key) ? zc_get_u32(obj, key, out) : 0;
}

int zc_opt_str(struct json_object *obj, const char *key, char *out, size_t cap)
{
	return field(obj, key) ? zc_get_str(obj, key, out, cap) : 0;
}

int zc_get_object(struct json_object *obj, const char *key, struct json_object **out)
{
	struct json_object *v = field(obj, key);

	if (!v || !json_object_is_type(v, json_type_object))
		return -EPROTO;
	*out = v;
	return 0;
}

int zc_get_array(struct json_object *obj, const char *key, struct json_object **out)
{
	struct json_object *v = field(obj, key);

	if (!v || !json_object_is_type(v, json_type_array))
		return -EPROTO;
	*out = v;
	return 0;
}

int zc_parse_zone(struct json_object *obj, struct zc_zone *z)
{
	char name[32];
	int r, t, cd;

	memset(z, 0, sizeof(*z));
	if ((r = zc_get_u32(obj, "index", &z->index)) < 0 ||
	    (r = zc_get_u64(obj, "start", &z->start)) < 0 ||
	    (r = zc_get_u64(obj, "len", &z->len)) < 0 ||
	    (r = zc_get_u64(obj, "capacity", &z->capacity)) < 0 ||
	    (r = zc_get_u64(obj, "wp", &z->wp)) < 0)
		return r;
	if ((r = zc_get_str(obj, "type", name, sizeof(name))) < 0)
		return r;
	t = zp_type_from_name(name);
	if (t < 0)
		return -EPROTO;
	if ((r = zc_get_str(obj, "cond", name, sizeof(name))) < 0)
		return r;
	cd = zp_cond_from_name(name);
	if (cd < 0)
		return -EPROTO;
	z->type = (enum zc_type)t;
	z->cond = (enum zc_cond)cd;
	return 0;
}

/* Builds a params object with the device field, or NULL on ENOMEM. */
static struct json_object *params_device(const char *device)
{
	struct json_object *p = json_object_new_object();

	if (p && device)
		json_object_object_add(p, "device", json_object_new_string(device));
	return p;
}

/* --- Hello, devices ---------------------------------------------------- */

static int parse_hello(struct json_object *res, struct zc_hello *out)
{
	uint64_t proto;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = zc_get_u64(res, "protocol", &proto)) < 0 ||
	    (r = zc_get_str(res, "version", out->version, sizeof(out->version))) < 0 ||
	    (r = zc_get_i32(res, "pid", &out->pid)) < 0 || (r = zc_get_u32(res, "uid", &out->uid)) < 0 ||
	    (r = zc_get_bool(res, "admin", &out->admin)) < 0)
		return r;
	/* "client" came with the access groups; a daemon without it lets
	 * everyone lease. */
	out->client = true;
	if (json_object_object_get_ex(res, "client", NULL) &&
	    (r = zc_get_bool(res, "client", &out->client)) < 0)
		return r;
	out->protocol = proto > UINT32_MAX ? UINT32_MAX : (uint32_t)proto;
	return 0;
}

ZC_EXPORT int zc_hello(zc_client *c, struct zc_hello *out)
{
	struct json_object *res;
	int r;

	if (!c || !out)
		return c ? zc_fail(c, -EINVAL, "hello: out is NULL") : -EINVAL;
	r = zc_call(c, "daemon.hello", NULL, &res, NULL);
	if (r < 0)
		return r;
	r = parse_hello(res, out);
	json_object_put(res);
	return r < 0 ? zc_fail(c, r, "malformed daemon.hello reply") : 0;
}

static void hello_done(zc_client *c, struct zc_pending *p)
{
	zc_hello_cb cb = (zc_hello_cb)p->cb;
	struct zc_hello h;
	int r = p->err;

	if (r == 0 && (r = parse_hello(p->result, &h)) < 0)
		zc_fail(c, r, "malformed daemon.hello reply");
	cb(c, r, r == 0 ? &h : NULL, p->ud);
}

ZC_EXPORT int64_t zc_hello_async(zc_client *c, const struct zc_call_opts *copts, zc_hello_cb cb,
				 void *userdata)
{
	if (!c || !cb)
		return c ? zc_fail(c, -EINVAL, "hello: no callback") : -EINVAL;
	return zc_call_start(c, "daemon.hello", NULL, copts, 0, hello_done, (void (*)(void))cb,
			     userdata, NULL);
}

static void json_done(zc_client *c, struct zc_pending *p)
{
	zc_json_cb cb = (zc_json_cb)p->cb;
	int fd = p->nfds ? p->fds[0] : -1;

	(void)c;
	/* The callback takes one descriptor; any other is closed. */
	for (unsigned i = 1; i < p->nfds; i++)
		close(p->fds[i]);
	p->nfds = 0;
	cb(c, p->err, p->err == 0 ? json_object_to_json_string_ext(p->result, JSON_C_TO_STRING_PLAIN)
				  : NULL, fd, p->ud);
}

ZC_EXPORT int64_t zc_call_async(zc_client *c, const char *method, const char *params_json,
				const struct zc_call_opts *copts, zc_json_cb cb, void *userdata)
{
	struct json_object *params = NULL;

	if (!c || !method || !cb)
		return c ? zc_fail(c, -EINVAL, "call: no method or no callback") : -EINVAL;
	if (params_json) {
		params = zp_parse(params_json, strlen(params_json));
		if (!params || !json_object_is_type(params, json_type_object)) {
			json_object_put(params);
			return zc_fail(c, -EINVAL, "call: params_json is not a JSON object");
		}
	}
	/* What the reply may hand out is the callback's (it gets the fd);
	 * a lease.acquire through here is the caller's to release. */
	return zc_call_start(c, method, params, copts, ZC_P_GRANTS, json_done, (void (*)(void))cb,
			     userdata, NULL);
}

static int parse_device(struct json_object *o, struct zc_device *d)
{
	int r;

	if ((r = zc_get_str(o, "id", d->id, sizeof(d->id))) < 0 ||
	    (r = zc_get_str(o, "path", d->path, sizeof(d->path))) < 0 ||
	    (r = zc_get_str(o, "backend", d->backend, sizeof(d->backend))) < 0 ||
	    (r = zc_get_str(o, "model", d->model, sizeof(d->model))) < 0 ||
	    (r = zc_get_u32(o, "nr_zones", &d->nr_zones)) < 0 ||
	    (r = zc_get_u64(o, "zone_size", &d->zone_size)) < 0 ||
	    (r = zc_get_u64(o, "capacity", &d->capacity)) < 0 ||
	    (r = zc_get_u32(o, "free_zones", &d->free_zones)) < 0 ||
	    (r = zc_get_u32(o, "leased_zones", &d->leased_zones)) < 0)
		return r;
	return 0;
}

ZC_EXPORT int zc_device_list(zc_client *c, struct zc_device *devs, size_t max)
{
	struct json_object *res, *arr;
	size_t n;
	int r;

	if (!c || (!devs && max))
		return c ? zc_fail(c, -EINVAL, "device list: devs is NULL but max is not 0") : -EINVAL;
	r = zc_call(c, "device.list", NULL, &res, NULL);
	if (r < 0)
		return r;
	r = zc_get_array(res, "devices", &arr);
	if (r < 0)
		goto out;
	n = json_object_array_length(arr);
	if (n > INT32_MAX) {
		r = -EPROTO;
		goto out;
	}
	for (size_t i = 0; i < n && i < max; i++) {
		memset(&devs[i], 0, sizeof(devs[i]));
		r = parse_device(json_object_array_get_idx(arr, i), &devs[i]);
		if (r < 0)
			goto out;
	}
	r = (int)n;
out:
	json_object_put(res);
	return r < 0 ? zc_fail(c, r, "malformed device.list reply") : r;
}

ZC_EXPORT int zc_device_info(zc_client *c, const char *device, struct zc_device *out)
{
	struct json_object *res, *conds;
	int r;

	if (!c || !device || !out)
		return c ? zc_fail(c, -EINVAL, "device or out is NULL") : -EINVAL;
	r = zc_call(c, "device.info", params_device(device), &res, NULL);
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	if ((r = parse_device(res, out)) < 0 ||
	    (r = zc_get_str(res, "vendor", out->vendor, sizeof(out->vendor))) < 0 ||
	    (r = zc_get_str(res, "product", out->product, sizeof(out->product))) < 0 ||
	    (r = zc_get_str(res, "scheduler", out->scheduler, sizeof(out->scheduler))) < 0 ||
	    (r = zc_get_u64(res, "zone_capacity", &out->zone_capacity)) < 0 ||
	    (r = zc_get_u32(res, "logical_block_size", &out->logical_block_size)) < 0 ||
	    (r = zc_get_u32(res, "physical_block_size", &out->physical_block_size)) < 0 ||
	    (r = zc_get_u32(res, "max_open", &out->max_open)) < 0 ||
	    (r = zc_get_u32(res, "max_active", &out->max_active)) < 0 ||
	    (r = zc_get_u32(res, "nr_conventional", &out->nr_conventional)) < 0 ||
	    (r = zc_get_object(res, "zones_by_cond", &conds)) < 0)
		goto out;
	for (int i = 0; i < ZC_COND_COUNT; i++)
		if ((r = zc_opt_u32(conds, zp_cond_name((unsigned)i), &out->cond_count[i])) < 0)
			goto out;
out:
	json_object_put(res);
	return r < 0 ? zc_fail(c, r, "malformed device.info reply") : 0;
}

ZC_EXPORT int zc_device_open(zc_client *c, const char *device)
{
	struct json_object *res;
	int r, fd;

	if (!c || !device)
		return c ? zc_fail(c, -EINVAL, "device is NULL") : -EINVAL;
	r = zc_call(c, "device.open", params_device(device), &res, &fd);
	if (r < 0)
		return r;
	json_object_put(res);
	if (fd < 0)
		return zc_fail(c, -EPROTO, "device.open reply carries no fd");
	return fd;
}

ZC_EXPORT int zc_zone_open(zc_client *c, const char *device, uint32_t zone, uint64_t *fd_offset)
{
	struct json_object *res, *p;
	uint64_t off = 0;
	int r, fd;

	if (!c || !device)
		return c ? zc_fail(c, -EINVAL, "device is NULL") : -EINVAL;
	p = params_device(device);
	if (!p)
		return zc_fail(c, -ENOMEM, NULL);
	json_object_object_add(p, "zone", json_object_new_int64(zone));
	r = zc_call(c, "device.open", p, &res, &fd);
	if (r < 0)
		return r;
	r = zc_get_u64(res, "fd_offset", &off);
	json_object_put(res);
	if (fd < 0 || r < 0) {
		if (fd >= 0)
			close(fd);
		return zc_fail(c, -EPROTO, "device.open reply carries no fd or no fd_offset");
	}
	if (fd_offset)
		*fd_offset = off;
	return fd;
}

/* --- Zone report iterator ----------------------------------------------- */

/* A run of a "runs" page (PROTOCOL.md, zone.report): n zones alike but
 * for their start, or n zones the filters left out. */
struct zc_run {
	uint32_t n;
	bool match;
	uint8_t type, cond;
	uint64_t wp;                /* from the zone start; UINT64_MAX: none */
	uint64_t cap, len;
};

struct zc_zone_iter {
	zc_client *c;
	struct json_object *device; /* a string, reused in every request */
	uint32_t from;
	uint64_t remaining;         /* zones left to scan; UINT64_MAX = to the end */
	uint32_t cond_mask, type_mask;
	struct zc_zone *page;
	size_t n, pos;
	bool last;                  /* the daemon said next: null */
	/* Pages of runs, when the daemon has them: expanded one zone at a
	 * time, so a page of a million alike zones costs no more memory than
	 * one of a single zone. */
	bool runs;
	struct zc_run *run;
	size_t nruns, run_pos;
	uint32_t run_off;           /* zones of run[run_pos] given out */
	uint64_t idx;               /* the index of run[run_pos]'s first zone + run_off */
	uint64_t page_end;          /* the index past the page's last run */
	uint64_t zone_size;
};

ZC_EXPORT int zc_zone_iter_new(zc_client *c, const char *device, const struct zc_report_opts *opts,
			       zc_zone_iter **out)
{
	zc_zone_iter *it;

	if (!c || !device || !out)
		return c ? zc_fail(c, -EINVAL, "device or out is NULL") : -EINVAL;
	*out = NULL;
	if (opts && ((opts->cond_mask >> ZC_COND_COUNT) || (opts->type_mask >> ZC_TYPE_COUNT)))
		return zc_failf(c, -EINVAL, "report: cond_mask 0x%x or type_mask 0x%x names no condition "
				"or type", opts->cond_mask, opts->type_mask);
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->device = json_object_new_string(device);
	if (!it->device) {
		free(it);
		return -ENOMEM;
	}
	it->from = opts ? opts->from : 0;
	it->remaining = opts && opts->count ? opts->count : UINT64_MAX;
	it->cond_mask = opts ? opts->cond_mask : 0;
	it->type_mask = opts ? opts->type_mask : 0;
	it->runs = zc_has_feature(c, ZC_FEATURE_REPORT_RUNS);
	zc_client_ref(c);
	it->c = c;
	*out = it;
	return 0;
}

ZC_EXPORT void zc_zone_iter_free(zc_zone_iter *it)
{
	if (!it)
		return;
	json_object_put(it->device);
	free(it->page);
	free(it->run);
	zc_client_unref(it->c);
	free(it);
}

static struct json_object *names_array(uint32_t mask, unsigned count, const char *(*name)(unsigned))
{
	struct json_object *a = json_object_new_array();

	for (unsigned i = 0; a && i < count; i++)
		if (mask & (1u << i))
			json_object_array_add(a, json_object_new_string(name(i)));
	return a;
}

/* A decimal number of runs text: digits only, no sign, in 64 bits. */
static int run_number(const char **pp, uint64_t *v)
{
	const char *p = *pp;

	if (*p < '0' || *p > '9')
		return -EPROTO;
	for (*v = 0; *p >= '0' && *p <= '9'; p++) {
		if (*v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EPROTO;
		*v = *v * 10 + (uint64_t)(*p - '0');
	}
	*pp = p;
	return 0;
}

/* Parses a page of format "runs" into it->run; it->idx becomes the index
 * just past the page. Anything out of shape is -EPROTO. */
static int parse_runs_page(zc_zone_iter *it, struct json_object *res)
{
	struct json_object *v;
	uint64_t from, cap_dflt, cnt = 0;
	const char *p;
	size_t n = 1;
	int r;

	if ((r = zc_get_u64(res, "from", &from)) < 0 ||
	    (r = zc_get_u64(res, "zone_size", &it->zone_size)) < 0 ||
	    (r = zc_get_u64(res, "capacity", &cap_dflt)) < 0)
		return r;
	if (from != it->from || !json_object_object_get_ex(res, "runs", &v) ||
	    !json_object_is_type(v, json_type_string))
		return -EPROTO;
	p = json_object_get_string(v);
	for (const char *q = p; *q; q++)
		n += *q == ' ';
	free(it->run);
	it->nruns = it->run_pos = 0;
	it->run_off = 0;
	it->run = calloc(n, sizeof(*it->run));
	if (!it->run)
		return -ENOMEM;
	while (*p) {
		struct zc_run *run = &it->run[it->nruns];
		uint64_t f[6];
		int nf = 0;

		for (;;) {
			if (nf == 6)
				return -EPROTO;
			if (nf == 3 && *p == 'x') {
				f[nf++] = UINT64_MAX;
				p++;
			} else if (run_number(&p, &f[nf++]) < 0) {
				return -EPROTO;
			}
			if (*p != ',')
				break;
			p++;
		}
		if (*p == ' ' && p[1])
			p++;
		else if (*p)
			return -EPROTO;
		if ((nf != 1 && nf < 4) || f[0] == 0 || f[0] > UINT32_MAX)
			return -EPROTO;
		run->n = (uint32_t)f[0];
		cnt += f[0];
		run->match = nf > 1;
		if (run->match) {
			if (f[1] >= ZP_TYPE_COUNT || f[2] >= ZP_COND_COUNT)
				return -EPROTO;
			run->type = (uint8_t)f[1];
			run->cond = (uint8_t)f[2];
			run->wp = f[3];
			run->cap = nf > 4 ? f[4] : cap_dflt;
			run->len = nf > 5 ? f[5] : it->zone_size;
			if (run->cap > run->len || (run->wp != UINT64_MAX && run->wp > run->len))
				return -EPROTO;
		}
		it->nruns++;
	}
	if (cnt > UINT32_MAX - from)
		return -EPROTO;
	it->idx = from;
	/* Where the page ends, for the check against next; iteration starts
	 * again at from. */
	it->page_end = from + cnt;
	return 0;
}

/* The next zone of the runs page, 1, or 0 when the page is done. */
static int runs_next(zc_zone_iter *it, struct zc_zone *zone)
{
	while (it->run_pos < it->nruns) {
		const struct zc_run *run = &it->run[it->run_pos];

		if (!run->match || it->run_off == run->n) {
			if (!run->match)
				it->idx += run->n;
			it->run_pos++;
			it->run_off = 0;
			continue;
		}
		zone->index = (uint32_t)it->idx;
		zone->start = it->idx * it->zone_size;
		zone->len = run->len;
		zone->capacity = run->cap;
		zone->wp = run->wp == UINT64_MAX ? UINT64_MAX : zone->start + run->wp;
		zone->type = (enum zc_type)run->type;
		zone->cond = (enum zc_cond)run->cond;
		it->idx++;
		it->run_off++;
		return 1;
	}
	return 0;
}

/* Fetches the page that starts at it->from. */
static int iter_fetch(zc_zone_iter *it)
{
	struct json_object *p = json_object_new_object(), *res, *arr, *next;
	size_t n;
	int r;

	if (!p)
		return -ENOMEM;
	json_object_object_add(p, "device", json_object_get(it->device));
	json_object_object_add(p, "from", json_object_new_int64(it->from));
	if (it->remaining != UINT64_MAX)
		json_object_object_add(p, "count", json_object_new_int64((int64_t)it->remaining));
	if (it->cond_mask)
		json_object_object_add(p, "cond", names_array(it->cond_mask, ZP_COND_COUNT, zp_cond_name));
	if (it->type_mask)
		json_object_object_add(p, "type", names_array(it->type_mask, ZP_TYPE_COUNT, zp_type_name));
	if (it->runs)
		json_object_object_add(p, "format", json_object_new_string("runs"));

	r = zc_call(it->c, "zone.report", p, &res, NULL);
	if (r < 0)
		return r;
	if (it->runs) {
		r = parse_runs_page(it, res);
		if (r < 0)
			goto out;
		goto next;
	}
	if ((r = zc_get_array(res, "zones", &arr)) < 0)
		goto out;
	n = json_object_array_length(arr);
	free(it->page);
	it->page = n ? calloc(n, sizeof(*it->page)) : NULL;
	it->n = it->pos = 0;
	if (n && !it->page) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		r = zc_parse_zone(json_object_array_get_idx(arr, i), &it->page[i]);
		if (r < 0)
			goto out;
	}
	it->n = n;
next:
	next = field(res, "next");
	if (!next) {
		it->last = true;
	} else {
		uint64_t nx;

		if ((r = zc_get_u64(res, "next", &nx)) < 0)
			goto out;
		/* Continuing must make progress, or a confused daemon would
		 * keep us here for ever. */
		if (nx <= it->from || nx > UINT32_MAX) {
			r = -EPROTO;
			goto out;
		}
		/* Runs cover the page's scan exactly. */
		if (it->runs && it->page_end != nx) {
			r = -EPROTO;
			goto out;
		}
		if (it->remaining != UINT64_MAX) {
			if (nx - it->from >= it->remaining)
				it->last = true;
			else
				it->remaining -= nx - it->from;
		}
		it->from = (uint32_t)nx;
	}
	r = 0;
out:
	json_object_put(res);
	if (r == -EPROTO)
		zc_fail(it->c, r, "malformed zone.report reply");
	return r;
}

ZC_EXPORT int zc_zone_iter_next(zc_zone_iter *it, struct zc_zone *zone)
{
	int r;

	if (!it || !zone)
		return -EINVAL;
	/* Pages may come back empty (all scanned zones filtered out) with a
	 * next index: keep fetching until a zone or the end turns up. */
	for (;;) {
		if (it->runs ? runs_next(it, zone) : it->pos < it->n)
			break;
		if (it->last)
			return 0;
		r = iter_fetch(it);
		if (r < 0) {
			it->last = true; /* no retry from a half-known position */
			it->n = it->pos = 0;
			it->nruns = it->run_pos = 0;
			return r;
		}
	}
	if (!it->runs)
		*zone = it->page[it->pos++];
	return 1;
}

/* --- Zone operations --------------------------------------------------- */

ZC_EXPORT int zc_zone_op(zc_client *c, const char *device, enum zc_zone_op op, uint32_t zone,
			 uint32_t count, bool force, struct zc_zone *zones, size_t max)
{
	static const char *const methods[] = {
		[ZC_ZONE_OPEN] = "zone.open",
		[ZC_ZONE_CLOSE] = "zone.close",
		[ZC_ZONE_FINISH] = "zone.finish",
		[ZC_ZONE_RESET] = "zone.reset",
	};
	struct json_object *p, *res, *arr;
	size_t n;
	int r;

	if (!c)
		return -EINVAL;
	if (!device || (!zones && max))
		return zc_fail(c, -EINVAL, "zone operation: device is NULL, or zones is NULL but max is not 0");
	if ((unsigned)op > ZC_ZONE_RESET)
		return zc_failf(c, -EINVAL, "zone operation: unknown operation %u", (unsigned)op);
	p = params_device(device);
	if (!p)
		return -ENOMEM;
	json_object_object_add(p, "zone", json_object_new_int64(zone));
	if (count > 1)
		json_object_object_add(p, "count", json_object_new_int64(count));
	if (force)
		json_object_object_add(p, "force", json_object_new_boolean(true));
	r = zc_call(c, methods[op], p, &res, NULL);
	if (r < 0)
		return r;
	if ((r = zc_get_array(res, "zones", &arr)) < 0)
		goto out;
	n = json_object_array_length(arr);
	for (size_t i = 0; i < n && i < max; i++)
		if ((r = zc_parse_zone(json_object_array_get_idx(arr, i), &zones[i])) < 0)
			goto out;
	r = n > INT32_MAX ? -EPROTO : (int)n;
out:
	json_object_put(res);
	return r == -EPROTO ? zc_fail(c, r, "malformed zone operation reply") : r;
}

/* --- Lease list, stats ------------------------------------------------- */

/* Leases per lease.list page: a page stays well inside one packet. */
#define ZC_LEASE_PAGE 100

/* One page of lease.list from `after`; *next is where the next page
 * starts, 0 when this was the last. paged false: a daemon before 0.3,
 * which answers everything at once. */
static int lease_list_page(zc_client *c, bool all, bool paged, uint64_t after,
			   struct zc_lease_info *out, size_t max, size_t *nout, uint64_t *next)
{
	struct json_object *p, *res, *arr, *nx;
	size_t n;
	int r;

	p = json_object_new_object();
	if (!p)
		return -ENOMEM;
	if (all)
		json_object_object_add(p, "all", json_object_new_boolean(true));
	if (paged) {
		json_object_object_add(p, "limit", json_object_new_int(ZC_LEASE_PAGE));
		if (after)
			json_object_object_add(p, "after", json_object_new_uint64(after));
	}
	r = zc_call(c, "lease.list", p, &res, NULL);
	if (r < 0)
		return r;
	if ((r = zc_get_array(res, "leases", &arr)) < 0)
		goto out;
	n = json_object_array_length(arr);
	for (size_t i = 0; i < n && *nout + i < max; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		struct zc_lease_info *li = &out[*nout + i];

		memset(li, 0, sizeof(*li));
		if ((r = zc_get_u64(o, "id", &li->id)) < 0 ||
		    (r = zc_get_str(o, "device", li->device, sizeof(li->device))) < 0 ||
		    (r = zc_get_u32(o, "zone", &li->zone)) < 0 || (r = zc_get_u64(o, "wp", &li->wp)) < 0 ||
		    (r = zc_opt_str(o, "label", li->label, sizeof(li->label))) < 0 ||
		    (r = zc_get_i32(o, "pid", &li->pid)) < 0 || (r = zc_get_u32(o, "uid", &li->uid)) < 0 ||
		    (r = zc_opt_u64(o, "age_ms", &li->age_ms)) < 0)
			goto out;
	}
	*nout += n;
	*next = 0;
	if (paged && json_object_object_get_ex(res, "next", &nx) && nx) {
		if (!json_object_is_type(nx, json_type_int) || json_object_get_uint64(nx) <= after) {
			r = -EPROTO; /* a cursor that does not advance would loop */
			goto out;
		}
		*next = json_object_get_uint64(nx);
	}
	r = 0;
out:
	json_object_put(res);
	return r;
}

ZC_EXPORT int zc_lease_list(zc_client *c, bool all, struct zc_lease_info *out, size_t max)
{
	uint64_t after = 0, next;
	bool paged = true;
	size_t n = 0;
	int r;

	if (!c || (!out && max))
		return c ? zc_fail(c, -EINVAL, "out is NULL but max is not 0") : -EINVAL;
	do {
		r = lease_list_page(c, all, paged, after, out, max, &n, &next);
		if (r == -EINVAL && paged && after == 0) {
			/* A daemon before 0.3 knows no "limit". */
			paged = false;
			r = lease_list_page(c, all, paged, 0, out, max, &n, &next);
		}
		if (r < 0)
			break;
		after = next;
	} while (after);
	if (r == 0)
		r = n > INT32_MAX ? -EPROTO : (int)n;
	return r == -EPROTO ? zc_fail(c, r, "malformed lease.list reply") : r;
}

/* Walks obj depth first, naming counters "outer.inner". */
static size_t stats_walk(struct json_object *obj, const char *prefix, struct zc_stat *out,
			 size_t max, size_t n)
{
	json_object_object_foreach(obj, key, val)
	{
		char name[sizeof(out->name)];

		if (snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", key) >=
		    (int)sizeof(name))
			continue; /* a name we cannot represent is left out */
		if (json_object_is_type(val, json_type_object)) {
			n = stats_walk(val, name, out, max, n);
		} else if (json_object_is_type(val, json_type_int) && json_object_get_int64(val) >= 0) {
			if (n < max) {
				memcpy(out[n].name, name, sizeof(name));
				out[n].value = json_object_get_uint64(val);
			}
			n++;
		}
	}
	return n;
}

ZC_EXPORT int zc_daemon_stats(zc_client *c, struct zc_stat *out, size_t max)
{
	struct json_object *res;
	size_t n;
	int r;

	if (!c || (!out && max))
		return c ? zc_fail(c, -EINVAL, "out is NULL but max is not 0") : -EINVAL;
	r = zc_call(c, "daemon.stats", NULL, &res, NULL);
	if (r < 0)
		return r;
	if (!json_object_is_type(res, json_type_object)) {
		json_object_put(res);
		return zc_fail(c, -EPROTO, "malformed daemon.stats reply");
	}
	n = stats_walk(res, "", out, max, 0);
	json_object_put(res);
	return n > INT32_MAX ? -EPROTO : (int)n;
}
