//! Rejection reasons: one variant per way a request can fail, each with a stable code.
//!
//! The code appears in the response body, in the debug log line and (later) in stats, so it
//! never changes once published. HTTP status and RFC 6750 error attributes for each reason
//! are decided in `response`.

use std::borrow::Cow;
use std::fmt;

/// Reason a request was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No `Authorization` header.
    TokenMissing,
    /// Several `Authorization` headers, a scheme other than Bearer, an empty or oversized
    /// token, or a token that is not a compact JWS with JSON object header and payload.
    TokenMalformed,
    /// Header `alg` is missing, `none`, symmetric (HS*) or not on the allow-list.
    AlgNotAllowed,
    /// The header requires a feature this filter does not implement (`crit`, `b64`).
    HeaderNotSupported,
    /// Header `typ` is not the provider's `require_typ`.
    TypeNotAllowed,
    /// `iss` is missing or matches no configured provider.
    IssuerUnknown,
    /// No key in the provider's key set fits the token's `kid` and `alg`.
    KeyNotFound,
    /// The signature does not verify with the selected key.
    SignatureInvalid,
    /// `exp` is missing, or lies in the past by more than the clock skew.
    TokenExpired,
    /// `nbf` or `iat` lies in the future by more than the clock skew.
    TokenNotYetValid,
    /// A registered claim has the wrong JSON type (for example `exp` as a string).
    ClaimInvalid,
    /// `exp - iat` exceeds the provider's `max_token_lifetime_seconds`, or `iat` is missing.
    TokenLifetimeTooLong,
    /// `aud` contains none of the provider's audiences.
    AudienceNotAllowed,
    /// `sub` or `client_id` is not on the provider's allow-list.
    ClientNotAllowed,
    /// The token carries no scope value at all.
    ScopeEmpty,
    /// The token lacks a required scope value.
    ScopeInsufficient,
    /// The provider's key set could not be loaded, so no token can be checked.
    JwksUnavailable,
    /// The path has dot segments, empty segments or encoded characters that an upstream may
    /// resolve to another route, and the configuration has route rules.
    PathNotNormalized,
    /// The `:authority` contains several hosts (Envoy joins repeated `Host` headers with commas)
    /// or whitespace, and the configuration selects by host.
    AuthorityInvalid,
}

impl Reason {
    /// Every reason, for tests and documentation tables.
    pub const ALL: [Reason; 19] = [
        Reason::TokenMissing,
        Reason::TokenMalformed,
        Reason::AlgNotAllowed,
        Reason::HeaderNotSupported,
        Reason::TypeNotAllowed,
        Reason::TokenLifetimeTooLong,
        Reason::ClientNotAllowed,
        Reason::IssuerUnknown,
        Reason::KeyNotFound,
        Reason::SignatureInvalid,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::ClaimInvalid,
        Reason::AudienceNotAllowed,
        Reason::ScopeEmpty,
        Reason::ScopeInsufficient,
        Reason::JwksUnavailable,
        Reason::PathNotNormalized,
        Reason::AuthorityInvalid,
    ];

    /// Returns the stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::TokenMalformed => "token_malformed",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::HeaderNotSupported => "header_not_supported",
            Reason::TypeNotAllowed => "typ_not_allowed",
            Reason::TokenLifetimeTooLong => "token_lifetime_too_long",
            Reason::ClientNotAllowed => "client_not_allowed",
            Reason::IssuerUnknown => "issuer_unknown",
            Reason::KeyNotFound => "key_not_found",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::ClaimInvalid => "claim_invalid",
            Reason::AudienceNotAllowed => "audience_not_allowed",
            Reason::ScopeEmpty => "scope_empty",
            Reason::ScopeInsufficient => "scope_insufficient",
            Reason::JwksUnavailable => "jwks_unavailable",
            Reason::PathNotNormalized => "path_not_normalized",
            Reason::AuthorityInvalid => "authority_invalid",
        }
    }

    /// Returns a one-sentence message for the caller. It never contains request data.
    pub fn message(self) -> &'static str {
        match self {
            Reason::TokenMissing => "This API requires an access token in the Authorization header (Bearer scheme).",
            Reason::TokenMalformed => "The Authorization header does not carry exactly one Bearer token in JWS compact form.",
            Reason::AlgNotAllowed => "The token's signing algorithm is not accepted; use an asymmetric algorithm such as RS256.",
            Reason::HeaderNotSupported => "The token header uses a JWS extension (crit or b64) that this gateway does not accept.",
            Reason::TypeNotAllowed => "The token is not an access token of the required type (typ).",
            Reason::TokenLifetimeTooLong => "The token's lifetime (exp - iat) is longer than this gateway accepts.",
            Reason::ClientNotAllowed => "This client is not allowed to call this API.",
            Reason::IssuerUnknown => "The token was not issued by a trusted issuer.",
            Reason::KeyNotFound => "The token was signed with a key that the issuer does not publish.",
            Reason::SignatureInvalid => "The token signature is invalid.",
            Reason::TokenExpired => "The token has expired; request a new one.",
            Reason::TokenNotYetValid => "The token is not valid yet; check the client's clock.",
            Reason::ClaimInvalid => "A registered claim in the token has the wrong type.",
            Reason::AudienceNotAllowed => "The token was issued for another resource server (aud).",
            Reason::ScopeEmpty => "The token carries no scope. In IDaaS, grant this application a permission with a Scope Value for the resource server, and request it with scope=<Resource Server Identifier>|<Scope Value> in the token request.",
            Reason::ScopeInsufficient => "The token lacks a scope that this API requires.",
            Reason::JwksUnavailable => "The gateway cannot load the issuer's signing keys; retry later.",
            Reason::PathNotNormalized => "The request path is not in normalized form: it has a dot or empty segment, a backslash, or an encoded slash, backslash or unreserved character.",
            Reason::AuthorityInvalid => "The request must carry exactly one Host header with one host name.",
        }
    }

    /// Returns the short text for the RFC 6750 `error_description` attribute
    /// (printable ASCII without quotes or backslashes).
    pub fn description(self) -> &'static str {
        match self {
            Reason::TokenMissing => "access token is missing",
            Reason::TokenMalformed => "access token is malformed",
            Reason::AlgNotAllowed => "signing algorithm is not allowed",
            Reason::HeaderNotSupported => "token header extension is not supported",
            Reason::TypeNotAllowed => "token type is not allowed",
            Reason::TokenLifetimeTooLong => "token lifetime is too long",
            Reason::ClientNotAllowed => "client is not allowed",
            Reason::IssuerUnknown => "issuer is not trusted",
            Reason::KeyNotFound => "signing key is not known",
            Reason::SignatureInvalid => "signature is invalid",
            Reason::TokenExpired => "token has expired",
            Reason::TokenNotYetValid => "token is not yet valid",
            Reason::ClaimInvalid => "token claim has the wrong type",
            Reason::AudienceNotAllowed => "audience is not allowed",
            Reason::ScopeEmpty => "token carries no scope",
            Reason::ScopeInsufficient => "token lacks a required scope",
            Reason::JwksUnavailable => "signing keys are unavailable",
            Reason::PathNotNormalized => "request path is not normalized",
            Reason::AuthorityInvalid => "request authority is invalid",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A reason plus a detail for the operator's log. The detail never contains the token, its
/// signature or any secret; it may contain claim values such as `exp`, `iss` or `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: Cow<'static, str>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let codes: HashSet<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Reason::ALL.len());
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
        }
    }

    #[test]
    fn descriptions_are_safe_header_text() {
        for reason in Reason::ALL {
            let text = reason.description();
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
        }
    }
}
