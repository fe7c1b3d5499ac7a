/*
 * test_bench: the pure parts of `sluice bench` (bench.h): the sweep file,
 * its combinations, and the scenario one combination makes.
 *
 * A sweep read wrongly runs another grid than the one its file names, and
 * a bad value found at run 7 wastes the six runs before it, so every axis
 * and every refusal (file:line) is pinned here; the shipped sweeps must
 * load.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>

#include "lab/bench.h"
#include "lab/lab.h"

#ifndef SLUICE_SOURCE_ROOT
#define SLUICE_SOURCE_ROOT "."
#endif

/* The sweep's name: a file in bench/, so base resolves to the shipped
 * incident scenario. */
#define NAME SLUICE_SOURCE_ROOT "/bench/t.ini"
#define HEAD                                                                   \
	"[bench]\n"                                                            \
	"base = ../conf/scenarios/incident.ini\n"

static const char every_axis[] =
    HEAD "repeat = 2\n"
         "[axes]\n"
         "policy = pause, spill, pace\n"
         "high_watermark = 1M, 2M\n"
         "low_watermark = 0, 512k\n"
         "spill_limit = 64M\n"
         "resume = off, on\n"
         "zwp_timeout = 30s\n"
         "rcvbuf = 64k\n"
         "client_rate = 1mbit, 2mbit, 4mbit\n"
         "origin_give_up = zwp-probes=4,interval=200ms | send-timeout=10s\n"
         "lb = sluice\n"
         "body = 6M\n";

static void
load_ok(const char *text, struct bench_sweep *sw)
{
	char err[BENCH_ERR_MAX] = "";
	int rc = bench_sweep_parse(text, NAME, sw, err, sizeof(err));

	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
}

/* Parses text, expects an error that holds want (after the file name). */
static void
load_err(const char *text, const char *want)
{
	struct bench_sweep sw;
	char err[BENCH_ERR_MAX] = "";

	assert_int_equal(
	    bench_sweep_parse(text, NAME, &sw, err, sizeof(err)), -EINVAL);
	if (strncmp(err, NAME, strlen(NAME)) != 0 || strstr(err, want) == NULL)
		print_error("got '%s', want '%s'\n", err, want);
	assert_true(strncmp(err, NAME, strlen(NAME)) == 0);
	assert_non_null(strstr(err, want));
	bench_sweep_free(&sw);
}

static void
sweep_every_axis(void **state)
{
	struct bench_sweep sw;

	(void)state;
	load_ok(every_axis, &sw);
	assert_string_equal(sw.name, "t");
	assert_int_equal(sw.repeat, 2);
	assert_int_equal(sw.axes[BENCH_POLICY].nvalues, 3);
	assert_string_equal(sw.axes[BENCH_POLICY].values[2], "pace");
	assert_string_equal(sw.axes[BENCH_HIGH].values[1], "2M");
	assert_string_equal(sw.axes[BENCH_LOW].values[1], "512k");
	assert_int_equal(sw.axes[BENCH_SPILL_LIMIT].nvalues, 1);
	assert_string_equal(sw.axes[BENCH_RESUME].values[1], "on");
	assert_string_equal(sw.axes[BENCH_ZWP_TIMEOUT].values[0], "30s");
	assert_string_equal(sw.axes[BENCH_RCVBUF].values[0], "64k");
	assert_int_equal(sw.axes[BENCH_CLIENT_RATE].nvalues, 3);
	assert_int_equal(sw.axes[BENCH_GIVE_UP].nvalues, 2);
	assert_string_equal(
	    sw.axes[BENCH_GIVE_UP].values[0], "zwp-probes=4,interval=200ms");
	assert_string_equal(
	    sw.axes[BENCH_GIVE_UP].values[1], "send-timeout=10s");
	assert_string_equal(sw.axes[BENCH_LB].values[0], "sluice");
	assert_string_equal(sw.axes[BENCH_BODY].values[0], "6M");
	/* 3 policies × 2 high × 2 low × 2 resume × 3 rates × 2 rules */
	assert_int_equal(bench_combinations(&sw), 144);
	assert_int_equal(sw.npoints, 144);
	/* The first axis varies slowest, the last fastest. */
	assert_int_equal(bench_value_index(&sw, 0, BENCH_POLICY), 0);
	assert_int_equal(bench_value_index(&sw, 143, BENCH_POLICY), 2);
	assert_int_equal(bench_value_index(&sw, 1, BENCH_GIVE_UP), 1);
	assert_int_equal(bench_value_index(&sw, 1, BENCH_SPILL_LIMIT), 0);
	/* The values each run sees, in the CSV's units. */
	assert_string_equal(sw.points[0].values[BENCH_HIGH], "1048576");
	assert_string_equal(sw.points[0].values[BENCH_CLIENT_RATE], "1000000");
	assert_string_equal(sw.points[0].values[BENCH_ZWP_TIMEOUT], "30000");
	assert_string_equal(sw.points[143].values[BENCH_POLICY], "pace");
	assert_string_equal(sw.points[0].values[BENCH_LB], "sluice");
	assert_string_equal(
	    bench_axis_column(BENCH_HIGH), "high_watermark_bytes");
	bench_sweep_free(&sw);
}

