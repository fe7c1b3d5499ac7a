/*
 * lab_walk: [lab] walk = on (conf/scenarios/figure2.ini): the article's
 * Figure 2 as the textbook walks it (model/walk.h) beside what the capture
 * of the lb-client link shows of the same exchange on this kernel; then
 * where Linux differs, in measured numbers; then the plot figure2.png and
 * the "walk" object of summary.json.
 *
 * Both sides are put on the article's clock: T = measured seconds /
 * time_scale, from the first data segment (the capture's first ack of
 * data; fetch's first read, which returns on that segment, for the reads).
 * The walk runs on the scenario's own (scaled) figures: its buffer is the
 * client's window_clamp, the sender the origin's drip/every, the reader the
 * client's read/interval, the total the origin's truncate_at.
 *
 * The kernel's side is read from the client's packets (pcap.h): an ack
 * that moves is a send of that many bytes and the window it leaves; a
 * packet that answers a zero-window probe is that probe's answer; any
 * other change of window is a window update the receiver sent by itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "model/walk.h"
#include "lab/lab_int.h"
#include "lab/lab_walk.h"

#define COL 40 /* the textbook column's width */
/* A kernel event this close before a bucket's start (in T) belongs to it:
 * the sender's clock and the capture's differ by jitter. */
#define SLACK 0.1

enum kev {
	K_SEND,   /* an ack that moved: bytes arrived */
	K_PROBE,  /* a zero-window probe and its answer */
	K_UPDATE, /* a window update the receiver sent by itself */
	K_READ,   /* a read of the client (fetch.json) */
};

struct kevent {
	double T; /* the article's clock */
	enum kev kind;
	uint64_t bytes;
	int64_t win; /* the window after it; a probe's answer; -1: none */
};

struct lab_walk {
	struct walk_in in;
	struct walk_out out;
	int ok;        /* the walk ran */
	double scale;  /* [lab] time_scale */
	double period; /* the sender's, in T */
	/* the kernel's side */
	struct kevent ev[512];
	size_t nev;
	int measured;       /* the capture had the connection */
	double t_first;     /* capture seconds of the first data ack */
	double T_zero;      /* the first window 0; -1: none */
	double T_reopen;    /* the first window above 0 after it; -1 */
	int64_t reopen_win; /* its size */
	bool reopen_by_probe;
	uint64_t syn_win, max_win, multiple; /* multiple: gcd of windows */
	double T_end;                        /* fetch's end; -1 */
	int clamp_at_end;                    /* fetch.json; -1 */
	char plot[PATH_MAX + 32];            /* the png, or why none */
	bool plotted;
};

static double
T_of(const struct lab_walk *w, double t)
{
	return (t - w->t_first) / w->scale;
}

static void
add(struct lab_walk *w, double T, enum kev kind, uint64_t bytes, int64_t win)
{
	if (w->nev < sizeof(w->ev) / sizeof(w->ev[0]))
		w->ev[w->nev++] = (struct kevent){T, kind, bytes, win};
}

