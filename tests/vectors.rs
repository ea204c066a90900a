//! Public conformance vectors run through the filter's own verification code.
//!
//! Sources, read from the vectors directory next to the project root (see `vectors_dir`):
//! - Project Wycheproof (C2SP/wycheproof, `testvectors_v1/`, Apache-2.0): raw RSA PKCS#1 v1.5,
//!   RSA-PSS, ECDSA (IEEE P1363 form) and Ed25519 signatures, plus whole compact JWS tokens and
//!   key sets (`json_web_signature_test.json`, `json_web_key_test.json`).
//! - The JOSE RFC examples (RFC 7515 appendix A, RFC 7520 section 4, RFC 8037 appendix A.4,
//!   RFC 7797 section 4) in `rfc/rfc_jws_cases.json`.
//!
//! Every key goes through `jwks::parse_jwks`, every signature through `signature::verify`, and
//! every whole token through `jws::parse_compact` and `jws::check_header` (or `authenticate`),
//! so these tests check the code the filter runs, not a copy of it. Where a JWT validator
//! legitimately gives another verdict than a JWS test vector, the case is listed in a table
//! below with the verdict we expect and the reason, and that verdict is asserted too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use idaas_jwt_filter::algorithm::Algorithm;
use idaas_jwt_filter::authenticator::{
    authenticate, KeyAvailability, KeyStore, RequestAuth, Verdict,
};
use idaas_jwt_filter::config::{self, FilterConfig, JwksSource};
use idaas_jwt_filter::json;
use idaas_jwt_filter::jwks::{self, JwksError, KeyQuery, KeySet, ParsedKeySet};
use idaas_jwt_filter::jws;
use idaas_jwt_filter::reason::Reason;
use idaas_jwt_filter::signature;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Directory of the conformance vectors, a sibling of the project root.
fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors"))
}

/// Reads one vector file. A missing or unreadable file fails the test instead of skipping it.
fn read_vectors(relative: &str) -> Value {
    let path = vectors_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read vector file {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("vector file {} is not JSON: {error}", path.display()))
}

fn hex_decode(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex string {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|at| {
            u8::from_str_radix(&text[at..at + 2], 16)
                .unwrap_or_else(|error| panic!("invalid hex {text:?}: {error}"))
        })
        .collect()
}

fn groups(file: &Value) -> &Vec<Value> {
    file["testGroups"]
        .as_array()
        .expect("vector file has no testGroups array")
}

fn tests_of(group: &Value) -> &Vec<Value> {
    group["tests"]
        .as_array()
        .expect("test group has no tests array")
}

fn tc_id(test: &Value) -> u64 {
    test["tcId"]
        .as_u64()
        .expect("test case has no numeric tcId")
}

/// A Wycheproof `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Valid,
    Invalid,
    Acceptable,
}

fn label(test: &Value) -> Label {
    match test["result"].as_str() {
        Some("valid") => Label::Valid,
        Some("invalid") => Label::Invalid,
        Some("acceptable") => Label::Acceptable,
        other => panic!("tcId {}: unknown result label {other:?}", tc_id(test)),
    }
}

/// Parses one JWK the way a JWKS document from the IdP is parsed.
fn parse_single_jwk(jwk: &Value) -> Result<ParsedKeySet, JwksError> {
    jwks::parse_jwks(json!({ "keys": [jwk] }).to_string().as_bytes())
}

/// Returns the reason a key set has no usable key, for the report.
fn skip_reason(error: &JwksError) -> String {
    match error {
        JwksError::NoUsableKey(skipped) => skipped
            .iter()
            .map(|key| key.reason.clone())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Raw signatures: Wycheproof RSA PKCS#1 v1.5, RSA-PSS, ECDSA P1363 and Ed25519
// ---------------------------------------------------------------------------------------------

/// How one Wycheproof signature file maps onto a JOSE algorithm.
struct SignatureFile {
    name: &'static str,
    alg: Algorithm,
    /// The group `sha` every group must have (`None` for Ed25519, which has none).
    sha: Option<&'static str>,
    /// The PSS salt length in bytes every group must have (`None` for non-PSS files).
    salt_len: Option<u64>,
}

/// An `acceptable` case and the verdict we record for it.
struct AcceptableVerdict {
    file: &'static str,
    tc_id: u64,
    verifies: bool,
    why: &'static str,
}

/// The five RSA PKCS#1 v1.5 files each have one `acceptable` case, tcId 8 (flag `MissingNull`):
/// a DigestInfo whose AlgorithmIdentifier omits the NULL parameters. Wycheproof labels it
/// acceptable because some verifiers accept that form. ring 0.17.14 encodes the expected block
/// with the NULL and compares the whole decrypted block with it, so the filter rejects these
/// signatures, which is the stricter choice.
const ACCEPTABLE_VERDICTS: &[AcceptableVerdict] = &[
    AcceptableVerdict {
        file: "rsa_signature_2048_sha256_test.json",
        tc_id: 8,
        verifies: false,
        why: "DigestInfo without NULL parameters, and ring accepts only the encoding with NULL",
    },
    AcceptableVerdict {
        file: "rsa_signature_2048_sha384_test.json",
        tc_id: 8,
        verifies: false,
        why: "DigestInfo without NULL parameters, and ring accepts only the encoding with NULL",
    },
    AcceptableVerdict {
        file: "rsa_signature_2048_sha512_test.json",
        tc_id: 8,
        verifies: false,
        why: "DigestInfo without NULL parameters, and ring accepts only the encoding with NULL",
    },
    AcceptableVerdict {
        file: "rsa_signature_3072_sha384_test.json",
        tc_id: 8,
        verifies: false,
        why: "DigestInfo without NULL parameters, and ring accepts only the encoding with NULL",
    },
    AcceptableVerdict {
        file: "rsa_signature_4096_sha512_test.json",
        tc_id: 8,
        verifies: false,
        why: "DigestInfo without NULL parameters, and ring accepts only the encoding with NULL",
    },
];

/// Groups whose key `parse_jwks` skips, so every case of the group is rejected. Each entry is
/// (file, tcId of a `valid` case, text the skip reason must contain). Empty today: every
/// signature file's key is a supported size and curve.
const SKIPPED_KEY_VALID_CASES: &[(&str, u64, &str)] = &[];

/// Counts and findings of one signature file.
#[derive(Default)]
struct SignatureReport {
    cases: usize,
    valid: usize,
    valid_verified: usize,
    invalid: usize,
    invalid_rejected: usize,
    acceptable: usize,
    acceptable_verified: usize,
    /// `valid` cases rejected because `parse_jwks` skipped the group's key, with the reason.
    skipped_key_valid: Vec<(u64, String)>,
    mismatches: Vec<String>,
}

impl fmt::Display for SignatureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cases: valid {} ({} verified), invalid {} ({} rejected), acceptable {} ({} verified, {} rejected), \
             valid with skipped key {}, mismatches {}",
            self.cases,
            self.valid,
            self.valid_verified,
            self.invalid,
            self.invalid_rejected,
            self.acceptable,
            self.acceptable_verified,
            self.acceptable - self.acceptable_verified,
            self.skipped_key_valid.len(),
            self.mismatches.len(),
        )
    }
}

