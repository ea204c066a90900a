//! Maps a denial to its HTTP response: status, `WWW-Authenticate` (RFC 6750 section 3),
//! `Retry-After` and a JSON body. This is the only place that decides a status code.

use crate::authenticator::Denial;
use crate::reason::Reason;

/// A response the host sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Returns the HTTP status for a reason.
pub fn status_for(reason: Reason) -> u32 {
    match reason {
        Reason::ScopeEmpty | Reason::ScopeInsufficient | Reason::ClientNotAllowed => 403,
        Reason::JwksUnavailable => 503,
        Reason::PathNotNormalized | Reason::AuthorityInvalid => 400,
        _ => 401,
    }
}

/// Builds the response for `denial`. `authority` is the request's `:authority`, used as the
/// realm; `required_scopes` fills the `scope` attribute of a 403.
pub fn deny_response(denial: &Denial, authority: &str, required_scopes: &[String]) -> DenyResponse {
    let reason = denial.rejection.reason;
    let status = status_for(reason);

    let mut challenge = format!("Bearer realm=\"{}\"", quoted_string_safe(authority));
    match status {
        401 if reason != Reason::TokenMissing => {
            challenge.push_str(", error=\"invalid_token\", error_description=\"");
            challenge.push_str(reason.description());
            challenge.push('"');
        }
        400 => {
            challenge.push_str(", error=\"invalid_request\", error_description=\"");
            challenge.push_str(reason.description());
            challenge.push('"');
        }
        403 => {
            challenge.push_str(", error=\"insufficient_scope\", error_description=\"");
            challenge.push_str(reason.description());
            challenge.push('"');
            if reason != Reason::ClientNotAllowed && !required_scopes.is_empty() {
                challenge.push_str(", scope=\"");
                challenge.push_str(&required_scopes.join(" "));
                challenge.push('"');
            }
        }
        _ => {}
    }

    let mut headers = vec![("content-type", "application/json".to_owned())];
    // RFC 6750 defines the challenge for 401 and 403; a 503 is not about the token.
    if status != 503 {
        headers.push(("www-authenticate", challenge));
    }
    if let Some(seconds) = denial.retry_after_seconds {
        headers.push(("retry-after", seconds.max(1).to_string()));
    }

    let body = serde_json::json!({ "code": reason.code(), "message": reason.message() }).to_string();
    DenyResponse { status, headers, body }
}

/// Keeps the characters allowed inside an RFC 7230 quoted-string without escapes, at most
/// 255 of them. The authority is client input; a quote or control byte must not end the
/// attribute early or split the header.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .take(255)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Rejection;

    fn denial(reason: Reason) -> Denial {
        Denial {
            rejection: Rejection::new(reason, "test"),
            provider_index: None,
            retry_after_seconds: None,
        }
    }

    fn header<'a>(response: &'a DenyResponse, name: &str) -> Option<&'a str> {
        response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_reason_has_a_status_and_json_body() {
        for reason in Reason::ALL {
            let response = deny_response(&denial(reason), "gw", &[]);
            assert!(matches!(response.status, 400 | 401 | 403 | 503), "{reason}");
            let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(body["code"], reason.code());
            assert_eq!(header(&response, "content-type"), Some("application/json"));
        }
    }

    #[test]
    fn missing_token_challenge_has_no_error() {
        let response = deny_response(&denial(Reason::TokenMissing), "api.example.com", &[]);
        assert_eq!(response.status, 401);
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer realm=\"api.example.com\""));
    }

    #[test]
    fn invalid_token_challenge_names_the_error() {
        let response = deny_response(&denial(Reason::TokenExpired), "gw", &[]);
        assert_eq!(
            header(&response, "www-authenticate"),
            Some("Bearer realm=\"gw\", error=\"invalid_token\", error_description=\"token has expired\"")
        );
    }

    #[test]
    fn insufficient_scope_lists_required_scopes() {
        let required = vec!["model.invoke".to_owned(), "model.list".to_owned()];
        let response = deny_response(&denial(Reason::ScopeInsufficient), "gw", &required);
        assert_eq!(response.status, 403);
        let challenge = header(&response, "www-authenticate").unwrap();
        assert!(challenge.contains("error=\"insufficient_scope\""));
        assert!(challenge.ends_with("scope=\"model.invoke model.list\""));
    }

    #[test]
    fn unnormalized_path_is_invalid_request() {
        let response = deny_response(&denial(Reason::PathNotNormalized), "gw", &[]);
        assert_eq!(response.status, 400);
        assert_eq!(
            header(&response, "www-authenticate"),
            Some("Bearer realm=\"gw\", error=\"invalid_request\", error_description=\"request path is not normalized\"")
        );
    }

    #[test]
    fn empty_scope_is_forbidden_and_says_why() {
        let response = deny_response(&denial(Reason::ScopeEmpty), "gw", &[]);
        assert_eq!(response.status, 403);
        assert!(response.body.contains("Scope Value"));
        assert!(!header(&response, "www-authenticate").unwrap().contains("scope=\""));
    }

    #[test]
    fn unavailable_keys_give_503_with_retry_after() {
        let mut unavailable = denial(Reason::JwksUnavailable);
        unavailable.retry_after_seconds = Some(0);
        let response = deny_response(&unavailable, "gw", &[]);
        assert_eq!(response.status, 503);
        assert_eq!(header(&response, "retry-after"), Some("1"));
        assert_eq!(header(&response, "www-authenticate"), None);
    }

    #[test]
    fn realm_drops_quotes_and_control_characters() {
        let response = deny_response(&denial(Reason::TokenMissing), "a\"b\\c\r\nd", &[]);
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer realm=\"abcd\""));
    }
}
