/*
 * The conversions walk ProtobufCFieldDescriptor: a field lives at
 * `offset` in the message struct; a repeated field's count lives at
 * `quantifier_offset` (size_t) and its array at `offset`. Everything built
 * here is malloc'ed, so protobuf_c_message_free_unpacked frees it.
 *
 * Used by core.rpc (calls/api.c); pure conversions, no I/O.
 */
#include "script/pbtable.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "conversation.pb-c.h"
#include "group.pb-c.h"
#include "msg.pb-c.h"
#include "msggateway.pb-c.h"
#include "push.pb-c.h"
#include "user.pb-c.h"

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static void push_value(lua_State *L, const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM: lua_pushnumber(L, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: lua_pushnumber(L, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: lua_pushnumber(L, (lua_Number) * (const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: lua_pushnumber(L, (lua_Number) * (const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: lua_pushnumber(L, *(const float *)p); break;
    case PROTOBUF_C_TYPE_DOUBLE: lua_pushnumber(L, *(const double *)p); break;
    case PROTOBUF_C_TYPE_BOOL: lua_pushboolean(L, *(const protobuf_c_boolean *)p); break;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        lua_pushstring(L, s ? s : "");
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        lua_pushlstring(L, (const char *)b->data, b->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m)
            imp_pb_push(L, m);
        else
            lua_pushnil(L);
        break;
    }
    }
}

static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->name);
    return d->n_fields == 2 && n > 5 && strcmp(d->name + n - 5, "Entry") == 0 &&
           strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

void imp_pb_push(lua_State *L, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    lua_createtable(L, 0, (int)d->n_fields);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            size_t sz = elem_size(f->type);
            int map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor);
            lua_createtable(L, map ? 0 : (int)n, map ? (int)n : 0);
            for (size_t k = 0; k < n; k++) {
                if (map) {
                    const ProtobufCMessage *e = *(ProtobufCMessage *const *)(arr + k * sz);
                    const ProtobufCMessageDescriptor *ed = e->descriptor;
                    push_value(L, &ed->fields[0], (const char *)e + ed->fields[0].offset);
                    push_value(L, &ed->fields[1], (const char *)e + ed->fields[1].offset);
                    lua_rawset(L, -3);
                } else {
                    push_value(L, f, arr + k * sz);
                    lua_rawseti(L, -2, (int)k + 1);
                }
            }
        } else {
            push_value(L, f, base + f->offset);
        }
        lua_setfield(L, -2, f->name);
    }
}

/* Sets one scalar or message from the Lua value at idx into p. */
static int set_value(lua_State *L, int idx, const ProtobufCFieldDescriptor *f, void *p, char *err,
                     size_t errlen, const char *path);

static int fail(char *err, size_t errlen, const char *path, const char *field, const char *what)
{
    snprintf(err, errlen, "field %s%s%s: %s", path, *path ? "." : "", field, what);
    return -1;
}

static int set_value(lua_State *L, int idx, const ProtobufCFieldDescriptor *f, void *p, char *err,
                     size_t errlen, const char *path)
{
    int t = lua_type(L, idx);
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (t != LUA_TBOOLEAN) return fail(err, errlen, path, f->name, "boolean expected");
        *(protobuf_c_boolean *)p = lua_toboolean(L, idx);
        return 0;
    case PROTOBUF_C_TYPE_STRING: {
        if (t != LUA_TSTRING) return fail(err, errlen, path, f->name, "string expected");
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        *(char **)p = imp_xstrndup(s, n);
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (t != LUA_TSTRING) return fail(err, errlen, path, f->name, "string expected");
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        ProtobufCBinaryData *b = p;
        b->data = imp_xmalloc(n ? n : 1);
        memcpy(b->data, s, n);
        b->len = n;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (t != LUA_TTABLE) return fail(err, errlen, path, f->name, "table expected");
        ProtobufCMessage *m = imp_pb_from_table(L, idx, f->descriptor, err, errlen);
        if (!m) return -1;
        *(ProtobufCMessage **)p = m;
        return 0;
    }
    default:
        if (t != LUA_TNUMBER) return fail(err, errlen, path, f->name, "number expected");
        lua_Number v = lua_tonumber(L, idx);
        switch (f->type) {
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32: *(uint32_t *)p = (uint32_t)v; break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64: *(int64_t *)p = (int64_t)v; break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: *(uint64_t *)p = (uint64_t)v; break;
        case PROTOBUF_C_TYPE_FLOAT: *(float *)p = (float)v; break;
        case PROTOBUF_C_TYPE_DOUBLE: *(double *)p = v; break;
        default: *(int32_t *)p = (int32_t)v; break;
        }
        return 0;
    }
}

