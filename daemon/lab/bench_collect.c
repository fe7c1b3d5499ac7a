/*
 * bench_collect: a sweep spread over machines by an engine that exists
 * (GNU parallel, a Slurm array; docs/lab.md, "Across hosts").
 *
 * `sluice bench SWEEP.ini --emit DIR` writes each run of the sweep as a
 * self-contained scenario, DIR/NNN-LABEL.ini (the names of a plain
 * bench's runs/ directories), with runs.txt (their names, one a line,
 * for `parallel ... :::: runs.txt`), manifest.json (the runs and their
 * axes' values) and sweep/ (the sweep and its base scenario, copied, so
 * that the collect needs nothing outside DIR).  `sluice lab FILE --json >
 * NNN-LABEL.json` runs one, on any host.
 *
 * `sluice bench --collect DIR... --out OUT` reads the sweep back from the
 * DIR holding sweep/, finds each run's summary among the DIRs
 * (NNN-LABEL.json, NNN-LABEL/summary.json or runs/NNN-LABEL/summary.json,
 * so a plain bench's OUT is a DIR too) and writes the report a plain
 * bench writes.  A summary is taken only when its scenario_file is the
 * run's own file (the first such among the DIRs); a run with none is an
 * `error` row saying why, never a missing row.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "lab/bench.h"
#include "lab/bench_int.h"
#include "lab/lab.h"

/* ---- --emit ------------------------------------------------------------ */

/* DIR must be new or empty: emitting over an earlier sweep would mix the
 * two's runs at collect time.  0, or -1 with a message. */
