/*
 * lab internals: the run's state, shared by lab.c (the run: its command
 * line, the peers, the loop), lab_net.c (namespaces, links, shaping),
 * lab_sample.c (the timeline) and lab_report.c (figures, summary.json, the
 * plot, the verdict); bench.c and bench_report.c use its constants.
 */
#ifndef SLUICE_LAB_INT_H
#define SLUICE_LAB_INT_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "model/model.h"
#include "model/scale.h"
#include "lab/lab.h"
#include "lab/pcap.h"
#include "lab/proc.h"

#define SAMPLE_MS   100
#define MAX_ARGS    PROC_MAX_ARGS
#define OUT_MAX     (64 * 1024)
#define FILE_MAX    (256 * 1024)
#define MAX_SOCKS   96
#define MAX_SEEN    16
#define MAX_NOTES   8
#define START_MS    5000 /* a peer must listen within this */
#define STOP_MS     3000 /* SIGTERM, then SIGKILL after this */
#define ACCESS_MS   3000 /* wait for the proxy's access line */
#define FRAME_BYTES 1514 /* a full segment on veth: Ethernet + IP + TCP */
#define MIB         1048576.0

/* Addresses that exist only inside the run's namespaces. */
#define ORIGIN_IP   "10.201.0.1"
#define LB_UP_IP    "10.201.0.2"
#define LB_IP       "10.202.0.1"
#define CLIENT_IP   "10.202.0.2"
#define DOS_IP      "10.202.0.3" /* the [dos] clients' own source address */
#define MAX_DOS     64
#define LAB_NLINKS  2 /* origin-lb, lb-client: lab_links */
#define ORIGIN_PORT 8000
#define PROXY_PORT  8080
#define ADMIN_PORT  9090

struct sample {
	double t;
	uint64_t o_acked, o_written;
	int64_t o_wnd; /* -1: no origin socket */
	int o_backoff; /* -1 likewise */
	int o_zero;
	uint64_t p_in, p_out, p_mem, p_spool;
	int p_paused;                      /* -1: no download in the proxy */
	int64_t up_rcvq, up_space, cl_wnd; /* -1: no such socket */
	uint64_t c_recv;
	uint64_t lb_rss; /* VmRSS of the balancer's processes, 0: none */
};

/* Figures the sampling keeps over the whole run. */
struct peaks {
	double o_zero_since, o_zero_longest; /* origin's zero window, s */
	double c_zero_since, c_zero_longest; /* toward the client */
	unsigned o_zero_count; /* the origin's zero windows the samples saw */
	uint64_t mem, spool, rss; /* bytes */
};

/* One origin connection seen by ss, kept after it is gone. */
struct seen {
	char peer[64];
	uint64_t acked, written;
};

struct result {
	char *fetch, *origin, *access; /* the files as read */
	bool complete;
	char fetch_outcome[24];
	int verified; /* -1: null */
	uint64_t client_bytes, unsent;
	double seconds;
	char gave_up[32]; /* "" for null */
	double zero_window_s;
	unsigned probes;
	char proxy_outcome[32];
	long resumes;
	double paused_s;
	uint64_t peak_memory, spilled;
	bool have_model;
	struct model_out mo;
	char kernel[128];
	char plot[PATH_MAX + 32]; /* the path, or why there is none */
	bool plotted;
	/* [dos] */
	unsigned dos_freed, dos_zwp; /* clients cut; access lines saying so */
	double dos_min_s, dos_max_s; /* when they were cut */
	/* the captures: [0] origin-lb, [1] lb-client */
	bool cap_ok[LAB_NLINKS];
	struct pcap_conn cap[LAB_NLINKS];
	size_t cap_packets[LAB_NLINKS];
	char cap_err[LAB_NLINKS][200];
	/* nginx */
	char lb_error[240];    /* the error log's word on the upstream, or "" */
	struct lab_walk *walk; /* [lab] walk = on (lab_walk.h), or NULL */
	/* [lab] scale (lab_scale.h): the question and the mapped run */
	bool have_scale;
	struct scale_map scale;
};

