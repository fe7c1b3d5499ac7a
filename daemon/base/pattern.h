/*
 * pattern: the test body.  Every byte is a function of a 64-bit key and its
 * offset, so any client can verify any range of any size without storing
 * the body (sluice origin serves it, sluice fetch --verify checks it).
 *
 * Byte i is byte (i mod 8) of mix(key + (i div 8) * φ) in little-endian
 * order, where mix is splitmix64's finaliser: a reordered, repeated or
 * shifted block never matches, and generating or checking runs at several
 * GB/s.  The key travels in the origin's strong ETag, "sluice-KEY-SIZE"
 * (KEY in 16 hex digits), so a verifier learns it from the response.
 */
#ifndef SLUICE_PATTERN_H
#define SLUICE_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* The key of a name (FNV-1a, then mixed); "sluice" is the default. */
uint64_t pattern_key(const char *name);
#define PATTERN_DEFAULT_NAME "sluice"

/* Writes len pattern bytes for offsets off .. off+len-1 into buf. */
void pattern_fill(uint64_t key, uint64_t off, void *buf, size_t len);
/* Returns len when buf holds the pattern at off, else the index of the
 * first byte that differs. */
size_t pattern_check(uint64_t key, uint64_t off, const void *buf, size_t len);

/* The strong ETag for a body of size bytes, quotes included. */
void pattern_etag(uint64_t key, uint64_t size, char *out, size_t len);
/* Reads the key back from such an ETag (quoted or weak W/ forms refused).
 * 0, or -EINVAL when the ETag is not one of ours. */
int pattern_etag_key(const char *etag, size_t len, uint64_t *key);

#endif
