/*
 * config: see config.h.  The table below is the only list of keys.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "base/field.h"
#include "base/log.h"
#include "base/units.h"
#include "proxy/config.h"

#define KiB     1024ULL
#define MiB     (1024ULL * 1024)
#define GiB     (1024ULL * MiB)
#define HOUR_MS 3600000ULL
#define DAY_MS  (24 * HOUR_MS)

#define FIELD(f, T) FIELD_OFFSET(struct config, f, T)

/*
 * One row macro per type, so that a row reads section, key, field,
 * default, then its range or names, then its doc line.  Ranges are
 * inclusive and in the type's unit (bytes, ms).
 */
#define ROW(sec, k, t, f, T, def, lo, hi, names, doc)                          \
	{                                                                      \
		sec, k, t, FIELD(f, T), def, lo, hi, names, doc                \
	}
#define SIZE(sec, k, f, def, lo, hi, doc)                                      \
	ROW(sec, k, CT_SIZE, f, uint64_t, def, lo, hi, NULL, doc)
#define DURATION(sec, k, f, def, lo, hi, doc)                                  \
	ROW(sec, k, CT_DURATION, f, uint64_t, def, lo, hi, NULL, doc)
#define COUNT(sec, k, f, def, lo, hi, doc)                                     \
	ROW(sec, k, CT_COUNT, f, uint64_t, def, lo, hi, NULL, doc)
#define ENUM(sec, k, f, def, names, doc)                                       \
	ROW(sec, k, CT_ENUM, f, int, def, 0, 0, names, doc)
#define PATH(sec, k, f, def, doc)                                              \
	ROW(sec, k, CT_PATH, f, char *, def, 0, 0, NULL, doc)
#define ADDRESS(sec, k, f, def, doc)                                           \
	ROW(sec, k, CT_ADDRESS, f, struct sockaddr_any, def, 0, 0, NULL, doc)
#define OPT_ADDRESS(sec, k, f, def, doc)                                       \
	ROW(sec, k, CT_OPT_ADDRESS, f, struct sockaddr_any, def, 0, 0, NULL,   \
	    doc)
#define WORKERS(sec, k, f, def, lo, hi, doc)                                   \
	ROW(sec, k, CT_COUNT_AUTO, f, uint64_t, def, lo, hi, NULL, doc)
#define SERVER(sec, k, f, def, doc)                                            \
	ROW(sec, k, CT_SERVER, f, struct sockaddr_any *, def, 0, 0, NULL, doc)

static const char *const balance_names[] = {"round-robin", "least-conn", NULL};
static const char *const policy_names[] = {"pause", "spill", "pace", NULL};
static const char *const onoff_names[] = {"off", "on", NULL};
static const char *const splice_names[] = {"off", "auto", NULL};
static const char *const level_names[] = {
    "error", "warn", "info", "debug", NULL};

