/*
 * fault: see fault.h.
 *
 * The rule set is process-wide, like the admin API that edits it: worker
 * 0's admin thread adds and removes rules, every worker's downloads match
 * against them.  One mutex guards the array; a download takes it once, when
 * its upstream server is chosen, and only while a rule exists (nrules, an
 * atomic, is read first), so a proxy without rules never takes it.
 *
 * The parser is strict, for a body that may be anything: one object of
 * known keys, each once; values are strings (no escapes but \" \\ \/),
 * whole numbers, or the "match" object of strings; nothing after the
 * object but blanks.  It never allocates.
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "base/json.h"
#include "base/units.h"
#include "proxy/fault.h"

const char *const fault_action_names[FAULT_NACTIONS] = {
    "none", "stall", "bandwidth", "latency", "reset", "close", "limit_data"};

static uv_mutex_t rules_lock;
static uv_once_t rules_once = UV_ONCE_INIT;
static struct fault_rule rules[FAULT_RULES_MAX];
static _Atomic size_t nrules;

int
fault_side_parse(const char *s)
{
	if (strcmp(s, "upstream") == 0)
		return FAULT_UPSTREAM;
	if (strcmp(s, "client") == 0)
		return FAULT_CLIENT;
	return -1;
}

/* ---- the parser --------------------------------------------------------- */

#define VALUE_MAX 256 /* a string value's bytes, NUL included */

struct scan {
	const char *p, *end;
	char *err;
	size_t errlen;
	unsigned seen; /* the keys given, one bit each (keys[]) */
};

/* The keys of a rule, each with a bit in scan.seen. */
enum key {
	K_NAME,
	K_ACTION,
	K_SIDE,
	K_AFTER,
	K_FOR,
	K_RATE,
	K_MATCH,
	K_PATH,
	K_SERVER,
	K_CLIENT,
	K_N,
};
static const char *const keys[K_N] = {"name", "action", "side", "after_bytes",
    "for", "rate", "match", "match.path", "match.server", "match.client"};

static int
bad(struct scan *s, const char *field, const char *why)
{
	snprintf(s->err, s->errlen, "%s: %s", field, why);
	return -1;
}

