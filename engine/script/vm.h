/*
 * A worker's LuaJIT VM: the engine library (lua/impulse), the policy
 * loaded into the sandbox (impulse.sandbox), the C functions scripts reach
 * through `require "impulse.core"`, and the limits that keep a script
 * from taking the worker down:
 *
 *  - memory: a capping allocator; past the cap an allocation made while a
 *    script runs fails and the script gets "not enough memory" (the cap is
 *    enforced only inside protected calls, since a failed allocation in a
 *    lua_push* outside one would abort the process);
 *  - time: a budget of Lua time per message, summed over its resumes,
 *    counted in the worker thread's CPU time (not wall time: a thread the
 *    kernel deschedules is not charged), checked by an instruction-count
 *    hook and at every yield and return. Once the hook has stopped a
 *    message it raises STOP at every count until the message ends, and
 *    core.stopped() lets the sandbox raise it again wherever it surfaces
 *    as something else (an xpcall handler, a script's coroutine). Debian's
 *    LuaJIT never runs hooks inside compiled code, so scripts run with the
 *    JIT off unless impulse.scriptJit says otherwise; nor inside one long
 *    C call (a pattern match), which the budget cannot interrupt;
 *  - error values: whatever a script raises (a table whose __tostring
 *    raises, loops or yields), C turns it into text only inside a
 *    protected call with a budget of its own.
 *
 * Every call from C into Lua goes through imp_vm_pcall or imp_vm_resume,
 * which return an IMP_* code and leave the stack balanced.
 */
#ifndef IMP_VM_H
#define IMP_VM_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

struct imp_vm {
    lua_State *L;
    int tasks;           /* messages running on this VM (owner thread only) */
    struct imp_vm *next; /* the owner's list of retired VMs */
    void *next_owner;    /* the worker a freshly built VM is handed to */
    char hash[17];       /* of the scripts it loaded (hex FNV-1a 64) */
    int policy_ref;      /* the table scripts/push.lua returned */
    int handle_ref;      /* impulse.driver.handle */
    /* limits */
    size_t mem_used;
    size_t mem_cap;
    uint64_t budget_ns; /* per message, of Lua CPU time; 0 = none */
    /* the call or resume running now: saved and restored as one when C
     * runs Lua inside it (error_text) */
    struct imp_vm_run {
        int running;          /* the budget applies */
        int mem_limited;      /* the cap applies (inside protected calls) */
        int stopped;          /* the hook raised STOP in this resume */
        uint64_t start_ns;    /* the thread's CPU time at this resume */
        uint64_t charged_ns;  /* what the message had used before this resume */
        uint64_t excluded_ns; /* engine work done inside this resume (not Lua's) */
        uint64_t check_at_ns; /* monotonic: the budget cannot be spent before */
    } run;
};

/* The scripts folder read at one moment: every .lua file, and those of
 * one level of subfolders (providers/), by name relative to the folder,
 * with the hash /healthz and the route log show. A reload reads the
 * folder once into a snapshot and builds every worker's VM from it, so no
 * VM mixes files of two versions. */
struct imp_scripts {
    char *dir; /* the folder read; its path prefixes the names when loaded */
    size_t n;
    char **names; /* sorted, "push.lua", "providers/fcm.lua" */
    char **data;
    size_t *lens;
    char hash[17]; /* hex FNV-1a 64 of the names and contents */
};

/* Reads dir now. Cannot fail: an unreadable file is left out (the policy's
 * loader then reports it missing). */
struct imp_scripts *imp_scripts_read(const char *dir);
void imp_scripts_free(struct imp_scripts *s);

/* Builds a VM, registers the functions of libs (a NULL-terminated list of
 * luaL_Reg lists) as module "impulse.core" (each gets owner as
 * lightuserdata upvalue 1), loads the driver and the policy into the
 * sandbox from scripts (a snapshot of cfg's scripts folder), checks the
 * policy's shape and runs its check() hook, all under the budget. Returns NULL with "file:line:
 * message" in err. Callable from any thread; the VM is then used by one thread at a time. */
struct imp_vm *imp_vm_create(const struct imp_config *cfg, const struct imp_scripts *scripts,
                             const luaL_Reg *const *libs, void *owner, char *err, size_t errlen);
/* The VM of `impulse test`: the engine module and library, but no sandbox,
 * no budget, no memory cap and no policy loaded (busted needs debug, io and
 * os; the scripts under test are loaded into the sandbox by the specs,
 * through impulse.testing or impulse.sandbox). */
struct imp_vm *imp_vm_create_test(const struct imp_config *cfg, const luaL_Reg *const *libs,
                                  void *owner, char *err, size_t errlen);
void imp_vm_destroy(struct imp_vm *vm);

/* lua_pcall with a traceback handler, under the memory cap and the budget
 * (charged as a fresh message). Stack: function and nargs arguments
 * before; nresults results after on success, nothing on failure (the
 * message and traceback go to err). Returns 0, IMP_ESCRIPT, IMP_ENOMEM or
 * IMP_ETIMEDOUT (budget). */
int imp_vm_pcall(struct imp_vm *vm, lua_State *L, int nargs, int nresults, char *err,
                 size_t errlen);

/* lua_resume(co, nargs) under the memory cap and the budget, charging the
 * time to *charged_ns (the message's Lua time so far, updated). Returns
 * 0 (finished: results on co), 1 (yielded: the yielded values were
 * removed), or IMP_ESCRIPT / IMP_ENOMEM / IMP_ETIMEDOUT with the error and
 * co's traceback in err. */
int imp_vm_resume(struct imp_vm *vm, lua_State *co, int nargs, uint64_t *charged_ns, char *err,
                  size_t errlen);

uint64_t imp_now_ns(void);

/* Engine functions called from a script that do real work in C (the
 * online push, protobuf conversions, the offline hand-off) exclude it from
 * the script's budget: the budget is Lua time. since_ns: imp_now_ns() at
 * the start of that work. Measured on the monotonic clock (cheap) and
 * subtracted from the thread's CPU time: a thread descheduled inside that
 * work is charged less, never more. */
static inline void imp_vm_exclude(struct imp_vm *vm, uint64_t since_ns)
{
    if (vm->run.running) vm->run.excluded_ns += imp_now_ns() - since_ns;
}

/* Registry tables every VM has: message coroutine → task, and coroutines
 * scripts created → their message's coroutine (weak). */
#define IMP_VM_TASKS_KEY   "impulse.tasks"
#define IMP_VM_ADOPTED_KEY "impulse.adopted"

#endif
