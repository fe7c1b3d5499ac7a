/*
 * lab: `sluice lab SCENARIO.ini`, the zero-window incident reproduced
 * (docs/lab.md).  Three hosts from network namespaces, origin ─ lb ─
 * client, joined by veth pairs shaped with tc tbf; `sluice origin`,
 * `sluice proxy` and `sluice fetch` run in them; a timeline is sampled
 * every 100 ms; summary.json, timeline.csv and timeline.png are written and
 * a verdict puts the model's prediction (model.h) beside the measurement.
 *
 * The pure parts (the scenario file, the give-up rule as origin options,
 * the proxy config, ss(8) output) are exported for the unit tests; `sluice
 * plan` reads scenarios with lab_scenario_load() too.
 */
#ifndef SLUICE_LAB_H
#define SLUICE_LAB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LAB_MAX_KV  32
#define LAB_ERR_MAX 512

enum lab_host {
	LAB_ORIGIN = 0,
	LAB_LB,
	LAB_CLIENT,
	LAB_NHOSTS,
};

/* "origin", "lb", "client": section and namespace names. */
extern const char *const lab_host_names[LAB_NHOSTS];

enum lab_mode {
	LAB_MODE_NETNS = 0,
	LAB_MODE_LOOPBACK,
};

/* [lb] kind: the balancer under test (docs/lab.md). */
enum lab_lb_kind {
	LAB_LB_SLUICE = 0, /* sluice proxy, config from [proxy] */
	LAB_LB_NGINX,      /* Debian's nginx, generated or [lb] config */
	LAB_LB_HAPROXY,    /* Debian's HAProxy, likewise */
	LAB_LB_NONE,       /* the lb namespace only routes: client to origin */
};

struct lab_kv {
	char key[96];
	char value[160];
};

/* A scenario file as plain data (STYLE 2). */
struct lab_scenario {
	char path[256];
	char name[64];
	int mode; /* enum lab_mode */
	uint64_t time_limit_ms;
	uint64_t body; /* bytes */
	char notes[200];
	uint64_t origin_lb_bps, lb_client_bps; /* tc tbf rates, bits/s */
	uint64_t delay_ms;                     /* netem, where it exists */
	char give_up[128];                     /* model_parse_giveup syntax */
	uint64_t origin_sndbuf;                /* bytes, 0: autotuning */
	uint64_t client_rate_bps;              /* fetch --rate, 0: none */
	uint64_t client_rcvbuf;                /* fetch --rcvbuf, 0: none */
	uint64_t client_timeout_ms;            /* fetch --timeout, 0: its own */
	struct lab_kv sysctl[LAB_NHOSTS][LAB_MAX_KV]; /* key without sysctl. */
	size_t nsysctl[LAB_NHOSTS];
	struct lab_kv proxy[LAB_MAX_KV]; /* "buffer.policy" = "pause" */
	size_t nproxy;

	/* [lab] */
	bool capture;              /* tcpdump per link into the results */
	uint64_t windows;          /* rows of the window table, 0: none */
	char article_windows[256]; /* "1460, 1260, ..." printed beside it */
	/* Every interval of the scenario was multiplied by this once parsed
	 * (lab_scenario_parse): 0.2 runs it five times faster. */
	double time_scale;
	bool walk; /* the article's Figure 2 walk beside the capture */
	/* [lab] scale = K (model/scale.h): the file states the question;
	 * once parsed, every byte position below is the run's, divided by
	 * K, and question holds the file's own. */
	double scale;
	struct lab_question {
		uint64_t body, origin_truncate_at, stall_at, fault_after;
		uint64_t client_count;
	} question;
	/* [lb] */
	int lb_kind;         /* enum lab_lb_kind */
	char lb_config[256]; /* a config file used as it is, or "" */
	struct lab_kv lb_directives[LAB_MAX_KV]; /* nginx.X / haproxy.X */
	size_t nlb_directives; /* key without its "nginx." prefix */
	/* [origin]: the article's server (docs/references.md) */
	uint64_t origin_drip, origin_every_ms; /* --drip B --every T; 0: no */
	bool origin_raw;                       /* --raw: no HTTP */
	uint64_t origin_truncate_at;           /* --truncate-at, 0: none */
	/* [client] */
	uint64_t client_read, client_interval_ms, client_count; /* --read.. */
	uint64_t stall_at;            /* --stall-at BYTES (when stall_for_ms) */
	uint64_t stall_for_ms;        /* --stall-for T, 0: no stall */
	uint64_t client_initrwnd;     /* route option initrwnd (segments), 0 */
	uint64_t client_window_clamp; /* fetch --window-clamp, 0: none */
	/* [fault]: a rule the proxy gets at start-up (docs/faults.md) */
	char fault_action[16];   /* "": none; stall, bandwidth, latency, ... */
	char fault_side[16];     /* upstream or client */
	char fault_path[128];    /* match: a target prefix, "": any */
	uint64_t fault_after;    /* after_bytes */
	uint64_t fault_for_ms;   /* stall, latency */
	uint64_t fault_rate_bps; /* bandwidth */
	/* [dos]: clients that hold a zero window forever */
	uint64_t dos_clients; /* how many, beside the honest client */
	uint64_t dos_rcvbuf;  /* their SO_RCVBUF (default 4k) */
};

