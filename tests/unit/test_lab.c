/*
 * test_lab: the pure parts of `sluice lab` (lab.h): the scenario file, the
 * give-up rule turned into `sluice origin` options, the proxy config the
 * lab writes, and the ss(8) output it samples; and the JSON reader
 * (base/json.h) the lab and the bench read their peers' lines with.
 *
 * A scenario read wrongly runs another experiment than the one its file
 * documents, and a proxy config without a pinned upstream rcvbuf makes the
 * figures irreproducible (docs/kernel.md), so both are pinned here; the shipped
 * scenarios must parse and make valid proxy configs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/json.h"
#include "proxy/config.h"
#include "lab/lab.h"

static const char full[] = "# a comment\n"
                           "[lab]\n"
                           "name = demo\n"
                           "mode = loopback\n"
                           "time_limit = 30s\n"
                           "body = 6M\n"
                           "notes = free text\n"
                           "[links]\n"
                           "origin_lb = 1gbit\n"
                           "lb_client = 2mbit\n"
                           "delay = 20ms\n"
                           "[origin]\n"
                           "give_up = zwp-probes=4,interval=200ms\n"
                           "sndbuf = 256k\n"
                           "sysctl.net.ipv4.tcp_rto_max_ms = 10000\n"
                           "[lb]\n"
                           "sysctl.net.ipv4.tcp_rmem = 4096 131072 262144\n"
                           "[client]\n"
                           "rate = 4mbit\n"
                           "rcvbuf = 64k\n"
                           "timeout = 90s\n"
                           "[proxy]\n"
                           "buffer.policy = spill\n"
                           "upstream.rcvbuf = 1M\n";

static void
parse_ok(const char *text, struct lab_scenario *sc)
{
	char err[LAB_ERR_MAX] = "";
	int rc = lab_scenario_parse(text, "t.ini", sc, err, sizeof(err));

	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
}

/* Parses text, expects an error that starts with want. */
static void
parse_err(const char *text, const char *want)
{
	struct lab_scenario sc;
	char err[LAB_ERR_MAX] = "";

	assert_int_equal(
	    lab_scenario_parse(text, "t.ini", &sc, err, sizeof(err)), -EINVAL);
	if (strncmp(err, want, strlen(want)) != 0)
		print_error("got '%s', want '%s...'\n", err, want);
	assert_true(strncmp(err, want, strlen(want)) == 0);
}

static void
scenario_defaults(void **state)
{
	struct lab_scenario sc;

	(void)state;
	parse_ok("", &sc);
	assert_int_equal(sc.mode, LAB_MODE_NETNS);
	assert_true(sc.time_limit_ms == 60000);
	assert_true(sc.body == 16 * 1024 * 1024);
	assert_true(sc.origin_lb_bps == 1000000000);
	assert_true(sc.lb_client_bps == 2000000);
	assert_string_equal(sc.give_up, "");
	assert_true(sc.nproxy == 0 && sc.nsysctl[LAB_ORIGIN] == 0);
	/* The rest of the table's defaults ("4k", "sluice", "off", "0"). */
	assert_true(sc.dos_rcvbuf == 4096);
	assert_int_equal(sc.lb_kind, LAB_LB_SLUICE);
	assert_false(sc.capture || sc.origin_raw);
	assert_true(sc.client_rate_bps == 0 && sc.client_count == 0);
	assert_string_equal(sc.name, "");
}

static void
scenario_full(void **state)
{
	struct lab_scenario sc;

	(void)state;
	parse_ok(full, &sc);
	assert_string_equal(sc.name, "demo");
	assert_int_equal(sc.mode, LAB_MODE_LOOPBACK);
	assert_true(sc.time_limit_ms == 30000 && sc.body == 6 * 1048576);
	assert_string_equal(sc.notes, "free text");
	assert_true(sc.delay_ms == 20 && sc.lb_client_bps == 2000000);
	assert_string_equal(sc.give_up, "zwp-probes=4,interval=200ms");
	assert_true(sc.origin_sndbuf == 256 * 1024);
	assert_true(sc.client_rate_bps == 4000000);
	assert_true(sc.client_rcvbuf == 65536 && sc.client_timeout_ms == 90000);
	assert_int_equal(sc.nsysctl[LAB_ORIGIN], 1);
	assert_string_equal(
	    sc.sysctl[LAB_ORIGIN][0].key, "net.ipv4.tcp_rto_max_ms");
	assert_string_equal(sc.sysctl[LAB_ORIGIN][0].value, "10000");
	assert_int_equal(sc.nsysctl[LAB_LB], 1);
	assert_string_equal(sc.sysctl[LAB_LB][0].value, "4096 131072 262144");
	assert_int_equal(sc.nsysctl[LAB_CLIENT], 0);
	assert_int_equal(sc.nproxy, 2);
	assert_string_equal(sc.proxy[0].key, "buffer.policy");
	assert_string_equal(sc.proxy[1].value, "1M");
}

