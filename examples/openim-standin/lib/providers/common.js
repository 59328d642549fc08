'use strict';
// Helpers shared by the four fake push providers: replies, header access,
// body parsing, config validation and public-key loading.

const crypto = require('crypto');
const { BadRequest } = require('../util');

// The provider names used in records, stats and fault rules. `unknown` is
// for requests to a path no fake serves (recorded, answered 404).
const PROVIDERS = ['getui', 'fcm', 'fcm-auth', 'jpush', 'apns'];

// A reply the HTTPS server sends: {status, headers, body (string)}.
function json(status, obj, headers = {}) {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers }, body: JSON.stringify(obj) };
}
function empty(status, headers = {}) {
  return { status, headers, body: '' };
}

// One request header as a string (the first value when sent twice), or
// undefined. Names are lower case in node.
function header(ctx, name) {
  const v = ctx.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

// Parse a JSON object body: {value} or {error: "why"}.
function parseJsonObject(text) {
  if (text === '') return { error: 'empty body, expected a JSON object' };
  let value;
  try { value = JSON.parse(text); } catch (e) { return { error: `invalid JSON: ${e.message}` }; }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { error: 'body must be a JSON object' };
  return { value };
}

const isObject = (v) => !!v && typeof v === 'object' && !Array.isArray(v);
const nonEmptyString = (v) => typeof v === 'string' && v !== '';

// Merge a control-API patch into a provider's config. `schema` maps each
// key to a check (value → error text or null); unknown keys are refused so
// a typo does not pass silently. Everything is checked before anything
// changes. Returns the config.
function mergeConfig(config, patch, schema, what) {
  if (!isObject(patch)) throw new BadRequest(`${what}: body must be a JSON object`);
  for (const [k, v] of Object.entries(patch)) {
    if (!(k in schema)) throw new BadRequest(`${what}: unknown key ${k}; known: ${Object.keys(schema).join(', ')}`);
    const err = schema[k](v);
    if (err) throw new BadRequest(`${what}: ${k} ${err}`);
  }
  Object.assign(config, patch);
  return config;
}
const checks = {
  string: (v) => (nonEmptyString(v) ? null : 'must be a non-empty string'),
  stringOrNull: (v) => (v === null || nonEmptyString(v) ? null : 'must be a non-empty string or null'),
  positiveInt: (v) => (Number.isInteger(v) && v > 0 ? null : 'must be a positive integer'),
  // more accounts beside the main one (several apps): a list of objects
  // with these keys, each required
  accounts: (schema) => (v) => {
    if (!Array.isArray(v)) return 'must be a list of accounts';
    for (const [i, a] of v.entries()) {
      if (!isObject(a)) return `[${i}] must be an object`;
      for (const k of Object.keys(a)) if (!(k in schema)) return `[${i}]: unknown key ${k}; known: ${Object.keys(schema).join(', ')}`;
      for (const [k, check] of Object.entries(schema)) {
        const err = check(a[k] === undefined ? '' : a[k]);
        if (err) return `[${i}].${k} ${err}`;
      }
    }
    return null;
  },
};

// Load a PEM public key (a private key or certificate PEM works too: node
// derives the public key) and check its type. `kind` is 'rsa' or
// 'ec-p256'. Returns the KeyObject; throws Error with a clear message.
function loadPublicKey(pem, kind) {
  let key;
  try { key = crypto.createPublicKey(pem); } catch (e) { throw new Error(`not a usable PEM key: ${e.message}`); }
  if (kind === 'rsa' && key.asymmetricKeyType !== 'rsa') {
    throw new Error(`expected an RSA key, got ${key.asymmetricKeyType}`);
  }
  if (kind === 'ec-p256' && (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails.namedCurve !== 'prime256v1')) {
    throw new Error(`expected an EC P-256 key, got ${key.asymmetricKeyType} ${key.asymmetricKeyDetails.namedCurve || ''}`.trim());
  }
  return key;
}

// The KeyObject for a config's PEM, parsed once per distinct PEM.
function cachedKey(kind) {
  let last = { pem: null, key: null };
  return (pem) => {
    if (pem !== last.pem) last = { pem, key: loadPublicKey(pem, kind) };
    return last.key;
  };
}

// A config check for a PEM key field; null clears the key.
function pemCheck(kind) {
  return (v) => {
    if (v === null) return null;
    if (typeof v !== 'string') return 'must be a PEM string or null';
    try { loadPublicKey(v, kind); return null; } catch (e) { return e.message; }
  };
}

// Sets of device tokens / aliases a test marks as gone, managed over the
// control API (POST adds, DELETE clears).
function tokenSetRoutes(routes, prefix, set) {
  const list = () => [...set].sort();
  routes[`GET ${prefix}`] = list;
  routes[`POST ${prefix}`] = (body) => {
    const arr = Array.isArray(body) ? body : null;
    if (!arr || !arr.every(nonEmptyString)) throw new BadRequest(`POST ${prefix}: body must be a JSON array of non-empty strings`);
    arr.forEach((t) => set.add(t));
    return list();
  };
  routes[`DELETE ${prefix}`] = () => { const n = set.size; set.clear(); return { cleared: n }; };
}

module.exports = {
  PROVIDERS, json, empty, header, parseJsonObject, isObject, nonEmptyString,
  mergeConfig, checks, loadPublicKey, cachedKey, pemCheck, tokenSetRoutes,
};
