/*
 * The VM's protections against a script, without Kafka or a network: each
 * case is a sandboxed script run in a coroutine as a message runs
 * (imp_vm_resume under the budget), and must come back as a classified
 * failure, with the process alive and the VM usable for the next case.
 *
 *   - runaway code the budget must stop wherever it spins: a plain loop,
 *     inside a coroutine the script created (wrap, or resume in a loop
 *     that swallows the result), inside an xpcall message handler, inside
 *     a __tostring that runs while an error is being formatted;
 *   - error values C must describe without running them unprotected: a
 *     table whose __tostring raises, loops, yields; nil; a table;
 *   - strings' shared metatable: no script reaches the string library
 *     behind it (dump, or replacing a method for every later message).
 *
 * A case that is never stopped hangs the test: ctest's timeout fails it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "base/config.h"
#include "push/worker_int.h"
#include "script/task.h"
#include "script/vm.h"
#include "t.h"

static char dir[256];

/* sleep_ms(n): n ms that pass on the wall clock but not on the thread's
 * CPU clock, as when the kernel deschedules a worker on a busy host */
static int l_sleep_ms(lua_State *L)
{
    usleep((useconds_t)(luaL_checknumber(L, 1) * 1000));
    return 0;
}

static const luaL_Reg test_lib[] = {{"sleep_ms", l_sleep_ms}, {NULL, NULL}};

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* Runs chunk (engine Lua, outside the sandbox) as one message: returns
 * imp_vm_resume's code, with the error in err. Yields are answered with
 * nothing, as an engine call would answer. */
static int run_chunk(struct imp_vm *vm, const char *chunk, char *err, size_t errlen)
{
    lua_State *L = vm->L;
    lua_State *co = lua_newthread(L);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uint64_t charged = 0;
    err[0] = '\0';
    if (luaL_loadstring(co, chunk) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(co, -1));
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return -1000;
    }
    int st = imp_vm_resume(vm, co, 0, &charged, err, errlen);
    for (int i = 0; st == 1 && i < 100; i++) st = imp_vm_resume(vm, co, 0, &charged, err, errlen);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    lua_settop(L, 0);
    return st;
}

/* Runs scripts dir/<name>.lua (a sandboxed chunk returning a function) and
 * then that function, as one message. */
static int run_case(struct imp_vm *vm, const char *name, char *err, size_t errlen)
{
    char chunk[1024];
    snprintf(chunk, sizeof(chunk),
             "local sb = require 'impulse.sandbox' "
             "local f = sb.load_file('%s/%s.lua', '%s', {}) "
             "return f()",
             dir, name, dir);
    return run_chunk(vm, chunk, err, errlen);
}

struct expect {
    const char *name;
    const char *code;
    int status;
    const char *in_error; /* a part of the error text, or NULL */
};

static const struct expect cases[] = {
    {"loop", "return function() while true do end end", IMP_ETIMEDOUT, "budget exceeded"},
    {"wrap_loop",
     "return function() local f = coroutine.wrap(function() while true do end end) "
     "return f() end",
     IMP_ETIMEDOUT, "budget exceeded"},
    /* the script swallows what resume returns and goes on */
    {"resume_swallowed",
     "return function() while true do "
     "local co = coroutine.create(function() while true do end end) "
     "local ok = coroutine.resume(co) end end",
     IMP_ETIMEDOUT, "budget exceeded"},
    {"resume_then_loop",
     "return function() "
     "local co = coroutine.create(function() while true do end end) "
     "coroutine.resume(co) while true do end end",
     IMP_ETIMEDOUT, "budget exceeded"},
    {"xpcall_handler_loop",
     "return function() while true do "
     "xpcall(function() error('x') end, function() while true do end end) end end",
     IMP_ETIMEDOUT, "budget exceeded"},
    {"pcall_in_handler",
     "return function() while true do xpcall(function() error('x') end, "
     "function() pcall(function() while true do end end) return 'h' end) end end",
     IMP_ETIMEDOUT, "budget exceeded"},
    {"tostring_loops",
     "return function() error(setmetatable({}, {__tostring = function() while true do end "
     "end})) end",
     IMP_ESCRIPT, "its __tostring failed"},
    {"tostring_raises",
     "return function() error(setmetatable({}, {__tostring = function() error('x') end})) end",
     IMP_ESCRIPT, "its __tostring failed"},
    {"tostring_yields",
     "return function() error(setmetatable({}, {__tostring = function() "
     "coroutine.yield() end})) end",
     IMP_ESCRIPT, "its __tostring failed"},
    {"tostring_bomb",
     "return function() error(setmetatable({}, {__tostring = function() local t = {} "
     "for i = 1, 1e9 do t[i] = string.rep('x', 1048576) .. i end end})) end",
     IMP_ESCRIPT, "its __tostring failed"},
    {"tostring_ok",
     "return function() error(setmetatable({}, {__tostring = function() return 'custom' end})) "
     "end",
     IMP_ESCRIPT, "custom"},
    {"error_nil", "return function() error(nil) end", IMP_ESCRIPT, "nil value"},
    {"error_table", "return function() error({}) end", IMP_ESCRIPT, "table value"},
    {"error_index_raises",
     "return function() error(setmetatable({}, {__index = function() error('y') end})) end",
     IMP_ESCRIPT, "table value"},
    /* strings: the metatable is hidden, the library behind methods has no
     * dump, and what a script writes there reaches nothing */
    {"string_dump", "return function() assert(('').dump == nil, 'dump reachable') end", 0, NULL},
    {"string_replace",
     "return function() local mt = getmetatable('') "
     "if mt then mt.__index.rep = function() return 'evil' end end "
     "assert(('x'):rep(2) == 'xx', 'a method was replaced') end",
     0, NULL},
};

