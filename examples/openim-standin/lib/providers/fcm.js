'use strict';
// Fake FCM HTTP v1 and the Google OAuth token endpoint it needs.
//   POST /token  (provider fcm-auth)  form grant_type=jwt-bearer&assertion=<RS256 JWT>
//                                     → {access_token, expires_in, token_type}
//   POST /v1/projects/:project/messages:send  (provider fcm)
//                                     Bearer access token, {message:{token, ...}}
// Errors use Google's JSON error shapes (OAuth: {error, error_description};
// FCM: {error:{code, message, status, details:[FcmError]}}). Several apps:
// config `accounts` [{projectId, clientEmail, publicKeyPem}] beside the
// main one; an access token serves the project of the account it was
// issued to (another answers 403 PERMISSION_DENIED, SenderId mismatch).

const {
  json, header, parseJsonObject, isObject, nonEmptyString, mergeConfig, checks, cachedKey, pemCheck,
} = require('./common');
const jwt = require('./jwt');

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const CLOCK_SKEW_S = 300;
const MAX_LIFETIME_S = 3600;
const MAX_MESSAGE_BYTES = 4096;

// FCM v1 error reply; `errorCode` adds the FcmError detail.
function fcmError(code, status, message, errorCode) {
  const error = { code, message, status };
  if (errorCode) error.details = [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }];
  return json(code, { error });
}
const invalidArgument = (message) => fcmError(400, 'INVALID_ARGUMENT', message, 'INVALID_ARGUMENT');
const notFound = (errorCode) => fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', errorCode);
const oauthError = (status, error, description) => json(status, { error, error_description: description });

class Fcm {
  // defaultTokenUri() gives https://<host>:<port>/token once listening.
  constructor(defaultTokenUri) {
    this.defaultTokenUri = defaultTokenUri;
    this.config = {
      projectId: 'proj1', clientEmail: 'impulse@proj1.iam.gserviceaccount.com',
      publicKeyPem: null, tokenUri: null, accessTtlS: 3599, accounts: [],
    };
    this.tokens = new Map(); // access token → { expiry (ms since epoch), projectId }
    this.unregistered = new Set(); // device tokens answered UNREGISTERED
    this.key = cachedKey('rsa');
    this.seq = 0;
  }

  effectiveConfig() { return { ...this.config, tokenUri: this.config.tokenUri || this.defaultTokenUri() }; }

  configure(patch) {
    mergeConfig(this.config, patch, {
      projectId: checks.string, clientEmail: checks.string, publicKeyPem: pemCheck('rsa'),
      tokenUri: checks.stringOrNull, accessTtlS: checks.positiveInt,
      accounts: checks.accounts({ projectId: checks.string, clientEmail: checks.string, publicKeyPem: pemCheck('rsa') }),
    }, 'POST /config/fcm');
    return this.effectiveConfig();
  }

  expireTokens() { const n = this.tokens.size; this.tokens.clear(); return n; }