/* Part two's keys: the balancer, the article's peers, the stall, [dos]. */
static void
scenario_part_two(void **state)
{
	struct lab_scenario sc;

	(void)state;
	parse_ok("[lab]\ncapture = on\nwindows = 12\n"
	         "article_windows = 1:1460, 201:1260\n"
	         "[lb]\nkind = none\n"
	         "[origin]\nraw = on\ndrip = 200\nevery = 1s\n"
	         "[client]\nread = 100\ninterval = 2s\ncount = 8\n"
	         "initrwnd = 10\n",
	    &sc);
	assert_true(sc.capture && sc.windows == 12 && sc.origin_raw);
	assert_int_equal(sc.lb_kind, LAB_LB_NONE);
	assert_true(sc.origin_drip == 200 && sc.origin_every_ms == 1000);
	assert_true(sc.client_read == 100 && sc.client_interval_ms == 2000);
	assert_true(sc.client_count == 8 && sc.client_initrwnd == 10);
	parse_ok("[lb]\nkind = nginx\nnginx.proxy_max_temp_file_size = 2560k\n"
	         "[client]\nstall_at = 1M\nstall_for = 60s\n",
	    &sc);
	assert_int_equal(sc.lb_kind, LAB_LB_NGINX);
	assert_int_equal(sc.nlb_directives, 1);
	assert_string_equal(
	    sc.lb_directives[0].key, "proxy_max_temp_file_size");
	assert_string_equal(sc.lb_directives[0].value, "2560k");
	assert_true(sc.stall_at == 1048576 && sc.stall_for_ms == 60000);
	parse_ok("[lb]\nkind = haproxy\nhaproxy.timeout server = 10s\n", &sc);
	assert_string_equal(sc.lb_directives[0].key, "timeout server");
	parse_ok("[dos]\nclients = 8\n", &sc);
	assert_true(sc.dos_clients == 8 && sc.dos_rcvbuf == 4096);
}

static void
scenario_part_two_errors(void **state)
{
	(void)state;
	parse_err("[lb]\nkind = envoy\n", "t.ini:2: [lb] kind: 'envoy' is not");
	parse_err(
	    "[lab]\ncapture = maybe\n", "t.ini:2: [lab] capture: 'maybe'");
	parse_err("[lb]\nnginx.proxy_buffering = on\n",
	    "t.ini: [lb] nginx.* keys need kind = nginx (kind is sluice)");
	parse_err("[lb]\nkind = nginx\nnginx.a = 1\nhaproxy.b = 2\n",
	    "t.ini:4: [lb] haproxy.b: nginx.* and haproxy.* keys");
	parse_err("[lb]\nkind = nginx\nnginx.a = 1; evil\n",
	    "t.ini:3: [lb] nginx.a: one directive");
	parse_err("[lb]\nenvoy.x = 1\n", "t.ini:2: [lb] envoy.x: not nginx.");
	parse_err("[origin]\nraw = on\n", "t.ini: [origin] raw = on needs");
	parse_err("[origin]\ndrip = 200\n", "t.ini: [origin] drip and every");
	parse_err("[client]\nread = 100\n", "t.ini: [client] read needs");
	parse_err("[client]\nstall_at = 1M\n", "t.ini: [client] stall_at");
	parse_err("[lb]\nkind = nginx\n[dos]\nclients = 2\n",
	    "t.ini: [dos] is measured from sluice");
	parse_err("[lb]\nkind = none\n[proxy]\nbuffer.policy = spill\n",
	    "t.ini: [proxy] keys with [lb] kind = none");
	parse_err("[lab]\nwindows = 5\n", "t.ini: [lab] windows are read");
	parse_err("[lab]\ncapture = on\nwindows = 5\narticle_windows = 1:x\n",
	    "t.ini: [lab] article_windows: not ACK:WIN");
	parse_err("[dos]\nclients = many\n", "t.ini:2: [dos] clients: 'many'");
}

/* [lab] time_scale: every duration of the scenario shrinks with it, the
 * table's keys, the give-up rule's and the [proxy] durations; sizes, rates
 * and counts stay. */
