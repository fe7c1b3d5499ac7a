/*
 * bench_run: the sweep's runs (bench_int.h), up to --jobs labs at a time.
 * A run is `/proc/self/exe lab scenario.ini --json --out DIR` as a child
 * (fork/exec, no shell: proc.h); each lab makes its own namespaces
 * (sluice-LABPID-*), so concurrent runs share no namespace, veth,
 * address or port.  Its summary.json is read back; a lab that could not
 * run (exit 1, no summary) is started once more, then its row's outcome
 * is `error` with the last line of its stderr, never `truncated`.
 * SIGINT, SIGTERM and SIGHUP are passed to every lab, which tears its
 * namespaces and processes down; the bench waits for all of them.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "lab/bench.h"
#include "lab/bench_int.h"
#include "lab/proc.h"

/* ---- the runs --------------------------------------------------------- */

/* The lab children, for the signal handler to pass SIGINT/SIGTERM/SIGHUP
 * on (a process-wide fact, not per-run state): one slot per job. */
static volatile sig_atomic_t bench_signal;
static volatile pid_t bench_children[BENCH_MAX_JOBS];

static void
bench_on_signal(int sig)
{
	bench_signal = sig;
	for (size_t i = 0; i < BENCH_MAX_JOBS; i++)
		if (bench_children[i] > 0) /* each lab tears down on it */
			kill(bench_children[i], sig);
}

