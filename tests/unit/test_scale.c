/*
 * test_scale: a full-size question asked in a scaled run (model/scale.h,
 * docs/model.md "Scaled runs"), against cases computed by hand.
 *
 * The download is test_model's base case: S = 10 MB, a client at r = 100
 * kB/s, an origin at R = 100 MB/s, pause with C = 1 MB and L = 0, K_in =
 * 160 kB, K_out = 40 kB, K_ws = 1.5 MB.  The cap is 1.2 MB, so the origin
 * has sent R·t0 = 1.2 MB · 100 / 99.9 = 1201201.2 bytes when its window
 * first closes; each zero window lasts D = 1 MB / r = 10 s and a cycle moves
 * Δp = 1 MB · 100 / 99.9 = 1001001 bytes.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/config.h"
#include "model/model.h"
#include "model/scale.h"

#define HELD (1.2e6 * 1e8 / 99.9e6) /* R·t0 */

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

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (b)) <= (eps))

/* A byte position of the run: divided, rounded down, never 0 from a
 * position that was not. */
static void
bytes_divided(void **state)
{
	struct model_in q, run;

	(void)state;
	assert_int_equal(scale_bytes(2500000000ULL, 100), 25000000);
	assert_int_equal(scale_bytes(10, 2.5), 4);
	assert_int_equal(scale_bytes(7, 100), 1);
	assert_int_equal(scale_bytes(0, 100), 0);
	assert_int_equal(scale_bytes(1234567, 1), 1234567);

	base(&q);
	q.stall_at = 3000000;
	q.stall_s = 5;
	scale_run_in(&q, 4, &run);
	assert_int_equal(run.size, 2500000);
	assert_int_equal(run.stall_at, 750000);
	assert_true(run.stall_s == 5); /* timers as written */
	assert_int_equal(run.high, q.high);
	assert_true(run.client_bps == q.client_bps);
}

/* The bytes the origin has sent when its window first closes: R·t0,
 * whatever the body. */
static void
close_bytes(void **state)
{
	struct model_in in;
	struct model_out out;

	(void)state;
	base(&in);
	assert_int_equal(model_predict(&in, &out), 0);
	assert_near(out.close_bytes, HELD, 1e-3);
	in.size = 1000000; /* no zero window, the same figure */
	assert_int_equal(model_predict(&in, &out), 0);
	assert_int_equal(out.stalls, 0);
	assert_near(out.close_bytes, HELD, 1e-3);
	in.client_bps = in.origin_bps; /* the client keeps up */
	assert_int_equal(model_predict(&in, &out), 0);
	assert_true(out.close_bytes < 0);
}

/*
 * Truncated in the first zero window (4 probes from 200 ms: 3 s < D):
 * the client gets what the path held in both, so the question misses
 * S − S/K more and ends when the run ends; the zero windows are the same.
 */
static void
truncated_maps_back(void **state)
{
	struct model_in q;
	struct scale_map m;

	(void)state;
	base(&q);
	assert_int_equal(
	    model_parse_giveup("zwp-probes=4,interval=200ms", &q), 0);
	assert_int_equal(scale_predict(&q, 4, &m), 0);
	assert_int_equal(m.question_body, 10000000);
	assert_int_equal(m.run_body, 2500000);
	assert_false(m.question.complete);
	assert_false(m.run.complete);
	assert_int_equal(m.question.client_bytes, m.run.client_bytes);
	assert_int_equal(m.d_unsent, 10000000 - 2500000); /* S − S/K */
	assert_near(m.d_finish_s, 0, 1e-9);
	assert_int_equal(m.d_zero_windows, 0);
	assert_near(m.question.stall_s, m.run.stall_s, 1e-9); /* D the same */

	scale_map_measured(&m, 0, 1300000, 12.5, 9.8, 1);
	assert_true(m.model_agrees);
	assert_false(m.complete);
	assert_int_equal(m.unsent, 1300000 + 7500000);
	assert_near(m.finish_s, 12.5, 1e-9);
	assert_near(m.longest_zero_window_s, 9.8, 1e-9);
	assert_int_equal(m.zero_windows, 1);
	assert_int_equal(m.run_zero_windows, 1);
}

