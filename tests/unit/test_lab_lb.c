/*
 * test_lab_lb: nginx and HAProxy as the lab's balancer (lab_lb.h): the
 * generated configs, the user's file with its placeholders, the command
 * lines, the settings the verdict reads, and the /proc measurements.
 *
 * "nginx with its defaults" must really be nginx's defaults, or the lab
 * measures a balancer nobody runs; a directive written twice makes nginx
 * refuse to start.  So the default config is pinned to hold no buffer
 * directive, duplicates are checked line by line, and every generated
 * config is handed to the real nginx -t / haproxy -c when they are
 * installed and we are root.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "lab/lab.h"
#include "lab/lab_lb.h"

#define LISTEN "10.202.0.1:8080"
#define ORIGIN "10.201.0.1:8000"

/* A scenario by hand: the lab's parser may not read [lb] keys yet. */
static void
sc_init(struct lab_scenario *sc, int kind)
{
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->name, sizeof(sc->name), "t");
	sc->lb_kind = kind;
}

/* Appends one key = value, as the parser would. */
static void
add_kv(struct lab_kv *kv, size_t *n, const char *key, const char *value)
{
	assert_true(*n < LAB_MAX_KV);
	snprintf(kv[*n].key, sizeof(kv[*n].key), "%s", key);
	snprintf(kv[*n].value, sizeof(kv[*n].value), "%s", value);
	(*n)++;
}

/* A [proxy] key. */
static void
proxy(struct lab_scenario *sc, const char *key, const char *value)
{
	add_kv(sc->proxy, &sc->nproxy, key, value);
}

/* An [lb] nginx.NAME / haproxy.NAME key, prefix stripped. */
static void
directive(struct lab_scenario *sc, const char *key, const char *value)
{
	add_kv(sc->lb_directives, &sc->nlb_directives, key, value);
}

/* nftw's callback: removes files first, then their directory. */
static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Each test that writes files gets a fresh directory in *state, removed
 * after it even when it fails. */
