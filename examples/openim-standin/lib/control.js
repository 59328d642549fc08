'use strict';
// The HTTP control server tests use to set state and read what the
// stand-in received. JSON in, JSON out. A bad request never stops the
// process: it gets a 400 with {"error": "..."}.

const http = require('http');
const { log, BadRequest } = require('./util');

const MAX_BODY = 64 * 1024 * 1024;

// routes: {"GET /pushes": (body, url) => result, ...}. A handler returns
// the value to send as JSON (200), or throws BadRequest (400).
function startControl(routes, host, port) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const reply = (status, obj) => {
      const text = JSON.stringify(obj) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', async () => {
      // exact routes first, then prefix routes written "METHOD /prefix/*"
      let route = routes[`${req.method} ${url.pathname}`];
      if (!route) {
        for (const [k, fn] of Object.entries(routes)) {
          if (k.endsWith('/*') && `${req.method} ${url.pathname}`.startsWith(k.slice(0, -1))) route = fn;
        }
      }
      if (!route) {
        const known = Object.keys(routes).join(', ');
        return reply(404, { error: `no route ${req.method} ${url.pathname}; known: ${known}` });
      }
      if (size > MAX_BODY) return reply(400, { error: 'body too large' });
      let body = null;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() !== '' && !route.raw) {
        try { body = JSON.parse(text); } catch (e) { return reply(400, { error: `invalid JSON: ${e.message}` }); }
      }
      try {
        const out = await route(body, url, req, text);
        // a handler may answer with its own status and raw body
        if (out && out.__status !== undefined) {
          const raw = out.__raw !== undefined ? out.__raw : JSON.stringify(out.__body) + '\n';
          res.writeHead(out.__status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(raw) });
          return res.end(raw);
        }
        reply(200, out);
      } catch (e) {
        if (e instanceof BadRequest) {
          log(`control ${req.method} ${url.pathname}: 400 ${e.message}`);
          return reply(400, { error: e.message });
        }
        log(`control ${req.method} ${url.pathname}: 500 ${e.stack || e}`);
        reply(500, { error: String(e.message || e) });
      }
    });
    req.on('error', () => {});
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

module.exports = { startControl };
