/*
 * lab_net: the run's three hosts (lab_int.h).  Every change to the system
 * is a command an operator could type (ip, tc, sysctl), run by fork/exec
 * without a shell (proc.h) and printed at -v, and it is made inside the
 * run's own namespaces sluice-PID-{origin,lb,client}: deleting them undoes
 * everything (their veth pairs go with them).  Namespaces left by a lab
 * killed with SIGKILL are removed by the next run (their PID is gone).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/proc.h"

const struct lab_link lab_links[LAB_NLINKS] = {
    {"origin-lb", LAB_ORIGIN, "to-lb", "origin-lb.pcap",
        "origin-lb.tcpdump.log"},
    {"lb-client", LAB_CLIENT, "to-lb", "lb-client.pcap",
        "lb-client.tcpdump.log"},
};

/* Runs a command that must succeed; on failure says which and why. */
int
lab_must_run(struct lab *lab, const char *arg0, ...)
{
	char *argv[PROC_MAX_ARGS], out[2048];
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = proc_collect_args(argv, arg0, ap);
	va_end(ap);
	if (rc == 0 &&
	    (rc = proc_run(argv, out, sizeof(out), lab->verbose)) == 0)
		return lab_signal != 0 ? -EINTR : 0;
	fprintf(stderr, "sluice lab: this command failed (%s %d):\n  ",
	    rc < 0 ? "error" : "exit code", rc < 0 ? -rc : rc);
	for (size_t i = 0; argv[i] != NULL; i++) {
		proc_print_arg(stderr, argv[i]);
		fputc(' ', stderr);
	}
	fprintf(stderr, "\n  %s", rc < 0 ? strerror(-rc) : out);
	if (rc < 0 || out[0] == '\0' || out[strlen(out) - 1] != '\n')
		fputc('\n', stderr);
	return -1;
}

/* ---- namespaces, links, sysctls --------------------------------------- */

/* Removes sluice-PID-* namespaces whose lab is gone (killed by SIGKILL). */
static void
sweep_stale(struct lab *lab)
{
	char out[8192], *save = NULL, name[64], host[16];
	int pid;

	if (proc_try_run(lab->verbose, out, sizeof(out), "ip", "netns", "list",
	        NULL) != 0)
		return;
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%63s", name) != 1 ||
		    sscanf(name, "sluice-%d-%15s", &pid, host) != 2 ||
		    pid <= 0 || pid == getpid() ||
		    (kill(pid, 0) == 0 || errno != ESRCH))
			continue;
		fprintf(stderr,
		    "sluice lab: removing namespace %s, left by a lab that "
		    "is gone\n",
		    name);
		lab_must_run(lab, "ip", "netns", "del", name, NULL);
	}
}

