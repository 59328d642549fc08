/*
 * VM construction and the protected ways into it. Scripts are loaded by
 * impulse.sandbox (Lua); this file owns what only C can do: the capping
 * allocator, the budget hook, the JIT switch, and classifying errors (a
 * script error, out of memory, or the budget's STOP object).
 *
 * Built on any thread (the watcher builds reload VMs), then used by one
 * worker thread at a time; every call into Lua from C goes through here.
 */
#include "script/vm.h"

#include <dirent.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"

#define STOP_KEY   "impulse.STOP"
#define HOOK_COUNT 1000

uint64_t imp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread: what the budget charges, so a worker the
 * kernel deschedules on a busy host is not charged for time it did not run.
 * A system call (about 170 ns here, against 20 ns for the monotonic clock),
 * so the hook reads it only when the wall clock says the budget may be
 * spent (see budget_hook). */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Lua CPU time of the running message so far: before this resume, plus
 * this resume's CPU time, minus the engine work done inside it. */
static uint64_t used_ns(const struct imp_vm *vm)
{
    uint64_t spent = thread_cpu_ns() - vm->run.start_ns;
    return vm->run.charged_ns + (spent > vm->run.excluded_ns ? spent - vm->run.excluded_ns : 0);
}

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct imp_vm *vm = ud;
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= osize;
        return NULL;
    }
    if (vm->run.mem_limited && nsize > osize && vm->mem_used + (nsize - osize) > vm->mem_cap)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    vm->mem_used += nsize;
    vm->mem_used -= ptr ? osize : 0;
    return p;
}

/* The instruction-count hook: stops the running message once its Lua CPU
 * time passes the budget, by raising the STOP object (sandboxed pcall,
 * xpcall and coroutine.resume raise it again, so a script cannot catch
 * it), and keeps raising it at every later count while the message runs.
 * A thread's CPU time never runs ahead of the wall clock, so until the
 * wall clock reaches check_at_ns (the earliest moment the budget could be
 * spent) the hook costs one vDSO clock read; past it, it reads the thread's
 * CPU time and either stops the message or moves check_at_ns on. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct imp_vm *vm;
    lua_getallocf(L, (void **)&vm);
    if (!vm->run.running || !vm->budget_ns) return;
    uint64_t now = imp_now_ns();
    if (now < vm->run.check_at_ns && !vm->run.stopped) return;
    uint64_t used = used_ns(vm);
    if (used <= vm->budget_ns && !vm->run.stopped) {
        vm->run.check_at_ns = now + (vm->budget_ns - used);
        return;
    }
    vm->run.stopped = 1;
    lua_getfield(L, LUA_REGISTRYINDEX, STOP_KEY);
    lua_error(L);
}

/* core.stopped() -> true once the budget stopped the running message:
 * lets the sandbox raise STOP again when the stop surfaced as something
 * else (an error in an xpcall handler, a dead coroutine). */
static int l_stopped(lua_State *L)
{
    struct imp_vm *vm;
    lua_getallocf(L, (void **)&vm);
    lua_pushboolean(L, vm->run.stopped);
    return 1;
}

/* core.budget_renew(): the running message's budget starts again. For
 * engine modules only (impulse.offline, before each chunk of a
 * toOfflinePush record's users: a record holds up to ~30,000 users, whose
 * payloads take far more than one message's budget, while one chunk's
 * provider() and build() stay bounded by it); the sandbox keeps scripts
 * away from impulse.core and from the modules that call it. */
static int l_budget_renew(lua_State *L)
{
    struct imp_vm *vm;
    lua_getallocf(L, (void **)&vm);
    if (vm->run.running && !vm->run.stopped) {
        vm->run.charged_ns = 0;
        vm->run.excluded_ns = 0;
        vm->run.start_ns = thread_cpu_ns();
        vm->run.check_at_ns = imp_now_ns() + vm->budget_ns;
    }
    return 0;
}

static void charge_begin(struct imp_vm *vm, uint64_t charged);
static uint64_t charge_end(struct imp_vm *vm);

/* Runs __tostring of the value at index 1 (a protected call: it may raise,
 * loop, yield or allocate without end). Stack: +1 string. */
static int call_tostring(lua_State *L)
{
    if (!luaL_callmeta(L, 1, "__tostring") || lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "no string from __tostring");
    return 1;
}

