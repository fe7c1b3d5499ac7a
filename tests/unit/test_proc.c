/*
 * test_proc: the lab's and the bench's child processes (lab/proc.h): the
 * exit codes a shell would report, a child's files and directory, the
 * argument list's bound, the output read back.
 *
 * Each test forks real children (sh, true, false) in a temporary
 * directory of its own and removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lab/proc.h"

struct tmp {
	char dir[64];
	char old[PATH_MAX];
};

static int
setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));

	if (t == NULL || getcwd(t->old, sizeof(t->old)) == NULL)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/sluice-test-proc-XXXXXX");
	if (mkdtemp(t->dir) == NULL || chdir(t->dir) == -1)
		return -1;
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	struct tmp *t = *state;
	char cmd[128];
	int rc;

	rc = chdir(t->old);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	if (system(cmd) != 0)
		rc = -1;
	free(t);
	return rc;
}

/* Runs sh -c script through proc_start; the exit code proc_reap gives. */
static int
sh_c(const struct proc_child *c, const char *script)
{
	char *argv[] = {"sh", "-c", (char *)script, NULL};
	pid_t pid = proc_start(c, argv);

	assert_true(pid > 0);
	return proc_reap(pid);
}

static void
exit_codes(void **state)
{
	struct proc_child c = {0};

	(void)state;
	assert_int_equal(sh_c(&c, "exit 0"), 0);
	assert_int_equal(sh_c(&c, "exit 3"), 3);
	assert_int_equal(sh_c(&c, "exit 255"), 255);
	/* killed by a signal: 128 + signal, as a shell says */
	assert_int_equal(sh_c(&c, "kill -TERM $$"), 128 + 15);
	assert_int_equal(sh_c(&c, "kill -KILL $$"), 128 + 9);
}

static void
cannot_exec_is_127(void **state)
{
	char *argv[] = {"sluice-test-no-such-program", NULL};
	struct proc_child c = {0};
	pid_t pid;

	(void)state;
	pid = proc_start(&c, argv);
	assert_true(pid > 0);
	assert_int_equal(proc_reap(pid), 127);
	/* a directory that does not exist: also 127, nothing run */
	c.dir = "/nonexistent/sluice-test";
	assert_int_equal(sh_c(&c, "exit 0"), 127);
}

static char *
slurp(const char *path)
{
	char *s = proc_read_file(path, 4096);

	assert_non_null(s);
	return s;
}

/* A relative out/err path names a file in the caller's directory, even
 * when the child changes directory (the bench's plot logs). */
static void
files_are_the_callers(void **state)
{
	struct tmp *t = *state;
	char sub[PATH_MAX];
	struct proc_child c = {.dir = "sub", .out = "log", .err = "log"};
	char *s;

	snprintf(sub, sizeof(sub), "%s/sub", t->dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(sh_c(&c, "pwd; echo to-stderr >&2"), 0);
	s = slurp("log");
	/* out and err share one file, and the child ran in sub/ */
	assert_non_null(strstr(s, "/sub\n"));
	assert_non_null(strstr(s, "to-stderr\n"));
	free(s);
	assert_int_equal(access("sub/log", F_OK), -1);

	/* separate files, stdin from a file */
	c = (struct proc_child){.in = "log", .out = "o", .err = "e"};
	assert_int_equal(sh_c(&c, "head -c 3; echo out; echo err >&2"), 0);
	s = slurp("o");
	assert_string_equal(s, "/tmout\n");
	free(s);
	s = slurp("e");
	assert_string_equal(s, "err\n");
	free(s);
}

static void
run_reads_output(void **state)
{
	char out[16];
	char *argv[] = {"sh", "-c", "echo 0123456789abcdefghij; exit 4", NULL};

	(void)state;
	/* cut at len, NUL-terminated, the exit code kept */
	assert_int_equal(proc_run(argv, out, sizeof(out), false), 4);
	assert_string_equal(out, "0123456789abcde");
	assert_int_equal(
	    proc_try_run(false, out, sizeof(out), "sh", "-c", "echo hi", NULL),
	    0);
	assert_string_equal(out, "hi\n");
	assert_int_equal(proc_try_run(false, out, sizeof(out),
	                     "sluice-test-no-such-program", NULL),
	    127);
}

static int
collect(char **argv, const char *arg0, ...)
{
	va_list ap;
	int rc;

	va_start(ap, arg0);
	rc = proc_collect_args(argv, arg0, ap);
	va_end(ap);
	return rc;
}

/* Too many words: -E2BIG, and what fitted is still NULL-terminated, so an
 * error message can print it. */
static void
args_bounded(void **state)
{
	char *argv[PROC_MAX_ARGS];
	size_t n = 0;

	(void)state;
	assert_int_equal(collect(argv, "a", "b", "c", NULL), 0);
	assert_string_equal(argv[2], "c");
	assert_null(argv[3]);

	memset(argv, 0xa5, sizeof(argv));
	assert_int_equal(
	    collect(argv, "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x",
	        "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x",
	        "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x",
	        "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x",
	        NULL),
	    -E2BIG);
	while (n < PROC_MAX_ARGS && argv[n] != NULL)
		n++;
	assert_int_equal(n, PROC_MAX_ARGS - 1);
}

static void
read_file_missing_is_empty(void **state)
{
	char *s;

	(void)state;
	s = proc_read_file("does-not-exist", 64);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(exit_codes, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        cannot_exec_is_127, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        files_are_the_callers, setup, teardown),
	    cmocka_unit_test_setup_teardown(run_reads_output, setup, teardown),
	    cmocka_unit_test_setup_teardown(args_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        read_file_missing_is_empty, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
