/*
 * origin: `sluice origin`, the fast backend of the testbed: an HTTP/1.1
 * server whose body is the keyed pattern (pattern.h) or real files, that
 * sends as fast as its socket takes, and that gives up on a receiver
 * holding a zero window the ways real servers do.  See `sluice help
 * origin` and docs/peers.md.
 */
#ifndef SLUICE_ORIGIN_H
#define SLUICE_ORIGIN_H

#include <stdio.h>

/* `sluice origin ...`: argv after the verb.  Returns the exit code. */
int origin_main(int argc, char **argv);
void origin_usage(FILE *out);

#endif
