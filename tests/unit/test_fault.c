/*
 * test_fault: daemon/proxy/fault.c, the rules of the fault API (issue 16):
 * the strict parser of a rule's JSON (each error names its field), a
 * rule's JSON parsed back to itself, and the rule set (add, remove, the
 * first match wins).
 */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/fault.h"

static char err[256];

static int
parse(const char *text, struct fault_rule *r)
{
	err[0] = '\0';
	return fault_rule_parse(text, strlen(text), r, err, sizeof(err));
}

static void
parses_a_rule(void **state)
{
	struct fault_rule r;

	(void)state;
	assert_int_equal(
	    parse(" {\"name\": \"big\", \"match\": {\"path\": \"/bytes/\", "
	          "\"server\": \"127.0.0.1:9000\", \"client\": \"::1\"},\n"
	          "\"action\": \"stall\", \"side\": \"client\", "
	          "\"after_bytes\": \"1M\", \"for\": \"10s\"} ",
	        &r),
	    0);
	assert_string_equal(r.name, "big");
	assert_string_equal(r.path, "/bytes/");
	assert_string_equal(r.server.text, "127.0.0.1:9000");
	assert_string_equal(r.client, "::1");
	assert_int_equal(r.f.action, FAULT_STALL);
	assert_int_equal(r.f.side, FAULT_CLIENT);
	assert_int_equal(r.f.after_bytes, 1048576);
	assert_int_equal(r.f.ms, 10000);
	assert_string_equal(r.f.rule, "big");

	assert_int_equal(parse("{\"name\":\"b\",\"action\":\"bandwidth\","
	                       "\"rate\":\"2mbit\",\"match\":{}}",
	                     &r),
	    0);
	assert_int_equal(r.f.rate, 2000000);
	assert_int_equal(
	    parse("{\"name\":\"l\",\"action\":\"limit_data\",\"after_bytes\":"
	          "12345}",
	        &r),
	    0);
	assert_int_equal(r.f.after_bytes, 12345);
}

static void
errors_name_the_field(void **state)
{
	static const struct {
		const char *text, *field;
	} bad[] = {
	    {"", "(body)"},
	    {"{\"name\":\"a\",\"action\":\"reset\"", "(body)"},
	    {"{\"name\":\"a\",\"action\":\"reset\"}}", "(body)"},
	    {"{\"action\":\"reset\"}", "name"},
	    {"{\"name\":\"\",\"action\":\"reset\"}", "name"},
	    {"{\"name\":\"a\"}", "action"},
	    {"{\"name\":\"a\",\"action\":\"stall\"}", "for"},
	    {"{\"name\":\"a\",\"action\":\"stall\",\"for\":\"2h\"}", "for"},
	    {"{\"name\":\"a\",\"action\":\"stall\",\"for\":0}", "for"},
	    {"{\"name\":\"a\",\"action\":\"latency\",\"for\":\"1s\","
	     "\"side\":\"client\"}",
	        "side"},
	    {"{\"name\":\"a\",\"action\":\"reset\",\"after_bytes\":"
	     "99999999999999999999}",
	        "after_bytes"},
	    {"{\"name\":\"a\",\"action\":\"reset\",\"match\":{\"x\":\"1\"}}",
	        "match.x"},
	    {"{\"name\":\"a\",\"action\":\"reset\",\"match\":[]}", "match"},
	    {"{\"name\":\"a\",\"action\":\"reset\",\"action\":\"reset\"}",
	        "action"},
	    {"{\"name\":\"a\\n\",\"action\":\"reset\"}", "name"},
	};
	struct fault_rule r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i].text, &r), -1);
		if (strncmp(err, bad[i].field, strlen(bad[i].field)) != 0 ||
		    err[strlen(bad[i].field)] != ':')
			fail_msg("%s: got \"%s\", want the field %s",
			    bad[i].text, err, bad[i].field);
	}
}

/* What fault_rule_json writes, fault_rule_parse takes back unchanged. */
static void
json_round_trip(void **state)
{
	const char *text = "{\"name\":\"r\",\"match\":{\"path\":\"/"
	                   "a\",\"client\":\"10.0.0.1\"},"
	                   "\"action\":\"reset\",\"side\":\"upstream\",\"after_"
	                   "bytes\":\"64k\"}";
	struct fault_rule a, b;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_int_equal(parse(text, &a), 0);
	f = open_memstream(&out, &len);
	fault_rule_json(&a, f);
	fclose(f);
	assert_int_equal(fault_rule_parse(out, len, &b, err, sizeof(err)), 0);
	assert_memory_equal(&a.f, &b.f, sizeof(a.f));
	assert_string_equal(a.path, b.path);
	assert_string_equal(a.client, b.client);
	free(out);
}

static void
rule_set(void **state)
{
	struct fault_rule a, b;
	struct fault f;

	(void)state;
	fault_rules_clear();
	assert_int_equal(fault_rules_match("/x", NULL, "127.0.0.1", &f), 0);
	assert_int_equal(parse("{\"name\":\"a\",\"match\":{\"path\":\"/big\","
	                       "\"client\":\"127.0.0.1\"},"
	                       "\"action\":\"latency\",\"for\":\"1s\"}",
	                     &a),
	    0);
	assert_int_equal(parse("{\"name\":\"b\",\"action\":\"reset\"}", &b), 0);
	assert_int_equal(fault_rules_add(&a), 0);
	assert_int_equal(fault_rules_add(&a), -EEXIST);
	assert_int_equal(fault_rules_add(&b), 0);
	assert_int_equal(fault_rules_match("/big/1", NULL, "127.0.0.1", &f), 1);
	assert_int_equal(f.action, FAULT_LATENCY);
	assert_int_equal(fault_rules_match("/big/1", NULL, "127.0.0.2", &f), 1);
	assert_int_equal(f.action, FAULT_RESET);
	assert_int_equal(fault_rules_remove("b"), 0);
	assert_int_equal(fault_rules_remove("b"), -ENOENT);
	assert_int_equal(fault_rules_match("/small", NULL, "127.0.0.1", &f), 0);
	fault_rules_clear();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parses_a_rule),
	    cmocka_unit_test(errors_name_the_field),
	    cmocka_unit_test(json_round_trip),
	    cmocka_unit_test(rule_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