  // Why the assertion is not acceptable, or null (and the account it
  // authenticates in out.account). Checks what Google's token endpoint
  // checks for a service-account JWT.
  assertionProblem(assertion, nowMs, out = {}) {
    const main = this.effectiveConfig();
    let t;
    try { t = jwt.decode(assertion); } catch (e) { return `Invalid JWT: ${e.message}`; }
    const other = t.claims && this.config.accounts.find((a) => a.clientEmail === t.claims.iss);
    const cfg = other ? { ...other, tokenUri: main.tokenUri } : main;
    out.account = cfg;
    if (!cfg.publicKeyPem) return 'no public key configured in the fake (POST /config/fcm {"publicKeyPem": ...})';
    if (t.header.alg !== 'RS256') return `Invalid JWT: alg must be RS256, got ${JSON.stringify(t.header.alg)}`;
    if (t.header.typ !== undefined && t.header.typ !== 'JWT') {
      return `Invalid JWT: typ must be JWT, got ${JSON.stringify(t.header.typ)}`;
    }
    try { jwt.verifySignature(t, 'RS256', this.key(cfg.publicKeyPem)); } catch (e) {
      return `Invalid JWT Signature: ${e.message}`;
    }
    const c = t.claims;
    const now = nowMs / 1000;
    if (c.iss !== cfg.clientEmail) return `Invalid JWT: iss ${JSON.stringify(c.iss)} is not ${cfg.clientEmail}`;
    if (typeof c.scope !== 'string' || !c.scope.split(/\s+/).includes(SCOPE)) {
      return `Invalid JWT: scope must include ${SCOPE}`;
    }
    if (c.aud !== cfg.tokenUri) return `Invalid JWT: aud ${JSON.stringify(c.aud)} is not ${cfg.tokenUri}`;
    if (typeof c.iat !== 'number' || typeof c.exp !== 'number') return 'Invalid JWT: iat and exp must be numbers';
    if (Math.abs(c.iat - now) > CLOCK_SKEW_S) {
      return `Invalid JWT: iat ${c.iat} is more than ${CLOCK_SKEW_S} s from now (${Math.floor(now)})`;
    }
    if (c.exp <= now) return `Invalid JWT: expired (exp ${c.exp} <= now ${Math.floor(now)})`;
    if (c.exp - c.iat > MAX_LIFETIME_S) return `Invalid JWT: exp - iat = ${c.exp - c.iat} s, over ${MAX_LIFETIME_S}`;
    return null;
  }

  // POST /token (provider fcm-auth)
  handleToken(ctx) {
    if (ctx.method !== 'POST') return oauthError(405, 'invalid_request', `${ctx.method} not allowed, use POST`);
    if (!/^application\/x-www-form-urlencoded\b/i.test(header(ctx, 'content-type') || '')) {
      return oauthError(400, 'invalid_request', 'Content-Type must be application/x-www-form-urlencoded');
    }
    const form = new URLSearchParams(ctx.text);
    if (form.get('grant_type') !== GRANT_TYPE) {
      return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${form.get('grant_type')}`);
    }
    if (!form.get('assertion')) return oauthError(400, 'invalid_request', 'Missing required parameter: assertion');
    const who = {};
    const problem = this.assertionProblem(form.get('assertion'), ctx.now, who);
    if (problem) return oauthError(400, 'invalid_grant', problem);
    const token = `ya29.fake-${++this.seq}`;
    const ttl = this.config.accessTtlS;
    this.tokens.set(token, { expiry: ctx.now + ttl * 1000, projectId: who.account.projectId });
    return json(200, { access_token: token, expires_in: ttl, token_type: 'Bearer' });
  }

  // POST /v1/projects/:project/messages:send (provider fcm)
  handleSend(ctx) {
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(ctx.pathname);
    if (!m) return notFound();
    if (ctx.method !== 'POST') return fcmError(405, 'METHOD_NOT_ALLOWED', `${ctx.method} not allowed, use POST`);
    const auth = /^Bearer\s+(\S+)$/i.exec(header(ctx, 'authorization') || '');
    const tok = auth && this.tokens.get(auth[1]);
    if (!(tok && tok.expiry > ctx.now)) {
      return fcmError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
    }
    if (m[1] !== this.config.projectId && !this.config.accounts.some((a) => a.projectId === m[1])) return notFound();
    if (m[1] !== tok.projectId) return fcmError(403, 'PERMISSION_DENIED', 'SenderId mismatch', 'SENDER_ID_MISMATCH');
    const body = parseJsonObject(ctx.text);
    if (body.error) return invalidArgument(`Invalid JSON payload received. ${body.error}`);
    const msg = body.value.message;
    const bad = 'Request contains an invalid argument:';
    if (!isObject(msg)) return invalidArgument(`${bad} message (an object) is required.`);
    if (!nonEmptyString(msg.token)) return invalidArgument(`${bad} message.token (a non-empty string) is required.`);
    if (Buffer.byteLength(JSON.stringify(msg)) > MAX_MESSAGE_BYTES) return invalidArgument('Message is too big');
    if (this.unregistered.has(msg.token)) return notFound('UNREGISTERED');
    return json(200, { name: `projects/${m[1]}/messages/${++this.seq}` });
  }
}

module.exports = { Fcm };
