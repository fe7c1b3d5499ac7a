/*
 * range: HTTP byte ranges (RFC 9110 §14): the Range request field an origin
 * answers and the Content-Range response field a client checks.  Pure.
 */
#ifndef SLUICE_RANGE_H
#define SLUICE_RANGE_H

#include <stddef.h>
#include <stdint.h>

enum range_result {
	RANGE_NONE = 0,      /* absent, malformed, not bytes, or several ranges:
	                      * ignore it and send the whole body (§14.2) */
	RANGE_OK,            /* one satisfiable range: 206 */
	RANGE_UNSATISFIABLE, /* 416 with Content-Range: bytes * / size */
};

/*
 * Parses a Range value ("bytes=0-499", "bytes=500-", "bytes=-500") against
 * a body of size bytes; on RANGE_OK, *first and *last (inclusive) are the
 * range clipped to the body.
 */
enum range_result range_parse(
    const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last);

/*
 * Parses a Content-Range value: "bytes 0-499/1234" (complete length, or
 * '*' which gives *total = UINT64_MAX) or "bytes * / 1234" without the
 * blanks (unsatisfied: *first = *last = UINT64_MAX).  0 or -EINVAL.
 */
int range_parse_content_range(const char *v, size_t len, uint64_t *first,
    uint64_t *last, uint64_t *total);

#endif
