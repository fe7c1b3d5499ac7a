/*
 * config: the proxy's configuration as plain data (STYLE 2), loaded from an
 * INI file with inih through one table of keys (STYLE 9).
 *
 * The table (config_keys) is the single source of truth: the parser, the
 * validation ranges, conf/sluice.ini's defaults and docs/config.md all come
 * from it ("sluice help config" prints it).  What a key does with its
 * value is its type's: config.c has one parse and one format function per
 * type.  A loaded config is const for the rest of its life; a reload builds
 * a new one.
 *
 * Errors read "FILE:LINE: [section] key: message".  Debian's inih gives the
 * handler no line number, so the parser reads the file through its own line
 * reader and knows the line of every key it is handed.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "base/address.h"

#define CONFIG_ERR_MAX     512
#define CONFIG_MAX_SERVERS 64

enum balance {
	BALANCE_ROUND_ROBIN = 0,
	BALANCE_LEAST_CONN,
};

enum policy {
	POLICY_PAUSE = 0,
	POLICY_SPILL,
	POLICY_PACE,
};

#define CONFIG_PATH_MAX 256

struct config {
	char path[256];
	struct {
		uint64_t workers; /* loops (threads); 0: auto, one per core */
	} proxy;
	struct {
		struct sockaddr_any address;
		uint64_t drain_timeout;   /* ms */
		uint64_t max_connections; /* 0: from RLIMIT_NOFILE */
	} listen;
	struct {
		struct sockaddr_any servers[CONFIG_MAX_SERVERS];
		size_t nservers;
		int balance;                            /* enum balance */
		uint64_t connect_timeout, read_timeout; /* ms */
		uint64_t rcvbuf, window_clamp;          /* bytes */
		uint64_t user_timeout;                  /* ms */
		uint64_t keepalive;         /* idle connections per server */
		uint64_t keepalive_timeout; /* ms */
	} upstream;
	struct {
		uint64_t sndbuf;          /* bytes */
		uint64_t user_timeout;    /* ms */
		uint64_t idle_timeout;    /* ms */
		uint64_t header_timeout;  /* ms */
		uint64_t max_header_size; /* bytes */
		uint64_t zwp_timeout;     /* ms, 0: off */
		uint64_t zwp_probes;      /* 0: off */
		uint64_t zwp_interval;    /* ms */
	} client;
	struct {
		int policy; /* enum policy */
		uint64_t high_watermark, low_watermark, block_size;
		char spill_dir[CONFIG_PATH_MAX];
		uint64_t spill_limit, spill_total; /* bytes */
		int splice;                        /* 0 off, 1 auto */
		int resume;                        /* 0 off, 1 on */
		uint64_t resume_attempts;
		uint64_t resume_backoff; /* ms */
		uint64_t memory_limit;   /* bytes, 0: none */
	} buffer;
	struct {
		int level;                    /* enum log_level */
		char access[CONFIG_PATH_MAX]; /* "": stderr */
	} log;
	struct {
		struct sockaddr_any address; /* len 0: no admin listener;
		                              * AF_UNIX: a socket path */
		int show_query;              /* 0: /connections redacts */
		int faults;                  /* 1: the fault API (fault.h) */
	} admin;
	/* Line of each key in the file (0: not given), indexed like
	 * config_keys, for errors found after parsing (e.g. at bind time). */
	int lines[64];
};

enum config_type {
	CT_SIZE,
	CT_DURATION,
	CT_ENUM,
	CT_ADDRESS,     /* host:port or [v6]:port, port 0 allowed */
	CT_SERVER,      /* host:port, repeatable */
	CT_COUNT,       /* a whole number, min..max */
	CT_PATH,        /* a file or directory name ("" allowed) */
	CT_OPT_ADDRESS, /* like CT_ADDRESS, or "" for none */
	CT_COUNT_AUTO,  /* like CT_COUNT, or "auto", stored as 0 */
};

/* One row of config_keys; config.c writes each with its type's row macro
 * (SIZE, DURATION, COUNT, ENUM, PATH, ADDRESS, OPT_ADDRESS, SERVER). */
struct config_key {
	const char *section;
	const char *key;
	enum config_type type;
	size_t offset;            /* into struct config */
	const char *def;          /* default, as written in the INI file */
	uint64_t min, max;        /* CT_SIZE, CT_DURATION, CT_COUNT */
	const char *const *names; /* CT_ENUM: NULL-terminated */
	const char *doc;          /* one line */
};

extern const struct config_key config_keys[];
extern const size_t config_nkeys;

/*
 * Loads and validates FILE.  Returns a config the caller frees with
 * config_free(), or NULL with err filled ("FILE:LINE: [section] key: ...").
 */
struct config *config_load(const char *path, char *err, size_t errlen);
/* The same from a string; name stands for the file name in errors. */
struct config *config_load_string(
    const char *text, const char *name, char *err, size_t errlen);
/* A copy of cfg that the caller frees with config_free(), or NULL. */
struct config *config_copy(const struct config *cfg);
void config_free(struct config *cfg);

/*
 * The zero-window give-up time toward clients: zwp_timeout, or the time
 * zwp_probes probes take with exponential backoff from zwp_interval
 * (capped at 120 s, the kernel's TCP_RTO_MAX), whichever is shorter;
 * 0 when neither is set.
 */
uint64_t config_client_zwp_ms(const struct config *cfg);

/* The key written "section.key" (as scenarios and sweeps name proxy
 * keys), or NULL. */
const struct config_key *config_key_dotted(const char *dotted);

/* The name of value v of an enum key ("pause" for buffer.policy 0). */
const char *config_keys_enum_name(const char *section, const char *key, int v);

/* The line a key was given on, or 0. */
int config_line(const struct config *cfg, const char *section, const char *key);

/* Writes the key table as a commented INI file (conf/sluice.ini) or as a
 * markdown table (docs/config.md). */
void config_print_ini(FILE *out);
void config_print_markdown(FILE *out);

#endif
