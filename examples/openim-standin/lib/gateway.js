'use strict';
// `standin.js gateway`: one OpenIM msggateway node as openim-push sees it.
// It serves /openim.msggateway.msgGateway/SuperGroupOnlineBatchPushOneMsg,
// answers from a connection table a test sets over HTTP, records every
// push it receives, and registers itself in etcd like OpenIM v3.8.3.

const g = require('./grpcutil');
const { startControl } = require('./control');
const { Registrar, registrationValue } = require('./etcd');
const {
  log, metadataToObject, toPlain, writeInfoAtomic, BadRequest, requireObject, requireIntArray,
} = require('./util');

// Platforms whose delivery counts as an online push (openim-wire.md §3):
// 1 iOS, 2 Android. Web/desktop connections get the message but do not
// make onlinePush true.
const MOBILE = new Set([1, 2]);

async function runGateway(opts, life) {
  const pkgs = g.loadProtos(opts.protoDir);

  // ---- state --------------------------------------------------------------
  const conns = new Map();       // userID → sorted unique platform IDs held here
  let pushes = [];               // every push received, oldest first
  let dropped = 0;               // pushes dropped by --max-records
  let mode = { mode: 'ok' };     // how the next calls are answered

  // The reply OpenIM's gateway gives (openim-wire.md §3): one result per
  // requested user ID, in request order; `resp` lists the platforms held
  // here, `onlinePush` is true iff one of them is mobile.
  function buildReply(userIDs) {
    return {
      singlePushResult: userIDs.map((userID) => {
        const plats = conns.get(userID) || [];
        return {
          userID,
          resp: plats.map((p) => ({ ResultCode: 0, RecvID: userID, RecvPlatFormID: p })),
          onlinePush: plats.some((p) => MOBILE.has(p)),
        };
      }),
    };
  }

  // ---- gRPC ---------------------------------------------------------------
  const server = new g.grpc.Server({ 'grpc.max_receive_message_length': opts.maxRecvBytes });
  let refused = [];
  const onRefused = (path, call, status) => {
    refused.push({ at: Date.now(), method: path, metadata: metadataToObject(call.metadata), status });
    log(`refused ${path}: ${status.details}`);
  };
  g.addDispatchedService(server, pkgs.openim.msggateway.msgGateway.service, async (path, call) => {
    if (path !== '/openim.msggateway.msgGateway/SuperGroupOnlineBatchPushOneMsg') {
      throw { code: g.grpc.status.UNIMPLEMENTED, details: `method ${path} not implemented` };
    }
    const req = call.request;
    const deadline = Number(call.getDeadline());
    pushes.push({
      at: Date.now(),
      metadata: metadataToObject(call.metadata),
      pushToUserIDs: req.pushToUserIDs,
      msgData: toPlain(req.msgData),
      peer: call.getPeer(),
      deadline: Number.isFinite(deadline) ? deadline : null, // ms epoch, null = none
      raw: req[g.RAW].toString('base64'),
    });
    if (opts.maxRecords > 0 && pushes.length > opts.maxRecords) { pushes.shift(); dropped++; }
    if (!opts.quiet) {
      const md = call.metadata.get('operationid')[0];
      log(`push op=${md || '-'} users=${req.pushToUserIDs.length} mode=${mode.mode}`);
    }
    // Answer from the table as it is when the call arrives; the mode
    // (captured now too) decides whether that answer is sent.
    const reply = buildReply(req.pushToUserIDs);
    return g.applyMode(mode, () => reply);
  }, onRefused);
  const grpcPort = await g.bind(server, opts.host, opts.grpcPort);
  const grpcAddr = `${opts.host}:${grpcPort}`;
  life.onStop(() => g.shutdown(server));
  log(`gRPC msgGateway on ${grpcAddr}`);

  // ---- control HTTP -----------------------------------------------------------
  const connsObject = () => Object.fromEntries([...conns.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const key = `${opts.root}/${opts.service}/${grpcAddr}`;
  const control = await startControl({
    'GET /': () => ({ kind: 'gateway', grpc: grpcAddr, key, pushes: pushes.length, dropped, mode }),
    'GET /conns': () => connsObject(),
    // Merge {userID: [platformIDs]}; an empty list removes the user.
    'POST /conns': (body) => {
      requireObject(body, 'POST /conns');
      for (const [u, list] of Object.entries(body)) requireIntArray(list, `POST /conns ${u}`);
      for (const [u, list] of Object.entries(body)) {
        if (list.length === 0) conns.delete(u);
        else conns.set(u, [...new Set(list)].sort((a, b) => a - b));
      }
      return connsObject();
    },
    'GET /pushes': () => pushes,
    // calls OpenIM's server interceptor would refuse (no single operationid)
    'GET /refused': () => refused,
    // A compact view for large runs: clientMsgID → user IDs pushed to here
    // (the union over every push of that message).
    'GET /seen': () => {
      const seen = {};
      for (const p of pushes) {
        const id = p.msgData && p.msgData.clientMsgID;
        if (!id) continue;
        const set = seen[id] || (seen[id] = []);
        for (const u of p.pushToUserIDs) if (!set.includes(u)) set.push(u);
      }
      return seen;
    },
    // Counts for large runs: clientMsgID → how many pushes of it arrived
    // here (replays and duplicates show as counts above 1).
    'GET /counts': () => {
      const counts = {};
      for (const p of pushes) {
        const id = p.msgData && p.msgData.clientMsgID;
        if (id) counts[id] = (counts[id] || 0) + 1;
      }
      return counts;
    },
    'POST /reset': () => { const n = pushes.length; pushes = []; refused = []; dropped = 0; return { cleared: n }; },
    'GET /mode': () => mode,
    'POST /mode': (body) => {
      mode = g.parseMode(requireObject(body, 'POST /mode'), BadRequest);
      log(`mode ${JSON.stringify(mode)}`);
      return mode;
    },
  }, opts.host, opts.controlPort);
  const ctl = control.address();
  const controlAddr = `${opts.host}:${ctl.port}`;
  life.onStop(() => new Promise((r) => { control.closeAllConnections?.(); control.close(() => r()); }));
  log(`control HTTP on ${controlAddr}`);

  // ---- etcd ----------------------------------------------------------------
  if (opts.etcd) {
    const reg = new Registrar({ endpoints: opts.etcd, ttl: opts.leaseTtl, startTimeoutMs: opts.etcdTimeoutMs });
    life.onStop(() => reg.revoke()); // runs first: registered last
    await reg.register([{ key, value: registrationValue(grpcAddr) }]);
  }

  writeInfoAtomic(opts.info, { pid: process.pid, grpc: grpcAddr, control: controlAddr, key });
  log(`ready, info in ${opts.info}`);
}

module.exports = { runGateway };
