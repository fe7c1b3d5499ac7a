/*
 * lab scenarios: the scenario file, the give-up rule as origin options, the
 * proxy config a scenario makes, ss(8) output and `sluice help lab`: the
 * pure parts of the lab (lab.h), unit-tested in tests/unit/test_lab.c.
 */
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
#include "base/field.h"
#include "base/json.h"
#include "base/units.h"
#include "proxy/config.h"
#include "model/model.h"
#include "model/scale.h"
#include "lab/lab.h"
#include "lab/lab_scale.h"
#include "lab/pcap.h"

const char *const lab_host_names[LAB_NHOSTS] = {"origin", "lb", "client"};

/* ---- the scenario file ------------------------------------------------ */

enum skey_type {
	SK_STR,
	SK_SIZE,
	SK_DURATION,
	SK_RATE,
	SK_MODE,
	SK_BOOL,   /* on/off */
	SK_COUNT,  /* a plain number */
	SK_KIND,   /* enum lab_lb_kind */
	SK_SCALE,  /* a factor, double: 0.2 */
	SK_DIVIDE, /* [lab] scale, double: 1 to SCALE_MAX */
};

struct skey {
	const char *section, *key;
	enum skey_type type;
	size_t offset, size;
	const char *def; /* default, as written in a scenario */
	const char *doc;
};

#define FIELD(f, T) FIELD_OFFSET(struct lab_scenario, f, T)

/* One row macro per type: section, key, field, default, doc line. */
#define SK(sec, k, t, f, T, def, doc)                                          \
	{                                                                      \
		sec, k, t, FIELD(f, T), sizeof(((struct lab_scenario *)0)->f), \
		    def, doc                                                   \
	}
#define STR(sec, k, f, def, doc)  SK(sec, k, SK_STR, f, char *, def, doc)
#define SIZE(sec, k, f, def, doc) SK(sec, k, SK_SIZE, f, uint64_t, def, doc)
#define DURATION(sec, k, f, def, doc)                                          \
	SK(sec, k, SK_DURATION, f, uint64_t, def, doc)
#define RATE(sec, k, f, def, doc)   SK(sec, k, SK_RATE, f, uint64_t, def, doc)
#define MODE(sec, k, f, def, doc)   SK(sec, k, SK_MODE, f, int, def, doc)
#define BOOL(sec, k, f, def, doc)   SK(sec, k, SK_BOOL, f, bool, def, doc)
#define COUNT(sec, k, f, def, doc)  SK(sec, k, SK_COUNT, f, uint64_t, def, doc)
#define KIND(sec, k, f, def, doc)   SK(sec, k, SK_KIND, f, int, def, doc)
#define SCALE(sec, k, f, def, doc)  SK(sec, k, SK_SCALE, f, double, def, doc)
#define DIVIDE(sec, k, f, def, doc) SK(sec, k, SK_DIVIDE, f, double, def, doc)

