/*
 * sockopt: the TCP socket settings the proxy applies toward upstreams and
 * clients, and a read-back of what the kernel made of them (the kernel
 * doubles SO_RCVBUF/SO_SNDBUF and clamps them to net.core.*mem_max).
 *
 * A value of 0 leaves the kernel's default.  Receive-side settings toward an
 * upstream must be applied before connect(): the window scale is fixed in
 * the SYN.  Returns 0 or a negative errno naming the first that failed;
 * nothing here logs.
 */
#ifndef SLUICE_SOCKOPT_H
#define SLUICE_SOCKOPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

int sockopt_upstream(int fd, uint64_t rcvbuf, uint64_t window_clamp,
    uint64_t user_timeout_ms, const char **which);
int sockopt_client(
    int fd, uint64_t sndbuf, uint64_t user_timeout_ms, const char **which);
/* TCP_NOTSENT_LOWAT: the kernel takes more only while less than this is
 * queued unsent, so the backlog stays in the application's buffers. */
int sockopt_notsent_lowat(int fd, uint64_t bytes);
/* "rcvbuf=N sndbuf=N window_clamp=N user_timeout=Nms nodelay=N" */
void sockopt_describe(int fd, char *buf, size_t len);

#endif
