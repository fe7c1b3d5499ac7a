/*
 * ctl: `sluice ctl`, a small client of the proxy's admin API (issue 16,
 * docs/faults.md): one request per run on a blocking socket (TCP or a Unix
 * socket path), the answer printed for a person or, with --json, as the
 * proxy sent it.  Exit codes: 0 the proxy took it (2xx), 1 the proxy could
 * not be reached or answered garbage, 2 bad usage, 3 the proxy refused it
 * (its one-line JSON error on stderr).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/address.h"
#include "base/json.h"
#include "peers/ctl.h"

#define ANSWER_MAX  (16u << 20) /* /connections of 10,000 is ~10 MiB */
#define RULE_MAX    4096        /* the proxy takes no larger body */
#define TIMEOUT_SEC 10

struct ctl {
	const char *addr;
	int json;
	const char *side;
	const char *dur;
	const char *args[4];
	int nargs;
};

void
ctl_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice ctl -a ADDR [--json] COMMAND\n"
	    "\n"
	    "A client of the proxy's admin API ([admin] address: host:port or\n"
	    "a Unix socket path).  The fault commands need [admin] faults = "
	    "on.\n"
	    "\n"
	    "  connections                  the live connections (GET "
	    "/connections)\n"
	    "  stall ID --for DUR [--side upstream|client]\n"
	    "                               stop reading the upstream (a zero\n"
	    "                               window) or writing to the client\n"
	    "  throttle ID RATE             cap writes to the client "
	    "(2mbit; 0: off)\n"
	    "  reset ID [--side upstream|client]   RST that side (default "
	    "upstream)\n"
	    "  close ID [--side upstream|client]   FIN on that side\n"
	    "  faults                       the rules for new downloads\n"
	    "  fault add FILE.json          add a rule (FILE - : stdin)\n"
	    "  fault rm NAME                remove a rule\n"
	    "\n"
	    "  -a, --address ADDR           the admin address (required)\n"
	    "  --json                       print the proxy's JSON as it is\n"
	    "\n"
	    "Exit: 0 done, 1 the proxy could not be reached, 2 bad usage,\n"
	    "3 refused by the proxy (its error on stderr).\n");
}

static int
usage_error(const char *what)
{
	fprintf(stderr, "sluice ctl: %s (sluice ctl --help)\n", what);
	return 2;
}

/* A connected socket to addr, or -1 with the reason printed. */
static int
dial(const char *addr)
{
	struct sockaddr_any a;
	struct sockaddr_un *un = (struct sockaddr_un *)&a.ss;
	struct timeval tv = {TIMEOUT_SEC, 0};
	int fd, rc;

	memset(&a, 0, sizeof(a));
	if (addr[0] == '/') {
		if (strlen(addr) >= sizeof(un->sun_path)) {
			fprintf(
			    stderr, "sluice ctl: %s: path too long\n", addr);
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, addr);
		a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
		    strlen(addr) + 1);
	} else if ((rc = address_parse(addr, 0, &a)) < 0) {
		fprintf(
		    stderr, "sluice ctl: %s: not host:port or a path\n", addr);
		return -1;
	}
	if ((fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a.ss, a.len) == 0)
		return fd;
	close(fd);
fail:
	fprintf(stderr, "sluice ctl: %s: %s\n", addr, strerror(errno));
	return -1;
}

static int
send_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The whole answer (the proxy closes after it) into a malloc'ed buffer,
 * NUL-terminated; its length in *len, or NULL. */