/// Returns the group's public key as a JWK: `keyJwk` or `publicKeyJwk` when the group has one.
/// A few groups have none (the salt-0 PSS file, and the ECDSA groups whose keys were chosen
/// for an `r` or `x` edge case), so their JWK is built from the hex key fields instead.
fn group_jwk(group: &Value) -> Value {
    if let Some(jwk) = group.get("keyJwk").or_else(|| group.get("publicKeyJwk")) {
        return jwk.clone();
    }
    let public_key = &group["publicKey"];
    let hex_field = |name: &str| -> Vec<u8> {
        let text = public_key[name]
            .as_str()
            .unwrap_or_else(|| panic!("group has no JWK and no publicKey.{name}: {public_key}"));
        hex_decode(text)
    };
    match public_key["type"].as_str() {
        Some("EcPublicKey") => {
            let (curve, coordinate_len) = match public_key["curve"].as_str() {
                Some("secp256r1") => ("P-256", 32),
                Some("secp384r1") => ("P-384", 48),
                other => panic!("no JWK curve name for Wycheproof curve {other:?}"),
            };
            json!({
                "kty": "EC",
                "crv": curve,
                "x": URL_SAFE_NO_PAD.encode(fixed_width(hex_field("wx"), coordinate_len)),
                "y": URL_SAFE_NO_PAD.encode(fixed_width(hex_field("wy"), coordinate_len)),
            })
        }
        _ => json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(fixed_width(hex_field("modulus"), 0)),
            "e": URL_SAFE_NO_PAD.encode(fixed_width(hex_field("publicExponent"), 0)),
        }),
    }
}

/// Removes leading zero bytes, then left-pads with zeros to `width` bytes (RFC 7518 section
/// 6.2.1.2 requires full-width EC coordinates, and RSA integers use `width` 0, the minimal form).
fn fixed_width(bytes: Vec<u8>, width: usize) -> Vec<u8> {
    let significant: Vec<u8> = bytes.into_iter().skip_while(|&b| b == 0).collect();
    let mut padded = vec![0; width.saturating_sub(significant.len())];
    padded.extend(significant);
    padded
}

/// Runs every case of one signature file through `parse_jwks` and `signature::verify`.
///
/// `valid` must verify and `invalid` must not. `acceptable` cases must match the verdict in
/// `ACCEPTABLE_VERDICTS`, and a skipped key must be listed in `SKIPPED_KEY_VALID_CASES`.
fn run_signature_file(file: &SignatureFile) -> SignatureReport {
    let vectors = read_vectors(&format!("wycheproof/{}", file.name));
    let mut report = SignatureReport::default();

    for group in groups(&vectors) {
        let group_sha = group.get("sha").and_then(Value::as_str);
        assert_eq!(
            group_sha, file.sha,
            "{}: group hash does not match the file's JOSE algorithm",
            file.name
        );
        if let Some(salt_len) = file.salt_len {
            assert_eq!(
                group["sLen"].as_u64(),
                Some(salt_len),
                "{}: group salt length",
                file.name
            );
            assert_eq!(
                group["mgfSha"].as_str(),
                file.sha,
                "{}: group MGF1 hash",
                file.name
            );
        }

        let key = parse_single_jwk(&group_jwk(group));
        for test in tests_of(group) {
            let id = tc_id(test);
            report.cases += 1;

            let verifies = match &key {
                Ok(parsed) => {
                    let message = hex_decode(test["msg"].as_str().expect("test has no msg"));
                    let sig = hex_decode(test["sig"].as_str().expect("test has no sig"));
                    parsed
                        .key_set
                        .keys
                        .iter()
                        .any(|jwk| signature::verify(file.alg, &jwk.material, &message, &sig))
                }
                Err(error) => {
                    if label(test) == Label::Valid {
                        report.skipped_key_valid.push((id, skip_reason(error)));
                    }
                    false
                }
            };

            match label(test) {
                Label::Valid => {
                    report.valid += 1;
                    if verifies {
                        report.valid_verified += 1;
                    } else if key.is_ok() {
                        report.mismatches.push(format!(
                            "tcId {id}: valid signature does not verify ({})",
                            test["comment"]
                        ));
                    }
                }
                Label::Invalid => {
                    report.invalid += 1;
                    if verifies {
                        report.mismatches.push(format!(
                            "tcId {id}: invalid signature verifies ({}, flags {})",
                            test["comment"], test["flags"]
                        ));
                    } else {
                        report.invalid_rejected += 1;
                    }
                }
                Label::Acceptable => {
                    report.acceptable += 1;
                    if verifies {
                        report.acceptable_verified += 1;
                    }
                    let recorded = ACCEPTABLE_VERDICTS
                        .iter()
                        .find(|entry| entry.file == file.name && entry.tc_id == id);
                    match recorded {
                        Some(entry) if entry.verifies == verifies => {}
                        Some(entry) => report.mismatches.push(format!(
                            "tcId {id}: acceptable case now {}, recorded {} because {}",
                            if verifies { "verifies" } else { "is rejected" },
                            if entry.verifies { "verifies" } else { "is rejected" },
                            entry.why
                        )),
                        None => report.mismatches.push(format!(
                            "tcId {id}: acceptable case ({}, flags {}) {} but has no entry in ACCEPTABLE_VERDICTS",
                            test["comment"],
                            test["flags"],
                            if verifies { "verifies" } else { "is rejected" }
                        )),
                    }
                }
            }
        }
    }

    for (id, reason) in &report.skipped_key_valid {
        let listed = SKIPPED_KEY_VALID_CASES
            .iter()
            .any(|(name, listed_id, text)| {
                *name == file.name && listed_id == id && reason.contains(text)
            });
        if !listed {
            report.mismatches.push(format!(
                "tcId {id}: valid case rejected because parse_jwks skipped the key: {reason}"
            ));
        }
    }
    report
}

