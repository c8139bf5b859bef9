/* The emulated zoned device: a directory holding one file per zone (the
 * layout of the kernel's zoned loop driver, zloop) and a crash-safe
 * metadata file for what a file's size cannot say; and the conversion of
 * 0.1 single-file images to it. */
#include "config.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/zdev.h"

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int) /* linux/fs.h, not included: it clashes with glibc */
#endif

/*
 * Zone model: host-managed, the Linux/ZBC/ZNS state machine as null_blk's
 * zoned mode implements it, with these deliberate choices:
 *  - Open and active limits: writing (or refreshing past the wp of) an empty
 *    or closed zone opens it implicitly; at max_open the least recently
 *    written implicitly open zone is closed to make room (null_blk picks
 *    round-robin, ZBC leaves the choice to the device). Explicitly open zones
 *    are never closed behind the host's back.
 *  - A closed zone being reopened does not need an active slot: it already
 *    holds one (null_blk also checks one there, which only refuses a valid
 *    transition when the device is at max_active).
 *  - Open of a full zone fails with -EIO, as null_blk and ZNS do (an invalid
 *    zone state transition); close of an empty or full zone is a no-op, as in
 *    ZBC, so a caller may close whatever it is done with.
 *  - Finish of an empty zone needs an active slot (it passes through open);
 *    finish of a closed zone does not.
 *  - A full zone reports wp = start + zone size, whether it was filled to its
 *    capacity or finished; reads of its unwritten tail return zeros.
 *  - Read-only and offline zones report wp = UINT64_MAX (invalid), as the
 *    kernel does; read-only zones stay readable (zeros past their last wp),
 *    offline ones fail reads with -EIO.
 *  - Errors follow zdev.h: -EIO where a real device fails the command
 *    (write not at the wp, past capacity, open of a full zone), -EPERM for
 *    conventional, read-only or offline zones, -EBUSY for resources.
 *
 * Layout: the configured path names a directory (0700, the daemon's):
 *
 *   meta          the metadata file below
 *   cnv-NNNNNN    conventional zone NNNNNN (zero-padded to six digits, more
 *   seq-NNNNNN    when needed), a sequential one; bytes [0, zone size) of
 *                 the file are the zone. A missing file is a zone that was
 *                 never written: files are created when a zone is first
 *                 written or handed out (open_zones), never at start-up.
 *   ZONE.tmp      a fence's copy in the making (removed at the next open)
 *
 * A sequential zone's wp is its file's size (block-aligned upward, at most
 * its capacity; emul_refresh_zone() says what a client's holes, partial
 * blocks, truncations and writes past capacity mean), so a refresh knows it
 * exactly. The records say what a size cannot: a zone finished before its
 * capacity, read-only, offline, explicitly open rather than closed; and they
 * carry the wp as last recorded, so that a start after a clean close needs
 * no file at all.
 *
 * Metadata format (all integers little endian), version 2 (version 1 is
 * the 0.1 image's PATH.meta, same layout, beside a single backing file):
 *
 *   [0, 4096)        header, of which the first 512 bytes are used:
 *                      0 magic "ZONEDEMU"   8 u32 version    12 u32 header size
 *                     16 u64 size          24 u64 zone size  32 u64 zone capacity
 *                     40 u32 nr zones      44 u32 nr conv    48 u32 max open
 *                     52 u32 max active    56 u32 lbs        60 u32 record size
 *                     64 u64 slot A offset 72 u64 slot B offset
 *                     80 u32 state: bit 0 "in use", set while a process has
 *                        the device open, cleared by a clean close
 *                    508 u32 CRC32C of bytes [0, 508)
 *   [4096, ...)      slot A: one 32-byte record per zone
 *   [B offset, ...)  slot B: the same, starting on the next 4096 boundary
 *
 *   record:  0 u64 wp (bytes from the zone start)   8 u64 sequence number
 *           16 u32 zone index  20 u8 cond  21..27 zero  28 u32 CRC32C of [0, 28)
 *
 * The header is written at creation and then only to flip the "in use" bit
 * (once at open, once at a clean close). An update of a zone writes the
 * slot that does not hold its newest valid record, with a sequence number
 * higher than any on the device (one counter per device: it only has to
 * beat the zone's other slot, and saves memory per zone), then
 * fdatasync()s; the newest record is never overwritten, so a
 * write torn by a crash leaves the previous state readable. Loading takes the
 * valid record with the higher sequence number. Records are 32 bytes and
 * aligned, so none straddles a sector; slot A and B live in different 4 KiB
 * blocks, so a zone's two copies never share a sector. A crash is assumed to
 * leave each sector old or new, never garbage (what storage promises and
 * journals rely on); the records of other zones sharing the written sector
 * are rewritten with their unchanged bytes. The zone index in the
 * record catches a record written at the wrong place.
 *
 * Ordering against the data, so that a crash (SIGKILL, _exit) at any step
 * leaves a record that tells the truth about the data once the device is
 * opened again (tests/test-emul.c "crash" kills a child at every step):
 *  - write (and refresh): data, fdatasync of the zone file, then the record
 *    of the new wp. A crash before the record leaves data past the
 *    recorded wp. A zone file's creation is made durable (the directory
 *    synced) before anything is recorded about its data.
 *  - reset: the record (empty) first, fdatasync, then the file truncated to
 *    nothing and synced. A crash between them leaves the old data behind an
 *    empty record: the reset did not happen.
 *  - finish: what lies past the wp is cut off the file first, then the
 *    record. A crash between them leaves a zone as it was, minus stale bytes.
 *  - open, close, set_cond: the record only.
 *  - fence (emul_lease_fence): the data is copied to ZONE.tmp, synced, and
 *    renamed over the zone file, then the directory synced: the old file or
 *    the new one, both whole. The record does not change.
 * Data past the recorded wp therefore only means "written, not recorded", by
 * us or by a client writing through its fd. After an unclean stop (header
 * bit "in use" still set at open) the directory is read and every zone file
 * present (only those) is checked: an empty or closed sequential zone whose
 * file goes past its recorded wp takes the file's wp, as a real device's wp
 * would have moved with the data. After a clean close there is no per-zone
 * work and no zone file is opened or even looked up. The same repair
 * applies, from the zone start, to a zone whose newest record is unreadable
 * (a record that is corrupt rather than never written): the surviving older
 * record is not trusted to be current. A zone with no valid record at all
 * goes offline: its state is unknown and guessing could hand out a zone
 * that holds data as empty.
 *
 * After a failed fdatasync the device refuses changes (-EIO) until it is
 * reopened, which reloads the state from what really is on disk.
 *
 * Conversion of a 0.1 image (PATH a regular file, PATH.meta version 1):
 * done at open, under the 0.1 image's lock, by convert_v1(); each zone's
 * state is what 0.1 would have served (its repair after an unclean stop
 * included) and only its data extents are copied.
 */

#define META_MAGIC "ZONEDEMU"
#define META_VERSION 2
#define META_VERSION_V1 1 /* 0.1: one backing file, PATH.meta beside it */
#define META_NAME "meta"
#define META_TMP "meta.tmp"
#define META_HDR_SIZE 4096u
#define META_HDR_USED 512u
#define META_HDR_CRC_OFF 508u
#define META_HDR_STATE_OFF 80u
#define META_STATE_IN_USE 1u
#define META_REC_SIZE 32u
#define META_REC_CRC_OFF 28u
#define META_ALIGN 4096u
/* Memory is 8 bytes a zone; 2^24 zones (16 TiB at 1 MiB zones) is far
 * beyond any use of an emulator and keeps every size computation in range. */
#define EMUL_MAX_ZONES (1u << 24)
#define NO_ZONE UINT32_MAX

/* A zone in memory, small because a device may have millions: the wp in
 * logical blocks (a zone holds at most 2^32 of them, see validate_params),
 * and no sequence number of its own. A record only ever competes with the
 * other slot of its own zone, so one counter for the device (e->seq, past
 * every sequence number loaded) makes each new record newer than both. */
struct ezone {
	uint32_t wpb;  /* logical blocks from the zone start; the zone size's when full */
	uint8_t cond;  /* enum zp_cond */
	uint8_t slot;  /* 0 or 1: the slot holding the newest record */
	uint8_t suspect; /* at load: the newest record was corrupt */
};

/* ---- fault injection ----
 *
 * A fault spec is a comma-separated list of FAULT items, each KIND:ARG...,
 * read from $ZONED_EMUL_FAULT when a device opens or set through
 * zd_emul_set_faults() (the daemon's "faults" device key). Every counter
 * starts when the spec is armed. zonedd(8) documents the grammar for users:
 *   crash:STEP[:N]        SIGKILL the process right after the Nth (default
 *                         1st) completion of STEP (a durable action:
 *                         data-write, data-sync (of a zone file), discard (a
 *                         zone file truncated: reset, finish, refresh),
 *                         meta-write, meta-sync, header, dir-sync,
 *                         fence-copy (the copy synced), fence-rename,
 *                         unlink (an empty zone's file, by a fence),
 *                         convert-build (each zone file, then the metadata,
 *                         of a 0.1 image's conversion), convert-aside (the
 *                         0.1 file renamed away), convert-rename (the new
 *                         directory in place), convert-cleanup).
 *   eio:OP[:N[:COUNT]]    the Nth OP (default 1st) and the COUNT-1 after it
 *                         (COUNT default 1, 0 = every one from the Nth on)
 *                         fail with EIO before doing anything.
 *   enospc:OP[:N[:COUNT]] the same with ENOSPC.
 *   eio-zone:Z            every operation touching zone Z fails with EIO
 *                         (a zone operation over a range holding it, a
 *                         refresh, pwrite and pread); reports still work.
 *   readonly:Z[:OP[:N]]   zone Z turns read-only (offline: offline),
 *   offline:Z[:OP[:N]]    persistently as zd_emul_set_cond(), right before
 *                         the Nth OP (default: the first operation of any
 *                         kind), which then runs against the changed zone.
 *   vanish[:OP[:N]]       the device vanishes right before the Nth OP
 *                         (default: the first): that operation and every
 *                         later one fails with ENODEV, open_fd included.
 * OP is one of the backend operations: report, zone-op, refresh, open-fd
 * (open_zones), pwrite, pread, fence (lease_fence), or any (every one but
 * fence). */
enum fault_step {
	STEP_DATA_WRITE,
	STEP_DATA_SYNC,
	STEP_DISCARD,
	STEP_META_WRITE,
	STEP_META_SYNC,
	STEP_HEADER,
	STEP_DIR_SYNC,
	STEP_FENCE_COPY,
	STEP_FENCE_RENAME,
	STEP_UNLINK,
	STEP_CONVERT_BUILD,
	STEP_CONVERT_ASIDE,
	STEP_CONVERT_RENAME,
	STEP_CONVERT_CLEANUP,
	STEP_COUNT,
};

static const char *const step_names[STEP_COUNT] = {
	"data-write", "data-sync", "discard", "meta-write", "meta-sync", "header",
	"dir-sync", "fence-copy", "fence-rename", "unlink", "convert-build",
	"convert-aside", "convert-rename", "convert-cleanup",
};

enum fault_op {
	FOP_REPORT,
	FOP_ZONE_OP,
	FOP_REFRESH,
	FOP_OPEN_FD,
	FOP_PWRITE,
	FOP_PREAD,
	FOP_FENCE,
	FOP_ANY,
	FOP_COUNT,
};

/* Underscores accepted too: zone_op reads as naturally as zone-op. */
static const char *const fop_names[FOP_COUNT] = {
	"report", "zone-op", "refresh", "open-fd", "pwrite", "pread", "fence", "any",
};

enum fault_kind {
	FAULT_CRASH,
	FAULT_ERR,      /* eio, enospc */
	FAULT_ZONE_ERR, /* eio-zone */
	FAULT_COND,     /* readonly, offline */
	FAULT_VANISH,
};

#define EMUL_MAX_FAULTS 16

struct fault {
	enum fault_kind kind;
	enum fault_step step;
	enum fault_op op;
	int err;       /* FAULT_ERR: the negative errno */
	uint32_t zone; /* FAULT_ZONE_ERR, FAULT_COND */
	uint8_t cond;  /* FAULT_COND */
	uint32_t nth;  /* fires at this occurrence, 1-based */
	uint32_t count;/* FAULT_ERR: occurrences that fail, 0 = all from nth */
	uint32_t seen; /* occurrences so far */
};

struct faults {
	unsigned n;
	struct fault f[EMUL_MAX_FAULTS];
};

struct emul {
	struct zd_dev dev; /* first: the vtable pointer the daemon sees */
	char *path;        /* the device directory, absolute once opened (logs) */
	char *meta_path;   /* for the logs */
	int dir_fd;        /* the device directory, flock()ed while open */
	int adopt_fd;      /* at open: the claim a previous daemon left (zd_emul_open_claimed) */
	int meta_fd;
	/* Once an fdatasync fails we no longer know what is on disk (the page
	 * cache may have dropped the dirty pages), so every later change fails
	 * with this error instead of building on an unknown state. */
	int broken;
	bool meta_dirty;
	/* The header said "in use" at open: the last user did not close
	 * cleanly, so records may lag behind the files. */
	bool unclean;
	bool marked_in_use; /* we set the header bit and must clear it */
	enum zd_isolation iso; /* ZD_ISOLATION_ZONE or ZD_ISOLATION_DEVICE */
	struct faults faults;
	/* A vanish fault fired: every operation fails with ENODEV from now. */
	bool vanished;
	struct zd_emul_params p;
	uint32_t nr_zones;
	uint64_t slot_off[2];
	uint32_t nr_imp, nr_exp, nr_closed;
	/* The implicitly open zones, least recently written first: what an
	 * open at max_open closes. Kept only with a max_open (no more than
	 * that many then), so its cost never grows with the device. */
	uint32_t *lru;
	uint32_t lru_n, lru_cap;
	uint64_t seq;      /* the highest sequence number on disk */
	struct ezone *z;
};

static const struct zd_backend_ops emul_ops;

/* CRC32C (Castagnoli), reflected, four bits at a time: a 16-entry table is
 * small enough to be a constant and fast enough to check a million zones at
 * open. */
static const uint32_t crc32c_nibble[16] = {
	0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
	0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
	0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

static uint32_t crc32c_sw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len--) {
		c ^= *p++;
		c = (c >> 4) ^ crc32c_nibble[c & 15];
		c = (c >> 4) ^ crc32c_nibble[c & 15];
	}
	return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* SSE4.2's crc32 instruction computes exactly this CRC, 8 bytes a step:
 * a 1,000,000-zone device checks 64 MB of records at open, which the
 * nibble table takes most of a second over. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c, const uint8_t *p,
							     size_t len)
{
	uint64_t c64 = c;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
	}
	c = (uint32_t)c64;
	for (; len; p++, len--)
		c = __builtin_ia32_crc32qi(c, *p);
	return c;
}

