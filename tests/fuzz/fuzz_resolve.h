/*
 * fuzz_resolve.h: for the harnesses whose input names addresses (the
 * config, scenarios, sweeps).  address_parse falls back to getaddrinfo's
 * name resolution; a fuzzer's host names must not reach the resolver (a
 * DNS query per input, from a machine that may have no network).  This
 * getaddrinfo, which takes the place of libc's (and of ASan's weak
 * interceptor) in the one harness that includes it, resolves numeric
 * hosts and "localhost" only.  Include it from exactly one file of a
 * harness.
 */
#ifndef SLUICE_FUZZ_RESOLVE_H
#define SLUICE_FUZZ_RESOLVE_H

#include <dlfcn.h>
#include <netdb.h>
#include <string.h>

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
    struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *,
	    struct addrinfo **);
	struct addrinfo h = {0};

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	if (real == NULL)
		return EAI_FAIL;
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	if (node != NULL && strcmp(node, "localhost") == 0)
		node = "127.0.0.1";
	return real(node, service, &h, res);
}

#endif