static void
scenario_time_scale(void **state)
{
	struct lab_scenario sc;

	(void)state;
	parse_ok("[lab]\ntime_scale = 0.2\ntime_limit = 150s\n"
	         "[links]\ndelay = 20ms\n"
	         "[origin]\nraw = on\ndrip = 1000\nevery = 5s\n"
	         "truncate_at = 10000\n"
	         "give_up = zwp-probes=4,interval=1s,max=10s\n"
	         "[lb]\nkind = none\n"
	         "[client]\nread = 800\ninterval = 8s\nwindow_clamp = 4000\n"
	         "stall_at = 1M\nstall_for = 60s\ntimeout = 90s\n",
	    &sc);
	assert_true(sc.time_scale == 0.2);
	assert_int_equal(sc.time_limit_ms, 30000);
	assert_int_equal(sc.delay_ms, 4);
	assert_int_equal(sc.origin_every_ms, 1000);
	assert_int_equal(sc.client_interval_ms, 1600);
	assert_int_equal(sc.stall_for_ms, 12000);
	assert_int_equal(sc.client_timeout_ms, 18000);
	assert_string_equal(
	    sc.give_up, "zwp-probes=4,interval=200ms,max=2000ms");
	assert_int_equal(sc.origin_drip, 1000);
	assert_int_equal(sc.client_read, 800);
	assert_int_equal(sc.origin_truncate_at, 10000);
	assert_int_equal(sc.client_window_clamp, 4000);
	assert_int_equal(sc.stall_at, 1048576);

	parse_ok("[lab]\ntime_scale = 0.5\n[origin]\n"
	         "give_up = send-timeout=60s\n"
	         "[proxy]\nclient.zwp_timeout = 2m\n"
	         "upstream.read_timeout = 3s\nbuffer.high_watermark = 8M\n",
	    &sc);
	assert_string_equal(sc.give_up, "send-timeout=30000ms");
	assert_string_equal(sc.proxy[0].value, "60000ms");
	assert_string_equal(sc.proxy[1].value, "1500ms");
	assert_string_equal(sc.proxy[2].value, "8M");

	parse_ok("[lab]\ntime_limit = 45s\n", &sc); /* no scale: as written */
	assert_true(sc.time_scale == 1);
	assert_int_equal(sc.time_limit_ms, 45000);
	parse_err("[lab]\ntime_scale = 0\n", "t.ini:2: [lab] time_scale: '0'");
	parse_err("[lab]\ntime_scale = fast\n", "t.ini:2: [lab] time_scale");
	parse_err("[lab]\nwalk = on\n", "t.ini: [lab] walk = on takes");
}

static void
scenario_errors(void **state)
{
	(void)state;
	parse_err("[lab]\nbody = 1M\n\n[links]\nlb_client = fast\n",
	    "t.ini:5: [links] lb_client: 'fast' is not a rate");
	parse_err("[lab]\nbody = big\n", "t.ini:2: [lab] body: 'big' is not");
	parse_err("[lab]\nmode = vm\n", "t.ini:2: [lab] mode: 'vm' is neither");
	parse_err("[lab]\nspeed = 1\n", "t.ini:2: [lab] speed: unknown key");
	parse_err("[host]\nx = 1\n", "t.ini:2: [host] x: unknown section");
	parse_err("[proxy]\npolicy = pause\n",
	    "t.ini:2: [proxy] policy: not a proxy config key");
	parse_err("[proxy]\nbuffer.colour = red\n",
	    "t.ini:2: [proxy] buffer.colour: not a proxy config key");
	parse_err("[proxy]\nupstream.server = 1.2.3.4:80\n",
	    "t.ini:2: [proxy] upstream.server: set by the lab");
	parse_err("[origin]\nsysctl.a b = 1\n",
	    "t.ini:2: [origin] sysctl.a b: not a sysctl name");
	parse_err("[origin]\ngive_up = sometimes\n",
	    "t.ini: [origin] give_up: 'sometimes' is not a rule");
	parse_err("[lab]\nbody = 0\n", "t.ini: [lab] body, time_limit");
	parse_err("no section line\n", "t.ini:1:");
}

/* The give-up rule as origin options, joined by spaces. */
static int
giveup(const char *rule, char *out, size_t len)
{
	const char *argv[12];
	char buf[256];
	int n = lab_giveup_args(rule, argv, 12, buf, sizeof(buf));

	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		strncat(out, argv[i], len - strlen(out) - 1);
		if (i + 1 < n)
			strncat(out, " ", len - strlen(out) - 1);
	}
	return n;
}

