/*
 * test_pattern: the test body (pattern.h) and its ETag.
 *
 * The origin generates the pattern, fetch --verify checks it, and the
 * integration tests recompute it in Python; all three must agree on every
 * byte at every offset.  So the key and the first bytes are pinned to
 * values computed outside this code, a slice made at any offset must equal
 * the same slice of one long fill, a check must name the first bad byte
 * wherever it lies, and the ETag that carries the key must come back
 * exactly and refuse anything that is not one of ours.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/pattern.h"

#define BIG   (64 * 1024 + 13) /* several of pattern_check's 4 KiB chunks */
#define GUARD 0xa5

static unsigned char big[BIG];

static uint64_t
default_key(void)
{
	return pattern_key(PATTERN_DEFAULT_NAME);
}

static int
setup(void **state)
{
	(void)state;
	pattern_fill(default_key(), 0, big, sizeof(big));
	return 0;
}

static void
key_known_values(void **state)
{
	/* FNV-1a-64 of the name, then splitmix64's finaliser; the same
	 * numbers tests/integration/test_peers.py computes in Python. */
	(void)state;
	assert_true(default_key() == 0xd830e37c283570c1ULL);
	assert_true(pattern_key("") == 0xf52a15e9a9b5e89bULL);
	assert_true(pattern_key("other") == 0xebcb19b0f582ae31ULL);
	assert_string_equal(PATTERN_DEFAULT_NAME, "sluice");
}

static void
fill_known_values(void **state)
{
	static const unsigned char at0[16] = {0x7d, 0x12, 0x38, 0x64, 0x37,
	    0x13, 0x80, 0x0a, 0x17, 0x74, 0x65, 0xa0, 0x01, 0x9f, 0x58, 0xf5};
	/* 13 bytes at 2^40 + 3: far past any 32-bit offset, not aligned. */
	static const unsigned char at2p40[13] = {0xc8, 0xb7, 0x63, 0xf6, 0x88,
	    0x44, 0x16, 0xed, 0xe6, 0xdf, 0x5d, 0x9a, 0xed};
	static const unsigned char other0[8] = {
	    0x01, 0xf9, 0x17, 0x2a, 0x1c, 0x0c, 0xd8, 0x4a};
	unsigned char buf[16];

	(void)state;
	pattern_fill(default_key(), 0, buf, 16);
	assert_memory_equal(buf, at0, 16);
	pattern_fill(default_key(), ((uint64_t)1 << 40) + 3, buf, 13);
	assert_memory_equal(buf, at2p40, 13);
	pattern_fill(default_key(), 123457, buf, 1);
	assert_int_equal(buf[0], 0x3e);
	pattern_fill(pattern_key("other"), 0, buf, 8);
	assert_memory_equal(buf, other0, 8);
}

/* fill(off, len) writes exactly big[off .. off+len) and nothing past it. */
static void
check_slice(uint64_t off, size_t len)
{
	unsigned char buf[4200];

	assert_true(off + len <= BIG && len + 8 <= sizeof(buf));
	memset(buf, GUARD, sizeof(buf));
	pattern_fill(default_key(), off, buf, len);
	if (memcmp(buf, big + off, len) != 0)
		print_error(
		    "slice off %" PRIu64 " len %zu differs\n", off, len);
	assert_memory_equal(buf, big + off, len);
	for (size_t i = len; i < len + 8; i++)
		assert_int_equal(buf[i], GUARD);
}

static void
fill_any_slice(void **state)
{
	static const size_t lens[] = {4095, 4096, 4097, 4100};

	(void)state;
	/* Every alignment of start and end within a word, and beyond. */
	for (uint64_t off = 0; off < 40; off++)
		for (size_t len = 0; len < 41; len++)
			check_slice(off, len);
	/* Offsets spread over the whole buffer, odd lengths. */
	for (uint64_t off = 1; off + 4100 < BIG; off += 997)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			check_slice(off, lens[i]);
	/* The tail, ending exactly at the end of the long fill. */
	for (size_t len = 0; len < 20; len++)
		check_slice(BIG - len, len);
}

