/*
 * ctl: `sluice ctl`, the admin API's client (docs/faults.md): connections,
 * stall, throttle, reset, close, faults, fault add, fault rm.
 */
#ifndef SLUICE_CTL_H
#define SLUICE_CTL_H

#include <stdio.h>

/* The help text. */
void ctl_usage(FILE *out);
/* argv[0] is "ctl".  The exit code: 0 done, 1 unreachable, 2 bad usage,
 * 3 refused by the proxy. */
int ctl_main(int argc, char **argv);

#endif
