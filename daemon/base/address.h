/*
 * address: socket addresses as the config writes them and as the logs
 * print them, for every verb.
 *
 * A struct sockaddr_any keeps the text it was parsed from ("localhost:80"
 * stays "localhost:80" in logs) beside the resolved address.  Nothing
 * here logs; errors are negative errnos.
 */
#ifndef SLUICE_ADDRESS_H
#define SLUICE_ADDRESS_H

#include <stddef.h>
#include <sys/socket.h>

struct sockaddr_any {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[80]; /* as written in the config, for logs */
};

/* Parses "host:port", "[v6]:port" or "*:port"; resolves names with
 * getaddrinfo (numeric first).  0 or -EINVAL / -ERANGE / a getaddrinfo
 * failure mapped to -ENOENT.  Port 0 only when allow_port0. */
int address_parse(const char *s, int allow_port0, struct sockaddr_any *out);

/*
 * An address as text: "ip:port", or "[ip6]:port".  When ip is not NULL it
 * receives the bare address (for X-Forwarded-For).  "?" for a family that
 * is neither.  Returns text.
 */
const char *address_text(
    const struct sockaddr *sa, char *ip, size_t iplen, char *text, size_t len);

/* Whether two addresses are the same socket address (family, address,
 * port), whatever their text.  Two unset ones (len 0) are equal. */
int address_equal(const struct sockaddr_any *a, const struct sockaddr_any *b);

#endif
