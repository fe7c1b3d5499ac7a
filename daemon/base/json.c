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

void
json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
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
