/*
 * fuzz_scenario: the lab's scenario file (daemon/lab/lab_scenario.c) as
 * sluice lab, sluice plan and sluice bench read it, then what the lab
 * makes of an accepted one: the origin's give-up options and the proxy's
 * config, loaded by the proxy's loader as the lab's proxy would.
 *
 * Input: the file's text (up to its first NUL byte).
 *
 * Invariants, each an abort():
 *   - a refused scenario says why (a non-empty error naming the file);
 *   - an accepted one holds no more than its tables allow (LAB_MAX_KV
 *     sysctls per host and proxy keys), terminated strings, and a give-up
 *     rule that lab_giveup_args translates (the parser checked it);
 *   - the proxy config written for it is a whole file: it loads, or its
 *     refusal is the loader's ordinary error (a combination of keys the
 *     lab passes on as written).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_resolve.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "proxy/config.h"

#define TERMINATED(a) CHECK(memchr((a), '\0', sizeof(a)) != NULL)

static void
check_scenario(const struct lab_scenario *sc)
{
	const char *argv[8];
	char buf[256], err[CONFIG_ERR_MAX] = "", *text = NULL;
	struct config *cfg;
	size_t len = 0;
	FILE *f;

	TERMINATED(sc->name);
	TERMINATED(sc->notes);
	TERMINATED(sc->give_up);
	TERMINATED(sc->article_windows);
	TERMINATED(sc->lb_config);
	CHECK(sc->nproxy <= LAB_MAX_KV);
	CHECK(sc->nlb_directives <= LAB_MAX_KV);
	for (int h = 0; h < LAB_NHOSTS; h++)
		CHECK(sc->nsysctl[h] <= LAB_MAX_KV);
	for (size_t i = 0; i < sc->nproxy; i++) {
		TERMINATED(sc->proxy[i].key);
		TERMINATED(sc->proxy[i].value);
	}
	CHECK(lab_giveup_args(sc->give_up, argv, 8, buf, sizeof(buf)) >= 0);

	f = open_memstream(&text, &len);
	CHECK(f != NULL);
	lab_proxy_config(
	    f, sc, LB_IP ":8080", ORIGIN_IP ":8000", "127.0.0.1:9090", "");
	CHECK(fclose(f) == 0);
	cfg = config_load_string(text, "proxy.ini", err, sizeof(err));
	if (cfg == NULL)
		CHECK(strncmp(err, "proxy.ini:", 10) == 0);
	config_free(cfg);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lab_scenario sc;
	char err[LAB_ERR_MAX] = "";
	size_t len = strnlen((const char *)data, size);
	char *text = malloc(len + 1);

	CHECK(text != NULL);
	memcpy(text, data, len);
	text[len] = '\0';
	if (lab_scenario_parse(text, "fuzz.ini", &sc, err, sizeof(err)) < 0)
		CHECK(strncmp(err, "fuzz.ini", 8) == 0 && err[8] != '\0');
	else
		check_scenario(&sc);
	free(text);
	return 0;
}
