/*
 * lab results: what the run measured (the peers' JSON lines and the
 * timeline), the model's prediction for the same inputs, summary.json,
 * the gnuplot timeline and the verdict.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <ini.h>
#include "config.h"
#include "json.h"
#include "lab.h"
#include "model.h"
#include "units.h"

#include "config.h"
#include "json.h"
#include "lab.h"
#include "lab_int.h"
#include "model.h"

/* ---- results ----------------------------------------------------------- */

static void
read_results(const struct lab *lab, struct result *r)
{
	char path[PATH_MAX];

	lab_path_in(lab, "fetch.json", path, sizeof(path));
	r->fetch = lab_read_file(path, FILE_MAX);
	lab_path_in(lab, "origin.json", path, sizeof(path));
	r->origin = lab_read_file(path, FILE_MAX);
	lab_path_in(lab, "access.json", path, sizeof(path));
	r->access = lab_read_file(path, FILE_MAX);
}

/* The origin's lines: the first rule that fired, zero-window time and
 * probes summed over its connections. */
static void
origin_figures(struct result *r)
{
	char *save = NULL, rule[32];
	char *copy = strdup(r->origin != NULL ? r->origin : "");

	for (char *line = copy != NULL ? strtok_r(copy, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		const char *end = line + strlen(line);

		if (line[0] != '{')
			continue;
		lab_json_str(line, "gave_up", rule, sizeof(rule));
		if (r->gave_up[0] == '\0')
			snprintf(r->gave_up, sizeof(r->gave_up), "%s", rule);
		if (lab_json_num(line, end, "zero_window_s") > 0)
			r->zero_window_s +=
			    lab_json_num(line, end, "zero_window_s");
		r->probes += (unsigned)lab_json_u64(line, end, "probes");
	}
	free(copy);
}

static void
access_figures(struct result *r)
{
	const char *line = r->access != NULL ? strchr(r->access, '{') : NULL;
	const char *end;

	if (line == NULL)
		return;
	end = line + strcspn(line, "\n");
	lab_json_str(
	    line, "outcome", r->proxy_outcome, sizeof(r->proxy_outcome));
	r->resumes = (long)lab_json_u64(line, end, "resumes");
	r->paused_s = lab_json_num(line, end, "paused_s");
	r->peak_memory = lab_json_u64(line, end, "peak_memory");
	r->spilled = lab_json_u64(line, end, "spilled_bytes");
}

static void
figures(const struct lab *lab, struct result *r)
{
	const char *f = r->fetch != NULL ? r->fetch : "";
	const char *end = f + strlen(f);
	struct utsname u;

	lab_json_str(f, "outcome", r->fetch_outcome, sizeof(r->fetch_outcome));
	r->verified = strstr(f, "\"verified\":true") != NULL ? 1
	    : strstr(f, "\"verified\":false") != NULL        ? 0
	                                                     : -1;
	r->client_bytes = lab_json_u64(f, end, "received_bytes");
	r->seconds = lab_json_num(f, end, "seconds");
	if (r->fetch_outcome[0] == '\0' && lab->time_limit_hit) {
		/* stopped before it could say: the timeline's last count
		 * (TCP bytes, the head included) */
		snprintf(
		    r->fetch_outcome, sizeof(r->fetch_outcome), "time-limit");
		r->client_bytes =
		    lab->s.c_recv < lab->sc.body ? lab->s.c_recv : lab->sc.body;
		r->seconds = lab->s.t;
	}
	r->unsent =
	    lab->sc.body > r->client_bytes ? lab->sc.body - r->client_bytes : 0;
	r->complete = strcmp(r->fetch_outcome, "complete") == 0 &&
	    r->verified == 1 && r->unsent == 0;
	origin_figures(r);
	access_figures(r);
	if (uname(&u) == 0)
		snprintf(r->kernel, sizeof(r->kernel), "%s", u.release);
}

/* The client's goodput: the link's rate less the frame overhead, or
 * --rate when that is lower (loopback: --rate, nothing else paces). */
static double
client_goodput(const struct lab *lab)
{
	double link = model_goodput_bps((double)lab->sc.lb_client_bps);
	double rate = (double)lab_fetch_rate(lab);

	if (lab->mode != LAB_MODE_NETNS)
		return rate;
	return rate > 0 && rate < link ? rate : link;
}

/* The model's inputs are the scenario's and the proxy config's own. */
static void
predict(const struct lab *lab, struct result *r)
{
	const struct config *cfg = lab->cfg;
	struct model_in in;

	model_defaults(&in);
	in.size = lab->sc.body;
	in.client_bps = client_goodput(lab);
	in.origin_bps = lab->mode == LAB_MODE_NETNS
	    ? model_goodput_bps((double)lab->sc.origin_lb_bps)
	    : 10e9; /* loopback: far faster than the client */
	in.policy = cfg->buffer.policy;
	in.high = cfg->buffer.high_watermark;
	in.low = cfg->buffer.low_watermark;
	in.spill_limit = cfg->buffer.spill_limit;
	in.block = cfg->buffer.block_size;
	in.rcvbuf = cfg->upstream.rcvbuf;
	in.client_sndbuf = cfg->client.sndbuf;
	in.resume = cfg->buffer.resume;
	if (lab->sc.origin_sndbuf != 0)
		in.k_ws = 2 * lab->sc.origin_sndbuf; /* the kernel doubles it */
	if (model_parse_giveup(lab->sc.give_up, &in) < 0)
		return;
	r->have_model = model_predict(&in, &r->mo) == 0;
}

static void
json_lines(FILE *f, const char *text)
{
	const char *sep = "";
	char *copy = strdup(text != NULL ? text : ""), *save = NULL;

	fputc('[', f);
	for (char *line = copy != NULL ? strtok_r(copy, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] != '{')
			continue;
		fprintf(f, "%s%s", sep, line);
		sep = ",";
	}
	fputc(']', f);
	free(copy);
}

