/* Devices as the daemon sees them: the backend handle, the cached zone table
 * with its allocator class lists, and the per-device work queue that keeps
 * every blocking operation on the thread pool, one at a time per device. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/log.h"

bool zd_zone_active(uint8_t cond)
{
	return cond == ZP_COND_IMP_OPEN || cond == ZP_COND_EXP_OPEN || cond == ZP_COND_CLOSED;
}

static enum zd_zclass zone_class(const struct zd_device *dev, uint32_t i)
{
	if (dev->lease_of[i])
		return ZD_ZC_LEASED;
	if (zd_zstore_type(&dev->zs, i) == ZP_TYPE_CONV)
		return ZD_ZC_NONE;
	switch (zd_zstore_cond(&dev->zs, i)) {
	case ZP_COND_EMPTY:
		return ZD_ZC_EMPTY;
	case ZP_COND_IMP_OPEN:
	case ZP_COND_EXP_OPEN:
	case ZP_COND_CLOSED:
		return ZD_ZC_PARTIAL;
	case ZP_COND_FULL:
		return ZD_ZC_FULL;
	default:
		return ZD_ZC_NONE;
	}
}

static void class_remove(struct zd_device *dev, uint32_t i)
{
	uint8_t c = dev->zclass[i];

	if (dev->zprev[i] != ZD_NIL)
		dev->znext[dev->zprev[i]] = dev->znext[i];
	else
		dev->class_head[c] = dev->znext[i];
	if (dev->znext[i] != ZD_NIL)
		dev->zprev[dev->znext[i]] = dev->zprev[i];
	dev->znext[i] = dev->zprev[i] = ZD_NIL;
	dev->class_count[c]--;
}

/* Pushed at the head: O(1). Which free zone the allocator hands out is not
 * part of the contract, only that it is free and within the limits. */
static void class_insert(struct zd_device *dev, uint32_t i, uint8_t c)
{
	dev->zclass[i] = c;
	dev->zprev[i] = ZD_NIL;
	dev->znext[i] = dev->class_head[c];
	if (dev->class_head[c] != ZD_NIL)
		dev->zprev[dev->class_head[c]] = i;
	dev->class_head[c] = i;
	dev->class_count[c]++;
}

static uint64_t zone_free(const struct zd_device *dev, uint32_t i)
{
	uint32_t wp = dev->zs.wp[i], cap = dev->zs.cap[i];

	return wp < cap ? (uint64_t)(cap - wp) << ZD_ZS_SHIFT : 0;
}

/* The zone's entries in the allocator's indexes: its class list, the free
 * space index (unleased partial zones) and the count of leased explicitly
 * open zones. Removed before its state changes, added back after. */
static void index_del(struct zd_device *dev, uint32_t i, bool relist)
{
	uint8_t c = dev->zclass[i];

	if (relist)
		class_remove(dev, i);
	if (c == ZD_ZC_LEASED && zd_zstore_cond(&dev->zs, i) == ZP_COND_EXP_OPEN)
		dev->leased_exp_open--;
	if (c == ZD_ZC_PARTIAL)
		zd_free_index_set(&dev->free_index, i, 0);
	if (c == ZD_ZC_EMPTY)
		zd_run_index_set(&dev->empty_runs, i, false);
}

static void index_add(struct zd_device *dev, uint32_t i, bool relist)
{
	uint8_t c = zone_class(dev, i);

	if (relist)
		class_insert(dev, i, c);
	if (c == ZD_ZC_LEASED && zd_zstore_cond(&dev->zs, i) == ZP_COND_EXP_OPEN)
		dev->leased_exp_open++;
	if (c == ZD_ZC_PARTIAL)
		zd_free_index_set(&dev->free_index, i, zone_free(dev, i));
	if (c == ZD_ZC_EMPTY)
		zd_run_index_set(&dev->empty_runs, i, true);
}

/* Re-files zone i after its lease changed. */
void zd_device_zone_reclass(struct zd_device *dev, uint32_t i)
{
	if (zone_class(dev, i) == dev->zclass[i])
		return;
	index_del(dev, i, true);
	index_add(dev, i, true);
}

/* The one place where a zone as a backend reports it becomes the zone as
 * the daemon shows it. A full sequential zone's write pointer is not
 * defined by the standards; devices and the kernel report the zone's end
 * (start + len), the emulator its capacity's end or its end depending on
 * how it filled. Everywhere above, a full zone's wp is start + capacity:
 * where its data ends, and never past the writable part. */
static void zone_normalise(struct zd_zone *z)
{
	if (z->type != ZP_TYPE_CONV && z->cond == ZP_COND_FULL)
		z->wp = z->start + z->capacity;
}