const struct config_key config_keys[] = {
    WORKERS("proxy", "workers", proxy.workers, "1", 1, 256,
        "event loops, each on its own thread with its own SO_REUSEPORT "
        "listener, or auto: one per CPU core; memory_limit, spill_total "
        "and max_connections hold for all of them together"),
    ADDRESS("listen", "address", listen.address, "127.0.0.1:8080",
        "address to accept clients on: host:port or [v6]:port (port 0: any)"),
    DURATION("listen", "drain_timeout", listen.drain_timeout, "30s", 0, DAY_MS,
        "on SIGTERM/SIGINT, how long in-flight downloads may still run"),
    COUNT("listen", "max_connections", listen.max_connections, "0", 0, 1000000,
        "client connections open at once; past it a new client gets 503 "
        "with Connection: close and Retry-After, and the ones open go on "
        "(0: derived at start and reload from RLIMIT_NOFILE, which start "
        "raises to its hard limit: (nofile - 128 - keepalive * servers * "
        "workers) / per, where per is 2 (a client and an upstream socket), "
        "1 more with policy spill (a spool file), 1 more with splice (4 for "
        "a kernel pipe and two duplicated sockets, in a quarter of the "
        "connections))"),
    SERVER("upstream", "server", upstream.servers, "127.0.0.1:9000",
        "a backend host:port; repeat the key for each server"),
    ENUM("upstream", "balance", upstream.balance, "round-robin", balance_names,
        "how a server is picked: round-robin or least-conn"),
    DURATION("upstream", "connect_timeout", upstream.connect_timeout, "5s", 1,
        DAY_MS,
        "a connect that takes longer tries the next server, then answers 504"),
    DURATION("upstream", "read_timeout", upstream.read_timeout, "60s", 1,
        DAY_MS,
        "no byte from an upstream we are reading from (not while paused): "
        "504 before the response head, else the client is cut off"),
    SIZE("upstream", "rcvbuf", upstream.rcvbuf, "0", 0, GiB,
        "SO_RCVBUF toward upstreams, set before connect (0: kernel "
        "autotuning); the kernel doubles it"),
    SIZE("upstream", "window_clamp", upstream.window_clamp, "0", 0, GiB,
        "TCP_WINDOW_CLAMP toward upstreams (0: none)"),
    DURATION("upstream", "user_timeout", upstream.user_timeout, "0", 0, DAY_MS,
        "TCP_USER_TIMEOUT toward upstreams (0: kernel default)"),
    COUNT("upstream", "keepalive", upstream.keepalive, "32", 0, 10000,
        "idle connections kept open per server for the next requests (0: "
        "a connection per request, Connection: close); a request sent on "
        "a kept connection that closes before any response byte is sent "
        "again once, on a new connection, when it is idempotent and "
        "bodiless"),
    DURATION("upstream", "keepalive_timeout", upstream.keepalive_timeout, "60s",
        1, DAY_MS,
        "an idle kept connection is closed after this long (keep it under "
        "the servers' own keep-alive timeout)"),
    SIZE("client", "sndbuf", client.sndbuf, "0", 0, GiB,
        "SO_SNDBUF toward clients (0: kernel autotuning); the kernel "
        "doubles it"),
    DURATION("client", "user_timeout", client.user_timeout, "0", 0, DAY_MS,
        "TCP_USER_TIMEOUT toward clients (0: kernel default)"),
    DURATION("client", "idle_timeout", client.idle_timeout, "60s", 1, DAY_MS,
        "no byte from a client we wait on (a client that stops reading is "
        "zwp_timeout's)"),
    DURATION("client", "header_timeout", client.header_timeout, "30s", 1,
        DAY_MS,
        "the whole request head must arrive within this from its first "
        "byte, else 408 (as HAProxy's timeout http-request)"),
    SIZE("client", "max_header_size", client.max_header_size, "32k", 1 * KiB,
        1 * MiB, "largest request head accepted; a larger one gets 431"),
    DURATION("client", "zwp_timeout", client.zwp_timeout, "5m", 0, DAY_MS,
        "close a client whose receive window stayed zero, with data waiting, "
        "this long (0: never); the article's zero-window DoS defence"),
    COUNT("client", "zwp_probes", client.zwp_probes, "0", 0, 64,
        "the same rule as a number of zero-window probes with exponential "
        "backoff from zwp_interval; converted to a time, also set as "
        "TCP_USER_TIMEOUT (0: off)"),
    DURATION("client", "zwp_interval", client.zwp_interval, "200ms", 1, HOUR_MS,
        "the first probe interval for zwp_probes"),
    ENUM("buffer", "policy", buffer.policy, "pause", policy_names,
        "backpressure policy: pause stops reading the upstream at "
        "high_watermark"),
    SIZE("buffer", "high_watermark", buffer.high_watermark, "1M", 4 * KiB,
        64 * GiB,
        "bytes held for one download at which the upstream is no longer read"),
    SIZE("buffer", "low_watermark", buffer.low_watermark, "256k", 0, 64 * GiB,
        "bytes held at which reading the upstream resumes (<= high_watermark)"),
    SIZE("buffer", "block_size", buffer.block_size, "64k", 4 * KiB, 16 * MiB,
        "size of the pooled blocks that reads land in and writes send"),
    PATH("buffer", "spill_dir", buffer.spill_dir, "/var/tmp",
        "directory of the spool files (policy spill); each is unlinked at "
        "once, so nothing is left behind"),
    SIZE("buffer", "spill_limit", buffer.spill_limit, "1G", 64 * KiB,
        1024 * GiB,
        "spooled bytes one download may hold ahead of its client; past it "
        "the download pauses (space is reclaimed as the client drains)"),
    SIZE("buffer", "spill_total", buffer.spill_total, "16G", 64 * KiB,
        64 * 1024 * GiB, "spooled bytes the whole process may hold"),
    ENUM("buffer", "splice", buffer.splice, "auto", splice_names,
        "auto: a response body's payload (Content-Length, close-delimited, "
        "or a chunked body's large chunks, whose framing is still parsed "
        "and written in memory) moves upstream socket -> kernel pipe -> "
        "client socket with splice(2), never copied to user space (policy "
        "spill: into and out of its spool file, for bodies the proxy does "
        "not chunk), for up to a quarter of max_connections at "
        "once (each holds a kernel pipe and two more descriptors), the "
        "others through memory; off: always through memory"),
    ENUM("buffer", "resume", buffer.resume, "off", onoff_names,
        "on: an upstream that dies mid-body is asked for the rest with "
        "Range and If-Range, and the client's body goes on"),
    COUNT("buffer", "resume_attempts", buffer.resume_attempts, "3", 0, 100,
        "resumes in a row that bring no new byte, at most (a body that "
        "keeps coming is followed to its end)"),
    DURATION("buffer", "resume_backoff", buffer.resume_backoff, "1s", 0,
        HOUR_MS, "wait before each resume attempt"),
    SIZE("buffer", "memory_limit", buffer.memory_limit, "1G", 0, 1024 * GiB,
        "bytes buffered in memory by all downloads together (0: no limit); "
        "when reached, downloads pause (or spill) their upstream reads"),
    ENUM("log", "level", log.level, "info", level_names,
        "error, warn, info or debug (debug also logs socket options read "
        "back)"),
    PATH("log", "access", log.access, "",
        "file that gets one JSON line per finished download (empty: stderr)"),
    OPT_ADDRESS("admin", "address", admin.address, "",
        "host:port serving GET /metrics (Prometheus) and GET /connections "
        "(JSON) (empty: none)"),
    ENUM("admin", "show_query", admin.show_query, "off", onoff_names,
        "off: GET /connections shows a path's query as ?<redacted> (the "
        "access log keeps it, as nginx's does); on: as the client sent it"),
};
const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) <=
        sizeof(((struct config *)0)->lines) / sizeof(int),
    "struct config lines[] too small");

