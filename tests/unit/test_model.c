/*
 * test_model: the analytic model (model.h, docs/model.md), against cases
 * computed by hand.
 *
 * Most cases share one download chosen for round numbers: S = 10 MB, a
 * client at r = 100 kB/s, an origin at R = 100 MB/s, pause with C = 1 MB
 * and L = 0, K_in = 160 kB (a zero window reopens only once the proxy has
 * read all of it: model_reopen_bytes is min(K_in, max(390 kB, K_in / 10))),
 * K_out = 40 kB, K_ws = 1.5 MB.  Then the cap is 1.2 MB, the first zero window
 * starts at t0 = 1.2 MB / 99.9 MB/s = 12.012 ms, lasts D = 10 s, a cycle
 * is P = 10.01001 s and moves 1001001 bytes, and the origin sees n = 9 zero
 * windows, in the first 8 of which its application is still writing.
 * The comment above each case shows the arithmetic.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/config.h"
#include "model/model.h"

#define T0 (1.2e6 / 99.9e6) /* the first zero window of the base case */

static void
base(struct model_in *in)
{
	model_defaults(in);
	in->size = 10000000;
	in->client_bps = 8e5;
	in->origin_bps = 8e8;
	in->policy = POLICY_PAUSE;
	in->high = 1000000;
	in->low = 0;
	in->k_in = 160000;
	in->k_out = 40000;
	in->k_ws = 1500000;
}

static void
predict(const struct model_in *in, struct model_out *out)
{
	assert_int_equal(model_predict(in, out), 0);
}

static void
giveup(struct model_in *in, const char *rule)
{
	assert_int_equal(model_parse_giveup(rule, in), 0);
}

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (b)) <= (eps))

/* ---- pause ----------------------------------------------------------- */

static void
pause_patient_origin(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.stalls, 9);
	assert_near(out.stall_s, 10, 1e-9);
	assert_near(out.first_stall_s, T0, 1e-9);
	assert_true(out.giveup_at_s < 0);
	assert_true(out.unsent_bytes == 0 && out.client_bytes == 10000000);
	assert_near(out.client_finish_s, 100, 1e-9); /* S / r */
	assert_true(out.peak_memory == 1000000 + 65536);
	assert_true(out.peak_disk == 0);
	assert_string_equal(out.recommendation,
	    "None needed: the origin waits out 9 zero windows of 10.0 s each.");
}

/* zwp 4 from 200 ms: T = 0.2 + 0.4 + 0.8 + 1.6 = 3 s < D: the first stall
 * kills it at t0 + 3.  B = R·t0 = 1201201.2.  The fixes: a gap under
 * 0.9·r·T = 270 kB, so L = 730 kB rounded up to 64 KiB = 768k; a spool of
 * S(1 − r/R) − C − K_out − K_in = 8.79 MB, / 0.9 and up to a MiB = 10M;
 * D / 0.9 = 11.1 s of probes = 6 of them (0.2 … 12.6 s). */
static void
pause_zwp_truncated(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "zwp-probes=4,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_near(out.giveup_at_s, T0 + 3, 1e-9);
	assert_true(out.client_bytes == 1201201);
	assert_true(out.unsent_bytes == 8798799);
	assert_near(out.client_finish_s, 12.01201, 1e-5);
	assert_int_equal(out.stalls, 1);
	assert_int_equal(out.cumulative, 0);
	assert_string_equal(out.recommendation,
	    "Set low_watermark = 768k (a gap under 264 KiB = 0.9·r·T), or use "
	    "policy spill with spill_limit = 10M, or give the origin 6 "
	    "zero-window probes, or set resume = on (9 resumes).");
}

/* The recommended low watermark, checked: D = 213568 / r = 2.1 s < 3 s. */
static void
pause_zwp_small_gap(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "zwp-probes=4,interval=200ms");
	in.low = 768 * 1024;
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_near(out.stall_s, 2.13568, 1e-9);
	assert_true(out.stalls > 9);
	assert_string_equal(out.recommendation,
	    "None needed: each zero window (2.1 s) stays under the origin's "
	    "zwp-probes limit (3.0 s).");
}

/* 6 probes: 12.6 s > D. */
static void
pause_zwp_complete(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "zwp-probes=6,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_true(out.giveup_at_s < 0);
}

