#!/usr/bin/env node
'use strict';
// OpenIM stand-in for impulse's tests and demos. One script, two process
// kinds:
//   node standin.js gateway  --etcd URL --root openim --service messageGateway --info FILE
//   node standin.js services --etcd URL --root openim --info FILE [--page-size N]
// See README.md for the control API and every flag.

const { log, setLogPrefix, removeStale, lifecycle } = require('./lib/util');
const { DEFAULT_PROTO_DIR } = require('./lib/grpcutil');

const USAGE = `usage:
  node standin.js gateway  --etcd URL[,URL] --info FILE [--root openim] [--service messageGateway]
  node standin.js services --etcd URL[,URL] --info FILE [--root openim] [--page-size 1000]
        [--user user] [--group group] [--conversation conversation] [--msg msg] [--not-found-code 1004]
common: [--lease-ttl 30] [--etcd-timeout 20] [--no-etcd] [--host 127.0.0.1] [--grpc-port 0]
        [--control-port 0] [--proto-dir DIR] [--max-recv-bytes 4194304] [--max-records 0] [--quiet]`;

// Flags and their defaults; each kind accepts the common ones plus its own.
const COMMON = {
  etcd: null, info: null, root: 'openim', 'lease-ttl': '30', 'etcd-timeout': '20',
  host: '127.0.0.1', 'grpc-port': '0', 'control-port': '0', 'proto-dir': DEFAULT_PROTO_DIR,
  'max-recv-bytes': String(4 * 1024 * 1024), 'max-records': '0',
};
const BOOLEAN = new Set(['quiet', 'no-etcd']);
const KIND_FLAGS = {
  gateway: { service: 'messageGateway' },
  services: {
    'page-size': '1000', user: 'user', group: 'group', conversation: 'conversation', msg: 'msg',
    'not-found-code': '1004',
  },
};

function die(msg, code = 2) {
  process.stderr.write(`standin: ${msg}\n`);
  process.exit(code);
}

// Parse `--flag value`, `--flag=value` and the boolean flags.
function parseArgs(argv) {
  const kind = argv[0];
  if (!KIND_FLAGS[kind]) die(`first argument must be gateway or services\n${USAGE}`);
  const known = { ...COMMON, ...KIND_FLAGS[kind] };
  const v = { ...known };
  for (let i = 1; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) die(`unexpected argument ${argv[i]}\n${USAGE}`);
    const [, name, inline] = m;
    if (BOOLEAN.has(name)) { v[name] = true; continue; }
    if (!(name in known)) die(`unknown flag --${name} for ${kind}\n${USAGE}`);
    const val = inline !== undefined ? inline : argv[++i];
    if (val === undefined) die(`--${name} needs a value`);
    v[name] = val;
  }
  if (!v.info) die(`--info FILE is required\n${USAGE}`);
  if (!v.etcd && !v['no-etcd']) die(`--etcd URL is required (or --no-etcd)\n${USAGE}`);
  const int = (name, min) => {
    const n = Number(v[name]);
    if (!Number.isInteger(n) || n < min) die(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const opts = {
    kind,
    etcd: v['no-etcd'] ? null : v.etcd.split(',').map((s) => s.trim()).filter(Boolean),
    root: v.root.replace(/\/+$/, ''),
    info: v.info,
    leaseTtl: int('lease-ttl', 1),
    etcdTimeoutMs: int('etcd-timeout', 0) * 1000,
    host: v.host,
    grpcPort: int('grpc-port', 0),
    controlPort: int('control-port', 0),
    protoDir: v['proto-dir'],
    maxRecvBytes: int('max-recv-bytes', 1),
    maxRecords: int('max-records', 0),
    quiet: !!v.quiet,
  };
  if (kind === 'gateway') opts.service = v.service;
  if (kind === 'services') {
    opts.pageSize = int('page-size', 1);
    opts.names = { user: v.user, group: v.group, conversation: v.conversation, msg: v.msg };
    opts.notFoundCode = int('not-found-code', 1);
  }
  return opts;
}


async function main() {
  const opts = parseArgs(process.argv.slice(2));
  setLogPrefix(`${opts.kind} ${process.pid}`);
  removeStale(opts.info);
  const life = lifecycle();
  const run = opts.kind === 'gateway' ? require('./lib/gateway').runGateway : require('./lib/services').runServices;
  try {
    await run(opts, life);
  } catch (e) {
    if (life.isStopping()) return; // a signal arrived during start-up; stop() exits
    // Undo whatever started (e.g. revoke a lease already granted), exit 1.
    await life.stop(`fatal: ${e.message}`, 1);
  }
}

main();
