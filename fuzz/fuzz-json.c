/* libFuzzer target: the strict JSON parser of proto/json.c. What
 * zp_parse_ex() accepts must survive a round trip unchanged (its promise,
 * proto/PROTOCOL.md "Strictness"): serialised and parsed again it is the
 * same value and serialises to the same text; what it refuses says why.
 * And it answers as the parser it replaced (fuzz/json-reference.c) does,
 * but where that one was wrong. */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "fuzz/json-reference.h"
#include "proto/proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *o, *o2;
	struct zp_err err;
	const char *s, *s2;
	size_t len, len2;
	char *copy, why[512];

	if (zp_ref_compare((const char *)data, size, why, sizeof(why)) < 0)
		fuzz_die("%s", why);
	memset(&err, 0, sizeof(err));
	o = zp_parse_ex((const char *)data, size, &err);
	if (!o) {
		if (err.code != ZP_ERR_PARSE && err.code != ZP_ERR_INTERNAL)
			fuzz_die("refused with code %d", err.code);
		if (!err.message[0] || !memchr(err.message, '\0', sizeof(err.message)))
			fuzz_die("refused without a message");
		return 0;
	}
	s = zp_to_string(o, &len);
	if (!s || strlen(s) != len)
		fuzz_die("serialisation has a NUL byte or no text");
	/* A copy of exactly len bytes: the parser must not read past it. */
	copy = malloc(len ? len : 1);
	if (!copy)
		fuzz_die("out of memory");
	memcpy(copy, s, len);
	memset(&err, 0, sizeof(err));
	o2 = zp_parse_ex(copy, len, &err);
	if (!o2)
		fuzz_die("accepted, serialised as %s, then refused: %s", s, err.message);
	if (!json_object_equal(o, o2))
		fuzz_die("%s came back as another value", s);
	s2 = zp_to_string(o2, &len2);
	if (len2 != len || memcmp(s, s2, len))
		fuzz_die("%s came back as %s", s, s2);
	free(copy);
	json_object_put(o2);
	json_object_put(o);
	return 0;
}