static bool have_crc32_insn(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
static uint32_t crc32c_hw(uint32_t c, const uint8_t *p, size_t len)
{
	return crc32c_sw(c, p, len);
}

static bool have_crc32_insn(void)
{
	return false;
}
#endif

static uint32_t crc32c(const void *buf, size_t len)
{
	/* The answer never changes within a process; asking the CPU each
	 * time is a load and a test. */
	uint32_t c = have_crc32_insn() ? crc32c_hw(0xffffffffu, buf, len)
				       : crc32c_sw(0xffffffffu, buf, len);

	return c ^ 0xffffffffu;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* One load each where the CPU is little endian (a million zones' records
 * are read at open). */
static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static struct emul *to_emul(struct zd_dev *dev)
{
	return (struct emul *)dev;
}

static bool is_conv(const struct emul *e, uint32_t z)
{
	return z < e->p.nr_conventional;
}

static uint64_t zone_start(const struct emul *e, uint32_t z)
{
	return (uint64_t)z * e->p.zone_size;
}

static uint64_t zone_cap(const struct emul *e, uint32_t z)
{
	return is_conv(e, z) ? e->p.zone_size : e->p.zone_capacity;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static void log_dev(int prio, const char *path, uint32_t zone, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Logs with DEVICE= (and ZONE= unless zone is NO_ZONE) so the journal can
 * be searched per device and zone. */
static void log_dev(int prio, const char *path, uint32_t zone, const char *fmt, ...)
{
	char dev_field[PATH_MAX + 8], zone_field[32], msg[512];
	const char *fields[3] = { dev_field, NULL, NULL };
	va_list ap;

	snprintf(dev_field, sizeof(dev_field), "DEVICE=%s", path);
	if (zone != NO_ZONE) {
		snprintf(zone_field, sizeof(zone_field), "ZONE=%" PRIu32, zone);
		fields[1] = zone_field;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	zd_logv_fields(prio, fields, "%s: %s", path, msg);
}

/* ---- fault injection ---- */

static int parse_u32(const char *s, uint32_t *out);
static int set_cond(struct emul *e, uint32_t zone, uint8_t cond);

/* Splits off the next ':'-separated field of *rest (NULL when none is left). */
static char *next_field(char **rest)
{
	char *f = *rest, *c;

	if (!f)
		return NULL;
	c = strchr(f, ':');
	if (c) {
		*c = '\0';
		*rest = c + 1;
	} else {
		*rest = NULL;
	}
	return f;
}

static int parse_fop(const char *s, enum fault_op *op)
{
	for (unsigned i = 0; i < FOP_COUNT; i++) {
		const char *n = fop_names[i];
		size_t k = 0;

		while (n[k] && (s[k] == n[k] || (n[k] == '-' && s[k] == '_')))
			k++;
		if (!n[k] && !s[k]) {
			*op = i;
			return 0;
		}
	}
	return -EINVAL;
}

#define FOP_LIST "report, zone-op, refresh, open-fd, pwrite, pread, fence, any"

/* An optional positive count field: absent means dflt. */
static int parse_nth(char **rest, uint32_t dflt, bool zero_ok, uint32_t *out, const char **why)
{
	char *f = next_field(rest);

	*out = dflt;
	if (!f)
		return 0;
	if (parse_u32(f, out) < 0 || (*out == 0 && !zero_ok)) {
		*why = zero_ok ? "COUNT must be a non-negative integer" :
				 "N must be a positive integer";
		return -EINVAL;
	}
	return 0;
}

static int parse_fault(char *item, struct fault *f, const char **why)
{
	char *rest = item, *kind = next_field(&rest), *arg;

	*f = (struct fault){ .nth = 1, .op = FOP_ANY };
	if (strcmp(kind, "crash") == 0) {
		arg = next_field(&rest);
		if (!arg || !*arg) {
			*why = "crash needs a step: crash:STEP[:N]";
			return -EINVAL;
		}
		if (parse_nth(&rest, 1, false, &f->nth, why) < 0)
			return -EINVAL;
		for (unsigned i = 0; i < STEP_COUNT; i++) {
			if (strcmp(arg, step_names[i]) == 0) {
				f->kind = FAULT_CRASH;
				f->step = i;
				goto done;
			}
		}
		*why = "unknown step (data-write, data-sync, discard, meta-write, meta-sync, header, "
		       "dir-sync, fence-copy, fence-rename, unlink, convert-build, convert-aside, "
		       "convert-rename, convert-cleanup)";
		return -EINVAL;
	}
	if (strcmp(kind, "eio") == 0 || strcmp(kind, "enospc") == 0) {
		f->kind = FAULT_ERR;
		f->err = kind[1] == 'i' ? -EIO : -ENOSPC;
		arg = next_field(&rest);
		if (!arg || parse_fop(arg, &f->op) < 0) {
			*why = "eio and enospc need an operation (" FOP_LIST "): eio:OP[:N[:COUNT]]";
			return -EINVAL;
		}
		if (parse_nth(&rest, 1, false, &f->nth, why) < 0 ||
		    parse_nth(&rest, 1, true, &f->count, why) < 0)
			return -EINVAL;
		goto done;
	}
	if (strcmp(kind, "eio-zone") == 0 || strcmp(kind, "readonly") == 0 ||
	    strcmp(kind, "offline") == 0) {
		arg = next_field(&rest);
		if (!arg || parse_u32(arg, &f->zone) < 0) {
			*why = "eio-zone, readonly and offline need a zone index: KIND:ZONE...";
			return -EINVAL;
		}
		if (kind[0] == 'e') {
			f->kind = FAULT_ZONE_ERR;
			goto done;
		}
		f->kind = FAULT_COND;
		f->cond = kind[0] == 'r' ? ZP_COND_READONLY : ZP_COND_OFFLINE;
		goto op_nth;
	}
	if (strcmp(kind, "vanish") == 0) {
		f->kind = FAULT_VANISH;
		goto op_nth;
	}
	*why = "unknown fault kind (known: crash, eio, enospc, eio-zone, readonly, offline, vanish)";
	return -EINVAL;
op_nth:
	arg = next_field(&rest);
	if (arg && parse_fop(arg, &f->op) < 0) {
		*why = "unknown operation (" FOP_LIST ")";
		return -EINVAL;
	}
	if (parse_nth(&rest, 1, false, &f->nth, why) < 0)
		return -EINVAL;
done:
	if (rest) {
		*why = "too many fields";
		return -EINVAL;
	}
	return 0;
}

/* Parses a whole spec; *out is only changed on success. "" disarms. */
static int parse_faults(const char *spec, struct faults *out, const char **why)
{
	struct faults fs = { 0 };
	char *copy, *item, *next;
	int r = 0;

	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	for (item = copy; *spec && item; item = next) {
		next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		if (fs.n == EMUL_MAX_FAULTS) {
			*why = "too many faults";
			r = -EINVAL;
			break;
		}
		r = parse_fault(item, &fs.f[fs.n], why);
		if (r)
			break;
		fs.n++;
	}
	free(copy);
	if (!r)
		*out = fs;
	return r;
}

int zd_emul_check_faults(const char *spec, const char **why)
{
	struct faults fs;
	const char *w = NULL;
	int r = parse_faults(spec, &fs, &w);

	if (why)
		*why = w;
	return r;
}

/* Called right after each durable action completes. */
static void fault_point(struct emul *e, enum fault_step step)
{
	for (unsigned i = 0; i < e->faults.n; i++) {
		struct fault *f = &e->faults.f[i];

		if (f->kind != FAULT_CRASH || f->step != step || ++f->seen != f->nth)
			continue;
		log_dev(LOG_NOTICE, e->path ? e->path : "?", NO_ZONE,
			"fault injection: crash after %s #%" PRIu32, step_names[step], f->nth);
		/* As abrupt as a kill -9: no atexit handlers, no close(), no
		 * clean-shutdown bit. */
		raise(SIGKILL);
		_exit(137);
	}
}

/* Called first thing in every backend operation (op, on zones [zone, zone +
 * count), count 0 for none): counts it for each armed fault and returns the
 * error it must fail with, or 0. A zone turning read-only or offline changes
 * the zone and lets the operation run on. */
static int fault_op(struct emul *e, enum fault_op op, uint32_t zone, uint32_t count)
{
	int err = 0;

	for (unsigned i = 0; i < e->faults.n; i++) {
		struct fault *f = &e->faults.f[i];

		if (f->kind == FAULT_CRASH)
			continue;
		if (f->kind == FAULT_ZONE_ERR) {
			/* A zone operation stops at the zone (fault_zone_stop). */
			if (count && f->zone >= zone && f->zone - zone < count &&
			    op != FOP_REPORT && op != FOP_OPEN_FD && op != FOP_ZONE_OP &&
			    op != FOP_FENCE && !err) {
				log_dev(LOG_NOTICE, e->path, f->zone, "fault injection: EIO on %s "
					"of zone %" PRIu32, fop_names[op], f->zone);
				err = -EIO;
			}
			continue;
		}
		/* "any" leaves the fence out: a fence that fails fails the
		 * device (the zone cannot be freed), so it is faulted only by
		 * name. */
		if (f->op != op && (f->op != FOP_ANY || op == FOP_FENCE))
			continue;
		if (f->seen == UINT32_MAX)
			continue;
		f->seen++;
		switch (f->kind) {
		case FAULT_ERR:
			if (f->seen < f->nth || (f->count && f->seen - f->nth >= f->count) || err)
				break;
			log_dev(LOG_NOTICE, e->path, NO_ZONE, "fault injection: %s on %s #%" PRIu32,
				f->err == -EIO ? "EIO" : "ENOSPC", fop_names[op], f->seen);
			err = f->err;
			break;
		case FAULT_COND:
			if (f->seen != f->nth || f->zone >= e->nr_zones)
				break;
			log_dev(LOG_NOTICE, e->path, f->zone, "fault injection: zone %" PRIu32
				" fails before %s #%" PRIu32, f->zone, fop_names[op], f->seen);
			set_cond(e, f->zone, f->cond);
			break;
		case FAULT_VANISH:
			if (f->seen != f->nth || e->vanished)
				break;
			log_dev(LOG_NOTICE, e->path, NO_ZONE, "fault injection: the device vanishes "
				"before %s #%" PRIu32, fop_names[op], f->seen);
			e->vanished = true;
			break;
		default:
			break;
		}
	}
	return e->vanished ? -ENODEV : err;
}

/* The first zone of [zone, zone + count) an eio-zone fault names, or
 * NO_ZONE: a range operation does the zones before it and fails there, as
 * a device works through a range and stops at the zone it cannot do. */
static uint32_t fault_zone_stop(const struct emul *e, uint32_t zone, uint32_t count)
{
	uint32_t stop = NO_ZONE;

	for (unsigned i = 0; i < e->faults.n; i++) {
		const struct fault *f = &e->faults.f[i];

		if (f->kind == FAULT_ZONE_ERR && f->zone >= zone && f->zone - zone < count &&
		    f->zone < stop)
			stop = f->zone;
	}
	return stop;
}

int zd_emul_set_faults(struct zd_dev *dev, const char *spec)
{
	struct emul *e;
	const char *why = NULL;
	int r;

	if (!dev || dev->ops != &emul_ops || !spec)
		return -EINVAL;
	e = to_emul(dev);
	r = parse_faults(spec, &e->faults, &why);
	if (r == -EINVAL)
		log_dev(LOG_ERR, e->path, NO_ZONE, "fault spec '%s': %s", spec, why);
	else if (r == 0)
		e->vanished = false; /* re-armed: a vanished device is back */
	return r;
}

/* ---- parameters ---- */

void zd_emul_default_params(struct zd_emul_params *params)
{
	*params = (struct zd_emul_params){
		.size = 4ull << 30,
		.zone_size = 32ull << 20,
		.zone_capacity = 24ull << 20,
		.nr_conventional = 2,
		.max_open = 14,
		.max_active = 14,
		.logical_block_size = 4096,
	};
}

/* Returns 0 or -EINVAL with *why saying which rule failed. */
static int validate_params(const struct zd_emul_params *p, const char **why)
{
	const char *w = NULL;

	if (p->logical_block_size != 512 && p->logical_block_size != 4096)
		w = "logical block size must be 512 or 4096";
	else if (!is_pow2(p->zone_size) || p->zone_size < p->logical_block_size)
		w = "zone size must be a power of two and at least one logical block";
	else if (p->zone_size / p->logical_block_size > UINT32_MAX)
		w = "zone size must be at most 2^32 logical blocks";
	else if (p->zone_capacity == 0 || p->zone_capacity > p->zone_size ||
		 p->zone_capacity % p->logical_block_size)
		w = "zone capacity must be a non-zero multiple of the logical block size, at most the zone size";
	else if (p->size == 0 || p->size % p->zone_size)
		w = "device size must be a non-zero multiple of the zone size";
	else if (p->size > (uint64_t)INT64_MAX || p->size / p->zone_size > EMUL_MAX_ZONES)
		w = "device has too many zones";
	else if (p->nr_conventional >= p->size / p->zone_size)
		w = "at least one zone must be sequential";
	else if (p->max_open && p->max_active && p->max_open > p->max_active)
		w = "max-open cannot exceed max-active";
	if (why)
		*why = w;
	return w ? -EINVAL : 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -ERANGE;
	}
	if (*s)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

int zd_emul_parse_spec(const char *spec, struct zd_emul_params *params)
{
	static const char *const keys[] = {
		"size", "zone-size", "zone-capacity", "conv", "max-open", "max-active", "lbs",
	};
	struct zd_emul_params p;
	unsigned seen = 0;
	char *copy, *item, *save = NULL;
	int r = 0;

	if (!params)
		return -EINVAL;
	p = *params;
	if (!spec)
		spec = "";
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;

	/* strtok_r would silently skip empty items ("size=1G,,conv=1"); a
	 * stray comma is more likely a typo than intent, so walk by hand. */
	for (item = copy; *spec && item; item = save) {
		char *comma = strchr(item, ','), *val;
		unsigned k;
		uint64_t v;

		save = comma ? comma + 1 : NULL;
		if (comma)
			*comma = '\0';
		val = strchr(item, '=');
		if (!val || val == item || !val[1]) {
			r = -EINVAL;
			break;
		}
		*val++ = '\0';
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!strcmp(item, keys[k]))
				break;
		if (k == sizeof(keys) / sizeof(keys[0]) || (seen & (1u << k))) {
			r = -EINVAL; /* unknown or repeated key */
			break;
		}
		seen |= 1u << k;
		switch (k) {
		case 0: r = zd_parse_size(val, &p.size); break;
		case 1: r = zd_parse_size(val, &p.zone_size); break;
		case 2: r = zd_parse_size(val, &p.zone_capacity); break;
		case 3: r = parse_u32(val, &p.nr_conventional); break;
		case 4: r = parse_u32(val, &p.max_open); break;
		case 5: r = parse_u32(val, &p.max_active); break;
		case 6:
			r = zd_parse_size(val, &v);
			if (!r && v > UINT32_MAX)
				r = -EINVAL;
			if (!r)
				p.logical_block_size = (uint32_t)v;
			break;
		}
		if (r)
			break;
	}
	free(copy);
	/* A zone size given alone sets the capacity too: the default 24 MiB
	 * capacity belongs to the default 32 MiB zones. */
	if (!r && (seen & (1u << 1)) && !(seen & (1u << 2)))
		p.zone_capacity = p.zone_size;
	if (r) {
		zd_err("emulated device spec '%s': unknown, repeated or malformed key=value item",
		       spec);
	} else {
		const char *why = NULL;

		r = validate_params(&p, &why);
		if (r)
			zd_err("emulated device spec '%s': %s", spec, why);
	}
	if (!r)
		*params = p;
	return r;
}

/* ---- in-memory zone state ---- */

static void lru_remove(struct emul *e, uint32_t z)
{
	for (uint32_t i = 0; i < e->lru_n; i++) {
		if (e->lru[i] == z) {
			memmove(e->lru + i, e->lru + i + 1, (e->lru_n - i - 1) * sizeof(*e->lru));
			e->lru_n--;
			return;
		}
	}
}

static void lru_append(struct emul *e, uint32_t z)
{
	if (!e->lru)
		return; /* no max_open: nothing is ever closed to make room */
	/* Never more than max_open implicitly open zones (open_resources()
	 * closes one first); were there, the oldest would merely stop being
	 * a candidate for closing. */
	if (e->lru_n == e->lru_cap)
		lru_remove(e, e->lru[0]);
	e->lru[e->lru_n++] = z;
}

static uint64_t ez_wp(const struct emul *e, uint32_t z)
{
	return (uint64_t)e->z[z].wpb * e->p.logical_block_size;
}

/* The one place that changes a zone's condition in memory, so the open,
 * active and LRU bookkeeping cannot drift from the conditions. Setting an
 * implicitly open zone to implicitly open again marks it most recently used. */
static void zone_apply(struct emul *e, uint32_t z, uint8_t cond, uint64_t wp)
{
	struct ezone *ez = &e->z[z];

	switch (ez->cond) {
	case ZP_COND_IMP_OPEN: e->nr_imp--; lru_remove(e, z); break;
	case ZP_COND_EXP_OPEN: e->nr_exp--; break;
	case ZP_COND_CLOSED: e->nr_closed--; break;
	default: break;
	}
	switch (cond) {
	case ZP_COND_IMP_OPEN: e->nr_imp++; lru_append(e, z); break;
	case ZP_COND_EXP_OPEN: e->nr_exp++; break;
	case ZP_COND_CLOSED: e->nr_closed++; break;
	default: break;
	}
	ez->cond = cond;
	ez->wpb = (uint32_t)(wp / e->p.logical_block_size);
}

static uint32_t nr_active(const struct emul *e)
{
	return e->nr_imp + e->nr_exp + e->nr_closed;
}

/* Checks the resources zone z (empty or closed) needs to become open. Sets
 * *evict to the implicitly open zone that must be closed first, or NO_ZONE.
 * Changes nothing, so the caller can still fail (e.g. on the data write). */
static int open_resources(const struct emul *e, uint32_t z, uint32_t *evict)
{
	uint8_t cond = e->z[z].cond;

	*evict = NO_ZONE;
	if (cond != ZP_COND_EMPTY && cond != ZP_COND_CLOSED)
		return 0;
	if (cond == ZP_COND_EMPTY && e->p.max_active && nr_active(e) >= e->p.max_active)
		return -EBUSY;
	if (e->p.max_open && e->nr_imp + e->nr_exp >= e->p.max_open) {
		if (e->lru_n == 0)
			return -EBUSY; /* all open zones are explicitly open */
		*evict = e->lru[0];
	}
	return 0;
}

static void fill_zone(const struct emul *e, uint32_t z, struct zd_zone *out)
{
	const struct ezone *ez = &e->z[z];

	out->start = zone_start(e, z);
	out->len = e->p.zone_size;
	out->capacity = zone_cap(e, z);
	out->type = is_conv(e, z) ? ZP_TYPE_CONV : ZP_TYPE_SWR;
	out->cond = ez->cond;
	switch (ez->cond) {
	case ZP_COND_READONLY:
	case ZP_COND_OFFLINE:
		out->wp = UINT64_MAX;
		break;
	case ZP_COND_NOT_WP:
		out->wp = out->start + out->len; /* as the kernel reports it */
		break;
	default:
		out->wp = out->start + ez_wp(e, z);
		break;
	}
}

/* ---- I/O helpers ---- */

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Reads len bytes; what lies past the end of the file reads as zeros. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void close_keep_errno(int fd)
{
	int saved = errno;

	if (fd >= 0)
		close(fd);
	errno = saved;
}

static void zone_name(const struct emul *e, uint32_t z, char *buf, size_t len)
{
	snprintf(buf, len, "%s-%06" PRIu32, is_conv(e, z) ? "cnv" : "seq", z);
}

/* The zone a directory entry names ("cnv-000001", "seq-000002", with
 * ".tmp" when it is a fence's copy in the making), or NO_ZONE for any other
 * name, or a zone file whose prefix disagrees with the geometry. */
static uint32_t parse_zone_name(const struct emul *e, const char *name, bool *tmp)
{
	char digits[16];
	const char *d = name + 4, *end;
	uint32_t z;
	size_t n;

	*tmp = false;
	if (strncmp(name, "cnv-", 4) && strncmp(name, "seq-", 4))
		return NO_ZONE;
	end = strchr(d, '.');
	n = end ? (size_t)(end - d) : strlen(d);
	if (end && strcmp(end, ".tmp"))
		return NO_ZONE;
	if (n < 6 || n >= sizeof(digits))
		return NO_ZONE;
	memcpy(digits, d, n);
	digits[n] = '\0';
	if (parse_u32(digits, &z) < 0 || z >= e->nr_zones || (name[0] == 'c') != is_conv(e, z))
		return NO_ZONE;
	*tmp = end != NULL;
	return z;
}

static int sync_zone_file(struct emul *e, int fd, uint32_t z)
{
	if (fdatasync(fd) < 0) {
		int r = -errno;

		log_dev(LOG_ERR, e->path, z, "fdatasync of zone %" PRIu32 "'s file failed: %s; "
			"refusing further changes", z, strerror(-r));
		e->broken = -EIO;
		return -EIO;
	}
	fault_point(e, STEP_DATA_SYNC);
	return 0;
}

/* Makes creations, renames and unlinks in the device directory durable. */
static int sync_dir(struct emul *e)
{
	if (fsync(e->dir_fd) < 0) {
		int r = -errno;

		log_dev(LOG_ERR, e->path, NO_ZONE, "fsync of the device directory failed: %s; "
			"refusing further changes", strerror(-r));
		e->broken = -EIO;
		return -EIO;
	}
	fault_point(e, STEP_DIR_SYNC);
	return 0;
}

static int sync_meta(struct emul *e)
{
	if (!e->meta_dirty)
		return 0;
	if (fdatasync(e->meta_fd) < 0) {
		int r = -errno;

		log_dev(LOG_ERR, e->path, NO_ZONE, "fdatasync of the metadata failed: %s; "
			"refusing further changes", strerror(-r));
		e->broken = -EIO;
		return -EIO;
	}
	e->meta_dirty = false;
	fault_point(e, STEP_META_SYNC);
	return 0;
}

/* Opens a file of dir_fd that must be a regular file of ours: never through
 * a symlink (O_NOFOLLOW), never blocking on a FIFO planted under the name
 * (O_NONBLOCK, cleared again). Returns the fd or a negative errno; -EPERM
 * for a file that is not a regular file owned by the daemon's user. */
static int open_own_file(int dir_fd, const char *name, int flags, mode_t mode)
{
	struct stat st;
	int fd, fl;

	fd = openat(dir_fd, name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return -EPERM;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		close_keep_errno(fd);
		return -errno;
	}
	return fd;
}

/* Opens zone z's file. create: a missing file is created, 0600, and the
 * directory synced, so that no wp recorded later outlives the file's name
 * in a power cut; else a missing file is -ENOENT (an empty zone). O_DIRECT
 * falls back to buffered I/O on filesystems that refuse it (tmpfs before
 * Linux 6.6 answers EINVAL), which behaves the same apart from caching and
 * alignment checks. */
static int zfile_open(struct emul *e, uint32_t z, int flags, bool create)
{
	char name[32];
	bool made = false;
	int fd, r;

	zone_name(e, z, name, sizeof(name));
	for (;;) {
		fd = open_own_file(e->dir_fd, name, flags, 0);
		if (fd == -ENOENT && create) {
			fd = open_own_file(e->dir_fd, name, flags | O_CREAT | O_EXCL, 0600);
			made = fd >= 0;
			if (fd == -EEXIST)
				continue;
		}
		if (fd == -EINVAL && (flags & O_DIRECT)) {
			flags &= ~O_DIRECT;
			continue;
		}
		break;
	}
	if (fd == -EPERM)
		log_dev(LOG_ERR, e->path, z, "%s is not a regular file owned by the daemon's user "
			"(uid %u); refusing it", name, (unsigned)geteuid());
	if (fd >= 0 && made) {
		r = sync_dir(e);
		if (r) {
			close(fd);
			return r;
		}
	}
	return fd;
}

/* The size of zone z's file: 0 when there is none. */
static int zfile_size(struct emul *e, uint32_t z, uint64_t *size)
{
	char name[32];
	struct stat st;

	zone_name(e, z, name, sizeof(name));
	*size = 0;
	if (fstatat(e->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode))
		return -EPERM;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Sets zone z's file to len bytes (cutting stale data off, or extending it
 * with a hole that reads as written zeros), then syncs it. */
static int zfile_resize(struct emul *e, uint32_t z, uint64_t len)
{
	int fd = zfile_open(e, z, O_RDWR, len > 0), r = 0;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)len) < 0) {
		r = -errno;
		log_dev(LOG_ERR, e->path, z, "cannot resize zone %" PRIu32 "'s file: %s", z,
			strerror(-r));
		e->broken = -EIO; /* a reset may already be recorded over it */
	} else {
		fault_point(e, STEP_DISCARD);
		r = sync_zone_file(e, fd, z);
	}
	close(fd);
	return r;
}

/* Copies n bytes at in_off of in to out_off of out: copy_file_range where
 * the kernel can (same filesystem: possibly a server-side or block copy),
 * else read and write. */
static int copy_range(int in, uint64_t in_off, int out, uint64_t out_off, uint64_t n)
{
	static __thread uint8_t buf[65536];
	bool fallback = false;

	while (n) {
		size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
		ssize_t k;

		if (!fallback) {
			loff_t io = (loff_t)in_off, oo = (loff_t)out_off;

			k = copy_file_range(in, &io, out, &oo, chunk, 0);
			if (k < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP)) {
				fallback = true;
				continue;
			}
		} else {
			if (chunk > sizeof(buf))
				chunk = sizeof(buf);
			k = pread(in, buf, chunk, (off_t)in_off);
			if (k > 0) {
				int r = pwrite_all(out, buf, (size_t)k, out_off);

				if (r)
					return r;
			}
		}
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break; /* end of the source: the rest is a hole */
		in_off += (uint64_t)k;
		out_off += (uint64_t)k;
		n -= (uint64_t)k;
	}
	return 0;
}