/* The scenario's keys (STYLE 9); `sluice help lab` prints this table. */
static const struct skey skeys[] = {
    STR("lab", "name", name, "", "the run's name (default: the file's)"),
    MODE("lab", "mode", mode, "netns",
        "netns (default) or loopback (127.0.0.1, application-paced)"),
    DURATION("lab", "time_limit", time_limit_ms, "60s",
        "the fetch is stopped after this (default 60s)"),
    SIZE("lab", "body", body, "16M", "bytes the client asks for (16M)"),
    STR("lab", "notes", notes, "", "free text, copied to summary.json"),
    BOOL("lab", "capture", capture, "off",
        "on: tcpdump writes a pcap per link into the results (off)"),
    COUNT("lab", "windows", windows, "0",
        "rows of the table of the client's advertised windows, read "
        "from the capture (0: none)"),
    STR("lab", "article_windows", article_windows, "",
        "ACK:WIN pairs from the article's Exercises 2 and 3, printed beside "
        "that table"),
    SCALE("lab", "time_scale", time_scale, "1",
        "multiplies every interval of the scenario (the origin's drip, "
        "the client's read interval and stall, timeouts, give_up's and "
        "[proxy] durations, delay, time_limit): 0.2 runs it 5 times "
        "faster; rates and the kernel's own timers are not scaled"),
    DIVIDE("lab", "scale", scale, "1",
        "the file states a full-size question; the lab runs it with the "
        "bytes divided by this: body, truncate_at, stall_at, after_bytes, "
        "count (rates, buffers and timers as written; the verdict maps "
        "the run back)"),
    BOOL("lab", "walk", walk, "off",
        "on: print the article's Figure 2 walk (sluice plan --walk) "
        "beside the capture: [origin] drip/every, [client] read/interval "
        "and window_clamp, [origin] truncate_at as its inputs"),
    RATE("links", "origin_lb", origin_lb_bps, "1gbit",
        "tc tbf rate of the origin-lb link (1gbit)"),
    RATE("links", "lb_client", lb_client_bps, "2mbit",
        "tc tbf rate of the lb-client link (2mbit)"),
    DURATION("links", "delay", delay_ms, "0",
        "netem delay on each link, where the kernel has netem (0)"),
    STR("origin", "give_up", give_up, "",
        "the origin's rule: zwp-probes=N,interval=T[,max=T], "
        "send-timeout=T, user-timeout=T, orphan, none"),
    SIZE("origin", "sndbuf", origin_sndbuf, "0",
        "the origin's SO_SNDBUF (0: autotuning)"),
    SIZE("origin", "drip", origin_drip, "0",
        "send this many bytes every `every` (the article's server)"),
    DURATION("origin", "every", origin_every_ms, "0", "the drip's interval"),
    BOOL("origin", "raw", origin_raw, "off",
        "on: no HTTP, the pattern from the first byte ([lb] kind = none)"),
    SIZE("origin", "truncate_at", origin_truncate_at, "0",
        "sluice origin --truncate-at: close (FIN) after this many body "
        "bytes (0: never); with raw = on, the stream's length"),
    KIND("lb", "kind", lb_kind, "sluice",
        "the balancer under test: sluice (default), nginx, haproxy, or "
        "none (the lb namespace only routes)"),
    STR("lb", "config", lb_config, "",
        "nginx/haproxy: this config file instead of a generated one "
        "(@LISTEN@ @ORIGIN@ @DIR@ replaced)"),
    RATE("client", "rate", client_rate_bps, "0",
        "sluice fetch --rate (0: read as fast as the link allows)"),
    SIZE("client", "rcvbuf", client_rcvbuf, "0",
        "sluice fetch --rcvbuf (0: autotuning)"),
    DURATION("client", "timeout", client_timeout_ms, "0",
        "sluice fetch --timeout (0: its default, 60s)"),
    SIZE("client", "read", client_read, "0",
        "sluice fetch --read: bytes per read (the article's client)"),
    DURATION("client", "interval", client_interval_ms, "0",
        "sluice fetch --interval between reads"),
    COUNT("client", "count", client_count, "0",
        "sluice fetch --count: reads in all (0: until the end)"),
    COUNT("client", "initrwnd", client_initrwnd, "0",
        "the client's initial receive window in segments (route option "
        "initrwnd; 0: the kernel's, about 64 KB since Linux 5.x)"),
    SIZE("client", "window_clamp", client_window_clamp, "0",
        "sluice fetch --window-clamp: TCP_WINDOW_CLAMP before connect "
        "(0: none)"),
    SIZE("client", "stall_at", stall_at, "0",
        "sluice fetch --stall-at: stop reading after these body bytes"),
    DURATION("client", "stall_for", stall_for_ms, "0",
        "sluice fetch --stall-for: ...for this long (0: no stall)"),
    STR("fault", "action", fault_action, "",
        "a fault rule the proxy gets at start-up ([lb] kind = sluice; "
        "docs/faults.md): stall, bandwidth, latency, reset, close or "
        "limit_data (empty: none)"),
    STR("fault", "side", fault_side, "upstream",
        "stall, reset, close: upstream (the proxy stops reading the "
        "origin) or client (it stops writing to the client)"),
    SIZE("fault", "after_bytes", fault_after, "0",
        "stall, reset, close, limit_data: after this many body bytes "
        "(read on the upstream side, written on the client side)"),
    DURATION("fault", "for", fault_for_ms, "0", "stall, latency: how long"),
    RATE("fault", "rate", fault_rate_bps, "0",
        "bandwidth: the rate written to the client"),
    STR("fault", "path", fault_path, "",
        "match: request targets that start with this (empty: any)"),
    COUNT("dos", "clients", dos_clients, "0",
        "clients that hold a zero window forever, beside the honest one"),
    SIZE("dos", "rcvbuf", dos_rcvbuf, "4k", "their SO_RCVBUF (4k)"),
};
#define NSKEYS (sizeof(skeys) / sizeof(skeys[0]))

