/*
 * field: offsetof with the field's type checked, for the key tables
 * (proxy/config.c, lab/lab_scenario.c), whose rows hand a field to the
 * parser of their type by offset.
 */
#ifndef SLUICE_FIELD_H
#define SLUICE_FIELD_H

#include <stddef.h>

/* 1 when expression e has type T (an array counts as a pointer to its
 * first element), else -1. */
/* clang-format off */
#define FIELD_SAME_TYPE(e, T) _Generic((e), T: 1, default: -1)
/* clang-format on */

/*
 * offsetof(type, f), refused at compile time ("size of unnamed array is
 * negative") unless field f has type T: a row cannot hand its type's
 * parser a field of another type.
 */
#define FIELD_OFFSET(type, f, T)                                               \
	(offsetof(type, f) +                                                   \
	    0 * sizeof(char[FIELD_SAME_TYPE(((type *)0)->f, T)]))

#endif