/* Copies the data extents of [in_off, in_off + len) of in to [0, len) of
 * out, leaving holes as holes, and makes out exactly len bytes long. A
 * filesystem without SEEK_DATA reports everything as data. */
static int copy_extents(int in, uint64_t in_off, int out, uint64_t len)
{
	uint64_t pos = in_off, to = in_off + len;
	int r;

	while (pos < to) {
		off_t d = lseek(in, (off_t)pos, SEEK_DATA), h;

		if (d < 0) {
			if (errno == ENXIO)
				break;
			return -errno;
		}
		if ((uint64_t)d >= to)
			break;
		h = lseek(in, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		if ((uint64_t)h > to)
			h = (off_t)to;
		r = copy_range(in, (uint64_t)d, out, (uint64_t)d - in_off, (uint64_t)(h - d));
		if (r)
			return r;
		pos = (uint64_t)h;
	}
	return ftruncate(out, (off_t)len) < 0 ? -errno : 0;
}

/* 0.1 images: the end of the last data extent in [from, to), or from. The
 * granularity is the filesystem block. */
static int last_data_end(int fd, uint64_t from, uint64_t to, uint64_t *end)
{
	uint64_t pos = from;

	*end = from;
	while (pos < to) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0) {
			if (errno == ENXIO)
				break;
			return -errno;
		}
		if ((uint64_t)d >= to)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		*end = (uint64_t)h < to ? (uint64_t)h : to;
		pos = (uint64_t)h;
	}
	return 0;
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

/* What zone z's file says its wp is: its size, block-aligned upward (a
 * partial block counts as written, zero-padded), at most its capacity. */
static uint64_t size_wp(const struct emul *e, uint32_t z, uint64_t size)
{
	uint64_t cap = zone_cap(e, z);

	return size >= cap ? cap : round_up(size, e->p.logical_block_size);
}

/* Syncs zone z's file (a client's writes, before a wp is recorded over
 * them). */
static int sync_zone_file_by_name(struct emul *e, uint32_t z)
{
	int fd = zfile_open(e, z, O_RDONLY, false), r;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	r = sync_zone_file(e, fd, z);
	close(fd);
	return r;
}
/* ---- metadata records ---- */

static void encode_rec(uint8_t *rec, uint32_t z, uint8_t cond, uint64_t wp, uint64_t seq)
{
	memset(rec, 0, META_REC_SIZE);
	put_le64(rec + 0, wp);
	put_le64(rec + 8, seq);
	put_le32(rec + 16, z);
	rec[20] = cond;
	put_le32(rec + META_REC_CRC_OFF, crc32c(rec, META_REC_CRC_OFF));
}

struct rec {
	uint64_t wp;
	uint64_t seq;
	uint8_t cond;
};

/* Returns NULL if the record is valid for zone z, else why it is not. A
 * record with a good CRC but impossible contents is refused too: it can only
 * come from a bug or another writer, and is no better than a torn one. */
static const char *decode_rec(const struct emul *e, uint32_t z, const uint8_t *b, struct rec *r)
{
	uint64_t cap = zone_cap(e, z), len = e->p.zone_size;

	for (unsigned i = 21; i < META_REC_CRC_OFF; i++)
		if (b[i])
			goto bad_crc; /* covered by the CRC: a set byte means garbage */
	if (get_le32(b + META_REC_CRC_OFF) != crc32c(b, META_REC_CRC_OFF))
		goto bad_crc;
	r->wp = get_le64(b);
	r->seq = get_le64(b + 8);
	r->cond = b[20];
	if (get_le32(b + 16) != z)
		return "record of another zone";
	if (r->seq == 0)
		return "sequence number 0";
	/* The block size is 512 or 4096 (validate_params): a mask, not a
	 * division per record. */
	if (r->wp > len || (r->wp & (e->p.logical_block_size - 1)))
		return "write pointer out of range";
	if (is_conv(e, z)) {
		if (r->cond != ZP_COND_NOT_WP && r->cond != ZP_COND_READONLY &&
		    r->cond != ZP_COND_OFFLINE)
			return "condition invalid for a conventional zone";
		return NULL;
	}
	switch (r->cond) {
	case ZP_COND_EMPTY:
		return r->wp == 0 ? NULL : "empty zone with a write pointer";
	case ZP_COND_IMP_OPEN:
	case ZP_COND_EXP_OPEN:
		return r->wp < cap ? NULL : "open zone at or past capacity";
	case ZP_COND_CLOSED:
		return r->wp > 0 && r->wp < cap ? NULL : "closed zone with write pointer out of range";
	case ZP_COND_FULL:
		return r->wp == len ? NULL : "full zone not at the zone end";
	case ZP_COND_READONLY:
	case ZP_COND_OFFLINE:
		return NULL;
	default:
		return "unknown condition";
	}
bad_crc:
	return "checksum mismatch";
}

