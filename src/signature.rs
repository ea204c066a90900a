//! Signature verification with ring.
//!
//! ring enforces the parameters RFC 7518 requires: RSA moduli of 2048 to 8192 bits,
//! RSA-PSS with MGF1 and a salt as long as the hash, ECDSA signatures in the fixed-width
//! `r || s` form, and Ed25519 per RFC 8032.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::algorithm::Algorithm;
use crate::jwks::KeyMaterial;

/// Returns whether `signature` is a valid signature of `message` under `key` with `alg`.
/// A key of the wrong family for `alg` never verifies.
pub fn verify(alg: Algorithm, key: &KeyMaterial, message: &[u8], signature: &[u8]) -> bool {
    match (alg, key) {
        (Algorithm::RS256, KeyMaterial::Rsa { n, e }) => {
            verify_rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e, message, signature)
        }
        (Algorithm::RS384, KeyMaterial::Rsa { n, e }) => {
            verify_rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e, message, signature)
        }
        (Algorithm::RS512, KeyMaterial::Rsa { n, e }) => {
            verify_rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e, message, signature)
        }
        (Algorithm::PS256, KeyMaterial::Rsa { n, e }) => {
            verify_rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e, message, signature)
        }
        (Algorithm::PS384, KeyMaterial::Rsa { n, e }) => {
            verify_rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e, message, signature)
        }
        (Algorithm::PS512, KeyMaterial::Rsa { n, e }) => {
            verify_rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e, message, signature)
        }
        (Algorithm::ES256, KeyMaterial::EcP256 { point }) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        (Algorithm::ES384, KeyMaterial::EcP384 { point }) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        (Algorithm::EdDSA, KeyMaterial::Ed25519 { x }) => {
            UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok()
        }
        _ => false,
    }
}

fn verify_rsa(
    params: &'static signature::RsaParameters,
    n: &[u8],
    e: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    RsaPublicKeyComponents { n, e }
        .verify(params, message, signature)
        .is_ok()
}

/// The code that verifies signatures (`signature_backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureBackend {
    /// The host for every algorithm whose configure-time self-test passes, ring otherwise.
    #[default]
    Auto,
    /// The host for RS256/384/512 and ES256/384; configuration fails if its self-test fails.
    Host,
    /// ring inside the VM for every algorithm.
    Wasm,
}

/// The algorithms the host's `verify_signature` function may take: PKCS#1 v1.5 RSA and ECDSA.
/// RSA-PSS and Ed25519 always use ring.
pub const HOST_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Name of Envoy's foreign function that verifies a signature with BoringSSL.
pub const HOST_FUNCTION: &str = "verify_signature";

/// The algorithms that go to the host, decided once at configure time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendPlan {
    host: [bool; 9],
}

impl BackendPlan {
    pub fn with_host(algorithms: &[Algorithm]) -> BackendPlan {
        let mut plan = BackendPlan::default();
        for alg in algorithms {
            if let Some(slot) = Algorithm::ALL.iter().position(|known| known == alg).and_then(|index| plan.host.get_mut(index)) {
                *slot = true;
            }
        }
        plan
    }

    pub fn uses_host(&self, alg: Algorithm) -> bool {
        Algorithm::ALL
            .iter()
            .position(|known| *known == alg)
            .and_then(|index| self.host.get(index))
            .copied()
            .unwrap_or(false)
    }
}

/// The host call for one signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    /// Call the host with these `VerifySignatureArguments` bytes.
    Request(Vec<u8>),
    /// The signature is malformed for the algorithm (for example ECDSA r = 0): it is invalid
    /// and the host is not asked.
    Invalid,
    /// The host cannot take this key or algorithm; verify with ring.
    NotSupported,
}

