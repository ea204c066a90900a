//! The host signature backend: Envoy's `verify_signature` foreign function, which checks
//! RSA PKCS#1 v1.5 and ECDSA signatures with BoringSSL outside the VM. A self-test at
//! configure time decides which algorithms it may take.

use log::{debug, info};
use proxy_wasm::hostcalls;

use crate::algorithm::Algorithm;
use crate::jwks::Jwk;
use crate::selftest_vectors;
use crate::signature::{self, HostCall, HOST_ALGORITHMS, HOST_FUNCTION};

/// Runs a known valid and a known invalid signature through the host for each algorithm it
/// may take, and returns the algorithms for which both results were right.
pub fn self_test() -> Vec<Algorithm> {
    let mut passed = Vec::new();
    for vector in selftest_vectors::vectors() {
        let key = Jwk::new(None, None, vector.key);
        let mut invalid = vector.signature.clone();
        if let Some(last) = invalid.last_mut() {
            *last ^= 1;
        }
        let valid_ok = ask_host(vector.alg, &key, selftest_vectors::MESSAGE, &vector.signature) == Some(true);
        let invalid_ok = ask_host(vector.alg, &key, selftest_vectors::MESSAGE, &invalid) == Some(false);
        if valid_ok && invalid_ok {
            passed.push(vector.alg);
        } else {
            debug!("host signature self-test failed for {} (valid: {valid_ok}, invalid: {invalid_ok})", vector.alg);
        }
    }
    let names = |algorithms: &[Algorithm]| algorithms.iter().map(|alg| alg.name()).collect::<Vec<_>>().join(", ");
    let failed: Vec<Algorithm> = HOST_ALGORITHMS.iter().copied().filter(|alg| !passed.contains(alg)).collect();
    info!(
        "host signature check ({HOST_FUNCTION}) passed its self-test for [{}], not for [{}]",
        names(&passed),
        names(&failed)
    );
    passed
}

/// Verifies with the host, and with ring if the host call fails. A host error therefore never
/// turns a valid signature into a rejection or an invalid one into an acceptance.
pub fn verify_on_host(alg: Algorithm, key: &Jwk, message: &[u8], signature_bytes: &[u8]) -> bool {
    match signature::host_call(alg, key, message, signature_bytes) {
        HostCall::Invalid => false,
        HostCall::NotSupported => signature::verify(alg, &key.material, message, signature_bytes),
        HostCall::Request(arguments) => match call(&arguments) {
            Some(result) => result,
            None => signature::verify(alg, &key.material, message, signature_bytes),
        },
    }
}

/// Returns the host's verdict on one signature, or `None` if the host call failed.
fn ask_host(alg: Algorithm, key: &Jwk, message: &[u8], signature_bytes: &[u8]) -> Option<bool> {
    match signature::host_call(alg, key, message, signature_bytes) {
        HostCall::Request(arguments) => call(&arguments),
        HostCall::Invalid => Some(false),
        HostCall::NotSupported => None,
    }
}

fn call(arguments: &[u8]) -> Option<bool> {
    match hostcalls::call_foreign_function(HOST_FUNCTION, Some(arguments)) {
        Ok(Some(bytes)) => signature::parse_host_result(&bytes).map(|(result, _error)| result),
        Ok(None) => None,
        Err(status) => {
            debug!("{HOST_FUNCTION} is not available ({status:?})");
            None
        }
    }
}
