/*
 * An insertion-ordered set of strings (user IDs), each copied once. Used to
 * de-duplicate recipients and to hold them while a message is in flight.
 */
#ifndef IMP_STRSET_H
#define IMP_STRSET_H

#include <stddef.h>

struct imp_strset {
    char **items; /* insertion order, NUL-terminated copies */
    size_t n;
    size_t cap;
    size_t *index; /* open addressing over item positions */
    size_t icap;
};

void imp_strset_init(struct imp_strset *s);
void imp_strset_dispose(struct imp_strset *s);
/* Adds a copy of s[0..len). Returns 1 when added, 0 when already present. */
int imp_strset_add(struct imp_strset *s, const char *str, size_t len);
/* Position of str, or (size_t)-1. */
size_t imp_strset_find(const struct imp_strset *s, const char *str, size_t len);

#endif
