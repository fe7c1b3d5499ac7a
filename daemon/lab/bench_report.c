/*
 * bench_report: what `sluice bench` writes once its runs are done
 * (bench.h): results.csv (one row per run, bench_run_fields), summary.md
 * (per pair of varying axes: completion, median finish time, peak memory;
 * the cheapest setting that completes every run), the four gnuplot plots
 * and --json's object.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "lab/bench.h"
#include "lab/bench_int.h"
#include "lab/lab_int.h"
#include "lab/proc.h"

/* A CSV field: quoted when it holds a comma, a quote or a newline. */
static void
csv_field(FILE *f, const char *s)
{
	if (strpbrk(s, ",\"\n") == NULL) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* results.csv: one row per run, each column named with its unit. */
static int
write_csv(const struct bench *b, const char *path)
{
	struct field f[NFIELDS];
	FILE *out = fopen(path, "we");

	if (out == NULL)
		return -errno;
	for (size_t k = 0; k < b->ndone; k++) {
		bench_run_fields(b, &b->runs[k], f);
		if (k == 0)
			for (size_t i = 0; i < NFIELDS; i++)
				fprintf(out, "%s%s", f[i].name,
				    i + 1 < NFIELDS ? "," : "\n");
		for (size_t i = 0; i < NFIELDS; i++) {
			csv_field(out, f[i].value);
			fputc(i + 1 < NFIELDS ? ',' : '\n', out);
		}
	}
	return fclose(out) == 0 ? 0 : -EIO;
}

/* --json: the sweep, its runs (results.csv's fields) and the paths. */
static void
print_json(const struct bench *b, char plots[][PATH_MAX], size_t nplots)
{
	struct field f[NFIELDS];

	printf("{\"sweep\":");
	json_string(stdout, b->sw.name);
	printf(",\"file\":");
	json_string(stdout, b->sw.path);
	printf(",\"base\":");
	json_string(stdout, b->sw.base);
	printf(",\"repeat\":%" PRIu64 ",\"out\":", b->sw.repeat);
	json_string(stdout, b->out);
	printf(",\"results_csv\":\"%s/results.csv\",\"summary_md\":\"%s/"
	       "summary.md\",\"plots\":[",
	    b->out, b->out);
	for (size_t i = 0; i < nplots; i++) {
		printf("%s", i ? "," : "");
		json_string(stdout, plots[i]);
	}
	printf("],\"runs\":[");
	for (size_t k = 0; k < b->ndone; k++) {
		bench_run_fields(b, &b->runs[k], f);
		printf("%s{", k ? "," : "");
		for (size_t i = 0; i < NFIELDS; i++) {
			printf("%s\"%s\":", i ? "," : "", f[i].name);
			if (f[i].number && f[i].value[0] != '\0')
				fputs(f[i].value, stdout);
			else if (f[i].value[0] == '\0' && i > 2 + BENCH_NAXES)
				fputs("null", stdout);
			else
				json_string(stdout, f[i].value);
		}
		printf("}");
	}
	printf("]}\n");
}

/* ---- summary.md ------------------------------------------------------- */

/* Figures of a group of runs (runs of the combinations a filter keeps). */
struct stats {
	size_t runs, complete, errors;
	double fin_med, fin_min, fin_max;   /* complete runs, s; -1: none */
	double mem_med, spool_med, rss_med; /* MiB, runs that measured */
};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, size_t n)
{
	if (n == 0)
		return -1;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The proxy's peak held bytes: the timeline's or its access log's. */
static uint64_t
held(const struct run *r)
{
	return r->mem > r->proxy_mem ? r->mem : r->proxy_mem;
}

/* Whether run r's combination has value index va on axis a (and vb on
 * b); a < 0 keeps every run. */
static bool
in_group(const struct bench *b, const struct run *r, int a, size_t va, int bx,
    size_t vb)
{
	return (a < 0 || bench_value_index(&b->sw, r->combo, a) == va) &&
	    (bx < 0 || bench_value_index(&b->sw, r->combo, bx) == vb);
}

static void
group_stats(const struct bench *b, int a, size_t va, int bx, size_t vb,
    struct stats *st)
{
	double *fin = calloc(b->ndone + 1, sizeof(double));
	double *mem = calloc(b->ndone + 1, sizeof(double));
	double *sp = calloc(b->ndone + 1, sizeof(double));
	double *rss = calloc(b->ndone + 1, sizeof(double));
	size_t nf = 0, nm = 0;

	memset(st, 0, sizeof(*st));
	for (size_t k = 0; fin && mem && sp && rss && k < b->ndone; k++) {
		const struct run *r = &b->runs[k];

		if (!in_group(b, r, a, va, bx, vb))
			continue;
		st->runs++;
		if (strcmp(r->outcome, "error") == 0) {
			st->errors++;
			continue;
		}
		if (strcmp(r->outcome, "complete") == 0) {
			st->complete++;
			fin[nf++] = r->finish_s;
		}
		mem[nm] = (double)held(r) / MIB;
		sp[nm] = (double)r->spool / MIB;
		rss[nm++] = (double)r->rss / MIB;
	}
	st->fin_med = median(fin, nf);
	st->fin_min = nf ? fin[0] : -1;
	st->fin_max = nf ? fin[nf - 1] : -1;
	st->mem_med = median(mem, nm);
	st->spool_med = median(sp, nm);
	st->rss_med = median(rss, nm);
	free(fin);
	free(mem);
	free(sp);
	free(rss);
}

/* "26.3" or "26.3 (25.9–27.0)" with repeats, "–" when none completed. */
static void
md_stats_cells(FILE *f, const struct bench *b, const struct stats *st)
{
	fprintf(f, " %zu/%zu%s |", st->complete, st->runs,
	    st->errors ? " (errors)" : "");
	if (st->fin_med < 0)
		fprintf(f, " – |");
	else if (b->sw.repeat > 1 && st->fin_max > st->fin_min)
		fprintf(f, " %.1f (%.1f–%.1f) |", st->fin_med, st->fin_min,
		    st->fin_max);
	else
		fprintf(f, " %.1f |", st->fin_med);
	if (st->mem_med < 0)
		fprintf(f, " – | – | – |\n");
	else
		fprintf(f, " %.2f | %.2f | %.1f |\n", st->mem_med,
		    st->spool_med, st->rss_med);
}

static const char md_cols[] =
    " complete | finish s (median%s) | peak held MiB | peak spool MiB | "
    "peak RSS MiB |\n";

/* The table of one axis, or of a pair of axes (bx >= 0). */
static void
md_table(FILE *f, const struct bench *b, int a, int bx)
{
	const struct bench_sweep *sw = &b->sw;
	const char *mm = sw->repeat > 1 ? ", min–max" : "";
	size_t nb = bx >= 0 ? sw->axes[bx].nvalues : 1;
	struct stats st;

	if (bx >= 0)
		fprintf(f, "\n## %s × %s\n\n| %s | %s |", bench_axis_name(a),
		    bench_axis_name(bx), bench_axis_name(a),
		    bench_axis_name(bx));
	else
		fprintf(f, "\n## %s\n\n| %s |", bench_axis_name(a),
		    bench_axis_name(a));
	fprintf(f, md_cols, mm);
	fprintf(f, "|---|%s---|---|---|---|---|\n", bx >= 0 ? "---|" : "");
	for (size_t i = 0; i < sw->axes[a].nvalues; i++)
		for (size_t j = 0; j < nb; j++) {
			group_stats(b, a, i, bx, j, &st);
			fprintf(f, "| %s |", sw->axes[a].values[i]);
			if (bx >= 0)
				fprintf(f, " %s |", sw->axes[bx].values[j]);
			md_stats_cells(f, b, &st);
		}
}

/* The one row of a sweep that varies nothing. */
static void
md_all(FILE *f, const struct bench *b)
{
	struct stats st;

	group_stats(b, -1, 0, -1, 0, &st);
	fprintf(f, "\n## All runs\n\n| runs |");
	fprintf(f, md_cols, b->sw.repeat > 1 ? ", min–max" : "");
	fprintf(f, "|---|---|---|---|---|---|\n| all |");
	md_stats_cells(f, b, &st);
}

/* The combination whose every run completed with the fewest bytes held
 * (memory + spool, median over its repeats); SIZE_MAX when none. */
static size_t
cheapest(const struct bench *b, double *cost)
{
	size_t best = SIZE_MAX;
	double *v = calloc(b->sw.repeat + 1, sizeof(double));

	for (size_t i = 0; v != NULL && i < b->sw.npoints; i++) {
		size_t n = 0, ok = 0;
		double c;

		for (size_t k = 0; k < b->ndone; k++) {
			const struct run *r = &b->runs[k];

			if (r->combo != i)
				continue;
			ok += strcmp(r->outcome, "complete") == 0;
			v[n++] = (double)(held(r) + r->spool);
		}
		if (n == 0 || ok != n || n != b->sw.repeat)
			continue;
		c = median(v, n);
		if (best == SIZE_MAX || c < *cost) {
			best = i;
			*cost = c;
		}
	}
	free(v);
	return best;
}

static void
md_cheapest(FILE *f, const struct bench *b)
{
	double cost = 0;
	size_t i = cheapest(b, &cost);
	char label[512];

	fprintf(f,
	    "\n## Cheapest setting that completes every run\n\n"
	    "Criterion: every repeat of the combination complete, then the "
	    "lowest median of peak held memory + peak spool (bytes the proxy "
	    "held, in RAM or on disk).\n\n");
	if (i == SIZE_MAX) {
		fprintf(f, "None: no combination completed every run.\n");
		return;
	}
	bench_combo_label(&b->sw, i, label, sizeof(label), ',');
	fprintf(f,
	    "**%s**: %" PRIu64 "/%" PRIu64
	    " complete, %.2f MiB held (memory + spool).\n",
	    label, b->sw.repeat, b->sw.repeat, cost / MIB);
}

/* summary.md: a table per pair of varying axes (or per axis), the
 * cheapest complete setting, the notes and the plots. */
static int
write_summary(const struct bench *b, const char *path, const char *plots_note)
{
	const struct bench_sweep *sw = &b->sw;
	int vary[BENCH_NAXES], nv = 0;
	FILE *f = fopen(path, "we");

	if (f == NULL)
		return -errno;
	for (int a = 0; a < BENCH_NAXES; a++)
		if (sw->axes[a].nvalues > 1)
			vary[nv++] = a;
	fprintf(f,
	    "# sluice bench: %s\n\n%zu runs (%zu combinations × %" PRIu64
	    " repeats) of `%s`, each through `sluice lab` in fresh "
	    "namespaces.  finish: the client's download time (complete runs "
	    "only); held: the proxy's peak bytes in memory; RSS: the "
	    "balancer's peak VmRSS.  Every run is in results.csv.\n",
	    sw->name, b->ndone, sw->npoints, sw->repeat, sw->base);
	for (int a = 0, first = 1; a < BENCH_NAXES; a++)
		if (sw->axes[a].nvalues == 1) {
			fprintf(f, "%s `%s = %s`", first ? "\nFixed:" : ",",
			    bench_axis_name(a), sw->axes[a].values[0]);
			first = 0;
		}
	fprintf(f, "\n");
	if (nv == 0)
		md_all(f, b);
	for (int i = 0; i < nv; i++)
		for (int j = i + 1; j < nv || (nv == 1 && j == 1); j++)
			md_table(f, b, vary[i], nv == 1 ? -1 : vary[j]);
	md_cheapest(f, b);
	if (b->nnotes != 0)
		fprintf(f, "\n## Notes\n\n");
	for (size_t i = 0; i < b->nnotes; i++)
		fprintf(f, "- %s\n", b->notes[i]);
	fprintf(f, "\n%s\n", plots_note);
	return fclose(f) == 0 ? 0 : -EIO;
}

/* ---- plots ------------------------------------------------------------ */

#define C_COMPLETE  0x2ca02c
#define C_TRUNCATED 0xd62728
#define C_MIXED     0xff7f0e
#define C_ERROR     0x7f7f7f

static unsigned
outcome_colour(const char *outcome)
{
	return strcmp(outcome, "complete") == 0 ? C_COMPLETE
	    : strcmp(outcome, "truncated") == 0 ? C_TRUNCATED
	                                        : C_ERROR;
}

/* The label of value i of axis a: as written, or the base's value. */
static const char *
value_label(const struct bench *b, int a, size_t i)
{
	return b->sw.axes[a].nvalues != 0 ? b->sw.axes[a].values[i]
	                                  : b->sw.points[0].values[a];
}

static size_t
nvalues(const struct bench *b, int a)
{
	return b->sw.axes[a].nvalues != 0 ? b->sw.axes[a].nvalues : 1;
}

/* xtics ("pause" 0, "spill" 1) for axis a. */
static void
gp_tics(FILE *f, const struct bench *b, const char *which, int a)
{
	fprintf(f, "set %s (", which);
	for (size_t i = 0; i < nvalues(b, a); i++)
		fprintf(
		    f, "%s\"%s\" %zu", i ? ", " : "", value_label(b, a, i), i);
	fprintf(f, ")\n");
}

static FILE *
gp_open(const struct bench *b, const char *name, const char *title)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/plots/%s.gp", b->out, name);
	if ((f = fopen(path, "we")) == NULL)
		return NULL;
	fprintf(f,
	    "# Written by sluice bench; re-render with: cd %s/plots && "
	    "gnuplot %s.gp\n"
	    "set terminal pngcairo size 900,600 noenhanced font 'sans,10'\n"
	    "set output '%s.png'\nset title '%s: %s'\nset grid\n"
	    "set style fill solid 0.8 border -1\nset key outside right\n",
	    b->out, name, name, b->sw.name, title);
	return f;
}