/// Runs the files, prints one summary line per file and fails listing every mismatch.
fn assert_signature_files(files: &[SignatureFile]) {
    let mut failures = Vec::new();
    for file in files {
        let report = run_signature_file(file);
        println!("{} ({}): {report}", file.name, file.alg);
        for (id, reason) in &report.skipped_key_valid {
            println!("  tcId {id}: valid case rejected, key skipped by parse_jwks: {reason}");
        }
        assert!(report.cases > 0, "{} has no test cases", file.name);
        failures.extend(
            report
                .mismatches
                .iter()
                .map(|line| format!("{}: {line}", file.name)),
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wycheproof_rs256_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "rsa_signature_2048_sha256_test.json",
        alg: Algorithm::RS256,
        sha: Some("SHA-256"),
        salt_len: None,
    }]);
}

#[test]
fn wycheproof_rs384_verdicts_match() {
    assert_signature_files(&[
        SignatureFile {
            name: "rsa_signature_2048_sha384_test.json",
            alg: Algorithm::RS384,
            sha: Some("SHA-384"),
            salt_len: None,
        },
        SignatureFile {
            name: "rsa_signature_3072_sha384_test.json",
            alg: Algorithm::RS384,
            sha: Some("SHA-384"),
            salt_len: None,
        },
    ]);
}

#[test]
fn wycheproof_rs512_verdicts_match() {
    assert_signature_files(&[
        SignatureFile {
            name: "rsa_signature_2048_sha512_test.json",
            alg: Algorithm::RS512,
            sha: Some("SHA-512"),
            salt_len: None,
        },
        SignatureFile {
            name: "rsa_signature_4096_sha512_test.json",
            alg: Algorithm::RS512,
            sha: Some("SHA-512"),
            salt_len: None,
        },
    ]);
}

#[test]
fn wycheproof_ps256_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "rsa_pss_2048_sha256_mgf1_32_test.json",
        alg: Algorithm::PS256,
        sha: Some("SHA-256"),
        salt_len: Some(32),
    }]);
}

#[test]
fn wycheproof_ps384_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "rsa_pss_2048_sha384_mgf1_48_test.json",
        alg: Algorithm::PS384,
        sha: Some("SHA-384"),
        salt_len: Some(48),
    }]);
}

#[test]
fn wycheproof_ps512_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "rsa_pss_4096_sha512_mgf1_64_test.json",
        alg: Algorithm::PS512,
        sha: Some("SHA-512"),
        salt_len: Some(64),
    }]);
}

#[test]
fn wycheproof_es256_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "ecdsa_secp256r1_sha256_p1363_test.json",
        alg: Algorithm::ES256,
        sha: Some("SHA-256"),
        salt_len: None,
    }]);
}

#[test]
fn wycheproof_es384_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "ecdsa_secp384r1_sha384_p1363_test.json",
        alg: Algorithm::ES384,
        sha: Some("SHA-384"),
        salt_len: None,
    }]);
}

#[test]
fn wycheproof_ed25519_verdicts_match() {
    assert_signature_files(&[SignatureFile {
        name: "ed25519_test.json",
        alg: Algorithm::EdDSA,
        sha: None,
        salt_len: None,
    }]);
}

/// Cases of the salt-0 PSS file that are correct PS256 signatures and so must verify under
/// PS256, with why. tcId 69 is labelled `invalid` for a salt-0 verifier because its salt
/// length was changed to 32, which is exactly the PS256 salt length.
const SALT_ZERO_FILE_PS256_SIGNATURES: &[(u64, &str)] =
    &[(69, "salt length changed to 32, the PS256 salt length")];

/// PS256 fixes the PSS salt length at 32 bytes (RFC 7518 section 3.5). The `valid` signatures
/// of this file use salt length 0, so they must all fail under PS256. If one verified, the
/// salt length would not be enforced.
#[test]
fn wycheproof_pss_salt_zero_fails_under_ps256() {
    let name = "rsa_pss_2048_sha256_mgf1_0_test.json";
    let vectors = read_vectors(&format!("wycheproof/{name}"));
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut valid_verified = Vec::new();
    let mut other_verified = Vec::new();

    for group in groups(&vectors) {
        assert_eq!(group["sLen"].as_u64(), Some(0), "{name}: group salt length");
        assert_eq!(group["sha"].as_str(), Some("SHA-256"), "{name}: group hash");
        assert_eq!(
            group["mgfSha"].as_str(),
            Some("SHA-256"),
            "{name}: group MGF1 hash"
        );
        // This file gives no JWK, so the key is built from the hex modulus and exponent and
        // then parsed like any other JWK.
        let parsed = parse_single_jwk(&group_jwk(group)).unwrap_or_else(|error| {
            panic!("{name}: parse_jwks rejected the 2048-bit key: {error}")
        });

        for test in tests_of(group) {
            let message = hex_decode(test["msg"].as_str().expect("test has no msg"));
            let sig = hex_decode(test["sig"].as_str().expect("test has no sig"));
            let verifies = parsed
                .key_set
                .keys
                .iter()
                .any(|jwk| signature::verify(Algorithm::PS256, &jwk.material, &message, &sig));
            let result = test["result"].as_str().unwrap_or("missing");
            let entry = counts.entry(result).or_default();
            entry.0 += 1;
            if !verifies {
                continue;
            }
            entry.1 += 1;
            if label(test) == Label::Valid {
                valid_verified.push(format!("tcId {} ({})", tc_id(test), test["comment"]));
            } else {
                other_verified.push(tc_id(test));
            }
        }
    }

    let total: usize = counts.values().map(|(cases, _)| cases).sum();
    let summary: Vec<String> = counts
        .iter()
        .map(|(result, (cases, passed))| format!("{result} {cases} ({passed} verify under PS256)"))
        .collect();
    println!(
        "{name} (PS256, salt 0): {total} cases: {}",
        summary.join(", ")
    );
    for (id, why) in SALT_ZERO_FILE_PS256_SIGNATURES {
        println!("  tcId {id}: verifies under PS256 as recorded: {why}");
    }

    assert!(
        counts.get("valid").is_some_and(|(cases, _)| *cases > 0),
        "{name} has no valid cases"
    );
    assert!(
        valid_verified.is_empty(),
        "salt-0 PSS signatures verified under PS256, so the salt length is not enforced:\n{}",
        valid_verified.join("\n")
    );
    let recorded: Vec<u64> = SALT_ZERO_FILE_PS256_SIGNATURES
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        other_verified, recorded,
        "non-valid cases of {name} that verify under PS256 differ from SALT_ZERO_FILE_PS256_SIGNATURES"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Whole tokens and key sets: Wycheproof json_web_signature and json_web_key
// ---------------------------------------------------------------------------------------------

/// Our verdict on a token: accepted, or rejected with the reason code the filter would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Rejected(Reason),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Accepted => f.write_str("accepted"),
            Outcome::Rejected(reason) => write!(f, "rejected ({})", reason.code()),
        }
    }
}

