/*
 * address: see address.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/address.h"

int
address_parse(const char *s, int allow_port0, struct sockaddr_any *out)
{
	char host[64], *end;
	const char *colon, *port;
	struct addrinfo hints, *res;
	unsigned long pn;
	size_t hl;

	memset(out, 0, sizeof(*out));
	if (strlen(s) >= sizeof(out->text))
		return -EINVAL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		if (hl == 0 || hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		port = rb + 2;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || strchr(s, ':') != colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl == 0 || hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, hl);
		port = colon + 1;
	}
	host[hl] = '\0';
	if (!isdigit((unsigned char)*port))
		return -EINVAL;
	errno = 0;
	pn = strtoul(port, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno != 0 || pn > 65535 || (pn == 0 && !allow_port0))
		return -ERANGE;
	if (strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
		if (getaddrinfo(host, port, &hints, &res) != 0)
			return -ENOENT;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	snprintf(out->text, sizeof(out->text), "%s", s);
	return 0;
}

const char *
address_text(
    const struct sockaddr *sa, char *ip, size_t iplen, char *text, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		port = ntohs(s6->sin6_port);
		snprintf(text, len, "[%s]:%d", a, port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		port = ntohs(s4->sin_port);
		snprintf(text, len, "%s:%d", a, port);
	} else {
		snprintf(text, len, "?");
	}
	if (ip != NULL)
		snprintf(ip, iplen, "%s", a);
	return text;
}

int
address_equal(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in *b4 = (const struct sockaddr_in *)&b->ss;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a->ss;
	const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)&b->ss;

	/* Field by field: the text may differ ("localhost" or "127.0.0.1")
	 * and padding is no part of an address. */
	if (a->len != b->len || a->ss.ss_family != b->ss.ss_family)
		return 0;
	if (a->len == 0)
		return 1;
	if (a->ss.ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss.ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		        sizeof(a6->sin6_addr)) == 0;
	return memcmp(&a->ss, &b->ss, a->len) == 0;
}
