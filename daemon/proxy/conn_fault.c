/*
 * conn_fault: faults on demand on one connection (fault.h, issue 16):
 * the fault state (conn_int.h's table) with its deadline on ftimer, the
 * throttle's next write on ttimer, a matched rule waiting for its
 * after_bytes, and the live faults the admin API asks for (conn_fault).
 *
 * The faults act through the decisions the relay already makes: reading
 * the upstream is update_upstream_reading's `want`, which asks
 * fault_holds_upstream (so a stalled upstream is not read, by a read or a
 * splice, and the kernel shows it a zero window as for a watermark pause);
 * writing to the client is flush_client's, which asks fault_holds_client
 * before anything, memory or kernel pipe, goes out.  A reset or close that
 * fires in the middle of a read or a write waits in FS_ENDING for the
 * next loop turn, so no caller finds its connection gone under it.
 *
 * Every fault applied counts once in stats.faults_applied and is named in
 * the access line of the download it hit.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"
#include "proxy/conn.h"
#include "proxy/conn_int.h"
#include "proxy/proxy.h"

const char *const fault_state_names[FS_NSTATES] = {
    "none", "latency", "stall_upstream", "stall_client", "ending"};

static void conn_on_ftimer(uv_timer_t *t);

/* Counts a fault applied to the current download. */
static void
applied(struct conn *c, const struct fault *f)
{
	c->px->stats.faults_applied[f->action]++;
	c->d.faults |= 1u << f->action;
	if (f->rule[0] != '\0')
		snprintf(
		    c->d.fault_rule, sizeof(c->d.fault_rule), "%s", f->rule);
}

/* The one change of fault state: logs it, arms its deadline (ms; none
 * for FS_NONE). */
static void
set_fault_state(struct conn *c, enum fault_state s, uint64_t ms)
{
	log_debug("conn %llu: fault %s -> %s (%llu ms)",
	    (unsigned long long)c->id, fault_state_names[c->fstate],
	    fault_state_names[s], (unsigned long long)ms);
	c->fstate = s;
	c->fstate_until = uv_now(c->px->loop) + ms;
	if (s == FS_NONE)
		uv_timer_stop(&c->ftimer);
	else
		uv_timer_start(&c->ftimer, conn_on_ftimer, ms, 0);
}

/* A stall of the client: a splice waiting for the client socket is no
 * write in flight that must finish (as a uv_write is): its poll stops,
 * and flush_client starts it again when the stall ends. */
static void
stall_client(struct conn *c, uint64_t ms)
{
	if (c->cw_splice) {
		uv_poll_stop(&c->cpoll);
		c->cw_busy = c->cw_splice = 0;
	}
	set_fault_state(c, FS_STALL_CLIENT, ms);
}

/* The upstream ends now: RST (SO_LINGER 0) or FIN.  The client sees
 * what an upstream that fails does (a 502 before the head; after it,
 * what was relayed, then a short end or a resume). */
static void
end_upstream(struct conn *c, int reset)
{
	struct linger lg = {1, 0};
	uv_os_fd_t fd;

	if (c->ustate != U_OPEN)
		return;
	if (reset && uv_fileno((uv_handle_t *)&c->upstream, &fd) == 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (!client_has_head(c)) {
		respond_error(c, 502,
		    reset ? "fault: upstream reset" : "fault: upstream closed");
		return;
	}
	upstream_broken(c, reset ? "fault: reset" : "fault: closed",
	    reset ? UV_ECONNRESET : 0, OUTCOME_UPSTREAM_RESET);
}

/* A reset, close or limit_data fault, now (not inside a read or write). */
static void
end_now(struct conn *c, const struct fault *f)
{
	if (f->action == FAULT_LIMIT_DATA)
		conn_close(c, 0, "fault: limit_data", 0);
	else if (f->side == FAULT_CLIENT)
		conn_close(c, f->action == FAULT_RESET,
		    f->action == FAULT_RESET ? "fault: client reset"
		                             : "fault: client closed",
		    0);
	else
		end_upstream(c, f->action == FAULT_RESET);
}

static void
conn_on_ftimer(uv_timer_t *t)
{
	struct conn *c = t->data;
	enum fault_state was = c->fstate;
	struct fault f = c->fend;

	if (c->state == DL_CLOSING)
		return;
	set_fault_state(c, FS_NONE, 0);
	if (was == FS_ENDING) {
		end_now(c, &f);
		if (c->state == DL_CLOSING)
			return;
	}
	update_upstream_reading(c);
	flush_client(c);
}

static void
conn_on_ttimer(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->state != DL_CLOSING)
		flush_client(c);
}