/* Describes the error object at idx of L into out. A string or number is
 * copied; any other value's __tostring runs only inside a protected call,
 * under the memory cap and a budget of its own, on the VM's main state (L
 * may be a dead coroutine): whatever it does, the answer is its string or
 * the value's type. Never raises; leaves L's stack as it was. */
static void error_text(struct imp_vm *vm, lua_State *L, int idx, char *out, size_t outlen)
{
    size_t len;
    const char *msg = lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER
                          ? lua_tolstring(L, idx, &len)
                          : NULL;
    if (msg) {
        snprintf(out, outlen, "%s", msg);
        return;
    }
    const char *type = lua_typename(L, lua_type(L, idx));
    lua_State *M = vm->L;
    int top = lua_gettop(M);
    if (!lua_checkstack(M, 4)) {
        snprintf(out, outlen, "(error object is a %s value)", type);
        return;
    }
    lua_pushcfunction(M, call_tostring);
    lua_pushvalue(L, idx);
    if (L != M) lua_xmove(L, M, 1);
    struct imp_vm_run saved = vm->run; /* the message's own accounting */
    charge_begin(vm, 0);
    int rc = lua_pcall(M, 1, 1, 0);
    vm->run = saved;
    if (rc == 0 && lua_type(M, -1) == LUA_TSTRING)
        snprintf(out, outlen, "%s", lua_tostring(M, -1));
    else
        snprintf(out, outlen, "(error object is a %s value; its __tostring failed)", type);
    lua_settop(M, top);
}

static int is_stop(lua_State *L, int idx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, STOP_KEY);
    int r = lua_rawequal(L, idx < 0 ? idx - 1 : idx, -1);
    lua_pop(L, 1);
    return r;
}

/* The message handler of imp_vm_pcall: the message with a traceback. A
 * value other than a string or number is described by its type only (its
 * __tostring is run later, by error_text, in a protected call). */