/* Keys of the proxy config that the lab owns. */
static const char *const lab_owned[] = {
    "listen.address", "upstream.server", "admin.address", "log.access"};

/* Keys the lab adds when the scenario omits them. */
static const struct lab_kv lab_defaults[] = {
    {"listen.drain_timeout", "2s"},
    {"upstream.rcvbuf", "256k"}, /* K_in must be pinned: docs/kernel.md */
    {"log.level", "info"},
};

struct parse_ctx {
	struct lab_scenario *sc;
	char msg[256];      /* the first error: "[section] key: message" */
	int directive_kind; /* of the [lb] nginx.* or haproxy.* keys, 0 */
};

int
lab_ini_fail(char *msg, size_t len, const char *section, const char *key,
    const char *fmt, va_list ap)
{
	int n;

	if (msg[0] != '\0')
		return 0; /* the first error is the one to report */
	n = snprintf(msg, len, "[%s] %s: ", section, key);
	if (n >= 0 && (size_t)n < len)
		vsnprintf(msg + n, len - (size_t)n, fmt, ap);
	return 0; /* inih: this line is an error */
}

static int
fail(struct parse_ctx *ctx, const char *section, const char *key,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lab_ini_fail(ctx->msg, sizeof(ctx->msg), section, key, fmt, ap);
	va_end(ap);
	return 0;
}

/* A plain decimal number, at most a million (counts of reads, clients). */
static int
parse_count(const char *value, uint64_t *v)
{
	char *end;
	unsigned long long n;

	if (!isdigit((unsigned char)value[0]))
		return -EINVAL;
	errno = 0;
	n = strtoull(value, &end, 10);
	if (errno != 0 || *end != '\0' || n > 1000000)
		return -EINVAL;
	*v = n;
	return 0;
}

/* ---- one parse function per type --------------------------------------- */

/* Each stores value in a field of size bytes: 0, or -EINVAL (-ENAMETOOLONG
 * for a string that does not fit, -ERANGE for a size, duration or rate
 * beyond 64 bits). */

static int
parse_str_key(const char *value, void *field, size_t size)
{
	if (strlen(value) >= size)
		return -ENAMETOOLONG;
	memcpy(field, value, strlen(value) + 1);
	return 0;
}

/* A number read by number() into a uint64_t field. */
static int
set_u64(const char *value, void *field, int (*number)(const char *, uint64_t *))
{
	uint64_t v;
	int rc;

	if ((rc = number(value, &v)) < 0)
		return rc;
	memcpy(field, &v, sizeof(v));
	return 0;
}

static int
parse_size_key(const char *value, void *field, size_t size)
{
	(void)size;
	return set_u64(value, field, units_parse_size);
}

static int
parse_duration_key(const char *value, void *field, size_t size)
{
	(void)size;
	return set_u64(value, field, units_parse_duration);
}

static int
parse_rate_key(const char *value, void *field, size_t size)
{
	(void)size;
	return set_u64(value, field, units_parse_rate);
}

static int
parse_count_key(const char *value, void *field, size_t size)
{
	(void)size;
	return set_u64(value, field, parse_count);
}

static int
parse_mode_key(const char *value, void *field, size_t size)
{
	int mode;

	(void)size;
	if (strcmp(value, "netns") == 0)
		mode = LAB_MODE_NETNS;
	else if (strcmp(value, "loopback") == 0)
		mode = LAB_MODE_LOOPBACK;
	else
		return -EINVAL;
	memcpy(field, &mode, sizeof(mode));
	return 0;
}

static int
parse_bool_key(const char *value, void *field, size_t size)
{
	bool b;

	(void)size;
	if (strcmp(value, "on") == 0 || strcmp(value, "yes") == 0 ||
	    strcmp(value, "true") == 0)
		b = true;
	else if (strcmp(value, "off") == 0 || strcmp(value, "no") == 0 ||
	    strcmp(value, "false") == 0)
		b = false;
	else
		return -EINVAL;
	memcpy(field, &b, sizeof(b));
	return 0;
}

/* A plain decimal number v with lo < v (lo <= v when closed) and
 * v <= hi, into the double at field; -EINVAL for anything else. */
