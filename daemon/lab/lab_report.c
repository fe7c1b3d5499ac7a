/*
 * lab results: what the run measured (the peers' JSON lines and the
 * timeline), the model's prediction for the same inputs, summary.json,
 * the gnuplot timeline and the verdict.  It reads what the peers and the
 * timeline left in the results directory; it calls nothing of lab.c's
 * (base/json.h reads the lines, proc.h runs gnuplot).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "base/json.h"
#include "proxy/config.h"
#include "model/model.h"
#include "model/plan.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/lab_walk.h"
#include "lab/lab_scale.h"
#include "lab/lab_lb.h"
#include "lab/pcap.h"
#include "lab/proc.h"

/* ---- results ----------------------------------------------------------- */

static void
read_results(const struct lab *lab, struct result *r)
{
	char path[PATH_MAX];

	lab_path_in(lab, "fetch.json", path, sizeof(path));
	r->fetch = proc_read_file(path, FILE_MAX);
	lab_path_in(lab, "origin.json", path, sizeof(path));
	r->origin = proc_read_file(path, FILE_MAX);
	lab_path_in(lab, "access.json", path, sizeof(path));
	r->access = proc_read_file(path, FILE_MAX);
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
		json_str(line, "gave_up", rule, sizeof(rule));
		if (r->gave_up[0] == '\0')
			snprintf(r->gave_up, sizeof(r->gave_up), "%s", rule);
		if (json_num(line, end, "zero_window_s") > 0)
			r->zero_window_s +=
			    json_num(line, end, "zero_window_s");
		r->probes += (unsigned)json_u64(line, end, "probes");
	}
	free(copy);
}

/* The access line of the honest client (with [dos] clients there are
 * theirs too, from DOS_IP), or the first. */
static const char *
honest_line(const char *access)
{
	const char *p, *line;

	if (access == NULL)
		return NULL;
	if ((p = strstr(access, "\"client\":\"" CLIENT_IP ":")) == NULL)
		return strchr(access, '{');
	for (line = p; line > access && line[-1] != '\n'; line--)
		;
	return line;
}

static void
access_figures(struct result *r)
{
	const char *line = honest_line(r->access);
	const char *end;

	if (line == NULL)
		return;
	end = line + strcspn(line, "\n");
	json_str(line, "outcome", r->proxy_outcome, sizeof(r->proxy_outcome));
	r->resumes = (long)json_u64(line, end, "resumes");
	r->paused_s = json_num(line, end, "paused_s");
	r->peak_memory = json_u64(line, end, "peak_memory");
	r->spilled = json_u64(line, end, "spilled_bytes");
}

/* The [dos] clients, from the proxy's access lines of their address:
 * how many it closed, how many as client_zwp_timeout, and after how long
 * (each line's duration_s).  The clients themselves cannot tell: they
 * never read again, so they never see the reset. */
static void
dos_figures(const struct lab *lab, struct result *r)
{
	const char *p = r->access;

	r->dos_min_s = r->dos_max_s = -1;
	while (lab->sc.dos_clients != 0 && p != NULL &&
	    (p = strstr(p, "\"client\":\"" DOS_IP ":")) != NULL) {
		const char *eol = p + strcspn(p, "\n");
		const char *o = strstr(p, "\"outcome\":\"client_zwp_timeout\"");
		double s = json_num(p, eol, "duration_s");

		r->dos_freed++;
		if (o != NULL && o < eol)
			r->dos_zwp++;
		if (s >= 0 && (r->dos_min_s < 0 || s < r->dos_min_s))
			r->dos_min_s = s;
		if (s > r->dos_max_s)
			r->dos_max_s = s;
		p = eol;
	}
}

/* Each link's capture, read back: one connection to the balancer's (or,
 * without one, the origin's) port. */
