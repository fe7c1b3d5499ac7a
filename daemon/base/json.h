/*
 * json: the little JSON writing the verbs share (origin's connection
 * lines, fetch's summary, later the lab's): strings escaped per RFC 8259.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdio.h>

/* Writes s as a JSON string, quotes included. */
void json_string(FILE *out, const char *s);

#endif
