/*
 * origin give-up rules and the end of a connection.  A 20 ms timer
 * samples TCP_INFO while a response is queued: it accumulates the time
 * the peer's window was zero, runs the emulated zero-window-probe
 * schedule, the send timeout, and notices a kernel abort
 * (TCP_USER_TIMEOUT).  oconn_close is the one teardown: it logs which
 * rule gave up, takes a last sample and writes the connection's JSON line.
 *
 * The zero-window-probe rule (--zwp-probes N --zwp-interval T0
 * [--zwp-max-interval TMAX]) is emulated: Linux probes a zero window
 * forever while the probes are answered (RFC 1122 4.2.2.17), and its
 * tcpi_probes is reset by every ACK.  So the origin watches tcpi_snd_wnd:
 * when it is 0 with bytes queued, probe k (from 1) is due at
 * sum_{j<k} min(T0*2^j, TMAX) after the window closed; when N probes are
 * due and the window is still closed, the origin aborts with RST
 * (SO_LINGER 0).  The schedule restarts when the window opens and data
 * moves.  A stack implementing the rule itself would count its real
 * probes (whose times follow the RTO, not T0) and could give up silently
 * instead of with a RST; the emulation keeps the rule's timing exact and
 * makes the abort visible to the receiver at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "base/json.h"
#include "base/list.h"
#include "base/log.h"
#include "base/tcpinfo.h"
#include "peers/origin_int.h"

static void end_episode(struct oconn *c, uint64_t now);

/* ---- JSON at the end of a connection --------------------------------- */

static void
json_line(struct oconn *c)
{
	uint64_t acked = 0, unsent;
	FILE *out = c->o->json != NULL ? c->o->json : stderr;

	if (c->acked_total > c->head_bytes)
		acked = c->acked_total - c->head_bytes;
	if (acked > c->body_written)
		acked = c->body_written;
	unsent = c->body_total > acked ? c->body_total - acked : 0;
	fprintf(out,
	    "{\"event\":\"origin_conn\",\"peer\":\"%s\",\"requests\":%d,"
	    "\"path\":",
	    c->peer, c->requests);
	json_string(out, c->path); /* the client's bytes: escaped */
	fprintf(out,
	    ",\"status\":%d,\"body_bytes\":%" PRIu64
	    ",\"bytes_written\":%" PRIu64 ",\"bytes_acked\":%" PRIu64
	    ",\"bytes_unsent\":%" PRIu64 ",\"queued_at_close\":%" PRId64
	    ",\"zero_window_s\":%.3f,\"probes\":%u,\"gave_up\":%s%s%s,"
	    "\"duration_s\":%.3f}\n",
	    c->status, c->body_total, c->body_written, acked, unsent,
	    c->queued_at_close, (double)c->zw_ms / 1000.0, c->probes,
	    c->gave_up ? "\"" : "", c->gave_up ? c->gave_up : "null",
	    c->gave_up ? "\"" : "",
	    (double)(now_ms(c->o) - c->t_start) / 1000.0);
	fflush(out);
}

/* ---- closing ---------------------------------------------------------- */

static void
oconn_on_close(uv_handle_t *h)
{
	struct oconn *c = h->data;

	if (--c->nhandles > 0)
		return;
	list_remove(&c->link);
	c->o->nconns--;
	free(c->obuf);
	free(c);
}

/* Reads the kernel's view one last time (TCP_INFO is gone after close). */
static void
final_sample(struct oconn *c)
{
	struct tcpinfo ti;
	int64_t q;

	if (tcpinfo_read(c->fd, &ti) == 0 && ti.bytes_acked > c->acked_total)
		c->acked_total = ti.bytes_acked;
	q = tcpinfo_outq(c->fd);
	c->queued_at_close = q < 0 ? 0 : q;
	if (c->raw_stream)
		c->body_total =
		    c->body_written; /* an endless body: what went */
	if (c->zw_since != 0)
		end_episode(c, now_ms(c->o));
}

/*
 * Ends the connection: reset sends RST (SO_LINGER 0); otherwise close()
 * leaves what is queued to the kernel, which delivers it or aborts the
 * orphan by its own rules.  Logs the give-up once, writes the JSON line.
 */
void
oconn_close(struct oconn *c, bool reset, const char *why)
{
	if (c->closing)
		return;
	c->closing = true;
	final_sample(c);
	if (c->gave_up != NULL)
		log_info("origin: %s: gave up (%s): %s; %" PRIu64 " of %" PRIu64
		         " body bytes written, %" PRId64 " queued at close",
		    c->peer, c->gave_up, why, c->body_written, c->body_total,
		    c->queued_at_close);
	else if (why != NULL)
		log_debug("origin: %s: closed: %s", c->peer, why);
	if (reset) {
		struct linger l = {1, 0};

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	json_line(c);
	if (c->file_fd >= 0)
		close(c->file_fd);
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, oconn_on_close);
	uv_close((uv_handle_t *)&c->tick, oconn_on_close);
	uv_close((uv_handle_t *)&c->drip, oconn_on_close);
	close(c->fd);
}

