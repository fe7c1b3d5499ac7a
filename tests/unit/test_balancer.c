/*
 * test_balancer: which upstream a download goes to (balancer.h).
 *
 * The configs are loaded from INI text like the proxy's, so the tests
 * also hold the parser to keeping servers in file order: the balancer's
 * indices are positions in that order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/balancer.h"
#include "proxy/config.h"

#define THREE                                                                  \
	"[upstream]\n"                                                         \
	"server = 127.0.0.1:9000\n"                                            \
	"server = 127.0.0.1:9001\n"                                            \
	"server = 127.0.0.1:9002\n"
#define ALL_OF(n) ((n) == 64 ? ~0ULL : (1ULL << (n)) - 1)

static struct config *
load(const char *text)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;

	cfg = config_load_string(text, "t.ini", err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	return cfg;
}

static void
round_robin(void **state)
{
	struct config *cfg = load(THREE);
	struct balancer b;

	(void)state;
	assert_int_equal(cfg->upstream.balance, BALANCE_ROUND_ROBIN);
	balancer_init(&b, cfg);
	for (int i = 0; i < 9; i++)
		assert_int_equal(balancer_pick(&b, 0), i % 3);
	/* Load does not matter to round-robin. */
	balancer_acquire(&b, 0);
	balancer_acquire(&b, 0);
	assert_int_equal(balancer_pick(&b, 0), 0);
	assert_int_equal(balancer_pick(&b, 0), 1);
	config_free(cfg);
}

static void
tried_skipped(void **state)
{
	struct config *cfg = load(THREE);
	struct balancer b;
	uint64_t tried = 0;
	int seen[3] = {0, 0, 0}, i;

	(void)state;
	balancer_init(&b, cfg);
	assert_int_equal(balancer_pick(&b, 1u << 0), 1);
	assert_int_equal(balancer_pick(&b, 1u << 0), 2);
	/* The cursor wraps past the tried server. */
	assert_int_equal(balancer_pick(&b, 1u << 0), 1);
	assert_int_equal(balancer_pick(&b, (1u << 0) | (1u << 2)), 1);
	assert_int_equal(balancer_pick(&b, (1u << 1) | (1u << 2)), 0);

	/* A download's retries: each server once, then -1 (504). */
	while ((i = balancer_pick(&b, tried)) >= 0) {
		assert_true(i < 3);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
		tried |= 1ULL << i;
	}
	assert_true(tried == ALL_OF(3));
	assert_int_equal(balancer_pick(&b, ALL_OF(3)), -1);
	/* Bits past the last server mean nothing. */
	assert_int_equal(balancer_pick(&b, ~0ULL), -1);
	assert_true(balancer_pick(&b, ~ALL_OF(3)) >= 0);
	config_free(cfg);
}

static void
all_tried_keeps_cursor(void **state)
{
	struct config *cfg = load(THREE);
	struct balancer b;

	(void)state;
	balancer_init(&b, cfg);
	assert_int_equal(balancer_pick(&b, 0), 0);
	assert_int_equal(balancer_pick(&b, ALL_OF(3)), -1);
	/* A failed pick does not move the rotation for the next download. */
	assert_int_equal(balancer_pick(&b, 0), 1);
	config_free(cfg);
}

static void
least_conn(void **state)
{
	struct config *cfg = load(THREE "balance = least-conn\n");
	struct balancer b;

	(void)state;
	assert_int_equal(cfg->upstream.balance, BALANCE_LEAST_CONN);
	balancer_init(&b, cfg);
	/* Active: 2, 1, 0 -> server 2. */
	balancer_acquire(&b, 0);
	balancer_acquire(&b, 0);
	balancer_acquire(&b, 1);
	assert_int_equal(balancer_pick(&b, 0), 2);
	balancer_acquire(&b, 2);
	/* Active: 2, 1, 1 -> server 1 (server 2 ties but follows). */
	assert_int_equal(balancer_pick(&b, 0), 1);
	balancer_acquire(&b, 1);
	/* Active: 2, 2, 1 -> 2 again: the least wins over the rotation. */
	assert_int_equal(balancer_pick(&b, 0), 2);
	assert_int_equal(balancer_pick(&b, 0), 2);
	/* Unless it was tried: then the least of the others. */
	assert_int_equal(balancer_pick(&b, 1u << 2), 0);
	config_free(cfg);
}