/* What the parser carries while inih walks the file. */
struct parse {
	struct config *cfg;
	const char *name; /* file name for errors */
	int line;         /* line being parsed, counted by our reader */
	char *buf;        /* the whole line, as read */
	size_t bufcap;
	char *err;
	size_t errlen;
	bool failed;
	bool seen_server; /* first server line replaces the default */
	char msg[160];    /* a refused value's message, when formatted */
	const char *text; /* config_load_string: what is left */
	FILE *file;       /* config_load: the file */
};

static void
fail(struct parse *p, int line, const char *section, const char *key,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->failed)
		return;
	p->failed = true;
	if (line > 0)
		n = snprintf(p->err, p->errlen, "%s:%d: [%s] %s: ", p->name,
		    line, section, key);
	else
		n = snprintf(
		    p->err, p->errlen, "%s: [%s] %s: ", p->name, section, key);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static const struct config_key *
find_key(const char *section, const char *key, size_t *idx)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].key, key) == 0) {
			if (idx != NULL)
				*idx = i;
			return &config_keys[i];
		}
	}
	return NULL;
}

const struct config_key *
config_key_dotted(const char *dotted)
{
	const char *dot = strchr(dotted, '.');
	size_t seclen = dot != NULL ? (size_t)(dot - dotted) : 0;

	for (size_t i = 0; dot != NULL && i < config_nkeys; i++)
		if (strlen(config_keys[i].section) == seclen &&
		    strncmp(config_keys[i].section, dotted, seclen) == 0 &&
		    strcmp(config_keys[i].key, dot + 1) == 0)
			return &config_keys[i];
	return NULL;
}

