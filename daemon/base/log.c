/*
 * log: see log.h.  Single-threaded: the daemon runs one libuv loop.
 *
 * journald reads a stream line by line: every line is one entry, and a
 * line that starts with "<N>" gets priority N (systemd.exec(5), "Logging
 * and Standard Input/Output").  So an event is exactly one line: a newline
 * inside a message (an error text, a path) is written as a space, and the
 * line with its newline goes out in one write(2), so that lines of several
 * processes sharing the stream cannot interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>

#include "base/log.h"

/* Atomic: [proxy] workers log from several threads, and a reload sets
 * the level from one of them. */
static _Atomic int threshold = LOG_LVL_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};
/* syslog priorities: err, warning, info, debug */
static const int priorities[] = {3, 4, 6, 7};

void
log_set_level(enum log_level level)
{
	atomic_store_explicit(&threshold, (int)level, memory_order_relaxed);
}

int
log_enabled(enum log_level level)
{
	return (int)level <=
	    atomic_load_explicit(&threshold, memory_order_relaxed);
}

/*
 * Whether stderr is the journal stream systemd set up.  JOURNAL_STREAM
 * holds "DEVICE:INODE" of that stream; systemd.exec(5) says to compare it
 * with stderr's, since a child whose stderr was redirected (to a file, a
 * pipe) inherits the variable all the same.  Decided once: stderr does not
 * change under us.
 */
static int
journal_stream(void)
{
	static _Atomic int known, yes; /* every thread finds the same */
	unsigned long long dev, ino;
	const char *v;
	struct stat st;

	if (known)
		return yes;
	v = getenv("JOURNAL_STREAM");
	yes = v != NULL && sscanf(v, "%llu:%llu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
	known = 1; /* after yes: a thread that sees known sees yes */
	return yes;
}

/* The prefix: "<N>" for journald, else the UTC time and the level. */
static int
prefix(char *line, size_t size, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	int n;

	if (journal_stream())
		return snprintf(line, size, "<%d>", priorities[level]);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int)strftime(line, size, "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, size - (size_t)n,
	    ".%03ldZ %s: ", ts.tv_nsec / 1000000, names[level]);
	return n;
}

/* See log.h.  One write(2) for a line: up to PIPE_BUF bytes (more than a line
 * holds) it is atomic on a pipe or socket.  A failed write is dropped:
 * there is nowhere else to say so. */
void
log_write(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Formats one line (prefix, message, suffix) and writes it whole. */
static void
vlog(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n, end;

	n = (size_t)prefix(line, sizeof(line), level);
	vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	end = n + strlen(line + n);
	if (suffix != NULL) {
		snprintf(line + end, sizeof(line) - end - 1, "%s", suffix);
		end += strlen(line + end);
	}
	for (size_t i = n; i < end; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[end++] = '\n';
	log_write(STDERR_FILENO, line, end);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, NULL, fmt, ap);
	va_end(ap);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
log_ratelimited(
    struct log_limit *rl, enum log_level level, const char *fmt, ...)
{
	uint64_t now = now_ms();
	char suffix[80];
	va_list ap;

	if (!log_enabled(level))
		return;
	if (rl->start == 0 || now - rl->start >= LOG_LIMIT_WINDOW_MS) {
		rl->start = now;
		rl->n = 0;
	}
	if (rl->n >= LOG_LIMIT_BURST) {
		rl->suppressed++;
		return;
	}
	rl->n++;
	suffix[0] = '\0';
	if (rl->suppressed > 0)
		snprintf(suffix, sizeof(suffix),
		    " (%llu more like this not logged)",
		    (unsigned long long)rl->suppressed);
	rl->suppressed = 0;
	va_start(ap, fmt);
	vlog(level, suffix, fmt, ap);
	va_end(ap);
}
