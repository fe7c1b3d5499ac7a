/*
 * model: the analytic model of the incident (docs/model.md), used by
 * `sluice plan` and by the lab to put a prediction beside each run.
 *
 * Symbols (docs/model.md): S body size, r the client's goodput, C the proxy's
 * high watermark and L its low one, Δ = C − L, K_in the proxy's kernel
 * receive queue toward the origin at zero window, K_out the proxy's send
 * queue plus the shaper's queue toward the client, K_ws the origin's send
 * buffer, T the origin's give-up time.  Pure: no I/O.
 *
 * Every policy is one cycle: the pipe fills to a cap, the origin sees a
 * zero window while the client drains a gap, the window reopens and the
 * origin refills the gap.  Pause: cap C, gap Δ; spill: cap C + spill_limit,
 * gap a block; pace: cap L, gap a tick's read; no gap is shorter than what
 * a full receive queue must lose before its window reopens
 * (model_reopen_bytes).  The give-up rules are then judged on that
 * sequence of zero windows.
 */
#ifndef SLUICE_MODEL_H
#define SLUICE_MODEL_H

#include <stddef.h>
#include <stdint.h>

/*
 * The kernel and proxy figures the model rests on (docs/model.md says
 * where each comes from; "measured" means on Linux 6.18, over veth;
 * docs/kernel.md).
 */
/* Receive queue payload per byte of doubled SO_RCVBUF: tp->scaling_ratio
 * since Linux 6.6 (payload / truesize of the queued skbs); measured 0.957 to
 * 0.985 with and without tbf.  Before 6.6: 1 − 2^−tcp_adv_win_scale = 0.5. */
#define MODEL_RCV_RATIO 0.97
/* K_in when the proxy's rcvbuf is autotuned (measured 0.05 to 11.9 MB
 * between identical runs: pin it); a guess, flagged in the output. */
#define MODEL_K_IN_AUTOTUNED (4.0 * 1048576)
/* K_out when the proxy's client sndbuf is autotuned: a guess. */
#define MODEL_K_OUT_AUTOTUNED (256.0 * 1024)
/* The origin's send buffer under autotuning: tcp_wmem[2]'s default. */
#define MODEL_K_WS_DEFAULT (4ULL * 1048576)
#define MODEL_BLOCK        (64ULL * 1024) /* [buffer] block_size */
#define MODEL_MSS          1448.0         /* 1500-byte MTU, TCP timestamps */
#define MODEL_FRAME        1514.0 /* its frame on the wire (tbf counts it) */
/* How much the proxy must have read from a full receive queue before the
 * origin learns that its window reopened: min(K_in, max(MIN, K_in / DIV)).
 * A fit to the longest zero windows measured with a reader draining at
 * 256 kB/s and 1 MB/s, rcvbuf 128 KiB to 4 MiB (docs/model.md): the window
 * opens much later than the 1/16 of __tcp_select_window, and often only at
 * the origin's next answered zero-window probe. */
#define MODEL_REOPEN_MIN 390000.0
#define MODEL_REOPEN_DIV 10.0
/* The largest TSO skb on such a link (64 KiB gso_max_size, 45 segments):
 * a reopened window at least this large restarts TCP_USER_TIMEOUT's clock
 * (tcp_ack_probe), a smaller one does not (measured: 128–512 KiB
 * reopenings restart it). */
#define MODEL_TSO_SKB   (45.0 * 1448)
#define MODEL_PROBE0_S  0.216 /* the first zero-window probe (measured) */
#define MODEL_RTO_MAX_S 120.0 /* TCP_RTO_MAX */
#define MODEL_ORPHAN_S  341.0 /* an orphan's death, defaults (measured) */
#define MODEL_TICK_S    0.020 /* pace's token refill */
/* A writer blocked on a full send buffer wakes when a third of it is free
 * (sk_stream_min_wspace); measured: 1.35–1.98 s between writes for a 1 MiB
 * buffer drained at 245 kB/s, 1/3 predicts 1.43 s. */
#define MODEL_WAKE_FRACTION (1.0 / 3)
/* Recommendations keep this much of a limit: a gap of 90% of r·T. */
#define MODEL_MARGIN 0.9

enum giveup_kind {
	GIVEUP_NONE = 0,     /* the origin waits for ever */
	GIVEUP_SEND_TIMEOUT, /* no write progress for T (per stall) */
	GIVEUP_USER_TIMEOUT, /* TCP_USER_TIMEOUT: cumulative over stalls
	                      * unless a reopening restarts its clock */
	GIVEUP_ZWP_PROBES,   /* N probes with backoff (per stall) */
	GIVEUP_ORPHAN,       /* the application closed; the kernel's
	                      * orphan backoff ends it (per stall) */
};

