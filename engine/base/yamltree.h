/*
 * A YAML document as a small tree (libyaml's parser, our own nodes), with
 * the line of every node so config errors can point at the file.
 * Anchors and aliases are refused; tags are ignored.
 */
#ifndef IMP_YAMLTREE_H
#define IMP_YAMLTREE_H

#include <stddef.h>

enum imp_yaml_kind { IMP_YAML_SCALAR, IMP_YAML_SEQ, IMP_YAML_MAP };

struct imp_yaml {
    int kind;
    int line;
    int quoted;   /* scalar was quoted: never a number or bool */
    char *scalar; /* IMP_YAML_SCALAR */
    size_t n;     /* SEQ: items; MAP: pairs */
    struct imp_yaml **items;
    char **keys; /* MAP only: keys[i] names items[i] */
};

/* Parses a file or a string. Returns NULL with a one-line reason in err. */
struct imp_yaml *imp_yaml_load_file(const char *path, char *err, size_t errlen);
struct imp_yaml *imp_yaml_load_string(const char *text, size_t len, char *err, size_t errlen);
void imp_yaml_destroy(struct imp_yaml *y);

/* Child of a map by key, or NULL. */
struct imp_yaml *imp_yaml_get(const struct imp_yaml *map, const char *key);
/* Adds (takes ownership of) child under key in map, replacing any old one. */
void imp_yaml_set(struct imp_yaml *map, const char *key, struct imp_yaml *child);
struct imp_yaml *imp_yaml_new_map(void);
/* An unquoted scalar of s[0..len). */
struct imp_yaml *imp_yaml_scalar(const char *s, size_t len);

#endif