/* completion: policy × high_watermark, a cell per pair coloured by its
 * runs' outcome (mixed when they differ), labelled complete/runs. */
static void
gp_completion(const struct bench *b)
{
	FILE *f = gp_open(b, "completion",
	    "outcome by policy and "
	    "high_watermark");

	if (f == NULL)
		return;
	gp_tics(f, b, "xtics", BENCH_POLICY);
	gp_tics(f, b, "ytics", BENCH_HIGH);
	fprintf(f,
	    "set xlabel 'policy'\nset ylabel 'high_watermark'\n"
	    "set xrange [-0.5:%zu.5]\nset yrange [-0.5:%zu.5]\n"
	    "set key below\n$cells << EOD\n",
	    nvalues(b, BENCH_POLICY) - 1, nvalues(b, BENCH_HIGH) - 1);
	for (size_t i = 0; i < nvalues(b, BENCH_POLICY); i++)
		for (size_t j = 0; j < nvalues(b, BENCH_HIGH); j++) {
			struct stats st;
			unsigned c;

			group_stats(b,
			    b->sw.axes[BENCH_POLICY].nvalues > 1 ? BENCH_POLICY
			                                         : -1,
			    i,
			    b->sw.axes[BENCH_HIGH].nvalues > 1 ? BENCH_HIGH
			                                       : -1,
			    j, &st);
			if (st.runs == 0)
				continue;
			c = st.errors                ? C_ERROR
			    : st.complete == st.runs ? C_COMPLETE
			    : st.complete == 0       ? C_TRUNCATED
			                             : C_MIXED;
			fprintf(f, "%zu %zu %u \"%zu/%zu complete\"\n", i, j, c,
			    st.complete, st.runs);
		}
	fprintf(f,
	    "EOD\nplot $cells using 1:2:(0.48):(0.48):3 with boxxyerror "
	    "fc rgb variable notitle, \\\n"
	    "  $cells using 1:2:4 with labels notitle, \\\n"
	    "  NaN with boxes fc rgb '#%06x' title 'complete', \\\n"
	    "  NaN with boxes fc rgb '#%06x' title 'truncated', \\\n"
	    "  NaN with boxes fc rgb '#%06x' title 'mixed', \\\n"
	    "  NaN with boxes fc rgb '#%06x' title 'error'\n",
	    C_COMPLETE, C_TRUNCATED, C_MIXED, C_ERROR);
	fclose(f);
}