static uint64_t
gcd(uint64_t a, uint64_t b)
{
	while (b != 0) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* Does a probe fall in (t0, t1]: is the packet at t1 its answer? */
static bool
answers_probe(const struct pcap_conn *c, double t0, double t1)
{
	for (size_t i = 0; i < c->nprobes; i++)
		if (c->probes[i].t > t0 && c->probes[i].t <= t1)
			return true;
	return false;
}

/* The windows: sends, updates, the zero window and its reopening. */
static void
kernel_windows(struct lab_walk *w, const struct pcap_conn *c)
{
	const struct pcap_window *p = c->windows;
	uint64_t prev_ack = p[0].ack, prev_win = p[0].bytes;

	w->syn_win = p[0].bytes;
	for (size_t i = 1; i < c->nwindows; i++) {
		double T = T_of(w, p[i].t);
		uint64_t moved = p[i].ack - prev_ack;

		if (p[i].ack - 1 > w->in.total && moved > 0)
			moved--; /* the FIN's sequence number */
		if (p[i].bytes > w->max_win)
			w->max_win = p[i].bytes;
		if (p[i].bytes > 0)
			w->multiple = gcd(w->multiple, p[i].bytes);
		if (p[i].bytes == 0 && w->T_zero < 0)
			w->T_zero = T;
		if (p[i].bytes > 0 && w->T_zero >= 0 && w->T_reopen < 0) {
			w->T_reopen = T;
			w->reopen_win = (int64_t)p[i].bytes;
			w->reopen_by_probe =
			    answers_probe(c, p[i - 1].t, p[i].t);
		}
		if (moved > 0)
			add(w, T, K_SEND, moved, (int64_t)p[i].bytes);
		else if (p[i].bytes != prev_win &&
		    !answers_probe(c, p[i - 1].t, p[i].t))
			add(w, T, K_UPDATE, 0, (int64_t)p[i].bytes);
		prev_ack = p[i].ack;
		prev_win = p[i].bytes;
	}
}

/* fetch.json's reads, [[s, bytes], ...], on the T clock of their first. */
static void
kernel_reads(struct lab_walk *w, const char *fetch)
{
	const char *p = fetch != NULL ? strstr(fetch, "\"reads\":[") : NULL;
	double t, t0 = -1;
	unsigned long long n;
	int used;

	if (p == NULL)
		return;
	p += strlen("\"reads\":[");
	while (sscanf(p, "[%lf,%llu]%n", &t, &n, &used) == 2) {
		if (t0 < 0)
			t0 = t;
		add(w, (t - t0) / w->scale, K_READ, n, -1);
		p += used;
		if (*p == ',')
			p++;
	}
}

static int
by_time(const void *a, const void *b)
{
	const struct kevent *x = a, *y = b;

	return x->T < y->T ? -1 : x->T > y->T;
}

static void
kernel_side(struct lab_walk *w, const struct lab *lab, const struct result *r)
{
	const struct pcap_conn *c = &r->cap[1];
	double t;

	w->T_zero = w->T_reopen = w->T_end = -1;
	w->clamp_at_end = -1;
	if (!r->cap_ok[1] || c->nwindows < 2)
		return;
	w->measured = 1;
	w->t_first = c->windows[1].t;
	for (size_t i = 1; i < c->nwindows; i++)
		if (c->windows[i].ack > c->windows[0].ack) {
			w->t_first = c->windows[i].t;
			break;
		}
	kernel_windows(w, c);
	for (size_t i = 0; i < c->nprobes; i++)
		add(w, T_of(w, c->probes[i].t), K_PROBE, 0,
		    c->probes[i].answer);
	kernel_reads(w, r->fetch);
	qsort(w->ev, w->nev, sizeof(w->ev[0]), by_time);
	if (r->fetch != NULL) {
		const char *end = r->fetch + strlen(r->fetch);

		/* fetch's clock starts before the SYN, the capture's at it:
		 * a few milliseconds apart */
		if ((t = json_num(r->fetch, end, "seconds")) >= 0)
			w->T_end = T_of(w, t);
		w->clamp_at_end =
		    (int)json_num(r->fetch, end, "window_clamp_at_end");
	}
	(void)lab;
}

void
lab_walk_figures(const struct lab *lab, struct result *r)
{
	const struct lab_scenario *sc = &lab->sc;
	struct lab_walk *w;

	if (!sc->walk || (w = calloc(1, sizeof(*w))) == NULL)
		return;
	r->walk = w;
	w->scale = sc->time_scale;
	w->in = (struct walk_in){
	    .buffer = sc->client_window_clamp,
	    .send_bytes = sc->origin_drip,
	    .send_ms = sc->origin_every_ms,
	    .read_bytes = sc->client_read,
	    .read_ms = sc->client_interval_ms,
	    .total = sc->origin_truncate_at,
	};
	w->period = (double)sc->origin_every_ms / 1000 / w->scale;
	w->ok = walk_run(&w->in, &w->out) == 0;
	kernel_side(w, lab, r);
}

void
lab_walk_free(struct result *r)
{
	if (r->walk == NULL)
		return;
	walk_free(&r->walk->out);
	free(r->walk);
	r->walk = NULL;
}

/* ---- the table ---------------------------------------------------------- */

static double
step_T(const struct lab_walk *w, const struct walk_step *s)
{
	return (double)s->t_ms / 1000 / w->scale;
}

/* The textbook's sends and probes in [lo, hi), with the acks' rwnd. */
static void
textbook_cell(
    const struct lab_walk *w, double lo, double hi, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; w->ok && i < w->out.n; i++) {
		const struct walk_step *s = &w->out.steps[i];
		double T = step_T(w, s);
		const char *sep = used ? ", " : "";
		int n = 0;

		if (T < lo - 1e-9 || T >= hi - 1e-9 ||
		    (s->ev != WALK_READ && i + 1 == w->out.n))
			continue;
		if (s->ev == WALK_SEND)
			n = snprintf(buf + used, len - used,
			    "%ssend %" PRIu64 " (%" PRIu64 ")", sep, s->bytes,
			    s[1].rwnd);
		else if (s->ev == WALK_PROBE)
			n = snprintf(buf + used, len - used,
			    "%sprobe (%" PRIu64 ")", sep, s[1].rwnd);
		else if (s->ev == WALK_READ)
			n = snprintf(buf + used, len - used,
			    "%sread %" PRIu64 " (%" PRIu64 "%s)", sep, s->bytes,
			    s->rwnd, s->announced ? "" : " unsaid");
		if (n > 0 && (size_t)n < len - used)
			used += (size_t)n;
	}
}