static int
dir_setup(void **state)
{
	char *d = strdup("/tmp/test_lab_lb.XXXXXX");

	if (d == NULL || mkdtemp(d) == NULL) {
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

/* Removes the test's directory with what nginx -t left in it. */
static int
dir_teardown(void **state)
{
	int rc = nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

	free(*state);
	return rc;
}

/* The config of sc listening on listen, as a string (freed by the
 * caller); rc must be 0. */
static char *
gen_at(const struct lab_scenario *sc, const char *listen, const char *dir,
    char *notes, size_t notes_len)
{
	char err[LAB_ERR_MAX] = "", *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc;

	assert_non_null(f);
	rc = lab_lb_config(
	    f, sc, listen, ORIGIN, dir, notes, notes_len, err, sizeof(err));
	fclose(f);
	if (rc != 0)
		print_error("lab_lb_config: %d %s\n", rc, err);
	assert_int_equal(rc, 0);
	return text;
}

/* The config at the lab's listen address. */
static char *
gen(const struct lab_scenario *sc, const char *dir, char *notes,
    size_t notes_len)
{
	return gen_at(sc, LISTEN, dir, notes, notes_len);
}

/* How often needle occurs: a directive must be there exactly once. */
static int
count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* The lines from the one starting with `from` up to the next empty one. */
static char *
section(const char *text, const char *from)
{
	const char *p = strstr(text, from), *end;

	assert_non_null(p);
	end = strstr(p, "\n\n");
	return strndup(p, end != NULL ? (size_t)(end - p + 1) : strlen(p));
}

/* ---- validation with the real tools ----------------------------------- */

/* nginx -t needs root (user root, binding the port). */
static bool
can_run(const char *bin)
{
	return geteuid() == 0 && access(bin, X_OK) == 0;
}

/* Runs cmd (output to stdout on failure); its exit status. */
static int
run(const char *cmd)
{
	char out[8192];
	size_t n;
	FILE *p = popen(cmd, "r");
	int st;

	assert_non_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	st = pclose(p);
	if (st != 0)
		print_error("%s:\n%s\n", cmd, out);
	return st;
}

/* A loopback address with a port free now: nginx -t binds its listen
 * addresses, and 10.202.0.1 exists only in the lab's namespace. */
static void
free_port(char *buf, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t salen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	snprintf(buf, len, "127.0.0.1:%d", ntohs(sa.sin_port));
	close(fd);
}

/* Writes sc's config in a fresh directory under dir and checks it with
 * nginx -t or haproxy -c; skipped without the binary or root. */
static void
validate(const struct lab_scenario *sc, const char *dir)
{
	const char *bin = sc->lb_kind == LAB_LB_NGINX ? "/usr/sbin/nginx"
	                                              : "/usr/sbin/haproxy";
	char d[256], *text, path[300], cmd[1024], listen[32];
	FILE *f;

	if (!can_run(bin))
		return;
	snprintf(d, sizeof(d), "%s/check.XXXXXX", dir);
	assert_non_null(mkdtemp(d));
	free_port(listen, sizeof(listen));
	text = gen_at(sc, listen, d, NULL, 0);
	snprintf(path, sizeof(path), "%s/lb.conf", d);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	if (sc->lb_kind == LAB_LB_NGINX)
		snprintf(cmd, sizeof(cmd), "%s -t -q -c %s -p %s/ 2>&1", bin,
		    path, d);
	else
		snprintf(cmd, sizeof(cmd), "%s -c -q -f %s 2>&1", bin, path);
	assert_int_equal(run(cmd), 0);
	free(text);
}

/* ---- nginx ------------------------------------------------------------ */

/* No key: nginx's own defaults, no buffer or timeout directive at all. */
static void
nginx_default(void **state)
{
	struct lab_scenario sc;
	char notes[512] = "", path[300], *d = *state, *text;
	struct stat st;

	sc_init(&sc, LAB_LB_NGINX);
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text, "\ndaemon off;\n"), 1);
	assert_int_equal(count(text, "\nuser root;\n"), 1);
	assert_int_equal(count(text, "worker_processes 1;"), 1);
	assert_int_equal(count(text, "listen " LISTEN ";\n"), 1);
	assert_int_equal(count(text, "proxy_pass http://" ORIGIN ";\n"), 1);
	assert_int_equal(count(text, "proxy_http_version 1.1;"), 1);
	snprintf(
	    path, sizeof(path), "\tproxy_temp_path %s/nginx-temp/proxy;", d);
	assert_int_equal(count(text, path), 1);
	snprintf(path, sizeof(path), "pid %s/nginx.pid;", d);
	assert_int_equal(count(text, path), 1);
	assert_int_equal(count(text, "_temp_path "), 5);
	assert_int_equal(count(text, "$upstream_bytes_received"), 1);
	assert_int_equal(count(text, "proxy_max_temp_file_size"), 0);
	assert_int_equal(count(text, "proxy_buffer"), 0);
	assert_int_equal(count(text, "proxy_busy"), 0);
	assert_int_equal(count(text, "timeout"), 0);
	assert_string_equal(notes, "");
	snprintf(path, sizeof(path), "%s/nginx-temp", d);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	free(text);
	validate(&sc, d);
}

/* nginx.* keys land in location / once, as written. */
static void
nginx_verbatim(void **state)
{
	struct lab_scenario sc;
	char notes[512] = "", *d = *state, *text;

	sc_init(&sc, LAB_LB_NGINX);
	directive(&sc, "proxy_max_temp_file_size", "2560k");
	directive(&sc, "proxy_buffering", "off");
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(
	    count(text, "\t\t\tproxy_max_temp_file_size 2560k;\n"), 1);
	assert_int_equal(count(text, "proxy_max_temp_file_size"), 1);
	assert_int_equal(count(text, "\t\t\tproxy_buffering off;\n"), 1);
	assert_int_equal(count(text, "proxy_buffers"), 0);
	assert_string_equal(notes, "");
	free(text);
	validate(&sc, d);
}

