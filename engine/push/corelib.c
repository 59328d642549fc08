/*
 * The module scripts `require "impulse.core"`: the engine's functions
 * from every layer, gathered in one list the VM registers (script/vm.c),
 * each with the worker's host as upvalue 1. Adding an engine call means
 * adding its list (or its line) here; DESIGN.md §4 says which calls may
 * yield and how.
 */
#include <lauxlib.h>

#include "calls/api.h"
#include "calls/group.h"
#include "calls/httpbatch.h"
#include "calls/provider.h"
#include "push/worker_int.h"
#include "script/baselib.h"
#include "script/task.h"

/* the calls layer: OpenIM services, Redis, HTTP, Kafka, metrics, group
 * members, the providers' sender and their crypto */
static const luaL_Reg calls_lib[] = {
    {"rpc", imp_lua_rpc},
    {"redis", imp_lua_redis},
    {"http", imp_lua_http},
    {"produce", imp_lua_produce},
    {"metric", imp_lua_metric},
    {"group_member_ids", imp_lua_group_member_ids},
    {"provider_skip", imp_lua_provider_skip},
    {"http_batch", imp_lua_http_batch},
    {"jwt_sign", imp_lua_jwt_sign},
    {"b64url", imp_lua_b64url},
    {"sha256_hex", imp_lua_sha256_hex},
    {"token_get", imp_lua_token_get},
    {"token_set", imp_lua_token_set},
    {NULL, NULL},
};

/* the push pipeline: the online push, the offline hand-off, partial dead
 * letters of a toOfflinePush record */
static const luaL_Reg push_lib[] = {
    {"push_online", imp_lua_push_online},
    {"offline_handoff", imp_lua_offline_handoff},
    {"offline_dead_letter", imp_lua_offline_dead_letter},
    {"providers", imp_lua_providers},
    {NULL, NULL},
};

const luaL_Reg *const imp_core_libs[] = {imp_baselib, imp_task_lib, calls_lib, push_lib, NULL};
