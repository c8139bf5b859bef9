/* The wire's JSON, read and written here rather than by json-c's tokener
 * and printbuf: a message is parsed once, strictly, straight into json-c
 * objects, and written into the caller's buffer.
 *
 * Why not json-c's own: its tokener accepts what is not JSON (NaN, "1.",
 * control characters in strings, overlong UTF-8), changes what it accepts
 * (clamped integers, U+FFFD for lone surrogates, last-wins on a repeated
 * key), so it needed a second pass over the text to refuse those; and it
 * allocates a tokener, switches the thread's locale and formats integers
 * with printf for every message. Together that was most of what a small
 * request cost the daemon and the library beyond the socket (issue 12).
 *
 * What is accepted is RFC 8259 JSON, with these refusals, each a promise
 * that what is accepted goes back out as it came in (PROTOCOL.md
 * "Strictness"): a string holding U+0000 or a lone UTF-16 surrogate, text
 * that is not UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * past U+10FFFF), an integer beyond 64 bits, a repeated key in an object,
 * NaN and Infinity, nesting deeper than ZP_JSON_DEPTH. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "proto/proto.h"

/* json-c's limit before: 32 containers inside each other. */
#define ZP_JSON_DEPTH 32

/* A decoded string up to this long is built on the stack. */
#define STACK_STR 256

struct jp {
	const char *p, *end;
	struct zp_err *err;
	unsigned depth;
	bool nomem;
};

static int jp_value(struct jp *j, struct json_object **out);

static void *jp_fail(struct jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *jp_fail(struct jp *j, const char *fmt, ...)
{
	va_list ap;

	/* The first reason stands: the callers unwinding add none. */
	if (j->err && !j->err->message[0]) {
		j->err->code = ZP_ERR_PARSE;
		va_start(ap, fmt);
		vsnprintf(j->err->message, sizeof(j->err->message), fmt, ap);
		va_end(ap);
		zp_utf8_clean(j->err->message);
	}
	return NULL;
}

static void *jp_nomem(struct jp *j)
{
	j->nomem = true;
	if (j->err && !j->err->message[0])
		zp_err_set(j->err, ZP_ERR_INTERNAL, "out of memory");
	return NULL;
}

static void jp_ws(struct jp *j)
{
	while (j->p < j->end &&
	       (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
		j->p++;
}

static void *jp_unexpected(struct jp *j, const char *what)
{
	if (j->p >= j->end)
		return jp_fail(j, "invalid JSON: unexpected end of message");
	if ((unsigned char)*j->p >= 0x20 && (unsigned char)*j->p < 0x7f)
		return jp_fail(j, "invalid JSON: unexpected character '%c' (%s expected)", *j->p,
			       what);
	return jp_fail(j, "invalid JSON: unexpected byte 0x%02x (%s expected)",
		       (unsigned char)*j->p, what);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The four hex digits at p (p + 4 <= end checked by the caller). */
static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int k = 0; k < 4; k++) {
		int h = hexval(p[k]);

		if (h < 0)
			return -EINVAL;
		v = v << 4 | (unsigned)h;
	}
	*out = v;
	return 0;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629) starting at p, whose
 * first byte is >= 0x80; 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	/* The second byte's range rules out overlong forms, surrogates and
	 * what lies past U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

size_t zp_utf8_clean(char *s)
{
	const unsigned char *end = (const unsigned char *)s + strlen(s);
	unsigned char *r = (unsigned char *)s, *w = r;

	while (r < end) {
		size_t n = *r < 0x80 ? 1 : utf8_len(r, end);

		if (n == 0) {
			r++; /* a byte of no well-formed sequence: dropped */
			continue;
		}
		memmove(w, r, n);
		w += n;
		r += n;
	}
	*w = '\0';
	return (size_t)(w - (unsigned char *)s);
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Scans the string at j->p (its opening quote) without decoding it: its raw
 * length, whether it holds escapes, and that it is well-formed. Leaves j->p
 * on the closing quote. */
