//! Headers an admitted request carries to the upstream: claim headers, the verified payload, and
//! the gateway's own credential in place of the client's token.
//!
//! Every header the filter sets is first removed from the incoming request, on every route
//! (including routes that skip validation), so a client cannot forge one.

use std::fmt;

use serde_json::Value;

use crate::config::{error, non_empty_string, ConfigError, EnvLookup, ObjectReader};

/// A credential that must never appear in a log line or a `Debug` print.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// One `claims_to_headers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: String,
    /// Lower-case header name.
    pub header: String,
}

/// The upstream settings of one filter configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders {
    pub claims_to_headers: Vec<ClaimHeader>,
    /// Header that carries the verified payload, base64url as in the token.
    pub forward_payload_header: Option<String>,
    /// Value that replaces `Authorization` after a token passes (`upstream_authorization`).
    pub authorization: Option<SecretValue>,
}

impl UpstreamHeaders {
    /// Names of the headers to remove from every incoming request before anything else.
    pub fn protected_headers(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers
            .iter()
            .map(|entry| entry.header.as_str())
            .chain(self.forward_payload_header.as_deref())
    }
}

/// Renders a claim as a header value: strings as they are, numbers and booleans as JSON text,
/// arrays of strings joined with spaces. Objects, nulls, mixed arrays and values with control
/// characters give `None`, and the header is left out.
pub fn claim_header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Array(items) => {
            let parts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            parts?.join(" ")
        }
        Value::Null | Value::Object(_) => return None,
    };
    if text.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(text)
}

/// Parses `claims_to_headers`, `forward_payload_header` and `upstream_authorization`.
pub(crate) fn parse_upstream_headers(
    reader: &mut ObjectReader<'_>,
    env: EnvLookup<'_>,
    unknown_fields: &mut Vec<String>,
) -> Result<UpstreamHeaders, ConfigError> {
    let mut claims_to_headers = Vec::new();
    if let Some(value) = reader.get("claims_to_headers") {
        let field = reader.field("claims_to_headers");
        let Value::Array(items) = value else {
            return Err(error(&field, "must be an array of {\"claim\": ..., \"header\": ...} objects"));
        };
        for (index, item) in items.iter().enumerate() {
            let path = format!("{field}[{index}]");
            let Value::Object(map) = item else {
                return Err(error(&path, "must be an object with claim and header"));
            };
            let mut entry = ObjectReader::new(map, path);
            let claim = non_empty_string(entry.get("claim"), &entry.field("claim"), "a claim name such as client_id")?;
            let header_field = entry.field("header");
            let header = header_name(entry.get("header"), &header_field)?;
            entry.collect_unknown(unknown_fields);
            claims_to_headers.push(ClaimHeader { claim, header });
        }
    }

    let forward_payload_header = match reader.get("forward_payload_header") {
        None => None,
        Some(value) => Some(header_name(Some(value), &reader.field("forward_payload_header"))?),
    };

    let authorization = match reader.get("upstream_authorization") {
        None => None,
        Some(value) => {
            let field = reader.field("upstream_authorization");
            let template = non_empty_string(Some(value), &field, "a header value such as \"Bearer ${DASHSCOPE_API_KEY}\"")?;
            Some(SecretValue(expand_env(&template, env).map_err(|message| error(&field, message))?))
        }
    };

    let mut seen: Vec<&str> = Vec::new();
    for name in claims_to_headers
        .iter()
        .map(|entry| entry.header.as_str())
        .chain(forward_payload_header.as_deref())
    {
        if seen.contains(&name) {
            return Err(error(&reader.field("claims_to_headers"), format!("header {name:?} is set twice")));
        }
        seen.push(name);
    }

    Ok(UpstreamHeaders {
        claims_to_headers,
        forward_payload_header,
        authorization,
    })
}

/// Validates a header name the filter will set: an RFC 9110 token, not a pseudo-header and not
/// one the proxy or this filter owns.
fn header_name(value: Option<&Value>, field: &str) -> Result<String, ConfigError> {
    let name = non_empty_string(value, field, "a header name such as x-idaas-client-id")?.to_ascii_lowercase();
    let is_token = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return Err(error(field, format!("{name:?} is not a valid header name")));
    }
    if matches!(name.as_str(), "authorization" | "host" | "content-length" | "transfer-encoding" | "connection") {
        return Err(error(field, format!("{name:?} cannot be set by this filter; choose another header name")));
    }
    Ok(name)
}