static void
fill_in_pieces(void **state)
{
	/* A body sent in pieces of any size (as a drip or a socket would cut
	 * it) is the same body. */
	static const size_t steps[] = {1, 3, 7, 8, 9, 1000, 4096, 4099};
	unsigned char *buf = malloc(BIG);

	(void)state;
	assert_non_null(buf);
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		memset(buf, 0, BIG);
		for (size_t off = 0; off < BIG; off += steps[s]) {
			size_t n = BIG - off < steps[s] ? BIG - off : steps[s];

			pattern_fill(default_key(), off, buf + off, n);
		}
		assert_memory_equal(buf, big, BIG);
	}
	free(buf);
}

static void
fill_len_zero(void **state)
{
	unsigned char b = GUARD;

	(void)state;
	pattern_fill(default_key(), 5, &b, 0);
	assert_int_equal(b, GUARD);
}

static void
check_good(void **state)
{
	(void)state;
	assert_int_equal(pattern_check(default_key(), 0, big, BIG), BIG);
	assert_int_equal(pattern_check(default_key(), 0, big, 0), 0);
	for (uint64_t off = 0; off < 20; off++)
		assert_int_equal(
		    pattern_check(default_key(), off, big + off, BIG - off),
		    BIG - off);
	assert_int_equal(
	    pattern_check(default_key(), 12345, big + 12345, 1), 1);
}

static void
check_finds_first_flip(void **state)
{
	/* Flipped bytes on both sides of pattern_check's 4 KiB chunks, at
	 * the first and the last byte, in buffers starting at odd offsets. */
	static const size_t at[] = {
	    0, 1, 7, 8, 9, 4095, 4096, 4097, 8191, 8192, 30000, BIG - 200 - 1};
	static const uint64_t offs[] = {0, 1, 5, 8, 100, 199};
	unsigned char *buf = malloc(BIG);

	(void)state;
	assert_non_null(buf);
	for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
		size_t len = BIG - 200;

		memcpy(buf, big + offs[o], len);
		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			buf[at[i]] ^= 0xff;
			assert_int_equal(
			    pattern_check(default_key(), offs[o], buf, len),
			    at[i]);
			/* A second flip further on does not hide the first. */
			if (at[i] + 3000 < len) {
				buf[at[i] + 3000] ^= 0x01;
				assert_int_equal(pattern_check(default_key(),
				                     offs[o], buf, len),
				    at[i]);
				buf[at[i] + 3000] ^= 0x01;
			}
			buf[at[i]] ^= 0xff;
		}
		assert_int_equal(
		    pattern_check(default_key(), offs[o], buf, len), len);
	}
	free(buf);
}

static void
check_single_bit(void **state)
{
	/* Any one bit of any byte position within a word is caught. */
	unsigned char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			memcpy(buf, big + 3, sizeof(buf));
			buf[i] ^= (unsigned char)(1u << bit);
			assert_int_equal(
			    pattern_check(default_key(), 3, buf, sizeof(buf)),
			    i);
		}
	}
}

static void
check_wrong_offset(void **state)
{
	/* Bytes served from the wrong place (a resumed download that
	 * skipped or repeated, a shifted block) fail at once. */
	static const int64_t shift[] = {-8, -1, 1, 7, 8, 16, 4096};

	(void)state;
	for (size_t i = 0; i < sizeof(shift) / sizeof(shift[0]); i++) {
		uint64_t off = (uint64_t)(10000 + shift[i]);

		assert_true(
		    pattern_check(default_key(), off, big + 10000, 4096) < 8);
	}
}

