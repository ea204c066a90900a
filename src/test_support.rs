//! Test helpers: keys, token minting and a fixed key store for the core's unit tests.
//!
//! Ed25519 and ES256 keys are generated with ring per test run. The RS256 key is the private
//! key of RFC 7515 appendix A.2, read from the shared JOSE vectors, so RSA signing needs no
//! key generator.

use std::path::PathBuf;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::rsa::{KeyPairComponents, PublicKeyComponents};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use crate::authenticator::{KeyAvailability, KeyStore};
use crate::jwks::{self, KeySet};

/// Directory of the shared conformance vectors (`../shared/vectors` from the project root).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

/// Reads a JSON file from the shared vectors; a missing file fails the test.
pub fn read_vector_json(relative: &str) -> Value {
    let path = vectors_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

pub enum SigningKey {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

/// A private key with its `kid` and public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pub key: SigningKey,
    pub public_jwk: Value,
}

impl TestKey {
    pub fn ed25519(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public_jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        });
        TestKey { kid: kid.to_owned(), alg: "EdDSA", key: SigningKey::Ed25519(pair), public_jwk }
    }

    pub fn es256(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let public_jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        TestKey { kid: kid.to_owned(), alg: "ES256", key: SigningKey::Es256(pair), public_jwk }
    }

    /// Loads the RSA-2048 key of RFC 7515 appendix A.2.
    pub fn rs256_rfc7515(kid: &str) -> TestKey {
        let cases = read_vector_json("rfc/rfc_jws_cases.json");
        let case = cases["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|case| case["name"] == "RFC7515-A.2-RS256")
            .unwrap();
        let private = &case["jwk_private"];
        let field = |name: &str| URL_SAFE_NO_PAD.decode(private[name].as_str().unwrap()).unwrap();
        let components = KeyPairComponents {
            public_key: PublicKeyComponents { n: field("n"), e: field("e") },
            d: field("d"),
            p: field("p"),
            q: field("q"),
            dP: field("dp"),
            dQ: field("dq"),
            qInv: field("qi"),
        };
        let pair = RsaKeyPair::from_components(&components).unwrap();
        let public_jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": private["n"], "e": private["e"],
        });
        TestKey { kid: kid.to_owned(), alg: "RS256", key: SigningKey::Rs256(pair), public_jwk }
    }

    /// Signs `signing_input` with this key.
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Ed25519(pair) => pair.sign(signing_input).as_ref().to_vec(),
            SigningKey::Es256(pair) => pair.sign(&rng, signing_input).unwrap().as_ref().to_vec(),
            SigningKey::Rs256(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, signing_input, &mut out).unwrap();
                out
            }
        }
    }

    /// Mints a token with the default header (`alg`, `kid`) and the given claims.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_header(&json!({ "alg": self.alg, "kid": self.kid, "typ": "at+jwt" }), claims)
    }

    /// Mints a token with an arbitrary header, signed by this key.
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// Builds a key set from public JWKs.
pub fn key_set(keys: &[&TestKey]) -> KeySet {
    let jwks = json!({ "keys": keys.iter().map(|key| key.public_jwk.clone()).collect::<Vec<_>>() });
    jwks::parse_jwks(jwks.to_string().as_bytes()).unwrap().key_set
}

/// A key store that returns the same availability for every provider.
pub struct FixedKeys(pub KeyAvailability);

impl FixedKeys {
    pub fn ready(set: KeySet) -> FixedKeys {
        FixedKeys(KeyAvailability::Ready(Rc::new(set)))
    }
}

impl KeyStore for FixedKeys {
    fn keys(&self, _provider_index: usize) -> KeyAvailability {
        self.0.clone()
    }
}
