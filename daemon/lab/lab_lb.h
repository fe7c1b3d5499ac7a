/*
 * lab_lb: Debian's nginx or HAProxy as the balancer of `sluice lab`
 * ([lb] kind = nginx | haproxy, docs/lab.md), so the incident can be
 * replayed against the balancer an operator runs.  This module writes the
 * balancer's config, its command line, answers what a directive was for the
 * verdict, and measures the balancer's processes through /proc; lab.c
 * spawns it, waits for its port and samples its sockets.
 *
 * A generated config is the product's defaults (nginx with its default
 * proxy_buffering really is nginx's defaults), then the scenario's [lb]
 * nginx.NAME / haproxy.NAME keys verbatim, then the [proxy] keys that have a
 * counterpart, translated; a verbatim directive wins over a translated one
 * of the same name.  Every [proxy] key without a counterpart, or overridden
 * by a verbatim one, is one line of notes for the lab to print.
 *
 * A user config ([lb] config = FILE) is copied as it is, but for three
 * placeholders, replaced wherever they occur:
 *
 *   @LISTEN@  the address to listen on, "10.202.0.1:8080"
 *   @ORIGIN@  the origin's address, "10.201.0.1:8000"
 *   @DIR@     the absolute results directory, for pid, logs, temp files
 *
 * nginx, generated, logs to DIR/nginx-error.log and one JSON object a line
 * to DIR/nginx-access.log (status, body_bytes_sent, request_time,
 * upstream_status, upstream_bytes_received, connection); its temp files go
 * under DIR/nginx-temp/.  HAProxy logs to its stdout (httplog format).
 */
#ifndef SLUICE_LAB_LB_H
#define SLUICE_LAB_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "lab/lab.h"

/*
 * Writes the config of sc->lb_kind (LAB_LB_NGINX or LAB_LB_HAPROXY) to out:
 * sc->lb_config with its placeholders replaced, or a generated one.  listen
 * and origin are host:port, dir the absolute results directory; for nginx
 * DIR/nginx-temp is created (nginx creates only the last component of a
 * temp path).  notes (may be NULL) gets one line per [proxy] key not
 * applied.  0, or -errno with err filled: -EINVAL for another kind or a
 * [proxy] value that does not parse, the error of reading the user's file
 * or of creating DIR/nginx-temp, -EIO when out failed.
 */
int lab_lb_config(FILE *out, const struct lab_scenario *sc, const char *listen,
    const char *origin, const char *dir, char *notes, size_t notes_len,
    char *err, size_t errlen);

/*
 * The command line that runs the balancer in the foreground with config
 * conf: `nginx -c CONF -p DIR/ [-g "daemon off;"]` (-g only when conf has no
 * daemon directive: nginx refuses a duplicate; an unreadable conf counts as
 * none and nginx reports it) or `haproxy -f CONF -db`.  argv[0] is the
 * program for execvp; argv[argc] is NULL, so max must exceed argc; strings
 * not passed in are kept in buf.  argc, or -EINVAL (another kind, no room).
 */
int lab_lb_argv(const struct lab_scenario *sc, const char *conf,
    const char *dir, const char **argv, size_t max, char *buf, size_t len);

/*
 * The value of directive name in the generated config of sc, for the
 * verdict: the scenario's verbatim key, else the translated [proxy] key,
 * else what the generated config writes or the product's documented
 * default (*is_default = true).  nginx: proxy_max_temp_file_size,
 * proxy_buffers, proxy_buffer_size, proxy_busy_buffers_size,
 * proxy_read_timeout, proxy_connect_timeout, send_timeout, proxy_buffering,
 * proxy_http_version, sndbuf (the listen parameter); HAProxy: tune.bufsize,
 * "timeout connect|client|server" and any key the config sets ("global.X"
 * or "X" for a global key).  0, or -ENOENT when unknown, when not set and
 * without a default, or when sc->lb_config is a user file (we cannot know);
 * -EINVAL for a bad [proxy] value; -ENOSPC when buf is too small.
 */
int lab_lb_setting(const struct lab_scenario *sc, const char *name, char *buf,
    size_t len, bool *is_default);

/* An nginx size ("2560k", "1024m", "1g", "1048576", k/m/g any case) in
 * bytes; 0 for "0" and for anything that does not parse. */
uint64_t lab_lb_size(const char *nginx_size);

/*
 * These read Linux's /proc (the lab runs as root, so every process is
 * readable; a process that exits during the scan is skipped).
 *
 * lab_group_rss: the sum of VmRSS, in bytes, of the processes whose
 * process group is pgid (the lab starts each peer in its own group: an
 * nginx master and its workers); 0 if none.
 *
 * lab_group_files: the sum of st_size of the regular files open in those
 * processes whose path is under the directory `under`, each (device,
 * inode) counted once.  Files unlinked while open count (nginx unlinks its
 * proxy temp files at once; /proc/PID/fd is the only way to see them).
 */
uint64_t lab_group_rss(pid_t pgid);
uint64_t lab_group_files(pid_t pgid, const char *under);

#endif
