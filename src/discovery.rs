//! OpenID Connect discovery (OpenID Connect Discovery 1.0 section 4): reading `jwks_uri` from
//! a provider's `/.well-known/openid-configuration`.

use serde_json::Value;

use crate::config::split_http_uri;
use crate::json;
use crate::jwks_cache::FetchError;

/// Location of the key set of a discovered provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksLocation {
    pub uri: String,
    pub authority: String,
    pub path: String,
}

/// Reads `jwks_uri` from a discovery document after checking that its `issuer` equals the
/// configured issuer exactly, as section 4.3 of the specification requires: a document for
/// another issuer must not supply keys for this one.
pub fn parse_discovery(body: &[u8], expected_issuer: &str) -> Result<JwksLocation, FetchError> {
    let document = json::parse_object(body).map_err(|error| FetchError::Discovery(error.to_string()))?;
    match document.get("issuer") {
        Some(Value::String(issuer)) if issuer == expected_issuer => {}
        Some(Value::String(issuer)) => {
            return Err(FetchError::Discovery(format!(
                "issuer {:?} differs from the configured issuer {expected_issuer:?}; fix providers[].issuer or the discovery uri",
                crate::jws::truncate(issuer, 128)
            )))
        }
        _ => return Err(FetchError::Discovery("issuer is missing".to_owned())),
    }
    let Some(Value::String(uri)) = document.get("jwks_uri") else {
        return Err(FetchError::Discovery("jwks_uri is missing".to_owned()));
    };
    let (authority, path) =
        split_http_uri(uri).map_err(|message| FetchError::Discovery(format!("jwks_uri: {message}")))?;
    Ok(JwksLocation {
        uri: uri.clone(),
        authority,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://x.aliyunidaas.com/api/v2/iauths_system/oauth2";

    #[test]
    fn jwks_uri_is_read() {
        let body = format!(r#"{{"issuer":"{ISSUER}","jwks_uri":"https://x.aliyunidaas.com/api/v2/iauths_system/oauth2/jwks"}}"#);
        let location = parse_discovery(body.as_bytes(), ISSUER).unwrap();
        assert_eq!(location.authority, "x.aliyunidaas.com");
        assert_eq!(location.path, "/api/v2/iauths_system/oauth2/jwks");
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        let body = r#"{"issuer":"https://evil.example","jwks_uri":"https://evil.example/jwks"}"#;
        let error = parse_discovery(body.as_bytes(), ISSUER).unwrap_err();
        assert!(matches!(error, FetchError::Discovery(message) if message.contains("differs")));
    }

    #[test]
    fn missing_jwks_uri_is_rejected() {
        let body = format!(r#"{{"issuer":"{ISSUER}"}}"#);
        assert!(parse_discovery(body.as_bytes(), ISSUER).is_err());
    }

    #[test]
    fn non_json_document_is_rejected() {
        assert!(parse_discovery(b"<html>", ISSUER).is_err());
    }
}
