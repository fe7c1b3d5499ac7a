/*
 * fuzz_units_range: the small parsers of numbers from outside: sizes,
 * durations and rates (daemon/base/units.c: config values, command lines,
 * scenarios), Range and Content-Range (daemon/base/range.c: a client's
 * Range reaches the origin, an upstream's Content-Range the resume), and
 * the article's window list (daemon/lab/pcap.c, from a scenario).
 *
 * Input: byte 0 picks the parser; for Range, bytes 1-8 are the body's
 * size (little-endian); then the text (up to its first NUL byte).
 *
 * Invariants, each an abort():
 *   - units: what parses prints (units_fmt_*) as text that parses to the
 *     same value; units_parse_in agrees with the parse and its bounds, and
 *     its refusal has a message;
 *   - Range: a satisfiable range lies inside the body (first <= last <
 *     size), and written back as "bytes=first-last" gives itself again;
 *   - Content-Range: first <= last < total when given, "*" only where
 *     allowed, and written back gives itself again;
 *   - the window list: a count within the limit, the same with and
 *     without storage, and the pairs written back parse the same.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/range.h"
#include "base/units.h"
#include "fuzz.h"
#include "lab/pcap.h"

static int (*const parse[])(const char *, uint64_t *) = {
    [UNITS_SIZE] = units_parse_size,
    [UNITS_DURATION] = units_parse_duration,
    [UNITS_RATE] = units_parse_rate,
};
static const char *(*const fmt[])(uint64_t, char *, size_t) = {
    [UNITS_SIZE] = units_fmt_size,
    [UNITS_DURATION] = units_fmt_duration,
    [UNITS_RATE] = units_fmt_rate,
};

static void
fuzz_units(enum units_kind kind, const char *s, uint64_t bound)
{
	char buf[64], msg[128];
	uint64_t v, w, u = 0;
	int rc, rc_in;

	rc = parse[kind](s, &v);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (rc == 0) {
		fmt[kind](v, buf, sizeof(buf));
		CHECK(parse[kind](buf, &w) == 0 && w == v);
	}
	/* bounds: [0, bound] and [bound, max] */
	msg[0] = '\0';
	rc_in = units_parse_in(kind, s, 0, bound, &u, msg, sizeof(msg));
	if (rc == 0 && v <= bound)
		CHECK(rc_in == 0 && u == v);
	else
		CHECK(rc_in < 0 && msg[0] != '\0');
	msg[0] = '\0';
	rc_in = units_parse_in(kind, s, bound, UINT64_MAX, &u, msg, 0);
	CHECK(rc_in ==
	    (rc == 0 && v >= bound  ? 0
	            : rc == -EINVAL ? -EINVAL
	                            : -ERANGE));
	CHECK(msg[0] == '\0'); /* len 0: nothing written */
}

static void
fuzz_range(const char *s, size_t len, uint64_t size)
{
	uint64_t first = 0, last = 0, f2, l2;
	char buf[64];
	enum range_result r = range_parse(s, len, size, &first, &last);

	if (r != RANGE_OK)
		return;
	CHECK(first <= last && last < size);
	snprintf(buf, sizeof(buf), "bytes=%" PRIu64 "-%" PRIu64, first, last);
	CHECK(range_parse(buf, strlen(buf), size, &f2, &l2) == RANGE_OK);
	CHECK(f2 == first && l2 == last);
}

static void
fuzz_content_range(const char *s, size_t len)
{
	uint64_t first = 0, last = 0, total = 0, f, l, t;
	char buf[96], a[48], b[24];
	int n;

	if (range_parse_content_range(s, len, &first, &last, &total) < 0)
		return;
	if (first == UINT64_MAX) {
		CHECK(last == UINT64_MAX && total != UINT64_MAX);
		snprintf(a, sizeof(a), "*");
	} else {
		CHECK(first <= last);
		CHECK(total == UINT64_MAX || last < total);
		snprintf(a, sizeof(a), "%" PRIu64 "-%" PRIu64, first, last);
	}
	if (total == UINT64_MAX)
		snprintf(b, sizeof(b), "*");
	else
		snprintf(b, sizeof(b), "%" PRIu64, total);
	n = snprintf(buf, sizeof(buf), "bytes %s/%s", a, b);
	CHECK(range_parse_content_range(buf, (size_t)n, &f, &l, &t) == 0);
	CHECK(f == first && l == last && t == total);
}

static void
fuzz_article(const char *s)
{
	uint32_t acks[16], wins[16], a2[16], w2[16];
	char buf[16 * 24 + 1];
	size_t used = 0;
	int n = pcap_parse_article(s, acks, wins, 16);
	int all = pcap_parse_article(s, NULL, NULL, 0);

	CHECK(n == -EINVAL || n == -E2BIG || (n >= 0 && n <= 16));
	if (n == -EINVAL)
		CHECK(all == -EINVAL);
	else if (n == -E2BIG) /* the count goes on, to the end or an error */
		CHECK(all > 16 || all == -EINVAL);
	else
		CHECK(all == n);
	if (n <= 0)
		return;
	for (int i = 0; i < n; i++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used,
		    "%s%" PRIu32 ":%" PRIu32, i ? ", " : "", acks[i], wins[i]);
	CHECK(pcap_parse_article(buf, a2, w2, 16) == n);
	CHECK(memcmp(a2, acks, (size_t)n * 4) == 0 &&
	    memcmp(w2, wins, (size_t)n * 4) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t num = 0;
	uint8_t sel;
	size_t len;
	char *s;

	if (size < 9)
		return 0;
	sel = data[0];
	for (int i = 0; i < 8; i++)
		num |= (uint64_t)data[1 + i] << (8 * i);
	data += 9;
	size -= 9;
	len = strnlen((const char *)data, size);
	s = malloc(len + 1);
	CHECK(s != NULL);
	memcpy(s, data, len);
	s[len] = '\0';
	switch (sel % 6) {
	case 0:
		fuzz_units(UNITS_SIZE, s, num);
		break;
	case 1:
		fuzz_units(UNITS_DURATION, s, num);
		break;
	case 2:
		fuzz_units(UNITS_RATE, s, num);
		break;
	case 3:
		/* small sizes too: the clipping and the edges.  Positions are
		 * at most 19 digits (range.c's number()): a body of 10^19
		 * bytes or more could be ranged but not written back. */
		fuzz_range(s, len,
		    sel & 0x80 ? num % 10000000000000000000ULL : num % 4096);
		break;
	case 4:
		fuzz_content_range(s, len);
		break;
	default:
		fuzz_article(s);
		break;
	}
	free(s);
	return 0;
}