static int jp_scan_string(struct jp *j, const char **start, size_t *raw, bool *escaped)
{
	const char *p = j->p + 1;

	*start = p;
	*escaped = false;
	for (;;) {
		unsigned char c;

		/* The common run: plain ASCII. */
		while (p < j->end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\' &&
		       (unsigned char)*p < 0x80)
			p++;
		if (p >= j->end) {
			j->p = p;
			jp_fail(j, "invalid JSON: unexpected end of message in a string");
			return -EINVAL;
		}
		c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c < 0x20) {
			j->p = p;
			jp_fail(j, "control character 0x%02x in a string (it must be escaped)", c);
			return -EINVAL;
		}
		if (c >= 0x80) {
			size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)j->end);

			if (!n) {
				j->p = p;
				jp_fail(j, "invalid JSON: invalid UTF-8 in a string");
				return -EINVAL;
			}
			p += n;
			continue;
		}
		/* A backslash. */
		*escaped = true;
		if (j->end - p < 2) {
			j->p = p + 1;
			jp_fail(j, "invalid JSON: unexpected end of message in a string");
			return -EINVAL;
		}
		switch (p[1]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			p += 2;
			continue;
		case 'u': {
			unsigned cp, lo;

			if (j->end - p < 6 || hex4(p + 2, &cp) < 0) {
				j->p = p;
				jp_fail(j, "invalid \\u escape");
				return -EINVAL;
			}
			p += 6;
			if (cp == 0) {
				j->p = p;
				jp_fail(j, "\\u0000 in a string: zonedd takes no NUL characters");
				return -EINVAL;
			}
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				j->p = p;
				jp_fail(j, "lone UTF-16 surrogate \\u%04x in a string", cp);
				return -EINVAL;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    hex4(p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
					j->p = p;
					jp_fail(j, "lone UTF-16 surrogate \\u%04x in a string", cp);
					return -EINVAL;
				}
				p += 6;
			}
			continue;
		}
		default:
			j->p = p;
			jp_fail(j, "invalid JSON: invalid escape '\\%c' in a string",
				(unsigned char)p[1] >= 0x20 && (unsigned char)p[1] < 0x7f ? p[1] : '?');
			return -EINVAL;
		}
	}
	*raw = (size_t)(p - *start);
	j->p = p;
	return 0;
}

/* Decodes raw bytes of a scanned string into out (at least raw bytes: no
 * escape decodes longer than itself). Returns the decoded length. */
static size_t decode_string(const char *s, size_t raw, char *out)
{
	const char *end = s + raw;
	size_t n = 0;

	while (s < end) {
		if (*s != '\\') {
			out[n++] = *s++;
			continue;
		}
		switch (s[1]) {
		case 'b': out[n++] = '\b'; break;
		case 'f': out[n++] = '\f'; break;
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'u': {
			unsigned cp, lo;

			(void)hex4(s + 2, &cp);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				(void)hex4(s + 8, &lo);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				s += 6;
			}
			n += put_utf8(out + n, cp);
			s += 6;
			continue;
		}
		default: out[n++] = s[1]; break; /* " \ / */
		}
		s += 2;
	}
	return n;
}

/* The string at j->p, decoded into a buffer (NUL-terminated) that is either
 * stack (STACK_STR bytes) or malloc'd (*heap set, the caller frees). */
static char *jp_string_text(struct jp *j, char *stack, char **heap, size_t *len)
{
	const char *s;
	size_t raw;
	bool escaped;
	char *out;

	*heap = NULL;
	if (jp_scan_string(j, &s, &raw, &escaped) < 0)
		return NULL;
	j->p++; /* the closing quote */
	if (raw < STACK_STR) {
		out = stack;
	} else {
		out = *heap = malloc(raw + 1);
		if (!out)
			return jp_nomem(j);
	}
	if (escaped) {
		*len = decode_string(s, raw, out);
	} else {
		memcpy(out, s, raw);
		*len = raw;
	}
	out[*len] = '\0';
	return out;
}

static struct json_object *jp_string(struct jp *j)
{
	const char *s;
	size_t raw;
	bool escaped;
	struct json_object *o;
	char stack[STACK_STR], *heap = NULL, *text;

	if (jp_scan_string(j, &s, &raw, &escaped) < 0)
		return NULL;
	j->p++;
	if (!escaped) {
		o = json_object_new_string_len(s, (int)raw);
		return o ? o : jp_nomem(j);
	}
	text = raw < STACK_STR ? stack : (heap = malloc(raw));
	if (!text)
		return jp_nomem(j);
	o = json_object_new_string_len(text, (int)decode_string(s, raw, text));
	free(heap);
	return o ? o : jp_nomem(j);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A number with a fraction or an exponent keeps its text (json-c gives it
 * back unchanged); its value is json-c's reading of that text, so the
 * locale is json-c's business. Rare on the wire: ids at most. */
static struct json_object *jp_double(struct jp *j, const char *s, size_t n)
{
	struct json_tokener *tok;
	struct json_object *o;
	char small[64], *text = n + 1 < sizeof(small) ? small : malloc(n + 2);

