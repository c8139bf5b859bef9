#ifndef ZONED_FUZZ_JSON_REFERENCE_H
#define ZONED_FUZZ_JSON_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "proto/proto.h"

/* zp_parse_ex as it was before proto/json.c (json-reference.c). */
struct json_object *zp_ref_parse_ex(const char *buf, size_t len, struct zp_err *err);

/* Whether buf is well-formed UTF-8 by RFC 3629 (no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
bool zp_ref_utf8_valid(const char *buf, size_t len);

/* A request built as json-c objects, as the library did before
 * zp_write_request: the text that one is held to. Takes params. */
struct json_object *zp_ref_request(const char *method, struct json_object *params, int64_t id);

/* zp_parse_ex and zp_ref_parse_ex on buf: 0 when they give the same
 * verdict, the same value and the same text (zp_to_string and zp_write
 * alike), or differ only where the reference is wrong; else -1 with why. */
int zp_ref_compare(const char *buf, size_t len, char *why, size_t cap);

#endif
