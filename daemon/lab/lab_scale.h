/*
 * lab_scale: [lab] scale = K (model/scale.h; docs/lab.md, "Scaled runs").
 * Before anything runs, the refusal of a K whose run could not show the
 * question's answer (the scenario parser calls it, so `sluice lab`,
 * `sluice bench` and `sluice plan` all refuse); after the run, the
 * question's prediction and the measured run mapped back, in the verdict
 * and summary.json's "scale".  Called by lab_report.c; each does nothing
 * when the scenario is not scaled.
 */
#ifndef SLUICE_LAB_SCALE_H
#define SLUICE_LAB_SCALE_H

#include <stddef.h>
#include <stdio.h>

#include "model/model.h"
#include "lab/lab.h"
#include "lab/lab_int.h"

/* 0 when the run of sc (its byte positions already divided) keeps the
 * question's answer as the model sees it; else -EINVAL with err "NAME:
 * [lab] scale: ...".  A proxy config that does not load is left to the
 * lab, which reports it. */
int lab_scale_check(
    const struct lab_scenario *sc, const char *name, char *err, size_t errlen);
/* The question's prediction and the mapping, from the run's model inputs
 * (after r's figures are read). */
void lab_scale_figures(
    const struct lab *lab, const struct model_in *run, struct result *r);
/* ,"scale":{...} (or null) inside summary.json's object. */
void lab_scale_summary(FILE *f, const struct result *r);
/* The question and the mapped run, after the model's verdict line. */
void lab_scale_verdict(FILE *f, const struct result *r);

#endif
