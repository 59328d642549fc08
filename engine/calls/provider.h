/*
 * What the providers' transports (lua/impulse/transport/<name>.lua) need
 * from C beyond HTTP (httpbatch.h), registered in impulse.core:
 *
 *   provider_skip(nusers)            users with no provider, counted
 *   jwt_sign(alg, key_pem, input)    -> signature bytes | nil, err
 *       RS256 (FCM's service account) or ES256 (APNs: the raw 64-byte
 *       r‖s JWT needs, converted from OpenSSL's DER); the key never
 *       appears in an error
 *   b64url(bytes[, standard])        -> base64url without padding, or
 *                                       standard padded base64
 *   sha256_hex(bytes)                -> lower-case hex digest
 *   token_get(name)                  -> value, expires_ms | nil
 *   token_set(name, value|nil, expires_ms)
 *       process-wide store of auth tokens, shared by every worker and
 *       kept across script reloads (wall-clock milliseconds)
 */
#ifndef IMP_PROVIDER_H
#define IMP_PROVIDER_H

#include <lua.h>

int imp_lua_provider_skip(lua_State *L);
int imp_lua_jwt_sign(lua_State *L);
int imp_lua_b64url(lua_State *L);
int imp_lua_sha256_hex(lua_State *L);
int imp_lua_token_get(lua_State *L);
int imp_lua_token_set(lua_State *L);

#endif
