/*
 * fuzz_config: the proxy's config file through the real loader
 * (daemon/proxy/config.c), from a string (config_load_string) and from a
 * memory file (config_load, the path sluice proxy and sluice check take).
 *
 * Input: the file's text (up to its first NUL byte).
 *
 * Invariants, each an abort():
 *   - both loaders agree: the same config, byte for byte, or the same
 *     error, which names the file and is not empty;
 *   - a loaded config holds only what the key table allows: every number
 *     within its key's min..max, every enum one of its names, one to
 *     CONFIG_MAX_SERVERS servers, low_watermark <= high_watermark,
 *     memory_limit 0 or >= high_watermark, a spill_dir with policy spill;
 *   - the zero-window give-up time is 0 when both rules are off and never
 *     above zwp_timeout when that is on.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_resolve.h"
#include "proxy/config.h"

static void
check_config(const struct config *c)
{
	const char *base = (const char *)c;
	uint64_t zwp;

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		uint64_t v;
		int e, n = 0;

		switch (k->type) {
		case CT_SIZE:
		case CT_DURATION:
		case CT_COUNT:
			memcpy(&v, base + k->offset, sizeof(v));
			CHECK(v >= k->min && v <= k->max);
			break;
		case CT_ENUM:
			memcpy(&e, base + k->offset, sizeof(e));
			while (k->names[n] != NULL)
				n++;
			CHECK(e >= 0 && e < n);
			break;
		case CT_PATH:
			CHECK(memchr(base + k->offset, '\0', CONFIG_PATH_MAX) !=
			    NULL);
			break;
		default:
			break;
		}
		CHECK(config_line(c, k->section, k->key) >= 0);
	}
	CHECK(c->upstream.nservers >= 1 &&
	    c->upstream.nservers <= CONFIG_MAX_SERVERS);
	CHECK(c->buffer.low_watermark <= c->buffer.high_watermark);
	CHECK(c->buffer.memory_limit == 0 ||
	    c->buffer.memory_limit >= c->buffer.high_watermark);
	CHECK(c->buffer.policy != POLICY_SPILL || c->buffer.spill_dir[0]);
	zwp = config_client_zwp_ms(c);
	if (c->client.zwp_timeout == 0 && c->client.zwp_probes == 0)
		CHECK(zwp == 0);
	if (c->client.zwp_timeout != 0)
		CHECK(zwp <= c->client.zwp_timeout);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err1[CONFIG_ERR_MAX] = "", err2[CONFIG_ERR_MAX] = "";
	size_t len = strnlen((const char *)data, size);
	struct config *c1, *c2;
	char *text = malloc(len + 1);
	int fd;

	CHECK(text != NULL);
	memcpy(text, data, len);
	text[len] = '\0';
	fd = memfile(text, len, path, sizeof(path));
	CHECK(fd >= 0);
	c1 = config_load_string(text, path, err1, sizeof(err1));
	c2 = config_load(path, err2, sizeof(err2));
	close(fd);
	free(text);

	CHECK((c1 == NULL) == (c2 == NULL));
	if (c1 == NULL) {
		CHECK(strcmp(err1, err2) == 0);
		CHECK(strncmp(err1, path, strlen(path)) == 0 &&
		    err1[strlen(path)] == ':');
		return 0;
	}
	CHECK(memcmp(c1, c2, sizeof(*c1)) == 0);
	check_config(c1);
	config_free(c1);
	config_free(c2);
	return 0;
}
