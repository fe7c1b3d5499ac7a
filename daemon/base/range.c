/*
 * range: see range.h.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "base/range.h"

/* Reads a decimal number of at most 19 digits at *p (no sign). */
static int
number(const char **p, const char *end, uint64_t *out)
{
	uint64_t v = 0;
	int n = 0;

	while (*p < end && isdigit((unsigned char)**p)) {
		if (++n > 19)
			return -ERANGE;
		v = v * 10 + (uint64_t)(**p - '0');
		(*p)++;
	}
	if (n == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

static void
skip_ows(const char **p, const char *end)
{
	while (*p < end && (**p == ' ' || **p == '\t'))
		(*p)++;
}

enum range_result
range_parse(
    const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
	const char *p = v, *end = v + len;
	uint64_t a, b;

	skip_ows(&p, end);
	if (end - p < 6 || strncasecmp(p, "bytes=", 6) != 0)
		return RANGE_NONE;
	p += 6;
	skip_ows(&p, end);
	if (p < end && *p == '-') { /* suffix: the last b bytes */
		p++;
		if (number(&p, end, &b) < 0)
			return RANGE_NONE;
		skip_ows(&p, end);
		if (p != end)
			return RANGE_NONE; /* several ranges, or junk */
		if (b == 0 || size == 0)
			return RANGE_UNSATISFIABLE;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return RANGE_OK;
	}
	if (number(&p, end, &a) < 0 || p >= end || *p++ != '-')
		return RANGE_NONE;
	b = UINT64_MAX;
	if (p < end && isdigit((unsigned char)*p)) {
		if (number(&p, end, &b) < 0 || b < a)
			return RANGE_NONE;
	}
	skip_ows(&p, end);
	if (p != end)
		return RANGE_NONE;
	if (a >= size)
		return RANGE_UNSATISFIABLE;
	*first = a;
	*last = b >= size ? size - 1 : b;
	return RANGE_OK;
}

int
range_parse_content_range(
    const char *v, size_t len, uint64_t *first, uint64_t *last, uint64_t *total)
{
	const char *p = v, *end = v + len;

	skip_ows(&p, end);
	if (end - p < 6 || strncasecmp(p, "bytes ", 6) != 0)
		return -EINVAL;
	p += 6;
	skip_ows(&p, end);
	if (p < end && *p == '*') {
		p++;
		*first = *last = UINT64_MAX;
	} else {
		if (number(&p, end, first) < 0 || p >= end || *p++ != '-' ||
		    number(&p, end, last) < 0 || *last < *first)
			return -EINVAL;
	}
	if (p >= end || *p++ != '/')
		return -EINVAL;
	if (p < end && *p == '*') {
		p++;
		if (*first == UINT64_MAX)
			return -EINVAL; /* "* / *" means nothing */
		*total = UINT64_MAX;
	} else if (number(&p, end, total) < 0) {
		return -EINVAL;
	} else if (*first != UINT64_MAX && *last >= *total) {
		return -EINVAL;
	}
	skip_ows(&p, end);
	return p == end ? 0 : -EINVAL;
}