/* One socket of ss -tinH output. */
struct lab_sock {
	char state[16]; /* "" when ss printed none (a single-state filter) */
	char local[64], peer[64];
	uint64_t recv_q, send_q; /* bytes */
	uint64_t bytes_acked, bytes_received;
	int64_t snd_wnd; /* -1: no info line; ss omits 0, so absent is 0 */
	unsigned backoff;
};

/*
 * Parses a scenario from text (name stands for the file in errors).
 * 0, or -EINVAL with err "NAME:LINE: [section] key: message".  Missing keys
 * take the defaults of docs/lab.md.
 */
int lab_scenario_parse(const char *text, const char *name,
    struct lab_scenario *sc, char *err, size_t errlen);
/* The same from a file; sc->path and a default name from its base name. */
int lab_scenario_load(
    const char *path, struct lab_scenario *sc, char *err, size_t errlen);
/* The question of a scaled scenario: sc with the file's own byte
 * positions ([lab] scale = 1 in q); sc itself when it is not scaled. */
void lab_scenario_question(
    const struct lab_scenario *sc, struct lab_scenario *q);

/*
 * Translates a give-up rule ("zwp-probes=4,interval=200ms[,max=2s]",
 * "send-timeout=20s", "user-timeout=5s", "orphan", "none" or "") into
 * `sluice origin` options: up to max pointers into argv, the strings kept
 * in buf.  The number of arguments, or -EINVAL.
 */
int lab_giveup_args(
    const char *rule, const char **argv, size_t max, char *buf, size_t len);

/*
 * Writes the proxy config of a scenario: its [proxy] keys by section, plus
 * what the lab owns (listen address, upstream server, admin address,
 * access log) and its defaults (upstream rcvbuf 256k: the kernel's queue
 * toward the origin must be pinned, docs/kernel.md; drain_timeout 2s).
 */
void lab_proxy_config(FILE *out, const struct lab_scenario *sc,
    const char *listen, const char *server, const char *admin,
    const char *access);

/* The JSON rule of a scenario's [fault] (POST /faults), named "lab". */
void lab_fault_json(FILE *out, const struct lab_scenario *sc);

/* Parses `ss -tinH` output into at most max sockets; returns how many. */
size_t lab_ss_parse(const char *text, struct lab_sock *out, size_t max);

/*
 * An inih handler's error, "[section] key: message", into msg unless it
 * already holds one (the first error is reported).  Returns 0, which tells
 * inih the line is an error.  For the lab's and sluice bench's files.
 */
int lab_ini_fail(char *msg, size_t len, const char *section, const char *key,
    const char *fmt, va_list ap);

/* True for a non-empty string of decimal digits (ss's numbers, /proc's
 * process entries). */
bool lab_all_digits(const char *s);

/* "sluice", "nginx", "haproxy" or "none". */
const char *lab_lb_kind_name(int kind);

/* `sluice lab`: argv[0] is "lab".  Exit code (docs/lab.md). */
int lab_main(int argc, char **argv);
void lab_usage(FILE *out);

#endif
