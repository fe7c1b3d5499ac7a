/*
 * bench: `sluice bench SWEEP.ini`, a grid of lab runs (docs/lab.md,
 * "Sweeps: sluice bench").  A sweep file names a base scenario and the
 * axes to vary; every combination (times a repeat count) runs through
 * `sluice lab` as a child process, each in fresh namespaces of its own,
 * one at a time or --jobs N at once; results.csv, summary.md and gnuplot
 * plots are written.
 *
 * The pure parts (the sweep file, the combinations, the scenario text of
 * one combination) are exported for tests/unit/test_bench.c.  Every
 * combination is parsed as a scenario, and its proxy config loaded, when
 * the sweep is loaded: a sweep that the lab would refuse at run 7 is
 * refused before run 1.
 */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_ERR_MAX    768
#define BENCH_MAX_VALUES 16
#define BENCH_MAX_RUNS   512
#define BENCH_MAX_JOBS   64 /* --jobs */
#define BENCH_VALUE_MAX  128

/* The axes a sweep may vary, in the order of results.csv's columns. */
enum bench_axis_id {
	BENCH_POLICY = 0,  /* [proxy] buffer.policy */
	BENCH_HIGH,        /* [proxy] buffer.high_watermark */
	BENCH_LOW,         /* [proxy] buffer.low_watermark */
	BENCH_SPILL_LIMIT, /* [proxy] buffer.spill_limit */
	BENCH_RESUME,      /* [proxy] buffer.resume */
	BENCH_ZWP_TIMEOUT, /* [proxy] client.zwp_timeout */
	BENCH_RCVBUF,      /* [proxy] upstream.rcvbuf */
	BENCH_CLIENT_RATE, /* [links] lb_client */
	BENCH_GIVE_UP,     /* [origin] give_up, values separated by '|' */
	BENCH_LB,          /* [lb] kind */
	BENCH_BODY,        /* [lab] body */
	BENCH_SCALE,       /* [lab] scale: the run's bytes divided by it */
	BENCH_NAXES,
};

/* One axis as the sweep file gives it: its values as written. */
struct bench_axis {
	size_t nvalues; /* 0: not in the sweep (the base's value) */
	char values[BENCH_MAX_VALUES][BENCH_VALUE_MAX];
};

/* One combination's value of every axis as the run will see it, for
 * results.csv (sizes in bytes, rates in bits/s, durations in ms). */
struct bench_point {
	char values[BENCH_NAXES][BENCH_VALUE_MAX];
};

/* A sweep file as plain data (STYLE 2); bench_sweep_free() frees it. */
struct bench_sweep {
	char path[PATH_MAX];
	char name[64];
	char base[PATH_MAX]; /* resolved against the sweep file's directory */
	uint64_t repeat;
	int mode; /* the base's enum lab_mode: netns needs root */
	struct bench_axis axes[BENCH_NAXES];
	char *base_text;            /* the base scenario's text */
	struct bench_point *points; /* one per combination, once checked */
	size_t npoints;
};

/*
 * Parses a sweep from text; name stands for the file in errors and its
 * directory is where `base` is resolved.  Reads the base scenario and
 * checks every combination (bench_sweep_check).  0, or -EINVAL with err
 * "NAME:LINE: [section] key: message" (or "NAME: ..." for what has no
 * line).  Free sw with bench_sweep_free() either way.
 */
int bench_sweep_parse(const char *text, const char *name,
    struct bench_sweep *sw, char *err, size_t errlen);
/* The same from a file. */
int bench_sweep_load(
    const char *path, struct bench_sweep *sw, char *err, size_t errlen);
void bench_sweep_free(struct bench_sweep *sw);

/* Combinations: the product of the axes' value counts (repeats apart). */
size_t bench_combinations(const struct bench_sweep *sw);
/* The value index of axis a in combination i (the first axis varies
 * slowest); 0 for an axis the sweep does not give. */
size_t bench_value_index(const struct bench_sweep *sw, size_t i, int a);

/*
 * The scenario of combination i: the base's text with each overridden key
 * commented out where it stood and the combination's keys appended in
 * their sections (the lab and the proxy config refuse a key given twice).
 * A malloc'd string the caller frees, or NULL.
 */
char *bench_scenario_text(const struct bench_sweep *sw, size_t i);

/* The axis's name in the sweep file ("policy") and its CSV column
 * ("high_watermark_bytes"). */
const char *bench_axis_name(int a);
const char *bench_axis_column(int a);

/* `sluice bench`: argv[0] is "bench".  0 the sweep ran, 1 it could not
 * run, 2 bad usage or sweep file, 130 interrupted. */
int bench_main(int argc, char **argv);
void bench_usage(FILE *out);

#endif
