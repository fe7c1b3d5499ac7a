/*
 * pcap: reading back the captures `sluice lab` has tcpdump write, and the
 * one analysis the lab needs from them: the receive windows a receiver
 * advertised and the zero-window probes its sender sent (the article's
 * Exercises 2 and 3, docs/references.md), printed beside the article's own
 * figures.
 *
 * Only classic pcap files (tcpdump -w), microsecond or nanosecond, either
 * byte order; link types Ethernet (with 802.1Q/802.1ad tags), Linux cooked
 * SLL and SLL2, and raw IP.  IPv4 TCP only: everything else is skipped.
 * Captures are cut at a snap length (the lab uses 128 bytes), so payload
 * sizes come from the IP header, never from the captured length.
 *
 * Everything here is plain data in, plain data out: no globals, no I/O but
 * the file read and the FILE * printed to.
 */
#ifndef SLUICE_PCAP_H
#define SLUICE_PCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PCAP_FIN 0x01
#define PCAP_SYN 0x02
#define PCAP_RST 0x04
#define PCAP_PSH 0x08
#define PCAP_ACK 0x10

/* One IPv4 TCP segment of a capture. */
struct pcap_pkt {
	double t;              /* seconds (epoch, from the record header) */
	uint32_t saddr, daddr; /* network byte order */
	uint16_t sport, dport; /* host order */
	uint32_t seq, ack;     /* absolute */
	uint16_t win;          /* the raw header field */
	uint8_t flags;         /* PCAP_FIN ... PCAP_ACK */
	int8_t wscale;         /* window scale option (SYN only), -1: none */
	uint16_t mss;          /* MSS option (SYN only), 0: none */
	uint32_t len; /* TCP payload bytes (from the IP total length) */
};

/*
 * Reads a whole classic pcap file.  0 with *pkts malloc'd (the caller
 * frees it, also when *n is 0) and *n packets, or a negative errno with
 * err set to "PATH: reason" (-EINVAL for pcapng or an unknown format,
 * -ENOTSUP for a link type not listed above).  A last record cut short
 * (tcpdump killed mid-write) ends the file without an error.
 */
int pcap_read(const char *path, struct pcap_pkt **pkts, size_t *n, char *err,
    size_t errlen);

/* One packet of the receiver (the client), after its SYN. */
struct pcap_window {
	double t;       /* seconds since t0 */
	uint32_t ack;   /* relative: tcpdump's (the handshake's ack is 1) */
	uint32_t raw;   /* the header field */
	uint64_t bytes; /* raw << client scale when both SYNs had the option */
};

/* One zero-window probe of the sender (the server). */
struct pcap_probe {
	double t;        /* seconds since t0 */
	uint32_t seq;    /* relative, like pcap_window.ack */
	uint32_t len;    /* 0: Linux's (seq snd_una - 1), 1: one new byte */
	double interval; /* since the previous probe of the same stall, or 0 */
	int64_t answer;  /* window bytes of the receiver's first packet after
	                  * it and before the next probe; -1: unanswered */
	uint32_t stall;  /* which zero-window period (0 the first) */
};

/*
 * One TCP connection of a capture: the first whose SYN goes to the server
 * port.  The client (the SYN's sender) is the receiver whose windows are
 * reported; the server sends the data and the probes.  Without a captured
 * SYN, the connection of the first packet from the server port is used
 * and window scaling is unknown (bytes are the raw values).
 */
struct pcap_conn {
	struct pcap_window *windows; /* every client packet after its SYN */
	size_t nwindows;
	struct pcap_probe *probes;
	size_t nprobes;
	int client_wscale, server_wscale; /* -1: none (or SYN not captured) */
	int client_mss, server_mss;       /* -1: none */
	uint64_t data_bytes;    /* server payload: highest relative sequence
	                         * end less 1, 1-byte probes excluded */
	int64_t first_zero_ack; /* relative ack of the first window 0, -1 */
	double first_zero_t;    /* seconds since t0 of that window, -1 */
	double zero_window_s;   /* total time the last advertised window was
	                         * 0: until it opened, or the last packet */
	uint32_t nstalls;       /* how many times the window closed */
	bool reset_by_server, reset_by_client; /* an RST seen from either */
	double t0; /* epoch seconds of the SYN (or first packet) */
};

/*
 * Analyses the connection described above among the n packets of p.
 * 0 with *c filled (free with pcap_conn_free), -ENOENT when no packet goes
 * to or comes from server_port, -ENOMEM.  c is zeroed on errors too.
 */
int pcap_analyse(const struct pcap_pkt *p, size_t n, uint16_t server_port,
    struct pcap_conn *c);
/* Frees the arrays of c and zeroes it; c may be zeroed already. */
void pcap_conn_free(struct pcap_conn *c);

/*
 * Parses the article's windows: "ACK:WIN" pairs of decimal numbers,
 * separated by commas, blanks allowed around each ("1:1460, 201:1260").
 * Stores at most max pairs; returns their count (0 for an empty or blank
 * string), -EINVAL for anything malformed, -E2BIG for more than max pairs.
 * With acks and wins NULL it only counts (max is then ignored).
 */
int pcap_parse_article(
    const char *s, uint32_t *acks, uint32_t *wins, size_t max);

/*
 * A table of the first rows windows (index, time, ack, window in bytes,
 * and the raw field when scaled), with the article's pairs (a list for
 * pcap_parse_article, NULL or "" for none; a malformed one is reported
 * and ignored) in two more columns by row index, then one line per list
 * saying at which ack the window first reached 0.
 */
void pcap_print_windows(
    FILE *f, const struct pcap_conn *c, size_t rows, const char *article);

/*
 * One line per probe (time, form, interval, answer), then one saying
 * whether the intervals grew within each stall (each at least 90% of the
 * previous one: exponential backoff, or its RTO cap).
 */
void pcap_print_probes(FILE *f, const struct pcap_conn *c);

/*
 * One JSON object, no newline: client_wscale, server_wscale, data_bytes,
 * first_zero_ack and first_zero_s (null: never 0), zero_window_s, stalls,
 * resets {"server","client"}, nwindows, "windows": [[t, ack, bytes], ...]
 * (the first 200), "probes": [[t, len, interval, answer or null], ...].
 */
void pcap_conn_json(FILE *f, const struct pcap_conn *c);

/* Whether the probe intervals grew within each stall; false below three
 * probes in one stall (nothing to compare). */
bool pcap_probes_backoff(const struct pcap_conn *c);

#endif