static void
sweep_defaults(void **state)
{
	struct bench_sweep sw;

	(void)state;
	load_ok(
	    "[bench]\nname = q\nbase = ../conf/scenarios/incident.ini\n", &sw);
	assert_string_equal(sw.name, "q");
	assert_int_equal(sw.repeat, 1);
	assert_int_equal(bench_combinations(&sw), 1);
	/* An axis the sweep does not give: the base's value. */
	assert_string_equal(sw.points[0].values[BENCH_POLICY], "pause");
	assert_string_equal(sw.points[0].values[BENCH_HIGH], "2097152");
	assert_string_equal(
	    sw.points[0].values[BENCH_GIVE_UP], "zwp-probes=4,interval=200ms");
	bench_sweep_free(&sw);
}

static void
sweep_errors(void **state)
{
	(void)state;
	load_err(HEAD "[axes]\npolicee = pause\n",
	    ":4: [axes] policee: not an axis");
	load_err(HEAD "[axes]\nhigh_watermark = 2M, 2Q\n",
	    ":4: [axes] high_watermark: '2Q' is not a size");
	load_err(HEAD "[axes]\nclient_rate = fast\n",
	    ":4: [axes] client_rate: 'fast' is not a rate");
	load_err(HEAD "[axes]\nzwp_timeout = soon\n",
	    ":4: [axes] zwp_timeout: 'soon' is not a duration");
	load_err(HEAD "[axes]\npolicy = pause, drop\n",
	    ":4: [axes] policy: 'drop' is not pause, spill or pace");
	load_err(HEAD "[axes]\nresume = maybe\n",
	    ":4: [axes] resume: 'maybe' is not on or off");
	load_err(HEAD "[axes]\nlb = envoy\n",
	    ":4: [axes] lb: 'envoy' is not sluice, nginx, haproxy or none");
	load_err(HEAD "[axes]\norigin_give_up = zwp-probes=4\n",
	    ":4: [axes] origin_give_up: 'zwp-probes=4' is not a give-up rule");
	load_err(HEAD "[axes]\npolicy =\n", ":4: [axes] policy: an empty list");
	load_err(HEAD "[axes]\npolicy = pause,,spill\n",
	    ":4: [axes] policy: an empty value");
	load_err(HEAD "[axes]\npolicy = pause\npolicy = spill\n",
	    ":5: [axes] policy: given twice");
	load_err(
	    "[bench]\nrepeat = 0\n", ":2: [bench] repeat: '0' is not a count");
	load_err("[bench]\nrepeat = 2\n", ": [bench] base: missing");
	load_err("[bench]\nbase = nowhere.ini\n", ":2: [bench] base: ");
	load_err(HEAD "speed = 3\n", ":3: [bench] speed: unknown key");
	load_err(HEAD "[knobs]\nx = 1\n", ":4: [knobs] x: unknown section");
	/* A combination the lab would refuse: named by its axis values. */
	load_err(HEAD "[axes]\nlb = sluice, none\n",
	    ": [axes] lb=none: the lab would refuse it");
	load_err(HEAD "[axes]\nlow_watermark = 0, 4M\n",
	    ": [axes] low_watermark=4M: the lab would refuse it");
}

/* The generated scenario: the base's overridden keys commented out (the
 * lab refuses a [proxy] key given twice), the axes appended. */
static void
scenario_text(void **state)
{
	struct bench_sweep sw;
	struct lab_scenario sc;
	char err[LAB_ERR_MAX] = "", *text;

	(void)state;
	load_ok(HEAD "[axes]\npolicy = pause, spill\nclient_rate = 4mbit\n"
	             "origin_give_up = send-timeout=3s | none\n",
	    &sw);
	assert_int_equal(bench_combinations(&sw), 4);
	text = bench_scenario_text(&sw, 2); /* spill, send-timeout=3s */
	assert_non_null(text);
	assert_non_null(strstr(text, "# sluice bench: buffer.policy = pause"));
	assert_non_null(strstr(text, "[proxy]\nbuffer.policy = spill\n"));
	assert_non_null(strstr(text, "[origin]\ngive_up = send-timeout=3s\n"));
	assert_int_equal(
	    lab_scenario_parse(text, "gen.ini", &sc, err, sizeof(err)), 0);
	assert_int_equal(sc.lb_client_bps, 4000000);
	assert_string_equal(sc.give_up, "send-timeout=3s");
	assert_string_equal(sc.name, "incident");
	for (size_t i = 0; i < sc.nproxy; i++)
		if (strcmp(sc.proxy[i].key, "buffer.policy") == 0)
			assert_string_equal(sc.proxy[i].value, "spill");
	assert_string_equal(sw.points[3].values[BENCH_GIVE_UP], "none");
	free(text);
	bench_sweep_free(&sw);
}

