/*
 * fuzz_fault_rule: the body of POST /faults (daemon/proxy/fault.c), which
 * anyone who reaches the admin API with [admin] faults on may send.
 *
 * Input: the body, as the admin listener hands it (at most FAULT_BODY_MAX
 * bytes; longer inputs are cut there, as the listener answers 413).
 *
 * Invariants, each an abort():
 *   - a refusal has a one-line message that starts with a field name and
 *     ": ";
 *   - a rule taken has a name, an action, and what fault_rule_json writes
 *     of it parses again to the same fault, match and name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy/fault.h"

static void
round_trip(const struct fault_rule *r)
{
	struct fault_rule again;
	char err[256];
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	CHECK(f != NULL);
	fault_rule_json(r, f);
	CHECK(fclose(f) == 0);
	CHECK(fault_rule_parse(out, len, &again, err, sizeof(err)) == 0);
	CHECK(again.f.action == r->f.action && again.f.side == r->f.side &&
	    again.f.after_bytes == r->f.after_bytes && again.f.ms == r->f.ms &&
	    again.f.rate == r->f.rate);
	CHECK(strcmp(again.name, r->name) == 0);
	CHECK(strcmp(again.path, r->path) == 0);
	CHECK(strcmp(again.client, r->client) == 0);
	CHECK(again.server.len == r->server.len);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fault_rule r;
	char err[256];

	if (size > FAULT_BODY_MAX)
		size = FAULT_BODY_MAX;
	if (fault_rule_parse((const char *)data, size, &r, err, sizeof(err)) <
	    0) {
		CHECK(strchr(err, '\n') == NULL);
		CHECK(strstr(err, ": ") != NULL);
		return 0;
	}
	CHECK(r.name[0] != '\0' && r.f.action != FAULT_NONE);
	round_trip(&r);
	return 0;
}