/// Replaces each `${NAME}` with the environment variable `NAME`. A missing variable is an
/// error, so a gateway never forwards a literal `${...}` as its credential.
fn expand_env(template: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut output = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        output.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find('}') else {
            return Err("has \"${\" without a closing \"}\"".to_owned());
        };
        let name = after.get(..end).unwrap_or_default();
        let value = env(name).ok_or_else(|| {
            format!(
                "environment variable {name:?} is not set; in Envoy, add it to vm_config.environment_variables, \
                 and for the check-config command, export it in the shell"
            )
        })?;
        output.push_str(&value);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    output.push_str(rest);
    if output.chars().any(|c| c.is_control()) {
        return Err("the value contains a control character".to_owned());
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value, env: EnvLookup<'_>) -> Result<UpstreamHeaders, ConfigError> {
        let Value::Object(map) = value else { panic!() };
        let mut reader = ObjectReader::new(&map, String::new());
        parse_upstream_headers(&mut reader, env, &mut Vec::new())
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn claim_values_render_as_text() {
        assert_eq!(claim_header_value(&json!("app_1")), Some("app_1".to_owned()));
        assert_eq!(claim_header_value(&json!(42)), Some("42".to_owned()));
        assert_eq!(claim_header_value(&json!(true)), Some("true".to_owned()));
        assert_eq!(claim_header_value(&json!(["a", "b"])), Some("a b".to_owned()));
    }

    #[test]
    fn objects_and_mixed_arrays_are_left_out() {
        assert_eq!(claim_header_value(&json!({"a": 1})), None);
        assert_eq!(claim_header_value(&json!(["a", 1])), None);
        assert_eq!(claim_header_value(&json!(null)), None);
        assert_eq!(claim_header_value(&json!("a\r\nx-forged: 1")), None);
    }

    #[test]
    fn env_reference_is_expanded() {
        let env = |name: &str| (name == "DASHSCOPE_API_KEY").then(|| "sk-test".to_owned());
        let headers = parse(json!({"upstream_authorization": "Bearer ${DASHSCOPE_API_KEY}"}), &env).unwrap();
        assert_eq!(headers.authorization.as_ref().map(SecretValue::expose), Some("Bearer sk-test"));
        assert_eq!(format!("{:?}", headers.authorization), "Some(SecretValue(<redacted>))");
    }

    #[test]
    fn missing_env_variable_is_rejected() {
        let error = parse(json!({"upstream_authorization": "Bearer ${NOPE}"}), &no_env).unwrap_err();
        assert_eq!(error.field, "upstream_authorization");
        assert!(error.message.contains("NOPE"));
    }

    #[test]
    fn literal_authorization_is_kept() {
        let headers = parse(json!({"upstream_authorization": "Bearer literal"}), &no_env).unwrap();
        assert_eq!(headers.authorization.as_ref().map(SecretValue::expose), Some("Bearer literal"));
    }

    #[test]
    fn claim_headers_are_parsed_and_lowercased() {
        let headers = parse(
            json!({"claims_to_headers": [{"claim": "client_id", "header": "X-IDaaS-Client-Id"}], "forward_payload_header": "x-jwt-payload"}),
            &no_env,
        )
        .unwrap();
        assert_eq!(headers.claims_to_headers[0].header, "x-idaas-client-id");
        let protected: Vec<&str> = headers.protected_headers().collect();
        assert_eq!(protected, vec!["x-idaas-client-id", "x-jwt-payload"]);
    }

    #[test]
    fn invalid_header_names_are_rejected() {
        for header in ["x y", ":path", "Authorization", ""] {
            let result = parse(json!({"claims_to_headers": [{"claim": "sub", "header": header}]}), &no_env);
            assert_eq!(result.unwrap_err().field, "claims_to_headers[0].header", "{header}");
        }
    }

    #[test]
    fn duplicate_header_is_rejected() {
        let result = parse(
            json!({"claims_to_headers": [{"claim": "sub", "header": "x-a"}], "forward_payload_header": "x-a"}),
            &no_env,
        );
        assert_eq!(result.unwrap_err().field, "claims_to_headers");
    }
}
