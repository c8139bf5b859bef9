/* Device-mapper over its ioctls (<linux/dm-ioctl.h>): what the kernel
 * backend needs to build, check, fence and remove per-lease mappings. Each
 * call fills a struct dm_ioctl with its payload after it and gets its answer
 * back in the same buffer (drivers/md/dm-ioctl.c, ctl_ioctl). */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "daemon/dm.h"

#define CONTROL "/dev/mapper/control"
/* The interface we need, not the one we were built with: the kernel refuses
 * a caller newer than itself. 4.27 (Linux 3.13) added deferred removal. */
#define NEED_MAJOR 4
#define NEED_MINOR 27
/* Enough for any single-device call and a short table; a list grows. */
#define BUF_SIZE 16384
#define LIST_MAX (4 * 1024 * 1024)

union dm_buf {
	struct dm_ioctl io;
	uint64_t align; /* dm_target_spec and dm_name_list are 8-byte aligned */
	char raw[BUF_SIZE];
};

static bool name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	return n > 0 && n < DM_NAME_LEN && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

static void init_io(struct dm_ioctl *io, size_t size, const char *name)
{
	memset(io, 0, size);
	io->version[0] = NEED_MAJOR;
	io->version[1] = NEED_MINOR;
	io->data_size = (uint32_t)size;
	io->data_start = sizeof(*io);
	if (name)
		snprintf(io->name, sizeof(io->name), "%s", name);
}

static int call(int ctl, unsigned long req, struct dm_ioctl *io)
{
	if (ioctl(ctl, req, io) < 0)
		return -errno;
	return 0;
}

/* A call on one named mapping with no payload. */
static int simple(int ctl, unsigned long req, const char *name, uint32_t flags,
		  struct dm_ioctl *out)
{
	struct dm_ioctl io;
	int r;

	if (!name_ok(name))
		return -EINVAL;
	init_io(&io, sizeof(io), name);
	io.flags = flags;
	r = call(ctl, req, &io);
	if (r == 0 && out)
		*out = io;
	return r;
}

int zd_dm_control_open(int *ctl, char *why, size_t why_len)
{
	struct dm_ioctl io;
	int fd, r;

	*ctl = -1;
	fd = open(CONTROL, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			snprintf(why, why_len, "device-mapper is not available (no %s; "
				 "modprobe dm-mod)", CONTROL);
		else
			snprintf(why, why_len, "cannot open %s: %s", CONTROL, strerror(-r));
		return r;
	}
	init_io(&io, sizeof(io), NULL);
	r = call(fd, DM_VERSION, &io);
	if (r < 0) {
		/* ctl_ioctl() checks CAP_SYS_ADMIN before anything else. */
		if (r == -EACCES || r == -EPERM)
			snprintf(why, why_len, "device-mapper needs CAP_SYS_ADMIN, which zonedd "
				 "does not have");
		else if (r == -EINVAL)
			snprintf(why, why_len, "the kernel's device-mapper interface %u.%u is "
				 "older than %u.%u", io.version[0], io.version[1], NEED_MAJOR,
				 NEED_MINOR);
		else
			snprintf(why, why_len, "device-mapper version query failed: %s",
				 strerror(-r));
		close(fd);
		return r;
	}
	*ctl = fd;
	return 0;
}

int zd_dm_create(int ctl, const char *name, dev_t *dev)
{
	struct dm_ioctl io;
	int r = simple(ctl, DM_DEV_CREATE, name, 0, &io);

	if (r == 0 && dev)
		*dev = (dev_t)io.dev; /* huge_encode_dev() is glibc's makedev() */
	return r;
}

int zd_dm_load(int ctl, const char *name, const struct zd_dm_target *t, size_t nr)
{
	union dm_buf b;
	size_t at = sizeof(b.io);

	if (!name_ok(name) || nr == 0)
		return -EINVAL;
	init_io(&b.io, sizeof(b), name);
	for (size_t i = 0; i < nr; i++) {
		struct dm_target_spec *spec = (struct dm_target_spec *)(void *)(b.raw + at);
		size_t tl = strnlen(t[i].type, sizeof(t[i].type));
		size_t pl = strnlen(t[i].params, sizeof(t[i].params));
		/* next: from this spec to the next one, kept 8-byte aligned */
		size_t step = (sizeof(*spec) + pl + 1 + 7) & ~(size_t)7;

		if (tl == 0 || tl >= sizeof(spec->target_type) || pl >= sizeof(t[i].params))
			return -EINVAL;
		if (at + step > sizeof(b))
			return -E2BIG;
		spec->sector_start = t[i].start;
		spec->length = t[i].len;
		spec->next = (uint32_t)step;
		memcpy(spec->target_type, t[i].type, tl);
		memcpy(b.raw + at + sizeof(*spec), t[i].params, pl);
		at += step;
	}
	b.io.target_count = (uint32_t)nr;
	return call(ctl, DM_TABLE_LOAD, &b.io);
}