void zd_device_zone_update(struct zd_device *dev, uint32_t i, const struct zd_zone *zin)
{
	struct zd_zone z = *zin;
	uint8_t old_class, old_cond;
	bool relist;

	if (i >= dev->info.nr_zones)
		return;
	if (z.cond != ZP_COND_EMPTY && dev->nr_ready)
		zd_device_ready_drop(dev, i, 1);
	zone_normalise(&z);
	/* The common case of a report: the cache knew it. Nothing to file
	 * again (a zone's class changes only with its state or its lease, and
	 * a lease change reclasses it then). */
	{
		struct zd_zone cur = zd_device_zone(dev, i);

		if (cur.start == z.start && cur.len == z.len && cur.capacity == z.capacity &&
		    cur.wp == z.wp && cur.type == z.type && cur.cond == z.cond)
			return;
	}
	old_class = dev->zclass[i];
	old_cond = zd_zstore_cond(&dev->zs, i);
	index_del(dev, i, false);
	if (zd_zstore_set(&dev->zs, i, &z) < 0) {
		/* Not the zone the geometry says is there: a backend's bug.
		 * The cache keeps what it knew rather than a guess. */
		if (!dev->bad_report_logged)
			zd_err("device %s: zone %u reported as start %llu len %llu capacity %llu "
			       "wp %llu, which is not its place; ignored", dev->id, i,
			       (unsigned long long)z.start, (unsigned long long)z.len,
			       (unsigned long long)z.capacity, (unsigned long long)z.wp);
		dev->bad_report_logged = true;
		index_add(dev, i, false);
		return;
	}
	dev->cond_count[old_cond]--;
	dev->cond_count[z.cond]++;
	/* A zone that stays in its class keeps its place in the class list:
	 * refreshing a zone must not reorder which free zone comes next. */
	relist = zone_class(dev, i) != old_class;
	if (relist)
		class_remove(dev, i);
	index_add(dev, i, relist);
	if (old_cond != z.cond)
		zd_event_zone(dev, i, old_cond);
}

/* A device operation on one zone came back with its state: a zone that
 * finished, reset or filled up gives an open or active slot back, so the
 * device's waiters may go. */
void zd_device_zone_refreshed(struct zd_device *dev, uint32_t i, const struct zd_zone *z)
{
	uint8_t cond = zd_zstore_cond(&dev->zs, i);

	zd_device_zone_update(dev, i, z);
	if (zd_zstore_cond(&dev->zs, i) != cond)
		zd_waiters_kick(dev->d, dev);
}

/* A zone's JSON, written as text: the release's reply sends it so, and
 * zd_zone_json reads it back for the rest. */
void zd_zone_write(struct zp_jw *w, uint32_t index, const struct zd_zone *z)
{
	zp_jw_begin(w, '{');
	zp_jw_key_i64(w, "index", index);
	zp_jw_key_u64(w, "start", z->start);
	zp_jw_key_u64(w, "len", z->len);
	zp_jw_key_u64(w, "capacity", z->capacity);
	zp_jw_key_u64(w, "wp", z->wp);
	zp_jw_key_str(w, "type", zp_type_name(z->type));
	zp_jw_key_str(w, "cond", zp_cond_name(z->cond));
	zp_jw_end(w, '}');
}

struct json_object *zd_zone_json(const struct zd_device *dev, uint32_t index,
				 const struct zd_zone *z)
{
	char buf[256];
	struct zp_jw w;

	(void)dev;
	zp_jw_init(&w, buf, sizeof(buf));
	zd_zone_write(&w, index, z);
	return w.over ? NULL : zp_parse(buf, w.len);
}

/* Loads the whole zone table. Called at device creation only, before the
 * device is visible to clients, in batches so a huge device does not need
 * a second full-size buffer. */
#define LOAD_BATCH 4096u
static int device_load_zones(struct zd_device *dev)
{
	uint32_t nz = dev->info.nr_zones;
	struct zd_zone *buf = NULL;
	uint32_t i = 0;
	int r;

	r = zd_zstore_init(&dev->zs, nz, dev->info.zone_size, dev->info.size);
	if (r < 0)
		return r == -ENOMEM ? r : -EIO;
	dev->lease_of = calloc(nz, sizeof(*dev->lease_of));
	dev->zclass = calloc(nz, sizeof(*dev->zclass));
	dev->znext = malloc(nz * sizeof(*dev->znext));
	dev->zprev = malloc(nz * sizeof(*dev->zprev));
	buf = malloc(LOAD_BATCH * sizeof(*buf));
	if (!dev->lease_of || !dev->zclass || !dev->znext || !dev->zprev || !buf) {
		r = -ENOMEM;
		goto out;
	}
	r = zd_free_index_init(&dev->free_index, nz, dev->info.logical_block_size);
	if (r < 0)
		goto out;
	dev->free_index.bulk = true;
	r = zd_run_index_init(&dev->empty_runs, nz, true);
	if (r < 0)
		goto out;
	memset(dev->cond_count, 0, sizeof(dev->cond_count));
	while (i < nz) {
		uint32_t n = nz - i < LOAD_BATCH ? nz - i : LOAD_BATCH;

		r = dev->dev->ops->report(dev->dev, i, buf, &n);
		if (r < 0)
			goto out;
		if (n == 0) {
			r = -EIO;
			goto out;
		}
		for (uint32_t k = 0; k < n; k++, i++) {
			zone_normalise(&buf[k]);
			if (zd_zstore_set(&dev->zs, i, &buf[k]) < 0) {
				zd_err("device %s: zone %u is reported as start %llu len %llu "
				       "capacity %llu wp %llu, not where the geometry puts it",
				       dev->id, i, (unsigned long long)buf[k].start,
				       (unsigned long long)buf[k].len,
				       (unsigned long long)buf[k].capacity,
				       (unsigned long long)buf[k].wp);
				r = -EIO;
				goto out;
			}
			dev->cond_count[buf[k].cond]++;
		}
	}
	for (uint32_t c = 0; c < ZD_ZC_COUNT; c++) {
		dev->class_head[c] = ZD_NIL;
		dev->class_count[c] = 0;
	}
	/* Inserted backwards so each class list starts at its lowest index. */
	for (i = nz; i-- > 0;)
		index_add(dev, i, true);
	zd_run_index_build(&dev->empty_runs);
	zd_free_index_build(&dev->free_index);
	r = 0;
out:
	free(buf);
	return r;
}