static bool
section_known(const char *section)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (strcmp(config_keys[i].section, section) == 0)
			return true;
	return false;
}

static int
parse_enum(const char *const *names, const char *v)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], v) == 0)
			return i;
	return -1;
}

static void
enum_list(const char *const *names, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; names[i] != NULL && n < len; i++)
		n += (size_t)snprintf(
		    buf + n, len - n, "%s%s", i ? ", " : "", names[i]);
}

/* ---- one parse and one format function per type -------------------- */

/* Where k's value lives in the config being parsed. */
static void *
field(struct parse *p, const struct config_key *k)
{
	return (char *)p->cfg + k->offset;
}

static const char *
format_count(uint64_t v, char *buf, size_t len)
{
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

/* Stores u when it lies in k's range; the message names the range the
 * way the type writes its values. */
static int
set_number(struct parse *p, const struct config_key *k, uint64_t u,
    const char *(*format)(uint64_t, char *, size_t), const char **why)
{
	char a[32], b[32];

	if (u < k->min || u > k->max) {
		snprintf(p->msg, sizeof(p->msg), "out of range (%s to %s)",
		    format(k->min, a, sizeof(a)), format(k->max, b, sizeof(b)));
		*why = p->msg;
		return -ERANGE;
	}
	*(uint64_t *)field(p, k) = u;
	return 0;
}

static int
parse_size_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	uint64_t u;
	int rc;

	rc = units_parse_in(
	    UNITS_SIZE, v, k->min, k->max, &u, p->msg, sizeof(p->msg));
	if (rc < 0) {
		*why = p->msg;
		return rc;
	}
	return set_number(p, k, u, units_fmt_size, why);
}

static int
parse_duration_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	uint64_t u;
	int rc;

	rc = units_parse_in(
	    UNITS_DURATION, v, k->min, k->max, &u, p->msg, sizeof(p->msg));
	if (rc < 0) {
		*why = p->msg;
		return rc;
	}
	return set_number(p, k, u, units_fmt_duration, why);
}

static int
parse_count_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	char *end;
	uint64_t u;

	errno = 0;
	u = strtoull(v, &end, 10);
	if (!isdigit((unsigned char)*v) || *end != '\0' || errno != 0) {
		*why = "not a whole number";
		return -EINVAL;
	}
	return set_number(p, k, u, format_count, why);
}

/* A count, or "auto" (stored as 0: one per core, proxy_workers). */
static int
parse_count_auto_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	int rc;

	if (strcmp(v, "auto") == 0) {
		*(uint64_t *)field(p, k) = 0;
		return 0;
	}
	if ((rc = parse_count_key(p, k, v, why)) == -EINVAL)
		*why = "not a whole number or auto";
	return rc;
}

static int
parse_enum_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	char list[100];
	int i;

	if ((i = parse_enum(k->names, v)) < 0) {
		enum_list(k->names, list, sizeof(list));
		snprintf(
		    p->msg, sizeof(p->msg), "'%s' is not one of: %s", v, list);
		*why = p->msg;
		return -EINVAL;
	}
	*(int *)field(p, k) = i;
	return 0;
}

static int
parse_path_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	if (strlen(v) >= CONFIG_PATH_MAX) {
		*why = "too long";
		return -ENAMETOOLONG;
	}
	snprintf(field(p, k), CONFIG_PATH_MAX, "%s", v);
	return 0;
}

static int
parse_address_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	int rc = address_parse(v, 1, field(p, k));

	if (rc == -ENOENT)
		*why = "host name does not resolve";
	else if (rc < 0)
		*why = "not an address (host:port or [v6]:port)";
	return rc;
}

/* An address, or "" for none (a zeroed address: len 0). */
static int
parse_opt_address_key(struct parse *p, const struct config_key *k,
    const char *v, const char **why)
{
	int rc;

	if (*v == '\0') {
		memset(field(p, k), 0, sizeof(struct sockaddr_any));
		return 0;
	}
	rc = address_parse(v, 1, field(p, k));
	if (rc < 0)
		*why = rc == -ENOENT
		    ? "host name does not resolve"
		    : "not an address (host:port or [v6]:port), "
		      "or empty for none";
	return rc;
}

