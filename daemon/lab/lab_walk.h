/*
 * lab_walk: [lab] walk = on, the article's Figure 2 (model/walk.h) beside
 * the capture of the lb-client link: a table on the article's clock, where
 * Linux differs, figure2.png and summary.json's "walk" (lab_walk.c).
 * Called by lab_report.c in this order; each does nothing without walk.
 */
#ifndef SLUICE_LAB_WALK_H
#define SLUICE_LAB_WALK_H

#include <stdio.h>

#include "lab/lab_int.h"

/* Runs the walk and reads the kernel's side (after the captures are read
 * into r); r->walk holds both until lab_walk_free. */
void lab_walk_figures(const struct lab *lab, struct result *r);
/* figure2.dat, figure2.gp and, with gnuplot, figure2.png. */
void lab_walk_plot(const struct lab *lab, struct result *r);
/* ,"walk":{...} (or null) inside summary.json's object. */
void lab_walk_summary(FILE *f, const struct result *r);
/* The table and the differences, after the capture's verdict. */
void lab_walk_verdict(FILE *f, const struct lab *lab, const struct result *r);
void lab_walk_free(struct result *r);

#endif
