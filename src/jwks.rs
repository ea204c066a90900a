//! JSON Web Key Set parsing and key selection.
//!
//! A key set is parsed key by key: a key this filter cannot use (an unknown `kty`, a curve
//! it does not support, bad base64, a symmetric or encryption key) is skipped with a reason,
//! and the rest of the set stays usable. Only a set with no usable key at all is an error.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::algorithm::{Algorithm, KeyFamily};
use crate::json;

/// Smallest RSA modulus accepted, in bits (RFC 7518 section 3.3 requires 2048).
const MIN_RSA_MODULUS_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits; ring verifies up to 8192.
const MAX_RSA_MODULUS_BITS: usize = 8192;

/// Public key bytes in the form ring verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA modulus and public exponent, big-endian, leading zeros removed.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed P-256 point `04 || x || y`.
    EcP256 { point: Vec<u8> },
    /// Uncompressed P-384 point `04 || x || y`.
    EcP384 { point: Vec<u8> },
    /// Ed25519 public key (32 bytes).
    Ed25519 { x: Vec<u8> },
}

impl KeyMaterial {
    pub fn family(&self) -> KeyFamily {
        match self {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::EcP256 { .. } => KeyFamily::EcP256,
            KeyMaterial::EcP384 { .. } => KeyFamily::EcP384,
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
        }
    }
}

/// One usable verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's `alg`, when the set gives one: the key then verifies only that algorithm.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
    /// DER SubjectPublicKeyInfo for the proxy's signature check, built once at load time
    /// (`None` for Ed25519).
    pub spki_der: Option<Vec<u8>>,
    /// SHA-256 over `kid` and the key bytes: identifies the key across key-set reloads, so
    /// cached verifications can be dropped when their key disappears.
    pub fingerprint: [u8; 32],
}

impl Jwk {
    /// Builds a key and its derived forms.
    pub fn new(kid: Option<String>, alg: Option<Algorithm>, material: KeyMaterial) -> Jwk {
        let spki_der = crate::der::subject_public_key_info(&material);
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(kid.as_deref().unwrap_or_default().as_bytes());
        context.update(&[0]);
        match &material {
            KeyMaterial::Rsa { n, e } => {
                context.update(n);
                context.update(&[0]);
                context.update(e);
            }
            KeyMaterial::EcP256 { point } | KeyMaterial::EcP384 { point } => context.update(point),
            KeyMaterial::Ed25519 { x } => context.update(x),
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(context.finish().as_ref());
        Jwk {
            kid,
            alg,
            material,
            spki_der,
            fingerprint,
        }
    }

    /// Returns whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.material.family() == alg.key_family() && self.alg.is_none_or(|own| own == alg)
    }
}

/// A key that was left out of a set, with the reason for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// Maximum number of skipped keys named one by one in a message or log, because a key set
/// can hold thousands.
pub const MAX_SKIPPED_SHOWN: usize = 5;

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "keys[{}] (kid {:?}): {}", self.index, crate::jws::truncate(kid, 64), self.reason),
            None => write!(f, "keys[{}] (no kid): {}", self.index, self.reason),
        }
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

/// A parsed key set plus the keys that were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKeySet {
    pub key_set: KeySet,
    pub skipped: Vec<SkippedKey>,
}

