/*
 * plan: see plan.h.
 *
 * The inputs are a struct model_in: model_defaults(), then a scenario file
 * when one is named (read with the lab's own parser and the proxy's own
 * config loader, so a scenario means the same here as in `sluice lab`),
 * then the options, which override it.  The output is a few lines, or one
 * JSON object with --json.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/units.h"
#include "proxy/config.h"
#include "model/model.h"
#include "model/plan.h"
#include "model/scale.h"
#include "lab/lab.h"

#define MAX_SET 64

struct plan_opts {
	struct model_in in;
	char giveup[128]; /* the rule as given, for the output */
	const char *scenario;
	double scale; /* [lab] scale or --scale: 1 asks the question only */
	bool json;
	int nset;
	struct {
		int c;
		const char *arg;
	} set[MAX_SET];
};

void
plan_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice plan [SCENARIO.ini] [options] [--json]\n"
	    "       sluice plan --walk [walk options] [--json]\n"
	    "\n"
	    "Predicts whether a download from a fast origin to a slow client\n"
	    "through the proxy completes, when the origin gives up, the bytes\n"
	    "that never arrive, and the smallest change that saves it\n"
	    "(docs/model.md).  A lab scenario gives every input; options\n"
	    "override it.\n"
	    "\n"
	    "  --size SIZE              body size (2.5G; 1024-based)\n"
	    "  --client-rate RATE       the client's goodput (2mbit)\n"
	    "  --origin-rate RATE       origin to proxy (default 1gbit)\n"
	    "  --policy pause|spill|pace          (default pause)\n"
	    "  --high SIZE --low SIZE   watermarks (default 1M, 256k)\n"
	    "  --spill-limit SIZE       policy spill (default 1G)\n"
	    "  --block SIZE             [buffer] block_size (default 64k)\n"
	    "  --rcvbuf SIZE            the proxy's [upstream] rcvbuf; K_in "
	    "is\n"
	    "                           about twice it (unset: autotuned, a "
	    "guess)\n"
	    "  --k-in SIZE              K_in itself, as measured\n"
	    "  --client-sndbuf SIZE     the proxy's [client] sndbuf (K_out = "
	    "2x)\n"
	    "  --k-out SIZE             K_out itself (default 256k)\n"
	    "  --origin-sndbuf SIZE     the origin's SO_SNDBUF (K_ws = 2x; "
	    "default\n"
	    "                           K_ws 4M)\n"
	    "  --origin-give-up RULE    none, send-timeout=T[,orphan=T],\n"
	    "                           user-timeout=T, orphan[=T],\n"
	    "                           zwp-probes=N,interval=T[,max=T]\n"
	    "                           (default send-timeout=60s, nginx's)\n"
	    "  --resume                 the proxy's resume = on\n"
	    "  --stall-at SIZE --stall-for T [--stall-side upstream|client]\n"
	    "                           one stall (a [fault] stall of the\n"
	    "                           proxy): at SIZE body bytes that side\n"
	    "                           stops for T (default side upstream)\n"
	    "  --scale K                the question asked in a run with the\n"
	    "                           bytes divided by K ([lab] scale, a\n"
	    "                           scenario's own by default): the run's\n"
	    "                           prediction beside the question's and\n"
	    "                           how the run maps back (docs/model.md)\n"
	    "  --json                   one object: outcome unsent_bytes\n"
	    "                           giveup_at_s client_finish_s\n"
	    "                           peak_memory_bytes peak_disk_bytes\n"
	    "                           recommendation, and more\n"
	    "\n"
	    "Exit code 0 when a prediction was printed (complete or not), 2 "
	    "on\nbad usage.  Example, the article's case:\n"
	    "  sluice plan --size 2.5G --client-rate 2mbit --origin-rate "
	    "1gbit \\\n"
	    "      --high 2G --low 0 --rcvbuf 4M "
	    "--origin-give-up send-timeout=60s\n"
	    "\n");
	plan_walk_usage(out);
}

