'use strict';
// JWS compact serialization (header.claims.signature), parsed and checked
// with node's crypto only. Written independently of any JWT library so the
// engine's signer is checked by different code. Only what FCM (RS256) and
// APNs (ES256) need.

const crypto = require('crypto');

class JwtError extends Error {}

const B64URL = /^[A-Za-z0-9_-]+$/; // unpadded base64url, as JWS requires

function decodePart(part, what) {
  let value;
  try { value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')); } catch (e) {
    throw new JwtError(`${what} is not base64url JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new JwtError(`${what} is not a JSON object`);
  return value;
}

// Split and decode a JWT. Returns {header, claims, signingInput,
// signature (Buffer)}; throws JwtError saying what is malformed. (Buffer's
// base64url decoder skips bad characters silently, hence the regex.)
function decode(token) {
  if (typeof token !== 'string' || token === '') throw new JwtError('no token');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwtError(`expected 3 dot-separated parts, got ${parts.length}`);
  const names = ['header', 'claims', 'signature'];
  parts.forEach((p, i) => {
    if (!B64URL.test(p)) throw new JwtError(`${names[i]} is not unpadded base64url`);
  });
  return {
    header: decodePart(parts[0], 'header'),
    claims: decodePart(parts[1], 'claims'),
    signingInput: Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii'),
    signature: Buffer.from(parts[2], 'base64url'),
  };
}

// Check the signature of a decoded JWT with a public KeyObject.
// RS256: RSASSA-PKCS1-v1_5 with SHA-256. ES256: ECDSA P-256 with SHA-256,
// the signature being the raw 64-byte r‖s of JOSE (not DER).
function verifySignature(jwt, alg, key) {
  if (alg === 'ES256' && jwt.signature.length !== 64) {
    throw new JwtError(`ES256 signature must be 64 bytes (r||s), got ${jwt.signature.length}`);
  }
  let ok;
  try {
    ok = alg === 'ES256'
      ? crypto.verify('sha256', jwt.signingInput, { key, dsaEncoding: 'ieee-p1363' }, jwt.signature)
      : crypto.verify('sha256', jwt.signingInput, key, jwt.signature);
  } catch (e) {
    ok = false;
  }
  if (!ok) throw new JwtError('signature does not verify with the configured public key');
}

module.exports = { JwtError, decode, verifySignature };
