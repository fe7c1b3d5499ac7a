/*
 * test_config: the key table, the INI loader and its error messages
 * (config.h).
 *
 * Most tests walk config_keys[] instead of naming keys, so a key added to
 * the table is covered (stored, range-checked, reported with its line)
 * without touching this file; a key *type* added to config.h makes the
 * switches below warn (-Wswitch) until it has valid and bad values here.
 * Errors are compared whole: the exact text "t.ini:LINE: [section] key:
 * message" is what an operator reads.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/units.h"
#include "proxy/config.h"

#ifndef SLUICE_SOURCE_ROOT
#define SLUICE_SOURCE_ROOT "."
#endif

#define NAME    "t.ini"
#define TEXTMAX 16384
#define NKEYS   64 /* struct config's lines[] */
#define VALMAX  CONFIG_PATH_MAX

static char err[CONFIG_ERR_MAX];

static struct config *
load(const char *text)
{
	memset(err, 0, sizeof(err));
	return config_load_string(text, NAME, err, sizeof(err));
}

/* Loads text that must fail and checks the whole message. */
static void
load_fails(const char *text, const char *want)
{
	struct config *cfg = load(text);

	if (cfg != NULL || strcmp(err, want) != 0)
		print_error("config:\n%s\n got: %s\nwant: %s\n", text,
		    cfg != NULL ? "(loaded)" : err, want);
	assert_null(cfg);
	assert_string_equal(err, want);
}

static uint64_t
u64_at(const struct config *cfg, const struct config_key *k)
{
	return *(const uint64_t *)((const char *)cfg + k->offset);
}

static int
int_at(const struct config *cfg, const struct config_key *k)
{
	return *(const int *)((const char *)cfg + k->offset);
}

static const char *
str_at(const struct config *cfg, const struct config_key *k)
{
	return (const char *)cfg + k->offset;
}

static const struct sockaddr_any *
addr_at(const struct config *cfg, const struct config_key *k, size_t i)
{
	return (const struct sockaddr_any *)((const char *)cfg + k->offset) + i;
}

static int
port_of(const struct sockaddr_any *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return -1;
}

static int
same_addr(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0 &&
	    strcmp(a->text, b->text) == 0;
}

static size_t
nnames(const struct config_key *k)
{
	size_t n = 0;

	while (k->names[n] != NULL)
		n++;
	return n;
}

/* Do a and b hold the same value for k?  Compared through the table's
 * offset, the way the parser stored it. */
static int
same_value(
    const struct config *a, const struct config *b, const struct config_key *k)
{
	switch (k->type) {
	case CT_SIZE:
	case CT_DURATION:
	case CT_COUNT:
	case CT_COUNT_AUTO:
		return u64_at(a, k) == u64_at(b, k);
	case CT_ENUM:
		return int_at(a, k) == int_at(b, k);
	case CT_PATH:
		return strcmp(str_at(a, k), str_at(b, k)) == 0;
	case CT_ADDRESS:
	case CT_OPT_ADDRESS:
		return same_addr(addr_at(a, k, 0), addr_at(b, k, 0));
	case CT_SERVER:
		if (a->upstream.nservers != b->upstream.nservers)
			return 0;
		for (size_t i = 0; i < a->upstream.nservers; i++)
			if (!same_addr(addr_at(a, k, i), addr_at(b, k, i)))
				return 0;
		return 1;
	}
	return 0;
}

static void
assert_same_config(const struct config *a, const struct config *b)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (!same_value(a, b, k))
			fail_msg("[%s] %s differs", k->section, k->key);
	}
}

/* A whole number as CT_COUNT takes it: digits only. */
static uint64_t
count_value(const char *text)
{
	char *end;
	uint64_t v;

	assert_true(isdigit((unsigned char)text[0]));
	errno = 0;
	v = strtoull(text, &end, 10);
	assert_int_equal(errno, 0);
	assert_int_equal(*end, '\0');
	return v;
}

/* The table's default for k, parsed the way the loader does. */
static uint64_t
default_u64(const struct config_key *k)
{
	uint64_t v;

	if (k->type == CT_COUNT || k->type == CT_COUNT_AUTO)
		return count_value(k->def);
	if (k->type == CT_SIZE)
		assert_int_equal(units_parse_size(k->def, &v), 0);
	else
		assert_int_equal(units_parse_duration(k->def, &v), 0);
	return v;
}

static void
check_defaults(const struct config *cfg)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		const char *const *n;

		switch (k->type) {
		case CT_SIZE:
		case CT_DURATION:
		case CT_COUNT:
		case CT_COUNT_AUTO:
			assert_true(u64_at(cfg, k) == default_u64(k));
			/* A default outside its own range would be a bug. */
			assert_true(u64_at(cfg, k) >= k->min &&
			    u64_at(cfg, k) <= k->max);
			break;
		case CT_ENUM:
			n = k->names;
			assert_string_equal(n[int_at(cfg, k)], k->def);
			break;
		case CT_PATH:
			assert_string_equal(str_at(cfg, k), k->def);
			break;
		case CT_ADDRESS:
			assert_string_equal(addr_at(cfg, k, 0)->text, k->def);
			break;
		case CT_OPT_ADDRESS:
			assert_string_equal(addr_at(cfg, k, 0)->text, k->def);
			/* "" is no address at all, not a zeroed one. */
			if (k->def[0] == '\0')
				assert_int_equal(addr_at(cfg, k, 0)->len, 0);
			break;
		case CT_SERVER:
			assert_int_equal(cfg->upstream.nservers, 1);
			assert_string_equal(addr_at(cfg, k, 0)->text, k->def);
			break;
		}
	}
}

/* ---- defaults ------------------------------------------------------- */

static void
defaults_empty(void **state)
{
	struct config *cfg;

	(void)state;
	assert_non_null(cfg = load(""));
	check_defaults(cfg);
	for (size_t i = 0; i < config_nkeys; i++)
		assert_int_equal(cfg->lines[i], 0);
	assert_string_equal(cfg->path, NAME);
	config_free(cfg);
}

