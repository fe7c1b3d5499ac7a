/*
 * lab: see lab.h and docs/lab.md.
 *
 * Every change to the system is a command an operator could type (ip, tc,
 * sysctl), run by fork/exec without a shell and printed at -v, and it is
 * made inside the run's own namespaces sluice-PID-{origin,lb,client}:
 * deleting them undoes everything (their veth pairs go with them).  The
 * three peers are this binary's own verbs, started through `ip netns
 * exec`, each in its own process group and with PR_SET_PDEATHSIG, so a
 * lab that dies takes them along; namespaces left by a lab killed with
 * SIGKILL are removed by the next run (their PID is gone).  Teardown runs
 * once on every way out: done, failure, time limit, SIGINT/SIGTERM.
 *
 * The run is a plain loop, not an event loop: every 100 ms one sample (ss
 * in the origin's and the client's namespace, GET /connections on the
 * proxy's admin port from a socket made inside the lb namespace), one CSV
 * row, one progress line, then a wait for the fetch to end.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "json.h"
#include "lab.h"
#include "model.h"
#include "units.h"

#define SAMPLE_MS   100
#define MAX_ARGS    48
#define OUT_MAX     (64 * 1024)
#define FILE_MAX    (256 * 1024)
#define MAX_SOCKS   16
#define MAX_SEEN    16
#define MAX_NOTES   8
#define START_MS    5000 /* a peer must listen within this */
#define STOP_MS     3000 /* SIGTERM, then SIGKILL after this */
#define ACCESS_MS   3000 /* wait for the proxy's access line */
#define FRAME_BYTES 1514 /* a full segment on veth: Ethernet + IP + TCP */
#define MIB         1048576.0

/* Addresses that exist only inside the run's namespaces. */
#define ORIGIN_IP   "10.201.0.1"
#define LB_UP_IP    "10.201.0.2"
#define LB_IP       "10.202.0.1"
#define CLIENT_IP   "10.202.0.2"
#define ORIGIN_PORT 8000
#define PROXY_PORT  8080
#define ADMIN_PORT  9090

static const char *const host_names[] = {"origin", "lb", "client"};

/* Set by SIGINT/SIGTERM/SIGHUP; the loop and the setup steps look at it. */
static volatile sig_atomic_t lab_signal;

/* ---- the scenario file ------------------------------------------------ */

enum skey_type {
	SK_STR,
	SK_SIZE,
	SK_DURATION,
	SK_RATE,
	SK_MODE,
};

struct skey {
	const char *section, *key;
	enum skey_type type;
	size_t offset, size;
	const char *doc;
};

#define SK(sec, k, t, field, doc)                                              \
	{                                                                      \
		sec, k, t, offsetof(struct lab_scenario, field),               \
		    sizeof(((struct lab_scenario *)0)->field), doc             \
	}

/* The scenario's keys (STYLE 9); `sluice help lab` prints this table. */
static const struct skey skeys[] = {
    SK("lab", "name", SK_STR, name, "the run's name (default: the file's)"),
    SK("lab", "mode", SK_MODE, mode,
        "netns (default) or loopback (127.0.0.1, application-paced)"),
    SK("lab", "time_limit", SK_DURATION, time_limit_ms,
        "the fetch is stopped after this (default 60s)"),
    SK("lab", "body", SK_SIZE, body, "bytes the client asks for (16M)"),
    SK("lab", "notes", SK_STR, notes, "free text, copied to summary.json"),
    SK("links", "origin_lb", SK_RATE, origin_lb_bps,
        "tc tbf rate of the origin-lb link (1gbit)"),
    SK("links", "lb_client", SK_RATE, lb_client_bps,
        "tc tbf rate of the lb-client link (2mbit)"),
    SK("links", "delay", SK_DURATION, delay_ms,
        "netem delay on each link, where the kernel has netem (0)"),
    SK("origin", "give_up", SK_STR, give_up,
        "the origin's rule: zwp-probes=N,interval=T[,max=T], "
        "send-timeout=T, user-timeout=T, orphan, none"),
    SK("origin", "sndbuf", SK_SIZE, origin_sndbuf,
        "the origin's SO_SNDBUF (0: autotuning)"),
    SK("client", "rate", SK_RATE, client_rate_bps,
        "sluice fetch --rate (0: read as fast as the link allows)"),
    SK("client", "rcvbuf", SK_SIZE, client_rcvbuf,
        "sluice fetch --rcvbuf (0: autotuning)"),
    SK("client", "timeout", SK_DURATION, client_timeout_ms,
        "sluice fetch --timeout (0: its default, 60s)"),
};
#define NSKEYS (sizeof(skeys) / sizeof(skeys[0]))

/* Keys of the proxy config that the lab owns. */
static const char *const lab_owned[] = {
    "listen.address", "upstream.server", "admin.address", "log.access"};

/* Keys the lab adds when the scenario omits them. */
static const struct lab_kv lab_defaults[] = {
    {"listen.drain_timeout", "2s"},
    {"upstream.rcvbuf", "256k"}, /* DESIGN: K_in must be pinned */
    {"log.level", "info"},
};

struct parse_ctx {
	struct lab_scenario *sc;
	char msg[256]; /* the first error: "[section] key: message" */
};

static int
fail(struct parse_ctx *ctx, const char *section, const char *key,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ctx->msg[0] != '\0')
		return 0;
	n = snprintf(ctx->msg, sizeof(ctx->msg), "[%s] %s: ", section, key);
	if (n < 0 || (size_t)n >= sizeof(ctx->msg))
		return 0;
	va_start(ap, fmt);
	vsnprintf(ctx->msg + n, sizeof(ctx->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return 0; /* inih: this line is an error */
}

static int
parse_number(enum skey_type type, const char *value, uint64_t *v)
{
	switch (type) {
	case SK_SIZE:
		return units_parse_size(value, v);
	case SK_DURATION:
		return units_parse_duration(value, v);
	case SK_RATE:
		return units_parse_rate(value, v);
	default:
		return -EINVAL;
	}
}

static int
set_key(struct parse_ctx *ctx, const struct skey *k, const char *value)
{
	char *field = (char *)ctx->sc + k->offset;
	static const char *const what[] = {"", "a size (64k, 16M)",
	    "a duration (250ms, 30s)", "a rate (2mbit, 1gbit)", ""};
	uint64_t v;
	int mode;

	if (k->type == SK_STR) {
		if (strlen(value) >= k->size)
			return fail(ctx, k->section, k->key,
			    "longer than %zu characters", k->size - 1);
		memcpy(field, value, strlen(value) + 1);
		return 1;
	}
	if (k->type == SK_MODE) {
		if (strcmp(value, "netns") == 0)
			mode = LAB_MODE_NETNS;
		else if (strcmp(value, "loopback") == 0)
			mode = LAB_MODE_LOOPBACK;
		else
			return fail(ctx, k->section, k->key,
			    "'%s' is neither netns nor loopback", value);
		memcpy(field, &mode, sizeof(mode));
		return 1;
	}
	if (parse_number(k->type, value, &v) < 0)
		return fail(ctx, k->section, k->key, "'%s' is not %s", value,
		    what[k->type]);
	memcpy(field, &v, sizeof(v));
	return 1;
}

/* sysctl names go to `sysctl -w NAME=VALUE` as one argument. */
static bool
sysctl_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-/", *s) == NULL)
			return false;
	return true;
}

static int
add_kv(struct parse_ctx *ctx, const char *section, struct lab_kv *kv, size_t *n,
    const char *key, const char *value)
{
	if (*n == LAB_MAX_KV)
		return fail(
		    ctx, section, key, "more than %d such keys", LAB_MAX_KV);
	if (strlen(key) >= sizeof(kv->key) ||
	    strlen(value) >= sizeof(kv->value))
		return fail(ctx, section, key, "key or value too long");
	strcpy(kv[*n].key, key);
	strcpy(kv[*n].value, value);
	(*n)++;
	return 1;
}

static int
sysctl_key(struct parse_ctx *ctx, int h, const char *key, const char *value)
{
	struct lab_scenario *sc = ctx->sc;
	const char *name = key + strlen("sysctl.");

	if (!sysctl_name_ok(name))
		return fail(ctx, host_names[h], key, "not a sysctl name");
	if (strchr(value, '\n') != NULL)
		return fail(ctx, host_names[h], key, "a value on one line");
	return add_kv(
	    ctx, host_names[h], sc->sysctl[h], &sc->nsysctl[h], name, value);
}

/* A [proxy] key "section.key": it must be a key of the proxy's table. */
static int
proxy_key(struct parse_ctx *ctx, const char *key, const char *value)
{
	struct lab_scenario *sc = ctx->sc;
	const char *dot = strchr(key, '.');
	size_t seclen = dot != NULL ? (size_t)(dot - key) : 0;

	for (size_t i = 0; i < sizeof(lab_owned) / sizeof(lab_owned[0]); i++)
		if (strcmp(key, lab_owned[i]) == 0)
			return fail(ctx, "proxy", key,
			    "set by the lab (it knows the addresses)");
	for (size_t i = 0; dot != NULL && i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (strlen(k->section) == seclen &&
		    strncmp(k->section, key, seclen) == 0 &&
		    strcmp(k->key, dot + 1) == 0)
			return add_kv(
			    ctx, "proxy", sc->proxy, &sc->nproxy, key, value);
	}
	return fail(ctx, "proxy", key,
	    "not a proxy config key written section.key (sluice help "
	    "config)");
}

static int
host_of(const char *section)
{
	for (int h = 0; h < LAB_NHOSTS; h++)
		if (strcmp(section, host_names[h]) == 0)
			return h;
	return -1;
}

static int
on_key(void *user, const char *section, const char *key, const char *value)
{
	struct parse_ctx *ctx = user;
	int h = host_of(section);

	if (strcmp(section, "proxy") == 0)
		return proxy_key(ctx, key, value);
	if (h >= 0 && strncmp(key, "sysctl.", strlen("sysctl.")) == 0)
		return sysctl_key(ctx, h, key, value);
	for (size_t i = 0; i < NSKEYS; i++)
		if (strcmp(skeys[i].section, section) == 0 &&
		    strcmp(skeys[i].key, key) == 0)
			return set_key(ctx, &skeys[i], value);
	if (h >= 0 || strcmp(section, "lab") == 0 ||
	    strcmp(section, "links") == 0)
		return fail(ctx, section, key, "unknown key (sluice help lab)");
	return fail(ctx, section, key,
	    "unknown section (lab, links, origin, lb, client, proxy)");
}

static void
scenario_defaults(struct lab_scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->mode = LAB_MODE_NETNS;
	sc->time_limit_ms = 60000;
	sc->body = 16 * 1024 * 1024;
	sc->origin_lb_bps = 1000000000;
	sc->lb_client_bps = 2000000;
}

