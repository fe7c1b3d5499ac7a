/*
 * tcpinfo: see tcpinfo.h.
 */
#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "base/tcpinfo.h"

int
tcpinfo_read(int fd, struct tcpinfo *ti)
{
	struct tcp_info t;
	socklen_t len = sizeof(t);

	memset(&t, 0, sizeof(t));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &t, &len) == -1)
		return -errno;
	ti->state = t.tcpi_state;
	ti->probes = t.tcpi_probes;
	ti->backoff = t.tcpi_backoff;
	ti->rto_us = t.tcpi_rto;
	ti->rtt_us = t.tcpi_rtt;
	ti->snd_wnd = t.tcpi_snd_wnd;
	ti->rcv_space = t.tcpi_rcv_space;
	ti->notsent = t.tcpi_notsent_bytes;
	ti->unacked = t.tcpi_unacked;
	ti->bytes_acked = t.tcpi_bytes_acked;
	ti->bytes_sent = t.tcpi_bytes_sent;
	ti->bytes_received = t.tcpi_bytes_received;
	ti->rwnd_limited_us = t.tcpi_rwnd_limited;
	return 0;
}

int64_t
tcpinfo_outq(int fd)
{
	int n = 0;

	if (ioctl(fd, SIOCOUTQ, &n) == -1)
		return -errno;
	return n;
}

int64_t
tcpinfo_inq(int fd)
{
	int n = 0;

	if (ioctl(fd, SIOCINQ, &n) == -1)
		return -errno;
	return n;
}
