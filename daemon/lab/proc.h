/*
 * proc: the child processes of `sluice lab` and `sluice bench`.  Commands
 * run by fork/exec without a shell, printed first when asked so that an
 * operator can replay them, their output read back; process groups
 * stopped with SIGTERM, then SIGKILL; exit codes as a shell reports them
 * (0..255, 128 + signal).  Nothing here knows a lab: verbosity is a flag.
 */
#ifndef SLUICE_PROC_H
#define SLUICE_PROC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define PROC_MAX_ARGS 48 /* a command's words, its NULL included */

/* Writes s to f as a shell reads it back: bare when it is plain, else in
 * single quotes. */
void proc_print_arg(FILE *f, const char *s);
/* Prints "+ CMD ARGS [> OUT] [2> ERR]" on stderr (out, err: NULL for
 * none). */
void proc_print_cmd(char *const argv[], const char *out, const char *err);

/*
 * In a child the lab forks, before exec: its own process group, SIGKILL
 * when the parent dies (it exits 127 when the parent is already gone),
 * SLUICE_LAB=PARENT in its environment, default signals and mask, stdin
 * from /dev/null, stdout and stderr onto out_fd and err_fd (-1: kept).
 */
void proc_child_setup(pid_t parent, int out_fd, int err_fd);

/* The exit code of a wait status: 0..255, 128 + signal, or -1. */
int proc_exit_code(int status);
/* Waits for pid (through EINTR): its exit code, or a negative errno. */
int proc_reap(pid_t pid);

/* Reads fd to its end into out, NUL-terminated and cut at len (the rest
 * is read and dropped); the bytes kept. */
size_t proc_read_all(int fd, char *out, size_t len);
/* A file's first max - 1 bytes, NUL-terminated, in a malloc'd buffer the
 * caller frees: "" when it cannot be opened, NULL without memory. */
char *proc_read_file(const char *path, size_t max);

/*
 * Runs argv (PATH searched, set up by proc_child_setup) to its end,
 * stdout and stderr into out (NUL-terminated, cut at len), printed first
 * when show.  Its exit code (128 + signal when killed), 127 when it could
 * not be run, or a negative errno.
 */
int proc_run(char *const argv[], char *out, size_t len, bool show);
/* arg0 and ap's arguments up to a NULL into argv (PROC_MAX_ARGS slots),
 * NULL-terminated; 0, or -E2BIG with the words that fitted (still
 * NULL-terminated). */
int proc_collect_args(char **argv, const char *arg0, va_list ap);
/* proc_run of the command arg0, ..., NULL; the same return. */
int proc_try_run(bool show, char *out, size_t len, const char *arg0, ...);

/*
 * SIGTERM to the process group *pid, SIGKILL after ms to whatever is left
 * of it (also what its leader left behind); reaps the leader.  *pid
 * becomes 0.  The leader's exit code (128 + signal when killed), or -1
 * without one (*pid was 0).
 */
int proc_stop_group(pid_t *pid, int ms);

/* Whether prog is an executable in a directory of $PATH. */
bool proc_in_path(const char *prog);

/* How proc_start sets a child up (the bench's lab runs and plots). */
struct proc_child {
	const char *exe; /* execv(exe, argv); NULL: execvp(argv[0], argv) */
	const char *dir; /* chdir here first (exit 127 if it fails); NULL */
	const char *in;  /* stdin from this file; NULL: ours */
	const char *out; /* stdout to this file (created, truncated); NULL */
	const char *err; /* stderr likewise; the pointer out: out's file */
	bool sigint_dfl; /* SIGINT back to its default action */
	int pdeathsig;   /* sent to it when its parent dies; 0: none */
};

/*
 * Forks a child set up as c says (a file that cannot be opened leaves
 * that stream ours; files are opened before the chdir, so a relative
 * path is the caller's) and execs argv;
 * a child that cannot exec exits 127.  Its pid, or a negative errno.
 * Reap it with proc_reap().
 */
pid_t proc_start(const struct proc_child *c, char *const argv[]);

#endif
