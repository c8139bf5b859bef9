/* The method table and the handlers of the daemon, device and zone methods,
 * and the start-up that binds every module's table. Handlers write into the
 * call, never to a socket. Lease methods live in daemon/lease-methods.c. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/log.h"

/* Zones one zone.report page may carry: about 150 bytes each keeps a page
 * well inside the 64 KiB packet. */
#define ZD_REPORT_PAGE 256
/* Zones scanned per report page when filters skip most of them. */
#define ZD_REPORT_SCAN 4096
/* zone.report {"format": "runs"}: zones scanned per page, and the bytes of
 * run text a page may carry (the rest of the reply is a few dozen bytes,
 * the packet 64 KiB). A run is at most ZD_RUN_MAX bytes. */
#define ZD_RUNS_SCAN 16384
#define ZD_RUNS_TEXT 61440
#define ZD_RUN_MAX 96


static bool param_fail(struct zd_call *call, int r, struct zp_err *e)
{
	if (r == -EINVAL) {
		zd_call_error(call, e->code, "%s", e->message);
		call->err_data = json_object_new_object();
		return true;
	}
	return false;
}

/* Resolves the required `device` parameter; a failed device is refused
 * (-32002 with the failure) unless the method only reads what the daemon
 * keeps. */
static struct zd_device *param_device_any(struct zd_daemon *d, struct zd_call *call,
					  struct json_object *params, bool failed_ok)
{
	struct zp_err e;
	const char *name;
	struct zd_device *dev;
	int r = zp_param_string(params, "device", ZP_REQUIRED, &name, &e);

	if (r < 0) {
		zd_call_error(call, e.code, "%s", e.message);
		return NULL;
	}
	dev = zd_device_find(d, name);
	if (!dev) {
		zd_call_error(call, ZP_ERR_NO_DEVICE, "no such device '%.64s'", name);
	} else if (dev->failed && !failed_ok) {
		zd_device_failed_error(call, dev);
		dev = NULL;
	}
	return dev;
}

static struct zd_device *param_device(struct zd_daemon *d, struct zd_call *call,
				      struct json_object *params)
{
	return param_device_any(d, call, params, false);
}

static int m_hello(struct zd_daemon *d, struct zd_call *call, struct json_object *params)
{
	struct json_object *r = json_object_new_object();

	(void)params;
	json_object_object_add(r, "protocol", json_object_new_int(ZP_PROTOCOL_VERSION));
	json_object_object_add(r, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(r, "pid", json_object_new_int((int)d->pid));
	json_object_object_add(r, "uid", json_object_new_int64(call->conn->uid));
	json_object_object_add(r, "admin", json_object_new_boolean(call->conn->admin));
	json_object_object_add(r, "client", json_object_new_boolean(call->conn->client ||
								    call->conn->admin));
	/* What this daemon has beyond its protocol version's first form, for
	 * a client to use where it is there (additions only: anything
	 * incompatible bumps the version). */
	{
		struct json_object *f = json_object_new_array();

		json_object_array_add(f, json_object_new_string("report-runs"));
		json_object_object_add(r, "features", f);
	}
	call->result = r;
	return 0;
}

static struct json_object *device_summary(const struct zd_device *dev)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(dev->id));
	json_object_object_add(o, "path", json_object_new_string(dev->path));
	json_object_object_add(o, "backend", json_object_new_string(dev->info.backend));
	json_object_object_add(o, "model", json_object_new_string(dev->info.model));
	json_object_object_add(o, "nr_zones", json_object_new_int64(dev->info.nr_zones));
	json_object_object_add(o, "zone_size", json_object_new_uint64(dev->info.zone_size));
	json_object_object_add(o, "capacity", json_object_new_uint64(dev->info.size));
	json_object_object_add(o, "free_zones",
			       json_object_new_int64(dev->class_count[ZD_ZC_EMPTY]));
	json_object_object_add(o, "leased_zones",
			       json_object_new_int64(dev->class_count[ZD_ZC_LEASED]));
	json_object_object_add(o, "ready_zones", json_object_new_int64(dev->nr_ready));
	json_object_object_add(o, "draining", json_object_new_boolean(dev->draining));
	json_object_object_add(o, "failed", json_object_new_boolean(dev->failed));
	if (dev->failed)
		json_object_object_add(o, "failure", json_object_new_string(dev->failure));
	return o;
}

static int m_device_list(struct zd_daemon *d, struct zd_call *call, struct json_object *params)
{
	struct json_object *arr = json_object_new_array();
	struct zd_list *pos, *tmp;

	(void)params;
	zd_list_for_each_safe(pos, tmp, &d->devices)
		json_object_array_add(arr, device_summary(zd_container_of(pos, struct zd_device, link)));
	call->result = json_object_new_object();
	json_object_object_add(call->result, "devices", arr);
	return 0;
}

