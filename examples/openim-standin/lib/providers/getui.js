'use strict';
// Fake Getui RestAPI v2, base path /v2/:appId. Getui answers HTTP 200 for
// application errors and puts the outcome in `code` (0 = success).
//   POST /v2/:appId/auth               {sign, timestamp, appkey} → token
//   POST /v2/:appId/push/single/alias  one alias
//   POST /v2/:appId/push/list/message  create a task → taskid
//   POST /v2/:appId/push/list/alias    send a created task to ≤ 1000 aliases
// Every call but auth needs header `token` (an issued, unexpired token of
// that appId). Several apps: config `accounts` [{appId, appKey,
// masterSecret}] beside the main one.

const crypto = require('crypto');
const {
  json, header, parseJsonObject, isObject, nonEmptyString, mergeConfig, checks,
} = require('./common');

const TOKEN_INVALID = { code: 10001, msg: 'token expired or invalid' };
const MAX_ALIASES = 1000;

class Getui {
  constructor() {
    this.config = { appId: 'app1', appKey: 'key1', masterSecret: 'secret1', tokenTtlMs: 86400000 };
    this.config.accounts = [];
    this.tokens = new Map(); // token → { expiry (ms since epoch), appId }
    this.taskIds = new Set(); // taskids issued by push/list/message
    this.seq = 0;
  }

  configure(patch) {
    return mergeConfig(this.config, patch, {
      appId: checks.string, appKey: checks.string, masterSecret: checks.string, tokenTtlMs: checks.positiveInt,
      accounts: checks.accounts({ appId: checks.string, appKey: checks.string, masterSecret: checks.string }),
    }, 'POST /config/getui');
  }

  expireTokens() { const n = this.tokens.size; this.tokens.clear(); return n; }

  isAuthCall(ctx) { return /^\/v2\/[^/]+\/auth$/.test(ctx.pathname); }

  handle(ctx) {
    const m = /^\/v2\/([^/]+)(\/.*)$/.exec(ctx.pathname);
    const route = m && ['/auth', '/push/single/alias', '/push/list/message', '/push/list/alias'].includes(m[2]) ? m[2] : null;
    if (!route) return json(404, { code: 404, msg: `no such Getui endpoint: ${ctx.pathname}` });
    if (ctx.method !== 'POST') return json(405, { code: 405, msg: `${ctx.method} not allowed, use POST` });
    const cfg = m[1] === this.config.appId ? this.config : this.config.accounts.find((a) => a.appId === m[1]);
    if (!cfg) return json(200, { code: 20001, msg: `unknown appId ${m[1]}` });

    if (route !== '/auth') {
      const t = this.tokens.get(header(ctx, 'token'));
      if (!(t && t.expiry > ctx.now && t.appId === cfg.appId)) return json(200, TOKEN_INVALID);
    }
    const body = parseJsonObject(ctx.text);
    if (body.error) return json(200, { code: 20001, msg: body.error });
    const b = body.value;
    const bad = (msg) => json(200, { code: 20001, msg });

    if (route === '/auth') {
      if (typeof b.sign !== 'string' || !['string', 'number'].includes(typeof b.timestamp) || typeof b.appkey !== 'string') {
        return bad('sign, timestamp and appkey are required');
      }
      const want = crypto.createHash('sha256').update(cfg.appKey + String(b.timestamp) + cfg.masterSecret).digest('hex');
      if (b.appkey !== cfg.appKey || b.sign.toLowerCase() !== want) return bad('sign error');
      const token = `gt-${++this.seq}`;
      const expiry = ctx.now + this.config.tokenTtlMs;
      this.tokens.set(token, { expiry, appId: cfg.appId });
      return json(200, { code: 0, msg: 'success', data: { expire_time: String(expiry), token } });
    }

    // request_id: required for a single push, checked when given elsewhere.
    if (route === '/push/single/alias' || b.request_id !== undefined) {
      if (typeof b.request_id !== 'string' || b.request_id.length < 10 || b.request_id.length > 32) {
        return bad('request_id must be a string of 10 to 32 characters');
      }
    }
    const aliases = isObject(b.audience) && Array.isArray(b.audience.alias) ? b.audience.alias : null;
    if (aliases && !aliases.every(nonEmptyString)) return bad('audience.alias must hold non-empty strings');

    if (route === '/push/single/alias') {
      if (!aliases || aliases.length !== 1) return bad('audience.alias must be an array of exactly 1 alias');
      if (!isObject(b.push_message)) return bad('push_message (an object) is required');
      const taskid = `RASA-${++this.seq}`;
      return json(200, { code: 0, msg: '', data: { [taskid]: { [aliases[0]]: 'successed_online' } } });
    }
    if (route === '/push/list/message') {
      if (!isObject(b.push_message)) return bad('push_message (an object) is required');
      const taskid = `RASL-${++this.seq}`;
      this.taskIds.add(taskid);
      return json(200, { code: 0, msg: '', data: { taskid } });
    }
    // /push/list/alias
    if (!this.taskIds.has(b.taskid)) return bad(`taskid ${JSON.stringify(b.taskid)} not found (create it with push/list/message)`);
    if (!aliases || aliases.length === 0) return bad('audience.alias must be a non-empty array');
    if (aliases.length > MAX_ALIASES) return bad(`alias count over ${MAX_ALIASES}`);
    if (b.is_async !== undefined && typeof b.is_async !== 'boolean') return bad('is_async must be a boolean');
    return json(200, { code: 0, msg: '', data: {} });
  }
}

module.exports = { Getui };
