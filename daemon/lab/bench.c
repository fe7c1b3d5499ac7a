/*
 * bench: `sluice bench SWEEP.ini` (bench.h, docs/lab.md "Sweeps").  The
 * sweep file and its combinations are pure and unit-tested; a run is
 * `/proc/self/exe lab scenario.ini --json --out DIR` as a child (fork/exec,
 * no shell: proc.h), so each run has fresh namespaces and the lab's own
 * teardown.
 * Its summary.json is read back; a lab that could not run (exit 1, no
 * summary) makes the row's outcome `error`, never `truncated`.
 *
 * bench_run.c runs them (--jobs at a time); bench_report.c writes
 * results.csv, summary.md and the plots.
 *
 * Invariant: nothing runs before every combination has parsed as a
 * scenario and made a valid proxy config.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <ini.h>

#include "base/json.h"
#include "base/units.h"
#include "proxy/config.h"
#include "model/model.h"
#include "lab/bench.h"
#include "lab/bench_int.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/proc.h"

enum vtype {
	V_SIZE,
	V_RATE,
	V_DURATION,
	V_ENUM, /* the names of the proxy config key's enum */
	V_GIVEUP,
	V_KIND,
};

struct axis_def {
	const char *name, *section, *key;
	enum vtype type;
	char sep; /* list separator in the sweep file */
	const char *column;
	const char *what; /* V_ENUM: the names, for "'x' is not WHAT" */
};

/*
 * One row macro per type: the sweep key, the scenario key it sets
 * ([section] key), its CSV column (and an enum's names as its error
 * lists them).  A give-up rule holds commas, so its list is split on '|'.
 */
#define AXIS(name, sec, key, t, sep, column, what)                             \
	{                                                                      \
		name, sec, key, t, sep, column, what                           \
	}
#define SIZE(name, sec, key, column)                                           \
	AXIS(name, sec, key, V_SIZE, ',', column, NULL)
#define RATE(name, sec, key, column)                                           \
	AXIS(name, sec, key, V_RATE, ',', column, NULL)
#define DURATION(name, sec, key, column)                                       \
	AXIS(name, sec, key, V_DURATION, ',', column, NULL)
#define ENUM(name, sec, key, column, what)                                     \
	AXIS(name, sec, key, V_ENUM, ',', column, what)
#define GIVEUP(name, sec, key, column)                                         \
	AXIS(name, sec, key, V_GIVEUP, '|', column, NULL)
#define KIND(name, sec, key, column)                                           \
	AXIS(name, sec, key, V_KIND, ',', column, NULL)

/* The axes (STYLE 9), in enum bench_axis_id's order. */
static const struct axis_def axis_defs[BENCH_NAXES] = {
    ENUM("policy", "proxy", "buffer.policy", "policy", "pause, spill or pace"),
    SIZE("high_watermark", "proxy", "buffer.high_watermark",
        "high_watermark_bytes"),
    SIZE("low_watermark", "proxy", "buffer.low_watermark",
        "low_watermark_bytes"),
    SIZE("spill_limit", "proxy", "buffer.spill_limit", "spill_limit_bytes"),
    ENUM("resume", "proxy", "buffer.resume", "resume", "on or off"),
    DURATION("zwp_timeout", "proxy", "client.zwp_timeout", "zwp_timeout_ms"),
    SIZE("rcvbuf", "proxy", "upstream.rcvbuf", "rcvbuf_bytes"),
    RATE("client_rate", "links", "lb_client", "client_rate_bps"),
    GIVEUP("origin_give_up", "origin", "give_up", "origin_give_up"),
    KIND("lb", "lb", "kind", "lb"),
    SIZE("body", "lab", "body", "body_bytes"),
    SIZE("scale", "lab", "scale", "scale"),
};

/* The rest of the file keeps these short names free. */
#undef AXIS
#undef SIZE
#undef RATE
#undef DURATION
#undef ENUM
#undef GIVEUP
#undef KIND

const char *
bench_axis_name(int a)
{
	return a >= 0 && a < BENCH_NAXES ? axis_defs[a].name : "?";
}

const char *
bench_axis_column(int a)
{
	return a >= 0 && a < BENCH_NAXES ? axis_defs[a].column : "?";
}

const char *
bench_axis_sep(int a)
{
	return a >= 0 && a < BENCH_NAXES && axis_defs[a].sep == '|' ? " | "
	                                                            : ", ";
}

/* ---- the sweep file --------------------------------------------------- */

struct sweep_ctx {
	struct bench_sweep *sw;
	char dir[PATH_MAX]; /* the sweep file's directory, for base */
	char msg[400];      /* the first error: "[section] key: message" */
	bool have_base;
};