/* Records the new state of zone z durably (after sync_meta()) and applies it
 * in memory. The record goes to the slot not holding the newest valid one. */
static int commit(struct emul *e, uint32_t z, uint8_t cond, uint64_t wp)
{
	struct ezone *ez = &e->z[z];
	uint8_t rec[META_REC_SIZE];
	unsigned slot = ez->slot ^ 1u;
	int r;

	encode_rec(rec, z, cond, wp, e->seq + 1);
	r = pwrite_all(e->meta_fd, rec, sizeof(rec), e->slot_off[slot] + (uint64_t)z * META_REC_SIZE);
	if (r) {
		/* The newest record is intact; memory still matches it. */
		log_dev(LOG_ERR, e->path, z, "metadata write failed: %s", strerror(-r));
		return -EIO;
	}
	e->meta_dirty = true;
	e->seq++;
	ez->slot = (uint8_t)slot;
	zone_apply(e, z, cond, wp);
	fault_point(e, STEP_META_WRITE);
	return 0;
}

/* ---- metadata file: layout, creation, loading ---- */

static uint64_t slot_bytes(uint32_t nr_zones)
{
	uint64_t b = (uint64_t)nr_zones * META_REC_SIZE;

	return (b + META_ALIGN - 1) / META_ALIGN * META_ALIGN;
}

static void encode_hdr(uint8_t *h, const struct zd_emul_params *p, uint32_t nr_zones)
{
	memset(h, 0, META_HDR_SIZE);
	memcpy(h, META_MAGIC, 8);
	put_le32(h + 8, META_VERSION);
	put_le32(h + 12, META_HDR_SIZE);
	put_le64(h + 16, p->size);
	put_le64(h + 24, p->zone_size);
	put_le64(h + 32, p->zone_capacity);
	put_le32(h + 40, nr_zones);
	put_le32(h + 44, p->nr_conventional);
	put_le32(h + 48, p->max_open);
	put_le32(h + 52, p->max_active);
	put_le32(h + 56, p->logical_block_size);
	put_le32(h + 60, META_REC_SIZE);
	put_le64(h + 64, META_HDR_SIZE);
	put_le64(h + 72, META_HDR_SIZE + slot_bytes(nr_zones));
	put_le32(h + META_HDR_CRC_OFF, crc32c(h, META_HDR_CRC_OFF));
}

/* The state a new metadata file gives a zone. */
struct zinit {
	uint64_t wp;
	uint8_t cond;
};

/* Writes a complete metadata file in dir_fd under META_TMP and renames it
 * to META_NAME, so a crash during creation leaves either no metadata or a
 * whole one. Every zone gets sequence 1 in slot A: empty (conventional
 * ones "not wp"), or init[z] (a conversion). Slot B is written as zeros
 * (invalid records) rather than left sparse so that later updates cannot
 * fail for lack of space. */
static int create_meta(const char *path, int dir_fd, const struct zd_emul_params *p,
		       const struct zinit *init)
{
	uint32_t nr_zones = (uint32_t)(p->size / p->zone_size);
	size_t chunk_zones = 16384, buf_len = META_HDR_SIZE;
	uint64_t sb = slot_bytes(nr_zones), off;
	uint8_t *buf = NULL;
	int fd = -1, r;

	if (chunk_zones * META_REC_SIZE > buf_len)
		buf_len = chunk_zones * META_REC_SIZE;
	buf = malloc(buf_len);
	if (!buf)
		return -ENOMEM;
	/* Whatever sits under the temporary name (a crash's leftover, or a
	 * symlink planted to make us overwrite another file) is removed, and
	 * the file created anew, never followed. */
	if (unlinkat(dir_fd, META_TMP, 0) < 0 && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	fd = open_own_file(dir_fd, META_TMP, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	encode_hdr(buf, p, nr_zones);
	r = pwrite_all(fd, buf, META_HDR_SIZE, 0);
	if (r)
		goto out;

	off = META_HDR_SIZE;
	for (uint32_t z = 0; z < nr_zones;) {
		size_t n = 0;

		for (; n < chunk_zones && z < nr_zones; n++, z++) {
			uint8_t cond = z < p->nr_conventional ? ZP_COND_NOT_WP : ZP_COND_EMPTY;

			encode_rec(buf + n * META_REC_SIZE, z, init ? init[z].cond : cond,
				   init ? init[z].wp : 0, 1);
		}
		r = pwrite_all(fd, buf, n * META_REC_SIZE, off);
		if (r)
			goto out;
		off += n * META_REC_SIZE;
	}
	memset(buf, 0, buf_len);
	off = META_HDR_SIZE + (uint64_t)nr_zones * META_REC_SIZE;
	/* Space the filesystem reserves reads as zeros: half the writing of
	 * a new device (writing zeros where it cannot, tmpfs before 6.x). */
	if (fallocate(fd, 0, (off_t)off, (off_t)(META_HDR_SIZE + 2 * sb - off)) == 0)
		off = META_HDR_SIZE + 2 * sb;
	for (; off < META_HDR_SIZE + 2 * sb;) {
		uint64_t n = META_HDR_SIZE + 2 * sb - off;

		if (n > buf_len)
			n = buf_len;
		r = pwrite_all(fd, buf, (size_t)n, off);
		if (r)
			goto out;
		off += n;
	}
	if (fsync(fd) < 0 || renameat(dir_fd, META_TMP, dir_fd, META_NAME) < 0 ||
	    fsync(dir_fd) < 0)
		r = -errno;
out:
	if (fd >= 0)
		close(fd);
	if (r) {
		unlinkat(dir_fd, META_TMP, 0);
		log_dev(LOG_ERR, path, NO_ZONE, "cannot create metadata %s/%s: %s", path, META_NAME,
			strerror(-r));
	}
	free(buf);
	return r;
}

/* A field of params is compared with the stored geometry only when it was
 * evidently chosen: non-zero and not the default. A caller that always passes
 * parsed-over-defaults params can thus reopen a device of any geometry. */
static int check_params(const struct emul *e, const struct zd_emul_params *want)
{
	struct zd_emul_params def;

	zd_emul_default_params(&def);
#define CHECK(field, name)                                                              \
	if (want->field && want->field != def.field && want->field != e->p.field) {     \
		log_dev(LOG_ERR, e->path, NO_ZONE, "%s %" PRIu64 " requested but the "     \
			"device has %" PRIu64, name, (uint64_t)want->field,                 \
			(uint64_t)e->p.field);                                              \
		return -EINVAL;                                                             \
	}
	CHECK(size, "size");
	CHECK(zone_size, "zone-size");
	CHECK(zone_capacity, "zone-capacity");
	CHECK(nr_conventional, "conv");
	CHECK(max_open, "max-open");
	CHECK(max_active, "max-active");
	CHECK(logical_block_size, "lbs");
#undef CHECK
	return 0;
}
/* Reads and checks the header of the metadata at e->meta_fd, which must be
 * of format `version` (META_VERSION, or META_VERSION_V1 for a 0.1 image). */
static int load_hdr(struct emul *e, uint32_t version)
{
	uint8_t h[META_HDR_USED];
	const char *why;
	struct stat st;
	uint32_t state;
	int r;

	r = pread_all(e->meta_fd, h, sizeof(h), 0);
	if (r)
		return r;
	if (memcmp(h, META_MAGIC, 8)) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "%s is not emulated zoned device metadata "
			"(bad magic)", e->meta_path);
		return -EUCLEAN;
	}
	if (get_le32(h + META_HDR_CRC_OFF) != crc32c(h, META_HDR_CRC_OFF)) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata header checksum mismatch in %s",
			e->meta_path);
		return -EUCLEAN;
	}
	if (get_le32(h + 8) != version) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata %s has format version %" PRIu32
			", expected %" PRIu32, e->meta_path, get_le32(h + 8), version);
		return -EPROTONOSUPPORT;
	}
	e->p.size = get_le64(h + 16);
	e->p.zone_size = get_le64(h + 24);
	e->p.zone_capacity = get_le64(h + 32);
	e->nr_zones = get_le32(h + 40);
	e->p.nr_conventional = get_le32(h + 44);
	e->p.max_open = get_le32(h + 48);
	e->p.max_active = get_le32(h + 52);
	e->p.logical_block_size = get_le32(h + 56);
	e->slot_off[0] = get_le64(h + 64);
	e->slot_off[1] = get_le64(h + 72);
	state = get_le32(h + META_HDR_STATE_OFF);
	if (state & ~META_STATE_IN_USE) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata header state 0x%" PRIx32 " has unknown "
			"bits", state);
		return -EUCLEAN;
	}
	e->unclean = state & META_STATE_IN_USE;
	if (validate_params(&e->p, &why) < 0) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata header holds an invalid geometry: %s", why);
		return -EUCLEAN;
	}
	if (get_le32(h + 12) != META_HDR_SIZE || get_le32(h + 60) != META_REC_SIZE ||
	    e->nr_zones != e->p.size / e->p.zone_size || e->slot_off[0] != META_HDR_SIZE ||
	    e->slot_off[1] != META_HDR_SIZE + slot_bytes(e->nr_zones)) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata header layout is inconsistent");
		return -EUCLEAN;
	}
	if (fstat(e->meta_fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < e->slot_off[1] + slot_bytes(e->nr_zones)) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata file %s is truncated", e->meta_path);
		return -EUCLEAN;
	}
	return 0;
}

/* Rewrites the header's state word, durably. */
static int write_hdr_state(struct emul *e, uint32_t state)
{
	uint8_t h[META_HDR_USED];
	int r;

	r = pread_all(e->meta_fd, h, sizeof(h), 0);
	if (!r) {
		put_le32(h + META_HDR_STATE_OFF, state);
		put_le32(h + META_HDR_CRC_OFF, crc32c(h, META_HDR_CRC_OFF));
		r = pwrite_all(e->meta_fd, h, sizeof(h), 0);
	}
	if (!r) {
		fault_point(e, STEP_HEADER);
		if (fdatasync(e->meta_fd) < 0)
			r = -errno;
	}
	if (r) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "cannot update the metadata header: %s",
			strerror(-r));
		e->broken = -EIO;
	}
	return r;
}

/* Anything but a record of zeros (slot B before the zone's first update)
 * is a record that was written and is now unreadable. */
static bool rec_blank(const uint8_t *b)
{
	uint64_t v[4];

	_Static_assert(META_REC_SIZE == sizeof(v), "a record is four words");
	memcpy(v, b, sizeof(v));
	return !(v[0] | v[1] | v[2] | v[3]);
}

/* The newest valid record of zone z from its two slots, as load_zones()
 * and the readers of 0.1 images pick it. Returns 0 (cond, wp set; *suspect
 * when a written record is unreadable, so the survivor may be stale), or
 * -EUCLEAN with *why when no record can be trusted. */
static int pick_rec(const struct emul *e, uint32_t z, const uint8_t *a, const uint8_t *b,
		    struct rec *out, unsigned *slot, bool *suspect, char *why, size_t why_len)
{
	const uint8_t *buf[2] = { a, b };
	struct rec rec[2];
	const char *w[2];
	int pick;

	/* A blank record (slot B before the zone's first update: most of
	 * them on a device that is mostly unused) fails its checksum anyway;
	 * telling it first spares the checksum. */
	for (int s = 0; s < 2; s++)
		w[s] = rec_blank(buf[s]) ? "checksum mismatch (never written)" :
					   decode_rec(e, z, buf[s], &rec[s]);
	*suspect = false;
	if (w[0] && w[1]) {
		snprintf(why, why_len, "no valid metadata record (slot A: %s; slot B: %s)", w[0],
			 w[1]);
		return -EUCLEAN;
	}
	if (w[0] || w[1]) {
		pick = w[0] ? 1 : 0;
		*suspect = !rec_blank(buf[!pick]);
		if (*suspect)
			snprintf(why, why_len, "a metadata record is corrupt (%s)", w[!pick]);
	} else if (rec[0].seq != rec[1].seq) {
		pick = rec[1].seq > rec[0].seq;
	} else if (rec[0].wp == rec[1].wp && rec[0].cond == rec[1].cond) {
		pick = 0;
	} else {
		/* Two different states with one sequence number cannot come
		 * from our update protocol: refuse to pick one. */
		snprintf(why, why_len, "two different records with sequence number %" PRIu64,
			 rec[0].seq);
		out->seq = rec[0].seq;
		return -EUCLEAN;
	}
	*out = rec[pick];
	*slot = (unsigned)pick;
	return 0;
}

/* Makes zone z's record agree with its file of `size` bytes after an
 * unclean stop: the wp moves up to where the file ends, as a real device's
 * wp would have moved with the data. from_start: the record is not trusted
 * below its wp either (its newer copy was corrupt). A full zone is left
 * alone unless from_start and its file is empty: a finished zone may hold
 * any amount of data, so only "nothing" contradicts it. A file shorter than
 * the wp leaves the wp where it is: the missing part reads as zeros. */
static int repair_zone(struct emul *e, uint32_t z, uint64_t size, bool from_start,
		       uint32_t *logged)
{
	struct ezone *ez = &e->z[z];
	uint64_t cap = zone_cap(e, z), old = ez->cond == ZP_COND_FULL ? cap : ez_wp(e, z), wp;
	uint8_t cond;

	if (is_conv(e, z) || ez->cond == ZP_COND_READONLY || ez->cond == ZP_COND_OFFLINE)
		return 0;
	if (ez->cond == ZP_COND_FULL) {
		if (!from_start || size)
			return 0;
		wp = 0;
	} else {
		wp = size_wp(e, z, size);
		if (!from_start && wp < ez_wp(e, z))
			wp = ez_wp(e, z);
	}
	if (wp == old)
		return 0;
	cond = wp == cap ? ZP_COND_FULL : wp ? ZP_COND_CLOSED : ZP_COND_EMPTY;
	if ((*logged)++ < 8)
		log_dev(LOG_WARNING, e->path, z, "zone %" PRIu32 ": %s; write pointer taken from "
			"its file: %" PRIu64 " -> %" PRIu64 " bytes", z,
			from_start ? "newest metadata record corrupt" : "unclean stop", old, wp);
	return commit(e, z, cond, cond == ZP_COND_FULL ? e->p.zone_size : wp);
}

