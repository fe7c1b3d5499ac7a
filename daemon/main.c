/*
 * main: the sluice binary's verbs.  Everything else lives in the library
 * (libsluice) that the tests link too.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/proxy.h"
#include "peers/fetch.h"
#include "peers/origin.h"
#include "model/plan.h"
#include "lab/bench.h"
#include "lab/lab.h"
#include "version.h"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice VERB [options]\n"
	    "\n"
	    "  sluice proxy -c FILE     run the reverse proxy in the "
	    "foreground\n"
	    "  sluice check -c FILE     validate a proxy config (exit 0 or 2)\n"
	    "  sluice origin --listen ADDR [options]\n"
	    "                           the testbed's fast origin (sluice help "
	    "origin)\n"
	    "  sluice fetch URL [options]\n"
	    "                           the testbed's slow, verifying client\n"
	    "                           (sluice help fetch)\n"
	    "  sluice plan [SCENARIO.ini] [options]\n"
	    "                           predict a download: complete or how\n"
	    "                           much is cut, and what to change\n"
	    "                           (sluice help plan)\n"
	    "  sluice lab SCENARIO.ini [--json] [--out DIR] [-v]\n"
	    "                           reproduce the incident in network\n"
	    "                           namespaces (sluice help lab)\n"
	    "  sluice bench SWEEP.ini [--out DIR] [--json] [-v]\n"
	    "                           run a grid of lab scenarios and\n"
	    "                           compare them (sluice help bench)\n"
	    "  sluice help [origin|fetch|plan|lab|bench|config [--ini]]\n"
	    "                           this text, or every config key as a\n"
	    "                           markdown table (or as a commented "
	    "INI)\n"
	    "  sluice --version         print the version\n"
	    "\n"
	    "sluice relays HTTP/1.1 downloads from fast upstreams to slow\n"
	    "clients with bounded buffers and watermark backpressure.\n"
	    "\n"
	    "\"The article\" in these texts: Ram P. Rustagi and\n"
	    "Viraj Kumar, \"Experiential Learning of Networking\n"
	    "Technologies: Understanding TCP Flow Control\", a\n"
	    "quarterly publication of ACCS.  Its Exercises 1-3, its\n"
	    "printer, its zero-window DoS and its load-balancer\n"
	    "incident are the lab's scenarios (docs/references.md);\n"
	    "the kernel facts sluice rests on: docs/kernel.md.\n");
}

/* Finds "-c FILE" (or "--config FILE", "-cFILE") in argv. */
static const char *
config_arg(int argc, char **argv)
{
	for (int i = 2; i < argc; i++) {
		if ((strcmp(argv[i], "-c") == 0 ||
		        strcmp(argv[i], "--config") == 0) &&
		    i + 1 < argc)
			return argv[i + 1];
		if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2] != '\0')
			return argv[i] + 2;
	}
	return NULL;
}

static int
cmd_check(const char *path)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load(path, err, sizeof(err));

	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (proxy_check_address(cfg, err, sizeof(err)) < 0 ||
	    proxy_check_files(cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		config_free(cfg);
		return 2;
	}
	printf("%s: ok (%zu upstream servers)\n", path, cfg->upstream.nservers);
	config_free(cfg);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : NULL;
	const char *cfg;

	if (verb == NULL) {
		usage(stderr);
		return 2;
	}
	if (strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
		printf("sluice %s\n", SLUICE_VERSION);
		return 0;
	}
	if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 ||
	    strcmp(verb, "-h") == 0) {
		if (argc > 2 && strcmp(argv[2], "origin") == 0) {
			origin_usage(stdout);
			return 0;
		}
		if (argc > 2 && strcmp(argv[2], "fetch") == 0) {
			fetch_usage(stdout);
			return 0;
		}
		if (argc > 2 && strcmp(argv[2], "lab") == 0) {
			lab_usage(stdout);
			return 0;
		}
		if (argc > 2 && strcmp(argv[2], "bench") == 0) {
			bench_usage(stdout);
			return 0;
		}
		if (argc > 2 && strcmp(argv[2], "plan") == 0) {
			plan_usage(stdout);
			return 0;
		}
		if (argc > 2 && strcmp(argv[2], "config") == 0) {
			if (argc > 3 && strcmp(argv[3], "--ini") == 0)
				config_print_ini(stdout);
			else
				config_print_markdown(stdout);
			return 0;
		}
		usage(stdout);
		return 0;
	}
	if (strcmp(verb, "origin") == 0)
		return origin_main(argc - 1, argv + 1);
	if (strcmp(verb, "fetch") == 0)
		return fetch_main(argc - 1, argv + 1);
	if (strcmp(verb, "lab") == 0)
		return lab_main(argc - 1, argv + 1);
	if (strcmp(verb, "bench") == 0)
		return bench_main(argc - 1, argv + 1);
	if (strcmp(verb, "plan") == 0)
		return plan_main(argc - 1, argv + 1);
	if (strcmp(verb, "proxy") == 0 || strcmp(verb, "check") == 0) {
		if ((cfg = config_arg(argc, argv)) == NULL) {
			fprintf(
			    stderr, "sluice %s: -c FILE is required\n", verb);
			return 2;
		}
		return verb[0] == 'p' ? proxy_main(cfg) : cmd_check(cfg);
	}
	fprintf(stderr, "sluice: unknown verb '%s'\n", verb);
	usage(stderr);
	return 2;
}