static int
parse_factor(const char *value, void *field, double lo, bool closed, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' ||
	    !(closed ? v >= lo : v > lo) || v > hi)
		return -EINVAL;
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* [lab] time_scale: a factor above 0, at most 100. */
static int
parse_scale_key(const char *value, void *field, size_t size)
{
	(void)size;
	return parse_factor(value, field, 0, false, 100);
}

/* [lab] scale: a number from 1 to SCALE_MAX (an integer or a decimal). */
static int
parse_divide_key(const char *value, void *field, size_t size)
{
	(void)size;
	return parse_factor(value, field, 1, true, SCALE_MAX);
}

static const char *const lb_kinds[] = {"sluice", "nginx", "haproxy", "none"};

static int
parse_kind_key(const char *value, void *field, size_t size)
{
	(void)size;
	for (int i = 0; i < (int)(sizeof(lb_kinds) / sizeof(lb_kinds[0])); i++)
		if (strcmp(value, lb_kinds[i]) == 0) {
			memcpy(field, &i, sizeof(i));
			return 0;
		}
	return -EINVAL;
}

/*
 * What each type of key does: parse stores a value (above); what ends the
 * message for a value it refuses, "[section] key: 'VALUE' is WHAT".
 */
static const struct skey_type_ops {
	int (*parse)(const char *value, void *field, size_t size);
	const char *what;
} stypes[] = {
    [SK_STR] = {parse_str_key, NULL}, /* only too long: see set_key */
    [SK_SIZE] = {parse_size_key, "not a size (64k, 16M)"},
    [SK_DURATION] = {parse_duration_key, "not a duration (250ms, 30s)"},
    [SK_RATE] = {parse_rate_key, "not a rate (2mbit, 1gbit)"},
    [SK_MODE] = {parse_mode_key, "neither netns nor loopback"},
    [SK_BOOL] = {parse_bool_key, "neither on nor off"},
    [SK_COUNT] = {parse_count_key, "not a number (0, 8)"},
    [SK_KIND] = {parse_kind_key, "not sluice, nginx, haproxy or none"},
    [SK_SCALE] = {parse_scale_key,
        "not a factor above 0, at most 100 "
        "(0.2)"},
    [SK_DIVIDE] = {parse_divide_key, "not a number from 1 to 10000 (100, 2.5)"},
};

const char *
lab_lb_kind_name(int kind)
{
	return kind >= 0 && kind < (int)(sizeof(lb_kinds) / sizeof(lb_kinds[0]))
	    ? lb_kinds[kind]
	    : "?";
}

/* "9999999999T" is a size, only too large: say so, with the range.
 * Only sizes, durations and rates report -ERANGE. */
static int
out_of_range(struct parse_ctx *ctx, const struct skey *k, const char *value)
{
	enum units_kind u = k->type == SK_SIZE ? UNITS_SIZE
	    : k->type == SK_DURATION           ? UNITS_DURATION
	                                       : UNITS_RATE;
	char msg[96];
	uint64_t v;

	units_parse_in(u, value, 0, UINT64_MAX, &v, msg, sizeof(msg));
	return fail(ctx, k->section, k->key, "'%s' is %s", value, msg);
}

/* Stores one value with its type's parser (see stypes). */
static int
set_key(struct parse_ctx *ctx, const struct skey *k, const char *value)
{
	const struct skey_type_ops *t = &stypes[k->type];
	int rc = t->parse(value, (char *)ctx->sc + k->offset, k->size);

	if (rc == -ENAMETOOLONG)
		return fail(ctx, k->section, k->key,
		    "longer than %zu characters", k->size - 1);
	if (rc == -ERANGE)
		return out_of_range(ctx, k, value);
	if (rc < 0)
		return fail(
		    ctx, k->section, k->key, "'%s' is %s", value, t->what);
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
		return fail(ctx, lab_host_names[h], key, "not a sysctl name");
	if (strchr(value, '\n') != NULL)
		return fail(ctx, lab_host_names[h], key, "a value on one line");
	return add_kv(ctx, lab_host_names[h], sc->sysctl[h], &sc->nsysctl[h],
	    name, value);
}