/* The question the scaled scenarios below ask: the incident's origin and
 * proxy with a small gap, 2.5 GB to a 3 Mbit/s client. */
#define SCALED_QUESTION                                                        \
	"[links]\nlb_client = 3mbit\n"                                         \
	"[origin]\ngive_up = zwp-probes=4,interval=200ms\nsndbuf = 256k\n"     \
	"[proxy]\nbuffer.high_watermark = 2M\n"                                \
	"buffer.low_watermark = 1792k\nupstream.rcvbuf = 64k\n"                \
	"client.sndbuf = 64k\n"

/* [lab] scale = K: the file states the question; the run's byte positions
 * (body, truncate_at, stall_at, after_bytes, count) are divided by K and
 * the question's kept; rates, buffers and durations stay as written. */
static void
scenario_scale(void **state)
{
	struct lab_scenario sc, q;

	(void)state;
	parse_ok("[lab]\nscale = 100\nbody = 2500000000\ntime_limit = 90s\n"
	         "[origin]\ntruncate_at = 2000000000\n"
	         "[client]\nstall_at = 1000000000\nstall_for = 2s\n"
	         "read = 64k\ninterval = 10ms\ncount = 30000\n"
	         "[fault]\naction = limit_data\nafter_bytes = "
	         "2400000000\n" SCALED_QUESTION,
	    &sc);
	assert_true(sc.scale == 100);
	assert_int_equal(sc.body, 25000000);
	assert_int_equal(sc.origin_truncate_at, 20000000);
	assert_int_equal(sc.stall_at, 10000000);
	assert_int_equal(sc.fault_after, 24000000);
	assert_int_equal(sc.client_count, 300);
	assert_int_equal(sc.question.body, 2500000000ULL);
	assert_int_equal(sc.question.origin_truncate_at, 2000000000ULL);
	assert_int_equal(sc.question.stall_at, 1000000000ULL);
	assert_int_equal(sc.question.fault_after, 2400000000ULL);
	assert_int_equal(sc.question.client_count, 30000);
	/* not bytes along the download: as written */
	assert_int_equal(sc.time_limit_ms, 90000);
	assert_int_equal(sc.stall_for_ms, 2000);
	assert_int_equal(sc.client_read, 65536);
	assert_int_equal(sc.origin_sndbuf, 262144);
	assert_int_equal(sc.lb_client_bps, 3000000);
	assert_string_equal(sc.proxy[0].value, "2M");

	lab_scenario_question(&sc, &q);
	assert_int_equal(q.body, 2500000000ULL);
	assert_int_equal(q.stall_at, 1000000000ULL);
	assert_int_equal(q.fault_after, 2400000000ULL);
	assert_true(q.scale == 1);

	parse_ok("[lab]\nscale = 2.5\nbody = 10M\n" SCALED_QUESTION, &sc);
	assert_true(sc.scale == 2.5);
	assert_int_equal(sc.body, 4194304);
	parse_ok("[lab]\nbody = 10M\n", &sc); /* no scale: as written */
	assert_true(sc.scale == 1);
	assert_int_equal(sc.body, 10485760);
	assert_int_equal(sc.question.body, 10485760);

	parse_err("[lab]\nscale = 0.5\n",
	    "t.ini:2: [lab] scale: '0.5' is not a number from 1 to 10000");
	parse_err("[lab]\nscale = fast\n", "t.ini:2: [lab] scale: 'fast'");
	parse_err("[lab]\nscale = 10001\n", "t.ini:2: [lab] scale: '10001'");
	parse_err("[lab]\nscale = 100x\n", "t.ini:2: [lab] scale: '100x'");
	parse_err("[lab]\nscale = 10\n[lb]\nkind = nginx\n",
	    "t.ini: [lab] scale: needs [lb] kind = sluice");
}

/* A scale whose run could not see the question's zero window is refused
 * before anything runs, with the largest that can: under policy spill
 * with a 64M spool the path holds about 70 MB before the origin's window
 * closes, so a 2.5 GB question runs at most 35 times smaller. */
