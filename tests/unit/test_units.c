/*
 * test_units: size, duration and rate parsing and printing (units.h).
 *
 * Every config key, every verb's command line and the lab go through these
 * three parsers, so each accepted spelling and each class of bad input is
 * pinned here: a value the parser takes silently wrong becomes a wrong
 * buffer size or timeout everywhere at once.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/units.h"

#define KI ((uint64_t)1024)
#define MI (KI * KI)
#define GI (KI * MI)
#define TI (KI * GI)

struct good {
	const char *text;
	uint64_t value;
};

/* Spellings that must parse, each checked alone so the failure names it. */
static void
check_good(
    int (*parse)(const char *, uint64_t *), const struct good *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0xdeadbeef;
		int rc = parse(g[i].text, &v);

		if (rc != 0 || v != g[i].value)
			print_error("'%s': rc %d value %llu, want %llu\n",
			    g[i].text, rc, (unsigned long long)v,
			    (unsigned long long)g[i].value);
		assert_int_equal(rc, 0);
		assert_true(v == g[i].value);
	}
}

/* Inputs that must fail with want, and leave the output untouched. */
static void
check_bad(
    int (*parse)(const char *, uint64_t *), const char *const *bad, int want)
{
	for (size_t i = 0; bad[i] != NULL; i++) {
		uint64_t v = 12345;
		int rc = parse(bad[i], &v);

		if (rc != want)
			print_error("'%s': rc %d, want %d\n", bad[i], rc, want);
		assert_int_equal(rc, want);
		assert_true(v == 12345);
	}
}

static void
size_suffixes(void **state)
{
	static const struct good g[] = {
	    {"0", 0},
	    {"1536", 1536},
	    {"64k", 64 * KI},
	    {"64K", 64 * KI},
	    {"4M", 4 * MI},
	    {"4m", 4 * MI},
	    {"2G", 2 * GI},
	    {"2g", 2 * GI},
	    {"1T", TI},
	    {"2.5G", 5 * GI / 2},
	    {"0.5k", 512},
	    {".5k", 512},
	    {"12b", 12},
	    {"12B", 12},
	    {"64kb", 64 * KI},
	    {"64KB", 64 * KI},
	    {"64KiB", 64 * KI},
	    {"64kib", 64 * KI},
	    {"4MB", 4 * MI},
	    {"4MiB", 4 * MI},
	    {"4mb", 4 * MI},
	    {"2GB", 2 * GI},
	    {"2GiB", 2 * GI},
	    {"1TB", TI},
	    {"1TiB", TI},
	};

	(void)state;
	check_good(units_parse_size, g, sizeof(g) / sizeof(g[0]));
}

static void
size_blanks(void **state)
{
	/* Config values and command-line words may carry blanks around the
	 * number and between number and unit. */
	static const struct good g[] = {
	    {"1 k", KI},
	    {"  64k", 64 * KI},
	    {"64k  ", 64 * KI},
	    {"\t4 M\t", 4 * MI},
	    {" 1536 ", 1536},
	};

	(void)state;
	check_good(units_parse_size, g, sizeof(g) / sizeof(g[0]));
}

static void
size_rounding(void **state)
{
	/* Fractions round to the nearest whole byte. */
	static const struct good g[] = {
	    {"1.4", 1},
	    {"1.5", 2},
	    {"1.001k", 1025},
	};

	(void)state;
	check_good(units_parse_size, g, sizeof(g) / sizeof(g[0]));
}

static void
size_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    "   ",
	    "-1",
	    "-1k",
	    " -1",
	    "+1",
	    "k",
	    ".",
	    "12Q",
	    "12kQ",
	    "12 k x",
	    "12k,",
	    "12kk",
	    "1 2",
	    "12 bytes",
	    "nan",
	    "inf",
	    "x12",
	    "12s",
	    "1e30", /* a decimal number: no exponent */
	    "1e3",
	    "0x10", /* no hex */
	    "-1",
	    "+1",
	    NULL,
	};

	(void)state;
	check_bad(units_parse_size, bad, -EINVAL);
}

static void
size_overflow(void **state)
{
	/* 2^64 bytes and beyond do not fit; 2^64 - 2^40 still does. */
	static const char *const big[] = {
	    "16777216T",
	    "16777216TiB",
	    "18446744073709551616",
	    "99999999999999999999999",
	    NULL,
	};
	uint64_t v;

	(void)state;
	check_bad(units_parse_size, big, -ERANGE);
	assert_int_equal(units_parse_size("16777215T", &v), 0);
	assert_true(v == 16777215 * TI);
}

