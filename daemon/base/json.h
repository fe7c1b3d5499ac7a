/*
 * json: the little JSON the verbs share.  Writing: origin's connection
 * lines, fetch's summary, plan's and the lab's objects, strings escaped
 * per RFC 8259.  Reading: the flat lines our own verbs write (fetch's,
 * origin's, the access log, the admin API, the lab's summary.json), found
 * by key, without a parser: a key is found as "key": anywhere in the text
 * (the first one, at any depth), strings are taken up to their first quote
 * (no unescaping) and an object ends at its first '}'.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Writes s as a JSON string, quotes included, valid JSON whatever bytes
 * s holds: '"' and '\\' escaped, control characters (and DEL) as \u00XX,
 * well-formed UTF-8 as it is, and every byte that is not part of
 * well-formed UTF-8 (a raw 0xff in a request target) as \u00XX, its
 * value. */
void json_string(FILE *out, const char *s);
/* Writes ,"key":v with three decimals, or ,"key":null when v < 0 (a
 * figure the run did not measure). */
void json_num_or_null(FILE *out, const char *key, double v);

/* The number after the first "key": in s, when it starts before end:
 * true is 1, false 0; -1 when absent, null or not a number. */
double json_num(const char *s, const char *end, const char *key);
/* The same as a count: 0 when absent, null or negative. */
uint64_t json_u64(const char *s, const char *end, const char *key);
/* The string after the first "key": in s, into buf (cut at len); "" when
 * absent, null or not a string. */
void json_str(const char *s, const char *key, char *buf, size_t len);
/* The object after the first "name": in s as [*start, *end), *end at its
 * first '}'; false when absent or null. */
bool json_obj(
    const char *s, const char *name, const char **start, const char **end);

#endif