static void device_free(struct zd_device *dev)
{
	if (!dev)
		return;
	zd_device_ready_clear(dev);
	zd_dev_close(dev->dev);
	zd_zstore_fini(&dev->zs);
	free(dev->lease_of);
	free(dev->zclass);
	free(dev->znext);
	free(dev->zprev);
	zd_free_index_fini(&dev->free_index);
	zd_run_index_fini(&dev->empty_runs);
	free(dev);
}

static const char *const isolation_names[] = {
	[ZD_ISOLATION_AUTO] = "auto",
	[ZD_ISOLATION_DEVICE] = "device",
	[ZD_ISOLATION_ZONE] = "zone",
};

const char *zd_isolation_name(enum zd_isolation iso)
{
	return (unsigned)iso < sizeof(isolation_names) / sizeof(isolation_names[0])
		       ? isolation_names[iso]
		       : "invalid";
}

int zd_isolation_parse(const char *s, enum zd_isolation *out)
{
	for (unsigned i = 0; i < sizeof(isolation_names) / sizeof(isolation_names[0]); i++) {
		if (strcmp(s, isolation_names[i]) == 0) {
			*out = (enum zd_isolation)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Opens, validates and loads a device. Blocking: at start-up it runs before
 * the loop serves anyone, on reload it runs on the thread pool. */
int zd_device_open(const struct zd_device_conf *conf, int claim_fd, struct zd_device **out,
		   char *why, size_t why_len)
{
	enum zd_isolation iso = (enum zd_isolation)conf->isolation;
	struct zd_device *dev;
	int r;

	*out = NULL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	zd_list_init(&dev->link);
	zd_list_init(&dev->work_queue);
	zd_list_init(&dev->work_running);
	zd_list_init(&dev->ready_waiters);
	zd_waitq_init(&dev->waitq);
	snprintf(dev->id, sizeof(dev->id), "%s", conf->id);
	snprintf(dev->path, sizeof(dev->path), "%s", conf->path);

	if (conf->emulated) {
		struct zd_emul_params p;

		zd_emul_default_params(&p);
		r = zd_emul_parse_spec(conf->spec, &p);
		if (r < 0) {
			snprintf(why, why_len, "invalid emulated device parameters '%s'", conf->spec);
			goto fail;
		}
		r = zd_emul_open_claimed(conf->path, &p, true, iso, claim_fd, &dev->dev);
		claim_fd = -1;
		if (r < 0) {
			snprintf(why, why_len, "cannot open emulated device %s: %s", conf->path,
				 strerror(-r));
			goto fail;
		}
		/* The device's own faults replace $ZONED_EMUL_FAULT's. */
		if (conf->faults[0] && (r = zd_emul_set_faults(dev->dev, conf->faults)) < 0) {
			snprintf(why, why_len, "invalid faults '%s'", conf->faults);
			goto fail;
		}
	} else {
		char reason[256] = "";

		r = zd_kernel_open_claimed(conf->path, iso, claim_fd, &dev->dev, reason,
					   sizeof(reason));
		claim_fd = -1;
		if (r < 0) {
			snprintf(why, why_len, "%s: %s", conf->path,
				 reason[0] ? reason : strerror(-r));
			goto fail;
		}
	}
	r = dev->dev->ops->info(dev->dev, &dev->info);
	if (r < 0) {
		snprintf(why, why_len, "%s: cannot read device properties: %s", conf->path,
			 strerror(-r));
		goto fail;
	}
	r = device_load_zones(dev);
	if (r < 0) {
		snprintf(why, why_len, "%s: cannot report zones: %s", conf->path, strerror(-r));
		goto fail;
	}
	*out = dev;
	return 0;
fail:
	device_free(dev);
	return r;
}

void zd_device_discard(struct zd_device *dev)
{
	device_free(dev);
}

/* "dev-ID", with ':' (which ids may hold and systemd's fd names may not:
 * LISTEN_FDNAMES is colon-separated) as "%3A"; '%' is not an id's. */
void zd_device_fdname(const char *id, char *out, size_t size)
{
	size_t n = (size_t)snprintf(out, size, "dev-");

	/* Cut at a whole character: a name that does not fit is truncated,
	 * never left with half an escape. */
	for (; *id; id++) {
		size_t need = *id == ':' ? 3 : 1;

		if (n + need >= size)
			break;
		if (*id == ':')
			memcpy(out + n, "%3A", 3);
		else
			out[n] = *id;
		n += need;
	}
	out[n < size ? n : size - 1] = '\0';
}

/* Under systemd the device's claim goes into the service's fd store
 * (FileDescriptorStoreMax=): a restarted daemon gets it back, so the
 * device is never unclaimed between the two lives (nobody else can open
 * it exclusively, another zonedd cannot lock it). systemd keeps one copy
 * of a descriptor stored twice. */
static void device_store_claim(struct zd_device *dev)
{
	char msg[3 * ZD_ID_MAX + 40], name[3 * ZD_ID_MAX + 8];
	int fd, r;

	if (!getenv("NOTIFY_SOCKET") || !dev->dev->ops->claim_fd)
		return;
	fd = dev->dev->ops->claim_fd(dev->dev);
	if (fd < 0)
		return;
	zd_device_fdname(dev->id, name, sizeof(name));
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	if (r > 0) {
		dev->claim_stored = true;
		zd_debug("device %s: claim stored in systemd's fd store", dev->id);
	} else if (r < 0) {
		zd_warn("device %s: cannot store its claim in systemd's fd store: %s (a restart "
			"leaves it unclaimed for a moment)", dev->id, strerror(-r));
	}
}

int zd_device_attach(struct zd_daemon *d, struct zd_device *dev, char *why, size_t why_len)
{
	char f1[ZD_ID_MAX + 8];
	const char *fields[] = { f1, NULL };

	if (zd_device_find(d, dev->id)) {
		snprintf(why, why_len, "device id '%s' is already in use", dev->id);
		return -EEXIST;
	}
	dev->d = d;
	zd_list_add_tail(&d->devices, &dev->link);
	snprintf(f1, sizeof(f1), "DEVICE=%s", dev->id);
	zd_logv_fields(LOG_INFO, fields,
		       "device %s: %s %s, %u zones of %llu MiB (capacity %llu MiB), "
		       "%u conventional, max open %u, max active %u",
		       dev->id, dev->info.backend, dev->path, dev->info.nr_zones,
		       (unsigned long long)(dev->info.zone_size >> 20),
		       (unsigned long long)(dev->info.zone_capacity >> 20),
		       dev->info.nr_conventional, dev->info.max_open, dev->info.max_active);
	zd_event_device(d, ZD_EV_DEVICE_ADDED, dev->id, NULL);
	device_store_claim(dev);
	return 0;
}

void zd_device_unstore(struct zd_device *dev)
{
	char msg[3 * ZD_ID_MAX + 40], name[3 * ZD_ID_MAX + 8];

	if (!dev->claim_stored)
		return;
	zd_device_fdname(dev->id, name, sizeof(name));
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	sd_pid_notify(0, 0, msg);
	dev->claim_stored = false;
}

int zd_device_add(struct zd_daemon *d, const struct zd_device_conf *conf, char *why,
		  size_t why_len)
{
	char name[3 * ZD_ID_MAX + 8];
	struct zd_device *dev;
	int r;

	if (zd_device_find(d, conf->id)) {
		snprintf(why, why_len, "device id '%s' is already in use", conf->id);
		return -EEXIST;
	}
	zd_device_fdname(conf->id, name, sizeof(name));
	r = zd_device_open(conf, zd_daemon_passed_fd(d, name), &dev, why, why_len);
	if (r < 0)
		return r;
	r = zd_device_attach(d, dev, why, why_len);
	if (r < 0)
		device_free(dev);
	return r;
}

struct zd_device *zd_device_find(struct zd_daemon *d, const char *id_or_path)
{
	struct zd_list *pos, *tmp;

	if (!id_or_path)
		return NULL;
	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);

		if (strcmp(dev->id, id_or_path) == 0)
			return dev;
	}
	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);

		if (strcmp(dev->path, id_or_path) == 0)
			return dev;
	}
	return NULL;
}