static char *
read_all(int fd, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1), *nb;
	ssize_t r;

	while (buf != NULL) {
		if (n == cap) {
			if (cap >= ANSWER_MAX ||
			    (nb = realloc(buf, cap * 2 + 1)) == NULL)
				break;
			buf = nb;
			cap *= 2;
		}
		r = recv(fd, buf + n, cap - n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (r == 0) {
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
	free(buf);
	return NULL;
}

/*
 * One request; the answer's status (or -1, printed) and its body in *body
 * (malloc'ed, NUL-terminated, from inside the answer: free *answer).
 */
static int
request(const struct ctl *c, const char *method, const char *target,
    const char *payload, size_t plen, char **answer, const char **body)
{
	char head[512];
	size_t len;
	int fd, n, status;

	if ((fd = dial(c->addr)) < 0)
		return -1;
	n = snprintf(head, sizeof(head),
	    "%s %s HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
	    method, target, plen);
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    send_all(fd, head, (size_t)n) || send_all(fd, payload, plen) ||
	    (*answer = read_all(fd, &len)) == NULL) {
		fprintf(stderr, "sluice ctl: %s: no answer: %s\n", c->addr,
		    strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (sscanf(*answer, "HTTP/1.%*d %d", &status) != 1 ||
	    (*body = strstr(*answer, "\r\n\r\n")) == NULL) {
		fprintf(
		    stderr, "sluice ctl: %s: not an HTTP answer\n", c->addr);
		free(*answer);
		return -1;
	}
	*body += 4;
	return status;
}

/* The connections as a table: id, state, fault, bytes, path. */
static void
print_connections(const char *s)
{
	const char *p = s, *next, *end = s + strlen(s);
	char state[32], fault[32], path[200];

	printf("%-8s %-17s %-15s %12s %12s  %s\n", "ID", "STATE", "FAULT",
	    "FROM_UP", "TO_CLIENT", "PATH");
	while ((p = strstr(p, "{\"id\":")) != NULL) {
		next = strstr(p + 1, "{\"id\":");
		if (next == NULL)
			next = end;
		json_str(p, "state", state, sizeof(state));
		json_str(p, "fault", fault, sizeof(fault));
		json_str(p, "path", path, sizeof(path));
		printf("%-8llu %-17s %-15s %12llu %12llu  %s\n",
		    (unsigned long long)json_u64(p, next, "id"), state, fault,
		    (unsigned long long)json_u64(
		        p, next, "bytes_from_upstream"),
		    (unsigned long long)json_u64(p, next, "bytes_to_client"),
		    path);
		p = next;
	}
}

/* Sends and prints; the exit code. */
static int
run(const struct ctl *c, const char *method, const char *target,
    const char *payload, size_t plen, int table)
{
	char *answer = NULL;
	const char *body = NULL;
	int status = request(c, method, target, payload, plen, &answer, &body);

	if (status < 0)
		return 1;
	if (status < 200 || status > 299) {
		fprintf(stderr, "sluice ctl: refused (%d): %s", status, body);
		if (body[0] == '\0' || body[strlen(body) - 1] != '\n')
			fputc('\n', stderr);
		free(answer);
		return 3;
	}
	if (table && !c->json)
		print_connections(body);
	else
		fputs(body, stdout);
	free(answer);
	return 0;
}

/* fault add FILE: the rule as the file holds it, at most RULE_MAX bytes. */
static int
add_rule(const struct ctl *c, const char *file)
{
	char buf[RULE_MAX + 1];
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "sluice ctl: %s: %s\n", file, strerror(errno));
		return 2;
	}
	n = fread(buf, 1, sizeof(buf), f);
	if (f != stdin)
		fclose(f);
	if (n > RULE_MAX)
		return usage_error("the rule file is over 4096 bytes");
	return run(c, "POST", "/faults", buf, n, 0);
}

/* An id is digits only (it goes into the target as it is). */
static int
id_ok(const char *s)
{
	return s[0] != '\0' && strlen(s) <= 19 &&
	    strspn(s, "0123456789") == strlen(s);
}

/* A query value goes into the target: no byte that would change it. */
static int
value_ok(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) < 64 &&
	    strcspn(s, "&?#% /\r\n") == strlen(s);
}

static int
command(struct ctl *c)
{
	const char *cmd = c->args[0], *side = c->side ? c->side : "upstream";
	char target[256];

	if (strcmp(cmd, "connections") == 0 && c->nargs == 1)
		return run(c, "GET", "/connections", "", 0, 1);
	if (strcmp(cmd, "faults") == 0 && c->nargs == 1)
		return run(c, "GET", "/faults", "", 0, 0);
	if (strcmp(cmd, "fault") == 0 && c->nargs == 3 &&
	    strcmp(c->args[1], "add") == 0)
		return add_rule(c, c->args[2]);
	if (strcmp(cmd, "fault") == 0 && c->nargs == 3 &&
	    strcmp(c->args[1], "rm") == 0) {
		if (!value_ok(c->args[2]))
			return usage_error("a rule name has no such bytes");
		snprintf(target, sizeof(target), "/faults/%s", c->args[2]);
		return run(c, "DELETE", target, "", 0, 0);
	}
	if (strcmp(cmd, "stall") != 0 && strcmp(cmd, "throttle") != 0 &&
	    strcmp(cmd, "reset") != 0 && strcmp(cmd, "close") != 0)
		return usage_error("unknown command or wrong arguments");
	if (c->nargs < 2 || !id_ok(c->args[1]) || !value_ok(side))
		return usage_error("COMMAND ID: a connection id (sluice ctl "
		                   "connections)");
	if (strcmp(cmd, "stall") == 0 && c->nargs == 2) {
		if (!value_ok(c->dur))
			return usage_error("stall needs --for DURATION");
		snprintf(target, sizeof(target),
		    "/connections/%s/stall?side=%s&for=%s", c->args[1], side,
		    c->dur);
	} else if (strcmp(cmd, "throttle") == 0 && c->nargs == 3 &&
	    value_ok(c->args[2])) {
		snprintf(target, sizeof(target),
		    "/connections/%s/throttle?rate=%s", c->args[1], c->args[2]);
	} else if ((strcmp(cmd, "reset") == 0 || strcmp(cmd, "close") == 0) &&
	    c->nargs == 2) {
		snprintf(target, sizeof(target), "/connections/%s/%s?side=%s",
		    c->args[1], cmd, side);
	} else {
		return usage_error("unknown command or wrong arguments");
	}
	return run(c, "POST", target, "", 0, 0);
}

int
ctl_main(int argc, char **argv)
{
	struct ctl c = {0};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int more = i + 1 < argc;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			ctl_usage(stdout);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			c.json = 1;
		} else if ((strcmp(a, "-a") == 0 ||
		               strcmp(a, "--address") == 0) &&
		    more) {
			c.addr = argv[++i];
		} else if (strcmp(a, "--side") == 0 && more) {
			c.side = argv[++i];
		} else if (strcmp(a, "--for") == 0 && more) {
			c.dur = argv[++i];
		} else if (a[0] == '-' && a[1] != '\0') {
			return usage_error("unknown option or missing value");
		} else if (c.nargs == 4) {
			return usage_error("too many arguments");
		} else {
			c.args[c.nargs++] = a;
		}
	}
	if (c.addr == NULL)
		return usage_error("-a ADDR is required");
	if (c.nargs == 0)
		return usage_error("a command is required");
	if (c.side != NULL && strcmp(c.side, "upstream") != 0 &&
	    strcmp(c.side, "client") != 0)
		return usage_error("--side is upstream or client");
	return command(&c);
}