static void
defaults_with_server(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("[upstream]\nserver = 10.1.2.3:8000\n");
	assert_non_null(cfg);
	/* The first server line replaces the default server. */
	assert_int_equal(cfg->upstream.nservers, 1);
	assert_string_equal(cfg->upstream.servers[0].text, "10.1.2.3:8000");
	assert_int_equal(port_of(&cfg->upstream.servers[0]), 8000);
	assert_int_equal(config_line(cfg, "upstream", "server"), 2);
	/* Everything else is the documented default. */
	assert_string_equal(cfg->listen.address.text, "127.0.0.1:8080");
	assert_int_equal(cfg->listen.address.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&cfg->listen.address), 8080);
	assert_true(cfg->listen.drain_timeout == 30000);
	assert_int_equal(cfg->upstream.balance, BALANCE_ROUND_ROBIN);
	assert_true(cfg->upstream.connect_timeout == 5000);
	assert_true(cfg->upstream.read_timeout == 60000);
	assert_true(cfg->upstream.rcvbuf == 0);
	assert_true(cfg->upstream.window_clamp == 0);
	assert_true(cfg->upstream.user_timeout == 0);
	assert_true(cfg->client.sndbuf == 0);
	assert_true(cfg->client.user_timeout == 0);
	assert_true(cfg->client.idle_timeout == 60000);
	assert_true(cfg->client.max_header_size == 32 * 1024);
	assert_int_equal(cfg->buffer.policy, POLICY_PAUSE);
	assert_true(cfg->buffer.high_watermark == 1024 * 1024);
	assert_true(cfg->buffer.low_watermark == 256 * 1024);
	assert_true(cfg->buffer.block_size == 64 * 1024);
	assert_int_equal(cfg->log.level, 2); /* info */
	config_free(cfg);
}

/* ---- every key stored --------------------------------------------- */

/*
 * A valid value for k, different from its default where the key allows
 * it.  Pass 0 takes the low end of the range, pass 1 the high end (and
 * another enum name, another address), so both bounds are accepted.
 */
static int
valid_value(const struct config_key *k, int pass, char *buf, size_t len)
{
	uint64_t v;

	switch (k->type) {
	case CT_COUNT_AUTO:
		if (pass == 0) {
			snprintf(buf, len, "auto");
			break;
		}
		/* the high end as a count */
		__attribute__((fallthrough));
	case CT_COUNT:
		v = pass == 0 ? k->min : k->max;
		if (v == default_u64(k))
			v = v < k->max ? v + 1 : v - 1;
		snprintf(buf, len, "%llu", (unsigned long long)v);
		break;
	case CT_PATH:
		/* Empty is allowed ("none" or "the default place"); the
		 * long one has spaces inside and ends well past 128 bytes,
		 * and still fits a 200-byte INI line. */
		if (pass == 0 && k->def[0] != '\0')
			snprintf(buf, len, "%s", "");
		else if (pass == 0)
			snprintf(buf, len, "/tmp/sluice-%s", k->key);
		else
			snprintf(buf, len,
			    "/srv/sluice test/%s/"
			    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
			    "/end",
			    k->key);
		break;
	case CT_OPT_ADDRESS:
		/* "" and port 0: see admin_address. */
		snprintf(buf, len, "%s",
		    pass == 0 ? "127.0.0.1:9100" : "[::1]:9101");
		break;
	case CT_SIZE:
	case CT_DURATION:
		v = pass == 0 ? k->min : k->max;
		if (v == default_u64(k))
			v += k->type == CT_SIZE ? 1024 : 1000;
		if (k->type == CT_SIZE)
			units_fmt_size(v, buf, len);
		else
			units_fmt_duration(v, buf, len);
		break;
	case CT_ENUM:
		v = pass == 0 ? nnames(k) - 1 : 0;
		snprintf(buf, len, "%s", k->names[v]);
		return (int)v;
	case CT_ADDRESS:
		snprintf(
		    buf, len, "%s", pass == 0 ? "127.0.0.1:0" : "[::1]:8081");
		break;
	case CT_SERVER:
		snprintf(buf, len, "%s",
		    pass == 0 ? "127.0.0.2:9001" : "[::1]:9002");
		break;
	}
	return 0;
}

static void
check_stored(const struct config *cfg, const struct config_key *k,
    const char *text, int idx, int line)
{
	const struct sockaddr_any *a;
	uint64_t v;

	assert_int_equal(config_line(cfg, k->section, k->key), line);
	switch (k->type) {
	case CT_SIZE:
		assert_int_equal(units_parse_size(text, &v), 0);
		assert_true(u64_at(cfg, k) == v);
		break;
	case CT_COUNT:
		assert_true(u64_at(cfg, k) == count_value(text));
		break;
	case CT_COUNT_AUTO: /* "auto" is stored as 0 */
		assert_true(u64_at(cfg, k) ==
		    (strcmp(text, "auto") == 0 ? 0 : count_value(text)));
		break;
	case CT_PATH:
		assert_string_equal(str_at(cfg, k), text);
		break;
	case CT_DURATION:
		assert_int_equal(units_parse_duration(text, &v), 0);
		assert_true(u64_at(cfg, k) == v);
		break;
	case CT_ENUM:
		assert_int_equal(int_at(cfg, k), idx);
		break;
	case CT_ADDRESS:
	case CT_SERVER:
	case CT_OPT_ADDRESS:
		if (k->type == CT_SERVER)
			assert_int_equal(cfg->upstream.nservers, 1);
		a = addr_at(cfg, k, 0);
		if (k->type == CT_OPT_ADDRESS && text[0] == '\0') {
			assert_int_equal(a->len, 0);
			break;
		}
		assert_string_equal(a->text, text);
		assert_int_equal(
		    a->ss.ss_family, text[0] == '[' ? AF_INET6 : AF_INET);
		assert_int_equal(port_of(a), atoi(strrchr(text, ':') + 1));
		break;
	}
}

