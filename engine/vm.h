/*
 * A worker's LuaJIT VM: the engine library (lua/impulse), the policy
 * (scripts/push.lua) and the C functions scripts reach through
 * `require "impulse.core"`.
 *
 * Every call from C into Lua goes through imp_vm_pcall, which returns an
 * IMP_* code and leaves the stack balanced. A message runs in its own
 * coroutine (imp_vm_thread_new); engine calls that wait on the network
 * yield it, and the worker resumes it with the answer.
 */
#ifndef IMP_VM_H
#define IMP_VM_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

#include "config.h"

struct imp_vm {
    lua_State *L;
    int policy_ref; /* the table scripts/push.lua returned */
    int handle_ref; /* impulse.driver.handle */
};

/* Builds a VM, registers funcs as module "impulse.core" (each gets owner as
 * lightuserdata upvalue 1), loads the driver and the policy, and checks the
 * policy's shape. Returns NULL with "file:line: message" in err. */
struct imp_vm *imp_vm_create(const struct imp_config *cfg, const luaL_Reg *funcs, void *owner,
                             char *err, size_t errlen);
void imp_vm_destroy(struct imp_vm *vm);

/* lua_pcall with a traceback handler. Stack: function and nargs arguments
 * before; nresults results after on success, nothing on failure (the
 * message and traceback go to err). Returns 0, IMP_ESCRIPT or IMP_ENOMEM. */
int imp_vm_pcall(lua_State *L, int nargs, int nresults, char *err, size_t errlen);

/* After lua_resume on co failed: writes the error and co's traceback to
 * err. Does not touch co's stack beyond reading it. */
void imp_vm_resume_error(lua_State *L, lua_State *co, int status, char *err, size_t errlen);

#endif
