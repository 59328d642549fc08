'use strict';
// Scriptable faults: rules a test appends over the control API. The first
// rule matching a request (same provider, path containing pathContains,
// body containing bodyContains) whose `times` is not 0 applies, and `times`
// goes down by one (-1 = until cleared). Spent rules stay listed
// (GET /faults) with their `applied` count.

const { BadRequest } = require('../util');
const { PROVIDERS, isObject } = require('./common');

// RST_STREAM error code used when `reset: true` (NGHTTP2_INTERNAL_ERROR).
const DEFAULT_RESET_CODE = 2;

const KEYS = [
  'provider', 'pathContains', 'bodyContains', 'times', 'status', 'headers', 'body', 'delayMs', 'reset',
];

// Validate one rule from the control API; returns the stored form.
function parseRule(r, i) {
  const where = `POST /faults rule ${i}`;
  if (!isObject(r)) throw new BadRequest(`${where}: must be an object`);
  for (const k of Object.keys(r)) {
    if (!KEYS.includes(k)) throw new BadRequest(`${where}: unknown key ${k}; known: ${KEYS.join(', ')}`);
  }
  if (!PROVIDERS.includes(r.provider)) throw new BadRequest(`${where}: provider must be one of ${PROVIDERS.join(', ')}`);
  for (const k of ['pathContains', 'bodyContains']) {
    if (r[k] !== undefined && typeof r[k] !== 'string') throw new BadRequest(`${where}: ${k} must be a string`);
  }
  const times = r.times === undefined ? 1 : r.times;
  if (!Number.isInteger(times) || times < -1) throw new BadRequest(`${where}: times must be an integer >= -1`);
  if (r.status !== undefined && !(Number.isInteger(r.status) && r.status >= 200 && r.status <= 599)) {
    throw new BadRequest(`${where}: status must be an integer 200..599`);
  }
  if (r.headers !== undefined && !(isObject(r.headers)
      && Object.values(r.headers).every((v) => typeof v === 'string' || typeof v === 'number'))) {
    throw new BadRequest(`${where}: headers must be an object of string or number values`);
  }
  // body: sent as is; a JSON value other than a string is sent as its JSON text.
  let body;
  if (r.body !== undefined) body = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
  if (r.delayMs !== undefined && !(typeof r.delayMs === 'number' && r.delayMs >= 0)) {
    throw new BadRequest(`${where}: delayMs must be a number >= 0`);
  }
  // reset: true, or the RST_STREAM error code to send (e.g. 7 REFUSED_STREAM).
  let resetCode = null;
  if (r.reset === true) resetCode = DEFAULT_RESET_CODE;
  else if (Number.isInteger(r.reset) && r.reset >= 0) resetCode = r.reset;
  else if (r.reset !== undefined && r.reset !== false) throw new BadRequest(`${where}: reset must be true or an HTTP/2 error code`);
  if (r.status === undefined && body === undefined && r.delayMs === undefined && resetCode === null && r.headers === undefined) {
    throw new BadRequest(`${where}: does nothing; give status, body, headers, delayMs or reset`);
  }
  return {
    provider: r.provider,
    pathContains: r.pathContains === undefined ? null : r.pathContains,
    bodyContains: r.bodyContains === undefined ? null : r.bodyContains,
    times,
    status: r.status === undefined ? null : r.status,
    // names lower-cased, so they replace the normal reply's headers
    headers: Object.fromEntries(Object.entries(r.headers || {}).map(([k, v]) => [k.toLowerCase(), String(v)])),
    body: body === undefined ? null : body,
    delayMs: r.delayMs || 0,
    reset: resetCode,
    applied: 0,
  };
}

class Faults {
  constructor() { this.rules = []; }

  // Append rules (a JSON array, or one rule object); all or none.
  add(body) {
    const list = Array.isArray(body) ? body : [body];
    const parsed = list.map(parseRule);
    this.rules.push(...parsed);
    return this.rules;
  }

  clear() { const n = this.rules.length; this.rules = []; return { cleared: n }; }

  // The rule to apply to this request, if any (consumes one use). `body`
  // is the request body as text.
  take(provider, path, body) {
    const rule = this.rules.find((r) => r.times !== 0 && r.provider === provider
      && (r.pathContains === null || path.includes(r.pathContains))
      && (r.bodyContains === null || body.includes(r.bodyContains)));
    if (!rule) return null;
    if (rule.times > 0) rule.times--;
    rule.applied++;
    return rule;
  }
}

module.exports = { Faults };