static void
every_key_stored(void **state)
{
	static char vals[NKEYS][VALMAX];
	char text[TEXTMAX];
	int idx[NKEYS], line[NKEYS];

	(void)state;
	assert_true(config_nkeys <= NKEYS);
	for (int pass = 0; pass < 2; pass++) {
		const char *section = "";
		struct config *cfg, *def;
		size_t n = 0;
		int ln = 1;

		n += (size_t)snprintf(text, sizeof(text), "; every key\n");
		for (size_t i = 0; i < config_nkeys; i++) {
			const struct config_key *k = &config_keys[i];

			if (strcmp(section, k->section) != 0) {
				section = k->section;
				n += (size_t)snprintf(text + n,
				    sizeof(text) - n, "[%s]\n", section);
				ln++;
			}
			idx[i] = valid_value(k, pass, vals[i], sizeof(vals[i]));
			n += (size_t)snprintf(text + n, sizeof(text) - n,
			    "%s = %s\n", k->key, vals[i]);
			line[i] = ++ln;
			assert_true(n < sizeof(text));
		}
		cfg = load(text);
		if (cfg == NULL)
			fail_msg("pass %d: %s\n%s", pass, err, text);
		assert_non_null(def = load(""));
		for (size_t i = 0; i < config_nkeys; i++) {
			const struct config_key *k = &config_keys[i];

			check_stored(cfg, k, vals[i], idx[i], line[i]);
			/* Proves the value was stored, not left at its
			 * default (valid_value avoids the default where the
			 * key has another value). */
			if (strcmp(vals[i], k->def) != 0)
				assert_false(same_value(cfg, def, k));
		}
		config_free(def);
		config_free(cfg);
	}
}

/* ---- every key's bad values ------------------------------------------ */

struct bad {
	const char *value;
	const char *msg; /* NULL: the type's syntax message */
};

static const char *
syntax_msg(const struct config_key *k)
{
	switch (k->type) {
	case CT_SIZE:
		return "not a size (bytes, or with k, M, G, T)";
	case CT_DURATION:
		return "not a duration (ms, s, m, h)";
	case CT_ADDRESS:
		return "not an address (host:port or [v6]:port)";
	case CT_SERVER:
		return "not a server (host:port or [v6]:port, port > 0)";
	case CT_OPT_ADDRESS:
		return "not an address (host:port or [v6]:port), a Unix socket "
		       "path, or empty for none";
	case CT_COUNT:
		return "not a whole number";
	case CT_COUNT_AUTO:
		return "not a whole number or auto";
	case CT_PATH:
		return "too long";
	case CT_ENUM:
		break;
	}
	return "";
}

/* Puts the key on line 3, after a comment and its section line. */
static void
bad_value(const struct config_key *k, const char *value, const char *msg)
{
	char text[1024], want[CONFIG_ERR_MAX];

	snprintf(text, sizeof(text), "; a comment\n[%s]\n%s = %s\n", k->section,
	    k->key, value);
	snprintf(want, sizeof(want), NAME ":3: [%s] %s: %s", k->section, k->key,
	    msg != NULL ? msg : syntax_msg(k));
	load_fails(text, want);
}

static void
bad_number(const struct config_key *k)
{
	static const struct bad syntax[] = {
	    {"", NULL},
	    {"-1", NULL},
	    {"12Q", NULL},
	    {"12 k x", NULL},
	    {"1,5", NULL},
	    {"ten", NULL},
	};
	char range[128], a[32], b[32], v[32];
	int size = k->type == CT_SIZE;

	for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
		bad_value(k, syntax[i].value, NULL);
	if (size)
		snprintf(range, sizeof(range), "out of range (%s to %s)",
		    units_fmt_size(k->min, a, sizeof(a)),
		    units_fmt_size(k->max, b, sizeof(b)));
	else
		snprintf(range, sizeof(range), "out of range (%s to %s)",
		    units_fmt_duration(k->min, a, sizeof(a)),
		    units_fmt_duration(k->max, b, sizeof(b)));
	if (k->min > 0) {
		snprintf(v, sizeof(v), size ? "%llu" : "%llums",
		    (unsigned long long)(k->min - 1));
		bad_value(k, v, range);
	}
	snprintf(v, sizeof(v), size ? "%llu" : "%llums",
	    (unsigned long long)(k->max + 1));
	bad_value(k, v, range);
	/* beyond 64 bits: out of range too, not "not a size" (issue 13) */
	bad_value(k, "99999999999999999999999", range);
	bad_value(k, size ? "9999999999T" : "99999999999999999999h", range);
}

static void
bad_count(const struct config_key *k)
{
	static const char *const syntax[] = {
	    "",
	    "-1",
	    "+1",
	    "1.5",
	    "1k",
	    "2M",
	    "ten",
	    "0x10",
	    "1 2",
	    "1,5",
	    "99999999999999999999999", /* ERANGE in strtoull */
	    NULL,
	};
	char range[128], v[32];

	for (size_t i = 0; syntax[i] != NULL; i++)
		bad_value(k, syntax[i], NULL);
	snprintf(range, sizeof(range), "out of range (%llu to %llu)",
	    (unsigned long long)k->min, (unsigned long long)k->max);
	if (k->min > 0) {
		snprintf(
		    v, sizeof(v), "%llu", (unsigned long long)(k->min - 1));
		bad_value(k, v, range);
	}
	snprintf(v, sizeof(v), "%llu", (unsigned long long)(k->max + 1));
	bad_value(k, v, range);
}

/*
 * A path that does not fit CONFIG_PATH_MAX is refused at its own line,
 * never cut short: either by the path check or, since inih reads lines of
 * at most 200 bytes, by the line reader.
 */
