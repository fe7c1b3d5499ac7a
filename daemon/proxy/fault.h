/*
 * fault: faults on demand ([admin] faults = on, issue 16, docs/faults.md).
 * What a fault is (an action and its parameters), the rules that give
 * future downloads one (a name, a match, a fault), their JSON form, and
 * the process-wide set of rules that every worker matches against.
 *
 * A rule arrives as hostile input (POST /faults): fault_rule_parse takes a
 * bounded text, parses it strictly (one flat object, and one nested
 * "match" object of strings) and names the field of the first error.
 * Applying a fault to a connection is conn_fault.c's (the conn module's
 * own state); this file holds no connection.
 */
#ifndef SLUICE_FAULT_H
#define SLUICE_FAULT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <arpa/inet.h>

#include "base/address.h"

enum fault_action {
	FAULT_NONE = 0,
	FAULT_STALL,      /* a side not read (upstream) or written (client) */
	FAULT_BANDWIDTH,  /* writes to the client capped at a rate */
	FAULT_LATENCY,    /* nothing written to the client for a while */
	FAULT_RESET,      /* RST (SO_LINGER 0) on a side */
	FAULT_CLOSE,      /* FIN on a side */
	FAULT_LIMIT_DATA, /* the client closed after N bytes */
	FAULT_NACTIONS,
};

/* "none", "stall", "bandwidth", ...: the rules' "action" and the label of
 * sluice_faults_applied_total. */
extern const char *const fault_action_names[FAULT_NACTIONS];

enum fault_side {
	FAULT_UPSTREAM = 0,
	FAULT_CLIENT,
};

#define FAULT_NAME_MAX  48      /* a rule's name, NUL included */
#define FAULT_PATH_MAX  160     /* a match's path prefix, NUL included */
#define FAULT_RULES_MAX 64      /* rules at once */
#define FAULT_BODY_MAX  4096    /* POST /faults: a larger body is refused */
#define FAULT_FOR_MAX   3600000 /* ms: a stall or latency at most 1 h */

/* One fault with its parameters; which apply depends on the action. */
struct fault {
	enum fault_action action;
	enum fault_side side;      /* stall, reset, close */
	uint64_t after_bytes;      /* stall, reset, close, limit_data: response
	                            * body bytes (read for the upstream side,
	                            * written for the client side) first */
	uint64_t ms;               /* stall, latency: how long */
	uint64_t rate;             /* bandwidth: bits per second */
	char rule[FAULT_NAME_MAX]; /* the rule it came from ("": live) */
};

/* A rule: the downloads it matches (empty: any) and their fault. */
struct fault_rule {
	char name[FAULT_NAME_MAX];
	char path[FAULT_PATH_MAX];     /* prefix of the request target */
	struct sockaddr_any server;    /* len 0: any upstream server */
	char client[INET6_ADDRSTRLEN]; /* the client's address, as printed */
	struct fault f;
};

/*
 * Parses one rule from text (len bytes, not NUL-terminated, at most
 * FAULT_BODY_MAX): {"name": "...", "match": {"path": "/big",
 * "server": "127.0.0.1:9000", "client": "127.0.0.1"}, "action": "stall",
 * "side": "upstream", "after_bytes": 1048576, "for": "10s"}.  Sizes are
 * numbers or strings with a unit ("1M"), durations and rates strings
 * ("10s", "2mbit").  0, or -1 with err a one-line message that starts with
 * the field at fault ("for: not a duration").
 */
int fault_rule_parse(const char *text, size_t len, struct fault_rule *r,
    char *err, size_t errlen);
/* Writes r as one JSON object (the form fault_rule_parse takes). */
void fault_rule_json(const struct fault_rule *r, FILE *out);

/* The process-wide rule set, shared by every worker under one lock: a
 * download copies the fault of the first rule it matches.  Add: 0,
 * -EEXIST (that name is taken), -ENOSPC (FAULT_RULES_MAX).  Remove: 0 or
 * -ENOENT.  fault_rules_clear empties it (tests). */
int fault_rules_add(const struct fault_rule *r);
int fault_rules_remove(const char *name);
void fault_rules_clear(void);
/* The rules as a JSON array, in the order they match. */
void fault_rules_json(FILE *out);
/* The fault of the first rule that matches a download: its request
 * target, its upstream server (NULL: none yet), its client's address as
 * printed ("127.0.0.1").  1 with *out set, or 0. */
int fault_rules_match(const char *target, const struct sockaddr_any *server,
    const char *client, struct fault *out);

/* "upstream" or "client": the side, or -1. */
int fault_side_parse(const char *s);

#endif
