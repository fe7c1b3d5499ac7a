/*
 * lab: the run (see lab.h and docs/lab.md); lab_scenario.c holds the
 * scenario file, lab_report.c the figures, plot and verdict.
 *
 * Every change to the system is a command an operator could type (ip, tc,
 * sysctl), run by fork/exec without a shell and printed at -v, and it is
 * made inside the run's own namespaces sluice-PID-{origin,lb,client}:
 * deleting them undoes everything (their veth pairs go with them).  The
 * three peers are this binary's own verbs, started through `ip netns
 * exec`, each in its own process group and with PR_SET_PDEATHSIG, so a
 * lab that dies takes them along; namespaces left by a lab killed with
 * SIGKILL are removed by the next run (their PID is gone).  Teardown runs
 * once on every way out: done, failure, time limit, SIGINT/SIGTERM.
 *
 * The run is a plain loop, not an event loop: every 100 ms one sample (ss
 * in the origin's and the client's namespace, GET /connections on the
 * proxy's admin port from a socket made inside the lb namespace), one CSV
 * row, one progress line, then a wait for the fetch to end.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "base/units.h"
#include "proxy/config.h"
#include "model/model.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/lab_lb.h"

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

double
lab_elapsed(const struct lab *lab)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - lab->t0.tv_sec) +
	    (double)(now.tv_nsec - lab->t0.tv_nsec) / 1e9;
}

void
lab_path_in(const struct lab *lab, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", lab->out, name);
}

/* ---- commands ---------------------------------------------------------- */

static void
print_arg(FILE *f, const char *s)
{
	if (*s != '\0' &&
	    strspn(s,
	        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
	        "UVWXYZ0123456789_./:=,+@%-") == strlen(s)) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (; *s != '\0'; s++)
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	fputc('\'', f);
}

/* Prints "+ CMD ARGS [> OUT] [2> ERR]" so an operator can replay it. */
static void
print_cmd(char *const argv[], const char *out, const char *err)
{
	fputs("+", stderr);
	for (size_t i = 0; argv[i] != NULL; i++) {
		fputc(' ', stderr);
		print_arg(stderr, argv[i]);
	}
	if (out != NULL)
		fprintf(stderr, " > %s", out);
	if (err != NULL)
		fprintf(stderr, " 2> %s", err);
	fputc('\n', stderr);
}

/* In the child: its own process group, killed with the lab, default
 * signals, SLUICE_LAB=PID in its environment (so every process of a run
 * can be found), stdin from /dev/null, stdout and stderr to the fds. */
static void
child_setup(pid_t parent, int out_fd, int err_fd)
{
	char mark[24];
	sigset_t none;
	int null_fd;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	snprintf(mark, sizeof(mark), "%d", (int)parent);
	setenv("SLUICE_LAB", mark, 1); /* finds the run's processes */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL); /* an ignored signal stays ignored */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if ((null_fd = open("/dev/null", O_RDONLY)) >= 0)
		dup2(null_fd, STDIN_FILENO);
	if (out_fd >= 0)
		dup2(out_fd, STDOUT_FILENO);
	if (err_fd >= 0)
		dup2(err_fd, STDERR_FILENO);
}

/* The exit status of a reaped child: 0..255, or 128 + signal. */
static int
exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

static int
reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -errno;
	return exit_code(status);
}

static size_t
read_all(int fd, char *out, size_t len)
{
	size_t used = 0;
	char discard[4096];
	ssize_t n;

	for (;;) {
		if (used + 1 < len)
			n = read(fd, out + used, len - 1 - used);
		else
			n = read(fd, discard, sizeof(discard));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (used + 1 < len)
			used += (size_t)n;
	}
	if (len > 0)
		out[used] = '\0';
	return used;
}

/*
 * Runs argv to its end, stdout and stderr into out (NUL-terminated, cut at
 * len), printed first at -v when show.  Its exit code (128 + signal when
 * killed), 127 when it could not be run, or a negative errno.
 */