/*
 * The socket failed under the application (a write, the poll, or the
 * tick saw it): when the kernel aborted it on TCP_USER_TIMEOUT that is the
 * give-up rule firing; anything else is an ordinary end.
 */
void
socket_failed(struct oconn *c, int err)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
	    soerr != 0)
		err = soerr;
	if (err == ETIMEDOUT && c->o->opt.user_timeout_ms != 0)
		c->gave_up = "user-timeout";
	oconn_close(c, false, strerror(err));
}

/* ---- the zero-window watch -------------------------------------------- */

/* When probe k (1-based) of the emulated schedule is due, in ms after the
 * window closed. */
static uint64_t
probe_due(const struct origin_opts *opt, unsigned k)
{
	uint64_t t = 0, step = opt->zwp_interval_ms;

	for (unsigned j = 0; j < k; j++) {
		uint64_t s = step;

		if (opt->zwp_max_interval_ms != 0 &&
		    s > opt->zwp_max_interval_ms)
			s = opt->zwp_max_interval_ms;
		t += s;
		if (step < UINT64_MAX / 2)
			step *= 2;
	}
	return t;
}

static void
end_episode(struct oconn *c, uint64_t now)
{
	c->zw_ms += now - c->zw_since;
	c->zw_since = 0;
	c->probes += c->ep_probes;
	c->ep_probes = 0;
}

void
oconn_on_tick(uv_timer_t *t)
{
	struct oconn *c = t->data;
	const struct origin_opts *opt = &c->o->opt;
	uint64_t now = now_ms(c->o);
	struct tcpinfo ti;
	int64_t outq;
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->closing)
		return;
	if (tcpinfo_read(c->fd, &ti) < 0)
		return;
	/* A kernel abort (TCP_USER_TIMEOUT, or retries spent) leaves the
	 * socket closed with an error the application has not read yet. */
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    err != 0) {
		socket_failed(c, err);
		return;
	}
	outq = tcpinfo_outq(c->fd);
	/* Data moved since the last look: the window opened in between
	 * (on loopback it refills within microseconds, so a 20 ms sample
	 * would see zero almost every time): the episode, and the probe
	 * schedule, start over.  Only a window that stays shut with nothing
	 * acknowledged counts. */
	if (ti.bytes_acked > c->acked_total) {
		c->acked_total = ti.bytes_acked;
		if (c->zw_since != 0)
			end_episode(c, now);
	}
	if (ti.snd_wnd == 0 && outq > 0) {
		log_debug("origin: %s: zero window: probes %u backoff %u rto "
		          "%u us outq %lld",
		    c->peer, ti.probes, ti.backoff, ti.rto_us, (long long)outq);
		if (c->zw_since == 0) {
			c->zw_since = now;
			c->ep_probes = 0;
		}
		if (opt->zwp_probes == 0) {
			/* the kernel's own probes in this episode: its backoff
			 * grows by one per probe, answered or not */
			if (ti.backoff > c->ep_probes)
				c->ep_probes = ti.backoff;
		} else {
			while (c->ep_probes < opt->zwp_probes &&
			    now - c->zw_since >=
			        probe_due(opt, c->ep_probes + 1))
				c->ep_probes++;
			if (c->ep_probes >= opt->zwp_probes) {
				end_episode(c, now);
				c->gave_up = "zwp-probes";
				oconn_close(
				    c, true, "zero window outlived the probes");
				return;
			}
		}
	} else if (c->zw_since != 0) {
		end_episode(c, now);
	}
	/* nginx's send_timeout: the application has bytes to write and the
	 * socket has taken none of them for that long. */
	if (opt->send_timeout_ms != 0 && c->blocked &&
	    now - c->last_write >= opt->send_timeout_ms) {
		c->gave_up = "send-timeout";
		oconn_close(c, false, "no write progress for send_timeout");
		return;
	}
	/* A raw stream cut by --truncate-at (the lab's figure2: 10,000
	 * bytes) ends with a FIN once the peer has acked every byte, so the
	 * close leaves no orphan whose probes the kernel would cut short. */
	if (c->raw_stream && c->stop_at != UINT64_MAX && c->off >= c->stop_at &&
	    c->ooff == c->olen && outq == 0)
		oconn_close(c, false, "--truncate-at reached");
}
