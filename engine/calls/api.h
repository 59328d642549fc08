/*
 * Engine calls for scripts beyond group members: any OpenIM RPC (by method
 * path, request and reply as tables), Redis commands, HTTP requests, Kafka
 * produce, and script metrics. Each is a lua_CFunction registered in
 * impulse.core (upvalue 1: the worker); the ones that wait on the network
 * return true (pending) and the Lua wrapper yields (task.h).
 */
#ifndef IMP_API_H
#define IMP_API_H

#include <lua.h>

struct imp_host;

int imp_lua_rpc(lua_State *L);
int imp_lua_redis(lua_State *L);
int imp_lua_http(lua_State *L);
int imp_lua_produce(lua_State *L);
int imp_lua_metric(lua_State *L);

/* Per-worker clients the calls use, created on first use. */
struct imp_api_clients;
void imp_api_clients_destroy(struct imp_api_clients *c);

#endif