/*
 * Complete (an origin that waits): nothing unsent in either; the question
 * ends (S − S/K) / r = 7.5 MB / 100 kB/s = 75 s later and sees
 * ⌈(S − R·t0) / Δp⌉ − ⌈(S/K − R·t0) / Δp⌉ = 9 − 2 = 7 more zero windows
 * (not K times as many: the first R·t0 bytes pass without one).
 */
static void
complete_maps_back(void **state)
{
	struct model_in q;
	struct scale_map m;

	(void)state;
	base(&q);
	assert_int_equal(scale_predict(&q, 4, &m), 0);
	assert_true(m.question.complete);
	assert_true(m.run.complete);
	assert_int_equal(m.d_unsent, 0);
	assert_near(m.d_finish_s, 75, 1e-6);
	assert_int_equal(m.question.stalls, 9);
	assert_int_equal(m.run.stalls, 2);
	assert_int_equal(m.d_zero_windows, 7);

	scale_map_measured(&m, 1, 0, 26.1, 10.2, 2);
	assert_true(m.model_agrees);
	assert_true(m.complete);
	assert_int_equal(m.unsent, 0);
	assert_near(m.finish_s, 26.1 + 75, 1e-6);
	assert_near(m.longest_zero_window_s, 10.2, 1e-9);
	assert_int_equal(m.zero_windows, 9);

	/* a run that did not do what the model said: the closed forms by
	 * its measured outcome (truncated: S − S/K more unsent, the same
	 * end) */
	scale_map_measured(&m, 0, 1000000, 14, 10.2, 1);
	assert_false(m.model_agrees);
	assert_int_equal(m.unsent, 1000000 + 7500000);
	assert_near(m.finish_s, 14, 1e-9);
	assert_int_equal(m.zero_windows, 1);
}

/* A run too short to see the question's zero window is refused, with the
 * largest K that still sees it: 10 MB / K > 1201201 for K ≤ 8. */
static void
refused_without_zero_window(void **state)
{
	struct model_in q;
	char msg[256] = "";

	(void)state;
	base(&q);
	assert_int_equal(scale_check(&q, 1, msg, sizeof(msg)), 0);
	assert_int_equal(scale_check(&q, 8, msg, sizeof(msg)), 0);
	assert_int_equal(scale_check(&q, 8.5, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg,
	    "8.5 leaves a 1176470-byte body, which the path holds without a "
	    "zero window (it holds 1201201); at most scale = 8");
	assert_int_equal(scale_check(&q, 10, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg,
	    "10 leaves a 1000000-byte body, which the path holds without a "
	    "zero window (it holds 1201201); at most scale = 8");

	/* a question without a zero window scales as far as it likes */
	q.size = 1000000;
	assert_int_equal(scale_check(&q, 1000, msg, sizeof(msg)), 0);
}

/*
 * A send timeout of 5 s fires while the origin's application still
 * writes: ⌈(S − K_ws − R·t0) / Δp⌉ = 8 zero windows in the question.  A
 * run at K = 4 (2.5 MB) has written everything before its first zero
 * window, so its origin never gives up and the download completes: the
 * answer changed.  S/K − K_ws > R·t0 holds up to K = 3.
 */
static void
refused_answer_changed(void **state)
{
	struct model_in q;
	char msg[256] = "";

	(void)state;
	base(&q);
	assert_int_equal(model_parse_giveup("send-timeout=5s", &q), 0);
	assert_int_equal(scale_check(&q, 3, msg, sizeof(msg)), 0);
	assert_int_equal(scale_check(&q, 4, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg,
	    "4 changes the model's answer: the question is truncated, the "
	    "2500000-byte run completes; at most scale = 3");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(bytes_divided),
	    cmocka_unit_test(close_bytes),
	    cmocka_unit_test(truncated_maps_back),
	    cmocka_unit_test(complete_maps_back),
	    cmocka_unit_test(refused_without_zero_window),
	    cmocka_unit_test(refused_answer_changed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
