/*
 * plan: `sluice plan`, the model of the incident (model.h, docs/model.md)
 * for operators before a deployment: from body size, rates, the proxy's
 * watermarks or spill limit, kernel buffers and the origin's give-up rule,
 * or from a lab scenario file, it prints whether a download survives, how
 * many bytes never arrive, and the smallest change that saves it.
 */
#ifndef SLUICE_PLAN_H
#define SLUICE_PLAN_H

#include <stdio.h>

#include "proxy/config.h"
#include "model/model.h"
#include "lab/lab.h"

#define PLAN_EXIT_OK    0 /* a prediction was printed, complete or not */
#define PLAN_EXIT_USAGE 2

/*
 * The model's inputs for a scenario, as `sluice lab` runs it in mode (enum
 * lab_mode): the links' goodput (tbf counts frames), the proxy config's
 * watermarks, spill limit, block size, rcvbuf and client sndbuf, resume,
 * the origin's send buffer and give-up rule.  in must hold
 * model_defaults() or more; the lab and `sluice plan SCENARIO` share it.
 */
void plan_scenario_model(const struct lab_scenario *sc,
    const struct config *cfg, int mode, struct model_in *in);

/* `sluice plan ...`: argv after the verb ("plan" is argv[0]).  Returns
 * the exit code. */
int plan_main(int argc, char **argv);
void plan_usage(FILE *out);
/* `sluice plan --walk ...` (plan_walk.c): the article's Figure 2 step by
 * step; argv as for plan_main.  Returns the exit code. */
int plan_walk_main(int argc, char **argv);
void plan_walk_usage(FILE *out);

#endif