/* One more server; the first one the file gives replaces the default. */
static int
parse_server_key(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	struct sockaddr_any *a = field(p, k);
	int rc;

	if (!p->seen_server) {
		p->cfg->upstream.nservers = 0;
		p->seen_server = true;
	}
	if (p->cfg->upstream.nservers == CONFIG_MAX_SERVERS) {
		*why = "too many servers";
		return -E2BIG;
	}
	rc = address_parse(v, 0, a + p->cfg->upstream.nservers);
	if (rc == -ENOENT) {
		*why = "host name does not resolve";
		return rc;
	}
	if (rc < 0) {
		*why = "not a server (host:port or [v6]:port, port > 0)";
		return rc;
	}
	p->cfg->upstream.nservers++;
	return 0;
}

/*
 * What each type of key does: name is docs/config.md's type column; parse
 * stores a value (0, or a negative errno with *why set to what to tell the
 * user); format writes a value as the file would ("64k", "5s", "3"), for
 * the range in errors and docs, and is NULL for types without a range.
 */
static const struct config_type_ops {
	const char *name;
	int (*parse)(struct parse *p, const struct config_key *k, const char *v,
	    const char **why);
	const char *(*format)(uint64_t v, char *buf, size_t len);
} types[] = {
    [CT_SIZE] = {"size", parse_size_key, units_fmt_size},
    [CT_DURATION] = {"duration", parse_duration_key, units_fmt_duration},
    [CT_ENUM] = {"one of", parse_enum_key, NULL},
    [CT_ADDRESS] = {"address", parse_address_key, NULL},
    [CT_SERVER] = {"address, repeatable", parse_server_key, NULL},
    [CT_COUNT] = {"count", parse_count_key, format_count},
    [CT_PATH] = {"path", parse_path_key, NULL},
    [CT_OPT_ADDRESS] = {"address or empty", parse_opt_address_key, NULL},
    [CT_COUNT_AUTO] = {"count or auto", parse_count_auto_key, format_count},
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

/* Stores one value with its type's parser (see types). */
static int
set_value(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	if ((size_t)k->type >= NTYPES || types[k->type].parse == NULL) {
		*why = "bad key type";
		return -EINVAL;
	}
	return types[k->type].parse(p, k, v, why);
}

static int
on_key(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;
	const struct config_key *k;
	const char *why = NULL;
	size_t idx;

	if (section[0] == '\0' && !p->failed) {
		p->failed = true;
		snprintf(p->err, p->errlen,
		    "%s:%d: %s: key outside any [section]", p->name, p->line,
		    key);
		return 0;
	}
	if (!section_known(section)) {
		fail(p, p->line, section, key, "unknown section [%s]", section);
		return 0;
	}
	if ((k = find_key(section, key, &idx)) == NULL) {
		fail(p, p->line, section, key, "unknown key");
		return 0;
	}
	if (k->type != CT_SERVER && p->cfg->lines[idx] != 0) {
		fail(p, p->line, section, key, "given twice (first on line %d)",
		    p->cfg->lines[idx]);
		return 0;
	}
	if (set_value(p, k, value, &why) < 0) {
		fail(p, p->line, section, key, "%s", why);
		return 0;
	}
	if (p->cfg->lines[idx] == 0)
		p->cfg->lines[idx] = p->line;
	return 1;
}

/* A "[name]" line for a section no key belongs to is an error even when the
 * section holds no key (inih only reports keys). */
static void
check_section(struct parse *p, const char *line)
{
	char name[64];
	size_t n = 0;

	while (isspace((unsigned char)*line))
		line++;
	if (*line++ != '[')
		return;
	while (*line != ']' && *line != '\0' && n < sizeof(name) - 1)
		name[n++] = *line++;
	name[n] = '\0';
	if (*line == ']' && !section_known(name) && !p->failed) {
		p->failed = true;
		snprintf(p->err, p->errlen, "%s:%d: [%s]: unknown section",
		    p->name, p->line, name);
	}
}

/* Takes the next whole line of the file or string into p->buf. */
static ssize_t
next_line(struct parse *p)
{
	size_t n = 0;

	if (p->file != NULL)
		return getline(&p->buf, &p->bufcap, p->file);
	if (*p->text == '\0')
		return -1;
	while (p->text[n] != '\0' && p->text[n++] != '\n')
		;
	if (n + 1 > p->bufcap) {
		char *nb = realloc(p->buf, n + 1);

		if (nb == NULL)
			return -1;
		p->buf = nb;
		p->bufcap = n + 1;
	}
	memcpy(p->buf, p->text, n);
	p->buf[n] = '\0';
	p->text += n;
	return (ssize_t)n;
}

/*
 * inih's line reader for files and strings.  It counts lines, so that
 * on_key knows its line, and reads whole lines itself: Debian's inih has a
 * fixed 200-byte line buffer and would take the rest of a longer line for a
 * line of its own.  A longer comment is cut (it means nothing); a longer
 * key line is an error naming its line.
 */
static char *
read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	ssize_t n = next_line(p);
	const char *t;

	if (n < 0 || num < 3)
		return NULL;
	p->line++;
	if (n > num - 2) {
		for (t = p->buf; isspace((unsigned char)*t); t++)
			;
		if (*t != ';' && *t != '#' && !p->failed) {
			p->failed = true;
			snprintf(p->err, p->errlen,
			    "%s:%d: line longer than %d bytes", p->name,
			    p->line, num - 2);
		}
		strcpy(str, "\n");
		return str;
	}
	memcpy(str, p->buf, (size_t)n + 1);
	check_section(p, str);
	return str;
}

