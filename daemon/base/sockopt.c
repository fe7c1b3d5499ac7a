/*
 * sockopt: see sockopt.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "base/sockopt.h"

static int
set_int(int fd, int level, int name, uint64_t v)
{
	int i = v > 0x7fffffff ? 0x7fffffff : (int)v;

	if (setsockopt(fd, level, name, &i, sizeof(i)) == -1)
		return -errno;
	return 0;
}

int
sockopt_upstream(int fd, uint64_t rcvbuf, uint64_t window_clamp,
    uint64_t user_timeout_ms, const char **which)
{
	int rc = 0;

	if (rcvbuf != 0 &&
	    (rc = set_int(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf)) < 0)
		*which = "SO_RCVBUF";
	else if (window_clamp != 0 &&
	    (rc = set_int(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, window_clamp)) < 0)
		*which = "TCP_WINDOW_CLAMP";
	else if (user_timeout_ms != 0 &&
	    (rc = set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, user_timeout_ms)) <
	        0)
		*which = "TCP_USER_TIMEOUT";
	return rc;
}

int
sockopt_client(
    int fd, uint64_t sndbuf, uint64_t user_timeout_ms, const char **which)
{
	int rc = 0;

	if (sndbuf != 0 &&
	    (rc = set_int(fd, SOL_SOCKET, SO_SNDBUF, sndbuf)) < 0)
		*which = "SO_SNDBUF";
	else if (user_timeout_ms != 0 &&
	    (rc = set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, user_timeout_ms)) <
	        0)
		*which = "TCP_USER_TIMEOUT";
	return rc;
}

int
sockopt_notsent_lowat(int fd, uint64_t bytes)
{
	return set_int(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, bytes);
}

static int
get_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len) == -1)
		return -1;
	return v;
}

void
sockopt_describe(int fd, char *buf, size_t len)
{
	snprintf(buf, len,
	    "rcvbuf=%d sndbuf=%d window_clamp=%d user_timeout=%dms nodelay=%d",
	    get_int(fd, SOL_SOCKET, SO_RCVBUF),
	    get_int(fd, SOL_SOCKET, SO_SNDBUF),
	    get_int(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP),
	    get_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
	    get_int(fd, IPPROTO_TCP, TCP_NODELAY));
}
