/* The strict parser zoned used before proto/json.c: json-c's tokener in
 * strict mode, then a second pass over the text for what the tokener lets
 * through; and the request as the library built it before
 * zp_write_request. Kept out of the library as the reference proto/json.c
 * is held to: tests/test-json.c and fuzz/fuzz-json.c parse the same input
 * with both and require the same answer, except where this one is wrong
 * (zp_ref_compare names the three cases). */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "fuzz/json-reference.h"

/* --- strictness --------------------------------------------------------
 * json-c's tokener, even in strict mode, accepts what is not JSON (NaN,
 * Infinity, "1.", raw control characters in strings) and changes what it
 * accepts: integers beyond 64 bits are clamped, lone UTF-16 surrogates
 * become U+FFFD, a key holding U+0000 is cut short, a repeated key keeps
 * its last value. A message that would not come back as it was sent is
 * refused instead. This pass runs over text the tokener accepted, so the
 * structure is known to be well-formed; it checks the tokens, and counts
 * each object's members for comparison with what the tokener kept. */

#define STRICT_DEPTH 64 /* beyond json-c's own limit (32) */

struct strict {
	const char *buf;
	size_t len, i;
	struct zp_err *err;
	/* Members per object, in the order of their '{', and where each starts. */
	uint32_t *counts;
	size_t *starts;
	size_t n, cap;
	size_t stack[STRICT_DEPTH]; /* index into counts, or SIZE_MAX for an array */
	size_t depth;
};

