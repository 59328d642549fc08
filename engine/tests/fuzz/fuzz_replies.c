/* libFuzzer: the HTTP replies impulse reads in Lua: Getui's, FCM's, APNs'
 * and JPush's answers to pushes and to auth requests, and OpenIM's push
 * webhooks' answers. Those are parsed by the transports
 * (lua/impulse/transport/<name>.lua) and the default policy
 * (scripts/webhooks.lua, scripts/openim.lua), not in C: this target embeds
 * LuaJIT, loads those modules from the repository with the engine's stubs
 * (impulse.testing), and runs fuzz_replies.lua's run(input), which says
 * the input's format. What must hold: a record's outcome or an error
 * text, never a raised Lua error (a reply that breaks the code reading
 * it), user IDs handed on are non-empty strings, and a user whose device
 * push (FCM, APNs) was answered 200 is not dead-lettered (a replay would
 * push it twice).
 *
 * The state allocates with malloc (as the engine's VMs do), so the leak
 * checker sees into Lua's heap (LuaJIT's own allocator is mmap, unseen). */
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static lua_State *L;
static int run_ref;

/* Lua line coverage for libFuzzer, which sees only C's: each line event
 * counts the pair (previous line, this line) of any chunk, AFL-style, in
 * libFuzzer's extra counters. Without it the fuzzer is blind to what the
 * Lua code did and shrinks every input to nothing. */
#define NCOUNTERS (1 << 16)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t counters[NCOUNTERS];
static uint32_t prev;

/* FNV-1a of a chunk's name, not its address: the same counters every run
 * (ctest's fixed seed explores the same inputs), whatever the layout. */
static uint32_t source_hash(const char *src)
{
    static const char *last;
    static uint32_t last_h;
    if (src == last) return last_h;
    uint32_t h = 2166136261u;
    for (const char *p = src; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    last = src;
    last_h = h;
    return h;
}

static void on_line(lua_State *l, lua_Debug *ar)
{
    if (!lua_getinfo(l, "S", ar)) return;
    uint32_t here = source_hash(ar->source) ^ ((uint32_t)ar->currentline * 2654435761u);
    counters[(here ^ prev) % NCOUNTERS]++;
    prev = here >> 1;
}

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

static void init(void)
{
    L = lua_newstate(alloc, NULL);
    if (!L) abort();
    luaL_openlibs(L);
    /* the interpreter only: traces live in mmap'd machine code, where the
     * leak checker cannot see the objects they hold */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, on_line, LUA_MASKLINE, 0);
    lua_getglobal(L, "package");
    lua_pushstring(L, IMPULSE_LUA_DIR "/?.lua;" IMPULSE_LUA_DIR "/?/init.lua;" FUZZ_DIR "/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "fuzz_replies");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "fuzz_replies: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pushstring(L, FUZZ_SCRIPTS_DIR);
    lua_setfield(L, -2, "scripts");
    lua_pushstring(L, FUZZ_DIR "/fixtures");
    lua_setfield(L, -2, "fixtures");
    lua_getfield(L, -1, "run");
    run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
}

static int traceback(lua_State *l)
{
    luaL_traceback(l, l, lua_tostring(l, 1), 1);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) init();
    lua_pushcfunction(L, traceback);
    prev = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, -3) != 0) {
        fprintf(stderr, "fuzz_replies: a raised error: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
