//! Fuzzes the claim readers: the input is a token payload (a JSON object), read by the strict
//! JSON parser, then by every public function of `claims` and by `authenticator::check_audience`
//! and `check_scope`. The same object is also checked as a JOSE header.

#![no_main]

use idaas_jwt_filter::authenticator::{self, Requirements};
use idaas_jwt_filter::claims;
use idaas_jwt_filter::config::ScopeMatch;
use idaas_jwt_filter::json;
use idaas_jwt_filter::jws;
use idaas_jwt_filter::upstream;
use libfuzzer_sys::fuzz_target;

/// Clock values, in seconds since the Unix epoch, around the NumericDate limit (2^53) and at
/// the ends of what the host can pass: it divides an unsigned millisecond clock by 1000, so
/// `now_seconds` is never negative.
const NOW_SECONDS: [i64; 7] = [
    0,
    1,
    1_800_000_000,
    (1 << 53) - 1,
    1 << 53,
    (1 << 53) + 1,
    (u64::MAX / 1000) as i64,
];

/// Clock skews: none, the default, the configured maximum, and the largest the function takes.
const SKEW_SECONDS: [u64; 4] = [0, 60, 3600, u64::MAX];

const DATE_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

fuzz_target!(|data: &[u8]| {
    let Ok(claims) = json::parse_object(data) else {
        return;
    };

    for now in NOW_SECONDS {
        for skew in SKEW_SECONDS {
            let _ = claims::check_time(&claims, now, skew);
        }
    }
    for name in DATE_CLAIMS {
        let _ = claims::numeric_date(&claims, name);
    }

    let _ = claims::audiences(&claims);
    let _ = claims::scopes(&claims, &claims::SCOPE_CLAIMS);
    let _ = claims::scopes(&claims, &["permissions", "roles", "scope"]);

    let audiences = vec!["api://model-studio".to_owned(), "api://other".to_owned()];
    let _ = authenticator::check_audience(&claims, &audiences);

    let required_scopes = vec!["model.invoke".to_owned(), "model.list".to_owned()];
    let scope_claims = vec!["scope".to_owned(), "scp".to_owned()];
    for scope_match in [ScopeMatch::All, ScopeMatch::Any] {
        for required in [&required_scopes[..], &[]] {
            let requirements = Requirements {
                required_scopes: required,
                scope_match,
                scope_claims: &scope_claims,
                audiences: None,
                providers: None,
            };
            let _ = authenticator::check_scope(&claims, &requirements, &audiences);
        }
    }

    // Values copied into upstream request headers (`claims_to_headers`).
    for value in claims.values() {
        let _ = upstream::claim_header_value(value);
        let _ = claims::short_json(value);
    }

    let _ = jws::check_header(&claims);
});
