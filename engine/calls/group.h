/*
 * Group members for scripts: impulse.group.member_ids(groupID), served from
 * the shared group cache (OpenIM's localcache: GROUP_MEMBER_IDS:<groupID>,
 * invalidated by DELETE_CACHE_GROUP) in front of
 * /openim.group.group/getGroupMemberUserIDs. One fetch per group at a time
 * across all workers: other messages wanting the same group wait for it
 * (their coroutines yield; no thread blocks), each until its own deadline.
 */
#ifndef IMP_GROUP_H
#define IMP_GROUP_H

#include <lua.h>
#include <stddef.h>

#include "base/config.h"
#include "state/cache/blob.h"

struct imp_localcache;

#define IMP_GROUP_MEMBERS_METHOD "/openim.group.group/getGroupMemberUserIDs"
#define IMP_GROUP_CACHE_PREFIX   "GROUP_MEMBER_IDS:"

/* The shared cache for group members, sized by local-cache.group. */
struct imp_localcache *imp_group_cache_create(const struct imp_config *cfg);

/* Lua: member_ids(groupID) -> true (pending; the wrapper yields and gets
 * ids | nil, err) | false, ids | false, nil, err. Upvalue 1: the worker. */
int imp_lua_group_member_ids(lua_State *L);

/* The blob format of a member list: u32 count, then per member u32 length
 * and the bytes. Exposed for tests. */
struct imp_blob *imp_group_members_encode(char *const *ids, size_t n);
/* Pushes the list as a Lua array; returns 0 or IMP_EPROTO for a blob that
 * is not in that format (nothing pushed). */
int imp_group_members_push(lua_State *L, const struct imp_blob *b);
/* The same from len bytes at data (a value copied out of the cache). */
int imp_group_members_push_bytes(lua_State *L, const char *data, size_t len);

#endif