static int
sfail(struct sweep_ctx *ctx, const char *section, const char *key,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lab_ini_fail(ctx->msg, sizeof(ctx->msg), section, key, fmt, ap);
	va_end(ap);
	return 0;
}

/* ---- one check per type: is v a good value, for the parser the lab or
 * the config will hand it to? -------------------------------------------- */

static bool
check_size(const struct axis_def *d, const char *v)
{
	uint64_t n;

	(void)d;
	return units_parse_size(v, &n) >= 0;
}

static bool
check_rate(const struct axis_def *d, const char *v)
{
	uint64_t n;

	(void)d;
	return units_parse_rate(v, &n) >= 0 && n >= 8;
}

static bool
check_duration(const struct axis_def *d, const char *v)
{
	uint64_t n;

	(void)d;
	return units_parse_duration(v, &n) >= 0;
}

/* One of the names of the proxy config key's enum. */
static bool
check_enum(const struct axis_def *d, const char *v)
{
	const struct config_key *k = config_key_dotted(d->key);

	for (size_t i = 0; k != NULL && k->names[i] != NULL; i++)
		if (strcmp(v, k->names[i]) == 0)
			return true;
	return false;
}

static bool
check_giveup(const struct axis_def *d, const char *v)
{
	const char *argv[8];
	char buf[256];
	struct model_in in;

	(void)d;
	model_defaults(&in);
	return lab_giveup_args(v, argv, 8, buf, sizeof(buf)) >= 0 &&
	    (v[0] == '\0' || strcmp(v, "none") == 0 ||
	        model_parse_giveup(v, &in) >= 0);
}

static bool
check_kind(const struct axis_def *d, const char *v)
{
	(void)d;
	for (int i = LAB_LB_SLUICE; i <= LAB_LB_NONE; i++)
		if (strcmp(v, lab_lb_kind_name(i)) == 0)
			return true;
	return false;
}

/*
 * What each type of axis does: check tells a good value (above); what
 * ends the message for a bad one, "'VALUE' is not WHAT" (an enum's row
 * names its own).
 */
static const struct vtype_ops {
	bool (*check)(const struct axis_def *d, const char *v);
	const char *what;
} vtypes[] = {
    [V_SIZE] = {check_size, "a size (64k, 2M)"},
    [V_RATE] = {check_rate, "a rate (2mbit, 1gbit)"},
    [V_DURATION] = {check_duration, "a duration (5s)"},
    [V_ENUM] = {check_enum, NULL},
    [V_GIVEUP] = {check_giveup,
        "a give-up rule (zwp-probes=N,interval=T[,max=T], send-timeout=T, "
        "user-timeout=T, orphan, none)"},
    [V_KIND] = {check_kind, "sluice, nginx, haproxy or none"},
};

/* NULL when v is a good value of axis d, else what it should have been. */
static const char *
value_error(const struct axis_def *d, const char *v)
{
	const struct vtype_ops *t = &vtypes[d->type];

	if (t->check(d, v))
		return NULL;
	return d->what != NULL ? d->what : t->what;
}

/* Strips blanks at both ends, in place. */
static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* "pause, spill": splits on the axis's separator and checks each value. */
static int
axis_key(struct sweep_ctx *ctx, const char *key, const char *value)
{
	const struct axis_def *d = NULL;
	struct bench_axis *ax = NULL;
	char tmp[2048], sep[2], *tok;
	const char *why;

	for (int a = 0; a < BENCH_NAXES; a++)
		if (strcmp(axis_defs[a].name, key) == 0) {
			d = &axis_defs[a];
			ax = &ctx->sw->axes[a];
		}
	if (d == NULL)
		return sfail(ctx, "axes", key,
		    "not an axis (sluice help bench: policy, high_watermark, "
		    "low_watermark, spill_limit, resume, zwp_timeout, rcvbuf, "
		    "client_rate, origin_give_up, lb, body, scale)");
	if (ax->nvalues != 0)
		return sfail(ctx, "axes", key, "given twice");
	if (strlen(value) >= sizeof(tmp))
		return sfail(ctx, "axes", key, "too long");
	strcpy(tmp, value);
	sep[0] = d->sep;
	sep[1] = '\0';
	if (trim(tmp)[0] == '\0')
		return sfail(ctx, "axes", key, "an empty list");
	for (char *p = tmp; (tok = strsep(&p, sep)) != NULL;) {
		tok = trim(tok);
		if (*tok == '\0')
			return sfail(ctx, "axes", key,
			    "an empty value in the list (values are separated "
			    "by '%c')",
			    d->sep);
		if ((why = value_error(d, tok)) != NULL)
			return sfail(
			    ctx, "axes", key, "'%s' is not %s", tok, why);
		if (ax->nvalues == BENCH_MAX_VALUES ||
		    strlen(tok) >= BENCH_VALUE_MAX)
			return sfail(ctx, "axes", key,
			    "at most %d values of %d characters",
			    BENCH_MAX_VALUES, BENCH_VALUE_MAX - 1);
		strcpy(ax->values[ax->nvalues++], tok);
	}
	return 1;
}

