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
