//! Finds the bearer token in the request's `Authorization` header (RFC 6750 section 2.1).

use crate::reason::{Reason, Rejection};

/// Largest token accepted, in bytes. Longer values are rejected before any parsing, which
/// bounds the work an unauthenticated client can cause.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Returns the token from the values of every `Authorization` header on the request.
///
/// The scheme is matched case-insensitively and followed by one or more spaces. Several
/// `Authorization` headers are rejected rather than picking one, because a proxy in front
/// and this filter could otherwise pick different ones.
pub fn extract_bearer_token<'a>(authorization_values: &[&'a str]) -> Result<&'a str, Rejection> {
    let value = match authorization_values {
        [] => {
            return Err(Rejection::new(
                Reason::TokenMissing,
                "no Authorization header",
            ))
        }
        [value] => *value,
        _ => {
            return Err(Rejection::new(
                Reason::TokenMalformed,
                format!(
                    "{} Authorization headers; exactly one is allowed",
                    authorization_values.len()
                ),
            ))
        }
    };

    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::new(
            Reason::TokenMalformed,
            "Authorization scheme is not Bearer",
        ));
    }

    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Rejection::new(Reason::TokenMalformed, "Bearer token is empty"));
    }
    if token.contains(',') {
        // Envoy joins repeated Authorization headers into one value with commas on builds
        // that register the header as inline.
        return Err(Rejection::new(
            Reason::TokenMalformed,
            "token contains a comma: several Authorization headers joined into one, or a malformed token; exactly one header with one token is allowed",
        ));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::new(
            Reason::TokenMalformed,
            format!("token is {} bytes; the limit is {MAX_TOKEN_BYTES}", token.len()),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(values: &[&str]) -> Reason {
        extract_bearer_token(values).map_or_else(|r| r.reason, |_| panic!("accepted {values:?}"))
    }

    #[test]
    fn bearer_token_is_extracted() {
        assert_eq!(extract_bearer_token(&["Bearer abc.def.ghi"]), Ok("abc.def.ghi"));
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_repeat() {
        assert_eq!(extract_bearer_token(&["bEaReR    abc"]), Ok("abc"));
    }

    #[test]
    fn missing_header_is_token_missing() {
        assert_eq!(reason_of(&[]), Reason::TokenMissing);
    }

    #[test]
    fn joined_authorization_values_are_malformed() {
        let rejection = extract_bearer_token(&["Bearer a.b.c,Bearer d.e.f"]).unwrap_err();
        assert_eq!(rejection.reason, Reason::TokenMalformed);
        assert!(rejection.detail.contains("comma"), "{}", rejection.detail);
    }

    #[test]
    fn two_headers_are_malformed() {
        assert_eq!(reason_of(&["Bearer a", "Bearer b"]), Reason::TokenMalformed);
    }

    #[test]
    fn basic_scheme_is_malformed() {
        assert_eq!(reason_of(&["Basic dXNlcjpwYXNz"]), Reason::TokenMalformed);
    }

    #[test]
    fn scheme_without_separator_is_malformed() {
        assert_eq!(reason_of(&["Bearerabc"]), Reason::TokenMalformed);
    }

    #[test]
    fn empty_token_is_malformed() {
        assert_eq!(reason_of(&["Bearer"]), Reason::TokenMalformed);
        assert_eq!(reason_of(&["Bearer    "]), Reason::TokenMalformed);
    }

    #[test]
    fn oversized_token_is_malformed() {
        let header = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(reason_of(&[&header]), Reason::TokenMalformed);
        let at_limit = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert!(extract_bearer_token(&[&at_limit]).is_ok());
    }
}
