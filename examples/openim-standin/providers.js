#!/usr/bin/env node
'use strict';
// Fakes of the offline push providers impulse talks to (Getui RestAPI v2,
// FCM HTTP v1 with its OAuth token endpoint, JPush v3, APNs), for the
// engine's tests and demos:
//   node providers.js --info FILE --cert CERT.pem --key KEY.pem
// One HTTPS server (HTTP/2, HTTP/1.1 fallback) serves all four; a JSON
// HTTP control server configures them, scripts faults and shows what was
// received. See README.md ("Push provider fakes").

const fs = require('fs');
const { log, setLogPrefix, removeStale, lifecycle } = require('./lib/util');

const USAGE = `usage:
  node providers.js --info FILE --cert CERT.pem --key KEY.pem
        [--host 127.0.0.1] [--port 0] [--control-port 0] [--max-records 0] [--quiet]`;

const FLAGS = {
  info: null, cert: null, key: null, host: '127.0.0.1', port: '0', 'control-port': '0', 'max-records': '0',
};
const BOOLEAN = new Set(['quiet']);

function die(msg, code = 2) {
  process.stderr.write(`providers: ${msg}\n`);
  process.exit(code);
}

// Parse `--flag value`, `--flag=value` and the boolean flags.
function parseArgs(argv) {
  const v = { ...FLAGS };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) die(`unexpected argument ${argv[i]}\n${USAGE}`);
    const [, name, inline] = m;
    if (BOOLEAN.has(name)) { v[name] = true; continue; }
    if (!(name in FLAGS)) die(`unknown flag --${name}\n${USAGE}`);
    const val = inline !== undefined ? inline : argv[++i];
    if (val === undefined) die(`--${name} needs a value`);
    v[name] = val;
  }
  for (const name of ['info', 'cert', 'key']) if (!v[name]) die(`--${name} is required\n${USAGE}`);
  const int = (name, min) => {
    const n = Number(v[name]);
    if (!Number.isInteger(n) || n < min) die(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const read = (name) => {
    try { return fs.readFileSync(v[name]); } catch (e) { return die(`--${name}: ${e.message}`); }
  };
  return {
    info: v.info,
    cert: read('cert'),
    key: read('key'),
    host: v.host,
    port: int('port', 0),
    controlPort: int('control-port', 0),
    maxRecords: int('max-records', 0),
    quiet: !!v.quiet,
  };
}


async function main() {
  const opts = parseArgs(process.argv.slice(2));
  setLogPrefix(`providers ${process.pid}`);
  removeStale(opts.info);
  const life = lifecycle();
  // A test fake must outlive whatever a client throws at it: log a stray
  // error instead of dying with it.
  process.on('uncaughtException', (e) => log(`uncaught: ${e.stack || e}`));
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${(e && e.stack) || e}`));
  try {
    await require('./lib/providers').runProviders(opts, life);
  } catch (e) {
    if (life.isStopping()) return;
    await life.stop(`fatal: ${e.message}`, 1);
  }
}

main();
