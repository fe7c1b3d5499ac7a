/*
 * pattern: see pattern.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

#define PHI 0x9e3779b97f4a7c15ULL

static inline uint64_t
mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t
word(uint64_t key, uint64_t j)
{
	return mix(key + j * PHI);
}

uint64_t
pattern_key(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ULL;
	return mix(h);
}

/* Byte k (0..7) of a word, little-endian whatever the host. */
static inline unsigned char
byte_of(uint64_t w, unsigned k)
{
	return (unsigned char)(w >> (8 * k));
}

void
pattern_fill(uint64_t key, uint64_t off, void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t j = off / 8;
	unsigned k = (unsigned)(off % 8);
	uint64_t w;

	while (len > 0 && k != 0) { /* up to the next word boundary */
		*p++ = byte_of(word(key, j), k);
		len--;
		if (++k == 8) {
			k = 0;
			j++;
		}
	}
	for (; len >= 8; len -= 8, p += 8, j++) {
		w = word(key, j);
		for (unsigned i = 0; i < 8; i++)
			p[i] = byte_of(w, i);
	}
	if (len > 0) {
		w = word(key, j);
		for (unsigned i = 0; i < len; i++)
			p[i] = byte_of(w, i);
	}
}

size_t
pattern_check(uint64_t key, uint64_t off, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	unsigned char tmp[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(tmp) ? len - done : sizeof(tmp);

		pattern_fill(key, off + done, tmp, n);
		if (memcmp(tmp, p + done, n) != 0) {
			for (size_t i = 0; i < n; i++)
				if (tmp[i] != p[done + i])
					return done + i;
		}
		done += n;
	}
	return len;
}

void
pattern_etag(uint64_t key, uint64_t size, char *out, size_t len)
{
	snprintf(out, len, "\"sluice-%016" PRIx64 "-%" PRIu64 "\"", key, size);
}

int
pattern_etag_key(const char *etag, size_t len, uint64_t *key)
{
	char buf[64], *end;
	unsigned long long k;

	if (len < 2 || len >= sizeof(buf) || etag[0] != '"')
		return -EINVAL;
	memcpy(buf, etag, len);
	buf[len] = '\0';
	if (strncmp(buf, "\"sluice-", 8) != 0 || strlen(buf) < 8 + 16 + 3)
		return -EINVAL;
	errno = 0;
	k = strtoull(buf + 8, &end, 16);
	if (errno != 0 || end != buf + 8 + 16 || *end != '-')
		return -EINVAL;
	*key = k;
	return 0;
}
