/*
 * lab_lb: nginx and HAProxy as the lab's balancer (lab_lb.h).
 *
 * A generated config is first built as a plan, a list of directives each
 * with its place (nginx: listen or location; HAProxy: global or defaults)
 * and its source (generated, translated from [proxy], verbatim from [lb]),
 * then printed.  Building before printing is what lets a verbatim
 * directive replace a generated or translated one of the same name (nginx
 * rejects duplicates, HAProxy would take the last), and lets
 * lab_lb_setting() answer from the very plan the config was printed from.
 *
 * The /proc helpers at the end are independent of the rest: they measure
 * the balancer's memory and temp files, which nginx unlinks at once.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/units.h"
#include "lab/lab_lb.h"

/* The generated lines plus every verbatim and translated key. */
#define MAX_ITEMS (2 * LAB_MAX_KV + 16)

enum src {
	SRC_GENERATED = 0, /* the product's default or the lab's line */
	SRC_TRANSLATED,    /* from a [proxy] key */
	SRC_VERBATIM,      /* from an [lb] nginx.* / haproxy.* key */
};

enum where {
	W_LOCATION = 0, /* nginx: location / */
	W_LISTEN,       /* nginx: a parameter of listen */
	W_DEFAULTS,     /* HAProxy: defaults */
	W_GLOBAL,       /* HAProxy: global */
};

struct item {
	char name[96];
	char value[PATH_MAX + 32]; /* a path under the results dir fits */
	int src;                   /* enum src */
	int where;                 /* enum where */
};

struct plan {
	const struct lab_scenario *sc;
	const char *product; /* "nginx" or "haproxy", in notes */
	struct item it[MAX_ITEMS];
	size_t n;
	char *notes;
	size_t notes_len;
	char *err;
	size_t errlen;
};

/* ---- sizes ------------------------------------------------------------ */

/* nginx's own size syntax (ngx_parse_offset), so the verdict can compare
 * a directive's value with the bytes measured. */
uint64_t
lab_lb_size(const char *s)
{
	uint64_t v = 0, scale = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return 0;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case '\0':
		return v;
	case 'k':
	case 'K':
		scale = 1024;
		break;
	case 'm':
	case 'M':
		scale = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		scale = 1024 * 1024 * 1024;
		break;
	default:
		return 0;
	}
	if (p[1] != '\0' || v > UINT64_MAX / scale)
		return 0;
	return v * scale;
}

/* nginx's ngx_parse_size knows only k and m (1.22 rejects "1g" for sizes
 * and offsets alike), so sizes are printed with those or in bytes. */
static void
nginx_size(uint64_t bytes, char *buf, size_t len)
{
	if (bytes != 0 && bytes % (1024 * 1024) == 0)
		snprintf(buf, len, "%" PRIu64 "m", bytes / (1024 * 1024));
	else if (bytes != 0 && bytes % 1024 == 0)
		snprintf(buf, len, "%" PRIu64 "k", bytes / 1024);
	else
		snprintf(buf, len, "%" PRIu64, bytes);
}

/* ---- the plan --------------------------------------------------------- */

/* Appends one line to the notes; a full buffer keeps what fits. */
static void
note(struct plan *p, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (p->notes == NULL || p->notes_len == 0)
		return;
	used = strlen(p->notes);
	if (used + 1 >= p->notes_len)
		return;
	va_start(ap, fmt);
	vsnprintf(p->notes + used, p->notes_len - used, fmt, ap);
	va_end(ap);
}

/* Notes a [proxy] key (if set) whose directive the operator wrote. */
static void
overridden(struct plan *p, const struct lab_kv *kv, const char *name)
{
	if (kv != NULL)
		note(p, "[proxy] %s = %s: overridden by %s.%s\n", kv->key,
		    kv->value, p->product, name);
}

/* The item of that name anywhere: nginx names are unique in the plan. */
static struct item *
find(struct plan *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->it[i].name, name) == 0)
			return &p->it[i];
	return NULL;
}

/* The item of that name in one place: HAProxy has a "log" in global and
 * another in defaults. */
static struct item *
find_in(struct plan *p, int where, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->it[i].where == where && strcmp(p->it[i].name, name) == 0)
			return &p->it[i];
	return NULL;
}

/* Sets name to value: replaces an item of that name, else appends, so a
 * verbatim key takes the place of the generated line it overrides. */
