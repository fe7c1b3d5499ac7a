/*
 * proc: see proc.h.  The lab's commands (proc_run, proc_try_run) and the
 * bench's lab runs and plots (proc_start, proc_reap) fork and exec here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab/proc.h"

void
proc_print_arg(FILE *f, const char *s)
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
void
proc_print_cmd(char *const argv[], const char *out, const char *err)
{
	fputs("+", stderr);
	for (size_t i = 0; argv[i] != NULL; i++) {
		fputc(' ', stderr);
		proc_print_arg(stderr, argv[i]);
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
void
proc_child_setup(pid_t parent, int out_fd, int err_fd)
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
int
proc_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

int
proc_reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -errno;
	return proc_exit_code(status);
}

size_t
proc_read_all(int fd, char *out, size_t len)
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
 * len), printed first when show.  Its exit code (128 + signal when
 * killed), 127 when it could not be run, or a negative errno.
 */
int
proc_run(char *const argv[], char *out, size_t len, bool show)
{
	pid_t parent = getpid(), pid;
	int pfd[2];

	if (show)
		proc_print_cmd(argv, NULL, NULL);
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return -errno;
	if ((pid = fork()) == -1) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (pid == 0) {
		proc_child_setup(parent, pfd[1], pfd[1]);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	proc_read_all(pfd[0], out, len);
	close(pfd[0]);
	return proc_reap(pid);
}

int
proc_collect_args(char **argv, const char *arg0, va_list ap)
{
	size_t n = 0;

	argv[n++] = (char *)arg0;
	while ((argv[n] = va_arg(ap, char *)) != NULL)
		if (++n == PROC_MAX_ARGS - 1) {
			argv[n] = NULL; /* what fitted, printable */
			return -E2BIG;
		}
	return 0;
}

/* Runs a command; its output in out.  The exit code as proc_run. */
int
proc_try_run(bool show, char *out, size_t len, const char *arg0, ...)
{
	char *argv[PROC_MAX_ARGS];
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = proc_collect_args(argv, arg0, ap);
	va_end(ap);
	return rc < 0 ? rc : proc_run(argv, out, len, show);
}

char *
proc_read_file(const char *path, size_t max)
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
	proc_read_all(fd, buf, max);
	close(fd);
	return buf;
}

/* SIGTERM to a process group, SIGKILL after ms to whatever is left of it
 * (also what its leader left behind); reaps the leader.  *pid becomes 0;
 * the leader's exit code (128 + signal when killed), or -1 without one. */
int
proc_stop_group(pid_t *pid, int ms)
{
	pid_t p = *pid;
	int status, code = -1;

	if (p <= 0)
		return -1;
	*pid = 0;
	kill(-p, SIGTERM);
	for (int waited = 0; waited < ms; waited += 20) {
		if (waitpid(p, &status, WNOHANG) == p) {
			code = proc_exit_code(status);
			break;
		}
		usleep(20000);
	}
	kill(-p, SIGKILL);
	return code >= 0 ? code : proc_reap(p);
}

bool
proc_in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path != NULL ? path : "/usr/bin:/bin";
	     *p != '\0';) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/* Opens path onto the descriptor to (kept open as to only): to, or -1. */
static int
open_onto(const char *path, int flags, int to)
{
	int fd = open(path, flags, 0644);

	if (fd < 0)
		return -1;
	if (fd != to) {
		dup2(fd, to);
		close(fd);
	}
	return to;
}

pid_t
proc_start(const struct proc_child *c, char *const argv[])
{
	const int wflags = O_WRONLY | O_CREAT | O_TRUNC;
	pid_t parent = getpid(), pid = fork();
	int out = -1;

	if (pid != 0)
		return pid == -1 ? -errno : pid;
	if (c->pdeathsig != 0) {
		prctl(PR_SET_PDEATHSIG, c->pdeathsig);
		if (getppid() != parent) /* it died before the prctl */
			kill(getpid(), c->pdeathsig);
	}
	/* Files first, then the chdir: their paths are the caller's. */
	if (c->in != NULL)
		open_onto(c->in, O_RDONLY, STDIN_FILENO);
	if (c->out != NULL)
		out = open_onto(c->out, wflags, STDOUT_FILENO);
	if (c->err != NULL && c->err == c->out) {
		if (out >= 0)
			dup2(out, STDERR_FILENO);
	} else if (c->err != NULL) {
		open_onto(c->err, wflags, STDERR_FILENO);
	}
	if (c->dir != NULL && chdir(c->dir) == -1)
		_exit(127);
	if (c->sigint_dfl)
		signal(SIGINT, SIG_DFL);
	if (c->exe != NULL)
		execv(c->exe, argv);
	else
		execvp(argv[0], argv);
	_exit(127);
}
