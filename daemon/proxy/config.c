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

#include "base/log.h"
#include "base/units.h"
#include "proxy/config.h"

#define OFF(field) offsetof(struct config, field)
#define KiB        1024ULL
#define MiB        (1024ULL * 1024)
#define GiB        (1024ULL * MiB)
#define HOUR_MS    3600000ULL
#define DAY_MS     (24 * HOUR_MS)

static const char *const balance_names[] = {"round-robin", "least-conn", NULL};
static const char *const policy_names[] = {"pause", "spill", "pace", NULL};
static const char *const onoff_names[] = {"off", "on", NULL};
static const char *const level_names[] = {
    "error", "warn", "info", "debug", NULL};

const struct config_key config_keys[] = {
    {"listen", "address", CT_ADDRESS, OFF(listen.address), 0, 0, NULL,
        "127.0.0.1:8080",
        "address to accept clients on: host:port or [v6]:port (port 0: any)"},
    {"listen", "drain_timeout", CT_DURATION, OFF(listen.drain_timeout), 0,
        DAY_MS, NULL, "30s",
        "on SIGTERM/SIGINT, how long in-flight downloads may still run"},
    {"upstream", "server", CT_SERVER, OFF(upstream.servers), 0, 0, NULL,
        "127.0.0.1:9000",
        "a backend host:port; repeat the key for each server"},
    {"upstream", "balance", CT_ENUM, OFF(upstream.balance), 0, 0, balance_names,
        "round-robin", "how a server is picked: round-robin or least-conn"},
    {"upstream", "connect_timeout", CT_DURATION, OFF(upstream.connect_timeout),
        1, DAY_MS, NULL, "5s",
        "a connect that takes longer tries the next server, then answers 504"},
    {"upstream", "read_timeout", CT_DURATION, OFF(upstream.read_timeout), 1,
        DAY_MS, NULL, "60s",
        "no byte from an upstream we are reading from (not while paused): "
        "504 before the response head, else the client is cut off"},
    {"upstream", "rcvbuf", CT_SIZE, OFF(upstream.rcvbuf), 0, GiB, NULL, "0",
        "SO_RCVBUF toward upstreams, set before connect (0: kernel "
        "autotuning); the kernel doubles it"},
    {"upstream", "window_clamp", CT_SIZE, OFF(upstream.window_clamp), 0, GiB,
        NULL, "0", "TCP_WINDOW_CLAMP toward upstreams (0: none)"},
    {"upstream", "user_timeout", CT_DURATION, OFF(upstream.user_timeout), 0,
        DAY_MS, NULL, "0",
        "TCP_USER_TIMEOUT toward upstreams (0: kernel default)"},
    {"client", "sndbuf", CT_SIZE, OFF(client.sndbuf), 0, GiB, NULL, "0",
        "SO_SNDBUF toward clients (0: kernel autotuning); the kernel "
        "doubles it"},
    {"client", "user_timeout", CT_DURATION, OFF(client.user_timeout), 0, DAY_MS,
        NULL, "0", "TCP_USER_TIMEOUT toward clients (0: kernel default)"},
    {"client", "idle_timeout", CT_DURATION, OFF(client.idle_timeout), 1, DAY_MS,
        NULL, "60s",
        "no byte from a client we wait on (a client that stops reading is "
        "zwp_timeout's)"},
    {"client", "max_header_size", CT_SIZE, OFF(client.max_header_size), 1 * KiB,
        1 * MiB, NULL, "32k",
        "largest request head accepted; a larger one gets 431"},
    {"client", "zwp_timeout", CT_DURATION, OFF(client.zwp_timeout), 0, DAY_MS,
        NULL, "5m",
        "close a client whose receive window stayed zero, with data waiting, "
        "this long (0: never); the seed article's zero-window DoS defence"},
    {"client", "zwp_probes", CT_COUNT, OFF(client.zwp_probes), 0, 64, NULL, "0",
        "the same rule as a number of zero-window probes with exponential "
        "backoff from zwp_interval; converted to a time, also set as "
        "TCP_USER_TIMEOUT (0: off)"},
    {"client", "zwp_interval", CT_DURATION, OFF(client.zwp_interval), 1,
        HOUR_MS, NULL, "200ms", "the first probe interval for zwp_probes"},
    {"buffer", "policy", CT_ENUM, OFF(buffer.policy), 0, 0, policy_names,
        "pause",
        "backpressure policy: pause stops reading the upstream at "
        "high_watermark"},
    {"buffer", "high_watermark", CT_SIZE, OFF(buffer.high_watermark), 4 * KiB,
        64 * GiB, NULL, "1M",
        "bytes held for one download at which the upstream is no longer read"},
    {"buffer", "low_watermark", CT_SIZE, OFF(buffer.low_watermark), 0, 64 * GiB,
        NULL, "256k",
        "bytes held at which reading the upstream resumes (<= high_watermark)"},
    {"buffer", "block_size", CT_SIZE, OFF(buffer.block_size), 4 * KiB, 16 * MiB,
        NULL, "64k",
        "size of the pooled blocks that reads land in and writes send"},
    {"buffer", "spill_dir", CT_PATH, OFF(buffer.spill_dir), 0, 0, NULL,
        "/var/tmp",
        "directory of the spool files (policy spill); each is unlinked at "
        "once, so nothing is left behind"},
    {"buffer", "spill_limit", CT_SIZE, OFF(buffer.spill_limit), 64 * KiB,
        1024 * GiB, NULL, "1G",
        "spooled bytes one download may hold ahead of its client; past it "
        "the download pauses (space is reclaimed as the client drains)"},
    {"buffer", "spill_total", CT_SIZE, OFF(buffer.spill_total), 64 * KiB,
        64 * 1024 * GiB, NULL, "16G",
        "spooled bytes the whole process may hold"},
    {"buffer", "resume", CT_ENUM, OFF(buffer.resume), 0, 0, onoff_names, "off",
        "on: an upstream that dies mid-body is asked for the rest with "
        "Range and If-Range, and the client's body goes on"},
    {"buffer", "resume_attempts", CT_COUNT, OFF(buffer.resume_attempts), 0, 100,
        NULL, "3",
        "resumes in a row that bring no new byte, at most (a body that "
        "keeps coming is followed to its end)"},
    {"buffer", "resume_backoff", CT_DURATION, OFF(buffer.resume_backoff), 0,
        HOUR_MS, NULL, "1s", "wait before each resume attempt"},
    {"buffer", "memory_limit", CT_SIZE, OFF(buffer.memory_limit), 0, 1024 * GiB,
        NULL, "1G",
        "bytes buffered in memory by all downloads together (0: no limit); "
        "when reached, downloads pause (or spill) their upstream reads"},
    {"log", "level", CT_ENUM, OFF(log.level), 0, 0, level_names, "info",
        "error, warn, info or debug (debug also logs socket options read "
        "back)"},
    {"log", "access", CT_PATH, OFF(log.access), 0, 0, NULL, "",
        "file that gets one JSON line per finished download (empty: stderr)"},
    {"admin", "address", CT_OPT_ADDRESS, OFF(admin.address), 0, 0, NULL, "",
        "host:port serving GET /metrics (Prometheus) and GET /connections "
        "(JSON) (empty: none)"},
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

/*
 * Stores one value.  Returns 0 or a negative errno with *why set to what to
 * tell the user.
 */
static int
set_value(struct parse *p, const struct config_key *k, const char *v,
    const char **why)
{
	char *base = (char *)p->cfg;
	static char msg[160];
	uint64_t u;
	int rc, i;

	switch (k->type) {
	case CT_SIZE:
	case CT_DURATION:
		rc = k->type == CT_SIZE ? units_parse_size(v, &u)
		                        : units_parse_duration(v, &u);
		if (rc < 0) {
			*why = k->type == CT_SIZE
			    ? "not a size (bytes, or with k, M, G, T)"
			    : "not a duration (ms, s, m, h)";
			return rc;
		}
		if (u < k->min || u > k->max) {
			char a[32], b[32];

			if (k->type == CT_SIZE)
				snprintf(msg, sizeof(msg),
				    "out of range (%s to %s)",
				    units_fmt_size(k->min, a, sizeof(a)),
				    units_fmt_size(k->max, b, sizeof(b)));
			else
				snprintf(msg, sizeof(msg),
				    "out of range (%s to %s)",
				    units_fmt_duration(k->min, a, sizeof(a)),
				    units_fmt_duration(k->max, b, sizeof(b)));
			*why = msg;
			return -ERANGE;
		}
		*(uint64_t *)(base + k->offset) = u;
		return 0;
	case CT_ENUM:
		if ((i = parse_enum(k->names, v)) < 0) {
			char list[100];

			enum_list(k->names, list, sizeof(list));
			snprintf(msg, sizeof(msg), "'%s' is not one of: %s", v,
			    list);
			*why = msg;
			return -EINVAL;
		}
		*(int *)(base + k->offset) = i;
		return 0;
	case CT_COUNT: {
		char *end;

		errno = 0;
		u = strtoull(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno != 0) {
			*why = "not a whole number";
			return -EINVAL;
		}
		if (u < k->min || u > k->max) {
			snprintf(msg, sizeof(msg),
			    "out of range (%llu to %llu)",
			    (unsigned long long)k->min,
			    (unsigned long long)k->max);
			*why = msg;
			return -ERANGE;
		}
		*(uint64_t *)(base + k->offset) = u;
		return 0;
	}
	case CT_PATH:
		if (strlen(v) >= CONFIG_PATH_MAX) {
			*why = "too long";
			return -ENAMETOOLONG;
		}
		snprintf(base + k->offset, CONFIG_PATH_MAX, "%s", v);
		return 0;
	case CT_OPT_ADDRESS:
		if (*v == '\0') {
			memset(
			    base + k->offset, 0, sizeof(struct sockaddr_any));
			return 0;
		}
		rc = address_parse(
		    v, 1, (struct sockaddr_any *)(base + k->offset));
		if (rc < 0) {
			*why = rc == -ENOENT
			    ? "host name does not resolve"
			    : "not an address (host:port or [v6]:port), "
			      "or empty for none";
			return rc;
		}
		return 0;
	case CT_ADDRESS:
	case CT_SERVER: {
		struct sockaddr_any *a =
		    (struct sockaddr_any *)(base + k->offset);

		if (k->type == CT_SERVER) {
			if (!p->seen_server) {
				p->cfg->upstream.nservers = 0;
				p->seen_server = true;
			}
			if (p->cfg->upstream.nservers == CONFIG_MAX_SERVERS) {
				*why = "too many servers";
				return -E2BIG;
			}
			a += p->cfg->upstream.nservers;
		}
		rc = address_parse(v, k->type == CT_ADDRESS, a);
		if (rc == -ENOENT) {
			*why = "host name does not resolve";
			return rc;
		}
		if (rc < 0) {
			*why = k->type == CT_ADDRESS
			    ? "not an address (host:port or [v6]:port)"
			    : "not a server (host:port or [v6]:port, "
			      "port > 0)";
			return rc;
		}
		if (k->type == CT_SERVER)
			p->cfg->upstream.nservers++;
		return 0;
	}
	}
	*why = "bad key type";
	return -EINVAL;
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

static const char *
type_name(const struct config_key *k)
{
	switch (k->type) {
	case CT_SIZE:
		return "size";
	case CT_DURATION:
		return "duration";
	case CT_ENUM:
		return "one of";
	case CT_ADDRESS:
		return "address";
	case CT_SERVER:
		return "address, repeatable";
	case CT_COUNT:
		return "count";
	case CT_PATH:
		return "path";
	case CT_OPT_ADDRESS:
		return "address or empty";
	}
	return "?";
}

void
config_print_markdown(FILE *out)
{
	fprintf(out,
	    "| section | key | type | default | range | meaning |\n"
	    "|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char range[128] = "", a[32], b[32];

		if (k->type == CT_SIZE)
			snprintf(range, sizeof(range), "%s – %s",
			    units_fmt_size(k->min, a, sizeof(a)),
			    units_fmt_size(k->max, b, sizeof(b)));
		else if (k->type == CT_DURATION)
			snprintf(range, sizeof(range), "%s – %s",
			    units_fmt_duration(k->min, a, sizeof(a)),
			    units_fmt_duration(k->max, b, sizeof(b)));
		else if (k->type == CT_ENUM)
			enum_list(k->names, range, sizeof(range));
		else if (k->type == CT_COUNT)
			snprintf(range, sizeof(range), "%llu – %llu",
			    (unsigned long long)k->min,
			    (unsigned long long)k->max);
		fprintf(out, "| [%s] | `%s` | %s | `%s` | %s | %s |\n",
		    k->section, k->key, type_name(k), k->def, range, k->doc);
	}
}