/* memory: the peak held memory, spool and RSS per policy (the largest
 * over its runs: what a deployment must provision). */
static void
gp_memory(const struct bench *b)
{
	FILE *f = gp_open(b, "memory", "peak memory and disk per policy");

	if (f == NULL)
		return;
	fprintf(f,
	    "set ylabel 'MiB (largest over the runs)'\n"
	    "set style data histograms\n"
	    "set style histogram cluster gap 1\nset yrange [0:*]\n"
	    "$bars << EOD\n");
	for (size_t i = 0; i < nvalues(b, BENCH_POLICY); i++) {
		double m = 0, s = 0, r = 0;

		for (size_t k = 0; k < b->ndone; k++) {
			const struct run *x = &b->runs[k];

			if (strcmp(x->outcome, "error") == 0 ||
			    (b->sw.axes[BENCH_POLICY].nvalues > 1 &&
			        bench_value_index(
			            &b->sw, x->combo, BENCH_POLICY) != i))
				continue;
			m = fmax(m, (double)held(x) / MIB);
			s = fmax(s, (double)x->spool / MIB);
			r = fmax(r, (double)x->rss / MIB);
		}
		fprintf(f, "\"%s\" %.3f %.3f %.3f\n",
		    value_label(b, BENCH_POLICY, i), m, s, r);
	}
	fprintf(f,
	    "EOD\nplot $bars using 2:xtic(1) title 'held in memory', "
	    "'' using 3 title 'spool (disk)', '' using 4 title "
	    "'balancer VmRSS'\n");
	fclose(f);
}