/* Frees a device taken out of the list once no work refers to it. */
void zd_device_release(struct zd_device *dev)
{
	if (!zd_list_empty(&dev->link))
		return;
	zd_device_ready_clear(dev);
	/* Gone from the configuration: its waiters are told so (they hold a
	 * reference each, so this runs while any is left). */
	if (dev->d && !zd_list_empty(&dev->waitq.list))
		zd_waiters_kick(dev->d, dev);
	if (dev->refs == 0)
		device_free(dev);
}

void zd_device_free_all(struct zd_daemon *d)
{
	struct zd_list *pos, *tmp;

	zd_list_for_each_safe(pos, tmp, &d->devices) {
		struct zd_device *dev = zd_container_of(pos, struct zd_device, link);

		zd_list_del(&dev->link);
		zd_device_release(dev);
	}
}

static void work_start_next(struct zd_device *dev);

#define ZD_QUEUE_SCAN 64

static void work_run(uv_work_t *req)
{
	struct zd_work *w = zd_container_of(req, struct zd_work, req);
	uint32_t n = 1;

	w->status = w->run(w);
	/* What the zone is now, whatever the operation left: a device that is
	 * gone has nothing to say. */
	if (w->status < 0 && w->recheck && w->status != -ENODEV && w->status != -ENXIO &&
	    w->dev->dev->ops->report(w->dev->dev, w->fail_zone, &w->after, &n) == 0 && n == 1)
		w->have_after = true;
}