static void
least_conn_ties(void **state)
{
	struct config *cfg = load(THREE "balance = least-conn\n");
	struct balancer b;

	(void)state;
	balancer_init(&b, cfg);
	/* All equal: ties go round-robin, not always to server 0. */
	for (int i = 0; i < 6; i++)
		assert_int_equal(balancer_pick(&b, 0), i % 3);
	/* Downloads that stay open spread evenly. */
	for (int i = 0; i < 6; i++) {
		int s = balancer_pick(&b, 0);

		assert_int_equal(s, i % 3);
		balancer_acquire(&b, s);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(b.active[i], 2);
	/* One ends on server 1: it is now the least. */
	balancer_release(&b, 1);
	assert_int_equal(balancer_pick(&b, 0), 1);
	assert_int_equal(balancer_pick(&b, 0), 1);
	/* All tie again: the rotation goes on from the cursor (2). */
	balancer_acquire(&b, 1);
	assert_int_equal(balancer_pick(&b, 0), 2);
	assert_int_equal(balancer_pick(&b, 0), 0);
	config_free(cfg);
}

static void
acquire_release(void **state)
{
	struct config *cfg = load(THREE);
	struct balancer b;

	(void)state;
	balancer_init(&b, cfg);
	assert_ptr_equal(b.cfg, cfg);
	for (int i = 0; i < CONFIG_MAX_SERVERS; i++)
		assert_int_equal(b.active[i], 0);
	balancer_acquire(&b, 2);
	balancer_acquire(&b, 2);
	balancer_acquire(&b, 0);
	assert_int_equal(b.active[0], 1);
	assert_int_equal(b.active[1], 0);
	assert_int_equal(b.active[2], 2);
	balancer_release(&b, 2);
	assert_int_equal(b.active[2], 1);
	balancer_release(&b, 2);
	balancer_release(&b, 0);
	assert_int_equal(b.active[0], 0);
	assert_int_equal(b.active[2], 0);
	/* A release without an acquire does not wrap the count. */
	balancer_release(&b, 1);
	assert_int_equal(b.active[1], 0);
	config_free(cfg);
}

static void
one_server(void **state)
{
	struct config *cfg = load("");
	struct balancer b;

	(void)state;
	/* The default config: one server. */
	assert_int_equal(cfg->upstream.nservers, 1);
	balancer_init(&b, cfg);
	assert_int_equal(balancer_pick(&b, 0), 0);
	assert_int_equal(balancer_pick(&b, 0), 0);
	assert_int_equal(balancer_pick(&b, 1), -1);
	config_free(cfg);
}

static void
max_servers(void **state)
{
	char text[4096];
	struct config *cfg;
	struct balancer b;
	size_t n;

	(void)state;
	n = (size_t)snprintf(
	    text, sizeof(text), "[upstream]\nbalance = least-conn\n");
	for (int i = 0; i < CONFIG_MAX_SERVERS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "server = 127.0.0.1:%d\n", 9000 + i);
	assert_true(n < sizeof(text));
	cfg = load(text);
	assert_int_equal(cfg->upstream.nservers, 64);
	balancer_init(&b, cfg);
	/* The last server is bit 63 of `tried`. */
	assert_int_equal(balancer_pick(&b, ~0ULL >> 1), 63);
	assert_int_equal(balancer_pick(&b, ~0ULL), -1);
	assert_int_equal(balancer_pick(&b, 0), 0);
	for (int i = 0; i < 64; i++)
		balancer_acquire(&b, i);
	balancer_release(&b, 40);
	assert_int_equal(balancer_pick(&b, 0), 40);
	assert_int_equal(balancer_pick(&b, 1ULL << 40), 41);
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_robin),
	    cmocka_unit_test(tried_skipped),
	    cmocka_unit_test(all_tried_keeps_cursor),
	    cmocka_unit_test(least_conn),
	    cmocka_unit_test(least_conn_ties),
	    cmocka_unit_test(acquire_release),
	    cmocka_unit_test(one_server),
	    cmocka_unit_test(max_servers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