static void
capture_figures(const struct lab *lab, struct result *r)
{
	int port[2] = {lab->origin_port,
	    lab_has_lb(lab) ? lab->proxy_port : lab->origin_port};
	char path[PATH_MAX];
	struct pcap_pkt *pkts;
	size_t n;

	for (int i = 0;
	     i < LAB_NLINKS && lab->sc.capture && lab->mode == LAB_MODE_NETNS;
	     i++) {
		lab_path_in(lab, lab_links[i].file, path, sizeof(path));
		if (pcap_read(path, &pkts, &n, r->cap_err[i],
		        sizeof(r->cap_err[i])) < 0)
			continue;
		r->cap_packets[i] = n;
		if (pcap_analyse(pkts, n, (uint16_t)port[i], &r->cap[i]) == 0)
			r->cap_ok[i] = true;
		else
			snprintf(r->cap_err[i], sizeof(r->cap_err[i]),
			    "%s: no connection to port %d", lab_links[i].file,
			    port[i]);
		free(pkts);
	}
}

/* nginx's error log on the upstream, the line a operator would grep. */
static void
lb_error_figures(const struct lab *lab, struct result *r)
{
	char path[PATH_MAX], *text, *p;

	if (lab->sc.lb_kind != LAB_LB_NGINX)
		return;
	lab_path_in(lab, "nginx-error.log", path, sizeof(path));
	if ((text = proc_read_file(path, FILE_MAX)) == NULL)
		return;
	/* "... [error] 25317#25317: *2 readv() failed (104: Connection reset
	 * by peer) while reading upstream, client: ...": the message */
	if ((p = strstr(text, "[error] ")) != NULL &&
	    (p = strstr(p, ": *")) != NULL && (p = strchr(p + 3, ' ')) != NULL)
		snprintf(r->lb_error, sizeof(r->lb_error), "%.*s",
		    (int)strcspn(p + 1, ",\n"), p + 1);
	free(text);
}

