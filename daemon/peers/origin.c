/*
 * origin: see origin.h.  This file is the verb: its options and usage,
 * the listener, accepting a connection (its handles, its request parser's
 * callbacks), signals and shutdown.  A connection's I/O is in
 * origin_conn.c, what a request gets in origin_answer.c, the give-up
 * rules and the end of a connection in origin_giveup.c; origin_int.h has
 * what they share.
 *
 * Each connection is a raw non-blocking socket watched with uv_poll, not a
 * uv_tcp_t: the origin needs the descriptor itself for sendfile(2),
 * TCP_INFO, SIOCOUTQ, SO_LINGER and a close() that leaves the kernel an
 * orphan, exactly as a real server does.
 *
 * A connection reads one request (llhttp, paused at its end, so pipelined
 * requests wait in the kernel), answers it from an output buffer (head,
 * chunk framing and pattern bytes) or with sendfile (files), then reads
 * the next.  A 20 ms timer samples TCP_INFO while a response is queued:
 * it accumulates the time the peer's window was zero, runs the emulated
 * zero-window-probe schedule, the send timeout, and notices a kernel abort
 * (TCP_USER_TIMEOUT).  One JSON line is written when a connection ends.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#include "base/address.h"
#include "base/http.h"
#include "base/list.h"
#include "base/log.h"
#include "base/pattern.h"
#include "base/sockopt.h"
#include "base/units.h"
#include "peers/origin.h"
#include "peers/origin_int.h"

uint64_t
now_ms(struct origin *o)
{
	return uv_now(o->loop);
}

/* ---- accepting -------------------------------------------------------- */

static int
req_on_url(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(&((struct oconn *)p->data)->head, at, len);
}

static int
req_on_field(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(&((struct oconn *)p->data)->head, at, len);
}

static int
req_on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(&((struct oconn *)p->data)->head, at, len);
}

static int
req_on_begin(llhttp_t *p)
{
	http_head_reset(&((struct oconn *)p->data)->head);
	return 0;
}

static int
req_on_complete(llhttp_t *p)
{
	((struct oconn *)p->data)->req_ready = true;
	return HPE_PAUSED;
}

static llhttp_settings_t req_settings;

static void
oconn_start(struct origin *o, int fd, const struct sockaddr_storage *ss)
{
	const struct origin_opts *opt = &o->opt;
	const char *which = NULL;
	struct oconn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c == NULL || (c->obuf = malloc(OBUF_SIZE)) == NULL) {
		free(c);
		close(fd);
		log_error("origin: out of memory");
		return;
	}
	c->o = o;
	c->fd = fd;
	c->file_fd = -1;
	c->t_start = now_ms(o);
	c->last_write = c->t_start;
	address_text(
	    (const struct sockaddr *)ss, NULL, 0, c->peer, sizeof(c->peer));
	setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
	if (sockopt_client(fd, opt->sndbuf, opt->user_timeout_ms, &which) < 0)
		log_warn("origin: cannot set %s: %s", which, strerror(errno));
	http_head_init(&c->head, c->headbuf, sizeof(c->headbuf));
	llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
	c->parser.data = c;
	uv_poll_init(o->loop, &c->poll, fd);
	uv_timer_init(o->loop, &c->tick);
	uv_timer_init(o->loop, &c->drip);
	c->poll.data = c->tick.data = c->drip.data = c;
	c->nhandles = 3;
	list_insert_head(&o->conns, &c->link);
	o->nconns++;
	uv_timer_start(&c->tick, oconn_on_tick, TICK_MS, TICK_MS);
	log_debug("origin: accepted %s", c->peer);
	if (opt->raw) {
		/* The article's server: no HTTP, the pattern from the
		 * first byte on, until the peer goes. */
		struct answer a = {.first = 0, .last = UINT64_MAX - 1};

		snprintf(c->path, sizeof(c->path), "(raw)");
		c->raw_stream = true;
		c->olen = c->ooff = 0;
		start_body(c, &a, BODY_PATTERN);
		c->body_total = 0;
		pump(c);
		return;
	}
	update_poll(c);
}