/* A [proxy] key "section.key": it must be a key of the proxy's table. */
static int
proxy_key(struct parse_ctx *ctx, const char *key, const char *value)
{
	struct lab_scenario *sc = ctx->sc;

	for (size_t i = 0; i < sizeof(lab_owned) / sizeof(lab_owned[0]); i++)
		if (strcmp(key, lab_owned[i]) == 0)
			return fail(ctx, "proxy", key,
			    "set by the lab (it knows the addresses)");
	if (config_key_dotted(key) != NULL)
		return add_kv(ctx, "proxy", sc->proxy, &sc->nproxy, key, value);
	return fail(ctx, "proxy", key,
	    "not a proxy config key written section.key (sluice help "
	    "config)");
}

/* [lb] nginx.NAME / haproxy.NAME: a directive of that balancer's config,
 * kept without its prefix; one product per file (checked against kind
 * once the whole file is read). */
static int
directive_key(struct parse_ctx *ctx, const char *key, const char *value)
{
	struct lab_scenario *sc = ctx->sc;
	int kind = strncmp(key, "nginx.", 6) == 0 ? LAB_LB_NGINX
	    : strncmp(key, "haproxy.", 8) == 0    ? LAB_LB_HAPROXY
	                                          : -1;
	const char *name = strchr(key, '.') + 1;

	if (kind < 0 || *name == '\0')
		return fail(ctx, "lb", key,
		    "not nginx.DIRECTIVE or haproxy.KEYWORD (sluice help lab)");
	if (ctx->directive_kind != 0 && ctx->directive_kind != kind)
		return fail(ctx, "lb", key,
		    "nginx.* and haproxy.* keys in one scenario");
	if (strpbrk(value, ";{}#\n") != NULL ||
	    strpbrk(name, ";{}#\t") != NULL ||
	    (kind == LAB_LB_NGINX && strchr(name, ' ') != NULL))
		return fail(ctx, "lb", key,
		    "one directive: no ';', '{' or '}' (use [lb] config for "
		    "blocks)");
	ctx->directive_kind = kind;
	return add_kv(
	    ctx, "lb", sc->lb_directives, &sc->nlb_directives, name, value);
}

static int
host_of(const char *section)
{
	for (int h = 0; h < LAB_NHOSTS; h++)
		if (strcmp(section, lab_host_names[h]) == 0)
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
	if (h == LAB_LB && strchr(key, '.') != NULL)
		return directive_key(ctx, key, value);
	for (size_t i = 0; i < NSKEYS; i++)
		if (strcmp(skeys[i].section, section) == 0 &&
		    strcmp(skeys[i].key, key) == 0)
			return set_key(ctx, &skeys[i], value);
	if (h >= 0 || strcmp(section, "lab") == 0 ||
	    strcmp(section, "links") == 0 || strcmp(section, "dos") == 0)
		return fail(ctx, section, key, "unknown key (sluice help lab)");
	return fail(ctx, section, key,
	    "unknown section (lab, links, origin, lb, client, dos, proxy)");
}

/* Every key's default from the table (and no sysctl, [proxy] or [lb]
 * directive).  A default its own parser refuses is a bug in the table. */
static void
scenario_defaults(struct lab_scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	for (size_t i = 0; i < NSKEYS; i++) {
		const struct skey *k = &skeys[i];

		if (stypes[k->type].parse(
		        k->def, (char *)sc + k->offset, k->size) < 0)
			abort();
	}
}

/* The whole-file checks: each returns a message, or NULL. */
static const char *
check_peers(const struct lab_scenario *sc)
{
	bool proxied = sc->lb_kind != LAB_LB_NONE;

	if ((sc->origin_drip != 0) != (sc->origin_every_ms != 0))
		return "[origin] drip and every go together";
	if (sc->origin_raw && proxied)
		return "[origin] raw = on needs [lb] kind = none (no HTTP to "
		       "balance)";
	if (sc->client_read != 0 && sc->client_interval_ms == 0)
		return "[client] read needs interval";
	if ((sc->client_interval_ms != 0 || sc->client_count != 0) &&
	    sc->client_read == 0)
		return "[client] interval and count need read";
	if (sc->stall_at != 0 && sc->stall_for_ms == 0)
		return "[client] stall_at needs stall_for";
	if (sc->walk &&
	    (sc->origin_drip == 0 || sc->client_read == 0 ||
	        sc->client_window_clamp == 0 || sc->origin_truncate_at == 0))
		return "[lab] walk = on takes its inputs from [origin] drip, "
		       "every, truncate_at and [client] read, interval, "
		       "window_clamp: set them all";
	if (sc->dos_clients > 64)
		return "[dos] clients: at most 64";
	if (sc->dos_clients != 0 && sc->lb_kind != LAB_LB_SLUICE)
		return "[dos] is measured from sluice proxy's access log: [lb] "
		       "kind = sluice";
	return NULL;
}

