#!/usr/bin/env node
'use strict';
// A fake Kubernetes API server holding Endpoints objects, for impulse's
// Kubernetes discovery tests:
//   node kube-apiserver.js --info FILE --cert CERT.pem --key KEY.pem --token-file FILE
//
// HTTPS (HTTP/1.1) with the given certificate; every API request must carry
// "Authorization: Bearer <the token file's content>" (read per request, so
// a test can rotate it), else 401 with a Status. Serves, as the real API
// server does for core/v1 Endpoints:
//   GET /api/v1/namespaces/NS/endpoints[?fieldSelector=metadata.name=N]
//       an EndpointsList with metadata.resourceVersion
//   GET /api/v1/namespaces/NS/endpoints/NAME
//   GET ...endpoints?watch=1&resourceVersion=RV[&timeoutSeconds=S]
//       a chunked stream of {"type":..., "object":...} lines: every change
//       after RV (ADDED, MODIFIED, DELETED), then live ones; an RV older than
//       the kept history gives one ERROR event with a 410 Status and ends.
//       allowWatchBookmarks=true gets a BOOKMARK every --bookmark-ms.
// A plain HTTP control server (loopback) changes the objects:
//   PUT    /endpoints/NS/NAME  body: the Endpoints' "subsets" (array) or a whole object
//   DELETE /endpoints/NS/NAME
//   POST   /compact            forget the history (older watches get 410)
//   POST   /close-watches      end every open watch stream
//   GET    /stats              {lists, watches, unauthorized, openWatches, requests}

const fs = require('fs');
const http = require('http');
const https = require('https');
const { URL } = require('url');
const { log, setLogPrefix, removeStale, lifecycle, writeInfoAtomic } = require('./lib/util');

const USAGE = `usage:
  node kube-apiserver.js --info FILE --cert CERT.pem --key KEY.pem --token-file FILE
        [--host 127.0.0.1] [--port 0] [--control-port 0] [--bookmark-ms 0]`;

function die(msg) {
  process.stderr.write(`kube-apiserver: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const v = { host: '127.0.0.1', port: '0', 'control-port': '0', 'bookmark-ms': '0' };
  const known = new Set(['info', 'cert', 'key', 'token-file', 'host', 'port', 'control-port', 'bookmark-ms']);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m || !known.has(m[1])) die(`unexpected argument ${argv[i]}\n${USAGE}`);
    const val = m[2] !== undefined ? m[2] : argv[++i];
    if (val === undefined) die(`--${m[1]} needs a value`);
    v[m[1]] = val;
  }
  for (const k of ['info', 'cert', 'key', 'token-file']) if (!v[k]) die(`--${k} is required\n${USAGE}`);
  return v;
}

const opts = parseArgs(process.argv.slice(2));
setLogPrefix(`kube-apiserver ${process.pid}`);
removeStale(opts.info);
const life = lifecycle();
process.on('uncaughtException', (e) => log(`uncaught: ${e.stack || e}`));

let rv = 100; // the store's resourceVersion
const objects = new Map(); // "ns/name" -> Endpoints
let history = []; // {rv, ns, name, type, object}
let historyFloor = rv; // watches from an rv below this get 410
const watches = new Set(); // {res, ns, name, timer}
const stats = { lists: 0, watches: 0, unauthorized: 0, requests: [] };

const status = (code, reason, message) => ({
  kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code,
});

function send(res, code, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function matches(w, ns, name) {
  return w.ns === ns && (!w.name || w.name === name);
}

function emit(type, ns, name, object) {
  rv += 1;
  const obj = JSON.parse(JSON.stringify(object));
  obj.metadata.resourceVersion = String(rv);
  const ev = { rv, ns, name, type, object: obj };
  history.push(ev);
  for (const w of watches) if (matches(w, ns, name)) w.res.write(JSON.stringify({ type, object: obj }) + '\n');
}

function endpoints(ns, name, body) {
  const subsets = Array.isArray(body) ? body : (body.subsets || []);
  return { kind: 'Endpoints', apiVersion: 'v1', metadata: { name, namespace: ns }, subsets };
}

function fieldName(url) {
  const fs_ = url.searchParams.get('fieldSelector');
  if (!fs_) return null;
  const m = /^metadata\.name=(.+)$/.exec(fs_);
  return m ? m[1] : null;
}

function api(req, res) {
  const url = new URL(req.url, 'https://x');
  stats.requests.push(`${req.method} ${url.pathname}${url.search}`);
  if (stats.requests.length > 200) stats.requests.shift();
  let token = '';
  try { token = fs.readFileSync(opts['token-file'], 'utf8').trim(); } catch (e) { token = ''; }
  if (!token || req.headers.authorization !== `Bearer ${token}`) {
    stats.unauthorized++;
    return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
  }
  const m = /^\/api\/v1\/namespaces\/([^/]+)\/endpoints(?:\/([^/]+))?$/.exec(url.pathname);
  if (req.method !== 'GET' || !m) return send(res, 404, status(404, 'NotFound', `no route ${url.pathname}`));
  const [, ns, one] = m;
  if (one) {
    const o = objects.get(`${ns}/${one}`);
    return o ? send(res, 200, o) : send(res, 404, status(404, 'NotFound', `endpoints "${one}" not found`));
  }
  const name = fieldName(url);
  const watch = url.searchParams.get('watch');
  if (watch !== '1' && watch !== 'true') {
    stats.lists++;
    const items = [...objects.values()].filter((o) => o.metadata.namespace === ns && (!name || o.metadata.name === name));
    return send(res, 200, { kind: 'EndpointsList', apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items });
  }
  stats.watches++;
  const from = Number(url.searchParams.get('resourceVersion') || rv);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
  if (from < historyFloor) {
    res.end(JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${historyFloor})`) }) + '\n');
    return undefined;
  }
  const w = { res, ns, name };
  for (const ev of history) {
    if (ev.rv > from && matches(w, ev.ns, ev.name)) res.write(JSON.stringify({ type: ev.type, object: ev.object }) + '\n');
  }
  watches.add(w);
  const timeout = Number(url.searchParams.get('timeoutSeconds') || 0);
  const timers = [];
  if (timeout > 0) timers.push(setTimeout(() => res.end(), timeout * 1000));
  const bm = Number(opts['bookmark-ms']);
  if (bm > 0 && url.searchParams.get('allowWatchBookmarks') === 'true') {
    timers.push(setInterval(() => res.write(JSON.stringify({
      type: 'BOOKMARK', object: { kind: 'Endpoints', apiVersion: 'v1', metadata: { resourceVersion: String(rv) } },
    }) + '\n'), bm));
  }
  const done = () => { watches.delete(w); for (const t of timers) clearTimeout(t); };
  res.on('close', done);
  res.on('finish', done);
  return undefined;
}