/* The kernel's sends, reads, probes and updates in [lo, hi). */
static void
kernel_cell(const struct lab_walk *w, double lo, double hi, bool first,
    char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < w->nev; i++) {
		const struct kevent *e = &w->ev[i];
		const char *sep = used ? ", " : "";
		char a[24];
		int n;

		if ((e->T + SLACK < lo && !first) || e->T + SLACK >= hi)
			continue;
		if (e->win >= 0)
			snprintf(a, sizeof(a), "%" PRId64, e->win);
		else
			snprintf(a, sizeof(a), "unanswered");
		if (e->kind == K_SEND)
			n = snprintf(buf + used, len - used,
			    "%sT%.1f send %" PRIu64 " (%s)", sep, e->T,
			    e->bytes, a);
		else if (e->kind == K_READ)
			n = snprintf(buf + used, len - used,
			    "%sT%.1f read %" PRIu64, sep, e->T, e->bytes);
		else
			n = snprintf(buf + used, len - used, "%sT%.1f %s (%s)",
			    sep, e->T, e->kind == K_PROBE ? "probe" : "update",
			    a);
		if (n > 0 && (size_t)n < len - used)
			used += (size_t)n;
	}
}

static void
print_table(FILE *f, const struct lab_walk *w)
{
	double last = 0;
	char tb[512], kb[1024], t[16];

	if (w->ok)
		last = step_T(w, &w->out.steps[w->out.n - 1]);
	for (size_t i = 0; i < w->nev; i++)
		if (w->ev[i].T > last)
			last = w->ev[i].T;
	fprintf(f, "  %6s  %-*s  %s\n", "T", COL,
	    "textbook (sluice plan --walk)",
	    "Linux (lb-client.pcap, fetch.json's reads)");
	fprintf(f, "  %6s  %-*s  %s\n", "", COL, "(rwnd after each)",
	    "(the window after each; a probe's answer)");
	for (unsigned k = 0; k * w->period <= last && k < 1000; k++) {
		double lo = k * w->period, hi = lo + w->period;

		textbook_cell(w, lo, hi, tb, sizeof(tb));
		kernel_cell(w, lo, hi, k == 0, kb, sizeof(kb));
		if (tb[0] == '\0' && kb[0] == '\0')
			continue;
		snprintf(t, sizeof(t), "T%g", lo);
		fprintf(f, "  %6s  %-*s  %s\n", t, COL, tb,
		    kb[0] != '\0' ? kb : "-");
	}
}

/* ---- where Linux differs ------------------------------------------------ */

/* The bytes of kind k in the kernel's events with lo < T <= hi. */
static uint64_t
kernel_bytes(const struct lab_walk *w, enum kev k, double lo, double hi)
{
	uint64_t n = 0;

	for (size_t i = 0; i < w->nev; i++)
		if (w->ev[i].kind == k && w->ev[i].T > lo && w->ev[i].T <= hi)
			n += w->ev[i].bytes;
	return n;
}