static void
bad_path(const struct config_key *k)
{
	char text[1024], value[CONFIG_PATH_MAX + 1], prefix[64];
	struct config *cfg;

	memset(value, 'p', CONFIG_PATH_MAX);
	value[0] = '/';
	value[CONFIG_PATH_MAX] = '\0';
	snprintf(text, sizeof(text), "; a comment\n[%s]\n%s = %s\n", k->section,
	    k->key, value);
	cfg = load(text);
	if (cfg != NULL)
		fail_msg("[%s] %s: a %d-byte path loaded (stored %zu bytes)",
		    k->section, k->key, CONFIG_PATH_MAX,
		    strlen(str_at(cfg, k)));
	snprintf(
	    prefix, sizeof(prefix), NAME ":3: [%s] %s: ", k->section, k->key);
	if (strcmp(err, NAME ":3: line longer than 198 bytes") != 0 &&
	    (strncmp(err, prefix, strlen(prefix)) != 0 ||
	        strcmp(err + strlen(prefix), syntax_msg(k)) != 0))
		fail_msg("[%s] %s: error %s", k->section, k->key, err);
}

static void
bad_enum(const struct config_key *k)
{
	char list[256], msg[512], upper[64];
	size_t n = 0;

	list[0] = '\0';
	for (size_t i = 0; k->names[i] != NULL; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s",
		    i ? ", " : "", k->names[i]);
	snprintf(msg, sizeof(msg), "'nosuch' is not one of: %s", list);
	bad_value(k, "nosuch", msg);
	snprintf(msg, sizeof(msg), "'' is not one of: %s", list);
	bad_value(k, "", msg);
	/* Names are matched exactly, like every other spelling in the
	 * file. */
	for (n = 0; k->names[0][n] != '\0' && n < sizeof(upper) - 1; n++)
		upper[n] = (char)toupper((unsigned char)k->names[0][n]);
	upper[n] = '\0';
	snprintf(msg, sizeof(msg), "'%s' is not one of: %s", upper, list);
	bad_value(k, upper, msg);
}

static void
bad_address(const struct config_key *k)
{
	static const char *const syntax[] = {
	    "",
	    "nonsense",
	    "127.0.0.1",
	    "127.0.0.1:",
	    ":80",
	    "1.2.3.4:99999",
	    "1.2.3.4:-1",
	    "1.2.3.4:80x",
	    "[::1]8080",
	    "[::1:8080",
	    "[]:80",
	    "::1:8080",
	    "1.2.3.4:99999999999999999999999",
	    NULL,
	};

	/* An empty value means "none" for an optional address. */
	for (size_t i = k->type == CT_OPT_ADDRESS ? 1 : 0; syntax[i] != NULL;
	     i++)
		bad_value(k, syntax[i], NULL);
	bad_value(k, "nosuch.invalid:80", "host name does not resolve");
	if (k->type == CT_SERVER)
		bad_value(k, "127.0.0.1:0", NULL);
}

static void
every_key_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		switch (k->type) {
		case CT_SIZE:
		case CT_DURATION:
			bad_number(k);
			break;
		case CT_ENUM:
			bad_enum(k);
			break;
		case CT_ADDRESS:
		case CT_SERVER:
		case CT_OPT_ADDRESS:
			bad_address(k);
			break;
		case CT_COUNT:
		case CT_COUNT_AUTO:
			bad_count(k);
			break;
		case CT_PATH:
			bad_path(k);
			break;
		}
	}
}

static void
every_key_twice(void **state)
{
	char text[1024], want[CONFIG_ERR_MAX], v[VALMAX];

	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (k->type == CT_SERVER)
			continue; /* repeatable: see servers_in_order */
		valid_value(k, 0, v, sizeof(v));
		snprintf(text, sizeof(text),
		    "[%s]\n%s = %s\n; again\n%s = %s\n", k->section, k->key, v,
		    k->key, v);
		snprintf(want, sizeof(want),
		    NAME ":4: [%s] %s: given twice (first on line 2)",
		    k->section, k->key);
		load_fails(text, want);
	}
}

/* ---- file structure errors ------------------------------------------ */

static void
unknown_key(void **state)
{
	(void)state;
	load_fails("; c\n[upstream]\nnosuch = 1\n",
	    NAME ":3: [upstream] nosuch: unknown key");
	/* Keys are spelled exactly, and belong to one section. */
	load_fails("[buffer]\nBlock_Size = 8k\n",
	    NAME ":2: [buffer] Block_Size: unknown key");
	load_fails("[listen]\nserver = 127.0.0.1:80\n",
	    NAME ":2: [listen] server: unknown key");
}

static void
unknown_section(void **state)
{
	(void)state;
	/* Reported at the section line, even when it holds no key. */
	load_fails("[listen]\naddress = 127.0.0.1:0\n; c\n[nosuch]\n",
	    NAME ":4: [nosuch]: unknown section");
	load_fails("[nosuch]", NAME ":1: [nosuch]: unknown section");
	load_fails(
	    "; c\n[nosuch]\nfoo = 1\n", NAME ":2: [nosuch]: unknown section");
	load_fails("[Listen]\n", NAME ":1: [Listen]: unknown section");
	/* A key before any section has none. */
	load_fails("; c\nfoo = 1\n", NAME ":2: foo: key outside any [section]");
}

static void
syntax_error(void **state)
{
	(void)state;
	load_fails("[listen]\n; c\nthis is not a key\n",
	    NAME ":3: syntax error (expected [section] or key = value)");
	load_fails("[listen\n",
	    NAME ":1: syntax error (expected [section] or key = value)");
}