/* Reads a whole file into a malloc'd string, or NULL with errno set. */
char *
bench_read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t len = 0;
	FILE *m;
	int c;

	if (f == NULL)
		return NULL;
	if ((m = open_memstream(&text, &len)) == NULL) {
		fclose(f);
		return NULL;
	}
	while ((c = getc(f)) != EOF)
		putc(c, m);
	fclose(f);
	fclose(m);
	return text;
}

/* base = PATH, relative to the sweep file: it must load as a scenario. */
static int
base_key(struct sweep_ctx *ctx, const char *value)
{
	struct bench_sweep *sw = ctx->sw;
	struct lab_scenario *sc;
	char err[LAB_ERR_MAX];
	int n;

	if (value[0] == '/')
		n = snprintf(sw->base, sizeof(sw->base), "%s", value);
	else
		n = snprintf(
		    sw->base, sizeof(sw->base), "%s/%s", ctx->dir, value);
	if (n < 0 || (size_t)n >= sizeof(sw->base))
		return sfail(ctx, "bench", "base", "path too long");
	if ((sc = malloc(sizeof(*sc))) == NULL)
		return sfail(ctx, "bench", "base", "out of memory");
	n = lab_scenario_load(sw->base, sc, err, sizeof(err));
	free(sc);
	if (n < 0)
		return sfail(ctx, "bench", "base", "%s", err);
	free(sw->base_text);
	if ((sw->base_text = bench_read_text(sw->base)) == NULL)
		return sfail(
		    ctx, "bench", "base", "%s: %s", sw->base, strerror(errno));
	ctx->have_base = true;
	return 1;
}

static int
bench_section_key(struct sweep_ctx *ctx, const char *key, const char *value)
{
	struct bench_sweep *sw = ctx->sw;
	char *end;
	unsigned long long n;

	if (strcmp(key, "name") == 0) {
		if (value[0] == '\0' || strlen(value) >= sizeof(sw->name) ||
		    strpbrk(value, "/ \t") != NULL)
			return sfail(ctx, "bench", key,
			    "a word of at most %zu characters",
			    sizeof(sw->name) - 1);
		strcpy(sw->name, value);
		return 1;
	}
	if (strcmp(key, "base") == 0)
		return base_key(ctx, value);
	if (strcmp(key, "repeat") == 0) {
		errno = 0;
		n = strtoull(value, &end, 10);
		if (!isdigit((unsigned char)value[0]) || *end != '\0' ||
		    errno != 0 || n < 1 || n > 20)
			return sfail(ctx, "bench", key,
			    "'%s' is not a count from 1 to 20", value);
		sw->repeat = n;
		return 1;
	}
	return sfail(ctx, "bench", key, "unknown key (name, base, repeat)");
}

static int
on_sweep_key(
    void *user, const char *section, const char *key, const char *value)
{
	struct sweep_ctx *ctx = user;

	if (strcmp(section, "bench") == 0)
		return bench_section_key(ctx, key, value);
	if (strcmp(section, "axes") == 0)
		return axis_key(ctx, key, value);
	return sfail(ctx, section, key, "unknown section (bench, axes)");
}

size_t
bench_combinations(const struct bench_sweep *sw)
{
	size_t n = 1;

	for (int a = 0; a < BENCH_NAXES; a++)
		if (sw->axes[a].nvalues > 1)
			n *= sw->axes[a].nvalues;
	return n;
}

size_t
bench_value_index(const struct bench_sweep *sw, size_t i, int a)
{
	size_t stride = 1;

	if (sw->axes[a].nvalues <= 1)
		return 0;
	for (int b = a + 1; b < BENCH_NAXES; b++)
		if (sw->axes[b].nvalues > 1)
			stride *= sw->axes[b].nvalues;
	return (i / stride) % sw->axes[a].nvalues;
}

/* ---- the scenario of one combination ---------------------------------- */