static void
differ_zero(FILE *f, const struct lab_walk *w)
{
	uint64_t in, read;

	fprintf(f,
	    "  Zero window: the textbook at T%g with %" PRIu64 " bytes "
	    "unread",
	    w->out.first_zero_ms / 1000.0 / w->scale, w->in.buffer);
	if (w->T_zero < 0) {
		fprintf(f, "; Linux never (its window never reached 0).\n");
		return;
	}
	in = kernel_bytes(w, K_SEND, -1e9, w->T_zero + SLACK);
	read = kernel_bytes(w, K_READ, -1e9, w->T_zero + SLACK);
	fprintf(f,
	    "; Linux at T%.1f (%.2f s measured), after %" PRIu64
	    " bytes of which the client had read %" PRIu64 ": %" PRIu64
	    " unread.\n",
	    w->T_zero, w->T_zero * w->scale, in, read, in - read);
}

static void
differ_rounding(FILE *f, const struct lab_walk *w)
{
	fprintf(f,
	    "  Window sizes: the textbook advertises the bytes free (3800, "
	    "2800, ... in the article); Linux advertised whole multiples of "
	    "%" PRIu64 " bytes (the segment size it measured: it rounds the "
	    "free space down to it), at most %" PRIu64
	    "; its first window, the handshake's, was %" PRIu64
	    " (the clamp %" PRIu64 " rounded down to whole 1460-byte "
	    "segments)",
	    w->multiple, w->max_win, w->syn_win, w->in.buffer);
	if (w->clamp_at_end >= 0)
		fprintf(f,
		    "; the kernel's clamp was %d at the end (it sets it again "
		    "from the receive buffer once data flows: the receive "
		    "buffer holds the window)",
		    w->clamp_at_end);
	fprintf(f, ".\n");
}

static void
differ_probes(FILE *f, const struct lab_walk *w, const struct pcap_conn *c)
{
	size_t k = 0;

	fprintf(f,
	    "  Probes: the textbook probes at the sender's send times, every "
	    "%g s",
	    w->period);
	for (size_t i = 1, j = 0; i < w->out.n; i++)
		if (w->out.steps[i - 1].ev == WALK_PROBE)
			fprintf(f, "%s T%g (%" PRIu64 ")", j++ ? "," : ":",
			    step_T(w, &w->out.steps[i]), w->out.steps[i].rwnd);
	fprintf(f, "; Linux sent %zu", c->nprobes);
	for (size_t i = 0; i < c->nprobes; i++) {
		const struct pcap_probe *p = &c->probes[i];

		if (p->answer > 0)
			k++;
		fprintf(f, "%s T%.1f (%s", i == 0 ? ":" : ",", T_of(w, p->t),
		    p->answer < 0 ? "unanswered" : "");
		if (p->answer >= 0)
			fprintf(f, "%" PRId64, p->answer);
		fprintf(f, ")");
	}
	if (c->nprobes > 0 && w->T_zero >= 0) {
		/* the origin writes at k periods from T0: its first write into
		 * the closed window arms the probe timer */
		double next = ceil((w->T_zero + SLACK) / w->period) * w->period;

		fprintf(f,
		    "; the first %.3f s (measured) after the origin's next "
		    "write at T%g, one retransmission timeout",
		    T_of(w, c->probes[0].t) * w->scale - next * w->scale, next);
	}
	if (c->nprobes > 2)
		fprintf(f, ", then %s, %.3f s to %.3f s apart",
		    pcap_probes_backoff(c) ? "doubling (exponential backoff)"
		                           : "at intervals that did not double",
		    c->probes[1].interval, c->probes[c->nprobes - 1].interval);
	if (c->nprobes > 0)
		fprintf(f,
		    ": the kernel's timers, which time_scale does not scale "
		    "(at time_scale %g they come %g times as often on the "
		    "article's clock)",
		    w->scale, 1 / w->scale);
	fprintf(f, "; %zu answered with an open window.\n", k);
}

