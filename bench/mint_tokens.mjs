// Writes the JWKS and the signed tokens that bench/run.py sends, using only node:crypto.
//
//   node bench/mint_tokens.mjs OUT_DIR ISSUER AUDIENCE SCOPE DISTINCT_COUNT MEMORY_COUNT
//
// OUT_DIR receives:
//   jwks.json             every benchmark key: RS256 and PS256 (one RSA-2048 key under two kids,
//                         because a JWK with "alg" only matches that algorithm), ES256 and EdDSA
//   tokens.json           one valid token per algorithm: {"RS256": "...", "ES256": "...", ...}
//   rs256-spki.b64        the RS256 public key as base64 DER SubjectPublicKeyInfo
//   es256-spki.b64        the ES256 public key, the same way
//   distinct-rs256.txt    DISTINCT_COUNT different valid RS256 tokens, one a line
//   memory-es256.txt      MEMORY_COUNT different valid ES256 tokens, one a line. ES256, because
//                         node signs ES256 about ten times faster than RS256 on the same machine.
// Every token expires in 2100, so the files stay valid between runs.

import { createPrivateKey, createPublicKey, constants, sign } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [outDir, issuer, audience, scope, distinctArg, memoryArg] = process.argv.slice(2);
if (!outDir || !issuer || !audience || !scope || !distinctArg || !memoryArg) {
  console.error("usage: node mint_tokens.mjs OUT_DIR ISSUER AUDIENCE SCOPE DISTINCT_COUNT MEMORY_COUNT");
  process.exit(2);
}
const distinctCount = Number.parseInt(distinctArg, 10);
const memoryCount = Number.parseInt(memoryArg, 10);

const benchDir = dirname(fileURLToPath(import.meta.url));
const fixtureDir = join(benchDir, "..", "tests", "fixtures", "keys");
const benchKeyDir = join(benchDir, "keys");

const EXPIRES_AT = 4102444800; // 2100-01-01T00:00:00Z
const ISSUED_AT = Math.floor(Date.now() / 1000) - 60;

const readPem = (path) => createPrivateKey(readFileSync(path));
const rsaKey = readPem(join(fixtureDir, "idp-rs256-1.key.pem"));
const ecKey = readPem(join(fixtureDir, "local-es256-1.key.pem"));
const edKey = readPem(join(benchKeyDir, "bench-ed25519-1.key.pem"));

// Each algorithm: the kid its tokens carry, the private key and how node signs the input.
const signers = {
  RS256: { kid: "idp-rs256-1", sign: (data) => sign("sha256", data, rsaKey) },
  PS256: {
    kid: "bench-ps256-1",
    sign: (data) =>
      sign("sha256", data, { key: rsaKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  },
  // JWS carries ECDSA signatures as r‖s (RFC 7518 section 3.4), not DER.
  ES256: { kid: "local-es256-1", sign: (data) => sign("sha256", data, { key: ecKey, dsaEncoding: "ieee-p1363" }) },
  EdDSA: { kid: "bench-ed25519-1", sign: (data) => sign(null, data, edKey) },
};

const publicJwk = (privateKey, kid, alg) => ({
  ...createPublicKey(privateKey).export({ format: "jwk" }),
  kid,
  alg,
  use: "sig",
});

const jwks = {
  keys: [
    publicJwk(rsaKey, signers.RS256.kid, "RS256"),
    publicJwk(rsaKey, signers.PS256.kid, "PS256"),
    publicJwk(ecKey, signers.ES256.kid, "ES256"),
    publicJwk(edKey, signers.EdDSA.kid, "EdDSA"),
  ],
};

const base64url = (value) => Buffer.from(value).toString("base64url");

function mintToken(alg, jti) {
  const signer = signers[alg];
  const header = { alg, typ: "JWT", kid: signer.kid };
  const claims = {
    iss: issuer,
    aud: audience,
    sub: "bench-client",
    scope,
    iat: ISSUED_AT,
    exp: EXPIRES_AT,
    jti,
  };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  return `${signingInput}.${signer.sign(Buffer.from(signingInput)).toString("base64url")}`;
}

function mintLines(alg, prefix, count) {
  const lines = [];
  for (let i = 0; i < count; i++) lines.push(mintToken(alg, `${prefix}-${i}`));
  return lines.join("\n") + "\n";
}

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "jwks.json"), JSON.stringify(jwks, null, 2) + "\n");
const single = Object.fromEntries(Object.keys(signers).map((alg) => [alg, mintToken(alg, `single-${alg}`)]));
writeFileSync(join(outDir, "tokens.json"), JSON.stringify(single, null, 2) + "\n");
// The floor filter takes the RS256 public key as base64 DER SubjectPublicKeyInfo.
const rsaSpki = createPublicKey(rsaKey).export({ type: "spki", format: "der" }).toString("base64");
writeFileSync(join(outDir, "rs256-spki.b64"), rsaSpki + "\n");
const ecSpki = createPublicKey(ecKey).export({ type: "spki", format: "der" }).toString("base64");
writeFileSync(join(outDir, "es256-spki.b64"), ecSpki + "\n");
writeFileSync(join(outDir, "distinct-rs256.txt"), mintLines("RS256", "distinct", distinctCount));
writeFileSync(join(outDir, "memory-es256.txt"), mintLines("ES256", "memory", memoryCount));