static void work_after(uv_work_t *req, int status)
{
	struct zd_work *w = zd_container_of(req, struct zd_work, req);
	struct zd_device *dev = w->dev;

	/* status is UV_ECANCELED only when the loop is torn down with work
	 * queued; the operation did not run. */
	if (status < 0)
		w->status = -ECANCELED;
	zd_list_del(&w->link);
	dev->nr_running--;
	if (w->have_after)
		zd_device_zone_update(dev, w->fail_zone, &w->after);
	status = w->status;
	/* Noted after done (which frees w) so its reply is the operation's
	 * own answer; the work's device reference is still held here. */
	{
		struct zd_work note = { .fail_zone = w->fail_zone, .zone_work = w->zone_work };

		w->done(w, status);
		zd_device_note(dev, &note, status);
	}
	dev->refs--;
	work_start_next(dev);
	zd_device_release(dev);
}

/* The zones a work may touch: [*from, *from + *n). A count of 0 is the
 * whole device (a report pages through it, a device.open of it, the ready
 * set's fill of zones anywhere). */
static void work_span(const struct zd_device *dev, const struct zd_work *w, uint32_t *from,
		      uint32_t *n)
{
	*from = w->count ? w->zone : 0;
	*n = w->count ? w->count : dev->info.nr_zones;
}

static bool spans_overlap(const struct zd_device *dev, const struct zd_work *a,
			  const struct zd_work *b)
{
	uint32_t af, an, bf, bn;

	work_span(dev, a, &af, &an);
	work_span(dev, b, &bf, &bn);
	return af < bf + bn && bf < af + an;
}

/* May w start now? Not beside a running work it overlaps, and not ahead
 * of a queued one it overlaps: each zone sees its works in the order they
 * were queued (a fence before the next grant of its zones), whatever runs
 * beside them on other zones. */
static bool work_may_start(const struct zd_device *dev, const struct zd_work *w)
{
	const struct zd_list *pos;

	for (pos = dev->work_running.next; pos != &dev->work_running; pos = pos->next)
		if (spans_overlap(dev, w, zd_container_of(pos, struct zd_work, link)))
			return false;
	for (pos = dev->work_queue.next; pos != &w->link; pos = pos->next)
		if (spans_overlap(dev, w, zd_container_of(pos, struct zd_work, link)))
			return false;
	return true;
}

/* Starts what may start, in queue order. A backend that is not concurrent
 * runs one work at a time; one that is, up to ZD_DEVICE_PARALLEL on
 * disjoint zones, so a lease's grant does not wait behind another zone's
 * slow device-mapper removal. The scan stops after ZD_QUEUE_SCAN queued
 * works: a deep queue costs a bounded look, and what lies past it waits. */
static void work_start_next(struct zd_device *dev)
{
	unsigned max = dev->dev->ops->concurrent ? ZD_DEVICE_PARALLEL : 1, scanned = 0;
	struct zd_list *pos, *next;

	for (pos = dev->work_queue.next; pos != &dev->work_queue && dev->nr_running < max &&
					 scanned < ZD_QUEUE_SCAN;
	     pos = next, scanned++) {
		struct zd_work *w = zd_container_of(pos, struct zd_work, link);
		int r;

		next = pos->next;
		if (!work_may_start(dev, w))
			continue;
		zd_list_del(&w->link);
		zd_list_add_tail(&dev->work_running, &w->link);
		if (++dev->nr_running > dev->peak_running)
			dev->peak_running = dev->nr_running;
		r = uv_queue_work(dev->d->loop, &w->req, work_run, work_after);
		if (r < 0) {
			zd_list_del(&w->link);
			dev->nr_running--;
			/* done may queue (and start) works itself: the scan
			 * starts over rather than trust `next`. */
			w->done(w, -ENOMEM);
			dev->refs--;
			work_start_next(dev);
			return;
		}
	}
}

int zd_work_queue(struct zd_device *dev, struct zd_work *w)
{
	if (!w->reads_only && (dev->nr_ready || dev->filling))
		zd_device_ready_drop(dev, w->zone, w->count ? w->count : dev->info.nr_zones);
	w->dev = dev;
	dev->refs++;
	zd_list_add_tail(&dev->work_queue, &w->link);
	work_start_next(dev);
	return 0;
}

/* --- fencing ---------------------------------------------------------- */

static int fence_run(struct zd_work *w)
{
	return w->dev->dev->ops->lease_fence(w->dev->dev, w->zone, w->count);
}

static void fence_done(struct zd_work *w, int status)
{
	struct zd_device *dev = w->dev;

	/* A zone whose old holder may still reach it must not be anyone
	 * else's: a device that cannot fence serves nobody. */
	if (status < 0 && status != -ECANCELED && !dev->failed)
		zd_device_fail(dev, "cannot fence zones %u-%u of an ended lease: %s", w->zone,
			       w->zone + w->count - 1, strerror(-status));
	free(w);
}

bool zd_device_isolated(const struct zd_device *dev)
{
	return dev->info.isolation == ZD_ISOLATION_ZONE && dev->dev->ops->lease_fence;
}

/* Queued on the device, so whatever is queued after it (the grant of the
 * zone to its next holder) runs once the old holder's path is cut. */
