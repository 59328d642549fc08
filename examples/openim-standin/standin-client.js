#!/usr/bin/env node
'use strict';
// A tiny gRPC client for the stand-in (used by test.sh, handy for debugging).
//   node standin-client.js call ADDR /openim.user.user/getAllOnlineUsers '{"cursor":"0"}'
//   node standin-client.js push ADDR '{"msgData":{"sendID":"u1","content":"hi"},"pushToUserIDs":["u1"]}'
// Options (after the positional arguments):
//   --metadata '{"operationid":"op1"}'   request metadata (default: an operationid)
//   --timeout MS                          deadline (default 5000)
// Prints the reply as JSON on stdout and exits 0. A gRPC error prints
// {"code":N,"details":"..."} on stdout and exits 3; usage errors exit 2.
// In `push`, msgData.content given as a string is sent as its UTF-8 bytes
// (or give msgData.contentBase64 for exact bytes).

const { grpc, loadProtos, DEFAULT_PROTO_DIR } = require('./lib/grpcutil');
const { toPlain } = require('./lib/util');

const PUSH_PATH = '/openim.msggateway.msgGateway/SuperGroupOnlineBatchPushOneMsg';

function die(msg) { process.stderr.write(`standin-client: ${msg}\n`); process.exit(2); }

// Every method definition in the loaded protos, by full path.
function methodsByPath(pkgs) {
  const out = {};
  const walk = (obj) => {
    for (const v of Object.values(obj)) {
      if (typeof v === 'function' && v.service) for (const m of Object.values(v.service)) out[m.path] = m;
      else if (v && typeof v === 'object' && !v.format) walk(v);
    }
  };
  walk(pkgs);
  return out;
}

function main() {
  const argv = process.argv.slice(2);
  const opt = { metadata: { operationid: `standin-client-${process.pid}` }, timeout: 5000, protoDir: DEFAULT_PROTO_DIR };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--metadata') opt.metadata = JSON.parse(argv[++i]);
    else if (argv[i] === '--timeout') opt.timeout = Number(argv[++i]);
    else if (argv[i] === '--proto-dir') opt.protoDir = argv[++i];
    else pos.push(argv[i]);
  }
  let addr, path, body;
  if (pos[0] === 'push' && pos.length === 3) [, addr, body] = pos, path = PUSH_PATH;
  else if (pos[0] === 'call' && pos.length === 4) [, addr, path, body] = pos;
  else die('usage: standin-client.js push ADDR JSON | call ADDR /pkg.Service/Method JSON [--metadata JSON] [--timeout MS]');

  const m = methodsByPath(loadProtos(opt.protoDir))[path];
  if (!m) die(`unknown method ${path}`);
  let req;
  try { req = JSON.parse(body); } catch (e) { die(`request is not JSON: ${e.message}`); }
  const md = req && req.msgData;
  if (md && typeof md.content === 'string') md.content = Buffer.from(md.content, 'utf8');
  if (md && typeof md.contentBase64 === 'string') { md.content = Buffer.from(md.contentBase64, 'base64'); delete md.contentBase64; }

  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(opt.metadata)) metadata.set(k, String(v));
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  client.makeUnaryRequest(path, m.requestSerialize, m.responseDeserialize, req, metadata,
    { deadline: Date.now() + opt.timeout }, (err, reply) => {
      client.close();
      if (err) {
        process.stdout.write(JSON.stringify({ code: err.code, details: err.details }) + '\n');
        process.exit(3);
      }
      process.stdout.write(JSON.stringify(toPlain(reply)) + '\n');
    });
}

main();