const ACCEPTED: Outcome = Outcome::Accepted;
const MALFORMED: Outcome = Outcome::Rejected(Reason::TokenMalformed);
const ALG_NOT_ALLOWED: Outcome = Outcome::Rejected(Reason::AlgNotAllowed);
const KEY_NOT_FOUND: Outcome = Outcome::Rejected(Reason::KeyNotFound);
const SIGNATURE_INVALID: Outcome = Outcome::Rejected(Reason::SignatureInvalid);
/// A key set without a usable key: fetched from the IdP, it leaves the provider without keys,
/// which the filter reports as `jwks_unavailable` (an inline one is a configuration error).
const NO_USABLE_KEY: Outcome = Outcome::Rejected(Reason::JwksUnavailable);

/// Returns the public members of a private JWK, or of every key of a private key set.
/// Symmetric (`oct`) keys have no public part and stay as they are, so `parse_jwks` skips them
/// for what they are.
fn public_part(private: &Value) -> Value {
    if let Some(keys) = private.get("keys").and_then(Value::as_array) {
        return json!({ "keys": keys.iter().map(public_part).collect::<Vec<_>>() });
    }
    let mut public = private.clone();
    if let Some(members) = public.as_object_mut() {
        if members.get("kty").and_then(Value::as_str) != Some("oct") {
            for name in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
                members.remove(name);
            }
        }
    }
    public
}

/// Parses a test group's verification keys: its `public` key (a JWK or a JWKS), or the public
/// part of its `private` key when it has no public one.
fn group_key_set(group: &Value) -> Result<ParsedKeySet, JwksError> {
    let source = match group.get("public") {
        Some(public) if !public.is_null() => public.clone(),
        _ => public_part(&group["private"]),
    };
    let document = if source.get("keys").is_some() {
        source
    } else {
        json!({ "keys": [source] })
    };
    jwks::parse_jwks(document.to_string().as_bytes())
}

/// Selects the keys for `header` and checks the signature, in the filter's order: key set,
/// `kid` and `alg` lookup, then signature.
fn verify_with_key_set(
    keys: &Result<ParsedKeySet, JwksError>,
    header: &jws::JoseHeader<'_>,
    signing_input: &[u8],
    signature_bytes: &[u8],
) -> Outcome {
    let Ok(parsed) = keys else {
        return NO_USABLE_KEY;
    };
    let candidates = parsed.key_set.candidates(KeyQuery {
        kid: header.kid,
        alg: header.alg,
    });
    if candidates.is_empty() {
        return KEY_NOT_FOUND;
    }
    let verifies = candidates
        .iter()
        .any(|key| signature::verify(header.alg, &key.material, signing_input, signature_bytes));
    if verifies {
        ACCEPTED
    } else {
        SIGNATURE_INVALID
    }
}

/// Returns the filter's verdict on a compact token as a JWT: `parse_compact` (which requires a
/// JSON object payload), `check_header`, key selection and signature. Issuer, time, audience
/// and scope are left out because the Wycheproof tokens carry no claims.
fn check_as_jwt(token: &str, keys: &Result<ParsedKeySet, JwksError>) -> Outcome {
    let parsed = match jws::parse_compact(token) {
        Ok(parsed) => parsed,
        Err(rejection) => return Outcome::Rejected(rejection.reason),
    };
    let header = match jws::check_header(&parsed.header) {
        Ok(header) => header,
        Err(rejection) => return Outcome::Rejected(rejection.reason),
    };
    verify_with_key_set(keys, &header, parsed.signing_input, &parsed.signature)
}

/// Returns the verdict on a compact token as a JWS: the same checks as `check_as_jwt`, except
/// that the payload may be any bytes.
///
/// Most JWS vectors sign text, not a JSON claim set, so `parse_compact` rejects them before the
/// signature is looked at. This check splits the token itself, decoding every part with the
/// same strict base64url engine, so the header checks, key selection and ring verification
/// still meet every vector.
fn check_as_jws(token: &str, keys: &Result<ParsedKeySet, JwksError>) -> Outcome {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return MALFORMED;
    };
    let (Ok(header_bytes), Ok(_payload), Ok(signature_bytes)) = (
        URL_SAFE_NO_PAD.decode(header_b64),
        URL_SAFE_NO_PAD.decode(payload_b64),
        URL_SAFE_NO_PAD.decode(signature_b64),
    ) else {
        return MALFORMED;
    };
    let Ok(header_object) = json::parse_object(&header_bytes) else {
        return MALFORMED;
    };
    let header = match jws::check_header(&header_object) {
        Ok(header) => header,
        Err(rejection) => return Outcome::Rejected(rejection.reason),
    };
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    verify_with_key_set(keys, &header, signing_input, &signature_bytes)
}