static void
put(struct plan *p, int where, int src, const char *name, const char *value)
{
	struct item *it = find_in(p, where, name);

	if (it == NULL) {
		if (p->n == MAX_ITEMS)
			return; /* cannot happen: MAX_ITEMS counts every key */
		it = &p->it[p->n++];
	}
	snprintf(it->name, sizeof(it->name), "%s", name);
	snprintf(it->value, sizeof(it->value), "%s", value);
	it->src = src;
	it->where = where;
}

/* Sets a translated directive unless a verbatim one of that name exists;
 * then the [proxy] key is noted as overridden. */
static void
put_translated(struct plan *p, int where, const struct lab_kv *kv,
    const char *name, const char *value)
{
	const struct item *it = find_in(p, where, name);

	if (it != NULL && it->src == SRC_VERBATIM) {
		overridden(p, kv, name);
		return;
	}
	put(p, where, SRC_TRANSLATED, name, value);
}

/* The scenario's [proxy] key, or NULL: keys translate only when set. */
static const struct lab_kv *
proxy_kv(const struct lab_scenario *sc, const char *key)
{
	for (size_t i = 0; i < sc->nproxy; i++)
		if (strcmp(sc->proxy[i].key, key) == 0)
			return &sc->proxy[i];
	return NULL;
}

/* A [proxy] value that does not parse: the lab stops with this error
 * rather than start a balancer with another config than the scenario's. */
static int
bad_value(struct plan *p, const struct lab_kv *kv, const char *what)
{
	snprintf(p->err, p->errlen, "[proxy] %s = %s: not a %s", kv->key,
	    kv->value, what);
	return -EINVAL;
}

/* ---- translations ----------------------------------------------------- */

enum xtype {
	X_DURATION = 0, /* units_fmt_duration: ms, s, m, h read by both */
	X_NGINX_SIZE,   /* k, m or bytes */
	X_BYTES,        /* HAProxy: bytes */
};

/* The [proxy] keys with a one-to-one counterpart.  A size of 0 means
 * kernel autotuning in sluice, which is what both products do unless told
 * otherwise, so it writes nothing. */
static const struct xlat {
	int kind;
	const char *key, *name;
	int type;  /* enum xtype */
	int where; /* enum where */
} xlats[] = {
    {LAB_LB_NGINX, "client.sndbuf", "sndbuf", X_NGINX_SIZE, W_LISTEN},
    {LAB_LB_NGINX, "upstream.connect_timeout", "proxy_connect_timeout",
        X_DURATION, W_LOCATION},
    {LAB_LB_NGINX, "upstream.read_timeout", "proxy_read_timeout", X_DURATION,
        W_LOCATION},
    {LAB_LB_NGINX, "client.idle_timeout", "send_timeout", X_DURATION,
        W_LOCATION},
    {LAB_LB_HAPROXY, "client.sndbuf", "tune.sndbuf.client", X_BYTES, W_GLOBAL},
    {LAB_LB_HAPROXY, "upstream.rcvbuf", "tune.rcvbuf.server", X_BYTES,
        W_GLOBAL},
    {LAB_LB_HAPROXY, "buffer.block_size", "tune.bufsize", X_BYTES, W_GLOBAL},
    {LAB_LB_HAPROXY, "upstream.connect_timeout", "timeout connect", X_DURATION,
        W_DEFAULTS},
    {LAB_LB_HAPROXY, "upstream.read_timeout", "timeout server", X_DURATION,
        W_DEFAULTS},
    {LAB_LB_HAPROXY, "client.idle_timeout", "timeout client", X_DURATION,
        W_DEFAULTS},
};
#define NXLATS (sizeof(xlats) / sizeof(xlats[0]))

/* nginx's [proxy] keys that translate together (nginx_policy(),
 * nginx_buffers()), not one by one. */
static const char *const nginx_compound[] = {"buffer.policy",
    "buffer.spill_limit", "buffer.high_watermark", "buffer.block_size"};

/* Translates one key by its row: durations and sizes re-printed in the
 * product's syntax. */
static int
xlat_one(struct plan *p, const struct xlat *x, const struct lab_kv *kv)
{
	char buf[64];
	uint64_t v;

	if (x->type == X_DURATION) {
		if (units_parse_duration(kv->value, &v) < 0)
			return bad_value(p, kv, "duration");
		units_fmt_duration(v, buf, sizeof(buf));
	} else {
		if (units_parse_size(kv->value, &v) < 0)
			return bad_value(p, kv, "size");
		if (v == 0)
			return 0;
		if (x->type == X_NGINX_SIZE)
			nginx_size(v, buf, sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "%" PRIu64, v);
	}
	put_translated(p, x->where, kv, x->name, buf);
	return 0;
}

