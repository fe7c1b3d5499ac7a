/*
 * plan_walk: `sluice plan --walk`, the article's Figure 2 as a table (the
 * model is walk.h).  Options are the walk's own; its defaults are the
 * article's figures.  Bad values exit 2 with one line naming the option,
 * as the rest of `sluice plan` does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "model/plan.h"
#include "model/walk.h"

#define MAX_BYTES (1ULL << 30)      /* 1G: any option's bytes */
#define MAX_MS    (24ULL * 3600000) /* 24h: any interval */

void
plan_walk_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice plan --walk [--buffer SIZE] [--send "
	    "BYTES/INTERVAL]\n"
	    "           [--read BYTES/INTERVAL] [--total SIZE] [--json]\n"
	    "\n"
	    "Walks a receive window step by step as the article's Figure 2\n"
	    "does: each send, ack, read and zero-window probe, the bytes in\n"
	    "the receiver's buffer and the window (rwnd) after it, and when\n"
	    "the last byte is read (docs/model.md).  The defaults are the\n"
	    "article's: a 4000-byte buffer, 1000 bytes sent every 5 s, 800\n"
	    "read every 8 s, 10000 bytes in all.\n"
	    "\n"
	    "  --buffer SIZE            the receive buffer (default 4000)\n"
	    "  --send BYTES/INTERVAL    the sender's application (1000/5s)\n"
	    "  --read BYTES/INTERVAL    the receiver's application (800/8s)\n"
	    "  --total SIZE             bytes to send (default 10000)\n"
	    "  --json                   one object: inputs, steps[],\n"
	    "                           first_zero_s, probes[], all_sent_s,\n"
	    "                           all_read_s\n");
}

enum {
	O_WALK = 256,
	O_BUFFER,
	O_SEND,
	O_READ,
	O_TOTAL,
	O_JSON,
};

