'use strict';
// Small helpers shared by both process kinds: logging, the info file,
// gRPC metadata and MsgData conversion to plain JSON.

const fs = require('fs');
const path = require('path');

let logPrefix = 'standin';

// Every log line goes to stderr, one line each, prefixed with the process
// kind so interleaved test output stays readable.
function setLogPrefix(p) { logPrefix = p; }
function log(...parts) {
  const line = parts
    .map((p) => (typeof p === 'string' ? p : JSON.stringify(p)))
    .join(' ')
    .replace(/\n/g, ' ');
  process.stderr.write(`[${logPrefix}] ${line}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Write the info file so that a poller never sees a half-written file:
// write a temporary file in the same directory, then rename it over the
// target (rename is atomic within one filesystem).
function writeInfoAtomic(file, obj) {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(obj) + '\n');
  fs.renameSync(tmp, file);
}

// Remove a stale info file left by an earlier run, so a test polling for
// the file cannot mistake it for ours.
function removeStale(file) {
  try { fs.unlinkSync(file); } catch (e) { if (e.code !== 'ENOENT') throw e; }
}

// gRPC metadata → {key: value}. grpc-js already lower-cases keys. A key
// sent once gives a string, a key sent several times gives an array;
// binary (-bin) values are given as base64.
function metadataToObject(md) {
  const out = {};
  if (!md) return out;
  const raw = md.toJSON(); // {key: [values...]}
  for (const key of Object.keys(raw)) {
    const vals = raw[key].map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : String(v)));
    out[key.toLowerCase()] = vals.length === 1 ? vals[0] : vals;
  }
  return out;
}

// Does this buffer hold valid UTF-8? (decode, re-encode, compare bytes:
// invalid sequences become U+FFFD and change the bytes).
function isUtf8(buf) {
  return Buffer.from(buf.toString('utf8'), 'utf8').equals(buf);
}

// Turn any decoded protobuf object (proto-loader output with longs as
// strings) into plain JSON: every Buffer (a `bytes` field) becomes a string,
// utf8 when the bytes are valid UTF-8, else base64. For the MsgData
// `content` field the encoding used is stated next to it
// (`contentEncoding`), and `contentBase64` always holds the exact bytes.
function toPlain(value) {
  if (Buffer.isBuffer(value)) return isUtf8(value) ? value.toString('utf8') : value.toString('base64');
  if (Array.isArray(value)) return value.map(toPlain);
  if (value && typeof value === 'object') {
    const out = {};
    for (const k of Object.keys(value)) out[k] = toPlain(value[k]);
    if (Buffer.isBuffer(value.content)) {
      out.contentEncoding = isUtf8(value.content) ? 'utf8' : 'base64';
      out.contentBase64 = value.content.toString('base64');
    }
    return out;
  }
  return value;
}

// An error a control handler throws to answer 400 with this message.
class BadRequest extends Error {}

// Validation helpers for control request bodies.
function requireObject(body, what) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequest(`${what}: body must be a JSON object`);
  }
  return body;
}
function requireStringArray(v, what) {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
    throw new BadRequest(`${what}: expected an array of strings`);
  }
  return v;
}
function requireIntArray(v, what) {
  if (!Array.isArray(v) || !v.every((n) => Number.isInteger(n))) {
    throw new BadRequest(`${what}: expected an array of integers`);
  }
  return v;
}

// SIGTERM/SIGINT run the shutdown hooks newest first (so what registered
// last, e.g. an etcd lease, goes first), then exit; a second signal exits
// at once. onStop(fn) adds a hook.
function lifecycle() {
  const hooks = [];
  let stopping = false;
  const stop = async (why, exitCode = 0) => {
    if (stopping) { log(`${why} again, exiting now`); process.exit(1); }
    stopping = true;
    log(`${why}, shutting down`);
    for (const h of hooks.reverse()) {
      try { await h(); } catch (e) { log(`shutdown step failed: ${e.message}`); }
    }
    log('bye');
    process.exit(exitCode);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return { onStop: (fn) => hooks.push(fn), stop, isStopping: () => stopping };
}

module.exports = {
  lifecycle,
  setLogPrefix, log, sleep, writeInfoAtomic, removeStale, metadataToObject,
  toPlain, isUtf8, BadRequest, requireObject, requireStringArray, requireIntArray,
};
