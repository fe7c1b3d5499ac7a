/*
 * test_walk: the article's Figure 2 step by step (walk.h), against the
 * article's own figures: a 4,000-byte buffer, 1,000 bytes sent every 5 s,
 * 800 read every 8 s.  rwnd is 3000 after the first segment and 3800 after
 * the read at T0, 2800 at T5, ..., 0 after the send at T35; a probe at T40
 * finds 800 bytes free, one at T45 none.  Past the figure, the walk's own
 * rules (walk.h) give the rest, computed by hand below.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/walk.h"

static void
run(struct walk_out *o)
{
	struct walk_in in;

	walk_defaults(&in);
	assert_int_equal(walk_run(&in, o), 0);
}

/* The first step of event ev at t_ms, after step `from`; fails if none. */
static const struct walk_step *
find(const struct walk_out *o, size_t from, uint64_t t_ms, enum walk_event ev)
{
	for (size_t i = from; i < o->n; i++)
		if (o->steps[i].t_ms == t_ms && o->steps[i].ev == ev)
			return &o->steps[i];
	fail_msg(
	    "no %s at %llu ms", walk_event_name(ev), (unsigned long long)t_ms);
	return NULL;
}

/* T0: 1,000 bytes arrive, the ack says 3000, the waiting reader takes
 * 800 at once and rwnd is 3800 (the article: "3800 (3000 + 800)"). */
static void
t0(void **state)
{
	struct walk_out o;
	const struct walk_step *s;

	(void)state;
	run(&o);
	s = &o.steps[0];
	assert_true(s->ev == WALK_SEND && s->t_ms == 0 && s->bytes == 1000);
	s = &o.steps[1];
	assert_true(s->ev == WALK_ACK && s->rwnd == 3000 &&
	    s->advertised == 3000 && s->buffered == 1000);
	s = &o.steps[2];
	assert_true(s->ev == WALK_READ && s->t_ms == 0 && s->bytes == 800);
	assert_true(s->buffered == 200 && s->rwnd == 3800 && s->announced);
	walk_free(&o);
}

/* The acks of the sends at T0, T5, ..., T35.  Reads at T0, 8, 16, 24, 32
 * take 800 each: at T35, 8000 sent − 4000 read = 4000 buffered. */
static void
acks_to_zero(void **state)
{
	static const uint64_t want[] = {
	    3000, 2800, 2600, 1600, 1400, 1200, 200, 0};
	struct walk_out o;
	size_t at = 0;

	(void)state;
	run(&o);
	for (unsigned k = 0; k < 8; k++) {
		const struct walk_step *s = find(&o, at, k * 5000, WALK_SEND);

		assert_int_equal(s->bytes, 1000);
		assert_int_equal(s[1].ev, WALK_ACK);
		assert_int_equal(s[1].rwnd, want[k]);
		at = (size_t)(s - o.steps) + 1;
	}
	assert_int_equal(o.first_zero_ms, 35000);
	walk_free(&o);
}

/* T40: the read comes first (rwnd 800, unheard: the sender was told 0),
 * the probe is answered 800, the sender sends those 800 at once; T45's
 * probe is answered 0. */
static void
probes(void **state)
{
	struct walk_out o;
	const struct walk_step *s;

	(void)state;
	run(&o);
	s = find(&o, 0, 40000, WALK_READ);
	assert_true(s->rwnd == 800 && !s->announced && s->advertised == 0);
	assert_int_equal(s[1].ev, WALK_PROBE);
	assert_true(s[2].ev == WALK_ACK && s[2].rwnd == 800);
	assert_true(s[3].ev == WALK_SEND && s[3].bytes == 800);
	assert_true(s[4].ev == WALK_ACK && s[4].rwnd == 0);
	s = find(&o, 0, 45000, WALK_PROBE);
	assert_true(s[1].ev == WALK_ACK && s[1].rwnd == 0);
	/* No send between T35 and T40 but the probe's. */
	for (size_t i = 0; i < o.n; i++)
		if (o.steps[i].ev == WALK_SEND)
			assert_true(o.steps[i].t_ms <= 35000 ||
			    o.steps[i].t_ms >= 40000);
	walk_free(&o);
}

/* Past the figure: probes at T50 (800), T55 (0), T60 (800, and the last
 * 400 bytes go); 10000 bytes at 800 per 8 s from T0 are all read by the
 * 13th read, T96, which takes the last 400. */
static void
the_end(void **state)
{
	struct walk_out o;
	const struct walk_step *s;

	(void)state;
	run(&o);
	assert_int_equal(o.probes, 5);
	assert_int_equal(o.probes_zero, 2);
	assert_int_equal(o.all_sent_ms, 60000);
	assert_int_equal(o.all_read_ms, 96000);
	s = &o.steps[o.n - 1];
	assert_true(s->ev == WALK_READ && s->bytes == 400 && s->buffered == 0 &&
	    s->rwnd == 4000);
	walk_free(&o);
}

/* The buffer never holds more than its size; bytes are conserved. */
static void
invariants(void **state)
{
	struct walk_in in;
	struct walk_out o;
	uint64_t sent = 0, read = 0;

	(void)state;
	walk_defaults(&in);
	in.buffer = 2500;
	in.send_bytes = 1500;
	in.read_ms = 3000;
	in.read_bytes = 300;
	in.total = 20000;
	assert_int_equal(walk_run(&in, &o), 0);
	for (size_t i = 0; i < o.n; i++) {
		const struct walk_step *s = &o.steps[i];

		sent += s->ev == WALK_SEND ? s->bytes : 0;
		read += s->ev == WALK_READ ? s->bytes : 0;
		assert_true(s->buffered <= in.buffer);
		assert_int_equal(s->buffered, sent - read);
		assert_int_equal(s->rwnd, in.buffer - s->buffered);
		if (i > 0)
			assert_true(s->t_ms >= o.steps[i - 1].t_ms);
	}
	assert_int_equal(sent, 20000);
	assert_int_equal(read, 20000);
	walk_free(&o);
}

/* A fast reader: the window never closes, no probe. */
static void
fast_reader(void **state)
{
	struct walk_in in;
	struct walk_out o;

	(void)state;
	walk_defaults(&in);
	in.read_bytes = 2000;
	assert_int_equal(walk_run(&in, &o), 0);
	assert_int_equal(o.first_zero_ms, -1);
	assert_int_equal(o.probes, 0);
	assert_int_equal(o.all_sent_ms, 45000);
	walk_free(&o);
}

static void
bad_inputs(void **state)
{
	struct walk_in in;
	struct walk_out o;

	(void)state;
	walk_defaults(&in);
	in.read_ms = 0;
	assert_int_equal(walk_run(&in, &o), -EINVAL);
	walk_defaults(&in);
	in.total = 1000000000;
	in.send_bytes = 1;
	assert_int_equal(walk_run(&in, &o), -E2BIG);
	assert_null(o.steps);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t0),
	    cmocka_unit_test(acks_to_zero),
	    cmocka_unit_test(probes),
	    cmocka_unit_test(the_end),
	    cmocka_unit_test(invariants),
	    cmocka_unit_test(fast_reader),
	    cmocka_unit_test(bad_inputs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
