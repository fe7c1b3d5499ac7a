/*
 * admin_fault: the fault routes of the admin API ([admin] faults = on,
 * issue 16, docs/faults.md), answered for admin.c, which owns the socket,
 * the request's bounds and the answer's writing:
 *
 *   POST   /connections/ID/stall?side=upstream|client&for=10s
 *   POST   /connections/ID/throttle?rate=2mbit        (0 removes it)
 *   POST   /connections/ID/reset?side=upstream|client (RST)
 *   POST   /connections/ID/close?side=upstream|client (FIN)
 *   GET    /faults                                    the rules
 *   POST   /faults                                    a rule (JSON body)
 *   DELETE /faults/NAME
 *
 * Answers are JSON: the fault or rule taken, or {"error": "field: why"}
 * on one line.  400 for a bad request, 403 while faults are off, 404 for
 * an unknown connection or rule, 409 for a name taken or a connection
 * without the side asked, 413 for a body over FAULT_BODY_MAX.
 *
 * A connection belongs to one worker (its id says which: conn.c numbers
 * worker w of n as w, n + w, ...): the fault is applied on that worker's
 * own thread through workers_call, never from here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/units.h"
#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/fault.h"
#include "proxy/proxy.h"
#include "proxy/workers.h"

#define QUERY_VALUE_MAX 64

static int
error(
    FILE *out, int status, const char *fmt, const char *field, const char *why)
{
	char line[256];

	snprintf(line, sizeof(line), fmt, field, why);
	fputs("{\"error\":", out);
	json_string(out, line);
	fputs("}\n", out);
	return status;
}

/* The value of query parameter name in q (after '?'), into buf: 1 found,
 * 0 absent, -1 too long. */
