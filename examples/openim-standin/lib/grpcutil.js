'use strict';
// Loading OpenIM's .proto files and building gRPC services whose every
// method goes through one generic dispatcher, so the stand-in can record
// each call and misbehave on request (error / slow / garbage reply).

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The repository's proto/ directory (lib → openim-standin → examples → repo).
const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');
const PROTO_FILES = [
  'sdkws.proto', 'push.proto', 'msggateway.proto', 'user.proto',
  'group.proto', 'conversation.proto', 'msg.proto',
];

// Load every OpenIM proto with the options the brief fixes. int64/uint64
// come out as strings (no precision loss), enums as names, unset fields
// as their defaults, bytes as Buffers.
// protoDir holds either impulse's reduced copies (sdkws.proto, ...) or
// OpenIM's own protocol tree (sdkws/sdkws.proto, ...), as in
// spec/fixtures/openim-protocol/<tag>.
function isNested(protoDir) {
  return fs.existsSync(path.join(protoDir, 'sdkws', 'sdkws.proto'));
}

// The path of one of PROTO_FILES ('sdkws.proto') inside protoDir.
function protoPath(protoDir, file) {
  return isNested(protoDir) ? path.join(file.replace(/\.proto$/, ''), file) : file;
}

function loadProtos(protoDir = DEFAULT_PROTO_DIR) {
  protoDir = path.resolve(protoDir);
  const files = PROTO_FILES.map((f) => protoPath(protoDir, f));
  const def = protoLoader.loadSync(files, {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
    includeDirs: [protoDir],
  });
  return grpc.loadPackageDefinition(def);
}

// A reply value the wrapped serializer turns into bytes that are not a
// valid protobuf message: every byte 0xff is a varint continuation byte,
// so a decoder hits a truncated varint at the end of the buffer.
const GARBAGE = Object.freeze({ garbage: true });
const GARBAGE_BYTES = Buffer.alloc(8, 0xff);

// The raw request bytes are attached to the decoded request under this
// symbol (symbols are invisible to JSON.stringify / Object.keys).
const RAW = Symbol('rawRequestBytes');

// Copy a grpc-js service definition, changing two things per method:
// the request deserializer keeps the raw bytes, and the response
// serializer passes GARBAGE through as invalid bytes.
function wrapServiceDefinition(serviceDef) {
  const out = {};
  for (const [name, m] of Object.entries(serviceDef)) {
    out[name] = {
      ...m,
      requestDeserialize: (buf) => {
        const obj = m.requestDeserialize(buf);
        Object.defineProperty(obj, RAW, { value: buf, enumerable: false });
        return obj;
      },
      responseSerialize: (value) => (value === GARBAGE ? GARBAGE_BYTES : m.responseSerialize(value)),
    };
  }
  return out;
}

// OpenIM's server interceptor (tools mw.GrpcServer, every OpenIM service):
// a call whose metadata does not hold exactly one operationid is refused
// with InvalidArgument "operationID error" before any handler runs
// (tools@v0.0.50-alpha.67:mw/rpc_server_interceptor.go:53-54). Returns
// that status, or null.
function openimInterceptor(call) {
  if (call.metadata.get('operationid').length !== 1) {
    return { code: grpc.status.INVALID_ARGUMENT, details: 'operationID error' };
  }
  return null;
}

// Add `serviceDef` to `server`, routing every method to
// dispatch(fullPath, call) → Promise of a reply object (or GARBAGE);
// a rejected promise with {code, details} becomes that gRPC status.
// onRefused(fullPath, call, status) hears of calls OpenIM's interceptor
// refuses (they never reach dispatch).
function addDispatchedService(server, serviceDef, dispatch, onRefused) {
  const wrapped = wrapServiceDefinition(serviceDef);
  const impl = {};
  for (const [name, m] of Object.entries(wrapped)) {
    impl[name] = (call, callback) => {
      const refused = openimInterceptor(call);
      if (refused) {
        if (onRefused) onRefused(m.path, call, refused);
        callback(refused);
        return;
      }
      dispatch(m.path, call).then(
        (reply) => callback(null, reply),
        (err) => callback(err.code !== undefined ? err : { code: grpc.status.INTERNAL, details: String(err && err.message) }),
      );
    };
  }
  server.addService(wrapped, impl);
  return Object.values(wrapped).map((m) => m.path);
}

// Bind a server on host:port (port 0 = any free port) → the bound port.
function bind(server, host, port) {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(err); else resolve(p);
    });
  });
}

// Stop a server: let running calls finish for up to `ms`, then force.
function shutdown(server, ms = 2000) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { server.forceShutdown(); resolve(); }, ms);
    server.tryShutdown(() => { clearTimeout(t); resolve(); });
  });
}

// The behaviour a test asked for, applied to one call. `mode` is
// {mode: ok|error|slow|garbage, code, delayMs}; `produce` computes the
// normal reply. delayMs is honoured in every mode (slow defaults to 1 s).
async function applyMode(mode, produce) {
  const delay = mode.delayMs !== undefined ? mode.delayMs : (mode.mode === 'slow' ? 1000 : 0);
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  switch (mode.mode) {
    case 'error': {
      const code = mode.code !== undefined ? mode.code : grpc.status.INTERNAL;
      throw { code, details: mode.message || `standin: injected error ${code}` };
    }
    case 'garbage': return GARBAGE;
    default: return produce();
  }
}

// Parse and validate a {mode, code, delayMs, message} control body.
function parseMode(body, BadRequest) {
  const modes = ['ok', 'error', 'slow', 'garbage'];
  if (!modes.includes(body.mode)) throw new BadRequest(`mode must be one of ${modes.join('|')}`);
  const m = { mode: body.mode };
  if (body.code !== undefined) {
    if (!Number.isInteger(body.code) || body.code < 1 || body.code > 0x7fffffff) {
      throw new BadRequest('code must be a positive integer (gRPC status)');
    }
    m.code = body.code;
  }
  if (body.delayMs !== undefined) {
    if (!Number.isInteger(body.delayMs) || body.delayMs < 0) throw new BadRequest('delayMs must be an integer >= 0');
    m.delayMs = body.delayMs;
  }
  if (body.message !== undefined) {
    if (typeof body.message !== 'string') throw new BadRequest('message must be a string');
    m.message = body.message;
  }
  return m;
}

module.exports = {
  grpc, loadProtos, protoPath, DEFAULT_PROTO_DIR, GARBAGE, GARBAGE_BYTES, RAW,
  addDispatchedService, bind, shutdown, applyMode, parseMode,
};
