// A TLS peer for the HTTP/2 client's spec (spec/03-engine/21-h2_client_spec.lua).
//   node h2peer.js --cert C --key K --info FILE --mode h2|h1|goaway|kill
// Answers every POST with {"id": <x-id header>, "len": <body bytes>,
// "proto": "2.0" or "1.1", "session": <connection number>}; GET /stats
// answers {"sessions": n, "streams": n}. Modes:
//   h2      HTTP/2 only (ALPN h2)
//   h1      HTTPS with HTTP/1.1 only (no h2 in ALPN)
//   goaway  HTTP/2; each connection closes gracefully (GOAWAY) after 50 streams
//   kill    HTTP/2; the first connection is destroyed after 50 streams, answers in flight lost
//   close   HTTP/2; after 50 streams the connection closes (GOAWAY) and the server stops listening
//   silent  HTTP/2; never answers a request (GET /stats only)
//   badframe  raw TLS with ALPN h2: after the client's first request, a WINDOW_UPDATE
//           of 0 on the connection (a protocol error)
'use strict';
const fs = require('fs');
const http2 = require('http2');
const https = require('https');
const tlsmod = require('tls');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const tls = { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) };
const mode = args.mode || 'h2';
let sessions = 0, streams = 0;

function answer(req, res, proto, session) {
  if (req.method === 'GET' && req.url === '/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ sessions, streams }));
    return;
  }
  let len = 0;
  req.on('data', (d) => { len += d.length; });
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: req.headers['x-id'], len, proto, session }));
  });
}

function frame(type, flags, sid, payload) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(sid, 5);
  return Buffer.concat([h, payload]);
}

let server;
if (mode === 'badframe') {
  server = tlsmod.createServer({ ...tls, ALPNProtocols: ['h2'] }, (sock) => {
    sessions++;
    let buf = Buffer.alloc(0), sent = false;
    sock.write(frame(4, 0, 0, Buffer.alloc(0))); // SETTINGS
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 24 && buf.slice(0, 3).toString() === 'PRI') buf = buf.slice(24);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3), type = buf[3], flags = buf[4];
        if (buf.length < 9 + len) break;
        buf = buf.slice(9 + len);
        if (type === 4 && !(flags & 1)) sock.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type === 1 && !sent) {
          streams++;
          sent = true;
          const z = Buffer.alloc(4);
          sock.write(frame(8, 0, 0, z)); // WINDOW_UPDATE 0: PROTOCOL_ERROR
        }
      }
    });
    sock.on('error', () => {});
  });
} else if (mode === 'h1') {
  server = https.createServer(tls, (req, res) => answer(req, res, '1.1', req.socket.sessionNo));
  server.on('secureConnection', (sock) => { sock.sessionNo = ++sessions; });
  server.on('request', () => { streams++; });
} else {
  server = http2.createSecureServer(tls);
  server.on('session', (s) => { s.sessionNo = ++sessions; s.served = 0; });
  server.on('request', (req, res) => {
    streams++;
    if (mode === 'silent' && req.url !== '/stats') return;
    const s = req.stream.session;
    answer(req, res, '2.0', s.sessionNo);
    s.served++;
    if (s.served === 50 && mode === 'goaway') s.close();
    if (s.served === 50 && mode === 'kill' && s.sessionNo === 1) setImmediate(() => s.destroy());
    if (s.served === 50 && mode === 'close') {
      s.close();
      server.close();
    }
  });
}
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(args.info + '.tmp', JSON.stringify({ port: server.address().port }));
  fs.renameSync(args.info + '.tmp', args.info);
});