static int
emit_dir(const char *dir)
{
	DIR *d;
	struct dirent *e;
	bool empty = true;

	if (mkdir(dir, 0755) == 0)
		return 0;
	if (errno != EEXIST || (d = opendir(dir)) == NULL) {
		fprintf(stderr, "sluice bench: --emit %s: %s\n", dir,
		    strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = false;
	closedir(d);
	if (!empty) {
		fprintf(stderr,
		    "sluice bench: --emit %s: not empty (a sweep is emitted "
		    "into a new or empty directory)\n",
		    dir);
		return -1;
	}
	return 0;
}

static FILE *
emit_open(const char *dir, const char *name, char *path, size_t len)
{
	FILE *f;

	if ((size_t)snprintf(path, len, "%s/%s", dir, name) >= len) {
		fprintf(stderr, "sluice bench: %s/%s: %s\n", dir, name,
		    strerror(ENAMETOOLONG));
		return NULL;
	}
	if ((f = fopen(path, "we")) == NULL)
		fprintf(
		    stderr, "sluice bench: %s: %s\n", path, strerror(errno));
	return f;
}

static int
emit_close(FILE *f, const char *path)
{
	if (fclose(f) != 0) {
		fprintf(
		    stderr, "sluice bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* sweep/sweep.ini: the sweep as parsed, its base now sweep/base.ini. */
static int
emit_sweep(const struct bench *b, const char *dir)
{
	const struct bench_sweep *sw = &b->sw;
	char sub[PATH_MAX], path[PATH_MAX];
	FILE *f;

	snprintf(sub, sizeof(sub), "%s/sweep", dir);
	if (mkdir(sub, 0755) == -1) {
		fprintf(stderr, "sluice bench: %s: %s\n", sub, strerror(errno));
		return -1;
	}
	if ((f = emit_open(sub, "base.ini", path, sizeof(path))) == NULL)
		return -1;
	fputs(sw->base_text, f);
	if (emit_close(f, path) < 0 ||
	    (f = emit_open(sub, "sweep.ini", path, sizeof(path))) == NULL)
		return -1;
	fprintf(f,
	    "# sluice bench --emit: %s as it was parsed; its base, %s, is\n"
	    "# copied beside it.  sluice bench --collect reads both.\n\n"
	    "[bench]\nname = %s\nbase = base.ini\nrepeat = %" PRIu64
	    "\n\n[axes]\n",
	    sw->path, sw->base, sw->name, sw->repeat);
	for (int a = 0; a < BENCH_NAXES; a++) {
		const struct bench_axis *ax = &sw->axes[a];

		if (ax->nvalues == 0)
			continue;
		fprintf(f, "%s = ", bench_axis_name(a));
		for (size_t v = 0; v < ax->nvalues; v++)
			fprintf(f, "%s%s", v == 0 ? "" : bench_axis_sep(a),
			    ax->values[v]);
		fputc('\n', f);
	}
	return emit_close(f, path);
}

/* NNN-LABEL.ini: the run's scenario, with how to run it. */
static int
emit_run(const struct bench *b, const struct run *r, const char *dir)
{
	char path[PATH_MAX], name[PATH_MAX], label[400], *text;
	FILE *f;

	if ((text = bench_scenario_text(&b->sw, r->combo)) == NULL) {
		fprintf(stderr, "sluice bench: out of memory\n");
		return -1;
	}
	snprintf(name, sizeof(name), "%s.ini", r->stem);
	if ((f = emit_open(dir, name, path, sizeof(path))) == NULL) {
		free(text);
		return -1;
	}
	bench_combo_label(&b->sw, r->combo, label, sizeof(label), ' ');
	fprintf(f,
	    "# sluice bench --emit: sweep %s, run %zu of %zu (%s, repeat "
	    "%zu).\n"
	    "# Run it (root, any host): sluice lab %s.ini --json > %s.json\n"
	    "# then sluice bench --collect DIR... puts the runs together.\n\n",
	    b->sw.name, r->index + 1, b->nruns, label, r->rep + 1, r->stem,
	    r->stem);
	fputs(text, f);
	free(text);
	return emit_close(f, path);
}

/* manifest.json: the sweep and each run's files and axes' values. */
static int
emit_manifest(const struct bench *b, const char *dir)
{
	const struct bench_sweep *sw = &b->sw;
	char path[PATH_MAX], name[PATH_MAX];
	FILE *f;

	if ((f = emit_open(dir, "manifest.json", path, sizeof(path))) == NULL)
		return -1;
	fprintf(f, "{\"sweep\":");
	json_string(f, sw->name);
	fprintf(f, ",\"sweep_file\":");
	json_string(f, sw->path);
	fprintf(f, ",\"base\":");
	json_string(f, sw->base);
	fprintf(f, ",\"combinations\":%zu,\"repeat\":%" PRIu64 ",\"runs\":[",
	    sw->npoints, sw->repeat);
	for (size_t k = 0; k < b->nruns; k++) {
		const struct run *r = &b->runs[k];

		fprintf(f,
		    "%s\n{\"run\":%zu,\"combination\":%zu,\"repeat\":%zu",
		    k == 0 ? "" : ",", r->index + 1, r->combo + 1, r->rep + 1);
		snprintf(name, sizeof(name), "%s.ini", r->stem);
		fprintf(f, ",\"scenario\":");
		json_string(f, name);
		snprintf(name, sizeof(name), "%s.json", r->stem);
		fprintf(f, ",\"summary\":");
		json_string(f, name);
		fprintf(f, ",\"axes\":{");
		for (int a = 0, n = 0; a < BENCH_NAXES; a++) {
			if (sw->axes[a].nvalues == 0)
				continue;
			fprintf(f, "%s\"%s\":", n++ ? "," : "",
			    bench_axis_column(a));
			json_string(f, sw->points[r->combo].values[a]);
		}
		fprintf(f, "}}");
	}
	fprintf(f, "\n]}\n");
	return emit_close(f, path);
}

/* The one thing a scenario names by path: an nginx or HAProxy config
 * file ([lb] config), opened where the lab runs.  Said, not refused. */
static void
emit_lb_config_note(const struct bench *b)
{
	struct lab_scenario *sc = malloc(sizeof(*sc));
	char err[LAB_ERR_MAX];

	if (sc != NULL &&
	    lab_scenario_parse(
	        b->sw.base_text, b->sw.base, sc, err, sizeof(err)) == 0 &&
	    sc->lb_config[0] != '\0')
		fprintf(stderr,
		    "sluice bench: note: the base scenario's [lb] config names "
		    "%s: every host that runs the scenarios needs that file "
		    "at that path%s\n",
		    sc->lb_config,
		    sc->lb_config[0] == '/' ? ""
		                            : " (relative to where sluice lab "
		                              "runs)");
	free(sc);
}

int
bench_emit(struct bench *b, const char *dir)
{
	char path[PATH_MAX];
	FILE *f;

	if (emit_dir(dir) < 0 || emit_sweep(b, dir) < 0)
		return 1;
	emit_lb_config_note(b);
	for (size_t k = 0; k < b->nruns; k++)
		if (emit_run(b, &b->runs[k], dir) < 0)
			return 1;
	if ((f = emit_open(dir, "runs.txt", path, sizeof(path))) == NULL)
		return 1;
	for (size_t k = 0; k < b->nruns; k++)
		fprintf(f, "%s.ini\n", b->runs[k].stem);
	if (emit_close(f, path) < 0 || emit_manifest(b, dir) < 0)
		return 1;
	fprintf(stderr,
	    "sluice bench: %zu scenario%s in %s (runs.txt lists them).  Run\n"
	    "each as root on any host: sluice lab NNN-LABEL.ini --json > "
	    "NNN-LABEL.json\n"
	    "(docs/lab.md, \"Across hosts\": GNU parallel, Slurm), then\n"
	    "sluice bench --collect %s [more DIRs] --out OUT\n",
	    b->nruns, b->nruns == 1 ? "" : "s", dir, dir);
	return 0;
}

/* ---- --collect --------------------------------------------------------- */

static bool
is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The DIR among dirs holding sweep/sweep.ini, into path; -1 with a
 * message when none does, or two hold different sweeps. */
static int
find_sweep(char **dirs, size_t ndirs, char *path, size_t len)
{
	char p[PATH_MAX], *text = NULL, *other;
	int rc = -1;

	for (size_t i = 0; i < ndirs; i++) {
		snprintf(p, sizeof(p), "%s/sweep/sweep.ini", dirs[i]);
		if (!is_file(p))
			continue;
		if (text == NULL) {
			snprintf(path, len, "%s", p);
			text = bench_read_text(p);
			rc = 0;
			continue;
		}
		other = bench_read_text(p);
		if (other == NULL || text == NULL || strcmp(other, text) != 0) {
			fprintf(stderr,
			    "sluice bench: --collect: %s and %s are two "
			    "sweeps; collect one at a time\n",
			    path, p);
			rc = -1;
		}
		free(other);
		if (rc < 0)
			break;
	}
	free(text);
	if (rc < 0 && text == NULL)
		fprintf(stderr,
		    "sluice bench: --collect: no DIR holds sweep/sweep.ini "
		    "(give the directory sluice bench --emit wrote)\n");
	return rc;
}

/* The places a run's summary may be in one DIR: what the recipe's
 * redirection writes, a lab's --out, a plain bench's OUT. */
static bool
find_summary(const char *dir, const char *stem, char *path, size_t len)
{
	static const char *const forms[] = {
	    "%s/%s.json", "%s/%s/summary.json", "%s/runs/%s/summary.json"};

	for (size_t i = 0; i < sizeof(forms) / sizeof(*forms); i++) {
		snprintf(path, len, forms[i], dir, stem);
		if (is_file(path))
			return true;
	}
	return false;
}

/* Whether summary.json's scenario_file is this run's scenario: STEM.ini
 * (emitted) or STEM/scenario.ini (a plain bench's run). */
static bool
summary_is_of(const char *json, const char *stem, char *file, size_t len)
{
	char want[PATH_MAX];
	size_t n, w;

	json_str(json, "scenario_file", file, len);
	n = strlen(file);
	snprintf(want, sizeof(want), "%s.ini", stem);
	w = strlen(want);
	if (n >= w && strcmp(file + n - w, want) == 0 &&
	    (n == w || file[n - w - 1] == '/'))
		return true;
	snprintf(want, sizeof(want), "%s/scenario.ini", stem);
	w = strlen(want);
	return n >= w && strcmp(file + n - w, want) == 0 &&
	    (n == w || file[n - w - 1] == '/');
}

/* The reason a run found no summary: STEM.stderr's last line (the
 * recipe keeps it) when there is one. */
static void
error_reason(struct run *r, const char *json, const char *why)
{
	char path[PATH_MAX];
	size_t n = strlen(json);

	/* STEM.json -> STEM.stderr; a lab's OUT/summary.json -> OUT's
	 * lab.stderr (a plain bench's run). */
	if (n > 13 && strcmp(json + n - 13, "/summary.json") == 0)
		snprintf(
		    path, sizeof(path), "%.*s/lab.stderr", (int)(n - 13), json);
	else
		snprintf(path, sizeof(path), "%.*s.stderr",
		    (int)(n > 5 ? n - 5 : n), json);
	if (!bench_last_line(path, r->error, sizeof(r->error)))
		snprintf(r->error, sizeof(r->error), "%s", why);
}

/* Fills r from the summary at path: true when it is this run's and has an
 * outcome; else false with r->error saying why. */
static bool
take_summary(struct run *r, const char *path)
{
	char file[PATH_MAX], *json;
	bool ok;

	if (strlen(path) < sizeof(r->dir))
		memcpy(r->dir, path, strlen(path) + 1);
	if ((json = bench_read_text(path)) == NULL) {
		snprintf(r->error, sizeof(r->error), "%.120s: %s", path,
		    strerror(errno));
		return false;
	}
	if (strstr(json, "\"outcome\":") == NULL) {
		free(json);
		error_reason(r, path,
		    "the lab wrote no summary (its output is not one)");
		return false;
	}
	if (!summary_is_of(json, r->stem, file, sizeof(file))) {
		free(json);
		snprintf(r->error, sizeof(r->error),
		    "%.50s is the summary of '%.50s', not of %.50s.ini", path,
		    file, r->stem);
		return false;
	}
	ok = bench_parse_summary(r, json);
	free(json);
	if (ok)
		return true;
	snprintf(r->outcome, sizeof(r->outcome), "error");
	error_reason(r, path, "the summary has no outcome");
	return false;
}

/* One run: the first of its summaries among the DIRs that is its own
 * (a second is noted); else an error row with the first one's reason. */
static void
collect_run(struct bench *b, struct run *r, char **dirs, size_t ndirs)
{
	char path[PATH_MAX], error[sizeof(r->error)] = "", dir[sizeof(r->dir)];
	bool taken = false;

	r->collected = true;
	r->done = true;
	for (size_t i = 0; i < ndirs; i++) {
		if (!find_summary(dirs[i], r->stem, path, sizeof(path)))
			continue;
		if (taken) {
			bench_note(b,
			    "run %zu: %s also has a summary; the "
			    "first found (%s) is used",
			    r->index + 1, path, r->dir);
			continue;
		}
		r->predicted_unsent = -1;
		r->error[0] = '\0';
		if ((taken = take_summary(r, path)))
			continue;
		snprintf(r->outcome, sizeof(r->outcome), "error");
		if (error[0] == '\0') { /* the first reason is reported */
			memcpy(error, r->error, sizeof(error));
			memcpy(dir, r->dir, sizeof(dir));
		}
	}
	if (taken)
		return;
	snprintf(r->outcome, sizeof(r->outcome), "error");
	r->predicted_unsent = -1;
	if (error[0] != '\0') {
		memcpy(r->error, error, sizeof(error));
		memcpy(r->dir, dir, sizeof(dir));
		return;
	}
	snprintf(r->dir, sizeof(r->dir), "%s", dirs[0]);
	snprintf(r->error, sizeof(r->error),
	    "not collected: no %s.json among the directories", r->stem);
}

int
bench_collect(struct bench *b, char **dirs, size_t ndirs)
{
	size_t missing = 0;

	for (size_t k = 0; k < b->nruns; k++) {
		collect_run(b, &b->runs[k], dirs, ndirs);
		if (strncmp(b->runs[k].error, "not collected", 13) == 0)
			missing++;
	}
	b->ndone = b->nruns;
	bench_note(b,
	    "runs collected with sluice bench --collect from %.100s%s "
	    "(%zu director%s)",
	    dirs[0], ndirs > 1 ? " and more" : "", ndirs,
	    ndirs == 1 ? "y" : "ies");
	if (missing != 0)
		bench_note(b,
		    "%zu of %zu runs not collected (error rows): no summary "
		    "among the directories given",
		    missing, b->nruns);
	fprintf(stderr, "sluice bench: collected %zu of %zu runs\n",
	    b->nruns - missing, b->nruns);
	return 0;
}

int
bench_collect_sweep(
    char **dirs, size_t ndirs, struct bench_sweep *sw, char *err, size_t len)
{
	char path[PATH_MAX], base[PATH_MAX] = "", *manifest;

	memset(sw, 0, sizeof(*sw));
	if (find_sweep(dirs, ndirs, path, sizeof(path)) < 0)
		return -1;
	if (bench_sweep_load(path, sw, err, len) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	/* summary.md names the base the sweep was emitted from. */
	snprintf(path + strlen(path) - strlen("sweep/sweep.ini"),
	    sizeof(path) - (strlen(path) - strlen("sweep/sweep.ini")),
	    "manifest.json");
	if ((manifest = bench_read_text(path)) != NULL) {
		json_str(manifest, "base", base, sizeof(base));
		if (base[0] != '\0')
			snprintf(sw->base, sizeof(sw->base), "%s", base);
		free(manifest);
	}
	return 0;
}
