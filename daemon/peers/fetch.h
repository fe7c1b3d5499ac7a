/*
 * fetch: `sluice fetch`, the testbed's slow client: an HTTP/1.1 (or raw
 * TCP) client that drains at a chosen rate or in the article's
 * read/sleep steps, verifies every byte of the origin's pattern, resumes
 * truncated downloads with Range, and says what happened in one JSON
 * object and its exit code.  See `sluice help fetch`.
 */
#ifndef SLUICE_FETCH_H
#define SLUICE_FETCH_H

#include <stdio.h>

/* Exit codes (also in `sluice help fetch`). */
#define FETCH_EXIT_COMPLETE  0
#define FETCH_EXIT_USAGE     2
#define FETCH_EXIT_TRUNCATED 3
#define FETCH_EXIT_CORRUPT   4
#define FETCH_EXIT_ERROR     5

/* `sluice fetch ...`: argv after the verb.  Returns the exit code. */
int fetch_main(int argc, char **argv);
void fetch_usage(FILE *out);

#endif
