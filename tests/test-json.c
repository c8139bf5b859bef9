/* proto/json.c against the parser it replaced (fuzz/json-reference.c):
 * the same verdict on every input, the same value when both accept, and a
 * writer that gives json-c's text byte for byte. The cases are a table of
 * edges, then a few hundred thousand seeded mutations of message-shaped
 * text: a deterministic slice of what fuzz/fuzz-json does for longer. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/json-reference.h"
#include "proto/proto.h"

/* Both parsers on buf: the same answer (zp_ref_compare). */
static void same_answer(const char *buf, size_t len)
{
	char why[512];

	ck_assert_msg(zp_ref_compare(buf, len, why, sizeof(why)) == 0, "%s", why);
}

static void same_str(const char *s)
{
	same_answer(s, strlen(s));
}

START_TEST(edges_agree)
{
	static const char *const cases[] = {
		"{}", "[]", "0", "-0", "17", "-17", "1.5", "-0.0", "1e2", "1E+2", "1e-2", "2.5e300",
		"1e400", "01", "00", "-00", "-01", "[00]", "1.", ".5", "+1", "-", "--1", "1e", "1e+",
		"0x10", "NaN", "-NaN",
		"Infinity", "-Infinity", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "18446744073709551615",
		"18446744073709551616", "123456789012345678901234567890", "true", "false", "null",
		"True", "nul", "truex", "\"\"", "\"a\"", "\"a", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
		"\"\\u0041\\u00e9\\u20ac\"", "\"\\ud83d\\ude00\"", "\"\\ud837\\ude00\"",
		"\"\\ud800\"", "\"\\udc00x\"",
		"\"\\ud800\\u0041\"", "\"\\u0000\"", "\"\\u00\"", "\"\\x41\"", "\"\\\"", "\"\x01\"",
		"\"\x7f\"", "\"\xc3\xa9\"", "\"\xe2\x82\xac\"", "\"\xf0\x9f\x98\x80\"", "\"\xc0\x80\"",
		"\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf7\xbf\xbf\xbf\"", "\"\xc3\"", "\"\x80\"",
		"\"\xff\"", "[1,2,3]", "[1,]", "[,1]", "[1 2]", "[", "]", "{\"a\":1}", "{\"a\":1,}",
		"{\"a\" 1}", "{a:1}", "{1:2}", "{\"a\":}", "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}",
		"{\"a\":{\"b\":[1,{\"c\":null}]}}", "{\"a\\u0000b\":1}", "  {}  ", "\t\r\n[]\n", "{}x",
		"{} {}", "", " ", "{}\x0b", "\x0c{}", "/*c*/{}", "{\"a\":1}//", "[true,false,null]",
		"[\"\\u00e9\",\"\\u001f\",\"\\u007f\"]", "{\"\":\"\"}", "[[[[[[[[]]]]]]]]",
		"{\"jsonrpc\":\"2.0\",\"method\":\"daemon.hello\",\"id\":1}",
		"[{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1},{\"jsonrpc\":\"2.0\",\"id\":2}]",
	};
	char deep[80];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		same_str(cases[i]);
	/* NUL bytes, inside and after. */
	same_answer("{}\0", 3);
	same_answer("\"a\0b\"", 5);
	same_answer("1\0", 2);
	/* Nesting: 32 levels are read, 33 are not, by both. */
	for (int n = 30; n <= 34; n++) {
		for (int i = 0; i < n; i++)
			deep[i] = '[', deep[n + i] = ']';
		same_answer(deep, (size_t)(2 * n));
	}
}
END_TEST

START_TEST(reasons_are_named)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "{\"a\":1,\"a\":2}", "duplicate key 'a'" },
		{ "\"\\ud800\"", "surrogate" },
		{ "\"a\\u0000\"", "NUL" },
		{ "\"\x01\"", "control character 0x01" },
		{ "1.", "decimal point" },
		{ "1e", "exponent" },
		{ "NaN", "NaN" },
		{ "18446744073709551616", "out of range" },
		{ "\"\xc0\x80\"", "UTF-8" },
		{ "{}x", "text after the value" },
		{ "[1,", "end of message" },
		{ "{\"a\" 1}", "':'" },
		{ "null", "null" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct zp_err e;

		memset(&e, 0, sizeof(e));
		ck_assert_ptr_null(zp_parse_ex(bad[i].text, strlen(bad[i].text), &e));
		ck_assert_int_eq(e.code, ZP_ERR_PARSE);
		ck_assert_msg(strstr(e.message, bad[i].why), "%s: '%s' does not say '%s'", bad[i].text,
			      e.message, bad[i].why);
	}
}
END_TEST

