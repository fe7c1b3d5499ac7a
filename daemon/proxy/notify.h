/*
 * notify: the service manager's readiness protocol (sd_notify(3)) without
 * libsystemd.  A message is one datagram of newline-separated VAR=value
 * lines sent to the AF_UNIX socket named by $NOTIFY_SOCKET, which systemd
 * sets for a Type=notify unit (systemd/sluice.service.in).  When it is
 * unset (a shell, the tests, the lab) every call here is a no-op.
 *
 * When the proxy calls each (the unit's start, reload and stop depend on it):
 *
 *   notify_ready()      once every listener is bound (the [listen] address
 *                       and [admin] address), just before uv_run: systemd
 *                       holds back units ordered After=sluice.service and
 *                       `systemctl start` until then.
 *   notify_reloading()  first thing when SIGHUP handling starts, before the
 *                       new config is read; then notify_ready() when the
 *                       reload is done, whether the new config was taken or
 *                       refused (a refused one is the proxy still running on
 *                       the old: say so with notify_status() after it).
 *   notify_stopping()   when SIGTERM/SIGINT starts the drain (the listener
 *                       closes); not again on a second signal.
 *   notify_status()     any time, for `systemctl status`: a refused reload's
 *                       FILE:LINE message, the drain's progress.
 *
 * NOTIFY_SOCKET is left in the environment: a reload needs it again.  (The
 * proxy runs no children, so it leaks to nobody.)
 *
 * Each returns 1 when the datagram was sent, 0 when NOTIFY_SOCKET is unset
 * (nothing sent), or a negative errno: -EINVAL for a NOTIFY_SOCKET that is
 * neither "/path" nor "@abstract" or does not fit in sun_path, else the
 * errno of socket(2) or sendto(2) (-ENOENT, -ECONNREFUSED...).  They do not
 * log (STYLE 5): the proxy logs a failure once, as a warning, and goes on;
 * a missed READY=1 shows as the unit's start timeout, not as a dead proxy.
 * The send blocks like sd_notify's: systemd drains its socket at once.
 */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

/* Sends state as it is (no trailing newline is added or needed). */
int notify_send(const char *state);

/* "READY=1\nSTATUS=accepting connections". */
int notify_ready(void);
/* "RELOADING=1\nMONOTONIC_USEC=N", N the CLOCK_MONOTONIC time in µs:
 * systemd >= 253 wants it with RELOADING=1 (to match the reload it started
 * with the one announced); older versions ignore it. */
int notify_reloading(void);
/* "STOPPING=1\nSTATUS=draining connections". */
int notify_stopping(void);
/* "STATUS=" and the formatted text, truncated to 1 KiB; a newline in the
 * text becomes a space, so a message cannot inject another variable. */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