/* Checks that need the whole file.  0, or -EINVAL with err filled. */
static int
scenario_check(
    const struct lab_scenario *sc, const char *name, char *err, size_t errlen)
{
	const char *argv[8];
	char buf[256];
	struct model_in in;

	if (sc->body == 0 || sc->time_limit_ms == 0 || sc->origin_lb_bps < 8 ||
	    sc->lb_client_bps < 8) {
		snprintf(err, errlen,
		    "%s: [lab] body, time_limit and the [links] rates must "
		    "not be 0",
		    name);
		return -EINVAL;
	}
	model_defaults(&in);
	if (lab_giveup_args(sc->give_up, argv, 8, buf, sizeof(buf)) < 0 ||
	    (sc->give_up[0] != '\0' &&
	        model_parse_giveup(sc->give_up, &in) < 0)) {
		snprintf(err, errlen,
		    "%s: [origin] give_up: '%s' is not a rule "
		    "(zwp-probes=N,interval=T[,max=T], send-timeout=T, "
		    "user-timeout=T, orphan, none)",
		    name, sc->give_up);
		return -EINVAL;
	}
	return 0;
}

static int
parse_result(
    struct parse_ctx *ctx, int rc, const char *name, char *err, size_t errlen)
{
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: %s", name, rc,
		    ctx->msg[0] != '\0' ? ctx->msg : "not a key = value line");
		return -EINVAL;
	}
	if (rc == -1) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return -ENOENT;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	return scenario_check(ctx->sc, name, err, errlen);
}

int
lab_scenario_parse(const char *text, const char *name, struct lab_scenario *sc,
    char *err, size_t errlen)
{
	struct parse_ctx ctx = {.sc = sc};

	scenario_defaults(sc);
	return parse_result(
	    &ctx, ini_parse_string(text, on_key, &ctx), name, err, errlen);
}

int
lab_scenario_load(
    const char *path, struct lab_scenario *sc, char *err, size_t errlen)
{
	struct parse_ctx ctx = {.sc = sc};
	const char *base = strrchr(path, '/');
	size_t n;
	int rc;

	scenario_defaults(sc);
	rc = parse_result(
	    &ctx, ini_parse(path, on_key, &ctx), path, err, errlen);
	if (rc < 0)
		return rc;
	snprintf(sc->path, sizeof(sc->path), "%s", path);
	if (sc->name[0] == '\0') {
		base = base != NULL ? base + 1 : path;
		n = strlen(base);
		if (n > 4 && strcmp(base + n - 4, ".ini") == 0)
			n -= 4;
		snprintf(sc->name, sizeof(sc->name), "%.*s", (int)n, base);
	}
	return 0;
}

/* ---- the give-up rule as origin options ------------------------------- */

struct argbuf {
	const char **argv;
	size_t max, n;
	char *buf;
	size_t len, used;
};

static int
put_arg(struct argbuf *a, const char *s)
{
	size_t k = strlen(s) + 1;

	if (a->n == a->max || a->used + k > a->len)
		return -EINVAL;
	memcpy(a->buf + a->used, s, k);
	a->argv[a->n++] = a->buf + a->used;
	a->used += k;
	return 0;
}

static int
put_duration_opt(struct argbuf *a, const char *opt, const char *value)
{
	uint64_t ms;

	if (value == NULL || units_parse_duration(value, &ms) < 0 || ms == 0)
		return -EINVAL;
	return put_arg(a, opt) < 0 ? -EINVAL : put_arg(a, value);
}

/* "zwp-probes=N,interval=T[,max=T]": tok is N, rest the options. */
static int
zwp_args(struct argbuf *a, const char *n, char *rest)
{
	char *save = NULL, *opt, *eq;
	bool have_interval = false;
	char *end;

	if (n == NULL || strtoul(n, &end, 10) == 0 || *end != '\0' ||
	    put_arg(a, "--zwp-probes") < 0 || put_arg(a, n) < 0)
		return -EINVAL;
	for (opt = strtok_r(rest, ",", &save); opt != NULL;
	     opt = strtok_r(NULL, ",", &save)) {
		if ((eq = strchr(opt, '=')) == NULL)
			return -EINVAL;
		*eq++ = '\0';
		if (strcmp(opt, "interval") == 0) {
			have_interval = true;
			if (put_duration_opt(a, "--zwp-interval", eq) < 0)
				return -EINVAL;
		} else if (strcmp(opt, "max") == 0) {
			if (put_duration_opt(a, "--zwp-max-interval", eq) < 0)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
	}
	return have_interval ? 0 : -EINVAL;
}

int
lab_giveup_args(
    const char *rule, const char **argv, size_t max, char *buf, size_t len)
{
	struct argbuf a = {argv, max, 0, buf, len, 0};
	char tmp[128], *rest, *value;
	int rc = -EINVAL;

	if (strlen(rule) >= sizeof(tmp))
		return -EINVAL;
	strcpy(tmp, rule);
	rest = strchr(tmp, ',');
	if (rest != NULL)
		*rest++ = '\0';
	if ((value = strchr(tmp, '=')) != NULL)
		*value++ = '\0';
	if (tmp[0] == '\0' || strcmp(tmp, "none") == 0)
		rc = value == NULL && rest == NULL ? 0 : -EINVAL;
	else if (strcmp(tmp, "zwp-probes") == 0)
		rc = zwp_args(
		    &a, value, rest != NULL ? rest : tmp + strlen(tmp));
	else if (rest != NULL)
		rc = -EINVAL;
	else if (strcmp(tmp, "send-timeout") == 0)
		rc = put_duration_opt(&a, "--send-timeout", value);
	else if (strcmp(tmp, "user-timeout") == 0)
		rc = put_duration_opt(&a, "--user-timeout", value);
	else if (strcmp(tmp, "orphan") == 0)
		rc = put_arg(&a, "--close-after-write");
	return rc < 0 ? rc : (int)a.n;
}

/* ---- the proxy config ------------------------------------------------- */

static bool
has_proxy_key(const struct lab_scenario *sc, const char *key)
{
	for (size_t i = 0; i < sc->nproxy; i++)
		if (strcmp(sc->proxy[i].key, key) == 0)
			return true;
	return false;
}

/* Prints kv pairs whose "section." prefix is section. */
static void
print_keys(FILE *out, const char *section, const struct lab_kv *kv, size_t n,
    const struct lab_scenario *skip_if_in)
{
	size_t len = strlen(section);

	for (size_t i = 0; i < n; i++) {
		if (strncmp(kv[i].key, section, len) != 0 ||
		    kv[i].key[len] != '.')
			continue;
		if (skip_if_in != NULL && has_proxy_key(skip_if_in, kv[i].key))
			continue;
		fprintf(out, "%s = %s\n", kv[i].key + len + 1, kv[i].value);
	}
}

void
lab_proxy_config(FILE *out, const struct lab_scenario *sc, const char *listen,
    const char *server, const char *admin, const char *access)
{
	const struct lab_kv owned[] = {{"listen.address", ""},
	    {"upstream.server", ""}, {"admin.address", ""}, {"log.access", ""}};
	const char *values[] = {listen, server, admin, access};
	const char *prev = "";

	fprintf(out,
	    "# Written by sluice lab for %s: its [proxy] keys, the lab's\n"
	    "# addresses and access log, and the lab's defaults\n"
	    "# (upstream.rcvbuf pinned: docs/lab.md).\n",
	    sc->path[0] != '\0' ? sc->path : sc->name);
	for (size_t i = 0; i < config_nkeys; i++) {
		const char *section = config_keys[i].section;
		size_t len = strlen(section);

		if (strcmp(section, prev) == 0)
			continue;
		prev = section;
		fprintf(out, "\n[%s]\n", section);
		for (size_t j = 0; j < sizeof(owned) / sizeof(owned[0]); j++)
			if (strncmp(owned[j].key, section, len) == 0 &&
			    owned[j].key[len] == '.')
				fprintf(out, "%s = %s\n",
				    owned[j].key + len + 1, values[j]);
		print_keys(out, section, lab_defaults,
		    sizeof(lab_defaults) / sizeof(lab_defaults[0]), sc);
		print_keys(out, section, sc->proxy, sc->nproxy, NULL);
	}
}

/* ---- ss(8) output ------------------------------------------------------ */

static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* "ESTAB 0 3877888 10.201.0.1:8000 10.201.0.2:41234" (state optional). */
static void
parse_head(struct lab_sock *s, char *line)
{
	char *tok[6], *save = NULL;
	int n = 0, i = 0;

	for (char *t = strtok_r(line, " \t", &save); t != NULL && n < 6;
	     t = strtok_r(NULL, " \t", &save))
		tok[n++] = t;
	memset(s, 0, sizeof(*s));
	s->snd_wnd = -1;
	if (n > 0 && !all_digits(tok[0]))
		snprintf(s->state, sizeof(s->state), "%s", tok[i++]);
	if (n - i < 4)
		return;
	s->recv_q = strtoull(tok[i], NULL, 10);
	s->send_q = strtoull(tok[i + 1], NULL, 10);
	snprintf(s->local, sizeof(s->local), "%s", tok[i + 2]);
	snprintf(s->peer, sizeof(s->peer), "%s", tok[i + 3]);
}

static void
parse_info(struct lab_sock *s, char *line)
{
	char *save = NULL;

	if (s->snd_wnd < 0)
		s->snd_wnd = 0; /* ss prints snd_wnd only when it is not 0 */
	for (char *t = strtok_r(line, " \t", &save); t != NULL;
	     t = strtok_r(NULL, " \t", &save)) {
		if (strncmp(t, "bytes_acked:", 12) == 0)
			s->bytes_acked = strtoull(t + 12, NULL, 10);
		else if (strncmp(t, "bytes_received:", 15) == 0)
			s->bytes_received = strtoull(t + 15, NULL, 10);
		else if (strncmp(t, "snd_wnd:", 8) == 0)
			s->snd_wnd = strtoll(t + 8, NULL, 10);
		else if (strncmp(t, "backoff:", 8) == 0)
			s->backoff = (unsigned)strtoul(t + 8, NULL, 10);
	}
}

size_t
lab_ss_parse(const char *text, struct lab_sock *out, size_t max)
{
	char line[2048];
	struct lab_sock *cur = NULL;
	size_t n = 0;

	while (*text != '\0') {
		size_t len = strcspn(text, "\n");

		snprintf(line, sizeof(line), "%.*s", (int)len, text);
		text += len + (text[len] == '\n');
		if (line[0] == ' ' || line[0] == '\t') {
			if (cur != NULL)
				parse_info(cur, line);
		} else if (line[0] != '\0') {
			if (n == max)
				break;
			cur = &out[n++];
			parse_head(cur, line);
		}
	}
	return n;
}

/* ---- the run's state --------------------------------------------------- */

struct sample {
	double t;
	uint64_t o_acked, o_written;
	int64_t o_wnd; /* -1: no origin socket */
	int o_backoff; /* -1 likewise */
	int o_zero;
	uint64_t p_in, p_out, p_mem, p_spool;
	int p_paused;                      /* -1: no download in the proxy */
	int64_t up_rcvq, up_space, cl_wnd; /* -1: no such socket */
	uint64_t c_recv;
};

/* One origin connection seen by ss, kept after it is gone. */
struct seen {
	char peer[64];
	uint64_t acked, written;
};

struct result {
	char *fetch, *origin, *access; /* the files as read */
	bool complete;
	char fetch_outcome[24];
	int verified; /* -1: null */
	uint64_t client_bytes, unsent;
	double seconds;
	char gave_up[32]; /* "" for null */
	double zero_window_s;
	unsigned probes;
	char proxy_outcome[32];
	long resumes;
	double paused_s;
	uint64_t peak_memory, spilled;
	bool have_model;
	struct model_out mo;
	char kernel[128];
	char plot[PATH_MAX + 32]; /* the path, or why there is none */
	bool plotted;
};

struct lab {
	struct lab_scenario sc;
	int mode; /* enum lab_mode, after --loopback */
	bool json, verbose, tty;
	char exe[PATH_MAX];
	char out[PATH_MAX - 32];
	char ns[LAB_NHOSTS][64];
	bool ns_made[LAB_NHOSTS];
	int nsfd[LAB_NHOSTS];       /* /run/netns/NAME, -1 */
	int selfns;                 /* our own, to come back to */
	pid_t pid[LAB_NHOSTS];      /* origin, proxy, fetch; 0: none */
	int status[LAB_NHOSTS];     /* wait status once reaped */
	const char *ip[LAB_NHOSTS]; /* origin, proxy (client side), - */
	int origin_port, proxy_port, admin_port;
	struct config *cfg; /* the proxy config, loaded back for the model */
	FILE *csv;
	struct timespec t0;
	struct sample s;
	struct seen seen[MAX_SEEN];
	size_t nseen;
	uint64_t max_wnd;
	int netem; /* 1 applied, 0 not in this kernel, -1 not asked */
	bool time_limit_hit, progress_shown;
	char notes[MAX_NOTES][200];
	size_t nnotes;
};

static void
note(struct lab *lab, const char *fmt, ...)
{
	va_list ap;

	if (lab->nnotes == MAX_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(lab->notes[lab->nnotes], sizeof(lab->notes[0]), fmt, ap);
	va_end(ap);
	fprintf(stderr, "sluice lab: %s\n", lab->notes[lab->nnotes++]);
}

static double
elapsed(const struct lab *lab)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - lab->t0.tv_sec) +
	    (double)(now.tv_nsec - lab->t0.tv_nsec) / 1e9;
}