static void
parse_in(void **state)
{
	char msg[96];
	uint64_t v = 7;

	(void)state;
	assert_int_equal(
	    units_parse_in(UNITS_SIZE, "64k", 1, 1 * MI, &v, msg, sizeof(msg)),
	    0);
	assert_true(v == 64 * KI);
	/* issue 13: an overflow is out of range, not "not a size" */
	assert_int_equal(units_parse_in(UNITS_SIZE, "9999999999T", 0, 16 * MI,
	                     &v, msg, sizeof(msg)),
	    -ERANGE);
	assert_string_equal(msg, "out of range (0 to 16M)");
	assert_true(v == 64 * KI); /* untouched */
	assert_int_equal(units_parse_in(UNITS_SIZE, "9999999999T", 0,
	                     UINT64_MAX, &v, msg, sizeof(msg)),
	    -ERANGE);
	assert_string_equal(msg, "out of range (0 to 18446744073709551615)");
	assert_int_equal(units_parse_in(UNITS_SIZE, "1023", 1 * KI, 1 * MI, &v,
	                     msg, sizeof(msg)),
	    -ERANGE);
	assert_string_equal(msg, "out of range (1k to 1M)");
	assert_int_equal(
	    units_parse_in(UNITS_SIZE, "12Q", 0, 1, &v, msg, sizeof(msg)),
	    -EINVAL);
	assert_string_equal(msg, "not a size (bytes, or with k, M, G, T)");
	assert_int_equal(units_parse_in(UNITS_DURATION, "99999999999999999h", 1,
	                     86400000, &v, msg, sizeof(msg)),
	    -ERANGE);
	assert_string_equal(msg, "out of range (1ms to 24h)");
	assert_int_equal(
	    units_parse_in(UNITS_DURATION, "x", 0, 1, &v, msg, sizeof(msg)),
	    -EINVAL);
	assert_string_equal(msg, "not a duration (ms, s, m, h)");
	assert_int_equal(units_parse_in(UNITS_RATE, "7", 8, 100000000000ULL, &v,
	                     msg, sizeof(msg)),
	    -ERANGE);
	assert_string_equal(msg, "out of range (8bit to 100gbit)");
	assert_int_equal(units_parse_in(UNITS_RATE, "2mbit", 8, 1000000000, &v,
	                     msg, sizeof(msg)),
	    0);
	assert_true(v == 2000000);
	/* no room for a message is fine */
	assert_int_equal(
	    units_parse_in(UNITS_RATE, "x", 8, 9, &v, NULL, 0), -EINVAL);
}

static void
fmt_rate(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(units_fmt_rate(0, buf, sizeof(buf)), "0bit");
	assert_string_equal(units_fmt_rate(8, buf, sizeof(buf)), "8bit");
	assert_string_equal(units_fmt_rate(1500, buf, sizeof(buf)), "1500bit");
	assert_string_equal(
	    units_fmt_rate(500000, buf, sizeof(buf)), "500kbit");
	assert_string_equal(units_fmt_rate(2000000, buf, sizeof(buf)), "2mbit");
	assert_string_equal(
	    units_fmt_rate(1000000000, buf, sizeof(buf)), "1gbit");
}

static void
duration_units(void **state)
{
	static const struct good g[] = {
	    {"0", 0},
	    {"250ms", 250},
	    {"250MS", 250},
	    {"30s", 30000},
	    {"30", 30000},
	    {"30sec", 30000},
	    {"1.5s", 1500},
	    {"1.5", 1500},
	    {"5m", 300000},
	    {"5min", 300000},
	    {"2h", 7200000},
	    {"2H", 7200000},
	    {" 30 s ", 30000},
	    {"0ms", 0},
	    {"24h", 86400000},
	};

	(void)state;
	check_good(units_parse_duration, g, sizeof(g) / sizeof(g[0]));
}

static void
duration_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    "-1s",
	    "s",
	    "30x",
	    "30 s s",
	    "30sx",
	    "5d",
	    "5k",
	    "1 h 30 m",
	    NULL,
	};
	static const char *const big[] = {
	    "9999999999999999h",
	    NULL,
	};

	(void)state;
	check_bad(units_parse_duration, bad, -EINVAL);
	check_bad(units_parse_duration, big, -ERANGE);
}

static void
rate_units(void **state)
{
	/* Rates are bits per second with 1000-based multipliers. */
	static const struct good g[] = {
	    {"2mbit", 2000000},
	    {"2Mbit", 2000000},
	    {"2mbps", 2000000},
	    {"2m", 2000000},
	    {"1gbit", 1000000000},
	    {"1Gbps", 1000000000},
	    {"100kbit", 100000},
	    {"100k", 100000},
	    {"100kbps", 100000},
	    {"500kbit", 500000},
	    {"8mbit", 8000000},
	    {"8Mbps", 8000000},
	    {"800", 800},
	    {"800bit", 800},
	    {"800bps", 800},
	    {"1.5mbit", 1500000},
	    {" 2 mbit ", 2000000},
	};

	(void)state;
	check_good(units_parse_rate, g, sizeof(g) / sizeof(g[0]));
}