/* True for the nginx keys that nginx_policy() and nginx_buffers() own. */
static bool
is_compound(const struct plan *p, const char *key)
{
	if (p->sc->lb_kind != LAB_LB_NGINX)
		return false;
	for (size_t i = 0; i < sizeof(nginx_compound) / sizeof(char *); i++)
		if (strcmp(key, nginx_compound[i]) == 0)
			return true;
	return false;
}

/* The one-to-one keys; every other key that is not compound is noted. */
static int
xlat_simple(struct plan *p)
{
	const struct lab_scenario *sc = p->sc;
	int rc;

	for (size_t i = 0; i < sc->nproxy; i++) {
		const struct lab_kv *kv = &sc->proxy[i];
		const struct xlat *x = NULL;

		for (size_t j = 0; j < NXLATS && x == NULL; j++)
			if (xlats[j].kind == sc->lb_kind &&
			    strcmp(xlats[j].key, kv->key) == 0)
				x = &xlats[j];
		if (x != NULL && (rc = xlat_one(p, x, kv)) < 0)
			return rc;
		if (x == NULL && !is_compound(p, kv->key))
			note(p, "[proxy] %s = %s: no %s counterpart, ignored\n",
			    kv->key, kv->value, p->product);
	}
	return 0;
}

/* A [proxy] size, or def when the key is absent. */
static int
proxy_size(struct plan *p, const char *key, uint64_t def, uint64_t *v)
{
	const struct lab_kv *kv = proxy_kv(p->sc, key);

	*v = def;
	if (kv != NULL && units_parse_size(kv->value, v) < 0)
		return bad_value(p, kv, "size");
	return 0;
}

/*
 * buffer.policy: pause holds the body in memory only, which nginx does
 * with proxy_max_temp_file_size 0; spill writes to disk up to spill_limit
 * (sluice's default 1G is nginx's default 1024m, so nothing is written
 * without one).  A temp file limit under one buffer is refused by nginx,
 * so it is raised to the block size.
 */
static int
nginx_policy(struct plan *p)
{
	const struct lab_kv *pol = proxy_kv(p->sc, "buffer.policy");
	const struct lab_kv *lim = proxy_kv(p->sc, "buffer.spill_limit");
	bool spill = pol != NULL && strcmp(pol->value, "spill") == 0;
	uint64_t limit, block;
	char buf[32];
	int rc;

	if (pol != NULL && strcmp(pol->value, "pause") == 0)
		put_translated(
		    p, W_LOCATION, pol, "proxy_max_temp_file_size", "0");
	else if (pol != NULL && !spill)
		note(p, "[proxy] %s = %s: no nginx counterpart, ignored\n",
		    pol->key, pol->value);
	if (lim == NULL)
		return 0;
	if (!spill) {
		note(p,
		    "[proxy] %s = %s: no nginx counterpart without "
		    "buffer.policy = spill, ignored\n",
		    lim->key, lim->value);
		return 0;
	}
	if ((rc = proxy_size(p, lim->key, 0, &limit)) < 0 ||
	    (rc = proxy_size(p, "buffer.block_size", 4096, &block)) < 0)
		return rc;
	nginx_size(limit < block ? block : limit, buf, sizeof(buf));
	put_translated(p, W_LOCATION, lim, "proxy_max_temp_file_size", buf);
	return 0;
}

/* A verbatim directive among the three buffer ones: then none of the three
 * is translated, since a mix of ours and the operator's may be invalid. */
static const char *
verbatim_buffers(struct plan *p)
{
	static const char *const names[] = {
	    "proxy_buffers", "proxy_buffer_size", "proxy_busy_buffers_size"};

	for (size_t i = 0; i < 3; i++) {
		const struct item *it = find(p, names[i]);

		if (it != NULL && it->src == SRC_VERBATIM)
			return names[i];
	}
	return NULL;
}

/*
 * high_watermark and block_size: sluice holds up to high_watermark in
 * blocks of block_size (defaults 1M and 64k when only one is set), nginx
 * N buffers of SIZE plus proxy_buffer_size for the head.  busy_buffers may
 * be at most (N-1)*SIZE; sluice queues everything it holds toward the
 * client, so it is that maximum.
 */
