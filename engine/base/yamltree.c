/*
 * libyaml event stream → tree. Duplicate keys in a map are an error (a
 * config with `redis:` twice is almost always a mistake).
 *
 * Used only by the config loader (base/config.c).
 */
#include "base/yamltree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/common.h"

static struct imp_yaml *node_new(int kind, int line)
{
    struct imp_yaml *y = imp_xcalloc(1, sizeof(*y));
    y->kind = kind;
    y->line = line;
    return y;
}

struct imp_yaml *imp_yaml_new_map(void) { return node_new(IMP_YAML_MAP, 0); }

struct imp_yaml *imp_yaml_scalar(const char *s, size_t len)
{
    struct imp_yaml *y = node_new(IMP_YAML_SCALAR, 0);
    y->scalar = imp_xstrndup(s, len);
    return y;
}

void imp_yaml_destroy(struct imp_yaml *y)
{
    if (!y) return;
    for (size_t i = 0; i < y->n; i++) {
        imp_yaml_destroy(y->items[i]);
        if (y->keys) free(y->keys[i]);
    }
    free(y->items);
    free(y->keys);
    free(y->scalar);
    free(y);
}

static void push_item(struct imp_yaml *parent, char *key, struct imp_yaml *child)
{
    parent->items = imp_xrealloc(parent->items, (parent->n + 1) * sizeof(*parent->items));
    if (parent->kind == IMP_YAML_MAP)
        parent->keys = imp_xrealloc(parent->keys, (parent->n + 1) * sizeof(*parent->keys));
    parent->items[parent->n] = child;
    if (parent->kind == IMP_YAML_MAP) parent->keys[parent->n] = key;
    parent->n++;
}

struct imp_yaml *imp_yaml_get(const struct imp_yaml *map, const char *key)
{
    if (!map || map->kind != IMP_YAML_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

void imp_yaml_set(struct imp_yaml *map, const char *key, struct imp_yaml *child)
{
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            imp_yaml_destroy(map->items[i]);
            map->items[i] = child;
            return;
        }
    }
    push_item(map, imp_xstrdup(key), child);
}

/* Parses one node whose first event is ev (consumed by the caller). */
static struct imp_yaml *parse_node(yaml_parser_t *p, yaml_event_t *ev, char *err, size_t errlen);

static int next_event(yaml_parser_t *p, yaml_event_t *ev, char *err, size_t errlen)
{
    if (!yaml_parser_parse(p, ev)) {
        snprintf(err, errlen, "line %zu: %s", p->problem_mark.line + 1,
                 p->problem ? p->problem : "syntax error");
        return -1;
    }
    return 0;
}

static struct imp_yaml *parse_node(yaml_parser_t *p, yaml_event_t *ev, char *err, size_t errlen)
{
    int line = (int)ev->start_mark.line + 1;
    struct imp_yaml *y;
    yaml_event_t e;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        y = node_new(IMP_YAML_SCALAR, line);
        y->scalar = imp_xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        y->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        return y;
    case YAML_ALIAS_EVENT:
        snprintf(err, errlen, "line %d: YAML aliases are not supported", line);
        return NULL;
    case YAML_SEQUENCE_START_EVENT:
        y = node_new(IMP_YAML_SEQ, line);
        for (;;) {
            if (next_event(p, &e, err, errlen) < 0) goto fail;
            if (e.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&e);
                return y;
            }
            struct imp_yaml *c = parse_node(p, &e, err, errlen);
            yaml_event_delete(&e);
            if (!c) goto fail;
            push_item(y, NULL, c);
        }
    case YAML_MAPPING_START_EVENT:
        y = node_new(IMP_YAML_MAP, line);
        for (;;) {
            if (next_event(p, &e, err, errlen) < 0) goto fail;
            if (e.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&e);
                return y;
            }
            if (e.type != YAML_SCALAR_EVENT) {
                snprintf(err, errlen, "line %zu: map keys must be plain strings",
                         e.start_mark.line + 1);
                yaml_event_delete(&e);
                goto fail;
            }
            char *key = imp_xstrndup((const char *)e.data.scalar.value, e.data.scalar.length);
            int kline = (int)e.start_mark.line + 1;
            yaml_event_delete(&e);
            if (imp_yaml_get(y, key)) {
                snprintf(err, errlen, "line %d: duplicate key '%s'", kline, key);
                free(key);
                goto fail;
            }
            if (next_event(p, &e, err, errlen) < 0) {
                free(key);
                goto fail;
            }
            struct imp_yaml *c = parse_node(p, &e, err, errlen);
            yaml_event_delete(&e);
            if (!c) {
                free(key);
                goto fail;
            }
            push_item(y, key, c);
        }
    default: snprintf(err, errlen, "line %d: unexpected YAML event", line); return NULL;
    }
fail:
    imp_yaml_destroy(y);
    return NULL;
}

static struct imp_yaml *load(yaml_parser_t *p, char *err, size_t errlen)
{
    yaml_event_t e;
    struct imp_yaml *root = NULL;

    for (;;) {
        if (next_event(p, &e, err, errlen) < 0) goto fail;
        if (e.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&e);
            break;
        }
        if (e.type == YAML_STREAM_START_EVENT || e.type == YAML_DOCUMENT_START_EVENT ||
            e.type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&e);
            continue;
        }
        if (root) {
            snprintf(err, errlen, "line %zu: only one YAML document is allowed",
                     e.start_mark.line + 1);
            yaml_event_delete(&e);
            goto fail;
        }
        root = parse_node(p, &e, err, errlen);
        yaml_event_delete(&e);
        if (!root) goto fail;
    }
    if (!root) root = imp_yaml_new_map(); /* an empty file is an empty map */
    return root;
fail:
    imp_yaml_destroy(root);
    return NULL;
}

struct imp_yaml *imp_yaml_load_string(const char *text, size_t len, char *err, size_t errlen)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        snprintf(err, errlen, "cannot initialize the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    struct imp_yaml *y = load(&p, err, errlen);
    yaml_parser_delete(&p);
    return y;
}

struct imp_yaml *imp_yaml_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %m", path);
        return NULL;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        snprintf(err, errlen, "cannot initialize the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_file(&p, f);
    char inner[400];
    struct imp_yaml *y = load(&p, inner, sizeof(inner));
    if (!y) snprintf(err, errlen, "%s: %s", path, inner);
    yaml_parser_delete(&p);
    fclose(f);
    return y;
}
