/*
 * list: the one intrusive doubly linked list and the one container_of of
 * sluice (STYLE 3 and 16).
 *
 * A struct list_node lives inside its owner; a struct list is the head.
 * The list is NULL-terminated, with a pointer to the previous link's next
 * pointer (BSD's LIST, Linux's hlist), so a node can be removed in O(1)
 * without knowing its list, and an empty head is all zeros.  Insertion is
 * at the head: iteration goes newest first.  Nothing here allocates.
 */
#ifndef SLUICE_LIST_H
#define SLUICE_LIST_H

#include <stddef.h>

/* The struct of type whose member ptr points at. */
#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr)-offsetof(type, member)))

struct list_node {
	struct list_node *next;
	struct list_node **pprev; /* &previous->next, or &list->first */
};

struct list {
	struct list_node *first;
};

static inline void
list_insert_head(struct list *l, struct list_node *n)
{
	n->next = l->first;
	if (l->first != NULL)
		l->first->pprev = &n->next;
	l->first = n;
	n->pprev = &l->first;
}

/* Unlinks n from whichever list holds it. */
static inline void
list_remove(struct list_node *n)
{
	*n->pprev = n->next;
	if (n->next != NULL)
		n->next->pprev = n->pprev;
	n->next = NULL;
	n->pprev = NULL;
}

/* The item holding node n, or NULL when n is NULL (the end). */
#define list_item(n, type, member)                                             \
	((n) == NULL ? NULL : container_of(n, type, member))

/*
 * Declares var (a type *) and walks the list with it.  The body must not
 * free var's node: remove it, and free it after the walk (or in a close
 * callback, as every owner here does).
 */
#define list_foreach(var, list, type, member)                                  \
	for (type *var = list_item((list)->first, type, member); var != NULL;  \
	     var = list_item(var->member.next, type, member))

#endif