static int
nginx_buffers(struct plan *p)
{
	const struct lab_kv *hw = proxy_kv(p->sc, "buffer.high_watermark");
	const struct lab_kv *bs = proxy_kv(p->sc, "buffer.block_size");
	uint64_t high, block, n;
	const char *v;
	char size[32], busy[32], bufs[64];
	int rc;

	if (hw == NULL && bs == NULL)
		return 0;
	if ((rc = proxy_size(p, "buffer.high_watermark", 1 << 20, &high)) < 0 ||
	    (rc = proxy_size(p, "buffer.block_size", 64 << 10, &block)) < 0)
		return rc;
	if ((v = verbatim_buffers(p)) != NULL) {
		overridden(p, hw, v);
		overridden(p, bs, v);
		return 0;
	}
	if (block == 0)
		return bad_value(p, bs, "block size");
	n = high / block < 2 ? 2 : high / block;
	nginx_size(block, size, sizeof(size));
	nginx_size((n - 1) * block, busy, sizeof(busy));
	snprintf(bufs, sizeof(bufs), "%" PRIu64 " %s", n, size);
	put(p, W_LOCATION, SRC_TRANSLATED, "proxy_buffers", bufs);
	put(p, W_LOCATION, SRC_TRANSLATED, "proxy_buffer_size", size);
	put(p, W_LOCATION, SRC_TRANSLATED, "proxy_busy_buffers_size", busy);
	return 0;
}

/*
 * proxy_http_version 1.1 rather than nginx's 1.0: it is what production
 * configs use (upstream keepalive and chunked need it), and for the lab's
 * origin it changes nothing the incident depends on: nginx still sends
 * "Connection: close" (its default proxy_set_header), so the origin closes
 * after the body either way, and /bytes/SIZE has a Content-Length either
 * way, so a truncated body is detected either way.  nginx.proxy_http_version
 * = 1.0 restores the default.
 */
static void
nginx_generated(struct plan *p)
{
	put(p, W_LOCATION, SRC_GENERATED, "proxy_http_version", "1.1");
}

/* HAProxy's behaviour with the timeouts an operator usually sets (without
 * them HAProxy 2.6 warns and never times out). */
static void
haproxy_generated(struct plan *p, const char *dir)
{
	char pid[PATH_MAX + 16];

	snprintf(pid, sizeof(pid), "%s/haproxy.pid", dir);
	put(p, W_GLOBAL, SRC_GENERATED, "log", "stdout format raw local0 info");
	put(p, W_GLOBAL, SRC_GENERATED, "pidfile", pid);
	put(p, W_DEFAULTS, SRC_GENERATED, "mode", "http");
	put(p, W_DEFAULTS, SRC_GENERATED, "log", "global");
	put(p, W_DEFAULTS, SRC_GENERATED, "option httplog", "");
	put(p, W_DEFAULTS, SRC_GENERATED, "timeout connect", "5s");
	put(p, W_DEFAULTS, SRC_GENERATED, "timeout client", "60s");
	put(p, W_DEFAULTS, SRC_GENERATED, "timeout server", "60s");
}

/* HAProxy keys: "tune.X" and "global.X" (as "X") to global, the rest to
 * defaults, where a key replaces the generated line of its name. */
static void
haproxy_verbatim(struct plan *p, const struct lab_kv *kv)
{
	if (strncmp(kv->key, "tune.", 5) == 0)
		put(p, W_GLOBAL, SRC_VERBATIM, kv->key, kv->value);
	else if (strncmp(kv->key, "global.", 7) == 0)
		put(p, W_GLOBAL, SRC_VERBATIM, kv->key + 7, kv->value);
	else
		put(p, W_DEFAULTS, SRC_VERBATIM, kv->key, kv->value);
}

/* Builds the plan of a generated config; 0 or -EINVAL with p->err. */
static int
plan_build(struct plan *p, const struct lab_scenario *sc, const char *dir)
{
	int rc;

	p->sc = sc;
	p->product = lab_lb_kind_name(sc->lb_kind);
	if (sc->lb_kind == LAB_LB_NGINX)
		nginx_generated(p);
	else if (sc->lb_kind == LAB_LB_HAPROXY)
		haproxy_generated(p, dir);
	else {
		snprintf(p->err, p->errlen, "[lb] kind = %s has no config",
		    lab_lb_kind_name(sc->lb_kind));
		return -EINVAL;
	}
	for (size_t i = 0; i < sc->nlb_directives; i++)
		if (sc->lb_kind == LAB_LB_NGINX)
			put(p, W_LOCATION, SRC_VERBATIM,
			    sc->lb_directives[i].key,
			    sc->lb_directives[i].value);
		else
			haproxy_verbatim(p, &sc->lb_directives[i]);
	if ((rc = xlat_simple(p)) < 0)
		return rc;
	if (sc->lb_kind == LAB_LB_NGINX &&
	    ((rc = nginx_policy(p)) < 0 || (rc = nginx_buffers(p)) < 0))
		return rc;
	return 0;
}