/* The (section, key) a scenario line sets, or false for other lines. */
static bool
line_key(const char *line, size_t len, char *section, size_t seclen, char *key,
    size_t keylen)
{
	size_t i = 0, k;

	while (i < len && isspace((unsigned char)line[i]))
		i++;
	if (i == len || line[i] == ';' || line[i] == '#')
		return false;
	if (line[i] == '[') {
		k = strcspn(line + i + 1, "]\n");
		snprintf(section, seclen, "%.*s", (int)k, line + i + 1);
		return false;
	}
	k = strcspn(line + i, "=:\n");
	if (i + k >= len)
		return false;
	while (k > 0 && isspace((unsigned char)line[i + k - 1]))
		k--;
	snprintf(key, keylen, "%.*s", (int)k, line + i);
	return true;
}

/* Whether combination i overrides section/key. */
static bool
overridden(const struct bench_sweep *sw, const char *section, const char *key)
{
	for (int a = 0; a < BENCH_NAXES; a++)
		if (sw->axes[a].nvalues != 0 &&
		    strcmp(axis_defs[a].section, section) == 0 &&
		    strcmp(axis_defs[a].key, key) == 0)
			return true;
	return false;
}

char *
bench_scenario_text(const struct bench_sweep *sw, size_t i)
{
	char section[64] = "", key[128], *text = NULL;
	const char *p = sw->base_text;
	bool dropping = false;
	size_t len = 0;
	FILE *out;

	if (p == NULL || (out = open_memstream(&text, &len)) == NULL)
		return NULL;
	while (*p != '\0') {
		size_t n = strcspn(p, "\n");
		bool cont = n > 0 && (p[0] == ' ' || p[0] == '\t') &&
		    strspn(p, " \t") < n;

		/* A continuation line belongs to the key above it. */
		if (!(cont && dropping))
			dropping = line_key(p, n, section, sizeof(section), key,
			               sizeof(key)) &&
			    overridden(sw, section, key);
		fprintf(out, "%s%.*s\n", dropping ? "# sluice bench: " : "",
		    (int)n, p);
		p += n + (p[n] == '\n');
	}
	fprintf(out, "\n# sluice bench: this run's axes\n");
	for (int a = 0; a < BENCH_NAXES; a++)
		if (sw->axes[a].nvalues != 0)
			fprintf(out, "[%s]\n%s = %s\n", axis_defs[a].section,
			    axis_defs[a].key,
			    sw->axes[a].values[bench_value_index(sw, i, a)]);
	fclose(out);
	return text;
}

/* "policy=spill high_watermark=2M": the combination's varying axes. */
void
bench_combo_label(
    const struct bench_sweep *sw, size_t i, char *buf, size_t len, char sep)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int a = 0; a < BENCH_NAXES && used < len; a++) {
		if (sw->axes[a].nvalues <= 1)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s=%s",
		    used != 0 ? (sep == ' ' ? " " : ", ") : "",
		    axis_defs[a].name,
		    sw->axes[a].values[bench_value_index(sw, i, a)]);
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "the base scenario");
}

/* The value a run sees for axis a, from its parsed scenario and proxy
 * config: numbers in bytes, bits/s or ms, names as they are. */
static void
effective_value(int a, const struct lab_scenario *sc, const struct config *cfg,
    char *buf, size_t len)
{
	const struct axis_def *d = &axis_defs[a];
	const struct config_key *k;
	const char *base = (const char *)cfg;
	uint64_t v = 0;
	int e;

	if (strcmp(d->section, "proxy") == 0) {
		k = config_key_dotted(d->key);
		if (k->type == CT_ENUM) {
			memcpy(&e, base + k->offset, sizeof(e));
			snprintf(buf, len, "%s",
			    config_keys_enum_name(k->section, k->key, e));
			return;
		}
		memcpy(&v, base + k->offset, sizeof(v));
	} else if (a == BENCH_CLIENT_RATE) {
		v = sc->lb_client_bps;
	} else if (a == BENCH_BODY) {
		v = sc->body;
	} else if (a == BENCH_SCALE) {
		snprintf(buf, len, "%g", sc->scale);
		return;
	} else if (a == BENCH_GIVE_UP) {
		snprintf(buf, len, "%s", sc->give_up[0] ? sc->give_up : "none");
		return;
	} else {
		snprintf(buf, len, "%s", lab_lb_kind_name(sc->lb_kind));
		return;
	}
	snprintf(buf, len, "%" PRIu64, v);
}

/* Parses combination i as the lab will, and its proxy config as the
 * proxy will; fills its point.  0, or -EINVAL with err naming it. */
