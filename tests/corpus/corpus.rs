//! The attack corpus (tests/corpus/attacks.json, written by tests/corpus/generate.mjs) and the
//! plugin configuration it targets: one provider with the corpus issuer and the inline public
//! keys idp-rs256-1 and local-es256-1, so no JWKS fetch is needed.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Value};

/// A token the filter must reject, and the reason code it must give.
#[derive(Debug, Clone, Deserialize)]
pub struct Attack {
    pub name: String,
    pub category: String,
    pub token: String,
    pub expected_reason: String,
}

/// A token the filter must accept: the valid baseline the attacks are derived from.
#[derive(Debug, Clone, Deserialize)]
pub struct Control {
    pub name: String,
    pub token: String,
}

/// A crafted token that is nevertheless valid, with the reason it is not an attack.
#[derive(Debug, Clone, Deserialize)]
pub struct AcceptedVariant {
    pub name: String,
    pub category: String,
    pub token: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Corpus {
    pub issuer: String,
    pub audience: String,
    pub required_scope: String,
    pub key_ids: Vec<String>,
    pub controls: Vec<Control>,
    pub attacks: Vec<Attack>,
    pub accepted_variants: Vec<AcceptedVariant>,
}

pub fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/attacks.json")
}

/// Reads and parses the corpus; run `make corpus` to regenerate it.
pub fn load() -> Corpus {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error} (run `make corpus`)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is not a valid corpus: {error}", path.display()))
}

/// Returns the public JWK of `key_id` from tests/fixtures/keys.
fn public_jwk(key_id: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/keys/{key_id}.jwk.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// Builds the plugin configuration the corpus targets, the same in native and Envoy tests.
pub fn plugin_config(corpus: &Corpus) -> Value {
    let keys: Vec<Value> = corpus.key_ids.iter().map(|key_id| public_jwk(key_id)).collect();
    json!({
        "providers": [{
            "name": "corpus",
            "issuer": corpus.issuer,
            "audiences": [corpus.audience],
            "local_jwks": { "keys": keys }
        }],
        "required_scopes": [corpus.required_scope],
        "clock_skew_seconds": 60,
        "keep_token": false
    })
}