static void
keys_differ(void **state)
{
	static const char *const names[] = {
	    "sluice", "sluicf", "Sluice", "", "a", "b", "sluice ", "other"};
	const size_t n = sizeof(names) / sizeof(names[0]);
	unsigned char a[256], b[256];

	(void)state;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = i + 1; j < n; j++) {
			uint64_t ki = pattern_key(names[i]);
			uint64_t kj = pattern_key(names[j]);

			assert_true(ki != kj);
			pattern_fill(ki, 0, a, sizeof(a));
			pattern_fill(kj, 0, b, sizeof(b));
			assert_memory_not_equal(a, b, sizeof(a));
			/* The other key's body fails in its first word. */
			assert_true(pattern_check(kj, 0, a, sizeof(a)) < 8);
			pattern_fill(ki, 1000003, a, sizeof(a));
			assert_true(
			    pattern_check(kj, 1000003, a, sizeof(a)) < 8);
		}
	}
	/* The same name always gives the same key. */
	assert_true(pattern_key("other") == pattern_key("other"));
}

static void
etag_format(void **state)
{
	char buf[64];

	(void)state;
	pattern_etag(default_key(), 268435456, buf, sizeof(buf));
	assert_string_equal(buf, "\"sluice-d830e37c283570c1-268435456\"");
	pattern_etag(0, 0, buf, sizeof(buf));
	assert_string_equal(buf, "\"sluice-0000000000000000-0\"");
	pattern_etag(UINT64_MAX, UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(
	    buf, "\"sluice-ffffffffffffffff-18446744073709551615\"");
}

static void
etag_short_buffer(void **state)
{
	/* A short buffer gets a terminated prefix, never an overrun. */
	char buf[16];

	(void)state;
	memset(buf, GUARD, sizeof(buf));
	pattern_etag(default_key(), 1, buf, 10);
	assert_string_equal(buf, "\"sluice-d");
	for (size_t i = 10; i < sizeof(buf); i++)
		assert_int_equal((unsigned char)buf[i], GUARD);
}

static void
etag_round_trip(void **state)
{
	static const uint64_t keys[] = {0, 1, 0xf, 0x0123456789abcdefULL,
	    0xd830e37c283570c1ULL, UINT64_MAX - 1, UINT64_MAX};
	static const uint64_t sizes[] = {
	    0, 1, 2000, 268435456, ((uint64_t)5 << 30) / 2, UINT64_MAX};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			uint64_t k = 12345;

			pattern_etag(keys[i], sizes[j], buf, sizeof(buf));
			assert_int_equal(
			    pattern_etag_key(buf, strlen(buf), &k), 0);
			assert_true(k == keys[i]);
		}
	}
	/* Keys made from names, as --key NAME makes them. */
	for (const char *n = "abcdefgh"; *n != '\0'; n++) {
		uint64_t k = 0;

		pattern_etag(pattern_key(n), 4096, buf, sizeof(buf));
		assert_int_equal(pattern_etag_key(buf, strlen(buf), &k), 0);
		assert_true(k == pattern_key(n));
	}
}

static void
etag_uses_len(void **state)
{
	/* The field value need not be NUL-terminated: only len bytes count. */
	const char *v = "\"sluice-0123456789abcdef-42\", W/\"x\"";
	uint64_t k = 0;

	(void)state;
	assert_int_equal(pattern_etag_key(v, 28, &k), 0);
	assert_true(k == 0x0123456789abcdefULL);
	k = 7;
	assert_int_equal(pattern_etag_key(v, 20, &k), -EINVAL);
	assert_true(k == 7);
}

/* ETags that must be refused with -EINVAL, leaving the key alone. */
static void
check_refused(const char *const *bad)
{
	for (size_t i = 0; bad[i] != NULL; i++) {
		uint64_t k = 12345;
		int rc = pattern_etag_key(bad[i], strlen(bad[i]), &k);

		if (rc != -EINVAL)
			print_error("accepted '%s': rc %d\n", bad[i], rc);
		assert_int_equal(rc, -EINVAL);
		assert_true(k == 12345);
	}
}