static int
check_combination(struct bench_sweep *sw, size_t i, struct lab_scenario *sc,
    char *err, size_t errlen)
{
	char label[512], e[LAB_ERR_MAX] = "", *text, *cfgtext = NULL;
	struct config *cfg = NULL;
	size_t len = 0;
	FILE *f;

	bench_combo_label(sw, i, label, sizeof(label), ' ');
	if ((text = bench_scenario_text(sw, i)) == NULL)
		return -ENOMEM;
	if (lab_scenario_parse(text, "scenario", sc, e, sizeof(e)) == 0 &&
	    (f = open_memstream(&cfgtext, &len)) != NULL) {
		lab_proxy_config(f, sc, LB_IP ":8080", ORIGIN_IP ":8000",
		    "127.0.0.1:9090", "");
		fclose(f);
		cfg = config_load_string(cfgtext, "proxy.ini", e, sizeof(e));
		free(cfgtext);
	}
	free(text);
	if (cfg == NULL) {
		snprintf(err, errlen,
		    "%s: [axes] %s: the lab would refuse it: %s", sw->path,
		    label, e);
		return -EINVAL;
	}
	for (int a = 0; a < BENCH_NAXES; a++)
		effective_value(a, sc, cfg, sw->points[i].values[a],
		    sizeof(sw->points[i].values[a]));
	config_free(cfg);
	return 0;
}

/* Every combination must be one the lab runs (see the file's comment). */
static int
sweep_check(struct bench_sweep *sw, char *err, size_t errlen)
{
	size_t n = bench_combinations(sw);
	struct lab_scenario *sc;
	int rc = 0;

	if (n * sw->repeat > BENCH_MAX_RUNS) {
		snprintf(err, errlen, "%s: [axes]: %zu runs, at most %d",
		    sw->path, n * (size_t)sw->repeat, BENCH_MAX_RUNS);
		return -EINVAL;
	}
	sw->points = calloc(n, sizeof(*sw->points));
	sc = malloc(sizeof(*sc));
	if (sw->points == NULL || sc == NULL) {
		free(sc);
		snprintf(err, errlen, "%s: out of memory", sw->path);
		return -ENOMEM;
	}
	sw->npoints = n;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = check_combination(sw, i, sc, err, errlen);
	sw->mode = sc->mode;
	free(sc);
	return rc;
}

/* The default name: the file's base name without ".ini". */
static void
default_name(struct bench_sweep *sw, const char *path)
{
	const char *base = strrchr(path, '/');
	size_t n;

	base = base != NULL ? base + 1 : path;
	n = strlen(base);
	if (n > 4 && strcmp(base + n - 4, ".ini") == 0)
		n -= 4;
	snprintf(sw->name, sizeof(sw->name), "%.*s", (int)n, base);
}

int
bench_sweep_parse(const char *text, const char *name, struct bench_sweep *sw,
    char *err, size_t errlen)
{
	struct sweep_ctx ctx = {.sw = sw};
	const char *slash = strrchr(name, '/');
	int rc;

	memset(sw, 0, sizeof(*sw));
	sw->repeat = 1;
	snprintf(sw->path, sizeof(sw->path), "%s", name);
	if (slash == NULL)
		snprintf(ctx.dir, sizeof(ctx.dir), ".");
	else
		snprintf(ctx.dir, sizeof(ctx.dir), "%.*s", (int)(slash - name),
		    name);
	rc = ini_parse_string(text, on_sweep_key, &ctx);
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: %s", name, rc,
		    ctx.msg[0] != '\0' ? ctx.msg : "not a key = value line");
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	if (!ctx.have_base) {
		snprintf(err, errlen,
		    "%s: [bench] base: missing (the scenario to vary)", name);
		return -EINVAL;
	}
	if (sw->name[0] == '\0')
		default_name(sw, name);
	return sweep_check(sw, err, errlen);
}

int
bench_sweep_load(
    const char *path, struct bench_sweep *sw, char *err, size_t errlen)
{
	char *text = bench_read_text(path);
	int rc;

	if (text == NULL) {
		memset(sw, 0, sizeof(*sw));
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -ENOENT;
	}
	rc = bench_sweep_parse(text, path, sw, err, errlen);
	free(text);
	return rc;
}

void
bench_sweep_free(struct bench_sweep *sw)
{
	free(sw->base_text);
	free(sw->points);
	sw->base_text = NULL;
	sw->points = NULL;
}

/* Fills the run table: every combination, its repeats together, each
 * with its stem NNN-LABEL (its directory OUT/runs/NNN-LABEL, or its file
 * NNN-LABEL.ini under --emit). */