static const char *
check_lb(const struct lab_scenario *sc)
{
	if (sc->nproxy != 0 && sc->lb_kind == LAB_LB_NONE)
		return "[proxy] keys with [lb] kind = none (no proxy runs)";
	if (sc->lb_config[0] != '\0' && sc->lb_kind != LAB_LB_NGINX &&
	    sc->lb_kind != LAB_LB_HAPROXY)
		return "[lb] config is for kind = nginx or haproxy";
	if (sc->nlb_directives != 0 && sc->lb_config[0] != '\0')
		return "[lb] nginx.*/haproxy.* keys and config: the file is "
		       "used "
		       "as it is";
	if (sc->windows != 0 && !sc->capture)
		return "[lab] windows are read from the capture: capture = on";
	if (pcap_parse_article(sc->article_windows, NULL, NULL, 0) < 0)
		return "[lab] article_windows: not ACK:WIN pairs separated by "
		       "commas (1:1460, 201:1260)";
	if (sc->article_windows[0] != '\0' && sc->windows == 0)
		return "[lab] article_windows is printed beside the window "
		       "table: windows = N";
	return NULL;
}

/* [fault]: an action the proxy knows, with what it needs; the proxy
 * checks the rule again when the lab posts it. */
static const char *
check_fault(const struct lab_scenario *sc)
{
	static const char *const actions[] = {
	    "stall", "bandwidth", "latency", "reset", "close", "limit_data"};
	const char *a = sc->fault_action;
	bool known = false;

	if (a[0] == '\0')
		return NULL;
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		known |= strcmp(a, actions[i]) == 0;
	if (!known)
		return "[fault] action: not stall, bandwidth, latency, reset, "
		       "close or limit_data";
	if (strcmp(sc->fault_side, "upstream") != 0 &&
	    strcmp(sc->fault_side, "client") != 0)
		return "[fault] side: not upstream or client";
	if (sc->lb_kind != LAB_LB_SLUICE)
		return "[fault] needs [lb] kind = sluice: the rule is sluice "
		       "proxy's";
	if ((strcmp(a, "stall") == 0 || strcmp(a, "latency") == 0) &&
	    sc->fault_for_ms == 0)
		return "[fault] for: a stall or latency needs a duration";
	if (strcmp(a, "bandwidth") == 0 && sc->fault_rate_bps == 0)
		return "[fault] rate: a bandwidth fault needs a rate";
	if (strcmp(a, "limit_data") == 0 && sc->fault_after == 0)
		return "[fault] after_bytes: limit_data needs a size";
	return NULL;
}

/* Checks that need the whole file.  0, or -EINVAL with err filled. */
static int
scenario_check(const struct lab_scenario *sc, int directive_kind,
    const char *name, char *err, size_t errlen)
{
	const char *argv[8], *msg;
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
	if (directive_kind != 0 && directive_kind != sc->lb_kind) {
		snprintf(err, errlen,
		    "%s: [lb] %s.* keys need kind = %s (kind is %s)", name,
		    lab_lb_kind_name(directive_kind),
		    lab_lb_kind_name(directive_kind),
		    lab_lb_kind_name(sc->lb_kind));
		return -EINVAL;
	}
	if ((msg = check_peers(sc)) != NULL || (msg = check_lb(sc)) != NULL ||
	    (msg = check_fault(sc)) != NULL) {
		snprintf(err, errlen, "%s: %s", name, msg);
		return -EINVAL;
	}
	return 0;
}

/* ---- [lab] time_scale ------------------------------------------------- */

/* ms × scale, rounded, never 0 when ms is not. */
static uint64_t
scaled(uint64_t ms, double scale)
{
	double v = (double)ms * scale + 0.5;

	if (ms == 0)
		return 0;
	return v < 1 ? 1 : v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
}

/* The give-up rule with each duration scaled: every "key=value" but
 * zwp-probes' count is a duration ("zwp-probes=4,interval=1s" at 0.2 is
 * "zwp-probes=4,interval=200ms").  The rule was checked already. */
