/*
 * lab: the run (see lab.h and docs/lab.md): its command line, the peers,
 * the loop and the teardown.  lab_scenario.c holds the scenario file,
 * lab_net.c the namespaces, links and shaping, lab_sample.c the timeline,
 * lab_report.c the figures, plot and verdict, proc.c the commands.
 *
 * The three peers are this binary's own verbs, started through `ip netns
 * exec`, each in its own process group and with PR_SET_PDEATHSIG, so a
 * lab that dies takes them along.  Teardown runs once on every way out:
 * done, failure, time limit, SIGINT/SIGTERM.
 *
 * The run is a plain loop, not an event loop: every 100 ms one sample
 * (lab_sample.c: ss, GET /connections, one CSV row, one progress line),
 * then a wait for the fetch to end.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "proxy/config.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/lab_lb.h"
#include "lab/proc.h"

volatile sig_atomic_t lab_signal;

void
lab_note(struct lab *lab, const char *fmt, ...)
{
	va_list ap;

	if (lab->nnotes == MAX_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(lab->notes[lab->nnotes], sizeof(lab->notes[0]), fmt, ap);
	va_end(ap);
	fprintf(stderr, "sluice lab: %s\n", lab->notes[lab->nnotes++]);
}

static void
loopback_notes(struct lab *lab)
{
	size_t n = 0;

	for (int h = 0; h < LAB_NHOSTS; h++)
		n += lab->sc.nsysctl[h];
	lab_note(lab,
	    "loopback mode: rates are application-paced (the client's "
	    "--rate only); links are not shaped%s%s",
	    n > 0 ? ", sysctls not applied (they would change the host)" : "",
	    lab->sc.delay_ms > 0 ? ", delay not applied" : "");
}

/* ---- the three peers --------------------------------------------------- */

static int
open_out(const struct lab *lab, const char *name)
{
	char path[PATH_MAX];
	int fd;

	lab_path_in(lab, name, path, sizeof(path));
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) <
	    0)
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
	return fd;
}

/* Starts this binary's verb args[0] on host h (through `ip netns exec`),
 * stdout and stderr to files in the results directory. */