static void
blanks(struct scan *s)
{
	while (s->p < s->end &&
	    (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* c, after blanks. */
static bool
take(struct scan *s, char c)
{
	blanks(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* A string into buf (len bytes with its NUL); 0, or -1 with field named. */
static int
string(struct scan *s, const char *field, char *buf, size_t len)
{
	size_t n = 0;
	char c;

	if (!take(s, '"'))
		return bad(s, field, "expected a string");
	while (s->p < s->end && *s->p != '"') {
		c = *s->p++;
		if ((unsigned char)c < 0x20)
			return bad(s, field, "control character in a string");
		if (c == '\\') {
			if (s->p == s->end ||
			    (*s->p != '"' && *s->p != '\\' && *s->p != '/'))
				return bad(s, field,
				    "only \\\", \\\\ and \\/ escapes are "
				    "taken");
			c = *s->p++;
		}
		if (n + 1 >= len)
			return bad(s, field, "too long");
		buf[n++] = c;
	}
	if (s->p == s->end)
		return bad(s, field, "unterminated string");
	s->p++;
	buf[n] = '\0';
	return 0;
}

/* A string, or a whole number kept as its digits. */
static int
scalar(struct scan *s, const char *field, char *buf, size_t len)
{
	size_t n = 0;

	blanks(s);
	if (s->p < s->end && *s->p == '"')
		return string(s, field, buf, len);
	while (s->p < s->end && isdigit((unsigned char)*s->p) && n < 20)
		buf[n++] = *s->p++;
	if (n == 0)
		return bad(s, field, "expected a string or a whole number");
	if (n == 20 ||
	    (s->p < s->end &&
	        (*s->p == '.' || *s->p == 'e' || *s->p == 'E' || *s->p == '-')))
		return bad(s, field, "not a whole number in range");
	buf[n] = '\0';
	return 0;
}

/* The next key of an object, its index in keys[] (prefix "match." inside
 * match), marked seen. */
static int
key(struct scan *s, const char *prefix, enum key *k)
{
	char name[32], full[48];

	if (string(s, "(key)", name, sizeof(name)) < 0)
		return -1;
	snprintf(full, sizeof(full), "%s%s", prefix, name);
	for (int i = 0; i < K_N; i++) {
		if (strcmp(keys[i], full) != 0)
			continue;
		if (s->seen & (1u << i))
			return bad(s, full, "given twice");
		s->seen |= 1u << i;
		*k = (enum key)i;
		return take(s, ':') ? 0 : bad(s, full, "expected ':'");
	}
	return bad(s, full[0] != '\0' ? full : "(key)", "unknown field");
}

static int
set_size(struct scan *s, const char *field, const char *v, uint64_t *out)
{
	if (units_parse_size(v, out) < 0)
		return bad(s, field, "not a size (bytes, or with k, M, G)");
	return 0;
}

static int
set_name(struct scan *s, const char *v, struct fault_rule *r)
{
	size_t n = strlen(v);

	if (n == 0 || n >= FAULT_NAME_MAX ||
	    strspn(v,
	        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	        "0123456789_.-") != n)
		return bad(
		    s, "name", "1 to 47 of letters, digits, '_', '.', '-'");
	memcpy(r->name, v, n + 1);
	return 0;
}

static bool
printable(const char *v)
{
	for (; *v != '\0'; v++)
		if (*v <= ' ' || *v > '~')
			return false;
	return true;
}

/* One value of a top-level or match key into r. */
static int
value(struct scan *s, enum key k, const char *v, struct fault_rule *r)
{
	struct fault *f = &r->f;
	unsigned char a6[sizeof(struct in6_addr)];
	int i;

	switch (k) {
	case K_NAME:
		return set_name(s, v, r);
	case K_ACTION:
		for (i = 1; i < FAULT_NACTIONS; i++)
			if (strcmp(v, fault_action_names[i]) == 0)
				f->action = (enum fault_action)i;
		if (f->action == FAULT_NONE)
			return bad(s, "action",
			    "one of stall, bandwidth, latency, reset, close, "
			    "limit_data");
		return 0;
	case K_SIDE:
		if ((i = fault_side_parse(v)) < 0)
			return bad(s, "side", "upstream or client");
		f->side = (enum fault_side)i;
		return 0;
	case K_AFTER:
		return set_size(s, "after_bytes", v, &f->after_bytes);
	case K_FOR:
		if (units_parse_duration(v, &f->ms) < 0 || f->ms == 0 ||
		    f->ms > FAULT_FOR_MAX)
			return bad(s, "for", "a duration, 1ms to 1h (\"10s\")");
		return 0;
	case K_RATE:
		if (units_parse_rate(v, &f->rate) < 0 || f->rate < 8)
			return bad(
			    s, "rate", "a rate, 8bit or more (\"2mbit\")");
		return 0;
	case K_PATH:
		/* a request target's bytes: printable ASCII (RFC 9112 §3.2) */
		if (v[0] != '/' || strlen(v) >= FAULT_PATH_MAX || !printable(v))
			return bad(s, "match.path",
			    "a path prefix starting with '/', printable ASCII");
		snprintf(r->path, sizeof(r->path), "%s", v);
		return 0;
	case K_SERVER:
		if (address_parse(v, 0, &r->server) < 0)
			return bad(s, "match.server", "not host:port");
		return 0;
	case K_CLIENT:
		if (inet_pton(AF_INET, v, a6) == 1)
			inet_ntop(AF_INET, a6, r->client, sizeof(r->client));
		else if (inet_pton(AF_INET6, v, a6) == 1)
			inet_ntop(AF_INET6, a6, r->client, sizeof(r->client));
		else
			return bad(s, "match.client", "not an IP address");
		return 0;
	default:
		return bad(s, keys[k], "not a value");
	}
}

/* The "match" object: path, server, client, each a string. */
static int
match_object(struct scan *s, struct fault_rule *r)
{
	char v[VALUE_MAX];
	enum key k;

	if (!take(s, '{'))
		return bad(s, "match", "expected an object");
	if (take(s, '}'))
		return 0;
	do {
		if (key(s, "match.", &k) < 0 ||
		    string(s, keys[k], v, sizeof(v)) < 0 ||
		    value(s, k, v, r) < 0)
			return -1;
	} while (take(s, ','));
	return take(s, '}') ? 0 : bad(s, "match", "expected ',' or '}'");
}

/* Which parameters each action takes, as bits of enum key. */
static unsigned
params_of(enum fault_action a)
{
	unsigned side = 1u << K_SIDE, after = 1u << K_AFTER;

	switch (a) {
	case FAULT_STALL:
		return side | after | 1u << K_FOR;
	case FAULT_LATENCY:
		return 1u << K_FOR;
	case FAULT_BANDWIDTH:
		return 1u << K_RATE;
	case FAULT_RESET:
	case FAULT_CLOSE:
		return side | after;
	case FAULT_LIMIT_DATA:
		return after;
	default:
		return 0;
	}
}

/* The whole rule is in: what its action needs, and nothing else. */
static int
check_rule(struct scan *s, struct fault_rule *r)
{
	unsigned takes = params_of(r->f.action);

	if (!(s->seen & 1u << K_NAME))
		return bad(s, "name", "missing");
	if (!(s->seen & 1u << K_ACTION))
		return bad(s, "action", "missing");
	for (int k = K_SIDE; k <= K_RATE; k++)
		if ((s->seen & 1u << k) && !(takes & 1u << k)) {
			snprintf(s->err, s->errlen, "%s: not a parameter of %s",
			    keys[k], fault_action_names[r->f.action]);
			return -1;
		}
	if ((takes & 1u << K_FOR) && !(s->seen & 1u << K_FOR))
		return bad(s, "for", "missing");
	if ((takes & 1u << K_RATE) && !(s->seen & 1u << K_RATE))
		return bad(s, "rate", "missing");
	if (r->f.action == FAULT_LIMIT_DATA && !(s->seen & 1u << K_AFTER))
		return bad(s, "after_bytes", "missing");
	snprintf(r->f.rule, sizeof(r->f.rule), "%s", r->name);
	return 0;
}

int
fault_rule_parse(const char *text, size_t len, struct fault_rule *r, char *err,
    size_t errlen)
{
	struct scan s = {text, text + len, err, errlen, 0};
	char v[VALUE_MAX];
	enum key k;

	memset(r, 0, sizeof(*r));
	if (len > FAULT_BODY_MAX)
		return bad(&s, "(body)", "too large");
	if (!take(&s, '{'))
		return bad(&s, "(body)", "expected a JSON object");
	if (!take(&s, '}')) {
		do {
			if (key(&s, "", &k) < 0)
				return -1;
			if (k == K_MATCH) {
				if (match_object(&s, r) < 0)
					return -1;
				continue;
			}
			if (scalar(&s, keys[k], v, sizeof(v)) < 0 ||
			    value(&s, k, v, r) < 0)
				return -1;
		} while (take(&s, ','));
		if (!take(&s, '}'))
			return bad(&s, "(body)", "expected ',' or '}'");
	}
	blanks(&s);
	if (s.p != s.end)
		return bad(&s, "(body)", "bytes after the object");
	return check_rule(&s, r);
}

void
fault_rule_json(const struct fault_rule *r, FILE *out)
{
	const struct fault *f = &r->f;
	unsigned takes = params_of(f->action);
	char buf[32];

	fputs("{\"name\":", out);
	json_string(out, r->name);
	fputs(",\"match\":{", out);
	if (r->path[0] != '\0') {
		fputs("\"path\":", out);
		json_string(out, r->path);
	}
	if (r->server.len != 0) {
		fputs(r->path[0] != '\0' ? ",\"server\":" : "\"server\":", out);
		json_string(out, r->server.text);
	}
	if (r->client[0] != '\0')
		fprintf(out, "%s\"client\":\"%s\"",
		    r->path[0] != '\0' || r->server.len != 0 ? "," : "",
		    r->client);
	fprintf(out, "},\"action\":\"%s\"", fault_action_names[f->action]);
	if (takes & 1u << K_SIDE)
		fprintf(out, ",\"side\":\"%s\"",
		    f->side == FAULT_CLIENT ? "client" : "upstream");
	if (takes & 1u << K_AFTER)
		fprintf(out, ",\"after_bytes\":%llu",
		    (unsigned long long)f->after_bytes);
	if (takes & 1u << K_FOR)
		fprintf(out, ",\"for\":\"%s\"",
		    units_fmt_duration(f->ms, buf, sizeof(buf)));
	if (takes & 1u << K_RATE)
		fprintf(out, ",\"rate\":\"%s\"",
		    units_fmt_rate(f->rate, buf, sizeof(buf)));
	fputc('}', out);
}

/* ---- the rule set ------------------------------------------------------- */

static void
rules_init(void)
{
	uv_mutex_init(&rules_lock);
}

static void
lock(void)
{
	uv_once(&rules_once, rules_init);
	uv_mutex_lock(&rules_lock);
}

int
fault_rules_add(const struct fault_rule *r)
{
	size_t n;
	int rc = 0;

	lock();
	n = atomic_load(&nrules);
	for (size_t i = 0; i < n; i++)
		if (strcmp(rules[i].name, r->name) == 0)
			rc = -EEXIST;
	if (rc == 0 && n == FAULT_RULES_MAX)
		rc = -ENOSPC;
	if (rc == 0) {
		rules[n] = *r;
		atomic_store(&nrules, n + 1);
	}
	uv_mutex_unlock(&rules_lock);
	return rc;
}

int
fault_rules_remove(const char *name)
{
	size_t n;
	int rc = -ENOENT;

	lock();
	n = atomic_load(&nrules);
	for (size_t i = 0; i < n && rc < 0; i++) {
		if (strcmp(rules[i].name, name) != 0)
			continue;
		memmove(
		    &rules[i], &rules[i + 1], (n - i - 1) * sizeof(rules[0]));
		atomic_store(&nrules, n - 1);
		rc = 0;
	}
	uv_mutex_unlock(&rules_lock);
	return rc;
}

void
fault_rules_clear(void)
{
	lock();
	atomic_store(&nrules, 0);
	uv_mutex_unlock(&rules_lock);
}

void
fault_rules_json(FILE *out)
{
	size_t n;

	lock();
	n = atomic_load(&nrules);
	fputc('[', out);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			fputc(',', out);
		fault_rule_json(&rules[i], out);
	}
	fputs("]\n", out);
	uv_mutex_unlock(&rules_lock);
}

static bool
matches(const struct fault_rule *r, const char *target,
    const struct sockaddr_any *server, const char *client)
{
	if (r->path[0] != '\0' &&
	    strncmp(target, r->path, strlen(r->path)) != 0)
		return false;
	if (r->server.len != 0 &&
	    (server == NULL || !address_equal(&r->server, server)))
		return false;
	return r->client[0] == '\0' || strcmp(r->client, client) == 0;
}

int
fault_rules_match(const char *target, const struct sockaddr_any *server,
    const char *client, struct fault *out)
{
	size_t n;
	int found = 0;

	if (atomic_load_explicit(&nrules, memory_order_relaxed) == 0)
		return 0;
	lock();
	n = atomic_load(&nrules);
	for (size_t i = 0; i < n && !found; i++) {
		if (matches(&rules[i], target, server, client)) {
			*out = rules[i].f;
			found = 1;
		}
	}
	uv_mutex_unlock(&rules_lock);
	return found;
}