/* ---- printing --------------------------------------------------------- */

/* Prints the items of one place as "NAME VALUE" lines, nginx with ';'. */
static void
print_items(FILE *out, const struct plan *p, int where, const char *indent,
    const char *end)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct item *it = &p->it[i];

		if (it->where != where)
			continue;
		fprintf(out, "%s%s%s%s%s\n", indent, it->name,
		    it->value[0] != '\0' ? " " : "", it->value, end);
	}
}

/* The http block's lab-owned part: a JSON access log the lab can read
 * like sluice's, and temp files in the results dir, where
 * lab_group_files() finds them (and nothing lands in /var/lib/nginx). */
static void
print_nginx_http(FILE *out, const char *dir)
{
	static const char *const temps[] = {
	    "client_body", "proxy", "fastcgi", "uwsgi", "scgi"};

	fprintf(out,
	    "\tlog_format lab escape=json\n"
	    "\t    '{\"time\":\"$time_iso8601\",\"remote\":\"$remote_addr\",'\n"
	    "\t    '\"request\":\"$request\",\"status\":$status,'\n"
	    "\t    '\"body_bytes_sent\":$body_bytes_sent,'\n"
	    "\t    '\"request_time\":$request_time,'\n"
	    "\t    '\"upstream_status\":\"$upstream_status\",'\n"
	    "\t    '\"upstream_bytes_received\":"
	    "\"$upstream_bytes_received\",'\n"
	    "\t    '\"connection\":$connection}';\n"
	    "\taccess_log %s/nginx-access.log lab;\n\n",
	    dir);
	fprintf(out,
	    "\t# Every module of this nginx that has a temp path "
	    "(nginx -V: all\n\t# default modules), out of "
	    "/var/lib/nginx.\n");
	for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++)
		fprintf(out, "\t%s_temp_path %s/nginx-temp/%s;\n", temps[i],
		    dir,
		    strcmp(temps[i], "client_body") == 0 ? "body" : temps[i]);
}

/* The whole nginx config: main and events are the lab's (foreground,
 * one worker, root so workers can write temp files in the results dir),
 * the location holds the plan. */
static void
print_nginx(FILE *out, const struct plan *p, const char *listen,
    const char *origin, const char *dir)
{
	const struct item *sndbuf = NULL;

	for (size_t i = 0; i < p->n; i++)
		if (p->it[i].where == W_LISTEN)
			sndbuf = &p->it[i];
	fprintf(out,
	    "# nginx for sluice lab, scenario %s: nginx's defaults, then the\n"
	    "# scenario's nginx.* directives, then its [proxy] keys "
	    "translated.\n"
	    "daemon off;\nmaster_process on;\nworker_processes 1;\n"
	    "user root;\npid %s/nginx.pid;\n"
	    "error_log %s/nginx-error.log info;\n\n"
	    "events {\n\tworker_connections 1024;\n}\n\nhttp {\n",
	    p->sc->name, dir, dir);
	print_nginx_http(out, dir);
	fprintf(out, "\n\tserver {\n\t\tlisten %s%s%s;\n\n", listen,
	    sndbuf != NULL ? " sndbuf=" : "",
	    sndbuf != NULL ? sndbuf->value : "");
	fprintf(out, "\t\tlocation / {\n\t\t\tproxy_pass http://%s;\n", origin);
	print_items(out, p, W_LOCATION, "\t\t\t", ";");
	fprintf(out, "\t\t}\n\t}\n}\n");
}

/* The whole HAProxy config: no daemon (the lab runs it in the
 * foreground), one frontend, one backend, the plan in global/defaults. */
static void
print_haproxy(
    FILE *out, const struct plan *p, const char *listen, const char *origin)
{
	fprintf(out,
	    "# HAProxy for sluice lab, scenario %s: the usual timeouts, then "
	    "the\n# scenario's haproxy.* keys, then its [proxy] keys "
	    "translated.\nglobal\n",
	    p->sc->name);
	print_items(out, p, W_GLOBAL, "\t", "");
	fprintf(out, "\ndefaults\n");
	print_items(out, p, W_DEFAULTS, "\t", "");
	fprintf(out,
	    "\nfrontend fe\n\tbind %s\n\tdefault_backend be\n\n"
	    "backend be\n\tserver origin %s\n",
	    listen, origin);
}