static int m_device_info(struct zd_daemon *d, struct zd_call *call, struct json_object *params)
{
	struct zd_device *dev = param_device_any(d, call, params, true);
	struct json_object *o, *conds;

	if (!dev)
		return 0;
	o = device_summary(dev);
	json_object_object_add(o, "vendor", json_object_new_string(dev->info.vendor));
	json_object_object_add(o, "product", json_object_new_string(dev->info.product));
	json_object_object_add(o, "logical_block_size",
			       json_object_new_int64(dev->info.logical_block_size));
	json_object_object_add(o, "physical_block_size",
			       json_object_new_int64(dev->info.physical_block_size));
	json_object_object_add(o, "max_open", json_object_new_int64(dev->info.max_open));
	json_object_object_add(o, "max_active", json_object_new_int64(dev->info.max_active));
	json_object_object_add(o, "scheduler", json_object_new_string(dev->info.scheduler));
	json_object_object_add(o, "isolation",
			       json_object_new_string(zd_isolation_name(dev->info.isolation)));
	json_object_object_add(o, "parallel_works", json_object_new_int64(
		dev->dev->ops->concurrent ? ZD_DEVICE_PARALLEL : 1));
	json_object_object_add(o, "peak_parallel_works", json_object_new_int64(dev->peak_running));
	json_object_object_add(o, "isolation_reason",
			       json_object_new_string(dev->info.isolation_why));
	json_object_object_add(o, "nr_conventional",
			       json_object_new_int64(dev->info.nr_conventional));
	json_object_object_add(o, "zone_capacity", json_object_new_uint64(dev->info.zone_capacity));
	conds = json_object_new_object();
	for (unsigned c = 0; c < ZP_COND_COUNT; c++)
		json_object_object_add(conds, zp_cond_name(c),
				       json_object_new_int64(dev->cond_count[c]));
	json_object_object_add(o, "zones_by_cond", conds);
	call->result = o;
	return 0;
}

/* Parses a `cond` or `type` filter into a bit mask (0 = any). */
static int param_mask(struct zd_call *call, struct json_object *params, const char *name,
		      int (*from_name)(const char *), uint32_t *mask)
{
	struct json_object *arr;
	struct zp_err e;
	int r = zp_param_array(params, name, ZP_OPTIONAL, &arr, &e);

	*mask = 0;
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		zd_call_error(call, e.code, "%s", e.message);
		return r;
	}
	if (json_object_is_type(arr, json_type_string)) {
		int v = from_name(json_object_get_string(arr));

		if (v < 0)
			goto bad;
		*mask = 1u << v;
		return 0;
	}
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		int v = from_name(json_object_get_string(json_object_array_get_idx(arr, i)));

		if (v < 0)
			goto bad;
		*mask |= 1u << v;
	}
	return 0;
bad:
	zd_call_error(call, ZP_ERR_INVALID_PARAMS, "parameter '%s' has an unknown name", name);
	return -EINVAL;
}

struct report_ctx {
	struct zd_call *call;
	uint32_t from, end; /* requested range [from, end) */
	uint32_t cond_mask, type_mask;
	bool runs;          /* format "runs" */
};

/* A page of zone.report, {"zones": [...], "next": n or null}, written as
 * text: a zone is 7 members, and a page of them as json-c objects cost
 * more than the report itself. A zone's text is at most ~180 bytes
 * (20-digit numbers, the longest names). */
#define REPORT_PAGE_BYTES (64 + ZD_REPORT_PAGE * 200)

static int page_begin(struct zd_call *call, struct zp_jw *w)
{
	if (zd_call_result_begin(call, w, REPORT_PAGE_BYTES, "zone report") < 0)
		return -ENOMEM;
	zp_jw_begin(w, '{');
	zp_jw_key(w, "zones");
	zp_jw_begin(w, '[');
	return 0;
}

static void page_end(struct zd_call *call, struct zp_jw *w, bool more, uint32_t next)
{
	zp_jw_end(w, ']');
	zp_jw_key(w, "next");
	if (more)
		zp_jw_i64(w, next);
	else
		zp_jw_json(w, NULL);
	zp_jw_end(w, '}');
	zd_call_result_end(call, w, "zone report");
}

/* --- zone.report {"format": "runs"} -----------------------------------
 *
 * Zones side by side that differ in nothing but their start are one run,
 * written "N,T,C,W[,CAP[,LEN]]": N zones of type T and condition C (their
 * numbers in proto.h, the order of PROTOCOL.md's names), each with its wp W
 * bytes past its start ("x" for none: read-only, offline), its capacity
 * CAP and length LEN where they are not the page's; "N" alone is N zones
 * the filters left out. Runs are separated by one space. A device as it
 * comes (every zone empty) is two runs whatever its size; one whose every
 * zone differs costs ~14 bytes a zone against ~150 for the objects, and
 * neither side builds a JSON value per zone. */

struct runs_enc {
	char *buf;
	size_t len;
	uint32_t n;           /* zones in the open run; 0: none open */
	bool match;
	uint8_t tc;
	uint32_t cap, wp;     /* store units */
	uint64_t zlen;
};

