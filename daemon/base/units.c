/*
 * units: see units.h.  Pure functions, no allocation.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/units.h"

struct suffix {
	const char *name;
	uint64_t mult;
};

/*
 * Parses "  12.5 kb " exactly: a decimal number (digits, an optional
 * fraction of up to 9 digits; no sign, exponent or hex), then a suffix
 * matched case-insensitively against the table ("" for none).  Integer
 * arithmetic throughout, so every 64-bit value parses exactly; a fraction
 * is rounded to the nearest whole unit.
 */
static int
parse_with(const char *s, const struct suffix *tab, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 1;
	int digits = 0;
	size_t len;

	while (isspace((unsigned char)*s))
		s++;
	for (; isdigit((unsigned char)*s); s++, digits++) {
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(*s - '0'), &whole))
			return -ERANGE;
	}
	if (*s == '.') {
		for (s++; isdigit((unsigned char)*s); s++, digits++) {
			if (scale < 1000000000ULL) {
				frac = frac * 10 + (uint64_t)(*s - '0');
				scale *= 10;
			}
		}
	}
	if (digits == 0)
		return -EINVAL;
	while (isspace((unsigned char)*s))
		s++;
	len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	for (; tab->name != NULL; tab++) {
		unsigned __int128 v;

		if (strlen(tab->name) != len ||
		    strncasecmp(s, tab->name, len) != 0)
			continue;
		v = (unsigned __int128)whole * tab->mult +
		    ((unsigned __int128)frac * tab->mult + scale / 2) / scale;
		if (v > UINT64_MAX)
			return -ERANGE;
		*out = (uint64_t)v;
		return 0;
	}
	return -EINVAL;
}

#define KI 1024ULL
static const struct suffix size_tab[] = {
    {"", 1},
    {"b", 1},
    {"k", KI},
    {"kb", KI},
    {"kib", KI},
    {"m", KI *KI},
    {"mb", KI *KI},
    {"mib", KI *KI},
    {"g", KI *KI *KI},
    {"gb", KI *KI *KI},
    {"gib", KI *KI *KI},
    {"t", KI *KI *KI *KI},
    {"tb", KI *KI *KI *KI},
    {"tib", KI *KI *KI *KI},
    {NULL, 0},
};

static const struct suffix duration_tab[] = {
    {"", 1000},
    {"s", 1000},
    {"ms", 1},
    {"sec", 1000},
    {"m", 60000},
    {"min", 60000},
    {"h", 3600000},
    {NULL, 0},
};

static const struct suffix rate_tab[] = {
    {"", 1},
    {"bit", 1},
    {"bps", 1},
    {"k", 1000},
    {"kbit", 1000},
    {"kbps", 1000},
    {"m", 1000000},
    {"mbit", 1000000},
    {"mbps", 1000000},
    {"g", 1000000000},
    {"gbit", 1000000000},
    {"gbps", 1000000000},
    {NULL, 0},
};

int
units_parse_size(const char *s, uint64_t *bytes)
{
	return parse_with(s, size_tab, bytes);
}

int
units_parse_duration(const char *s, uint64_t *ms)
{
	return parse_with(s, duration_tab, ms);
}

int
units_parse_rate(const char *s, uint64_t *bits_per_sec)
{
	return parse_with(s, rate_tab, bits_per_sec);
}

static const struct {
	int (*parse)(const char *, uint64_t *);
	const char *(*fmt)(uint64_t, char *, size_t);
	const char *not_one;
} kinds[] = {
    [UNITS_SIZE] = {units_parse_size, units_fmt_size,
        "not a size (bytes, or with k, M, G, T)"},
    [UNITS_DURATION] = {units_parse_duration, units_fmt_duration,
        "not a duration (ms, s, m, h)"},
    [UNITS_RATE] = {units_parse_rate, units_fmt_rate,
        "not a rate (2mbit, 500kbit, 1gbit)"},
};

int
units_parse_in(enum units_kind kind, const char *s, uint64_t min, uint64_t max,
    uint64_t *out, char *msg, size_t len)
{
	char a[32], b[32];
	uint64_t v;
	int rc = kinds[kind].parse(s, &v);

	if (rc == -EINVAL) {
		if (len > 0)
			snprintf(msg, len, "%s", kinds[kind].not_one);
		return rc;
	}
	if (rc == -ERANGE || v < min || v > max) {
		if (len > 0)
			snprintf(msg, len, "out of range (%s to %s)",
			    kinds[kind].fmt(min, a, sizeof(a)),
			    kinds[kind].fmt(max, b, sizeof(b)));
		return -ERANGE;
	}
	*out = v;
	return 0;
}

const char *
units_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char sfx[] = "kMGT";
	int i = -1;

	while (bytes != 0 && bytes % 1024 == 0 && i < 3) {
		bytes /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)bytes, sfx[i]);
	return buf;
}

const char *
units_fmt_duration(uint64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	return buf;
}

const char *
units_fmt_rate(uint64_t bps, char *buf, size_t len)
{
	if (bps != 0 && bps % 1000000000 == 0)
		snprintf(buf, len, "%llugbit",
		    (unsigned long long)(bps / 1000000000));
	else if (bps != 0 && bps % 1000000 == 0)
		snprintf(
		    buf, len, "%llumbit", (unsigned long long)(bps / 1000000));
	else if (bps != 0 && bps % 1000 == 0)
		snprintf(
		    buf, len, "%llukbit", (unsigned long long)(bps / 1000));
	else
		snprintf(buf, len, "%llubit", (unsigned long long)bps);
	return buf;
}