static int
plan_runs(struct bench *b)
{
	size_t n = bench_combinations(&b->sw), k = 0;
	char label[400];

	b->nruns = n * b->sw.repeat;
	if ((b->runs = calloc(b->nruns, sizeof(*b->runs))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		bench_combo_label(&b->sw, i, label, sizeof(label), '-');
		for (char *p = label; *p != '\0'; p++)
			if (!isalnum((unsigned char)*p) && *p != '.' &&
			    *p != '=')
				*p = '_';
		for (size_t j = 0; j < b->sw.repeat; j++, k++) {
			b->runs[k].index = k;
			b->runs[k].combo = i;
			b->runs[k].rep = j;
			snprintf(b->runs[k].stem, sizeof(b->runs[k].stem),
			    "%03zu-%.80s", k + 1, label);
			snprintf(b->runs[k].dir, sizeof(b->runs[k].dir),
			    "%s/runs/%s", b->out != NULL ? b->out : ".",
			    b->runs[k].stem);
		}
	}
	return 0;
}

/* ---- a run's fields, for results.csv and --json ----------------------- */

/* The columns after the axes, each named with its unit. */
static const char *const result_columns[] = {"outcome", "client_bytes",
    "unsent_bytes", "finish_s", "origin_hold_s", "zero_window_s",
    "longest_zero_window_s", "lb_peak_rss_bytes", "lb_peak_memory_bytes",
    "peak_memory_bytes", "lb_peak_spool_bytes", "predicted_outcome",
    "predicted_unsent_bytes", "wall_s", "lab_exit", "lab_pid", "error",
    "results_dir"};

/* A run as named fields, shared by results.csv and --json. */
void
bench_run_fields(const struct bench *b, const struct run *r, struct field *f)
{
	const struct bench_point *pt = &b->sw.points[r->combo];
	bool err = strcmp(r->outcome, "error") == 0;
	size_t n = 0;

#define PUT(num, ...)                                                          \
	do {                                                                   \
		f[n].number = (num);                                           \
		snprintf(f[n].value, sizeof(f[n].value), __VA_ARGS__);         \
		n++;                                                           \
	} while (0)
	f[0].name = "run";
	PUT(true, "%zu", r->index + 1);
	f[1].name = "repeat";
	PUT(true, "%zu", r->rep + 1);
	for (int a = 0; a < BENCH_NAXES; a++) {
		f[n].name = axis_defs[a].column;
		PUT(axis_defs[a].type != V_ENUM &&
		        axis_defs[a].type != V_GIVEUP &&
		        axis_defs[a].type != V_KIND,
		    "%s", pt->values[a]);
	}
	n = 2 + BENCH_NAXES;
	PUT(false, "%s", r->outcome);
	PUT(!err, "%" PRIu64, r->client_bytes);
	PUT(!err, "%" PRIu64, r->unsent_bytes);
	PUT(!err, "%.3f", r->finish_s);
	PUT(!err, "%.3f", r->hold_s);
	PUT(!err, "%.3f", r->zw_s);
	PUT(!err, "%.3f", r->longest_zw_s);
	PUT(!err, "%" PRIu64, r->rss);
	PUT(!err, "%" PRIu64, r->mem);
	PUT(!err, "%" PRIu64, r->proxy_mem);
	PUT(!err, "%" PRIu64, r->spool);
	PUT(false, "%s", r->predicted);
	PUT(r->predicted_unsent >= 0, "%" PRId64,
	    r->predicted_unsent >= 0 ? r->predicted_unsent : 0);
	if (r->collected) { /* what ran it is not known here */
		PUT(true, "%s", "");
		PUT(true, "%s", "");
		PUT(true, "%s", "");
	} else {
		PUT(true, "%.1f", r->wall_s);
		PUT(true, "%d", r->lab_rc);
		PUT(true, "%ld", (long)r->lab_pid);
	}
	PUT(false, "%s", r->error);
	PUT(false, "%s", r->dir);
#undef PUT
	for (size_t i = 0; i < sizeof(result_columns) / sizeof(*result_columns);
	     i++)
		f[2 + BENCH_NAXES + i].name = result_columns[i];
	if (err)
		for (size_t i = 1; i <= 12; i++)
			f[2 + BENCH_NAXES + i].value[0] = '\0';
}

/* ---- the verb --------------------------------------------------------- */

struct bench_args {
	const char *sweep, *out, *jobs, *emit;
	char **collect; /* --collect's DIRs, in argv */
	size_t ncollect;
	bool json, verbose;
};

/* --jobs: N (1..BENCH_MAX_JOBS) or auto, eight per core: a lab run is
 * mostly waiting on its shaped links, and on 2 cores 16 at once keep the
 * outcomes, unsent bytes and timings of one at a time (docs/lab.md,
 * "Concurrent runs"); 0 for anything else. */
static size_t
jobs_value(const char *s)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	char *end;
	unsigned long n;

	if (s == NULL)
		return 1;
	if (strcmp(s, "auto") == 0)
		n = cores > 0 ? 8 * (unsigned long)cores : 8;
	else if (!isdigit((unsigned char)s[0]) ||
	    (n = strtoul(s, &end, 10), *end != '\0') || n == 0 ||
	    n > BENCH_MAX_JOBS)
		return 0;
	return n < BENCH_MAX_JOBS ? n : BENCH_MAX_JOBS;
}