/* After an unclean stop: every file present in the directory (and only
 * those: a missing file is an empty zone) is checked against its zone, and
 * what a crash left half made (a fence's copy) is removed. */
static int repair_dir(struct emul *e, uint32_t *n_fix)
{
	uint32_t n_tmp = 0;
	struct dirent *de;
	int fd, r = 0;
	DIR *d;

	fd = openat(e->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close_keep_errno(fd);
		return -errno;
	}
	while (!r && (errno = 0, de = readdir(d))) {
		struct stat st;
		bool tmp;
		uint32_t z = parse_zone_name(e, de->d_name, &tmp);

		if (z == NO_ZONE)
			continue;
		if (tmp) {
			if (unlinkat(e->dir_fd, de->d_name, 0) < 0 && errno != ENOENT)
				r = -errno;
			n_tmp++;
			continue;
		}
		if (fstatat(e->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = errno == ENOENT ? 0 : -errno;
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue; /* refused when opened */
		r = repair_zone(e, z, (uint64_t)st.st_size, false, n_fix);
	}
	if (!r && errno)
		r = -errno;
	closedir(d);
	if (n_tmp)
		log_dev(LOG_NOTICE, e->path, NO_ZONE, "removed %" PRIu32 " interrupted fence "
			"cop%s", n_tmp, n_tmp == 1 ? "y" : "ies");
	return r;
}

/* The repairs load_zones() found necessary; a clean start with no corrupt
 * record does none, and touches no zone file. */
static int repair_zones(struct emul *e)
{
	uint32_t n_fix = 0;
	int r = 0;

	if (e->unclean)
		r = repair_dir(e, &n_fix);
	for (uint32_t z = 0; z < e->nr_zones && !r; z++) {
		uint64_t size;

		if (!e->z[z].suspect)
			continue;
		e->z[z].suspect = 0;
		r = zfile_size(e, z, &size);
		if (!r)
			r = repair_zone(e, z, size, true, &n_fix);
	}
	if (!r)
		r = sync_meta(e);
	if (n_fix)
		log_dev(LOG_WARNING, e->path, NO_ZONE, "%" PRIu32 " zone(s) repaired to agree with "
			"their files (%s)", n_fix, e->unclean ? "unclean stop" : "corrupt records");
	return r;
}

/* Reads both slots of every zone and keeps the newest valid record. Open
 * zones come back closed (or empty when nothing was written): that is what a
 * real device reports after a power cycle, and it means a restart never
 * inherits open resources nobody holds any more. The records keep saying
 * "open" until the zone next changes; that is harmless since loading always
 * applies this rule, and it spares a rewrite of every open zone at start. */
static int load_zones(struct emul *e)
{
	const uint32_t chunk = 2048;
	uint8_t *buf[2] = { NULL, NULL };
	uint32_t bad = 0, nr_corrupt = 0;
	bool any_suspect = false;
	int r = 0;

	e->z = calloc(e->nr_zones, sizeof(*e->z));
	buf[0] = malloc(chunk * META_REC_SIZE);
	buf[1] = malloc(chunk * META_REC_SIZE);
	if (!e->z || !buf[0] || !buf[1]) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t base = 0; base < e->nr_zones; base += chunk) {
		uint32_t n = e->nr_zones - base < chunk ? e->nr_zones - base : chunk;

		for (int s = 0; s < 2; s++) {
			r = pread_all(e->meta_fd, buf[s], (size_t)n * META_REC_SIZE,
				      e->slot_off[s] + (uint64_t)base * META_REC_SIZE);
			if (r)
				goto out;
		}
		for (uint32_t i = 0; i < n; i++) {
			uint32_t z = base + i;
			struct ezone *ez = &e->z[z];
			struct rec rec = { 0 };
			char why[160];
			unsigned slot = 0;
			bool suspect;

			ez->cond = ZP_COND_EMPTY; /* counted by zone_apply() below */
			if (pick_rec(e, z, buf[0] + (size_t)i * META_REC_SIZE,
				     buf[1] + (size_t)i * META_REC_SIZE, &rec, &slot, &suspect, why,
				     sizeof(why)) < 0) {
				if (bad++ < 8)
					log_dev(LOG_ERR, e->path, z, "zone %" PRIu32 ": %s; taking it "
						"offline", z, why);
				/* Past what either slot says, should one be valid
				 * after all (two records of one sequence number). */
				if (rec.seq > e->seq)
					e->seq = rec.seq;
				ez->slot = 1;
				r = commit(e, z, ZP_COND_OFFLINE, 0);
				if (r)
					goto out;
				continue;
			}
			if (suspect) {
				ez->suspect = 1;
				any_suspect = true;
				if (nr_corrupt++ < 8)
					log_dev(LOG_WARNING, e->path, z, "zone %" PRIu32 ": %s", z, why);
			}
			if (rec.seq > e->seq)
				e->seq = rec.seq;
			ez->slot = (uint8_t)slot;
			if (rec.cond == ZP_COND_IMP_OPEN || rec.cond == ZP_COND_EXP_OPEN)
				rec.cond = rec.wp ? ZP_COND_CLOSED : ZP_COND_EMPTY;
			zone_apply(e, z, rec.cond, rec.wp);
		}
	}
	if (bad)
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata of %" PRIu32 " zone(s) is corrupt; "
			"they are offline", bad);
	if (e->unclean || any_suspect)
		r = repair_zones(e);
	else
		r = sync_meta(e);
	if (r)
		goto out;
	/* Only possible after falling back to an older record of some zone
	 * or a repair; the device stays usable, new opens wait for active
	 * zones to go. */
	if (e->p.max_active && nr_active(e) > e->p.max_active)
		log_dev(LOG_WARNING, e->path, NO_ZONE, "%" PRIu32 " active zones exceed "
			"max-active %" PRIu32, nr_active(e), e->p.max_active);
out:
	free(buf[0]);
	free(buf[1]);
	return r;
}

/* A device create_meta() just wrote: every zone as it made it (sequence 1
 * in slot A, empty or "not wp"), without reading back what it wrote: the
 * file was synced, and nothing but a crash of ours (which reopens) could
 * have changed it since. */
static void init_fresh_zones(struct emul *e)
{
	for (uint32_t z = 0; z < e->nr_zones; z++)
		e->z[z] = (struct ezone){ .cond = is_conv(e, z) ? ZP_COND_NOT_WP : ZP_COND_EMPTY };
	e->seq = 1;
}

static void emul_close(struct zd_dev *dev)
{
	struct emul *e = to_emul(dev);

	if (!e)
		return;
	/* A clean close says "records and files agree": the next open then
	 * touches no zone file. No zone file needs a sync for that: every
	 * recorded wp was synced before it was recorded, and what clients
	 * wrote without a refresh is not claimed by any record. */
	if (e->marked_in_use && !e->broken && sync_meta(e) == 0)
		write_hdr_state(e, 0);
	if (e->meta_fd >= 0)
		close(e->meta_fd);
	if (e->dir_fd >= 0)
		close(e->dir_fd); /* drops the flock */
	if (e->adopt_fd >= 0)
		close(e->adopt_fd);
	free(e->z);
	free(e->lru);
	free(e->path);
	free(e->meta_path);
	free(e);
}
/* ---- 0.1 single-file images: reading and conversion ---- */

/* Zone z of a 0.1 image as that version served it after opening the
 * image (its loading and repair rules, applied without writing anything),
 * and how many bytes of its data the zone's new file takes. */
static int v1_zone(const struct emul *v, int fd, uint64_t file_size, uint32_t z,
		   const uint8_t *a, const uint8_t *b, struct zinit *out, uint64_t *copy)
{
	uint64_t start = zone_start(v, z), cap = zone_cap(v, z), end, extent;
	struct rec rec = { 0 };
	char why[160];
	unsigned slot;
	bool suspect;
	int r;

	*copy = 0;
	if (pick_rec(v, z, a, b, &rec, &slot, &suspect, why, sizeof(why)) < 0) {
		log_dev(LOG_WARNING, v->path, z, "0.1 image: zone %" PRIu32 ": %s; it becomes "
			"offline", z, why);
		*out = (struct zinit){ .cond = ZP_COND_OFFLINE };
		return 0;
	}
	if (rec.cond == ZP_COND_IMP_OPEN || rec.cond == ZP_COND_EXP_OPEN)
		rec.cond = rec.wp ? ZP_COND_CLOSED : ZP_COND_EMPTY;
	/* 0.1 took zones offline whose data lay past a shortened file. */
	extent = is_conv(v, z) ? v->p.zone_size : rec.cond == ZP_COND_FULL ? cap : rec.wp;
	if (rec.cond != ZP_COND_OFFLINE && extent && start + extent > file_size) {
		log_dev(LOG_WARNING, v->path, z, "0.1 image: zone %" PRIu32 "'s data was cut off "
			"the backing file; it becomes offline", z);
		rec.cond = ZP_COND_OFFLINE;
	}
	if (!is_conv(v, z) && (v->unclean || suspect) && rec.cond != ZP_COND_READONLY &&
	    rec.cond != ZP_COND_OFFLINE) {
		if (rec.cond != ZP_COND_FULL) {
			r = last_data_end(fd, suspect ? start : start + rec.wp, start + cap, &end);
			if (r)
				return r;
			end = round_up(end - start, v->p.logical_block_size);
			if (suspect || end > rec.wp)
				rec.wp = end;
			rec.cond = rec.wp == cap ? ZP_COND_FULL : rec.wp ? ZP_COND_CLOSED :
				   ZP_COND_EMPTY;
			if (rec.cond == ZP_COND_FULL)
				rec.wp = v->p.zone_size;
		} else if (suspect) {
			r = last_data_end(fd, start, start + cap, &end);
			if (r)
				return r;
			if (end == start)
				rec = (struct rec){ .cond = ZP_COND_EMPTY };
		}
	}
	*out = (struct zinit){ .cond = rec.cond, .wp = rec.wp };
	if (rec.cond == ZP_COND_OFFLINE)
		return 0; /* unreadable: nothing to keep */
	if (is_conv(v, z) || rec.cond == ZP_COND_FULL) {
		/* All of a conventional zone; a full zone up to its data. */
		r = last_data_end(fd, start, start + (is_conv(v, z) ? v->p.zone_size : cap), &end);
		if (r)
			return r;
		*copy = round_up(end - start, v->p.logical_block_size);
	} else {
		*copy = rec.wp; /* read-only zones keep their last wp too */
	}
	return 0;
}

/* Removes a directory this code made (an interrupted conversion or
 * creation): regular files of ours inside and nothing else, or -EEXIST. */