static void
rate_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    "-2mbit",
	    "mbit",
	    "2mbyte",
	    "2Q",
	    "2 mbit/s",
	    "2mbitx",
	    NULL,
	};
	static const char *const big[] = {
	    "100000000000gbit",
	    NULL,
	};

	(void)state;
	check_bad(units_parse_rate, bad, -EINVAL);
	check_bad(units_parse_rate, big, -ERANGE);
}

static void
fmt_size(void **state)
{
	static const struct good g[] = {
	    {"0", 0},
	    {"1", 1},
	    {"1536", 1536},
	    {"1k", KI},
	    {"64k", 64 * KI},
	    {"1M", MI},
	    {"1025k", MI + KI},
	    {"4M", 4 * MI},
	    {"2G", 2 * GI},
	    {"1T", TI},
	    {"1024T", 1024 * TI},
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		assert_string_equal(
		    units_fmt_size(g[i].value, buf, sizeof(buf)), g[i].text);
}

static void
fmt_duration(void **state)
{
	static const struct good g[] = {
	    {"0s", 0},
	    {"1ms", 1},
	    {"250ms", 250},
	    {"1500ms", 1500},
	    {"30s", 30000},
	    {"90s", 90000},
	    {"5m", 300000},
	    {"90m", 5400000},
	    {"2h", 7200000},
	    {"24h", 86400000},
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		assert_string_equal(
		    units_fmt_duration(g[i].value, buf, sizeof(buf)),
		    g[i].text);
}

/* What is printed parses back to the same value: the config printer and
 * `sluice check` rely on it. */
static void
round_trip(void **state)
{
	static const uint64_t sizes[] = {
	    0,
	    1,
	    1023,
	    1024,
	    1025,
	    1536,
	    4096,
	    65536,
	    65537,
	    MI - 1,
	    MI,
	    5 * GI / 2,
	    64 * GI,
	    TI,
	    3 * TI + 1,
	    1024 * TI,
	    16777215 * TI,
	};
	static const uint64_t ms[] = {
	    0,
	    1,
	    999,
	    1000,
	    1001,
	    59999,
	    60000,
	    61000,
	    3599999,
	    3600000,
	    3660000,
	    86400000,
	    86400001,
	};
	char buf[32];
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		units_fmt_size(sizes[i], buf, sizeof(buf));
		assert_int_equal(units_parse_size(buf, &v), 0);
		assert_true(v == sizes[i]);
	}
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		units_fmt_duration(ms[i], buf, sizeof(buf));
		assert_int_equal(units_parse_duration(buf, &v), 0);
		assert_true(v == ms[i]);
	}
	/* Every power of two and its neighbours through the whole range a
	 * config key can hold (64G is the largest maximum). */
	for (uint64_t p = 1; p <= 64 * GI; p <<= 1) {
		for (uint64_t x = p - 1; x <= p + 1; x++) {
			units_fmt_size(x, buf, sizeof(buf));
			assert_int_equal(units_parse_size(buf, &v), 0);
			assert_true(v == x);
		}
	}
}

static void
fmt_truncates(void **state)
{
	/* A short buffer gets a terminated prefix, never an overrun. */
	char buf[4];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_ptr_equal(units_fmt_size(1536, buf, 3), buf);
	assert_string_equal(buf, "15");
	assert_int_equal(buf[3], 'x');
	assert_string_equal(units_fmt_duration(250, buf, sizeof(buf)), "250");
}

/*
 * Every 64-bit value parses exactly: above 2^53 a double would lose the low
 * bits, and UINT64_MAX itself fits (regression test: units.c once went
 * through strtod).
 */
static void
size_exact_64bit(void **state)
{
	uint64_t v = 0;

	(void)state;
	assert_int_equal(units_parse_size("9007199254740993", &v), 0);
	assert_true(v == 9007199254740993ULL);
	assert_int_equal(units_parse_size("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(size_suffixes),
	    cmocka_unit_test(size_blanks),
	    cmocka_unit_test(size_rounding),
	    cmocka_unit_test(size_bad),
	    cmocka_unit_test(size_overflow),
	    cmocka_unit_test(parse_in),
	    cmocka_unit_test(fmt_rate),
	    cmocka_unit_test(duration_units),
	    cmocka_unit_test(duration_bad),
	    cmocka_unit_test(rate_units),
	    cmocka_unit_test(rate_bad),
	    cmocka_unit_test(fmt_size),
	    cmocka_unit_test(fmt_duration),
	    cmocka_unit_test(round_trip),
	    cmocka_unit_test(fmt_truncates),
	    cmocka_unit_test(size_exact_64bit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