/* Every stall kills a connection: 9 resumes, the download completes. */
static void
pause_zwp_resume(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "zwp-probes=4,interval=200ms");
	in.resume = 1;
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.resumes, 9);
	assert_near(out.giveup_at_s, T0 + 3, 1e-9);
	assert_true(out.unsent_bytes == 0);
	assert_near(out.client_finish_s, 100, 1e-9);
	assert_string_equal(out.recommendation,
	    "None needed: resume = on repairs each of the 9 give-ups with a "
	    "Range request.");
}

/* send_timeout 5 s: the application waits max(D, K_ws / 3r) = 10 s.  After
 * it closes, the orphan (10 s < 341 s) still delivers K_ws: B = 1201201.2 +
 * 1.5 MB.  With resume: one give-up per stall it still writes in, 8. */
static void
pause_send_timeout(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "send-timeout=5s");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_near(out.giveup_at_s, T0 + 5, 1e-9);
	assert_true(out.client_bytes == 2701201);
	assert_true(out.unsent_bytes == 7298799);
	in.resume = 1;
	predict(&in, &out);
	assert_int_equal(out.resumes, 8);
	/* an orphan that dies within the stall delivers nothing more */
	in.resume = 0;
	giveup(&in, "send-timeout=5s,orphan=8s");
	predict(&in, &out);
	assert_true(out.client_bytes == 1201201);
	giveup(&in, "send-timeout=20s");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
}

/*
 * A gap of 200 kB: D = 2 s, but the application blocks for K_ws / 3r =
 * 5 s while its buffer drains at r, longer than its 4 s send timeout.  It
 * gives up at t0 + 4, one cycle of 2.002002 s later, inside the 2nd stall:
 * sent = 1201201.2 + 200200.2 = 1401401.4, plus the orphan's 1.5 MB.
 * No watermark helps (policy_fix is empty); each resume lasts 2 cycles,
 * and the application writes in 37 of the 44 stalls: 19 resumes.
 */
static void
pause_send_timeout_paced(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.low = 800000;
	giveup(&in, "send-timeout=4s");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_near(out.stall_s, 2, 1e-9);
	assert_near(out.giveup_at_s, T0 + 4, 1e-9);
	assert_true(out.client_bytes == 2901401);
	assert_string_equal(out.recommendation,
	    "Use policy spill with spill_limit = 10M, or give the origin "
	    "send_timeout = 6s, or set resume = on (19 resumes).");
}

/* close-after-write: the application waits in write() for ever until the
 * rest fits in its buffer, at stall 8 of 9; there the orphan dies after
 * 8 s of the 10 s stall.  t_8 = t0 + 8P = 80.092092; B = R·t0 + 8 × 1001001
 * = 9209209.2. */
static void
pause_orphan(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "orphan=8s");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_int_equal(out.stalls, 9);
	assert_near(out.giveup_at_s, T0 + 8 * 10.01001001 + 8, 1e-6);
	assert_true(out.client_bytes == 9209209);
	assert_true(out.unsent_bytes == 790791);
	assert_near(out.client_finish_s, 92.09209, 1e-5);
	in.resume = 1;
	predict(&in, &out);
	assert_int_equal(out.resumes, 1);
	in.resume = 0;
	giveup(&in, "orphan=12s");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
}

/* TCP_USER_TIMEOUT whose clock restarts each stall (the reopening, all of
 * K_in = 160 kB, takes a whole TSO skb): fatal iff D ≥ P0 + U. */
static void
pause_user_timeout_per_stall(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	giveup(&in, "user-timeout=5s");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_int_equal(out.cumulative, 0);
	assert_near(out.giveup_at_s, T0 + 0.216 + 5, 1e-9);
	assert_true(out.client_bytes == 1201201);
	giveup(&in, "user-timeout=10s");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
}

/*
 * Small reopenings (K_in = 40 kB, under a TSO skb): the clock runs across
 * stalls.  Cap 1.08 MB, t0 = 10.81 ms; a gap of 100 kB: D = 1 s,
 * P = 1.001001 s, n = 90.  The first probe is at t0 + 0.216, the deadline
 * P0 + U = 5.216 s later falls x = 4.216 s after stall 0's end … inside
 * stall 5 (floor(4.216 / P) + 1).  B = R·t0 + 5 × 100100.1 = 1581581.6.
 * With resume, each connection lasts 6 stalls: 90 / 6 = 15 give-ups.  With
 * K_in = 160 kB the reopenings restart the clock and it completes: each
 * 1 s stall alone is far from 5.2 s.
 */