static int
query(const char *q, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name), n;

	while (q != NULL && *q != '\0') {
		n = strcspn(q, "&");
		if (n > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
			if (n - nl - 1 >= len)
				return -1;
			memcpy(buf, q + nl + 1, n - nl - 1);
			buf[n - nl - 1] = '\0';
			return 1;
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return 0;
}

/* Every parameter of q is one the action takes (a comma list). */
static const char *
unknown_param(const char *q, const char *takes)
{
	static char name[32];
	size_t n, k;

	while (q != NULL && *q != '\0') {
		n = strcspn(q, "&");
		k = strcspn(q, "=&");
		snprintf(name, sizeof(name), "%.*s", (int)(k < 31 ? k : 31), q);
		if (k == 0 || strstr(takes, name) == NULL)
			return name;
		q += n;
		if (*q == '&')
			q++;
	}
	return NULL;
}

/* The query of a live fault into f; 0 or an answered status. */
static int
live_params(const char *q, struct fault *f, FILE *out)
{
	char v[QUERY_VALUE_MAX];
	const char *takes = f->action == FAULT_STALL ? "side,for"
	    : f->action == FAULT_BANDWIDTH           ? "rate"
	                                             : "side";
	const char *bad = unknown_param(q, takes);
	int rc;

	if (bad != NULL)
		return error(out, 400, "%s: %s", bad[0] ? bad : "(query)",
		    "not a parameter of this action");
	if ((rc = query(q, "side", v, sizeof(v))) < 0 ||
	    (rc == 1 && fault_side_parse(v) < 0))
		return error(out, 400, "%s: %s", "side", "upstream or client");
	if (rc == 1)
		f->side = (enum fault_side)fault_side_parse(v);
	if (f->action == FAULT_STALL &&
	    (query(q, "for", v, sizeof(v)) != 1 ||
	        units_parse_duration(v, &f->ms) < 0 || f->ms == 0 ||
	        f->ms > FAULT_FOR_MAX))
		return error(out, 400, "%s: %s", "for",
		    "a duration, 1ms to 1h (for=10s)");
	if (f->action == FAULT_BANDWIDTH &&
	    (query(q, "rate", v, sizeof(v)) != 1 ||
	        units_parse_rate(v, &f->rate) < 0))
		return error(out, 400, "%s: %s", "rate",
		    "a rate (rate=2mbit; 0 removes the throttle)");
	return 0;
}

struct live_call {
	uint64_t id;
	const struct fault *f;
	int rc;
};

static void
live_on_worker(struct proxy *px, void *arg)
{
	struct live_call *lc = arg;

	lc->rc = conn_fault(px, lc->id, lc->f);
}

static void
fault_json(uint64_t id, const struct fault *f, FILE *out)
{
	char buf[32];

	fprintf(out, "{\"id\":%llu,\"action\":\"%s\"", (unsigned long long)id,
	    fault_action_names[f->action]);
	if (f->action == FAULT_BANDWIDTH)
		fprintf(out, ",\"rate\":\"%s\"",
		    units_fmt_rate(f->rate, buf, sizeof(buf)));
	else
		fprintf(out, ",\"side\":\"%s\"",
		    f->side == FAULT_CLIENT ? "client" : "upstream");
	if (f->action == FAULT_STALL)
		fprintf(out, ",\"for\":\"%s\"",
		    units_fmt_duration(f->ms, buf, sizeof(buf)));
	fputs("}\n", out);
}

/* POST /connections/ID/ACTION?...: rest is "ID/ACTION?...". */
static int
live(struct proxy *px, const char *rest, FILE *out)
{
	static const char *const actions[] = {
	    "stall", "throttle", "reset", "close"};
	static const enum fault_action act[] = {
	    FAULT_STALL, FAULT_BANDWIDTH, FAULT_RESET, FAULT_CLOSE};
	struct proxy_shared *sh = px->sh;
	struct fault f = {0};
	struct live_call lc = {0, &f, -ENOENT};
	size_t n = strspn(rest, "0123456789"), an;
	const char *q;
	int rc;

	if (n == 0 || n > 19 || rest[n] != '/')
		return error(out, 404, "%s: %s", "id", "not a connection id");
	lc.id = strtoull(rest, NULL, 10);
	rest += n + 1;
	an = strcspn(rest, "?");
	q = rest[an] == '?' ? rest + an + 1 : NULL;
	for (size_t i = 0; i < 4 && f.action == FAULT_NONE; i++)
		if (an == strlen(actions[i]) &&
		    strncmp(rest, actions[i], an) == 0)
			f.action = act[i];
	if (f.action == FAULT_NONE)
		return error(out, 404, "%s: %s", "action",
		    "stall, throttle, reset or close");
	if ((rc = live_params(q, &f, out)) != 0)
		return rc;
	if (sh->nworkers == 1)
		live_on_worker(px, &lc);
	else if (workers_call(px, sh->workers[lc.id % sh->nworkers],
	             live_on_worker, &lc) < 0)
		lc.rc = -ENOENT;
	if (lc.rc == -ENOENT)
		return error(out, 404, "%s: %s", "id", "no such connection");
	if (lc.rc == -ENOTCONN)
		return error(out, 409, "%s: %s", "side",
		    "the connection has no upstream now");
	fault_json(lc.id, &f, out);
	return 200;
}

/* POST /faults */
static int
add_rule(const char *body, size_t len, int too_large, FILE *out)
{
	struct fault_rule r;
	char err[200];
	int rc;

	if (too_large)
		return error(
		    out, 413, "%s: %s", "(body)", "larger than 4096 bytes");
	if (fault_rule_parse(body, len, &r, err, sizeof(err)) < 0)
		return error(out, 400, "%s%s", err, "");
	if ((rc = fault_rules_add(&r)) == -EEXIST)
		return error(
		    out, 409, "%s: %s", "name", "a rule has that name");
	if (rc < 0)
		return error(out, 409, "%s: %s", "name",
		    "64 rules at most: remove one first");
	fault_rule_json(&r, out);
	fputc('\n', out);
	return 201;
}

int
admin_fault_route(struct proxy *px, const char *method, const char *url,
    const char *body, size_t len, int too_large, FILE *out)
{
	const char *name;

	if (strncmp(url, "/connections/", 13) != 0 &&
	    strcmp(url, "/faults") != 0 && strncmp(url, "/faults/", 8) != 0 &&
	    strncmp(url, "/faults?", 8) != 0)
		return 0;
	if (!px->cfg->admin.faults)
		return error(out, 403, "%s: %s", "faults",
		    "off ([admin] faults = on turns the fault API on)");
	if (strncmp(url, "/connections/", 13) == 0)
		return strcmp(method, "POST") == 0
		    ? live(px, url + 13, out)
		    : error(out, 405, "%s: %s", "method", "POST");
	if (strncmp(url, "/faults/", 8) == 0) {
		name = url + 8;
		if (strcmp(method, "DELETE") != 0)
			return error(out, 405, "%s: %s", "method", "DELETE");
		if (fault_rules_remove(name) < 0)
			return error(
			    out, 404, "%s: %s", "name", "no such rule");
		fputs("{\"removed\":", out);
		json_string(out, name);
		fputs("}\n", out);
		return 200;
	}
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		fault_rules_json(out);
		return 200;
	}
	if (strcmp(method, "POST") == 0)
		return add_rule(body, len, too_large, out);
	return error(out, 405, "%s: %s", "method", "GET or POST");
}
