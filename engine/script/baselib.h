/*
 * impulse.core's basic functions (baselib.c): log(level, opid, text),
 * log_fields(level, opid, msg, json), log_level(), now_ms(), wall_ms(),
 * config(). Upvalue 1: the host.
 */
#ifndef IMP_BASELIB_H
#define IMP_BASELIB_H

#include <lauxlib.h>

extern const luaL_Reg imp_baselib[];

#endif