/// Reason a JWKS document was rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// The text is not a JSON object.
    NotJson(String),
    /// The object has no `keys` array.
    NoKeysArray,
    /// Every key was skipped (or the array was empty).
    NoUsableKey(Vec<SkippedKey>),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::NotJson(message) => write!(f, "JWKS is not a JSON object: {message}"),
            JwksError::NoKeysArray => f.write_str("JWKS has no \"keys\" array"),
            JwksError::NoUsableKey(skipped) if skipped.is_empty() => {
                f.write_str("JWKS \"keys\" array is empty")
            }
            JwksError::NoUsableKey(skipped) => {
                f.write_str("JWKS has no usable signature key; ")?;
                let reasons: Vec<String> = skipped.iter().take(MAX_SKIPPED_SHOWN).map(ToString::to_string).collect();
                f.write_str(&reasons.join("; "))?;
                if skipped.len() > MAX_SKIPPED_SHOWN {
                    write!(f, "; and {} more skipped keys", skipped.len() - MAX_SKIPPED_SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

/// The key a token names: the header's `kid` (if any) and `alg`.
#[derive(Debug, Clone, Copy)]
pub struct KeyQuery<'a> {
    pub kid: Option<&'a str>,
    pub alg: Algorithm,
}

impl KeySet {
    /// Returns the keys that may verify a token with this `kid` and `alg`.
    ///
    /// With a `kid`, every key of that `kid` that fits `alg` is a candidate (a set may
    /// publish the same `kid` twice during rotation). Without a `kid`, the token is
    /// accepted only when exactly one key in the set fits `alg`, so the choice is never a
    /// guess.
    pub fn candidates(&self, query: KeyQuery<'_>) -> Vec<&Jwk> {
        match query.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|key| key.kid.as_deref() == Some(kid) && key.fits(query.alg))
                .collect(),
            None => {
                let fitting: Vec<&Jwk> =
                    self.keys.iter().filter(|key| key.fits(query.alg)).collect();
                if fitting.len() == 1 {
                    fitting
                } else {
                    Vec::new()
                }
            }
        }
    }
}

/// Parses a JWKS document (`{"keys": [...]}`).
pub fn parse_jwks(text: &[u8]) -> Result<ParsedKeySet, JwksError> {
    let document = json::parse_object(text).map_err(|error| JwksError::NotJson(error.to_string()))?;
    parse_jwks_object(&document)
}

/// Parses a JWKS document that is already a JSON object.
pub fn parse_jwks_object(document: &Map<String, Value>) -> Result<ParsedKeySet, JwksError> {
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err(JwksError::NoKeysArray);
    };

    let mut key_set = KeySet::default();
    let mut skipped = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let kid = entry
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match parse_jwk(entry) {
            Ok(jwk) => key_set.keys.push(jwk),
            Err(reason) => skipped.push(SkippedKey { index, kid, reason }),
        }
    }

    if key_set.keys.is_empty() {
        return Err(JwksError::NoUsableKey(skipped));
    }
    Ok(ParsedKeySet { key_set, skipped })
}

/// Parses one JWK; the error is the reason the key is skipped.
fn parse_jwk(entry: &Value) -> Result<Jwk, String> {
    let Value::Object(key) = entry else {
        return Err("entry is not a JSON object".to_owned());
    };

    let kid = match key.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("\"kid\" is not a string".to_owned()),
    };

    match key.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(other) => return Err(format!("\"use\" is {}, not \"sig\"", crate::claims::short_json(other))),
    }

    if let Some(ops) = key.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"".to_owned());
        }
    }

    let alg = match key.get("alg") {
        None => None,
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(alg) => Some(alg),
            None => return Err(format!("\"alg\" {:?} is not an accepted signature algorithm", crate::jws::truncate(name, 32))),
        },
        Some(_) => return Err("\"alg\" is not a string".to_owned()),
    };

    let kty = match key.get("kty") {
        Some(Value::String(kty)) => kty.as_str(),
        Some(_) => return Err("\"kty\" is not a string".to_owned()),
        None => return Err("\"kty\" is missing".to_owned()),
    };
    let material = match kty {
        "RSA" => parse_rsa(key)?,
        "EC" => parse_ec(key)?,
        "OKP" => parse_okp(key)?,
        "oct" => return Err("symmetric (\"oct\") keys are never used".to_owned()),
        other => return Err(format!("\"kty\" {:?} is not supported", crate::jws::truncate(other, 32))),
    };

    if let Some(alg) = alg {
        if alg.key_family() != material.family() {
            return Err(format!("\"alg\" {alg} does not fit \"kty\" {:?}", crate::jws::truncate(kty, 32)));
        }
    }
    Ok(Jwk::new(kid, alg, material))
}