/* ---- the user's file -------------------------------------------------- */

/* Copies one line, each placeholder replaced by its value. */
static void
put_line(FILE *out, const char *line, const char *const subst[3][2])
{
	const char *p = line;

	while (*p != '\0') {
		size_t i;

		for (i = 0; i < 3; i++)
			if (strncmp(p, subst[i][0], strlen(subst[i][0])) == 0)
				break;
		if (i < 3) {
			fputs(subst[i][1], out);
			p += strlen(subst[i][0]);
		} else
			fputc(*p++, out);
	}
}

/* The operator's file as it is but for the placeholders: the lab must run
 * the config they run.  0 or -errno with err. */
static int
copy_user_config(FILE *out, const struct lab_scenario *sc, const char *listen,
    const char *origin, const char *dir, char *err, size_t errlen)
{
	const char *const subst[3][2] = {
	    {"@LISTEN@", listen}, {"@ORIGIN@", origin}, {"@DIR@", dir}};
	FILE *in = fopen(sc->lb_config, "r");
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	if (in == NULL) {
		rc = -errno;
		snprintf(err, errlen, "[lb] config %s: %s", sc->lb_config,
		    strerror(errno));
		return rc;
	}
	while (getline(&line, &cap, in) != -1)
		put_line(out, line, subst);
	if (ferror(in)) {
		rc = -EIO;
		snprintf(
		    err, errlen, "[lb] config %s: read error", sc->lb_config);
	}
	free(line);
	fclose(in);
	return rc;
}

/* nginx creates only the last component of a temp path. */
static int
make_temp_dir(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int rc;

	snprintf(path, sizeof(path), "%s/nginx-temp", dir);
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	return 0;
}

/* A user file when there is one, else the plan printed (lab_lb.h). */
int
lab_lb_config(FILE *out, const struct lab_scenario *sc, const char *listen,
    const char *origin, const char *dir, char *notes, size_t notes_len,
    char *err, size_t errlen)
{
	struct plan *p;
	int rc;

	if (sc->lb_kind == LAB_LB_NGINX &&
	    (rc = make_temp_dir(dir, err, errlen)) < 0)
		return rc;
	if (sc->lb_config[0] != '\0' &&
	    (sc->lb_kind == LAB_LB_NGINX || sc->lb_kind == LAB_LB_HAPROXY))
		rc =
		    copy_user_config(out, sc, listen, origin, dir, err, errlen);
	else {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return -ENOMEM;
		p->notes = notes;
		p->notes_len = notes_len;
		p->err = err;
		p->errlen = errlen;
		if ((rc = plan_build(p, sc, dir)) == 0 &&
		    sc->lb_kind == LAB_LB_NGINX)
			print_nginx(out, p, listen, origin, dir);
		else if (rc == 0)
			print_haproxy(out, p, listen, origin);
		free(p);
	}
	if (rc == 0 && (fflush(out) != 0 || ferror(out))) {
		snprintf(err, errlen, "writing the %s config failed",
		    lab_lb_kind_name(sc->lb_kind));
		rc = -EIO;
	}
	return rc;
}

/* ---- the command line ------------------------------------------------- */

/* True when the nginx config at path has a daemon directive: a statement
 * (after the start, ';', '{' or '}') whose first word is "daemon";
 * comments and quoted strings are skipped. */
static bool
has_daemon(const char *path)
{
	FILE *f = fopen(path, "r");
	int c, quote = 0;
	bool start = true, found = false;
	char word[8];
	size_t n = 0;

	if (f == NULL)
		return false;
	while (!found && (c = getc(f)) != EOF) {
		if (quote != 0) {
			if (c == '\\')
				(void)getc(f);
			else if (c == quote)
				quote = 0;
			continue;
		}
		if (c == '#') {
			while ((c = getc(f)) != EOF && c != '\n')
				;
			continue;
		}
		if (start && n < sizeof(word) - 1 &&
		    isalpha((unsigned char)c)) {
			word[n++] = (char)c;
			continue;
		}
		word[n] = '\0';
		found = start && strcmp(word, "daemon") == 0 &&
		    (isspace(c) || c == ';');
		if (n > 0 || !isspace(c))
			start = c == ';' || c == '{' || c == '}';
		n = 0;
		if (c == '"' || c == '\'')
			quote = c;
	}
	fclose(f);
	return found;
}