static void
watermarks(void **state)
{
	struct config *cfg;

	(void)state;
	/* low above the default high: low's line is named. */
	load_fails("; c\n[buffer]\nlow_watermark = 2M\n",
	    NAME ":3: [buffer] low_watermark: low_watermark (2097152) is "
	         "above high_watermark (1048576)");
	/* Both given, high first: still low's line. */
	load_fails("[buffer]\nhigh_watermark = 64k\nlow_watermark = 128k\n",
	    NAME ":3: [buffer] low_watermark: low_watermark (131072) is "
	         "above high_watermark (65536)");
	/* Only high given, below the default low: high's line. */
	load_fails("[buffer]\n; c\nhigh_watermark = 128k\n",
	    NAME ":3: [buffer] high_watermark: low_watermark (262144) is "
	         "above high_watermark (131072)");
	/* Below its 4k minimum. */
	load_fails("; c\n[buffer]\nhigh_watermark = 1k\n",
	    NAME ":3: [buffer] high_watermark: out of range (4k to 64G)");
	/* low == high is allowed; so is low = 0. */
	cfg = load("[buffer]\nhigh_watermark = 64k\nlow_watermark = 64k\n");
	assert_non_null(cfg);
	assert_true(cfg->buffer.high_watermark == 65536);
	assert_true(cfg->buffer.low_watermark == 65536);
	config_free(cfg);
	cfg = load("[buffer]\nlow_watermark = 0\n");
	assert_non_null(cfg);
	assert_true(cfg->buffer.low_watermark == 0);
	config_free(cfg);
}

/* policy spill needs somewhere to spill (issue 4); the error names
 * spill_dir's line wherever policy was set. */
static void
spill_dir_needed(void **state)
{
	struct config *cfg;

	(void)state;
	load_fails("[buffer]\npolicy = spill\n; c\nspill_dir =\n",
	    NAME ":4: [buffer] spill_dir: policy spill needs a spill_dir");
	load_fails(
	    "[buffer]\nspill_dir =\nhigh_watermark = 2M\npolicy = spill\n",
	    NAME ":2: [buffer] spill_dir: policy spill needs a spill_dir");
	/* Other policies do not need one. */
	for (int i = 0; i < 2; i++) {
		cfg = load(i == 0 ? "[buffer]\npolicy = pause\nspill_dir =\n"
		                  : "[buffer]\npolicy = pace\nspill_dir =\n");
		if (cfg == NULL)
			fail_msg("%s", err);
		assert_string_equal(cfg->buffer.spill_dir, "");
		assert_int_equal(
		    cfg->buffer.policy, i == 0 ? POLICY_PAUSE : POLICY_PACE);
		config_free(cfg);
	}
	/* The default directory serves policy spill. */
	cfg = load("[buffer]\npolicy = spill\n");
	assert_non_null(cfg);
	assert_int_equal(cfg->buffer.policy, POLICY_SPILL);
	assert_string_equal(cfg->buffer.spill_dir, "/var/tmp");
	config_free(cfg);
	/* Stored as written, spaces inside kept. */
	cfg = load("[buffer]\npolicy = spill\nspill_dir =  /var/spool/my dir \n"
	           "spill_limit = 8M\nspill_total = 64M\n");
	assert_non_null(cfg);
	assert_string_equal(cfg->buffer.spill_dir, "/var/spool/my dir");
	assert_true(cfg->buffer.spill_limit == 8 * 1024 * 1024);
	assert_true(cfg->buffer.spill_total == 64 * 1024 * 1024);
	config_free(cfg);
}

/* memory_limit below high_watermark could never let one download fill its
 * pipe: refused at memory_limit's line (issue 4).  0 means no limit. */
static void
memory_limit(void **state)
{
	struct config *cfg;

	(void)state;
	load_fails("[buffer]\nhigh_watermark = 2M\n; c\nmemory_limit = 1M\n",
	    NAME ":4: [buffer] memory_limit: memory_limit (1048576) is below "
	         "high_watermark (2097152)");
	/* Given before high_watermark: still memory_limit's line. */
	load_fails("; c\n[buffer]\nmemory_limit = 64k\nhigh_watermark = 128k\n",
	    NAME ":3: [buffer] memory_limit: memory_limit (65536) is below "
	         "high_watermark (131072)");
	/* Only memory_limit given, below the default high_watermark. */
	load_fails("[buffer]\nmemory_limit = 1023k\n",
	    NAME ":2: [buffer] memory_limit: memory_limit (1047552) is below "
	         "high_watermark (1048576)");
	/* Only high_watermark given, above the default limit: refused too
	 * (the line named is the implementation's choice). */
	assert_null(load("[buffer]\nhigh_watermark = 2G\n"));
	assert_non_null(strstr(err,
	    "memory_limit (1073741824) is below "
	    "high_watermark (2147483648)"));
	/* Equal is enough. */
	cfg = load("[buffer]\nhigh_watermark = 8M\nmemory_limit = 8M\n");
	assert_non_null(cfg);
	assert_true(cfg->buffer.memory_limit == 8 * 1024 * 1024);
	config_free(cfg);
	/* 0: no limit, whatever high_watermark is. */
	cfg = load("[buffer]\nmemory_limit = 0\nhigh_watermark = 64G\n"
	           "low_watermark = 1G\n");
	assert_non_null(cfg);
	assert_true(cfg->buffer.memory_limit == 0);
	config_free(cfg);
}

static uint64_t
zwp_ms(const char *client)
{
	char text[512];
	struct config *cfg;
	uint64_t ms;

	snprintf(text, sizeof(text), "[client]\n%s", client);
	cfg = load(text);
	if (cfg == NULL)
		fail_msg("%s\n%s", err, text);
	ms = config_client_zwp_ms(cfg);
	config_free(cfg);
	return ms;
}