static void
scenario_scale_refused(void **state)
{
	char err[LAB_ERR_MAX] = "";
	struct lab_scenario sc;
	const char *spill =
	    "[lab]\nscale = %s\nbody = 2500000000\n" SCALED_QUESTION
	    "buffer.policy = spill\nbuffer.spill_limit = 64M\n";
	char text[1024];

	(void)state;
	snprintf(text, sizeof(text), spill, "100");
	assert_int_equal(
	    lab_scenario_parse(text, "t.ini", &sc, err, sizeof(err)), -EINVAL);
	assert_true(strncmp(err,
	                "t.ini: [lab] scale: 100 leaves a 25000000-byte body, "
	                "which the path holds without a zero window (it holds ",
	                strlen("t.ini: [lab] scale: 100 leaves a 25000000-byte "
	                       "body, which the path holds without a zero "
	                       "window (it holds ")) == 0);
	assert_non_null(strstr(err, "); at most scale = 35"));
	snprintf(text, sizeof(text), spill, "35");
	parse_ok(text, &sc);
	assert_int_equal(sc.body, 71428571);
}

static void
giveup_args(void **state)
{
	char s[256];

	(void)state;
	assert_int_equal(
	    giveup("zwp-probes=4,interval=200ms", s, sizeof(s)), 4);
	assert_string_equal(s, "--zwp-probes 4 --zwp-interval 200ms");
	assert_int_equal(
	    giveup("zwp-probes=7,max=2s,interval=100ms", s, sizeof(s)), 6);
	assert_string_equal(s,
	    "--zwp-probes 7 --zwp-max-interval 2s "
	    "--zwp-interval 100ms");
	assert_int_equal(giveup("send-timeout=20s", s, sizeof(s)), 2);
	assert_string_equal(s, "--send-timeout 20s");
	assert_int_equal(giveup("user-timeout=5s", s, sizeof(s)), 2);
	assert_string_equal(s, "--user-timeout 5s");
	assert_int_equal(giveup("orphan", s, sizeof(s)), 1);
	assert_string_equal(s, "--close-after-write");
	assert_int_equal(giveup("none", s, sizeof(s)), 0);
	assert_int_equal(giveup("", s, sizeof(s)), 0);
	assert_int_equal(giveup("zwp-probes=4", s, sizeof(s)), -EINVAL);
	assert_int_equal(
	    giveup("zwp-probes=0,interval=1s", s, sizeof(s)), -EINVAL);
	assert_int_equal(
	    giveup("zwp-probes=2,every=1s", s, sizeof(s)), -EINVAL);
	assert_int_equal(giveup("send-timeout=soon", s, sizeof(s)), -EINVAL);
	assert_int_equal(giveup("send-timeout", s, sizeof(s)), -EINVAL);
	assert_int_equal(giveup("user-timeout=5s,x=1", s, sizeof(s)), -EINVAL);
	assert_int_equal(giveup("none=1", s, sizeof(s)), -EINVAL);
}

/* The proxy config of a scenario as a string (freed by the caller). */
static char *
proxy_config(const struct lab_scenario *sc)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	lab_proxy_config(f, sc, "10.202.0.1:8080", "10.201.0.1:8000",
	    "127.0.0.1:9090", "/tmp/access.json");
	fclose(f);
	return text;
}

static size_t
count(const char *text, const char *what)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
		n++;
	return n;
}

static void
proxy_config_defaults(void **state)
{
	struct lab_scenario sc;
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	char *text;

	(void)state;
	parse_ok("[proxy]\nbuffer.high_watermark = 2M\n"
	         "buffer.low_watermark = 0\n",
	    &sc);
	text = proxy_config(&sc);
	assert_non_null(strstr(text, "[listen]\naddress = 10.202.0.1:8080\n"));
	assert_non_null(strstr(text, "server = 10.201.0.1:8000\n"));
	assert_non_null(strstr(text, "[admin]\naddress = 127.0.0.1:9090\n"));
	assert_non_null(strstr(text, "access = /tmp/access.json\n"));
	assert_int_equal(count(text, "rcvbuf = 256k\n"), 1);
	cfg = config_load_string(text, "lab.ini", err, sizeof(err));
	if (cfg == NULL)
		print_error("%s\n%s\n", err, text);
	assert_non_null(cfg);
	assert_true(cfg->upstream.rcvbuf == 256 * 1024);
	assert_true(cfg->buffer.high_watermark == 2 * 1048576);
	assert_true(cfg->buffer.low_watermark == 0);
	assert_true(cfg->listen.drain_timeout == 2000);
	config_free(cfg);
	free(text);
}

