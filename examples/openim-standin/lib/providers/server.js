'use strict';
// The HTTPS server the four fake providers share: HTTP/2 over TLS (and
// HTTP/1.1 for clients that do not offer h2 in ALPN). Every request is
// read whole, recorded, checked against the fault rules, then answered by
// its provider's handler. Nothing a client sends can stop the process.

const http2 = require('http2');
const { log, sleep } = require('../util');
const { PROVIDERS, json } = require('./common');

const MAX_BODY = 1024 * 1024; // larger request bodies are answered 413

// Which fake serves a path.
function classify(pathname) {
  if (pathname.startsWith('/v2/')) return 'getui';
  if (pathname === '/token') return 'fcm-auth';
  if (pathname.startsWith('/v1/')) return 'fcm';
  if (pathname.startsWith('/v3/')) return 'jpush';
  if (pathname.startsWith('/3/')) return 'apns';
  return 'unknown';
}

// The recorded requests and the per-provider counters.
class Recorder {
  constructor(maxRecords) {
    this.maxRecords = maxRecords; // 0 = keep everything
    this.records = [];
    this.dropped = 0;
    this.resetStats();
  }

  resetStats() {
    this.stats = {};
    for (const p of [...PROVIDERS, 'unknown']) this.stats[p] = { requests: 0, byStatus: {}, authCalls: 0 };
  }

  clear() { const n = this.records.length; this.records = []; this.dropped = 0; return { cleared: n }; }

  arrive(rec, authCall) {
    this.records.push(rec);
    if (this.maxRecords > 0 && this.records.length > this.maxRecords) { this.records.shift(); this.dropped++; }
    const s = this.stats[rec.provider];
    s.requests++;
    if (authCall) {
      s.authCalls++;
      // A token exchange is FCM's auth call too.
      if (rec.provider === 'fcm-auth') this.stats.fcm.authCalls++;
    }
  }

  // `outcome`: the HTTP status sent, 'reset' (RST_STREAM) or 'gone'
  // (the client left before the answer).
  answered(rec, outcome) {
    if (typeof outcome === 'number') rec.status = outcome;
    const by = this.stats[rec.provider].byStatus;
    by[outcome] = (by[outcome] || 0) + 1;
  }
}

// The body as recorded: null when empty, the parsed value when it is JSON
// (whatever the content-type: the headers are recorded too), an object of
// fields for a form, else the text.
function recordedBody(text, contentType) {
  if (text === '') return null;
  try { return JSON.parse(text); } catch (e) { /* not JSON */ }
  if (/^application\/x-www-form-urlencoded\b/i.test(contentType || '')) return Object.fromEntries(new URLSearchParams(text));
  return text;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let ended = false;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => { ended = true; resolve({ buf: Buffer.concat(chunks), tooBig: size > MAX_BODY }); });
    req.on('aborted', () => reject(new Error('client aborted the request')));
    req.on('close', () => { if (!ended) reject(new Error('stream closed before the body ended')); });
    req.on('error', reject);
  });
}

// Has the client gone (stream reset / connection closed)?
function clientGone(req) {
  return req.stream ? req.stream.destroyed || req.stream.closed : req.socket.destroyed;
}

// Reset instead of answering: RST_STREAM on HTTP/2, close the connection
// on HTTP/1.1 (which has nothing finer).
function resetRequest(req, code) {
  if (req.stream) req.stream.close(code);
  else req.socket.destroy();
}

// The reply a fault rule sends itself (when it has a status or a body).
function faultReply(rule) {
  const body = rule.body || '';
  let type = 'text/plain; charset=utf-8';
  try { JSON.parse(body); type = 'application/json; charset=utf-8'; } catch (e) {
    if (body.trimStart().startsWith('<')) type = 'text/html; charset=utf-8';
  }
  return { status: rule.status || 200, headers: body ? { 'content-type': type } : {}, body };
}

function send(res, reply) {
  const body = Buffer.from(reply.body || '');
  res.writeHead(reply.status, { ...reply.headers, 'content-length': body.length });
  res.end(body);
}

