/*
 * bench internals: a sweep's runs, shared by bench.c (the sweep file, the
 * combinations, the runs) and bench_report.c (results.csv, summary.md,
 * the plots, --json) and bench_run.c (the runs, --jobs at a time).
 */
#ifndef SLUICE_BENCH_INT_H
#define SLUICE_BENCH_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lab/bench.h"

/* One run's row of results.csv. */
struct run {
	size_t index; /* its place in the sweep: results.csv's run - 1 */
	size_t combo, rep;
	char stem[128]; /* NNN-LABEL: its runs/ directory, its emitted file */
	char dir[PATH_MAX - 64];
	char outcome[16]; /* complete, truncated, error */
	char error[200];  /* why an error, from the lab's stderr */
	uint64_t client_bytes, unsent_bytes;
	double finish_s, hold_s, zw_s, longest_zw_s;
	uint64_t rss, mem, proxy_mem, spool;
	char predicted[16];
	int64_t predicted_unsent; /* -1: no prediction */
	double wall_s;
	int lab_rc;    /* the lab's exit code */
	pid_t lab_pid; /* its namespaces are sluice-PID-* */
	int attempts;  /* labs started for it: a failed setup is retried */
	bool done;
	bool collected; /* from --collect: no wall time, exit code or pid */
};

struct bench {
	struct bench_sweep sw;
	const char *out;
	bool json, verbose, tty;
	size_t jobs; /* labs at a time (--jobs) */
	struct run *runs;
	size_t nruns, ndone; /* after the sweep the done runs come first */
	char notes[8][240];
	size_t nnotes;
};

#define NFIELDS (2 + BENCH_NAXES + 18)

/* One field of a run's row (results.csv's column, --json's key). */
struct field {
	const char *name;
	char value[PATH_MAX];
	bool number;
};

/* bench.c */
/* "policy=spill high_watermark=2M": combination i's varying axes into buf,
 * separated by sep (' ', or ", " for any other sep); "the base scenario"
 * when none varies. */
void bench_combo_label(
    const struct bench_sweep *sw, size_t i, char *buf, size_t len, char sep);
/* Run r as NFIELDS named fields, shared by results.csv and --json: the
 * run, its repeat, the axes' values, then the figures (empty for an
 * error run's). */
void bench_run_fields(
    const struct bench *b, const struct run *r, struct field *f);

/* The file's text in a malloc'd string the caller frees, or NULL. */
char *bench_read_text(const char *path);

/* The separator the sweep file puts between axis a's values: ", " or
 * " | " (a give-up rule holds commas). */
const char *bench_axis_sep(int a);

/* bench_run.c */
/* A note for summary.md and stderr (at most 8 are kept). */
void bench_note(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The last non-empty line of the file at path into buf (control
 * characters blanked); false when there is none. */
bool bench_last_line(const char *path, char *buf, size_t len);
/* Fills r's figures from the text of a lab's summary.json; false when it
 * has no outcome. */
bool bench_parse_summary(struct run *r, const char *s);
/* SIGINT, SIGTERM, SIGHUP: passed to every lab of the sweep. */
void bench_catch_signals(void);
/* Runs every run of b->runs, b->jobs at a time, in the sweep's order.
 * 0; 1 when a run could not be set up; 128+N when signal N stopped the
 * sweep.  The runs done (b->ndone) come first in b->runs either way. */
int bench_run_all(struct bench *b);

/* bench_collect.c (docs/lab.md, "Across hosts") */
/* --emit DIR: each run as DIR/STEM.ini, runs.txt, manifest.json and
 * sweep/ (the sweep and its base).  0, or 1 with a message. */
int bench_emit(struct bench *b, const char *dir);
/* --collect: loads the sweep from the DIR holding sweep/sweep.ini.  0, or
 * -1 with a message on stderr. */
int bench_collect_sweep(
    char **dirs, size_t ndirs, struct bench_sweep *sw, char *err, size_t len);
/* Every run's row from its summary among the DIRs (an error row, saying
 * so, for a run without one); 0. */
int bench_collect(struct bench *b, char **dirs, size_t ndirs);

/* bench_report.c: results.csv, the plots, summary.md and --json's object
 * for the runs done; 0, or -1 when a file could not be written. */
int bench_report(struct bench *b);

#endif