/* ---- a rule's fault ------------------------------------------------------ */

/* Starts what a fault does: at once (bandwidth, latency, a live stall), or
 * at its after_bytes (fired by fault_holds_*). */
static void
start(struct conn *c, const struct fault *f)
{
	switch (f->action) {
	case FAULT_BANDWIDTH:
		c->d.throttle = f->rate / 8;
		if (c->d.throttle == 0)
			c->d.throttle = 1;
		break;
	case FAULT_LATENCY:
		set_fault_state(c, FS_LATENCY, f->ms);
		break;
	case FAULT_STALL:
		if (f->side == FAULT_CLIENT)
			stall_client(c, f->ms);
		else
			set_fault_state(c, FS_STALL_UPSTREAM, f->ms);
		break;
	default:
		c->fend = *f;
		set_fault_state(c, FS_ENDING, 0);
		break;
	}
	applied(c, f);
}

/*
 * The request's upstream server was chosen (start_upstream): the first
 * rule that matches gives the download its fault, once per request (a
 * retry on the next server or a resume matches no more).  One that waits
 * for its after_bytes stays in d.rule.
 */
void
fault_match(struct conn *c)
{
	struct fault f;

	if (c->d.rule_checked)
		return;
	c->d.rule_checked = 1;
	if (!c->cfg->admin.faults ||
	    !fault_rules_match(c->d.target,
	        c->server >= 0 ? &c->cfg->upstream.servers[c->server] : NULL,
	        c->peer_ip, &f))
		return;
	if (f.action == FAULT_BANDWIDTH || f.action == FAULT_LATENCY)
		start(c, &f);
	else
		c->d.rule = f;
}

/* Does the waiting rule fire on this side now?  Its bytes: the body read
 * (upstream side) or written (client side, and limit_data). */
static void
fire_rule(struct conn *c, int client_side)
{
	const struct fault *f = &c->d.rule;
	int side = f->action == FAULT_LIMIT_DATA ? FAULT_CLIENT : f->side;
	uint64_t n = client_side ? c->d.body_out : c->d.resp_body_in;

	if (f->action == FAULT_NONE || c->state < DL_RELAYING ||
	    side != (client_side ? FAULT_CLIENT : FAULT_UPSTREAM) ||
	    n < f->after_bytes || c->fstate == FS_ENDING)
		return;
	start(c, f);
	c->d.rule.action = FAULT_NONE;
}

int
fault_holds_upstream(struct conn *c)
{
	fire_rule(c, 0);
	return c->fstate == FS_STALL_UPSTREAM || c->fstate == FS_ENDING;
}

/* Also the throttle: a write may go once the bytes of the last one have
 * had their time at the rate (ttimer waits for that). */
int
fault_holds_client(struct conn *c)
{
	uint64_t now;

	fire_rule(c, 1);
	if (c->fstate == FS_STALL_CLIENT || c->fstate == FS_LATENCY ||
	    c->fstate == FS_ENDING)
		return 1;
	if (c->d.throttle == 0)
		return 0;
	now = uv_now(c->px->loop);
	if (c->d.throttle_next <= now)
		return 0;
	uv_timer_start(&c->ttimer, conn_on_ttimer, c->d.throttle_next - now, 0);
	return 1;
}

/* Is the next client write held to a block: a throttle, or a rule that
 * fires after the client's bytes (limit_data, a client-side reset or
 * stall), so that neither overshoots by more than a block? */
static int
write_limited(const struct conn *c)
{
	return c->d.throttle != 0 ||
	    (c->d.rule.action != FAULT_NONE &&
	        (c->d.rule.action == FAULT_LIMIT_DATA ||
	            c->d.rule.side == FAULT_CLIENT));
}

