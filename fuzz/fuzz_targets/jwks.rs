//! Fuzzes JWKS parsing: the input is a JWKS document as fetched from an IdP or given in
//! `local_jwks`. Every usable key is then offered to the key selection and the verifier, so a
//! key that parses but that ring cannot load is exercised too.

#![no_main]

use idaas_jwt_filter::algorithm::Algorithm;
use idaas_jwt_filter::jwks::{self, KeyQuery};
use idaas_jwt_filter::signature;
use libfuzzer_sys::fuzz_target;

/// A fixed message and a signature that no key verifies, because only key loading matters here.
const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.e30";
const SIGNATURE: [u8; 64] = [0x5a; 64];

fuzz_target!(|data: &[u8]| {
    let parsed = match jwks::parse_jwks(data) {
        Ok(parsed) => parsed,
        Err(error) => {
            // The error text goes to the operator's log.
            let _ = error.to_string();
            return;
        }
    };
    for skipped in &parsed.skipped {
        let _ = skipped.to_string();
    }

    let key_set = &parsed.key_set;
    for alg in Algorithm::ALL {
        let _ = key_set.candidates(KeyQuery { kid: None, alg });
        for key in &key_set.keys {
            let _ = key_set.candidates(KeyQuery { kid: key.kid.as_deref(), alg });
            if key.fits(alg) {
                let _ = signature::verify(alg, &key.material, MESSAGE, &SIGNATURE);
            }
        }
    }
});
