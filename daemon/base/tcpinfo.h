/*
 * tcpinfo: what the kernel knows of one TCP connection (TCP_INFO and the
 * send queue), read the same way by the origin, the proxy and the lab.
 * Only this file includes <linux/tcp.h>, which clashes with <netinet/tcp.h>.
 */
#ifndef SLUICE_TCPINFO_H
#define SLUICE_TCPINFO_H

#include <stdint.h>

struct tcpinfo {
	uint8_t state;
	uint8_t probes;  /* unanswered zero-window probes / RTOs */
	uint8_t backoff; /* RTO backoff exponent */
	uint32_t rto_us;
	uint32_t rtt_us;
	uint32_t snd_wnd; /* the peer's advertised window, scaled (bytes) */
	uint32_t rcv_space;
	uint32_t notsent;     /* bytes queued and never sent */
	uint32_t unacked;     /* segments in flight */
	uint64_t bytes_acked; /* by the peer */
	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint64_t rwnd_limited_us; /* time limited by the peer's window */
};

/* 0, or a negative errno. */
int tcpinfo_read(int fd, struct tcpinfo *ti);
/* Bytes in the send queue, sent or not (SIOCOUTQ), or a negative errno. */
int64_t tcpinfo_outq(int fd);
/* Bytes in the receive queue, not yet read (SIOCINQ), or a negative
 * errno: what the advertised window lacks (rwnd = buffer - this). */
int64_t tcpinfo_inq(int fd);

#endif
