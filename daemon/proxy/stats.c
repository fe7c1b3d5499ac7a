/*
 * stats: see stats.h.  The outcome names are both the access log's
 * `outcome` values and the `outcome` label of sluice_downloads_total:
 * dashboards and log queries match on them, so they are renamed only with
 * both in mind.  Indexed by enum outcome, so a reordered enum keeps each
 * name on its value.
 */
#include "proxy/stats.h"

const char *const outcome_names[OUTCOME_N] = {
    [OUTCOME_COMPLETE] = "complete",
    [OUTCOME_CLIENT_GONE] = "client_gone",
    [OUTCOME_CLIENT_ZWP_TIMEOUT] = "client_zwp_timeout",
    [OUTCOME_UPSTREAM_RESET] = "upstream_reset",
    [OUTCOME_UPSTREAM_TIMEOUT] = "upstream_timeout",
    [OUTCOME_TRUNCATED] = "truncated",
    [OUTCOME_SPOOL_ERROR] = "spool_error",
    [OUTCOME_PROXY_ERROR] = "proxy_error",
};
