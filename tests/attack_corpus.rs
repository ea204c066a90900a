//! Runs every token of the attack corpus (tests/corpus/attacks.json) through the filter's
//! verification path with the real clock, and checks that each is rejected with exactly its
//! expected reason code. Regenerate the corpus with `make corpus`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

#[path = "corpus/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use idaas_jwt_filter::authenticator::{self, KeyAvailability, KeyStore, RequestAuth, Verdict};
use idaas_jwt_filter::config::{self, FilterConfig, JwksSource};
use idaas_jwt_filter::jwks::KeySet;

use corpus::Corpus;

/// The inline key sets of each provider, as the host serves `local_jwks`.
struct LocalKeys {
    key_sets: Vec<Rc<KeySet>>,
}

impl LocalKeys {
    fn new(config: &FilterConfig) -> Self {
        let key_sets = config
            .providers
            .iter()
            .map(|provider| match &provider.jwks {
                JwksSource::Local(key_set) => Rc::new(key_set.clone()),
                JwksSource::Remote(remote) => panic!("provider {} fetches {}; the corpus needs local_jwks", provider.name, remote.uri),
            })
            .collect();
        LocalKeys { key_sets }
    }
}

impl KeyStore for LocalKeys {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        KeyAvailability::Ready(Rc::clone(&self.key_sets[provider_index]))
    }
}

fn now_seconds() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("system clock is before 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds since 1970 fit in i64")
}

/// Parses the corpus's plugin configuration with the filter's own parser.
fn corpus_config(corpus: &Corpus) -> FilterConfig {
    let text = corpus::plugin_config(corpus).to_string();
    let parsed = config::parse_config(text.as_bytes()).unwrap_or_else(|error| panic!("the corpus configuration is invalid: {error}"));
    assert!(parsed.skipped_keys.is_empty(), "inline keys were skipped: {:?}", parsed.skipped_keys);
    parsed.config
}

/// Authenticates `Authorization: Bearer <token>` now.
fn verdict(config: &FilterConfig, keys: &LocalKeys, token: &str) -> Verdict {
    let header = format!("Bearer {token}");
    let values = [header.as_str()];
    let request = RequestAuth { authorization: &values, now_seconds: now_seconds() };
    authenticator::authenticate(config, keys, request)
}

/// Renders a verdict for a failure message without the token.
fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Allow(verified) => format!("accepted (alg {}, kid {:?})", verified.alg, verified.kid),
        Verdict::Deny(denial) => format!("{} ({})", denial.rejection.reason.code(), denial.rejection.detail),
        Verdict::WaitForKeys { .. } => "waits for keys".to_owned(),
    }
}

#[test]
fn corpus_covers_required_categories() {
    let corpus = corpus::load();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for attack in &corpus.attacks {
        *counts.entry(attack.category.as_str()).or_default() += 1;
    }

    assert!(corpus.attacks.len() >= 300, "the corpus has {} attacks; at least 300 are required", corpus.attacks.len());
    let required = [
        "alg_none",
        "hmac_public_key",
        "embedded_key",
        "kid_injection",
        "crit",
        "b64",
        "base64_noncanonical",
        "duplicate_members",
        "numeric_claims",
        "aud_type",
        "scope_type",
        "json_depth",
        "oversized",
        "ecdsa_signature",
        "rsa_signature",
        "signature_transplant",
    ];
    let missing: Vec<&str> = required.iter().copied().filter(|category| !counts.contains_key(category)).collect();
    assert!(missing.is_empty(), "categories without tokens: {missing:?}");
}

#[test]
fn controls_are_accepted() {
    let corpus = corpus::load();
    let config = corpus_config(&corpus);
    let keys = LocalKeys::new(&config);

    assert!(!corpus.controls.is_empty(), "the corpus has no control tokens");
    for control in &corpus.controls {
        let verdict = verdict(&config, &keys, &control.token);
        assert!(matches!(verdict, Verdict::Allow(_)), "control {} was not accepted: {}", control.name, describe(&verdict));
    }
}

#[test]
fn every_attack_is_rejected_with_its_reason() {
    let corpus = corpus::load();
    let config = corpus_config(&corpus);
    let keys = LocalKeys::new(&config);

    let mut accepted = Vec::new();
    let mut mismatches = Vec::new();
    // Per category: (tokens, rejected with the expected reason).
    let mut summary: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for attack in &corpus.attacks {
        let verdict = verdict(&config, &keys, &attack.token);
        let counts = summary.entry(attack.category.as_str()).or_default();
        counts.0 += 1;
        match &verdict {
            Verdict::Deny(denial) if denial.rejection.reason.code() == attack.expected_reason => counts.1 += 1,
            Verdict::Allow(_) => accepted.push(format!("{}: expected {}, got {}", attack.name, attack.expected_reason, describe(&verdict))),
            _ => mismatches.push(format!("{}: expected {}, got {}", attack.name, attack.expected_reason, describe(&verdict))),
        }
    }

    for (category, (total, as_expected)) in &summary {
        println!("{category}: {as_expected} of {total} rejected with the expected reason");
    }
    assert!(
        accepted.is_empty(),
        "{} attack tokens were ACCEPTED:\n{}\n{} more got another reason than expected:\n{}",
        accepted.len(),
        accepted.join("\n"),
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} attack tokens got another verdict than expected:\n{}",
        mismatches.len(),
        corpus.attacks.len(),
        mismatches.join("\n")
    );
}

#[test]
fn accepted_variants_are_accepted() {
    // These tokens look like attacks but are valid (for example a high-S ECDSA signature); the
    // corpus records why. This test notices when the filter's verdict on them changes.
    let corpus = corpus::load();
    let config = corpus_config(&corpus);
    let keys = LocalKeys::new(&config);

    for variant in &corpus.accepted_variants {
        let verdict = verdict(&config, &keys, &variant.token);
        assert!(
            matches!(verdict, Verdict::Allow(_)),
            "{} ({}) is documented as accepted because {}, but got {}",
            variant.name,
            variant.category,
            variant.explanation,
            describe(&verdict)
        );
    }
}