static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

static void runs_flush(const struct zd_device *dev, struct runs_enc *r)
{
	char *p = r->buf + r->len;

	if (!r->n)
		return;
	if (r->len)
		*p++ = ' ';
	p = put_u64(p, r->n);
	if (r->match) {
		uint64_t cap = (uint64_t)r->cap << ZD_ZS_SHIFT;
		bool need_len = r->zlen != dev->info.zone_size;

		*p++ = ',';
		p = put_u64(p, r->tc >> 4);
		*p++ = ',';
		p = put_u64(p, r->tc & 15);
		*p++ = ',';
		if (r->wp == ZD_ZS_WP_NONE)
			*p++ = 'x';
		else
			p = put_u64(p, (uint64_t)r->wp << ZD_ZS_SHIFT);
		if (cap != dev->info.zone_capacity || need_len) {
			*p++ = ',';
			p = put_u64(p, cap);
		}
		if (need_len) {
			*p++ = ',';
			p = put_u64(p, r->zlen);
		}
	}
	r->len = (size_t)(p - r->buf);
	r->n = 0;
}

/* Adds zone i of the cache to the runs; false (nothing added) when a new
 * run would not fit in the page. */
static bool runs_add(const struct zd_device *dev, struct runs_enc *r, uint32_t i, bool match)
{
	const struct zd_zone_store *s = &dev->zs;
	uint64_t zlen = zd_zstore_len(s, i);

	if (r->n && r->match == match && r->n < UINT32_MAX &&
	    (!match || (r->tc == s->tc[i] && r->cap == s->cap[i] && r->wp == s->wp[i] &&
			r->zlen == zlen))) {
		r->n++;
		return true;
	}
	runs_flush(dev, r);
	/* Room for this run and the one it may turn into. */
	if (r->len + 2 * ZD_RUN_MAX > ZD_RUNS_TEXT)
		return false;
	*r = (struct runs_enc){ .buf = r->buf, .len = r->len, .n = 1, .match = match,
				.tc = s->tc[i], .cap = s->cap[i], .wp = s->wp[i], .zlen = zlen };
	return true;
}

static bool zone_matches(const struct zd_device *dev, uint32_t i, uint32_t cmask, uint32_t tmask)
{
	return (!cmask || (cmask & (1u << zd_zstore_cond(&dev->zs, i)))) &&
	       (!tmask || (tmask & (1u << zd_zstore_type(&dev->zs, i))));
}

/* The reply of a runs page that covers [from, next) of [.., end). */
static void runs_result(struct zd_call *call, const struct zd_device *dev, struct runs_enc *r,
			uint32_t from, uint32_t next, uint32_t end)
{
	struct json_object *res = json_object_new_object();

	runs_flush(dev, r);
	json_object_object_add(res, "from", json_object_new_int64(from));
	json_object_object_add(res, "zone_size", json_object_new_uint64(dev->info.zone_size));
	json_object_object_add(res, "capacity", json_object_new_uint64(dev->info.zone_capacity));
	json_object_object_add(res, "runs", json_object_new_string_len(r->buf, (int)r->len));
	json_object_object_add(res, "next", next < end ? json_object_new_int64(next) : NULL);
	call->result = res;
}

/* Pages of the cache alone (cached: true): at most ZD_RUNS_SCAN zones. */
static void report_cached_runs(struct zd_call *call, const struct zd_device *dev, uint32_t from,
			       uint32_t end, uint32_t cmask, uint32_t tmask)
{
	struct runs_enc r = { .buf = malloc(ZD_RUNS_TEXT) };
	uint32_t i, stop = end - from > ZD_RUNS_SCAN ? from + ZD_RUNS_SCAN : end;

	if (!r.buf) {
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return;
	}
	for (i = from; i < stop; i++)
		if (!runs_add(dev, &r, i, zone_matches(dev, i, cmask, tmask)))
			break;
	runs_result(call, dev, &r, from, i, end);
	free(r.buf);
}

/* The zone buffer exists only while the work runs: queued reports cost a
 * few hundred bytes each, not the 160 KiB a filtered page may scan. */
static int report_run(struct zd_work *w)
{
	w->zbuf = malloc(w->nz * sizeof(*w->zbuf));
	if (!w->zbuf) {
		w->nz = 0;
		return -ENOMEM;
	}
	return w->dev->dev->ops->report(w->dev->dev, w->zone, w->zbuf, &w->nz);
}