static int
ns_create(struct lab *lab)
{
	char out[1024], path[128];

	for (int h = 0; h < LAB_NHOSTS; h++) {
		snprintf(lab->ns[h], sizeof(lab->ns[h]), "sluice-%d-%s",
		    (int)getpid(), lab_host_names[h]);
		if (proc_try_run(lab->verbose, out, sizeof(out), "ip", "netns",
		        "add", lab->ns[h], NULL) != 0) {
			fprintf(stderr,
			    "sluice lab: cannot create network namespace %s: "
			    "%s  network namespaces are not available here; "
			    "run the scenario on 127.0.0.1 with --loopback "
			    "(or [lab] mode = loopback)\n",
			    lab->ns[h], out);
			return -1;
		}
		lab->ns_made[h] = true;
		snprintf(path, sizeof(path), "/run/netns/%s", lab->ns[h]);
		if ((lab->nsfd[h] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			fprintf(stderr, "sluice lab: %s: %s\n", path,
			    strerror(errno));
			return -1;
		}
		if (lab_must_run(lab, "ip", "-n", lab->ns[h], "link", "set",
		        "lo", "up", NULL) < 0)
			return -1;
	}
	return 0;
}

/* A veth pair between hosts a and b, created inside them: the root
 * namespace never holds either end.  The /24 gives each its route. */
static int
link_pair(struct lab *lab, int a, const char *ifa, const char *ipa, int b,
    const char *ifb, const char *ipb)
{
	char cidr_a[32], cidr_b[32];

	snprintf(cidr_a, sizeof(cidr_a), "%s/24", ipa);
	snprintf(cidr_b, sizeof(cidr_b), "%s/24", ipb);
	if (lab_must_run(lab, "ip", "link", "add", ifa, "netns", lab->ns[a],
	        "type", "veth", "peer", "name", ifb, "netns", lab->ns[b],
	        NULL) < 0 ||
	    lab_must_run(lab, "ip", "-n", lab->ns[a], "addr", "add", cidr_a,
	        "dev", ifa, NULL) < 0 ||
	    lab_must_run(lab, "ip", "-n", lab->ns[b], "addr", "add", cidr_b,
	        "dev", ifb, NULL) < 0 ||
	    lab_must_run(lab, "ip", "-n", lab->ns[a], "link", "set", ifa, "up",
	        NULL) < 0 ||
	    lab_must_run(lab, "ip", "-n", lab->ns[b], "link", "set", ifb, "up",
	        NULL) < 0)
		return -1;
	return 0;
}

/* netem as the root qdisc, when the kernel has it (then tbf goes under
 * it); Linux 6.18 as docs/kernel.md measured it has none: say so once,
 * do not fail. */
static bool
add_netem(struct lab *lab, const char *ns, const char *dev)
{
	char delay[32], out[512];

	if (lab->sc.delay_ms == 0 || lab->netem == 0)
		return false;
	snprintf(delay, sizeof(delay), "%" PRIu64 "ms", lab->sc.delay_ms);
	if (proc_try_run(lab->verbose, out, sizeof(out), "tc", "-n", ns,
	        "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
	        "delay", delay, NULL) == 0) {
		lab->netem = 1;
		return true;
	}
	lab->netem = 0;
	lab_note(lab, "delay not applied: no netem in this kernel");
	return false;
}

/*
 * tc tbf at bps on dev's egress.  burst: 5 ms at the rate, at least four
 * full frames (tbf drops a packet larger than its burst); latency: at
 * least 20 ms and ten frames' time, so the queue holds a few frames at a
 * low rate without adding much to the bytes in flight (K_out).
 */
static int
shape(struct lab *lab, int h, const char *dev, uint64_t bps)
{
	char rate[32], burst[32], latency[32];
	uint64_t b = bps / 8 / 200, lat = 10ULL * FRAME_BYTES * 8000 / bps + 1;
	const char *ns = lab->ns[h];

	snprintf(rate, sizeof(rate), "%" PRIu64 "bit", bps);
	snprintf(burst, sizeof(burst), "%" PRIu64,
	    b > 4 * FRAME_BYTES ? b : 4 * FRAME_BYTES);
	snprintf(
	    latency, sizeof(latency), "%" PRIu64 "ms", lat > 20 ? lat : 20);
	if (add_netem(lab, ns, dev))
		return lab_must_run(lab, "tc", "-n", ns, "qdisc", "add", "dev",
		    dev, "parent", "1:1", "handle", "10:", "tbf", "rate", rate,
		    "burst", burst, "latency", latency, NULL);
	return lab_must_run(lab, "tc", "-n", ns, "qdisc", "add", "dev", dev,
	    "root", "tbf", "rate", rate, "burst", burst, "latency", latency,
	    NULL);
}

static int
apply_sysctls(struct lab *lab)
{
	char kv[280];

	for (int h = 0; h < LAB_NHOSTS; h++)
		for (size_t i = 0; i < lab->sc.nsysctl[h]; i++) {
			snprintf(kv, sizeof(kv), "%s=%s",
			    lab->sc.sysctl[h][i].key,
			    lab->sc.sysctl[h][i].value);
			if (lab_must_run(lab, "ip", "netns", "exec", lab->ns[h],
			        "sysctl", "-q", "-w", kv, NULL) < 0)
				return -1;
		}
	return 0;
}

/* [lb] kind = none: the lb namespace forwards, the ends route through it,
 * and the client talks to the origin itself (the article's exercises). */
static int
route(struct lab *lab)
{
	if (lab_must_run(lab, "ip", "netns", "exec", lab->ns[LAB_LB], "sysctl",
	        "-q", "-w", "net.ipv4.ip_forward=1", NULL) < 0 ||
	    lab_must_run(lab, "ip", "-n", lab->ns[LAB_ORIGIN], "route", "add",
	        "10.202.0.0/24", "via", LB_UP_IP, NULL) < 0 ||
	    lab_must_run(lab, "ip", "-n", lab->ns[LAB_CLIENT], "route", "add",
	        "10.201.0.0/24", "via", LB_IP, NULL) < 0)
		return -1;
	return 0;
}

/*
 * [client] initrwnd: the initial receive window the client offers, in
 * segments, set on its routes (ip route ... initrwnd N).  Since Linux 5.x
 * the first window is most of the receive buffer (about 64 KB); the
 * article's kernel started at ten segments and grew the window as data
 * came, which this brings back (exercise1.ini).
 */
static int
initrwnd(struct lab *lab)
{
	char n[24];

	if (lab->sc.client_initrwnd == 0)
		return 0;
	snprintf(n, sizeof(n), "%" PRIu64, lab->sc.client_initrwnd);
	if (lab_must_run(lab, "ip", "-n", lab->ns[LAB_CLIENT], "route",
	        "change", "10.202.0.0/24", "dev", "to-lb", "proto", "kernel",
	        "scope", "link", "src", CLIENT_IP, "initrwnd", n, NULL) < 0)
		return -1;
	if (lab_has_lb(lab))
		return 0;
	return lab_must_run(lab, "ip", "-n", lab->ns[LAB_CLIENT], "route",
	    "change", "10.201.0.0/24", "via", LB_IP, "initrwnd", n, NULL);
}

int
lab_net_setup(struct lab *lab)
{
	const struct lab_scenario *sc = &lab->sc;

	sweep_stale(lab);
	if (ns_create(lab) < 0 ||
	    link_pair(lab, LAB_ORIGIN, "to-lb", ORIGIN_IP, LAB_LB, "to-origin",
	        LB_UP_IP) < 0 ||
	    link_pair(lab, LAB_LB, "to-client", LB_IP, LAB_CLIENT, "to-lb",
	        CLIENT_IP) < 0 ||
	    shape(lab, LAB_ORIGIN, "to-lb", sc->origin_lb_bps) < 0 ||
	    shape(lab, LAB_LB, "to-origin", sc->origin_lb_bps) < 0 ||
	    shape(lab, LAB_LB, "to-client", sc->lb_client_bps) < 0 ||
	    shape(lab, LAB_CLIENT, "to-lb", sc->lb_client_bps) < 0 ||
	    apply_sysctls(lab) < 0)
		return -1;
	if (sc->dos_clients != 0 &&
	    lab_must_run(lab, "ip", "-n", lab->ns[LAB_CLIENT], "addr", "add",
	        DOS_IP "/24", "dev", "to-lb", NULL) < 0)
		return -1;
	if (!lab_has_lb(lab) && route(lab) < 0)
		return -1;
	return initrwnd(lab);
}

/* The client's rate: --rate, or in loopback mode the lb-client link's. */
uint64_t
lab_fetch_rate(const struct lab *lab)
{
	if (lab->sc.client_rate_bps != 0 || lab->mode == LAB_MODE_NETNS)
		return lab->sc.client_rate_bps;
	return lab->sc.lb_client_bps;
}

/* A socket made inside host h's namespace (ours in loopback mode). */
int
lab_net_socket(const struct lab *lab, int h)
{
	int fd, err;

	if (lab->nsfd[h] < 0)
		return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (setns(lab->nsfd[h], CLONE_NEWNET) == -1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	err = errno;
	if (setns(lab->selfns, CLONE_NEWNET) == -1) {
		/* cannot happen: we were there a moment ago */
		fprintf(
		    stderr, "sluice lab: setns back: %s\n", strerror(errno));
		abort();
	}
	errno = err;
	return fd;
}

/* Closes the namespaces' descriptors and deletes the namespaces, once
 * every process in them has stopped (teardown in lab.c). */
void
lab_net_teardown(struct lab *lab)
{
	for (int h = 0; h < LAB_NHOSTS; h++) {
		if (lab->nsfd[h] >= 0)
			close(lab->nsfd[h]);
		lab->nsfd[h] = -1;
		if (lab->ns_made[h])
			lab_must_run(
			    lab, "ip", "netns", "del", lab->ns[h], NULL);
		lab->ns_made[h] = false;
	}
}