int zd_dm_suspend(int ctl, const char *name, bool flush)
{
	return simple(ctl, DM_DEV_SUSPEND, name,
		      DM_SUSPEND_FLAG | DM_SKIP_LOCKFS_FLAG | (flush ? 0 : DM_NOFLUSH_FLAG), NULL);
}

int zd_dm_resume(int ctl, const char *name)
{
	return simple(ctl, DM_DEV_SUSPEND, name, 0, NULL);
}

int zd_dm_rename(int ctl, const char *name, const char *new_name)
{
	union dm_buf b;

	if (!name_ok(name) || !name_ok(new_name))
		return -EINVAL;
	init_io(&b.io, sizeof(b.io) + DM_NAME_LEN, name);
	memcpy(b.raw + sizeof(b.io), new_name, strlen(new_name) + 1);
	return call(ctl, DM_DEV_RENAME, &b.io);
}

int zd_dm_remove(int ctl, const char *name, bool deferred)
{
	return simple(ctl, DM_DEV_REMOVE, name, deferred ? DM_DEFERRED_REMOVE : 0, NULL);
}

int zd_dm_status(int ctl, const char *name, struct zd_dm_status *st)
{
	struct dm_ioctl io;
	int r = simple(ctl, DM_DEV_STATUS, name, 0, &io);

	if (r < 0)
		return r;
	*st = (struct zd_dm_status){
		.dev = (dev_t)io.dev,
		.open_count = io.open_count,
		.target_count = io.target_count,
		.suspended = io.flags & DM_SUSPEND_FLAG,
		.live_table = io.flags & DM_ACTIVE_PRESENT_FLAG,
		.inactive_table = io.flags & DM_INACTIVE_PRESENT_FLAG,
		.deferred_remove = io.flags & DM_DEFERRED_REMOVE,
	};
	return 0;
}

int zd_dm_table(int ctl, const char *name, struct zd_dm_target *t, size_t *nr)
{
	union dm_buf b;
	size_t cap = *nr, at = 0, end;

	if (!name_ok(name))
		return -EINVAL;
	init_io(&b.io, sizeof(b), name);
	b.io.flags = DM_STATUS_TABLE_FLAG;
	int r = call(ctl, DM_TABLE_STATUS, &b.io);

	if (r < 0)
		return r;
	if (b.io.flags & DM_BUFFER_FULL_FLAG)
		return -E2BIG; /* far beyond what zonedd ever loads */
	end = b.io.data_size;
	if (end > sizeof(b) || b.io.data_start > end)
		return -EIO;
	*nr = b.io.target_count;
	/* next: from the first spec to the next one */
	for (size_t i = 0; i < b.io.target_count && i < cap; i++) {
		const char *base = b.raw + b.io.data_start;
		const struct dm_target_spec *spec = (const void *)(base + at);
		const char *params = (const char *)(spec + 1);
		size_t room;

		if ((size_t)(params - b.raw) > end)
			return -EIO;
		room = end - (size_t)(params - b.raw);
		if (strnlen(params, room) == room)
			return -EIO;
		t[i].start = spec->sector_start;
		t[i].len = spec->length;
		snprintf(t[i].type, sizeof(t[i].type), "%.*s", (int)sizeof(spec->target_type),
			 spec->target_type);
		if (strlen(params) >= sizeof(t[i].params))
			return -E2BIG;
		snprintf(t[i].params, sizeof(t[i].params), "%s", params);
		at = spec->next;
	}
	return 0;
}

struct name_dev {
	char name[DM_NAME_LEN];
	dev_t dev;
};