/* One point per run: x and y chosen by the caller's columns. */
static void
gp_points(FILE *f, const struct bench *b)
{
	fprintf(f, "$runs << EOD\n");
	for (size_t k = 0; k < b->ndone; k++) {
		const struct run *r = &b->runs[k];
		size_t pi = b->sw.axes[BENCH_POLICY].nvalues > 1
		    ? bench_value_index(&b->sw, r->combo, BENCH_POLICY)
		    : 0;

		if (strcmp(r->outcome, "error") == 0)
			continue;
		fprintf(f, "%.3f %.3f %.4f %.4f %u\n",
		    (double)pi + 0.3 * ((double)(k % 7) / 6.0 - 0.5), r->hold_s,
		    (double)r->unsent_bytes / MIB,
		    r->predicted_unsent >= 0 ? (double)r->predicted_unsent / MIB
		                             : -1.0,
		    outcome_colour(r->outcome));
	}
	fprintf(f, "EOD\n");
}

/* hold: how long the origin's connection lived, per policy. */
static void
gp_hold(const struct bench *b)
{
	FILE *f = gp_open(b, "hold", "origin hold time per policy");

	if (f == NULL)
		return;
	gp_tics(f, b, "xtics", BENCH_POLICY);
	fprintf(f,
	    "set xlabel 'policy'\nset ylabel 'origin hold time (s)'\n"
	    "set xrange [-0.5:%zu.5]\nset yrange [0:*]\n",
	    nvalues(b, BENCH_POLICY) - 1);
	gp_points(f, b);
	fprintf(f,
	    "plot $runs using 1:2:5 with points pt 7 ps 1.5 lc rgb "
	    "variable title 'a run (green complete, red truncated)'\n");
	fclose(f);
}