static void report_done(struct zd_work *w, int status)
{
	struct report_ctx *ctx = w->data;
	struct zd_call *call = ctx->call;
	struct zp_jw pw;
	uint32_t i, matched = 0, next;

	if (status < 0) {
		zd_call_errno(call, status, "zone report");
		goto out;
	}
	if (ctx->runs) {
		struct runs_enc r = { .buf = malloc(ZD_RUNS_TEXT) };

		if (!r.buf) {
			zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
			goto out;
		}
		/* Each zone goes into the cache, then from the cache into the
		 * page; the zones past a full page are left for the next one
		 * (reported again then), as with the objects. */
		for (i = 0; i < w->nz; i++) {
			uint32_t idx = w->zone + i;

			zd_device_zone_update(w->dev, idx, &w->zbuf[i]);
			if (!runs_add(w->dev, &r, idx,
				      zone_matches(w->dev, idx, ctx->cond_mask, ctx->type_mask)))
				break;
		}
		runs_result(call, w->dev, &r, w->zone, w->zone + i, ctx->end);
		free(r.buf);
		goto out;
	}
	if (page_begin(call, &pw) < 0)
		goto out;
	next = w->zone;
	for (i = 0; i < w->nz; i++) {
		const struct zd_zone *z = &w->zbuf[i];
		uint32_t idx = w->zone + i;

		zd_device_zone_update(w->dev, idx, z);
		next = idx + 1;
		if ((ctx->cond_mask && !(ctx->cond_mask & (1u << z->cond))) ||
		    (ctx->type_mask && !(ctx->type_mask & (1u << z->type))))
			continue;
		/* From the cache, which holds the zone as the daemon shows it. */
		{
			const struct zd_zone zc = zd_device_zone(w->dev, idx);

			zd_zone_write(&pw, idx, &zc);
		}
		if (++matched == ZD_REPORT_PAGE)
			break;
	}
	/* Zones scanned after the page filled are reported again next time;
	 * updating the cache with them above is harmless. */
	page_end(call, &pw, next < ctx->end, next);
out:
	free(w->zbuf);
	free(ctx);
	free(w);
	zd_call_complete(call);
}

/* zone.report {"cached": true}: the page from the daemon's zone table
 * alone, no device I/O: what the allocator and every check work from, so a
 * test can compare it with the device itself. */
static void report_cached(struct zd_call *call, const struct zd_device *dev, uint32_t from,
			  uint32_t end, uint32_t cmask, uint32_t tmask)
{
	struct zp_jw pw;
	uint32_t matched = 0, i;

	if (page_begin(call, &pw) < 0)
		return;
	for (i = from; i < end && matched < ZD_REPORT_PAGE; i++) {
		const struct zd_zone zc = zd_device_zone(dev, i), *z = &zc;

		if ((cmask && !(cmask & (1u << z->cond))) || (tmask && !(tmask & (1u << z->type))))
			continue;
		zd_zone_write(&pw, i, z);
		matched++;
	}
	page_end(call, &pw, i < end, i);
}

static int m_zone_report(struct zd_daemon *d, struct zd_call *call, struct json_object *params)
{
	struct zd_device *dev;
	struct report_ctx *ctx;
	struct zd_work *w;
	uint64_t from = 0, count = 0;
	uint32_t cmask, tmask, n;
	bool cached = false, runs = false;
	const char *format = NULL;
	struct zp_err e;
	int r;

	r = zp_param_bool(params, "cached", ZP_OPTIONAL, &cached, &e);
	if (param_fail(call, r, &e))
		return 0;
	r = zp_param_string(params, "format", ZP_OPTIONAL, &format, &e);
	if (param_fail(call, r, &e))
		return 0;
	if (format) {
		runs = strcmp(format, "runs") == 0;
		if (!runs && strcmp(format, "zones") != 0) {
			zd_call_error(call, ZP_ERR_INVALID_PARAMS, "parameter 'format' must be "
				      "\"zones\" or \"runs\"");
			return 0;
		}
	}
	dev = param_device_any(d, call, params, cached);
	if (!dev)
		return 0;
	r = zp_param_u64(params, "from", ZP_OPTIONAL, &from, &e);
	if (param_fail(call, r, &e))
		return 0;
	r = zp_param_u64(params, "count", ZP_OPTIONAL, &count, &e);
	if (param_fail(call, r, &e))
		return 0;
	if (param_mask(call, params, "cond", zp_cond_from_name, &cmask) < 0 ||
	    param_mask(call, params, "type", zp_type_from_name, &tmask) < 0)
		return 0;
	if (from >= dev->info.nr_zones) {
		zd_call_error(call, ZP_ERR_NO_ZONE, "zone %llu is past the last zone (%u zones)",
			      (unsigned long long)from, dev->info.nr_zones);
		return 0;
	}
	if (count == 0 || count > dev->info.nr_zones - from)
		count = dev->info.nr_zones - from;
	if (cached) {
		if (runs)
			report_cached_runs(call, dev, (uint32_t)from, (uint32_t)(from + count), cmask,
					   tmask);
		else
			report_cached(call, dev, (uint32_t)from, (uint32_t)(from + count), cmask,
				      tmask);
		return 0;
	}
	ctx = calloc(1, sizeof(*ctx));
	w = calloc(1, sizeof(*w));
	/* Without filters a page is at most one packet's worth of zones. */
	n = runs ? ZD_RUNS_SCAN : (cmask || tmask) ? ZD_REPORT_SCAN : ZD_REPORT_PAGE;
	if (n > count)
		n = (uint32_t)count;
	if (!ctx || !w) {
		free(ctx);
		free(w);
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return 0;
	}
	ctx->call = call;
	ctx->from = (uint32_t)from;
	ctx->end = (uint32_t)(from + count);
	ctx->cond_mask = cmask;
	ctx->type_mask = tmask;
	ctx->runs = runs;
	w->data = ctx;
	w->zone = (uint32_t)from;
	w->nz = n;
	w->reads_only = true;
	w->run = report_run;
	w->done = report_done;
	zd_work_queue(dev, w);
	return ZD_ASYNC;
}