static void
origin_on_listen(uv_poll_t *p, int status, int events)
{
	struct origin *o = p->data;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	(void)events;
	if (status < 0 || o->stopping)
		return;
	for (int i = 0; i < 64; i++) {
		len = sizeof(ss);
		fd = accept4(o->lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("origin: accept: %s", strerror(errno));
			return;
		}
		oconn_start(o, fd, &ss);
	}
}

/* ---- the verb --------------------------------------------------------- */

void
origin_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice origin --listen ADDR [options]\n"
	    "\n"
	    "A fast HTTP/1.1 origin for the testbed.  GET/HEAD /bytes/SIZE\n"
	    "(/bytes/2.5G) sends SIZE bytes of the keyed pattern that\n"
	    "'sluice fetch --verify' checks, with Content-Length, a strong "
	    "ETag,\n"
	    "Accept-Ranges and single Range requests (206, 416);\n"
	    "/bytes/SIZE?chunked=1 sends it chunked.  It writes as fast as "
	    "the\n"
	    "socket takes.\n"
	    "\n"
	    "  --listen ADDR          host:port or [v6]:port (port 0: any)\n"
	    "  --root DIR             also serve the files under DIR "
	    "(sendfile)\n"
	    "  --key NAME             pattern key (default \"sluice\")\n"
	    "  --sndbuf SIZE          SO_SNDBUF of each connection\n"
	    "  --json FILE            one JSON line per connection (default: "
	    "stderr)\n"
	    "  --log-level LEVEL      error, warn, info (default), debug\n"
	    "\n"
	    "Give-up rules (how a server ends a download a zero-window "
	    "receiver\n"
	    "holds up; each logs which fired and sets gave_up in the JSON):\n"
	    "  --zwp-probes N --zwp-interval T0 [--zwp-max-interval TMAX]\n"
	    "                         abort with RST after N zero-window "
	    "probes\n"
	    "                         at T0, 2*T0, 4*T0... (capped at TMAX),\n"
	    "                         emulated from TCP_INFO (Linux never "
	    "gives\n"
	    "                         up while its probes are answered)\n"
	    "  --user-timeout T       TCP_USER_TIMEOUT: the kernel aborts\n"
	    "  --send-timeout T       close after T without write progress\n"
	    "                         (nginx send_timeout)\n"
	    "  --close-after-write    close() once the body is in the socket;\n"
	    "                         the kernel finishes or aborts the "
	    "orphan\n"
	    "\n"
	    "The article's server (docs/references.md) and fault injection:\n"
	    "  --drip BYTES --every T send BYTES every T\n"
	    "  --raw                  no HTTP: the pattern from the first "
	    "byte\n"
	    "  --flip-at OFFSET       corrupt the body byte at OFFSET\n"
	    "  --truncate-at OFFSET   close (FIN) after the body byte before "
	    "OFFSET\n"
	    "                         (--raw: a stream of OFFSET bytes, "
	    "closed\n"
	    "                         once the peer acked them all)\n"
	    "\n"
	    "JSON fields: bytes_written bytes_acked bytes_unsent "
	    "zero_window_s\n"
	    "probes gave_up duration_s (and peer requests path status\n"
	    "body_bytes queued_at_close).  SIGINT/SIGTERM end it (exit 0).\n");
}

static int
bad_option(const char *name, const char *value, const char *what)
{
	fprintf(stderr, "sluice origin: --%s %s: %s\n", name,
	    value ? value : "", what);
	return 2;
}

enum {
	OPT_LISTEN = 256,
	OPT_ROOT,
	OPT_KEY,
	OPT_SNDBUF,
	OPT_USER_TIMEOUT,
	OPT_SEND_TIMEOUT,
	OPT_ZWP_PROBES,
	OPT_ZWP_INTERVAL,
	OPT_ZWP_MAX,
	OPT_CLOSE_AFTER_WRITE,
	OPT_DRIP,
	OPT_EVERY,
	OPT_RAW,
	OPT_FLIP,
	OPT_TRUNCATE,
	OPT_JSON,
	OPT_LOG_LEVEL,
};