struct model_in {
	uint64_t size;        /* S, body bytes */
	double client_bps;    /* the client's goodput, bits/s */
	double origin_bps;    /* the origin–proxy link, bits/s */
	int policy;           /* enum policy (config.h) */
	uint64_t high, low;   /* C and L */
	uint64_t spill_limit; /* policy spill: bytes ahead of the client */
	uint64_t k_in;        /* bytes (0: derive from rcvbuf) */
	uint64_t rcvbuf;      /* the proxy's upstream SO_RCVBUF as set */
	uint64_t k_out;       /* bytes (0: derive from client_sndbuf) */
	uint64_t k_ws;        /* the origin's send buffer, bytes */
	enum giveup_kind giveup;
	double giveup_s;     /* T: send/user timeout; orphan time */
	unsigned zwp_probes; /* GIVEUP_ZWP_PROBES */
	double zwp_interval_s, zwp_max_interval_s;
	int resume; /* resume = on */
	/* Added after the first interface; 0 takes the default. */
	uint64_t block;         /* [buffer] block_size (64 KiB) */
	uint64_t client_sndbuf; /* the proxy's [client] sndbuf as set */
	double orphan_s;        /* an orphan's death after a send timeout */
	/* One stall (a [fault] stall, plan --stall-at/--stall-for): at
	 * stall_at body bytes (read from the origin on the upstream side,
	 * written to the client on the client side) that side stops for
	 * stall_s.  The upstream side closes the origin's window whatever
	 * the policy; the client side closes it once the policy's buffers
	 * are full (pause: high, pace: low, spill: high + spill_limit). */
	uint64_t stall_at;
	double stall_s; /* 0: no stall */
	int stall_client;
};

struct model_out {
	int complete;             /* 1 complete, 0 truncated */
	double giveup_at_s;       /* when the origin gives up, < 0: never */
	uint64_t client_bytes;    /* bytes the client receives */
	uint64_t unsent_bytes;    /* S − client_bytes */
	double client_finish_s;   /* when the client's download ends */
	uint64_t peak_memory;     /* proxy memory for this download */
	uint64_t peak_disk;       /* proxy spool */
	unsigned stalls;          /* zero-window episodes the origin sees */
	double stall_s;           /* the longest one */
	char recommendation[320]; /* the smallest change that completes */
	/* Added after the first interface. */
	unsigned resumes; /* resume = on: the origin's give-ups */
	int cumulative;   /* TCP_USER_TIMEOUT accumulates over stalls */
	int k_in_guessed; /* rcvbuf autotuned: K_in is a guess */
	uint64_t k_in, k_out, k_ws; /* the values used */
	double first_stall_s;       /* when the origin's window first closes */
	/* Body bytes the origin has sent when its window first closes,
	 * R·t0 = cap·R / (R − r): a body no longer than this sees no zero
	 * window of the cycle (docs/model.md, "Scaled runs").  < 0 when the
	 * client keeps up and the window never closes. */
	double close_bytes;
};

/* Fills sane defaults (the measured kernel figures above): pause with the
 * config's watermarks, a 1 Gbit/s origin, no give-up rule. */
void model_defaults(struct model_in *in);
/* Parses a give-up rule: "none", "send-timeout=60s[,orphan=T]",
 * "user-timeout=30s", "zwp-probes=N,interval=T[,max=TMAX]", "orphan[=T]".
 * 0 or -EINVAL (in is then unchanged). */
int model_parse_giveup(const char *s, struct model_in *in);
/* The give-up time of one stall for per-stall rules (seconds): T, the
 * probes' Σ min(T0·2^j, TMAX), or for TCP_USER_TIMEOUT the first probe plus
 * U (the longest stall it survives when its clock restarts each stall).
 * < 0 for GIVEUP_NONE. */
double model_giveup_time(const struct model_in *in);
/* Predicts the download.  0, or -EINVAL for inputs that make no sense. */
int model_predict(const struct model_in *in, struct model_out *out);

/* K_in: in->k_in, else 2·rcvbuf·MODEL_RCV_RATIO, else the autotuned guess. */
uint64_t model_k_in(const struct model_in *in);
/* K_out: in->k_out, else 2·client_sndbuf, else the autotuned guess. */
uint64_t model_k_out(const struct model_in *in);
/* The bytes the proxy must free in a full receive queue of k_in bytes
 * before the origin's zero window reopens. */
uint64_t model_reopen_bytes(uint64_t k_in);
/* Goodput of a link shaped at link_bps with full 1500-byte frames. */
double model_goodput_bps(double link_bps);
/* "send-timeout" ...; "none" for GIVEUP_NONE. */
const char *model_giveup_name(enum giveup_kind kind);
/* Approximate, for people: "2.00 GiB", "13.1 MiB", "900 B"; "2.4 h",
 * "54.6 s", "250 ms".  Return buf. */
const char *model_fmt_bytes(double bytes, char *buf, size_t len);
const char *model_fmt_secs(double s, char *buf, size_t len);

#endif
