/*
 * walk: the article's Figure 2 step by step, for `sluice plan --walk`
 * and for the lab's figure2 scenario, which puts it beside a capture.
 *
 * A receiver with a buffer of B bytes; a sender whose application hands it
 * s bytes every P ms (the article: 1,000 bytes every 5 s) until it has
 * handed over the total; a receiving application that reads r bytes every
 * Q ms (800 bytes every 8 s).  The rules are the article's:
 *   - each segment is acked at once and the ack carries rwnd, the free
 *     space left in the buffer;
 *   - the reader's first read waits for the first data (the article: "the
 *     application at the receiver is waiting for data", so at T0 it reads
 *     800 bytes right after the ack of the first 1,000), and a read that
 *     finds the buffer empty waits for the next segment the same way;
 *     a read due at the same moment as a send or a probe comes first (the
 *     article's T40: the application clears 800 bytes before the probe);
 *   - a read's new rwnd reaches the sender (the article's purple updates)
 *     unless the sender has been told rwnd = 0: then "the receiver cannot
 *     send a duplicate ack", and only a zero-window probe learns it;
 *   - the sender transmits at its send times, as much of what its
 *     application handed it as rwnd allows; told 0, it sends a probe
 *     instead, at each of its send times (the article's T40 and T45; real
 *     stacks back off, doubling), and sends what the answer allows at once.
 * Pure: no I/O, times in milliseconds.
 */
#ifndef SLUICE_WALK_H
#define SLUICE_WALK_H

#include <stddef.h>
#include <stdint.h>

/* The article's figures, the defaults of `sluice plan --walk`. */
#define WALK_BUFFER     4000
#define WALK_SEND_BYTES 1000
#define WALK_SEND_MS    5000
#define WALK_READ_BYTES 800
#define WALK_READ_MS    8000
#define WALK_TOTAL      10000
/* A walk longer than this is refused (-E2BIG): nobody reads it. */
#define WALK_MAX_STEPS 100000

struct walk_in {
	uint64_t buffer;     /* the receive buffer, bytes (> 0) */
	uint64_t send_bytes; /* handed to the sender each send_ms (> 0) */
	uint64_t send_ms;    /* > 0 */
	uint64_t read_bytes; /* read each read_ms (> 0) */
	uint64_t read_ms;    /* > 0 */
	uint64_t total;      /* bytes the sender's application has (> 0) */
};

enum walk_event {
	WALK_SEND,  /* bytes leave the sender and land in the buffer */
	WALK_ACK,   /* the receiver acks a segment or a probe */
	WALK_READ,  /* the application reads bytes */
	WALK_PROBE, /* a zero-window probe */
};

struct walk_step {
	uint64_t t_ms;
	enum walk_event ev;
	uint64_t bytes;    /* sent or read; 0 for acks and probes */
	uint64_t buffered; /* bytes in the buffer after the event */
	uint64_t rwnd;     /* buffer - buffered: the receiver's window now */
	/* The window the sender last heard: an ack's own value; after a read,
	 * the new rwnd if it reached the sender, else the old value. */
	uint64_t advertised;
	int announced; /* a read: its new rwnd reached the sender */
};

struct walk_out {
	struct walk_step *steps; /* n steps, in time order; walk_free */
	size_t n;
	int64_t first_zero_ms; /* the first ack of rwnd 0; -1: none */
	unsigned probes;       /* zero-window probes sent */
	unsigned probes_zero;  /* of which answered 0 */
	uint64_t all_sent_ms;  /* the last byte leaves the sender */
	uint64_t all_read_ms;  /* the last byte is read */
};

/* Fills the article's figures. */
void walk_defaults(struct walk_in *in);
/* Walks until every byte is read.  0, -EINVAL for a zero input, -E2BIG
 * past WALK_MAX_STEPS, -ENOMEM; out then holds nothing to free. */
int walk_run(const struct walk_in *in, struct walk_out *out);
void walk_free(struct walk_out *out);
/* "send", "ack", "read", "probe" */
const char *walk_event_name(enum walk_event ev);

#endif