/* Each [proxy] key with a counterpart, and notes for the others. */
static void
nginx_translations(void **state)
{
	struct lab_scenario sc;
	char notes[1024] = "", *d = *state, *text;

	sc_init(&sc, LAB_LB_NGINX);
	proxy(&sc, "client.sndbuf", "64k");
	proxy(&sc, "upstream.connect_timeout", "5s");
	proxy(&sc, "upstream.read_timeout", "250ms");
	proxy(&sc, "client.idle_timeout", "2m");
	proxy(&sc, "buffer.policy", "pause");
	proxy(&sc, "buffer.high_watermark", "2M");
	proxy(&sc, "buffer.block_size", "64k");
	proxy(&sc, "upstream.rcvbuf", "256k");
	proxy(&sc, "buffer.low_watermark", "0");
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text, "listen " LISTEN " sndbuf=64k;\n"), 1);
	assert_int_equal(count(text, "\tproxy_connect_timeout 5s;\n"), 1);
	assert_int_equal(count(text, "\tproxy_read_timeout 250ms;\n"), 1);
	assert_int_equal(count(text, "\tsend_timeout 2m;\n"), 1);
	assert_int_equal(count(text, "\tproxy_max_temp_file_size 0;\n"), 1);
	assert_int_equal(count(text, "\tproxy_buffers 32 64k;\n"), 1);
	assert_int_equal(count(text, "\tproxy_buffer_size 64k;\n"), 1);
	assert_int_equal(count(text, "\tproxy_busy_buffers_size 1984k;\n"), 1);
	assert_string_equal(notes,
	    "[proxy] upstream.rcvbuf = 256k: no nginx counterpart, ignored\n"
	    "[proxy] buffer.low_watermark = 0: no nginx counterpart, "
	    "ignored\n");
	free(text);
	validate(&sc, d);
}

/* spill with and without a limit, pace, a limit without spill, the
 * smallest buffer count and sizes that are not whole kilobytes. */
static void
nginx_policies(void **state)
{
	struct lab_scenario sc;
	char notes[1024] = "", *d = *state, *text;

	sc_init(&sc, LAB_LB_NGINX);
	proxy(&sc, "buffer.policy", "spill");
	proxy(&sc, "buffer.spill_limit", "5M");
	proxy(&sc, "buffer.high_watermark", "64k");
	proxy(&sc, "buffer.block_size", "64k");
	proxy(&sc, "client.sndbuf", "100000");
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text, "\tproxy_max_temp_file_size 5m;\n"), 1);
	assert_int_equal(count(text, "\tproxy_buffers 2 64k;\n"), 1);
	assert_int_equal(count(text, "\tproxy_busy_buffers_size 64k;\n"), 1);
	assert_int_equal(count(text, " sndbuf=100000;\n"), 1);
	assert_string_equal(notes, "");
	free(text);
	validate(&sc, d);

	sc_init(&sc, LAB_LB_NGINX);
	proxy(&sc, "buffer.policy", "spill");
	proxy(&sc, "buffer.high_watermark", "3M");
	proxy(&sc, "buffer.block_size", "1536k");
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text, "proxy_max_temp_file_size"), 0);
	assert_int_equal(count(text, "\tproxy_buffers 2 1536k;\n"), 1);
	assert_string_equal(notes, "");
	free(text);
	validate(&sc, d);

	sc_init(&sc, LAB_LB_NGINX);
	proxy(&sc, "buffer.policy", "pace");
	proxy(&sc, "buffer.spill_limit", "5M");
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text, "proxy_max_temp_file_size"), 0);
	assert_string_equal(notes,
	    "[proxy] buffer.policy = pace: no nginx counterpart, ignored\n"
	    "[proxy] buffer.spill_limit = 5M: no nginx counterpart without "
	    "buffer.policy = spill, ignored\n");
	free(text);
}

/* A verbatim directive replaces the translated one: one line, a note. */
static void
nginx_duplicates(void **state)
{
	struct lab_scenario sc;
	char notes[1024] = "", *d = *state, *text;

	sc_init(&sc, LAB_LB_NGINX);
	directive(&sc, "proxy_read_timeout", "10s");
	directive(&sc, "proxy_buffers", "4 8k");
	directive(&sc, "proxy_max_temp_file_size", "0");
	directive(&sc, "proxy_http_version", "1.0");
	proxy(&sc, "upstream.read_timeout", "5s");
	proxy(&sc, "buffer.high_watermark", "2M");
	proxy(&sc, "buffer.policy", "pause");
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text, "proxy_read_timeout"), 1);
	assert_int_equal(count(text, "\tproxy_read_timeout 10s;\n"), 1);
	assert_int_equal(count(text, "proxy_buffers"), 1);
	assert_int_equal(count(text, "\tproxy_buffers 4 8k;\n"), 1);
	assert_int_equal(count(text, "proxy_buffer_size"), 0);
	assert_int_equal(count(text, "proxy_busy_buffers_size"), 0);
	assert_int_equal(count(text, "proxy_max_temp_file_size"), 1);
	assert_int_equal(count(text, "proxy_http_version"), 1);
	assert_int_equal(count(text, "\tproxy_http_version 1.0;\n"), 1);
	assert_string_equal(notes,
	    "[proxy] upstream.read_timeout = 5s: overridden by "
	    "nginx.proxy_read_timeout\n"
	    "[proxy] buffer.policy = pause: overridden by "
	    "nginx.proxy_max_temp_file_size\n"
	    "[proxy] buffer.high_watermark = 2M: overridden by "
	    "nginx.proxy_buffers\n");
	free(text);
	validate(&sc, d);
}

