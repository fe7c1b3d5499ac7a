/*
 * scale: see scale.h; the derivation is in docs/model.md, "Scaled runs".
 *
 * Why the offsets are the model's own difference: with a per-window rule
 * that fires in the first zero window the client gets the same bytes in the
 * question and the run (what the path held: r·t0 + cap), so the question
 * misses S − S/K more and ends when the run ends; a complete download ends
 * (S − S/K) / r later and sees about (S − S/K) / Δp more zero windows.
 * Rules judged late (an orphan's, from its last write on) or a stall at a
 * divided position shift these, and the model's difference follows them.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "model/scale.h"

uint64_t
scale_bytes(uint64_t v, double k)
{
	double d;

	if (v == 0 || !(k > 1))
		return v;
	d = floor((double)v / k);
	return d < 1 ? 1 : (uint64_t)d;
}

void
scale_run_in(const struct model_in *q, double k, struct model_in *run)
{
	*run = *q;
	run->size = scale_bytes(q->size, k);
	run->stall_at = scale_bytes(q->stall_at, k);
}

int
scale_predict(const struct model_in *q, double k, struct scale_map *m)
{
	struct model_in run;

	memset(m, 0, sizeof(*m));
	m->k = k;
	scale_run_in(q, k, &run);
	m->question_body = q->size;
	m->run_body = run.size;
	m->rate = fmin(q->client_bps, q->origin_bps) / 8;
	if (model_predict(q, &m->question) < 0 ||
	    model_predict(&run, &m->run) < 0)
		return -EINVAL;
	m->d_unsent =
	    (int64_t)m->question.unsent_bytes - (int64_t)m->run.unsent_bytes;
	m->d_finish_s = m->question.client_finish_s - m->run.client_finish_s;
	m->d_zero_windows =
	    (int64_t)m->question.stalls - (int64_t)m->run.stalls;
	return 0;
}

/* What changes between question and run, or NULL; *no_window when the run
 * is short enough to see no zero window of the cycle at all. */
static const char *
changed(const struct scale_map *m, bool *no_window)
{
	const struct model_out *q = &m->question, *r = &m->run;

	*no_window = false;
	if (q->stalls > 0 && r->stalls == 0) {
		*no_window = r->close_bytes >= 0 &&
		    (double)m->run_body <= r->close_bytes;
		return "sees no zero window";
	}
	if (q->complete != r->complete)
		return r->complete ? "completes" : "is truncated";
	if ((q->giveup_at_s >= 0) != (r->giveup_at_s >= 0))
		return r->giveup_at_s >= 0 ? "sees the origin give up"
		                           : "never sees the origin give up";
	return NULL;
}

static bool
keeps_answer(const struct model_in *q, double k)
{
	struct scale_map m;
	bool no_window;

	return scale_predict(q, k, &m) == 0 && changed(&m, &no_window) == NULL;
}

/* The largest whole K at most k (and at least 1) whose run keeps q's
 * answer; scanned down, since the answer need not change monotonically. */
static uint64_t
largest_ok(const struct model_in *q, double k)
{
	uint64_t j = (uint64_t)floor(k);

	for (; j > 1; j--)
		if (keeps_answer(q, (double)j))
			return j;
	return 1;
}

int
scale_check(const struct model_in *q, double k, char *msg, size_t len)
{
	struct scale_map m;
	const char *what;
	bool no_window;

	if (!(k > 1) || scale_predict(q, k, &m) < 0 ||
	    (what = changed(&m, &no_window)) == NULL)
		return 0;
	if (no_window)
		snprintf(msg, len,
		    "%g leaves a %" PRIu64 "-byte body, which the path holds "
		    "without a zero window (it holds %.0f); at most scale = "
		    "%" PRIu64,
		    k, m.run_body, m.run.close_bytes, largest_ok(q, k));
	else
		snprintf(msg, len,
		    "%g changes the model's answer: the question is %s, the "
		    "%" PRIu64 "-byte run %s; at most scale = %" PRIu64,
		    k, m.question.complete ? "complete" : "truncated",
		    m.run_body, what, largest_ok(q, k));
	return -EINVAL;
}

void
scale_map_measured(struct scale_map *m, int complete, uint64_t unsent,
    double finish_s, double longest_zero_window_s, uint64_t zero_windows)
{
	double extra = (double)(m->question_body - m->run_body), u;

	m->model_agrees = !complete == !m->run.complete;
	if (!m->model_agrees) { /* the closed forms, by the measured outcome */
		m->d_unsent = complete ? 0 : (int64_t)extra;
		m->d_finish_s = complete ? extra / m->rate : 0;
		m->d_zero_windows = 0;
	}
	m->complete = complete;
	u = (double)unsent + (double)m->d_unsent;
	m->unsent = complete               ? 0
	    : u < 0                        ? 0
	    : u > (double)m->question_body ? m->question_body
	                                   : (uint64_t)u;
	m->finish_s = finish_s + m->d_finish_s;
	m->longest_zero_window_s = longest_zero_window_s;
	m->run_zero_windows = zero_windows;
	m->zero_windows = (int64_t)zero_windows + m->d_zero_windows < 0
	    ? 0
	    : (uint64_t)((int64_t)zero_windows + m->d_zero_windows);
}