static int remove_own_dir(int pfd, const char *name, const char *path)
{
	struct dirent *de;
	struct stat st;
	int fd, r = 0;
	DIR *d;

	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid()) {
		close(fd);
		log_dev(LOG_ERR, path, NO_ZONE, "%s is not the daemon's; refusing to remove it", name);
		return -EEXIST;
	}
	d = fdopendir(fd);
	if (!d) {
		close_keep_errno(fd);
		return -errno;
	}
	while (!r && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
			log_dev(LOG_ERR, path, NO_ZONE, "%s holds %s, which the daemon did not make; "
				"refusing to remove it", name, de->d_name);
			r = -EEXIST;
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			r = -errno;
		}
	}
	closedir(d);
	if (!r && unlinkat(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

/* Converts the 0.1 image `base` (with base.meta) in pfd into the directory
 * layout under the same name. Each step leaves something the next open can
 * use or finish (zd_emul_open): the new directory is built complete under
 * base.convert (its metadata, renamed into place last, says so), then the
 * old file moves aside to base.old, then base.convert becomes base, then the
 * old files go. Until the second rename the image is the 0.1 one, untouched
 * (an interrupted build is removed and started again). */
static int convert_v1(struct emul *e, int pfd, const char *base, const char *path)
{
	struct emul v = { .meta_fd = -1, .dir_fd = -1 };
	int v1fd = -1;
	char name[3][NAME_MAX + 16];
	uint64_t copied = 0, nfiles = 0;
	struct zinit *init = NULL;
	uint8_t *buf[2] = { NULL, NULL };
	struct stat st;
	int cfd = -1, r;

	snprintf(name[0], sizeof(name[0]), "%s.meta", base);
	snprintf(name[1], sizeof(name[1]), "%s.convert", base);
	snprintf(name[2], sizeof(name[2]), "%s.old", base);
	v.path = (char *)path;
	v.meta_path = name[0];
	v1fd = open_own_file(pfd, base, O_RDWR, 0);
	if (v1fd == -EPERM)
		log_dev(LOG_ERR, path, NO_ZONE, "0.1 image %s is not a regular file owned by the "
			"daemon's user (uid %u); refusing it", path, (unsigned)geteuid());
	if (v1fd < 0)
		return v1fd;
	/* The 0.1 lock: no 0.1 zonedd serves it while we convert. */
	if (flock(v1fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (r == -EBUSY)
			log_dev(LOG_ERR, path, NO_ZONE, "device is in use by another process");
		goto out;
	}
	v.meta_fd = open_own_file(pfd, name[0], O_RDONLY, 0);
	if (v.meta_fd < 0) {
		r = v.meta_fd;
		log_dev(LOG_ERR, path, NO_ZONE, "0.1 image metadata %s.meta: %s", path,
			r == -EPERM ? "not a regular file owned by the daemon's user" : strerror(-r));
		goto out;
	}
	r = load_hdr(&v, META_VERSION_V1);
	if (r)
		goto out;
	if (fstat(v1fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	log_dev(LOG_NOTICE, path, NO_ZONE, "converting the 0.1 single-file image (%" PRIu32
		" zones%s) to one file per zone", v.nr_zones, v.unclean ? ", not closed cleanly" : "");
	init = calloc(v.nr_zones, sizeof(*init));
	buf[0] = malloc(META_REC_SIZE);
	buf[1] = malloc(META_REC_SIZE);
	if (!init || !buf[0] || !buf[1]) {
		r = -ENOMEM;
		goto out;
	}
	r = remove_own_dir(pfd, name[1], path);
	if (r)
		goto out;
	if (mkdirat(pfd, name[1], 0700) < 0) {
		r = -errno;
		goto out;
	}
	cfd = openat(pfd, name[1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cfd < 0 || flock(cfd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		goto out;
	}
	for (uint32_t z = 0; z < v.nr_zones; z++) {
		uint64_t len;
		char zn[32];
		int zfd;

		for (int s = 0; s < 2; s++) {
			r = pread_all(v.meta_fd, buf[s], META_REC_SIZE,
				      v.slot_off[s] + (uint64_t)z * META_REC_SIZE);
			if (r)
				goto out;
		}
		r = v1_zone(&v, v1fd, (uint64_t)st.st_size, z, buf[0], buf[1], &init[z], &len);
		if (r)
			goto out;
		if (!len)
			continue;
		zone_name(&v, z, zn, sizeof(zn));
		zfd = open_own_file(cfd, zn, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (zfd < 0) {
			r = zfd;
			goto out;
		}
		r = copy_extents(v1fd, zone_start(&v, z), zfd, len);
		if (!r && fdatasync(zfd) < 0)
			r = -errno;
		close(zfd);
		if (r)
			goto out;
		copied += len;
		nfiles++;
		fault_point(e, STEP_CONVERT_BUILD);
	}
	r = create_meta(path, cfd, &v.p, init);
	if (r)
		goto out;
	fault_point(e, STEP_CONVERT_BUILD);
	log_dev(LOG_INFO, path, NO_ZONE, "built %s: %" PRIu64 " zone file(s), %" PRIu64
		" bytes of zone data", name[1], nfiles, copied);

	if (renameat(pfd, base, pfd, name[2]) < 0 || fsync(pfd) < 0) {
		r = -errno;
		goto out;
	}
	fault_point(e, STEP_CONVERT_ASIDE);
	if (renameat(pfd, name[1], pfd, base) < 0 || fsync(pfd) < 0) {
		r = -errno;
		log_dev(LOG_ERR, path, NO_ZONE, "cannot rename %s to %s: %s; the next start "
			"finishes the conversion", name[1], base, strerror(-r));
		goto out;
	}
	fault_point(e, STEP_CONVERT_RENAME);
	if (unlinkat(pfd, name[2], 0) < 0 || unlinkat(pfd, name[0], 0) < 0 || fsync(pfd) < 0) {
		r = -errno;
		goto out;
	}
	fault_point(e, STEP_CONVERT_CLEANUP);
	log_dev(LOG_NOTICE, path, NO_ZONE, "converted to one file per zone; the 0.1 image "
		"and its metadata are removed");
out:
	if (r)
		log_dev(LOG_ERR, path, NO_ZONE, "conversion of the 0.1 image failed: %s",
			strerror(-r));
	if (cfd >= 0)
		close(cfd);
	if (v.meta_fd >= 0)
		close(v.meta_fd);
	if (v1fd >= 0)
		close(v1fd);
	free(init);
	free(buf[0]);
	free(buf[1]);
	return r;
}

/* Finishes what an interrupted conversion left, after the device
 * directory is locked: the 0.1 files that were moved aside or not yet
 * removed. Only regular files of ours are removed. */
static void remove_v1_leftovers(struct emul *e, int pfd, const char *base)
{
	char name[NAME_MAX + 16];
	const char *suffix[2] = { ".old", ".meta" };
	struct stat st;

	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%s%s", base, suffix[i]);
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != geteuid())
			continue;
		if (unlinkat(pfd, name, 0) == 0)
			log_dev(LOG_NOTICE, e->path, NO_ZONE, "removed %s, left by an interrupted "
				"conversion of the 0.1 image", name);
	}
	fsync(pfd);
}

/* base is missing: an interrupted conversion may have left a complete
 * base.convert (its metadata in place): it becomes base. An incomplete
 * one, or a symlink under the name, is removed. */
static int finish_conversion(struct emul *e, int pfd, const char *base, const char *path)
{
	char name[NAME_MAX + 16];
	struct stat st;
	int fd, r;

	snprintf(name, sizeof(name), "%s.convert", base);
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode)) {
		log_dev(LOG_WARNING, path, NO_ZONE, "removing %s: not a directory of the daemon's",
			name);
		return unlinkat(pfd, name, 0) < 0 ? -errno : 0;
	}
	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (r == -EBUSY)
			log_dev(LOG_ERR, path, NO_ZONE, "device is being converted by another process");
		close(fd);
		return r;
	}
	if (fstatat(fd, META_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
		r = renameat(pfd, name, pfd, base) < 0 || fsync(pfd) < 0 ? -errno : 0;
		if (!r)
			log_dev(LOG_NOTICE, path, NO_ZONE, "finished an interrupted conversion of "
				"the 0.1 image: %s is now %s", name, base);
	} else {
		log_dev(LOG_NOTICE, path, NO_ZONE, "removing %s, an incomplete conversion", name);
		r = remove_own_dir(pfd, name, path);
	}
	close(fd);
	(void)e;
	return r;
}
/* ---- opening ---- */

/* Opens (and with create makes) the device directory `base` in pfd,
 * converting a 0.1 image found under the name and finishing an
 * interrupted conversion, and locks it. Sets e->dir_fd. */
static int open_dir(struct emul *e, int pfd, const char *base, const char *path,
		    const struct zd_emul_params *params, bool create, bool *created)
{
	char meta_name[NAME_MAX + 16];
	const char *why;
	struct stat st;
	int r;

	for (int tries = 0;; tries++) {
		if (tries == 4)
			return -EAGAIN; /* the names keep changing under us */
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return -errno;
			r = finish_conversion(e, pfd, base, path);
			if (r)
				return r;
			if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0)
				continue;
			if (!create) {
				log_dev(LOG_ERR, path, NO_ZONE, "no emulated device at %s", path);
				return -ENOENT;
			}
			if (validate_params(params, &why) < 0) {
				log_dev(LOG_ERR, path, NO_ZONE, "invalid emulated device parameters: "
					"%s", why);
				return -EINVAL;
			}
			if (mkdirat(pfd, base, 0700) < 0) {
				if (errno == EEXIST)
					continue;
				return -errno;
			}
			*created = true;
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			log_dev(LOG_ERR, path, NO_ZONE, "emulated device path is a symbolic link; "
				"give the path of the device directory itself");
			return -ELOOP;
		}
		if ((S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) && st.st_uid != geteuid()) {
			log_dev(LOG_ERR, path, NO_ZONE, "emulated device %s is owned by uid %u, not by "
				"the daemon's user (uid %u); refusing it", path, (unsigned)st.st_uid,
				(unsigned)geteuid());
			return -EPERM;
		}
		if (S_ISREG(st.st_mode)) {
			snprintf(meta_name, sizeof(meta_name), "%s.meta", base);
			if (fstatat(pfd, meta_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
				r = convert_v1(e, pfd, base, path);
				if (r)
					return r;
				continue;
			}
			/* A regular file without metadata: either an empty one
			 * a 0.1 creation left, or somebody's file, which is
			 * never turned into a device. */
			if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size == 0 &&
			    st.st_blocks == 0 && create) {
				if (unlinkat(pfd, base, 0) < 0)
					return -errno;
				continue;
			}
			log_dev(LOG_ERR, path, NO_ZONE, "%s is a file with no metadata %s.meta; "
				"refusing to overwrite it", path, path);
			return -EEXIST;
		}
		if (!S_ISDIR(st.st_mode)) {
			log_dev(LOG_ERR, path, NO_ZONE, "emulated device path must be a directory (or "
				"a 0.1 image file to convert)");
			return -EINVAL;
		}
		break;
	}
	e->dir_fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (e->dir_fd < 0)
		return -errno;
	if (fstat(e->dir_fd, &st) < 0)
		return -errno;
	/* The directory a previous life of the daemon opened and locked, kept
	 * for us (systemd's fd store): its lock never lapsed, so nobody took
	 * the device meanwhile. Used only if it is this very directory. */
	if (e->adopt_fd >= 0) {
		struct stat ast;

		if (fstat(e->adopt_fd, &ast) == 0 && S_ISDIR(ast.st_mode) &&
		    ast.st_dev == st.st_dev && ast.st_ino == st.st_ino) {
			close(e->dir_fd);
			e->dir_fd = e->adopt_fd;
			log_dev(LOG_INFO, path, NO_ZONE, "device directory kept locked across the "
				"restart (fd store)");
		} else {
			log_dev(LOG_WARNING, path, NO_ZONE, "the kept descriptor is not this "
				"device's directory; opened afresh");
			close(e->adopt_fd);
		}
		e->adopt_fd = -1;
	}
	/* Anyone who can add names to the directory could plant a zone file
	 * (a hard link to someone's file) for us to hand out. */
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		log_dev(LOG_ERR, path, NO_ZONE, "device directory %s must be the daemon's user's "
			"(uid %u) and writable by nobody else (mode %04o)", path,
			(unsigned)geteuid(), (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	/* One owner at a time: two daemons on one device would each believe
	 * their own zone state. Held until close. */
	if (flock(e->dir_fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (r == -EBUSY)
			log_dev(LOG_ERR, path, NO_ZONE, "device is in use by another process");
		return r;
	}
	remove_v1_leftovers(e, pfd, base);
	return 0;
}

/* True if dir_fd holds anything but ".", ".." and names in `allowed`. */
static int dir_has_other(int dir_fd, const char *const *allowed, bool *yes)
{
	struct dirent *de;
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	*yes = false;
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close_keep_errno(fd);
		return -errno;
	}
	while ((de = readdir(d)) && !*yes) {
		bool ok = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");

		for (unsigned i = 0; allowed[i] && !ok; i++)
			ok = !strcmp(de->d_name, allowed[i]);
		*yes = !ok;
	}
	closedir(d);
	return 0;
}

int zd_emul_open(const char *path, const struct zd_emul_params *params, bool create,
		 enum zd_isolation iso, struct zd_dev **out)
{
	return zd_emul_open_claimed(path, params, create, iso, -1, out);
}

int zd_emul_open_claimed(const char *path, const struct zd_emul_params *params, bool create,
			 enum zd_isolation iso, int claim_fd, struct zd_dev **out)
{
	static const char *const fresh[] = { META_TMP, NULL };
	struct zd_emul_params def;
	struct emul *e;
	struct stat st;
	bool created = false, created_meta = false;
	char *copy = NULL, *base_copy = NULL;
	const char *base = NULL, *why;
	int pfd = -1, r;

	if (!path || !*path || !out ||
	    (iso != ZD_ISOLATION_AUTO && iso != ZD_ISOLATION_ZONE && iso != ZD_ISOLATION_DEVICE)) {
		if (claim_fd >= 0)
			close(claim_fd);
		return -EINVAL;
	}
	*out = NULL;
	if (!params) {
		zd_emul_default_params(&def);
		params = &def;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		if (claim_fd >= 0)
			close(claim_fd);
		return -ENOMEM;
	}
	e->dev.ops = &emul_ops;
	e->dir_fd = e->meta_fd = -1;
	e->adopt_fd = claim_fd;
	claim_fd = -1;
	e->iso = iso == ZD_ISOLATION_DEVICE ? ZD_ISOLATION_DEVICE : ZD_ISOLATION_ZONE;
	copy = strdup(path);
	base_copy = strdup(path);
	e->path = strdup(path);
	if (!copy || !base_copy || !e->path || asprintf(&e->meta_path, "%s/%s", path, META_NAME) < 0) {
		e->meta_path = NULL;
		r = -ENOMEM;
		goto fail;
	}
	base = basename(base_copy);
	if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/")) {
		log_dev(LOG_ERR, path, NO_ZONE, "emulated device path must name a directory entry");
		r = -EINVAL;
		goto fail;
	}

	/* A bad fault spec is refused before anything is created; armed
	 * here, its crash steps cover a conversion too. */
	{
		const char *spec = getenv("ZONED_EMUL_FAULT"), *fwhy = NULL;

		if (spec && *spec && (r = parse_faults(spec, &e->faults, &fwhy)) < 0) {
			if (r == -EINVAL)
				log_dev(LOG_ERR, path, NO_ZONE, "ZONED_EMUL_FAULT='%s': %s", spec, fwhy);
			goto fail;
		}
	}

	pfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0) {
		r = -errno;
		goto fail;
	}
	r = open_dir(e, pfd, base, path, params, create, &created);
	if (r)
		goto fail;
	{
		/* Every later access goes through dir_fd; the absolute name is
		 * for the logs (DEVICE=). */
		char *abs_path = realpath(path, NULL);

		if (abs_path) {
			free(e->path);
			e->path = abs_path;
		}
	}

	e->meta_fd = open_own_file(e->dir_fd, META_NAME, O_RDWR, 0);
	if (e->meta_fd == -ENOENT && create) {
		bool other;

		/* A directory with no metadata is ours from a creation a crash
		 * interrupted (nothing in it yet) or somebody's: never turn
		 * the latter into a device. */
		r = dir_has_other(e->dir_fd, fresh, &other);
		if (r)
			goto fail;
		if (other) {
			log_dev(LOG_ERR, path, NO_ZONE, "directory holds files but no metadata %s; "
				"refusing to make a device of it", e->meta_path);
			r = -EEXIST;
			goto fail;
		}
		if (validate_params(params, &why) < 0) {
			log_dev(LOG_ERR, path, NO_ZONE, "invalid emulated device parameters: %s", why);
			r = -EINVAL;
			goto fail;
		}
		r = create_meta(path, e->dir_fd, params, NULL);
		if (r)
			goto fail;
		created_meta = true;
		log_dev(LOG_INFO, path, NO_ZONE, "created emulated zoned device: %" PRIu64
			" bytes, %" PRIu64 "-byte zones, one file per zone", params->size,
			params->zone_size);
		e->meta_fd = open_own_file(e->dir_fd, META_NAME, O_RDWR, 0);
	}
	if (e->meta_fd < 0) {
		r = e->meta_fd;
		if (r == -ENOENT)
			log_dev(LOG_ERR, path, NO_ZONE, "no metadata %s", e->meta_path);
		else if (r == -ELOOP || r == -EPERM)
			log_dev(LOG_ERR, path, NO_ZONE, "metadata %s must be a regular file owned by "
				"the daemon's user (uid %u)", e->meta_path, (unsigned)geteuid());
		goto fail;
	}
	(void)st;

	r = load_hdr(e, META_VERSION);
	if (r)
		goto fail;
	r = check_params(e, params);
	if (r)
		goto fail;
	/* "In use" from here on: a crash before the clean close makes the
	 * next open check the zone files present against their zones. */
	if (!e->unclean) {
		r = write_hdr_state(e, META_STATE_IN_USE);
		if (r)
			goto fail;
	}
	e->marked_in_use = true;
	if (e->p.max_open) {
		e->lru_cap = e->p.max_open < e->nr_zones ? e->p.max_open : e->nr_zones;
		e->lru = calloc(e->lru_cap, sizeof(*e->lru));
		if (!e->lru) {
			r = -ENOMEM;
			goto fail;
		}
	}
	if (created_meta) {
		e->z = malloc((size_t)e->nr_zones * sizeof(*e->z));
		r = e->z ? 0 : -ENOMEM;
		if (!r)
			init_fresh_zones(e);
	} else {
		r = load_zones(e);
	}
	if (r)
		goto fail;
	close(pfd);
	free(copy);
	free(base_copy);
	*out = &e->dev;
	return 0;

fail:
	/* Leave nothing half made; never remove what we did not create. */
	if (created_meta)
		unlinkat(e->dir_fd, META_NAME, 0);
	if (created)
		unlinkat(pfd, base, AT_REMOVEDIR); /* only if empty */
	if (pfd >= 0)
		close(pfd);
	free(copy);
	free(base_copy);
	/* Not a clean close: whatever was half done gets checked next time. */
	e->marked_in_use = false;
	emul_close(&e->dev);
	return r;
}

/* Reads a device's zones as its records hold them, without the lock,
 * without repairing or writing anything: what the device would report, for
 * a test to compare with what a daemon serving the device shows. Open zones
 * keep their condition (an open would close them). A 0.1 image (a file
 * with path.meta beside it) is read as it stands, unconverted. */
int zd_emul_peek(const char *path, struct zd_zone **zones, uint32_t *nr)
{
	struct emul *e = calloc(1, sizeof(*e));
	uint8_t buf[2][META_REC_SIZE];
	struct stat st;
	uint32_t version = META_VERSION;
	int r;

	*zones = NULL;
	*nr = 0;
	if (!e)
		return -ENOMEM;
	e->dir_fd = e->meta_fd = -1;
	e->path = strdup(path);
	if (!e->path) {
		r = -ENOMEM;
		goto out;
	}
	if (lstat(path, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (S_ISREG(st.st_mode))
		version = META_VERSION_V1;
	if (asprintf(&e->meta_path, version == META_VERSION ? "%s/%s" : "%s.meta", path,
		     META_NAME) < 0) {
		e->meta_path = NULL;
		r = -ENOMEM;
		goto out;
	}
	e->meta_fd = open(e->meta_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (e->meta_fd < 0) {
		r = -errno;
		goto out;
	}
	r = load_hdr(e, version);
	if (r)
		goto out;
	e->z = calloc(e->nr_zones, sizeof(*e->z));
	*zones = calloc(e->nr_zones, sizeof(**zones));
	if (!e->z || !*zones) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t z = 0; z < e->nr_zones; z++) {
		struct rec rec = { 0 };
		char why[160];
		unsigned slot;
		bool suspect;

		for (int s = 0; s < 2; s++) {
			r = pread_all(e->meta_fd, buf[s], META_REC_SIZE,
				      e->slot_off[s] + (uint64_t)z * META_REC_SIZE);
			if (r)
				goto out;
		}
		if (pick_rec(e, z, buf[0], buf[1], &rec, &slot, &suspect, why, sizeof(why)) < 0) {
			e->z[z].cond = ZP_COND_OFFLINE; /* as an open would take it */
		} else {
			e->z[z].cond = rec.cond;
			e->z[z].wpb = (uint32_t)(rec.wp / e->p.logical_block_size);
		}
		fill_zone(e, z, &(*zones)[z]);
	}
	*nr = e->nr_zones;
out:
	if (r) {
		free(*zones);
		*zones = NULL;
	}
	if (e->meta_fd >= 0)
		close(e->meta_fd);
	free(e->z);
	free(e->path);
	free(e->meta_path);
	free(e);
	return r;
}
/* ---- backend operations ---- */

static int emul_claim_fd(struct zd_dev *dev)
{
	return to_emul(dev)->dir_fd;
}

static int emul_info(struct zd_dev *dev, struct zd_dev_info *info)
{
	struct emul *e = to_emul(dev);

	if (!info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	snprintf(info->backend, sizeof(info->backend), "emulated");
	snprintf(info->model, sizeof(info->model), "host-managed");
	snprintf(info->vendor, sizeof(info->vendor), "zoned");
	snprintf(info->product, sizeof(info->product), "emulated");
	snprintf(info->scheduler, sizeof(info->scheduler), "none");
	info->size = e->p.size;
	info->zone_size = e->p.zone_size;
	info->zone_capacity = e->p.zone_capacity;
	info->nr_zones = e->nr_zones;
	info->nr_conventional = e->p.nr_conventional;
	info->max_open = e->p.max_open;
	info->max_active = e->p.max_active;
	info->logical_block_size = e->p.logical_block_size;
	info->physical_block_size = e->p.logical_block_size;
	info->isolation = e->iso;
	snprintf(info->isolation_why, sizeof(info->isolation_why), "%s",
		 e->iso == ZD_ISOLATION_ZONE ? "one file per zone" : "configured");
	return 0;
}

static int emul_report(struct zd_dev *dev, uint32_t from, struct zd_zone *zones, uint32_t *nr)
{
	struct emul *e = to_emul(dev);
	uint32_t n;
	int r;

	if (!zones || !nr)
		return -EINVAL;
	if (from >= e->nr_zones)
		return -ERANGE;
	r = fault_op(e, FOP_REPORT, from, 0);
	if (r)
		return r;
	n = e->nr_zones - from < *nr ? e->nr_zones - from : *nr;
	for (uint32_t i = 0; i < n; i++)
		fill_zone(e, from + i, &zones[i]);
	*nr = n;
	return 0;
}

/* Block aligned and inside the device, without overflow. */
static int check_io(const struct emul *e, uint64_t len, uint64_t off)
{
	uint64_t lbs = e->p.logical_block_size;

	if (off % lbs || len % lbs)
		return -EINVAL;
	if (off > e->p.size || len > e->p.size - off)
		return -EINVAL;
	return 0;
}

/* Writes buf at rel in zone z's file, durably (no flush operation exists
 * in the device layer, so a write returning means it is on disk). */
static int zfile_write(struct emul *e, uint32_t z, const void *buf, uint64_t len, uint64_t rel)
{
	int fd = zfile_open(e, z, O_RDWR, true), r;

	if (fd < 0)
		return fd;
	r = pwrite_all(fd, buf, (size_t)len, rel);
	if (!r) {
		fault_point(e, STEP_DATA_WRITE);
		r = sync_zone_file(e, fd, z);
	}
	close(fd);
	return r;
}

static int emul_pwrite(struct zd_dev *dev, const void *buf, uint64_t len, uint64_t off)
{
	struct emul *e = to_emul(dev);
	uint32_t z, evict;
	uint64_t start, rel, cap, wp;
	struct ezone *ez;
	uint8_t cond;
	int r;

	r = check_io(e, len, off);
	if (r)
		return r;
	if (len == 0)
		return 0;
	if (!buf || len > SSIZE_MAX)
		return -EINVAL;
	z = (uint32_t)(off / e->p.zone_size);
	if ((off + len - 1) / e->p.zone_size != z)
		return -EINVAL; /* a write never spans zones */
	r = fault_op(e, FOP_PWRITE, z, 1);
	if (r)
		return r;
	ez = &e->z[z];
	if (ez->cond == ZP_COND_READONLY || ez->cond == ZP_COND_OFFLINE)
		return -EPERM;
	if (e->broken)
		return e->broken;
	start = zone_start(e, z);
	rel = off - start;
	if (is_conv(e, z))
		return zfile_write(e, z, buf, len, rel);

	cap = zone_cap(e, z);
	if (ez->cond == ZP_COND_FULL || rel != ez_wp(e, z) || len > cap - rel)
		return -EIO; /* what a device answers to an unaligned write */
	r = open_resources(e, z, &evict);
	if (r)
		return r;
	r = zfile_write(e, z, buf, len, rel);
	if (r)
		return r; /* the wp stays: the data past it reads as zeros */

	wp = rel + len;
	if (wp == cap) {
		cond = ZP_COND_FULL;
		wp = e->p.zone_size;
	} else {
		cond = ez->cond == ZP_COND_EXP_OPEN ? ZP_COND_EXP_OPEN : ZP_COND_IMP_OPEN;
	}
	/* Close the evicted zone first so no state, in memory or on disk,
	 * ever has more than max_open zones open. */
	if (evict != NO_ZONE) {
		r = commit(e, evict, e->z[evict].wpb ? ZP_COND_CLOSED : ZP_COND_EMPTY,
			   ez_wp(e, evict));
		if (r)
			goto out;
	}
	r = commit(e, z, cond, wp);
out:
	return sync_meta(e) ?: r;
}

static int emul_pread(struct zd_dev *dev, void *buf, uint64_t len, uint64_t off)
{
	struct emul *e = to_emul(dev);
	uint8_t *p = buf;
	uint64_t end;
	int r;

	r = check_io(e, len, off);
	if (r)
		return r;
	if (len == 0)
		return 0;
	if (!buf || len > SSIZE_MAX)
		return -EINVAL;
	end = off + len;
	r = fault_op(e, FOP_PREAD, (uint32_t)(off / e->p.zone_size),
		     (uint32_t)((end - 1) / e->p.zone_size - off / e->p.zone_size + 1));
	if (r)
		return r;
	for (uint64_t z = off / e->p.zone_size; z * e->p.zone_size < end; z++)
		if (e->z[z].cond == ZP_COND_OFFLINE)
			return -EIO;

	while (off < end) {
		uint32_t z = (uint32_t)(off / e->p.zone_size);
		uint64_t zs = zone_start(e, z), rel = off - zs;
		uint64_t n = (end < zs + e->p.zone_size ? end : zs + e->p.zone_size) - off, valid = n;

		/* Below the wp (and capacity) is data; above it a real device
		 * returns zeros (or an error), never what a crash or a client
		 * left in the zone's file. A read-only zone keeps its last wp
		 * for this, though it reports none. */
		if (!is_conv(e, z)) {
			uint64_t lim = ez_wp(e, z) < zone_cap(e, z) ? ez_wp(e, z) : zone_cap(e, z);

			valid = lim <= rel ? 0 : (lim - rel < n ? lim - rel : n);
		}
		if (valid) {
			int fd = zfile_open(e, z, O_RDONLY, false);

			if (fd == -ENOENT) {
				memset(p, 0, (size_t)valid); /* no file: nothing written */
			} else if (fd < 0) {
				return fd;
			} else {
				r = pread_all(fd, p, (size_t)valid, rel);
				close(fd);
				if (r)
					return r;
			}
		}
		memset(p + valid, 0, (size_t)(n - valid));
		p += n;
		off += n;
	}
	return 0;
}

static int zone_open(struct emul *e, uint32_t z)
{
	struct ezone *ez = &e->z[z];
	uint32_t evict;
	int r;

	switch (ez->cond) {
	case ZP_COND_EXP_OPEN:
		return 0;
	case ZP_COND_IMP_OPEN:
		return commit(e, z, ZP_COND_EXP_OPEN, ez_wp(e, z));
	case ZP_COND_EMPTY:
	case ZP_COND_CLOSED:
		r = open_resources(e, z, &evict);
		if (r)
			return r;
		if (evict != NO_ZONE) {
			r = commit(e, evict, e->z[evict].wpb ? ZP_COND_CLOSED : ZP_COND_EMPTY,
				   ez_wp(e, evict));
			if (r)
				return r;
		}
		return commit(e, z, ZP_COND_EXP_OPEN, ez_wp(e, z));
	default: /* full */
		return -EIO;
	}
}

/* No record: the one on disk says open at this wp, and every load turns an
 * open zone into exactly what this makes it (closed, or empty at wp 0), as
 * a power cycle closes a real drive's open zones. A close, the last step of
 * releasing a written zone, thus costs no fdatasync. */
static int zone_close(struct emul *e, uint32_t z)
{
	struct ezone *ez = &e->z[z];

	if (ez->cond != ZP_COND_IMP_OPEN && ez->cond != ZP_COND_EXP_OPEN)
		return 0;
	zone_apply(e, z, ez->wpb ? ZP_COND_CLOSED : ZP_COND_EMPTY, ez_wp(e, z));
	return 0;
}

static int zone_finish(struct emul *e, uint32_t z)
{
	struct ezone *ez = &e->z[z];
	uint64_t size;
	int r;

	if (ez->cond == ZP_COND_FULL)
		return 0;
	if (ez->cond == ZP_COND_EMPTY && e->p.max_active && nr_active(e) >= e->p.max_active)
		return -EBUSY;
	/* The unwritten rest must read as zeros even if a crash or a client
	 * left data there behind the recorded wp: cut off (and synced) before
	 * the full record, so the record never covers stale bytes. */
	r = zfile_size(e, z, &size);
	if (!r && size > ez_wp(e, z))
		r = zfile_resize(e, z, ez_wp(e, z));
	if (r)
		return r;
	return commit(e, z, ZP_COND_FULL, e->p.zone_size);
}

/* The records first (the intent), then the files are emptied: a crash in
 * between leaves the old data under an "empty" record, which the repair at
 * the next open takes back (the reset did not happen). The reverse order
 * would leave a record claiming data that is gone. The files are
 * truncated, not unlinked: lease.reset keeps the lease, and its holder's
 * fd must still reach the zone; a fence (lease_fence) replaces the inode
 * of an empty zone when a lease ends. Even an empty zone's file is emptied:
 * a crash or a client may have left data behind its wp, which a refresh
 * would take for new writes. */
static int zone_reset_range(struct emul *e, uint32_t zone, uint32_t count)
{
	int r = 0;

	for (uint32_t z = zone; z < zone + count && !r; z++)
		if (e->z[z].cond != ZP_COND_EMPTY)
			r = commit(e, z, ZP_COND_EMPTY, 0);
	r = sync_meta(e) ?: r;
	for (uint32_t z = zone; z < zone + count && !r; z++) {
		uint64_t size;

		r = zfile_size(e, z, &size);
		if (!r && size)
			r = zfile_resize(e, z, 0);
	}
	return r;
}

static int zone_op_range(struct emul *e, enum zd_zone_op op, uint32_t zone, uint32_t count);

static int emul_zone_op(struct zd_dev *dev, enum zd_zone_op op, uint32_t zone, uint32_t count)
{
	struct emul *e = to_emul(dev);
	uint32_t stop;
	int r = 0;

	if (zone >= e->nr_zones)
		return -ERANGE;
	if (count == 0)
		return -EINVAL;
	if (count > e->nr_zones - zone)
		return -ERANGE;
	if (op != ZD_OP_OPEN && op != ZD_OP_CLOSE && op != ZD_OP_FINISH && op != ZD_OP_RESET)
		return -EINVAL;
	r = fault_op(e, FOP_ZONE_OP, zone, count);
	if (r)
		return r;
	stop = fault_zone_stop(e, zone, count);
	if (stop != NO_ZONE) {
		log_dev(LOG_NOTICE, e->path, stop, "fault injection: EIO on zone-op of zone %"
			PRIu32, stop);
		r = stop > zone ? zone_op_range(e, op, zone, stop - zone) : 0;
		return r ? r : -EIO;
	}
	return zone_op_range(e, op, zone, count);
}

static int zone_op_range(struct emul *e, enum zd_zone_op op, uint32_t zone, uint32_t count)
{
	int r = 0;

	/* Refuse a range with a zone no operation applies to before changing
	 * anything; only resource limits and I/O can stop a range midway. */
	for (uint32_t z = zone; z < zone + count; z++)
		if (is_conv(e, z) || e->z[z].cond == ZP_COND_READONLY ||
		    e->z[z].cond == ZP_COND_OFFLINE)
			return -EPERM;
	if (e->broken)
		return e->broken;

	if (op == ZD_OP_RESET)
		return zone_reset_range(e, zone, count);
	for (uint32_t z = zone; z < zone + count && !r; z++) {
		switch (op) {
		case ZD_OP_OPEN: r = zone_open(e, z); break;
		case ZD_OP_CLOSE: r = zone_close(e, z); break;
		case ZD_OP_FINISH: r = zone_finish(e, z); break;
		case ZD_OP_RESET: break;
		}
	}
	return sync_meta(e) ?: r;
}

/* One fd per zone, each on the zone's own file (created here if the zone
 * never had one), so an fd reaches its zone and nothing else, isolate or
 * not: a write past the zone's end, an ftruncate or a fallocate changes
 * that file only. */
static int emul_open_zones(struct zd_dev *dev, uint32_t zone, uint32_t count, int flags,
			   bool isolate, struct zd_zone_fds *out)
{
	struct emul *e = to_emul(dev);
	int acc = flags & O_ACCMODE, r;

	if (!out || (flags & ~(O_ACCMODE | O_DIRECT | O_CLOEXEC)) ||
	    (acc != O_RDONLY && acc != O_RDWR && acc != O_WRONLY))
		return -EINVAL;
	if (count == 0)
		return -EOPNOTSUPP; /* no whole-device fd: the zones are files */
	if (count > ZD_ZONE_FDS_MAX || zone >= e->nr_zones || count > e->nr_zones - zone)
		return -ERANGE;
	if (isolate && e->iso != ZD_ISOLATION_ZONE)
		return -EOPNOTSUPP;
	r = fault_op(e, FOP_OPEN_FD, zone, count);
	if (r)
		return r;
	if (e->broken && acc != O_RDONLY)
		return e->broken; /* creating a file is a change */
	for (uint32_t i = 0; i < count; i++) {
		int fd = zfile_open(e, zone + i, flags & ~O_CLOEXEC, true);

		if (fd < 0) {
			while (i--)
				close(out->fd[i]);
			return fd;
		}
		out->fd[i] = fd;
	}
	out->nr = count;
	out->fd_offset = 0;
	return 0;
}

/* True when nobody but us holds zone file fd open (an fd of ours, O_RDONLY):
 * the kernel grants a write lease only when the inode has no other open
 * file description, readers (i_readcount) and writers (i_writecount) alike
 * (fs/locks.c check_conflicting_open), whichever process holds it and
 * however it got there (SCM_RIGHTS passes the same open file description;
 * an mmap keeps it open). A second name (a hard link) could be reopened
 * later, so it counts as a holder too. Any failure (a filesystem without
 * leases, leases disabled) answers "held": the caller then copies, which is
 * always safe. */
static bool nobody_else_holds(int fd, const struct stat *st)
{
	if (st->st_nlink != 1)
		return false;
	if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0)
		return false;
	fcntl(fd, F_SETLEASE, F_UNLCK);
	return true;
}

/* Gives zone z's data a new inode when an fd given out may still reach
 * the old one (see lease_fence in zdev.h). Returns 0; *how says what it did
 * (for the log and the bench): 0 nothing (no file, or nobody holds it),
 * 1 unlinked an empty file, 2 moved the data. */
static int fence_zone(struct emul *e, uint32_t z, int *how)
{
	char name[32], tmp[40];
	struct stat st;
	uint64_t len;
	int fd, tfd, r;

	*how = 0;
	zone_name(e, z, name, sizeof(name));
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = open_own_file(e->dir_fd, name, O_RDONLY, 0);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	/* Nobody but us has the file open: no descriptor given out can reach
	 * it any more, whatever it holds. The common case (the library closes
	 * a lease's fds before releasing it) costs two fcntl()s. */
	if (nobody_else_holds(fd, &st)) {
		r = 0;
		goto out;
	}
	if (st.st_size == 0) {
		/* Nothing to keep: the next open_zones() makes a new inode.
		 * The unlink is made durable before the zone can be handed out
		 * again: were it lost in a power cut, the old name would come
		 * back with what a revoked fd wrote into it meanwhile. */
		if (unlinkat(e->dir_fd, name, 0) < 0) {
			r = -errno;
			goto out;
		}
		fault_point(e, STEP_UNLINK);
		*how = 1;
		r = sync_dir(e);
		goto out;
	}
	/* Copy to ZONE.tmp, sync, rename over the zone file, sync the
	 * directory: a crash leaves the old file or the new one, both whole,
	 * and a ZONE.tmp that the next open removes. A reflink shares the
	 * blocks, so later writes through a revoked fd (copy on write) do
	 * not reach the new inode either. */
	len = (uint64_t)st.st_size < e->p.zone_size ? (uint64_t)st.st_size : e->p.zone_size;
	if (unlinkat(e->dir_fd, tmp, 0) < 0 && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	tfd = open_own_file(e->dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (tfd < 0) {
		r = tfd;
		goto out;
	}
	if (ioctl(tfd, FICLONE, fd) < 0 || ftruncate(tfd, (off_t)len) < 0)
		r = copy_extents(fd, 0, tfd, len);
	else
		r = 0;
	if (!r && fdatasync(tfd) < 0)
		r = -errno;
	close(tfd);
	if (!r)
		fault_point(e, STEP_FENCE_COPY);
	if (!r && renameat(e->dir_fd, tmp, e->dir_fd, name) < 0)
		r = -errno;
	if (r) {
		unlinkat(e->dir_fd, tmp, 0);
		log_dev(LOG_ERR, e->path, z, "cannot fence zone %" PRIu32 ": %s", z, strerror(-r));
		goto out;
	}
	fault_point(e, STEP_FENCE_RENAME);
	*how = 2;
	r = sync_dir(e);
out:
	close(fd);
	return r;
}

static int emul_lease_fence(struct zd_dev *dev, uint32_t zone, uint32_t count)
{
	struct emul *e = to_emul(dev);
	int r, how;

	if (count == 0 || zone >= e->nr_zones || count > e->nr_zones - zone)
		return -ERANGE;
	r = fault_op(e, FOP_FENCE, zone, count);
	if (r)
		return r;
	if (e->broken)
		return e->broken;
	for (uint32_t z = zone; z < zone + count; z++) {
		r = fence_zone(e, z, &how);
		if (r)
			return r;
		if (how == 2)
			log_dev(LOG_INFO, e->path, z, "zone %" PRIu32 " fenced: its data moved to a "
				"new file, away from a descriptor still open on it", z);
	}
	return 0;
}

static int emul_probe_open(struct zd_dev *dev, uint32_t zone)
{
	struct emul *e = to_emul(dev);

	if (zone >= e->nr_zones || is_conv(e, zone))
		return -ERANGE;
	/* Armed faults count the device's operations: a daemon opening zones
	 * ahead would move them. Those devices take the queue every time. */
	if (e->faults.n)
		return -EOPNOTSUPP;
	return zfile_open(e, zone, O_RDONLY, true);
}

/* Runs on the daemon's loop: touches probe_fd, the cached zone and the
 * geometry, nothing a work on the pool may be changing (faults are armed
 * before the loop starts). An armed fault answers "cannot tell", so the
 * faults tests go through the device. */
static int emul_lease_probe(struct zd_dev *dev, uint32_t zone, int probe_fd,
			    const struct zd_zone *cached)
{
	struct emul *e = to_emul(dev);
	struct stat st;

	if (zone >= e->nr_zones || e->faults.n)
		return 1;
	if (fstat(probe_fd, &st) < 0)
		return -errno;
	if (cached->cond == ZP_COND_FULL || cached->wp < cached->start ||
	    (uint64_t)st.st_size != cached->wp - cached->start)
		return 1;
	return nobody_else_holds(probe_fd, &st) ? 0 : 1;
}

/* Through /proc/self/fd: the magic link goes straight to probe_fd's open
 * file, no name is looked up, and the inode is in memory (probe_fd holds
 * it). Without /proc mounted it declines, and the zone takes a refill. */
static int emul_probe_reopen(struct zd_dev *dev, uint32_t zone, int probe_fd, int flags,
			     bool *direct)
{
	struct emul *e = to_emul(dev);
	char path[40];
	int fd;

	if (zone >= e->nr_zones || e->faults.n || e->broken)
		return -EOPNOTSUPP;
	if ((flags & O_ACCMODE) != O_RDWR || (flags & ~(O_ACCMODE | O_DIRECT | O_CLOEXEC)))
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", probe_fd);
	*direct = false;
	fd = open(path, flags | O_CLOEXEC, 0);
	if (fd >= 0) {
		*direct = flags & O_DIRECT;
		return fd;
	}
	if (errno == EINVAL && (flags & O_DIRECT))
		fd = open(path, (flags & ~O_DIRECT) | O_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

static bool in_ranges(uint32_t z, const struct zd_range *r, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		if (z >= r[i].zone && z - r[i].zone < r[i].count)
			return true;
	return false;
}

/* After a clean close nothing is left to fence: every lease that ended was
 * fenced before its zones went back to the pool, and the others are the
 * orphans in keep. After a crash a fence may have been cut short, so every
 * zone file present (and only those) outside keep is fenced: cheap for the
 * files nobody holds any more. */
static int emul_lease_sweep(struct zd_dev *dev, const struct zd_range *keep, size_t nr)
{
	struct emul *e = to_emul(dev);
	uint32_t moved = 0;
	struct dirent *de;
	int fd, r = 0;
	DIR *d;

	if (!e->unclean || e->iso != ZD_ISOLATION_ZONE)
		return 0;
	if (e->broken)
		return e->broken;
	fd = openat(e->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close_keep_errno(fd);
		return -errno;
	}
	while (!r && (de = readdir(d))) {
		bool tmp;
		uint32_t z = parse_zone_name(e, de->d_name, &tmp);
		int how;

		if (z == NO_ZONE || tmp || in_ranges(z, keep, nr))
			continue;
		r = fence_zone(e, z, &how);
		moved += how == 2;
	}
	closedir(d);
	if (moved)
		log_dev(LOG_NOTICE, e->path, NO_ZONE, "after an unclean stop: %" PRIu32 " zone(s) "
			"still open by a previous daemon's clients fenced", moved);
	return r;
}

/* The wp of a sequential zone is its file's size, known exactly. What a
 * client can do to its file beyond writing at the wp is settled here:
 *  - data past capacity is cut off (it is no zone's): the zone is full;
 *  - a hole below the end counts as written zeros (a device cannot leave
 *    one, and the data past it is what the client wrote);
 *  - a partial last block counts as a whole one (zero-padded);
 *  - a file shorter than the wp (an ftruncate) never moves the wp back:
 *    the missing part reads as zeros.
 * hint_wp is cross-checked, not trusted alone: it must be aligned, within
 * the zone's capacity and not behind the wp (-EINVAL), and it can move the
 * wp past the file's end (the file is extended with zeros to agree) but
 * never behind it. */
static int emul_refresh_zone(struct zd_dev *dev, uint32_t zone, uint64_t hint_wp,
			     struct zd_zone *out)
{
	struct emul *e = to_emul(dev);
	uint64_t start, cap, wp, size, hint = 0;
	struct ezone *ez;
	uint32_t evict;
	uint8_t cond;
	int r;

	if (zone >= e->nr_zones)
		return -ERANGE;
	r = fault_op(e, FOP_REFRESH, zone, 1);
	if (r)
		return r;
	ez = &e->z[zone];
	if (is_conv(e, zone) || ez->cond == ZP_COND_READONLY || ez->cond == ZP_COND_OFFLINE)
		return -EPERM;
	if (e->broken)
		return e->broken;
	start = zone_start(e, zone);
	cap = zone_cap(e, zone);
	if (hint_wp != UINT64_MAX) {
		if (hint_wp < start || (hint_wp - start) % e->p.logical_block_size ||
		    hint_wp - start < ez_wp(e, zone) || hint_wp - start > cap)
			return -EINVAL;
		hint = hint_wp - start;
	}
	r = zfile_size(e, zone, &size);
	if (r)
		return r;
	if (ez->cond == ZP_COND_FULL) {
		if (size > cap)
			r = zfile_resize(e, zone, cap);
		if (r)
			return r;
		goto done;
	}
	wp = size_wp(e, zone, size);
	if (wp < ez_wp(e, zone))
		wp = ez_wp(e, zone);
	if (wp < hint)
		wp = hint;
	if (wp != ez_wp(e, zone)) {
		r = open_resources(e, zone, &evict);
		if (r)
			return r;
		/* The file made to agree with the wp, and durable before the
		 * wp is recorded over it. */
		if (size != wp)
			r = zfile_resize(e, zone, wp);
		else
			r = sync_zone_file_by_name(e, zone);
		if (r)
			return r;
		if (wp == cap) {
			cond = ZP_COND_FULL;
			wp = e->p.zone_size;
		} else {
			cond = ez->cond == ZP_COND_EXP_OPEN ? ZP_COND_EXP_OPEN : ZP_COND_IMP_OPEN;
		}
		if (evict != NO_ZONE)
			r = commit(e, evict, e->z[evict].wpb ? ZP_COND_CLOSED : ZP_COND_EMPTY,
				   ez_wp(e, evict));
		if (!r)
			r = commit(e, zone, cond, wp);
		r = sync_meta(e) ?: r;
		if (r)
			return r;
	} else if (size > cap) {
		r = zfile_resize(e, zone, cap);
		if (r)
			return r;
	}
done:
	if (out)
		fill_zone(e, zone, out);
	return 0;
}

static int set_cond(struct emul *e, uint32_t zone, uint8_t cond)
{
	struct ezone *ez;
	int r;

	if (cond != ZP_COND_READONLY && cond != ZP_COND_OFFLINE)
		return -EINVAL;
	if (zone >= e->nr_zones)
		return -ERANGE;
	/* As null_blk: conventional zones keep their condition. */
	if (is_conv(e, zone))
		return -EPERM;
	ez = &e->z[zone];
	if (ez->cond == cond)
		return 0;
	if (ez->cond == ZP_COND_OFFLINE)
		return -EPERM; /* a dead zone does not come back read-only */
	if (e->broken)
		return e->broken;
	/* The zone leaves the open/active accounting through zone_apply(). */
	r = commit(e, zone, cond, ez_wp(e, zone));
	r = sync_meta(e) ?: r;
	if (!r)
		log_dev(LOG_WARNING, e->path, zone, "zone %" PRIu32 " is now %s", zone,
			cond == ZP_COND_READONLY ? "read-only" : "offline");
	return r;
}

int zd_emul_set_cond(struct zd_dev *dev, uint32_t zone, enum zp_cond cond)
{
	if (!dev || dev->ops != &emul_ops)
		return -EINVAL;
	return set_cond(to_emul(dev), zone, (uint8_t)cond);
}

static const struct zd_backend_ops emul_ops = {
	.name = "emulated",
	.close = emul_close,
	.info = emul_info,
	.report = emul_report,
	.zone_op = emul_zone_op,
	.pwrite = emul_pwrite,
	.pread = emul_pread,
	.open_zones = emul_open_zones,
	.lease_fence = emul_lease_fence,
	.probe_open = emul_probe_open,
	.lease_probe = emul_lease_probe,
	.probe_reopen = emul_probe_reopen,
	.lease_sweep = emul_lease_sweep,
	.refresh_zone = emul_refresh_zone,
	.claim_fd = emul_claim_fd,
};
