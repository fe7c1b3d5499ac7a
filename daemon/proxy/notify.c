/*
 * notify: see notify.h.  The address rules are systemd's own
 * (sockaddr_un_set_path() in its src/basic/socket-util.c): "/path" is a
 * filesystem socket, sent to with its terminating NUL counted in the address
 * length; "@name" is an abstract socket, whose address is a NUL byte and
 * the name, with the exact length and no NUL after it (an abstract name is
 * every byte the length covers, so a padded length names another socket).
 * Either must fit in sun_path with a NUL to spare.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proxy/notify.h"

/* Fills sa from NOTIFY_SOCKET's value; returns the address length or
 * -EINVAL. */
static int
notify_address(const char *path, struct sockaddr_un *sa)
{
	size_t len = strlen(path);

	if (len < 2 || (path[0] != '/' && path[0] != '@'))
		return -EINVAL;
	if (len >= sizeof(sa->sun_path))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len);
	if (path[0] == '@') {
		sa->sun_path[0] = '\0';
		return (int)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	return (int)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

int
notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len = strlen(state);
	struct sockaddr_un sa;
	int fd, salen, rc;
	ssize_t n;

	if (path == NULL)
		return 0;
	if ((salen = notify_address(path, &sa)) < 0)
		return salen;
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -errno;
	do
		n = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		    (socklen_t)salen);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		rc = -errno;
	else if ((size_t)n != len)
		rc = -EMSGSIZE; /* a datagram goes whole or not at all */
	else
		rc = 1;
	close(fd);
	return rc;
}

int
notify_ready(void)
{
	return notify_send("READY=1\nSTATUS=accepting connections");
}

int
notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	        (unsigned long long)ts.tv_nsec / 1000ULL);
	return notify_send(msg);
}

int
notify_stopping(void)
{
	return notify_send("STOPPING=1\nSTATUS=draining connections");
}

int
notify_status(const char *fmt, ...)
{
	static const char prefix[] = "STATUS=";
	char msg[1024];
	va_list ap;

	memcpy(msg, prefix, sizeof(prefix));
	va_start(ap, fmt);
	vsnprintf(msg + sizeof(prefix) - 1, sizeof(msg) - sizeof(prefix) + 1,
	    fmt, ap);
	va_end(ap);
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	return notify_send(msg);
}
