/*
 * test_notify: the sd_notify protocol without libsystemd (notify.h).
 *
 * systemd believes what arrives on NOTIFY_SOCKET byte for byte: a READY=1
 * that never arrives is a unit that times out at start, a stray NUL or a
 * padded abstract address is a message sent to no one.  So each case binds
 * a real AF_UNIX datagram socket (one in a temporary directory, one in the
 * abstract namespace, bound with its exact length as systemd binds its
 * own), points NOTIFY_SOCKET at it and compares the datagram received with
 * the bytes expected; then the unset and bad values.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/notify.h"

/* A bound receiving socket and the NOTIFY_SOCKET value naming it. */
struct sink {
	int fd;
	char env[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	char dir[64]; /* the temporary directory, or "" (abstract) */
};

static struct sink fs_sink, abstract_sink;

static int
bind_sink(struct sink *s, const struct sockaddr_un *sa, socklen_t len)
{
	if ((s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	return bind(s->fd, (const struct sockaddr *)sa, len);
}

static int
setup(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n;

	(void)state;
	snprintf(fs_sink.dir, sizeof(fs_sink.dir), "/tmp/sluice-notify-XXXXXX");
	if (mkdtemp(fs_sink.dir) == NULL)
		return -1;
	snprintf(
	    fs_sink.env, sizeof(fs_sink.env), "%s/notify.sock", fs_sink.dir);
	if ((n = strlen(fs_sink.env)) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, fs_sink.env, n + 1);
	if (bind_sink(&fs_sink, &sa, sizeof(sa)) == -1)
		return -1;

	/* Abstract: a NUL, then the name; the length covers exactly those. */
	snprintf(abstract_sink.env, sizeof(abstract_sink.env),
	    "@sluice-test-notify-%ld-%ld", (long)getpid(), (long)time(NULL));
	n = strlen(abstract_sink.env);
	memset(sa.sun_path, 0, sizeof(sa.sun_path));
	memcpy(sa.sun_path + 1, abstract_sink.env + 1, n - 1);
	if (bind_sink(&abstract_sink, &sa,
	        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) == -1)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	close(fs_sink.fd);
	close(abstract_sink.fd);
	unlink(fs_sink.env);
	rmdir(fs_sink.dir);
	unsetenv("NOTIFY_SOCKET");
	return 0;
}

/* The next datagram on s (without waiting: a local send has queued it by
 * the time sendto returns), NUL-terminated in buf; its full length, or -1
 * when none is queued.  MSG_TRUNC makes a longer datagram show its size. */
static ssize_t
receive(const struct sink *s, char *buf, size_t len)
{
	ssize_t n = recv(s->fd, buf, len - 1, MSG_DONTWAIT | MSG_TRUNC);

	if (n >= 0)
		buf[(size_t)n < len - 1 ? (size_t)n : len - 1] = '\0';
	return n;
}

static void
expect(const struct sink *s, const char *want)
{
	char buf[2048];
	ssize_t n = receive(s, buf, sizeof(buf));

	assert_int_equal(n, (ssize_t)strlen(want));
	assert_memory_equal(buf, want, strlen(want));
	/* One datagram per call. */
	assert_int_equal(receive(s, buf, sizeof(buf)), -1);
}

static void
send_filesystem(void **state)
{
	(void)state;
	assert_int_equal(setenv("NOTIFY_SOCKET", fs_sink.env, 1), 0);
	assert_int_equal(notify_send("READY=1"), 1);
	expect(&fs_sink, "READY=1");
	/* Left in place for the next message (a reload needs it). */
	assert_non_null(getenv("NOTIFY_SOCKET"));
	assert_string_equal(getenv("NOTIFY_SOCKET"), fs_sink.env);
}

static void
send_abstract(void **state)
{
	(void)state;
	assert_int_equal(setenv("NOTIFY_SOCKET", abstract_sink.env, 1), 0);
	assert_int_equal(notify_send("STATUS=x"), 1);
	expect(&abstract_sink, "STATUS=x");
	assert_string_equal(getenv("NOTIFY_SOCKET"), abstract_sink.env);
}

/* An abstract name is every byte its length covers: a socket bound with
 * the same name padded with NULs to the full sockaddr_un (what a sender
 * that passes sizeof(sa) would reach) is another socket, and gets nothing. */
static void
abstract_exact_length(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct sink padded;
	char buf[64];

	(void)state;
	memcpy(sa.sun_path + 1, abstract_sink.env + 1,
	    strlen(abstract_sink.env) - 1);
	assert_int_equal(bind_sink(&padded, &sa, sizeof(sa)), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", abstract_sink.env, 1), 0);
	assert_int_equal(notify_send("READY=1"), 1);
	expect(&abstract_sink, "READY=1");
	assert_int_equal(receive(&padded, buf, sizeof(buf)), -1);
	close(padded.fd);
}

static void
helpers(void **state)
{
	(void)state;
	assert_int_equal(setenv("NOTIFY_SOCKET", fs_sink.env, 1), 0);
	assert_int_equal(notify_ready(), 1);
	expect(&fs_sink, "READY=1\nSTATUS=accepting connections");
	assert_int_equal(notify_stopping(), 1);
	expect(&fs_sink, "STOPPING=1\nSTATUS=draining connections");
	assert_int_equal(notify_status("%d connections, %s", 3, "draining"), 1);
	expect(&fs_sink, "STATUS=3 connections, draining");
}

/* A newline in a status would start another assignment (READY=1...). */
static void
status_newline(void **state)
{
	(void)state;
	assert_int_equal(setenv("NOTIFY_SOCKET", fs_sink.env, 1), 0);
	assert_int_equal(notify_status("bad\nREADY=1\n"), 1);
	expect(&fs_sink, "STATUS=bad READY=1 ");
}

static void
status_truncated(void **state)
{
	char big[4096], buf[2048];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(setenv("NOTIFY_SOCKET", fs_sink.env, 1), 0);
	assert_int_equal(notify_status("%s", big), 1);
	assert_int_equal(receive(&fs_sink, buf, sizeof(buf)), 1023);
	assert_memory_equal(buf, "STATUS=aaa", 10);
}

static unsigned long long
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL;
}

static void
reloading(void **state)
{
	unsigned long long before, after, usec;
	char buf[256], *end;
	ssize_t n;

	(void)state;
	assert_int_equal(setenv("NOTIFY_SOCKET", fs_sink.env, 1), 0);
	before = now_usec();
	assert_int_equal(notify_reloading(), 1);
	after = now_usec();
	n = receive(&fs_sink, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_int_equal(strlen(buf), (size_t)n); /* no NUL inside */
	assert_memory_equal(buf, "RELOADING=1\nMONOTONIC_USEC=", 27);
	errno = 0;
	usec = strtoull(buf + 27, &end, 10);
	assert_int_equal(errno, 0);
	assert_true(end != buf + 27 && *end == '\0');
	assert_true(usec >= before && usec <= after);
}

static void
unset(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
	assert_int_equal(notify_send("READY=1"), 0);
	assert_int_equal(notify_ready(), 0);
	assert_int_equal(notify_reloading(), 0);
	assert_int_equal(notify_stopping(), 0);
	assert_int_equal(notify_status("x"), 0);
	assert_int_equal(receive(&fs_sink, buf, sizeof(buf)), -1);
	assert_int_equal(receive(&abstract_sink, buf, sizeof(buf)), -1);
}

static void
bad_paths(void **state)
{
	static const char *const bad[] = {
	    "", "/", "@", "notify.sock", "./notify.sock", "vsock:2:1234"};
	char path[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(setenv("NOTIFY_SOCKET", bad[i], 1), 0);
		if (notify_send("READY=1") != -EINVAL)
			fail_msg("NOTIFY_SOCKET=\"%s\" not refused", bad[i]);
	}
	/* sun_path is 108 bytes and a NUL must fit: 107 characters are an
	 * address (here, of nothing), 108 are not. */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(notify_send("READY=1"), -ENOENT);
	path[0] = '@';
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(notify_send("READY=1"), -ECONNREFUSED);
	path[107] = 'a';
	path[108] = '\0';
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(notify_send("READY=1"), -EINVAL);
	path[0] = '/';
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(notify_send("READY=1"), -EINVAL);
}

/* A path that names no socket: the error comes back, nothing crashes. */
static void
nobody_listening(void **state)
{
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/none.sock", fs_sink.dir);
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(notify_ready(), -ENOENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(send_filesystem),
	    cmocka_unit_test(send_abstract),
	    cmocka_unit_test(abstract_exact_length),
	    cmocka_unit_test(helpers),
	    cmocka_unit_test(status_newline),
	    cmocka_unit_test(status_truncated),
	    cmocka_unit_test(reloading),
	    cmocka_unit_test(unset),
	    cmocka_unit_test(bad_paths),
	    cmocka_unit_test(nobody_listening),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