static int traceback(lua_State *L)
{
    if (is_stop(L, 1)) return 1; /* keep STOP itself: callers classify it */
    const char *msg =
        lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER ? lua_tostring(L, 1) : NULL;
    if (!msg) return 1; /* the value itself, for error_text */
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void charge_begin(struct imp_vm *vm, uint64_t charged)
{
    vm->run.charged_ns = charged;
    vm->run.excluded_ns = 0;
    vm->run.start_ns = thread_cpu_ns();
    vm->run.check_at_ns = imp_now_ns() + (vm->budget_ns > charged ? vm->budget_ns - charged : 0);
    vm->run.stopped = 0;
    vm->run.running = 1;
    vm->run.mem_limited = 1;
}

static uint64_t charge_end(struct imp_vm *vm)
{
    uint64_t used = used_ns(vm);
    vm->run.running = 0;
    vm->run.mem_limited = 0;
    return used;
}

static int classify(struct imp_vm *vm, lua_State *L, int status, uint64_t used, char *err,
                    size_t errlen)
{
    if (status == LUA_ERRMEM) {
        snprintf(err, errlen, "not enough memory (script memory cap %zu MB)", vm->mem_cap >> 20);
        return IMP_ENOMEM;
    }
    if (is_stop(L, -1) || vm->run.stopped || (vm->budget_ns && used > vm->budget_ns)) {
        snprintf(err, errlen, "script budget exceeded: %.1f ms of Lua time (budget %.0f ms)",
                 used / 1e6, vm->budget_ns / 1e6);
        return IMP_ETIMEDOUT;
    }
    return IMP_ESCRIPT;
}

int imp_vm_pcall(struct imp_vm *vm, lua_State *L, int nargs, int nresults, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    charge_begin(vm, 0);
    int rc = lua_pcall(L, nargs, nresults, base);
    uint64_t used = charge_end(vm);
    lua_remove(L, base);
    if (rc == 0) return 0;
    int kind = classify(vm, L, rc, used, err, errlen);
    if (kind == IMP_ESCRIPT) error_text(vm, L, -1, err, errlen);
    lua_pop(L, 1);
    return kind;
}

int imp_vm_resume(struct imp_vm *vm, lua_State *co, int nargs, uint64_t *charged_ns, char *err,
                  size_t errlen)
{
    charge_begin(vm, *charged_ns);
    int st = lua_resume(co, nargs);
    *charged_ns = charge_end(vm);
    if (st == LUA_YIELD || st == 0) {
        /* the check at every yield and return; a stop the script turned
         * into something else still stops the message */
        if (vm->run.stopped || (vm->budget_ns && *charged_ns > vm->budget_ns)) {
            lua_settop(co, 0);
            snprintf(err, errlen, "script budget exceeded: %.1f ms of Lua time (budget %.0f ms)",
                     *charged_ns / 1e6, vm->budget_ns / 1e6);
            return IMP_ETIMEDOUT;
        }
        if (st == 0) return 0;
        lua_settop(co, 0); /* the yielded marker; answers are pushed later */
        return 1;
    }
    int kind = classify(vm, co, st, *charged_ns, err, errlen);
    if (kind == IMP_ESCRIPT) {
        char text[2048];
        error_text(vm, co, -1, text, sizeof(text));
        luaL_traceback(vm->L, co, text, 0);
        snprintf(err, errlen, "%s", lua_tostring(vm->L, -1));
        lua_pop(vm->L, 1);
    }
    return kind;
}

/* Module loader for "impulse.core": the engine's C functions, and STOP. */
static int open_core(lua_State *L)
{
    const luaL_Reg *const *libs = lua_touserdata(L, lua_upvalueindex(1));
    void *owner = lua_touserdata(L, lua_upvalueindex(2));
    lua_newtable(L);
    for (; *libs; libs++) {
        for (const luaL_Reg *f = *libs; f->name; f++) {
            lua_pushlightuserdata(L, owner);
            lua_pushcclosure(L, f->func, 1);
            lua_setfield(L, -2, f->name);
        }
    }
    lua_getfield(L, LUA_REGISTRYINDEX, STOP_KEY);
    lua_setfield(L, -2, "STOP");
    lua_pushcfunction(L, l_stopped);
    lua_setfield(L, -2, "stopped");
    lua_pushcfunction(L, l_budget_renew);
    lua_setfield(L, -2, "budget_renew");
    return 1;
}

static int stop_tostring(lua_State *L)
{
    lua_pushliteral(L, "script budget exceeded");
    return 1;
}

static void set_paths(lua_State *L, const struct imp_config *cfg)
{
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", cfg->lua_dir, cfg->lua_dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

/* What every VM has: libraries, the JIT setting, paths, STOP, the engine
 * module, the budget hook and the task tables. NULL on OOM. */
static struct imp_vm *vm_base(const struct imp_config *cfg, const luaL_Reg *const *libs,
                              void *owner, int test_mode)
{
    struct imp_vm *vm = imp_xcalloc(1, sizeof(*vm));
    vm->policy_ref = vm->handle_ref = LUA_NOREF;
    vm->mem_cap = test_mode ? (size_t)-1 : (size_t)cfg->script_memory_mb << 20;
    vm->budget_ns = test_mode ? 0 : (uint64_t)cfg->script_budget_ms * 1000000u;
    vm->L = lua_newstate(vm_alloc, vm);
    if (!vm->L) {
        free(vm);
        return NULL;
    }
    lua_State *L = vm->L;
    luaL_openlibs(L);
    /* The JIT stays on for the engine's own Lua (the driver, the offline
     * leg, the transports); the operator's scripts are loaded with the JIT
     * off for their functions (impulse.sandbox, jit.off(chunk, true)), so
     * the budget's count hook, which compiled code never runs, stops a
     * runaway loop in them. impulse.scriptJit compiles scripts too.
     * package.loaded["impulse.vmflags"] tells the sandbox. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, !cfg->script_jit && !test_mode);
    lua_setfield(L, -2, "interpretScripts");
    lua_setfield(L, -2, "impulse.vmflags");
    lua_pop(L, 2);
    if (test_mode) {
        /* the engine's library first, then wherever busted and friends live */
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "path");
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;./?.lua;./?/init.lua;%s", cfg->lua_dir,
                        cfg->lua_dir, lua_tostring(L, -1));
        lua_setfield(L, -3, "path");
        lua_pop(L, 2);
    } else {
        set_paths(L, cfg);
    }

    /* STOP: a unique object the budget hook raises */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, stop_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, STOP_KEY);

    /* package.preload["impulse.core"] = open_core (upvalues: libs, owner) */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, (void *)libs);
    lua_pushlightuserdata(L, owner);
    lua_pushcclosure(L, open_core, 2);
    lua_setfield(L, -2, "impulse.core");
    lua_pop(L, 2);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);

    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, IMP_VM_TASKS_KEY);
    lua_newtable(L); /* weak keys: coroutines a script drops are collected */
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, IMP_VM_ADOPTED_KEY);
    return vm;
}

