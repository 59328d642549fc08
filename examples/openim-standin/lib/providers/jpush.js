'use strict';
// Fake JPush v3: POST /v3/push with HTTP Basic base64(appKey:masterSecret)
// and an alias audience. Errors are {"error":{"code","message"}} with
// JPush's codes: 1002 missing parameter, 1003 invalid parameter, 1004
// authentication failed, 1011 no user for this audience. Several apps:
// config `accounts` [{appKey, masterSecret}] beside the main one.

const {
  json, header, parseJsonObject, isObject, nonEmptyString, mergeConfig, checks,
} = require('./common');

const MAX_ALIASES = 1000;
const jpushError = (status, code, message) => json(status, { error: { code, message } });

class JPush {
  constructor() {
    this.config = { appKey: 'jkey', masterSecret: 'jsecret', accounts: [] };
    this.unregistered = new Set(); // aliases no device is bound to
    this.seq = 0;
  }

  configure(patch) {
    return mergeConfig(this.config, patch, {
      appKey: checks.string, masterSecret: checks.string,
      accounts: checks.accounts({ appKey: checks.string, masterSecret: checks.string }),
    }, 'POST /config/jpush');
  }

  handle(ctx) {
    if (ctx.pathname !== '/v3/push') return jpushError(404, 1003, `no such JPush endpoint: ${ctx.pathname}`);
    if (ctx.method !== 'POST') return jpushError(405, 1001, 'Only support HTTP Post method');
    const auth = /^Basic\s+(\S+)$/i.exec(header(ctx, 'authorization') || '');
    const wants = [this.config, ...this.config.accounts].map((a) => `${a.appKey}:${a.masterSecret}`);
    if (!auth || !wants.includes(Buffer.from(auth[1], 'base64').toString('utf8'))) {
      return jpushError(401, 1004, 'Authen failed');
    }
    const body = parseJsonObject(ctx.text);
    if (body.error) return jpushError(400, 1003, body.error);
    const b = body.value;
    if (b.platform === undefined) return jpushError(400, 1002, 'Missing parameter: platform');
    if (b.notification === undefined && b.message === undefined) {
      return jpushError(400, 1002, 'Missing parameter: notification or message');
    }
    const aliases = isObject(b.audience) ? b.audience.alias : undefined;
    if (!Array.isArray(aliases) || aliases.length === 0) {
      return jpushError(400, 1003, 'audience.alias must be a non-empty array (the only audience this fake serves)');
    }
    if (!aliases.every(nonEmptyString)) return jpushError(400, 1003, 'audience.alias must hold non-empty strings');
    if (aliases.length > MAX_ALIASES) return jpushError(400, 1003, `alias count over ${MAX_ALIASES}`);
    if (aliases.every((a) => this.unregistered.has(a))) {
      return jpushError(400, 1011, 'cannot find user by this audience or has been inactive for more than 255 days');
    }
    const sendno = isObject(b.options) && b.options.sendno !== undefined ? b.options.sendno : 0;
    return json(200, { sendno: String(sendno), msg_id: String(++this.seq) });
  }
}

module.exports = { JPush };
