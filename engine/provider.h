/*
 * The offline providers' transports: what the engine does with the
 * requests a payload module (scripts/providers/<name>.lua) built for the
 * users of one toOfflinePush record. Lua calls them through impulse.core
 * (lua/impulse/offline.lua); upvalue 1 is the worker.
 *
 *   provider_send(name, requests, nusers, clientMsgID)
 *       -> true (pending: the coroutine yields for ok, err)
 *        | false, ok, err (done at once)
 *     requests: { { path = string|nil, body = string }, ... }
 *   provider_skip(nusers): users with no provider, counted
 *
 * Transports: "log" (each request becomes a log line; the demo and the
 * tests read them). Getui, FCM, JPush and APNs come with their HTTP/2
 * transports; until then a record for them fails with a clear error and
 * is dead-lettered (impulse replay sends it again later).
 */
#ifndef IMP_PROVIDER_H
#define IMP_PROVIDER_H

#include <lua.h>

int imp_lua_provider_send(lua_State *L);
int imp_lua_provider_skip(lua_State *L);

/* Whether a transport for provider name exists in this build. */
int imp_provider_known(const char *name);

#endif
