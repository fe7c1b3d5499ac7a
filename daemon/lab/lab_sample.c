/*
 * lab_sample: the run's timeline (lab_int.h).  Every 100 ms one sample:
 * ss in the origin's and the client's namespace, GET /connections on the
 * proxy's admin port from a socket made inside the lb namespace (or, for
 * nginx and HAProxy, ss and /proc in the lb namespace), one CSV row of
 * timeline.csv, one progress line; the peaks and zero-window episodes are
 * kept for the report.  The loop that calls it is the run's (lab.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "lab/lab.h"
#include "lab/lab_int.h"
#include "lab/lab_lb.h"
#include "lab/proc.h"

double
lab_elapsed(const struct lab *lab)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - lab->t0.tv_sec) +
	    (double)(now.tv_nsec - lab->t0.tv_nsec) / 1e9;
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

	if ((fd = lab_net_socket(lab, LAB_LB)) < 0)
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
	proc_read_all(fd, buf, len);
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
	if (proc_run(argv, out, OUT_MAX, false) == 0)
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
		if (pk->o_zero_since < 0) {
			pk->o_zero_since = s->t;
			pk->o_zero_count++;
		}
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

void
lab_sample_take(struct lab *lab)
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

int
lab_sample_open_csv(struct lab *lab)
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
void
lab_sample_final(struct lab *lab)
{
	char path[PATH_MAX], *text;
	uint64_t got;

	lab_path_in(lab, "fetch.json", path, sizeof(path));
	if ((text = proc_read_file(path, FILE_MAX)) != NULL) {
		got = json_u64(text, text + strlen(text), "received_bytes");
		if (got > lab->s.c_recv)
			lab->s.c_recv = got;
		free(text);
	}
	lab_sample_take(lab);
}
