/* Parsing of human-written sizes ("4G", "32MiB", "512") for device specs and
 * the configuration file. */
#include "config.h"

#include <errno.h>
#include <stdint.h>

#include "daemon/zdev.h"

/* Strict by design: strtoull() would accept leading blanks, a sign ("-1"
 * wraps to 2^64-1) and hex, none of which belongs in a size. */
int zd_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;
	const char *p = s;

	if (!s || !out)
		return -EINVAL;
	if (*p < '0' || *p > '9')
		return -EINVAL; /* empty, sign, blank or junk */
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}

	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	default: break;
	}
	/* "KiB", "KB" and a bare byte count with "B" are all the same thing
	 * here: every multiplier is a power of 1024. */
	if (shift && (p[0] == 'i' || p[0] == 'I') && (p[1] == 'B' || p[1] == 'b'))
		p += 2;
	else if (*p == 'B' || *p == 'b')
		p++;
	if (*p != '\0')
		return -EINVAL;

	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}