/* A value that does not parse and a kind without config are errors. */
static void
bad_values(void **state)
{
	struct lab_scenario sc;
	char err[LAB_ERR_MAX] = "", *d = *state, *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	sc_init(&sc, LAB_LB_NGINX);
	proxy(&sc, "upstream.read_timeout", "soon");
	assert_int_equal(
	    lab_lb_config(f, &sc, LISTEN, ORIGIN, d, NULL, 0, err, sizeof(err)),
	    -EINVAL);
	assert_string_equal(
	    err, "[proxy] upstream.read_timeout = soon: not a duration");
	sc_init(&sc, LAB_LB_SLUICE);
	assert_int_equal(
	    lab_lb_config(f, &sc, LISTEN, ORIGIN, d, NULL, 0, err, sizeof(err)),
	    -EINVAL);
	fclose(f);
	free(text);
}

/* ---- HAProxy ---------------------------------------------------------- */

/* The generated HAProxy config, section by section. */
static void
haproxy_default(void **state)
{
	struct lab_scenario sc;
	char notes[512] = "", line[300], *d = *state, *text;
	struct stat st;

	sc_init(&sc, LAB_LB_HAPROXY);
	text = gen(&sc, d, notes, sizeof(notes));
	assert_int_equal(count(text,
	                     "\nglobal\n\tlog stdout format raw "
	                     "local0 info\n"),
	    1);
	snprintf(line, sizeof(line), "\tpidfile %s/haproxy.pid\n", d);
	assert_int_equal(count(text, line), 1);
	assert_int_equal(count(text, "daemon"), 0);
	assert_int_equal(count(text,
	                     "\ndefaults\n\tmode http\n\tlog global\n"
	                     "\toption httplog\n\ttimeout connect 5s\n"
	                     "\ttimeout client 60s\n\ttimeout server 60s\n"),
	    1);
	assert_int_equal(
	    count(text,
	        "\nfrontend fe\n\tbind " LISTEN "\n\tdefault_backend be\n"),
	    1);
	assert_int_equal(
	    count(text, "\nbackend be\n\tserver origin " ORIGIN "\n"), 1);
	assert_string_equal(notes, "");
	snprintf(line, sizeof(line), "%s/nginx-temp", d);
	assert_int_equal(stat(line, &st), -1); /* only for nginx */
	free(text);
	validate(&sc, d);
}

/* tune./global. keys go to global, the rest replace defaults' lines. */
static void
haproxy_keys(void **state)
{
	struct lab_scenario sc;
	char notes[1024] = "", *d = *state, *text, *global, *defaults;

	sc_init(&sc, LAB_LB_HAPROXY);
	directive(&sc, "tune.bufsize", "32768");
	directive(&sc, "global.maxconn", "100");
	directive(&sc, "timeout server", "10s");
	directive(&sc, "option", "http-server-close");
	proxy(&sc, "client.sndbuf", "64k");
	proxy(&sc, "upstream.rcvbuf", "256k");
	proxy(&sc, "upstream.read_timeout", "5s");
	proxy(&sc, "upstream.connect_timeout", "2s");
	proxy(&sc, "client.idle_timeout", "30s");
	proxy(&sc, "buffer.block_size", "64k");
	proxy(&sc, "buffer.policy", "pause");
	text = gen(&sc, d, notes, sizeof(notes));
	global = section(text, "global\n");
	defaults = section(text, "defaults\n");
	assert_int_equal(count(global, "\ttune.bufsize 32768\n"), 1);
	assert_int_equal(count(global, "\tmaxconn 100\n"), 1);
	assert_int_equal(count(global, "\ttune.sndbuf.client 65536\n"), 1);
	assert_int_equal(count(global, "\ttune.rcvbuf.server 262144\n"), 1);
	assert_int_equal(count(text, "tune.bufsize"), 1);
	assert_int_equal(count(text, "timeout server"), 1);
	assert_int_equal(count(defaults, "\ttimeout server 10s\n"), 1);
	assert_int_equal(count(defaults, "\ttimeout connect 2s\n"), 1);
	assert_int_equal(count(defaults, "\ttimeout client 30s\n"), 1);
	assert_int_equal(count(defaults, "\toption http-server-close\n"), 1);
	assert_int_equal(count(defaults, "\toption httplog\n"), 1);
	assert_string_equal(notes,
	    "[proxy] upstream.read_timeout = 5s: overridden by "
	    "haproxy.timeout server\n"
	    "[proxy] buffer.block_size = 64k: overridden by "
	    "haproxy.tune.bufsize\n"
	    "[proxy] buffer.policy = pause: no haproxy counterpart, "
	    "ignored\n");
	free(global);
	free(defaults);
	free(text);
	validate(&sc, d);
}