static void
json_raw_or_null(FILE *f, const char *text)
{
	const char *p = text != NULL ? strchr(text, '{') : NULL;

	if (p == NULL)
		fputs("null", f);
	else
		fprintf(f, "%.*s", (int)strcspn(p, "\n"), p);
}

static void
summary_measured(FILE *f, const struct lab *lab, const struct result *r)
{
	fprintf(f, "{\"scenario\":");
	json_string(f, lab->sc.name);
	fprintf(f, ",\"scenario_file\":");
	json_string(f, lab->sc.path);
	fprintf(f, ",\"mode\":\"%s\",\"rates\":\"%s\"",
	    lab->mode == LAB_MODE_NETNS ? "netns" : "loopback",
	    lab->mode == LAB_MODE_NETNS ? "tc tbf" : "application-paced");
	fprintf(f,
	    ",\"outcome\":\"%s\",\"body_bytes\":%" PRIu64
	    ",\"client_bytes\":%" PRIu64 ",\"unsent_bytes\":%" PRIu64
	    ",\"gave_up\":",
	    r->complete ? "complete" : "truncated", lab->sc.body,
	    r->client_bytes, r->unsent);
	if (r->gave_up[0] != '\0')
		json_string(f, r->gave_up);
	else
		fputs("null", f);
	fprintf(f, ",\"zero_window_s\":%.3f,\"probes\":%u", r->zero_window_s,
	    r->probes);
	fprintf(f, ",\"fetch_outcome\":");
	json_string(f, r->fetch_outcome[0] != '\0' ? r->fetch_outcome : "none");
	fprintf(f,
	    ",\"verified\":%s,\"seconds\":%.3f,\"time_limit_reached\":%s",
	    r->verified == 1       ? "true"
	        : r->verified == 0 ? "false"
	                           : "null",
	    r->seconds, lab->time_limit_hit ? "true" : "false");
	fprintf(f, ",\"proxy_outcome\":");
	json_string(f, r->proxy_outcome);
	fprintf(f,
	    ",\"resumes\":%ld,\"paused_s\":%.3f,\"peak_memory_bytes\":%" PRIu64
	    ",\"spilled_bytes\":%" PRIu64,
	    r->resumes, r->paused_s, r->peak_memory, r->spilled);
}

