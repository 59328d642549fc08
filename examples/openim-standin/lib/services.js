'use strict';
// `standin.js services`: the OpenIM RPC services openim-push calls
// (user, group, conversation, msg), all on one gRPC server, each
// registered in etcd under its own service name. State is set over HTTP;
// every call is recorded; each method can be made to fail, stall or
// answer garbage.

const path = require('path');
const protobuf = require('protobufjs');
const g = require('./grpcutil');
const { startControl } = require('./control');
const { Registrar, registrationValue } = require('./etcd');
const {
  log, metadataToObject, toPlain, writeInfoAtomic, BadRequest,
  requireObject, requireIntArray, requireStringArray,
} = require('./util');

const byString = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

async function runServices(opts, life) {
  const pkgs = g.loadProtos(opts.protoDir);

  // ---- state (set by tests over HTTP) ---------------------------------------
  const online = new Map();      // userID → sorted platform IDs (online users only)
  const groups = new Map();      // groupID → member userIDs
  const maxSeq = new Map();      // conversationID → max seq (string, int64)
  const muted = new Map();       // conversationID → Set of userIDs with push muted
  const ownerMaxSeq = new Map(); // conversationID → {ownerUserID: maxSeq} from SetConversationMaxSeq
  let calls = [];                // every RPC received, oldest first
  let dropped = 0;
  const modes = new Map();       // full method path → {mode, code, delayMs}

  // OpenIM answers a missing record with its own code 1004 as the gRPC
  // status code; grpc-js passes such codes through unchanged.
  const notFound = () => ({ code: opts.notFoundCode, details: 'record not found' });
  const status = (userID) => {
    const plats = online.get(userID);
    return plats ? { userID, status: 1, platformIDs: plats } : { userID, status: 0, platformIDs: [] };
  };

  // ---- one handler per method: request object → reply object -----------------
  const handlers = {
    // Page through the online table in user ID order. The cursor is the
    // number of users already returned (opaque to callers, nonzero while
    // more pages remain, 0 on the last page).
    '/openim.user.user/getAllOnlineUsers': (req) => {
      const users = [...online.keys()].sort(byString);
      const offset = Number(req.cursor) || 0;
      const page = users.slice(offset, offset + opts.pageSize);
      const end = offset + page.length;
      const list = page.map(status);
      // OpenIM's user.proto names the field StatusList; impulse's reduced
      // copy statusList (the same field 1): the serializer takes its own
      return { statusList: list, StatusList: list, nextCursor: String(end < users.length ? end : 0) };
    },
    '/openim.user.user/getUserStatus': (req) => ({ statusList: req.userIDs.map(status) }),
    '/openim.group.group/getGroupMemberUserIDs': (req) => {
      if (!groups.has(req.groupID)) throw notFound();
      return { userIDs: groups.get(req.groupID) };
    },
    '/openim.group.group/dismissGroup': (req) => {
      if (!groups.has(req.groupID)) throw notFound();
      groups.delete(req.groupID);
      return {};
    },
    '/openim.conversation.conversation/GetConversationOfflinePushUserIDs': (req) => {
      const m = muted.get(req.conversationID);
      return { userIDs: m ? req.userIDs.filter((u) => !m.has(u)) : req.userIDs };
    },
    '/openim.conversation.conversation/SetConversationMaxSeq': (req) => {
      const per = ownerMaxSeq.get(req.conversationID) || {};
      for (const u of req.ownerUserID) per[u] = req.maxSeq;
      ownerMaxSeq.set(req.conversationID, per);
      return {};
    },
    '/openim.msg.msg/GetConversationMaxSeq': (req) => ({ maxSeq: maxSeq.get(req.conversationID) || '0' }),
  };

  // ---- gRPC ---------------------------------------------------------------
  const server = new g.grpc.Server({ 'grpc.max_receive_message_length': opts.maxRecvBytes });
  let refused = [];
  const onRefused = (path, call, status) => {
    refused.push({ at: Date.now(), method: path, metadata: metadataToObject(call.metadata), status });
    log(`refused ${path}: ${status.details}`);
  };
  const dispatch = async (path, call) => {
    const req = call.request;
    if (!handlers[path]) { // OpenIM's full services have many more methods
      throw { code: g.grpc.status.UNIMPLEMENTED, details: `method ${path} not implemented` };
    }
    const deadline = Number(call.getDeadline());
    calls.push({
      at: Date.now(),
      method: path,
      metadata: metadataToObject(call.metadata),
      request: toPlain(req),
      peer: call.getPeer(),
      deadline: Number.isFinite(deadline) ? deadline : null, // ms epoch, null = none
      raw: req[g.RAW].toString('base64'),
    });
    if (opts.maxRecords > 0 && calls.length > opts.maxRecords) { calls.shift(); dropped++; }
    const mode = modes.get(path) || { mode: 'ok' };
    if (!opts.quiet) log(`call ${path} op=${call.metadata.get('operationid')[0] || '-'} mode=${mode.mode}`);
    // The handler runs after any injected delay, so a slow call sees the
    // state as it is when it answers (like a slow database would).
    return g.applyMode(mode, () => handlers[path](req));
  };
  const services = [
    [opts.names.user, pkgs.openim.user.user.service],
    [opts.names.group, pkgs.openim.group.group.service],
    [opts.names.conversation, pkgs.openim.conversation.conversation.service],
    [opts.names.msg, pkgs.openim.msg.msg.service],
  ];
  const paths = [];
  for (const [, def] of services) paths.push(...g.addDispatchedService(server, def, dispatch, onRefused));
  for (const p of Object.keys(handlers)) if (!paths.includes(p)) throw new Error(`handler for ${p}, which no .proto defines`);
  const grpcPort = await g.bind(server, opts.host, opts.grpcPort);
  const grpcAddr = `${opts.host}:${grpcPort}`;
  life.onStop(() => g.shutdown(server));
  log(`gRPC user/group/conversation/msg on ${grpcAddr}`);

  // ---- control HTTP ---------------------------------------------------------
  const sortedObject = (map, f = (v) => v) => Object.fromEntries([...map.entries()].sort(([a], [b]) => byString(a, b)).map(([k, v]) => [k, f(v)]));
  const state = () => ({
    online: sortedObject(online),
    groups: sortedObject(groups),
    maxseq: sortedObject(maxSeq),
    offlinepush: sortedObject(muted, (s) => [...s]),
    conversationMaxSeq: sortedObject(ownerMaxSeq),
  });
  // Each body is {key: value}; the whole body is validated before any
  // change, so a bad request leaves the state untouched.
  const entries = (body, what, check) => {
    requireObject(body, what);
    const list = Object.entries(body);
    for (const [k, v] of list) if (v !== null) check(v, `${what} ${k}`);
    return list;
  };
  // ---- webhooks: OpenIM's callback receiver (webhooks.yml url) --------------
  // Records every callback; answers as the test scripted per command.
  let webhookCalls = [];
  const webhookModes = {}; // command → {reply, status, delayMs, raw}
  const webhook = async (body, url, req, text) => {
    const command = url.pathname.split('/').pop();
    let parsed = null;
    try { parsed = JSON.parse(text); } catch (e) { parsed = null; }
    webhookCalls.push({
      at: Date.now(), command, path: url.pathname, headers: req.headers, body: parsed, raw: text,
    });
    const mode = webhookModes[command] || {};
    if (mode.delayMs) await new Promise((r) => setTimeout(r, mode.delayMs));
    if (mode.raw !== undefined) return { __status: mode.status || 200, __raw: mode.raw };
    return { __status: mode.status || 200,
      __body: mode.reply || { actionCode: 0, errCode: 0, errMsg: '', nextCode: 0 } };
  };
  webhook.raw = true;

  // ---- an encoder independent of impulse's: protobufjs from the .proto files
  // {"type": "openim.msg.PushMsgDataToMQ", "value": {...}} → {"base64": "..."}
  // (bytes fields as base64, 64-bit integers as strings or numbers).
  const pbRoot = new protobuf.Root();
  const protoDir = path.resolve(opts.protoDir || g.DEFAULT_PROTO_DIR);
  // imports name 'sdkws/sdkws.proto' in OpenIM's tree, 'sdkws.proto' in impulse's
  pbRoot.resolvePath = (origin, target) => path.join(protoDir, g.protoPath(protoDir, path.basename(target)));
  pbRoot.loadSync(['sdkws.proto', 'push.proto', 'msg.proto', 'msggateway.proto', 'conversation.proto',
    'group.proto', 'user.proto'], { keepCase: true });
  const encode = (body) => {
    requireObject(body, 'POST /encode');
    let type;
    try { type = pbRoot.lookupType(String(body.type)); } catch (e) {
      throw new BadRequest(`POST /encode: unknown type ${body.type}`);
    }
    const err = type.verify(type.fromObject(body.value || {}));
    if (err) throw new BadRequest(`POST /encode: ${err}`);
    const bytes = type.encode(type.fromObject(body.value || {})).finish();
    return { base64: Buffer.from(bytes).toString('base64'), length: bytes.length };
  };

  // {"type": "openim.push.PushMsgReq", "base64": "..."} → {"value": {...}}:
  // the bytes read with these .proto files (64-bit integers as strings,
  // bytes as base64, unset fields left out, unknown fields dropped)
  const decode = (body) => {
    requireObject(body, 'POST /decode');
    let type;
    try { type = pbRoot.lookupType(String(body.type)); } catch (e) {
      throw new BadRequest(`POST /decode: unknown type ${body.type}`);
    }
    let msg;
    try { msg = type.decode(Buffer.from(String(body.base64 || ''), 'base64')); } catch (e) {
      throw new BadRequest(`POST /decode: ${e.message}`);
    }
    return { value: type.toObject(msg, { longs: String, bytes: String }) };
  };

  const control = await startControl({
    'POST /encode': encode,
    'POST /decode': decode,
    'POST /webhook/*': webhook,
    'GET /webhook-calls': () => webhookCalls,
    'POST /webhook-reset': () => { const n = webhookCalls.length; webhookCalls = []; return { cleared: n }; },
    // {"command": "...", "reply": {...}, "status": 200, "delayMs": 0, "raw": "..."}; reply null clears
    'POST /webhook-mode': (body) => {
      requireObject(body, 'POST /webhook-mode');
      if (typeof body.command !== 'string') throw new BadRequest('POST /webhook-mode: command expected');
      if (body.reply === null) delete webhookModes[body.command];
      else webhookModes[body.command] = { reply: body.reply, status: body.status, delayMs: body.delayMs, raw: body.raw };
      return webhookModes;
    },
    'GET /': () => ({ kind: 'services', grpc: grpcAddr, methods: paths, calls: calls.length, dropped }),
    'GET /state': state,
    'GET /online': () => state().online,
    // Merge {userID: [platformIDs]}; an empty list (or null) = offline.
    'POST /online': (body) => {
      for (const [u, list] of entries(body, 'POST /online', requireIntArray)) {
        if (!list || list.length === 0) online.delete(u);
        else online.set(u, [...new Set(list)].sort((a, b) => a - b));
      }
      return state().online;
    },
    'GET /groups': () => state().groups,
    // Set {groupID: [members]} (replaces that group's members); null deletes.
    'POST /groups': (body) => {
      for (const [gid, list] of entries(body, 'POST /groups', requireStringArray)) {
        if (list === null) groups.delete(gid); else groups.set(gid, [...list]);
      }
      return state().groups;
    },
    'GET /maxseq': () => state().maxseq,
    // Set {conversationID: maxSeq}; integers or decimal strings (int64); null deletes.
    'POST /maxseq': (body) => {
      const check = (v, what) => {
        if (!(Number.isSafeInteger(v) || (typeof v === 'string' && /^-?\d+$/.test(v)))) {
          throw new BadRequest(`${what}: expected an integer or a decimal string`);
        }
      };
      for (const [c, v] of entries(body, 'POST /maxseq', check)) {
        if (v === null) maxSeq.delete(c); else maxSeq.set(c, String(v));
      }
      return state().maxseq;
    },
    'GET /offlinepush': () => state().offlinepush,
    // Set {conversationID: [userIDs who muted push]}; [] or null clears.
    'POST /offlinepush': (body) => {
      for (const [c, list] of entries(body, 'POST /offlinepush', requireStringArray)) {
        if (!list || list.length === 0) muted.delete(c); else muted.set(c, new Set(list));
      }
      return state().offlinepush;
    },
    'GET /calls': () => calls,
    // calls OpenIM's server interceptor would refuse (no single operationid)
    'GET /refused': () => refused,
    'POST /reset': () => { const n = calls.length; calls = []; refused = []; dropped = 0; return { cleared: n }; },
    'GET /mode': () => Object.fromEntries(modes),
    // {"method": "/openim.group.group/getGroupMemberUserIDs" | "*", "mode": ..., "code": N, "delayMs": N}
    'POST /mode': (body) => {
      requireObject(body, 'POST /mode');
      const targets = body.method === '*' ? paths : [body.method];
      if (!paths.includes(targets[0])) throw new BadRequest(`method must be "*" or one of ${paths.join(' ')}`);
      const m = g.parseMode(body, BadRequest);
      for (const p of targets) { if (m.mode === 'ok' && m.delayMs === undefined) modes.delete(p); else modes.set(p, m); }
      log(`mode ${body.method} ${JSON.stringify(m)}`);
      return Object.fromEntries(modes);
    },
  }, opts.host, opts.controlPort);
  const controlAddr = `${opts.host}:${control.address().port}`;
  life.onStop(() => new Promise((r) => { control.closeAllConnections?.(); control.close(() => r()); }));
  log(`control HTTP on ${controlAddr}`);

  // ---- etcd: one lease for the four keys (one process, one lifetime) --------
  if (opts.etcd) {
    const reg = new Registrar({ endpoints: opts.etcd, ttl: opts.leaseTtl, startTimeoutMs: opts.etcdTimeoutMs });
    life.onStop(() => reg.revoke());
    await reg.register(services.map(([name]) => ({
      key: `${opts.root}/${name}/${grpcAddr}`, value: registrationValue(grpcAddr),
    })));
  }

  writeInfoAtomic(opts.info, { pid: process.pid, grpc: grpcAddr, control: controlAddr });
  log(`ready, info in ${opts.info}`);
}

module.exports = { runServices };
