/*
 * C helpers of the providers' transports (provider.h): JWT signatures
 * (RS256, ES256), base64url, SHA-256, the count of users with no provider,
 * and the process-wide auth token store. Called from Lua on any worker;
 * none yields. The token store is the only shared state (one mutex); keys
 * are never copied into an error message or a log line.
 */
#include "calls/provider.h"

#include <lauxlib.h>
#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/metrics.h"

int imp_lua_provider_skip(lua_State *L)
{
    imp_metrics_inc("impulse_offline_push_total", "provider=\"none\",result=\"skipped\"",
                    (int64_t)luaL_checkinteger(L, 1));
    return 0;
}

/* ---------- JWT signatures ---------- */

static int ssl_fail(lua_State *L, const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[256];
    ERR_error_string_n(e, msg, sizeof(msg));
    ERR_clear_error();
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, e ? msg : "unknown error");
    return 2;
}

int imp_lua_jwt_sign(lua_State *L)
{
    const char *alg = luaL_checkstring(L, 1);
    size_t klen, ilen;
    const char *pem = luaL_checklstring(L, 2, &klen);
    const char *input = luaL_checklstring(L, 3, &ilen);
    int es = strcmp(alg, "ES256") == 0;
    if (!es && strcmp(alg, "RS256") != 0) return luaL_error(L, "jwt_sign: unknown alg %s", alg);

    BIO *bio = BIO_new_mem_buf(pem, (int)klen);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!key) return ssl_fail(L, "the private key does not parse as PEM");
    if (es ? EVP_PKEY_get_base_id(key) != EVP_PKEY_EC : EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        lua_pushnil(L);
        lua_pushfstring(L, "the private key is not an %s key", es ? "EC (P-256)" : "RSA");
        return 2;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t slen = 0;
    unsigned char *sig = NULL;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(ctx, NULL, &slen, (const unsigned char *)input, ilen) == 1;
    if (ok) {
        sig = imp_xmalloc(slen);
        ok = EVP_DigestSign(ctx, sig, &slen, (const unsigned char *)input, ilen) == 1;
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    if (!ok) {
        free(sig);
        return ssl_fail(L, "signing failed");
    }
    if (!es) {
        lua_pushlstring(L, (const char *)sig, slen);
        free(sig);
        return 1;
    }
    /* ECDSA: OpenSSL gives DER SEQUENCE{r, s}; JWS wants r‖s, 32 bytes each */
    const unsigned char *p = sig;
    ECDSA_SIG *es_sig = d2i_ECDSA_SIG(NULL, &p, (long)slen);
    free(sig);
    if (!es_sig) return ssl_fail(L, "the ECDSA signature does not decode");
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es_sig, &r, &s);
    unsigned char raw[64];
    ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(es_sig);
    if (!ok) {
        lua_pushnil(L);
        lua_pushliteral(L, "the key is not a P-256 key (r or s over 32 bytes)");
        return 2;
    }
    lua_pushlstring(L, (const char *)raw, 64);
    return 1;
}

int imp_lua_b64url(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_base64(&b, s, n);
    if (lua_toboolean(L, 2)) { /* standard base64, padded (Basic auth) */
        lua_pushlstring(L, b.data ? b.data : "", b.len);
        imp_buf_dispose(&b);
        return 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < b.len; i++) {
        char c = b.data[i];
        if (c == '=') break;
        b.data[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    lua_pushlstring(L, b.data ? b.data : "", o);
    imp_buf_dispose(&b);
    return 1;
}

int imp_lua_sha256_hex(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL) != 1) return ssl_fail(L, "sha256");
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < mdlen; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    lua_pushlstring(L, hex, 2 * mdlen);
    return 1;
}

/* ---------- the token store ---------- */

struct token {
    struct token *next;
    char *name, *value;
    double expires_ms;
};

static pthread_mutex_t tokens_lock = PTHREAD_MUTEX_INITIALIZER;
static struct token *tokens;

int imp_lua_token_get(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    pthread_mutex_lock(&tokens_lock);
    for (struct token *t = tokens; t; t = t->next) {
        if (strcmp(t->name, name) != 0) continue;
        lua_pushstring(L, t->value);
        lua_pushnumber(L, t->expires_ms);
        pthread_mutex_unlock(&tokens_lock);
        return 2;
    }
    pthread_mutex_unlock(&tokens_lock);
    lua_pushnil(L);
    return 1;
}

int imp_lua_token_set(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *value = luaL_optstring(L, 2, NULL);
    double expires = luaL_optnumber(L, 3, 0);
    pthread_mutex_lock(&tokens_lock);
    struct token **pp = &tokens;
    while (*pp && strcmp((*pp)->name, name) != 0) pp = &(*pp)->next;
    if (*pp) {
        struct token *t = *pp;
        *pp = t->next;
        free(t->name);
        free(t->value);
        free(t);
    }
    if (value) {
        struct token *t = imp_xcalloc(1, sizeof(*t));
        t->name = imp_xstrdup(name);
        t->value = imp_xstrdup(value);
        t->expires_ms = expires;
        t->next = tokens;
        tokens = t;
    }
    pthread_mutex_unlock(&tokens_lock);
    return 0;
}