static void
differ_reopen(FILE *f, const struct lab_walk *w)
{
	if (w->T_zero < 0)
		return;
	fprintf(f,
	    "  Reopening: in the textbook the probe at T40 finds 800 bytes "
	    "free (the read at T40) and the sender fills them at once; ");
	if (w->T_reopen < 0) {
		fprintf(f, "Linux's window never reopened in the capture.\n");
		return;
	}
	fprintf(f,
	    "Linux kept the window at 0 while the client read %" PRIu64
	    " bytes, and opened it to %" PRId64 " at T%.1f %s",
	    kernel_bytes(w, K_READ, w->T_zero + SLACK, w->T_reopen - SLACK),
	    w->reopen_win, w->T_reopen,
	    w->reopen_by_probe ? "in a probe's answer"
	                       : "in a window update of its own (the "
	                         "'duplicate ack' the article's receiver "
	                         "cannot send)");
	fprintf(f,
	    ": its window is the free memory of the receive buffer, counted "
	    "in the buffers that hold the segments (arriving segments are "
	    "coalesced; a buffer's memory is freed once it is read to its "
	    "end), rounded down to whole segments and never less than one "
	    "(receiver-side silly window avoidance, RFC 1122 4.2.3.3).\n");
}

/* When the client's reads reached total bytes (fetch.json); -1. */
static double
kernel_all_read(const struct lab_walk *w)
{
	uint64_t n = 0;

	for (size_t i = 0; i < w->nev; i++)
		if (w->ev[i].kind == K_READ &&
		    (n += w->ev[i].bytes) >= w->in.total)
			return w->ev[i].T;
	return -1;
}

static void
differ_end(FILE *f, const struct lab_walk *w, const struct result *r)
{
	double T = kernel_all_read(w);

	fprintf(f,
	    "  All read: the textbook's %" PRIu64 " bytes at T%g; the "
	    "client had %" PRIu64 " bytes",
	    w->in.total, w->out.all_read_ms / 1000.0 / w->scale,
	    r->client_bytes);
	if (T >= 0)
		fprintf(f, ", its last read at T%.1f", T);
	if (w->T_end >= 0)
		fprintf(f,
		    ", and saw the stream end at T%.1f (%.1f s measured: "
		    "the read after)",
		    w->T_end, w->T_end * w->scale);
	fprintf(f, ".\n");
}

void
lab_walk_verdict(FILE *f, const struct lab *lab, const struct result *r)
{
	const struct lab_walk *w = r->walk;

	if (w == NULL)
		return;
	fprintf(f,
	    "\n  The article's Figure 2, step by step: the textbook beside "
	    "this kernel (T = measured s / %g, from the first data "
	    "segment):\n",
	    w->scale);
	if (!w->ok) {
		fprintf(f, "  (the walk could not run on these figures)\n");
		return;
	}
	if (!w->measured) {
		fprintf(f, "  (no capture of lb-client: capture = on)\n");
		return;
	}
	print_table(f, w);
	fprintf(f, "  Where Linux differs (%s):\n", r->kernel);
	differ_zero(f, w);
	differ_rounding(f, w);
	differ_probes(f, w, &r->cap[1]);
	differ_reopen(f, w);
	differ_end(f, w, r);
	fprintf(f, "  Figure 2 plot: %s\n", w->plot);
	(void)lab;
}

/* ---- the plot ------------------------------------------------------------ */

/* The window the kernel offered at T (its step line), for the reads. */
static int64_t
kernel_win_at(const struct lab_walk *w, double T)
{
	int64_t win = (int64_t)w->syn_win;

	for (size_t i = 0; i < w->nev && w->ev[i].T <= T; i++)
		if (w->ev[i].kind != K_READ && w->ev[i].win >= 0)
			win = w->ev[i].win;
	return win;
}

/* gnuplot's data, one block per series (plot ... index N): 0 the
 * textbook's rwnd, 1 Linux's window, 2-3 sends, 4-5 reads, 6-7 probes
 * with their answer as a label.  A block gets a point off the plot when
 * it has none, so that gnuplot finds every index. */