/* fidelity: measured vs predicted unsent bytes; the diagonal is a
 * perfect model. */
static void
gp_fidelity(const struct bench *b)
{
	FILE *f = gp_open(b, "fidelity", "measured vs predicted unsent bytes");
	double top = 0.1;

	if (f == NULL)
		return;
	for (size_t k = 0; k < b->ndone; k++) {
		top = fmax(top, (double)b->runs[k].unsent_bytes / MIB);
		top = fmax(top, (double)b->runs[k].predicted_unsent / MIB);
	}
	fprintf(f,
	    "set xlabel 'predicted unsent (MiB)'\n"
	    "set ylabel 'measured unsent (MiB)'\n"
	    "set xrange [-0.05:%.2f]\nset yrange [-0.05:%.2f]\nset size "
	    "square\n",
	    top * 1.08, top * 1.08);
	gp_points(f, b);
	fprintf(f,
	    "plot x with lines dt 2 lc rgb 'black' title 'measured = "
	    "predicted', \\\n  $runs using ($4 >= 0 ? $4 : NaN):3:5 "
	    "with points pt 7 ps 1.5 lc rgb variable title 'a run'\n");
	fclose(f);
}

/* Runs gnuplot in DIR on NAME.gp; 0 when NAME.png was drawn. */
static int
render(const struct bench *b, const char *name)
{
	char dir[PATH_MAX], gp[PATH_MAX], log[PATH_MAX];
	char *argv[] = {"gnuplot", gp, NULL};
	struct proc_child c = {.dir = dir, .out = log, .err = log};
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s/plots", b->out);
	snprintf(gp, sizeof(gp), "%s.gp", name);
	snprintf(log, sizeof(log), "%s/plots/%s.log", b->out, name);
	if ((pid = proc_start(&c, argv)) < 0)
		return pid;
	if (proc_reap(pid) != 0)
		return -EIO;
	unlink(log);
	return 0;
}

