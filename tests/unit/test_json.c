/*
 * test_json: json_string (json.h) writes valid JSON whatever bytes it is
 * given.  The access log and /connections write a request's method and
 * target through it, and those are the client's bytes: a raw 0xff once
 * made an access line that no JSON parser reads (issue 13, #12).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/json.h"

struct esc {
	const char *in;
	const char *out; /* quotes included */
};

/* json_string(in) into a string the caller frees. */
static char *
escaped(const char *in)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	json_string(f, in);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void
check_all(const struct esc *e, size_t n)
{
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		char *got = escaped(e[i].in);

		if (strcmp(got, e[i].out) != 0) {
			print_error(
			    "case %zu: got %s, want %s\n", i, got, e[i].out);
			bad = 1;
		}
		free(got);
	}
	assert_false(bad);
}

static void
test_ascii(void **state)
{
	static const struct esc e[] = {
	    {"", "\"\""},
	    {"/a/b?c=d", "\"/a/b?c=d\""},
	    {"say \"hi\"", "\"say \\\"hi\\\"\""},
	    {"back\\slash", "\"back\\\\slash\""},
	    {"tab\there", "\"tab\\u0009here\""},
	    {"nl\r\n", "\"nl\\u000d\\u000a\""},
	    {"\x01\x1f", "\"\\u0001\\u001f\""},
	    {"del\x7f", "\"del\\u007f\""},
	};

	(void)state;
	check_all(e, sizeof(e) / sizeof(e[0]));
}

/* Well-formed UTF-8 goes out as it is: 2, 3 and 4 bytes, the edges. */
static void
test_utf8_kept(void **state)
{
	static const struct esc e[] = {
	    {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
	    {"\xc2\x80", "\"\xc2\x80\""},
	    {"\xe2\x82\xac", "\"\xe2\x82\xac\""},
	    {"\xef\xbf\xbf", "\"\xef\xbf\xbf\""},
	    {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""},
	    {"\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""},
	};

	(void)state;
	check_all(e, sizeof(e) / sizeof(e[0]));
}

/* Every byte of an ill-formed sequence is written as \u00XX, its value. */
static void
test_invalid_bytes(void **state)
{
	static const struct esc e[] = {
	    {"/a\xff", "\"/a\\u00ff\""},
	    {"\xfe\xff", "\"\\u00fe\\u00ff\""},
	    {"\x80x", "\"\\u0080x\""},                     /* lone trail */
	    {"\xc0\x80", "\"\\u00c0\\u0080\""},            /* overlong NUL */
	    {"\xc1\xbf", "\"\\u00c1\\u00bf\""},            /* overlong */
	    {"\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\""}, /* overlong */
	    {"\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""}, /* surrogate */
	    {"\xf4\x90\x80\x80",
	        "\"\\u00f4\\u0090\\u0080\\u0080\""}, /* > U+10FFFF */
	    {"\xf5\x80", "\"\\u00f5\\u0080\""},
	    {"\xe2\x82", "\"\\u00e2\\u0082\""},            /* cut short */
	    {"\xe2\x82x", "\"\\u00e2\\u0082x\""},          /* cut short */
	    {"\xf0\x9f\x98", "\"\\u00f0\\u009f\\u0098\""}, /* cut short */
	    {"\xc3\xa9\xff\xc3\xa9", "\"\xc3\xa9\\u00ff\xc3\xa9\""},
	};

	(void)state;
	check_all(e, sizeof(e) / sizeof(e[0]));
}

/* Whatever the bytes, the output is ASCII or well-formed UTF-8 with no
 * control character: every one of the 255 non-NUL bytes, alone and after
 * a lead byte. */
static void
test_every_byte(void **state)
{
	char in[3] = {0};

	(void)state;
	for (int a = 1; a < 256; a++) {
		for (int b = 0; b < 256; b++) {
			char *got;

			in[0] = (char)a;
			in[1] = (char)b;
			got = escaped(in);
			for (const unsigned char *p =
			         (const unsigned char *)got;
			     *p != '\0'; p++)
				if (*p < 0x20 || *p == 0x7f)
					fail_msg(
					    "%02x %02x: control byte in %s", a,
					    b, got);
			free(got);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ascii),
	    cmocka_unit_test(test_utf8_kept),
	    cmocka_unit_test(test_invalid_bytes),
	    cmocka_unit_test(test_every_byte),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