/* A deterministic generator (xorshift), so a failure comes back on rerun. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

START_TEST(mutations_agree)
{
	static const char *const seeds[] = {
		"{\"jsonrpc\":\"2.0\",\"method\":\"lease.acquire\",\"params\":{\"device\":\"emu0\","
		"\"zones\":2,\"wait_ms\":100,\"direct\":true},\"id\":42}",
		"{\"jsonrpc\":\"2.0\",\"result\":{\"lease\":\"l-17\",\"zone\":3,\"start\":25165824,"
		"\"wp\":-1,\"ratio\":0.25,\"name\":\"a\\u00e9\\ud83d\\ude00\\n\",\"ok\":true,"
		"\"list\":[1,[2,{}],null,false]},\"id\":18446744073709551615}",
		"[{\"a\":\"\xc3\xa9\xe2\x82\xac\"},{\"b\":1e-5},\"\\\\\\\"\"]",
	};
	static const char alphabet[] = "{}[]\",:\\u0123456789abcdefABCDEF.eE+-ntrufals \t\n\x01\x7f"
				       "\x80\xbf\xc0\xc3\xe2\xed\xf0\xf4\xff\0";
	char buf[512];

	for (int iter = 0; iter < 300000; iter++) {
		const char *seed = seeds[rnd(3)];
		size_t len = strlen(seed);
		int edits = 1 + (int)rnd(4);

		memcpy(buf, seed, len);
		for (int e = 0; e < edits; e++) {
			uint32_t at = len ? rnd((uint32_t)len) : 0;
			char c = alphabet[rnd(sizeof(alphabet) - 1)];

			switch (rnd(4)) {
			case 0: /* replace */
				if (len)
					buf[at] = c;
				break;
			case 1: /* insert */
				if (len < sizeof(buf) - 1) {
					memmove(buf + at + 1, buf + at, len - at);
					buf[at] = c;
					len++;
				}
				break;
			case 2: /* delete */
				if (len) {
					memmove(buf + at, buf + at + 1, len - at - 1);
					len--;
				}
				break;
			default: /* cut short */
				len = at;
				break;
			}
		}
		same_answer(buf, len);
	}
}
END_TEST

START_TEST(writer_matches_json_c)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();
	char out[1024], ctl[40];
	size_t l;
	const char *s;
	ssize_t n;

	for (int c = 1; c < 0x20; c++)
		ctl[c - 1] = (char)c;
	ctl[31] = '"';
	ctl[32] = '\\';
	ctl[33] = '/';
	ctl[34] = '\0';
	json_object_object_add(o, ctl, json_object_new_string(ctl));
	json_object_object_add(o, "i", json_object_new_int64(INT64_MIN));
	json_object_object_add(o, "u", json_object_new_uint64(UINT64_MAX));
	json_object_object_add(o, "d", json_object_new_double(0.1));
	json_object_object_add(o, "n", NULL);
	json_object_array_add(a, json_object_new_boolean(1));
	json_object_array_add(a, json_object_new_array());
	json_object_array_add(a, json_object_new_object());
	json_object_object_add(o, "a", a);
	s = zp_to_string(o, &l);
	n = zp_write(o, out, sizeof(out));
	ck_assert_int_eq(n, (ssize_t)l);
	ck_assert(memcmp(out, s, l) == 0);
	for (size_t cap = 0; cap < l; cap++)
		ck_assert_int_eq(zp_write(o, out, cap), -EMSGSIZE);
	json_object_put(o);
}
END_TEST

/* The text writer against json-c's objects for the same members. */
START_TEST(text_writer_matches_objects)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array(), *e;
	char buf[1024], small[16];
	const char *want;
	struct zp_jw w;
	size_t l;

	json_object_object_add(o, "u", json_object_new_uint64(UINT64_MAX));
	json_object_object_add(o, "i", json_object_new_int64(INT64_MIN));
	json_object_object_add(o, "s", json_object_new_string("a\"b\\c\n\x01/\xc3\xa9"));
	json_object_object_add(o, "t", json_object_new_boolean(1));
	json_object_object_add(o, "f", json_object_new_boolean(0));
	e = json_object_new_object();
	json_object_array_add(a, e);
	json_object_array_add(a, json_object_new_int64(-1));
	json_object_array_add(a, json_object_new_array());
	json_object_array_add(a, NULL);
	json_object_object_add(o, "a", a);
	json_object_object_add(o, "e", json_object_new_object());
	want = zp_to_string(o, &l);

	zp_jw_init(&w, buf, sizeof(buf));
	zp_jw_begin(&w, '{');
	zp_jw_key_u64(&w, "u", UINT64_MAX);
	zp_jw_key_i64(&w, "i", INT64_MIN);
	zp_jw_key_str(&w, "s", "a\"b\\c\n\x01/\xc3\xa9");
	zp_jw_key_bool(&w, "t", true);
	zp_jw_key_bool(&w, "f", false);
	zp_jw_key(&w, "a");
	zp_jw_begin(&w, '[');
	zp_jw_begin(&w, '{');
	zp_jw_end(&w, '}');
	zp_jw_i64(&w, -1);
	zp_jw_begin(&w, '[');
	zp_jw_end(&w, ']');
	zp_jw_json(&w, NULL);
	zp_jw_end(&w, ']');
	zp_jw_key(&w, "e");
	zp_jw_raw(&w, "{}", 2);
	zp_jw_end(&w, '}');
	ck_assert(!w.over);
	ck_assert_msg(w.len == l && memcmp(buf, want, l) == 0, "%.*s against %s", (int)w.len, buf,
		      want);
	/* Too small a buffer says so. */
	zp_jw_init(&w, small, sizeof(small));
	zp_jw_begin(&w, '{');
	zp_jw_key_str(&w, "key", "a value longer than the buffer");
	zp_jw_end(&w, '}');
	ck_assert(w.over);
	json_object_put(o);
}
END_TEST