/* ---- the user's file -------------------------------------------------- */

/* The user's file is copied byte for byte but for the placeholders. */
static void
user_config(void **state)
{
	struct lab_scenario sc;
	char err[LAB_ERR_MAX] = "", want[512], *d = *state, *text = NULL;
	size_t len = 0;
	FILE *f;

	sc_init(&sc, LAB_LB_HAPROXY);
	snprintf(sc.lb_config, sizeof(sc.lb_config), "%s/user.cfg", d);
	assert_non_null(f = fopen(sc.lb_config, "w"));
	fputs("bind @LISTEN@\nserver o @ORIGIN@ # @ORIGIN\n"
	      "pidfile @DIR@/x.pid @DIR@@DIR@ @NOPE@ @\nlast",
	    f);
	assert_int_equal(fclose(f), 0);
	text = gen(&sc, d, NULL, 0);
	snprintf(want, sizeof(want),
	    "bind " LISTEN "\nserver o " ORIGIN " # @ORIGIN\n"
	    "pidfile %s/x.pid %s%s @NOPE@ @\nlast",
	    d, d, d);
	assert_string_equal(text, want);
	free(text);

	/* a directive does not matter with a user file */
	directive(&sc, "tune.bufsize", "1");
	text = gen(&sc, d, NULL, 0);
	assert_string_equal(text, want);
	free(text);

	snprintf(sc.lb_config, sizeof(sc.lb_config), "%s/none.cfg", d);
	assert_non_null(f = open_memstream(&text, &len));
	assert_int_equal(
	    lab_lb_config(f, &sc, LISTEN, ORIGIN, d, NULL, 0, err, sizeof(err)),
	    -ENOENT);
	fclose(f);
	free(text);
	assert_non_null(strstr(err, "none.cfg: No such file"));
}

/* ---- the command line ------------------------------------------------- */

/* argv joined by '|', its NULL end checked. */
static int
argv_of(const struct lab_scenario *sc, const char *conf, char *out, size_t len)
{
	const char *argv[10];
	char buf[300];
	int n = lab_lb_argv(sc, conf, "/res", argv, 10, buf, sizeof(buf));

	out[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), len - strlen(out), "%s%s",
		    i > 0 ? "|" : "", argv[i]);
	if (n >= 0)
		assert_null(argv[n]);
	return n;
}

/* A config file for has_daemon() to read. */
static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* -g "daemon off;" only without a daemon directive (nginx refuses a
 * duplicate); HAProxy's -db; room for the NULL end. */