static void
summary_predicted(FILE *f, const struct result *r)
{
	if (!r->have_model) {
		fputs(",\"predicted_outcome\":null,\"predicted_unsent_bytes\":"
		      "null",
		    f);
		return;
	}
	fprintf(f,
	    ",\"predicted_outcome\":\"%s\",\"predicted_unsent_bytes\":%" PRIu64
	    ",\"predicted_client_bytes\":%" PRIu64
	    ",\"predicted_giveup_at_s\":%.3f,\"predicted_client_finish_s\":%.3f"
	    ",\"predicted_stalls\":%u,\"predicted_resumes\":%u"
	    ",\"model_k_in_bytes\":%" PRIu64 ",\"model_k_out_bytes\":%" PRIu64
	    ",\"model_k_ws_bytes\":%" PRIu64 ",\"recommendation\":",
	    r->mo.complete ? "complete" : "truncated", r->mo.unsent_bytes,
	    r->mo.client_bytes, r->mo.giveup_at_s, r->mo.client_finish_s,
	    r->mo.stalls, r->mo.resumes, r->mo.k_in, r->mo.k_out, r->mo.k_ws);
	json_string(f, r->mo.recommendation);
}

static void
write_summary(FILE *f, const struct lab *lab, const struct result *r)
{
	summary_measured(f, lab, r);
	summary_predicted(f, r);
	fprintf(f, ",\"lb_kind\":\"sluice\",\"kernel\":");
	json_string(f, r->kernel);
	fprintf(f, ",\"delay_applied\":%s,\"notes\":",
	    lab->netem == 1       ? "true"
	        : lab->netem == 0 ? "false"
	                          : "null");
	json_string(f, lab->sc.notes);
	fprintf(f, ",\"results\":");
	json_string(f, lab->out);
	fprintf(f, ",\"plot\":");
	if (r->plotted)
		json_string(f, r->plot);
	else
		fputs("null", f);
	fprintf(f, ",\"fetch\":");
	json_raw_or_null(f, r->fetch);
	fprintf(f, ",\"origin\":");
	json_lines(f, r->origin);
	fprintf(f, ",\"access\":");
	json_lines(f, r->access);
	fputs("}\n", f);
}