	if (!text)
		return jp_nomem(j);
	memcpy(text, s, n);
	text[n] = ' '; /* ends the number for the tokener */
	text[n + 1] = '\0';
	tok = json_tokener_new();
	o = tok ? json_tokener_parse_ex(tok, text, (int)n + 1) : NULL;
	if (tok && !o && json_tokener_get_error(tok) != json_tokener_success)
		jp_fail(j, "invalid number");
	else if (!o)
		jp_nomem(j);
	json_tokener_free(tok);
	if (text != small)
		free(text);
	return o;
}

static struct json_object *jp_number(struct jp *j)
{
	const char *s = j->p, *p = j->p;
	bool neg = false, integer = true;
	uint64_t v = 0;
	bool over = false;
	struct json_object *o;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (p < j->end && (*p == 'I' || *p == 'N')) {
		j->p = p;
		return jp_fail(j, "NaN and Infinity are not JSON numbers");
	}
	if (p < j->end && *p == '0') {
		p++;
		if (p < j->end && is_digit(*p)) {
			j->p = p;
			return jp_fail(j, "invalid JSON: a number has no leading zero");
		}
	} else if (p < j->end && is_digit(*p)) {
		while (p < j->end && is_digit(*p)) {
			unsigned d = (unsigned)(*p - '0');

			if (v > (UINT64_MAX - d) / 10)
				over = true;
			else
				v = v * 10 + d;
			p++;
		}
	} else {
		j->p = p;
		return jp_fail(j, "invalid number");
	}
	if (p < j->end && *p == '.') {
		integer = false;
		if (++p >= j->end || !is_digit(*p)) {
			j->p = p;
			return jp_fail(j, "invalid number: no digit after the decimal point");
		}
		while (p < j->end && is_digit(*p))
			p++;
	}
	if (p < j->end && (*p == 'e' || *p == 'E')) {
		integer = false;
		p++;
		if (p < j->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= j->end || !is_digit(*p)) {
			j->p = p;
			return jp_fail(j, "invalid number: no digit in the exponent");
		}
		while (p < j->end && is_digit(*p))
			p++;
	}
	j->p = p;
	if (!integer)
		return jp_double(j, s, (size_t)(p - s));
	if (over || (neg && v > (uint64_t)INT64_MAX + 1)) {
		size_t n = (size_t)(p - s);

		return jp_fail(j, "integer %.*s%s out of range (64 bits at most)",
			       (int)(n > 24 ? 24 : n), s, n > 24 ? "..." : "");
	}
	/* As json-c reads them: negative and small ones are int64, the rest
	 * of the unsigned range uint64. */
	if (neg)
		o = json_object_new_int64(v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v);
	else if (v <= (uint64_t)INT64_MAX)
		o = json_object_new_int64((int64_t)v);
	else
		o = json_object_new_uint64(v);
	return o ? o : jp_nomem(j);
}

static bool jp_literal(struct jp *j, const char *word, size_t n)
{
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return false;
	j->p += n;
	return true;
}

/* The member names the protocol uses, for which a parsed object keeps a
 * pointer to a constant instead of a copy of its own (json-c would strdup
 * and later free each): a lease reply alone has twenty. By length, so a
 * miss costs a few compares. */
static const char *const keys2[] = { "fd", "id", "wp", NULL };
static const char *const keys3[] = { "len", "pid", "uid", NULL };
static const char *const keys4[] = { "code", "cond", "data", "from", "next", "nfds", "runs",
				     "then", "type", "zone", NULL };
static const char *const keys5[] = { "admin", "count", "error", "index", "label", "lease",
				     "start", "token", "zones", NULL };
static const char *const keys6[] = { "client", "device", "direct", "method", "params",
				     "prefer", "result", NULL };
static const char *const keys7[] = { "jsonrpc", "message", "version", "wait_ms", NULL };
static const char *const keys8[] = { "capacity", "features", "min_free", "protocol", NULL };
static const char *const keys9[] = { "fd_offset", "isolation", "zone_size", NULL };
static const char *const keys10[] = { "block_size", NULL };
static const char *const keys11[] = { "reclaimable", NULL };
static const char *const *const keys_by_len[] = {
	NULL, NULL, keys2, keys3, keys4, keys5, keys6, keys7, keys8, keys9, keys10, keys11,
};

static const char *known_key(const char *k, size_t n)
{
	if (n >= sizeof(keys_by_len) / sizeof(keys_by_len[0]) || !keys_by_len[n])
		return NULL;
	for (const char *const *c = keys_by_len[n]; *c; c++)
		if ((*c)[0] == k[0] && memcmp(*c, k, n) == 0)
			return *c;
	return NULL;
}

static int jp_object(struct jp *j, struct json_object **out)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return jp_nomem(j), -1;
	j->p++; /* { */
	jp_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		*out = o;
		return 0;
	}
	for (;;) {
		char stack[STACK_STR], *heap, *key;
		struct json_object *v;
		size_t klen = 0;
		int r;

		if (j->p >= j->end || *j->p != '"') {
			jp_unexpected(j, "a quoted member name");
			goto fail;
		}
		key = jp_string_text(j, stack, &heap, &klen);
		if (!key)
			goto fail;
		/* json-c would keep the last: refused, so that no reader of
		 * the message can see another value than the one it acted on. */
		if (json_object_object_get_ex(o, key, NULL)) {
			jp_fail(j, "duplicate key '%.64s'", key);
			free(heap);
			goto fail;
		}
		jp_ws(j);
		if (j->p >= j->end || *j->p != ':') {
			jp_unexpected(j, "':' after a member name");
			free(heap);
			goto fail;
		}
		j->p++;
		jp_ws(j);
		if (jp_value(j, &v) < 0) {
			free(heap);
			goto fail;
		}
		{
			const char *k = known_key(key, klen);

			r = json_object_object_add_ex(o, k ? k : key, v,
						      JSON_C_OBJECT_ADD_KEY_IS_NEW |
						      (k ? JSON_C_OBJECT_ADD_CONSTANT_KEY : 0));
		}
		if (r < 0) {
			json_object_put(v);
			free(heap);
			jp_nomem(j);
			goto fail;
		}
		free(heap);
		jp_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			jp_ws(j);
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			*out = o;
			return 0;
		}
		jp_unexpected(j, "',' or '}' in an object");
		goto fail;
	}