enum {
	O_SIZE = 256,
	O_CLIENT_RATE,
	O_ORIGIN_RATE,
	O_POLICY,
	O_HIGH,
	O_LOW,
	O_SPILL_LIMIT,
	O_BLOCK,
	O_RCVBUF,
	O_K_IN,
	O_CLIENT_SNDBUF,
	O_K_OUT,
	O_ORIGIN_SNDBUF,
	O_GIVEUP,
	O_RESUME,
	O_JSON,
	O_STALL_AT,
	O_STALL_FOR,
	O_STALL_SIDE,
	O_SCALE,
};

static const struct option plan_options[] = {
    {"size", required_argument, NULL, O_SIZE},
    {"client-rate", required_argument, NULL, O_CLIENT_RATE},
    {"origin-rate", required_argument, NULL, O_ORIGIN_RATE},
    {"policy", required_argument, NULL, O_POLICY},
    {"high", required_argument, NULL, O_HIGH},
    {"low", required_argument, NULL, O_LOW},
    {"spill-limit", required_argument, NULL, O_SPILL_LIMIT},
    {"block", required_argument, NULL, O_BLOCK},
    {"rcvbuf", required_argument, NULL, O_RCVBUF},
    {"k-in", required_argument, NULL, O_K_IN},
    {"client-sndbuf", required_argument, NULL, O_CLIENT_SNDBUF},
    {"k-out", required_argument, NULL, O_K_OUT},
    {"origin-sndbuf", required_argument, NULL, O_ORIGIN_SNDBUF},
    {"origin-give-up", required_argument, NULL, O_GIVEUP},
    {"resume", no_argument, NULL, O_RESUME},
    {"stall-at", required_argument, NULL, O_STALL_AT},
    {"stall-for", required_argument, NULL, O_STALL_FOR},
    {"stall-side", required_argument, NULL, O_STALL_SIDE},
    {"scale", required_argument, NULL, O_SCALE},
    {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int
usage_error(const char *opt, const char *v, const char *what)
{
	fprintf(stderr, "sluice plan: %s%s%s: %s\n", opt, v ? " " : "",
	    v ? v : "", what);
	return PLAN_EXIT_USAGE;
}

/* ---- a scenario file ---------------------------------------------------- */

void
plan_scenario_model(const struct lab_scenario *sc, const struct config *cfg,
    int mode, struct model_in *in)
{
	double link = model_goodput_bps((double)sc->lb_client_bps);
	double rate = (double)sc->client_rate_bps;

	in->size = sc->body;
	if (mode == LAB_MODE_NETNS) {
		in->client_bps = rate > 0 && rate < link ? rate : link;
		in->origin_bps = model_goodput_bps((double)sc->origin_lb_bps);
	} else { /* loopback: fetch paces itself, the origin is local */
		in->client_bps = rate > 0 ? rate : (double)sc->lb_client_bps;
		in->origin_bps = 10e9;
	}
	in->policy = cfg->buffer.policy;
	in->high = cfg->buffer.high_watermark;
	in->low = cfg->buffer.low_watermark;
	in->spill_limit = cfg->buffer.spill_limit;
	in->block = cfg->buffer.block_size;
	in->rcvbuf = cfg->upstream.rcvbuf;
	in->client_sndbuf = cfg->client.sndbuf;
	in->resume = cfg->buffer.resume;
	if (sc->origin_sndbuf != 0)
		in->k_ws = 2 * sc->origin_sndbuf; /* the kernel doubles it */
	if (model_parse_giveup(sc->give_up, in) < 0)
		in->giveup = GIVEUP_NONE; /* lab_scenario_parse checked it */
	if (strcmp(sc->fault_action, "stall") == 0) {
		in->stall_at = sc->fault_after;
		in->stall_s = (double)sc->fault_for_ms / 1000.0;
		in->stall_client = strcmp(sc->fault_side, "client") == 0;
	}
}

static int
scenario_in(const char *path, struct plan_opts *o)
{
	struct lab_scenario sc, q;
	struct config *cfg;
	char err[LAB_ERR_MAX], *text = NULL;
	size_t len = 0;
	FILE *f;

	if (lab_scenario_load(path, &sc, err, sizeof(err)) < 0)
		return usage_error("scenario", NULL, err);
	if (sc.lb_kind != LAB_LB_SLUICE || sc.origin_raw)
		return usage_error("scenario", path,
		    "the model is of sluice proxy's policies; this scenario "
		    "runs another balancer or none: measure it with sluice "
		    "lab");
	if (sc.stall_for_ms != 0 || sc.dos_clients != 0)
		fprintf(stderr,
		    "sluice plan: %s: the model has no stalled reader and no "
		    "[dos] clients: it predicts the download without them\n",
		    path);
	if ((f = open_memstream(&text, &len)) == NULL)
		return usage_error("scenario", path, strerror(errno));
	lab_proxy_config(
	    f, &sc, "127.0.0.1:0", "127.0.0.1:9", "127.0.0.1:0", "");
	fclose(f);
	cfg = config_load_string(text, path, err, sizeof(err));
	free(text);
	if (cfg == NULL)
		return usage_error("scenario [proxy]", NULL, err);
	/* the question the file states; a scaled run is --scale's */
	lab_scenario_question(&sc, &q);
	plan_scenario_model(&q, cfg, sc.mode, &o->in);
	o->scale = sc.scale;
	config_free(cfg);
	snprintf(o->giveup, sizeof(o->giveup), "%s",
	    sc.give_up[0] != '\0' ? sc.give_up : "none");
	return 0;
}

/* ---- options ------------------------------------------------------------ */

#define MAX_RATE 100000000000ULL /* 100gbit: a rate option's bound */

/* Stores a size option's value; else its message goes into msg. */
static int
apply_size(int c, const char *arg, struct model_in *in, char *msg, size_t len)
{
	uint64_t v;
	int rc;

	if ((rc = units_parse_in(
	         UNITS_SIZE, arg, 0, UINT64_MAX, &v, msg, len)) < 0)
		return rc;
	switch (c) {
	case O_SIZE:
		in->size = v;
		break;
	case O_HIGH:
		in->high = v;
		break;
	case O_LOW:
		in->low = v;
		break;
	case O_SPILL_LIMIT:
		in->spill_limit = v;
		break;
	case O_BLOCK:
		in->block = v;
		break;
	case O_RCVBUF:
		in->rcvbuf = v;
		break;
	case O_K_IN:
		in->k_in = v;
		break;
	case O_CLIENT_SNDBUF:
		in->client_sndbuf = v;
		break;
	case O_K_OUT:
		in->k_out = v;
		break;
	case O_STALL_AT:
		in->stall_at = v;
		break;
	default: /* O_ORIGIN_SNDBUF */
		in->k_ws = 2 * v;
		break;
	}
	return 0;
}

static int
apply(int c, const char *arg, struct plan_opts *o)
{
	static const char *const policies[] = {"pause", "spill", "pace"};
	char msg[96];
	uint64_t bps;

	switch (c) {
	case O_CLIENT_RATE:
	case O_ORIGIN_RATE:
		if (units_parse_in(UNITS_RATE, arg, 8, MAX_RATE, &bps, msg,
		        sizeof(msg)) < 0)
			return usage_error(c == O_CLIENT_RATE ? "--client-rate"
			                                      : "--origin-rate",
			    arg, msg);
		*(c == O_CLIENT_RATE ? &o->in.client_bps : &o->in.origin_bps) =
		    (double)bps;
		return 0;
	case O_POLICY:
		for (int i = 0; i < 3; i++)
			if (strcmp(arg, policies[i]) == 0) {
				o->in.policy = i; /* enum policy's order */
				return 0;
			}
		return usage_error("--policy", arg, "not pause, spill or pace");
	case O_GIVEUP:
		if (model_parse_giveup(arg, &o->in) < 0)
			return usage_error("--origin-give-up", arg,
			    "not a rule (none, send-timeout=60s, "
			    "user-timeout=30s, orphan, "
			    "zwp-probes=N,interval=T)");
		snprintf(o->giveup, sizeof(o->giveup), "%s", arg);
		return 0;
	case O_RESUME:
		o->in.resume = 1;
		return 0;
	case O_STALL_FOR:
		if (units_parse_in(UNITS_DURATION, arg, 1, 24 * 3600 * 1000ULL,
		        &bps, msg, sizeof(msg)) < 0)
			return usage_error("--stall-for", arg, msg);
		o->in.stall_s = (double)bps / 1000.0;
		return 0;
	case O_SCALE: {
		char *end;
		double k = strtod(arg, &end);

		if (end == arg || *end != '\0' || !(k >= 1) || k > SCALE_MAX)
			return usage_error(
			    "--scale", arg, "not a number from 1 to 10000");
		o->scale = k;
		return 0;
	}
	case O_STALL_SIDE:
		if (strcmp(arg, "upstream") != 0 && strcmp(arg, "client") != 0)
			return usage_error(
			    "--stall-side", arg, "not upstream or client");
		o->in.stall_client = strcmp(arg, "client") == 0;
		return 0;
	default:
		if (apply_size(c, arg, &o->in, msg, sizeof(msg)) < 0)
			return usage_error("size option", arg, msg);
		return 0;
	}
}

/* Collects the options, loads the scenario, then applies the options over
 * it.  0, -1 after --help, or an exit code. */
static int
parse_args(int argc, char **argv, struct plan_opts *o)
{
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", plan_options, NULL)) != -1) {
		if (c == 'h') {
			plan_usage(stdout);
			return -1;
		}
		if (c == '?')
			return PLAN_EXIT_USAGE;
		if (c == O_JSON)
			o->json = true;
		else if (o->nset < MAX_SET)
			o->set[o->nset++] = (typeof(o->set[0])){c, optarg};
	}
	if (optind < argc - 1)
		return usage_error(
		    "SCENARIO", NULL, "at most one scenario file");
	if (optind == argc - 1 &&
	    (rc = scenario_in(o->scenario = argv[optind], o)) != 0)
		return rc;
	for (int i = 0; i < o->nset; i++)
		if ((rc = apply(o->set[i].c, o->set[i].arg, o)) != 0)
			return rc;
	if (o->in.size == 0)
		return usage_error("--size", NULL, "required (or a scenario)");
	return 0;
}

/* ---- output ------------------------------------------------------------- */

/* "2 Mbit/s", "1 Gbit/s", "956 Mbit/s" */
static const char *
fmt_rate(double bps, char *buf, size_t len)
{
	if (bps >= 1e9)
		snprintf(buf, len, "%.3g Gbit/s", bps / 1e9);
	else if (bps >= 1e6)
		snprintf(buf, len, "%.3g Mbit/s", bps / 1e6);
	else
		snprintf(buf, len, "%.3g kbit/s", bps / 1e3);
	return buf;
}

static void
print_inputs(const struct plan_opts *o)
{
	static const char *const policies[] = {"pause", "spill", "pace"};
	const struct model_in *in = &o->in;
	char s[32], r[32], R[32], h[32], l[32], x[32];

	printf("plan:            %s to a %s client from a %s origin; %s "
	       "(high %s, low %s",
	    model_fmt_bytes((double)in->size, s, sizeof(s)),
	    fmt_rate(in->client_bps, r, sizeof(r)),
	    fmt_rate(in->origin_bps, R, sizeof(R)), policies[in->policy],
	    units_fmt_size(in->high, h, sizeof(h)),
	    units_fmt_size(in->low, l, sizeof(l)));
	if (in->policy == POLICY_SPILL)
		printf(", spill_limit %s",
		    units_fmt_size(in->spill_limit, x, sizeof(x)));
	printf("%s); origin gives up: %s\n", in->resume ? ", resume on" : "",
	    o->giveup);
	if (in->stall_s > 0)
		printf("stall:           the %s side stops at %s for %s\n",
		    in->stall_client ? "client" : "upstream",
		    units_fmt_size(in->stall_at, x, sizeof(x)),
		    model_fmt_secs(in->stall_s, h, sizeof(h)));
}

static void
print_giveup(const struct plan_opts *o, const struct model_out *m)
{
	char a[32], b[32];

	printf("zero windows:    ");
	if (m->stalls == 0 && m->first_stall_s < 0)
		printf("none: the origin's window never closes\n");
	else
		printf("%u, each %s, the first at %s\n", m->stalls,
		    model_fmt_secs(m->stall_s, a, sizeof(a)),
		    model_fmt_secs(m->first_stall_s, b, sizeof(b)));
	printf("origin gives up: ");
	if (m->giveup_at_s < 0)
		printf("never\n");
	else if (m->resumes > 0)
		printf("first at %s (%s); %u times, each repaired by a "
		       "resume\n",
		    model_fmt_secs(m->giveup_at_s, a, sizeof(a)),
		    model_giveup_name(o->in.giveup), m->resumes);
	else
		printf("at %s (%s), in zero window %u%s\n",
		    model_fmt_secs(m->giveup_at_s, a, sizeof(a)),
		    model_giveup_name(o->in.giveup), m->stalls,
		    m->cumulative ? "; its clock ran across zero windows" : "");
}

static void
print_plain(const struct plan_opts *o, const struct model_out *m)
{
	char a[32], b[32], c[32];

	print_inputs(o);
	printf("outcome:         %s\n", m->complete ? "complete" : "truncated");
	print_giveup(o, m);
	printf("unsent:          %" PRIu64 " bytes (%.2f GB, %.1f MB)\n",
	    m->unsent_bytes, (double)m->unsent_bytes / 1e9,
	    (double)m->unsent_bytes / 1e6);
	printf("client:          gets %" PRIu64 " bytes; its download ends at "
	       "%s\n",
	    m->client_bytes, model_fmt_secs(m->client_finish_s, a, sizeof(a)));
	printf("peak:            memory %s, disk %s\n",
	    model_fmt_bytes((double)m->peak_memory, a, sizeof(a)),
	    model_fmt_bytes((double)m->peak_disk, b, sizeof(b)));
	printf("kernel queues:   K_in %s%s, K_out %s, K_ws %s\n",
	    model_fmt_bytes((double)m->k_in, a, sizeof(a)),
	    m->k_in_guessed ? " (rcvbuf autotuned: a guess, pin it)" : "",
	    model_fmt_bytes((double)m->k_out, b, sizeof(b)),
	    model_fmt_bytes((double)m->k_ws, c, sizeof(c)));
	printf("recommendation:  %s\n", m->recommendation);
}

/* --scale: the run's prediction and what maps it back (model/scale.h). */
static void
print_scale_plain(const struct scale_map *m)
{
	const struct model_out *r = &m->run;
	char a[32], b[32], c[32];

	printf("scaled run:      scale %g: %s (%" PRIu64 " bytes), every "
	       "byte position divided; rates, buffers and timers as "
	       "written\n",
	    m->k, model_fmt_bytes((double)m->run_body, a, sizeof(a)),
	    m->run_body);
	printf("run predicted:   %s, %" PRIu64 " bytes unsent, the client "
	       "done at %s; %u zero window%s of %s\n",
	    r->complete ? "complete" : "truncated", r->unsent_bytes,
	    model_fmt_secs(r->client_finish_s, a, sizeof(a)), r->stalls,
	    r->stalls == 1 ? "" : "s",
	    model_fmt_secs(r->stalls > 0 ? r->stall_s : 0, b, sizeof(b)));
	printf("maps back:       the run's outcome and longest zero window "
	       "as they are; unsent %+" PRId64 " bytes, the client's finish "
	       "%+.1f s (%s), zero windows %+" PRId64 "\n",
	    m->d_unsent, m->d_finish_s,
	    model_fmt_secs(m->d_finish_s < 0 ? 0 : m->d_finish_s, c, sizeof(c)),
	    m->d_zero_windows);
}

static void
print_scale_json(const struct scale_map *m)
{
	const struct model_out *r = &m->run;

	printf(",\"scale\":{\"factor\":%g,\"run_body_bytes\":%" PRIu64
	       ",\"run\":{\"outcome\":\"%s\",\"unsent_bytes\":%" PRIu64
	       ",\"client_finish_s\":%.3f,\"zero_windows\":%u"
	       ",\"longest_zero_window_s\":%.3f},\"offsets\":{"
	       "\"unsent_bytes\":%" PRId64 ",\"client_finish_s\":%.3f"
	       ",\"zero_windows\":%" PRId64 "}}",
	    m->k, m->run_body, r->complete ? "complete" : "truncated",
	    r->unsent_bytes, r->client_finish_s, r->stalls,
	    r->stalls > 0 ? r->stall_s : 0, m->d_unsent, m->d_finish_s,
	    m->d_zero_windows);
}

static void
print_num_or_null(const char *key, double v)
{
	if (v < 0)
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%.3f", key, v);
}

static void
print_json(const struct plan_opts *o, const struct model_out *m,
    const struct scale_map *sm)
{
	printf("{\"outcome\":\"%s\",\"body_bytes\":%" PRIu64
	       ",\"client_bytes\":%" PRIu64 ",\"unsent_bytes\":%" PRIu64,
	    m->complete ? "complete" : "truncated", o->in.size, m->client_bytes,
	    m->unsent_bytes);
	print_num_or_null("giveup_at_s", m->giveup_at_s);
	printf(",\"gave_up\":");
	if (m->giveup_at_s >= 0)
		json_string(stdout, model_giveup_name(o->in.giveup));
	else
		printf("null");
	printf(",\"client_finish_s\":%.3f,\"peak_memory_bytes\":%" PRIu64
	       ",\"peak_disk_bytes\":%" PRIu64 ",\"stalls\":%u",
	    m->client_finish_s, m->peak_memory, m->peak_disk, m->stalls);
	print_num_or_null("stall_s", m->stalls > 0 ? m->stall_s : -1);
	print_num_or_null("first_stall_s", m->first_stall_s);
	printf(",\"resumes\":%u,\"user_timeout_cumulative\":%s,"
	       "\"k_in_bytes\":%" PRIu64 ",\"k_in_guessed\":%s,"
	       "\"k_out_bytes\":%" PRIu64 ",\"k_ws_bytes\":%" PRIu64
	       ",\"recommendation\":",
	    m->resumes, m->cumulative ? "true" : "false", m->k_in,
	    m->k_in_guessed ? "true" : "false", m->k_out, m->k_ws);
	json_string(stdout, m->recommendation);
	if (sm != NULL)
		print_scale_json(sm);
	printf("}\n");
}

int
plan_main(int argc, char **argv)
{
	struct plan_opts o;
	struct model_out m;
	struct scale_map sm;
	char msg[256];
	int rc;

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--walk") == 0)
			return plan_walk_main(argc, argv);
	memset(&o, 0, sizeof(o));
	model_defaults(&o.in);
	o.scale = 1;
	o.in.size = 0;
	snprintf(o.giveup, sizeof(o.giveup), "send-timeout=60s");
	model_parse_giveup(o.giveup, &o.in);
	if ((rc = parse_args(argc, argv, &o)) != 0)
		return rc < 0 ? PLAN_EXIT_OK : rc;
	if (model_predict(&o.in, &m) < 0)
		return usage_error("inputs", NULL,
		    "do not make sense (low above high, a zero rate?)");
	if (o.scale > 1 && scale_check(&o.in, o.scale, msg, sizeof(msg)) < 0)
		return usage_error("--scale", NULL, msg);
	if (o.scale > 1 && scale_predict(&o.in, o.scale, &sm) < 0)
		return usage_error(
		    "--scale", NULL, "no prediction for the run");
	if (o.json) {
		print_json(&o, &m, o.scale > 1 ? &sm : NULL);
		return PLAN_EXIT_OK;
	}
	print_plain(&o, &m);
	if (o.scale > 1)
		print_scale_plain(&sm);
	return PLAN_EXIT_OK;
}