static void
command_line(void **state)
{
	struct lab_scenario sc;
	char s[512], conf[300], *d = *state, *text;
	const char *argv[4];
	char buf[64];

	snprintf(conf, sizeof(conf), "%s/nginx.conf", d);
	sc_init(&sc, LAB_LB_NGINX);
	text = gen(&sc, d, NULL, 0);
	write_file(conf, text);
	free(text);
	assert_int_equal(argv_of(&sc, conf, s, sizeof(s)), 5);
	assert_true(strncmp(s, "nginx|-c|", 9) == 0);
	assert_non_null(strstr(s, "nginx.conf|-p|/res/"));

	write_file(conf,
	    "# daemon off;\nevents { }\nhttp { log_format x "
	    "'a; daemon on'; }\n");
	assert_int_equal(argv_of(&sc, conf, s, sizeof(s)), 7);
	assert_non_null(strstr(s, "|-p|/res/|-g|daemon off;"));
	write_file(conf, "user root; daemon on;\nevents { }\n");
	assert_int_equal(argv_of(&sc, conf, s, sizeof(s)), 5);
	write_file(conf, "\tdaemon\toff ;\n");
	assert_int_equal(argv_of(&sc, conf, s, sizeof(s)), 5);
	write_file(conf, "daemonize on;\n");
	assert_int_equal(argv_of(&sc, conf, s, sizeof(s)), 7);

	sc_init(&sc, LAB_LB_HAPROXY);
	assert_int_equal(argv_of(&sc, "/res/h.cfg", s, sizeof(s)), 4);
	assert_string_equal(s, "haproxy|-f|/res/h.cfg|-db");
	assert_int_equal(
	    lab_lb_argv(&sc, "h.cfg", "/res", argv, 4, buf, sizeof(buf)),
	    -EINVAL); /* no room for the NULL */
	sc_init(&sc, LAB_LB_SLUICE);
	assert_int_equal(argv_of(&sc, "x", s, sizeof(s)), -EINVAL);
}

/* The kind names of lab.h (lab_scenario.c's table). */
static void
names(void **state)
{
	(void)state;
	assert_string_equal(lab_lb_kind_name(LAB_LB_SLUICE), "sluice");
	assert_string_equal(lab_lb_kind_name(LAB_LB_NGINX), "nginx");
	assert_string_equal(lab_lb_kind_name(LAB_LB_HAPROXY), "haproxy");
	assert_string_equal(lab_lb_kind_name(LAB_LB_NONE), "none");
	assert_string_equal(lab_lb_kind_name(9), "?");
}

/* ---- settings --------------------------------------------------------- */

/* The setting's value, "!" + its error, and "=" for a default. */
static const char *
setting(const struct lab_scenario *sc, const char *name)
{
	static char out[200];
	char buf[160];
	bool def = false;
	int rc = lab_lb_setting(sc, name, buf, sizeof(buf), &def);

	if (rc < 0)
		snprintf(out, sizeof(out), "!%d", -rc);
	else
		snprintf(out, sizeof(out), "%s%s", def ? "=" : "", buf);
	return out;
}

/* Set, translated and default values, and what cannot be known. */
static void
settings(void **state)
{
	struct lab_scenario sc;
	char buf[4];

	(void)state;
	sc_init(&sc, LAB_LB_NGINX);
	assert_string_equal(setting(&sc, "proxy_max_temp_file_size"), "=1024m");
	assert_string_equal(setting(&sc, "proxy_buffers"), "=8 4k");
	assert_string_equal(setting(&sc, "proxy_buffer_size"), "=4k");
	assert_string_equal(setting(&sc, "proxy_read_timeout"), "=60s");
	assert_string_equal(setting(&sc, "send_timeout"), "=60s");
	assert_string_equal(setting(&sc, "proxy_buffering"), "=on");
	assert_string_equal(setting(&sc, "proxy_http_version"), "=1.1");
	assert_string_equal(setting(&sc, "sndbuf"), "!2");
	assert_string_equal(setting(&sc, "tune.bufsize"), "!2");
	assert_string_equal(setting(&sc, "no_such"), "!2");

	directive(&sc, "proxy_max_temp_file_size", "2560k");
	proxy(&sc, "buffer.high_watermark", "2M");
	proxy(&sc, "client.idle_timeout", "2m");
	proxy(&sc, "client.sndbuf", "64k");
	assert_string_equal(setting(&sc, "proxy_max_temp_file_size"), "2560k");
	assert_string_equal(setting(&sc, "proxy_buffers"), "32 64k");
	assert_string_equal(setting(&sc, "send_timeout"), "2m");
	assert_string_equal(setting(&sc, "sndbuf"), "64k");
	assert_string_equal(setting(&sc, "proxy_read_timeout"), "=60s");
	assert_int_equal(
	    lab_lb_setting(&sc, "proxy_buffers", buf, sizeof(buf), NULL),
	    -ENOSPC);
	snprintf(sc.lb_config, sizeof(sc.lb_config), "/etc/nginx/x.conf");
	assert_string_equal(setting(&sc, "proxy_buffers"), "!2");

	sc_init(&sc, LAB_LB_HAPROXY);
	assert_string_equal(setting(&sc, "tune.bufsize"), "=16384");
	assert_string_equal(setting(&sc, "timeout server"), "=60s");
	assert_string_equal(setting(&sc, "timeout client"), "=60s");
	assert_string_equal(setting(&sc, "proxy_buffers"), "!2");
	proxy(&sc, "buffer.block_size", "64k");
	proxy(&sc, "upstream.read_timeout", "5s");
	directive(&sc, "global.maxconn", "100");
	assert_string_equal(setting(&sc, "tune.bufsize"), "65536");
	assert_string_equal(setting(&sc, "timeout server"), "5s");
	assert_string_equal(setting(&sc, "global.maxconn"), "100");
	assert_string_equal(setting(&sc, "maxconn"), "100");
	proxy(&sc, "upstream.connect_timeout", "never");
	assert_string_equal(setting(&sc, "timeout server"), "!22");

	sc_init(&sc, LAB_LB_SLUICE);
	assert_string_equal(setting(&sc, "proxy_buffers"), "!22");
}