static void
write_dat(FILE *f, const struct lab_walk *w)
{
	static const enum kev kinds[] = {K_SEND, K_READ, K_PROBE};
	static const enum walk_event evs[] = {WALK_SEND, WALK_READ, WALK_PROBE};
	const struct walk_out *o = &w->out;

	fprintf(f, "# textbook rwnd\n0 %" PRIu64 "\n", w->in.buffer);
	for (size_t i = 0; i < o->n; i++)
		fprintf(f, "%.3f %" PRIu64 "\n", step_T(w, &o->steps[i]),
		    o->steps[i].rwnd);
	fprintf(f, "\n\n# Linux window\n0 %" PRIu64 "\n", w->syn_win);
	for (size_t i = 0; i < w->nev; i++)
		if (w->ev[i].kind != K_READ && w->ev[i].win >= 0)
			fprintf(
			    f, "%.3f %" PRId64 "\n", w->ev[i].T, w->ev[i].win);
	if (w->nev > 0) /* the last window holds to the last event */
		fprintf(f, "%.3f %" PRId64 "\n", w->ev[w->nev - 1].T,
		    kernel_win_at(w, w->ev[w->nev - 1].T));
	for (int k = 0; k < 3; k++) {
		fprintf(f, "\n\n# textbook %s\n-100 0 x\n",
		    walk_event_name(evs[k]));
		for (size_t i = 0; i + 1 < o->n; i++)
			if (o->steps[i].ev == evs[k])
				fprintf(f, "%.3f %" PRIu64 " %" PRIu64 "\n",
				    step_T(w, &o->steps[i]),
				    evs[k] == WALK_READ ? o->steps[i].rwnd
				                        : o->steps[i + 1].rwnd,
				    o->steps[i + 1].rwnd);
		fprintf(f, "\n\n# Linux\n-100 0 x\n");
		for (size_t i = 0; i < w->nev; i++) {
			const struct kevent *e = &w->ev[i];

			if (e->kind != kinds[k])
				continue;
			if (e->kind == K_READ)
				fprintf(f, "%.3f %" PRId64 " %" PRIu64 "\n",
				    e->T, kernel_win_at(w, e->T), e->bytes);
			else if (e->win >= 0)
				fprintf(f, "%.3f %" PRId64 " %" PRId64 "\n",
				    e->T, e->win, e->win);
			else
				fprintf(f, "%.3f 0 none\n", e->T);
		}
	}
}

static void
write_gp(FILE *f, const struct lab_walk *w, const char *dat, const char *png,
    const char *name)
{
	double xmax = w->ok ? step_T(w, &w->out.steps[w->out.n - 1]) : 100;

	for (size_t i = 0; i < w->nev; i++)
		if (w->ev[i].T > xmax)
			xmax = w->ev[i].T;
	fprintf(f,
	    "# Written by sluice lab ([lab] walk = on); re-render with: "
	    "gnuplot %s.gp\n"
	    "set terminal pngcairo size 1200,650 noenhanced font 'sans,10'\n"
	    "set output '%s'\n"
	    "set title '%s: the article''s Figure 2, the textbook and this "
	    "kernel (T = measured s / %g)'\n"
	    "set xlabel 'T, the article''s clock (s)'\nset ylabel 'rwnd "
	    "(bytes)'\n"
	    "set grid\nset key outside right top\n"
	    "set xrange [-2:%.0f]\nset yrange [-600:%.0f]\n",
	    name, png, name, w->scale, xmax + 5,
	    (double)(w->max_win > w->in.buffer ? w->max_win : w->in.buffer) *
	        1.15);
	fprintf(f,
	    "plot '%1$s' index 0 using 1:2 with steps lw 3 lc rgb '#aaaaaa' "
	    "title 'textbook rwnd (sluice plan --walk)', \\\n"
	    "  '%1$s' index 1 using 1:2 with steps lw 2 lc rgb '#1f77b4' "
	    "title 'Linux: window advertised (capture)', \\\n"
	    "  '%1$s' index 2 using 1:2 with points pt 9 ps 1.6 lc rgb "
	    "'#888888' title 'textbook: send', \\\n"
	    "  '%1$s' index 3 using 1:2 with points pt 9 ps 1.3 lc rgb "
	    "'#1f77b4' title 'Linux: data acked', \\\n"
	    "  '%1$s' index 4 using 1:2 with points pt 6 ps 1.6 lc rgb "
	    "'#888888' title 'textbook: read', \\\n"
	    "  '%1$s' index 5 using 1:2 with points pt 6 ps 1.3 lc rgb "
	    "'#9467bd' title 'Linux: read (fetch)', \\\n"
	    "  '%1$s' index 6 using 1:2 with points pt 5 ps 1.4 lc rgb "
	    "'#e6b800' title 'textbook: probe (answer)', \\\n"
	    "  '%1$s' index 6 using 1:2:3 with labels offset 0,1.2 tc rgb "
	    "'#b38f00' notitle, \\\n"
	    "  '%1$s' index 7 using 1:2 with points pt 5 ps 1.1 lc rgb "
	    "'#d62728' title 'Linux: probe (answer)', \\\n"
	    "  '%1$s' index 7 using 1:2:3 with labels offset 0,-1.2 tc rgb "
	    "'#d62728' notitle\n",
	    dat);
}

