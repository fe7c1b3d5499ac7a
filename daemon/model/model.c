/*
 * model: see model.h; the equations are written down in docs/model.md.
 *
 * Three steps.  cycle_build() reduces the policy to one cycle: the cap the
 * pipe holds when the origin's window is zero, the gap the client drains
 * during each zero window, and from them the first stall t0, the stall D,
 * the period P and the number of stalls n.  judge() applies the give-up
 * rule to that sequence (per stall, or cumulative for TCP_USER_TIMEOUT)
 * and finds the first fatal stall, if any.  model_predict() turns that
 * into bytes and times, and recommend() into one sentence.
 *
 * Pure: no I/O, no allocation; every time is in seconds from the request,
 * every rate in bytes per second.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "proxy/config.h"
#include "model/model.h"

struct cycle {
	double S, r, R;   /* bytes, bytes/s */
	double cap;       /* pipe bytes when the origin's window is zero */
	double gap;       /* bytes the client drains per zero window */
	double first_win; /* the window's first reopening, bytes */
	double t0;        /* the first zero window starts */
	double d;         /* each zero window lasts */
	double p;         /* zero window + refill */
	double dp;        /* bytes the origin sends per cycle */
	uint64_t n;       /* zero windows while the origin has bytes left */
	uint64_t n_write; /* of those, the first ones in which the origin's
	                   * application still has bytes to write */
	double k_in, k_out, k_ws;
};

struct fate {
	int fatal;
	uint64_t k;      /* the fatal stall */
	double t_fire;   /* when the origin gives up */
	double extra;    /* bytes an orphan still delivers after */
	uint64_t aborts; /* with resume: give-ups until the end */
	int cumulative;
};

static double
dmax(double a, double b)
{
	return a > b ? a : b;
}

static double
dmin(double a, double b)
{
	return a < b ? a : b;
}

void
model_defaults(struct model_in *in)
{
	memset(in, 0, sizeof(*in));
	in->client_bps = 2e6;
	in->origin_bps = 1e9;
	in->policy = POLICY_PAUSE;
	in->high = 1024 * 1024; /* the config's defaults */
	in->low = 256 * 1024;
	in->spill_limit = 1024ULL * 1024 * 1024;
	in->k_ws = MODEL_K_WS_DEFAULT;
	in->giveup = GIVEUP_NONE;
	in->zwp_interval_s = 0.2;
	in->zwp_max_interval_s = MODEL_RTO_MAX_S;
	in->block = MODEL_BLOCK;
	in->orphan_s = MODEL_ORPHAN_S;
}

uint64_t
model_k_in(const struct model_in *in)
{
	if (in->k_in != 0)
		return in->k_in;
	if (in->rcvbuf != 0)
		return (uint64_t)(2.0 * (double)in->rcvbuf * MODEL_RCV_RATIO);
	return (uint64_t)MODEL_K_IN_AUTOTUNED;
}

uint64_t
model_k_out(const struct model_in *in)
{
	if (in->k_out != 0)
		return in->k_out;
	if (in->client_sndbuf != 0)
		return 2 * in->client_sndbuf;
	return (uint64_t)MODEL_K_OUT_AUTOTUNED;
}

double
model_goodput_bps(double link_bps)
{
	return link_bps * MODEL_MSS / MODEL_FRAME;
}