/* Zone management: the operation, then a report of the zones it touched so
 * the reply and the cache show the state the device reached. */
#define ZD_ZONE_OP_REPLY 256

/* Whether zone z is where op leaves it. */
static bool op_reached(enum zd_zone_op op, const struct zd_zone *z)
{
	switch (op) {
	case ZD_OP_OPEN:
		return z->cond == ZP_COND_EXP_OPEN;
	case ZD_OP_CLOSE:
		return z->cond != ZP_COND_IMP_OPEN && z->cond != ZP_COND_EXP_OPEN;
	case ZD_OP_FINISH:
		return z->cond == ZP_COND_FULL;
	default:
		return z->cond == ZP_COND_EMPTY;
	}
}

static int zoneop_run(struct zd_work *w)
{
	struct zd_dev *dev = w->dev->dev;
	uint32_t n = w->nz;
	int r;

	/* Allocated here, as for reports: a queued operation holds no buffer. */
	w->zbuf = malloc(n * sizeof(*w->zbuf));
	if (!w->zbuf) {
		w->nz = 0;
		return -ENOMEM;
	}
	/* Zones a forced operation took from their leases: what the holder
	 * wrote without telling is the zone's before the operation applies
	 * (a device's write pointer moved with the writes; an emulated zone
	 * file's size is its). A zone that cannot be refreshed (dead,
	 * conventional) is left to the operation to refuse. */
	for (uint32_t i = 0; i < w->refresh_count; i++)
		(void)dev->ops->refresh_zone(dev, w->refresh_from + i, UINT64_MAX, &w->zbuf[0]);
	r = dev->ops->zone_op(dev, w->op, w->zone, w->count);
	/* Report even after a failure: part of the range may have changed. */
	int r2 = dev->ops->report(dev, w->zone, w->zbuf, &n);

	w->nz = r2 < 0 ? 0 : n;
	/* A range that stopped failed at its first zone not done (see
	 * zoneop_done): that zone's failure, not the device's. */
	if (r < 0 && r2 == 0 && n == w->count) {
		uint32_t done = 0;

		while (done < n && op_reached(w->op, &w->zbuf[done]))
			done++;
		if (done < n) {
			w->zone_work = true;
			w->fail_zone = w->zone + done;
		}
	}
	return r < 0 ? r : r2;
}

static const char *const op_names[] = { "open", "close", "finish", "reset" };

static void zoneop_done(struct zd_work *w, int status)
{
	struct zd_call *call = w->data;
	struct json_object *arr = json_object_new_array();

	for (uint32_t i = 0; i < w->nz; i++) {
		zd_device_zone_update(w->dev, w->zone + i, &w->zbuf[i]);
		if (i < ZD_ZONE_OP_REPLY)
			json_object_array_add(arr, zd_zone_json(w->dev, w->zone + i,
				(const struct zd_zone[]){ zd_device_zone(w->dev, w->zone + i) }));
	}
	/* Zones reset, closed or finished may let waiting acquires go. */
	zd_waiters_kick(w->dev->d, w->dev);
	if (status < 0) {
		char what[64];
		uint32_t done = 0;

		snprintf(what, sizeof(what), "zone %s of zone %u", op_names[w->op], w->zone);
		zd_call_errno(call, status, what);
		/* Both backends work through the range in order and stop at the
		 * first zone that fails, so the zones done are the leading run
		 * that reached the operation's state. Unknown when the report
		 * after the failure failed too. */
		if (w->nz == w->count) {
			while (done < w->nz && op_reached(w->op, (const struct zd_zone[]){
							   zd_device_zone(w->dev, w->zone + done) }))
				done++;
			json_object_object_add(call->err_data, "done", json_object_new_int64(done));
			snprintf(call->err_msg + strlen(call->err_msg),
				 sizeof(call->err_msg) - strlen(call->err_msg),
				 " at zone %u; %u of %u zone(s) done", w->zone + done, done, w->count);
		}
		json_object_put(arr);
	} else {
		char f1[80], f2[32];
		const char *fields[] = { f1, f2, NULL };

		snprintf(f1, sizeof(f1), "DEVICE=%s", w->dev->id);
		snprintf(f2, sizeof(f2), "ZONE=%u", w->zone);
		zd_logv_fields(LOG_INFO, fields, "zone %s of %u zone(s) from %u on %s", op_names[w->op],
			       w->count, w->zone, w->dev->id);
		call->result = json_object_new_object();
		json_object_object_add(call->result, "zones", arr);
		json_object_object_add(call->result, "count", json_object_new_int64(w->count));
	}
	free(w->zbuf);
	free(w);
	zd_call_complete(call);
}

