/*
 * json: see json.h.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

/*
 * The length of the well-formed UTF-8 sequence at s (RFC 3629 §4: no
 * overlong form, no surrogate, nothing past U+10FFFF), or 0 when the byte
 * at s does not start one.
 */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* past U+10FFFF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0; /* the string's NUL ends it here too */
	return n;
}

void
json_num_or_null(FILE *out, const char *key, double v)
{
	if (v < 0)
		fprintf(out, ",\"%s\":null", key);
	else
		fprintf(out, ",\"%s\":%.3f", key, v);
}

void
json_string(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	fputc('"', out);
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			fprintf(out, "\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(out, "\\u%04x", *p++);
		} else if (*p < 0x80) {
			fputc(*p++, out);
		} else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, n, out);
			p += n;
		} else {
			/* a byte of no valid UTF-8 sequence: its value, so the
			 * line stays JSON and the byte stays visible */
			fprintf(out, "\\u%04x", *p++);
		}
	}
	fputc('"', out);
}

/* The number after "key": in [s, end); -1 when absent or null. */
double
json_num(const char *s, const char *end, const char *key)
{
	char pat[64];
	const char *p;
	size_t n;

	n = (size_t)snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((p = strstr(s, pat)) == NULL || p >= end)
		return -1;
	p += n;
	if (*p == 't')
		return 1; /* true */
	if (*p == '-' || isdigit((unsigned char)*p))
		return strtod(p, NULL);
	return *p == 'f' ? 0 : -1;
}

/* The same as a count: 0 when absent, null or negative. */
uint64_t
json_u64(const char *s, const char *end, const char *key)
{
	double v = json_num(s, end, key);

	return v > 0 ? (uint64_t)v : 0;
}

/* The string after "key": into buf ("" when absent or null). */
void
json_str(const char *s, const char *key, char *buf, size_t len)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	buf[0] = '\0';
	if ((p = strstr(s, pat)) == NULL)
		return;
	p += strlen(pat);
	snprintf(buf, len, "%.*s", (int)strcspn(p, "\""), p);
}

/* The object after "name": as [*start, *end), or false when null. */
bool
json_obj(const char *s, const char *name, const char **start, const char **end)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":{", name);
	if ((p = strstr(s, pat)) == NULL || (*end = strchr(p, '}')) == NULL)
		return false;
	*start = p + strlen(pat);
	return true;
}