/* Appends one argument; false when argv (with its NULL) is full. */
static bool
add_arg(const char **argv, size_t max, size_t *n, const char *s)
{
	if (*n + 1 >= max)
		return false;
	argv[(*n)++] = s;
	argv[*n] = NULL;
	return true;
}

/* The foreground command line (lab_lb.h); the lab owns the process, so
 * neither product may fork into the background. */
int
lab_lb_argv(const struct lab_scenario *sc, const char *conf, const char *dir,
    const char **argv, size_t max, char *buf, size_t len)
{
	size_t n = 0;
	bool ok;
	int w;

	if (sc->lb_kind == LAB_LB_HAPROXY)
		ok = add_arg(argv, max, &n, "haproxy") &&
		    add_arg(argv, max, &n, "-f") &&
		    add_arg(argv, max, &n, conf) &&
		    add_arg(argv, max, &n, "-db");
	else if (sc->lb_kind == LAB_LB_NGINX) {
		/* -p: the prefix of relative paths, the results dir. */
		w = snprintf(buf, len, "%s%s", dir,
		    dir[0] != '\0' && dir[strlen(dir) - 1] == '/' ? "" : "/");
		ok = w >= 0 && (size_t)w < len &&
		    add_arg(argv, max, &n, "nginx") &&
		    add_arg(argv, max, &n, "-c") &&
		    add_arg(argv, max, &n, conf) &&
		    add_arg(argv, max, &n, "-p") && add_arg(argv, max, &n, buf);
		if (ok && !has_daemon(conf))
			ok = add_arg(argv, max, &n, "-g") &&
			    add_arg(argv, max, &n, "daemon off;");
	} else
		ok = false;
	return ok ? (int)n : -EINVAL;
}

/* ---- settings --------------------------------------------------------- */

/* The products' documented defaults for what the verdict asks about
 * (nginx 1.22 on x86_64: one buffer is a 4k page). */
static const struct {
	int kind;
	const char *name, *value;
} defaults[] = {
    {LAB_LB_NGINX, "proxy_max_temp_file_size", "1024m"},
    {LAB_LB_NGINX, "proxy_buffers", "8 4k"},
    {LAB_LB_NGINX, "proxy_buffer_size", "4k"},
    {LAB_LB_NGINX, "proxy_busy_buffers_size", "8k"},
    {LAB_LB_NGINX, "proxy_read_timeout", "60s"},
    {LAB_LB_NGINX, "proxy_connect_timeout", "60s"},
    {LAB_LB_NGINX, "send_timeout", "60s"},
    {LAB_LB_NGINX, "proxy_buffering", "on"},
    {LAB_LB_HAPROXY, "tune.bufsize", "16384"},
};

/* Copies a setting out; -ENOSPC rather than a truncated value. */
static int
copy_value(
    const char *value, bool deflt, char *buf, size_t len, bool *is_default)
{
	if (strlen(value) >= len)
		return -ENOSPC;
	strcpy(buf, value);
	if (is_default != NULL)
		*is_default = deflt;
	return 0;
}

/* Answers from the same plan the config was printed from, so the verdict
 * and the config cannot disagree (lab_lb.h). */
