//! Compact JWS parsing (RFC 7515 section 7.1): three base64url parts, a JSON object header
//! and a JSON object payload.
//!
//! Base64url is decoded strictly: no padding, no `+` or `/`, and no non-zero trailing bits,
//! so each token has exactly one encoding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::algorithm::Algorithm;
use crate::json;
use crate::reason::{Reason, Rejection};

/// A token split into its parts; nothing in it has been verified.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

/// The header members this filter acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader<'a> {
    pub alg: Algorithm,
    pub kid: Option<&'a str>,
}

/// Splits and decodes a compact JWS. The header's `crit` and `b64` are checked before the
/// payload is decoded, because RFC 7797 lets them change how the payload is encoded: a
/// `b64: false` token is rejected for its header, not for a payload that is not base64url.
pub fn parse_compact(token: &str) -> Result<UnverifiedJws<'_>, Rejection> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::new(
            Reason::TokenMalformed,
            "token is not three dot-separated parts",
        ));
    };

    let header_bytes = decode_part(header_b64, "header")?;
    let header = json::parse_object(&header_bytes).map_err(|error| {
        Rejection::new(Reason::TokenMalformed, format!("header: {error}"))
    })?;
    check_extensions(&header)?;
    let payload_bytes = decode_part(payload_b64, "payload")?;
    let claims = json::parse_object(&payload_bytes).map_err(|error| {
        Rejection::new(Reason::TokenMalformed, format!("payload: {error}"))
    })?;
    let signature = decode_part(signature_b64, "signature")?;

    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token.as_bytes().get(..signing_input_len).unwrap_or_default();
    Ok(UnverifiedJws {
        header,
        claims,
        signing_input,
        signature,
    })
}

/// Checks the header: an accepted `alg`, no `crit` or `b64`, and a string `kid` if present.
/// Header members that would name a key (`jwk`, `jku`, `x5u`, `x5c`) are ignored: keys come
/// only from the configured key set.
pub fn check_header(header: &Map<String, Value>) -> Result<JoseHeader<'_>, Rejection> {
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Algorithm::from_name(name).ok_or_else(|| {
            Rejection::new(
                Reason::AlgNotAllowed,
                format!("alg {:?} is not on the allow-list", truncate(name, 32)),
            )
        })?,
        Some(_) => return Err(Rejection::new(Reason::AlgNotAllowed, "alg is not a string")),
        None => return Err(Rejection::new(Reason::AlgNotAllowed, "header has no alg")),
    };

    check_extensions(header)?;

    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(Rejection::new(Reason::TokenMalformed, "kid is not a string")),
    };
    Ok(JoseHeader { alg, kid })
}

/// Rejects the JWS extensions this filter does not implement: any `crit` list and `b64`.
fn check_extensions(header: &Map<String, Value>) -> Result<(), Rejection> {
    // RFC 7515 section 4.1.11: a recipient that does not understand every extension listed
    // in `crit` must reject the token. This filter implements none.
    if header.contains_key("crit") {
        return Err(Rejection::new(
            Reason::HeaderNotSupported,
            "header has crit; no critical extension is supported",
        ));
    }
    // RFC 7797 unencoded payloads change what the signature covers.
    if header.contains_key("b64") {
        return Err(Rejection::new(
            Reason::HeaderNotSupported,
            "header has b64; unencoded payloads are not supported",
        ));
    }
    Ok(())
}

fn decode_part(part: &str, name: &'static str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD.decode(part).map_err(|error| {
        Rejection::new(
            Reason::TokenMalformed,
            format!("{name} is not unpadded base64url: {error}"),
        )
    })
}

