/*
 * Protobuf messages as Lua tables, through protobuf-c's descriptors, so a
 * script can call any OpenIM method without C code per message type.
 * Field names are the .proto names (`groupID`, `userIDs`); 64-bit integers
 * become Lua numbers (exact up to 2^53); bytes are Lua strings; a map
 * field is a table; repeated fields are arrays.
 */
#ifndef IMP_PBTABLE_H
#define IMP_PBTABLE_H

#include <lua.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* Pushes msg as a table (every field, defaults included). Stack: +1. */
void imp_pb_push(lua_State *L, const ProtobufCMessage *msg);

/* A message of descriptor d from the table at idx (missing fields keep
 * their defaults; unknown keys are errors). Free with
 * protobuf_c_message_free_unpacked(m, NULL). Returns NULL with the
 * offending field named in err. Stack: unchanged. */
ProtobufCMessage *imp_pb_from_table(lua_State *L, int idx, const ProtobufCMessageDescriptor *d,
                                    char *err, size_t errlen);

/* The method descriptor of a full gRPC path ("/openim.group.group/dismissGroup")
 * among OpenIM's services impulse knows, or NULL. */
const ProtobufCMethodDescriptor *imp_pb_method(const char *path, const char **service_pkg);

#endif