static void
proxy_config_overrides(void **state)
{
	struct lab_scenario sc;
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	char *text;

	(void)state;
	parse_ok(full, &sc);
	text = proxy_config(&sc);
	assert_int_equal(count(text, "rcvbuf ="), 1); /* the scenario's only */
	cfg = config_load_string(text, "lab.ini", err, sizeof(err));
	assert_non_null(cfg);
	assert_true(cfg->upstream.rcvbuf == 1048576);
	assert_int_equal(cfg->buffer.policy, POLICY_SPILL);
	config_free(cfg);
	free(text);
}

static void
ss_output(void **state)
{
	static const char out[] =
	    "ESTAB 0      3877888 10.201.0.1:8000 10.201.0.2:50109\n"
	    "\t cubic wscale:10,10 rto:204 bytes_sent:113152 "
	    "bytes_acked:32768 backoff:3 notsent:3797504 snd_wnd:95232\n"
	    "FIN-WAIT-1 0 404472 10.201.0.1:8000 10.201.0.2:50111\n"
	    "\t cubic bytes_acked:5886984 bytes_received:120 backoff:2\n"
	    "113152 0      127.0.0.1:60090 127.0.0.1:50109\n"
	    "\t bytes_acked:1 bytes_received:113152 snd_wnd:65536\n"
	    "TIME-WAIT 0 0 10.201.0.1:8000 10.201.0.2:50113\n";
	struct lab_sock s[8];

	(void)state;
	assert_int_equal(lab_ss_parse(out, s, 8), 4);
	assert_string_equal(s[0].state, "ESTAB");
	assert_true(s[0].send_q == 3877888 && s[0].recv_q == 0);
	assert_string_equal(s[0].local, "10.201.0.1:8000");
	assert_string_equal(s[0].peer, "10.201.0.2:50109");
	assert_true(s[0].bytes_acked == 32768 && s[0].snd_wnd == 95232);
	assert_int_equal(s[0].backoff, 3);
	/* ss prints snd_wnd only when it is not 0 */
	assert_true(s[1].snd_wnd == 0 && s[1].bytes_acked == 5886984);
	assert_true(s[1].bytes_received == 120 && s[1].send_q == 404472);
	/* a single-state filter: no state column */
	assert_string_equal(s[2].state, "");
	assert_true(s[2].recv_q == 113152 && s[2].bytes_received == 113152);
	assert_string_equal(s[2].peer, "127.0.0.1:50109");
	/* no info line */
	assert_true(s[3].snd_wnd == -1 && s[3].bytes_acked == 0);
	assert_int_equal(lab_ss_parse(out, s, 2), 2);
	assert_int_equal(lab_ss_parse("", s, 8), 0);
}

/* Loads conf/scenarios/NAME.ini (its path into path): no error, its own
 * name, network namespaces. */
static void
load_shipped(const char *name, struct lab_scenario *sc, char *path, size_t len)
{
	char err[LAB_ERR_MAX] = "";

	snprintf(
	    path, len, "%s/conf/scenarios/%s.ini", SLUICE_SOURCE_ROOT, name);
	if (lab_scenario_load(path, sc, err, sizeof(err)) != 0)
		print_error("%s\n", err);
	assert_string_equal(err, "");
	assert_string_equal(sc->name, name);
	assert_int_equal(sc->mode, LAB_MODE_NETNS);
}

static void
shipped_scenarios(void **state)
{
	static const char *const names[] = {"incident", "spill", "resume",
	    "small-gap", "patient-origin", "nginx-default", "haproxy",
	    "exercise1", "exercise2", "exercise3", "printer", "dos", "stall",
	    "stall-spill", "scaled"};
	char path[512], cerr[CONFIG_ERR_MAX];
	struct lab_scenario sc;
	struct config *cfg;
	char *text;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		load_shipped(names[i], &sc, path, sizeof(path));
		text = proxy_config(&sc);
		cfg = config_load_string(text, path, cerr, sizeof(cerr));
		if (cfg == NULL)
			print_error("%s\n", cerr);
		assert_non_null(cfg);
		/* pinned, for sluice; nginx and HAProxy pin theirs with the
		 * lb namespace's tcp_rmem */
		if (sc.lb_kind == LAB_LB_SLUICE)
			assert_true(cfg->upstream.rcvbuf != 0);
		else if (sc.lb_kind != LAB_LB_NONE)
			assert_int_equal(sc.nsysctl[LAB_LB], 1);
		config_free(cfg);
		free(text);
	}
}

/* The scenarios docs/kernel.md gives as its commands: each loads, under its
 * own name, and those without a balancer have no [proxy] keys to check
 * (kernel-autotune leaves upstream.rcvbuf to autotuning on purpose). */