fail:
	json_object_put(o);
	return -1;
}

static int jp_array(struct jp *j, struct json_object **out)
{
	struct json_object *a = json_object_new_array();

	if (!a)
		return jp_nomem(j), -1;
	j->p++; /* [ */
	jp_ws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		*out = a;
		return 0;
	}
	for (;;) {
		struct json_object *v;

		if (jp_value(j, &v) < 0)
			goto fail;
		if (json_object_array_add(a, v) < 0) {
			json_object_put(v);
			jp_nomem(j);
			goto fail;
		}
		jp_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			jp_ws(j);
			continue;
		}
		if (j->p < j->end && *j->p == ']') {
			j->p++;
			*out = a;
			return 0;
		}
		jp_unexpected(j, "',' or ']' in an array");
		goto fail;
	}
fail:
	json_object_put(a);
	return -1;
}

/* One value at j->p (no whitespace before it) into *out: NULL is JSON's
 * null. Returns 0, or -1 with the reason in j->err. */
static int jp_value(struct jp *j, struct json_object **out)
{
	*out = NULL;
	if (j->p >= j->end)
		return jp_unexpected(j, "a value"), -1;
	switch (*j->p) {
	case '{':
	case '[': {
		int r;

		if (j->depth == ZP_JSON_DEPTH)
			return jp_fail(j, "invalid JSON: nesting too deep (%d levels at most)",
				       ZP_JSON_DEPTH), -1;
		j->depth++;
		r = *j->p == '{' ? jp_object(j, out) : jp_array(j, out);
		j->depth--;
		return r;
	}
	case '"':
		*out = jp_string(j);
		return *out ? 0 : -1;
	case 't':
		if (jp_literal(j, "true", 4)) {
			*out = json_object_new_boolean(1);
			return *out ? 0 : (jp_nomem(j), -1);
		}
		break;
	case 'f':
		if (jp_literal(j, "false", 5)) {
			*out = json_object_new_boolean(0);
			return *out ? 0 : (jp_nomem(j), -1);
		}
		break;
	case 'n':
		if (jp_literal(j, "null", 4))
			return 0;
		break;
	default:
		if (*j->p == '-' || is_digit(*j->p) || *j->p == 'N' || *j->p == 'I') {
			*out = jp_number(j);
			return *out ? 0 : -1;
		}
		break;
	}
	return jp_unexpected(j, "a value"), -1;
}

