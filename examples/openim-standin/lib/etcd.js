'use strict';
// Service registration in etcd the way OpenIM v3.8.3 does it: one key per
// service, `<root>/<service>/<ip:port>`, value
// `{"Op":0,"Addr":"<ip:port>","Metadata":null}`, attached to a lease
// (TTL 30 s) that is kept alive, and revoked on shutdown so the keys vanish
// at once instead of after the TTL.
//
// It talks to etcd 3.4's v3 JSON gateway (grpc-gateway) over plain HTTP
// with Node's built-in fetch. Field names found against etcd 3.4.23:
//   POST /v3/lease/grant     {"TTL":30}            → {"ID":"<int64 as string>","TTL":"30"}
//                            (lower-case "ttl" is silently ignored: TTL 0
//                            → etcd's minimum lease of a few seconds)
//   POST /v3/kv/put          {"key":b64,"value":b64,"lease":"<ID>"}
//   POST /v3/lease/keepalive {"ID":"<ID>"}        → {"result":{"ID":..,"TTL":"30"}}
//                            (a streaming endpoint: one request gives one
//                            result; a dead lease answers without "TTL")
//   POST /v3/lease/revoke    {"ID":"<ID>"}         → 200, or 404 {"code":5} when unknown
// int64 IDs travel as JSON strings so JavaScript never rounds them.

const { log, sleep } = require('./util');

// OpenIM's registration value for one address: openimsdk/tools registers
// through etcd's naming/endpoints manager, which stores json.Marshal of
// {Op, Addr, Metadata} (Op 0 = add, no metadata). Byte-for-byte the same.
function registrationValue(addr) {
  return `{"Op":0,"Addr":"${addr}","Metadata":null}`;
}

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');

class Registrar {
  // endpoints: array of base URLs ("http://127.0.0.1:2379"); ttl in seconds;
  // startTimeoutMs: how long to keep retrying an unreachable etcd at start.
  constructor({ endpoints, ttl = 30, startTimeoutMs = 20000 }) {
    this.endpoints = endpoints.map((e) => e.replace(/\/+$/, ''));
    this.ttl = ttl;
    this.startTimeoutMs = startTimeoutMs;
    this.leaseID = null;   // string, as etcd returns it
    this.kvs = [];         // [{key, value}] to (re)write under the lease
    this.timer = null;
    this.inflight = null;  // the keepalive round running now, if any
    this.stopped = false;
    this.failing = false;  // log a keepalive failure streak once, not every tick
    this.needRegister = false; // lease lost: grant a new one and rewrite the keys
  }

  // POST a JSON body to the first endpoint that answers. Returns
  // {status, json}; throws when no endpoint can be reached.
  async post(path, body, timeoutMs = 3000) {
    let lastErr;
    for (const ep of this.endpoints) {
      try {
        const res = await fetch(ep + path, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await res.text();
        // The keepalive endpoint streams newline-separated objects; we only
        // ever send one request, so the first line is the answer.
        const first = text.split('\n').find((l) => l.trim() !== '') || '{}';
        let json;
        try { json = JSON.parse(first); } catch { json = { raw: text }; }
        return { status: res.status, json };
      } catch (e) {
        lastErr = e;
      }
    }
    throw new Error(`etcd unreachable (${this.endpoints.join(',')}): ${lastErr && lastErr.cause ? (lastErr.cause.code || lastErr.cause.message) : lastErr && lastErr.message}`);
  }

  // Grant a fresh lease and write every key under it.
  async grantAndPut() {
    const g = await this.post('/v3/lease/grant', { TTL: this.ttl });
    if (g.status !== 200 || !g.json.ID) throw new Error(`lease grant failed: HTTP ${g.status} ${JSON.stringify(g.json)}`);
    this.leaseID = String(g.json.ID);
    for (const { key, value } of this.kvs) {
      const p = await this.post('/v3/kv/put', { key: b64(key), value: b64(value), lease: this.leaseID });
      if (p.status !== 200) throw new Error(`put ${key} failed: HTTP ${p.status} ${JSON.stringify(p.json)}`);
    }
  }

  // Register the keys, retrying with a short backoff while etcd is
  // unreachable, for up to startTimeoutMs; then start the keepalive loop.
  async register(kvs) {
    this.kvs = kvs;
    const deadline = Date.now() + this.startTimeoutMs;
    let backoff = 100;
    for (;;) {
      if (this.stopped) throw new Error('stopped during registration');
      try {
        await this.grantAndPut();
        break;
      } catch (e) {
        if (Date.now() + backoff > deadline) {
          throw new Error(`giving up on etcd after ${Math.round(this.startTimeoutMs / 1000)} s: ${e.message}`);
        }
        log(`etcd not ready (${e.message}), retrying in ${backoff} ms`);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
    log(`etcd lease ${this.leaseID} ttl ${this.ttl}s: ${kvs.map((kv) => kv.key).join(' ')}`);
    this.schedule();
  }

  // Keepalive every TTL/3, as etcd's own clients do.
  schedule() {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.inflight = this.keepalive().finally(() => { this.inflight = null; this.schedule(); });
    }, (this.ttl * 1000) / 3);
    this.timer.unref();
  }

  // One keepalive round. If the lease is gone (expired while etcd was
  // unreachable, or revoked by someone else) grant a new one and write
  // the keys again, so the registration heals itself.
  async keepalive() {
    try {
      if (!this.needRegister) {
        const r = await this.post('/v3/lease/keepalive', { ID: this.leaseID });
        const ttl = Number(r.json.result && r.json.result.TTL);
        if (r.status === 200 && ttl > 0) {
          if (this.failing) log('etcd keepalive ok again');
          this.failing = false;
          return;
        }
        log(`etcd lease ${this.leaseID} lost (HTTP ${r.status}), registering again`);
        this.needRegister = true;
      }
      await this.grantAndPut();
      this.needRegister = false;
      this.failing = false;
      log(`etcd re-registered under lease ${this.leaseID}`);
    } catch (e) {
      if (!this.failing) log(`etcd keepalive failed: ${e.message}`);
      this.failing = true;
    }
  }

  // Stop keepalives and revoke the lease (etcd deletes the keys with it).
  async revoke() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    // A keepalive round in flight may be granting a new lease: let it
    // finish (its requests time out in seconds) so that lease is revoked too.
    if (this.inflight) await this.inflight;
    if (!this.leaseID) return;
    try {
      const r = await this.post('/v3/lease/revoke', { ID: this.leaseID }, 2000);
      if (r.status === 200) log(`etcd lease ${this.leaseID} revoked`);
      else log(`etcd revoke of lease ${this.leaseID} failed: HTTP ${r.status} ${JSON.stringify(r.json)}`);
    } catch (e) {
      log(`etcd revoke failed: ${e.message}`);
    }
    this.leaseID = null;
  }
}

module.exports = { Registrar, registrationValue };
