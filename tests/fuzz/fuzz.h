/*
 * fuzz.h: what the libFuzzer harnesses of tests/fuzz share: the entry
 * point's prototype, CHECK (an invariant that aborts, which libFuzzer
 * reports as a crash with the input that broke it), a growing byte buffer,
 * the split of an input into reads, and a memory file for the loaders that
 * take a path.  Harness code only: nothing in daemon/ includes it.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",       \
			    __FILE__, __LINE__, #cond);                        \
			abort();                                               \
		}                                                              \
	} while (0)

/* A byte string that grows; abort() when malloc fails (a harness is not
 * the proxy: out of memory there is libFuzzer's -rss_limit_mb to report). */
struct fbuf {
	char *p;
	size_t len, cap;
};

static inline void
fbuf_add(struct fbuf *b, const void *s, size_t n)
{
	if (n > b->cap - b->len) {
		size_t cap = b->cap != 0 ? b->cap : 256;

		while (cap - b->len < n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		CHECK(b->p != NULL);
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

static inline void
fbuf_free(struct fbuf *b)
{
	free(b->p);
	*b = (struct fbuf){0};
}

/*
 * The sizes of the reads an input arrives in: four bytes taken from the
 * input's front, used in turn; 0 stands for "the rest".  So the fuzzer
 * decides where a head or a chunk is cut, as the kernel would.
 */
struct splits {
	uint8_t size[4];
	unsigned i;
};

/* Takes the four size bytes from *data (fewer when the input is short). */
static inline void
splits_init(struct splits *s, const uint8_t **data, size_t *size)
{
	memset(s, 0, sizeof(*s));
	for (int k = 0; k < 4 && *size > 0; k++) {
		s->size[k] = **data;
		(*data)++;
		(*size)--;
	}
}

/* The length of the next read of at most left bytes. */
static inline size_t
splits_next(struct splits *s, size_t left)
{
	size_t n = s->size[s->i++ % 4];

	return n == 0 || n > left ? left : n;
}

/*
 * A memory file holding n bytes, for loaders that take a path: its name is
 * written to path ("/proc/self/fd/N").  Returns the fd to close, or -1.
 */
static inline int
memfile(const void *p, size_t n, char *path, size_t len)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd == -1)
		return -1;
	if (write(fd, p, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

#endif