static const struct option origin_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"root", required_argument, NULL, OPT_ROOT},
    {"key", required_argument, NULL, OPT_KEY},
    {"sndbuf", required_argument, NULL, OPT_SNDBUF},
    {"user-timeout", required_argument, NULL, OPT_USER_TIMEOUT},
    {"send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT},
    {"zwp-probes", required_argument, NULL, OPT_ZWP_PROBES},
    {"zwp-interval", required_argument, NULL, OPT_ZWP_INTERVAL},
    {"zwp-max-interval", required_argument, NULL, OPT_ZWP_MAX},
    {"close-after-write", no_argument, NULL, OPT_CLOSE_AFTER_WRITE},
    {"drip", required_argument, NULL, OPT_DRIP},
    {"every", required_argument, NULL, OPT_EVERY},
    {"raw", no_argument, NULL, OPT_RAW},
    {"flip-at", required_argument, NULL, OPT_FLIP},
    {"truncate-at", required_argument, NULL, OPT_TRUNCATE},
    {"json", required_argument, NULL, OPT_JSON},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define DAY_MS 86400000ULL /* the longest duration an option takes */

/* Parses one option's value with the units parser it takes; *why says
 * what is wrong, in msg (len bytes) when it is formatted. */
static int
option_value(int opt, const char *v, struct origin_opts *o, const char **why,
    char *msg, size_t len)
{
	uint64_t u;
	int rc;

	switch (opt) {
	case OPT_LISTEN:
		*why = "not an address (host:port or [v6]:port)";
		return address_parse(v, 1, &o->listen);
	case OPT_ROOT:
		o->root = v;
		return 0;
	case OPT_KEY:
		o->key = pattern_key(v);
		return 0;
	case OPT_JSON:
		o->json_path = v;
		return 0;
	case OPT_LOG_LEVEL:
		*why = "not one of error, warn, info, debug";
		for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
			static const char *const n[] = {
			    "error", "warn", "info", "debug"};

			if (strcmp(v, n[i]) == 0) {
				log_set_level((enum log_level)i);
				return 0;
			}
		}
		return -EINVAL;
	case OPT_ZWP_PROBES:
		rc = units_parse_in(UNITS_SIZE, v, 1, 64, &u, msg, len);
		*why = rc == -EINVAL ? "not a count from 1 to 64" : msg;
		if (rc < 0)
			return rc;
		o->zwp_probes = (unsigned)u;
		return 0;
	case OPT_SNDBUF:
	case OPT_DRIP:
	case OPT_FLIP:
	case OPT_TRUNCATE:
		*why = msg;
		if (units_parse_in(UNITS_SIZE, v, 0, UINT64_MAX, &u, msg, len) <
		    0)
			return -EINVAL;
		if (opt == OPT_SNDBUF)
			o->sndbuf = u;
		else if (opt == OPT_DRIP)
			o->drip_bytes = u;
		else if (opt == OPT_FLIP)
			o->flip_at = u;
		else
			o->truncate_at = u;
		return 0;
	default:
		*why = msg;
		if (units_parse_in(UNITS_DURATION, v, 0, DAY_MS, &u, msg, len) <
		    0)
			return -EINVAL;
		if (opt == OPT_USER_TIMEOUT)
			o->user_timeout_ms = u;
		else if (opt == OPT_SEND_TIMEOUT)
			o->send_timeout_ms = u;
		else if (opt == OPT_ZWP_INTERVAL)
			o->zwp_interval_ms = u;
		else if (opt == OPT_ZWP_MAX)
			o->zwp_max_interval_ms = u;
		else
			o->drip_every_ms = u;
		return 0;
	}
}