/* Refuses, before any zone is touched, a range the device would stop in
 * midway for what the daemon knows: a zone no operation applies to, a full
 * zone to open, or the open or active limit, walked zone by zone as the
 * device does it. The cache may lag behind leased zones (their holders
 * write directly); what it cannot foresee the device reports, with the
 * number of zones done. Returns 0 or sets the error. */
static int zone_op_check(struct zd_call *call, const struct zd_device *dev, enum zd_zone_op op,
			 uint32_t zone, uint32_t count)
{
	uint32_t exp = dev->cond_count[ZP_COND_EXP_OPEN], imp = dev->cond_count[ZP_COND_IMP_OPEN];
	uint32_t active = exp + imp + dev->cond_count[ZP_COND_CLOSED];
	uint32_t max_open = dev->info.max_open, max_active = dev->info.max_active;
	const char *limit = NULL;
	uint32_t i;

	for (i = zone; i < zone + count; i++) {
		const struct zd_zone zc = zd_device_zone(dev, i), *z = &zc;

		if (z->type == ZP_TYPE_CONV || z->cond == ZP_COND_READONLY ||
		    z->cond == ZP_COND_OFFLINE) {
			zd_call_error(call, ZP_ERR_ZONE_STATE,
				      "zone %s: zone %u is %s; nothing was done", op_names[op], i,
				      z->type == ZP_TYPE_CONV ? "conventional" : zp_cond_name(z->cond));
			goto fail;
		}
	}
	for (i = zone; i < zone + count && !limit; i++) {
		const struct zd_zone zc = zd_device_zone(dev, i), *z = &zc;

		if (op == ZD_OP_OPEN) {
			switch (z->cond) {
			case ZP_COND_FULL:
				zd_call_error(call, ZP_ERR_ZONE_STATE,
					      "zone open: zone %u is full; nothing was done", i);
				goto fail;
			case ZP_COND_IMP_OPEN:
				imp--;
				exp++;
				break;
			case ZP_COND_EMPTY:
			case ZP_COND_CLOSED:
				if (z->cond == ZP_COND_EMPTY && max_active && active >= max_active) {
					limit = "active";
					break;
				}
				if (max_open && imp + exp >= max_open) {
					/* The device closes an implicitly open zone
					 * to make room, never an explicitly open one. */
					if (imp == 0) {
						limit = "open";
						break;
					}
					imp--;
				}
				exp++;
				if (z->cond == ZP_COND_EMPTY)
					active++;
				break;
			default:
				break;
			}
		} else if (op == ZD_OP_FINISH) {
			if (z->cond == ZP_COND_EMPTY && max_active && active >= max_active)
				limit = "active";
			else if (zd_zone_active(z->cond))
				active--;
		}
	}
	if (!limit)
		return 0;
	zd_call_error(call, ZP_ERR_LIMIT,
		      "zone %s of %u zone(s) from %u would pass the device's %s zone limit "
		      "(%u) at zone %u; nothing was done", op_names[op], count, zone, limit,
		      limit[0] == 'o' ? max_open : max_active, i - 1);
fail:
	call->err_data = json_object_new_object();
	json_object_object_add(call->err_data, "done", json_object_new_int64(0));
	return -EINVAL;
}

static int zone_op_method(struct zd_daemon *d, struct zd_call *call, struct json_object *params,
			  enum zd_zone_op op)
{
	struct zd_device *dev = param_device(d, call, params);
	uint64_t zone, count = 1;
	bool force = false;
	struct zd_work *w;
	struct zp_err e;
	int r;

	if (!dev)
		return 0;
	r = zp_param_u64(params, "zone", ZP_REQUIRED, &zone, &e);
	if (param_fail(call, r, &e))
		return 0;
	r = zp_param_u64(params, "count", ZP_OPTIONAL, &count, &e);
	if (param_fail(call, r, &e))
		return 0;
	r = zp_param_bool(params, "force", ZP_OPTIONAL, &force, &e);
	if (param_fail(call, r, &e))
		return 0;
	if (zone >= dev->info.nr_zones) {
		zd_call_error(call, ZP_ERR_NO_ZONE, "no zone %llu on %s (%u zones)",
			      (unsigned long long)zone, dev->id, dev->info.nr_zones);
		return 0;
	}
	if (count == 0 || count > dev->info.nr_zones - zone) {
		zd_call_error(call, ZP_ERR_INVALID_PARAMS,
			      "parameter 'count' must be between 1 and %llu",
			      (unsigned long long)(dev->info.nr_zones - zone));
		return 0;
	}
	for (uint64_t i = zone; i < zone + count; i++) {
		if (!dev->lease_of[i])
			continue;
		if (!force) {
			zd_call_error(call, ZP_ERR_ZONE_LEASED,
				      "zone %llu is leased (force revokes the lease)",
				      (unsigned long long)i);
			return 0;
		}
	}
	if (zone_op_check(call, dev, op, (uint32_t)zone, (uint32_t)count) < 0)
		return 0;
	uint64_t first = UINT64_MAX, last = 0;