/* The zero-window give-up time toward clients (config.h). */
static void
client_zwp_ms(void **state)
{
	(void)state;
	/* 3 probes from 200 ms: 200 + 400 + 800. */
	assert_int_equal(zwp_ms("zwp_timeout = 0\nzwp_probes = 3\n"
	                        "zwp_interval = 200ms\n"),
	    1400);
	/* zwp_interval's default is 200ms. */
	assert_int_equal(zwp_ms("zwp_timeout = 0\nzwp_probes = 3\n"), 1400);
	assert_int_equal(
	    zwp_ms("zwp_timeout = 0\nzwp_probes = 1\nzwp_interval = 3s\n"),
	    3000);
	/* Both: the smaller. */
	assert_int_equal(zwp_ms("zwp_timeout = 1s\nzwp_probes = 3\n"
	                        "zwp_interval = 200ms\n"),
	    1000);
	assert_int_equal(zwp_ms("zwp_timeout = 5s\nzwp_probes = 3\n"
	                        "zwp_interval = 200ms\n"),
	    1400);
	assert_int_equal(
	    zwp_ms("zwp_timeout = 1400ms\nzwp_probes = 3\n"), 1400);
	/* One of them. */
	assert_int_equal(zwp_ms("zwp_timeout = 3s\n"), 3000);
	assert_int_equal(zwp_ms("zwp_timeout = 3s\nzwp_probes = 0\n"
	                        "zwp_interval = 1ms\n"),
	    3000);
	/* Neither. */
	assert_int_equal(zwp_ms("zwp_timeout = 0\nzwp_probes = 0\n"), 0);
	/* The defaults: zwp_timeout alone. */
	assert_int_equal(zwp_ms(""), 5 * 60 * 1000);
	/* Backoff doubles up to 120 s (TCP_RTO_MAX) and stays there:
	 * 200 ms * (2^10 - 1) for 10 probes, then 120 s per probe. */
	assert_int_equal(zwp_ms("zwp_timeout = 0\nzwp_probes = 10\n"), 204600);
	assert_int_equal(
	    zwp_ms("zwp_timeout = 0\nzwp_probes = 12\n"), 204600 + 240000);
	/* The largest: 64 probes of an hour's interval, each capped. */
	assert_int_equal(zwp_ms("zwp_timeout = 0\nzwp_probes = 64\n"
	                        "zwp_interval = 1h\n"),
	    64 * 120000);
	assert_int_equal(zwp_ms("zwp_timeout = 24h\nzwp_probes = 64\n"
	                        "zwp_interval = 1ms\n"),
	    /* 1+2+...+65536 ms, then 47 probes of 120 s */
	    131071 + 47 * 120000);
}

/* The other new whole-number and on/off keys, by name (issue 4). */
static void
resume_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("[buffer]\nresume = on\nresume_attempts = 0\n"
	           "resume_backoff = 250ms\n");
	assert_non_null(cfg);
	assert_int_equal(cfg->buffer.resume, 1);
	assert_true(cfg->buffer.resume_attempts == 0);
	assert_true(cfg->buffer.resume_backoff == 250);
	config_free(cfg);
	load_fails("[buffer]\nresume = yes\n",
	    NAME ":2: [buffer] resume: 'yes' is not one of: off, on");
	load_fails("[buffer]\nresume_attempts = 101\n",
	    NAME ":2: [buffer] resume_attempts: out of range (0 to 100)");
	load_fails("[client]\n\nzwp_probes = 65\n",
	    NAME ":3: [client] zwp_probes: out of range (0 to 64)");
	load_fails("[client]\nzwp_probes = 3s\n",
	    NAME ":2: [client] zwp_probes: not a whole number");
	load_fails("[client]\nzwp_interval = 0\n",
	    NAME ":2: [client] zwp_interval: out of range (1ms to 1h)");
	load_fails("[buffer]\n\nblock_size = 9999999999T\n",
	    NAME ":3: [buffer] block_size: out of range (4k to 16M)");
}

/* [admin] address: empty for none, else an address to bind; port 0 (any
 * free port) like [listen] address, which is how the tests bind it. */
static void
admin_address(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("[admin]\naddress =\n");
	assert_non_null(cfg);
	assert_int_equal(cfg->admin.address.len, 0);
	assert_string_equal(cfg->admin.address.text, "");
	assert_int_equal(config_line(cfg, "admin", "address"), 2);
	config_free(cfg);

	cfg = load("[admin]\naddress = 127.0.0.1:9100\n");
	assert_non_null(cfg);
	assert_int_equal(cfg->admin.address.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&cfg->admin.address), 9100);
	assert_string_equal(cfg->admin.address.text, "127.0.0.1:9100");
	config_free(cfg);

	cfg = load("; c\n[admin]\naddress = 127.0.0.1:0\n");
	if (cfg == NULL)
		fail_msg("[admin] address = 127.0.0.1:0 refused: %s", err);
	assert_int_equal(cfg->admin.address.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&cfg->admin.address), 0);
	assert_true(cfg->admin.address.len == sizeof(struct sockaddr_in));
	config_free(cfg);
}

/* [admin] address may be a Unix socket path; [admin] faults = on only
 * with an admin address on loopback or a Unix socket (issue 16). */
static void
admin_faults(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("[admin]\naddress = /run/sluice/admin.sock\nfaults = on\n");
	if (cfg == NULL)
		fail_msg("a Unix socket path refused: %s", err);
	assert_int_equal(cfg->admin.address.ss.ss_family, AF_UNIX);
	assert_string_equal(cfg->admin.address.text, "/run/sluice/admin.sock");
	assert_int_equal(cfg->admin.faults, 1);
	config_free(cfg);
	cfg = load("[admin]\naddress = [::1]:0\nfaults = on\n");
	assert_non_null(cfg);
	config_free(cfg);
	cfg = load("[admin]\naddress = 127.0.0.2:0\n");
	assert_non_null(cfg);
	assert_int_equal(cfg->admin.faults, 0);
	config_free(cfg);
	load_fails("[admin]\naddress = 0.0.0.0:9100\n\nfaults = on\n",
	    NAME ":4: [admin] faults: on is refused: [admin] address "
	         "0.0.0.0:9100 is not on loopback nor a Unix socket path");
	load_fails("[admin]\nfaults = on\n",
	    NAME ":2: [admin] faults: on needs an [admin] address (loopback "
	         "or a Unix socket path)");
}

/* [log] access: a file name or "" for stderr. */
static void
access_log(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("[log]\naccess = /var/log/sluice/access.json\n");
	assert_non_null(cfg);
	assert_string_equal(cfg->log.access, "/var/log/sluice/access.json");
	config_free(cfg);
	cfg = load("[log]\naccess =\n");
	assert_non_null(cfg);
	assert_string_equal(cfg->log.access, "");
	assert_int_equal(config_line(cfg, "log", "access"), 2);
	config_free(cfg);
}

