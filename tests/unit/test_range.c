/*
 * test_range: the Range request field and the Content-Range response
 * field (range.h, RFC 9110 §14).
 *
 * The origin answers Range with range_parse and fetch --resume and
 * --verify trust range_parse_content_range for the offset of what they
 * receive.  A Range read wrongly is a wrong body sent with a 206; a
 * Content-Range read wrongly makes a correct body look corrupt (or a
 * corrupt one look correct).  So every form of §14.1.2 and every way to
 * get it wrong is pinned, each case alone so a failure names it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/range.h"

#define UNSET ((uint64_t)0x5555)

struct rcase {
	const char *v;
	uint64_t size;
	enum range_result want;
	uint64_t first, last; /* when want is RANGE_OK */
};

static void
run_range(const struct rcase *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t first = UNSET, last = UNSET;
		enum range_result r = range_parse(
		    c[i].v, strlen(c[i].v), c[i].size, &first, &last);

		if (r != c[i].want ||
		    (r == RANGE_OK &&
		        (first != c[i].first || last != c[i].last)))
			print_error("'%s' size %llu: got %d %llu-%llu, want %d "
			            "%llu-%llu\n",
			    c[i].v, (unsigned long long)c[i].size, (int)r,
			    (unsigned long long)first, (unsigned long long)last,
			    (int)c[i].want, (unsigned long long)c[i].first,
			    (unsigned long long)c[i].last);
		assert_int_equal(r, c[i].want);
		if (r == RANGE_OK) {
			assert_true(first == c[i].first);
			assert_true(last == c[i].last);
		}
	}
}

#define RUN(tab) run_range(tab, sizeof(tab) / sizeof(tab[0]))

static void
range_forms(void **state)
{
	/* §14.1.2: int-range, open-ended int-range, suffix-range. */
	static const struct rcase c[] = {
	    {"bytes=0-499", 10000, RANGE_OK, 0, 499},
	    {"bytes=500-999", 10000, RANGE_OK, 500, 999},
	    {"bytes=500-", 10000, RANGE_OK, 500, 9999},
	    {"bytes=-500", 10000, RANGE_OK, 9500, 9999},
	    {"bytes=0-0", 10000, RANGE_OK, 0, 0},
	    {"bytes=-1", 10000, RANGE_OK, 9999, 9999},
	    {"bytes=9999-", 10000, RANGE_OK, 9999, 9999},
	    {"bytes=9999-9999", 10000, RANGE_OK, 9999, 9999},
	    {"bytes=0-", 10000, RANGE_OK, 0, 9999},
	    {"bytes=0-", 1, RANGE_OK, 0, 0},
	    {"bytes=1000-1999", 268435456, RANGE_OK, 1000, 1999},
	    {"bytes=1048576-", 4194304, RANGE_OK, 1048576, 4194303},
	};

	(void)state;
	RUN(c);
}

static void
range_unit_case(void **state)
{
	/* §14.1: range unit names are case-insensitive. */
	static const struct rcase c[] = {
	    {"BYTES=0-1", 10, RANGE_OK, 0, 1},
	    {"Bytes=2-", 10, RANGE_OK, 2, 9},
	    {"bYtEs=-3", 10, RANGE_OK, 7, 9},
	};

	(void)state;
	RUN(c);
}

