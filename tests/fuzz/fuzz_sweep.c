/*
 * fuzz_sweep: sluice bench's sweep file (daemon/lab/bench.c), which names
 * a base scenario and the axes to vary; loading it parses every
 * combination as a scenario and loads each one's proxy config.
 *
 * Input: the file's text (up to its first NUL byte), read as if it were
 * bench/fuzz.ini of the source tree, so that "base =
 * ../conf/scenarios/incident.ini" names a shipped scenario.  Inputs that
 * name a file under dev/, proc/, sys/ or run/ are skipped: /dev/zero as a
 * base would be read forever.
 *
 * Invariants, each an abort():
 *   - a refused sweep says why (a non-empty error naming the file);
 *   - an accepted one has one point per combination, at most
 *     BENCH_MAX_RUNS runs in all, and each combination's scenario text
 *     parses as the lab will parse it, with a label that fits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_resolve.h"
#include "lab/bench.h"
#include "lab/bench_int.h"
#include "lab/lab.h"

#define NAME SLUICE_SOURCE_ROOT "/bench/fuzz.ini"

static void
check_sweep(const struct bench_sweep *sw)
{
	static struct lab_scenario sc;
	size_t n = bench_combinations(sw);
	char label[64], err[LAB_ERR_MAX];

	CHECK(n >= 1 && sw->npoints == n);
	CHECK(n * sw->repeat <= BENCH_MAX_RUNS);
	for (size_t i = 0; i < n; i++) {
		char *text = bench_scenario_text(sw, i);

		CHECK(text != NULL);
		CHECK(
		    lab_scenario_parse(text, "s", &sc, err, sizeof(err)) == 0);
		free(text);
		bench_combo_label(sw, i, label, sizeof(label), ' ');
		CHECK(strlen(label) < sizeof(label));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bench_sweep sw;
	static const char *const devices[] = {"dev/", "proc/", "sys/", "run/"};
	char err[BENCH_ERR_MAX] = "";
	size_t len = strnlen((const char *)data, size);
	char *text = malloc(len + 1);

	CHECK(text != NULL);
	memcpy(text, data, len);
	text[len] = '\0';
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
		if (strstr(text, devices[i]) != NULL)
			goto out;
	if (bench_sweep_parse(text, NAME, &sw, err, sizeof(err)) < 0)
		CHECK(strncmp(err, NAME, strlen(NAME)) == 0 &&
		    err[strlen(NAME)] != '\0');
	else
		check_sweep(&sw);
	bench_sweep_free(&sw);
out:
	free(text);
	return 0;
}
