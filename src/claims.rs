//! Typed readers for the registered claims this filter checks, and the time rules.
//!
//! NumericDate claims must be JSON integers from 0 to 2^53: a string, a fraction, a negative
//! value or an exponent that overflows is `claim_invalid`, so no two parsers can disagree
//! about when a token expires.

use serde_json::{Map, Value};

use crate::reason::{Reason, Rejection};

/// Largest NumericDate accepted: 2^53, the largest integer every JSON parser reads exactly.
const MAX_NUMERIC_DATE: u64 = 1 << 53;

/// Reads an optional NumericDate claim.
pub fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Rejection> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(seconds) if seconds <= MAX_NUMERIC_DATE => Ok(i64::try_from(seconds).ok()),
        _ => Err(Rejection::new(
            Reason::ClaimInvalid,
            format!("{name} must be a non-negative integer NumericDate, got {}", short_json(value)),
        )),
    }
}

/// Checks `exp` (required), `nbf` and `iat` against `now_seconds` with `skew_seconds` slack.
pub fn check_time(claims: &Map<String, Value>, now_seconds: i64, skew_seconds: u64) -> Result<(), Rejection> {
    let skew = i64::try_from(skew_seconds).unwrap_or(i64::MAX);

    let Some(exp) = numeric_date(claims, "exp")? else {
        return Err(Rejection::new(Reason::TokenExpired, "token has no exp claim"));
    };
    if now_seconds >= exp.saturating_add(skew) {
        return Err(Rejection::new(
            Reason::TokenExpired,
            format!("exp {exp} is {} s before now {now_seconds} (skew {skew} s)", now_seconds - exp),
        ));
    }

    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > now_seconds.saturating_add(skew) {
            return Err(Rejection::new(
                Reason::TokenNotYetValid,
                format!("nbf {nbf} is {} s after now {now_seconds} (skew {skew} s)", nbf - now_seconds),
            ));
        }
    }

    if let Some(iat) = numeric_date(claims, "iat")? {
        if iat > now_seconds.saturating_add(skew) {
            return Err(Rejection::new(
                Reason::TokenNotYetValid,
                format!("iat {iat} is {} s after now {now_seconds} (skew {skew} s)", iat - now_seconds),
            ));
        }
    }
    Ok(())
}

/// Reads `aud` as a list: a single string or an array of strings (RFC 7519 section 4.1.3).
/// A missing `aud` is an empty list.
pub fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, Rejection> {
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(audience)) => Ok(vec![audience.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    Rejection::new(Reason::ClaimInvalid, format!("aud contains a non-string {}", short_json(item)))
                })
            })
            .collect(),
        Some(other) => Err(Rejection::new(
            Reason::ClaimInvalid,
            format!("aud must be a string or an array of strings, got {}", short_json(other)),
        )),
    }
}

/// Claims that carry scope values, in the order they are read: `scope` (RFC 8693 / RFC 9068,
/// a space-delimited string, as IDaaS issues it) and `scp` (an array, as some IdPs issue it).
pub const SCOPE_CLAIMS: [&str; 2] = ["scope", "scp"];