static void
set_defaults(struct parse *p)
{
	const char *why;

	for (size_t i = 0; i < config_nkeys; i++) {
		if (set_value(p, &config_keys[i], config_keys[i].def, &why) < 0)
			abort(); /* the table's own default is wrong: a bug */
	}
	p->seen_server = false;
}

/* A [buffer] key that conflicts with high_watermark: the error names the
 * key's own line when it was given, else high_watermark's. */
static const char *
given_or_high(const struct config *c, const char *key)
{
	return config_line(c, "buffer", key) ? key : "high_watermark";
}

static int
check(struct parse *p)
{
	struct config *c = p->cfg;

	if (c->buffer.policy == POLICY_SPILL &&
	    c->buffer.spill_dir[0] == '\0') {
		fail(p, config_line(c, "buffer", "spill_dir"), "buffer",
		    "spill_dir", "policy spill needs a spill_dir");
		return -1;
	}
	if (c->buffer.memory_limit != 0 &&
	    c->buffer.memory_limit < c->buffer.high_watermark) {
		const char *key = given_or_high(c, "memory_limit");

		fail(p, config_line(c, "buffer", key), "buffer", key,
		    "memory_limit (%llu) is below high_watermark (%llu)",
		    (unsigned long long)c->buffer.memory_limit,
		    (unsigned long long)c->buffer.high_watermark);
		return -1;
	}

	if (c->buffer.low_watermark > c->buffer.high_watermark) {
		const char *key = given_or_high(c, "low_watermark");

		fail(p, config_line(c, "buffer", key), "buffer", key,
		    "low_watermark (%llu) is above high_watermark (%llu)",
		    (unsigned long long)c->buffer.low_watermark,
		    (unsigned long long)c->buffer.high_watermark);
		return -1;
	}
	return 0;
}