static void
path_in(const struct lab *lab, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", lab->out, name);
}

/* ---- commands ---------------------------------------------------------- */

static void
print_arg(FILE *f, const char *s)
{
	if (*s != '\0' &&
	    strspn(s,
	        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
	        "UVWXYZ0123456789_./:=,+@%-") == strlen(s)) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (; *s != '\0'; s++)
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	fputc('\'', f);
}

/* Prints "+ CMD ARGS [> OUT] [2> ERR]" so an operator can replay it. */
static void
print_cmd(char *const argv[], const char *out, const char *err)
{
	fputs("+", stderr);
	for (size_t i = 0; argv[i] != NULL; i++) {
		fputc(' ', stderr);
		print_arg(stderr, argv[i]);
	}
	if (out != NULL)
		fprintf(stderr, " > %s", out);
	if (err != NULL)
		fprintf(stderr, " 2> %s", err);
	fputc('\n', stderr);
}

/* In the child: its own process group, killed with the lab, default
 * signals, SLUICE_LAB=PID in its environment (so every process of a run
 * can be found), stdin from /dev/null, stdout and stderr to the fds. */
static void
child_setup(pid_t parent, int out_fd, int err_fd)
{
	char mark[24];
	sigset_t none;
	int null_fd;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	snprintf(mark, sizeof(mark), "%d", (int)parent);
	setenv("SLUICE_LAB", mark, 1); /* finds the run's processes */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL); /* an ignored signal stays ignored */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if ((null_fd = open("/dev/null", O_RDONLY)) >= 0)
		dup2(null_fd, STDIN_FILENO);
	if (out_fd >= 0)
		dup2(out_fd, STDOUT_FILENO);
	if (err_fd >= 0)
		dup2(err_fd, STDERR_FILENO);
}

/* The exit status of a reaped child: 0..255, or 128 + signal. */
static int
exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

static int
reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -errno;
	return exit_code(status);
}

static size_t
read_all(int fd, char *out, size_t len)
{
	size_t used = 0;
	char discard[4096];
	ssize_t n;

	for (;;) {
		if (used + 1 < len)
			n = read(fd, out + used, len - 1 - used);
		else
			n = read(fd, discard, sizeof(discard));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (used + 1 < len)
			used += (size_t)n;
	}
	if (len > 0)
		out[used] = '\0';
	return used;
}

/*
 * Runs argv to its end, stdout and stderr into out (NUL-terminated, cut at
 * len), printed first at -v when show.  Its exit code (128 + signal when
 * killed), 127 when it could not be run, or a negative errno.
 */
static int
run_argv(
    const struct lab *lab, char *const argv[], char *out, size_t len, bool show)
{
	pid_t parent = getpid(), pid;
	int pfd[2];

	if (show && lab->verbose)
		print_cmd(argv, NULL, NULL);
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return -errno;
	if ((pid = fork()) == -1) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (pid == 0) {
		child_setup(parent, pfd[1], pfd[1]);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	read_all(pfd[0], out, len);
	close(pfd[0]);
	return reap(pid);
}

static int
collect_args(char **argv, const char *arg0, va_list ap)
{
	size_t n = 0;

	argv[n++] = (char *)arg0;
	while ((argv[n] = va_arg(ap, char *)) != NULL)
		if (++n == MAX_ARGS - 1)
			return -E2BIG;
	return 0;
}

/* Runs a command; its output in out.  The exit code as run_argv. */
static int
try_run(struct lab *lab, char *out, size_t len, const char *arg0, ...)
{
	char *argv[MAX_ARGS];
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = collect_args(argv, arg0, ap);
	va_end(ap);
	return rc < 0 ? rc : run_argv(lab, argv, out, len, true);
}

/* Runs a command that must succeed; on failure says which and why. */
static int
must_run(struct lab *lab, const char *arg0, ...)
{
	char *argv[MAX_ARGS], out[2048];
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = collect_args(argv, arg0, ap);
	va_end(ap);
	if (rc == 0 && (rc = run_argv(lab, argv, out, sizeof(out), true)) == 0)
		return lab_signal != 0 ? -EINTR : 0;
	fprintf(stderr, "sluice lab: this command failed (%s %d):\n  ",
	    rc < 0 ? "error" : "exit code", rc < 0 ? -rc : rc);
	for (size_t i = 0; argv[i] != NULL; i++) {
		print_arg(stderr, argv[i]);
		fputc(' ', stderr);
	}
	fprintf(stderr, "\n  %s", rc < 0 ? strerror(-rc) : out);
	if (rc < 0 || out[0] == '\0' || out[strlen(out) - 1] != '\n')
		fputc('\n', stderr);
	return -1;
}

/* ---- namespaces, links, sysctls --------------------------------------- */

/* Removes sluice-PID-* namespaces whose lab is gone (killed by SIGKILL). */
static void
sweep_stale(struct lab *lab)
{
	char out[8192], *save = NULL, name[64], host[16];
	int pid;

	if (try_run(lab, out, sizeof(out), "ip", "netns", "list", NULL) != 0)
		return;
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%63s", name) != 1 ||
		    sscanf(name, "sluice-%d-%15s", &pid, host) != 2 ||
		    pid <= 0 || pid == getpid() ||
		    (kill(pid, 0) == 0 || errno != ESRCH))
			continue;
		fprintf(stderr,
		    "sluice lab: removing namespace %s, left by a lab that "
		    "is gone\n",
		    name);
		must_run(lab, "ip", "netns", "del", name, NULL);
	}
}