static void
etag_foreign_weak(void **state)
{
	static const char *const bad[] = {
	    "",
	    "\"",
	    "\"\"",
	    "*",
	    "W/\"sluice-0123456789abcdef-42\"", /* weak */
	    "w/\"sluice-0123456789abcdef-42\"",
	    "sluice-0123456789abcdef-42", /* unquoted */
	    "\"nginx-0123456789abcdef-42\"",
	    "\"5f3e1a2b-2000000\"", /* what nginx sends */
	    "\"Sluice-0123456789abcdef-42\"",
	    "\"sluicex0123456789abcdef-42\"",
	    " \"sluice-0123456789abcdef-42\"",
	    "\"sluice-0123456789abcdef-42\"\"sluice-0123456789abcdef-4"
	    "2\"sluice-0123456789abcdef-42\"", /* longer than any of ours */
	    NULL,
	};

	(void)state;
	check_refused(bad);
}

static void
etag_garbled_key(void **state)
{
	static const char *const bad[] = {
	    "\"sluice-0123456789abcde-42\"",   /* 15 digits */
	    "\"sluice-0123456789abcdef0-42\"", /* 17 digits */
	    "\"sluice-0123456789abcdeg-42\"",
	    "\"sluice-0123456789abcdef_42\"",
	    "\"sluice-0123456789abcdef42\"",
	    "\"sluice--0123456789abcdef-42\"",
	    NULL,
	};

	(void)state;
	check_refused(bad);
}

static void
etag_garbled_strtoull(void **state)
{
	/* Exactly 16 characters where the key goes, but not 16 hex digits:
	 * strtoull would skip the blank, take the sign or the 0x. */
	static const char *const bad[] = {
	    "\"sluice- 123456789abcdef-42\"",
	    "\"sluice-\t123456789abcdef-42\"",
	    "\"sluice-+123456789abcdef-42\"",
	    "\"sluice--123456789abcdef-42\"",
	    "\"sluice-0x23456789abcdef-42\"",
	    "\"sluice-0X23456789abcdef-42\"",
	    NULL,
	};

	(void)state;
	check_refused(bad);
}

static void
etag_garbled_size(void **state)
{
	/* The key is fine but what follows is not "-SIZE\"". */
	static const char *const bad[] = {
	    "\"sluice-0123456789abcdef-\"",
	    "\"sluice-0123456789abcdef-42",    /* no closing quote */
	    "\"sluice-0123456789abcdef-42\"x", /* junk after it */
	    "\"sluice-0123456789abcdef-42 \"",
	    "\"sluice-0123456789abcdef-x\"",
	    "\"sluice-0123456789abcdef-4x2\"",
	    "\"sluice-0123456789abcdef--42\"",
	    "\"sluice-0123456789abcdef-+42\"",
	    "\"sluice-0123456789abcdef-0x2a\"",
	    NULL,
	};

	(void)state;
	check_refused(bad);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(key_known_values),
	    cmocka_unit_test(fill_known_values),
	    cmocka_unit_test(fill_any_slice),
	    cmocka_unit_test(fill_in_pieces),
	    cmocka_unit_test(fill_len_zero),
	    cmocka_unit_test(check_good),
	    cmocka_unit_test(check_finds_first_flip),
	    cmocka_unit_test(check_single_bit),
	    cmocka_unit_test(check_wrong_offset),
	    cmocka_unit_test(keys_differ),
	    cmocka_unit_test(etag_format),
	    cmocka_unit_test(etag_short_buffer),
	    cmocka_unit_test(etag_round_trip),
	    cmocka_unit_test(etag_uses_len),
	    cmocka_unit_test(etag_foreign_weak),
	    cmocka_unit_test(etag_garbled_key),
	    cmocka_unit_test(etag_garbled_strtoull),
	    cmocka_unit_test(etag_garbled_size),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