ProtobufCMessage *imp_pb_from_table(lua_State *L, int idx, const ProtobufCMessageDescriptor *d,
                                    char *err, size_t errlen)
{
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    ProtobufCMessage *m = imp_xcalloc(1, d->sizeof_message);
    protobuf_c_message_init(d, m);
    char *base = (char *)m;
    /* refuse keys that are not fields: a typo would silently send a default */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING ||
            !protobuf_c_message_descriptor_get_field_by_name(d, lua_tostring(L, -1))) {
            snprintf(err, errlen, "%s has no field '%s'", d->name,
                     lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
            lua_pop(L, 1);
            goto fail;
        }
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        lua_getfield(L, idx, f->name);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (set_value(L, lua_gettop(L), f, base + f->offset, err, errlen, d->short_name) != 0) {
                lua_pop(L, 1);
                goto fail;
            }
            lua_pop(L, 1);
            continue;
        }
        if (!lua_istable(L, -1)) {
            fail(err, errlen, d->short_name, f->name, "table expected");
            lua_pop(L, 1);
            goto fail;
        }
        size_t sz = elem_size(f->type);
        int map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor);
        size_t n = 0;
        if (map) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                n++;
                lua_pop(L, 1);
            }
        } else {
            n = lua_objlen(L, -1);
        }
        char *arr = imp_xcalloc(n ? n : 1, sz);
        *(char **)(base + f->offset) = arr;
        *(size_t *)(base + f->quantifier_offset) = 0;
        int t = lua_gettop(L);
        if (map) {
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            lua_pushnil(L);
            while (lua_next(L, t)) {
                ProtobufCMessage *e = imp_xcalloc(1, ed->sizeof_message);
                protobuf_c_message_init(ed, e);
                ((ProtobufCMessage **)arr)[(*(size_t *)(base + f->quantifier_offset))++] = e;
                if (set_value(L, -2, &ed->fields[0], (char *)e + ed->fields[0].offset, err, errlen,
                              f->name) != 0 ||
                    set_value(L, -1, &ed->fields[1], (char *)e + ed->fields[1].offset, err, errlen,
                              f->name) != 0) {
                    lua_pop(L, 3);
                    goto fail;
                }
                lua_pop(L, 1);
            }
        } else {
            for (size_t k = 0; k < n; k++) {
                lua_rawgeti(L, t, (int)k + 1);
                if (set_value(L, -1, f, arr + k * sz, err, errlen, d->short_name) != 0) {
                    lua_pop(L, 2);
                    goto fail;
                }
                (*(size_t *)(base + f->quantifier_offset))++;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    return m;
fail:
    protobuf_c_message_free_unpacked(m, NULL);
    return NULL;
}

static const ProtobufCServiceDescriptor *const services[] = {
    &openim__group__group__descriptor,
    &openim__user__user__descriptor,
    &openim__conversation__conversation__descriptor,
    &openim__msg__msg__descriptor,
    &openim__msggateway__msg_gateway__descriptor,
    &openim__push__push_msg_service__descriptor,
};

const ProtobufCMethodDescriptor *imp_pb_method(const char *path, const char **service_pkg)
{
    if (!path || path[0] != '/') return NULL;
    const char *slash = strchr(path + 1, '/');
    if (!slash) return NULL;
    size_t sl = (size_t)(slash - path - 1);
    for (size_t i = 0; i < IMP_ARRAY_LEN(services); i++) {
        const ProtobufCServiceDescriptor *s = services[i];
        if (strlen(s->name) != sl || strncmp(s->name, path + 1, sl) != 0) continue;
        for (unsigned k = 0; k < s->n_methods; k++) {
            if (strcmp(s->methods[k].name, slash + 1) == 0) {
                if (service_pkg) *service_pkg = s->name;
                return &s->methods[k];
            }
        }
    }
    return NULL;
}