/* Loads every scripts/providers/<name>.lua into registry table
 * "impulse.providers" (name → module). Returns 0 or IMP_ESCRIPT/... */
static int load_providers(struct imp_vm *vm, const struct imp_config *cfg,
                          const struct imp_scripts *scripts, char *err, size_t errlen)
{
    lua_State *L = vm->L;
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "impulse.providers");
    int rc = 0;
    for (size_t i = 0; !rc && i < scripts->n; i++) {
        const char *name = scripts->names[i];
        size_t n = strlen(name);
        if (strncmp(name, "providers/", 10) != 0 || strchr(name + 10, '/') || n < 15 ||
            strcmp(name + n - 4, ".lua") != 0)
            continue;
        lua_getfield(L, LUA_REGISTRYINDEX, "impulse.providers");
        lua_getglobal(L, "require");
        lua_pushliteral(L, "impulse.sandbox");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "load_provider");
        lua_remove(L, -2);
        lua_pushstring(L, cfg->scripts_dir);
        lua_pushlstring(L, name + 10, n - 14);
        rc = imp_vm_pcall(vm, L, 2, 1, err, errlen);
        if (rc) {
            lua_pop(L, 1);
            break;
        }
        lua_pushlstring(L, name + 10, n - 14);
        lua_insert(L, -2);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    return rc;
}

/* package.loaded["impulse.snapshot"] = { root = dir, files = { [name] =
 * source } }: impulse.sandbox loads scripts from it instead of the disk.
 * Stack: unchanged. */
static void push_snapshot(lua_State *L, const struct imp_scripts *scripts)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_createtable(L, 0, 2);
    lua_pushstring(L, scripts->dir);
    lua_setfield(L, -2, "root");
    lua_createtable(L, 0, (int)scripts->n);
    for (size_t i = 0; i < scripts->n; i++) {
        lua_pushlstring(L, scripts->data[i], scripts->lens[i]);
        lua_setfield(L, -2, scripts->names[i]);
    }
    lua_setfield(L, -2, "files");
    lua_setfield(L, -2, "impulse.snapshot");
    lua_pop(L, 2);
}

struct imp_vm *imp_vm_create_test(const struct imp_config *cfg, const luaL_Reg *const *libs,
                                  void *owner, char *err, size_t errlen)
{
    struct imp_vm *vm = vm_base(cfg, libs, owner, 1);
    if (!vm) snprintf(err, errlen, "cannot create a Lua state");
    return vm;
}

struct imp_vm *imp_vm_create(const struct imp_config *cfg, const struct imp_scripts *scripts,
                             const luaL_Reg *const *libs, void *owner, char *err, size_t errlen)
{
    struct imp_vm *vm = vm_base(cfg, libs, owner, 0);
    if (!vm) {
        snprintf(err, errlen, "cannot create a Lua state");
        return NULL;
    }
    lua_State *L = vm->L;
    push_snapshot(L, scripts);

    /* Strings' shared metatable indexes the real string library, which
     * every script and the engine's own Lua share: a script could replace
     * string.format for every later message, or reach string.dump. Method
     * calls get a copy without dump instead, and getmetatable("") answers
     * false, so no script reaches either table. */
    static const char protect_strings[] =
        "local mt = getmetatable('') local view = {} "
        "for k, v in pairs(string) do if k ~= 'dump' then view[k] = v end end "
        "mt.__index = view mt.__metatable = false";
    if (luaL_loadstring(L, protect_strings) != 0 || imp_vm_pcall(vm, L, 0, 0, err, errlen)) {
        if (lua_isstring(L, -1)) snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto fail;
    }

    /* handle = require("impulse.driver").handle */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "impulse.driver");
    if (imp_vm_pcall(vm, L, 1, 1, err, errlen)) goto fail;
    lua_getfield(L, -1, "handle");
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "impulse.driver has no handle function");
        lua_pop(L, 2);
        goto fail;
    }
    vm->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);

    /* policy = require("impulse.sandbox").load_policy(scripts) */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "impulse.sandbox");
    if (imp_vm_pcall(vm, L, 1, 1, err, errlen)) goto fail;
    lua_getfield(L, -1, "load_policy");
    lua_remove(L, -2);
    lua_pushstring(L, cfg->scripts_dir);
    int rc = imp_vm_pcall(vm, L, 1, 1, err, errlen);
    if (rc) {
        if (rc == IMP_ETIMEDOUT)
            snprintf(err + strlen(err), errlen - strlen(err), " while loading %s/push.lua",
                     cfg->scripts_dir);
        goto fail;
    }
    vm->policy_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* provider payload modules: scripts/providers/<name>.lua, each checked
     * now so a broken one fails the load (or the reload) like the policy */
    if (load_providers(vm, cfg, scripts, err, errlen)) goto fail;

    /* the policy's own check, under the budget */
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->policy_ref);
    lua_getfield(L, -1, "check");
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) {
        char inner[2048];
        rc = imp_vm_pcall(vm, L, 0, 2, inner, sizeof(inner));
        if (rc) {
            snprintf(err, errlen, "%s/push.lua: check() failed: %s", cfg->scripts_dir, inner);
            goto fail;
        }
        /* check() may also answer nil, err */
        if (lua_isnil(L, -2) && !lua_isnil(L, -1)) {
            snprintf(err, errlen, "%s/push.lua: check() failed: %s", cfg->scripts_dir,
                     lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no reason)");
            lua_pop(L, 2);
            goto fail;
        }
        lua_pop(L, 2);
    } else {
        lua_pop(L, 1);
    }

    memcpy(vm->hash, scripts->hash, sizeof(vm->hash));
    lua_gc(L, LUA_GCCOLLECT, 0);
    return vm;