int zd_device_fence(struct zd_device *dev, uint32_t zone, uint32_t count)
{
	struct zd_work *w;

	if (!zd_device_isolated(dev))
		return 0;
	w = calloc(1, sizeof(*w));
	if (!w) {
		zd_device_fail(dev, "cannot fence zones %u-%u: out of memory", zone,
			       zone + count - 1);
		return -ENOMEM;
	}
	w->zone = zone;
	w->count = count;
	w->run = fence_run;
	w->done = fence_done;
	return zd_work_queue(dev, w);
}

/* --- the ready set ------------------------------------------------------
 *
 * A lease.acquire that goes through the work queue pays the thread pool's
 * round trip (a futex wakeup there, an eventfd back) for a refresh and an
 * open that, for a free empty zone, have a known answer. The ready set
 * holds a few such zones refreshed and opened ahead, by a refill work of
 * its own on the queue, so the loop grants one at once; the matching
 * release is answered on the loop too when ops->lease_probe says the zone
 * is untouched and nothing else holds it (lease.c).
 *
 * Only under zone isolation, where every lease has a path of its own and
 * a probe can tell whether a given-out descriptor is still open; a device
 * in device isolation, or a backend without lease_probe (the kernel's: a
 * dm mapping per lease is made when it is granted), takes the queue as
 * before. The zones stay in the allocator's EMPTY list: anything that
 * would change one of them first drops it from the set (a lease of it
 * through the queue, a zone operation, any work but a report), so a zone
 * in the set is always exactly what the cache says, and closing its
 * descriptors is all it takes to give it up. */

#define ZD_READY_RETRY_MS 1000

struct ready_fill {
	struct zd_work w;
	int flags;
	bool off;               /* the backend declined: no more refills */
	unsigned n;
	struct {
		uint32_t zone;
		int fd, probe_fd;
		bool direct;
		bool dropped;       /* something queued after the fill touched it */
		int status;
		struct zd_zone z;
	} e[ZD_READY_MAX / 2];
};

static bool ready_enabled(const struct zd_device *dev)
{
	const struct zd_backend_ops *ops = dev->dev->ops;

	return zd_device_isolated(dev) && ops->probe_open && ops->lease_probe && !dev->ready_off &&
	       !dev->failed && !dev->draining && !zd_list_empty(&dev->link);
}

/* Whether free zone z may join the set now: room in it, and the zone
 * unleased and empty in both the allocator's class and the cache. */
static bool ready_admits(const struct zd_device *dev, uint32_t z)
{
	return ready_enabled(dev) && dev->nr_ready < ZD_READY_MAX && !dev->lease_of[z] &&
	       dev->zclass[z] == ZD_ZC_EMPTY && zd_zstore_cond(&dev->zs, z) == ZP_COND_EMPTY;
}

static void ready_close(struct zd_ready *r)
{
	close(r->fd);
	close(r->probe_fd);
}

static bool ready_has(const struct zd_device *dev, uint32_t zone)
{
	for (unsigned i = 0; i < dev->nr_ready; i++)
		if (dev->ready[i].zone == zone)
			return true;
	if (dev->filling)
		for (unsigned i = 0; i < dev->filling->n; i++)
			if (dev->filling->e[i].zone == zone)
				return true;
	return false;
}

static int ready_fill_run(struct zd_work *w)
{
	struct ready_fill *f = zd_container_of(w, struct ready_fill, w);
	struct zd_dev *dev = w->dev->dev;

	for (unsigned i = 0; i < f->n; i++) {
		struct zd_zone_fds zf;
		int r, fl;

		f->e[i].fd = -1;
		/* First, so a backend that declines (-EOPNOTSUPP) has done no
		 * device operation. */
		r = f->e[i].probe_fd = dev->ops->probe_open(dev, f->e[i].zone);
		if (r >= 0)
			r = dev->ops->refresh_zone(dev, f->e[i].zone, UINT64_MAX, &f->e[i].z);
		if (r == 0 && f->e[i].z.cond != ZP_COND_EMPTY)
			r = -EBUSY;
		if (r == 0)
			r = dev->ops->open_zones(dev, f->e[i].zone, 1, f->flags, true, &zf);
		if (r == 0)
			f->e[i].fd = zf.fd[0];
		if (r < 0 && f->e[i].probe_fd >= 0) {
			close(f->e[i].probe_fd);
			f->e[i].probe_fd = -1;
		}
		if (r == -EOPNOTSUPP)
			f->off = true;
		fl = r == 0 ? fcntl(f->e[i].fd, F_GETFL) : 0;
		f->e[i].direct = fl >= 0 && (fl & O_DIRECT);
		f->e[i].status = r;
	}
	/* What one zone answered is its own: the fill as a whole does not
	 * count as the device's success or failure (zd_device_note). */
	return 0;
}