/* 0, or 2 with a message for bad usage. */
static int
parse_args(int argc, char **argv, struct bench_args *a)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			a->json = true;
		else if (strcmp(argv[i], "-v") == 0)
			a->verbose = true;
		else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			a->out = argv[++i];
		else if (strncmp(argv[i], "--out=", 6) == 0)
			a->out = argv[i] + 6;
		else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
			a->jobs = argv[++i];
		else if (strncmp(argv[i], "--jobs=", 7) == 0)
			a->jobs = argv[i] + 7;
		else if (strcmp(argv[i], "--emit") == 0 && i + 1 < argc)
			a->emit = argv[++i];
		else if (strncmp(argv[i], "--emit=", 7) == 0)
			a->emit = argv[i] + 7;
		else if (strcmp(argv[i], "--collect") == 0 &&
		    a->collect == NULL)
			for (a->collect = argv + i + 1;
			     i + 1 < argc && argv[i + 1][0] != '-'; i++)
				a->ncollect++;
		else if (argv[i][0] != '-' && a->sweep == NULL)
			a->sweep = argv[i];
		else {
			fprintf(stderr, "sluice bench: bad argument '%s'\n",
			    argv[i]);
			bench_usage(stderr);
			return 2;
		}
	}
	if (a->collect != NULL &&
	    (a->ncollect == 0 || a->sweep != NULL || a->emit != NULL ||
	        a->jobs != NULL)) {
		fprintf(stderr,
		    "sluice bench: --collect DIR... takes the directories "
		    "(no sweep file, --emit or --jobs)\n");
		bench_usage(stderr);
		return 2;
	}
	if (a->emit != NULL && (a->jobs != NULL || a->out != NULL)) {
		fprintf(stderr,
		    "sluice bench: --emit DIR runs nothing "
		    "(no --jobs or --out)\n");
		return 2;
	}
	if (a->sweep == NULL && a->collect == NULL) {
		bench_usage(stderr);
		return 2;
	}
	if (jobs_value(a->jobs) == 0) {
		fprintf(stderr,
		    "sluice bench: --jobs '%s': a number of runs at a time, "
		    "1-%d, or auto\n",
		    a->jobs, BENCH_MAX_JOBS);
		return 2;
	}
	return 0;
}

/* OUT, or bench-results/NAME-YYYYmmdd-HHMMSS; created with its runs/
 * when runs go there. */
static int
make_out(struct bench *b, const char *out, char *buf, size_t len, bool runs_dir)
{
	char runs[PATH_MAX];
	time_t t = time(NULL);
	struct tm tm;

	if (out == NULL) {
		localtime_r(&t, &tm);
		mkdir("bench-results", 0755);
		snprintf(buf, len, "bench-results/%s-", b->sw.name);
		strftime(
		    buf + strlen(buf), len - strlen(buf), "%Y%m%d-%H%M%S", &tm);
	} else {
		snprintf(buf, len, "%s", out);
	}
	b->out = buf;
	snprintf(runs, sizeof(runs), "%s/runs", buf);
	if (mkdir(buf, 0755) == -1 && errno != EEXIST) {
		fprintf(stderr, "sluice bench: %s: %s\n", buf, strerror(errno));
		return -1;
	}
	if (runs_dir && mkdir(runs, 0755) == -1 && errno != EEXIST) {
		fprintf(
		    stderr, "sluice bench: %s: %s\n", runs, strerror(errno));
		return -1;
	}
	return 0;
}

/* --collect DIR...: the report of runs made elsewhere. */
static int
collect_main(struct bench *b, const struct bench_args *a)
{
	char err[BENCH_ERR_MAX], out[PATH_MAX - 128];
	int rc = 1;

	if (bench_collect_sweep(
	        a->collect, a->ncollect, &b->sw, err, sizeof(err)) == 0 &&
	    make_out(b, a->out, out, sizeof(out), false) == 0 &&
	    plan_runs(b) == 0 && bench_collect(b, a->collect, a->ncollect) == 0)
		rc = bench_report(b) < 0 ? 1 : 0;
	free(b->runs);
	bench_sweep_free(&b->sw);
	return rc;
}

