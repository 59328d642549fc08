'use strict';
// Fake APNs provider API: POST /3/device/:token with token-based auth
// (`authorization: bearer <ES256 JWT>`). Success is 200 with an empty body
// and an `apns-id` header; errors are {"reason": "..."} as Apple sends.
// Several apps: config `accounts` [{keyId, teamId, topic, publicKeyPem}]
// beside the main one, told apart by the token's kid.

const crypto = require('crypto');
const { json, empty, header, mergeConfig, checks, cachedKey, pemCheck } = require('./common');
const jwt = require('./jwt');

const PUSH_TYPES = new Set([
  'alert', 'background', 'location', 'voip', 'complication', 'fileprovider', 'mdm', 'liveactivity', 'pushtotalk',
]);
const TOKEN_MAX_AGE_S = 3600;
const FUTURE_SKEW_S = 300;
const MAX_PAYLOAD_BYTES = 4096;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class Apns {
  constructor() {
    this.config = { keyId: 'KEY123', teamId: 'TEAM123', topic: 'com.example.app', publicKeyPem: null, accounts: [] };
    this.unregistered = new Set(); // device tokens answered 410
    this.jwtsSeen = new Set(); // distinct provider tokens presented (valid or not)
    this.lastIat = null; // iat of the newest distinct one
    this.key = cachedKey('ec-p256');
  }

  configure(patch) {
    return mergeConfig(this.config, patch, {
      keyId: checks.string, teamId: checks.string, topic: checks.string, publicKeyPem: pemCheck('ec-p256'),
      accounts: checks.accounts({
        keyId: checks.string, teamId: checks.string, topic: checks.string, publicKeyPem: pemCheck('ec-p256'),
      }),
    }, 'POST /config/apns');
  }

  // Called for every APNs request on arrival (before faults): note a
  // provider token not seen before. Returns true for a new one, which is
  // what the stats count as an APNs "auth call" (a fresh signature).
  isAuthCall(ctx) {
    const m = /^bearer\s+(\S+)$/i.exec(header(ctx, 'authorization') || '');
    if (!m || this.jwtsSeen.has(m[1])) return false;
    this.jwtsSeen.add(m[1]);
    try { this.lastIat = jwt.decode(m[1]).claims.iat ?? null; } catch (e) { this.lastIat = null; }
    return true;
  }

  jwtStats() { return { count: this.jwtsSeen.size, lastIat: this.lastIat }; }
  resetJwtStats() { const n = this.jwtsSeen.size; this.jwtsSeen.clear(); this.lastIat = null; return { cleared: n }; }

  // The reason the provider token is refused, or null (and the account
  // of its kid in out.account).
  tokenProblem(ctx, out = {}) {
    const auth = header(ctx, 'authorization');
    if (!auth) return 'MissingProviderToken';
    const m = /^bearer\s+(\S+)$/i.exec(auth);
    if (!m) return 'InvalidProviderToken';
    let t, cfg;
    try {
      t = jwt.decode(m[1]);
      cfg = [this.config, ...this.config.accounts].find((a) => a.keyId === t.header.kid);
      if (t.header.alg !== 'ES256' || !cfg || !cfg.publicKeyPem) return 'InvalidProviderToken';
      out.account = cfg;
      jwt.verifySignature(t, 'ES256', cfg === this.config ? this.key(cfg.publicKeyPem) : crypto.createPublicKey(cfg.publicKeyPem));
    } catch (e) {
      return 'InvalidProviderToken';
    }
    const { iss, iat } = t.claims;
    const now = ctx.now / 1000;
    if (iss !== cfg.teamId || typeof iat !== 'number' || iat > now + FUTURE_SKEW_S) return 'InvalidProviderToken';
    if (now - iat > TOKEN_MAX_AGE_S) return 'ExpiredProviderToken';
    return null;
  }

  handle(ctx) {
    // Apple sends an apns-id with every reply: the request's own when it
    // gave a valid one, else a new one.
    const given = header(ctx, 'apns-id');
    const id = given && UUID.test(given) ? given.toLowerCase() : crypto.randomUUID();
    const fail = (status, reason, extra = {}) => json(status, { reason, ...extra }, { 'apns-id': id });

    const m = /^\/3\/device\/([^/]+)$/.exec(ctx.pathname);
    if (!m) return fail(404, 'BadPath');
    if (ctx.method !== 'POST') return fail(405, 'MethodNotAllowed');
    const who = {};
    const problem = this.tokenProblem(ctx, who);
    if (problem) return fail(403, problem);
    if (header(ctx, 'apns-topic') !== who.account.topic) return fail(400, 'TopicDisallowed');
    if (!PUSH_TYPES.has(header(ctx, 'apns-push-type'))) return fail(400, 'InvalidPushType');
    const prio = header(ctx, 'apns-priority');
    if (prio !== undefined && !['1', '5', '10'].includes(prio)) return fail(400, 'BadPriority');
    const exp = header(ctx, 'apns-expiration');
    if (exp !== undefined && !/^\d+$/.test(exp)) return fail(400, 'BadExpirationDate');
    const collapse = header(ctx, 'apns-collapse-id');
    if (collapse !== undefined && Buffer.byteLength(collapse) > 64) return fail(400, 'BadCollapseId');
    const device = m[1];
    if (this.unregistered.has(device)) return fail(410, 'Unregistered', { timestamp: ctx.now });
    if (!/^[0-9a-fA-F]{64}$/.test(device)) return fail(400, 'BadDeviceToken');
    if (ctx.text === '') return fail(400, 'PayloadEmpty');
    if (Buffer.byteLength(ctx.text) > MAX_PAYLOAD_BYTES) return fail(413, 'PayloadTooLarge');
    return empty(200, { 'apns-id': id });
  }
}

module.exports = { Apns };
