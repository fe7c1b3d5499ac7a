/*
 * walk: see walk.h.
 *
 * Two clocks, the sender's send times and the reader's read times, merged
 * in time order (a read first on a tie).  The state is four counters
 * (handed to the sender, sent, read, and the window the sender last
 * heard) and two flags (the sender was told 0; the reader waits for
 * data).  Each event appends a step; nothing else changes the buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/walk.h"

struct walker {
	const struct walk_in *in;
	struct walk_out *out;
	size_t cap;
	uint64_t handed, sent, read; /* bytes */
	uint64_t advertised;         /* the window the sender last heard */
	int zero;                    /* ... was 0 */
	int waiting;                 /* the reader waits for a segment */
	uint64_t t_send, t_read;     /* the next of each, ms */
};

void
walk_defaults(struct walk_in *in)
{
	in->buffer = WALK_BUFFER;
	in->send_bytes = WALK_SEND_BYTES;
	in->send_ms = WALK_SEND_MS;
	in->read_bytes = WALK_READ_BYTES;
	in->read_ms = WALK_READ_MS;
	in->total = WALK_TOTAL;
}

const char *
walk_event_name(enum walk_event ev)
{
	static const char *const names[] = {"send", "ack", "read", "probe"};

	return names[ev];
}

static uint64_t
buffered(const struct walker *w)
{
	return w->sent - w->read;
}

static int
push(struct walker *w, uint64_t t, enum walk_event ev, uint64_t bytes)
{
	struct walk_out *o = w->out;
	struct walk_step *s;

	if (o->n == WALK_MAX_STEPS)
		return -E2BIG;
	if (o->n == w->cap) {
		size_t cap = w->cap == 0 ? 64 : 2 * w->cap;

		if ((s = realloc(o->steps, cap * sizeof(*s))) == NULL)
			return -ENOMEM;
		o->steps = s;
		w->cap = cap;
	}
	s = &o->steps[o->n++];
	*s = (struct walk_step){
	    .t_ms = t,
	    .ev = ev,
	    .bytes = bytes,
	    .buffered = buffered(w),
	    .rwnd = w->in->buffer - buffered(w),
	    .advertised = w->advertised,
	};
	return 0;
}

/* The receiver acks a segment or a probe with its rwnd. */
static int
ack(struct walker *w, uint64_t t)
{
	w->advertised = w->in->buffer - buffered(w);
	w->zero = w->advertised == 0;
	if (w->zero && w->out->first_zero_ms < 0)
		w->out->first_zero_ms = (int64_t)t;
	return push(w, t, WALK_ACK, 0);
}

/* A read at t; a reader finding nothing waits for the next segment. */
static int
do_read(struct walker *w, uint64_t t)
{
	uint64_t n = buffered(w);
	int rc;

	if (n == 0) {
		w->waiting = 1;
		return 0;
	}
	if (n > w->in->read_bytes)
		n = w->in->read_bytes;
	w->read += n;
	w->waiting = 0;
	w->t_read = t + w->in->read_ms;
	if (!w->zero) /* a window update; told 0, the sender hears nothing */
		w->advertised = w->in->buffer - buffered(w);
	if ((rc = push(w, t, WALK_READ, n)) < 0)
		return rc;
	w->out->steps[w->out->n - 1].announced = !w->zero;
	if (w->read == w->in->total)
		w->out->all_read_ms = t;
	return 0;
}

/* The sender's send time t: its application hands it more, then it
 * probes if it was told 0, and sends what the window allows. */
static int
send_time(struct walker *w, uint64_t t)
{
	const struct walk_in *in = w->in;
	uint64_t n;
	int rc;

	n = in->total - w->handed;
	w->handed += n < in->send_bytes ? n : in->send_bytes;
	w->t_send = t + in->send_ms;
	if (w->zero) {
		w->out->probes++;
		if ((rc = push(w, t, WALK_PROBE, 0)) < 0 ||
		    (rc = ack(w, t)) < 0)
			return rc;
		if (w->zero) {
			w->out->probes_zero++;
			return 0;
		}
	}
	n = w->handed - w->sent;
	if (n > w->advertised)
		n = w->advertised;
	if (n == 0)
		return 0;
	w->sent += n;
	if (w->sent == in->total) {
		w->out->all_sent_ms = t;
		w->t_send = UINT64_MAX; /* nothing left to send */
	}
	if ((rc = push(w, t, WALK_SEND, n)) < 0 || (rc = ack(w, t)) < 0)
		return rc;
	return w->waiting ? do_read(w, t) : 0;
}

int
walk_run(const struct walk_in *in, struct walk_out *out)
{
	struct walker w = {.in = in, .out = out};
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->first_zero_ms = -1;
	if (in->buffer == 0 || in->send_bytes == 0 || in->send_ms == 0 ||
	    in->read_bytes == 0 || in->read_ms == 0 || in->total == 0)
		return -EINVAL;
	w.advertised = in->buffer; /* the handshake */
	while (rc == 0 && w.read < in->total) {
		if (!w.waiting && w.t_read <= w.t_send)
			rc = do_read(&w, w.t_read);
		else
			rc = send_time(&w, w.t_send);
	}
	if (rc < 0)
		walk_free(out);
	return rc;
}

void
walk_free(struct walk_out *out)
{
	free(out->steps);
	out->steps = NULL;
	out->n = 0;
}