static void
pause_user_timeout_cumulative(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.k_in = 40000;
	in.low = 900000;
	giveup(&in, "user-timeout=5s");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_int_equal(out.cumulative, 1);
	assert_int_equal(out.stalls, 6);
	assert_near(out.giveup_at_s, 1.08e6 / 99.9e6 + 5.216, 1e-9);
	assert_true(out.client_bytes == 1581581);
	in.resume = 1;
	predict(&in, &out);
	assert_int_equal(out.resumes, 15);
	in.resume = 0;
	in.k_in = 160000;
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.cumulative, 0);
}

/* Stalls of 0.1 s never see a probe (the first is due at 0.216 s): the
 * clock never starts, however small U. */
static void
pause_user_timeout_no_probe(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.k_in = 10000; /* reopenings of 10 kB: the clock would run */
	in.low = 990000; /* D = max(10 kB, 10 kB) / r = 0.1 s */
	giveup(&in, "user-timeout=1s");
	predict(&in, &out);
	assert_near(out.stall_s, 0.1, 1e-9);
	assert_int_equal(out.complete, 1);
}

/* ---- spill ------------------------------------------------------------- */

/* A spool of 20 MB: cap 21.2 MB > R·S / (R − r), the origin finishes before
 * its window closes.  Peak disk S(1 − r/R) − C − K_out = 8.95 MB. */