static int
parse_args(int argc, char **argv, struct origin_opts *o)
{
	const char *why = "";
	char msg[96];
	int c, idx;

	memset(o, 0, sizeof(*o));
	o->key = pattern_key(PATTERN_DEFAULT_NAME);
	o->flip_at = o->truncate_at = UINT64_MAX;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", origin_options, &idx)) != -1) {
		if (c == 'h') {
			origin_usage(stdout);
			return -1;
		}
		if (c == '?')
			return 2;
		if (c == OPT_CLOSE_AFTER_WRITE)
			o->close_after_write = true;
		else if (c == OPT_RAW)
			o->raw = true;
		else if (option_value(c, optarg, o, &why, msg, sizeof(msg)) < 0)
			return bad_option(
			    origin_options[idx].name, optarg, why);
	}
	if (optind < argc)
		return bad_option("", argv[optind], "unexpected argument");
	if (o->listen.len == 0)
		return bad_option("listen", NULL, "is required");
	if ((o->zwp_probes != 0) != (o->zwp_interval_ms != 0))
		return bad_option("zwp-probes", NULL,
		    "--zwp-probes and --zwp-interval go together");
	if ((o->drip_bytes != 0) != (o->drip_every_ms != 0))
		return bad_option(
		    "drip", NULL, "--drip and --every go together");
	return 0;
}

static void
origin_stop(struct origin *o)
{
	if (o->stopping)
		return;
	o->stopping = true;
	uv_poll_stop(&o->lpoll);
	uv_close((uv_handle_t *)&o->lpoll, NULL);
	close(o->lfd);
	list_foreach(c, &o->conns, struct oconn, link)
	    oconn_close(c, false, "origin stopping");
	uv_close((uv_handle_t *)&o->sigint, NULL);
	uv_close((uv_handle_t *)&o->sigterm, NULL);
}

static void
origin_on_signal(uv_signal_t *s, int signum)
{
	log_info("origin: signal %d, stopping", signum);
	origin_stop(s->data);
}

/* Binds and listens; returns the descriptor or a negative errno. */
static int
listen_on(const struct sockaddr_any *a)
{
	int fd, one = 1, rc;

	fd = socket(
	    a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 ||
	    listen(fd, 1024) == -1) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static void
print_listening(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char text[INET6_ADDRSTRLEN + 8] = "?";

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		address_text(
		    (struct sockaddr *)&ss, NULL, 0, text, sizeof(text));
	log_info("origin: listening on %s", text);
}

int
origin_main(int argc, char **argv)
{
	struct origin o;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = parse_args(argc, argv, &o.opt)) != 0)
		return rc < 0 ? 0 : rc;
	signal(SIGPIPE, SIG_IGN);
	if (o.opt.json_path != NULL &&
	    (o.json = fopen(o.opt.json_path, "a")) == NULL) {
		fprintf(stderr, "sluice origin: --json %s: %s\n",
		    o.opt.json_path, strerror(errno));
		return 2;
	}
	if ((o.lfd = listen_on(&o.opt.listen)) < 0) {
		fprintf(stderr, "sluice origin: --listen %s: %s\n",
		    o.opt.listen.text, strerror(-o.lfd));
		if (o.json != NULL)
			fclose(o.json);
		return 2;
	}
	llhttp_settings_init(&req_settings);
	req_settings.on_message_begin = req_on_begin;
	req_settings.on_url = req_on_url;
	req_settings.on_header_field = req_on_field;
	req_settings.on_header_value = req_on_value;
	req_settings.on_message_complete = req_on_complete;
	o.loop = uv_default_loop();
	uv_poll_init(o.loop, &o.lpoll, o.lfd);
	o.lpoll.data = &o;
	uv_poll_start(&o.lpoll, UV_READABLE, origin_on_listen);
	uv_signal_init(o.loop, &o.sigint);
	uv_signal_init(o.loop, &o.sigterm);
	o.sigint.data = o.sigterm.data = &o;
	uv_signal_start(&o.sigint, origin_on_signal, SIGINT);
	uv_signal_start(&o.sigterm, origin_on_signal, SIGTERM);
	print_listening(o.lfd);
	uv_run(o.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(o.loop);
	if (o.json != NULL)
		fclose(o.json);
	return rc == 0 ? 0 : 1;
}