int
lab_lb_setting(const struct lab_scenario *sc, const char *name, char *buf,
    size_t len, bool *is_default)
{
	char err[LAB_ERR_MAX];
	const struct item *it;
	struct plan *p;
	int rc;

	if (sc->lb_config[0] != '\0')
		return -ENOENT;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	p->err = err;
	p->errlen = sizeof(err);
	if ((rc = plan_build(p, sc, "")) < 0)
		goto free_plan;
	rc = -ENOENT;
	if (sc->lb_kind == LAB_LB_HAPROXY && strncmp(name, "global.", 7) == 0)
		it = find_in(p, W_GLOBAL, name + 7);
	else
		it = find(p, name);
	if (it != NULL)
		rc = copy_value(
		    it->value, it->src == SRC_GENERATED, buf, len, is_default);
	for (size_t i = 0;
	     it == NULL && i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (defaults[i].kind == sc->lb_kind &&
		    strcmp(defaults[i].name, name) == 0) {
			rc = copy_value(
			    defaults[i].value, true, buf, len, is_default);
			break;
		}
free_plan:
	free(p);
	return rc;
}

/* ---- /proc ------------------------------------------------------------ */

/* The process group of pid from /proc/PID/stat, or -1.  Field 2 (comm) may
 * hold spaces and ')', so the fields are read after the last ')'. */
static pid_t
proc_pgrp(const char *pid)
{
	char path[64], buf[1024], *p;
	int ppid, pgrp;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %d %d", &ppid, &pgrp) != 2)
		return -1;
	return (pid_t)pgrp;
}

/* Calls fn for every process of group pgid; a process that is gone by the
 * time fn reads it simply adds nothing. */
static uint64_t
each_in_group(pid_t pgid, uint64_t (*fn)(const char *pid, void *arg), void *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	uint64_t sum = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (lab_all_digits(e->d_name) && proc_pgrp(e->d_name) == pgid)
			sum += fn(e->d_name, arg);
	closedir(d);
	return sum;
}

/* VmRSS of /proc/PID/status in bytes (a zombie has none: 0). */
static uint64_t
proc_rss(const char *pid, void *arg)
{
	char path[64], line[256];
	unsigned long long kb = 0;
	FILE *f;

	(void)arg;
	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

/* A balancer's memory is its master's and its workers' (lab_lb.h). */
uint64_t
lab_group_rss(pid_t pgid)
{
	return each_in_group(pgid, proc_rss, NULL);
}

/* The files already counted, by (device, inode). */
struct files {
	const char *under;
	size_t under_len;
	struct {
		dev_t dev;
		ino_t ino;
	} * seen;
	size_t n, cap;
};

/* Marks st as seen; false when it was already (a failed allocation
 * counts the file again rather than losing it). */
static bool
first_sight(struct files *fs, const struct stat *st)
{
	for (size_t i = 0; i < fs->n; i++)
		if (fs->seen[i].dev == st->st_dev &&
		    fs->seen[i].ino == st->st_ino)
			return false;
	if (fs->n == fs->cap) {
		size_t cap = fs->cap == 0 ? 16 : 2 * fs->cap;
		void *s = realloc(fs->seen, cap * sizeof(fs->seen[0]));

		if (s == NULL)
			return true;
		fs->seen = s;
		fs->cap = cap;
	}
	fs->seen[fs->n].dev = st->st_dev;
	fs->seen[fs->n++].ino = st->st_ino;
	return true;
}

/* True when the link target is the directory under or below it. */
static bool
is_under(const struct files *fs, const char *target)
{
	size_t n = fs->under_len;

	while (n > 1 && fs->under[n - 1] == '/')
		n--;
	return strncmp(target, fs->under, n) == 0 &&
	    (target[n] == '/' || target[n] == '\0' || fs->under[n - 1] == '/');
}

/* The size of one /proc/PID/fd/N when it is a regular file under the
 * directory and not counted yet: stat follows the link even when the file
 * was unlinked, readlink names it "PATH (deleted)". */
static uint64_t
fd_size(struct files *fs, const char *link)
{
	char target[PATH_MAX];
	struct stat st;
	ssize_t n;

	if (stat(link, &st) == -1 || !S_ISREG(st.st_mode))
		return 0;
	if ((n = readlink(link, target, sizeof(target) - 1)) == -1)
		return 0;
	target[n] = '\0';
	if (!is_under(fs, target) || !first_sight(fs, &st))
		return 0;
	return (uint64_t)st.st_size;
}

/* The sizes of one process's open files under fs->under. */
static uint64_t
proc_files(const char *pid, void *arg)
{
	struct files *fs = arg;
	char path[64], link[64 + sizeof(((struct dirent *)0)->d_name)];
	struct dirent *e;
	uint64_t sum = 0;
	DIR *d;

	if (snprintf(path, sizeof(path), "/proc/%s/fd", pid) >=
	        (int)sizeof(path) ||
	    (d = opendir(path)) == NULL)
		return 0; /* a pid is digits: never that long */
	while ((e = readdir(d)) != NULL)
		if (lab_all_digits(e->d_name)) {
			snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
			sum += fd_size(fs, link);
		}
	closedir(d);
	return sum;
}

/* The bytes a balancer holds in temp files (lab_lb.h). */
uint64_t
lab_group_files(pid_t pgid, const char *under)
{
	struct files fs = {.under = under, .under_len = strlen(under)};
	uint64_t sum;

	if (fs.under_len == 0)
		return 0;
	sum = each_in_group(pgid, proc_files, &fs);
	free(fs.seen);
	return sum;
}