static int
ns_create(struct lab *lab)
{
	char out[1024], path[128];

	for (int h = 0; h < LAB_NHOSTS; h++) {
		snprintf(lab->ns[h], sizeof(lab->ns[h]), "sluice-%d-%s",
		    (int)getpid(), host_names[h]);
		if (try_run(lab, out, sizeof(out), "ip", "netns", "add",
		        lab->ns[h], NULL) != 0) {
			fprintf(stderr,
			    "sluice lab: cannot create network namespace %s: "
			    "%s  network namespaces are not available here; "
			    "run the scenario on 127.0.0.1 with --loopback "
			    "(or [lab] mode = loopback)\n",
			    lab->ns[h], out);
			return -1;
		}
		lab->ns_made[h] = true;
		snprintf(path, sizeof(path), "/run/netns/%s", lab->ns[h]);
		if ((lab->nsfd[h] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			fprintf(stderr, "sluice lab: %s: %s\n", path,
			    strerror(errno));
			return -1;
		}
		if (must_run(lab, "ip", "-n", lab->ns[h], "link", "set", "lo",
		        "up", NULL) < 0)
			return -1;
	}
	return 0;
}

/* A veth pair between hosts a and b, created inside them: the root
 * namespace never holds either end.  The /24 gives each its route. */
static int
link_pair(struct lab *lab, int a, const char *ifa, const char *ipa, int b,
    const char *ifb, const char *ipb)
{
	char cidr_a[32], cidr_b[32];

	snprintf(cidr_a, sizeof(cidr_a), "%s/24", ipa);
	snprintf(cidr_b, sizeof(cidr_b), "%s/24", ipb);
	if (must_run(lab, "ip", "link", "add", ifa, "netns", lab->ns[a], "type",
	        "veth", "peer", "name", ifb, "netns", lab->ns[b], NULL) < 0 ||
	    must_run(lab, "ip", "-n", lab->ns[a], "addr", "add", cidr_a, "dev",
	        ifa, NULL) < 0 ||
	    must_run(lab, "ip", "-n", lab->ns[b], "addr", "add", cidr_b, "dev",
	        ifb, NULL) < 0 ||
	    must_run(lab, "ip", "-n", lab->ns[a], "link", "set", ifa, "up",
	        NULL) < 0 ||
	    must_run(lab, "ip", "-n", lab->ns[b], "link", "set", ifb, "up",
	        NULL) < 0)
		return -1;
	return 0;
}

/* netem as the root qdisc, when the kernel has it (then tbf goes under
 * it); this machine's kind has none: say so once, do not fail. */
static bool
add_netem(struct lab *lab, const char *ns, const char *dev)
{
	char delay[32], out[512];

	if (lab->sc.delay_ms == 0 || lab->netem == 0)
		return false;
	snprintf(delay, sizeof(delay), "%" PRIu64 "ms", lab->sc.delay_ms);
	if (try_run(lab, out, sizeof(out), "tc", "-n", ns, "qdisc", "add",
	        "dev", dev, "root", "handle", "1:", "netem", "delay", delay,
	        NULL) == 0) {
		lab->netem = 1;
		return true;
	}
	lab->netem = 0;
	note(lab, "delay not applied: no netem in this kernel");
	return false;
}

/*
 * tc tbf at bps on dev's egress.  burst: 5 ms at the rate, at least four
 * full frames (tbf drops a packet larger than its burst); latency: at
 * least 20 ms and ten frames' time, so the queue holds a few frames at a
 * low rate without adding much to the bytes in flight (K_out).
 */
static int
shape(struct lab *lab, int h, const char *dev, uint64_t bps)
{
	char rate[32], burst[32], latency[32];
	uint64_t b = bps / 8 / 200, lat = 10ULL * FRAME_BYTES * 8000 / bps + 1;
	const char *ns = lab->ns[h];

	snprintf(rate, sizeof(rate), "%" PRIu64 "bit", bps);
	snprintf(burst, sizeof(burst), "%" PRIu64,
	    b > 4 * FRAME_BYTES ? b : 4 * FRAME_BYTES);
	snprintf(
	    latency, sizeof(latency), "%" PRIu64 "ms", lat > 20 ? lat : 20);
	if (add_netem(lab, ns, dev))
		return must_run(lab, "tc", "-n", ns, "qdisc", "add", "dev", dev,
		    "parent", "1:1", "handle", "10:", "tbf", "rate", rate,
		    "burst", burst, "latency", latency, NULL);
	return must_run(lab, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root",
	    "tbf", "rate", rate, "burst", burst, "latency", latency, NULL);
}

static int
apply_sysctls(struct lab *lab)
{
	char kv[280];

	for (int h = 0; h < LAB_NHOSTS; h++)
		for (size_t i = 0; i < lab->sc.nsysctl[h]; i++) {
			snprintf(kv, sizeof(kv), "%s=%s",
			    lab->sc.sysctl[h][i].key,
			    lab->sc.sysctl[h][i].value);
			if (must_run(lab, "ip", "netns", "exec", lab->ns[h],
			        "sysctl", "-q", "-w", kv, NULL) < 0)
				return -1;
		}
	return 0;
}

static int
net_setup(struct lab *lab)
{
	const struct lab_scenario *sc = &lab->sc;

	sweep_stale(lab);
	if (ns_create(lab) < 0 ||
	    link_pair(lab, LAB_ORIGIN, "to-lb", ORIGIN_IP, LAB_LB, "to-origin",
	        LB_UP_IP) < 0 ||
	    link_pair(lab, LAB_LB, "to-client", LB_IP, LAB_CLIENT, "to-lb",
	        CLIENT_IP) < 0 ||
	    shape(lab, LAB_ORIGIN, "to-lb", sc->origin_lb_bps) < 0 ||
	    shape(lab, LAB_LB, "to-origin", sc->origin_lb_bps) < 0 ||
	    shape(lab, LAB_LB, "to-client", sc->lb_client_bps) < 0 ||
	    shape(lab, LAB_CLIENT, "to-lb", sc->lb_client_bps) < 0 ||
	    apply_sysctls(lab) < 0)
		return -1;
	return 0;
}

static void
loopback_notes(struct lab *lab)
{
	size_t n = 0;

	for (int h = 0; h < LAB_NHOSTS; h++)
		n += lab->sc.nsysctl[h];
	note(lab,
	    "loopback mode: rates are application-paced (the client's "
	    "--rate only); links are not shaped%s%s",
	    n > 0 ? ", sysctls not applied (they would change the host)" : "",
	    lab->sc.delay_ms > 0 ? ", delay not applied" : "");
}

/* ---- the three peers --------------------------------------------------- */

static int
open_out(const struct lab *lab, const char *name)
{
	char path[PATH_MAX];
	int fd;

	path_in(lab, name, path, sizeof(path));
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) <
	    0)
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
	return fd;
}

/* Starts this binary's verb args[0] on host h (through `ip netns exec`),
 * stdout and stderr to files in the results directory. */