fail:
    /* a load error is one line (file:line: message); the traceback only
     * repeats the engine's loader frames */
    {
        char *tb = strstr(err, "\nstack traceback:");
        if (tb) *tb = '\0';
    }
    imp_vm_destroy(vm);
    return NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the .lua files under dir and depth levels of subfolders
 * (providers/, modules a policy requires as "lib.util"). */
static void list_scripts(const char *dir, const char *prefix, char ***names, size_t *n, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d) return;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[1024], rel[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        snprintf(rel, sizeof(rel), "%s%s", prefix, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth > 0) {
            char sub[600];
            snprintf(sub, sizeof(sub), "%s/", rel);
            list_scripts(path, sub, names, n, depth - 1);
        } else if (S_ISREG(st.st_mode) && strlen(de->d_name) > 4 &&
                   strcmp(de->d_name + strlen(de->d_name) - 4, ".lua") == 0) {
            *names = imp_xrealloc(*names, (*n + 1) * sizeof(char *));
            (*names)[(*n)++] = imp_xstrdup(rel);
        }
    }
    closedir(d);
}

struct imp_scripts *imp_scripts_read(const char *dir)
{
    struct imp_scripts *sc = imp_xcalloc(1, sizeof(*sc));
    char **names = NULL;
    size_t n = 0;
    uint64_t h = 0xcbf29ce484222325ULL;
    sc->dir = imp_xstrdup(dir);
    list_scripts(dir, "", &names, &n, 4);
    qsort(names, n, sizeof(char *), cmp_names);
    sc->names = imp_xcalloc(n ? n : 1, sizeof(char *));
    sc->data = imp_xcalloc(n ? n : 1, sizeof(char *));
    sc->lens = imp_xcalloc(n ? n : 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        if (!f) {
            free(names[i]);
            continue;
        }
        struct imp_buf b;
        imp_buf_init(&b);
        char buf[8192];
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0) imp_buf_append(&b, buf, got);
        fclose(f);
        /* the name with its NUL, then the contents in 4 KiB pieces: the
         * version hash scripts had before snapshots, unchanged */
        h = (h ^ imp_fnv1a64(names[i], strlen(names[i]) + 1)) * 0x100000001b3ULL;
        for (size_t off = 0; off < b.len; off += 4096)
            h = (h ^ imp_fnv1a64(b.data + off, IMP_MIN((size_t)4096, b.len - off))) *
                0x100000001b3ULL;
        sc->names[sc->n] = names[i];
        sc->data[sc->n] = b.data ? b.data : imp_xstrdup("");
        sc->lens[sc->n] = b.len;
        sc->n++;
    }
    free(names);
    snprintf(sc->hash, sizeof(sc->hash), "%016llx", (unsigned long long)h);
    return sc;
}

void imp_scripts_free(struct imp_scripts *sc)
{
    if (!sc) return;
    for (size_t i = 0; i < sc->n; i++) {
        free(sc->names[i]);
        free(sc->data[i]);
    }
    free(sc->names);
    free(sc->data);
    free(sc->lens);
    free(sc->dir);
    free(sc);
}

void imp_vm_destroy(struct imp_vm *vm)
{
    if (!vm) return;
    if (vm->L) lua_close(vm->L);
    free(vm);
}
