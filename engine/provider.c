/* Offline provider transports (provider.h). */
#include "provider.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "task.h"

int imp_provider_known(const char *name) { return strcmp(name, "log") == 0; }

static void count(const char *provider, const char *result, int64_t users)
{
    char labels[160];
    snprintf(labels, sizeof(labels), "provider=\"%s\",result=\"%s\"", provider, result);
    imp_metrics_inc("impulse_offline_push_total", labels, users);
    if (strcmp(result, "failed") == 0) imp_metrics_inc("msg_offline_push_failed_total", NULL, users);
}

/* "log": one line per request, the body as JSON when it is an object or
 * an array, else as a string. */
static void send_log(lua_State *L, const char *opid, const char *client_msg_id, int nusers)
{
    size_t n = lua_objlen(L, 2);
    struct imp_buf b;
    imp_buf_init(&b);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, (int)i);
        lua_getfield(L, -1, "path");
        lua_getfield(L, -2, "body");
        size_t blen = 0;
        const char *path = lua_tostring(L, -2);
        const char *body = lua_tolstring(L, -1, &blen);
        imp_buf_reset(&b);
        imp_buf_puts(&b, "\"provider\":\"log\",\"clientMsgID\":");
        imp_buf_json_cstr(&b, client_msg_id);
        imp_buf_printf(&b, ",\"users\":%d,\"request\":%zu,\"requests\":%zu", nusers, i, n);
        if (path) {
            imp_buf_puts(&b, ",\"path\":");
            imp_buf_json_cstr(&b, path);
        }
        imp_buf_puts(&b, ",\"body\":");
        if (body && blen && (body[0] == '{' || body[0] == '['))
            imp_buf_append(&b, body, blen);
        else
            imp_buf_json_str(&b, body ? body : "", blen);
        imp_log_fields(IMP_LOG_INFO, opid, "offline push", b.data);
        lua_pop(L, 3);
    }
    imp_buf_dispose(&b);
}

int imp_lua_provider_send(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int nusers = (int)luaL_checkinteger(L, 3);
    const char *cmid = luaL_optstring(L, 4, "");
    struct task *t = imp_task_current(L);
    const char *opid = t ? imp_task_opid(t) : "";
    if (strcmp(name, "log") == 0) {
        send_log(L, opid, cmid, nusers);
        count(name, "sent", nusers);
        lua_pushboolean(L, 0);
        lua_pushboolean(L, 1);
        return 2;
    }
    count(name, "failed", nusers);
    lua_pushboolean(L, 0);
    lua_pushnil(L);
    lua_pushfstring(L, "provider '%s' has no transport in this build", name);
    return 3;
}

int imp_lua_provider_skip(lua_State *L)
{
    count("none", "skipped", (int64_t)luaL_checkinteger(L, 1));
    return 0;
}