static void ready_fill_done(struct zd_work *w, int status)
{
	struct ready_fill *f = zd_container_of(w, struct ready_fill, w);
	struct zd_device *dev = w->dev;

	struct zd_list waiters;
	unsigned opened = 0;

	(void)status;
	dev->filling = NULL;
	dev->ready_off |= f->off;
	for (unsigned i = 0; i < f->n; i++) {
		uint32_t z = f->e[i].zone;
		struct zd_ready r = { .zone = z, .fd = f->e[i].fd, .probe_fd = f->e[i].probe_fd,
				      .flags = f->flags, .direct = f->e[i].direct };
		bool ours = !f->e[i].dropped && !dev->lease_of[z];

		/* A zone leased or changed meanwhile has a newer answer coming
		 * from its own work; the refresh of one still free is news. */
		if (ours && (f->e[i].status == 0 || f->e[i].status == -EBUSY))
			zd_device_zone_update(dev, z, &f->e[i].z);
		opened += f->e[i].status == 0;
		if (f->e[i].status == 0 && ours && ready_admits(dev, z))
			dev->ready[dev->nr_ready++] = r;
		else if (f->e[i].status == 0)
			ready_close(&r);
	}
	/* Nothing could be opened (no space for a zone file, out of fds):
	 * every acquire would queue another fill that fails the same way, in
	 * front of real work. The queue serves alone for a second. */
	if (f->n && !opened && dev->d)
		dev->ready_retry_ms = zd_now_ms(dev->d) + ZD_READY_RETRY_MS;
	free(f);
	/* Those that waited for this fill try again, in order: most take a
	 * zone it brought, the others the queue. */
	zd_list_init(&waiters);
	zd_list_splice_head(&waiters, &dev->ready_waiters);
	dev->ready_promised = 0;
	/* The fill's work holds the device until this returns. */
	while (!zd_list_empty(&waiters)) {
		struct zd_ready_waiter *rw = zd_container_of(waiters.next, struct zd_ready_waiter,
							     link);

		zd_list_del(&rw->link);
		rw->ready(rw);
	}
}

/* Parks rw until the refill in flight is done, when that refill opens
 * zones with `flags` and has one nobody waits for yet. */
bool zd_device_ready_wait(struct zd_device *dev, int flags, struct zd_ready_waiter *rw)
{
	struct ready_fill *f = dev->filling;

	if (!f || f->flags != flags || dev->ready_promised >= f->n || !ready_enabled(dev))
		return false;
	dev->ready_promised++;
	zd_list_add_tail(&dev->ready_waiters, &rw->link);
	return true;
}

/* Queues a refill of up to half the set from the head of the allocator's
 * EMPTY list, the zones it would hand out next. Called once the acquire
 * that wanted a zone has reserved it, so the fill never opens that one:
 * a descriptor of the fill's on a leased zone would look like a holder to
 * its release. */
void zd_device_ready_refill(struct zd_device *dev)
{
	struct ready_fill *f;
	unsigned want;

	/* ready_flags is set by the first acquire that missed. */
	if (dev->filling || dev->nr_ready > ZD_READY_MAX / 2 || !ready_enabled(dev) ||
	    (dev->ready_flags & O_ACCMODE) != O_RDWR ||
	    (dev->ready_retry_ms && zd_now_ms(dev->d) < dev->ready_retry_ms))
		return;
	want = ZD_READY_MAX - dev->nr_ready;
	if (want > ZD_READY_MAX / 2)
		want = ZD_READY_MAX / 2;
	f = calloc(1, sizeof(*f));
	if (!f)
		return;
	for (uint32_t z = dev->class_head[ZD_ZC_EMPTY]; z != ZD_NIL && f->n < want;
	     z = dev->znext[z])
		if (!ready_has(dev, z))
			f->e[f->n++].zone = z;
	if (f->n == 0) {
		free(f);
		return;
	}
	f->flags = dev->ready_flags;
	/* Zones anywhere: the whole device, for the queue's ordering. */
	f->w.zone = f->e[0].zone;
	f->w.count = 0;
	f->w.reads_only = true;
	f->w.run = ready_fill_run;
	f->w.done = ready_fill_done;
	dev->filling = f;
	zd_work_queue(dev, &f->w);
}

/* Zone `zone`'s lease was released untouched (lease.c release_here): the
 * zone is empty, free, and nothing but probe_fd (taken here) reaches it.
 * With a new descriptor it is what a refill would have made of it, at two
 * syscalls on the loop instead of a dozen on the pool. */
void zd_device_ready_recycle(struct zd_device *dev, uint32_t zone, int probe_fd)
{
	const struct zd_backend_ops *ops = dev->dev->ops;
	struct zd_ready r = { .zone = zone, .fd = -1, .probe_fd = probe_fd,
			      .flags = dev->ready_flags };

	if (ops->probe_reopen && (dev->ready_flags & O_ACCMODE) == O_RDWR &&
	    ready_admits(dev, zone) && !ready_has(dev, zone))
		r.fd = ops->probe_reopen(dev->dev, zone, probe_fd, dev->ready_flags, &r.direct);
	if (r.fd < 0) {
		close(probe_fd);
		return;
	}
	dev->ready[dev->nr_ready++] = r;
	dev->d->stats.ready_recycled++;
}

/* A zone of the set for a lease.acquire opening with `flags`: `zone` (what
 * the allocator picked) when it is there, else any when `any` (the
 * request named no zone; all empty zones are alike to it). The entry's
 * descriptors are the caller's. False when none fits: the caller takes the
 * queue. Either way the caller then calls zd_device_ready_refill(). */
bool zd_device_ready_take(struct zd_device *dev, uint32_t zone, bool any, int flags,
			  struct zd_ready *out)
{
	unsigned pick = ZD_READY_MAX, other = ZD_READY_MAX;