static int
spawn(struct lab *lab, int h, const char *const args[], const char *out_name,
    const char *err_name)
{
	char *argv[MAX_ARGS], out_path[PATH_MAX], err_path[PATH_MAX];
	size_t n = 0;
	int out_fd, err_fd;
	pid_t parent = getpid(), pid;

	if (lab->mode == LAB_MODE_NETNS) {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = lab->ns[h];
	}
	argv[n++] = lab->exe;
	for (size_t i = 0; args[i] != NULL && n < MAX_ARGS - 1; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	if ((out_fd = open_out(lab, out_name)) < 0)
		return -1;
	if ((err_fd = open_out(lab, err_name)) < 0) {
		close(out_fd);
		return -1;
	}
	path_in(lab, out_name, out_path, sizeof(out_path));
	path_in(lab, err_name, err_path, sizeof(err_path));
	if (lab->verbose)
		print_cmd(argv, out_path, err_path);
	if ((pid = fork()) == 0) {
		child_setup(parent, out_fd, err_fd);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(out_fd);
	close(err_fd);
	if (pid == -1) {
		fprintf(stderr, "sluice lab: fork: %s\n", strerror(errno));
		return -1;
	}
	setpgid(pid, pid); /* as the child does: whoever runs first */
	lab->pid[h] = pid;
	return 0;
}

static char *
read_file(const char *path, size_t max)
{
	char *buf = malloc(max);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (buf == NULL || fd < 0) {
		if (buf != NULL)
			buf[0] = '\0';
		if (fd >= 0)
			close(fd);
		return buf;
	}
	read_all(fd, buf, max);
	close(fd);
	return buf;
}

/* The port in the first line of the file that holds what (and not
 * unless), after the line's last ':'; 0 when there is none yet. */
static int
port_in_log(const char *text, const char *what, const char *unless)
{
	for (const char *p = text; (p = strstr(p, what)) != NULL; p++) {
		const char *bol = p, *eol = strchr(p, '\n'), *colon = NULL;

		while (bol > text && bol[-1] != '\n')
			bol--;
		if (eol == NULL)
			return 0; /* the line is still being written */
		for (const char *q = p; q < eol; q++)
			if (*q == ':')
				colon = q;
		if (unless != NULL) {
			char line[512];

			snprintf(
			    line, sizeof(line), "%.*s", (int)(eol - bol), bol);
			if (strstr(line, unless) != NULL)
				continue;
		}
		return colon != NULL ? atoi(colon + 1) : 0;
	}
	return 0;
}

/* True when host h's peer has exited (and reaps it). */
static bool
peer_exited(struct lab *lab, int h)
{
	int status;

	if (lab->pid[h] == 0)
		return true;
	if (waitpid(lab->pid[h], &status, WNOHANG) != lab->pid[h])
		return false;
	lab->status[h] = exit_code(status);
	lab->pid[h] = 0;
	return true;
}

static void
print_tail(const struct lab *lab, const char *name)
{
	char path[PATH_MAX], *text;
	size_t len;

	path_in(lab, name, path, sizeof(path));
	if ((text = read_file(path, FILE_MAX)) == NULL)
		return;
	len = strlen(text);
	fprintf(
	    stderr, "  %s:\n%s", path, len > 2000 ? text + len - 2000 : text);
	free(text);
}

/* Waits until host h's log names its listening port: the port, or -1. */
static int
wait_port(struct lab *lab, int h, const char *log, const char *what,
    const char *unless)
{
	char path[PATH_MAX], *text;
	int port = 0;

	path_in(lab, log, path, sizeof(path));
	for (int waited = 0; waited < START_MS && lab_signal == 0;
	     waited += 20) {
		if ((text = read_file(path, FILE_MAX)) == NULL)
			return -1;
		port = port_in_log(text, what, unless);
		free(text);
		if (port > 0)
			return port;
		if (peer_exited(lab, h))
			break;
		usleep(20000);
	}
	if (lab_signal == 0) {
		fprintf(stderr,
		    "sluice lab: the %s did not start listening (exit code "
		    "%d)\n",
		    h == LAB_ORIGIN ? "origin" : "proxy", lab->status[h]);
		print_tail(lab, log);
	}
	return -1;
}

static int
start_origin(struct lab *lab)
{
	const char *args[32] = {"origin", "--listen", NULL, "--json", NULL};
	char listen[64], json[PATH_MAX], sndbuf[32], buf[256];
	size_t n = 5;
	int k;

	snprintf(listen, sizeof(listen), "%s:%d", lab->ip[LAB_ORIGIN],
	    lab->mode == LAB_MODE_NETNS ? ORIGIN_PORT : 0);
	path_in(lab, "origin.json", json, sizeof(json));
	args[2] = listen;
	args[4] = json;
	if (lab->sc.origin_sndbuf != 0) {
		snprintf(
		    sndbuf, sizeof(sndbuf), "%" PRIu64, lab->sc.origin_sndbuf);
		args[n++] = "--sndbuf";
		args[n++] = sndbuf;
	}
	k = lab_giveup_args(lab->sc.give_up, args + n, 12, buf, sizeof(buf));
	args[n + (size_t)(k > 0 ? k : 0)] = NULL;
	close(open_out(lab, "origin.json")); /* the origin appends */
	if (spawn(lab, LAB_ORIGIN, args, "origin.out", "origin.log") < 0)
		return -1;
	lab->origin_port = wait_port(
	    lab, LAB_ORIGIN, "origin.log", "origin: listening on", NULL);
	return lab->origin_port > 0 ? 0 : -1;
}

static int
write_proxy_config(struct lab *lab)
{
	char path[PATH_MAX], listen[64], server[64], admin[64],
	    access[PATH_MAX];
	bool netns = lab->mode == LAB_MODE_NETNS;
	FILE *f;

	path_in(lab, "proxy.ini", path, sizeof(path));
	path_in(lab, "access.json", access, sizeof(access));
	snprintf(listen, sizeof(listen), "%s:%d", lab->ip[LAB_LB],
	    netns ? PROXY_PORT : 0);
	snprintf(server, sizeof(server), "%s:%d", lab->ip[LAB_ORIGIN],
	    lab->origin_port);
	snprintf(admin, sizeof(admin), "127.0.0.1:%d", netns ? ADMIN_PORT : 0);
	if ((f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	lab_proxy_config(f, &lab->sc, listen, server, admin, access);
	if (fclose(f) != 0) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	close(open_out(lab, "access.json"));
	return 0;
}

static int
start_proxy(struct lab *lab)
{
	char path[PATH_MAX];
	const char *args[] = {"proxy", "-c", path, NULL};

	path_in(lab, "proxy.ini", path, sizeof(path));
	if (write_proxy_config(lab) < 0 ||
	    spawn(lab, LAB_LB, args, "proxy.out", "proxy.log") < 0)
		return -1;
	lab->admin_port =
	    wait_port(lab, LAB_LB, "proxy.log", "admin: listening on", NULL);
	if (lab->admin_port < 0)
		return -1;
	lab->proxy_port =
	    wait_port(lab, LAB_LB, "proxy.log", " listening on ", "admin:");
	return lab->proxy_port > 0 ? 0 : -1;
}

/* The client's rate: --rate, or in loopback mode the lb-client link's. */
static uint64_t
fetch_rate(const struct lab *lab)
{
	if (lab->sc.client_rate_bps != 0 || lab->mode == LAB_MODE_NETNS)
		return lab->sc.client_rate_bps;
	return lab->sc.lb_client_bps;
}

static int
start_fetch(struct lab *lab)
{
	const char *args[16] = {"fetch", NULL, "--verify", "--json"};
	char url[128], rate[32], rcvbuf[32], timeout[32];
	size_t n = 4;

	snprintf(url, sizeof(url), "http://%s:%d/bytes/%" PRIu64,
	    lab->ip[LAB_LB], lab->proxy_port, lab->sc.body);
	args[1] = url;
	if (fetch_rate(lab) != 0) {
		snprintf(rate, sizeof(rate), "%" PRIu64 "bit", fetch_rate(lab));
		args[n++] = "--rate";
		args[n++] = rate;
	}
	if (lab->sc.client_rcvbuf != 0) {
		snprintf(
		    rcvbuf, sizeof(rcvbuf), "%" PRIu64, lab->sc.client_rcvbuf);
		args[n++] = "--rcvbuf";
		args[n++] = rcvbuf;
	}
	if (lab->sc.client_timeout_ms != 0) {
		snprintf(timeout, sizeof(timeout), "%" PRIu64 "ms",
		    lab->sc.client_timeout_ms);
		args[n++] = "--timeout";
		args[n++] = timeout;
	}
	args[n] = NULL;
	clock_gettime(CLOCK_MONOTONIC, &lab->t0);
	return spawn(lab, LAB_CLIENT, args, "fetch.json", "fetch.log");
}

/* SIGTERM to h's process group, SIGKILL after STOP_MS; reaps it. */
static void
stop_peer(struct lab *lab, int h, int ms)
{
	pid_t pid = lab->pid[h];

	if (pid == 0)
		return;
	kill(-pid, SIGTERM);
	for (int waited = 0; waited < ms; waited += 20) {
		if (peer_exited(lab, h))
			break;
		usleep(20000);
	}
	kill(-pid, SIGKILL); /* what the peer itself may have left */
	if (lab->pid[h] != 0) {
		lab->status[h] = reap(pid);
		lab->pid[h] = 0;
	}
}

static void
teardown(struct lab *lab)
{
	for (int h = LAB_NHOSTS - 1; h >= 0; h--)
		stop_peer(lab, h, STOP_MS);
	for (int h = 0; h < LAB_NHOSTS; h++) {
		if (lab->nsfd[h] >= 0)
			close(lab->nsfd[h]);
		lab->nsfd[h] = -1;
		if (lab->ns_made[h])
			must_run(lab, "ip", "netns", "del", lab->ns[h], NULL);
		lab->ns_made[h] = false;
	}
	if (lab->csv != NULL)
		fclose(lab->csv);
	lab->csv = NULL;
}

/* ---- sampling ---------------------------------------------------------- */

/* A socket made inside host h's namespace (ours in loopback mode). */
static int
ns_socket(const struct lab *lab, int h)
{
	int fd, err;

	if (lab->nsfd[h] < 0)
		return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (setns(lab->nsfd[h], CLONE_NEWNET) == -1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	err = errno;
	if (setns(lab->selfns, CLONE_NEWNET) == -1) {
		/* cannot happen: we were there a moment ago */
		fprintf(
		    stderr, "sluice lab: setns back: %s\n", strerror(errno));
		abort();
	}
	errno = err;
	return fd;
}

/* GET /connections from the admin port into buf; the body or NULL. */
static const char *
admin_get(const struct lab *lab, char *buf, size_t len)
{
	static const char req[] = "GET /connections HTTP/1.1\r\nHost: lab\r\n"
	                          "Connection: close\r\n\r\n";
	struct timeval tv = {0, 300000};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *body;
	int fd;

	if ((fd = ns_socket(lab, LAB_LB)) < 0)
		return NULL;
	sa.sin_port = htons((uint16_t)lab->admin_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) !=
	        (ssize_t)(sizeof(req) - 1)) {
		close(fd);
		return NULL;
	}
	read_all(fd, buf, len);
	close(fd);
	body = strstr(buf, "\r\n\r\n");
	return body != NULL && strncmp(buf, "HTTP/1.1 200", 12) == 0 ? body + 4
	                                                             : NULL;
}

/* The number after "key": in [s, end); -1 when absent or null. */
static double
json_num(const char *s, const char *end, const char *key)
{
	char pat[64];
	const char *p;
	size_t n;

	n = (size_t)snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((p = strstr(s, pat)) == NULL || p >= end)
		return -1;
	p += n;
	if (*p == 't')
		return 1; /* true */
	if (*p == '-' || isdigit((unsigned char)*p))
		return strtod(p, NULL);
	return *p == 'f' ? 0 : -1;
}

/* The same as a count: 0 when absent, null or negative. */
static uint64_t
json_u64(const char *s, const char *end, const char *key)
{
	double v = json_num(s, end, key);

	return v > 0 ? (uint64_t)v : 0;
}

/* The string after "key": into buf ("" when absent or null). */
static void
json_str(const char *s, const char *key, char *buf, size_t len)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	buf[0] = '\0';
	if ((p = strstr(s, pat)) == NULL)
		return;
	p += strlen(pat);
	snprintf(buf, len, "%.*s", (int)strcspn(p, "\""), p);
}

/* The object after "name": as [*start, *end), or false when null. */
static bool
json_obj(const char *s, const char *name, const char **start, const char **end)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":{", name);
	if ((p = strstr(s, pat)) == NULL || (*end = strchr(p, '}')) == NULL)
		return false;
	*start = p + strlen(pat);
	return true;
}

static void
sample_proxy(const struct lab *lab, struct sample *s)
{
	char *buf = malloc(OUT_MAX);
	const char *body, *end, *os, *oe;

	s->p_paused = -1;
	s->p_mem = s->p_spool = 0;
	s->up_rcvq = s->up_space = s->cl_wnd = -1;
	if (buf == NULL)
		return;
	if ((body = admin_get(lab, buf, OUT_MAX)) == NULL ||
	    strchr(body, '{') == NULL) {
		free(buf);
		return;
	}
	end = body + strlen(body);
	s->p_in = json_u64(body, end, "bytes_from_upstream");
	s->p_out = json_u64(body, end, "bytes_to_client");
	s->p_mem = json_u64(body, end, "memory_bytes");
	s->p_spool = json_u64(body, end, "spool_bytes");
	s->p_paused = (int)json_num(body, end, "upstream_paused");
	if (json_obj(body, "upstream_tcp", &os, &oe)) {
		s->up_rcvq = (int64_t)json_num(os, oe, "rcv_queue");
		s->up_space = (int64_t)json_num(os, oe, "rcv_space");
	}
	if (json_obj(body, "client_tcp", &os, &oe))
		s->cl_wnd = (int64_t)json_num(os, oe, "snd_wnd");
	free(buf);
}

/* ss -tinH in host h's namespace, for sockets whose dir (sport/dport) is
 * port; how many were parsed into socks. */
static size_t
ss_sample(const struct lab *lab, int h, const char *dir, int port,
    struct lab_sock *socks)
{
	char *out = malloc(OUT_MAX), filter[16];
	char *argv[] = {"ss", "-N", (char *)lab->ns[h], "-tinH", (char *)dir,
	    "=", filter, NULL};
	size_t n = 0;

	if (out == NULL)
		return 0;
	snprintf(filter, sizeof(filter), ":%d", port);
	if (lab->mode != LAB_MODE_NETNS)
		memmove(argv + 1, argv + 3, 5 * sizeof(argv[0]));
	if (run_argv(lab, argv, out, OUT_MAX, false) == 0)
		n = lab_ss_parse(out, socks, MAX_SOCKS);
	free(out);
	return n;
}

/* The origin's connections, each remembered after it is gone, so the
 * bytes of a connection the proxy replaced (resume) still count. */
static void
sample_origin(struct lab *lab, struct sample *s)
{
	struct lab_sock socks[MAX_SOCKS];
	size_t n = ss_sample(lab, LAB_ORIGIN, "sport", lab->origin_port, socks);
	size_t latest = MAX_SEEN, k;

	s->o_wnd = -1;
	s->o_backoff = -1;
	s->o_zero = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t written = socks[i].bytes_acked + socks[i].send_q;

		if (strcmp(socks[i].state, "TIME-WAIT") == 0)
			continue; /* no counters left: keep the last ones */
		for (k = 0; k < lab->nseen; k++)
			if (strcmp(lab->seen[k].peer, socks[i].peer) == 0)
				break;
		if (k == lab->nseen && lab->nseen < MAX_SEEN)
			snprintf(lab->seen[lab->nseen++].peer,
			    sizeof(lab->seen[0].peer), "%s", socks[i].peer);
		if (k == MAX_SEEN)
			continue;
		if (socks[i].bytes_acked > lab->seen[k].acked)
			lab->seen[k].acked = socks[i].bytes_acked;
		if (written > lab->seen[k].written)
			lab->seen[k].written = written;
		if (latest == MAX_SEEN || k > latest) {
			latest = k;
			s->o_wnd = socks[i].snd_wnd;
			s->o_backoff = (int)socks[i].backoff;
			s->o_zero =
			    socks[i].snd_wnd == 0 && socks[i].send_q > 0;
		}
	}
	s->o_acked = s->o_written = 0;
	for (k = 0; k < lab->nseen; k++) {
		s->o_acked += lab->seen[k].acked;
		s->o_written += lab->seen[k].written;
	}
}

static void
sample_client(const struct lab *lab, struct sample *s)
{
	struct lab_sock socks[MAX_SOCKS];
	size_t n = ss_sample(lab, LAB_CLIENT, "dport", lab->proxy_port, socks);
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += socks[i].bytes_received;
	if (sum > s->c_recv)
		s->c_recv = sum;
}

static const char *const csv_header =
    "t_s,origin_acked_bytes,origin_written_bytes,origin_snd_wnd_bytes,"
    "origin_backoff_count,origin_zero_window_flag,proxy_from_upstream_bytes,"
    "proxy_to_client_bytes,proxy_memory_bytes,proxy_spool_bytes,"
    "proxy_paused_flag,upstream_rcv_queue_bytes,upstream_rcv_space_bytes,"
    "client_snd_wnd_bytes,client_received_bytes";

static void
csv_opt(FILE *f, int64_t v)
{
	if (v >= 0)
		fprintf(f, ",%" PRId64, v);
	else
		fputc(',', f);
}

static void
csv_row(FILE *f, const struct sample *s)
{
	fprintf(f, "%.3f,%" PRIu64 ",%" PRIu64, s->t, s->o_acked, s->o_written);
	csv_opt(f, s->o_wnd);
	csv_opt(f, s->o_backoff);
	fprintf(f, ",%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
	    s->o_zero, s->p_in, s->p_out, s->p_mem, s->p_spool);
	csv_opt(f, s->p_paused);
	csv_opt(f, s->up_rcvq);
	csv_opt(f, s->up_space);
	csv_opt(f, s->cl_wnd);
	fprintf(f, ",%" PRIu64 "\n", s->c_recv);
	fflush(f);
}