void
lab_walk_plot(const struct lab *lab, struct result *r)
{
	struct lab_walk *w = r->walk;
	char dat[PATH_MAX], gp[PATH_MAX], png[PATH_MAX], out[2048];
	FILE *f;

	if (w == NULL)
		return;
	if (!w->ok || !w->measured) {
		snprintf(w->plot, sizeof(w->plot), "not drawn: %s",
		    w->ok ? "no capture" : "no walk");
		return;
	}
	if (!proc_in_path("gnuplot")) {
		snprintf(w->plot, sizeof(w->plot),
		    "not drawn: gnuplot not found (Debian: apt-get install "
		    "gnuplot-nox)");
		return;
	}
	lab_path_in(lab, "figure2.dat", dat, sizeof(dat));
	lab_path_in(lab, "figure2.gp", gp, sizeof(gp));
	lab_path_in(lab, "figure2.png", png, sizeof(png));
	if ((f = fopen(dat, "w")) == NULL)
		goto failed;
	write_dat(f, w);
	fclose(f);
	if ((f = fopen(gp, "w")) == NULL)
		goto failed;
	write_gp(f, w, dat, png, lab->sc.name);
	fclose(f);
	if (proc_try_run(lab->verbose, out, sizeof(out), "gnuplot", gp, NULL) !=
	    0) {
		snprintf(w->plot, sizeof(w->plot),
		    "not drawn: gnuplot failed: %.120s", out);
		return;
	}
	snprintf(w->plot, sizeof(w->plot), "%s", png);
	w->plotted = true;
	return;
failed:
	snprintf(w->plot, sizeof(w->plot), "not drawn: %s: %s", lab->out,
	    strerror(errno));
}

/* ---- summary.json ---------------------------------------------------------
 */

void
lab_walk_summary(FILE *f, const struct result *r)
{
	const struct lab_walk *w = r->walk;
	size_t k = 0;

	if (w == NULL || !w->ok) {
		fputs(",\"walk\":null", f);
		return;
	}
	fprintf(f, ",\"walk\":{\"time_scale\":%g,\"textbook\":{", w->scale);
	fprintf(f, "\"first_zero_T\":");
	if (w->out.first_zero_ms < 0)
		fputs("null", f);
	else
		fprintf(f, "%g", w->out.first_zero_ms / 1000.0 / w->scale);
	fprintf(f, ",\"probes\":[");
	for (size_t i = 1; i < w->out.n; i++)
		if (w->out.steps[i - 1].ev == WALK_PROBE)
			fprintf(f, "%s[%g,%" PRIu64 "]", k++ ? "," : "",
			    step_T(w, &w->out.steps[i]), w->out.steps[i].rwnd);
	fprintf(f, "],\"all_read_T\":%g},\"kernel\":{\"measured\":%s",
	    w->out.all_read_ms / 1000.0 / w->scale,
	    w->measured ? "true" : "false");
	json_num_or_null(f, "first_zero_T", w->T_zero);
	json_num_or_null(f, "reopen_T", w->T_reopen);
	fprintf(f,
	    ",\"reopen_window\":%" PRId64 ",\"reopen_by_probe\":%s,"
	    "\"syn_window\":%" PRIu64 ",\"max_window\":%" PRIu64
	    ",\"window_multiple\":%" PRIu64 ",\"window_clamp_at_end\":%d",
	    w->T_reopen >= 0 ? w->reopen_win : -1,
	    w->reopen_by_probe ? "true" : "false", w->syn_win, w->max_win,
	    w->multiple, w->clamp_at_end);
	json_num_or_null(f, "end_T", w->T_end);
	fprintf(f, "},\"plot\":");
	if (w->plotted)
		json_string(f, w->plot);
	else
		fputs("null", f);
	fputc('}', f);
}