static int
scale_giveup(char *rule, size_t size, double scale)
{
	char in[sizeof(((struct lab_scenario *)0)->give_up)], *save, *tok;
	size_t used = 0;
	uint64_t ms;

	snprintf(in, sizeof(in), "%s", rule);
	rule[0] = '\0';
	for (tok = strtok_r(in, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		int n;

		if (eq != NULL && strncmp(tok, "zwp-probes=", 11) != 0) {
			*eq = '\0';
			if (units_parse_duration(eq + 1, &ms) < 0)
				return -EINVAL;
			n = snprintf(rule + used, size - used,
			    "%s%s=%" PRIu64 "ms", used ? "," : "", tok,
			    scaled(ms, scale));
		} else
			n = snprintf(rule + used, size - used, "%s%s",
			    used ? "," : "", tok);
		if (n < 0 || (size_t)n >= size - used)
			return -ENAMETOOLONG;
		used += (size_t)n;
	}
	return 0;
}

/* A [proxy] duration key's value scaled, kept at or above its minimum. */
static void
scale_proxy(struct lab_kv *kv, double scale)
{
	const struct config_key *k = config_key_dotted(kv->key);
	uint64_t ms;

	if (k == NULL || k->type != CT_DURATION ||
	    units_parse_duration(kv->value, &ms) < 0 || ms == 0)
		return;
	ms = scaled(ms, scale);
	if (ms < k->min)
		ms = k->min;
	snprintf(kv->value, sizeof(kv->value), "%" PRIu64 "ms", ms);
}

/*
 * [lab] time_scale: every duration of the scenario multiplied by it, so
 * that a scenario keeps its shape at another speed: the table's duration
 * keys (whatever they are: a key added later is scaled too), the give-up
 * rule's durations and the [proxy] keys that are durations.  Rates,
 * sizes and the kernel's own timers (RTO, probe backoff) stay.
 */
static int
scale_scenario(
    struct lab_scenario *sc, const char *name, char *err, size_t errlen)
{
	if (sc->time_scale == 1)
		return 0;
	for (size_t i = 0; i < NSKEYS; i++) {
		uint64_t *v = (uint64_t *)((char *)sc + skeys[i].offset);

		if (skeys[i].type == SK_DURATION)
			*v = scaled(*v, sc->time_scale);
	}
	for (size_t i = 0; i < sc->nproxy; i++)
		scale_proxy(&sc->proxy[i], sc->time_scale);
	if (scale_giveup(sc->give_up, sizeof(sc->give_up), sc->time_scale) <
	    0) {
		snprintf(err, errlen,
		    "%s: [origin] give_up: too long once scaled by [lab] "
		    "time_scale",
		    name);
		return -EINVAL;
	}
	return 0;
}

/* ---- [lab] scale ------------------------------------------------------ */

/*
 * [lab] scale = K: the file's byte positions kept as the question's, and
 * divided by K for the run (model/scale.h): the body, the origin's
 * truncation, the client's stall and read count, the fault's after_bytes.
 * Rates, sizes of buffers and durations stay.  Then the model must agree
 * that the run keeps the question's answer (lab_scale_check).
 */
static int
divide_scenario(
    struct lab_scenario *sc, const char *name, char *err, size_t errlen)
{
	struct lab_question *q = &sc->question;
	uint64_t *run[] = {&sc->body, &sc->origin_truncate_at, &sc->stall_at,
	    &sc->fault_after, &sc->client_count};
	uint64_t *kept[] = {&q->body, &q->origin_truncate_at, &q->stall_at,
	    &q->fault_after, &q->client_count};

	for (size_t i = 0; i < sizeof(run) / sizeof(run[0]); i++) {
		*kept[i] = *run[i];
		*run[i] = scale_bytes(*run[i], sc->scale);
	}
	if (sc->scale == 1)
		return 0;
	if (sc->lb_kind != LAB_LB_SLUICE) {
		snprintf(err, errlen,
		    "%s: [lab] scale: needs [lb] kind = sluice: the model that "
		    "maps the run back is of sluice proxy's policies",
		    name);
		return -EINVAL;
	}
	return lab_scale_check(sc, name, err, errlen);
}

void
lab_scenario_question(const struct lab_scenario *sc, struct lab_scenario *q)
{
	*q = *sc;
	q->body = sc->question.body;
	q->origin_truncate_at = sc->question.origin_truncate_at;
	q->stall_at = sc->question.stall_at;
	q->fault_after = sc->question.fault_after;
	q->client_count = sc->question.client_count;
	q->scale = 1;
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
	if ((rc = scenario_check(
	         ctx->sc, ctx->directive_kind, name, err, errlen)) < 0 ||
	    (rc = scale_scenario(ctx->sc, name, err, errlen)) < 0)
		return rc;
	return divide_scenario(ctx->sc, name, err, errlen);
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
		if (sc->fault_action[0] != '\0' &&
		    strcmp(section, "admin") == 0)
			fprintf(out, "faults = on\n"); /* [fault]: its rule */
	}
}

