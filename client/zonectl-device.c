/* zonectl validate and info --sysfs: a device looked at directly, without the
 * daemon, through the same checks (daemon/blkdev.c) the daemon's kernel
 * backend makes before it claims a device. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <json-c/json.h>

#include "client/zonectl-bench.h" /* zonectl_error */
#include "client/zonectl-device.h"
#include "daemon/blkdev.h"

enum status { ST_OK, ST_WARN, ST_FAIL, ST_SKIP };
static const char *const status_name[] = { "ok", "warn", "fail", "skip" };

struct report {
	bool json;
	const char *path;
	struct json_object *checks; /* with --json */
	bool failed;
};

static void put(struct report *rp, const char *check, enum status st, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(struct report *rp, const char *check, enum status st, const char *fmt, ...)
{
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (st == ST_FAIL)
		rp->failed = true;
	if (rp->json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "check", json_object_new_string(check));
		json_object_object_add(o, "status", json_object_new_string(status_name[st]));
		json_object_object_add(o, "detail", json_object_new_string(detail));
		json_object_array_add(rp->checks, o);
	} else {
		printf("%s: %-4s  %-14s  %s\n", rp->path, status_name[st], check, detail);
	}
}

#define SIZE(v) zonectl_size_str((v), (char[32]){ 0 }, 32)

/* A reason from blkdev.c starts with the path; the line already has it. */
static const char *unpathed(const char *why, const char *path)
{
	size_t n = strlen(path);

	if (strncmp(why, path, n) == 0) {
		why += n;
		if (why[0] == ':')
			why++;
		while (*why == ' ')
			why++;
	}
	return why;
}

static void validate_one(struct report *rp)
{
	const char *path = rp->path;
	struct zd_blkdev_props p;
	char why[1024], model[16];
	bool zoned, ordered;
	dev_t rdev;
	int sysdir, r;

	r = zd_blkdev_stat(path, &rdev, why, sizeof(why));
	if (r < 0) {
		put(rp, "block-device", ST_FAIL, "%s", unpathed(why, path));
		return;
	}
	sysdir = zd_blkdev_sysfs_open(NULL, rdev);
	if (sysdir < 0) {
		put(rp, "block-device", ST_FAIL, "no sysfs directory for %u:%u: %s", major(rdev),
		    minor(rdev), strerror(-sysdir));
		return;
	}
	r = zd_blkdev_read_props(sysdir, &p);
	if (r < 0) {
		put(rp, "block-device", ST_FAIL, "cannot read sysfs for %u:%u: %s", major(rdev),
		    minor(rdev), strerror(-r));
		goto out;
	}
	put(rp, "block-device", ST_OK, "%u:%u %s, %s%s", major(rdev), minor(rdev), p.name,
	    SIZE(p.size), p.read_only ? ", read-only" : "");

	if (zd_blkdev_check_whole(sysdir, path, why, sizeof(why)) < 0)
		put(rp, "whole-device", ST_FAIL, "a partition of %s; give the whole device",
		    p.parent);
	else
		put(rp, "whole-device", ST_OK, "not a partition");

	zoned = zd_blkdev_check_zoned(sysdir, path, model, sizeof(model), why, sizeof(why)) == 0;
	if (zoned)
		put(rp, "zoned-model", ST_OK, "%s", model);
	else
		put(rp, "zoned-model", ST_FAIL, "%s", unpathed(why, path));

	if (!zoned) {
		put(rp, "zone-geometry", ST_SKIP, "not a zoned device");
		put(rp, "limits", ST_SKIP, "not a zoned device");
	} else if (p.partition) {
		put(rp, "zone-geometry", ST_SKIP, "a partition");
		put(rp, "limits", ST_SKIP, "a partition");
	} else {
		if (zd_blkdev_check_geometry(&p, path, why, sizeof(why)) < 0)
			put(rp, "zone-geometry", ST_FAIL, "%s", unpathed(why, path));
		else
			put(rp, "zone-geometry", ST_OK, "%" PRIu32 " zones of %s", p.nr_zones,
			    SIZE(p.zone_size));
		if (zd_blkdev_check_limits(&p, path, why, sizeof(why)) < 0) {
			put(rp, "limits", ST_FAIL, "%s", unpathed(why, path));
		} else {
			char o[16] = "no limit", a[16] = "no limit";

			if (p.max_open)
				snprintf(o, sizeof(o), "%" PRIu32, p.max_open);
			if (p.max_active)
				snprintf(a, sizeof(a), "%" PRIu32, p.max_active);
			put(rp, "limits", ST_OK, "max open %s, max active %s", o, a);
		}
	}

	if (zd_blkdev_check_mounts(sysdir, NULL, path, rdev, why, sizeof(why)) < 0)
		put(rp, "mounts", ST_FAIL, "%s", unpathed(why, path));
	else
		put(rp, "mounts", ST_OK, "not mounted, nor any partition");
	if (zd_blkdev_check_holders(sysdir, path, why, sizeof(why)) < 0)
		put(rp, "holders", ST_FAIL, "%s", unpathed(why, path));
	else
		put(rp, "holders", ST_OK, "no device-mapper, md or other holder");

	ordered = zd_blkdev_needs_ordering_scheduler(NULL);
	if (zd_blkdev_check_scheduler(p.scheduler, NULL, path, why, sizeof(why)) < 0)
		put(rp, "scheduler", ST_FAIL, "%s", unpathed(why, path));
	else
		put(rp, "scheduler", ST_OK, "%s%s", p.scheduler,
		    ordered ? " (this kernel, before 6.10, needs mq-deadline or none)"
			    : " (this kernel has zone write plugging)");

	r = zd_blkdev_try_exclusive(path, why, sizeof(why));
	/* Not a verdict on the device: this user may not open it (zonedd
	 * runs as root), or something above the device (a container's
	 * device policy, a read-only node) forbids it here. */
	if ((r == -EACCES || r == -EPERM || r == -EROFS) && geteuid() != 0)
		put(rp, "exclusive-open", ST_WARN, "cannot try as uid %u: %s (run as root, as zonedd)",
		    (unsigned)geteuid(), strerror(-r));
	else if (r == -EACCES || r == -EPERM || r == -EROFS)
		put(rp, "exclusive-open", ST_WARN, "cannot try here: %s", strerror(-r));
	else if (r < 0)
		put(rp, "exclusive-open", ST_FAIL, "%s", unpathed(why, path));
	else
		put(rp, "exclusive-open", ST_OK, "nothing holds it exclusively");
out:
	close(sysdir);
}