static const struct option walk_options[] = {
    {"walk", no_argument, NULL, O_WALK},
    {"buffer", required_argument, NULL, O_BUFFER},
    {"send", required_argument, NULL, O_SEND},
    {"read", required_argument, NULL, O_READ},
    {"total", required_argument, NULL, O_TOTAL},
    {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int
usage_error(const char *opt, const char *v, const char *what)
{
	fprintf(stderr, "sluice plan --walk: %s %s: %s\n", opt, v, what);
	return PLAN_EXIT_USAGE;
}

/* "1000/5s" into bytes and ms; else an exit code, after the message. */
static int
parse_every(const char *opt, const char *arg, uint64_t *bytes, uint64_t *ms)
{
	char b[64], msg[96];
	const char *slash = strchr(arg, '/');

	if (slash == NULL || (size_t)(slash - arg) >= sizeof(b))
		return usage_error(
		    opt, arg, "not BYTES/INTERVAL (1000/5s, 800/8s)");
	memcpy(b, arg, (size_t)(slash - arg));
	b[slash - arg] = '\0';
	if (units_parse_in(
	        UNITS_SIZE, b, 1, MAX_BYTES, bytes, msg, sizeof(msg)) < 0 ||
	    units_parse_in(
	        UNITS_DURATION, slash + 1, 1, MAX_MS, ms, msg, sizeof(msg)) < 0)
		return usage_error(opt, arg, msg);
	return 0;
}

static int
apply(int c, const char *arg, struct walk_in *in)
{
	char msg[96];
	uint64_t *v = c == O_BUFFER ? &in->buffer : &in->total;

	switch (c) {
	case O_SEND:
		return parse_every(
		    "--send", arg, &in->send_bytes, &in->send_ms);
	case O_READ:
		return parse_every(
		    "--read", arg, &in->read_bytes, &in->read_ms);
	default: /* O_BUFFER, O_TOTAL */
		if (units_parse_in(
		        UNITS_SIZE, arg, 1, MAX_BYTES, v, msg, sizeof(msg)) < 0)
			return usage_error(
			    c == O_BUFFER ? "--buffer" : "--total", arg, msg);
		return 0;
	}
}

/* 0, -1 after --help, or an exit code. */
static int
parse_args(int argc, char **argv, struct walk_in *in, int *json)
{
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", walk_options, NULL)) != -1) {
		if (c == 'h') {
			plan_walk_usage(stdout);
			return -1;
		}
		if (c == '?')
			return PLAN_EXIT_USAGE;
		if (c == O_JSON)
			*json = 1;
		else if (c != O_WALK && (rc = apply(c, optarg, in)) != 0)
			return rc;
	}
	if (optind < argc)
		return usage_error("--walk", argv[optind],
		    "takes no scenario file (options only)");
	return 0;
}

/* "T35", "T2.5" */
static const char *
fmt_t(uint64_t ms, char *buf, size_t len)
{
	snprintf(buf, len, "T%g", (double)ms / 1000);
	return buf;
}

static void
note(const struct walk_step *s, const struct walk_step *prev,
    const struct walk_in *in, uint64_t last_read_ms, char *buf, size_t len)
{
	buf[0] = '\0';
	if (s->ev == WALK_ACK && prev != NULL && prev->ev == WALK_PROBE)
		snprintf(buf, len, "the probe is answered %" PRIu64, s->rwnd);
	else if (s->ev == WALK_ACK && s->rwnd == 0)
		snprintf(buf, len, "zero window: the sender stops");
	else if (s->ev == WALK_READ && s->buffered == 0 &&
	    s->t_ms == last_read_ms)
		snprintf(buf, len, "all %" PRIu64 " bytes read", in->total);
	else if (s->ev == WALK_READ && !s->announced)
		snprintf(buf, len, "unheard: the sender was told 0");
}

/* One row of the table, without trailing blanks. */
static void
print_row(const struct walk_step *s, const char *note)
{
	char line[160], t[32];
	int n;

	n = snprintf(line, sizeof(line), "%6s  %-5s  ",
	    fmt_t(s->t_ms, t, sizeof(t)), walk_event_name(s->ev));
	if (s->ev == WALK_SEND || s->ev == WALK_READ)
		n += snprintf(
		    line + n, sizeof(line) - (size_t)n, "%5" PRIu64, s->bytes);
	else
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%5s", "");
	n += snprintf(line + n, sizeof(line) - (size_t)n,
	    "  %6" PRIu64 "  %5" PRIu64, s->buffered, s->rwnd);
	if (s->ev == WALK_ACK || s->ev == WALK_READ)
		snprintf(line + n, sizeof(line) - (size_t)n,
		    "  %10" PRIu64 "%s%s", s->advertised,
		    note[0] != '\0' ? "  " : "", note);
	printf("%s\n", line);
}

static void
print_plain(const struct walk_in *in, const struct walk_out *o)
{
	char t[32], n[64];

	printf("walk: a %" PRIu64 "-byte receive buffer; the sender sends "
	       "%" PRIu64 " bytes every %gs, the application reads %" PRIu64
	       " every %gs; %" PRIu64 " bytes\n\n",
	    in->buffer, in->send_bytes, (double)in->send_ms / 1000,
	    in->read_bytes, (double)in->read_ms / 1000, in->total);
	printf("%6s  %-5s  %5s  %6s  %5s  %10s\n", "time", "event", "bytes",
	    "buffer", "rwnd", "advertised");
	for (size_t i = 0; i < o->n; i++) {
		note(&o->steps[i], i > 0 ? &o->steps[i - 1] : NULL, in,
		    o->all_read_ms, n, sizeof(n));
		print_row(&o->steps[i], n);
	}
	printf("\nfirst zero window: ");
	if (o->first_zero_ms < 0)
		printf("none\n");
	else
		printf("%s\n", fmt_t((uint64_t)o->first_zero_ms, t, sizeof(t)));
	printf(
	    "probes:            %u, %u answered 0", o->probes, o->probes_zero);
	for (size_t i = 1, k = 0; i < o->n; i++)
		if (o->steps[i - 1].ev == WALK_PROBE)
			printf("%s%s answered %" PRIu64, k++ == 0 ? ": " : ", ",
			    fmt_t(o->steps[i].t_ms, t, sizeof(t)),
			    o->steps[i].rwnd);
	printf(
	    "\nall sent:          %s\n", fmt_t(o->all_sent_ms, t, sizeof(t)));
	printf("all read:          %s: the %" PRIu64 " bytes are read\n",
	    fmt_t(o->all_read_ms, t, sizeof(t)), in->total);
}

static void
print_json(const struct walk_in *in, const struct walk_out *o)
{
	printf("{\"buffer\":%" PRIu64 ",\"send_bytes\":%" PRIu64
	       ",\"send_every_s\":%g,\"read_bytes\":%" PRIu64
	       ",\"read_every_s\":%g,\"total\":%" PRIu64 ",\"steps\":[",
	    in->buffer, in->send_bytes, (double)in->send_ms / 1000,
	    in->read_bytes, (double)in->read_ms / 1000, in->total);
	for (size_t i = 0; i < o->n; i++) {
		const struct walk_step *s = &o->steps[i];

		printf("%s{\"t_s\":%g,\"event\":\"%s\",\"bytes\":%" PRIu64
		       ",\"buffer\":%" PRIu64 ",\"rwnd\":%" PRIu64
		       ",\"advertised\":%" PRIu64 "%s}",
		    i > 0 ? "," : "", (double)s->t_ms / 1000,
		    walk_event_name(s->ev), s->bytes, s->buffered, s->rwnd,
		    s->advertised,
		    s->ev != WALK_READ ? ""
		        : s->announced ? ",\"announced\":true"
		                       : ",\"announced\":false");
	}
	printf("],\"first_zero_s\":");
	if (o->first_zero_ms < 0)
		printf("null");
	else
		printf("%g", (double)o->first_zero_ms / 1000);
	printf(",\"probes\":[");
	for (size_t i = 1, k = 0; i < o->n; i++)
		if (o->steps[i - 1].ev == WALK_PROBE)
			printf("%s{\"t_s\":%g,\"answer\":%" PRIu64 "}",
			    k++ == 0 ? "" : ",",
			    (double)o->steps[i].t_ms / 1000, o->steps[i].rwnd);
	printf("],\"all_sent_s\":%g,\"all_read_s\":%g}\n",
	    (double)o->all_sent_ms / 1000, (double)o->all_read_ms / 1000);
}

int
plan_walk_main(int argc, char **argv)
{
	struct walk_in in;
	struct walk_out o;
	int json = 0, rc;

	walk_defaults(&in);
	if ((rc = parse_args(argc, argv, &in, &json)) != 0)
		return rc < 0 ? PLAN_EXIT_OK : rc;
	if ((rc = walk_run(&in, &o)) < 0) {
		fprintf(stderr, "sluice plan --walk: %s\n",
		    rc == -E2BIG ? "more than 100000 steps: a smaller --total, "
		                   "or larger sends and reads"
		                 : strerror(-rc));
		return PLAN_EXIT_USAGE;
	}
	if (json)
		print_json(&in, &o);
	else
		print_plain(&in, &o);
	walk_free(&o);
	return PLAN_EXIT_OK;
}