	if (force)
		for (uint64_t i = zone; i < zone + count; i++)
			if (dev->lease_of[i]) {
				zd_lease_revoke_zone(dev, (uint32_t)i, "force");
				first = first == UINT64_MAX ? i : first;
				last = i;
			}
	w = calloc(1, sizeof(*w));
	if (!w) {
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return 0;
	}
	if (first != UINT64_MAX) {
		w->refresh_from = (uint32_t)first;
		w->refresh_count = (uint32_t)(last - first + 1);
	}
	w->data = call;
	w->op = op;
	w->zone = (uint32_t)zone;
	w->count = (uint32_t)count;
	w->nz = (uint32_t)count;
	w->zone_work = count == 1;
	w->fail_zone = w->zone;
	w->run = zoneop_run;
	w->done = zoneop_done;
	zd_work_queue(dev, w);
	return ZD_ASYNC;
}

static int m_zone_open(struct zd_daemon *d, struct zd_call *c, struct json_object *p)
{
	return zone_op_method(d, c, p, ZD_OP_OPEN);
}

static int m_zone_close(struct zd_daemon *d, struct zd_call *c, struct json_object *p)
{
	return zone_op_method(d, c, p, ZD_OP_CLOSE);
}

static int m_zone_finish(struct zd_daemon *d, struct zd_call *c, struct json_object *p)
{
	return zone_op_method(d, c, p, ZD_OP_FINISH);
}

static int m_zone_reset(struct zd_daemon *d, struct zd_call *c, struct json_object *p)
{
	return zone_op_method(d, c, p, ZD_OP_RESET);
}

static int m_stats(struct zd_daemon *d, struct zd_call *call, struct json_object *params)
{
	static const int std[] = { ZP_ERR_PARSE, ZP_ERR_INVALID_REQUEST, ZP_ERR_METHOD_NOT_FOUND,
				   ZP_ERR_INVALID_PARAMS, ZP_ERR_INTERNAL };
	struct json_object *r = json_object_new_object();
	struct json_object *errs = json_object_new_object();
	struct zd_list *pos, *tmp;
	uint64_t leased = 0, waiting = 0;
	char key[16];

	(void)params;
	zd_list_for_each_safe(pos, tmp, &d->devices)
		leased += zd_container_of(pos, struct zd_device, link)->class_count[ZD_ZC_LEASED];
	zd_list_for_each_safe(pos, tmp, &d->users)
		waiting += zd_container_of(pos, struct zd_user, link)->nr_waiters;
	json_object_object_add(r, "uptime_ms", json_object_new_uint64(zd_now_ms(d) - d->start_ms));
	json_object_object_add(r, "connections", json_object_new_uint64(d->stats.connections));
	json_object_object_add(r, "connections_refused",
			       json_object_new_uint64(d->stats.connections_refused));
	json_object_object_add(r, "clients", json_object_new_int64(d->nr_conns));
	json_object_object_add(r, "requests", json_object_new_uint64(d->stats.requests));
	json_object_object_add(r, "leases_active", json_object_new_uint64(leased));
	json_object_object_add(r, "leases_granted", json_object_new_uint64(d->stats.leases_granted));
	json_object_object_add(r, "leases_released",
			       json_object_new_uint64(d->stats.leases_released));
	json_object_object_add(r, "leases_revoked", json_object_new_uint64(d->stats.leases_revoked));
	json_object_object_add(r, "grants_ready", json_object_new_uint64(d->stats.grants_ready));
	json_object_object_add(r, "releases_untouched",
			       json_object_new_uint64(d->stats.releases_untouched));
	json_object_object_add(r, "ready_recycled", json_object_new_uint64(d->stats.ready_recycled));
	json_object_object_add(r, "waits", json_object_new_uint64(d->stats.waits));
	json_object_object_add(r, "wait_timeouts", json_object_new_uint64(d->stats.wait_timeouts));
	json_object_object_add(r, "waiting", json_object_new_uint64(waiting));
	for (int i = 0; i < 16; i++) {
		if (!d->stats.errors[i])
			continue;
		snprintf(key, sizeof(key), "%d", -32000 - i);
		json_object_object_add(errs, key, json_object_new_uint64(d->stats.errors[i]));
	}
	for (int i = 0; i < 5; i++) {
		if (!d->stats.std_errors[i])
			continue;
		snprintf(key, sizeof(key), "%d", std[i]);
		json_object_object_add(errs, key, json_object_new_uint64(d->stats.std_errors[i]));
	}
	json_object_object_add(r, "errors", errs);
	call->result = r;
	return 0;
}