static void
kernel_scenarios(void **state)
{
	static const char *const names[] = {"kernel-probes", "kernel-retries2",
	    "kernel-abort", "kernel-user-timeout", "kernel-orphan",
	    "kernel-rcvbuf", "kernel-autotune", "kernel-wakeup"};
	char path[512];
	struct lab_scenario sc;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		load_shipped(names[i], &sc, path, sizeof(path));
}

/* ---- the JSON reader (base/json.h) ----------------------------------- */

static const char line[] = "{\"probes_total\":9,\"zwp_probes\":7,"
                           "\"probes\":3,\"seconds\":1.5,\"done\":true,"
                           "\"cut\":false,\"gave_up\":null,\"delta\":-2,"
                           "\"outcome\":\"complete\",\"n\":42";

static void
json_numbers(void **state)
{
	const char *end = line + strlen(line);

	(void)state;
	/* a key that another key starts or ends with is not that key */
	assert_true(json_num(line, end, "probes") == 3);
	assert_true(json_num(line, end, "probes_total") == 9);
	assert_true(json_num(line, end, "total") == -1);
	assert_true(json_num(line, end, "seconds") == 1.5);
	assert_true(json_num(line, end, "done") == 1);
	assert_true(json_num(line, end, "cut") == 0);
	assert_true(json_num(line, end, "gave_up") == -1); /* null */
	assert_true(json_num(line, end, "outcome") == -1); /* a string */
	assert_true(json_num(line, end, "missing") == -1);
	assert_true(json_num(line, end, "delta") == -2);
	/* a number that ends the buffer */
	assert_true(json_num(line, end, "n") == 42);
	{
		static const char n7[] = "\"n\":7";

		assert_true(json_num(n7, n7 + 5, "n") == 7);
	}
	/* the key must start before end; its number is read whole */
	assert_true(
	    json_num(line, strstr(line, "\"probes\":"), "probes") == -1);
	assert_true(json_num(line, strstr(line, "\"n\":") + 1, "n") == 42);
	assert_int_equal(json_u64(line, end, "probes"), 3);
	assert_int_equal(json_u64(line, end, "delta"), 0);
	assert_int_equal(json_u64(line, end, "gave_up"), 0);
	assert_int_equal(json_u64(line, end, "missing"), 0);
	{
		static const char b[] = "{\"b\":12345678901}";

		assert_int_equal(json_u64(b, b + 17, "b"), 12345678901ULL);
	}
}

static void
json_strings(void **state)
{
	char buf[16];

	(void)state;
	json_str(line, "outcome", buf, sizeof(buf));
	assert_string_equal(buf, "complete");
	json_str(line, "come", buf, sizeof(buf)); /* the end of a key */
	assert_string_equal(buf, "");
	json_str(line, "missing", buf, sizeof(buf));
	assert_string_equal(buf, "");
	json_str(line, "gave_up", buf, sizeof(buf)); /* null */
	assert_string_equal(buf, "");
	json_str(line, "probes", buf, sizeof(buf)); /* a number */
	assert_string_equal(buf, "");
	json_str("{\"s\":\"0123456789abcdefghij\"}", "s", buf, sizeof(buf));
	assert_string_equal(buf, "0123456789abcde"); /* cut at len */
	/* no unescaping: the string is taken up to its first quote */
	json_str("{\"s\":\"a\\\\b\"}", "s", buf, sizeof(buf));
	assert_string_equal(buf, "a\\\\b");
	json_str("{\"s\":\"say \\\"hi\\\"\"}", "s", buf, sizeof(buf));
	assert_string_equal(buf, "say \\");
	/* the first "key": anywhere, a nested one included */
	json_str("{\"in\":{\"s\":\"inner\"},\"s\":\"outer\"}", "s", buf,
	    sizeof(buf));
	assert_string_equal(buf, "inner");
}

static void
json_objects(void **state)
{
	static const char text[] = "{\"id\":1,\"upstream_tcp\":{\"rcv_queue\":"
	                           "10,\"rcv_space\":20},\"client_tcp\":null,"
	                           "\"o\":{\"a\":1,\"in\":{\"b\":2},\"c\":3}}";
	const char *start = NULL, *end = NULL;

	(void)state;
	assert_true(json_obj(text, "upstream_tcp", &start, &end));
	assert_int_equal(*end, '}');
	assert_true(json_num(start, end, "rcv_queue") == 10);
	assert_true(json_num(start, end, "rcv_space") == 20);
	assert_true(json_num(start, end, "id") == -1);
	assert_false(json_obj(text, "client_tcp", &start, &end)); /* null */
	assert_false(json_obj(text, "missing", &start, &end));
	assert_false(json_obj(text, "tcp", &start, &end)); /* a key's end */
	/* a nested object ends the outer one at its own '}' */
	assert_true(json_obj(text, "o", &start, &end));
	assert_true(json_num(start, end, "a") == 1);
	assert_true(json_num(start, end, "b") == 2);
	assert_true(json_num(start, end, "c") == -1);
	assert_true(json_obj(text, "in", &start, &end));
	assert_true(json_num(start, end, "b") == 2);
}