/// Encodes Envoy's `VerifySignatureArguments` protobuf message: `hash_function` (1),
/// `public_key` DER (2), `signature` (3), `text` (4).
pub fn host_call(alg: Algorithm, key: &crate::jwks::Jwk, message: &[u8], signature: &[u8]) -> HostCall {
    let hash_function = match alg {
        Algorithm::RS256 | Algorithm::ES256 => "sha256",
        Algorithm::RS384 | Algorithm::ES384 => "sha384",
        Algorithm::RS512 => "sha512",
        _ => return HostCall::NotSupported,
    };
    let Some(public_key) = key.spki_der.as_deref() else {
        return HostCall::NotSupported;
    };
    if alg.key_family() != key.material.family() {
        return HostCall::Invalid;
    }
    let der_signature;
    let signature = match alg {
        Algorithm::ES256 | Algorithm::ES384 => match crate::der::ecdsa_signature(signature, &key.material) {
            Some(converted) => {
                der_signature = converted;
                der_signature.as_slice()
            }
            None => return HostCall::Invalid,
        },
        _ => signature,
    };
    let mut out = Vec::with_capacity(public_key.len() + signature.len() + message.len() + 32);
    protobuf_field(&mut out, 1, hash_function.as_bytes());
    protobuf_field(&mut out, 2, public_key);
    protobuf_field(&mut out, 3, signature);
    protobuf_field(&mut out, 4, message);
    HostCall::Request(out)
}

/// Reads Envoy's `VerifySignatureResult`: `result` (1, bool) and `error` (2, string). Returns
/// `None` when the bytes are not such a message.
pub fn parse_host_result(bytes: &[u8]) -> Option<(bool, String)> {
    let mut result = false;
    let mut error = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (tag, after_tag) = read_varint(rest)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                let (value, after) = read_varint(after_tag)?;
                result = value != 0;
                rest = after;
            }
            (field, 2) => {
                let (len, after_len) = read_varint(after_tag)?;
                let len = usize::try_from(len).ok()?;
                let value = after_len.get(..len)?;
                if field == 2 {
                    error = String::from_utf8_lossy(value).into_owned();
                }
                rest = after_len.get(len..)?;
            }
            (_, 0) => rest = read_varint(after_tag)?.1,
            _ => return None,
        }
    }
    Some((result, error))
}

fn protobuf_field(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    write_varint(out, (field << 3) | 2);
    write_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(index + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::Jwk;
    use crate::selftest_vectors;

    #[test]
    fn host_request_encodes_the_four_fields() {
        let vector = &selftest_vectors::vectors()[0];
        let key = Jwk::new(None, None, vector.key.clone());
        let HostCall::Request(bytes) = host_call(Algorithm::RS256, &key, b"abc", &vector.signature) else {
            panic!("expected a request");
        };
        assert_eq!(&bytes[..8], b"\x0a\x06sha256");
        assert!(bytes.ends_with(b"\x22\x03abc"));
    }

    #[test]
    fn malformed_ecdsa_signature_never_reaches_the_host() {
        let vector = selftest_vectors::vectors().into_iter().find(|v| v.alg == Algorithm::ES256).unwrap();
        let key = Jwk::new(None, None, vector.key);
        assert_eq!(host_call(Algorithm::ES256, &key, b"m", &[0u8; 64]), HostCall::Invalid);
        assert_eq!(host_call(Algorithm::ES256, &key, b"m", &[1u8; 63]), HostCall::Invalid);
    }

    #[test]
    fn pss_and_eddsa_stay_in_the_vm() {
        let vector = &selftest_vectors::vectors()[0];
        let key = Jwk::new(None, None, vector.key.clone());
        assert_eq!(host_call(Algorithm::PS256, &key, b"m", b"s"), HostCall::NotSupported);
    }

    #[test]
    fn host_result_is_parsed() {
        assert_eq!(parse_host_result(b"\x08\x01"), Some((true, String::new())));
        assert_eq!(parse_host_result(b"\x08\x00\x12\x03bad"), Some((false, "bad".to_owned())));
        assert_eq!(parse_host_result(b""), Some((false, String::new())));
        assert_eq!(parse_host_result(b"\x12\x09short"), None);
    }

    #[test]
    fn backend_plan_routes_algorithms() {
        let plan = BackendPlan::with_host(&[Algorithm::RS256, Algorithm::ES256]);
        assert!(plan.uses_host(Algorithm::RS256));
        assert!(!plan.uses_host(Algorithm::PS256));
        assert!(!BackendPlan::default().uses_host(Algorithm::RS256));
    }
}