void
lab_fault_json(FILE *out, const struct lab_scenario *sc)
{
	fprintf(out, "{\"name\":\"lab\",");
	if (sc->fault_path[0] != '\0') { /* no match: every download */
		fprintf(out, "\"match\":{\"path\":");
		json_string(out, sc->fault_path);
		fprintf(out, "},");
	}
	fprintf(out, "\"action\":");
	json_string(out, sc->fault_action);
	fprintf(out, ",\"side\":");
	json_string(out, sc->fault_side);
	fprintf(out, ",\"after_bytes\":%" PRIu64, sc->fault_after);
	if (sc->fault_for_ms != 0)
		fprintf(out, ",\"for\":\"%" PRIu64 "ms\"", sc->fault_for_ms);
	if (sc->fault_rate_bps != 0)
		fprintf(
		    out, ",\"rate\":\"%" PRIu64 "bit\"", sc->fault_rate_bps);
	fprintf(out, "}");
}

/* ---- ss(8) output ------------------------------------------------------ */

bool
lab_all_digits(const char *s)
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
	if (n > 0 && !lab_all_digits(tok[0]))
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

void
lab_usage(FILE *out)
{
	const char *prev = "";

	fprintf(out,
	    "usage: sluice lab SCENARIO.ini [--json] [--out DIR] [-v] "
	    "[--loopback] [--capture]\n"
	    "\n"
	    "Reproduces the zero-window incident: namespaces origin - lb -\n"
	    "client joined by veth pairs shaped with tc tbf, sluice origin,\n"
	    "a balancer (sluice proxy, nginx or HAProxy) and sluice fetch in\n"
	    "them, a timeline every 100 ms, and a verdict beside the model's\n"
	    "prediction.  Needs root (ip netns); without it, --loopback runs\n"
	    "sluice on 127.0.0.1 with application-paced rates.\n"
	    "\n"
	    "  --out DIR     results (default lab-results/NAME-TIME/):\n"
	    "                summary.json timeline.csv timeline.png and the\n"
	    "                peers' JSON and logs\n"
	    "  --json        print summary.json on stdout (verdict on stderr)\n"
	    "  -v            print every command (ip, tc, sysctl, the peers)\n"
	    "  --loopback    mode = loopback\n"
	    "  --capture     capture = on: tcpdump writes origin-lb.pcap and\n"
	    "                lb-client.pcap into the results\n"
	    "\n"
	    "Scenario keys (docs/lab.md, conf/scenarios/):");
	for (size_t i = 0; i < NSKEYS; i++) {
		if (strcmp(skeys[i].section, prev) != 0)
			fprintf(out, "\n  [%s]\n", skeys[i].section);
		prev = skeys[i].section;
		fprintf(out, "    %-15s %s\n", skeys[i].key, skeys[i].doc);
	}
	fprintf(out,
	    "  [origin] [lb] [client]\n"
	    "    sysctl.NAME     per-namespace sysctl "
	    "(net.ipv4.tcp_rto_max_ms)\n"
	    "  [lb]\n"
	    "    nginx.NAME      a directive in nginx's location block\n"
	    "                    (nginx.proxy_max_temp_file_size = 2560k)\n"
	    "    haproxy.NAME    a line in HAProxy's defaults, or global for\n"
	    "                    tune.* and global.* (haproxy.timeout server)\n"
	    "  [proxy]\n"
	    "    SECTION.KEY     sluice proxy config keys (buffer.policy =\n"
	    "                    pause); upstream.rcvbuf is 256k unless set\n"
	    "\n"
	    "Exit codes: 0 measured (complete or truncated), 1 the lab could\n"
	    "not run, 2 bad usage or scenario, 128+N stopped by signal N.\n");
}
