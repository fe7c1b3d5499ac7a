/*
 * scale: a full-size question asked in a scaled run ([lab] scale = K,
 * `sluice plan --scale K`; docs/model.md, "Scaled runs").
 *
 * The question moves S body bytes; the run moves S/K: every byte position
 * (the body, a truncation, a stall's position) is divided by K, and rates,
 * buffers, watermarks, spill limits, kernel queues and timers stay as
 * written.  Each zero window then lasts what it lasts in the question
 * (gap / r: the bytes the client drains before the proxy reads again, at
 * the client's rate), so a give-up rule judged per zero window sees the same
 * windows; only their number falls.  Dividing the transfer keeps every
 * buffer real; scaling rates and sizes together would keep the windows too
 * but ask for buffers K times larger, which kernel socket buffers cannot
 * follow.
 *
 * This module says which K keep the model's answer and maps a run's
 * measured figures back to the question.  Pure: no I/O.
 */
#ifndef SLUICE_SCALE_H
#define SLUICE_SCALE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

#define SCALE_MAX 10000 /* [lab] scale and --scale: at most this */

/*
 * The question, the run and the mapping between them.  scale_predict fills
 * everything up to the offsets; scale_map_measured the mapped figures.
 */
struct scale_map {
	double k;
	uint64_t question_body, run_body;
	double rate;                    /* the client's, bytes/s */
	struct model_out question, run; /* the model's predictions */
	/* What the mapping adds to a measured figure: question − run as the
	 * model predicts them (the closed forms of docs/model.md when the
	 * run's outcome is not the predicted one). */
	int64_t d_unsent;
	double d_finish_s;
	int64_t d_zero_windows;
	/* The measured run mapped back (scale_map_measured). */
	int model_agrees; /* the run's outcome is the predicted one */
	int complete;
	uint64_t unsent;
	double finish_s;
	double longest_zero_window_s; /* the same as the run's */
	uint64_t zero_windows;
	uint64_t run_zero_windows; /* as measured */
};

/* A byte position of the run: v / k rounded down, at least 1 when v is not
 * 0 (a stall or truncation stays one).  The lab and plan both use it, so
 * the run's inputs are the same everywhere. */
uint64_t scale_bytes(uint64_t v, double k);
/* The run's model inputs: q's with size and stall_at divided by k. */
void scale_run_in(const struct model_in *q, double k, struct model_in *run);
/* Predicts the question q and its run at k, and the offsets.  0, or
 * -EINVAL when the model refuses q. */
int scale_predict(const struct model_in *q, double k, struct scale_map *m);
/*
 * 0 when a run at k keeps the question's answer: the same outcome, a
 * give-up in both or neither, and zero windows in the run when the
 * question has any.  Else -EINVAL with msg, to follow "[lab] scale: ":
 * "K leaves a B-byte body, which the path holds without a zero window
 * (it holds H); at most scale = K_max", or why the answer changes.
 */
int scale_check(const struct model_in *q, double k, char *msg, size_t len);
/* The run's measured figures mapped back: the outcome and the longest
 * zero window as measured, the unsent bytes, the client's finish and the
 * zero windows plus the offsets. */
void scale_map_measured(struct scale_map *m, int complete, uint64_t unsent,
    double finish_s, double longest_zero_window_s, uint64_t zero_windows);

#endif