/* nginx's size syntax, and 0 for anything else. */
static void
sizes(void **state)
{
	(void)state;
	assert_true(lab_lb_size("2560k") == 2560 * 1024);
	assert_true(lab_lb_size("1024m") == 1024ULL * 1024 * 1024);
	assert_true(lab_lb_size("1g") == 1024ULL * 1024 * 1024);
	assert_true(lab_lb_size("1G") == 1024ULL * 1024 * 1024);
	assert_true(lab_lb_size("4K") == 4096);
	assert_true(lab_lb_size("1048576") == 1048576);
	assert_true(lab_lb_size("0") == 0);
	assert_true(lab_lb_size("") == 0);
	assert_true(lab_lb_size("k") == 0);
	assert_true(lab_lb_size("1.5m") == 0);
	assert_true(lab_lb_size("8 4k") == 0);
	assert_true(lab_lb_size("4kb") == 0);
	assert_true(lab_lb_size("-1") == 0);
	assert_true(lab_lb_size("99999999999999999999") == 0);
	assert_true(lab_lb_size("99999999999999g") == 0);
}

/* ---- /proc ------------------------------------------------------------ */

/* RSS of our own group, and an unlinked open file counted once. */
static void
proc_helpers(void **state)
{
	char *d = *state, path[300], block[10000];
	int fd, fd2;

	assert_true(lab_group_rss(getpgrp()) > 0);
	assert_true(lab_group_rss(999999999) == 0);
	snprintf(path, sizeof(path), "%s/spool", d);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	memset(block, 'x', sizeof(block));
	for (int i = 0; i < 10; i++)
		assert_int_equal(
		    write(fd, block, sizeof(block)), sizeof(block));
	fd2 = open(path, O_RDONLY); /* the same file twice: counted once */
	assert_true(fd2 >= 0);
	assert_int_equal(unlink(path), 0);
	assert_true(lab_group_files(getpgrp(), d) == 100000);
	snprintf(path, sizeof(path), "%s/", d);
	assert_true(lab_group_files(getpgrp(), path) == 100000);
	path[strlen(d) - 1] = '\0'; /* a prefix of the name, not the dir */
	assert_true(lab_group_files(getpgrp(), path) == 0);
	assert_true(lab_group_files(getpgrp(), "/nonexistent") == 0);
	assert_true(lab_group_files(999999999, d) == 0);
	close(fd);
	close(fd2);
	assert_true(lab_group_files(getpgrp(), d) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        nginx_default, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        nginx_verbatim, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        nginx_translations, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        nginx_policies, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        nginx_duplicates, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        bad_values, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        haproxy_default, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        haproxy_keys, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        user_config, dir_setup, dir_teardown),
	    cmocka_unit_test_setup_teardown(
	        command_line, dir_setup, dir_teardown),
	    cmocka_unit_test(names),
	    cmocka_unit_test(settings),
	    cmocka_unit_test(sizes),
	    cmocka_unit_test_setup_teardown(
	        proc_helpers, dir_setup, dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