/* A reply written from a result's text is the reply json-c would write
 * from the result's object, "fd" and "nfds" added last. */
START_TEST(result_text_matches_response)
{
	static const char *const results[] = { "{}", "{\"lease\":{\"id\":1,\"s\":\"x\"}}" };
	static const char *const ids[] = { "7", "\"abc\"", "null", "1.5", "-9223372036854775808" };
	char buf[1024];

	for (size_t i = 0; i < 2; i++)
		for (size_t k = 0; k < 5; k++)
			for (unsigned nfds = 0; nfds <= 2; nfds += 2) {
				struct json_object *res = zp_parse(results[i], strlen(results[i]));
				struct json_object *id = zp_parse_ex(ids[k], strlen(ids[k]), NULL);
				struct json_object *resp;
				const char *want;
				ssize_t n;
				size_t l;

				if (nfds) {
					json_object_object_add(res, "fd", json_object_new_int(3));
					json_object_object_add(res, "nfds", json_object_new_int((int)nfds));
				}
				n = zp_write_result(buf, sizeof(buf), results[i], strlen(results[i]), 3,
						    nfds, id);
				resp = zp_result_response(id, res);
				want = zp_to_string(resp, &l);
				ck_assert_msg(n == (ssize_t)l && memcmp(buf, want, l) == 0,
					      "%.*s against %s", (int)(n > 0 ? n : 0), buf, want);
				ck_assert_int_eq(zp_write_result(buf, l - 1, results[i],
								 strlen(results[i]), 3, nfds, id),
						 -EMSGSIZE);
				json_object_put(resp);
			}
	ck_assert_int_eq(zp_write_result(buf, sizeof(buf), "[]", 2, 0, 0, NULL), -EINVAL);
}
END_TEST

START_TEST(request_text_matches_object)
{
	static const char *const params[] = { NULL, "{}", "{\"device\":\"emu0\",\"zones\":[1,2]}" };
	static const int64_t ids[] = { -1, 0, 42, INT64_MAX };
	char buf[512];

	for (size_t i = 0; i < 3; i++)
		for (size_t k = 0; k < 4; k++) {
			struct json_object *p = params[i] ? zp_parse(params[i], strlen(params[i])) : NULL;
			struct json_object *req;
			const char *want;
			ssize_t n;
			size_t l;

			n = zp_write_request(buf, sizeof(buf), "lease.acquire", p, ids[k]);
			req = zp_ref_request("lease.acquire", p, ids[k]); /* takes p */
			want = zp_to_string(req, &l);
			ck_assert_msg(n == (ssize_t)l && memcmp(buf, want, l) == 0, "%.*s against %s",
				      (int)(n > 0 ? n : 0), buf, want);
			ck_assert_int_eq(zp_write_request(buf, l - 1, "lease.acquire",
							  json_object_object_get(req, "params"), ids[k]),
					 -EMSGSIZE);
			json_object_put(req);
		}
}
END_TEST

START_TEST(utf8_clean_keeps_only_characters)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" },
		{ "cut \xc3", "cut " },
		{ "cut \xe2\x82' here", "cut ' here" },
		{ "\xf0\x9f\x98", "" },
		{ "overlong \xc0\x80 surrogate \xed\xa0\x80 past \xf4\x90\x80\x80 end",
		  "overlong  surrogate  past  end" },
		{ "\x80\xbfstray", "stray" },
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		ck_assert_uint_eq(zp_utf8_clean(buf), strlen(cases[i].out));
		ck_assert_str_eq(buf, cases[i].out);
		ck_assert(zp_ref_utf8_valid(buf, strlen(buf)));
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("json");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, edges_agree);
	tcase_add_test(tc, reasons_are_named);
	tcase_add_test(tc, mutations_agree);
	tcase_add_test(tc, writer_matches_json_c);
	tcase_add_test(tc, text_writer_matches_objects);
	tcase_add_test(tc, result_text_matches_response);
	tcase_add_test(tc, request_text_matches_object);
	tcase_add_test(tc, utf8_clean_keeps_only_characters);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