/* Writes the four .gp files and renders them; the PNGs drawn go into
 * plots[], and note says what was drawn or why not. */
static size_t
draw_plots(
    const struct bench *b, char plots[][PATH_MAX], char *note, size_t len)
{
	static const char *const names[] = {
	    "completion", "memory", "hold", "fidelity"};
	char dir[PATH_MAX - 64];
	size_t n = 0, used;

	snprintf(dir, sizeof(dir), "%s/plots", b->out);
	mkdir(dir, 0755);
	gp_completion(b);
	gp_memory(b);
	gp_hold(b);
	gp_fidelity(b);
	if (!proc_in_path("gnuplot")) {
		snprintf(note, len,
		    "Plots skipped: gnuplot not found (Debian: apt-get install "
		    "gnuplot-nox); the .gp files are in plots/.");
		return 0;
	}
	used = (size_t)snprintf(note, len, "## Plots\n");
	for (size_t i = 0; i < 4; i++) {
		bool ok = render(b, names[i]) == 0;

		if (ok)
			snprintf(
			    plots[n++], PATH_MAX, "%s/%s.png", dir, names[i]);
		if (used < len)
			used += (size_t)snprintf(note + used, len - used,
			    ok ? "\n![%s](plots/%s.png)\n"
			       : "\n%s: gnuplot failed (plots/%s.log)\n",
			    names[i], names[i]);
	}
	return n;
}

/* results.csv, the plots, summary.md and --json's object. */
int
bench_report(struct bench *b)
{
	char path[PATH_MAX], note[2048], plots[4][PATH_MAX];
	size_t nplots = draw_plots(b, plots, note, sizeof(note));

	snprintf(path, sizeof(path), "%s/results.csv", b->out);
	if (write_csv(b, path) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/summary.md", b->out);
	if (write_summary(b, path, note) < 0)
		return -1;
	if (b->json)
		print_json(b, plots, nplots);
	fprintf(stderr,
	    "sluice bench: results in %s (results.csv, summary.md, "
	    "%zu plots)\n",
	    b->out, nplots);
	return 0;
}