fn parse_rsa(key: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let n = strip_leading_zeros(decode_member(key, "n")?);
    let e = strip_leading_zeros(decode_member(key, "e")?);
    let bits = bit_length(&n);
    if !(MIN_RSA_MODULUS_BITS..=MAX_RSA_MODULUS_BITS).contains(&bits) {
        return Err(format!(
            "RSA modulus has {bits} bits; accepted sizes are {MIN_RSA_MODULUS_BITS} to {MAX_RSA_MODULUS_BITS}"
        ));
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        return Err("RSA modulus \"n\" is even, so it is not a product of two primes".to_owned());
    }
    // An exponent of 1 makes every message its own signature, and ring rejects it only at
    // verification, where the operator gets no hint.
    if e.is_empty() || e.len() > 4 || e.last().is_some_and(|low| low & 1 == 0) || e == [1] {
        return Err("RSA exponent \"e\" must be odd, at least 3 and at most 32 bits".to_owned());
    }
    Ok(KeyMaterial::Rsa { n, e })
}

fn parse_ec(key: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let curve = key.get("crv").and_then(Value::as_str).unwrap_or_default();
    let coordinate_len = match curve {
        "P-256" => 32,
        "P-384" => 48,
        "" => return Err("\"crv\" is missing".to_owned()),
        other => return Err(format!("curve {:?} is not supported (P-256 and P-384 are)", crate::jws::truncate(other, 32))),
    };
    let x = decode_member(key, "x")?;
    let y = decode_member(key, "y")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(format!(
            "{curve} coordinates must be {coordinate_len} bytes each, got x={} y={}",
            x.len(),
            y.len()
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(if coordinate_len == 32 {
        KeyMaterial::EcP256 { point }
    } else {
        KeyMaterial::EcP384 { point }
    })
}

fn parse_okp(key: &Map<String, Value>) -> Result<KeyMaterial, String> {
    match key.get("crv").and_then(Value::as_str) {
        Some("Ed25519") => {}
        Some(other) => return Err(format!("OKP curve {:?} is not supported (Ed25519 is)", crate::jws::truncate(other, 32))),
        None => return Err("\"crv\" is missing".to_owned()),
    }
    let x = decode_member(key, "x")?;
    if x.len() != 32 {
        return Err(format!("Ed25519 key must be 32 bytes, got {}", x.len()));
    }
    Ok(KeyMaterial::Ed25519 { x })
}

fn decode_member(key: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = match key.get(name) {
        Some(Value::String(text)) => text,
        Some(_) => return Err(format!("\"{name}\" is not a string")),
        None => return Err(format!("\"{name}\" is missing")),
    };
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|error| format!("\"{name}\" is not unpadded base64url: {error}"))
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    fn rsa_key(extra: &str) -> String {
        format!(r#"{{"kty":"RSA","kid":"r1","n":"{RSA_N}","e":"AQAB"{extra}}}"#)
    }

    #[test]
    fn rsa_key_parses() {
        let text = format!(r#"{{"keys":[{}]}}"#, rsa_key(r#","alg":"RS256","use":"sig""#));
        let parsed = parse_jwks(text.as_bytes());
        let Ok(parsed) = parsed else { panic!("{parsed:?}") };
        assert_eq!(parsed.key_set.keys.len(), 1);
        assert_eq!(parsed.key_set.keys[0].alg, Some(Algorithm::RS256));
    }

    #[test]
    fn unknown_kty_is_skipped_and_rest_stays_usable() {
        let text = format!(
            r#"{{"keys":[{{"kty":"AKP","kid":"pq","alg":"ML-DSA-44","pub":"AA"}},{}]}}"#,
            rsa_key("")
        );
        let parsed = parse_jwks(text.as_bytes());
        let Ok(parsed) = parsed else { panic!("{parsed:?}") };
        assert_eq!(parsed.key_set.keys.len(), 1);
        assert_eq!(parsed.skipped.len(), 1);
        assert_eq!(parsed.skipped[0].kid.as_deref(), Some("pq"));
    }

    #[test]
    fn long_kid_is_shortened_in_the_skip_reason() {
        let kid = "k".repeat(10_000);
        let text = format!(r#"{{"keys":[{{"kty":"oct","kid":"{kid}","k":"AAAA"}}]}}"#);
        let error = parse_jwks(text.as_bytes()).unwrap_err();
        let line = error.to_string();
        assert!(line.contains("symmetric"), "{line}");
        assert!(line.len() < 300, "{} characters", line.len());
    }

    #[test]
    fn many_skipped_keys_are_summarized() {
        let entries = vec![r#"{"kty":"oct","k":"AAAA"}"#; 1000].join(",");
        let text = format!(r#"{{"keys":[{entries}]}}"#);
        let line = parse_jwks(text.as_bytes()).unwrap_err().to_string();
        assert!(line.contains("and 995 more skipped keys"), "{line}");
        assert!(line.len() < 1000, "{} characters", line.len());
    }

    #[test]
    fn encryption_key_is_skipped() {
        let text = format!(r#"{{"keys":[{}]}}"#, rsa_key(r#","use":"enc""#));
        assert!(matches!(parse_jwks(text.as_bytes()), Err(JwksError::NoUsableKey(s)) if s.len() == 1));
    }

    #[test]
    fn key_ops_without_verify_is_skipped() {
        let text = format!(r#"{{"keys":[{}]}}"#, rsa_key(r#","key_ops":["encrypt"]"#));
        assert!(matches!(parse_jwks(text.as_bytes()), Err(JwksError::NoUsableKey(_))));
    }

    #[test]
    fn symmetric_key_is_skipped() {
        let text = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert!(matches!(parse_jwks(text.as_bytes()), Err(JwksError::NoUsableKey(_))));
    }

    #[test]
    fn rsa_exponent_of_one_is_skipped() {
        let text = format!(r#"{{"keys":[{{"kty":"RSA","kid":"r1","n":"{RSA_N}","e":"AQ"}}]}}"#);
        let parsed = parse_jwks(text.as_bytes()).unwrap_err();
        assert!(format!("{parsed:?}").contains("at least 3"), "{parsed:?}");
    }

    #[test]
    fn short_rsa_modulus_is_skipped() {
        let text = r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        let result = parse_jwks(text.as_bytes());
        assert!(matches!(result, Err(JwksError::NoUsableKey(s)) if s[0].reason.contains("bits")));
    }

    #[test]
    fn unsupported_curve_is_skipped() {
        let text = r#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#;
        let result = parse_jwks(text.as_bytes());
        assert!(matches!(result, Err(JwksError::NoUsableKey(s)) if s[0].reason.contains("P-521")));
    }

    #[test]
    fn padded_base64_is_skipped() {
        let text = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="}]}"#;
        assert!(matches!(parse_jwks(text.as_bytes()), Err(JwksError::NoUsableKey(_))));
    }

    #[test]
    fn alg_that_does_not_fit_kty_is_skipped() {
        let text = format!(r#"{{"keys":[{}]}}"#, rsa_key(r#","alg":"ES256""#));
        assert!(matches!(parse_jwks(text.as_bytes()), Err(JwksError::NoUsableKey(_))));
    }

    #[test]
    fn missing_keys_array_is_an_error() {
        assert_eq!(parse_jwks(br#"{"kty":"RSA"}"#), Err(JwksError::NoKeysArray));
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(matches!(parse_jwks(b"<html>"), Err(JwksError::NotJson(_))));
    }

    #[test]
    fn key_without_kid_is_chosen_only_when_unique() {
        let one = KeySet {
            keys: vec![Jwk::new(Some("a".into()), None, KeyMaterial::Ed25519 { x: vec![0; 32] })],
        };
        let query = KeyQuery { kid: None, alg: Algorithm::EdDSA };
        assert_eq!(one.candidates(query).len(), 1);

        let mut two = one.clone();
        two.keys.push(Jwk::new(Some("b".into()), None, KeyMaterial::Ed25519 { x: vec![1; 32] }));
        assert!(two.candidates(query).is_empty());
    }

    #[test]
    fn key_alg_pins_the_algorithm() {
        let set = KeySet {
            keys: vec![Jwk::new(Some("r".into()), Some(Algorithm::RS256), KeyMaterial::Rsa { n: vec![1], e: vec![3] })],
        };
        assert_eq!(set.candidates(KeyQuery { kid: Some("r"), alg: Algorithm::RS256 }).len(), 1);
        assert!(set.candidates(KeyQuery { kid: Some("r"), alg: Algorithm::PS256 }).is_empty());
        assert!(set.candidates(KeyQuery { kid: Some("x"), alg: Algorithm::RS256 }).is_empty());
    }
}