int
bench_main(int argc, char **argv)
{
	struct bench_args a = {0};
	struct bench b = {0};
	char err[BENCH_ERR_MAX], out[PATH_MAX - 128];
	int rc;

	if ((rc = parse_args(argc, argv, &a)) != 0)
		return rc;
	b.json = a.json;
	b.verbose = a.verbose;
	if (a.collect != NULL)
		return collect_main(&b, &a);
	if (bench_sweep_load(a.sweep, &b.sw, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		bench_sweep_free(&b.sw);
		return 2;
	}
	if (a.emit != NULL) { /* runs nothing: needs no root */
		rc = plan_runs(&b) == 0 ? bench_emit(&b, a.emit) : 1;
		free(b.runs);
		bench_sweep_free(&b.sw);
		return rc;
	}
	b.jobs = jobs_value(a.jobs);
	b.tty = isatty(STDERR_FILENO) && !a.verbose;
	rc = 1;
	if (b.sw.mode == LAB_MODE_NETNS && geteuid() != 0)
		fprintf(stderr,
		    "sluice bench: the lab needs root (ip netns); "
		    "a base scenario with mode = loopback does "
		    "not\n");
	else if (make_out(&b, a.out, out, sizeof(out), true) == 0 &&
	    plan_runs(&b) == 0) {
		if (b.jobs > b.nruns)
			b.jobs = b.nruns;
		bench_catch_signals();
		rc = bench_run_all(&b);
		if (b.ndone > 0 && bench_report(&b) < 0)
			rc = 1;
	}
	free(b.runs);
	bench_sweep_free(&b.sw);
	return rc;
}

void
bench_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice bench SWEEP.ini [--jobs N|auto] [--out DIR] "
	    "[--json] [-v]\n"
	    "       sluice bench SWEEP.ini --emit DIR\n"
	    "       sluice bench --collect DIR... [--out DIR] [--json]\n"
	    "\n"
	    "Runs every combination of a sweep's axes (times repeat) through\n"
	    "`sluice lab`, each in fresh namespaces of its own (root): one\n"
	    "at a time, or --jobs N at once (auto: eight per core).  A run\n"
	    "whose lab fails to set up is started once more, then is an\n"
	    "error with its reason.\n"
	    "\n"
	    "Sweep file (INI):\n"
	    "  [bench]\n"
	    "    name    the sweep's name (default: the file's base name)\n"
	    "    base    the scenario to vary, relative to the sweep file\n"
	    "    repeat  runs of each combination, 1-20 (1)\n"
	    "  [axes]    each a list of values separated by ','\n");
	for (int i = 0; i < BENCH_NAXES; i++)
		fprintf(out, "    %-15s [%s] %s%s\n", axis_defs[i].name,
		    axis_defs[i].section, axis_defs[i].key,
		    axis_defs[i].sep == '|' ? "  (values separated by '|')"
		                            : "");
	fprintf(out,
	    "\n"
	    "Each value is checked with the lab's parsers, and every\n"
	    "combination is parsed as a scenario (and its proxy config\n"
	    "loaded) before the first run: a combination the lab would\n"
	    "refuse is an error naming its axis values.\n"
	    "\n"
	    "Output (--out DIR, default bench-results/NAME-TIME/):\n"
	    "  results.csv   one row per run, columns named with their units\n"
	    "  summary.md    per pair of varying axes: completion, median\n"
	    "                finish time, peak memory; the cheapest setting\n"
	    "                that completes every run\n"
	    "  plots/        completion, memory, hold, fidelity (.png, .gp)\n"
	    "  runs/NNN-*/   each run's scenario.ini, lab.stderr and results\n"
	    "  --json        the sweep and its runs as one JSON object\n"
	    "  -v            pass -v to each lab (commands in lab.stderr)\n"
	    "\n"
	    "Across hosts (docs/lab.md, \"Across hosts\": GNU parallel, "
	    "Slurm):\n"
	    "  --emit DIR    write each run as a self-contained scenario,\n"
	    "                DIR/NNN-LABEL.ini, with runs.txt (their names),\n"
	    "                manifest.json and sweep/ (the sweep, its base);\n"
	    "                run each with `sluice lab NNN-LABEL.ini --json >\n"
	    "                NNN-LABEL.json` (root) on any host\n"
	    "  --collect DIR...  the same report from the runs' summaries\n"
	    "                (NNN-LABEL.json, NNN-LABEL/summary.json or\n"
	    "                runs/NNN-LABEL/summary.json in any DIR); one DIR\n"
	    "                holds sweep/.  A run without one is an error row\n"
	    "\n"
	    "A run whose lab could not run (exit 1, no summary) is an error,\n"
	    "not a truncation.  Exit codes: 0 the sweep ran (whatever the\n"
	    "outcomes), 1 it could not run, 2 bad usage or sweep file, 128+N\n"
	    "stopped by signal N (the runs done are reported).\n");
}