const char *
model_giveup_name(enum giveup_kind kind)
{
	static const char *const names[] = {
	    "none", "send-timeout", "user-timeout", "zwp-probes", "orphan"};

	if ((unsigned)kind >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[kind];
}

/* ---- give-up rules as text --------------------------------------------- */

/* "KEY=DURATION" into seconds; 0 or -EINVAL. */
static int
parse_secs(const char *item, const char *key, double *out)
{
	size_t len = strlen(key);
	uint64_t ms;

	if (strncmp(item, key, len) != 0 || item[len] != '=' ||
	    units_parse_duration(item + len + 1, &ms) < 0)
		return -EINVAL;
	*out = (double)ms / 1000;
	return 0;
}

/* "zwp-probes=N" then ",interval=T" and ",max=T" in any order. */
static int
parse_zwp(char *rest, struct model_in *m)
{
	char *save = NULL, *end;
	int have_interval = 0;
	unsigned long n;

	char *item = strtok_r(rest, ",", &save);
	if (item == NULL || strncmp(item, "zwp-probes=", 11) != 0)
		return -EINVAL;
	errno = 0;
	n = strtoul(item + 11, &end, 10);
	if (errno != 0 || end == item + 11 || *end != '\0' || n == 0 || n > 64)
		return -EINVAL;
	m->zwp_probes = (unsigned)n;
	while ((item = strtok_r(NULL, ",", &save)) != NULL) {
		if (parse_secs(item, "interval", &m->zwp_interval_s) == 0)
			have_interval = 1;
		else if (parse_secs(item, "max", &m->zwp_max_interval_s) < 0)
			return -EINVAL;
	}
	if (!have_interval || m->zwp_interval_s <= 0 ||
	    m->zwp_max_interval_s <= 0)
		return -EINVAL;
	m->giveup = GIVEUP_ZWP_PROBES;
	return 0;
}

/* "send-timeout=T[,orphan=T]", "user-timeout=T", "orphan[=T]". */
static int
parse_timed(char *rest, struct model_in *m)
{
	char *save = NULL, *item = strtok_r(rest, ",", &save);

	if (item == NULL)
		return -EINVAL;
	if (strcmp(item, "orphan") == 0 ||
	    parse_secs(item, "orphan", &m->giveup_s) == 0) {
		if (strcmp(item, "orphan") == 0)
			m->giveup_s = MODEL_ORPHAN_S;
		m->giveup = GIVEUP_ORPHAN;
	} else if (parse_secs(item, "user-timeout", &m->giveup_s) == 0) {
		m->giveup = GIVEUP_USER_TIMEOUT;
	} else if (parse_secs(item, "send-timeout", &m->giveup_s) == 0) {
		m->giveup = GIVEUP_SEND_TIMEOUT;
		item = strtok_r(NULL, ",", &save);
		if (item != NULL &&
		    parse_secs(item, "orphan", &m->orphan_s) < 0)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (strtok_r(NULL, ",", &save) != NULL || m->giveup_s <= 0 ||
	    m->orphan_s <= 0)
		return -EINVAL;
	return 0;
}

int
model_parse_giveup(const char *s, struct model_in *in)
{
	struct model_in m = *in;
	char buf[128];
	int rc;

	if (s == NULL || strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	if (strcmp(buf, "none") == 0 || buf[0] == '\0') {
		m.giveup = GIVEUP_NONE;
		rc = 0;
	} else if (strncmp(buf, "zwp-probes=", 11) == 0) {
		rc = parse_zwp(buf, &m);
	} else {
		rc = parse_timed(buf, &m);
	}
	if (rc == 0)
		*in = m;
	return rc;
}

double
model_giveup_time(const struct model_in *in)
{
	double t = 0, step = in->zwp_interval_s;

	switch (in->giveup) {
	case GIVEUP_NONE:
		return -1;
	case GIVEUP_ZWP_PROBES:
		/* probe k is due Σ_{j<k} min(T0·2^j, TMAX) after the close
		 * (docs/peers.md: the origin follows T0 exactly) */
		for (unsigned j = 0; j < in->zwp_probes; j++) {
			t += dmin(step, in->zwp_max_interval_s);
			step *= 2;
		}
		return t;
	case GIVEUP_USER_TIMEOUT:
		return MODEL_PROBE0_S + in->giveup_s;
	default:
		return in->giveup_s;
	}
}

/* ---- the cycle ---------------------------------------------------------- */

uint64_t
model_reopen_bytes(uint64_t k_in)
{
	double k = (double)k_in;

	return (uint64_t)dmax(
	    dmin(k, dmax(MODEL_REOPEN_MIN, k / MODEL_REOPEN_DIV)), MODEL_MSS);
}

/* Cap and gap of each policy (docs/model.md, "One cycle for all"). */
static void
cycle_shape(const struct model_in *in, struct cycle *c)
{
	double block = (double)(in->block != 0 ? in->block : MODEL_BLOCK);
	double reopen = (double)model_reopen_bytes((uint64_t)c->k_in), mem;

	switch (in->policy) {
	case POLICY_SPILL:
		mem = (double)in->high + (double)in->spill_limit;
		c->gap = dmax(block, reopen); /* a block as one is freed */
		break;
	case POLICY_PACE:
		mem = dmax((double)in->low, block);
		c->gap = dmax(c->r * MODEL_TICK_S, reopen); /* a tick's read */
		break;
	default:
		mem = (double)in->high;
		c->gap = dmax((double)(in->high - in->low), reopen);
		break;
	}
	c->cap = mem + c->k_out + c->k_in;
	c->first_win = reopen;
}

static void
cycle_build(const struct model_in *in, struct cycle *c)
{
	double sent0, left;

	memset(c, 0, sizeof(*c));
	c->S = (double)in->size;
	c->r = in->client_bps / 8;
	c->R = in->origin_bps / 8;
	c->k_in = (double)model_k_in(in);
	c->k_out = (double)model_k_out(in);
	c->k_ws = (double)in->k_ws;
	cycle_shape(in, c);
	c->d = c->gap / c->r;
	if (c->R <= c->r) { /* the client keeps up: the pipe never fills */
		c->t0 = INFINITY;
		return;
	}
	c->t0 = c->cap / (c->R - c->r);
	c->p = c->d + c->gap / (c->R - c->r);
	c->dp = c->gap * c->R / (c->R - c->r);
	sent0 = c->R * c->t0; /* = r·t0 + cap */
	if (c->S > sent0)
		c->n = (uint64_t)ceil((c->S - sent0) / c->dp);
	/* the application is still writing at stall k while S − sent(t_k)
	 * does not fit in its send buffer */
	left = c->S - c->k_ws - sent0;
	if (left > 0)
		c->n_write = (uint64_t)dmin(ceil(left / c->dp), (double)c->n);
}

static double
stall_start(const struct cycle *c, uint64_t k)
{
	return c->t0 + (double)k * c->p;
}

/* Body bytes the origin has sent (the proxy acknowledged) at time t. */
static double
sent_at(const struct cycle *c, double t)
{
	double k, tau, sent;

	if (!(t > c->t0))
		return dmin(c->S, c->R * t);
	k = floor((t - c->t0) / c->p);
	tau = t - c->t0 - k * c->p;
	sent = c->R * c->t0 + k * c->dp;
	if (tau > c->d)
		sent += c->R * (tau - c->d); /* the refill */
	return dmin(c->S, sent);
}

/* ---- the give-up rules -------------------------------------------------- */

/* A per-stall rule: stalls [first, last) are at risk, each for `held`
 * seconds; the first is fatal iff held ≥ T.  With resume, every
 * `stride`-th one of them is. */
static void
per_stall(const struct cycle *c, double held, double T, uint64_t first,
    uint64_t last, struct fate *f)
{
	uint64_t stride = 1;

	if (first >= last || held < T)
		return;
	if (c->d < T) /* a writer held over several stalls */
		stride = (uint64_t)(T / c->p) + 1;
	f->fatal = 1;
	f->k = first;
	f->t_fire = stall_start(c, first) + T;
	f->aborts = (last - first + stride - 1) / stride;
}

/*
 * TCP_USER_TIMEOUT.  Its clock starts at a stall's first probe and
 * restarts only when a reopened window takes the sender's whole head skb
 * (tcp_ack_probe): then it is a per-stall rule with T = P0 + U.  Else it
 * runs across stalls and the kernel aborts at the first probe after
 * P0 + U (clamped to it): inside the stall that holds that instant, or at
 * once in the next one.  Stalls shorter than P0 see no probe at all.
 */
static void
user_timeout(const struct model_in *in, const struct cycle *c, struct fate *f)
{
	double x = MODEL_PROBE0_S + in->giveup_s - c->d;
	uint64_t k;

	if (c->n == 0 || c->d <= MODEL_PROBE0_S)
		return;
	if (c->first_win >= MODEL_TSO_SKB) {
		per_stall(c, c->d, MODEL_PROBE0_S + in->giveup_s, 0, c->n, f);
		return;
	}
	f->cumulative = 1;
	k = x < 0 ? 0 : (uint64_t)floor(x / c->p) + 1;
	if (k >= c->n)
		return;
	f->fatal = 1;
	f->k = k;
	f->t_fire =
	    dmax(c->t0 + MODEL_PROBE0_S + in->giveup_s, stall_start(c, k));
	f->aborts = c->n / (k + 1);
}

static void
judge(const struct model_in *in, const struct cycle *c, struct fate *f)
{
	double held;

	memset(f, 0, sizeof(*f));
	switch (in->giveup) {
	case GIVEUP_SEND_TIMEOUT:
		/* the application waits a stall, or a third of its buffer
		 * draining at r, whichever is longer; after it closes, the
		 * orphan still delivers its buffer unless it dies first */
		held = dmax(c->d, c->k_ws * MODEL_WAKE_FRACTION / c->r);
		per_stall(c, held, in->giveup_s, 0, c->n_write, f);
		if (c->d < (in->orphan_s > 0 ? in->orphan_s : MODEL_ORPHAN_S))
			f->extra = c->k_ws;
		break;
	case GIVEUP_ZWP_PROBES:
		per_stall(c, c->d, model_giveup_time(in), 0, c->n, f);
		break;
	case GIVEUP_ORPHAN:
		/* only once the whole body is in the socket: before, the
		 * application waits in write() for ever */
		per_stall(c, c->d, in->giveup_s, c->n_write, c->n, f);
		break;
	case GIVEUP_USER_TIMEOUT:
		user_timeout(in, c, f);
		break;
	default:
		break;
	}
}

/* ---- formatting --------------------------------------------------------- */

const char *
model_fmt_bytes(double b, char *buf, size_t len)
{
	static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
	int i = -1;

	while (b >= 1024 * 0.9995 && i < 3) {
		b /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%.0f B", b);
	else
		snprintf(buf, len,
		    b < 9.995       ? "%.2f %s"
		        : b < 99.95 ? "%.1f %s"
		                    : "%.0f %s",
		    b, unit[i]);
	return buf;
}

const char *
model_fmt_secs(double s, char *buf, size_t len)
{
	if (isinf(s))
		snprintf(buf, len, "never");
	else if (s < 1)
		snprintf(buf, len, "%.0f ms", s * 1000);
	else if (s < 100)
		snprintf(buf, len, "%.1f s", s);
	else if (s < 6000)
		snprintf(buf, len, "%.1f min", s / 60);
	else
		snprintf(buf, len, "%.1f h", s / 3600);
	return buf;
}

/* A config size: v rounded up to a multiple of unit, printed exactly. */
static const char *
cfg_size(double v, uint64_t unit, char *buf, size_t len)
{
	uint64_t u = (uint64_t)ceil(dmax(v, 0) / (double)unit) * unit;

	return units_fmt_size(u, buf, len);
}

/* A config duration: s rounded up to a second, a minute past 10 min. */
static const char *
cfg_secs(double s, char *buf, size_t len)
{
	uint64_t ms = (uint64_t)ceil(s) * 1000;

	if (s > 600)
		ms = (uint64_t)ceil(s / 60) * 60000;
	return units_fmt_duration(ms, buf, len);
}

/* ---- the recommendation ------------------------------------------------- */

/* spill_limit at which the origin never stalls: the spool takes what
 * the client has not read when the origin is done. */
static double
spill_needed(const struct model_in *in, const struct cycle *c)
{
	return c->S * (1 - c->r / c->R) - (double)in->high - c->k_out - c->k_in;
}

/* What the origin would need: its rule's setting that outlasts the
 * download, as "KEY ≥ VALUE" (or the probes it needs). */
static void
origin_fix(const struct model_in *in, const struct cycle *c,
    const struct fate *f, char *buf, size_t len)
{
	char v[32];
	double need = dmax(c->d,
	                  in->giveup == GIVEUP_SEND_TIMEOUT
	                      ? c->k_ws * MODEL_WAKE_FRACTION / c->r
	                      : 0) /
	    MODEL_MARGIN;
	struct model_in m = *in;

	switch (in->giveup) {
	case GIVEUP_ZWP_PROBES:
		while (model_giveup_time(&m) < need && m.zwp_probes < 64)
			m.zwp_probes++;
		snprintf(buf, len, "give the origin %u zero-window probes",
		    m.zwp_probes);
		return;
	case GIVEUP_USER_TIMEOUT:
		if (f->cumulative)
			need = (stall_start(c, c->n - 1) + c->d - c->t0 -
			           MODEL_PROBE0_S) /
			    MODEL_MARGIN;
		else
			need -= MODEL_PROBE0_S;
		snprintf(buf, len, "give the origin TCP_USER_TIMEOUT = %s",
		    cfg_secs(need, v, sizeof(v)));
		return;
	case GIVEUP_ORPHAN:
		snprintf(buf, len, "let the origin's orphans live %s",
		    cfg_secs(need, v, sizeof(v)));
		return;
	default:
		snprintf(buf, len, "give the origin send_timeout = %s",
		    cfg_secs(need, v, sizeof(v)));
		return;
	}
}

/* The policy's own fix: the low watermark (pause) or the receive buffer
 * (pace) that keeps each zero window under the origin's limit, when the
 * rule is per stall.  Empty when none exists. */
static void
policy_fix(const struct model_in *in, const struct cycle *c,
    const struct fate *f, char *buf, size_t len)
{
	double T = model_giveup_time(in), gap = MODEL_MARGIN * c->r * T;
	uint64_t unit = in->high >= 16 * 1048576 ? 1048576 : 65536;
	/* the largest buffer whose reopening (model_reopen_bytes) fits */
	double k_in = gap >= MODEL_REOPEN_MIN ? gap * MODEL_REOPEN_DIV : gap;
	double rcvbuf = floor(k_in / (2 * MODEL_RCV_RATIO) / 65536) * 65536;
	char v[32], g[32];

	buf[0] = '\0';
	if (f->cumulative ||
	    (in->giveup == GIVEUP_SEND_TIMEOUT &&
	        c->k_ws * MODEL_WAKE_FRACTION / c->r >= T))
		return;
	if (in->policy == POLICY_PAUSE && gap > c->first_win)
		snprintf(buf, len,
		    "set low_watermark = %s (a gap under %s = 0.9·r·T)",
		    cfg_size((double)in->high - gap, unit, v, sizeof(v)),
		    model_fmt_bytes(gap, g, sizeof(g)));
	else if (in->policy == POLICY_PACE && gap > c->r * MODEL_TICK_S &&
	    rcvbuf >= 65536)
		snprintf(buf, len,
		    "pin [upstream] rcvbuf = %s (zero windows under %s)",
		    units_fmt_size((uint64_t)rcvbuf, v, sizeof(v)),
		    model_fmt_secs(gap / c->r, g, sizeof(g)));
}

static void
recommend_ok(const struct model_in *in, const struct cycle *c,
    const struct fate *f, struct model_out *out)
{
	char *buf = out->recommendation, a[32], b[32];
	size_t len = sizeof(out->recommendation);

	if (f->fatal)
		snprintf(buf, len,
		    "None needed: resume = on repairs each of the %u "
		    "give-ups with a Range request.",
		    out->resumes);
	else if (c->n == 0)
		snprintf(
		    buf, len, "None needed: the origin's window never closes.");
	else if (in->giveup == GIVEUP_NONE)
		snprintf(buf, len,
		    "None needed: the origin waits out %llu zero windows of "
		    "%s each.",
		    (unsigned long long)c->n,
		    model_fmt_secs(c->d, a, sizeof(a)));
	else
		snprintf(buf, len,
		    "None needed: each zero window (%s) stays under the "
		    "origin's %s limit (%s).",
		    model_fmt_secs(c->d, a, sizeof(a)),
		    model_giveup_name(in->giveup),
		    model_fmt_secs(model_giveup_time(in), b, sizeof(b)));
}

/* One sentence: the policy's own fix when there is one, the spool that
 * keeps the window open, the origin's setting, resume. */
static void
recommend(const struct model_in *in, const struct cycle *c,
    const struct fate *f, struct model_out *out)
{
	char pol[128], orig[96], spill[64], v[32], *buf = out->recommendation;
	size_t len = sizeof(out->recommendation);

	if (!f->fatal || in->resume) {
		recommend_ok(in, c, f, out);
		return;
	}
	policy_fix(in, c, f, pol, sizeof(pol));
	origin_fix(in, c, f, orig, sizeof(orig));
	cfg_size(spill_needed(in, c) / MODEL_MARGIN, 1048576, v, sizeof(v));
	snprintf(spill, sizeof(spill),
	    in->policy == POLICY_SPILL
	        ? "raise spill_limit to %s"
	        : "use policy spill with spill_limit = %s",
	    v);
	snprintf(buf, len, "%s%s%s, or %s, or set resume = on (%llu %s).", pol,
	    pol[0] != '\0' ? ", or " : "", spill, orig,
	    (unsigned long long)f->aborts,
	    f->aborts == 1 ? "resume" : "resumes");
	if (buf[0] >= 'a' && buf[0] <= 'z')
		buf[0] = (char)(buf[0] - 'a' + 'A');
}

/* ---- the prediction ----------------------------------------------------- */

/*
 * The stall of model_in (stall_at, stall_s): one zero window more, judged
 * on its own by a per-stall give-up rule.  It begins once the origin has
 * filled what the proxy still takes (the upstream side: K_in; the client
 * side: the policy's buffers, then K_in) at the origin's rate, and ends
 * when the stall ends (the client side under pause: once the client has
 * drained the gap to the low watermark).  Fatal when it outlasts the
 * give-up time; the client then gets what the proxy had taken.  Replaces
 * the cycle's fate when it comes first.  Returns 1 when it decided the
 * outcome.
 */
static int
stall_fate(const struct model_in *in, const struct cycle *c,
    const struct fate *base, struct model_out *out)
{
	double rate = dmin(c->r, c->R), t_s, t_z, end, d, held, cap = 0, g;
	char a[32], b[32], x[32], y[32];

	if (!(in->stall_s > 0) || in->stall_at >= in->size)
		return 0;
	t_s = (double)in->stall_at / rate;
	end = t_s + in->stall_s;
	if (in->stall_client) {
		cap = in->policy == POLICY_PACE ? (double)in->low
		    : in->policy == POLICY_SPILL
		    ? (double)in->high + (double)in->spill_limit
		    : (double)in->high;
		if (in->policy == POLICY_PAUSE)
			end += (double)(in->high - in->low) / c->r;
	}
	held = (double)in->stall_at + cap + c->k_in;
	t_z = t_s + (cap + c->k_in) / c->R;
	d = end - t_z;
	if (in->stall_client && in->policy == POLICY_SPILL) {
		/* the spool takes what the origin sends meanwhile */
		g = dmin(c->S - (double)in->stall_at - (double)in->high,
		    dmin((double)in->spill_limit, c->R * in->stall_s));
		if (g > (double)out->peak_disk)
			out->peak_disk = (uint64_t)g;
	}
	if (!(d > 0) || held >= c->S) {
		/* the origin's window never closes for it: the client only
		 * waits */
		if (out->complete)
			out->client_finish_s += in->stall_s;
		return 0;
	}
	if (out->first_stall_s < 0 || t_z < out->first_stall_s)
		out->first_stall_s = t_z;
	out->stalls++;
	g = model_giveup_time(in);
	if (in->giveup == GIVEUP_ORPHAN && c->S - held > c->k_ws)
		g = -1; /* the origin's application still writes: no orphan */
	if (g < 0 || d <= g || (base->fatal && base->t_fire <= t_z + g)) {
		if (d > out->stall_s)
			out->stall_s = d;
		if (out->complete)
			out->client_finish_s += in->stall_s;
		return 0;
	}
	out->stall_s = g;
	out->giveup_at_s = t_z + g;
	out->complete = in->resume;
	if (in->resume) {
		out->resumes = 1;
		out->client_finish_s = c->S / rate + in->stall_s;
	} else {
		out->client_bytes = (uint64_t)floor(held + 1e-6);
		out->unsent_bytes = in->size - out->client_bytes;
		/* what the proxy held goes out once the stall is over */
		out->client_finish_s =
		    dmax(t_z + g, end + (held - (double)in->stall_at) / rate);
	}
	snprintf(out->recommendation, sizeof(out->recommendation),
	    in->stall_client && in->policy != POLICY_SPILL
	        ? "the client's %s stall closes the origin's window for %s, "
	          "past its give-up (%s): policy spill with spill_limit >= %s "
	          "takes what the origin sends meanwhile"
	        : in->stall_client
	        ? "the client's %s stall closes the origin's window for %s, "
	          "past its give-up (%s): raise spill_limit to %s"
	        : "the proxy stops reading the origin for %s, a zero window of "
	          "%s past its give-up (%s): no policy helps; the origin must "
	          "wait longer, or resume = on repairs it%s",
	    model_fmt_secs(in->stall_s, a, sizeof(a)),
	    model_fmt_secs(d, b, sizeof(b)), model_fmt_secs(g, x, sizeof(x)),
	    in->stall_client ? cfg_size(dmin(c->R * in->stall_s, c->S - held),
	                           MODEL_BLOCK, y, sizeof(y))
	                     : "");
	return 1;
}

static int
check(const struct model_in *in)
{
	if (in->size == 0 || !(in->client_bps >= 8) || !(in->origin_bps >= 8) ||
	    isinf(in->client_bps) || isinf(in->origin_bps) || in->high == 0 ||
	    in->low > in->high ||
	    (in->policy != POLICY_PAUSE && in->policy != POLICY_SPILL &&
	        in->policy != POLICY_PACE))
		return -EINVAL;
	if (in->giveup != GIVEUP_NONE && in->giveup != GIVEUP_ZWP_PROBES &&
	    !(in->giveup_s > 0))
		return -EINVAL;
	if (in->giveup == GIVEUP_ZWP_PROBES &&
	    (in->zwp_probes == 0 || !(in->zwp_interval_s > 0) ||
	        !(in->zwp_max_interval_s > 0)))
		return -EINVAL;
	if ((unsigned)in->giveup > GIVEUP_ORPHAN)
		return -EINVAL;
	if (in->stall_s < 0 || isinf(in->stall_s) || isnan(in->stall_s))
		return -EINVAL;
	return 0;
}

static void
peaks(const struct model_in *in, const struct cycle *c, struct model_out *out)
{
	double block = (double)(in->block != 0 ? in->block : MODEL_BLOCK);
	double mem = (double)in->high + block, spool;

	if (in->policy == POLICY_PACE)
		mem = dmin(mem, dmax((double)in->low, block) + block);
	out->peak_memory = (uint64_t)dmin(mem, c->S);
	if (in->policy != POLICY_SPILL || c->R <= c->r)
		return;
	spool = c->S * (1 - c->r / c->R) - (double)in->high - c->k_out;
	out->peak_disk =
	    (uint64_t)llround(dmin(dmax(spool, 0), (double)in->spill_limit));
}

int
model_predict(const struct model_in *in, struct model_out *out)
{
	struct cycle c;
	struct fate f;
	double rate, got;

	if (check(in) < 0)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	cycle_build(in, &c);
	judge(in, &c, &f);
	rate = dmin(c.r, c.R);
	out->k_in = (uint64_t)c.k_in;
	out->k_out = (uint64_t)c.k_out;
	out->k_ws = (uint64_t)c.k_ws;
	out->k_in_guessed = in->k_in == 0 && in->rcvbuf == 0;
	out->first_stall_s = c.n > 0 ? c.t0 : -1;
	out->close_bytes = isinf(c.t0) ? -1 : c.R * c.t0;
	out->cumulative = f.cumulative;
	out->stalls = (unsigned)c.n;
	out->stall_s = c.n > 0 ? c.d : 0;
	out->giveup_at_s = f.fatal ? f.t_fire : -1;
	out->complete = !f.fatal || in->resume;
	if (out->complete) {
		out->client_bytes = in->size;
		out->client_finish_s = c.S / rate;
		out->resumes = f.fatal ? (unsigned)f.aborts : 0;
	} else {
		got = dmin(c.S, sent_at(&c, f.t_fire) + f.extra);
		out->client_bytes = (uint64_t)floor(got + 1e-6);
		out->unsent_bytes = in->size - out->client_bytes;
		out->client_finish_s = got / rate;
		out->stalls = (unsigned)(f.k + 1);
	}
	peaks(in, &c, out);
	recommend(in, &c, &f, out);
	(void)stall_fate(in, &c, &f, out);
	return 0;
}