/// Shortens attacker-chosen text before it goes into a log detail.
pub fn truncate(text: &str, max_chars: usize) -> String {
    let mut shortened: String = text.chars().take(max_chars).collect();
    if shortened.len() < text.len() {
        shortened.push('…');
    }
    shortened
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    fn parse_reason(token: &str) -> Reason {
        parse_compact(token).map_or_else(|r| r.reason, |_| panic!("parsed {token}"))
    }

    fn header_reason(header: &str) -> Reason {
        let header = json::parse_object(header.as_bytes()).unwrap();
        check_header(&header).map_or_else(|r| r.reason, |_| panic!("accepted header"))
    }

    #[test]
    fn compact_token_parses() {
        let text = token(r#"{"alg":"RS256"}"#, r#"{"iss":"x"}"#);
        let jws = parse_compact(&text).unwrap();
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, text.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn two_parts_are_malformed() {
        assert_eq!(parse_reason("a.b"), Reason::TokenMalformed);
    }

    #[test]
    fn four_parts_are_malformed() {
        assert_eq!(parse_reason("a.b.c.d"), Reason::TokenMalformed);
    }

    #[test]
    fn padded_base64_is_malformed() {
        let text = format!("{}=.{}.{}", b64(r#"{"alg":"RS256"}"#), b64("{}"), b64("s"));
        assert_eq!(parse_reason(&text), Reason::TokenMalformed);
    }

    #[test]
    fn standard_alphabet_is_malformed() {
        // "?>?" encodes to "Pz4_" in base64url and "Pz4/" in standard base64.
        let text = format!("{}.{}.Pz4/", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert_eq!(parse_reason(&text), Reason::TokenMalformed);
    }

    #[test]
    fn non_canonical_trailing_bits_are_malformed() {
        // "QR" decodes to "A" only if the unused low bits are ignored; "QQ" is canonical.
        let text = format!("{}.{}.QR", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert_eq!(parse_reason(&text), Reason::TokenMalformed);
    }

    #[test]
    fn payload_that_is_not_an_object_is_malformed() {
        assert_eq!(parse_reason(&token(r#"{"alg":"RS256"}"#, "[1]")), Reason::TokenMalformed);
        assert_eq!(parse_reason(&token(r#"{"alg":"RS256"}"#, "hello")), Reason::TokenMalformed);
    }

    #[test]
    fn duplicate_header_member_is_malformed() {
        let text = token(r#"{"alg":"RS256","alg":"none"}"#, "{}");
        assert_eq!(parse_reason(&text), Reason::TokenMalformed);
    }

    #[test]
    fn alg_none_is_not_allowed() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(header_reason(&format!(r#"{{"alg":"{alg}"}}"#)), Reason::AlgNotAllowed);
        }
    }

    #[test]
    fn hmac_algorithms_are_not_allowed() {
        for alg in ["HS256", "HS384", "HS512"] {
            assert_eq!(header_reason(&format!(r#"{{"alg":"{alg}"}}"#)), Reason::AlgNotAllowed);
        }
    }

    #[test]
    fn missing_alg_is_not_allowed() {
        assert_eq!(header_reason(r#"{"typ":"JWT"}"#), Reason::AlgNotAllowed);
        assert_eq!(header_reason(r#"{"alg":256}"#), Reason::AlgNotAllowed);
    }

    #[test]
    fn crit_header_is_not_supported() {
        assert_eq!(header_reason(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#), Reason::HeaderNotSupported);
    }

    #[test]
    fn b64_header_is_not_supported() {
        assert_eq!(header_reason(r#"{"alg":"RS256","b64":false}"#), Reason::HeaderNotSupported);
    }

    #[test]
    fn b64_header_is_checked_before_the_payload() {
        let text = format!("{}.not base64!.{}", b64(r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#), b64("s"));
        assert_eq!(parse_reason(&text), Reason::HeaderNotSupported);
    }

    #[test]
    fn non_string_kid_is_malformed() {
        assert_eq!(header_reason(r#"{"alg":"RS256","kid":7}"#), Reason::TokenMalformed);
    }

    #[test]
    fn embedded_key_headers_are_ignored() {
        let header = json::parse_object(
            br#"{"alg":"RS256","kid":"k","jwk":{"kty":"oct"},"jku":"http://x","x5u":"http://x","x5c":["AA"]}"#,
        )
        .unwrap();
        assert_eq!(check_header(&header).unwrap(), JoseHeader { alg: Algorithm::RS256, kid: Some("k") });
    }
}

/// Identifiers of a token for a log line: header `kid` and the claims `iss`, `sub`,
/// `client_id` and `jti`, each shortened. Read without verification and only for logging; a
/// part that does not parse is left out. Never contains the signature.
pub fn token_ids(token: &str) -> String {
    let mut parts = token.split('.');
    let decode_object = |part: Option<&str>| {
        part.and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .and_then(|bytes| json::parse_object(&bytes).ok())
    };
    let header = decode_object(parts.next());
    let claims = decode_object(parts.next());
    let mut fields = Vec::new();
    let mut push = |name: &str, value: Option<&Value>| {
        if let Some(Value::String(text)) = value {
            fields.push(format!("{name}={:?}", truncate(text, 64)));
        }
    };
    push("kid", header.as_ref().and_then(|header| header.get("kid")));
    for name in ["iss", "sub", "client_id", "jti"] {
        push(name, claims.as_ref().and_then(|claims| claims.get(name)));
    }
    fields.join(" ")
}

#[cfg(test)]
mod token_ids_tests {
    use super::*;

    #[test]
    fn ids_are_read_without_the_signature() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://idp","sub":"app","client_id":"app","jti":"j1","scope":"x"}"#);
        let ids = token_ids(&format!("{header}.{claims}.c2lnbmF0dXJl"));
        assert_eq!(ids, r#"kid="k1" iss="https://idp" sub="app" client_id="app" jti="j1""#);
        assert!(!ids.contains("c2lnbmF0dXJl"));
    }

    #[test]
    fn garbage_gives_no_ids() {
        assert_eq!(token_ids("not a token"), "");
    }
}
