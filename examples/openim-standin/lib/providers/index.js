'use strict';
// `providers.js`: fakes of the four offline push providers (Getui, FCM,
// JPush, APNs) on one HTTPS server, plus the JSON control server tests use
// to configure them, script faults and read what was received.

const { startControl } = require('../control');
const { log, writeInfoAtomic, BadRequest, requireObject } = require('../util');
const { PROVIDERS, json, tokenSetRoutes } = require('./common');
const { startHttps, Recorder } = require('./server');
const { Faults } = require('./faults');
const { Getui } = require('./getui');
const { Fcm } = require('./fcm');
const { JPush } = require('./jpush');
const { Apns } = require('./apns');

async function runProviders(opts, life) {
  let httpsAddr = null; // "host:port" once listening
  const getui = new Getui();
  const fcm = new Fcm(() => `https://${httpsAddr}/token`);
  const jpush = new JPush();
  const apns = new Apns();
  const faults = new Faults();
  const recorder = new Recorder(opts.maxRecords);

  // ---- HTTPS (the providers) ----------------------------------------------
  const https = await startHttps({
    host: opts.host, port: opts.port, cert: opts.cert, key: opts.key, quiet: opts.quiet, faults, recorder,
    handlers: {
      getui: (ctx) => getui.handle(ctx),
      'fcm-auth': (ctx) => fcm.handleToken(ctx),
      fcm: (ctx) => fcm.handleSend(ctx),
      jpush: (ctx) => jpush.handle(ctx),
      apns: (ctx) => apns.handle(ctx),
      unknown: (ctx) => json(404, {
        error: `no fake provider serves ${ctx.pathname}; paths: /v2/:appId/... (Getui), /token and `
          + '/v1/projects/:p/messages:send (FCM), /v3/push (JPush), /3/device/:token (APNs)',
      }),
    },
    // Requests counted as `authCalls` in /stats.
    authCall: {
      getui: (ctx) => getui.isAuthCall(ctx),
      'fcm-auth': () => true,
      apns: (ctx) => apns.isAuthCall(ctx),
    },
  });
  httpsAddr = `${opts.host}:${https.server.address().port}`;
  life.onStop(https.close);
  log(`HTTPS (HTTP/2 + HTTP/1.1) providers on ${httpsAddr}`);

  // ---- control HTTP -----------------------------------------------------------
  const configs = {
    getui: { get: () => getui.config, set: (b) => getui.configure(b) },
    fcm: { get: () => fcm.effectiveConfig(), set: (b) => fcm.configure(b) },
    jpush: { get: () => jpush.config, set: (b) => jpush.configure(b) },
    apns: { get: () => apns.config, set: (b) => apns.configure(b) },
  };
  const routes = {
    'GET /': () => ({
      kind: 'providers', https: httpsAddr, requests: recorder.records.length, dropped: recorder.dropped,
      faults: faults.rules.length,
    }),
    'GET /healthz': () => ({ ok: true }),
    'GET /requests': (body, url) => {
      const p = url.searchParams.get('provider');
      if (p === null) return recorder.records;
      if (![...PROVIDERS, 'unknown'].includes(p)) throw new BadRequest(`provider must be one of ${PROVIDERS.join(', ')}, unknown`);
      return recorder.records.filter((r) => r.provider === p);
    },
    // Counts for large runs: {value: N} over the requests of one provider
    // answered `status` (default 200), keyed by the body's value at the
    // dotted `field` (e.g. message.extras.ClientMsgID for JPush); requests
    // without it are not counted.
    'GET /tally': (body, url) => {
      const p = url.searchParams.get('provider');
      const field = url.searchParams.get('field');
      const status = Number(url.searchParams.get('status') || 200);
      if (!PROVIDERS.includes(p)) throw new BadRequest(`provider must be one of ${PROVIDERS.join(', ')}`);
      if (!field) throw new BadRequest('GET /tally needs field=a.b.c');
      const path = field.split('.');
      const counts = {};
      for (const r of recorder.records) {
        if (r.provider !== p || r.status !== status) continue;
        let v = r.body;
        for (const k of path) v = v !== null && typeof v === 'object' ? v[k] : undefined;
        if (typeof v === 'string' || typeof v === 'number') counts[v] = (counts[v] || 0) + 1;
      }
      return counts;
    },
    // Arrival times for large runs: [[at, value], ...] over the requests of
    // one provider, value the body's dotted `field` (message.token for FCM).
    'GET /arrivals': (body, url) => {
      const p = url.searchParams.get('provider');
      const field = url.searchParams.get('field');
      if (!PROVIDERS.includes(p)) throw new BadRequest(`provider must be one of ${PROVIDERS.join(', ')}`);
      if (!field) throw new BadRequest('GET /arrivals needs field=a.b.c');
      const path = field.split('.');
      const out = [];
      for (const r of recorder.records) {
        if (r.provider !== p) continue;
        let v = r.body;
        for (const k of path) v = v !== null && typeof v === 'object' ? v[k] : undefined;
        out.push([r.at, typeof v === 'string' || typeof v === 'number' ? v : null]);
      }
      return out;
    },
    'DELETE /requests': () => recorder.clear(),
    'GET /stats': () => recorder.stats,
    'DELETE /stats': () => { recorder.resetStats(); return recorder.stats; },
    'GET /faults': () => faults.rules,
    'POST /faults': (body) => {
      const before = faults.rules.length;
      const rules = faults.add(body);
      log(`faults: ${JSON.stringify(rules.slice(before))} added, ${rules.length} listed`);
      return rules;
    },
    'DELETE /faults': () => faults.clear(),
    'POST /expire-tokens': (body) => {
      const { provider } = requireObject(body, 'POST /expire-tokens');
      if (provider === 'getui') return { expired: getui.expireTokens() };
      if (provider === 'fcm') return { expired: fcm.expireTokens() };
      throw new BadRequest('POST /expire-tokens: provider must be getui or fcm');
    },
    'GET /apns/jwts': () => apns.jwtStats(),
    'DELETE /apns/jwts': () => apns.resetJwtStats(),
  };
  for (const [name, c] of Object.entries(configs)) {
    routes[`GET /config/${name}`] = c.get;
    routes[`POST /config/${name}`] = (body) => {
      const out = c.set(body);
      log(`config ${name}: ${Object.keys(body).join(', ')}`);
      return out;
    };
  }
  tokenSetRoutes(routes, '/fcm/unregistered', fcm.unregistered);
  tokenSetRoutes(routes, '/apns/unregistered', apns.unregistered);
  tokenSetRoutes(routes, '/jpush/unregistered', jpush.unregistered);

  const control = await startControl(routes, opts.host, opts.controlPort);
  const controlAddr = `${opts.host}:${control.address().port}`;
  life.onStop(() => new Promise((r) => { control.closeAllConnections?.(); control.close(() => r()); }));
  log(`control HTTP on ${controlAddr}`);

  writeInfoAtomic(opts.info, { pid: process.pid, https: httpsAddr, control: controlAddr });
  log(`ready, info in ${opts.info}`);
}

module.exports = { runProviders };