/// A token vector whose verdict differs from its label, or whose label depends on a key's
/// `alg`, `use` or `key_ops` or on a known data issue, with the verdicts we assert for it.
struct TokenException {
    file: &'static str,
    tc_id: u64,
    /// Verdict of `check_as_jws` (any payload).
    jws: Outcome,
    /// Verdict of `check_as_jwt` (the filter's path).
    jwt: Outcome,
    why: &'static str,
}

const JWS_FILE: &str = "json_web_signature_test.json";
const JWK_FILE: &str = "json_web_key_test.json";
const NOT_A_CLAIM_SET: &str = "payload is not a JSON object, so a valid JWS but not a JWT";
const SYMMETRIC: &str = "HS256/384/512 is never accepted, because the filter holds no secret key";

const fn listed(
    file: &'static str,
    tc_id: u64,
    jws: Outcome,
    jwt: Outcome,
    why: &'static str,
) -> TokenException {
    TokenException {
        file,
        tc_id,
        jws,
        jwt,
        why,
    }
}

#[rustfmt::skip]
const TOKEN_EXCEPTIONS: &[TokenException] = &[
    // A JWT validator rejects what a JWS validator accepts: the payload is text or bytes, not a
    // JSON object claim set. The signature still verifies, which the JWS verdict asserts.
    listed(JWS_FILE, 18, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 33, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 259, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 260, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 261, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 262, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 263, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 264, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 265, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 266, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 267, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 268, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 269, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 270, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 271, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 272, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 273, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 274, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 275, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 287, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 288, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 320, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 321, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 322, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 323, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 325, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 326, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 327, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 328, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 345, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 349, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    listed(JWS_FILE, 378, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    // HS256 tokens: the filter accepts no symmetric algorithm, so their `valid` cases are rejected.
    listed(JWS_FILE, 1, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 348, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 352, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 357, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 358, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 359, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 376, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWS_FILE, 377, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    // Known data issues of the vector file.
    listed(JWS_FILE, 367, ALG_NOT_ALLOWED, MALFORMED, "byte-identical to tcId 357, which is labelled valid, and HS256, so rejected either way"),
    listed(JWS_FILE, 370, ALG_NOT_ALLOWED, MALFORMED, "byte-identical to tcId 357, which is labelled valid, and HS256, so rejected either way"),
    listed(JWS_FILE, 372, MALFORMED, MALFORMED, "labelled valid but the header contains '?', which strict base64url rejects"),
    listed(JWS_FILE, 373, MALFORMED, MALFORMED, "labelled valid but the payload contains '?', which strict base64url rejects"),
    // RFC 7520 figures with key `alg` values the RFC does not give: the key's `alg` pins it.
    listed(JWS_FILE, 346, KEY_NOT_FOUND, MALFORMED, "the key's alg PS256 pins it, and the token is PS384"),
    listed(JWS_FILE, 350, KEY_NOT_FOUND, MALFORMED, "the key's alg PS256 pins it, and the token is PS384"),
    listed(JWS_FILE, 347, ALG_NOT_ALLOWED, MALFORMED, "ES512 (P-521) is not on the allow-list"),
    listed(JWS_FILE, 351, ALG_NOT_ALLOWED, MALFORMED, "ES512 (P-521) is not on the allow-list"),
    // `invalid` only because of the key's `alg`, `use` or `key_ops`: the signature itself is correct.
    listed(JWS_FILE, 332, KEY_NOT_FOUND, MALFORMED, "a correct RS256 signature, but the key's alg PS512 pins it"),
    listed(JWS_FILE, 334, KEY_NOT_FOUND, MALFORMED, "a correct RS384 signature, but the key's alg PS512 pins it"),
    listed(JWS_FILE, 336, KEY_NOT_FOUND, MALFORMED, "a correct RS512 signature, but the key's alg PS512 pins it"),
    listed(JWS_FILE, 338, KEY_NOT_FOUND, MALFORMED, "a correct PS256 signature, but the key's alg PS512 pins it"),
    listed(JWS_FILE, 340, KEY_NOT_FOUND, MALFORMED, "a correct PS384 signature, but the key's alg PS512 pins it"),
    listed(JWS_FILE, 353, NO_USABLE_KEY, MALFORMED, "the only key has use \"enc\", so parse_jwks skips it"),
    listed(JWS_FILE, 354, NO_USABLE_KEY, MALFORMED, "the only key has use \"enc\", so parse_jwks skips it"),
    listed(JWS_FILE, 355, NO_USABLE_KEY, MALFORMED, "the only key's key_ops lacks \"verify\", so parse_jwks skips it"),
    listed(JWS_FILE, 356, NO_USABLE_KEY, MALFORMED, "the only key's key_ops lacks \"verify\", so parse_jwks skips it"),
    // json_web_key_test.json
    listed(JWK_FILE, 2, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWK_FILE, 13, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWK_FILE, 14, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWK_FILE, 15, ALG_NOT_ALLOWED, MALFORMED, SYMMETRIC),
    listed(JWK_FILE, 5, ACCEPTED, MALFORMED, NOT_A_CLAIM_SET),
    // NOTE: parse_jwks does not test RSA moduli for the ROCA weakness (CVE-2017-15361), so a
    // correct signature by such a key verifies. The key set is the IdP's and is trusted.
    listed(JWK_FILE, 7, ACCEPTED, MALFORMED, "ROCA-weak RSA modulus is not detected, and the payload is not a claim set"),
];

/// Counts and findings of one token file.
#[derive(Default)]
struct TokenReport {
    cases: usize,
    valid: usize,
    invalid: usize,
    jwt_accepted: usize,
    jws_accepted: usize,
    listed: usize,
    jwt_reasons: BTreeMap<String, usize>,
    mismatches: Vec<String>,
}

impl fmt::Display for TokenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<String> = self
            .jwt_reasons
            .iter()
            .map(|(code, count)| format!("{code} {count}"))
            .collect();
        write!(
            f,
            "{} cases: valid {}, invalid {}; accepted as JWS {}, accepted as JWT {}; excluded (listed) {}; \
             JWT rejections: {}; mismatches {}",
            self.cases,
            self.valid,
            self.invalid,
            self.jws_accepted,
            self.jwt_accepted,
            self.listed,
            reasons.join(", "),
            self.mismatches.len(),
        )
    }
}

/// Runs every token of a Wycheproof JWS or JWK file through `check_as_jws` and `check_as_jwt`.
///
/// A case listed in `TOKEN_EXCEPTIONS` must get exactly the listed verdicts. Any other case
/// must match its label on both paths: `valid` accepted, `invalid` rejected.
fn run_token_file(name: &'static str) -> TokenReport {
    let vectors = read_vectors(&format!("wycheproof/{name}"));
    let mut report = TokenReport::default();
    let mut seen = Vec::new();

    for group in groups(&vectors) {
        let keys = group_key_set(group);
        for test in tests_of(group) {
            let id = tc_id(test);
            seen.push(id);
            report.cases += 1;
            let token = test["jws"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} tcId {id}: jws is not a string"));
            let jws_outcome = check_as_jws(token, &keys);
            let jwt_outcome = check_as_jwt(token, &keys);
            if jws_outcome == ACCEPTED {
                report.jws_accepted += 1;
            }
            match jwt_outcome {
                Outcome::Accepted => report.jwt_accepted += 1,
                Outcome::Rejected(reason) => {
                    *report
                        .jwt_reasons
                        .entry(reason.code().to_owned())
                        .or_default() += 1
                }
            }

            let case_label = label(test);
            match case_label {
                Label::Valid => report.valid += 1,
                Label::Invalid => report.invalid += 1,
                Label::Acceptable => {}
            }
            let found = format!("JWS {jws_outcome}, JWT {jwt_outcome}");
            let exception = TOKEN_EXCEPTIONS
                .iter()
                .find(|entry| entry.file == name && entry.tc_id == id);
            match exception {
                Some(entry) => {
                    report.listed += 1;
                    if entry.jws != jws_outcome || entry.jwt != jwt_outcome {
                        report.mismatches.push(format!(
                            "tcId {id} ({:?}, {}): {found}, listed as JWS {}, JWT {} because {}",
                            case_label, test["comment"], entry.jws, entry.jwt, entry.why
                        ));
                    }
                }
                None => {
                    let expected_accept = match case_label {
                        Label::Valid => true,
                        Label::Invalid => false,
                        Label::Acceptable => {
                            report.mismatches.push(format!(
                                "tcId {id}: acceptable case needs a TOKEN_EXCEPTIONS entry"
                            ));
                            continue;
                        }
                    };
                    let matches = (jws_outcome == ACCEPTED) == expected_accept
                        && (jwt_outcome == ACCEPTED) == expected_accept;
                    if !matches {
                        report.mismatches.push(format!(
                            "tcId {id} ({:?}, {}, flags {}): {found}",
                            case_label, test["comment"], test["flags"]
                        ));
                    }
                }
            }
            if jwt_outcome == ACCEPTED && jws_outcome != ACCEPTED {
                report
                    .mismatches
                    .push(format!("tcId {id}: accepted as a JWT but rejected as a JWS, so check_as_jwt and check_as_jws disagree"));
            }
        }
    }

    for entry in TOKEN_EXCEPTIONS.iter().filter(|entry| entry.file == name) {
        if !seen.contains(&entry.tc_id) {
            report.mismatches.push(format!(
                "TOKEN_EXCEPTIONS lists tcId {}, which the file does not have",
                entry.tc_id
            ));
        }
    }
    report
}

fn assert_token_file(name: &'static str) {
    let report = run_token_file(name);
    println!("{name}: {report}");
    assert!(report.cases > 0, "{name} has no test cases");
    assert!(
        report.mismatches.is_empty(),
        "{name}: {} mismatches:\n{}",
        report.mismatches.len(),
        report.mismatches.join("\n")
    );
}

#[test]
fn wycheproof_jws_tokens_match_or_are_listed() {
    assert_token_file("json_web_signature_test.json");
}

#[test]
fn wycheproof_jwk_sets_match_or_are_listed() {
    assert_token_file("json_web_key_test.json");
}

// ---------------------------------------------------------------------------------------------
// 3. JOSE RFC examples: RFC 7515 appendix A, RFC 7520 section 4, RFC 8037, RFC 7797
// ---------------------------------------------------------------------------------------------

const RFC_FILE: &str = "rfc/rfc_jws_cases.json";

fn rfc_cases() -> Vec<Value> {
    let file = read_vectors(RFC_FILE);
    let cases = file["cases"]
        .as_array()
        .expect("RFC vector file has no cases array")
        .clone();
    assert!(!cases.is_empty(), "{RFC_FILE} has no cases");
    cases
}

fn case_name(case: &Value) -> &str {
    case["name"].as_str().expect("RFC case has no name")
}

/// RFC compact examples whose signature check differs from `expected`, with our verdict.
const RFC_SIGNATURE_EXCEPTIONS: &[(&str, Outcome, &str)] = &[
    ("RFC7515-A.1-HS256", ALG_NOT_ALLOWED, SYMMETRIC),
    (
        "RFC7515-A.4-ES512",
        ALG_NOT_ALLOWED,
        "ES512 (P-521) is not on the allow-list",
    ),
    (
        "RFC7520-4.3-ES512",
        ALG_NOT_ALLOWED,
        "ES512 (P-521) is not on the allow-list",
    ),
    ("RFC7520-4.4-HS256", ALG_NOT_ALLOWED, SYMMETRIC),
    ("RFC7520-4.5-HS256-detached", ALG_NOT_ALLOWED, SYMMETRIC),
    ("RFC7797-4.1-b64-true", ALG_NOT_ALLOWED, SYMMETRIC),
    // `alg` is checked before `b64`, so the symmetric algorithm is what rejects this one.
    ("RFC7797-4.2-b64-false-detached", ALG_NOT_ALLOWED, SYMMETRIC),
    (
        "cookbook-rfc7797-b64-false-compact-attached",
        MALFORMED,
        "the unencoded payload contains spaces, which are not base64url",
    ),
];

/// Every compact RFC example with its key: the signature check over the token bytes as
/// received (RFC 7515 A.1 to A.3 contain CRLF in header and payload) must give `expected`,
/// except the listed algorithms this filter does not accept.
#[test]
fn rfc_signatures_match_expected() {
    let mut run = 0;
    let mut verified = 0;
    let mut json_serialized = Vec::new();
    let mut listed = Vec::new();
    let mut mismatches = Vec::new();

    for case in &rfc_cases() {
        let name = case_name(case);
        let Some(token) = case["token"].as_str() else {
            // JWS JSON serialization: not a form a bearer token can take, so there is no
            // signature path for it. rfc_examples_are_rejected_as_jwts sends it anyway.
            assert_eq!(
                case["serialization"], "json",
                "{name}: case has neither token nor JSON serialization"
            );
            json_serialized.push(name.to_owned());
            continue;
        };
        run += 1;
        let jwk = case.get("jwk").cloned().unwrap_or_else(|| json!({}));
        let keys = parse_single_jwk(&jwk);
        let outcome = check_as_jws(token, &keys);
        if outcome == ACCEPTED {
            verified += 1;
        }
        let expected_valid = match case["expected"].as_str() {
            Some("valid") => true,
            Some("invalid") => false,
            other => panic!("{name}: unknown expected value {other:?}"),
        };

        match RFC_SIGNATURE_EXCEPTIONS
            .iter()
            .find(|(listed_name, _, _)| *listed_name == name)
        {
            Some((_, listed_outcome, why)) => {
                listed.push(format!("{name}: {outcome} ({why})"));
                if outcome != *listed_outcome {
                    mismatches.push(format!(
                        "{name}: {outcome}, listed as {listed_outcome} because {why}"
                    ));
                }
            }
            None if (outcome == ACCEPTED) != expected_valid => {
                mismatches.push(format!("{name}: {outcome}, expected {}", case["expected"]));
            }
            None => {}
        }
    }

    println!(
        "{RFC_FILE} signatures: {run} compact cases, {verified} verified, {} excluded (listed), \
         {} JSON-serialized not run; mismatches {}",
        listed.len(),
        json_serialized.len(),
        mismatches.len()
    );
    for line in &listed {
        println!("  listed {line}");
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Key store that serves each provider's inline key set, which is all the RFC examples need.
struct InlineKeys(Vec<Rc<KeySet>>);

impl InlineKeys {
    fn from_config(config: &FilterConfig) -> InlineKeys {
        let sets = config
            .providers
            .iter()
            .map(|provider| match &provider.jwks {
                JwksSource::Local(set) => Rc::new(set.clone()),
                other => panic!(
                    "provider {} has no inline key set: {other:?}",
                    provider.name
                ),
            })
            .collect();
        InlineKeys(sets)
    }
}

impl KeyStore for InlineKeys {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        let set = self
            .0
            .get(provider_index)
            .expect("provider index out of range");
        KeyAvailability::Ready(Rc::clone(set))
    }
}

/// An Ed25519 key (RFC 8037 appendix A.2), used in place of an example's own key when the
/// filter cannot use that key (symmetric, P-521, none). The configuration needs one usable key, and no
/// such example gets as far as key selection, which the asserted reasons confirm.
const STAND_IN_JWK: &str =
    r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

/// Builds a one-provider configuration through `config::parse_config`, as the filter does:
/// issuer `joe` (the `iss` of the RFC 7515 examples) and the example's key as `local_jwks`.
fn rfc_config(jwk: &Value) -> FilterConfig {
    let stand_in: Value = serde_json::from_str(STAND_IN_JWK).expect("stand-in JWK is JSON");
    let key = if parse_single_jwk(jwk).is_ok() {
        jwk.clone()
    } else {
        stand_in
    };
    let document = json!({
        "providers": [{
            "name": "rfc-examples",
            "issuer": "joe",
            "audiences": ["https://api.example.com"],
            "local_jwks": { "keys": [key] },
        }],
    });
    config::parse_config(document.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("RFC example configuration is invalid: {error}"))
        .config
}

fn now_seconds() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is before 1970");
    i64::try_from(elapsed.as_secs()).expect("system clock is past year 292 billion")
}

/// Returns the filter's verdict on `token` sent now as `Authorization: Bearer <token>`.
fn authenticate_now(config: &FilterConfig, token: &str) -> Outcome {
    let header = format!("Bearer {token}");
    let values = [header.as_str()];
    let request = RequestAuth {
        authorization: &values,
        now_seconds: now_seconds(),
    };
    match authenticate(config, &InlineKeys::from_config(config), request) {
        Verdict::Allow(_) => ACCEPTED,
        Verdict::Deny(denial) => Outcome::Rejected(denial.rejection.reason),
        other => panic!("an inline key set never makes a request wait, got {other:?}"),
    }
}

/// The reason code each RFC example must get as a JWT with the real clock. The first failing
/// check decides: the header's `crit` and `b64` are checked before the payload is decoded, the
/// payload must be a JSON object before `alg` is checked, and `alg` before the key and the time.
struct RfcJwtExpectation {
    name: &'static str,
    reason: Reason,
    why: &'static str,
}

const fn rfc_jwt(name: &'static str, reason: Reason, why: &'static str) -> RfcJwtExpectation {
    RfcJwtExpectation {
        name,
        reason,
        why,
    }
}

const RFC_JWT_EXPECTATIONS: &[RfcJwtExpectation] = &[
    rfc_jwt(
        "RFC7515-A.1-HS256",
        Reason::AlgNotAllowed,
        "HS256 is rejected before its expired exp is read",
    ),
    rfc_jwt(
        "RFC7515-A.2-RS256",
        Reason::TokenExpired,
        "signature verifies, but exp 1300819380 is in 2011",
    ),
    rfc_jwt(
        "RFC7515-A.3-ES256",
        Reason::TokenExpired,
        "signature verifies, but exp 1300819380 is in 2011",
    ),
    rfc_jwt(
        "RFC7515-A.4-ES512",
        Reason::TokenMalformed,
        "payload \"Payload\" is not a JSON object",
    ),
    rfc_jwt("RFC7515-A.5-none", Reason::AlgNotAllowed, "alg none"),
    rfc_jwt(
        "RFC7515-A.6-general-JSON",
        Reason::TokenMalformed,
        "JWS JSON serialization, not compact",
    ),
    rfc_jwt(
        "RFC7515-A.7-flattened-JSON",
        Reason::TokenMalformed,
        "JWS JSON serialization, not compact",
    ),
    rfc_jwt(
        "RFC7520-4.1-RS256",
        Reason::TokenMalformed,
        "payload is text, not a JSON object",
    ),
    rfc_jwt(
        "RFC7520-4.2-PS384",
        Reason::TokenMalformed,
        "payload is text, not a JSON object",
    ),
    rfc_jwt(
        "RFC7520-4.3-ES512",
        Reason::TokenMalformed,
        "payload is text, not a JSON object",
    ),
    rfc_jwt(
        "RFC7520-4.4-HS256",
        Reason::TokenMalformed,
        "payload is text, not a JSON object (checked before alg)",
    ),
    rfc_jwt(
        "RFC7520-4.5-HS256-detached",
        Reason::TokenMalformed,
        "detached payload: the payload part is empty",
    ),
    rfc_jwt(
        "RFC7520-4.6-HS256-unprotected-kid",
        Reason::TokenMalformed,
        "JWS JSON serialization, not compact",
    ),
    rfc_jwt(
        "RFC7520-4.7-HS256-no-protected-header",
        Reason::TokenMalformed,
        "JWS JSON serialization, not compact",
    ),
    rfc_jwt(
        "RFC7520-4.8-multiple-signatures",
        Reason::TokenMalformed,
        "JWS JSON serialization, not compact",
    ),
    rfc_jwt(
        "RFC8037-A.4-EdDSA-Ed25519",
        Reason::TokenMalformed,
        "payload is text, not a JSON object",
    ),
    rfc_jwt(
        "RFC7797-4.1-b64-true",
        Reason::TokenMalformed,
        "payload \"$.02\" is not a JSON object (checked before alg)",
    ),
    rfc_jwt(
        "RFC7797-4.2-b64-false-detached",
        Reason::HeaderNotSupported,
        "b64 false (RFC 7797 section 7 forbids it in JWTs), checked before the payload",
    ),
    rfc_jwt(
        "cookbook-rfc7797-b64-false-compact-attached",
        Reason::HeaderNotSupported,
        "b64 false (RFC 7797 section 7 forbids it in JWTs), checked before the payload",
    ),
];

/// Returns each RFC example's token (the JSON serialization as JSON text) and our verdict.
fn rfc_jwt_verdicts() -> Vec<(String, Outcome)> {
    rfc_cases()
        .iter()
        .map(|case| {
            let name = case_name(case).to_owned();
            let token = match (case["token"].as_str(), case.get("jws_json")) {
                (Some(token), _) => token.to_owned(),
                (None, Some(serialized)) => serialized.to_string(),
                (None, None) => panic!("{name}: case has neither token nor jws_json"),
            };
            let jwk = case.get("jwk").cloned().unwrap_or_else(|| json!({}));
            let outcome = authenticate_now(&rfc_config(&jwk), &token);
            (name, outcome)
        })
        .collect()
}

/// Every RFC example is rejected as a JWT with the real clock, each for its recorded reason.
#[test]
fn rfc_examples_are_rejected_as_jwts() {
    let verdicts = rfc_jwt_verdicts();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mismatches = Vec::new();

    for (name, outcome) in &verdicts {
        let Some(expectation) = RFC_JWT_EXPECTATIONS.iter().find(|entry| entry.name == name) else {
            mismatches.push(format!(
                "{name}: {outcome}, but RFC_JWT_EXPECTATIONS has no entry"
            ));
            continue;
        };
        let Outcome::Rejected(reason) = outcome else {
            mismatches.push(format!(
                "{name}: accepted as a JWT; expected {} ({})",
                expectation.reason, expectation.why
            ));
            continue;
        };
        *reasons.entry(reason.code()).or_default() += 1;
        if *reason != expectation.reason {
            mismatches.push(format!(
                "{name}: {outcome}, expected {} ({})",
                expectation.reason, expectation.why
            ));
        }
    }
    for entry in RFC_JWT_EXPECTATIONS {
        if !verdicts.iter().any(|(name, _)| name == entry.name) {
            mismatches.push(format!(
                "RFC_JWT_EXPECTATIONS lists {}, which {RFC_FILE} does not have",
                entry.name
            ));
        }
    }

    let summary: Vec<String> = reasons
        .iter()
        .map(|(code, count)| format!("{code} {count}"))
        .collect();
    println!(
        "{RFC_FILE} as JWTs: {} cases, {} rejected ({}); mismatches {}",
        verdicts.len(),
        reasons.values().sum::<usize>(),
        summary.join(", "),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// RFC 7797 section 7 forbids `b64: false` in JWTs, and the filter documents
/// `header_not_supported` for it.
#[test]
fn rfc7797_b64_false_is_header_not_supported() {
    let verdicts = rfc_jwt_verdicts();
    let mut mismatches = Vec::new();
    let mut run = 0;

    for entry in RFC_JWT_EXPECTATIONS
        .iter()
        .filter(|entry| entry.reason == Reason::HeaderNotSupported)
    {
        run += 1;
        let outcome = verdicts
            .iter()
            .find(|(name, _)| name == entry.name)
            .map(|(_, outcome)| *outcome)
            .unwrap_or_else(|| panic!("{RFC_FILE} has no case {}", entry.name));
        if outcome != Outcome::Rejected(entry.reason) {
            mismatches.push(format!(
                "{}: {outcome}, expected {} ({})",
                entry.name, entry.reason, entry.why
            ));
        }
    }

    println!(
        "{RFC_FILE} b64=false examples: {run} cases; mismatches {}",
        mismatches.len()
    );
    assert!(
        run > 0,
        "no b64=false example is listed in RFC_JWT_EXPECTATIONS"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