static void
servers_in_order(void **state)
{
	static const char *const want[] = {
	    "127.0.0.1:9001",
	    "[::1]:9002",
	    "10.0.0.3:9003",
	    "127.0.0.1:9001",
	};
	struct config *cfg;

	(void)state;
	cfg = load("[upstream]\nserver = 127.0.0.1:9001\n"
	           "server = [::1]:9002\n"
	           "balance = least-conn\n"
	           "server = 10.0.0.3:9003\n"
	           "[listen]\n"
	           "[upstream]\n"
	           "server = 127.0.0.1:9001\n");
	assert_non_null(cfg);
	assert_int_equal(cfg->upstream.nservers, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_string_equal(cfg->upstream.servers[i].text, want[i]);
		assert_int_equal(port_of(&cfg->upstream.servers[i]),
		    atoi(strrchr(want[i], ':') + 1));
	}
	assert_int_equal(cfg->upstream.servers[1].ss.ss_family, AF_INET6);
	assert_int_equal(cfg->upstream.balance, BALANCE_LEAST_CONN);
	/* The line of a repeated key is its first. */
	assert_int_equal(config_line(cfg, "upstream", "server"), 2);
	config_free(cfg);
}

static void
too_many_servers(void **state)
{
	char text[TEXTMAX], want[CONFIG_ERR_MAX];
	struct config *cfg;
	size_t n;

	(void)state;
	n = (size_t)snprintf(text, sizeof(text), "[upstream]\n");
	for (int i = 0; i < CONFIG_MAX_SERVERS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "server = 127.0.0.1:%d\n", 1000 + i);
	assert_non_null(cfg = load(text));
	assert_int_equal(cfg->upstream.nservers, CONFIG_MAX_SERVERS);
	assert_int_equal(port_of(&cfg->upstream.servers[63]), 1063);
	config_free(cfg);
	snprintf(text + n, sizeof(text) - n, "server = 127.0.0.1:2000\n");
	snprintf(want, sizeof(want),
	    NAME ":%d: [upstream] server: too many servers",
	    CONFIG_MAX_SERVERS + 2);
	load_fails(text, want);
}