	if (!ready_enabled(dev))
		return false;
	for (unsigned i = 0; i < dev->nr_ready; i++) {
		if (dev->ready[i].flags != flags) {
			other = i;
			continue;
		}
		if (dev->ready[i].zone == zone) {
			pick = i;
			break;
		}
		if (any && pick == ZD_READY_MAX)
			pick = i;
	}
	if (pick == ZD_READY_MAX) {
		/* The clients open differently now (O_DIRECT or not): the set
		 * turns over to their flags, one zone a miss. */
		dev->ready_flags = flags;
		if (other != ZD_READY_MAX) {
			ready_close(&dev->ready[other]);
			dev->ready[other] = dev->ready[--dev->nr_ready];
		}
		return false;
	}
	*out = dev->ready[pick];
	dev->ready[pick] = dev->ready[--dev->nr_ready];
	return true;
}

/* Something is about to change zones [zone, zone + count): they leave the
 * set, and a refill in flight does not add them. */
void zd_device_ready_drop(struct zd_device *dev, uint32_t zone, uint32_t count)
{
	for (unsigned i = 0; i < dev->nr_ready;) {
		if (dev->ready[i].zone - zone < count) {
			ready_close(&dev->ready[i]);
			dev->ready[i] = dev->ready[--dev->nr_ready];
		} else {
			i++;
		}
	}
	if (dev->filling)
		for (unsigned i = 0; i < dev->filling->n; i++)
			if (dev->filling->e[i].zone - zone < count)
				dev->filling->e[i].dropped = true;
}

void zd_device_ready_clear(struct zd_device *dev)
{
	while (dev->nr_ready)
		ready_close(&dev->ready[--dev->nr_ready]);
	if (dev->filling)
		for (unsigned i = 0; i < dev->filling->n; i++)
			dev->filling->e[i].dropped = true;
}

/* --- failure --------------------------------------------------------- */

/* The rule: an operation that fails with ENODEV or ENXIO means the device
 * is gone (removed, or its driver let go of it), at once. EIO means one
 * command failed: the device is failed only after ZD_DEVICE_EIO_FAIL
 * operations in a row failed with it, with no success in between, and
 * they touched more than one zone (or the whole device: a report, an fd):
 * a single dead zone that its holder keeps trying does not take the other
 * zones down with it. Any other answer (EPERM, ENOSPC, EBUSY...) comes from
 * a device that is there and ends the streak. */
void zd_device_note(struct zd_device *dev, const struct zd_work *w, int status)
{
	uint32_t zone = w->zone_work ? w->fail_zone : ZD_NIL;

	if (dev->failed || status == -ECANCELED || status == -ENOMEM)
		return;
	if (status == -ENODEV || status == -ENXIO) {
		zd_device_fail(dev, "the device is gone (%s)", strerror(-status));
		return;
	}
	if (status != -EIO) {
		dev->eio_streak = 0;
		return;
	}
	if (dev->eio_streak++ == 0) {
		dev->eio_zone = zone;
		dev->eio_spread = zone == ZD_NIL;
	} else if (zone != dev->eio_zone || zone == ZD_NIL) {
		dev->eio_spread = true;
	}
	if (dev->eio_streak >= ZD_DEVICE_EIO_FAIL && dev->eio_spread)
		zd_device_fail(dev, "%u operations in a row failed with an I/O error",
			       dev->eio_streak);
}

void zd_device_fail(struct zd_device *dev, const char *fmt, ...)
{
	char f1[ZD_ID_MAX + 8];
	const char *fields[] = { f1, NULL };
	unsigned revoked = 0;
	va_list ap;

	if (dev->failed)
		return;
	dev->failed = true;
	zd_device_ready_clear(dev);
	va_start(ap, fmt);
	vsnprintf(dev->failure, sizeof(dev->failure), fmt, ap);
	va_end(ap);
	zp_utf8_clean(dev->failure); /* it goes out in replies and events */
	/* Told first, so a subscriber reads the revocations that follow as
	 * the failure's. */
	if (dev->d)
		zd_event_device(dev->d, ZD_EV_DEVICE_FAILED, dev->id, dev->failure);
	/* Revoked through the lease lifecycle like a forced zone operation:
	 * each holder's next call gets -32007, the lease table forgets them,
	 * waiters parked on them are put back and then refused. */
	for (uint32_t i = 0; i < dev->info.nr_zones; i++) {
		if (dev->lease_of[i]) {
			zd_lease_revoke_zone(dev, i, "device-failed");
			/* A release in flight keeps its zone until its work ends. */
			revoked += !dev->lease_of[i];
		}
	}
	snprintf(f1, sizeof(f1), "DEVICE=%s", dev->id);
	zd_logv_fields(LOG_ERR, fields, "device %s failed: %s; %u lease(s) revoked, no new work "
		       "is taken", dev->id, dev->failure, revoked);
	/* Waiting acquires of it are answered -32002 from the next idle turn. */
	if (dev->d)
		zd_waiters_kick(dev->d, dev);
}

void zd_device_failed_error(struct zd_call *call, const struct zd_device *dev)
{
	zd_call_error(call, ZP_ERR_NO_DEVICE, "device '%s' failed: %s", dev->id, dev->failure);
	json_object_put(call->err_data);
	call->err_data = json_object_new_object();
	json_object_object_add(call->err_data, "failure", json_object_new_string(dev->failure));
}