struct json_object *zp_parse_ex(const char *buf, size_t len, struct zp_err *err)
{
	struct jp j = { .p = buf, .end = buf + len, .err = err };
	struct json_object *o;

	if (err) {
		err->code = ZP_ERR_PARSE;
		err->message[0] = '\0';
	}
	if (len > (size_t)INT32_MAX) /* json-c's lengths are int */
		return jp_fail(&j, "invalid JSON: message too long");
	jp_ws(&j);
	if (jp_value(&j, &o) < 0)
		return NULL;
	jp_ws(&j);
	if (j.p < j.end) {
		json_object_put(o);
		return jp_fail(&j, "invalid JSON: text after the value");
	}
	/* A bare null is a value, but no message: callers take NULL as
	 * refused. */
	if (!o)
		return jp_fail(&j, "invalid JSON: null is not a message");
	return o;
}

struct json_object *zp_parse(const char *buf, size_t len)
{
	return zp_parse_ex(buf, len, NULL);
}

/* --- writing ------------------------------------------------------------ */

static void jw_put(struct zp_jw *w, const char *s, size_t n)
{
	if (w->over || n > w->cap - w->len) {
		w->over = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void jw_char(struct zp_jw *w, char c)
{
	if (w->over || w->len == w->cap) {
		w->over = true;
		return;
	}
	w->buf[w->len++] = c;
}

static void jw_u64(struct zp_jw *w, uint64_t v, bool neg)
{
	char t[24];
	size_t i = sizeof(t);

	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (neg)
		t[--i] = '-';
	jw_put(w, t + i, sizeof(t) - i);
}

/* Escaped as json-c does with JSON_C_TO_STRING_NOSLASHESCAPE, byte for
 * byte: the short escapes, \u00xx for other control characters, every other
 * byte as it is. */
static void jw_string(struct zp_jw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;

	jw_char(w, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e = 0;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		jw_put(w, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '\b': e = 'b'; break;
		case '\n': e = 'n'; break;
		case '\r': e = 'r'; break;
		case '\t': e = 't'; break;
		case '\f': e = 'f'; break;
		case '"': e = '"'; break;
		case '\\': e = '\\'; break;
		default: break;
		}
		if (e) {
			char t[2] = { '\\', e };

			jw_put(w, t, 2);
		} else {
			char t[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

			jw_put(w, t, 6);
		}
	}
	jw_put(w, s + run, n - run);
	jw_char(w, '"');
}

static void jw_value(struct zp_jw *w, struct json_object *o)
{
	bool first = true;

	switch (json_object_get_type(o)) {
	case json_type_null:
		jw_put(w, "null", 4);
		break;
	case json_type_boolean:
		if (json_object_get_boolean(o))
			jw_put(w, "true", 4);
		else
			jw_put(w, "false", 5);
		break;
	case json_type_int:
		if (json_object_get_int64(o) < 0) {
			int64_t v = json_object_get_int64(o);

			jw_u64(w, v == INT64_MIN ? (uint64_t)INT64_MAX + 1 : (uint64_t)-v, true);
		} else {
			jw_u64(w, json_object_get_uint64(o), false);
		}
		break;
	case json_type_string:
		jw_string(w, json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_object:
		jw_char(w, '{');
		{
			json_object_object_foreach(o, key, val) {
				if (!first)
					jw_char(w, ',');
				first = false;
				jw_string(w, key, strlen(key));
				jw_char(w, ':');
				jw_value(w, val);
				if (w->over)
					return;
			}
		}
		jw_char(w, '}');
		break;
	case json_type_array:
		jw_char(w, '[');
		for (size_t i = 0, n = json_object_array_length(o); i < n && !w->over; i++) {
			if (i)
				jw_char(w, ',');
			jw_value(w, json_object_array_get_idx(o, i));
		}
		jw_char(w, ']');
		break;
	default: {
		/* A double: json-c's text for it (the one it was read as, or
		 * its own formatting), so both writers agree. */
		size_t n;
		const char *s = json_object_to_json_string_length(
			o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);

		if (s)
			jw_put(w, s, n);
		else
			w->over = true;
		break;
	}
	}
}

ssize_t zp_write(struct json_object *obj, char *buf, size_t cap)
{
	struct zp_jw w = { .buf = buf, .cap = cap };

	jw_value(&w, obj);
	return w.over ? -EMSGSIZE : (ssize_t)w.len;
}

/* --- writing without json-c objects ----------------------------------- */

void zp_jw_init(struct zp_jw *w, char *buf, size_t cap)
{
	*w = (struct zp_jw){ .buf = buf, .cap = cap };
}

/* The separator a value needs: none after a key or first in its
 * container, else a comma. */
static void jw_sep(struct zp_jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth && !(w->first & (1u << w->depth)))
		jw_char(w, ',');
	w->first &= ~(1u << w->depth);
}

void zp_jw_begin(struct zp_jw *w, char open)
{
	jw_sep(w);
	jw_char(w, open);
	if (w->depth + 1 >= 32) {
		w->over = true;
		return;
	}
	w->depth++;
	w->first |= 1u << w->depth;
}

void zp_jw_end(struct zp_jw *w, char close)
{
	jw_char(w, close);
	if (w->depth)
		w->depth--;
}

void zp_jw_key(struct zp_jw *w, const char *key)
{
	jw_sep(w);
	jw_string(w, key, strlen(key));
	jw_char(w, ':');
	w->after_key = true;
}

void zp_jw_u64(struct zp_jw *w, uint64_t v)
{
	jw_sep(w);
	jw_u64(w, v, false);
}

void zp_jw_i64(struct zp_jw *w, int64_t v)
{
	jw_sep(w);
	if (v < 0)
		jw_u64(w, v == INT64_MIN ? (uint64_t)INT64_MAX + 1 : (uint64_t)-v, true);
	else
		jw_u64(w, (uint64_t)v, false);
}

void zp_jw_str(struct zp_jw *w, const char *s)
{
	jw_sep(w);
	jw_string(w, s, strlen(s));
}

void zp_jw_bool(struct zp_jw *w, bool v)
{
	jw_sep(w);
	if (v)
		jw_put(w, "true", 4);
	else
		jw_put(w, "false", 5);
}

void zp_jw_json(struct zp_jw *w, struct json_object *o)
{
	jw_sep(w);
	jw_value(w, o);
}

void zp_jw_raw(struct zp_jw *w, const char *text, size_t len)
{
	jw_sep(w);
	jw_put(w, text, len);
}

ssize_t zp_write_result(char *buf, size_t cap, const char *result, size_t len,
			unsigned fd, unsigned nfds, struct json_object *id)
{
	struct zp_jw w = { .buf = buf, .cap = cap };
	static const char head[] = "{\"jsonrpc\":\"2.0\",\"result\":";

	if (len < 2 || result[0] != '{' || result[len - 1] != '}')
		return -EINVAL;
	jw_put(&w, head, sizeof(head) - 1);
	jw_put(&w, result, len - 1);
	if (nfds) {
		/* As call_finish adds them to a result object: last. */
		if (len > 2)
			jw_char(&w, ',');
		jw_put(&w, "\"fd\":", 5);
		jw_u64(&w, fd, false);
		jw_put(&w, ",\"nfds\":", 8);
		jw_u64(&w, nfds, false);
	}
	jw_put(&w, "},\"id\":", 7);
	jw_value(&w, id);
	jw_char(&w, '}');
	return w.over ? -EMSGSIZE : (ssize_t)w.len;
}

ssize_t zp_write_request(char *buf, size_t cap, const char *method, struct json_object *params,
			 int64_t id)
{
	struct zp_jw w = { .buf = buf, .cap = cap };

	zp_jw_begin(&w, '{');
	zp_jw_key_str(&w, "jsonrpc", "2.0");
	zp_jw_key_str(&w, "method", method);
	if (params) {
		zp_jw_key(&w, "params");
		zp_jw_json(&w, params);
	}
	if (id >= 0)
		zp_jw_key_i64(&w, "id", id);
	zp_jw_end(&w, '}');
	return w.over ? -EMSGSIZE : (ssize_t)w.len;
}