/* Segments for the next client write (memory's). */
size_t
fault_write_segs(const struct conn *c, size_t n)
{
	return write_limited(c) && n > 1 ? 1 : n;
}

/* Bytes for the next splice or sendfile to the client. */
size_t
fault_write_bytes(const struct conn *c, size_t n)
{
	size_t bs = c->gen->pool.block_size;

	return write_limited(c) && n > bs ? bs : n;
}

/* A client write of bytes went out: the throttle's next write is due when
 * they have had their time. */
void
fault_wrote(struct conn *c, size_t bytes)
{
	uint64_t now = uv_now(c->px->loop);

	if (c->d.throttle == 0)
		return;
	if (c->d.throttle_next < now)
		c->d.throttle_next = now;
	c->d.throttle_next += (uint64_t)bytes * 1000 / c->d.throttle;
}

/* ---- a live fault (the admin API) ---------------------------------------- */

static struct conn *
find(struct proxy *px, uint64_t id)
{
	for (struct conn *c = conn_first(px); c != NULL; c = conn_next(c))
		if (c->id == id && c->state != DL_CLOSING)
			return c;
	return NULL;
}

/* A throttle holds every client write, memory's, the kernel pipe's and
 * the spool's (splice_flush asks fault_holds_client and takes a block at
 * a time); 0 removes it. */
static void
throttle(struct conn *c, uint64_t rate)
{
	c->d.throttle = rate / 8;
	if (rate != 0 && c->d.throttle == 0)
		c->d.throttle = 1;
	if (rate == 0) {
		uv_timer_stop(&c->ttimer);
		flush_client(c);
	}
}

int
conn_fault(struct proxy *px, uint64_t id, const struct fault *f)
{
	struct conn *c = find(px, id);

	if (c == NULL)
		return -ENOENT;
	if (f->side == FAULT_UPSTREAM && c->ustate != U_OPEN &&
	    f->action != FAULT_BANDWIDTH)
		return -ENOTCONN;
	if (f->action == FAULT_BANDWIDTH) {
		throttle(c, f->rate);
	} else if (f->action == FAULT_STALL && f->side == FAULT_CLIENT) {
		stall_client(c, f->ms);
	} else if (f->action == FAULT_STALL) {
		set_fault_state(c, FS_STALL_UPSTREAM, f->ms);
		update_upstream_reading(c);
	} else {
		applied(c, f);
		end_now(c, f);
		return 0;
	}
	applied(c, f);
	return 0;
}

/* ---- what the connection shows ------------------------------------------- */

/* /connections: ,"fault":"stall_upstream","fault_left_s":9.5,
 * "throttle_bps":2000000 */
void
fault_describe(const struct conn *c, FILE *out)
{
	uint64_t now = uv_now(c->px->loop);
	uint64_t left = c->fstate != FS_NONE && c->fstate_until > now
	    ? c->fstate_until - now
	    : 0;

	fprintf(out,
	    ",\"fault\":\"%s\",\"fault_left_s\":%.3f,"
	    "\"throttle_bps\":%llu",
	    fault_state_names[c->fstate], (double)left / 1000.0,
	    (unsigned long long)c->d.throttle * 8);
}

/* The access line: ,"faults":["stall"],"fault_rule":"name" (null when
 * no rule hit it). */
void
fault_access(const struct conn *c, FILE *out)
{
	const char *sep = "";

	fputs(",\"faults\":[", out);
	for (int a = 1; a < FAULT_NACTIONS; a++)
		if (c->d.faults & 1u << a) {
			fprintf(out, "%s\"%s\"", sep, fault_action_names[a]);
			sep = ",";
		}
	fputs("],\"fault_rule\":", out);
	if (c->d.fault_rule[0] != '\0')
		fprintf(out, "\"%s\"", c->d.fault_rule);
	else
		fputs("null", out);
}

/* conn_close: the two timers go with the others. */
void
fault_close_timers(struct conn *c)
{
	uv_close((uv_handle_t *)&c->ftimer, conn_on_handle_close);
	uv_close((uv_handle_t *)&c->ttimer, conn_on_handle_close);
}