static void
spill_complete(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.policy = POLICY_SPILL;
	in.spill_limit = 20000000;
	giveup(&in, "zwp-probes=1,interval=10ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.stalls, 0);
	assert_true(out.first_stall_s < 0);
	assert_true(out.peak_disk == 8950000);
	assert_true(out.peak_memory == 1065536);
	assert_near(out.client_finish_s, 100, 1e-9);
	assert_string_equal(out.recommendation,
	    "None needed: the origin's window never closes.");
}

/* A 2 MB spool: cap 3.2 MB, t0 = 32.032 ms, then the proxy reads a block
 * as the client frees one, but the window reopens only after K_in = 160 kB:
 * zero windows of 1.6 s, longer than 1.4 s of probes: B = R·t0.  43 of
 * them before the origin is done. */
static void
spill_limited(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.policy = POLICY_SPILL;
	in.spill_limit = 2000000;
	giveup(&in, "zwp-probes=3,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_near(out.stall_s, 1.6, 1e-9);
	assert_true(out.client_bytes == 3203203);
	assert_true(out.peak_disk == 2000000);
	assert_string_equal(out.recommendation,
	    "Raise spill_limit to 10M, or give the origin 4 zero-window "
	    "probes, or set resume = on (43 resumes).");
	giveup(&in, "zwp-probes=4,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_true(out.peak_disk == 2000000);
}

/* ---- pace -------------------------------------------------------------- */

/* L = 405 kB: cap 605 kB; the proxy reads 2 kB a tick, the window reopens
 * once it has read K_in = 160 kB: zero windows of 1.6 s,
 * ⌈(9.99 MB − 605 kB) / 160 kB⌉ = 59 of them.  No smaller rcvbuf helps
 * against 1.4 s of probes (0.9·r·T = 126 kB: under 64 KiB of rcvbuf). */
static void
pace_probes(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.policy = POLICY_PACE;
	in.low = 405000;
	giveup(&in, "zwp-probes=4,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.stalls, 59);
	assert_near(out.stall_s, 1.6, 1e-9);
	assert_true(out.peak_memory == 405000 + 65536);
	giveup(&in, "zwp-probes=3,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_true(out.client_bytes == 605605); /* R·t0, t0 = 605k / 99.9M */
	assert_string_equal(out.recommendation,
	    "Use policy spill with spill_limit = 10M, or give the origin 4 "
	    "zero-window probes, or set resume = on (59 resumes).");
}

/* A large K_in (3.2 MB) makes pace's zero windows 390 kB / r = 3.9 s
 * long; the fix is a smaller receive buffer: 0.9·r·T = 270 kB is under
 * 390 kB, so K_in itself must be under it: 270 kB / (2 × 0.97), down to
 * 64 KiB: 128k, whose K_in of 254 kB gives zero windows of 2.5 s. */
static void
pace_rcvbuf_fix(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.policy = POLICY_PACE;
	in.low = 405000;
	in.k_in = 3200000;
	giveup(&in, "zwp-probes=4,interval=200ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	assert_near(out.stall_s, 3.9, 1e-9);
	assert_non_null(strstr(out.recommendation,
	    "Pin [upstream] rcvbuf = 128k (zero windows under 2.7 s), or "));
	in.k_in = 0;
	in.rcvbuf = 128 * 1024;
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
}

/* pace against a send timeout: K_ws / 3r = 5 s of blocked writes, longer
 * than its 1.6 s zero windows. */
static void
pace_send_timeout(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.policy = POLICY_PACE;
	giveup(&in, "send-timeout=4s");
	predict(&in, &out);
	assert_int_equal(out.complete, 0);
	giveup(&in, "send-timeout=6s");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
}

/* ---- edges ------------------------------------------------------------- */

/* An origin slower than the client never fills the pipe: S / R. */
static void
slow_origin(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.origin_bps = 4e5;
	giveup(&in, "zwp-probes=1,interval=10ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.stalls, 0);
	assert_near(out.client_finish_s, 200, 1e-9);
}

/* A body smaller than the cap: no zero window at all. */
static void
small_body(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.size = 1000000;
	giveup(&in, "zwp-probes=1,interval=10ms");
	predict(&in, &out);
	assert_int_equal(out.complete, 1);
	assert_int_equal(out.stalls, 0);
	assert_true(out.peak_memory == 1000000);
}

static void
kernel_queues(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	model_defaults(&in);
	in.size = 1;
	assert_true(model_k_in(&in) == 4 * 1048576); /* autotuned: a guess */
	predict(&in, &out);
	assert_int_equal(out.k_in_guessed, 1);
	in.rcvbuf = 262144; /* 2 × 256 KiB × 0.97 (measured 502016–508648) */
	assert_true(model_k_in(&in) == 508559);
	in.k_in = 1000;
	assert_true(model_k_in(&in) == 1000);
	assert_true(model_k_out(&in) == 262144);
	in.client_sndbuf = 65536;
	assert_true(model_k_out(&in) == 131072);
	in.k_out = 7;
	assert_true(model_k_out(&in) == 7);
	assert_true(model_reopen_bytes(254279) == 254279);  /* K_in */
	assert_true(model_reopen_bytes(2034237) == 390000); /* the minimum */
	assert_true(model_reopen_bytes(8136949) == 813694); /* K_in / 10 */
	assert_true(model_reopen_bytes(100) == 1448);       /* an MSS */
	assert_near(model_goodput_bps(2e6), 2e6 * 1448 / 1514, 1e-6);
}

static void
bad_inputs(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.size = 0;
	assert_int_equal(model_predict(&in, &out), -EINVAL);
	base(&in);
	in.client_bps = 0;
	assert_int_equal(model_predict(&in, &out), -EINVAL);
	base(&in);
	in.origin_bps = NAN;
	assert_int_equal(model_predict(&in, &out), -EINVAL);
	base(&in);
	in.low = in.high + 1;
	assert_int_equal(model_predict(&in, &out), -EINVAL);
	base(&in);
	in.policy = 7;
	assert_int_equal(model_predict(&in, &out), -EINVAL);
	base(&in);
	in.giveup = GIVEUP_ZWP_PROBES; /* zwp_probes 0 */
	assert_int_equal(model_predict(&in, &out), -EINVAL);
	base(&in);
	in.giveup = GIVEUP_SEND_TIMEOUT; /* giveup_s 0 */
	assert_int_equal(model_predict(&in, &out), -EINVAL);
}

/* ---- give-up rules ----------------------------------------------------- */

static void
giveup_good(void **state)
{
	struct model_in in;

	(void)state;
	model_defaults(&in);
	giveup(&in, "send-timeout=60s");
	assert_int_equal(in.giveup, GIVEUP_SEND_TIMEOUT);
	assert_near(in.giveup_s, 60, 0);
	assert_near(in.orphan_s, 341, 0);
	giveup(&in, "send-timeout=60s,orphan=24s");
	assert_near(in.orphan_s, 24, 0);
	giveup(&in, "user-timeout=30s");
	assert_int_equal(in.giveup, GIVEUP_USER_TIMEOUT);
	assert_near(model_giveup_time(&in), 30.216, 1e-9);
	giveup(&in, "zwp-probes=4,interval=200ms");
	assert_int_equal(in.giveup, GIVEUP_ZWP_PROBES);
	assert_int_equal(in.zwp_probes, 4);
	assert_near(model_giveup_time(&in), 3.0, 1e-9);
	giveup(&in, "zwp-probes=4,interval=200ms,max=500ms");
	assert_near(model_giveup_time(&in), 1.6, 1e-9); /* .2 .4 .5 .5 */
	giveup(&in, "zwp-probes=3,max=1s,interval=1s");
	assert_near(model_giveup_time(&in), 3.0, 1e-9);
	/* the kernel's own schedule (342.4 s at the 11th probe for an RTO of
	 * 216 ms; docs/kernel.md) */
	giveup(&in, "zwp-probes=11,interval=216ms,max=120s");
	assert_near(model_giveup_time(&in), 0.216 * 1023 + 120, 1e-9);
	giveup(&in, "orphan");
	assert_int_equal(in.giveup, GIVEUP_ORPHAN);
	assert_near(model_giveup_time(&in), 341, 0);
	giveup(&in, "orphan=24s");
	assert_near(model_giveup_time(&in), 24, 0);
	giveup(&in, "none");
	assert_int_equal(in.giveup, GIVEUP_NONE);
	assert_true(model_giveup_time(&in) < 0);
	giveup(&in, "user-timeout=5s");
	giveup(&in, "");
	assert_int_equal(in.giveup, GIVEUP_NONE);
	assert_string_equal(model_giveup_name(GIVEUP_ZWP_PROBES), "zwp-probes");
}

static void
giveup_bad(void **state)
{
	static const char *const bad[] = {
	    "bogus",
	    "send-timeout",
	    "send-timeout=",
	    "send-timeout=abc",
	    "send-timeout=0s",
	    "send-timeout=1s,orphan=0",
	    "send-timeout=1s,orphan=2s,x=1",
	    "user-timeout=30s,orphan=2s",
	    "orphan=",
	    "orphan=5s,x",
	    "zwp-probes=0,interval=1s",
	    "zwp-probes=4",
	    "zwp-probes=x,interval=1s",
	    "zwp-probes=4x,interval=1s",
	    "zwp-probes=4,interval=0",
	    "zwp-probes=4,interval=1s,foo=2",
	    "zwp-probes=65,interval=1s",
	    "interval=1s,zwp-probes=4",
	    NULL,
	};
	struct model_in in, before;

	(void)state;
	model_defaults(&in);
	giveup(&in, "send-timeout=7s");
	memcpy(&before, &in, sizeof(in));
	for (size_t i = 0; bad[i] != NULL; i++) {
		int rc = model_parse_giveup(bad[i], &in);

		if (rc != -EINVAL)
			print_error("'%s': rc %d\n", bad[i], rc);
		assert_int_equal(rc, -EINVAL);
		assert_memory_equal(&in, &before, sizeof(in));
	}
	assert_int_equal(model_parse_giveup(NULL, &in), -EINVAL);
}

static void
formatting(void **state)
{
	char b[32];

	(void)state;
	assert_string_equal(model_fmt_bytes(900, b, sizeof(b)), "900 B");
	assert_string_equal(model_fmt_bytes(270000, b, sizeof(b)), "264 KiB");
	assert_string_equal(
	    model_fmt_bytes(2147483648.0, b, sizeof(b)), "2.00 GiB");
	assert_string_equal(
	    model_fmt_bytes(13.1 * 1048576, b, sizeof(b)), "13.1 MiB");
	assert_string_equal(model_fmt_secs(0.25, b, sizeof(b)), "250 ms");
	assert_string_equal(model_fmt_secs(54.6, b, sizeof(b)), "54.6 s");
	assert_string_equal(model_fmt_secs(600, b, sizeof(b)), "10.0 min");
	assert_string_equal(model_fmt_secs(8590, b, sizeof(b)), "2.4 h");
	assert_string_equal(model_fmt_secs(INFINITY, b, sizeof(b)), "never");
}

/* ---- the article's incident at full scale ------------------------------ */

/*
 * 2.5 GB to a 2 or 4 Mbit/s user from a gigabit backend through a balancer
 * that pauses with 2 GiB held and resumes when empty, its upstream rcvbuf
 * 4 MiB, the backend's send timeout nginx's 60 s.  The first zero window
 * (2 GiB / r: 2.4 h at 2 Mbit/s) is fatal; the user gets C + K_in + K_out
 * + r·t0 ≈ 2.16 GB, about 0.52 GB never arrives (the article: 0.4 GB).
 */
static void
article_full_scale(void **state)
{
	static const double rates[] = {2e6, 4e6};
	struct model_in in;
	struct model_out out;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		model_defaults(&in);
		in.size = 5ULL * 1024 * 1024 * 1024 / 2;
		in.client_bps = rates[i];
		in.origin_bps = 1e9;
		in.high = 2ULL * 1024 * 1024 * 1024;
		in.low = 0;
		in.rcvbuf = 4 * 1048576;
		giveup(&in, "send-timeout=60s");
		predict(&in, &out);
		assert_int_equal(out.complete, 0);
		assert_true(out.unsent_bytes >= 200000000);
		assert_true(out.unsent_bytes <= 800000000);
		assert_near(out.giveup_at_s, out.first_stall_s + 60, 1e-6);
	}
	/* at 2 Mbit/s: 2684354560 − (2147483648 + 8136949 + 262144 +
	 * 250000 × 17.3156 s) */
	in.client_bps = 2e6;
	predict(&in, &out);
	assert_true(llabs((long long)out.unsent_bytes - 524151413LL) < 1000);
}

/* ---- a stall ([fault] stall, plan --stall-at/--stall-for) -------------- */

/*
 * A fast client stalled by the proxy at 1 MB for 10 s (stall.ini's case
 * in round figures): under pause the proxy holds high, then K_in, and the
 * origin's window stays shut past its 3 s of probes: truncated, the
 * client gets stall_at + high + K_in.  Under spill the spool takes the
 * rest: complete, 10 s later, the spool's peak the body's rest.  A stall
 * of the upstream side truncates under spill too; a short stall under
 * the give-up time completes.
 */
static void
stall_client_and_upstream(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	in.client_bps = 8e8; /* as fast as the origin: no cycle of its own */
	giveup(&in, "zwp-probes=4,interval=200ms");
	in.stall_at = 1000000;
	in.stall_s = 10;
	in.stall_client = 1;
	predict(&in, &out);
	assert_false(out.complete);
	assert_int_equal(out.client_bytes, 1000000 + 1000000 + 160000);
	assert_int_equal(out.unsent_bytes, 10000000 - 2160000);
	assert_int_equal(out.stalls, 1);
	assert_near(out.stall_s, 3.0, 0.01);
	assert_true(out.client_finish_s >= 10);
	assert_non_null(strstr(out.recommendation, "policy spill"));

	in.policy = POLICY_SPILL;
	in.spill_limit = 1ULL << 30;
	predict(&in, &out);
	assert_true(out.complete);
	assert_int_equal(out.unsent_bytes, 0);
	assert_int_equal(out.stalls, 0);
	assert_int_equal(out.peak_disk, 10000000 - 1000000 - 1000000);
	assert_true(out.client_finish_s >= 10 && out.client_finish_s < 10.5);

	in.stall_client = 0; /* the proxy stops reading: no policy helps */
	predict(&in, &out);
	assert_false(out.complete);
	assert_int_equal(out.client_bytes, 1000000 + 160000);
	assert_non_null(strstr(out.recommendation, "no policy helps"));

	in.stall_s = 2; /* under the 3 s of probes */
	predict(&in, &out);
	assert_true(out.complete);
	assert_int_equal(out.stalls, 1);

	in.stall_s = -1;
	assert_int_equal(model_predict(&in, &out), -EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(pause_patient_origin),
	    cmocka_unit_test(pause_zwp_truncated),
	    cmocka_unit_test(pause_zwp_small_gap),
	    cmocka_unit_test(pause_zwp_complete),
	    cmocka_unit_test(pause_zwp_resume),
	    cmocka_unit_test(pause_send_timeout),
	    cmocka_unit_test(pause_send_timeout_paced),
	    cmocka_unit_test(pause_orphan),
	    cmocka_unit_test(pause_user_timeout_per_stall),
	    cmocka_unit_test(pause_user_timeout_cumulative),
	    cmocka_unit_test(pause_user_timeout_no_probe),
	    cmocka_unit_test(spill_complete),
	    cmocka_unit_test(spill_limited),
	    cmocka_unit_test(pace_probes),
	    cmocka_unit_test(pace_rcvbuf_fix),
	    cmocka_unit_test(pace_send_timeout),
	    cmocka_unit_test(slow_origin),
	    cmocka_unit_test(small_body),
	    cmocka_unit_test(kernel_queues),
	    cmocka_unit_test(stall_client_and_upstream),
	    cmocka_unit_test(bad_inputs),
	    cmocka_unit_test(giveup_good),
	    cmocka_unit_test(giveup_bad),
	    cmocka_unit_test(formatting),
	    cmocka_unit_test(article_full_scale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