static void
progress(struct lab *lab)
{
	const struct sample *s = &lab->s;
	char origin[64];

	if (!lab->tty)
		return;
	if (s->o_wnd < 0)
		snprintf(origin, sizeof(origin), "no origin connection");
	else
		snprintf(origin, sizeof(origin), "origin window %.0f KiB%s",
		    (double)s->o_wnd / 1024, s->o_zero ? " (ZERO)" : "");
	fprintf(stderr,
	    "\r%6.1fs  client %.2f/%.2f MiB  proxy holds %.2f MiB%s%s  %s"
	    "\033[K",
	    s->t, (double)s->c_recv / MIB, (double)lab->sc.body / MIB,
	    (double)(s->p_mem + s->p_spool) / MIB,
	    s->p_spool > 0 ? " (spool)" : "",
	    s->p_paused == 1 ? ", paused" : "", origin);
	lab->progress_shown = true;
}

static void
take_sample(struct lab *lab)
{
	struct sample *s = &lab->s;
	uint64_t p_in = s->p_in, p_out = s->p_out;

	s->t = elapsed(lab);
	sample_origin(lab, s);
	sample_proxy(lab, s);
	if (s->p_paused < 0) { /* the download is over: keep its totals */
		s->p_in = p_in;
		s->p_out = p_out;
	}
	sample_client(lab, s);
	if (s->o_wnd > 0 && (uint64_t)s->o_wnd > lab->max_wnd)
		lab->max_wnd = (uint64_t)s->o_wnd;
	if (s->up_rcvq > 0 && (uint64_t)s->up_rcvq > lab->max_wnd)
		lab->max_wnd = (uint64_t)s->up_rcvq;
	if (lab->csv != NULL)
		csv_row(lab->csv, s);
	progress(lab);
}

static void
sleep_until(const struct lab *lab, double t)
{
	double d = t - elapsed(lab);
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL); /* a signal ends it early: the loop looks */
}