int zd_dm_list(int ctl, const char *prefix, int (*fn)(const char *name, dev_t dev, void *ud),
	       void *ud)
{
	size_t size = BUF_SIZE, plen = strlen(prefix), nr = 0, cap = 0;
	struct name_dev *found = NULL;
	struct dm_ioctl *io = NULL;
	int r;

	if (plen >= DM_NAME_LEN)
		return -EINVAL;
	for (;;) {
		free(io);
		/* calloc: 8-byte aligned, as the records inside are */
		io = calloc(1, size);
		if (!io)
			return -ENOMEM;
		init_io(io, size, NULL);
		r = call(ctl, DM_LIST_DEVICES, io);
		if (r < 0)
			goto out;
		if (!(io->flags & DM_BUFFER_FULL_FLAG))
			break;
		if (size >= LIST_MAX) {
			r = -E2BIG;
			goto out;
		}
		size *= 2;
	}
	if (io->data_start + sizeof(struct dm_name_list) <= io->data_size &&
	    io->data_size <= size) {
		const char *end = (const char *)io + io->data_size;
		const struct dm_name_list *nl =
			(const void *)((const char *)io + io->data_start);

		/* dev 0: no mappings at all */
		while (nl->dev) {
			size_t room = (size_t)(end - nl->name);

			if ((const char *)(nl + 1) > end || strnlen(nl->name, room) == room) {
				r = -EIO;
				goto out;
			}
			if (strncmp(nl->name, prefix, plen) == 0 && strlen(nl->name) < DM_NAME_LEN) {
				if (nr == cap) {
					struct name_dev *n;

					cap = cap ? 2 * cap : 16;
					n = realloc(found, cap * sizeof(*found));
					if (!n) {
						r = -ENOMEM;
						goto out;
					}
					found = n;
				}
				snprintf(found[nr].name, sizeof(found[nr].name), "%s", nl->name);
				found[nr++].dev = (dev_t)nl->dev;
			}
			if (!nl->next)
				break;
			if (nl->next > (size_t)(end - (const char *)nl)) {
				r = -EIO;
				goto out;
			}
			nl = (const void *)((const char *)nl + nl->next);
		}
	}
	r = 0;
	for (size_t i = 0; i < nr && r == 0; i++)
		r = fn(found[i].name, found[i].dev, ud);
out:
	free(found);
	free(io);
	return r;
}

int zd_dm_create_live(int ctl, const char *name, const struct zd_dm_target *t, size_t nr,
		      dev_t *dev)
{
	int r = zd_dm_create(ctl, name, dev);

	if (r < 0)
		return r;
	r = zd_dm_load(ctl, name, t, nr);
	if (r == 0)
		r = zd_dm_resume(ctl, name);
	if (r < 0)
		(void)zd_dm_remove(ctl, name, false);
	return r;
}

/* Reads a small sysfs file whole, NUL-terminated. */
static int read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	if (n < 0) {
		n = -errno;
		close(fd);
		return (int)n;
	}
	close(fd);
	buf[n] = '\0';
	return 0;
}

int zd_dm_open_node(dev_t dev, int flags)
{
	char path[PATH_MAX], buf[1024], *line, *save = NULL;
	const char *name = NULL;
	struct stat st;
	int fd, r;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", major(dev), minor(dev));
	r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "DEVNAME=", 8) == 0)
			name = line + 8;
	if (!name || !*name || strstr(name, ".."))
		return -ENODEV;
	if ((size_t)snprintf(path, sizeof(path), "/dev/%s", name) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* A stale or foreign node under that name is not our mapping. */
	if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode) || st.st_rdev != dev) {
		close(fd);
		return -ENODEV;
	}
	return fd;
}

int zd_dm_kernel_name(dev_t dev, char *out, size_t cap)
{
	char path[64], target[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (!*base || strlen(base) >= cap)
		return -ENAMETOOLONG;
	snprintf(out, cap, "%s", base);
	return 0;
}

int zd_dm_foreign_holder(dev_t dev, const char *prefix, char *out, size_t cap, unsigned *ours)
{
	size_t plen = strlen(prefix);
	char path[64];
	struct dirent *e;
	DIR *d;
	int r = 0;

	if (ours)
		*ours = 0;
	out[0] = '\0';
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(dev), minor(dev));
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		char np[PATH_MAX], name[DM_NAME_LEN + 2];
		size_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(np, sizeof(np), "/sys/class/block/%s/dm/name", e->d_name);
		if (read_small(np, name, sizeof(name)) == 0) {
			n = strcspn(name, "\n");
			name[n] = '\0';
			if (strncmp(name, prefix, plen) == 0 &&
			    (name[plen] == '\0' || name[plen] == '-')) {
				if (ours)
					(*ours)++;
				continue;
			}
		}
		snprintf(out, cap, "%s", e->d_name);
		r = 1;
		break;
	}
	closedir(d);
	return r;
}