static void
addresses(void **state)
{
	struct sockaddr_any a;
	const struct sockaddr_in *in = (const struct sockaddr_in *)&a.ss;
	char longname[100];

	(void)state;
	assert_int_equal(address_parse("127.0.0.1:0", 1, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_int_equal(port_of(&a), 0);
	assert_true(in->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
	assert_string_equal(a.text, "127.0.0.1:0");

	assert_int_equal(address_parse("[::1]:8080", 0, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_int_equal(port_of(&a), 8080);

	assert_int_equal(address_parse("localhost:80", 0, &a), 0);
	assert_int_equal(port_of(&a), 80);
	assert_string_equal(a.text, "localhost:80");

	assert_int_equal(address_parse("*:81", 1, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_true(in->sin_addr.s_addr == htonl(INADDR_ANY));
	assert_int_equal(port_of(&a), 81);

	assert_int_equal(address_parse("1.2.3.4:65535", 0, &a), 0);
	assert_int_equal(port_of(&a), 65535);

	assert_int_equal(address_parse("nonsense", 1, &a), -EINVAL);
	assert_int_equal(address_parse("1.2.3.4:99999", 1, &a), -ERANGE);
	assert_int_equal(address_parse("1.2.3.4:65536", 1, &a), -ERANGE);
	assert_int_equal(address_parse("1.2.3.4:0", 0, &a), -ERANGE);
	assert_int_equal(address_parse("1.2.3.4:", 1, &a), -EINVAL);
	assert_int_equal(address_parse("[::1]8080", 1, &a), -EINVAL);
	assert_int_equal(address_parse("::1:8080", 1, &a), -EINVAL);
	assert_int_equal(address_parse("nosuch.invalid:80", 1, &a), -ENOENT);
	/* Longer than the text kept for logs. */
	memset(longname, 'a', sizeof(longname));
	strcpy(longname + sizeof(longname) - 4, ":80");
	assert_int_equal(address_parse(longname, 1, &a), -EINVAL);
}

static void
config_file_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("; sluice\n"
	           "\n"
	           "[listen]\n"
	           "address = 127.0.0.1:0\n"
	           "[buffer]\n"
	           "# other comment style\n"
	           "block_size = 8k ; an inline comment\n"
	           "   high_watermark = 16k\n"
	           "low_watermark=4k\n");
	assert_non_null(cfg);
	assert_int_equal(port_of(&cfg->listen.address), 0);
	assert_true(cfg->buffer.block_size == 8192);
	/* Indented lines are keys, not continuations. */
	assert_true(cfg->buffer.high_watermark == 16384);
	assert_true(cfg->buffer.low_watermark == 4096);
	assert_int_equal(config_line(cfg, "listen", "address"), 4);
	assert_int_equal(config_line(cfg, "buffer", "block_size"), 7);
	assert_int_equal(config_line(cfg, "buffer", "high_watermark"), 8);
	assert_int_equal(config_line(cfg, "buffer", "low_watermark"), 9);
	/* Not given, or no such key. */
	assert_int_equal(config_line(cfg, "client", "sndbuf"), 0);
	assert_int_equal(config_line(cfg, "buffer", "nosuch"), 0);
	config_free(cfg);
}

static void
crlf_lines(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load("[buffer]\r\nblock_size = 8k\r\n[log]\r\nlevel = debug\r\n");
	assert_non_null(cfg);
	assert_true(cfg->buffer.block_size == 8192);
	assert_int_equal(cfg->log.level, 3);
	assert_int_equal(config_line(cfg, "log", "level"), 4);
	config_free(cfg);
	load_fails("[log]\r\n\r\nlevel = loud\r\n",
	    NAME ":3: [log] level: 'loud' is not one of: error, warn, info, "
	         "debug");
	load_fails("[nosuch]\r\n", NAME ":1: [nosuch]: unknown section");
}

static void
short_error_buffer(void **state)
{
	char small[12];

	(void)state;
	memset(small, 'x', sizeof(small));
	assert_null(config_load_string(
	    "[buffer]\nblock_size = 1\n", NAME, small, sizeof(small)));
	assert_string_equal(small, "t.ini:2: [b");
}

static void
load_file(void **state)
{
	char path[] = "/tmp/sluice-test-XXXXXX", want[CONFIG_ERR_MAX];
	struct config *cfg;
	FILE *f;
	int fd;

	(void)state;
	assert_true((fd = mkstemp(path)) != -1);
	assert_non_null(f = fdopen(fd, "w"));
	fputs("[buffer]\nblock_size = 8k\n", f);
	fclose(f);
	cfg = config_load(path, err, sizeof(err));
	assert_non_null(cfg);
	assert_true(cfg->buffer.block_size == 8192);
	assert_string_equal(cfg->path, path);
	config_free(cfg);

	assert_non_null(f = fopen(path, "w"));
	fputs("[buffer]\n\nblock_size = 1\n", f);
	fclose(f);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want),
	    "%s:3: [buffer] block_size: out of range (4k to 16M)", path);
	assert_string_equal(err, want);

	unlink(path);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);
}

/* ---- the table's printed forms -------------------------------------- */

static char *
printed(void (*print)(FILE *))
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	print(f);
	assert_int_equal(fclose(f), 0);
	return text;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long n;

	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	assert_true((n = ftell(f)) >= 0);
	rewind(f);
	assert_non_null(text = malloc((size_t)n + 1));
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* The printed INI loads to exactly the defaults: the table's defaults
 * and its printer cannot drift apart. */
static void
print_ini_round_trip(void **state)
{
	struct config *cfg, *def;
	char *text = printed(config_print_ini);

	(void)state;
	cfg = load(text);
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_non_null(def = load(""));
	assert_same_config(cfg, def);
	check_defaults(cfg);
	/* Every key is written out, so every key has a line. */
	for (size_t i = 0; i < config_nkeys; i++)
		assert_true(cfg->lines[i] > 0);
	config_free(def);
	config_free(cfg);
	free(text);
}

/* conf/sluice.ini is the printed table, byte for byte, and loads. */
static void
shipped_ini(void **state)
{
	const char *path = SLUICE_SOURCE_ROOT "/conf/sluice.ini";
	char *text = printed(config_print_ini), *file = slurp(path);
	struct config *cfg, *def;

	(void)state;
	assert_string_equal(file, text);
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_non_null(def = load(""));
	assert_same_config(cfg, def);
	config_free(def);
	config_free(cfg);
	free(file);
	free(text);
}

static void
print_markdown(void **state)
{
	char *text = printed(config_print_markdown);
	char *doc = slurp(SLUICE_SOURCE_ROOT "/docs/config.md");
	char row[256];

	(void)state;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		snprintf(
		    row, sizeof(row), "| [%s] | `%s` |", k->section, k->key);
		if (strstr(text, row) == NULL)
			fail_msg("no row for [%s] %s", k->section, k->key);
		snprintf(row, sizeof(row), "| `%s` |", k->def);
		assert_non_null(strstr(text, row));
		assert_non_null(strstr(text, k->doc));
	}
	/* docs/config.md holds the table as printed. */
	if (strstr(doc, text) == NULL)
		fail_msg("docs/config.md does not hold config_print_markdown's "
		         "table");
	free(doc);
	free(text);
}

/*
 * Debian's inih reads lines into a fixed 200-byte buffer and would parse
 * the rest of a longer line as a line of its own; config.c reads whole
 * lines itself, so a long comment loads and a long key line is an error at
 * its own line (regression test).
 */
static void
long_comment(void **state)
{
	char text[512];
	struct config *cfg;
	size_t n;

	(void)state;
	n = (size_t)snprintf(text, sizeof(text), "; ");
	memset(text + n, 'x', 250);
	n += 250;
	snprintf(text + n, sizeof(text) - n, "\n[buffer]\nblock_size = 8k\n");
	cfg = load(text);
	if (cfg == NULL)
		print_error("long comment refused: %s\n", err);
	assert_non_null(cfg);
	assert_true(cfg->buffer.block_size == 8192);
	assert_int_equal(config_line(cfg, "buffer", "block_size"), 3);
	config_free(cfg);

	/* A key line that long is an error at its own line, not garbage. */
	n = (size_t)snprintf(text, sizeof(text), "[upstream]\nserver = ");
	memset(text + n, '1', 250);
	n += 250;
	snprintf(text + n, sizeof(text) - n, "\n[buffer]\nblock_size = 8k\n");
	assert_null(load(text));
	assert_non_null(strstr(err, NAME ":2: line longer than"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults_empty),
	    cmocka_unit_test(defaults_with_server),
	    cmocka_unit_test(every_key_stored),
	    cmocka_unit_test(every_key_bad),
	    cmocka_unit_test(every_key_twice),
	    cmocka_unit_test(unknown_key),
	    cmocka_unit_test(unknown_section),
	    cmocka_unit_test(syntax_error),
	    cmocka_unit_test(watermarks),
	    cmocka_unit_test(spill_dir_needed),
	    cmocka_unit_test(memory_limit),
	    cmocka_unit_test(client_zwp_ms),
	    cmocka_unit_test(resume_keys),
	    cmocka_unit_test(admin_address),
	    cmocka_unit_test(admin_faults),
	    cmocka_unit_test(access_log),
	    cmocka_unit_test(servers_in_order),
	    cmocka_unit_test(too_many_servers),
	    cmocka_unit_test(addresses),
	    cmocka_unit_test(config_file_keys),
	    cmocka_unit_test(crlf_lines),
	    cmocka_unit_test(short_error_buffer),
	    cmocka_unit_test(load_file),
	    cmocka_unit_test(print_ini_round_trip),
	    cmocka_unit_test(shipped_ini),
	    cmocka_unit_test(print_markdown),
	    cmocka_unit_test(long_comment),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