int
lab_run_argv(
    const struct lab *lab, char *const argv[], char *out, size_t len, bool show)
{
	pid_t parent = getpid(), pid;
	int pfd[2];

	if (show && lab->verbose)
		print_cmd(argv, NULL, NULL);
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return -errno;
	if ((pid = fork()) == -1) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (pid == 0) {
		child_setup(parent, pfd[1], pfd[1]);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	read_all(pfd[0], out, len);
	close(pfd[0]);
	return reap(pid);
}

static int
collect_args(char **argv, const char *arg0, va_list ap)
{
	size_t n = 0;

	argv[n++] = (char *)arg0;
	while ((argv[n] = va_arg(ap, char *)) != NULL)
		if (++n == MAX_ARGS - 1)
			return -E2BIG;
	return 0;
}

/* Runs a command; its output in out.  The exit code as run_argv. */
int
lab_try_run(struct lab *lab, char *out, size_t len, const char *arg0, ...)
{
	char *argv[MAX_ARGS];
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = collect_args(argv, arg0, ap);
	va_end(ap);
	return rc < 0 ? rc : lab_run_argv(lab, argv, out, len, true);
}

/* Runs a command that must succeed; on failure says which and why. */
int
lab_must_run(struct lab *lab, const char *arg0, ...)
{
	char *argv[MAX_ARGS], out[2048];
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = collect_args(argv, arg0, ap);
	va_end(ap);
	if (rc == 0 &&
	    (rc = lab_run_argv(lab, argv, out, sizeof(out), true)) == 0)
		return lab_signal != 0 ? -EINTR : 0;
	fprintf(stderr, "sluice lab: this command failed (%s %d):\n  ",
	    rc < 0 ? "error" : "exit code", rc < 0 ? -rc : rc);
	for (size_t i = 0; argv[i] != NULL; i++) {
		print_arg(stderr, argv[i]);
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

	if (lab_try_run(lab, out, sizeof(out), "ip", "netns", "list", NULL) !=
	    0)
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
		if (lab_try_run(lab, out, sizeof(out), "ip", "netns", "add",
		        lab->ns[h], NULL) != 0) {
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
 * it); this machine's kind has none: say so once, do not fail. */
static bool
add_netem(struct lab *lab, const char *ns, const char *dev)
{
	char delay[32], out[512];

	if (lab->sc.delay_ms == 0 || lab->netem == 0)
		return false;
	snprintf(delay, sizeof(delay), "%" PRIu64 "ms", lab->sc.delay_ms);
	if (lab_try_run(lab, out, sizeof(out), "tc", "-n", ns, "qdisc", "add",
	        "dev", dev, "root", "handle", "1:", "netem", "delay", delay,
	        NULL) == 0) {
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
 * the first window is most of the receive buffer (about 64 KB); the seed
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

static int
net_setup(struct lab *lab)
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
		print_cmd(argv, out_path, err_path);
	if ((pid = fork()) == 0) {
		child_setup(parent, out_fd, err_fd);
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

char *
lab_read_file(const char *path, size_t max)
{
	char *buf = malloc(max);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (buf == NULL || fd < 0) {
		if (buf != NULL)
			buf[0] = '\0';
		if (fd >= 0)
			close(fd);
		return buf;
	}
	read_all(fd, buf, max);
	close(fd);
	return buf;
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
	lab->status[h] = exit_code(status);
	lab->pid[h] = 0;
	return true;
}

void
lab_print_tail(const struct lab *lab, const char *name)
{
	char path[PATH_MAX], *text;
	size_t len;

	lab_path_in(lab, name, path, sizeof(path));
	if ((text = lab_read_file(path, FILE_MAX)) == NULL)
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
		if ((text = lab_read_file(path, FILE_MAX)) == NULL)
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
	    every[32];
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
	return lab->proxy_port > 0 ? 0 : -1;
}

static int ns_socket(const struct lab *lab, int h);

/* True once something accepts on LB_IP:PROXY_PORT inside the lb
 * namespace. */
static bool
lb_listening(const struct lab *lab)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd = ns_socket(lab, LAB_LB);
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
	if (n < 0 || !lab_in_path(args[0])) {
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

/* The client's rate: --rate, or in loopback mode the lb-client link's. */
uint64_t
lab_fetch_rate(const struct lab *lab)
{
	if (lab->sc.client_rate_bps != 0 || lab->mode == LAB_MODE_NETNS)
		return lab->sc.client_rate_bps;
	return lab->sc.lb_client_bps;
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

/* SIGTERM to a process group, SIGKILL after ms to whatever is left of it
 * (also what its leader left behind); reaps the leader.  *pid becomes 0;
 * the leader's exit code (128 + signal when killed), or -1 without one. */
static int
stop_group(pid_t *pid, int ms)
{
	pid_t p = *pid;
	int status, code = -1;

	if (p <= 0)
		return -1;
	*pid = 0;
	kill(-p, SIGTERM);
	for (int waited = 0; waited < ms; waited += 20) {
		if (waitpid(p, &status, WNOHANG) == p) {
			code = exit_code(status);
			break;
		}
		usleep(20000);
	}
	kill(-p, SIGKILL);
	return code >= 0 ? code : reap(p);
}

/* ---- captures ---------------------------------------------------------- */

const struct lab_link lab_links[LAB_NLINKS] = {
    {"origin-lb", LAB_ORIGIN, "to-lb", "origin-lb.pcap",
        "origin-lb.tcpdump.log"},
    {"lb-client", LAB_CLIENT, "to-lb", "lb-client.pcap",
        "lb-client.tcpdump.log"},
};

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
	if (!lab_in_path("tcpdump")) {
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
			text = lab_read_file(log, FILE_MAX);
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
		stop_group(&lab->cap_pid[i], STOP_MS);
}

/* Stops host h's peer (stop_group) and keeps its exit code. */
static void
stop_peer(struct lab *lab, int h, int ms)
{
	if (lab->pid[h] != 0)
		lab->status[h] = stop_group(&lab->pid[h], ms);
}

static void
teardown(struct lab *lab)
{
	for (uint64_t i = 0; i < lab->sc.dos_clients && i < MAX_DOS; i++)
		stop_group(&lab->dos_pid[i], STOP_MS);
	for (int h = LAB_NHOSTS - 1; h >= 0; h--)
		stop_peer(lab, h, STOP_MS);
	for (int i = 0; i < LAB_NLINKS; i++)
		stop_group(&lab->cap_pid[i], STOP_MS);
	for (int h = 0; h < LAB_NHOSTS; h++) {
		if (lab->nsfd[h] >= 0)
			close(lab->nsfd[h]);
		lab->nsfd[h] = -1;
		if (lab->ns_made[h])
			lab_must_run(
			    lab, "ip", "netns", "del", lab->ns[h], NULL);
		lab->ns_made[h] = false;
	}
	if (lab->csv != NULL)
		fclose(lab->csv);
	lab->csv = NULL;
}

/* ---- sampling ---------------------------------------------------------- */

/* A socket made inside host h's namespace (ours in loopback mode). */
static int
ns_socket(const struct lab *lab, int h)
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

/* GET /connections from the admin port into buf; the body or NULL. */
static const char *
admin_get(const struct lab *lab, char *buf, size_t len)
{
	static const char req[] = "GET /connections HTTP/1.1\r\nHost: lab\r\n"
	                          "Connection: close\r\n\r\n";
	struct timeval tv = {0, 300000};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *body;
	int fd;

	if ((fd = ns_socket(lab, LAB_LB)) < 0)
		return NULL;
	sa.sin_port = htons((uint16_t)lab->admin_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) !=
	        (ssize_t)(sizeof(req) - 1)) {
		close(fd);
		return NULL;
	}
	read_all(fd, buf, len);
	close(fd);
	body = strstr(buf, "\r\n\r\n");
	return body != NULL && strncmp(buf, "HTTP/1.1 200", 12) == 0 ? body + 4
	                                                             : NULL;
}

/* With [dos] clients /connections lists theirs too: narrows [*body, *end)
 * to the object of the honest client (its own source address). */
static void
honest_conn(const struct lab *lab, const char **body, const char **end)
{
	const char *p, *start, *next;

	if (lab->sc.dos_clients == 0 ||
	    (p = strstr(*body, "\"client\":\"" CLIENT_IP ":")) == NULL) {
		if (lab->sc.dos_clients != 0)
			*end = *body; /* not connected yet: nothing */
		return;
	}
	for (start = p; start > *body && strncmp(start, "{\"id\"", 5) != 0;
	     start--)
		;
	next = strstr(p, "{\"id\"");
	*body = start;
	if (next != NULL)
		*end = next;
}

static void
sample_proxy(const struct lab *lab, struct sample *s)
{
	char *buf = malloc(OUT_MAX);
	const char *body, *end, *os, *oe;

	s->p_paused = -1;
	s->p_mem = s->p_spool = 0;
	s->up_rcvq = s->up_space = s->cl_wnd = -1;
	if (buf == NULL)
		return;
	if ((body = admin_get(lab, buf, OUT_MAX)) == NULL ||
	    strchr(body, '{') == NULL) {
		free(buf);
		return;
	}
	end = body + strlen(body);
	honest_conn(lab, &body, &end);
	s->p_in = json_u64(body, end, "bytes_from_upstream");
	s->p_out = json_u64(body, end, "bytes_to_client");
	s->p_mem = json_u64(body, end, "memory_bytes");
	s->p_spool = json_u64(body, end, "spool_bytes");
	s->p_paused = (int)json_num(body, end, "upstream_paused");
	if (json_obj(body, "upstream_tcp", &os, &oe) && os < end) {
		s->up_rcvq = (int64_t)json_num(os, oe, "rcv_queue");
		s->up_space = (int64_t)json_num(os, oe, "rcv_space");
	}
	if (json_obj(body, "client_tcp", &os, &oe) && os < end)
		s->cl_wnd = (int64_t)json_num(os, oe, "snd_wnd");
	free(buf);
}

/* ss -tinH in host h's namespace, for sockets whose dir (sport/dport) is
 * port; how many were parsed into socks. */
static size_t
ss_sample(const struct lab *lab, int h, const char *dir, int port,
    struct lab_sock *socks)
{
	char *out = malloc(OUT_MAX), filter[16];
	char *argv[] = {"ss", "-N", (char *)lab->ns[h], "-tinH", (char *)dir,
	    "=", filter, NULL};
	size_t n = 0;

	if (out == NULL)
		return 0;
	snprintf(filter, sizeof(filter), ":%d", port);
	if (lab->mode != LAB_MODE_NETNS)
		memmove(argv + 1, argv + 3, 5 * sizeof(argv[0]));
	if (lab_run_argv(lab, argv, out, OUT_MAX, false) == 0)
		n = lab_ss_parse(out, socks, MAX_SOCKS);
	free(out);
	return n;
}

/* The origin's connections, each remembered after it is gone, so the
 * bytes of a connection the proxy replaced (resume) still count. */
static void
sample_origin(struct lab *lab, struct sample *s)
{
	struct lab_sock socks[MAX_SOCKS];
	size_t n = ss_sample(lab, LAB_ORIGIN, "sport", lab->origin_port, socks);
	size_t latest = MAX_SEEN, k;

	s->o_wnd = -1;
	s->o_backoff = -1;
	s->o_zero = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t written = socks[i].bytes_acked + socks[i].send_q;

		if (strcmp(socks[i].state, "TIME-WAIT") == 0)
			continue; /* no counters left: keep the last ones */
		for (k = 0; k < lab->nseen; k++)
			if (strcmp(lab->seen[k].peer, socks[i].peer) == 0)
				break;
		if (k == lab->nseen && lab->nseen < MAX_SEEN)
			snprintf(lab->seen[lab->nseen++].peer,
			    sizeof(lab->seen[0].peer), "%s", socks[i].peer);
		if (k == MAX_SEEN)
			continue;
		if (socks[i].bytes_acked > lab->seen[k].acked)
			lab->seen[k].acked = socks[i].bytes_acked;
		if (written > lab->seen[k].written)
			lab->seen[k].written = written;
		if (latest == MAX_SEEN || k > latest) {
			latest = k;
			s->o_wnd = socks[i].snd_wnd;
			s->o_backoff = (int)socks[i].backoff;
			s->o_zero =
			    socks[i].snd_wnd == 0 && socks[i].send_q > 0;
		}
	}
	s->o_acked = s->o_written = 0;
	for (k = 0; k < lab->nseen; k++) {
		s->o_acked += lab->seen[k].acked;
		s->o_written += lab->seen[k].written;
	}
}

static void
sample_client(const struct lab *lab, struct sample *s)
{
	struct lab_sock socks[MAX_SOCKS];
	size_t n = ss_sample(lab, LAB_CLIENT, "dport", lab->proxy_port, socks);
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		if (strncmp(socks[i].local, DOS_IP ":", strlen(DOS_IP) + 1) !=
		    0)
			sum += socks[i].bytes_received;
	if (sum > s->c_recv)
		s->c_recv = sum;
}

static const char *const csv_header =
    "t_s,origin_acked_bytes,origin_written_bytes,origin_snd_wnd_bytes,"
    "origin_backoff_count,origin_zero_window_flag,proxy_from_upstream_bytes,"
    "proxy_to_client_bytes,proxy_memory_bytes,proxy_spool_bytes,"
    "proxy_paused_flag,upstream_rcv_queue_bytes,upstream_rcv_space_bytes,"
    "client_snd_wnd_bytes,client_received_bytes,lb_rss_bytes";

static void
csv_opt(FILE *f, int64_t v)
{
	if (v >= 0)
		fprintf(f, ",%" PRId64, v);
	else
		fputc(',', f);
}

static void
csv_row(FILE *f, const struct sample *s)
{
	fprintf(f, "%.3f,%" PRIu64 ",%" PRIu64, s->t, s->o_acked, s->o_written);
	csv_opt(f, s->o_wnd);
	csv_opt(f, s->o_backoff);
	fprintf(f, ",%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
	    s->o_zero, s->p_in, s->p_out, s->p_mem, s->p_spool);
	csv_opt(f, s->p_paused);
	csv_opt(f, s->up_rcvq);
	csv_opt(f, s->up_space);
	csv_opt(f, s->cl_wnd);
	fprintf(f, ",%" PRIu64 ",%" PRIu64 "\n", s->c_recv, s->lb_rss);
	fflush(f);
}

static void
progress(struct lab *lab)
{
	const struct sample *s = &lab->s;
	char origin[64];

	if (!lab->tty)
		return;
	if (s->o_wnd < 0)
		snprintf(origin, sizeof(origin), "no origin connection");
	else
		snprintf(origin, sizeof(origin), "origin window %.0f KiB%s",
		    (double)s->o_wnd / 1024, s->o_zero ? " (ZERO)" : "");
	fprintf(stderr,
	    "\r%6.1fs  client %.2f/%.2f MiB  proxy holds %.2f MiB%s%s  %s"
	    "\033[K",
	    s->t, (double)s->c_recv / MIB, (double)lab->sc.body / MIB,
	    (double)(s->p_mem + s->p_spool) / MIB,
	    s->p_spool > 0 ? " (spool)" : "",
	    s->p_paused == 1 ? ", paused" : "", origin);
	lab->progress_shown = true;
}

/*
 * nginx or HAProxy: the same figures from ss in the lb namespace (TCP_INFO
 * of its sockets) and /proc.  Bytes held = read from the origin less what
 * went into the client socket; the part in (unlinked) temp files under
 * DIR/nginx-temp is the spool, the rest memory.
 */
static void
sample_ext_lb(struct lab *lab, struct sample *s)
{
	struct lab_sock socks[MAX_SOCKS];
	size_t n = ss_sample(lab, LAB_LB, "dport", lab->origin_port, socks);
	uint64_t in = 0, out = 0, queued = 0, handed;

	s->p_paused = -1;
	s->up_rcvq = s->up_space = s->cl_wnd = -1;
	for (size_t i = 0; i < n; i++) {
		in += socks[i].bytes_received;
		if (s->up_rcvq < 0)
			s->up_rcvq = (int64_t)socks[i].recv_q;
	}
	n = ss_sample(lab, LAB_LB, "sport", lab->proxy_port, socks);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(socks[i].peer, DOS_IP ":", strlen(DOS_IP) + 1) == 0)
			continue;
		out += socks[i].bytes_acked;
		queued += socks[i].send_q;
		if (s->cl_wnd < 0 && socks[i].snd_wnd >= 0)
			s->cl_wnd = socks[i].snd_wnd;
	}
	if (in > s->p_in) /* sockets vanish at the end: keep the totals */
		s->p_in = in;
	if (out > s->p_out)
		s->p_out = out;
	s->p_spool = lab->pid[LAB_LB] != 0 && lab->temp_abs[0] != '\0'
	    ? lab_group_files(lab->pid[LAB_LB], lab->temp_abs)
	    : 0;
	handed = out + queued + s->p_spool;
	s->p_mem = n > 0 && in > handed ? in - handed : 0;
}

/* Zero-window episodes and peaks, kept over the whole run. */
static void
keep_peaks(struct lab *lab, const struct sample *s)
{
	struct peaks *pk = &lab->peak;

	if (s->o_zero) {
		if (pk->o_zero_since < 0)
			pk->o_zero_since = s->t;
		if (s->t - pk->o_zero_since > pk->o_zero_longest)
			pk->o_zero_longest = s->t - pk->o_zero_since;
	} else {
		pk->o_zero_since = -1;
	}
	if (s->cl_wnd == 0) {
		if (pk->c_zero_since < 0)
			pk->c_zero_since = s->t;
		if (s->t - pk->c_zero_since > pk->c_zero_longest)
			pk->c_zero_longest = s->t - pk->c_zero_since;
	} else {
		pk->c_zero_since = -1;
	}
	if (s->p_mem > pk->mem)
		pk->mem = s->p_mem;
	if (s->p_spool > pk->spool)
		pk->spool = s->p_spool;
	if (s->lb_rss > pk->rss)
		pk->rss = s->lb_rss;
}

static void
take_sample(struct lab *lab)
{
	struct sample *s = &lab->s;
	uint64_t p_in = s->p_in, p_out = s->p_out;

	s->t = lab_elapsed(lab);
	sample_origin(lab, s);
	if (lab->sc.lb_kind == LAB_LB_SLUICE) {
		sample_proxy(lab, s);
		if (s->p_paused < 0) { /* the download is over: keep totals */
			s->p_in = p_in;
			s->p_out = p_out;
		}
	} else if (lab_has_lb(lab)) {
		sample_ext_lb(lab, s);
	} else {
		s->p_paused = -1;
		s->up_rcvq = s->up_space = s->cl_wnd = -1;
	}
	s->lb_rss = lab_has_lb(lab) && lab->pid[LAB_LB] != 0
	    ? lab_group_rss(lab->pid[LAB_LB])
	    : 0;
	sample_client(lab, s);
	keep_peaks(lab, s);
	if (s->o_wnd > 0 && (uint64_t)s->o_wnd > lab->max_wnd)
		lab->max_wnd = (uint64_t)s->o_wnd;
	if (s->up_rcvq > 0 && (uint64_t)s->up_rcvq > lab->max_wnd)
		lab->max_wnd = (uint64_t)s->up_rcvq;
	if (lab->csv != NULL)
		csv_row(lab->csv, s);
	progress(lab);
}

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

static int
open_csv(struct lab *lab)
{
	char path[PATH_MAX];

	lab_path_in(lab, "timeline.csv", path, sizeof(path));
	if ((lab->csv = fopen(path, "we")) == NULL) {
		fprintf(stderr, "sluice lab: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(lab->csv, "%s\n", csv_header);
	return 0;
}

/* The last row: the client's socket is gone by now, so its bytes are
 * the fetch's own count (body bytes) when that is more. */
static void
final_sample(struct lab *lab)
{
	char path[PATH_MAX], *text;
	uint64_t got;

	lab_path_in(lab, "fetch.json", path, sizeof(path));
	if ((text = lab_read_file(path, FILE_MAX)) != NULL) {
		got = json_u64(text, text + strlen(text), "received_bytes");
		if (got > lab->s.c_recv)
			lab->s.c_recv = got;
		free(text);
	}
	take_sample(lab);
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
		take_sample(lab);
		next += SAMPLE_MS / 1000.0;
		sleep_until(lab, next);
	}
	if (lab_signal == 0)
		final_sample(lab);
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
	if ((text = lab_read_file(path, FILE_MAX)) == NULL)
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
		stop_group(&lab->dos_pid[i], STOP_MS);
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
		text = lab_read_file(path, FILE_MAX);
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
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
		snprintf(lab->out, sizeof(lab->out), "lab-results/%s-%s",
		    lab->sc.name, stamp);
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
	else if (net_setup(lab) < 0)
		return -1;
	if (start_captures(lab) < 0 || start_origin(lab) < 0 ||
	    start_lb(lab) < 0 || open_csv(lab) < 0 || start_dos(lab) < 0 ||
	    start_fetch(lab) < 0)
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
