/*
 * log: one line per event on stderr, filtered by level.
 *
 * Low layers do not log (STYLE 5); the layer that decides something logs it
 * once.  When stderr is a journal stream (JOURNAL_STREAM set and naming
 * stderr's device and inode) each line gets the syslog priority prefix
 * "<N>" that journald understands; otherwise a timestamp and the level
 * name.  One event is one line, newlines in a message become spaces.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdint.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* Sets the threshold; lines above it are dropped. */
void log_set_level(enum log_level level);
/* True when a line at this level would be printed (to skip costly work). */
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A line that may repeat at the rate of a flood (an accept failing for
 * every client, a spool that cannot take bytes for any download): at most
 * LOG_LIMIT_BURST lines per LOG_LIMIT_WINDOW_MS for one limiter; the first
 * line after a quiet spell says how many were not logged.  One limiter per
 * cause, zeroed before use (its owner's struct, or a static).
 */
#define LOG_LIMIT_BURST     5
#define LOG_LIMIT_WINDOW_MS 10000

struct log_limit {
	uint64_t start; /* ms (CLOCK_MONOTONIC) the window began, 0: none */
	unsigned n;     /* lines logged in it */
	uint64_t suppressed; /* lines dropped since the last one logged */
};

/* Writes n bytes to fd in as few write(2) calls as the kernel allows (one
 * for a line to a file, or to a pipe with room: lines of a shared stream
 * never interleave); a failed write drops the rest. */
void log_write(int fd, const char *p, size_t n);

void log_ratelimited(struct log_limit *rl, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_enabled(LOG_LVL_DEBUG))                                \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                   \
	} while (0)

#endif
