/* The emulated zoned device: a sparse backing file holds the data, a
 * crash-safe metadata file (path + ".meta") holds every zone's condition and wp. */
#include "config.h"

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
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/zdev.h"

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
 * Metadata format (all integers little endian), version 1:
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
 * slot that does not hold its newest valid record, with the sequence number
 * plus one, then fdatasync()s; the newest record is never overwritten, so a
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
 *  - write (and refresh): data, fdatasync, then the record of the new wp.
 *    A crash before the record leaves data past the recorded wp.
 *  - reset: the record (empty) first, fdatasync, then the discard, then an
 *    fdatasync of the data. A crash between them leaves the old data behind
 *    an empty record: the reset did not happen.
 *  - finish: the discard of what lies past the wp first, then the record.
 *    A crash between them leaves a zone as it was, minus stale bytes.
 *  - open, close, set_cond: the record only.
 * Data past the recorded wp therefore only means "written, not recorded", by
 * us or by a client writing through its fd. After an unclean stop (header
 * bit "in use" still set at open) every empty or closed sequential zone whose
 * data goes past its recorded wp takes the data's wp, as a real device's wp
 * would have moved with the data: no write pointer claims data that is not
 * in the file, and no data lies behind one. After a clean close there is no
 * per-zone work. The same repair applies, from the zone start, to a zone
 * whose newest record is unreadable (a record that is corrupt rather than
 * never written): the surviving older record is not trusted to be current.
 *
 * A backing file found shorter than the device (a lessee can ftruncate it)
 * is extended back; zones whose recorded data lay in the lost part go
 * offline, persistently, with a log line. A zone with no valid record at all
 * goes offline too: its state is unknown and guessing could hand out a zone
 * that holds data as empty.
 *
 * After a failed fdatasync the device refuses changes (-EIO) until it is
 * reopened, which reloads the state from what really is on disk.
 */

#define META_MAGIC "ZONEDEMU"
#define META_VERSION 1
#define META_HDR_SIZE 4096u
#define META_HDR_USED 512u
#define META_HDR_CRC_OFF 508u
#define META_HDR_STATE_OFF 80u
#define META_STATE_IN_USE 1u
#define META_REC_SIZE 32u
#define META_REC_CRC_OFF 28u
#define META_ALIGN 4096u
/* Memory is 32 bytes a zone; 2^24 zones (16 TiB at 1 MiB zones) is far
 * beyond any use of an emulator and keeps every size computation in range. */
#define EMUL_MAX_ZONES (1u << 24)
#define NO_ZONE UINT32_MAX

struct ezone {
	uint64_t wp;   /* bytes from the zone start; zone size when full */
	uint64_t seq;  /* sequence number of the newest valid record */
	uint32_t prev; /* LRU list of implicitly open zones, oldest first */
	uint32_t next;
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
 *                         data-write, data-sync, discard, meta-write,
 *                         meta-sync, header).
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
 * OP is one of the backend operations: report, zone-op, refresh, open-fd,
 * pwrite, pread, or any (every one of them). */
enum fault_step {
	STEP_DATA_WRITE,
	STEP_DATA_SYNC,
	STEP_DISCARD,
	STEP_META_WRITE,
	STEP_META_SYNC,
	STEP_HEADER,
	STEP_COUNT,
};

static const char *const step_names[STEP_COUNT] = {
	"data-write", "data-sync", "discard", "meta-write", "meta-sync", "header",
};

enum fault_op {
	FOP_REPORT,
	FOP_ZONE_OP,
	FOP_REFRESH,
	FOP_OPEN_FD,
	FOP_PWRITE,
	FOP_PREAD,
	FOP_ANY,
	FOP_COUNT,
};

/* Underscores accepted too: zone_op reads as naturally as zone-op. */
static const char *const fop_names[FOP_COUNT] = {
	"report", "zone-op", "refresh", "open-fd", "pwrite", "pread", "any",
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
	char *path;        /* absolute path of the backing file */
	char *meta_path;
	int fd;            /* backing file, O_RDWR, flock()ed while open */
	int meta_fd;
	/* Once an fdatasync fails we no longer know what is on disk (the page
	 * cache may have dropped the dirty pages), so every later change fails
	 * with this error instead of building on an unknown state. */
	int broken;
	bool meta_dirty;
	/* The header said "in use" at open: the last user did not close
	 * cleanly, so records may lag behind the data. */
	bool unclean;
	bool marked_in_use; /* we set the header bit and must clear it */
	uint64_t trunc_size; /* backing file size found at open when short, else 0 */
	bool truncated;
	struct faults faults;
	/* A vanish fault fired: every operation fails with ENODEV from now. */
	bool vanished;
	struct zd_emul_params p;
	uint32_t nr_zones;
	uint64_t slot_off[2];
	uint32_t nr_imp, nr_exp, nr_closed;
	uint32_t lru_head, lru_tail;
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

static uint32_t crc32c(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = 0xffffffffu;

	while (len--) {
		c ^= *p++;
		c = (c >> 4) ^ crc32c_nibble[c & 15];
		c = (c >> 4) ^ crc32c_nibble[c & 15];
	}
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

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
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

#define FOP_LIST "report, zone-op, refresh, open-fd, pwrite, pread, any"

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
		*why = "unknown step (data-write, data-sync, discard, meta-write, meta-sync, header)";
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
			    op != FOP_REPORT && op != FOP_OPEN_FD && op != FOP_ZONE_OP && !err) {
				log_dev(LOG_NOTICE, e->path, f->zone, "fault injection: EIO on %s "
					"of zone %" PRIu32, fop_names[op], f->zone);
				err = -EIO;
			}
			continue;
		}
		if (f->op != FOP_ANY && f->op != op)
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
	struct ezone *ez = &e->z[z];

	if (ez->prev != NO_ZONE)
		e->z[ez->prev].next = ez->next;
	else
		e->lru_head = ez->next;
	if (ez->next != NO_ZONE)
		e->z[ez->next].prev = ez->prev;
	else
		e->lru_tail = ez->prev;
	ez->prev = ez->next = NO_ZONE;
}

