/*
 * units: parsing and printing of sizes, durations and rates, shared by the
 * config, the command line of every verb and the lab (one parser for all:
 * docs/architecture.md).
 *
 * Sizes: a decimal number with an optional binary suffix k, M, G, T (1024
 * based, case-insensitive, an optional trailing "b"/"B"/"iB"), bytes by
 * default: "64k", "4M", "2.5G".  Durations: a number with ms, s, m, h
 * (seconds by default): "250ms", "30s", "5m".  Rates: bits per second with
 * k, M, G (1000 based) and "bit"/"bps": "2mbit", "1gbit".
 */
#ifndef SLUICE_UNITS_H
#define SLUICE_UNITS_H

#include <stdint.h>
#include <stddef.h>

/* Each returns 0 and stores the value, or -EINVAL (bad syntax or unit) or
 * -ERANGE (does not fit in 64 bits).  Leading and trailing blanks are
 * ignored; nothing else may follow the unit. */
int units_parse_size(const char *s, uint64_t *bytes);
int units_parse_duration(const char *s, uint64_t *ms);
int units_parse_rate(const char *s, uint64_t *bits_per_sec);

enum units_kind {
	UNITS_SIZE,
	UNITS_DURATION,
	UNITS_RATE,
};

/*
 * Parses s as a size, duration or rate and checks min <= value <= max.
 * Returns 0 and stores the value, or -EINVAL ("not a size (bytes, or with
 * k, M, G, T)") or -ERANGE ("out of range (1k to 64M)", the bounds
 * written the way the kind writes values) with that message in msg (len
 * bytes, may be 0).  A number too large for 64 bits is out of range, not
 * "not a size" ("9999999999T").
 */
int units_parse_in(enum units_kind kind, const char *s, uint64_t min,
    uint64_t max, uint64_t *out, char *msg, size_t len);

/* Prints the shortest exact form ("64k", "1M", "1536") into buf. */
const char *units_fmt_size(uint64_t bytes, char *buf, size_t len);
/* Prints "250ms", "30s", "5m", "2h" (the largest exact unit). */
const char *units_fmt_duration(uint64_t ms, char *buf, size_t len);
/* Prints "8bit", "500kbit", "2mbit", "1gbit" (the largest exact unit). */
const char *units_fmt_rate(uint64_t bits_per_sec, char *buf, size_t len);

#endif