int zonectl_validate(char *const *paths, int n, bool json)
{
	struct json_object *doc = NULL, *devs = NULL;
	bool failed = false;

	if (json) {
		doc = json_object_new_object();
		devs = json_object_new_array();
		if (!doc || !devs) {
			json_object_put(doc);
			json_object_put(devs);
			zonectl_error(-ENOMEM, "validate: out of memory");
			return 1;
		}
		json_object_object_add(doc, "devices", devs);
	}
	for (int i = 0; i < n; i++) {
		struct report rp = { .json = json, .path = paths[i] };

		if (json)
			rp.checks = json_object_new_array();
		validate_one(&rp);
		failed |= rp.failed;
		if (json) {
			struct json_object *d = json_object_new_object();

			json_object_object_add(d, "path", json_object_new_string(paths[i]));
			json_object_object_add(d, "ok", json_object_new_boolean(!rp.failed));
			json_object_object_add(d, "checks", rp.checks);
			json_object_array_add(devs, d);
		}
	}
	if (json) {
		json_object_object_add(doc, "ok", json_object_new_boolean(!failed));
		puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(doc);
	}
	return failed ? 1 : 0;
}

int zonectl_info_sysfs(const char *path, bool json)
{
	struct zd_blkdev_props p;
	char why[1024];
	dev_t rdev;
	int sysdir, r;

	r = zd_blkdev_stat(path, &rdev, why, sizeof(why));
	if (r < 0) {
		zonectl_error(r, why);
		return 1;
	}
	sysdir = zd_blkdev_sysfs_open(NULL, rdev);
	if (sysdir < 0) {
		snprintf(why, sizeof(why), "%s: no sysfs directory for %u:%u: %s", path,
			 major(rdev), minor(rdev), strerror(-sysdir));
		zonectl_error(sysdir, why);
		return 1;
	}
	r = zd_blkdev_read_props(sysdir, &p);
	close(sysdir);
	if (r < 0) {
		snprintf(why, sizeof(why), "%s: cannot read sysfs: %s", path, strerror(-r));
		zonectl_error(r, why);
		return 1;
	}
	if (json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "name", json_object_new_string(p.name));
		snprintf(why, sizeof(why), "%u:%u", major(rdev), minor(rdev));
		json_object_object_add(o, "devnum", json_object_new_string(why));
		json_object_object_add(o, "partition", json_object_new_boolean(p.partition));
		json_object_object_add(o, "parent", json_object_new_string(p.parent));
		json_object_object_add(o, "model", json_object_new_string(p.zoned));
		json_object_object_add(o, "vendor", json_object_new_string(p.vendor));
		json_object_object_add(o, "product", json_object_new_string(p.product));
		json_object_object_add(o, "capacity", json_object_new_uint64(p.size));
		json_object_object_add(o, "start", json_object_new_uint64(p.start));
		json_object_object_add(o, "read_only", json_object_new_boolean(p.read_only));
		json_object_object_add(o, "logical_block_size",
				       json_object_new_uint64(p.logical_block_size));
		json_object_object_add(o, "physical_block_size",
				       json_object_new_uint64(p.physical_block_size));
		json_object_object_add(o, "zone_size", json_object_new_uint64(p.zone_size));
		json_object_object_add(o, "nr_zones", json_object_new_uint64(p.nr_zones));
		json_object_object_add(o, "max_open", json_object_new_uint64(p.max_open));
		json_object_object_add(o, "max_active", json_object_new_uint64(p.max_active));
		json_object_object_add(o, "scheduler", json_object_new_string(p.scheduler));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		return 0;
	}
	printf("path:                %s\n", path);
	printf("name:                %s (%u:%u)\n", p.name, major(rdev), minor(rdev));
	if (p.partition)
		printf("partition of:        %s, from byte %" PRIu64 "\n", p.parent, p.start);
	printf("model:               %s\n", p.zoned);
	printf("vendor:              %s\n", p.vendor);
	printf("product:             %s\n", p.product);
	printf("capacity:            %s (%" PRIu64 " bytes)%s\n", SIZE(p.size), p.size,
	       p.read_only ? ", read-only" : "");
	printf("logical block size:  %" PRIu32 "\n", p.logical_block_size);
	printf("physical block size: %" PRIu32 "\n", p.physical_block_size);
	if (strcmp(p.zoned, "none") != 0) {
		printf("zones:               %" PRIu32 "\n", p.nr_zones);
		printf("zone size:           %s\n", SIZE(p.zone_size));
		if (p.max_open)
			printf("max open:            %" PRIu32 "\n", p.max_open);
		else
			printf("max open:            no limit\n");
		if (p.max_active)
			printf("max active:          %" PRIu32 "\n", p.max_active);
		else
			printf("max active:          no limit\n");
	}
	printf("scheduler:           %s\n", p.scheduler);
	return 0;
}
