/*
 * units: see units.h.  Pure functions, no allocation.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "units.h"

struct suffix {
	const char *name;
	double mult;
};

/*
 * Splits "  12.5 kb " into the number and the suffix, case-insensitively
 * matched against the table.  An empty suffix takes the table's first row
 * with name "".
 */
static int
parse_with(const char *s, const struct suffix *tab, uint64_t *out)
{
	char *end;
	double v;
	size_t len;

	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == '-' || *s == '+')
		return -EINVAL;
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || v < 0)
		return -EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	len = strlen(end);
	while (len > 0 && isspace((unsigned char)end[len - 1]))
		len--;
	for (; tab->name != NULL; tab++) {
		if (strlen(tab->name) != len ||
		    strncasecmp(end, tab->name, len) != 0)
			continue;
		v *= tab->mult;
		if (v >= 18446744073709551615.0)
			return -ERANGE;
		/* Sizes and durations are whole: round to the nearest. */
		*out = (uint64_t)(v + 0.5);
		return 0;
	}
	return -EINVAL;
}

#define KI 1024.0
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
    {"k", 1e3},
    {"kbit", 1e3},
    {"kbps", 1e3},
    {"m", 1e6},
    {"mbit", 1e6},
    {"mbps", 1e6},
    {"g", 1e9},
    {"gbit", 1e9},
    {"gbps", 1e9},
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