int main(void)
{
    char err[4096];
    snprintf(dir, sizeof(dir), "/tmp/impulse-test-vm-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    write_file("push.lua", "return { route = function(msg) return { msg.recvID } end }\n");
    for (size_t i = 0; i < IMP_ARRAY_LEN(cases); i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s.lua", cases[i].name);
        write_file(name, cases[i].code);
    }
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "kafka: {address: [127.0.0.1:9092]}\n"
             "redis: {address: [127.0.0.1:6379]}\n"
             "discovery: {etcd: {address: [127.0.0.1:2379]}}\n"
             "impulse: {scripts: %s, scriptBudgetMs: 50, scriptMemoryMB: 64}\n",
             dir);
    struct imp_config *cfg = imp_config_load_text(yaml, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "config: %s\n", err);
        return 2;
    }
    struct imp_host host = {.cfg = cfg};
    const luaL_Reg *libs[8];
    size_t nlibs = 0;
    for (; imp_core_libs[nlibs]; nlibs++) libs[nlibs] = imp_core_libs[nlibs];
    libs[nlibs++] = test_lib;
    libs[nlibs] = NULL;
    struct imp_scripts *scripts = imp_scripts_read(dir);
    struct imp_vm *vm = imp_vm_create(cfg, scripts, libs, &host, err, sizeof(err));
    imp_scripts_free(scripts);
    if (!vm) {
        fprintf(stderr, "vm: %s\n", err);
        return 2;
    }

    /* The budget is CPU time: 200 ms asleep inside a message (a thread
     * descheduled for that long), then 200 ms more across a yield, cost
     * it nothing; 200 ms of work in Lua is stopped. */
    {
        int st = run_chunk(vm,
                           "local core = require 'impulse.core' core.sleep_ms(200) "
                           "coroutine.yield() core.sleep_ms(200) return 'done'",
                           err, sizeof(err));
        if (st != 0) fprintf(stderr, "sleep: status %d, error: %.300s\n", st, err);
        CHECK(st == 0);
        st = run_chunk(vm, "local t0 = os.clock() while os.clock() - t0 < 0.2 do end return 'done'",
                       err, sizeof(err));
        CHECK(st == IMP_ETIMEDOUT);
    }

    for (size_t i = 0; i < IMP_ARRAY_LEN(cases); i++) {
        const struct expect *c = &cases[i];
        int st = run_case(vm, c->name, err, sizeof(err));
        int ok = st == c->status && (!c->in_error || strstr(err, c->in_error));
        if (!ok)
            fprintf(stderr, "case %s: status %d (want %d), error: %.300s\n", c->name, st, c->status,
                    err);
        CHECK(ok);
        /* the VM still runs an ordinary message after each case */
        CHECK(run_case(vm, "string_dump", err, sizeof(err)) == 0);
    }

    /* the returned metatable is false, not the table */
    {
        lua_State *L = vm->L;
        lua_getglobal(L, "getmetatable");
        lua_pushliteral(L, "");
        CHECK(lua_pcall(L, 1, 1, 0) == 0 && lua_isboolean(L, -1) && !lua_toboolean(L, -1));
        lua_settop(L, 0);
    }

    imp_vm_destroy(vm);
    imp_config_destroy(cfg);
    for (size_t i = 0; i < IMP_ARRAY_LEN(cases); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.lua", dir, cases[i].name);
        unlink(path);
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/push.lua", dir);
    unlink(path);
    rmdir(dir);
    return t_done("vm");
}