static void
shipped_sweeps(void **state)
{
	const char *files[] = {SLUICE_SOURCE_ROOT "/bench/quick.ini",
	    SLUICE_SOURCE_ROOT "/bench/strategies.ini"};
	struct bench_sweep sw;
	char err[BENCH_ERR_MAX] = "";

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		int rc = bench_sweep_load(files[i], &sw, err, sizeof(err));

		if (rc != 0)
			print_error("%s\n", err);
		assert_int_equal(rc, 0);
		bench_sweep_free(&sw);
	}
	assert_int_equal(bench_sweep_load(files[0], &sw, err, sizeof(err)), 0);
	assert_int_equal(bench_combinations(&sw), 2);
	bench_sweep_free(&sw);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/*
 * --emit: the sweep written to sweep/sweep.ini loads back as the same grid
 * (every axis, the '|' list of give-up rules, repeat, every combination's
 * values), each run's file is its scenario with a header, runs.txt lists
 * them in run order; a second emit into the full directory is refused.
 */
static void
emit_round_trip(void **state)
{
	char dir[] = "/tmp/sluice-test-bench-XXXXXX", sweep[256], out[256],
	     path[512], line[256], *text, *file;
	const char *base =
	    "base = " SLUICE_SOURCE_ROOT "/conf/scenarios/incident.ini\n";
	struct bench_sweep a, b;
	char err[BENCH_ERR_MAX] = "";
	FILE *f;
	size_t n = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sweep, sizeof(sweep), "%s/every.ini", dir);
	snprintf(out, sizeof(out), "%s/emitted", dir);
	assert_non_null(f = fopen(sweep, "w"));
	fprintf(f, "[bench]\nname = every\n%s%s", base,
	    strchr(strchr(every_axis, '\n') + 1, '\n') + 1);
	fclose(f);
	{
		char *argv[] = {"bench", sweep, "--emit", out, NULL};

		assert_int_equal(bench_main(4, argv), 0);
		/* Into a directory that is not empty: refused. */
		assert_int_equal(bench_main(4, argv), 1);
	}
	assert_int_equal(bench_sweep_load(sweep, &a, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/sweep/sweep.ini", out);
	if (bench_sweep_load(path, &b, err, sizeof(err)) != 0)
		print_error("%s\n", err);
	assert_string_equal(b.name, "every");
	assert_int_equal(b.repeat, 2);
	assert_int_equal(b.npoints, a.npoints);
	assert_int_equal(a.npoints, 144);
	assert_string_equal(b.base_text, a.base_text);
	for (int x = 0; x < BENCH_NAXES; x++) {
		assert_int_equal(b.axes[x].nvalues, a.axes[x].nvalues);
		for (size_t v = 0; v < a.axes[x].nvalues; v++)
			assert_string_equal(
			    b.axes[x].values[v], a.axes[x].values[v]);
	}
	assert_memory_equal(b.points, a.points, a.npoints * sizeof(*a.points));
	assert_string_equal(
	    b.axes[BENCH_GIVE_UP].values[1], "send-timeout=10s");
	/* runs.txt: 288 files in run order, each the run's scenario. */
	snprintf(path, sizeof(path), "%s/runs.txt", out);
	assert_non_null(f = fopen(path, "r"));
	while (fgets(line, sizeof(line), f) != NULL) {
		char want[16];

		snprintf(want, sizeof(want), "%03zu-", n + 1);
		assert_true(strncmp(line, want, 4) == 0);
		if (n == 5) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "%s/%s", out, line);
			text = bench_scenario_text(&a, 5 / 2);
			f = freopen(path, "r", f);
			assert_non_null(f);
			file = calloc(1, 1 << 16);
			assert_true(fread(file, 1, (1 << 16) - 1, f) > 0);
			assert_non_null(strstr(file, text));
			assert_non_null(strstr(file, "run 6 of 288"));
			free(file);
			free(text);
			n = 288;
			break;
		}
		n++;
	}
	fclose(f);
	assert_int_equal(n, 288);
	bench_sweep_free(&a);
	bench_sweep_free(&b);
	assert_int_equal(nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sweep_every_axis),
	    cmocka_unit_test(sweep_defaults),
	    cmocka_unit_test(sweep_errors),
	    cmocka_unit_test(scenario_text),
	    cmocka_unit_test(shipped_sweeps),
	    cmocka_unit_test(emit_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
