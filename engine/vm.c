/*
 * VM construction. Scripts are loaded with loadfile and an environment of
 * their own whose reads fall through to the globals, so a script's
 * accidental globals stay in its own table (issue 4 turns this into the
 * allow-listed sandbox). The engine library is found through package.path
 * (luaPath, then the scripts folder).
 */
#include "vm.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int imp_vm_pcall(lua_State *L, int nargs, int nresults, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc == 0) return 0;
    snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    lua_pop(L, 1);
    return rc == LUA_ERRMEM ? IMP_ENOMEM : IMP_ESCRIPT;
}

void imp_vm_resume_error(lua_State *L, lua_State *co, int status, char *err, size_t errlen)
{
    const char *msg = lua_tostring(co, -1);
    if (status == LUA_ERRMEM) msg = "not enough memory";
    luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
}

/* Module loader for "impulse.core": a table of the engine's C functions. */
static int open_core(lua_State *L)
{
    const luaL_Reg *funcs = lua_touserdata(L, lua_upvalueindex(1));
    void *owner = lua_touserdata(L, lua_upvalueindex(2));
    lua_newtable(L);
    for (; funcs->name; funcs++) {
        lua_pushlightuserdata(L, owner);
        lua_pushcclosure(L, funcs->func, 1);
        lua_setfield(L, -2, funcs->name);
    }
    return 1;
}

static void set_paths(lua_State *L, const struct imp_config *cfg)
{
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua", cfg->lua_dir, cfg->lua_dir,
                    cfg->scripts_dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

/* Loads scripts/push.lua into its own environment and returns its table.
 * Stack: +1 (the policy table) on success. */
static int load_policy(lua_State *L, const struct imp_config *cfg, char *err, size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/push.lua", cfg->scripts_dir);
    if (luaL_loadfile(L, path) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return IMP_ESCRIPT;
    }
    /* env = setmetatable({}, {__index = _G}) */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfenv(L, -2);
    int rc = imp_vm_pcall(L, 0, 1, err, errlen);
    if (rc) return rc;
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: must return a table of hooks, returned a %s", path,
                 luaL_typename(L, -1));
        lua_pop(L, 1);
        return IMP_ESCRIPT;
    }
    lua_getfield(L, -1, "route");
    int ok = lua_isfunction(L, -1);
    lua_pop(L, 1);
    if (!ok) {
        snprintf(err, errlen, "%s: the returned table has no route function", path);
        lua_pop(L, 1);
        return IMP_ESCRIPT;
    }
    return 0;
}

struct imp_vm *imp_vm_create(const struct imp_config *cfg, const luaL_Reg *funcs, void *owner,
                             char *err, size_t errlen)
{
    struct imp_vm *vm = imp_xcalloc(1, sizeof(*vm));
    vm->policy_ref = vm->handle_ref = LUA_NOREF;
    vm->L = luaL_newstate();
    if (!vm->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        free(vm);
        return NULL;
    }
    lua_State *L = vm->L;
    luaL_openlibs(L);
    set_paths(L, cfg);

    /* package.preload["impulse.core"] = open_core (upvalues: funcs, owner) */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, (void *)funcs);
    lua_pushlightuserdata(L, owner);
    lua_pushcclosure(L, open_core, 2);
    lua_setfield(L, -2, "impulse.core");
    lua_pop(L, 2);

    /* handle = require("impulse.driver").handle */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "impulse.driver");
    if (imp_vm_pcall(L, 1, 1, err, errlen)) goto fail;
    lua_getfield(L, -1, "handle");
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "impulse.driver has no handle function");
        lua_pop(L, 2);
        goto fail;
    }
    vm->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);

    if (load_policy(L, cfg, err, errlen)) goto fail;
    vm->policy_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return vm;
fail:
    imp_vm_destroy(vm);
    return NULL;
}

void imp_vm_destroy(struct imp_vm *vm)
{
    if (!vm) return;
    if (vm->L) lua_close(vm->L);
    free(vm);
}