static void
figures(const struct lab *lab, struct result *r)
{
	const char *f = r->fetch != NULL ? r->fetch : "";
	const char *end = f + strlen(f);
	struct utsname u;

	json_str(f, "outcome", r->fetch_outcome, sizeof(r->fetch_outcome));
	r->verified = strstr(f, "\"verified\":true") != NULL ? 1
	    : strstr(f, "\"verified\":false") != NULL        ? 0
	                                                     : -1;
	r->client_bytes = json_u64(f, end, "received_bytes");
	r->seconds = json_num(f, end, "seconds");
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
	if (lab->sc.origin_raw) { /* a stream read for a while: no body */
		r->unsent = 0;
		r->complete = strcmp(r->fetch_outcome, "complete") == 0;
	}
	origin_figures(r);
	access_figures(r);
	dos_figures(lab, r);
	if (lab->sc.lb_kind != LAB_LB_SLUICE)
		r->peak_memory = lab->peak.mem;
	capture_figures(lab, r);
	lb_error_figures(lab, r);
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

/* The model's inputs are the scenario's and the proxy config's own
 * (plan_scenario_model, as `sluice plan SCENARIO` reads them), with the
 * client's goodput as this run measured it. */
static void
predict(const struct lab *lab, struct result *r)
{
	struct model_in in;

	if (lab->sc.lb_kind != LAB_LB_SLUICE)
		return; /* the model is of sluice's policies */
	model_defaults(&in);
	plan_scenario_model(&lab->sc, lab->cfg, lab->mode, &in);
	in.client_bps = client_goodput(lab);
	r->have_model = model_predict(&in, &r->mo) == 0;
	if (r->have_model)
		lab_scale_figures(lab, &in, r);
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

/* The balancer, the peaks the timeline kept, and the stories of part two:
 * the stall, the [dos] clients, the captures. */
static void
summary_lab2(FILE *f, const struct lab *lab, const struct result *r)
{
	const struct peaks *pk = &lab->peak;

	fprintf(f,
	    ",\"lb_kind\":\"%s\",\"lb_peak_rss_bytes\":%" PRIu64
	    ",\"lb_peak_memory_bytes\":%" PRIu64
	    ",\"lb_peak_spool_bytes\":%" PRIu64
	    ",\"origin_longest_zero_window_s\":%.1f"
	    ",\"client_longest_zero_window_s\":%.1f,\"lb_error\":",
	    lab_lb_kind_name(lab->sc.lb_kind), pk->rss, pk->mem, pk->spool,
	    pk->o_zero_longest, pk->c_zero_longest);
	json_string(f, r->lb_error);
	fprintf(f, ",\"stall\":");
	if (lab->sc.stall_for_ms != 0)
		fprintf(f, "{\"at_bytes\":%" PRIu64 ",\"for_s\":%.3f}",
		    lab->sc.stall_at, (double)lab->sc.stall_for_ms / 1000.0);
	else
		fputs("null", f);
	fprintf(f, ",\"dos\":");
	if (lab->sc.dos_clients != 0)
		fprintf(f,
		    "{\"clients\":%" PRIu64 ",\"freed\":%u,"
		    "\"freed_client_zwp_timeout\":%u,\"min_held_s\":%.1f,"
		    "\"max_held_s\":%.1f}",
		    lab->sc.dos_clients, r->dos_freed, r->dos_zwp, r->dos_min_s,
		    r->dos_max_s);
	else
		fputs("null", f);
	fprintf(f, ",\"capture\":");
	if (!lab->sc.capture) {
		fputs("null", f);
		return;
	}
	for (int i = 0; i < LAB_NLINKS; i++) {
		fprintf(f, "%s\"%s\":", i == 0 ? "{" : ",", lab_links[i].name);
		if (r->cap_ok[i])
			pcap_conn_json(f, &r->cap[i]);
		else
			fputs("null", f);
	}
	fputc('}', f);
}

static void
write_summary(FILE *f, const struct lab *lab, const struct result *r)
{
	summary_measured(f, lab, r);
	summary_predicted(f, r);
	lab_scale_summary(f, r);
	summary_lab2(f, lab, r);
	lab_walk_summary(f, r);
	fprintf(f, ",\"kernel\":");
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

	if (!proc_in_path("gnuplot")) {
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
	if (proc_try_run(lab->verbose, out, sizeof(out), "gnuplot", gp, NULL) !=
	    0) {
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
	if (lab->sc.origin_raw) {
		fprintf(f,
		    "%s: the client read %" PRIu64 " bytes of the origin's "
		    "stream in %.1f s (%s).\n",
		    lab->sc.name, r->client_bytes, r->seconds,
		    r->fetch_outcome[0] != '\0' ? r->fetch_outcome
		                                : "no answer");
		return;
	}
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
	char logged[300];

	if (lab->sc.lb_kind == LAB_LB_SLUICE)
		snprintf(logged, sizeof(logged),
		    "the proxy paused its upstream %.1f s, logged %s",
		    r->paused_s > 0 ? r->paused_s : 0,
		    r->proxy_outcome[0] != '\0' ? r->proxy_outcome : "nothing");
	else if (r->lb_error[0] != '\0')
		snprintf(logged, sizeof(logged), "%s's error log: \"%s\"",
		    lab_lb_kind_name(lab->sc.lb_kind), r->lb_error);
	else
		snprintf(logged, sizeof(logged), "%s logged no error",
		    lab_lb_kind_name(lab->sc.lb_kind));

	if (r->gave_up[0] != '\0')
		fprintf(f,
		    "  Rule that fired: the origin's %s (%s), after %.1f s "
		    "of zero window in all (%u probes); %s%s",
		    r->gave_up, rule, r->zero_window_s, r->probes, logged,
		    r->resumes > 0 ? "" : ".\n");
	else
		fprintf(f,
		    "  No give-up rule fired (the origin's: %s); it saw %.1f s "
		    "of zero window in all (%.1f s at the longest); %s%s",
		    rule, r->zero_window_s, lab->peak.o_zero_longest, logged,
		    r->resumes > 0 ? "" : ".\n");
	if (r->resumes > 0)
		fprintf(f, " and resumed %ld times with Range.\n", r->resumes);
}

static void
verdict_model(FILE *f, const struct lab *lab, const struct result *r)
{
	double diff;

	if (lab->sc.lb_kind != LAB_LB_SLUICE)
		return; /* the model is of sluice's policies */
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

/* nginx or HAProxy: what it held, and the setting that bounded it. */
static void
verdict_lb(FILE *f, const struct lab *lab)
{
	const struct peaks *pk = &lab->peak;
	char cap[64];
	bool dflt = false;

	if (lab->sc.lb_kind != LAB_LB_NGINX &&
	    lab->sc.lb_kind != LAB_LB_HAPROXY)
		return;
	fprintf(f,
	    "  %s held at most %.2f MiB in memory and %.2f MiB in temp "
	    "files (peak VmRSS %.1f MiB)",
	    lab_lb_kind_name(lab->sc.lb_kind), (double)pk->mem / MIB,
	    (double)pk->spool / MIB, (double)pk->rss / MIB);
	if (lab->sc.lb_kind == LAB_LB_NGINX &&
	    lab_lb_setting(&lab->sc, "proxy_max_temp_file_size", cap,
	        sizeof(cap), &dflt) == 0)
		fprintf(f,
		    "; nginx's temp-file cap, proxy_max_temp_file_size = %s%s, "
		    "%s",
		    cap, dflt ? " (its default)" : "",
		    pk->spool > 0 && pk->spool + 65536 >= lab_lb_size(cap)
		        ? "was reached: nginx then stops reading the origin "
		          "until the client has drained the file, and the "
		          "origin's window stays zero"
		        : "was not reached");
	else if (lab->sc.lb_kind == LAB_LB_HAPROXY &&
	    lab_lb_setting(&lab->sc, "tune.bufsize", cap, sizeof(cap), &dflt) ==
	        0)
		fprintf(f,
		    "; HAProxy keeps one buffer per direction (tune.bufsize = "
		    "%s%s) and reads the origin as the client drains",
		    cap, dflt ? ", its default" : "");
	fprintf(f, ".\n");
}

/* The probes an origin sends in w seconds of zero window from a first
 * interval t0 (doubling, at most 120 s apart: the kernel's RTO max). */
static unsigned
probes_in(double w, double t0)
{
	unsigned n = 0;
	double due = 0, step = t0;

	while (n < 64) {
		due += step;
		if (due > w)
			break;
		n++;
		step = step * 2 > 120 ? 120 : step * 2;
	}
	return n;
}

/*
 * The printer: the reader stopped; say what that cost and which setting,
 * had it been shorter, would have ended the download.  The origin side
 * uses the longest zero-window episode the timeline saw, the client side
 * the longest the proxy saw toward its client.
 */
static void
verdict_stall(FILE *f, const struct lab *lab)
{
	const struct peaks *pk = &lab->peak;
	uint64_t zwp = lab->cfg != NULL ? config_client_zwp_ms(lab->cfg) : 0;
	unsigned k;

	if (lab->sc.stall_for_ms == 0)
		return;
	k = probes_in(pk->o_zero_longest, 0.2);
	fprintf(f,
	    "  The stall: the client stopped reading for %.0f s after %" PRIu64
	    " bytes; the proxy saw its window at zero for %.1f s, the origin "
	    "saw a zero window for %.1f s at the longest.\n",
	    (double)lab->sc.stall_for_ms / 1000.0, lab->sc.stall_at,
	    pk->c_zero_longest, pk->o_zero_longest);
	fprintf(f,
	    "  It would have been killed by: an origin that gives up after "
	    "%u zero-window probes or fewer (from 200 ms, doubling: the "
	    "article's retry limit), or a send timeout "
	    "under %.0f s (nginx's default send_timeout, 60 s, %s)",
	    k, pk->o_zero_longest,
	    pk->o_zero_longest > 60 ? "would have" : "would not");
	if (lab->sc.lb_kind == LAB_LB_SLUICE)
		fprintf(f,
		    "; or the proxy's client.zwp_timeout under %.0f s (it is "
		    "%.0f s)",
		    pk->c_zero_longest, (double)zwp / 1000.0);
	fprintf(f, ".\n");
}

static void
verdict_dos(FILE *f, const struct lab *lab, const struct result *r)
{
	if (lab->sc.dos_clients == 0)
		return;
	fprintf(f,
	    "  DoS: %" PRIu64 " clients held a zero window; %s freed %u of "
	    "them",
	    lab->sc.dos_clients, lab_lb_kind_name(lab->sc.lb_kind),
	    r->dos_freed);
	if (r->dos_freed > 0)
		fprintf(f,
		    ", each after %.1f to %.1f s (%u closed as "
		    "client_zwp_timeout)",
		    r->dos_min_s, r->dos_max_s, r->dos_zwp);
	fprintf(f, "; the honest client was %s.\n",
	    r->complete ? "served in full" : "NOT served in full");
}

/* What the captures show: per link the receiver's zero windows and the
 * sender's probes; the window table of the exercises. */
static void
verdict_capture(FILE *f, const struct lab *lab, const struct result *r)
{
	if (!lab->sc.capture || lab->mode != LAB_MODE_NETNS)
		return;
	for (int i = 0; i < LAB_NLINKS; i++) {
		const struct pcap_conn *c = &r->cap[i];

		if (!r->cap_ok[i]) {
			fprintf(f, "  Capture %s: %s.\n", lab_links[i].file,
			    r->cap_err[i][0] != '\0' ? r->cap_err[i]
			                             : "not read");
			continue;
		}
		fprintf(f,
		    "  Capture %s: %zu packets; %" PRIu64 " data bytes; "
		    "the receiver's window was zero for %.1f s",
		    lab_links[i].file, r->cap_packets[i], c->data_bytes,
		    c->zero_window_s);
		if (c->first_zero_ack >= 0)
			fprintf(f, ", first after %" PRId64 " bytes at %.1f s",
			    c->first_zero_ack - 1, c->first_zero_t);
		fprintf(f, "; %zu zero-window probes%s%s.\n", c->nprobes,
		    c->reset_by_server ? "; RST from the sender" : "",
		    c->reset_by_client ? "; RST from the receiver" : "");
	}
	if (lab->sc.windows != 0 && r->cap_ok[1]) {
		fprintf(f,
		    "\n  The client's advertised windows (lb-client.pcap):\n");
		pcap_print_windows(f, &r->cap[1], (size_t)lab->sc.windows,
		    lab->sc.article_windows);
		if (r->cap[1].nprobes > 0) {
			fprintf(f, "\n  Zero-window probes:\n");
			pcap_print_probes(f, &r->cap[1]);
		}
	}
}

static void
verdict(const struct lab *lab, const struct result *r)
{
	FILE *f = lab->json ? stderr : stdout;

	verdict_what(f, lab, r);
	if (!lab->sc.origin_raw)
		verdict_rule(f, lab, r);
	verdict_lb(f, lab);
	verdict_stall(f, lab);
	verdict_dos(f, lab, r);
	verdict_model(f, lab, r);
	lab_scale_verdict(f, r);
	verdict_capture(f, lab, r);
	lab_walk_verdict(f, lab, r);
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
	lab_walk_figures(lab, &r);
	predict(lab, &r);
	plot(lab, &r);
	lab_walk_plot(lab, &r);
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
	for (int i = 0; i < LAB_NLINKS; i++)
		if (r.cap_ok[i])
			pcap_conn_free(&r.cap[i]);
	lab_walk_free(&r);
	return rc;
}