static int
save_summary(const struct lab *lab, const struct result *r)
{
	char path[PATH_MAX];
	FILE *f;

	lab_path_in(lab, "summary.json", path, sizeof(path));
	if ((f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	write_summary(f, lab, r);
	if (fclose(f) != 0) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (lab->json)
		write_summary(stdout, lab, r);
	return 0;
}

/* ---- the plot ---------------------------------------------------------- */

bool
lab_in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path != NULL ? path : "/usr/bin:/bin";
	     *p != '\0';) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/* A gnuplot single-quoted string: quotes doubled. */
static void
gp_string(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s != '\0'; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

/* Periods where a 0/1 column is 1, as opaque boxes one sample wide
 * (slightly wider, so that neighbours leave no seam). */
#define GP_SHADE(col, color, title)                                            \
	"'%1$s' using 1:(column('" col "') > 0 ? %2$s : 0):(0.102) with "      \
	"boxes fs solid 1.0 noborder lc rgb '" color "' title '" title "'"

static void
gp_bytes_panel(FILE *f, const char *csv, double ymax)
{
	char y[32];

	snprintf(y, sizeof(y), "%.3f", ymax);
	fprintf(f,
	    "set ylabel 'MiB'\nset yrange [0:%2$s]\nset key left top opaque "
	    "box\n"
	    "plot " GP_SHADE("origin_zero_window_flag", "#f6d3d3",
	        "origin sees a zero window") ", \\\n"
	                                     "  '%1$s' using "
	                                     "1:(column('origin_acked_bytes')/"
	                                     "1048576.0) "
	                                     "with lines lw 2 lc rgb '#1f77b4' "
	                                     "title 'origin: acked', \\\n"
	                                     "  '%1$s' using "
	                                     "1:(column('proxy_from_upstream_"
	                                     "bytes')/1048576.0) "
	                                     "with lines lc rgb '#2ca02c' "
	                                     "title 'proxy: from upstream', "
	                                     "\\\n"
	                                     "  '%1$s' using "
	                                     "1:((column('proxy_memory_bytes')+"
	                                     "column('proxy_spool_bytes'))/"
	                                     "1048576.0) with lines "
	                                     "lc rgb '#9467bd' title 'proxy: "
	                                     "held (memory + spool)', \\\n"
	                                     "  '%1$s' using "
	                                     "1:(column('client_received_bytes'"
	                                     ")/1048576.0) "
	                                     "with lines lw 2 lc rgb '#ff7f0e' "
	                                     "title 'client: received'\n",
	    csv, y);
}

static void
gp_window_panel(FILE *f, const char *csv, double wmax)
{
	char y[32];

	snprintf(y, sizeof(y), "%.3f", wmax);
	fprintf(f,
	    "set ylabel 'KiB'\nset yrange [0:%2$s]\nset key right top opaque "
	    "box\n"
	    "plot " GP_SHADE("proxy_paused_flag", "#e4e4e4",
	        "proxy paused (not reading the upstream)") ", \\\n"
	                                                   "  " GP_SHADE(
	                                                       "origin_zero_"
	                                                       "window_flag",
	                                                       "#f6d3d3",
	                                                       "zero window") ", \\\n"
	                                                                      "  '%1$s' using 1:(column('origin_snd_wnd_bytes')/1024.0) with "
	                                                                      "steps lw 2 lc rgb '#1f77b4' title 'upstream window (origin "
	                                                                      "snd_wnd)', \\\n"
	                                                                      "  '%1$s' using 1:(column('upstream_rcv_queue_bytes')/1024.0) "
	                                                                      "with lines lc rgb '#2ca02c' title 'proxy: upstream receive "
	                                                                      "queue'\n",
	    csv, y);
}

static void
write_gp(FILE *f, const struct lab *lab, const struct result *r,
    const char *png, const char *csv)
{
	double wmax = (double)lab->max_wnd / 1024.0;
	char title[160];

	fprintf(f,
	    "# Written by sluice lab; re-render with: gnuplot %s/"
	    "timeline.gp\n",
	    lab->out);
	fprintf(f,
	    "set terminal pngcairo size 1200,900 noenhanced font "
	    "'sans,10'\nset output ");
	gp_string(f, png);
	fprintf(f,
	    "\nset datafile separator ','\nset datafile "
	    "columnheaders\nset grid\nset xlabel 'time (s)'\n"
	    "set xrange [0:%.1f]\nset style fill solid\n",
	    lab->s.t > 0 ? lab->s.t : 1.0);
	snprintf(title, sizeof(title),
	    "%s: %s, %.2f MiB of %.2f MiB reached the client", lab->sc.name,
	    r->complete ? "complete" : "truncated",
	    (double)r->client_bytes / MIB, (double)lab->sc.body / MIB);
	fprintf(f, "set multiplot layout 2,1 title ");
	gp_string(f, title);
	fputc('\n', f);
	gp_bytes_panel(f, csv, (double)lab->sc.body / MIB * 1.05);
	gp_window_panel(f, csv, wmax > 0 ? wmax * 1.1 : 64);
	fprintf(f, "unset multiplot\n");
}

static void
plot(struct lab *lab, struct result *r)
{
	char gp[PATH_MAX], png[PATH_MAX], csv[PATH_MAX], out[2048];
	FILE *f;

	if (!lab_in_path("gnuplot")) {
		snprintf(r->plot, sizeof(r->plot),
		    "not drawn: gnuplot not found (Debian: apt-get install "
		    "gnuplot-nox)");
		return;
	}
	lab_path_in(lab, "timeline.gp", gp, sizeof(gp));
	lab_path_in(lab, "timeline.png", png, sizeof(png));
	lab_path_in(lab, "timeline.csv", csv, sizeof(csv));
	if ((f = fopen(gp, "w")) == NULL) {
		snprintf(r->plot, sizeof(r->plot), "not drawn: %s: %s", gp,
		    strerror(errno));
		return;
	}
	write_gp(f, lab, r, png, csv);
	fclose(f);
	if (lab_try_run(lab, out, sizeof(out), "gnuplot", gp, NULL) != 0) {
		snprintf(r->plot, sizeof(r->plot),
		    "not drawn: gnuplot failed: %.120s", out);
		return;
	}
	snprintf(r->plot, sizeof(r->plot), "%s", png);
	r->plotted = true;
}

/* ---- the verdict ------------------------------------------------------- */

static void
verdict_what(FILE *f, const struct lab *lab, const struct result *r)
{
	if (r->complete) {
		fprintf(f,
		    "%s: COMPLETE. All %.2f MiB reached the client, verified, "
		    "in %.1f s.\n",
		    lab->sc.name, (double)lab->sc.body / MIB, r->seconds);
		return;
	}
	fprintf(f, "%s: TRUNCATED. The client got %.2f MiB of %.2f MiB and ",
	    lab->sc.name, (double)r->client_bytes / MIB,
	    (double)lab->sc.body / MIB);
	if (lab->time_limit_hit)
		fprintf(f, "was stopped by the time limit after %.1f s",
		    r->seconds);
	else
		fprintf(f, "then a short end (%s) after %.1f s",
		    r->fetch_outcome[0] != '\0' ? r->fetch_outcome
		                                : "no answer",
		    r->seconds);
	fprintf(f, ": %.2f MiB (%" PRIu64 " bytes) never reached it.\n",
	    (double)r->unsent / MIB, r->unsent);
}

static void
verdict_rule(FILE *f, const struct lab *lab, const struct result *r)
{
	const char *rule =
	    lab->sc.give_up[0] != '\0' ? lab->sc.give_up : "none";

	if (r->gave_up[0] != '\0')
		fprintf(f,
		    "  Rule that fired: the origin's %s (%s), after %.1f s "
		    "of zero window in all (%u probes); the proxy logged "
		    "%s%s",
		    r->gave_up, rule, r->zero_window_s, r->probes,
		    r->proxy_outcome[0] != '\0' ? r->proxy_outcome : "nothing",
		    r->resumes > 0 ? "" : ".\n");
	else
		fprintf(f,
		    "  No give-up rule fired (the origin's: %s); it saw %.1f s "
		    "of zero window in all; the proxy paused its upstream "
		    "%.1f s, logged %s%s",
		    rule, r->zero_window_s, r->paused_s > 0 ? r->paused_s : 0,
		    r->proxy_outcome[0] != '\0' ? r->proxy_outcome : "nothing",
		    r->resumes > 0 ? "" : ".\n");
	if (r->resumes > 0)
		fprintf(f, " and resumed %ld times with Range.\n", r->resumes);
}

static void
verdict_model(FILE *f, const struct result *r)
{
	double diff;

	if (!r->have_model) {
		fprintf(f, "  Model: no prediction for these inputs.\n");
		return;
	}
	fprintf(f, "  Model: %s, %.2f MiB (%" PRIu64 " bytes) unsent",
	    r->mo.complete ? "complete" : "truncated",
	    (double)r->mo.unsent_bytes / MIB, r->mo.unsent_bytes);
	if (r->mo.unsent_bytes > 0) {
		diff = ((double)r->unsent - (double)r->mo.unsent_bytes) /
		    (double)r->mo.unsent_bytes * 100.0;
		fprintf(f, "; measured %+.1f%%", diff);
	}
	if (r->mo.giveup_at_s >= 0)
		fprintf(
		    f, "; the origin gives up at %.1f s", r->mo.giveup_at_s);
	fprintf(f, ".\n");
	if (!r->mo.complete && r->mo.recommendation[0] != '\0')
		fprintf(f, "  To complete: %s\n", r->mo.recommendation);
}

static void
verdict(const struct lab *lab, const struct result *r)
{
	FILE *f = lab->json ? stderr : stdout;

	verdict_what(f, lab, r);
	verdict_rule(f, lab, r);
	verdict_model(f, r);
	for (size_t i = 0; i < lab->nnotes; i++)
		fprintf(f, "  Note: %s.\n", lab->notes[i]);
	fprintf(f, "  Plot: %s\n  Results: %s\n", r->plot, lab->out);
}

int
lab_report(struct lab *lab)
{
	struct result r;
	int rc = 0;

	memset(&r, 0, sizeof(r));
	read_results(lab, &r);
	figures(lab, &r);
	predict(lab, &r);
	plot(lab, &r);
	if (save_summary(lab, &r) < 0)
		rc = 1;
	verdict(lab, &r);
	if (r.fetch_outcome[0] == '\0' ||
	    strcmp(r.fetch_outcome, "refused") == 0) {
		fprintf(stderr,
		    "sluice lab: the client never got an answer: see "
		    "%s/fetch.log and proxy.log\n",
		    lab->out);
		rc = 1;
	}
	free(r.fetch);
	free(r.origin);
	free(r.access);
	return rc;
}