// opts: {host, port, cert, key, quiet, handlers: {provider: ctx → reply},
// authCall: {provider: ctx → bool}, faults, recorder}. Resolves to
// {server, close()} once listening.
function startHttps(opts) {
  const { handlers, authCall, faults, recorder } = opts;

  async function onRequest(req, res) {
    const at = Date.now();
    const path = req.url || '/';
    const pathname = path.split('?')[0];
    const provider = classify(pathname);
    // Request headers without HTTP/2's pseudo-headers (:method, :path, ...).
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith(':')) headers[k] = v;
    let raw;
    try { raw = await readBody(req); } catch (e) {
      if (!opts.quiet) log(`${provider} ${req.method} ${path}: ${e.message}`);
      return;
    }
    const text = raw.buf.toString('utf8');
    const rec = {
      provider, method: req.method, path, http: req.httpVersion, headers,
      body: recordedBody(text, headers['content-type']), status: null, at,
    };
    const ctx = { provider, method: req.method, path, pathname, headers, text, now: at };
    recorder.arrive(rec, !!(authCall[provider] && authCall[provider](ctx)));

    const rule = provider === 'unknown' ? null : faults.take(provider, path, text);
    let reply = null;
    if (rule) {
      rec.fault = true;
      if (rule.delayMs) await sleep(rule.delayMs);
      if (clientGone(req)) { recorder.answered(rec, 'gone'); return; }
      if (rule.reset !== null) {
        rec.reset = true;
        resetRequest(req, rule.reset);
        recorder.answered(rec, 'reset');
        const how = req.stream ? `RST_STREAM ${rule.reset}` : 'connection closed';
        if (!opts.quiet) log(`${provider} ${req.method} ${path} → ${how} (fault)`);
        return;
      }
      if (rule.status !== null || rule.body !== null) reply = faultReply(rule);
    }
    if (!reply && raw.tooBig) reply = json(413, { error: `request body over ${MAX_BODY} bytes` });
    if (!reply) {
      try {
        reply = handlers[provider]({ ...ctx, now: Date.now() });
      } catch (e) {
        log(`${provider} handler failed: ${e.stack || e}`);
        reply = json(500, { error: `fake provider bug: ${e.message}` });
      }
    }
    if (rule) reply.headers = { ...reply.headers, ...rule.headers };
    try {
      send(res, reply);
    } catch (e) {
      // e.g. a fault header HTTP/2 forbids (connection, ...)
      log(`${provider} ${req.method} ${path}: cannot send the reply: ${e.message}`);
      reply = json(500, { error: `cannot send the reply: ${e.message}` });
      try { send(res, reply); } catch (e2) { resetRequest(req, 2); recorder.answered(rec, 'reset'); return; }
    }
    recorder.answered(rec, reply.status);
    if (!opts.quiet) log(`${provider} ${req.method} ${path} → ${reply.status}${rule ? ' (fault)' : ''}`);
  }

  const server = http2.createSecureServer({ cert: opts.cert, key: opts.key, allowHTTP1: true });
  server.on('request', (req, res) => {
    onRequest(req, res).catch((e) => log(`request failed: ${e.stack || e}`));
  });
  // (a client closing its connection without TLS close_notify shows up as
  // ECONNRESET: routine, not worth a line)
  server.on('sessionError', (e) => { if (!opts.quiet && e.code !== 'ECONNRESET') log(`HTTP/2 session error: ${e.message}`); });
  server.on('tlsClientError', (e) => { if (!opts.quiet) log(`TLS client error: ${e.message}`); });
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  // Stop listening and drop every open connection (HTTP/2 clients keep
  // theirs open, so server.close alone would wait for them).
  const close = () => new Promise((resolve) => {
    server.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.removeListener('error', reject);
      server.on('error', (e) => log(`HTTPS server error: ${e.message}`));
      resolve({ server, close });
    });
  });
}

module.exports = { startHttps, Recorder, classify };