function control(req, res) {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    try {
      const url = new URL(req.url, 'http://x');
      const m = /^\/endpoints\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      if (m && req.method === 'PUT') {
        const key = `${m[1]}/${m[2]}`;
        const type = objects.has(key) ? 'MODIFIED' : 'ADDED';
        const o = endpoints(m[1], m[2], JSON.parse(body || '[]'));
        objects.set(key, o);
        emit(type, m[1], m[2], o);
        o.metadata.resourceVersion = String(rv);
        return send(res, 200, { type, resourceVersion: String(rv) });
      }
      if (m && req.method === 'DELETE') {
        const key = `${m[1]}/${m[2]}`;
        const o = objects.get(key);
        if (!o) return send(res, 404, { error: 'no such object' });
        objects.delete(key);
        emit('DELETED', m[1], m[2], o);
        return send(res, 200, { type: 'DELETED', resourceVersion: String(rv) });
      }
      if (url.pathname === '/compact' && req.method === 'POST') {
        history = [];
        historyFloor = rv + 1;
        return send(res, 200, { floor: historyFloor });
      }
      if (url.pathname === '/close-watches' && req.method === 'POST') {
        const n = watches.size;
        for (const w of [...watches]) w.res.end();
        return send(res, 200, { closed: n });
      }
      if (url.pathname === '/stats' && req.method === 'GET') {
        return send(res, 200, { ...stats, openWatches: watches.size, resourceVersion: String(rv) });
      }
      return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    } catch (e) {
      return send(res, 400, { error: e.message });
    }
  });
}

const server = https.createServer({ cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) }, api);
const ctl = http.createServer(control);
server.listen(Number(opts.port), opts.host, () => {
  ctl.listen(Number(opts['control-port']), '127.0.0.1', () => {
    writeInfoAtomic(opts.info, {
      https: `${opts.host}:${server.address().port}`, control: `127.0.0.1:${ctl.address().port}`,
    });
    log(`listening on https://${opts.host}:${server.address().port}`);
  });
});
life.onStop(() => new Promise((resolve) => {
  for (const w of [...watches]) w.res.end();
  server.close(); ctl.close(); resolve();
}));