/*
 * [fault]: the keys, their checks (an action the proxy knows, a side, the
 * duration or rate the action needs, sluice as the balancer), the proxy
 * config it makes ([admin] faults = on) and the rule the lab posts.
 */
static void
scenario_fault(void **state)
{
	struct lab_scenario sc;
	char *text = NULL, *cfgtext;
	size_t len = 0;
	FILE *f;

	(void)state;
	parse_ok("[fault]\naction = stall\nside = client\nafter_bytes = 1M\n"
	         "for = 10s\n",
	    &sc);
	assert_string_equal(sc.fault_action, "stall");
	assert_string_equal(sc.fault_side, "client");
	assert_true(sc.fault_after == 1048576 && sc.fault_for_ms == 10000);
	cfgtext = proxy_config(&sc);
	assert_non_null(strstr(cfgtext,
	    "[admin]\naddress = 127.0.0.1:9090\n"
	    "faults = on\n"));
	free(cfgtext);
	f = open_memstream(&text, &len);
	lab_fault_json(f, &sc);
	fclose(f);
	assert_string_equal(text,
	    "{\"name\":\"lab\",\"action\":\"stall\",\"side\":\"client\","
	    "\"after_bytes\":1048576,\"for\":\"10000ms\"}");
	free(text);
	parse_ok("[lab]\ntime_scale = 0.5\n[fault]\naction = bandwidth\n"
	         "rate = 2mbit\npath = /big\n",
	    &sc);
	text = NULL;
	f = open_memstream(&text, &len);
	lab_fault_json(f, &sc);
	fclose(f);
	assert_string_equal(text,
	    "{\"name\":\"lab\",\"match\":{\"path\":\"/big\"},"
	    "\"action\":\"bandwidth\",\"side\":\"upstream\","
	    "\"after_bytes\":0,\"rate\":\"2000000bit\"}");
	free(text);
	parse_ok("[lab]\ntime_scale = 0.5\n[fault]\naction = latency\n"
	         "for = 4s\n",
	    &sc);
	assert_true(sc.fault_for_ms == 2000); /* scaled like every interval */
	parse_ok("", &sc);
	cfgtext = proxy_config(&sc);
	assert_null(strstr(cfgtext, "faults = on"));
	free(cfgtext);
	parse_err("[fault]\naction = explode\n", "t.ini: [fault] action: not");
	parse_err("[fault]\naction = stall\nside = left\nfor = 1s\n",
	    "t.ini: [fault] side: not upstream or client");
	parse_err("[fault]\naction = stall\n", "t.ini: [fault] for: ");
	parse_err("[fault]\naction = bandwidth\n", "t.ini: [fault] rate: ");
	parse_err(
	    "[fault]\naction = limit_data\n", "t.ini: [fault] after_bytes: ");
	parse_err("[lb]\nkind = nginx\n[fault]\naction = reset\n",
	    "t.ini: [fault] needs [lb] kind = sluice");
	parse_err("[fault]\nactoin = stall\n", "t.ini:2: [fault] actoin: ");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(scenario_defaults),
	    cmocka_unit_test(scenario_full),
	    cmocka_unit_test(scenario_errors),
	    cmocka_unit_test(scenario_part_two),
	    cmocka_unit_test(scenario_part_two_errors),
	    cmocka_unit_test(scenario_time_scale),
	    cmocka_unit_test(scenario_scale),
	    cmocka_unit_test(scenario_scale_refused),
	    cmocka_unit_test(giveup_args),
	    cmocka_unit_test(proxy_config_defaults),
	    cmocka_unit_test(proxy_config_overrides),
	    cmocka_unit_test(ss_output),
	    cmocka_unit_test(scenario_fault),
	    cmocka_unit_test(shipped_scenarios),
	    cmocka_unit_test(kernel_scenarios),
	    cmocka_unit_test(json_numbers),
	    cmocka_unit_test(json_strings),
	    cmocka_unit_test(json_objects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
