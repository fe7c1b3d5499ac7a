/*
 * lab_scale: see lab_scale.h.  The model's inputs come from the scenario
 * and its proxy config exactly as for the run's own prediction
 * (plan_scenario_model); the question's differ only in the byte positions
 * the file states (lab_scenario_question).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "proxy/config.h"
#include "model/model.h"
#include "model/plan.h"
#include "model/scale.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/lab_scale.h"

/* The model's inputs for scenario sc, its proxy config loaded as the
 * proxy would.  0, or -EINVAL when the config does not load. */
static int
model_of(const struct lab_scenario *sc, struct model_in *in)
{
	char err[LAB_ERR_MAX], *text = NULL;
	struct config *cfg;
	size_t len = 0;
	FILE *f;

	if ((f = open_memstream(&text, &len)) == NULL)
		return -ENOMEM;
	lab_proxy_config(
	    f, sc, "127.0.0.1:0", "127.0.0.1:9", "127.0.0.1:0", "");
	fclose(f);
	cfg = config_load_string(text, "proxy.ini", err, sizeof(err));
	free(text);
	if (cfg == NULL)
		return -EINVAL;
	model_defaults(in);
	plan_scenario_model(sc, cfg, sc->mode, in);
	config_free(cfg);
	return 0;
}

int
lab_scale_check(
    const struct lab_scenario *sc, const char *name, char *err, size_t errlen)
{
	struct lab_scenario *q = malloc(sizeof(*q));
	struct model_in in;
	char msg[256];
	int rc = 0;

	if (q == NULL) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	lab_scenario_question(sc, q);
	if (model_of(q, &in) == 0 &&
	    scale_check(&in, sc->scale, msg, sizeof(msg)) < 0) {
		snprintf(err, errlen, "%s: [lab] scale: %s", name, msg);
		rc = -EINVAL;
	}
	free(q);
	return rc;
}

void
lab_scale_figures(
    const struct lab *lab, const struct model_in *run, struct result *r)
{
	const struct lab_scenario *sc = &lab->sc;
	struct model_in q = *run;

	if (sc->scale == 1)
		return;
	q.size = sc->question.body;
	if (run->stall_s > 0)
		q.stall_at = sc->question.fault_after;
	if (scale_predict(&q, sc->scale, &r->scale) < 0)
		return;
	scale_map_measured(&r->scale, r->complete, r->unsent, r->seconds,
	    lab->peak.o_zero_longest, lab->peak.o_zero_count);
	r->have_scale = true;
}

static const char *
outcome(int complete)
{
	return complete ? "complete" : "truncated";
}

/* ,"name":{...}: the measured run's figures, or the same mapped back. */
static void
measured(FILE *f, const char *name, int complete, uint64_t unsent,
    double finish_s, double longest_s, uint64_t zero_windows)
{
	fprintf(f,
	    ",\"%s\":{\"outcome\":\"%s\",\"unsent_bytes\":%" PRIu64
	    ",\"client_finish_s\":%.3f,\"longest_zero_window_s\":%.3f"
	    ",\"zero_windows\":%" PRIu64 "}",
	    name, outcome(complete), unsent, finish_s, longest_s, zero_windows);
}

void
lab_scale_summary(FILE *f, const struct result *r)
{
	const struct scale_map *m = &r->scale;
	const struct model_out *q = &m->question;

	fprintf(f, ",\"scale\":");
	if (!r->have_scale) {
		fputs("null", f);
		return;
	}
	fprintf(f,
	    "{\"factor\":%g,\"question_body_bytes\":%" PRIu64
	    ",\"run_body_bytes\":%" PRIu64 ",\"question\":{\"outcome\":\"%s\""
	    ",\"unsent_bytes\":%" PRIu64 ",\"client_finish_s\":%.3f"
	    ",\"zero_windows\":%u",
	    m->k, m->question_body, m->run_body, outcome(q->complete),
	    q->unsent_bytes, q->client_finish_s, q->stalls);
	json_num_or_null(
	    f, "longest_zero_window_s", q->stalls > 0 ? q->stall_s : -1);
	json_num_or_null(f, "giveup_at_s", q->giveup_at_s);
	fprintf(f,
	    "},\"offsets\":{\"unsent_bytes\":%" PRId64
	    ",\"client_finish_s\":%.3f,\"zero_windows\":%" PRId64
	    "},\"model_agrees\":%s",
	    m->d_unsent, m->d_finish_s, m->d_zero_windows,
	    m->model_agrees ? "true" : "false");
	measured(f, "run", r->complete, r->unsent, r->seconds,
	    m->longest_zero_window_s, m->run_zero_windows);
	measured(f, "mapped", m->complete, m->unsent, m->finish_s,
	    m->longest_zero_window_s, m->zero_windows);
	fputc('}', f);
}

void
lab_scale_verdict(FILE *f, const struct result *r)
{
	const struct scale_map *m = &r->scale;
	const struct model_out *q = &m->question;
	char a[32], b[32], c[32], d[32];

	if (!r->have_scale)
		return;
	fprintf(f,
	    "  Scaled run ([lab] scale = %g): the question's %s (%" PRIu64
	    " bytes) ran as %s (%" PRIu64 " bytes); rates, buffers and "
	    "timers as written, so each zero window lasts what it would in "
	    "the question.\n",
	    m->k, model_fmt_bytes((double)m->question_body, a, sizeof(a)),
	    m->question_body,
	    model_fmt_bytes((double)m->run_body, b, sizeof(b)), m->run_body);
	fprintf(f,
	    "  Model, the question: %s, %" PRIu64 " bytes unsent, the client "
	    "done at %s; %u zero window%s of %s",
	    outcome(q->complete), q->unsent_bytes,
	    model_fmt_secs(q->client_finish_s, a, sizeof(a)), q->stalls,
	    q->stalls == 1 ? "" : "s",
	    model_fmt_secs(q->stalls > 0 ? q->stall_s : 0, b, sizeof(b)));
	if (q->giveup_at_s >= 0)
		fprintf(f, "; the origin gives up at %s",
		    model_fmt_secs(q->giveup_at_s, c, sizeof(c)));
	fprintf(f, ".\n");
	fprintf(f,
	    "  Measured, mapped back: %s; %" PRIu64 " bytes unsent (the "
	    "run's %" PRIu64 " %+" PRId64 "); the client done at %s (the "
	    "run's %.1f s %+.1f s); the longest zero window %.1f s (as "
	    "measured); about %" PRIu64 " zero window%s (the run's %" PRIu64
	    " %+" PRId64 ").\n",
	    outcome(m->complete), m->unsent, r->unsent, m->d_unsent,
	    model_fmt_secs(m->finish_s, d, sizeof(d)), r->seconds,
	    m->d_finish_s, m->longest_zero_window_s, m->zero_windows,
	    m->zero_windows == 1 ? "" : "s", m->run_zero_windows,
	    m->d_zero_windows);
	if (!m->model_agrees)
		fprintf(f,
		    "  The run's outcome is not the model's (%s): mapped by "
		    "the closed forms of docs/model.md instead of the model's "
		    "difference.\n",
		    outcome(m->run.complete));
}