static pid_t
spawn_cmd(struct lab *lab, int h, bool self, const char *const args[],
    const char *out_name, const char *err_name)
{
	char *argv[MAX_ARGS], out_path[PATH_MAX], err_path[PATH_MAX];
	size_t n = 0;
	int out_fd, err_fd;
	pid_t parent = getpid(), pid;

	if (lab->mode == LAB_MODE_NETNS) {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = lab->ns[h];
	}
	if (self)
		argv[n++] = lab->exe;
	for (size_t i = 0; args[i] != NULL && n < MAX_ARGS - 1; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	if ((out_fd = open_out(lab, out_name)) < 0)
		return -1;
	if ((err_fd = open_out(lab, err_name)) < 0) {
		close(out_fd);
		return -1;
	}
	lab_path_in(lab, out_name, out_path, sizeof(out_path));
	lab_path_in(lab, err_name, err_path, sizeof(err_path));
	if (lab->verbose)
		proc_print_cmd(argv, out_path, err_path);
	if ((pid = fork()) == 0) {
		proc_child_setup(parent, out_fd, err_fd);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(out_fd);
	close(err_fd);
	if (pid == -1) {
		fprintf(stderr, "sluice lab: fork: %s\n", strerror(errno));
		return -1;
	}
	setpgid(pid, pid); /* as the child does: whoever runs first */
	return pid;
}

/* Starts this binary's verb args[0] as host h's peer. */
static int
spawn(struct lab *lab, int h, const char *const args[], const char *out_name,
    const char *err_name)
{
	pid_t pid = spawn_cmd(lab, h, true, args, out_name, err_name);

	if (pid < 0)
		return -1;
	lab->pid[h] = pid;
	return 0;
}

/* The port in the first line of the file that holds what (and not
 * unless), after the line's last ':'; 0 when there is none yet. */
static int
port_in_log(const char *text, const char *what, const char *unless)
{
	for (const char *p = text; (p = strstr(p, what)) != NULL; p++) {
		const char *bol = p, *eol = strchr(p, '\n'), *colon = NULL;

		while (bol > text && bol[-1] != '\n')
			bol--;
		if (eol == NULL)
			return 0; /* the line is still being written */
		for (const char *q = p; q < eol; q++)
			if (*q == ':')
				colon = q;
		if (unless != NULL) {
			char line[512];

			snprintf(
			    line, sizeof(line), "%.*s", (int)(eol - bol), bol);
			if (strstr(line, unless) != NULL)
				continue;
		}
		return colon != NULL ? atoi(colon + 1) : 0;
	}
	return 0;
}

/* True when host h's peer has exited (and reaps it). */
static bool
peer_exited(struct lab *lab, int h)
{
	int status;

	if (lab->pid[h] == 0)
		return true;
	if (waitpid(lab->pid[h], &status, WNOHANG) != lab->pid[h])
		return false;
	lab->status[h] = proc_exit_code(status);
	lab->pid[h] = 0;
	return true;
}

void
lab_print_tail(const struct lab *lab, const char *name)
{
	char path[PATH_MAX], *text;
	size_t len;

	lab_path_in(lab, name, path, sizeof(path));
	if ((text = proc_read_file(path, FILE_MAX)) == NULL)
		return;
	len = strlen(text);
	fprintf(
	    stderr, "  %s:\n%s", path, len > 2000 ? text + len - 2000 : text);
	free(text);
}

/* Waits until host h's log names its listening port: the port, or -1. */
static int
wait_port(struct lab *lab, int h, const char *log, const char *what,
    const char *unless)
{
	char path[PATH_MAX], *text;
	int port = 0;

	lab_path_in(lab, log, path, sizeof(path));
	for (int waited = 0; waited < START_MS && lab_signal == 0;
	     waited += 20) {
		if ((text = proc_read_file(path, FILE_MAX)) == NULL)
			return -1;
		port = port_in_log(text, what, unless);
		free(text);
		if (port > 0)
			return port;
		if (peer_exited(lab, h))
			break;
		usleep(20000);
	}
	if (lab_signal == 0) {
		fprintf(stderr,
		    "sluice lab: the %s did not start listening (exit code "
		    "%d)\n",
		    h == LAB_ORIGIN ? "origin" : "proxy", lab->status[h]);
		lab_print_tail(lab, log);
	}
	return -1;
}

static int
start_origin(struct lab *lab)
{
	const char *args[32] = {"origin", "--listen", NULL, "--json", NULL};
	char listen[64], json[PATH_MAX], sndbuf[32], buf[256], drip[32],
	    every[32], cut[32];
	size_t n = 5;
	int k;

	snprintf(listen, sizeof(listen), "%s:%d", lab->ip[LAB_ORIGIN],
	    lab->mode == LAB_MODE_NETNS ? ORIGIN_PORT : 0);
	lab_path_in(lab, "origin.json", json, sizeof(json));
	args[2] = listen;
	args[4] = json;
	if (lab->sc.origin_sndbuf != 0) {
		snprintf(
		    sndbuf, sizeof(sndbuf), "%" PRIu64, lab->sc.origin_sndbuf);
		args[n++] = "--sndbuf";
		args[n++] = sndbuf;
	}
	if (lab->sc.origin_drip != 0) {
		snprintf(drip, sizeof(drip), "%" PRIu64, lab->sc.origin_drip);
		snprintf(every, sizeof(every), "%" PRIu64 "ms",
		    lab->sc.origin_every_ms);
		args[n++] = "--drip";
		args[n++] = drip;
		args[n++] = "--every";
		args[n++] = every;
	}
	if (lab->sc.origin_raw)
		args[n++] = "--raw";
	if (lab->sc.origin_truncate_at != 0) {
		snprintf(
		    cut, sizeof(cut), "%" PRIu64, lab->sc.origin_truncate_at);
		args[n++] = "--truncate-at";
		args[n++] = cut;
	}
	k = lab_giveup_args(lab->sc.give_up, args + n, 12, buf, sizeof(buf));
	args[n + (size_t)(k > 0 ? k : 0)] = NULL;
	close(open_out(lab, "origin.json")); /* the origin appends */
	if (spawn(lab, LAB_ORIGIN, args, "origin.out", "origin.log") < 0)
		return -1;
	lab->origin_port = wait_port(
	    lab, LAB_ORIGIN, "origin.log", "origin: listening on", NULL);
	return lab->origin_port > 0 ? 0 : -1;
}

static int
write_proxy_config(struct lab *lab)
{
	char path[PATH_MAX], listen[64], server[64], admin[64],
	    access[PATH_MAX];
	bool netns = lab->mode == LAB_MODE_NETNS;
	FILE *f;

	lab_path_in(lab, "proxy.ini", path, sizeof(path));
	lab_path_in(lab, "access.json", access, sizeof(access));
	snprintf(listen, sizeof(listen), "%s:%d", lab->ip[LAB_LB],
	    netns ? PROXY_PORT : 0);
	snprintf(server, sizeof(server), "%s:%d", lab->ip[LAB_ORIGIN],
	    lab->origin_port);
	snprintf(admin, sizeof(admin), "127.0.0.1:%d", netns ? ADMIN_PORT : 0);
	if ((f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	lab_proxy_config(f, &lab->sc, listen, server, admin, access);
	if (fclose(f) != 0) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	close(open_out(lab, "access.json"));
	return 0;
}

/* [fault]: the scenario's rule, posted to the proxy's admin API before
 * the client starts (docs/faults.md).  0, or -1 with the proxy's answer
 * on stderr. */
static int
post_fault(struct lab *lab)
{
	struct timeval tv = {5, 0};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char body[1024], req[1400], ans[1024] = "";
	FILE *f = fmemopen(body, sizeof(body), "w");
	ssize_t n = -1;
	int fd, len;

	if (f == NULL)
		return -1;
	lab_fault_json(f, &lab->sc);
	fclose(f);
	len = snprintf(req, sizeof(req),
	    "POST /faults HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    strlen(body), body);
	if ((fd = lab_net_socket(lab, LAB_LB)) >= 0) {
		sa.sin_port = htons((uint16_t)lab->admin_port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    send(fd, req, (size_t)len, MSG_NOSIGNAL) == len)
			n = (ssize_t)proc_read_all(fd, ans, sizeof(ans));
		close(fd);
	}
	if (n > 0 &&
	    (strncmp(ans, "HTTP/1.1 200", 12) == 0 ||
	        strncmp(ans, "HTTP/1.1 201", 12) == 0)) {
		lab_note(lab, "[fault]: the proxy took the rule %s", body);
		return 0;
	}
	fprintf(stderr,
	    "sluice lab: [fault]: the proxy refused the rule %s: %s\n", body,
	    ans[0] != '\0' ? ans : "no answer from its admin port");
	return -1;
}

static int
start_proxy(struct lab *lab)
{
	char path[PATH_MAX];
	const char *args[] = {"proxy", "-c", path, NULL};

	lab_path_in(lab, "proxy.ini", path, sizeof(path));
	if (write_proxy_config(lab) < 0 ||
	    spawn(lab, LAB_LB, args, "proxy.out", "proxy.log") < 0)
		return -1;
	lab->admin_port =
	    wait_port(lab, LAB_LB, "proxy.log", "admin: listening on", NULL);
	if (lab->admin_port < 0)
		return -1;
	lab->proxy_port =
	    wait_port(lab, LAB_LB, "proxy.log", " listening on ", "admin:");
	if (lab->proxy_port <= 0)
		return -1;
	return lab->sc.fault_action[0] != '\0' ? post_fault(lab) : 0;
}

/* True once something accepts on LB_IP:PROXY_PORT inside the lb
 * namespace. */
static bool
lb_listening(const struct lab *lab)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd = lab_net_socket(lab, LAB_LB);
	bool ok;

	if (fd < 0)
		return false;
	sa.sin_port = htons(PROXY_PORT);
	inet_pton(AF_INET, LB_IP, &sa.sin_addr);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Writes DIR/nginx.conf or DIR/haproxy.cfg (lab_lb.h, which also makes
 * DIR/nginx-temp); its path in conf. */
static int
write_ext_config(struct lab *lab, char *conf, size_t len)
{
	char err[LAB_ERR_MAX];
	bool nginx = lab->sc.lb_kind == LAB_LB_NGINX;
	FILE *f;
	int rc;

	snprintf(lab->temp_abs, sizeof(lab->temp_abs), "%s/nginx-temp",
	    lab->out_abs);
	snprintf(conf, len, "%s/%s", lab->out_abs,
	    nginx ? "nginx.conf" : "haproxy.cfg");
	if ((f = fopen(conf, "w")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", conf, strerror(errno));
		return -1;
	}
	rc = lab_lb_config(f, &lab->sc, LB_IP ":8080", ORIGIN_IP ":8000",
	    lab->out_abs, lab->lb_notes, sizeof(lab->lb_notes), err,
	    sizeof(err));
	if (fclose(f) != 0 || rc < 0) {
		fprintf(stderr, "sluice lab: %s: %s\n", conf,
		    rc < 0 ? err : strerror(errno));
		return -1;
	}
	for (char *l = lab->lb_notes, *nl; *l != '\0'; l = nl + 1) {
		if ((nl = strchr(l, '\n')) == NULL)
			break;
		lab_note(lab, "%.*s", (int)(nl - l), l);
	}
	return 0;
}

/* nginx or HAProxy from Debian's packages, in the foreground in the lb
 * namespace, with the config the scenario makes. */
static int
start_ext_lb(struct lab *lab)
{
	const char *args[16];
	char conf[PATH_MAX], buf[PATH_MAX + 64], out[32], log[32];
	const char *name = lab_lb_kind_name(lab->sc.lb_kind);
	int n;

	if (write_ext_config(lab, conf, sizeof(conf)) < 0)
		return -1;
	n = lab_lb_argv(
	    &lab->sc, conf, lab->out_abs, args, 15, buf, sizeof(buf));
	if (n < 0 || !proc_in_path(args[0])) {
		fprintf(stderr,
		    "sluice lab: [lb] kind = %s needs %s (Debian: apt-get "
		    "install %s)\n",
		    name, name,
		    lab->sc.lb_kind == LAB_LB_NGINX ? "nginx-light"
		                                    : "haproxy");
		return -1;
	}
	args[n] = NULL;
	snprintf(out, sizeof(out), "%s.out", name);
	snprintf(log, sizeof(log), "%s.log", name);
	lab->pid[LAB_LB] = spawn_cmd(lab, LAB_LB, false, args, out, log);
	if (lab->pid[LAB_LB] < 0) {
		lab->pid[LAB_LB] = 0;
		return -1;
	}
	lab->proxy_port = PROXY_PORT;
	for (int waited = 0; waited < START_MS && lab_signal == 0;
	     waited += 20) {
		if (lb_listening(lab))
			return 0;
		if (peer_exited(lab, LAB_LB))
			break;
		usleep(20000);
	}
	fprintf(stderr, "sluice lab: %s did not start listening on %s:%d\n",
	    name, LB_IP, PROXY_PORT);
	lab_print_tail(lab, log);
	lab_print_tail(lab, "nginx-error.log");
	return -1;
}

static int
start_lb(struct lab *lab)
{
	switch (lab->sc.lb_kind) {
	case LAB_LB_SLUICE:
		return start_proxy(lab);
	case LAB_LB_NONE:
		return 0;
	default:
		return start_ext_lb(lab);
	}
}
/* Options with a number: "--opt" and its value, kept in a buffer. */
struct optbuf {
	const char **args;
	size_t n;
	char vals[12][32];
	size_t nvals;
};

static void
opt_num(struct optbuf *o, const char *opt, uint64_t v, const char *unit)
{
	if (v == 0 || o->nvals == 12)
		return;
	snprintf(
	    o->vals[o->nvals], sizeof(o->vals[0]), "%" PRIu64 "%s", v, unit);
	o->args[o->n++] = opt;
	o->args[o->n++] = o->vals[o->nvals++];
}

/* The URL every client asks: through the balancer, or straight to the
 * origin when there is none (tcp:// for a raw origin). */
static void
client_url(const struct lab *lab, char *url, size_t len)
{
	if (lab->sc.origin_raw)
		snprintf(url, len, "tcp://%s:%d", lab->ip[LAB_ORIGIN],
		    lab->origin_port);
	else if (!lab_has_lb(lab))
		snprintf(url, len, "http://%s:%d/bytes/%" PRIu64,
		    lab->ip[LAB_ORIGIN], lab->origin_port, lab->sc.body);
	else
		snprintf(url, len, "http://%s:%d/bytes/%" PRIu64,
		    lab->ip[LAB_LB], lab->proxy_port, lab->sc.body);
}

static int
start_fetch(struct lab *lab)
{
	const struct lab_scenario *sc = &lab->sc;
	const char *args[40] = {"fetch", NULL, "--json"};
	struct optbuf o = {.args = args, .n = 3};
	char url[128];

	client_url(lab, url, sizeof(url));
	args[1] = url;
	if (!sc->origin_raw)
		args[o.n++] = "--verify";
	opt_num(&o, "--rate", lab_fetch_rate(lab), "bit");
	opt_num(&o, "--rcvbuf", sc->client_rcvbuf, "");
	opt_num(&o, "--window-clamp", sc->client_window_clamp, "");
	opt_num(&o, "--timeout", sc->client_timeout_ms, "ms");
	opt_num(&o, "--read", sc->client_read, "");
	opt_num(&o, "--interval", sc->client_interval_ms, "ms");
	opt_num(&o, "--count", sc->client_count, "");
	if (sc->stall_for_ms != 0) {
		args[o.n++] = "--stall-at";
		snprintf(o.vals[o.nvals], sizeof(o.vals[0]), "%" PRIu64,
		    sc->stall_at);
		args[o.n++] = o.vals[o.nvals++];
		opt_num(&o, "--stall-for", sc->stall_for_ms, "ms");
	}
	args[o.n] = NULL;
	clock_gettime(CLOCK_MONOTONIC, &lab->t0);
	return spawn(lab, LAB_CLIENT, args, "fetch.json", "fetch.log");
}

/*
 * The [dos] clients: each asks for the body from its own source address,
 * reads the head and then nothing (a receive buffer of dos_rcvbuf fills
 * and its window stays zero), for longer than the run.  They start before
 * the honest client, so they hold the proxy first.
 */
static int
start_dos(struct lab *lab)
{
	char url[128], rcvbuf[32], out[32], err[32];
	const char *args[] = {"fetch", url, "--json", "--source", DOS_IP,
	    "--rcvbuf", rcvbuf, "--stall-at", "0", "--stall-for", "24h",
	    "--timeout", "0", NULL};

	client_url(lab, url, sizeof(url));
	snprintf(rcvbuf, sizeof(rcvbuf), "%" PRIu64, lab->sc.dos_rcvbuf);
	for (uint64_t i = 0; i < lab->sc.dos_clients; i++) {
		snprintf(out, sizeof(out), "dos-%" PRIu64 ".json", i + 1);
		snprintf(err, sizeof(err), "dos-%" PRIu64 ".log", i + 1);
		lab->dos_pid[i] =
		    spawn_cmd(lab, LAB_CLIENT, true, args, out, err);
		if (lab->dos_pid[i] < 0) {
			lab->dos_pid[i] = 0;
			return -1;
		}
	}
	if (lab->sc.dos_clients != 0)
		usleep(
		    500000); /* connected and stalled before the honest one */
	return 0;
}

/* Reaps [dos] clients that ended by themselves (one that could not
 * connect, say), so that none is left a zombie. */
static void
dos_reap(struct lab *lab)
{
	int status;

	for (uint64_t i = 0; i < lab->sc.dos_clients; i++)
		if (lab->dos_pid[i] != 0 &&
		    waitpid(lab->dos_pid[i], &status, WNOHANG) ==
		        lab->dos_pid[i])
			lab->dos_pid[i] = 0;
}

/* ---- captures ---------------------------------------------------------- */

/*
 * tcpdump on each link, at the origin's end and the client's (where the
 * article ran it): headers only (-s 128), every packet written at once
 * (-U, --immediate-mode: or the final RST is lost when it stops), as root
 * (-Z root: the results directory need not be writable by its user).
 */
static int
start_captures(struct lab *lab)
{
	char file[PATH_MAX], log[PATH_MAX], *text;
	const char *args[] = {"tcpdump", "-i", NULL, "-n", "-s", "128", "-U",
	    "--immediate-mode", "-Z", "root", "-w", file, "tcp", NULL};
	bool ready;

	if (!lab->sc.capture)
		return 0;
	if (lab->mode != LAB_MODE_NETNS) {
		lab_note(lab, "capture needs network namespaces: none taken");
		return 0;
	}
	if (!proc_in_path("tcpdump")) {
		fprintf(stderr,
		    "sluice lab: capture = on needs tcpdump "
		    "(Debian: apt-get install tcpdump)\n");
		return -1;
	}
	for (int i = 0; i < LAB_NLINKS; i++) {
		args[2] = lab_links[i].dev;
		lab_path_in(lab, lab_links[i].file, file, sizeof(file));
		lab->cap_pid[i] = spawn_cmd(lab, lab_links[i].host, false, args,
		    lab_links[i].log, lab_links[i].log);
		if (lab->cap_pid[i] < 0) {
			lab->cap_pid[i] = 0;
			return -1;
		}
		lab_path_in(lab, lab_links[i].log, log, sizeof(log));
		ready = false;
		for (int waited = 0; !ready && waited < START_MS;
		     waited += 20) {
			text = proc_read_file(log, FILE_MAX);
			ready = text != NULL &&
			    strstr(text, "listening on") != NULL;
			free(text);
			if (!ready)
				usleep(20000);
		}
		if (!ready) {
			fprintf(stderr, "sluice lab: tcpdump did not start:\n");
			lab_print_tail(lab, lab_links[i].log);
			return -1;
		}
	}
	return 0;
}

/* A second after the peers stopped, so the last packets are in. */
static void
stop_captures(struct lab *lab)
{
	if (lab->cap_pid[0] == 0 && lab->cap_pid[1] == 0)
		return;
	usleep(1000000);
	for (int i = 0; i < LAB_NLINKS; i++)
		proc_stop_group(&lab->cap_pid[i], STOP_MS);
}

/* Stops host h's peer (proc_stop_group) and keeps its exit code. */
static void
stop_peer(struct lab *lab, int h, int ms)
{
	if (lab->pid[h] != 0)
		lab->status[h] = proc_stop_group(&lab->pid[h], ms);
}

static void
teardown(struct lab *lab)
{
	for (uint64_t i = 0; i < lab->sc.dos_clients && i < MAX_DOS; i++)
		proc_stop_group(&lab->dos_pid[i], STOP_MS);
	for (int h = LAB_NHOSTS - 1; h >= 0; h--)
		stop_peer(lab, h, STOP_MS);
	for (int i = 0; i < LAB_NLINKS; i++)
		proc_stop_group(&lab->cap_pid[i], STOP_MS);
	lab_net_teardown(lab);
	if (lab->csv != NULL)
		fclose(lab->csv);
	lab->csv = NULL;
}

/* ---- sampling ---------------------------------------------------------- */

static void
sleep_until(const struct lab *lab, double t)
{
	double d = t - lab_elapsed(lab);
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL); /* a signal ends it early: the loop looks */
}

/* Samples until the fetch exits, the time limit, or a signal. */
static void
sample_loop(struct lab *lab)
{
	double limit = (double)lab->sc.time_limit_ms / 1000.0;
	double next = 0;

	if (lab->verbose)
		fprintf(stderr,
		    "sluice lab: sampling every %d ms: ss -tinH in the "
		    "origin's and the client's namespace, GET "
		    "http://127.0.0.1:%d/connections in the lb's\n",
		    SAMPLE_MS, lab->admin_port);
	while (lab_signal == 0) {
		dos_reap(lab);
		if (peer_exited(lab, LAB_CLIENT))
			break;
		if (lab_elapsed(lab) >= limit) {
			lab->time_limit_hit = true;
			break;
		}
		lab_sample_take(lab);
		next += SAMPLE_MS / 1000.0;
		sleep_until(lab, next);
	}
	if (lab_signal == 0)
		lab_sample_final(lab);
	if (lab->progress_shown)
		fputs("\r\033[K", stderr);
}

/* The proxy's access lines from the [dos] clients' address so far. */
static uint64_t
dos_lines(const struct lab *lab)
{
	char path[PATH_MAX], *text;
	uint64_t n = 0;

	lab_path_in(lab, "access.json", path, sizeof(path));
	if ((text = proc_read_file(path, FILE_MAX)) == NULL)
		return 0;
	for (const char *p = text;
	     (p = strstr(p, "\"client\":\"" DOS_IP ":")) != NULL; p++)
		n++;
	free(text);
	return n;
}

/* After the honest client: the proxy gets until its client zero-window
 * limit (at most a minute) to close every [dos] client; then they are
 * stopped (they never read again, so they never end by themselves). */
static void
dos_wait(struct lab *lab)
{
	double limit = (double)config_client_zwp_ms(lab->cfg) / 1000.0 + 2;
	uint64_t n = 0;

	if (lab->sc.dos_clients == 0)
		return;
	if (limit > 60)
		limit = 60;
	for (double waited = 0; waited < limit && lab_signal == 0;
	     waited += 0.1) {
		if ((n = dos_lines(lab)) >= lab->sc.dos_clients)
			break;
		usleep(100000);
	}
	for (uint64_t i = 0; i < lab->sc.dos_clients; i++)
		proc_stop_group(&lab->dos_pid[i], STOP_MS);
	if (n < lab->sc.dos_clients)
		lab_note(lab,
		    "%" PRIu64 " of %" PRIu64 " [dos] clients still held "
		    "after the honest client",
		    lab->sc.dos_clients - n, lab->sc.dos_clients);
}

/* After the fetch: the proxy's access line, then the peers stop. */
static void
end_run(struct lab *lab)
{
	char path[PATH_MAX], *text;

	if (lab->time_limit_hit) {
		lab_note(lab,
		    "time limit (%" PRIu64 " ms) reached: the download "
		    "was stopped",
		    lab->sc.time_limit_ms);
		stop_peer(lab, LAB_CLIENT, STOP_MS);
	}
	dos_wait(lab);
	lab_path_in(lab, "access.json", path, sizeof(path));
	for (int waited = 0; lab->sc.lb_kind == LAB_LB_SLUICE &&
	     waited < ACCESS_MS && lab_signal == 0;
	     waited += 50) {
		text = proc_read_file(path, FILE_MAX);
		if (text != NULL && strstr(text, "\"outcome\"") != NULL) {
			free(text);
			break;
		}
		free(text);
		usleep(50000);
	}
	stop_peer(lab, LAB_LB, STOP_MS);
	stop_peer(lab, LAB_ORIGIN, STOP_MS);
	stop_captures(lab);
}

/* ---- the command ------------------------------------------------------- */

static void
on_signal(int sig)
{
	lab_signal = sig;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: sleeps end early */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int
mkdir_p(char *path)
{
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) == -1 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	return mkdir(path, 0755) == -1 && errno != EEXIST ? -errno : 0;
}

static int
make_out(struct lab *lab, const char *dir)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	if (dir != NULL) {
		snprintf(lab->out, sizeof(lab->out), "%s", dir);
	} else {
		/* Labs started in the same second (GNU parallel, several
		 * shells) each get a directory of their own: NAME-TIME,
		 * NAME-TIME-2, ...; mkdir is the claim. */
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
		char parent[] = "lab-results";

		if ((rc = mkdir_p(parent)) < 0) {
			fprintf(stderr,
			    "sluice lab: cannot create "
			    "lab-results: %s\n",
			    strerror(-rc));
			return -1;
		}
		for (int n = 1; n <= 1000; n++) {
			snprintf(lab->out, sizeof(lab->out),
			    n == 1 ? "lab-results/%s-%s"
			           : "lab-results/%s-%s-%d",
			    lab->sc.name, stamp, n);
			if (mkdir(lab->out, 0755) == 0 || errno != EEXIST)
				break;
		}
	}
	if ((rc = mkdir_p(lab->out)) < 0) {
		fprintf(stderr, "sluice lab: cannot create %s: %s\n", lab->out,
		    strerror(-rc));
		return -1;
	}
	return 0;
}

/* Loads the proxy config the scenario makes (addresses as in netns mode)
 * to check its [proxy] keys before anything starts, and for the model. */
static int
load_proxy_config(struct lab *lab)
{
	char err[CONFIG_ERR_MAX], *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return -1;
	lab_proxy_config(f, &lab->sc, LB_IP ":8080", ORIGIN_IP ":8000",
	    "127.0.0.1:9090", "");
	fclose(f);
	lab->cfg = config_load_string(text, "proxy.ini", err, sizeof(err));
	free(text);
	if (lab->cfg == NULL) {
		fprintf(stderr,
		    "sluice lab: %s: [proxy] makes a bad proxy config: %s\n",
		    lab->sc.path, err);
		return -1;
	}
	return 0;
}

struct args {
	const char *scenario, *out;
	bool json, verbose, loopback, capture;
};

static int
parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	    {"out", required_argument, NULL, 'o'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"loopback", no_argument, NULL, 'l'},
	    {"capture", no_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((c = getopt_long(argc, argv, "jo:vlch", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			a->json = true;
			break;
		case 'o':
			a->out = optarg;
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'l':
			a->loopback = true;
			break;
		case 'c':
			a->capture = true;
			break;
		case 'h':
			lab_usage(stdout);
			exit(0);
		default:
			lab_usage(stderr);
			return -1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "sluice lab: one SCENARIO.ini is required\n");
		lab_usage(stderr);
		return -1;
	}
	a->scenario = argv[optind];
	return 0;
}

/* Everything before the peers start: 0, 1 (cannot run) or 2 (usage). */
static int
prepare(struct lab *lab, const struct args *a)
{
	char err[LAB_ERR_MAX], *abs;
	ssize_t n;

	if (lab_scenario_load(a->scenario, &lab->sc, err, sizeof(err)) < 0) {
		fprintf(stderr, "sluice lab: %s\n", err);
		return 2;
	}
	lab->mode = a->loopback ? LAB_MODE_LOOPBACK : lab->sc.mode;
	if (load_proxy_config(lab) < 0)
		return 2;
	if (lab->mode == LAB_MODE_NETNS && geteuid() != 0) {
		fprintf(stderr,
		    "sluice lab: %s needs root for network namespaces (ip "
		    "netns, tc, sysctl); run it as root, or on 127.0.0.1 "
		    "with application-paced rates: sluice lab --loopback "
		    "%s\n",
		    a->scenario, a->scenario);
		return 1;
	}
	n = readlink("/proc/self/exe", lab->exe, sizeof(lab->exe) - 1);
	if (n <= 0 || (size_t)n >= sizeof(lab->exe) - 1) {
		fprintf(stderr, "sluice lab: /proc/self/exe: %s\n",
		    strerror(errno));
		return 1;
	}
	lab->exe[n] = '\0';
	if (a->capture)
		lab->sc.capture = true;
	if (lab->mode != LAB_MODE_NETNS &&
	    (lab->sc.lb_kind != LAB_LB_SLUICE || lab->sc.dos_clients != 0)) {
		fprintf(stderr,
		    "sluice lab: %s: [lb] kind = %s and [dos] need network "
		    "namespaces (mode = netns)\n",
		    a->scenario, lab_lb_kind_name(lab->sc.lb_kind));
		return 2;
	}
	if (make_out(lab, a->out) < 0)
		return 1;
	if ((abs = realpath(lab->out, NULL)) == NULL ||
	    strlen(abs) >= sizeof(lab->out_abs)) {
		fprintf(stderr, "sluice lab: %s: %s\n", lab->out,
		    abs == NULL ? strerror(errno) : "path too long");
		free(abs);
		return 1;
	}
	strcpy(lab->out_abs, abs);
	free(abs);
	lab->selfns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	return 0;
}

/* "6.00 MiB through nginx", for the first line. */
static const char *
what_runs(const struct lab *lab, char *buf, size_t len)
{
	if (lab->sc.origin_raw)
		snprintf(buf, len, "a raw stream straight from the origin");
	else if (!lab_has_lb(lab))
		snprintf(buf, len, "%.2f MiB straight from the origin",
		    (double)lab->sc.body / MIB);
	else
		snprintf(buf, len, "%.2f MiB through %s",
		    (double)lab->sc.body / MIB,
		    lab->sc.lb_kind == LAB_LB_SLUICE
		        ? "sluice proxy"
		        : lab_lb_kind_name(lab->sc.lb_kind));
	return buf;
}

static int
run(struct lab *lab)
{
	bool netns = lab->mode == LAB_MODE_NETNS;
	char what[96];

	lab->ip[LAB_ORIGIN] = netns ? ORIGIN_IP : "127.0.0.1";
	lab->ip[LAB_LB] = netns ? LB_IP : "127.0.0.1";
	lab->ip[LAB_CLIENT] = netns ? CLIENT_IP : "127.0.0.1";
	if (!netns)
		loopback_notes(lab);
	else if (lab_net_setup(lab) < 0)
		return -1;
	if (start_captures(lab) < 0 || start_origin(lab) < 0 ||
	    start_lb(lab) < 0 || lab_sample_open_csv(lab) < 0 ||
	    start_dos(lab) < 0 || start_fetch(lab) < 0)
		return -1;
	if (!lab->json)
		fprintf(stderr, "sluice lab: %s: %s, %s, results in %s\n",
		    lab->sc.name, netns ? "network namespaces" : "loopback",
		    what_runs(lab, what, sizeof(what)), lab->out);
	sample_loop(lab);
	if (lab_signal != 0)
		return -1;
	end_run(lab);
	return 0;
}

int
lab_main(int argc, char **argv)
{
	struct lab *lab = calloc(1, sizeof(*lab));
	struct args a;
	int rc;

	if (lab == NULL)
		return 1;
	for (int h = 0; h < LAB_NHOSTS; h++)
		lab->nsfd[h] = -1;
	lab->selfns = -1;
	lab->peak.o_zero_since = lab->peak.c_zero_since = -1;
	if (parse_args(argc, argv, &a) < 0) {
		free(lab);
		return 2;
	}
	lab->json = a.json;
	lab->verbose = a.verbose;
	lab->tty = isatty(STDERR_FILENO) && !a.verbose;
	install_signals();
	if ((rc = prepare(lab, &a)) == 0) {
		rc = run(lab) < 0 ? 1 : 0;
		teardown(lab);
		if (lab_signal != 0) {
			fprintf(stderr,
			    "sluice lab: stopped by signal %d; namespaces and "
			    "processes removed, partial timeline in %s\n",
			    (int)lab_signal, lab->out);
			rc = 128 + lab_signal;
		} else if (rc == 0) {
			rc = lab_report(lab);
		}
	}
	if (lab->selfns >= 0)
		close(lab->selfns);
	config_free(lab->cfg);
	free(lab);
	return rc;
}