static int strict_fail(struct strict *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int strict_fail(struct strict *st, const char *fmt, ...)
{
	va_list ap;

	if (st->err) {
		st->err->code = ZP_ERR_PARSE;
		va_start(ap, fmt);
		vsnprintf(st->err->message, sizeof(st->err->message), fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;

	if (end - p < 4)
		return -EINVAL;
	for (int k = 0; k < 4; k++) {
		char c = p[k];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	*out = v;
	return 0;
}

static int strict_string(struct strict *st)
{
	const char *b = st->buf, *end = st->buf + st->len;
	size_t i = st->i + 1;

	while (i < st->len && b[i] != '"') {
		unsigned cp, lo;

		if ((unsigned char)b[i] < 0x20)
			return strict_fail(st, "control character 0x%02x in a string (it must be "
					   "escaped)", (unsigned char)b[i]);
		if (b[i] != '\\') {
			i++;
			continue;
		}
		if (i + 1 < st->len && b[i + 1] != 'u') {
			i += 2;
			continue;
		}
		if (hex4(b + i + 2, end, &cp) < 0)
			return strict_fail(st, "invalid \\u escape");
		i += 6;
		if (cp == 0)
			return strict_fail(st, "\\u0000 in a string: zonedd takes no NUL characters");
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return strict_fail(st, "lone UTF-16 surrogate \\u%04x in a string", cp);
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (i + 1 >= st->len || b[i] != '\\' || b[i + 1] != 'u' ||
			    hex4(b + i + 2, end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
				return strict_fail(st, "lone UTF-16 surrogate \\u%04x in a string", cp);
			i += 6;
		}
	}
	st->i = i + 1;
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int strict_number(struct strict *st)
{
	const char *b = st->buf;
	size_t i = st->i, start = st->i;
	bool integer = true;
	char tok[24];

	if (b[i] == '-')
		i++;
	if (i < st->len && (b[i] == 'I' || b[i] == 'N'))
		return strict_fail(st, "NaN and Infinity are not JSON numbers");
	if (i < st->len && b[i] == '0')
		i++;
	else if (i < st->len && is_digit(b[i]))
		while (i < st->len && is_digit(b[i]))
			i++;
	else
		return strict_fail(st, "invalid number");
	if (i < st->len && b[i] == '.') {
		integer = false;
		if (++i >= st->len || !is_digit(b[i]))
			return strict_fail(st, "invalid number: no digit after the decimal point");
		while (i < st->len && is_digit(b[i]))
			i++;
	}
	if (i < st->len && (b[i] == 'e' || b[i] == 'E')) {
		integer = false;
		i++;
		if (i < st->len && (b[i] == '+' || b[i] == '-'))
			i++;
		if (i >= st->len || !is_digit(b[i]))
			return strict_fail(st, "invalid number: no digit in the exponent");
		while (i < st->len && is_digit(b[i]))
			i++;
	}
	st->i = i;
	/* Numbers with a fraction or an exponent keep their text in json-c and
	 * go back out unchanged; integers are held in 64 bits. */
	if (!integer)
		return 0;
	if (i - start < sizeof(tok)) {
		char *endp;

		memcpy(tok, b + start, i - start);
		tok[i - start] = '\0';
		errno = 0;
		if (tok[0] == '-')
			(void)strtoll(tok, &endp, 10);
		else
			(void)strtoull(tok, &endp, 10);
		if (errno == 0)
			return 0;
	}
	return strict_fail(st, "integer %.*s%s out of range (64 bits at most)",
			   (int)(i - start > 24 ? 24 : i - start), b + start,
			   i - start > 24 ? "..." : "");
}

static int strict_push(struct strict *st, bool object)
{
	if (st->depth == STRICT_DEPTH)
		return strict_fail(st, "nested too deeply");
	if (!object) {
		st->stack[st->depth++] = SIZE_MAX;
		return 0;
	}
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		uint32_t *c = realloc(st->counts, cap * sizeof(*c));
		size_t *s;

		if (!c)
			return -ENOMEM;
		st->counts = c;
		s = realloc(st->starts, cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		st->starts = s;
		st->cap = cap;
	}
	st->counts[st->n] = 0;
	st->starts[st->n] = st->i;
	st->stack[st->depth++] = st->n++;
	return 0;
}

static int strict_tokens(struct strict *st)
{
	static const char *const lits[] = { "true", "false", "null" };
	int r;

	while (st->i < st->len) {
		char c = st->buf[st->i];

		switch (c) {
		case ' ': case '\t': case '\r': case '\n': case ',':
			st->i++;
			break;
		case '{':
		case '[':
			r = strict_push(st, c == '{');
			if (r < 0)
				return r;
			st->i++;
			break;
		case '}':
		case ']':
			if (st->depth)
				st->depth--;
			st->i++;
			break;
		case ':':
			if (st->depth && st->stack[st->depth - 1] != SIZE_MAX)
				st->counts[st->stack[st->depth - 1]]++;
			st->i++;
			break;
		case '"':
			r = strict_string(st);
			if (r < 0)
				return r;
			break;
		default:
			if (c == '-' || is_digit(c) || c == 'N' || c == 'I') {
				r = strict_number(st);
				if (r < 0)
					return r;
				break;
			}
			for (size_t k = 0; k < 3; k++) {
				size_t l = strlen(lits[k]);

				if (st->len - st->i >= l && memcmp(st->buf + st->i, lits[k], l) == 0) {
					st->i += l;
					goto next;
				}
			}
			return strict_fail(st, "unexpected character '%c'", c);
		next:
			break;
		}
	}
	return 0;
}

/* The object starting at off has a repeated key: find it to name it. Keys
 * are decoded by json-c itself, so "a" and "\u0061" are the same key. */
static void name_duplicate(struct strict *st, size_t off)
{
	struct json_object *seen = json_object_new_object();
	const char *b = st->buf;
	size_t i = off + 1, depth = 1;
	bool expect_key = true;

	while (seen && i < st->len && depth) {
		char c = b[i];

		if (c == '"') {
			size_t s = i++;

			while (i < st->len && b[i] != '"')
				i += b[i] == '\\' ? 2 : 1;
			i++;
			if (depth == 1 && expect_key) {
				struct json_tokener *tok = json_tokener_new();
				struct json_object *k = tok ? json_tokener_parse_ex(tok, b + s,
										(int)(i - s)) : NULL;

				json_tokener_free(tok);
				if (k && json_object_is_type(k, json_type_string)) {
					const char *key = json_object_get_string(k);

					if (json_object_object_get_ex(seen, key, NULL)) {
						strict_fail(st, "duplicate key '%.64s'", key);
						json_object_put(k);
						break;
					}
					json_object_object_add(seen, key, NULL);
				}
				json_object_put(k);
				expect_key = false;
			}
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
			depth--;
		else if (c == ',' && depth == 1)
			expect_key = true;
		i++;
	}
	json_object_put(seen);
}

/* Walks the parsed tree in document order beside the counts of the text. */
static bool members_match(struct strict *st, struct json_object *o, size_t *k)
{
	switch (json_object_get_type(o)) {
	case json_type_object:
		if (*k >= st->n || st->counts[*k] != (uint32_t)json_object_object_length(o)) {
			if (*k < st->n)
				name_duplicate(st, st->starts[*k]);
			return false;
		}
		(*k)++;
		{
			json_object_object_foreach(o, key, val) {
				(void)key;
				if (!members_match(st, val, k))
					return false;
			}
		}
		return true;
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++)
			if (!members_match(st, json_object_array_get_idx(o, i), k))
				return false;
		return true;
	default:
		return true;
	}
}

static int check_strict(const char *buf, size_t len, struct json_object *obj, struct zp_err *err)
{
	struct strict st = { .buf = buf, .len = len, .err = err };
	size_t k = 0;
	int r;

	if (err)
		err->message[0] = '\0';
	r = strict_tokens(&st);
	if (r == 0 && !members_match(&st, obj, &k)) {
		if (!err || !err->message[0])
			strict_fail(&st, "duplicate key in an object");
		r = -EINVAL;
	}
	if (r == -ENOMEM)
		zp_err_set(err, ZP_ERR_INTERNAL, "out of memory");
	free(st.counts);
	free(st.starts);
	return r;
}

struct json_object *zp_ref_parse_ex(const char *buf, size_t len, struct zp_err *err)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;

	zp_err_set(err, ZP_ERR_PARSE, "invalid JSON");
	if (len > (size_t)INT32_MAX)
		return NULL;
	tok = json_tokener_new();
	if (!tok) {
		zp_err_set(err, ZP_ERR_INTERNAL, "out of memory");
		return NULL;
	}
	/* Strict mode rejects trailing garbage, invalid UTF-8 and some of the
	 * non-standard forms json-c otherwise tolerates; check_strict the rest. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	/* A bare number ("17") is incomplete to the tokener until something
	 * ends it; the packet's end does. All of buf was consumed then. */
	if (!obj && json_tokener_get_error(tok) == json_tokener_continue) {
		obj = json_tokener_parse_ex(tok, " ", 1);
		if (obj && json_tokener_get_error(tok) == json_tokener_success) {
			json_tokener_free(tok);
			goto check;
		}
	}
	jerr = json_tokener_get_error(tok);
	if (jerr != json_tokener_success) {
		zp_err_set(err, ZP_ERR_PARSE, "invalid JSON: %s",
			   jerr == json_tokener_continue ? "unexpected end of message"
							 : json_tokener_error_desc(jerr));
		json_object_put(obj);
		obj = NULL;
	} else if (obj && (size_t)json_tokener_get_parse_end(tok) < len) {
		/* Only whitespace may follow the value. */
		for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
			if (!strchr(" \t\r\n", buf[i])) {
				zp_err_set(err, ZP_ERR_PARSE, "invalid JSON: text after the value");
				json_object_put(obj);
				obj = NULL;
				break;
			}
		}
	}
	json_tokener_free(tok);
	if (!obj)
		return NULL;
check:
	if (check_strict(buf, len, obj, err) < 0) {
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

/* Decodes each sequence and judges the code point, rather than the byte
 * ranges proto/json.c checks: two ways to one answer. */
bool zp_ref_utf8_valid(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf, *end = p + len;

	while (p < end) {
		uint32_t cp;
		size_t n;

		if (*p < 0x80) {
			p++;
			continue;
		}
		if ((*p & 0xe0) == 0xc0)
			n = 2, cp = *p & 0x1f;
		else if ((*p & 0xf0) == 0xe0)
			n = 3, cp = *p & 0x0f;
		else if ((*p & 0xf8) == 0xf0)
			n = 4, cp = *p & 0x07;
		else
			return false;
		if ((size_t)(end - p) < n)
			return false;
		for (size_t i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n;
	}
	return true;
}

#define DIFF(...) (snprintf(why, cap, __VA_ARGS__), r = -1)

int zp_ref_compare(const char *buf, size_t len, char *why, size_t cap)
{
	static const char fffd[] = "\xef\xbf\xbd";
	struct zp_err e1, e2;
	struct json_object *a, *b;
	int r = 0;

	memset(&e1, 0, sizeof(e1));
	memset(&e2, 0, sizeof(e2));
	a = zp_parse_ex(buf, len, &e1);
	b = zp_ref_parse_ex(buf, len, &e2);
	if (!a && b) {
		/* The reference's first two mistakes. json-c's UTF-8 check is
		 * by byte pattern: it lets overlong forms, surrogates and code
		 * points past U+10FFFF through. And json-c reads "00" as 0 and
		 * "-01" as -1, which the token pass took for two numbers. */
		if (strstr(e1.message, "leading zero"))
			;
		else if (zp_ref_utf8_valid(buf, len) || !strstr(e1.message, "UTF-8"))
			DIFF("refused (%s), the reference accepts: %.*s", e1.message,
			     (int)(len > 200 ? 200 : len), buf);
	} else if (!a != !b) {
		DIFF("accepted, the reference refuses (%s): %.*s", e2.message,
		     (int)(len > 200 ? 200 : len), buf);
	} else if (!a) {
		if (e1.code != ZP_ERR_PARSE && e1.code != ZP_ERR_INTERNAL)
			DIFF("refused with code %d", e1.code);
		else if (!e1.message[0] || !memchr(e1.message, '\0', sizeof(e1.message)))
			DIFF("refused without a reason: %.*s", (int)(len > 200 ? 200 : len), buf);
	} else {
		size_t l1, l2;
		const char *s1 = zp_to_string(a, &l1), *s2 = zp_to_string(b, &l2);
		/* The reference's third mistake: json-c decodes some valid
		 * surrogate pairs (\ud837\ude00) as U+FFFD. */
		bool mangled = memmem(s2, l2, fffd, 3) && !memmem(buf, len, fffd, 3) &&
			       !memmem(s1, l1, fffd, 3);
		char *out = malloc(l1 + 1);
		ssize_t n;

		if (!mangled && !json_object_equal(a, b))
			DIFF("%.200s: the reference has %.200s", s1, s2);
		else if (!mangled && (l1 != l2 || memcmp(s1, s2, l1)))
			DIFF("%.200s: the reference writes %.200s", s1, s2);
		/* Types too: json_object_equal takes 1 and 1.0 as equal. */
		else if (json_object_get_type(a) != json_object_get_type(b))
			DIFF("%.200s: another type than the reference's", s1);
		else if (!out)
			DIFF("out of memory");
		else if ((n = zp_write(a, out, l1 + 1)) != (ssize_t)l1 || memcmp(out, s1, l1))
			DIFF("zp_write: %.*s, json-c: %.200s", (int)(n > 200 ? 200 : n > 0 ? n : 0),
			     out, s1);
		else if (l1 && zp_write(a, out, l1 - 1) != -EMSGSIZE)
			DIFF("zp_write of %zu bytes into %zu did not say EMSGSIZE", l1, l1 - 1);
		free(out);
	}
	json_object_put(a);
	json_object_put(b);
	return r;
}

struct json_object *zp_ref_request(const char *method, struct json_object *params, int64_t id)
{
	struct json_object *req = json_object_new_object();

	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "method", json_object_new_string(method));
	if (params)
		json_object_object_add(req, "params", params);
	if (id >= 0)
		json_object_object_add(req, "id", json_object_new_int64(id));
	return req;
}