static struct config *
load(struct parse *p)
{
	int rc;

	p->cfg = calloc(1, sizeof(*p->cfg));
	if (p->cfg == NULL) {
		snprintf(p->err, p->errlen, "%s: out of memory", p->name);
		return NULL;
	}
	snprintf(p->cfg->path, sizeof(p->cfg->path), "%s", p->name);
	set_defaults(p);
	/* Indented lines are keys, not continuations of the previous value. */
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	rc = ini_parse_stream(read_line, p, on_key, p);
	free(p->buf);
	if (rc != 0 && !p->failed)
		snprintf(p->err, p->errlen,
		    "%s:%d: syntax error (expected [section] or key = value)",
		    p->name, p->line);
	if (rc != 0 || p->failed || check(p) < 0) {
		free(p->cfg);
		return NULL;
	}
	return p->cfg;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct parse p = {.name = path, .err = err, .errlen = errlen};
	struct config *cfg;

	if ((p.file = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	cfg = load(&p);
	fclose(p.file);
	return cfg;
}

struct config *
config_load_string(const char *text, const char *name, char *err, size_t errlen)
{
	struct parse p = {
	    .name = name, .err = err, .errlen = errlen, .text = text};

	return load(&p);
}

struct config *
config_copy(const struct config *cfg)
{
	struct config *c = malloc(sizeof(*c));

	if (c != NULL)
		*c = *cfg; /* plain data: no pointer inside */
	return c;
}

void
config_free(struct config *cfg)
{
	free(cfg);
}

uint64_t
config_client_zwp_ms(const struct config *cfg)
{
	uint64_t t = 0, step = cfg->client.zwp_interval;
	uint64_t zt = cfg->client.zwp_timeout;

	if (cfg->client.zwp_probes != 0) {
		for (uint64_t k = 0; k < cfg->client.zwp_probes; k++) {
			t += step < 120000 ? step : 120000;
			if (step < 120000)
				step *= 2;
		}
	}
	if (t == 0)
		return zt;
	return zt != 0 && zt < t ? zt : t;
}

const char *
config_keys_enum_name(const char *section, const char *key, int v)
{
	const struct config_key *k = find_key(section, key, NULL);

	if (k == NULL || k->type != CT_ENUM || v < 0)
		return "?";
	for (int i = 0; k->names[i] != NULL; i++)
		if (i == v)
			return k->names[i];
	return "?";
}

int
config_line(const struct config *cfg, const char *section, const char *key)
{
	size_t idx;

	if (find_key(section, key, &idx) == NULL)
		return 0;
	return cfg->lines[idx];
}

/* Wraps text into "; " comment lines of at most 78 columns (inih reads
 * lines of at most 200 bytes). */
static void
print_comment(FILE *out, const char *text)
{
	while (*text != '\0') {
		size_t n = strlen(text), cut = n;

		if (n > 76) {
			cut = 76;
			while (cut > 0 && text[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = 76;
		}
		fprintf(out, "; %.*s\n", (int)cut, text);
		text += cut;
		while (*text == ' ')
			text++;
	}
}

void
config_print_ini(FILE *out)
{
	const char *section = "";

	fprintf(out,
	    "; sluice proxy configuration.  Every key, with its "
	    "default and meaning.\n"
	    "; Generated by 'sluice help config --ini' from the "
	    "parser's own table.\n"
	    "; Sizes: 64k, 4M, 2G (bytes by default).  Durations: "
	    "250ms, 30s, 5m (seconds\n; by default).  0 for a socket "
	    "option means the kernel's default.\n");
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (strcmp(section, k->section) != 0) {
			section = k->section;
			fprintf(out, "\n[%s]\n", section);
		}
		print_comment(out, k->doc);
		fprintf(out, "%s = %s\n", k->key, k->def);
	}
}

/* docs/config.md's range column: "4k – 64G", or an enum's names. */
static void
range_text(const struct config_key *k, char *buf, size_t len)
{
	const struct config_type_ops *t = &types[k->type];
	char a[32], b[32];

	buf[0] = '\0';
	if (t->format != NULL)
		snprintf(buf, len, "%s – %s", t->format(k->min, a, sizeof(a)),
		    t->format(k->max, b, sizeof(b)));
	else if (k->type == CT_ENUM)
		enum_list(k->names, buf, len);
}

void
config_print_markdown(FILE *out)
{
	fprintf(out,
	    "| section | key | type | default | range | meaning |\n"
	    "|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char range[128];

		range_text(k, range, sizeof(range));
		fprintf(out, "| [%s] | `%s` | %s | `%s` | %s | %s |\n",
		    k->section, k->key, types[k->type].name, k->def, range,
		    k->doc);
	}
}
