/*
 * pattern: see pattern.h.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/pattern.h"

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

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void
pattern_etag(uint64_t key, uint64_t size, char *out, size_t len)
{
	snprintf(out, len, "\"sluice-%016" PRIx64 "-%" PRIu64 "\"", key, size);
}

int
pattern_etag_key(const char *etag, size_t len, uint64_t *key)
{
	static const char prefix[] = "\"sluice-";
	const size_t plen = sizeof(prefix) - 1;
	uint64_t k = 0;
	size_t i;

	/* Exactly: "sluice-<16 hex digits>-<decimal digits>" */
	if (len < plen + 16 + 3 || memcmp(etag, prefix, plen) != 0 ||
	    etag[len - 1] != '"')
		return -EINVAL;
	for (i = plen; i < plen + 16; i++) {
		int d = hexval(etag[i]);

		if (d < 0)
			return -EINVAL;
		k = k << 4 | (uint64_t)d;
	}
	if (etag[i++] != '-' || i == len - 1)
		return -EINVAL;
	for (; i < len - 1; i++)
		if (!isdigit((unsigned char)etag[i]))
			return -EINVAL;
	*key = k;
	return 0;
}