/* --- device.open ------------------------------------------------------- */

static int devopen_run(struct zd_work *w)
{
	return w->dev->dev->ops->open_zones(w->dev->dev, w->zone, w->count, O_RDONLY, false,
					    &w->zf);
}

static void devopen_done(struct zd_work *w, int status)
{
	struct zd_call *call = w->data;

	if (status == -EOPNOTSUPP) {
		zd_call_error(call, ZP_ERR_INVALID_PARAMS, "%s has no whole-device descriptor "
			      "(one file per zone): name a zone", w->dev->id);
	} else if (status < 0) {
		zd_call_errno(call, status, "open");
	} else {
		call->result = json_object_new_object();
		json_object_object_add(call->result, "fd_offset",
				       json_object_new_uint64(w->zf.fd_offset));
		memcpy(call->fds, w->zf.fd, w->zf.nr * sizeof(int));
		call->nfds = w->zf.nr;
	}
	free(w);
	zd_call_complete(call);
}

static int m_device_open(struct zd_daemon *d, struct zd_call *call, struct json_object *p)
{
	const char *name;
	struct zd_device *dev;
	struct zd_work *w;
	struct zp_err e;

	uint64_t zone = 0, count = 0;
	int r;

	if (zp_param_string(p, "device", ZP_REQUIRED, &name, &e) < 0 ||
	    (r = zp_param_u64(p, "zone", ZP_OPTIONAL, &zone, &e)) == -EINVAL ||
	    zp_param_u64(p, "count", ZP_OPTIONAL, &count, &e) == -EINVAL) {
		zd_call_error(call, e.code, "%s", e.message);
		return 0;
	}
	/* A zone without a count is that one zone. */
	if (r == 0 && count == 0)
		count = 1;
	if (count > ZP_LEASE_ZONES_MAX) {
		zd_call_error(call, ZP_ERR_INVALID_PARAMS, "parameter 'count' must be at most %d",
			      ZP_LEASE_ZONES_MAX);
		return 0;
	}
	dev = zd_device_find(d, name);
	if (!dev) {
		zd_call_error(call, ZP_ERR_NO_DEVICE, "no such device '%.64s'", name);
		return 0;
	}
	if (dev->failed) {
		zd_device_failed_error(call, dev);
		return 0;
	}
	if (count && (zone >= dev->info.nr_zones || count > dev->info.nr_zones - zone)) {
		zd_call_error(call, ZP_ERR_NO_ZONE, "no zones %" PRIu64 "-%" PRIu64 " on %s", zone,
			      zone + count - 1, dev->id);
		return 0;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		zd_call_error(call, ZP_ERR_INTERNAL, "out of memory");
		return 0;
	}
	w->data = call;
	w->zone = (uint32_t)zone;
	w->count = (uint32_t)count;
	w->run = devopen_run;
	w->done = devopen_done;
	zd_work_queue(dev, w);
	return ZD_ASYNC;
}

#define P(...) ((const char *const[]){ __VA_ARGS__, NULL })
static const struct zd_method methods[] = {
	{ "daemon.hello", m_hello, ZD_M_ANYONE, P(NULL) },
	{ "daemon.stats", m_stats, ZD_M_CLIENT, P(NULL) },
	{ "device.list", m_device_list, ZD_M_CLIENT, P(NULL) },
	{ "device.info", m_device_info, ZD_M_CLIENT, P("device") },
	{ "device.open", m_device_open, ZD_M_CLIENT | ZD_M_REPLY, P("device", "zone", "count") },
	{ "zone.report", m_zone_report, ZD_M_CLIENT, P("device", "from", "count", "cond", "type", "cached", "format") },
	{ "zone.open", m_zone_open, ZD_M_ADMIN, P("device", "zone", "count", "force") },
	{ "zone.close", m_zone_close, ZD_M_ADMIN, P("device", "zone", "count", "force") },
	{ "zone.finish", m_zone_finish, ZD_M_ADMIN, P("device", "zone", "count", "force") },
	{ "zone.reset", m_zone_reset, ZD_M_ADMIN, P("device", "zone", "count", "force") },
	{ "events.subscribe", zd_events_subscribe_method, ZD_M_CLIENT, P("types", "devices") },
	{ "events.unsubscribe", zd_events_unsubscribe_method, ZD_M_CLIENT, P(NULL) },
};
#undef P

int zd_modules_init(struct zd_daemon *d)
{
	d->methods_core.methods = methods;
	d->methods_core.nr_methods = sizeof(methods) / sizeof(methods[0]);
	zd_method_table_bind(d, &d->methods_core);
	zd_lease_init(d);
	zd_lease_methods_init(d);
	return 0;
}