/// Collects scope values from the claims named in `claim_names`, in order. Each claim may be a
/// space-delimited string or an array of strings; an array entry must be one non-empty value
/// without spaces.
pub fn scopes<'a, S: AsRef<str>>(claims: &'a Map<String, Value>, claim_names: &[S]) -> Result<Vec<&'a str>, Rejection> {
    let mut values = Vec::new();
    for name in claim_names.iter().map(AsRef::as_ref) {
        match claims.get(name) {
            None => {}
            Some(Value::String(text)) => {
                for scope in text.split_ascii_whitespace() {
                    // Other whitespace (a vertical tab, a no-break space) is no delimiter, and a
                    // value made of it must not count as a scope.
                    if scope.contains(char::is_whitespace) {
                        return Err(Rejection::new(
                            Reason::ClaimInvalid,
                            format!("{name} contains whitespace other than ASCII whitespace: {}", crate::jws::truncate(&format!("{text:?}"), 64)),
                        ));
                    }
                    values.push(scope);
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(scope) if !scope.is_empty() && !scope.contains(char::is_whitespace) => {
                            values.push(scope);
                        }
                        _ => {
                            return Err(Rejection::new(
                                Reason::ClaimInvalid,
                                format!("{name} array entries must be single scope values, got {}", short_json(item)),
                            ))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(Rejection::new(
                    Reason::ClaimInvalid,
                    format!("{name} must be a string or an array of strings, got {}", short_json(other)),
                ))
            }
        }
    }
    Ok(values)
}

/// Renders an attacker-chosen JSON value for a log detail, at most 64 characters.
pub fn short_json(value: &Value) -> String {
    crate::jws::truncate(&value.to_string(), 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn time_reason(value: Value) -> Option<Reason> {
        check_time(&claims(value), NOW, 60).err().map(|r| r.reason)
    }

    #[test]
    fn unexpired_token_passes_time_checks() {
        assert_eq!(time_reason(json!({"exp": NOW + 300, "iat": NOW, "nbf": NOW})), None);
    }

    #[test]
    fn expired_token_is_rejected() {
        assert_eq!(time_reason(json!({"exp": NOW - 61})), Some(Reason::TokenExpired));
    }

    #[test]
    fn expiry_within_skew_is_accepted() {
        assert_eq!(time_reason(json!({"exp": NOW - 59})), None);
        assert_eq!(time_reason(json!({"exp": NOW - 60})), Some(Reason::TokenExpired));
    }

    #[test]
    fn missing_exp_is_rejected_as_expired() {
        assert_eq!(time_reason(json!({"iat": NOW})), Some(Reason::TokenExpired));
    }

    #[test]
    fn future_nbf_is_not_yet_valid() {
        assert_eq!(time_reason(json!({"exp": NOW + 600, "nbf": NOW + 61})), Some(Reason::TokenNotYetValid));
        assert_eq!(time_reason(json!({"exp": NOW + 600, "nbf": NOW + 60})), None);
    }

    #[test]
    fn future_iat_is_not_yet_valid() {
        assert_eq!(time_reason(json!({"exp": NOW + 600, "iat": NOW + 120})), Some(Reason::TokenNotYetValid));
    }

    #[test]
    fn non_integer_dates_are_invalid_claims() {
        for exp in [json!("1800000300"), json!(1_800_000_300.5), json!(-1), json!(1e300), json!(null), json!([1])] {
            assert_eq!(time_reason(json!({"exp": exp})), Some(Reason::ClaimInvalid), "{exp}");
        }
        assert_eq!(time_reason(json!({"exp": NOW + 600, "nbf": "0"})), Some(Reason::ClaimInvalid));
    }

    #[test]
    fn audience_string_and_array_are_read() {
        assert_eq!(audiences(&claims(json!({"aud": "a"}))).unwrap(), vec!["a"]);
        assert_eq!(audiences(&claims(json!({"aud": ["a", "b"]}))).unwrap(), vec!["a", "b"]);
        assert!(audiences(&claims(json!({}))).unwrap().is_empty());
    }

    #[test]
    fn audience_of_wrong_type_is_invalid() {
        for aud in [json!(1), json!({"a": 1}), json!([["a"]]), json!([1])] {
            let map = claims(json!({ "aud": aud }));
            assert_eq!(audiences(&map).unwrap_err().reason, Reason::ClaimInvalid);
        }
    }

    #[test]
    fn scope_string_is_split_on_spaces() {
        let map = claims(json!({"scope": " model.invoke  model.list "}));
        assert_eq!(scopes(&map, &SCOPE_CLAIMS).unwrap(), vec!["model.invoke", "model.list"]);
    }

    #[test]
    fn scope_with_other_whitespace_is_invalid() {
        for scope in ["\u{b}", "\u{a0}", "model.invoke\u{a0}x", "a \u{2003}"] {
            let map = claims(json!({ "scope": scope }));
            assert_eq!(scopes(&map, &SCOPE_CLAIMS).unwrap_err().reason, Reason::ClaimInvalid, "{scope:?}");
        }
    }

    #[test]
    fn scp_array_is_read() {
        let map = claims(json!({"scp": ["model.invoke", "model.list"]}));
        assert_eq!(scopes(&map, &SCOPE_CLAIMS).unwrap(), vec!["model.invoke", "model.list"]);
    }

    #[test]
    fn configured_scope_claims_are_read_in_order() {
        let map = claims(json!({"scope": "a", "permissions": ["b"], "scp": ["c"]}));
        assert_eq!(scopes(&map, &["permissions", "scope"]).unwrap(), vec!["b", "a"]);
    }

    #[test]
    fn scope_of_wrong_type_is_invalid() {
        for scope in [json!(1), json!({"a": "b"}), json!([1]), json!(["a b"]), json!([""]), json!(true)] {
            let map = claims(json!({ "scope": scope }));
            assert_eq!(scopes(&map, &SCOPE_CLAIMS).unwrap_err().reason, Reason::ClaimInvalid, "{scope}");
        }
    }
}