static void lru_append(struct emul *e, uint32_t z)
{
	struct ezone *ez = &e->z[z];

	ez->prev = e->lru_tail;
	ez->next = NO_ZONE;
	if (e->lru_tail != NO_ZONE)
		e->z[e->lru_tail].next = z;
	else
		e->lru_head = z;
	e->lru_tail = z;
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
	ez->wp = wp;
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
		if (e->lru_head == NO_ZONE)
			return -EBUSY; /* all open zones are explicitly open */
		*evict = e->lru_head;
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
		out->wp = out->start + ez->wp;
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

static int sync_data(struct emul *e)
{
	if (fdatasync(e->fd) < 0) {
		int r = -errno;

		log_dev(LOG_ERR, e->path, NO_ZONE, "fdatasync of the backing file failed: %s; "
			"refusing further changes", strerror(-r));
		e->broken = -EIO;
		return -EIO;
	}
	fault_point(e, STEP_DATA_SYNC);
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

/* Finds the end of the last data extent in [from, to), or from if there is
 * none. A filesystem without SEEK_DATA/SEEK_HOLE support reports the whole
 * file as data, which makes a refresh without hint assume a full zone; the
 * granularity is the filesystem block (4 KiB on tmpfs and ext4), so with
 * 512-byte logical blocks a refresh without hint can round up. */
static int last_data_end(int fd, uint64_t from, uint64_t to, uint64_t *end)
{
	uint64_t pos = from;

	*end = from;
	while (pos < to) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0) {
			if (errno == ENXIO)
				break; /* no data after pos */
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

/* Makes [off, off + len) read as zeros, deallocating it where the
 * filesystem can punch holes, else overwriting only its data extents. */
static int discard_range_once(struct emul *e, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];
	uint64_t pos = off, to = off + len;

	if (!len)
		return 0;
	if (fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	while (pos < to) {
		off_t d = lseek(e->fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)d >= to)
			return 0;
		h = lseek(e->fd, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		for (pos = (uint64_t)d; pos < (uint64_t)h && pos < to;) {
			uint64_t n = to - pos;
			int r;

			if (n > sizeof(zeros))
				n = sizeof(zeros);
			if (n > (uint64_t)h - pos)
				n = (uint64_t)h - pos;
			r = pwrite_all(e->fd, zeros, (size_t)n, pos);
			if (r)
				return r;
			pos += n;
		}
	}
	return 0;
}

static int discard_range(struct emul *e, uint64_t off, uint64_t len)
{
	int r = discard_range_once(e, off, len);

	if (r) {
		/* The record may already say "empty" over this data (reset
		 * records first): refuse changes until a reopen repairs it. */
		log_dev(LOG_ERR, e->path, NO_ZONE, "discard failed: %s; refusing further changes",
			strerror(-r));
		e->broken = -EIO;
		return -EIO;
	}
	if (len)
		fault_point(e, STEP_DISCARD);
	return 0;
}

/* True if [from, to) of the backing file holds data (a filesystem without
 * SEEK_DATA reports everything as data). */
static int range_has_data(int fd, uint64_t from, uint64_t to, bool *yes)
{
	off_t d = lseek(fd, (off_t)from, SEEK_DATA);

	*yes = false;
	if (d < 0)
		return errno == ENXIO ? 0 : -errno;
	*yes = (uint64_t)d < to;
	return 0;
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
	if (r->wp > len || r->wp % e->p.logical_block_size)
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

	encode_rec(rec, z, cond, wp, ez->seq + 1);
	r = pwrite_all(e->meta_fd, rec, sizeof(rec), e->slot_off[slot] + (uint64_t)z * META_REC_SIZE);
	if (r) {
		/* The newest record is intact; memory still matches it. */
		log_dev(LOG_ERR, e->path, z, "metadata write failed: %s", strerror(-r));
		return -EIO;
	}
	e->meta_dirty = true;
	ez->seq++;
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

static int fsync_parent(const char *path)
{
	char *copy = strdup(path);
	int fd, r = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Writes a complete metadata file under a temporary name and renames it into
 * place, so a crash during creation leaves either no device or a whole one.
 * Slot B is written as zeros (invalid records) rather than left sparse so
 * that later updates cannot fail for lack of space. */
static int create_meta(const char *path, const char *meta_path, const struct zd_emul_params *p)
{
	uint32_t nr_zones = (uint32_t)(p->size / p->zone_size);
	size_t chunk_zones = 2048, buf_len = META_HDR_SIZE;
	uint64_t sb = slot_bytes(nr_zones), off;
	char *tmp = NULL;
	uint8_t *buf = NULL;
	int fd = -1, r;

	if (asprintf(&tmp, "%s.tmp", meta_path) < 0)
		return -ENOMEM;
	if (chunk_zones * META_REC_SIZE > buf_len)
		buf_len = chunk_zones * META_REC_SIZE;
	buf = malloc(buf_len);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	/* Whatever sits under the temporary name (a crash's leftover, or a
	 * symlink planted to make us overwrite another file) is removed, and
	 * the file created anew, never followed. */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	encode_hdr(buf, p, nr_zones);
	r = pwrite_all(fd, buf, META_HDR_SIZE, 0);
	if (r)
		goto out;

	/* Slot A: every zone empty (conventional ones "not wp"), sequence 1. */
	off = META_HDR_SIZE;
	for (uint32_t z = 0; z < nr_zones;) {
		size_t n = 0;

		for (; n < chunk_zones && z < nr_zones; n++, z++)
			encode_rec(buf + n * META_REC_SIZE, z,
				   z < p->nr_conventional ? ZP_COND_NOT_WP : ZP_COND_EMPTY, 0, 1);
		r = pwrite_all(fd, buf, n * META_REC_SIZE, off);
		if (r)
			goto out;
		off += n * META_REC_SIZE;
	}
	memset(buf, 0, buf_len);
	for (off = META_HDR_SIZE + (uint64_t)nr_zones * META_REC_SIZE;
	     off < META_HDR_SIZE + 2 * sb;) {
		uint64_t n = META_HDR_SIZE + 2 * sb - off;

		if (n > buf_len)
			n = buf_len;
		r = pwrite_all(fd, buf, (size_t)n, off);
		if (r)
			goto out;
		off += n;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		goto out;
	}
	if (rename(tmp, meta_path) < 0) {
		r = -errno;
		goto out;
	}
	r = fsync_parent(meta_path);
out:
	if (fd >= 0)
		close(fd);
	if (r) {
		unlink(tmp);
		log_dev(LOG_ERR, path, NO_ZONE, "cannot create metadata %s: %s", meta_path, strerror(-r));
	}
	free(tmp);
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

static int load_hdr(struct emul *e)
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
	if (get_le32(h + 8) != META_VERSION) {
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata format version %" PRIu32
			" is not supported (this build knows %u)", get_le32(h + 8), META_VERSION);
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
	if (fstat(e->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size != e->p.size) {
		/* Anyone holding an fd can resize the file: serve what is left
		 * rather than refuse the device. load_zones() takes zones whose
		 * data was cut off offline. */
		log_dev(LOG_WARNING, e->path, NO_ZONE, "backing file is %jd bytes, metadata says %"
			PRIu64 "; resizing it back", (intmax_t)st.st_size, e->p.size);
		if ((uint64_t)st.st_size < e->p.size) {
			e->truncated = true;
			e->trunc_size = (uint64_t)st.st_size;
		}
		if (ftruncate(e->fd, (off_t)e->p.size) < 0 || fsync(e->fd) < 0) {
			r = -errno;
			log_dev(LOG_ERR, e->path, NO_ZONE, "cannot resize the backing file: %s",
				strerror(-r));
			return r;
		}
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
	for (unsigned i = 0; i < META_REC_SIZE; i++)
		if (b[i])
			return false;
	return true;
}

/* Makes zone z's record agree with the data in the backing file: the wp
 * moves to where the data ends (rounded up to a block). from_start: the
 * record is not trusted below its wp either (its newer copy was corrupt),
 * else only data past the wp is looked for (an unclean stop). A full zone
 * is left alone unless from_start and it holds no data at all: a finished
 * zone may hold any amount of data, so only "nothing" contradicts it. */
static int repair_zone(struct emul *e, uint32_t z, bool from_start, uint32_t *logged)
{
	struct ezone *ez = &e->z[z];
	uint64_t start = zone_start(e, z), cap = zone_cap(e, z), lbs = e->p.logical_block_size;
	uint64_t end, wp, old = ez->cond == ZP_COND_FULL ? cap : ez->wp;
	uint8_t cond;
	int r;

	if (is_conv(e, z) || ez->cond == ZP_COND_READONLY || ez->cond == ZP_COND_OFFLINE)
		return 0;
	if (ez->cond == ZP_COND_FULL) {
		bool data;

		if (!from_start)
			return 0;
		r = range_has_data(e->fd, start, start + e->p.zone_size, &data);
		if (r || data)
			return r;
		wp = 0;
	} else {
		r = last_data_end(e->fd, from_start ? start : start + ez->wp, start + cap, &end);
		if (r)
			return r;
		wp = (end - start + lbs - 1) / lbs * lbs;
		if (!from_start && wp < ez->wp)
			wp = ez->wp; /* no data past the wp: nothing to do */
	}
	if (wp == old)
		return 0;
	cond = wp == cap ? ZP_COND_FULL : wp ? ZP_COND_CLOSED : ZP_COND_EMPTY;
	if ((*logged)++ < 8)
		log_dev(LOG_WARNING, e->path, z, "zone %" PRIu32 ": %s; write pointer taken from "
			"the data: %" PRIu64 " -> %" PRIu64 " bytes", z,
			from_start ? "newest metadata record corrupt" : "unclean stop",
			old, wp);
	return commit(e, z, cond, cond == ZP_COND_FULL ? e->p.zone_size : wp);
}

static int take_offline(struct emul *e, uint32_t z, const char *why, uint32_t *logged)
{
	if ((*logged)++ < 8)
		log_dev(LOG_ERR, e->path, z, "zone %" PRIu32 " is now offline: %s", z, why);
	return commit(e, z, ZP_COND_OFFLINE, e->z[z].wp);
}

/* The repairs load_zones() found necessary; only runs when something is
 * suspect, so a clean start does no per-zone work here. */
static int repair_zones(struct emul *e, bool any_suspect)
{
	uint32_t n_trunc = 0, n_fix = 0;
	int r = 0;

	for (uint32_t z = 0; z < e->nr_zones && !r; z++) {
		struct ezone *ez = &e->z[z];
		uint64_t start = zone_start(e, z), extent;

		if (e->truncated && ez->cond != ZP_COND_OFFLINE) {
			/* Where the zone's data may lie: all of a conventional
			 * zone, up to the wp (or capacity if full) otherwise. */
			if (is_conv(e, z))
				extent = e->p.zone_size;
			else if (ez->cond == ZP_COND_FULL)
				extent = zone_cap(e, z);
			else
				extent = ez->wp;
			if (extent && start + extent > e->trunc_size) {
				r = take_offline(e, z, "its data was cut off when the backing file "
						 "was truncated", &n_trunc);
				continue;
			}
		}
		if (e->unclean || ez->suspect)
			r = repair_zone(e, z, ez->suspect, &n_fix);
		ez->suspect = 0;
	}
	if (!r)
		r = sync_meta(e);
	if (n_trunc)
		log_dev(LOG_ERR, e->path, NO_ZONE, "%" PRIu32 " zone(s) taken offline: backing file "
			"was truncated to %" PRIu64 " bytes", n_trunc, e->trunc_size);
	if (n_fix)
		log_dev(LOG_WARNING, e->path, NO_ZONE, "%" PRIu32 " zone(s) repaired to agree with "
			"their data (%s)", n_fix, e->unclean ? "unclean stop" : "corrupt records");
	(void)any_suspect;
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
			struct rec rec[2];
			const char *why[2];
			int pick;

			for (int s = 0; s < 2; s++)
				why[s] = decode_rec(e, z, buf[s] + (size_t)i * META_REC_SIZE, &rec[s]);
			ez->prev = ez->next = NO_ZONE;
			ez->cond = ZP_COND_EMPTY; /* counted by zone_apply() below */
			if (why[0] && why[1]) {
				if (bad++ < 8)
					log_dev(LOG_ERR, e->path, z, "zone %" PRIu32 " has no valid "
						"metadata record (slot A: %s; slot B: %s); taking it "
						"offline", z, why[0], why[1]);
				ez->seq = 0;
				ez->slot = 1;
				r = commit(e, z, ZP_COND_OFFLINE, 0);
				if (r)
					goto out;
				continue;
			}
			if (why[0] || why[1]) {
				pick = why[0] ? 1 : 0;
				/* A written record gone bad may have been the newer
				 * one: do not trust the survivor blindly. */
				if (!rec_blank(buf[!pick] + (size_t)i * META_REC_SIZE)) {
					ez->suspect = 1;
					any_suspect = true;
					if (nr_corrupt++ < 8)
						log_dev(LOG_WARNING, e->path, z, "zone %" PRIu32 ": a "
							"metadata record is corrupt (%s)", z, why[!pick]);
				}
			} else if (rec[0].seq != rec[1].seq) {
				pick = rec[1].seq > rec[0].seq;
			} else if (rec[0].wp == rec[1].wp && rec[0].cond == rec[1].cond) {
				pick = 0;
			} else {
				/* Two different states with one sequence number cannot
				 * come from our update protocol: refuse to pick one. */
				if (bad++ < 8)
					log_dev(LOG_ERR, e->path, z, "zone %" PRIu32 " has two different "
						"records with sequence number %" PRIu64 "; taking it "
						"offline", z, rec[0].seq);
				ez->seq = rec[0].seq;
				ez->slot = 1;
				r = commit(e, z, ZP_COND_OFFLINE, 0);
				if (r)
					goto out;
				continue;
			}
			ez->seq = rec[pick].seq;
			ez->slot = (uint8_t)pick;
			if (rec[pick].cond == ZP_COND_IMP_OPEN || rec[pick].cond == ZP_COND_EXP_OPEN)
				rec[pick].cond = rec[pick].wp ? ZP_COND_CLOSED : ZP_COND_EMPTY;
			zone_apply(e, z, rec[pick].cond, rec[pick].wp);
		}
	}
	if (bad)
		log_dev(LOG_ERR, e->path, NO_ZONE, "metadata of %" PRIu32 " zone(s) is corrupt; "
			"they are offline", bad);
	if (e->truncated || e->unclean || any_suspect) {
		r = repair_zones(e, any_suspect);
		if (r)
			goto out;
	} else {
		r = sync_meta(e);
		if (r)
			goto out;
	}
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

/* Anything but a definite "only holes" (ENXIO) counts as data. */
static bool has_data(int fd)
{
	return lseek(fd, 0, SEEK_DATA) >= 0 || errno != ENXIO;
}

static void emul_close(struct zd_dev *dev)
{
	struct emul *e = to_emul(dev);

	if (!e)
		return;
	/* A clean close says "records and data agree": the next open then
	 * does no per-zone work. Data first, so that holds across a power
	 * cut too (it covers what clients wrote through their own fds). */
	if (e->marked_in_use && !e->broken && sync_data(e) == 0 && sync_meta(e) == 0)
		write_hdr_state(e, 0);
	if (e->meta_fd >= 0)
		close(e->meta_fd);
	if (e->fd >= 0)
		close(e->fd); /* drops the flock */
	free(e->z);
	free(e->path);
	free(e->meta_path);
	free(e);
}

int zd_emul_open(const char *path, const struct zd_emul_params *params, bool create,
		 enum zd_isolation iso, struct zd_dev **out)
{
	struct zd_emul_params def;
	struct emul *e;
	struct stat st;
	bool created = false, created_meta = false, have_meta;
	char *abs_path;
	const char *why;
	int r;

	if (!path || !*path || !out)
		return -EINVAL;
	if (iso == ZD_ISOLATION_ZONE)
		return -EOPNOTSUPP;
	*out = NULL;
	if (!params) {
		zd_emul_default_params(&def);
		params = &def;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->dev.ops = &emul_ops;
	e->fd = e->meta_fd = -1;
	e->lru_head = e->lru_tail = NO_ZONE;
	if (asprintf(&e->meta_path, "%s.meta", path) < 0) {
		e->meta_path = NULL;
		r = -ENOMEM;
		goto fail;
	}

	/* A bad fault spec is refused before anything is created. */
	{
		const char *spec = getenv("ZONED_EMUL_FAULT"), *fwhy = NULL;

		if (spec && *spec && (r = parse_faults(spec, &e->faults, &fwhy)) < 0) {
			if (r == -EINVAL)
				log_dev(LOG_ERR, path, NO_ZONE, "ZONED_EMUL_FAULT='%s': %s", spec, fwhy);
			goto fail;
		}
	}

	/* Refuse bad params before creating anything. */
	have_meta = lstat(e->meta_path, &st) == 0;
	if (create && !have_meta && validate_params(params, &why) < 0) {
		log_dev(LOG_ERR, path, NO_ZONE, "invalid emulated device parameters: %s", why);
		r = -EINVAL;
		goto fail;
	}

	/* O_NOFOLLOW everywhere: in a directory another user can write, a
	 * name may be a symlink planted to make us write someone's file. */
	if (create) {
		e->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		created = e->fd >= 0;
	}
	if (e->fd < 0)
		e->fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (e->fd < 0) {
		r = -errno;
		if (r == -ELOOP)
			log_dev(LOG_ERR, path, NO_ZONE, "backing file is a symbolic link; give the "
				"path of the file itself");
		goto fail;
	}
	if (fstat(e->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_dev(LOG_ERR, path, NO_ZONE, "backing file must be a regular file");
		r = -EINVAL;
		goto fail;
	}
	/* Somebody else's file is never grown and served as a device. */
	if (st.st_uid != geteuid()) {
		log_dev(LOG_ERR, path, NO_ZONE, "backing file is owned by uid %u, not by the "
			"daemon's user (uid %u); refusing it", (unsigned)st.st_uid,
			(unsigned)geteuid());
		r = -EPERM;
		goto fail;
	}
	if (fcntl(e->fd, F_SETFL, 0) < 0) {
		r = -errno;
		goto fail;
	}
	/* One owner at a time: two daemons on one device would each believe
	 * their own zone state. Held until close. */
	if (flock(e->fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (r == -EBUSY)
			log_dev(LOG_ERR, path, NO_ZONE, "device is in use by another process");
		goto fail;
	}
	abs_path = realpath(path, NULL); /* open_fd() must not depend on the cwd */
	if (!abs_path) {
		r = -errno;
		goto fail;
	}
	e->path = abs_path;

	e->meta_fd = open(e->meta_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (e->meta_fd < 0 && errno == ENOENT && create) {
		if (validate_params(params, &why) < 0) { /* meta vanished since stat() */
			log_dev(LOG_ERR, path, NO_ZONE, "invalid emulated device parameters: %s", why);
			r = -EINVAL;
			goto fail;
		}
		/* A backing file without metadata is either ours from a creation
		 * a crash interrupted (no data yet) or somebody's file: never
		 * turn the latter into a device. */
		if (has_data(e->fd)) {
			log_dev(LOG_ERR, path, NO_ZONE, "file exists and holds data but has no "
				"metadata %s; refusing to overwrite it", e->meta_path);
			r = -EEXIST;
			goto fail;
		}
		if (ftruncate(e->fd, (off_t)params->size) < 0 || fsync(e->fd) < 0) {
			r = -errno;
			goto fail;
		}
		r = create_meta(path, e->meta_path, params);
		if (r)
			goto fail;
		created_meta = true;
		log_dev(LOG_INFO, path, NO_ZONE, "created emulated zoned device: %" PRIu64
			" bytes, %" PRIu64 "-byte zones", params->size, params->zone_size);
		e->meta_fd = open(e->meta_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	}
	if (e->meta_fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			log_dev(LOG_ERR, path, NO_ZONE, "no metadata %s", e->meta_path);
		else if (r == -ELOOP)
			log_dev(LOG_ERR, path, NO_ZONE, "metadata %s is a symbolic link; refusing it",
				e->meta_path);
		goto fail;
	}
	if (fstat(e->meta_fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		log_dev(LOG_ERR, path, NO_ZONE, "metadata %s must be a regular file owned by the "
			"daemon's user (uid %u)", e->meta_path, (unsigned)geteuid());
		r = -EPERM;
		goto fail;
	}
	if (fcntl(e->meta_fd, F_SETFL, 0) < 0) {
		r = -errno;
		goto fail;
	}

	r = load_hdr(e);
	if (r)
		goto fail;
	r = check_params(e, params);
	if (r)
		goto fail;
	/* "In use" from here on: a crash before the clean close makes the
	 * next open check every zone against its data. */
	if (!e->unclean) {
		r = write_hdr_state(e, META_STATE_IN_USE);
		if (r)
			goto fail;
	}
	e->marked_in_use = true;
	r = load_zones(e);
	if (r)
		goto fail;
	*out = &e->dev;
	return 0;

fail:
	/* Leave nothing half made; never remove what we did not create. */
	if (created_meta)
		unlink(e->meta_path);
	if (created)
		unlink(path);
	emul_close(&e->dev);
	return r;
}

/* Reads a device's zones as its files hold them, without the lock, without
 * repairing or writing anything: what the device would report, for a test
 * to compare with what a daemon serving the device shows. Open zones keep
 * their condition (an open would close them). */
int zd_emul_peek(const char *path, struct zd_zone **zones, uint32_t *nr)
{
	struct emul *e = calloc(1, sizeof(*e));
	uint8_t buf[2][META_REC_SIZE];
	int r;

	*zones = NULL;
	*nr = 0;
	if (!e)
		return -ENOMEM;
	e->fd = e->meta_fd = -1;
	e->path = strdup(path);
	if (!e->path || asprintf(&e->meta_path, "%s.meta", path) < 0) {
		e->meta_path = NULL;
		r = -ENOMEM;
		goto out;
	}
	e->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	e->meta_fd = open(e->meta_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (e->fd < 0 || e->meta_fd < 0) {
		r = -errno;
		goto out;
	}
	r = load_hdr(e);
	if (r)
		goto out;
	e->z = calloc(e->nr_zones, sizeof(*e->z));
	*zones = calloc(e->nr_zones, sizeof(**zones));
	if (!e->z || !*zones) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t z = 0; z < e->nr_zones; z++) {
		struct rec rec[2];
		const char *why[2];
		int pick;

		for (int s = 0; s < 2; s++) {
			r = pread_all(e->meta_fd, buf[s], META_REC_SIZE,
				      e->slot_off[s] + (uint64_t)z * META_REC_SIZE);
			if (r)
				goto out;
			why[s] = decode_rec(e, z, buf[s], &rec[s]);
		}
		if (why[0] && why[1]) {
			e->z[z].cond = ZP_COND_OFFLINE; /* as an open would take it */
		} else {
			pick = why[0] ? 1 : why[1] ? 0 : rec[1].seq > rec[0].seq;
			e->z[z].cond = rec[pick].cond;
			e->z[z].wp = rec[pick].wp;
		}
		fill_zone(e, z, &(*zones)[z]);
	}
	*nr = e->nr_zones;
out:
	if (r) {
		free(*zones);
		*zones = NULL;
	}
	if (e->fd >= 0)
		close(e->fd);
	if (e->meta_fd >= 0)
		close(e->meta_fd);
	free(e->z);
	free(e->path);
	free(e->meta_path);
	free(e);
	return r;
}

/* ---- backend operations ---- */

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
	info->isolation = ZD_ISOLATION_DEVICE;
	snprintf(info->isolation_why, sizeof(info->isolation_why),
		 "the single-file emulator layout has no per-zone path");
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
	if (is_conv(e, z)) {
		/* No flush operation exists in the device layer, so a write
		 * returning means it is durable. */
		r = pwrite_all(e->fd, buf, (size_t)len, off);
		if (r)
			return r;
		fault_point(e, STEP_DATA_WRITE);
		return sync_data(e);
	}

	start = zone_start(e, z);
	rel = off - start;
	cap = zone_cap(e, z);
	if (ez->cond == ZP_COND_FULL || rel != ez->wp || len > cap - rel)
		return -EIO; /* what a device answers to an unaligned write */
	r = open_resources(e, z, &evict);
	if (r)
		return r;
	r = pwrite_all(e->fd, buf, (size_t)len, off);
	if (r)
		return r; /* the wp stays: the data past it reads as zeros */
	fault_point(e, STEP_DATA_WRITE);
	r = sync_data(e);
	if (r)
		return r;

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
		r = commit(e, evict, e->z[evict].wp ? ZP_COND_CLOSED : ZP_COND_EMPTY,
			   e->z[evict].wp);
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
		uint64_t zend = zone_start(e, z) + e->p.zone_size;
		uint64_t n = (end < zend ? end : zend) - off, valid = n;
		const struct ezone *ez = &e->z[z];

		/* Below the wp is data; above it a real device returns zeros
		 * (or an error), never what a crash left in the backing file.
		 * A read-only zone keeps its last wp for this, though it
		 * reports none. */
		if (!is_conv(e, z)) {
			uint64_t wp = zone_start(e, z) + ez->wp;

			valid = wp <= off ? 0 : (wp - off < n ? wp - off : n);
		}
		if (valid) {
			r = pread_all(e->fd, p, (size_t)valid, off);
			if (r)
				return r;
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
		return commit(e, z, ZP_COND_EXP_OPEN, ez->wp);
	case ZP_COND_EMPTY:
	case ZP_COND_CLOSED:
		r = open_resources(e, z, &evict);
		if (r)
			return r;
		if (evict != NO_ZONE) {
			r = commit(e, evict, e->z[evict].wp ? ZP_COND_CLOSED : ZP_COND_EMPTY,
				   e->z[evict].wp);
			if (r)
				return r;
		}
		return commit(e, z, ZP_COND_EXP_OPEN, ez->wp);
	default: /* full */
		return -EIO;
	}
}

static int zone_close(struct emul *e, uint32_t z)
{
	struct ezone *ez = &e->z[z];

	if (ez->cond != ZP_COND_IMP_OPEN && ez->cond != ZP_COND_EXP_OPEN)
		return 0;
	return commit(e, z, ez->wp ? ZP_COND_CLOSED : ZP_COND_EMPTY, ez->wp);
}

static int zone_finish(struct emul *e, uint32_t z)
{
	struct ezone *ez = &e->z[z];
	uint64_t from = zone_start(e, z) + ez->wp, to = zone_start(e, z) + e->p.zone_size;
	bool stale;
	int r;

	if (ez->cond == ZP_COND_FULL)
		return 0;
	if (ez->cond == ZP_COND_EMPTY && e->p.max_active && nr_active(e) >= e->p.max_active)
		return -EBUSY;
	/* The unwritten rest must read as zeros even if a crash left data
	 * there behind the recorded wp. Discarded (and synced) before the
	 * full record, so the record never covers stale bytes. */
	r = range_has_data(e->fd, from, to, &stale);
	if (r)
		return r;
	if (stale) {
		r = discard_range(e, from, to - from);
		if (!r)
			r = sync_data(e);
		if (r)
			return r;
	}
	return commit(e, z, ZP_COND_FULL, e->p.zone_size);
}

/* The record first (the intent), then the discard: a crash in between
 * leaves the old data under an "empty" record, which the repair at the next
 * open takes back (the reset did not happen). The reverse order would leave
 * a record claiming data that is gone. */
static int zone_reset_record(struct emul *e, uint32_t z)
{
	if (e->z[z].cond == ZP_COND_EMPTY)
		return 0;
	return commit(e, z, ZP_COND_EMPTY, 0);
}

/* Discards even an empty zone's data: a crash or a client may have left
 * data behind its wp, which a refresh without hint would take for new
 * writes. Returns 1 if something was discarded. */
static int zone_reset_discard(struct emul *e, uint32_t z)
{
	uint64_t start = zone_start(e, z);
	bool data;
	int r;

	r = range_has_data(e->fd, start, start + e->p.zone_size, &data);
	if (r || !data)
		return r;
	r = discard_range(e, start, e->p.zone_size);
	return r ? r : 1;
}

static int zone_reset_range(struct emul *e, uint32_t zone, uint32_t count)
{
	bool discarded = false;
	int r = 0;

	for (uint32_t z = zone; z < zone + count && !r; z++)
		r = zone_reset_record(e, z);
	r = sync_meta(e) ?: r;
	if (r)
		return r;
	for (uint32_t z = zone; z < zone + count; z++) {
		r = zone_reset_discard(e, z);
		if (r < 0)
			return r;
		discarded |= r > 0;
	}
	/* Durable before the zone is written again: a discard lost to a power
	 * cut would bring stale data back behind the new wp. */
	return discarded ? sync_data(e) : 0;
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

static int emul_open_fd(struct zd_dev *dev, int flags)
{
	const int allowed = O_ACCMODE | O_DIRECT | O_SYNC | O_DSYNC | O_NONBLOCK | O_CLOEXEC;
	struct emul *e = to_emul(dev);
	int fd;

	/* Nothing that could create, truncate or redirect the device. */
	char self[64];

	if (flags & ~allowed)
		return -EINVAL;
	fd = fault_op(e, FOP_OPEN_FD, 0, 0);
	if (fd)
		return fd;
	/* Reopened through our own fd, not by name: the name may have been
	 * replaced (a symlink, another file) since the device was opened. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", e->fd);
	fd = open(self, flags | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) /* no /proc: the name, not followed */
		fd = open(e->path, flags | O_NOFOLLOW | O_CLOEXEC);
	/* Filesystems without direct I/O (tmpfs before Linux 6.6) refuse
	 * O_DIRECT with EINVAL; the emulator then hands out a buffered fd,
	 * which behaves the same apart from caching and alignment checks. */
	if (fd < 0 && errno == EINVAL && (flags & O_DIRECT))
		fd = open(self, (flags & ~O_DIRECT) | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Single-file layout: one fd on the backing file, which reaches every zone;
 * zone isolation needs the one-file-per-zone layout (issue 9). */
static int emul_open_zones(struct zd_dev *dev, uint32_t zone, uint32_t count, int flags,
			   bool isolate, struct zd_zone_fds *out)
{
	struct emul *e = to_emul(dev);
	int fd;

	if (isolate)
		return -EOPNOTSUPP;
	if (count > ZD_ZONE_FDS_MAX || (count && (zone >= e->nr_zones ||
						   count > e->nr_zones - zone)))
		return -ERANGE;
	fd = emul_open_fd(dev, flags);
	if (fd < 0)
		return fd;
	out->fd[0] = fd;
	out->nr = 1;
	out->fd_offset = zone_start(e, zone);
	return 0;
}

static int emul_refresh_zone(struct zd_dev *dev, uint32_t zone, uint64_t hint_wp,
			     struct zd_zone *out)
{
	struct emul *e = to_emul(dev);
	uint64_t start, cap, wp, end;
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
		    hint_wp - start < ez->wp || hint_wp - start > cap)
			return -EINVAL;
		wp = hint_wp - start;
	} else if (ez->cond == ZP_COND_FULL) {
		wp = ez->wp;
	} else {
		r = last_data_end(e->fd, start + ez->wp, start + cap, &end);
		if (r)
			return r;
		/* end <= start + cap, and cap is block aligned: so is the
		 * rounded wp, which never passes capacity. */
		wp = end - start;
		wp = (wp + e->p.logical_block_size - 1) / e->p.logical_block_size *
		     e->p.logical_block_size;
	}

	if (wp != ez->wp) {
		r = open_resources(e, zone, &evict);
		if (r)
			return r;
		r = sync_data(e); /* record no wp over data that may not be durable */
		if (r)
			return r;
		if (wp == cap) {
			cond = ZP_COND_FULL;
			wp = e->p.zone_size;
		} else {
			cond = ez->cond == ZP_COND_EXP_OPEN ? ZP_COND_EXP_OPEN : ZP_COND_IMP_OPEN;
		}
		if (evict != NO_ZONE)
			r = commit(e, evict, e->z[evict].wp ? ZP_COND_CLOSED : ZP_COND_EMPTY,
				   e->z[evict].wp);
		if (!r)
			r = commit(e, zone, cond, wp);
		r = sync_meta(e) ?: r;
		if (r)
			return r;
	}
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
	r = commit(e, zone, cond, ez->wp);
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
	.refresh_zone = emul_refresh_zone,
};
