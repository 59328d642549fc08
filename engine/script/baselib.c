/*
 * impulse.core's basic functions: log lines, clocks and the settings a
 * script may read. Upvalue 1 of each is the host (script/task.h). None
 * yields; none touches a task.
 */
#include "script/baselib.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/log.h"
#include "script/task.h"

/* The script line that logs, for OpenIM's `caller`: the first Lua frame
 * outside the library's wrappers (ctx.log, print), else the first Lua
 * frame (the library logging for itself). "" and 0 if none. */
static void script_caller(lua_State *L, char *file, size_t cap, int *line)
{
    lua_Debug ar;
    file[0] = '\0';
    *line = 0;
    for (int lv = 1; lua_getstack(L, lv, &ar); lv++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
        const char *src = ar.short_src;
        size_t n = strlen(src);
        bool wrapper = (n >= 18 && strcmp(src + n - 18, "impulse/driver.lua") == 0) ||
                       (n >= 19 && strcmp(src + n - 19, "impulse/sandbox.lua") == 0);
        if (!file[0] || !wrapper) {
            snprintf(file, cap, "%s", src);
            *line = ar.currentline;
        }
        if (!wrapper) return;
    }
}

static void log_line(lua_State *L, int level, const char *opid, const char *msg, const char *fields)
{
    char file[LUA_IDSIZE + 8];
    int line;
    if (level < imp_log_level()) return;
    script_caller(L, file, sizeof(file), &line);
    if (file[0])
        imp_log_fields_at(file, line, level, opid, NULL, msg, fields);
    else
        imp_log_fields(level, opid, msg, fields);
}

/* log(level, operationID, text) */
static int l_log(lua_State *L)
{
    const char *lv = luaL_checkstring(L, 1);
    const char *opid = luaL_optstring(L, 2, NULL);
    const char *text = luaL_checkstring(L, 3);
    int level = imp_log_level_parse(lv);
    if (level < 0) return luaL_error(L, "bad log level '%s'", lv);
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_printf(&b, "\"worker\":%d,\"source\":\"script\"", imp_host_of(L)->id);
    log_line(L, level, opid, text, b.data);
    imp_buf_dispose(&b);
    return 0;
}

/* log_level() -> "debug" | "info" | "warn" | "error" (fixed at start) */
static int l_log_level(lua_State *L)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    int lv = imp_log_level();
    lua_pushstring(L, names[lv >= 0 && lv < 4 ? lv : 1]);
    return 1;
}

/* log_fields(level, operationID, msg, json) -- json: an encoded object whose
 * members become fields of the log line */
static int l_log_fields(lua_State *L)
{
    const char *lv = luaL_checkstring(L, 1);
    const char *opid = luaL_optstring(L, 2, NULL);
    const char *msg = luaL_checkstring(L, 3);
    size_t len;
    const char *json = luaL_optlstring(L, 4, "{}", &len);
    int level = imp_log_level_parse(lv);
    if (level < 0) return luaL_error(L, "bad log level '%s'", lv);
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_printf(&b, "\"worker\":%d", imp_host_of(L)->id);
    if (len > 2 && json[0] == '{' && json[len - 1] == '}') {
        imp_buf_putc(&b, ',');
        imp_buf_append(&b, json + 1, len - 2);
    }
    log_line(L, level, opid, msg, b.data);
    imp_buf_dispose(&b);
    return 0;
}

/* wall_ms() -> milliseconds since the epoch */
static int l_wall_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)imp_wall_ms());
    return 1;
}

/* config() -> the settings scripts may read */
static int l_config(lua_State *L)
{
    const struct imp_config *cfg = imp_host_of(L)->cfg;
    lua_createtable(L, 0, 6);
    lua_pushstring(L, cfg->im_admin_user);
    lua_setfield(L, -2, "imAdminUserID");
    lua_pushstring(L, cfg->openim_version);
    lua_setfield(L, -2, "openim");
    lua_pushstring(L, cfg->openim_profile);
    lua_setfield(L, -2, "openimProfile");
    lua_pushstring(L, cfg->topic_push);
    lua_setfield(L, -2, "toPushTopic");
    lua_pushstring(L, cfg->topic_offline_push);
    lua_setfield(L, -2, "toOfflinePushTopic");
    lua_pushboolean(L, cfg->full_user_cache);
    lua_setfield(L, -2, "fullUserCache");
    lua_pushnumber(L, cfg->rpc_timeout_ms);
    lua_setfield(L, -2, "rpcTimeoutMs");
    {
        /* the folder of the config (a file's folder, or the folder given):
         * relative credential paths are resolved against it, as OpenIM does */
        struct stat st;
        const char *path = cfg->path ? cfg->path : ".";
        const char *slash = strrchr(path, '/');
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            lua_pushstring(L, path);
        else if (slash)
            lua_pushlstring(L, path, (size_t)(slash - path));
        else
            lua_pushliteral(L, ".");
        lua_setfield(L, -2, "configDir");
    }
    lua_pushstring(L, cfg->offline_provider ? cfg->offline_provider : "");
    lua_setfield(L, -2, "offlineProvider");
    lua_pushstring(L, cfg->providers_json ? cfg->providers_json : "{}");
    lua_setfield(L, -2, "providersJSON");
    lua_pushboolean(L, cfg->shadow);
    lua_setfield(L, -2, "shadow");
    lua_pushboolean(L, cfg->offline_dedupe);
    lua_setfield(L, -2, "offlineDedupe");
    lua_pushnumber(L, cfg->offline_dedupe_window_s);
    lua_setfield(L, -2, "offlineDedupeWindowS");
    /* webhooks = { url = ..., beforeOnlinePush = { enable, timeout, failedContinue }, ... } */
    lua_createtable(L, 0, 4);
    lua_pushstring(L, cfg->webhook_url ? cfg->webhook_url : "");
    lua_setfield(L, -2, "url");
    const struct imp_webhook *hooks[] = {&cfg->wh_before_online, &cfg->wh_before_group_online,
                                         &cfg->wh_before_offline};
    const char *names[] = {"beforeOnlinePush", "beforeGroupOnlinePush", "beforeOfflinePush"};
    for (int i = 0; i < 3; i++) {
        lua_createtable(L, 0, 3);
        lua_pushboolean(L, hooks[i]->enable);
        lua_setfield(L, -2, "enable");
        lua_pushnumber(L, hooks[i]->timeout_s);
        lua_setfield(L, -2, "timeout");
        lua_pushboolean(L, hooks[i]->failed_continue);
        lua_setfield(L, -2, "failedContinue");
        lua_setfield(L, -2, names[i]);
    }
    lua_setfield(L, -2, "webhooks");
    return 1;
}

/* now_ms() -> milliseconds on the monotonic clock */
static int l_now_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)imp_now_ms());
    return 1;
}

const luaL_Reg imp_baselib[] = {
    {"log", l_log},
    {"now_ms", l_now_ms},
    {"log_fields", l_log_fields},
    {"log_level", l_log_level},
    {"wall_ms", l_wall_ms},
    {"config", l_config},
    {NULL, NULL},
};