static void
range_clipped(void **state)
{
	/* §14.1.2: a last-pos past the end, or a suffix longer than the body,
	 * is clipped to the body. */
	static const struct rcase c[] = {
	    {"bytes=0-10000", 10000, RANGE_OK, 0, 9999},
	    {"bytes=900-5000", 1000, RANGE_OK, 900, 999},
	    {"bytes=0-9999999999999999999", 1000, RANGE_OK, 0, 999},
	    {"bytes=-1500", 1000, RANGE_OK, 0, 999},
	    {"bytes=-1000", 1000, RANGE_OK, 0, 999},
	    {"bytes=-9999999999999999999", 1000, RANGE_OK, 0, 999},
	    {"bytes=-1", 1, RANGE_OK, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_large_sizes(void **state)
{
	/* Bodies past 4 GiB, and the largest size there is. */
	static const struct rcase c[] = {
	    {"bytes=4294967296-4294967300", 8589934592ULL, RANGE_OK,
	        4294967296ULL, 4294967300ULL},
	    {"bytes=-1", UINT64_MAX, RANGE_OK, UINT64_MAX - 1, UINT64_MAX - 1},
	    {"bytes=9999999999999999999-", UINT64_MAX, RANGE_OK,
	        9999999999999999999ULL, UINT64_MAX - 1},
	    {"bytes=2684354560-", 2684354560ULL, RANGE_UNSATISFIABLE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_unsatisfiable(void **state)
{
	/* §14.1.2: a first-pos at or past the end, and a suffix of zero
	 * bytes (or any range of an empty body), cannot be satisfied: 416. */
	static const struct rcase c[] = {
	    {"bytes=10000-", 10000, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=10000-10001", 10000, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=10001-20000", 10000, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=999999999-", 268435456, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=9999999999999999999-", 10, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=-0", 10000, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=-0", 0, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=0-", 0, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=0-0", 0, RANGE_UNSATISFIABLE, 0, 0},
	    {"bytes=-5", 0, RANGE_UNSATISFIABLE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_inverted(void **state)
{
	/* §14.1.1: last-pos < first-pos makes the range-spec invalid, so
	 * the field is ignored (200), not answered with 416. */
	static const struct rcase c[] = {
	    {"bytes=500-499", 10000, RANGE_NONE, 0, 0},
	    {"bytes=1-0", 10000, RANGE_NONE, 0, 0},
	    {"bytes=20000-10000", 10000, RANGE_NONE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_several(void **state)
{
	/* We do not send multipart/byteranges: several ranges are ignored
	 * and the whole body is sent (§14.2 allows it). */
	static const struct rcase c[] = {
	    {"bytes=0-1,5-6", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-1, 5-6", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-499,-500", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-500,0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes=500-,0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-1,", 10000, RANGE_NONE, 0, 0},
	    {"bytes=,0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-1;5-6", 10000, RANGE_NONE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_other_unit(void **state)
{
	static const struct rcase c[] = {
	    {"items=0-1", 10000, RANGE_NONE, 0, 0},
	    {"byte=0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytesx=0-1", 10000, RANGE_NONE, 0, 0},
	    {"bits=0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes 0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes:0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes =0-1", 10000, RANGE_NONE, 0, 0},
	    {"=0-1", 10000, RANGE_NONE, 0, 0},
	    {"0-1", 10000, RANGE_NONE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_junk(void **state)
{
	static const struct rcase c[] = {
	    {"", 10000, RANGE_NONE, 0, 0},
	    {" ", 10000, RANGE_NONE, 0, 0},
	    {"\t", 10000, RANGE_NONE, 0, 0},
	    {"bytes", 10000, RANGE_NONE, 0, 0},
	    {"bytes=", 10000, RANGE_NONE, 0, 0},
	    {"bytes= ", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=--5", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0", 10000, RANGE_NONE, 0, 0},
	    {"bytes=5", 10000, RANGE_NONE, 0, 0},
	    {"bytes=a-b", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-x", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-1x", 10000, RANGE_NONE, 0, 0},
	    {"bytes=x0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-5x", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0--5", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-1-2", 10000, RANGE_NONE, 0, 0},
	    {"bytes=1.5-2", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0x10-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=1e3-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0 1-2", 10000, RANGE_NONE, 0, 0},
	    {"bytes=*", 10000, RANGE_NONE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_sign(void **state)
{
	/* Digits only: a sign is not a number here. */
	static const struct rcase c[] = {
	    {"bytes=+0-1", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-+1", 10000, RANGE_NONE, 0, 0},
	    {"bytes=+5-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-+5", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-5-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-5-6", 10000, RANGE_NONE, 0, 0},
	    {"bytes=- 5", 10000, RANGE_NONE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_overflow(void **state)
{
	/* A position that does not fit in 64 bits is malformed, never
	 * wrapped into a small one. */
	static const struct rcase c[] = {
	    {"bytes=18446744073709551616-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=18446744073709552000-", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-18446744073709551616", 10000, RANGE_NONE, 0, 0},
	    {"bytes=-18446744073709551616", 10000, RANGE_NONE, 0, 0},
	    {"bytes=99999999999999999999999999999999-", 10000, RANGE_NONE, 0,
	        0},
	};

	(void)state;
	RUN(c);
}

static void
range_whitespace(void **state)
{
	/* Optional whitespace around the field value and after the '='
	 * (§5.6.1 list syntax) is allowed; inside a range-spec it is not. */
	static const struct rcase c[] = {
	    {" bytes=0-499", 10000, RANGE_OK, 0, 499},
	    {"bytes=0-499 ", 10000, RANGE_OK, 0, 499},
	    {"\tbytes=0-499\t", 10000, RANGE_OK, 0, 499},
	    {"  bytes=500-  ", 10000, RANGE_OK, 500, 9999},
	    {"bytes= 0-499", 10000, RANGE_OK, 0, 499},
	    {"bytes= -500", 10000, RANGE_OK, 9500, 9999},
	    {"bytes=0 -499", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0- 499", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-4 99", 10000, RANGE_NONE, 0, 0},
	    {"bytes=0-499\r\n", 10000, RANGE_NONE, 0, 0},
	};

	(void)state;
	RUN(c);
}

static void
range_uses_len(void **state)
{
	/* The value need not be NUL-terminated: only len bytes count. */
	const char *v = "bytes=0-499,5-6";
	uint64_t first = UNSET, last = UNSET;

	(void)state;
	assert_int_equal(range_parse(v, 11, 10000, &first, &last), RANGE_OK);
	assert_true(first == 0 && last == 499);
	assert_int_equal(range_parse(v, 9, 10000, &first, &last), RANGE_OK);
	assert_true(first == 0 && last == 4);
	assert_int_equal(range_parse(v, 8, 10000, &first, &last), RANGE_OK);
	assert_true(first == 0 && last == 9999);
	assert_int_equal(range_parse(v, 5, 10000, &first, &last), RANGE_NONE);
	assert_int_equal(range_parse(v, 0, 10000, &first, &last), RANGE_NONE);
}

struct crcase {
	const char *v;
	uint64_t first, last, total;
};

static void
content_range_good(void **state)
{
	static const struct crcase c[] = {
	    {"bytes 0-499/1234", 0, 499, 1234},
	    {"bytes 1000-1999/268435456", 1000, 1999, 268435456},
	    {"bytes 0-0/1", 0, 0, 1},
	    {"bytes 1233-1233/1234", 1233, 1233, 1234},
	    {"bytes 1048576-4194303/4194304", 1048576, 4194303, 4194304},
	    {"bytes 0-499/*", 0, 499, UINT64_MAX},
	    {"bytes */1234", UINT64_MAX, UINT64_MAX, 1234},
	    {"bytes */0", UINT64_MAX, UINT64_MAX, 0},
	    {"BYTES 0-1/2", 0, 1, 2},
	    {" bytes 0-1/2 ", 0, 1, 2},
	    {"bytes 0-9999999999999999998/9999999999999999999", 0,
	        9999999999999999998ULL, 9999999999999999999ULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint64_t first = UNSET, last = UNSET, total = UNSET;
		int rc = range_parse_content_range(
		    c[i].v, strlen(c[i].v), &first, &last, &total);

		if (rc != 0 || first != c[i].first || last != c[i].last ||
		    total != c[i].total)
			print_error("'%s': rc %d %llu-%llu/%llu\n", c[i].v, rc,
			    (unsigned long long)first, (unsigned long long)last,
			    (unsigned long long)total);
		assert_int_equal(rc, 0);
		assert_true(first == c[i].first);
		assert_true(last == c[i].last);
		assert_true(total == c[i].total);
	}
}

static void
content_range_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    " ",
	    "bytes",
	    "bytes ",
	    "bytes 0-499",
	    "bytes 0-499/",
	    "bytes 0-/1234",
	    "bytes -499/1234",
	    "bytes 0499/1234",
	    "bytes /1234",
	    "bytes 500-499/1234", /* last before first */
	    "bytes 0-1234/1234",  /* last at the total */
	    "bytes 0-5000/1234",  /* last past the total */
	    "bytes 0-0/0",        /* nothing is in an empty body */
	    "bytes */*",          /* says nothing */
	    "bytes *-1/2",
	    "bytes */",
	    "bytes=0-499/1234", /* Range syntax, not Content-Range */
	    "bytes:0-499/1234",
	    "bytes0-499/1234",
	    "items 0-499/1234",
	    "byte 0-499/1234",
	    "0-499/1234",
	    "bytes 0-499/1234x",
	    "bytes 0-499/12 34",
	    "bytes 0-499/1234/1",
	    "bytes 0 - 499/1234",
	    "bytes 0-499 /1234",
	    "bytes 0-499/ 1234",
	    "bytes a-b/c",
	    "bytes 0-1/x",
	    "bytes +0-1/2",
	    "bytes 0-+1/2",
	    "bytes 0-1/+2",
	    "bytes 0-1/-2",
	    "bytes 0x0-1/2",
	    "bytes 1.5-2/3",
	    "bytes 0-499/1234, 0-1/2",
	    "bytes 0-18446744073709551616/*",
	    "bytes 18446744073709551616-18446744073709551617/*",
	    "bytes 0-1/18446744073709551616",
	    "bytes */18446744073709551616",
	    NULL,
	};

	(void)state;
	for (size_t i = 0; bad[i] != NULL; i++) {
		uint64_t first, last, total;
		int rc = range_parse_content_range(
		    bad[i], strlen(bad[i]), &first, &last, &total);

		if (rc != -EINVAL)
			print_error("accepted '%s': rc %d\n", bad[i], rc);
		assert_int_equal(rc, -EINVAL);
	}
}

static void
content_range_uses_len(void **state)
{
	const char *v = "bytes 0-499/1234567";
	uint64_t first, last, total;

	(void)state;
	assert_int_equal(
	    range_parse_content_range(v, 16, &first, &last, &total), 0);
	assert_true(first == 0 && last == 499 && total == 1234);
	assert_int_equal(
	    range_parse_content_range(v, 12, &first, &last, &total), -EINVAL);
}

static void
round_trip(void **state)
{
	/* What an origin answers a Range with reads back as the same range:
	 * fetch --resume relies on it. */
	static const char *const ranges[] = {"bytes=0-499", "bytes=500-",
	    "bytes=-500", "bytes=9000-20000", "bytes=1-1"};
	char cr[96];

	(void)state;
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		uint64_t f, l, f2, l2, t2;

		assert_int_equal(
		    range_parse(ranges[i], strlen(ranges[i]), 10000, &f, &l),
		    RANGE_OK);
		snprintf(cr, sizeof(cr), "bytes %llu-%llu/%d",
		    (unsigned long long)f, (unsigned long long)l, 10000);
		assert_int_equal(
		    range_parse_content_range(cr, strlen(cr), &f2, &l2, &t2),
		    0);
		assert_true(f2 == f && l2 == l && t2 == 10000);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(range_forms),
	    cmocka_unit_test(range_unit_case),
	    cmocka_unit_test(range_clipped),
	    cmocka_unit_test(range_large_sizes),
	    cmocka_unit_test(range_unsatisfiable),
	    cmocka_unit_test(range_inverted),
	    cmocka_unit_test(range_several),
	    cmocka_unit_test(range_other_unit),
	    cmocka_unit_test(range_junk),
	    cmocka_unit_test(range_sign),
	    cmocka_unit_test(range_overflow),
	    cmocka_unit_test(range_whitespace),
	    cmocka_unit_test(range_uses_len),
	    cmocka_unit_test(content_range_good),
	    cmocka_unit_test(content_range_bad),
	    cmocka_unit_test(content_range_uses_len),
	    cmocka_unit_test(round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