static int
open_csv(struct lab *lab)
{
	char path[PATH_MAX];

	path_in(lab, "timeline.csv", path, sizeof(path));
	if ((lab->csv = fopen(path, "we")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(lab->csv, "%s\n", csv_header);
	return 0;
}

/* The last row: the client's socket is gone by now, so its bytes are
 * the fetch's own count (body bytes) when that is more. */
static void
final_sample(struct lab *lab)
{
	char path[PATH_MAX], *text;
	uint64_t got;

	path_in(lab, "fetch.json", path, sizeof(path));
	if ((text = read_file(path, FILE_MAX)) != NULL) {
		got = json_u64(text, text + strlen(text), "received_bytes");
		if (got > lab->s.c_recv)
			lab->s.c_recv = got;
		free(text);
	}
	take_sample(lab);
}

/* Samples until the fetch exits, the time limit, or a signal. */
static void
sample_loop(struct lab *lab)
{
	double limit = (double)lab->sc.time_limit_ms / 1000.0;
	double next = 0;

	if (lab->verbose)
		fprintf(stderr,
		    "sluice lab: sampling every %d ms: ss -tinH in the "
		    "origin's and the client's namespace, GET "
		    "http://127.0.0.1:%d/connections in the lb's\n",
		    SAMPLE_MS, lab->admin_port);
	while (lab_signal == 0) {
		if (peer_exited(lab, LAB_CLIENT))
			break;
		if (elapsed(lab) >= limit) {
			lab->time_limit_hit = true;
			break;
		}
		take_sample(lab);
		next += SAMPLE_MS / 1000.0;
		sleep_until(lab, next);
	}
	if (lab_signal == 0)
		final_sample(lab);
	if (lab->progress_shown)
		fputs("\r\033[K", stderr);
}

/* After the fetch: the proxy's access line, then the peers stop. */
static void
end_run(struct lab *lab)
{
	char path[PATH_MAX], *text;

	if (lab->time_limit_hit) {
		note(lab,
		    "time limit (%" PRIu64 " ms) reached: the download "
		    "was stopped",
		    lab->sc.time_limit_ms);
		stop_peer(lab, LAB_CLIENT, STOP_MS);
	}
	path_in(lab, "access.json", path, sizeof(path));
	for (int waited = 0; waited < ACCESS_MS && lab_signal == 0;
	     waited += 50) {
		text = read_file(path, FILE_MAX);
		if (text != NULL && strstr(text, "\"outcome\"") != NULL) {
			free(text);
			break;
		}
		free(text);
		usleep(50000);
	}
	stop_peer(lab, LAB_LB, STOP_MS);
	stop_peer(lab, LAB_ORIGIN, STOP_MS);
}

/* ---- results ----------------------------------------------------------- */

static void
read_results(const struct lab *lab, struct result *r)
{
	char path[PATH_MAX];

	path_in(lab, "fetch.json", path, sizeof(path));
	r->fetch = read_file(path, FILE_MAX);
	path_in(lab, "origin.json", path, sizeof(path));
	r->origin = read_file(path, FILE_MAX);
	path_in(lab, "access.json", path, sizeof(path));
	r->access = read_file(path, FILE_MAX);
}

/* The origin's lines: the first rule that fired, zero-window time and
 * probes summed over its connections. */
static void
origin_figures(struct result *r)
{
	char *save = NULL, rule[32];
	char *copy = strdup(r->origin != NULL ? r->origin : "");

	for (char *line = copy != NULL ? strtok_r(copy, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		const char *end = line + strlen(line);

		if (line[0] != '{')
			continue;
		json_str(line, "gave_up", rule, sizeof(rule));
		if (r->gave_up[0] == '\0')
			snprintf(r->gave_up, sizeof(r->gave_up), "%s", rule);
		if (json_num(line, end, "zero_window_s") > 0)
			r->zero_window_s +=
			    json_num(line, end, "zero_window_s");
		r->probes += (unsigned)json_u64(line, end, "probes");
	}
	free(copy);
}

static void
access_figures(struct result *r)
{
	const char *line = r->access != NULL ? strchr(r->access, '{') : NULL;
	const char *end;

	if (line == NULL)
		return;
	end = line + strcspn(line, "\n");
	json_str(line, "outcome", r->proxy_outcome, sizeof(r->proxy_outcome));
	r->resumes = (long)json_u64(line, end, "resumes");
	r->paused_s = json_num(line, end, "paused_s");
	r->peak_memory = json_u64(line, end, "peak_memory");
	r->spilled = json_u64(line, end, "spilled_bytes");
}

static void
figures(const struct lab *lab, struct result *r)
{
	const char *f = r->fetch != NULL ? r->fetch : "";
	const char *end = f + strlen(f);
	struct utsname u;

	json_str(f, "outcome", r->fetch_outcome, sizeof(r->fetch_outcome));
	r->verified = strstr(f, "\"verified\":true") != NULL ? 1
	    : strstr(f, "\"verified\":false") != NULL        ? 0
	                                                     : -1;
	r->client_bytes = json_u64(f, end, "received_bytes");
	r->seconds = json_num(f, end, "seconds");
	if (r->fetch_outcome[0] == '\0' && lab->time_limit_hit) {
		/* stopped before it could say: the timeline's last count
		 * (TCP bytes, the head included) */
		snprintf(
		    r->fetch_outcome, sizeof(r->fetch_outcome), "time-limit");
		r->client_bytes =
		    lab->s.c_recv < lab->sc.body ? lab->s.c_recv : lab->sc.body;
		r->seconds = lab->s.t;
	}
	r->unsent =
	    lab->sc.body > r->client_bytes ? lab->sc.body - r->client_bytes : 0;
	r->complete = strcmp(r->fetch_outcome, "complete") == 0 &&
	    r->verified == 1 && r->unsent == 0;
	origin_figures(r);
	access_figures(r);
	if (uname(&u) == 0)
		snprintf(r->kernel, sizeof(r->kernel), "%s", u.release);
}

/* The client's goodput: the link's rate less the frame overhead, or
 * --rate when that is lower (loopback: --rate, nothing else paces). */
static double
client_goodput(const struct lab *lab)
{
	double link = model_goodput_bps((double)lab->sc.lb_client_bps);
	double rate = (double)fetch_rate(lab);

	if (lab->mode != LAB_MODE_NETNS)
		return rate;
	return rate > 0 && rate < link ? rate : link;
}

/* The model's inputs are the scenario's and the proxy config's own. */
static void
predict(const struct lab *lab, struct result *r)
{
	const struct config *cfg = lab->cfg;
	struct model_in in;

	model_defaults(&in);
	in.size = lab->sc.body;
	in.client_bps = client_goodput(lab);
	in.origin_bps = lab->mode == LAB_MODE_NETNS
	    ? model_goodput_bps((double)lab->sc.origin_lb_bps)
	    : 10e9; /* loopback: far faster than the client */
	in.policy = cfg->buffer.policy;
	in.high = cfg->buffer.high_watermark;
	in.low = cfg->buffer.low_watermark;
	in.spill_limit = cfg->buffer.spill_limit;
	in.block = cfg->buffer.block_size;
	in.rcvbuf = cfg->upstream.rcvbuf;
	in.client_sndbuf = cfg->client.sndbuf;
	in.resume = cfg->buffer.resume;
	if (lab->sc.origin_sndbuf != 0)
		in.k_ws = 2 * lab->sc.origin_sndbuf; /* the kernel doubles it */
	if (model_parse_giveup(lab->sc.give_up, &in) < 0)
		return;
	r->have_model = model_predict(&in, &r->mo) == 0;
}

static void
json_lines(FILE *f, const char *text)
{
	const char *sep = "";
	char *copy = strdup(text != NULL ? text : ""), *save = NULL;

	fputc('[', f);
	for (char *line = copy != NULL ? strtok_r(copy, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] != '{')
			continue;
		fprintf(f, "%s%s", sep, line);
		sep = ",";
	}
	fputc(']', f);
	free(copy);
}

static void
json_raw_or_null(FILE *f, const char *text)
{
	const char *p = text != NULL ? strchr(text, '{') : NULL;

	if (p == NULL)
		fputs("null", f);
	else
		fprintf(f, "%.*s", (int)strcspn(p, "\n"), p);
}

static void
summary_measured(FILE *f, const struct lab *lab, const struct result *r)
{
	fprintf(f, "{\"scenario\":");
	json_string(f, lab->sc.name);
	fprintf(f, ",\"scenario_file\":");
	json_string(f, lab->sc.path);
	fprintf(f, ",\"mode\":\"%s\",\"rates\":\"%s\"",
	    lab->mode == LAB_MODE_NETNS ? "netns" : "loopback",
	    lab->mode == LAB_MODE_NETNS ? "tc tbf" : "application-paced");
	fprintf(f,
	    ",\"outcome\":\"%s\",\"body_bytes\":%" PRIu64
	    ",\"client_bytes\":%" PRIu64 ",\"unsent_bytes\":%" PRIu64
	    ",\"gave_up\":",
	    r->complete ? "complete" : "truncated", lab->sc.body,
	    r->client_bytes, r->unsent);
	if (r->gave_up[0] != '\0')
		json_string(f, r->gave_up);
	else
		fputs("null", f);
	fprintf(f, ",\"zero_window_s\":%.3f,\"probes\":%u", r->zero_window_s,
	    r->probes);
	fprintf(f, ",\"fetch_outcome\":");
	json_string(f, r->fetch_outcome[0] != '\0' ? r->fetch_outcome : "none");
	fprintf(f,
	    ",\"verified\":%s,\"seconds\":%.3f,\"time_limit_reached\":%s",
	    r->verified == 1       ? "true"
	        : r->verified == 0 ? "false"
	                           : "null",
	    r->seconds, lab->time_limit_hit ? "true" : "false");
	fprintf(f, ",\"proxy_outcome\":");
	json_string(f, r->proxy_outcome);
	fprintf(f,
	    ",\"resumes\":%ld,\"paused_s\":%.3f,\"peak_memory_bytes\":%" PRIu64
	    ",\"spilled_bytes\":%" PRIu64,
	    r->resumes, r->paused_s, r->peak_memory, r->spilled);
}

static void
summary_predicted(FILE *f, const struct result *r)
{
	if (!r->have_model) {
		fputs(",\"predicted_outcome\":null,\"predicted_unsent_bytes\":"
		      "null",
		    f);
		return;
	}
	fprintf(f,
	    ",\"predicted_outcome\":\"%s\",\"predicted_unsent_bytes\":%" PRIu64
	    ",\"predicted_client_bytes\":%" PRIu64
	    ",\"predicted_giveup_at_s\":%.3f,\"predicted_client_finish_s\":%.3f"
	    ",\"predicted_stalls\":%u,\"predicted_resumes\":%u"
	    ",\"model_k_in_bytes\":%" PRIu64 ",\"model_k_out_bytes\":%" PRIu64
	    ",\"model_k_ws_bytes\":%" PRIu64 ",\"recommendation\":",
	    r->mo.complete ? "complete" : "truncated", r->mo.unsent_bytes,
	    r->mo.client_bytes, r->mo.giveup_at_s, r->mo.client_finish_s,
	    r->mo.stalls, r->mo.resumes, r->mo.k_in, r->mo.k_out, r->mo.k_ws);
	json_string(f, r->mo.recommendation);
}

static void
write_summary(FILE *f, const struct lab *lab, const struct result *r)
{
	summary_measured(f, lab, r);
	summary_predicted(f, r);
	fprintf(f, ",\"lb_kind\":\"sluice\",\"kernel\":");
	json_string(f, r->kernel);
	fprintf(f, ",\"delay_applied\":%s,\"notes\":",
	    lab->netem == 1       ? "true"
	        : lab->netem == 0 ? "false"
	                          : "null");
	json_string(f, lab->sc.notes);
	fprintf(f, ",\"results\":");
	json_string(f, lab->out);
	fprintf(f, ",\"plot\":");
	if (r->plotted)
		json_string(f, r->plot);
	else
		fputs("null", f);
	fprintf(f, ",\"fetch\":");
	json_raw_or_null(f, r->fetch);
	fprintf(f, ",\"origin\":");
	json_lines(f, r->origin);
	fprintf(f, ",\"access\":");
	json_lines(f, r->access);
	fputs("}\n", f);
}

static int
save_summary(const struct lab *lab, const struct result *r)
{
	char path[PATH_MAX];
	FILE *f;

	path_in(lab, "summary.json", path, sizeof(path));
	if ((f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	write_summary(f, lab, r);
	if (fclose(f) != 0) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (lab->json)
		write_summary(stdout, lab, r);
	return 0;
}

/* ---- the plot ---------------------------------------------------------- */

static bool
in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path != NULL ? path : "/usr/bin:/bin";
	     *p != '\0';) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/* A gnuplot single-quoted string: quotes doubled. */
static void
gp_string(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s != '\0'; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

/* Periods where a 0/1 column is 1, as opaque boxes one sample wide
 * (slightly wider, so that neighbours leave no seam). */
#define GP_SHADE(col, color, title)                                            \
	"'%1$s' using 1:(column('" col "') > 0 ? %2$s : 0):(0.102) with "      \
	"boxes fs solid 1.0 noborder lc rgb '" color "' title '" title "'"

static void
gp_bytes_panel(FILE *f, const char *csv, double ymax)
{
	char y[32];

	snprintf(y, sizeof(y), "%.3f", ymax);
	fprintf(f,
	    "set ylabel 'MiB'\nset yrange [0:%2$s]\nset key left top opaque "
	    "box\n"
	    "plot " GP_SHADE("origin_zero_window_flag", "#f6d3d3",
	        "origin sees a zero window") ", \\\n"
	                                     "  '%1$s' using "
	                                     "1:(column('origin_acked_bytes')/"
	                                     "1048576.0) "
	                                     "with lines lw 2 lc rgb '#1f77b4' "
	                                     "title 'origin: acked', \\\n"
	                                     "  '%1$s' using "
	                                     "1:(column('proxy_from_upstream_"
	                                     "bytes')/1048576.0) "
	                                     "with lines lc rgb '#2ca02c' "
	                                     "title 'proxy: from upstream', "
	                                     "\\\n"
	                                     "  '%1$s' using "
	                                     "1:((column('proxy_memory_bytes')+"
	                                     "column('proxy_spool_bytes'))/"
	                                     "1048576.0) with lines "
	                                     "lc rgb '#9467bd' title 'proxy: "
	                                     "held (memory + spool)', \\\n"
	                                     "  '%1$s' using "
	                                     "1:(column('client_received_bytes'"
	                                     ")/1048576.0) "
	                                     "with lines lw 2 lc rgb '#ff7f0e' "
	                                     "title 'client: received'\n",
	    csv, y);
}

static void
gp_window_panel(FILE *f, const char *csv, double wmax)
{
	char y[32];

	snprintf(y, sizeof(y), "%.3f", wmax);
	fprintf(f,
	    "set ylabel 'KiB'\nset yrange [0:%2$s]\nset key right top opaque "
	    "box\n"
	    "plot " GP_SHADE("proxy_paused_flag", "#e4e4e4",
	        "proxy paused (not reading the upstream)") ", \\\n"
	                                                   "  " GP_SHADE(
	                                                       "origin_zero_"
	                                                       "window_flag",
	                                                       "#f6d3d3",
	                                                       "zero window") ", \\\n"
	                                                                      "  '%1$s' using 1:(column('origin_snd_wnd_bytes')/1024.0) with "
	                                                                      "steps lw 2 lc rgb '#1f77b4' title 'upstream window (origin "
	                                                                      "snd_wnd)', \\\n"
	                                                                      "  '%1$s' using 1:(column('upstream_rcv_queue_bytes')/1024.0) "
	                                                                      "with lines lc rgb '#2ca02c' title 'proxy: upstream receive "
	                                                                      "queue'\n",
	    csv, y);
}

static void
write_gp(FILE *f, const struct lab *lab, const struct result *r,
    const char *png, const char *csv)
{
	double wmax = (double)lab->max_wnd / 1024.0;
	char title[160];

	fprintf(f,
	    "# Written by sluice lab; re-render with: gnuplot %s/"
	    "timeline.gp\n",
	    lab->out);
	fprintf(f,
	    "set terminal pngcairo size 1200,900 noenhanced font "
	    "'sans,10'\nset output ");
	gp_string(f, png);
	fprintf(f,
	    "\nset datafile separator ','\nset datafile "
	    "columnheaders\nset grid\nset xlabel 'time (s)'\n"
	    "set xrange [0:%.1f]\nset style fill solid\n",
	    lab->s.t > 0 ? lab->s.t : 1.0);
	snprintf(title, sizeof(title),
	    "%s: %s, %.2f MiB of %.2f MiB reached the client", lab->sc.name,
	    r->complete ? "complete" : "truncated",
	    (double)r->client_bytes / MIB, (double)lab->sc.body / MIB);
	fprintf(f, "set multiplot layout 2,1 title ");
	gp_string(f, title);
	fputc('\n', f);
	gp_bytes_panel(f, csv, (double)lab->sc.body / MIB * 1.05);
	gp_window_panel(f, csv, wmax > 0 ? wmax * 1.1 : 64);
	fprintf(f, "unset multiplot\n");
}

static void
plot(struct lab *lab, struct result *r)
{
	char gp[PATH_MAX], png[PATH_MAX], csv[PATH_MAX], out[2048];
	FILE *f;

	if (!in_path("gnuplot")) {
		snprintf(r->plot, sizeof(r->plot),
		    "not drawn: gnuplot not found (Debian: apt-get install "
		    "gnuplot-nox)");
		return;
	}
	path_in(lab, "timeline.gp", gp, sizeof(gp));
	path_in(lab, "timeline.png", png, sizeof(png));
	path_in(lab, "timeline.csv", csv, sizeof(csv));
	if ((f = fopen(gp, "w")) == NULL) {
		snprintf(r->plot, sizeof(r->plot), "not drawn: %s: %s", gp,
		    strerror(errno));
		return;
	}
	write_gp(f, lab, r, png, csv);
	fclose(f);
	if (try_run(lab, out, sizeof(out), "gnuplot", gp, NULL) != 0) {
		snprintf(r->plot, sizeof(r->plot),
		    "not drawn: gnuplot failed: %.120s", out);
		return;
	}
	snprintf(r->plot, sizeof(r->plot), "%s", png);
	r->plotted = true;
}

/* ---- the verdict ------------------------------------------------------- */

static void
verdict_what(FILE *f, const struct lab *lab, const struct result *r)
{
	if (r->complete) {
		fprintf(f,
		    "%s: COMPLETE. All %.2f MiB reached the client, verified, "
		    "in %.1f s.\n",
		    lab->sc.name, (double)lab->sc.body / MIB, r->seconds);
		return;
	}
	fprintf(f, "%s: TRUNCATED. The client got %.2f MiB of %.2f MiB and ",
	    lab->sc.name, (double)r->client_bytes / MIB,
	    (double)lab->sc.body / MIB);
	if (lab->time_limit_hit)
		fprintf(f, "was stopped by the time limit after %.1f s",
		    r->seconds);
	else
		fprintf(f, "then a short end (%s) after %.1f s",
		    r->fetch_outcome[0] != '\0' ? r->fetch_outcome
		                                : "no answer",
		    r->seconds);
	fprintf(f, ": %.2f MiB (%" PRIu64 " bytes) never reached it.\n",
	    (double)r->unsent / MIB, r->unsent);
}

static void
verdict_rule(FILE *f, const struct lab *lab, const struct result *r)
{
	const char *rule =
	    lab->sc.give_up[0] != '\0' ? lab->sc.give_up : "none";

	if (r->gave_up[0] != '\0')
		fprintf(f,
		    "  Rule that fired: the origin's %s (%s), after %.1f s "
		    "of zero window in all (%u probes); the proxy logged "
		    "%s%s",
		    r->gave_up, rule, r->zero_window_s, r->probes,
		    r->proxy_outcome[0] != '\0' ? r->proxy_outcome : "nothing",
		    r->resumes > 0 ? "" : ".\n");
	else
		fprintf(f,
		    "  No give-up rule fired (the origin's: %s); it saw %.1f s "
		    "of zero window in all; the proxy paused its upstream "
		    "%.1f s, logged %s%s",
		    rule, r->zero_window_s, r->paused_s > 0 ? r->paused_s : 0,
		    r->proxy_outcome[0] != '\0' ? r->proxy_outcome : "nothing",
		    r->resumes > 0 ? "" : ".\n");
	if (r->resumes > 0)
		fprintf(f, " and resumed %ld times with Range.\n", r->resumes);
}

static void
verdict_model(FILE *f, const struct result *r)
{
	double diff;

	if (!r->have_model) {
		fprintf(f, "  Model: no prediction for these inputs.\n");
		return;
	}
	fprintf(f, "  Model: %s, %.2f MiB (%" PRIu64 " bytes) unsent",
	    r->mo.complete ? "complete" : "truncated",
	    (double)r->mo.unsent_bytes / MIB, r->mo.unsent_bytes);
	if (r->mo.unsent_bytes > 0) {
		diff = ((double)r->unsent - (double)r->mo.unsent_bytes) /
		    (double)r->mo.unsent_bytes * 100.0;
		fprintf(f, "; measured %+.1f%%", diff);
	}
	if (r->mo.giveup_at_s >= 0)
		fprintf(
		    f, "; the origin gives up at %.1f s", r->mo.giveup_at_s);
	fprintf(f, ".\n");
	if (!r->mo.complete && r->mo.recommendation[0] != '\0')
		fprintf(f, "  To complete: %s\n", r->mo.recommendation);
}

static void
verdict(const struct lab *lab, const struct result *r)
{
	FILE *f = lab->json ? stderr : stdout;

	verdict_what(f, lab, r);
	verdict_rule(f, lab, r);
	verdict_model(f, r);
	for (size_t i = 0; i < lab->nnotes; i++)
		fprintf(f, "  Note: %s.\n", lab->notes[i]);
	fprintf(f, "  Plot: %s\n  Results: %s\n", r->plot, lab->out);
}

/* ---- the command ------------------------------------------------------- */

void
lab_usage(FILE *out)
{
	const char *prev = "";

	fprintf(out,
	    "usage: sluice lab SCENARIO.ini [--json] [--out DIR] [-v] "
	    "[--loopback]\n"
	    "\n"
	    "Reproduces the zero-window incident: namespaces origin - lb -\n"
	    "client joined by veth pairs shaped with tc tbf, sluice origin,\n"
	    "proxy and fetch in them, a timeline every 100 ms, and a verdict\n"
	    "beside the model's prediction.  Needs root (ip netns); without\n"
	    "it, --loopback runs on 127.0.0.1 with application-paced rates.\n"
	    "\n"
	    "  --out DIR     results (default lab-results/NAME-TIME/):\n"
	    "                summary.json timeline.csv timeline.png and the\n"
	    "                peers' JSON and logs\n"
	    "  --json        print summary.json on stdout (verdict on stderr)\n"
	    "  -v            print every command (ip, tc, sysctl, the peers)\n"
	    "  --loopback    mode = loopback\n"
	    "\n"
	    "Scenario keys (docs/lab.md, conf/scenarios/):");
	for (size_t i = 0; i < NSKEYS; i++) {
		if (strcmp(skeys[i].section, prev) != 0)
			fprintf(out, "\n  [%s]\n", skeys[i].section);
		prev = skeys[i].section;
		fprintf(out, "    %-11s %s\n", skeys[i].key, skeys[i].doc);
	}
	fprintf(out,
	    "  [origin] [lb] [client]\n"
	    "    sysctl.NAME per-namespace sysctl (net.ipv4.tcp_rto_max_ms)\n"
	    "  [proxy]\n"
	    "    SECTION.KEY proxy config keys (buffer.policy = pause);\n"
	    "                upstream.rcvbuf is 256k unless set\n"
	    "\n"
	    "Exit codes: 0 measured (complete or truncated), 1 the lab could\n"
	    "not run, 2 bad usage or scenario, 128+N stopped by signal N.\n");
}

static void
on_signal(int sig)
{
	lab_signal = sig;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: sleeps end early */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int
mkdir_p(char *path)
{
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) == -1 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	return mkdir(path, 0755) == -1 && errno != EEXIST ? -errno : 0;
}

static int
make_out(struct lab *lab, const char *dir)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	if (dir != NULL) {
		snprintf(lab->out, sizeof(lab->out), "%s", dir);
	} else {
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
		snprintf(lab->out, sizeof(lab->out), "lab-results/%s-%s",
		    lab->sc.name, stamp);
	}
	if ((rc = mkdir_p(lab->out)) < 0) {
		fprintf(stderr, "sluice lab: cannot create %s: %s\n", lab->out,
		    strerror(-rc));
		return -1;
	}
	return 0;
}

/* Loads the proxy config the scenario makes (addresses as in netns mode)
 * to check its [proxy] keys before anything starts, and for the model. */
static int
load_proxy_config(struct lab *lab)
{
	char err[CONFIG_ERR_MAX], *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return -1;
	lab_proxy_config(f, &lab->sc, LB_IP ":8080", ORIGIN_IP ":8000",
	    "127.0.0.1:9090", "");
	fclose(f);
	lab->cfg = config_load_string(text, "proxy.ini", err, sizeof(err));
	free(text);
	if (lab->cfg == NULL) {
		fprintf(stderr,
		    "sluice lab: %s: [proxy] makes a bad proxy config: %s\n",
		    lab->sc.path, err);
		return -1;
	}
	return 0;
}

struct args {
	const char *scenario, *out;
	bool json, verbose, loopback;
};

static int
parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	    {"out", required_argument, NULL, 'o'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"loopback", no_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((c = getopt_long(argc, argv, "jo:vlh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			a->json = true;
			break;
		case 'o':
			a->out = optarg;
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'l':
			a->loopback = true;
			break;
		case 'h':
			lab_usage(stdout);
			exit(0);
		default:
			lab_usage(stderr);
			return -1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "sluice lab: one SCENARIO.ini is required\n");
		lab_usage(stderr);
		return -1;
	}
	a->scenario = argv[optind];
	return 0;
}

/* Everything before the peers start: 0, 1 (cannot run) or 2 (usage). */
static int
prepare(struct lab *lab, const struct args *a)
{
	char err[LAB_ERR_MAX];
	ssize_t n;

	if (lab_scenario_load(a->scenario, &lab->sc, err, sizeof(err)) < 0) {
		fprintf(stderr, "sluice lab: %s\n", err);
		return 2;
	}
	lab->mode = a->loopback ? LAB_MODE_LOOPBACK : lab->sc.mode;
	if (load_proxy_config(lab) < 0)
		return 2;
	if (lab->mode == LAB_MODE_NETNS && geteuid() != 0) {
		fprintf(stderr,
		    "sluice lab: %s needs root for network namespaces (ip "
		    "netns, tc, sysctl); run it as root, or on 127.0.0.1 "
		    "with application-paced rates: sluice lab --loopback "
		    "%s\n",
		    a->scenario, a->scenario);
		return 1;
	}
	n = readlink("/proc/self/exe", lab->exe, sizeof(lab->exe) - 1);
	if (n <= 0 || (size_t)n >= sizeof(lab->exe) - 1) {
		fprintf(stderr, "sluice lab: /proc/self/exe: %s\n",
		    strerror(errno));
		return 1;
	}
	lab->exe[n] = '\0';
	if (make_out(lab, a->out) < 0)
		return 1;
	lab->selfns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	return 0;
}

static int
run(struct lab *lab)
{
	bool netns = lab->mode == LAB_MODE_NETNS;

	lab->ip[LAB_ORIGIN] = netns ? ORIGIN_IP : "127.0.0.1";
	lab->ip[LAB_LB] = netns ? LB_IP : "127.0.0.1";
	lab->ip[LAB_CLIENT] = netns ? CLIENT_IP : "127.0.0.1";
	if (!netns)
		loopback_notes(lab);
	else if (net_setup(lab) < 0)
		return -1;
	if (start_origin(lab) < 0 || start_proxy(lab) < 0 ||
	    open_csv(lab) < 0 || start_fetch(lab) < 0)
		return -1;
	if (!lab->json)
		fprintf(stderr,
		    "sluice lab: %s: %s, %.2f MiB through sluice proxy, "
		    "results in %s\n",
		    lab->sc.name, netns ? "network namespaces" : "loopback",
		    (double)lab->sc.body / MIB, lab->out);
	sample_loop(lab);
	if (lab_signal != 0)
		return -1;
	end_run(lab);
	return 0;
}

static int
report(struct lab *lab)
{
	struct result r;
	int rc = 0;

	memset(&r, 0, sizeof(r));
	read_results(lab, &r);
	figures(lab, &r);
	predict(lab, &r);
	plot(lab, &r);
	if (save_summary(lab, &r) < 0)
		rc = 1;
	verdict(lab, &r);
	if (r.fetch_outcome[0] == '\0' ||
	    strcmp(r.fetch_outcome, "refused") == 0) {
		fprintf(stderr,
		    "sluice lab: the client never got an answer: see "
		    "%s/fetch.log and proxy.log\n",
		    lab->out);
		rc = 1;
	}
	free(r.fetch);
	free(r.origin);
	free(r.access);
	return rc;
}

int
lab_main(int argc, char **argv)
{
	struct lab *lab = calloc(1, sizeof(*lab));
	struct args a;
	int rc;

	if (lab == NULL)
		return 1;
	for (int h = 0; h < LAB_NHOSTS; h++)
		lab->nsfd[h] = -1;
	lab->selfns = -1;
	if (parse_args(argc, argv, &a) < 0) {
		free(lab);
		return 2;
	}
	lab->json = a.json;
	lab->verbose = a.verbose;
	lab->tty = isatty(STDERR_FILENO) && !a.verbose;
	install_signals();
	if ((rc = prepare(lab, &a)) == 0) {
		rc = run(lab) < 0 ? 1 : 0;
		teardown(lab);
		if (lab_signal != 0) {
			fprintf(stderr,
			    "sluice lab: stopped by signal %d; namespaces and "
			    "processes removed, partial timeline in %s\n",
			    (int)lab_signal, lab->out);
			rc = 128 + lab_signal;
		} else if (rc == 0) {
			rc = report(lab);
		}
	}
	if (lab->selfns >= 0)
		close(lab->selfns);
	config_free(lab->cfg);
	free(lab);
	return rc;
}