struct lab {
	struct lab_scenario sc;
	int mode; /* enum lab_mode, after --loopback */
	bool json, verbose, tty;
	char exe[PATH_MAX];
	char out[PATH_MAX - 32];
	char ns[LAB_NHOSTS][64];
	bool ns_made[LAB_NHOSTS];
	int nsfd[LAB_NHOSTS];       /* /run/netns/NAME, -1 */
	int selfns;                 /* our own, to come back to */
	pid_t pid[LAB_NHOSTS];      /* origin, proxy, fetch; 0: none */
	int status[LAB_NHOSTS];     /* wait status once reaped */
	const char *ip[LAB_NHOSTS]; /* origin, proxy (client side), - */
	int origin_port, proxy_port, admin_port;
	struct config *cfg; /* the proxy config, loaded back for the model */
	FILE *csv;
	struct timespec t0;
	struct sample s;
	struct seen seen[MAX_SEEN];
	size_t nseen;
	uint64_t max_wnd;
	int netem; /* 1 applied, 0 not in this kernel, -1 not asked */
	bool time_limit_hit, progress_shown;
	char notes[MAX_NOTES][200];
	size_t nnotes;
	struct peaks peak;
	pid_t cap_pid[LAB_NLINKS]; /* tcpdump on origin-lb and lb-client */
	pid_t dos_pid[MAX_DOS];    /* the [dos] clients */
	char lb_notes[1024];       /* [proxy] keys nginx/haproxy cannot take */
	char out_abs[PATH_MAX - 64]; /* the results directory, absolute */
	char temp_abs[PATH_MAX];     /* nginx's temp files under it, or "" */
};

/* Set by SIGINT/SIGTERM/SIGHUP; the loop and the setup steps look at it. */
extern volatile sig_atomic_t lab_signal;

/* lab.c */
/* A note for the verdict and summary.json, said on stderr at once (the
 * first MAX_NOTES are kept). */
void lab_note(struct lab *lab, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The last 2000 bytes of a file of the results directory, on stderr. */
void lab_print_tail(const struct lab *lab, const char *name);

/* lab_net.c */
/* The two links, each captured at one end: [0] origin-lb in the
 * origin's namespace, [1] lb-client in the client's, where the
 * article's exercises ran tcpdump. */
struct lab_link {
	const char *name; /* summary.json's key */
	int host;         /* the namespace tcpdump runs in */
	const char *dev, *file, *log;
};
extern const struct lab_link lab_links[LAB_NLINKS];
/* Runs a command that must succeed (printed at -v): 0; -EINTR when a
 * signal came meanwhile; -1 when it failed, after saying which and why. */
int lab_must_run(struct lab *lab, const char *arg0, ...);
/* The namespaces, their veth pairs, tc, sysctls and routes (removing
 * what a lab killed by SIGKILL left first): 0, or -1 said on stderr. */
int lab_net_setup(struct lab *lab);
/* A socket made inside host h's namespace (ours in loopback mode), or
 * -1. */
int lab_net_socket(const struct lab *lab, int h);
/* Deletes the namespaces, once no process of the run is left in them. */
void lab_net_teardown(struct lab *lab);
/* The client's rate: --rate, or in loopback mode the lb-client link's. */
uint64_t lab_fetch_rate(const struct lab *lab);

/* lab_sample.c */
/* Seconds since lab->t0 (the fetch's start). */
double lab_elapsed(const struct lab *lab);
/* Creates timeline.csv with its header: 0, or -1 said on stderr. */
int lab_sample_open_csv(struct lab *lab);
/* One sample: the peaks kept, a CSV row, the progress line. */
void lab_sample_take(struct lab *lab);
/* The last sample, the client's bytes from fetch.json when more. */
void lab_sample_final(struct lab *lab);

/* True when a balancer runs in the lb namespace ([lb] kind = none only
 * routes between the client and the origin). */
static inline bool
lab_has_lb(const struct lab *lab)
{
	return lab->sc.lb_kind != LAB_LB_NONE;
}

/* The path of the results directory's file name, into buf. */
static inline void
lab_path_in(const struct lab *lab, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", lab->out, name);
}

/* lab_report.c: figures, summary.json, plot and verdict; an exit code. */
int lab_report(struct lab *lab);

#endif
