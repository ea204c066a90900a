//! A benchmark-only HTTP filter that makes the host calls every JWT filter in Envoy must make,
//! and nothing else. `make bench` runs it beside the JWT filter, so the report can show how
//! much of the filter's cost is these calls and how much is the filter's own work.
//!
//! The plugin configuration is a list of words:
//! - `strip`: read `Authorization` and remove it (the least a filter that checks a bearer
//!   token and keeps it from the upstream can do);
//! - `read`: read `Authorization` and leave it in place (the least a filter that checks a
//!   bearer token and forwards it can do, as ours does with `keep_token`);
//! - `sha256`: also hash the header value with SHA-256 (what the verified-token cache does on
//!   every request);
//! - `verify <base64 SPKI DER>`: also check the token's RS256 signature with Envoy's
//!   `verify_signature` foreign function against that key, and send 401 if it does not verify;
//! - `verify-es256 <base64 SPKI DER>`: the same for an ES256 token, whose `r || s` signature is
//!   converted to DER first.
//!
//! It checks nothing else (no claims, no expiry) and must never guard real traffic.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { settings: Rc::new(Settings::default()) }) });
}}

#[derive(Default)]
struct Settings {
    /// Whether `Authorization` is read.
    read: bool,
    /// Whether it is also removed after it is read.
    remove: bool,
    sha256: bool,
    /// DER SubjectPublicKeyInfo of the key, when signatures are checked.
    verify_key: Option<Vec<u8>>,
    /// Whether the tokens are ES256 (else RS256).
    es256: bool,
}

impl Settings {
    fn parse(text: &str) -> Option<Settings> {
        let mut settings = Settings::default();
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            match word {
                "strip" => {
                    settings.read = true;
                    settings.remove = true;
                }
                "read" => settings.read = true,
                "sha256" => settings.sha256 = true,
                "verify" => settings.verify_key = Some(STANDARD.decode(words.next()?).ok()?),
                "verify-es256" => {
                    settings.verify_key = Some(STANDARD.decode(words.next()?).ok()?);
                    settings.es256 = true;
                }
                _ => return None,
            }
        }
        Some(settings)
    }
}

struct FloorRoot {
    settings: Rc<Settings>,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        match Settings::parse(&text) {
            Some(settings) => {
                self.settings = Rc::new(settings);
                true
            }
            None => {
                let message = format!("invalid floor filter configuration {text:?}: expected the words strip, read, sha256, verify <base64 SPKI DER> and verify-es256 <base64 SPKI DER>");
                let _ = hostcalls::log(LogLevel::Error, &message);
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorFilter { settings: Rc::clone(&self.settings) }))
    }
}

struct FloorFilter {
    settings: Rc<Settings>,
}

impl Context for FloorFilter {}

impl HttpContext for FloorFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let settings = &self.settings;
        if !settings.read {
            return Action::Continue;
        }
        let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "authorization").ok().flatten().unwrap_or_default();
        if settings.sha256 {
            std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &value));
        }
        if let Some(key) = &settings.verify_key {
            if !signature_holds(key, &value, settings.es256) {
                let _ = hostcalls::send_http_response(401, vec![], None);
                return Action::Pause;
            }
        }
        if settings.remove {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None);
        }
        Action::Continue
    }
}

/// Checks the RS256 or ES256 signature of the token in `authorization` on the host.
fn signature_holds(key: &[u8], authorization: &[u8], es256: bool) -> bool {
    let token = authorization.strip_prefix(b"Bearer ").unwrap_or_default();
    let Some(dot) = token.iter().rposition(|byte| *byte == b'.') else {
        return false;
    };
    let (signing_input, signature) = token.split_at(dot);
    let Ok(mut signature) = URL_SAFE_NO_PAD.decode(signature.get(1..).unwrap_or_default()) else {
        return false;
    };
    if es256 {
        match ecdsa_der(&signature) {
            Some(der) => signature = der,
            None => return false,
        }
    }
    let mut arguments = Vec::with_capacity(key.len() + signature.len() + signing_input.len() + 32);
    for (field, bytes) in [(1u8, b"sha256".as_slice()), (2, key), (3, &signature), (4, signing_input)] {
        arguments.push(field << 3 | 2);
        let mut length = bytes.len();
        while length >= 0x80 {
            arguments.push((length as u8 & 0x7f) | 0x80);
            length >>= 7;
        }
        arguments.push(length as u8);
        arguments.extend_from_slice(bytes);
    }
    // VerifySignatureResult: field 1 (varint) is the verdict.
    matches!(hostcalls::call_foreign_function("verify_signature", Some(&arguments)), Ok(Some(result)) if result.starts_with(&[0x08, 0x01]))
}

/// Converts a 64-byte JWS `r || s` signature to the DER `SEQUENCE { INTEGER r, INTEGER s }`
/// that Envoy's `verify_signature` expects. The filter's own conversion (src/der.rs) also
/// checks the range of r and s, but this crate cannot link the filter, whose module registers
/// its own root context, so the floor keeps this shorter copy and leaves range checks to the host.
fn ecdsa_der(signature: &[u8]) -> Option<Vec<u8>> {
    if signature.len() != 64 {
        return None;
    }
    let (r, s) = signature.split_at(32);
    let integer = |bytes: &[u8]| {
        let start = bytes.iter().position(|byte| *byte != 0).unwrap_or(bytes.len() - 1);
        let digits = &bytes[start..];
        let mut out = vec![0x02];
        if digits[0] & 0x80 != 0 {
            out.push(digits.len() as u8 + 1);
            out.push(0);
        } else {
            out.push(digits.len() as u8);
        }
        out.extend_from_slice(digits);
        out
    };
    let body = [integer(r), integer(s)].concat();
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Some(der)
}