void
bench_note(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	if (b->nnotes == sizeof(b->notes) / sizeof(b->notes[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(b->notes[b->nnotes], sizeof(b->notes[0]), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%ssluice bench: %s\n", b->tty ? "\r\033[K" : "",
	    b->notes[b->nnotes++]);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "2m10s", "45s". */
static const char *
fmt_eta(double s, char *buf, size_t len)
{
	long n = lround(s);

	if (n >= 60)
		snprintf(buf, len, "%ldm%02lds", n / 60, n % 60);
	else
		snprintf(buf, len, "%lds", n);
	return buf;
}

/* The sweep so far: done/total, elapsed, the estimated remaining time
 * (the throughput so far over the runs left) and the outcomes. */
static void
progress_state(const struct bench *b, size_t running, double elapsed)
{
	size_t ncomplete = 0, ntrunc = 0, nerr = 0;
	char el[32], eta[32] = "?";

	for (size_t k = 0; k < b->nruns; k++) {
		if (!b->runs[k].done)
			continue;
		if (strcmp(b->runs[k].outcome, "complete") == 0)
			ncomplete++;
		else if (strcmp(b->runs[k].outcome, "truncated") == 0)
			ntrunc++;
		else
			nerr++;
	}
	if (b->ndone > 0)
		fmt_eta(
		    elapsed / (double)b->ndone * (double)(b->nruns - b->ndone),
		    eta, sizeof(eta));
	fprintf(stderr,
	    "%zu/%zu done, %zu running, %s elapsed, ETA %s; complete %zu, "
	    "truncated %zu, error %zu",
	    b->ndone, b->nruns, running, fmt_eta(elapsed, el, sizeof(el)), eta,
	    ncomplete, ntrunc, nerr);
}

/* Progress: on a terminal one line rewritten, else a line per finished
 * run (a log keeps them all). */
static void
progress(
    const struct bench *b, const struct run *r, size_t running, double elapsed)
{
	char label[400];

	if (b->tty) {
		fputs("\r\033[K", stderr);
		progress_state(b, running, elapsed);
		return;
	}
	if (r == NULL)
		return;
	bench_combo_label(&b->sw, r->combo, label, sizeof(label), ' ');
	fprintf(stderr, "run %zu/%zu %s", r->index + 1, b->nruns, label);
	if (b->sw.repeat > 1)
		fprintf(stderr, " (repeat %zu)", r->rep + 1);
	if (strcmp(r->outcome, "error") == 0)
		fprintf(
		    stderr, ": error after %.1f s (%s); ", r->wall_s, r->error);
	else
		fprintf(stderr, ": %s %.1f s; ", r->outcome, r->finish_s);
	progress_state(b, running, elapsed);
	fputc('\n', stderr);
}

/* Starts `sluice lab SCENARIO --json --out DIR` with stdout to /dev/null
 * and stderr to DIR/lab.stderr; its pid, or a negative errno. */
static pid_t
start_lab_child(struct bench *b, const char *scen, const char *dir)
{
	char log[PATH_MAX];
	const char *argv[8] = {
	    "sluice", "lab", scen, "--json", "--out", dir, NULL, NULL};
	struct proc_child c = {.exe = "/proc/self/exe",
	    .in = "/dev/null",
	    .out = "/dev/null",
	    .err = log,
	    .sigint_dfl = true,
	    /* A bench killed outright (SIGKILL, OOM) still has its labs
	     * tear their namespaces and processes down. */
	    .pdeathsig = SIGTERM};

	if (b->verbose)
		argv[6] = "-v";
	snprintf(log, sizeof(log), "%s/lab.stderr", dir);
	return proc_start(&c, (char *const *)argv);
}

bool
bench_last_line(const char *path, char *buf, size_t len)
{
	char *text, *end, *bol;
	bool found = false;

	if ((text = bench_read_text(path)) == NULL)
		return false;
	end = text + strlen(text);
	while (end > text && isspace((unsigned char)end[-1]))
		*--end = '\0';
	bol = strrchr(text, '\n');
	bol = bol != NULL ? bol + 1 : text;
	while (*bol == ' ' || *bol == '\t')
		bol++;
	if (*bol != '\0') {
		snprintf(buf, len, "%s", bol);
		found = true;
	}
	for (char *p = buf; found && *p != '\0'; p++)
		if (*p == '\r' || *p == '\033')
			*p = ' ';
	free(text);
	return found;
}

/* The last line of the lab's stderr: the reason of an error. */
static void
stderr_tail(const char *dir, char *buf, size_t len)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/lab.stderr", dir);
	if (!bench_last_line(path, buf, len))
		snprintf(buf, len, "no message from the lab");
}

/* The longest duration_s among the origin's connections: how long the
 * origin held the download (its "origin" array of JSON lines). */
static double
origin_hold(const char *s)
{
	const char *p = strstr(s, "\"origin\":[");
	const char *end = p != NULL ? strstr(p, "],\"access\"") : NULL;
	double best = 0, v;

	if (p == NULL)
		return 0;
	if (end == NULL)
		end = s + strlen(s);
	while ((p = strstr(p, "\"duration_s\":")) != NULL && p < end) {
		v = json_num(p, end, "duration_s");
		best = v > best ? v : best;
		p++;
	}
	return best;
}

bool
bench_parse_summary(struct run *r, const char *s)
{
	/* The top-level fields come before the peers' nested JSON. */
	const char *end = strstr(s, "\"capture\":");

	end = end != NULL ? end : s + strlen(s);
	json_str(s, "outcome", r->outcome, sizeof(r->outcome));
	r->client_bytes = json_u64(s, end, "client_bytes");
	r->unsent_bytes = json_u64(s, end, "unsent_bytes");
	r->finish_s = json_num(s, end, "seconds");
	r->zw_s = json_num(s, end, "zero_window_s");
	r->longest_zw_s = json_num(s, end, "origin_longest_zero_window_s");
	r->rss = json_u64(s, end, "lb_peak_rss_bytes");
	r->mem = json_u64(s, end, "lb_peak_memory_bytes");
	r->proxy_mem = json_u64(s, end, "peak_memory_bytes");
	r->spool = json_u64(s, end, "lb_peak_spool_bytes");
	json_str(s, "predicted_outcome", r->predicted, sizeof(r->predicted));
	r->predicted_unsent =
	    (int64_t)json_num(s, end, "predicted_unsent_bytes");
	r->hold_s = origin_hold(s);
	return strcmp(r->outcome, "complete") == 0 ||
	    strcmp(r->outcome, "truncated") == 0;
}

/* The run's figures from its lab's summary.json at path; false when there
 * is none or it has no outcome. */
static bool
read_summary(struct run *r, const char *path)
{
	char *s = bench_read_text(path);
	bool ok;

	if (s == NULL)
		return false;
	ok = bench_parse_summary(r, s);
	free(s);
	return ok;
}

/* Writes the run's scenario (on its first attempt) and starts its lab:
 * the lab's pid, or -errno when the run could not be set up. */
static pid_t
start_run(struct bench *b, struct run *r)
{
	char scen[PATH_MAX], old[PATH_MAX], log[PATH_MAX], *text;
	FILE *f;
	pid_t pid;

	snprintf(scen, sizeof(scen), "%s/scenario.ini", r->dir);
	if (r->attempts == 0) {
		text = bench_scenario_text(&b->sw, r->combo);
		if (text == NULL || mkdir(r->dir, 0755) == -1 ||
		    (f = fopen(scen, "we")) == NULL) {
			pid = text == NULL ? -ENOMEM : -errno;
			free(text);
			return pid;
		}
		fputs(text, f);
		fclose(f);
		free(text);
	} else { /* the first attempt's stderr stays, as lab.stderr.1 */
		snprintf(log, sizeof(log), "%s/lab.stderr", r->dir);
		snprintf(old, sizeof(old), "%s/lab.stderr.1", r->dir);
		rename(log, old);
	}
	r->attempts++;
	r->wall_s = now_s();
	if ((pid = start_lab_child(b, scen, r->dir)) > 0)
		r->lab_pid = pid;
	return pid;
}

/* A run's lab has exited with rc: its figures from its summary, or an
 * error with the last line of its stderr.  True when the run is done,
 * false when its setup failed a first time (it is started again). */
static bool
finish_run(struct bench *b, struct run *r, int rc)
{
	char path[PATH_MAX];

	r->lab_rc = rc;
	r->wall_s = now_s() - r->wall_s;
	r->predicted_unsent = -1;
	snprintf(path, sizeof(path), "%s/summary.json", r->dir);
	if (rc == 0 && read_summary(r, path))
		return true;
	snprintf(r->outcome, sizeof(r->outcome), "error");
	stderr_tail(r->dir, r->error, sizeof(r->error));
	if (rc == 0)
		snprintf(
		    r->error, sizeof(r->error), "the lab wrote no summary");
	if (rc >= 128 || bench_signal != 0) {
		snprintf(r->error, sizeof(r->error), "stopped by signal %d",
		    rc >= 128 ? rc - 128 : (int)bench_signal);
		return true;
	}
	if (r->attempts < 2) {
		bench_note(b, "run %zu: %s; starting it again", r->index + 1,
		    r->error);
		return false;
	}
	return true;
}

/* Whether a namespace of the lab child pid is left (it cleans up; a
 * leftover would make the next run's start less than fresh).  Other labs'
 * namespaces (sluice-OTHERPID-*) are theirs. */
static bool
namespaces_left(pid_t pid)
{
	DIR *d = opendir("/run/netns");
	struct dirent *e;
	char prefix[32];
	bool left = false;

	snprintf(prefix, sizeof(prefix), "sluice-%ld-", (long)pid);
	while (d != NULL && (e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			left = true;
	if (d != NULL)
		closedir(d);
	return left;
}

/* Passes a signal the handler may have raced (a lab started after it
 * ran) on to every lab. */
static void
forward_signal(void)
{
	for (size_t i = 0; i < BENCH_MAX_JOBS; i++)
		if (bench_signal != 0 && bench_children[i] > 0)
			kill(bench_children[i], bench_signal);
}

/* After a signal: the runs done first, in the sweep's order (their run
 * numbers kept), for the report. */
static void
keep_done_runs(struct bench *b)
{
	size_t n = 0;

	for (size_t k = 0; k < b->nruns; k++)
		if (b->runs[k].done) {
			struct run tmp = b->runs[n];

			b->runs[n++] = b->runs[k];
			b->runs[k] = tmp;
		}
	b->ndone = n;
}

/*
 * Runs every combination, repeats together, up to b->jobs labs at a time
 * (each lab makes its own namespaces, sluice-LABPID-*: names, veths,
 * addresses and ports inside them are its own).  The runs are started in
 * the sweep's order and stay there.  0; 1 when a run could not be set up
 * (the runs started are waited for); 128+N when a signal stopped the
 * sweep (every lab is passed the signal and tears down; the runs done
 * so far are kept).
 */
int
bench_run_all(struct bench *b)
{
	double t0 = now_s();
	size_t next = 0, running = 0, slot;
	struct run *slots[BENCH_MAX_JOBS] = {0};
	int rc = 0, status;
	pid_t pid;

	if (b->jobs > 1 || !b->tty)
		fprintf(stderr, "sluice bench: %zu runs, %zu at a time\n",
		    b->nruns, b->jobs);
	progress(b, NULL, 0, 0);
	for (;;) {
		while (bench_signal == 0 && rc == 0 && next < b->nruns &&
		    running < b->jobs) {
			for (slot = 0; slots[slot] != NULL; slot++)
				;
			if ((pid = start_run(b, &b->runs[next])) < 0) {
				fprintf(stderr, "\nsluice bench: %s: %s\n",
				    b->runs[next].dir, strerror(-pid));
				rc = 1;
				break;
			}
			bench_children[slot] = pid;
			slots[slot] = &b->runs[next++];
			running++;
		}
		if (running == 0)
			break;
		if ((pid = waitpid(-1, &status, 0)) < 0) {
			if (errno != EINTR)
				break;
			forward_signal();
			continue;
		}
		for (slot = 0; slot < b->jobs && bench_children[slot] != pid;
		     slot++)
			;
		if (slot == b->jobs)
			continue; /* not a lab of ours */
		bench_children[slot] = 0;
		struct run *r = slots[slot];
		if (!finish_run(b, r, proc_exit_code(status))) {
			if ((pid = start_run(b, r)) > 0) {
				bench_children[slot] = pid;
				continue;
			}
			snprintf(r->error, sizeof(r->error),
			    "could not start the lab again: %s",
			    strerror(-pid));
		}
		slots[slot] = NULL;
		running--;
		if (bench_signal == 0 || r->lab_rc < 128) {
			r->done = true;
			b->ndone++;
		}
		if (namespaces_left(r->lab_pid))
			bench_note(b,
			    "run %zu: a sluice-* namespace was left "
			    "in /run/netns",
			    r->index + 1);
		progress(b, r, running, now_s() - t0);
	}
	if (b->tty)
		fprintf(stderr, "\r\033[K");
	if (bench_signal != 0 || b->ndone < b->nruns) {
		keep_done_runs(b);
		fprintf(stderr, "sluice bench: stopped after %zu of %zu runs\n",
		    b->ndone, b->nruns);
		return bench_signal != 0 ? 128 + bench_signal : 1;
	}
	fprintf(stderr, "sluice bench: %zu runs in %.0f s\n", b->nruns,
	    now_s() - t0);
	return rc;
}

void
bench_catch_signals(void)
{
	struct sigaction sa = {.sa_handler = bench_on_signal};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}
