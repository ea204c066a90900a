//! Per-route requirements: an ordered list of rules, the first match decides. A rule matches
//! on any combination of path prefix, exact path, regex, methods and hosts (all given
//! conditions must hold) and either skips validation or overrides what a token must carry.
//! A request that matches no rule gets the top-level requirements: secure by default.

use serde_json::Value;

use crate::config::{error, non_empty_string, string_list, ConfigError, ObjectReader, ScopeMatch};
use crate::reason::{Reason, Rejection};

/// The request attributes rules match on.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// `:path` without the query string.
    pub path: &'a str,
    pub method: &'a str,
    /// `:authority` without the port and a trailing dot.
    pub host: &'a str,
}

impl<'a> RouteRequest<'a> {
    /// Builds the match attributes from raw `:path`, `:method` and `:authority` values.
    pub fn new(path: &'a str, method: &'a str, authority: &'a str) -> Self {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        RouteRequest {
            path,
            method,
            host: request_host(authority),
        }
    }
}

/// Checks that route rules can match `path` (without its query) and `authority` the way the
/// upstream reads them: one host, and a normalized path.
pub fn check_rule_input(path: &str, authority: &str) -> Result<(), Rejection> {
    if !is_single_host(authority) {
        return Err(Rejection::new(Reason::AuthorityInvalid, NOT_SINGLE_HOST_DETAIL));
    }
    if !is_normalized_path(path) {
        return Err(Rejection::new(Reason::PathNotNormalized, NOT_NORMALIZED_DETAIL));
    }
    Ok(())
}

/// Operator's detail for a request rejected by `is_single_host`.
pub const NOT_SINGLE_HOST_DETAIL: &str = ":authority is not one host with an optional numeric port (it has several hosts, whitespace, an empty label, a '%', brackets around something other than an IPv6 address, or a port that is not a number; Envoy joins repeated Host headers with commas), so host and domain rules cannot be applied safely";

/// Returns whether `authority` names one host in a form that host rules compare reliably:
/// - no comma, which Envoy puts between the values of repeated `Host` headers, and no
///   whitespace (RFC 9112 section 3.2 requires a 400 for more than one `Host` header);
/// - a port, if any, of at most five digits (an empty port counts as none);
/// - no empty label, except that one trailing dot is allowed and ignored when matching.
///
/// Upstreams may read `api.example.com.` or `api.example.com:` as `api.example.com`, so those
/// forms match as that host, and forms such as `api.example.com:x` or `api.example.com..` are
/// rejected instead of falling through to weaker requirements.
pub fn is_single_host(authority: &str) -> bool {
    if authority.contains(',') || authority.chars().any(char::is_whitespace) {
        return false;
    }
    let (host, port) = split_port(authority);
    let port_is_valid = port.is_none_or(|port| port.len() <= 5 && port.bytes().all(|byte| byte.is_ascii_digit()));
    if !port_is_valid {
        return false;
    }
    if let Some(literal) = host.strip_prefix('[') {
        return literal.strip_suffix(']').is_some_and(is_ipv6_literal);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    // A percent-encoded host such as `api.example.com%2e` is rejected as well: few upstreams
    // decode it, and none should be trusted to read it like the rules do.
    host.is_empty() || (!name.is_empty() && name.split('.').all(|label| !label.is_empty()) && !name.contains([':', '%']))
}

/// Returns whether `literal` (the text between the brackets of a URI host) is an IPv6 address,
/// optionally with a `%25` zone identifier as RFC 6874 writes it.
fn is_ipv6_literal(literal: &str) -> bool {
    let (address, zone) = match literal.split_once("%25") {
        Some((address, zone)) => (address, Some(zone)),
        None => (literal, None),
    };
    address.contains(':')
        && address.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        && zone.is_none_or(|zone| !zone.is_empty() && zone.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)))
}

/// Splits an authority into host and port text, keeping a bracketed IPv6 literal whole. Text
/// after the closing bracket that does not start with `:` is returned as the port, so that it
/// fails the port check.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        let Some(end) = authority.find(']') else {
            return (authority, None);
        };
        let (host, rest) = authority.split_at(end + 1);
        let port = if rest.is_empty() { None } else { Some(rest.strip_prefix(':').unwrap_or(rest)) };
        return (host, port);
    }
    match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// Returns the authority without its port, keeping a bracketed IPv6 literal whole.
pub fn strip_port(authority: &str) -> &str {
    split_port(authority).0
}

/// Returns the host that host rules compare: the authority without its port and without one
/// trailing dot.
pub fn request_host(authority: &str) -> &str {
    let host = strip_port(authority);
    host.strip_suffix('.').unwrap_or(host)
}

/// Operator's detail for a request rejected by `is_normalized_path`.
pub const NOT_NORMALIZED_DETAIL: &str = "path has a dot segment, an empty segment, a backslash, a ';' or an encoded slash or unreserved character, so route rules cannot be applied safely; set normalize_path, merge_slashes and path_with_escaped_slashes_action on the HTTP connection manager";

/// Returns whether `path` (without its query) is in the form that Envoy's `normalize_path`,
/// `merge_slashes` and `path_with_escaped_slashes_action` produce: no `.` or `..` segment, no
/// empty segment, no backslash, and no percent-encoded `/`, `\` or unreserved character. A `;`
/// is rejected as well, although Envoy keeps it. Rules match the path as it reaches the filter,
/// so a path that an upstream may resolve to another route is rejected instead of matched.
pub fn is_normalized_path(path: &str) -> bool {
    // Servlet containers and others drop `;` parameters from a segment, so `/v1/models;x` may
    // reach the handler of `/v1/models` while missing a rule for it.
    if path.contains('\\') || path.contains("//") || path.contains(';') {
        return false;
    }
    let dot_segment = |segment: &str| matches!(segment, "." | "..");
    if path.split('/').any(dot_segment) {
        return false;
    }
    let bytes = path.as_bytes();
    let encoded_bytes = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'%')
        .filter_map(|(index, _)| bytes.get(index + 1..index + 3))
        .filter_map(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
    for byte in encoded_bytes {
        if byte == b'/' || byte == b'\\' || byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            return false;
        }
    }
    true
}

/// A host pattern: exact (case-insensitive), `*.suffix`, `prefix.*`, or `*` for any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(pub String);

impl HostPattern {
    pub fn new(pattern: &str) -> HostPattern {
        HostPattern(pattern.to_ascii_lowercase())
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let pattern = self.0.as_str();
        if pattern == "*" {
            return true;
        }
        if let Some(suffix) = pattern.strip_prefix('*') {
            return host.len() > suffix.len() && host.ends_with(suffix);
        }
        if let Some(prefix) = pattern.strip_suffix('*') {
            return host.len() > prefix.len() && host.starts_with(prefix);
        }
        host == pattern
    }
}

/// The conditions of one rule.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub regex: Option<regex_lite::Regex>,
    /// Upper-case method names; empty means any method.
    pub methods: Vec<String>,
    pub hosts: Vec<HostPattern>,
}

impl RouteMatch {
    pub fn matches(&self, request: &RouteRequest<'_>) -> bool {
        self.prefix.as_ref().is_none_or(|prefix| request.path.starts_with(prefix.as_str()))
            && self.path.as_ref().is_none_or(|path| request.path == path)
            && self.regex.as_ref().is_none_or(|regex| full_match(regex, request.path))
            && (self.methods.is_empty() || self.methods.iter().any(|method| method.eq_ignore_ascii_case(request.method)))
            && (self.hosts.is_empty() || self.hosts.iter().any(|host| host.matches(request.host)))
    }
}

/// Prefix and suffix that anchor a configured pattern at both ends of the path.
const ANCHOR_START: &str = "^(?:";
const ANCHOR_END: &str = ")$";

/// Returns the pattern as configured, without the anchors added when the rule was parsed.
pub fn configured_pattern(regex: &regex_lite::Regex) -> &str {
    let anchored = regex.as_str();
    anchored.strip_prefix(ANCHOR_START).and_then(|rest| rest.strip_suffix(ANCHOR_END)).unwrap_or(anchored)
}

/// Returns whether `regex`, anchored at both ends when the rule was parsed, matches all of
/// `text`, as Envoy's `safe_regex` route match does.
fn full_match(regex: &regex_lite::Regex, text: &str) -> bool {
    regex.is_match(text)
}

/// Requirements a token must meet on a route. `None` fields keep the top-level value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRequirements {
    pub required_scopes: Option<Vec<String>>,
    pub scope_match: Option<ScopeMatch>,
    /// Accepted `aud` values in place of each provider's own audiences.
    pub audiences: Option<Vec<String>>,
    /// Indexes of the providers allowed on the route.
    pub providers: Option<Vec<usize>>,
}

/// Action of a matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// No token needed (for example a health check).
    Skip,
    Require(RouteRequirements),
}

/// One entry of `rules`.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub matcher: RouteMatch,
    pub action: RouteAction,
}

/// Returns the action of the first rule that matches, or `None`.
pub fn select<'a>(rules: &'a [RouteRule], request: &RouteRequest<'_>) -> Option<&'a RouteAction> {
    rules.iter().find(|rule| rule.matcher.matches(request)).map(|rule| &rule.action)
}

/// Parses `rules`; `provider_names` resolves each rule's `providers` to indexes.
pub fn parse_rules(value: &Value, provider_names: &[&str], unknown_fields: &mut Vec<String>) -> Result<Vec<RouteRule>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(error("rules", "must be an array of rule objects"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_rule(item, format!("rules[{index}]"), provider_names, unknown_fields))
        .collect()
}

fn parse_rule(value: &Value, path: String, provider_names: &[&str], unknown_fields: &mut Vec<String>) -> Result<RouteRule, ConfigError> {
    let Value::Object(map) = value else {
        return Err(error(&path, "must be an object"));
    };
    let mut reader = ObjectReader::new(map, path);
    let matcher = parse_match(&mut reader)?;

    let skip = match reader.get("skip") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(error(&reader.field("skip"), "must be true or false")),
    };
    let requirements = parse_requirements(&mut reader, provider_names)?;
    let action = if skip {
        if requirements != RouteRequirements::default() {
            return Err(error(
                &reader.field("skip"),
                "a rule with skip: true cannot also set required_scopes, scope_match, audiences or providers",
            ));
        }
        RouteAction::Skip
    } else {
        RouteAction::Require(requirements)
    };
    reader.collect_unknown(unknown_fields);
    Ok(RouteRule { matcher, action })
}

fn parse_match(reader: &mut ObjectReader<'_>) -> Result<RouteMatch, ConfigError> {
    let path_field = |reader: &ObjectReader<'_>, name: &str, value: &Value| -> Result<String, ConfigError> {
        let text = non_empty_string(Some(value), &reader.field(name), "a path starting with /")?;
        if !text.starts_with('/') {
            return Err(error(&reader.field(name), format!("{text:?} must start with /")));
        }
        Ok(text)
    };
    let prefix = match reader.get("prefix") {
        None => None,
        Some(value) => Some(path_field(reader, "prefix", value)?),
    };
    let path = match reader.get("path") {
        None => None,
        Some(value) => Some(path_field(reader, "path", value)?),
    };
    let regex = match reader.get("regex") {
        None => None,
        Some(value) => {
            let field = reader.field("regex");
            let pattern = non_empty_string(Some(value), &field, "a regular expression over the path")?;
            // The pattern alone first, so that an error names what the user wrote.
            regex_lite::Regex::new(&pattern).map_err(|regex_error| error(&field, format!("invalid regex: {regex_error}")))?;

            // Anchored, so the whole path must match as in Envoy's `safe_regex`. An unanchored
            // match that spans the path is not enough, because the leftmost-first match of
            // `a|ab` on `ab` is `a`.
            let anchored = format!("{ANCHOR_START}{pattern}{ANCHOR_END}");
            // A pattern that compiles alone fails anchored only when a `#` comment under the x
            // (verbose) flag swallows the closing anchor. Envoy's RE2 has no x flag at all.
            let comment_error = |_| {
                let message = "cannot be matched against the whole path because a # comment under the x (verbose) flag runs to its end; remove the comment";
                error(&field, message)
            };
            Some(regex_lite::Regex::new(&anchored).map_err(comment_error)?)
        }
    };
    let methods = match reader.get("methods") {
        None => Vec::new(),
        Some(value) => string_list(value, &reader.field("methods"))?
            .into_iter()
            .map(|method| method.to_ascii_uppercase())
            .collect(),
    };
    let hosts = match reader.get("hosts") {
        None => Vec::new(),
        Some(value) => string_list(value, &reader.field("hosts"))?
            .iter()
            .map(|host| HostPattern::new(request_host(host)))
            .collect(),
    };
    Ok(RouteMatch {
        prefix,
        path,
        regex,
        methods,
        hosts,
    })
}

/// Parses the requirement overrides of a rule.
fn parse_requirements(reader: &mut ObjectReader<'_>, provider_names: &[&str]) -> Result<RouteRequirements, ConfigError> {
    let required_scopes = match reader.get("required_scopes") {
        None => None,
        Some(value) => Some(crate::config::scope_list(value, &reader.field("required_scopes"))?),
    };
    let scope_match = match reader.get("scope_match") {
        None => None,
        Some(value) => Some(ScopeMatch::parse(value, &reader.field("scope_match"))?),
    };
    let audiences = match reader.get("audiences") {
        None => None,
        Some(value) => {
            let field = reader.field("audiences");
            let audiences = string_list(value, &field)?;
            if audiences.is_empty() {
                return Err(error(&field, "must list at least one audience, or be left out"));
            }
            Some(audiences)
        }
    };
    let providers = match reader.get("providers") {
        None => None,
        Some(value) => {
            let field = reader.field("providers");
            let names = string_list(value, &field)?;
            if names.is_empty() {
                return Err(error(&field, "must name at least one provider, or be left out"));
            }
            let mut indexes = Vec::with_capacity(names.len());
            for name in &names {
                let index = provider_names.iter().position(|known| known == name).ok_or_else(|| {
                    error(&field, format!("no provider is named {name:?}; known: {}", provider_names.join(", ")))
                })?;
                indexes.push(index);
            }
            Some(indexes)
        }
    };
    Ok(RouteRequirements {
        required_scopes,
        scope_match,
        audiences,
        providers,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn joined_hosts_are_not_a_single_host() {
        assert!(is_single_host("api.example.com:8443"));
        assert!(is_single_host("[::1]:10000"));
        assert!(!is_single_host("evil.example,api.example.com"));
        assert!(!is_single_host("api.example.com extra"));
    }

    #[test]
    fn plain_host_forms_are_single_hosts() {
        for authority in ["", "localhost", "api.example.com", "api.example.com.", "api.example.com:", "api.example.com.:443", "[::1]", "[::1]:", "[fe80::1%25eth0]:80", "[::ffff:127.0.0.1]:1", "127.0.0.1:10000", "my_host.internal"] {
            assert!(is_single_host(authority), "{authority:?}");
        }
    }

    #[test]
    fn malformed_hosts_are_not_single_hosts() {
        for authority in ["api.example.com:abc", "api.example.com:123456", "api.example.com..", ".api.example.com", "api..example.com", ".", "a:1:2", "[::1", "[::1]x", "[::1]:x", "[admin.example.com]", "[]", "[::1%25]", "admin.example.com%2e"] {
            assert!(!is_single_host(authority), "{authority:?}");
        }
    }

    #[test]
    fn host_rules_ignore_trailing_dot_and_empty_port() {
        let rules = rules(json!([{"hosts": ["admin.example.com"], "skip": true}]));
        for authority in ["admin.example.com", "admin.example.com.", "ADMIN.example.com.:10000", "admin.example.com:"] {
            assert_eq!(action(&rules, "/v1/chat", "GET", authority), Some(&RouteAction::Skip), "{authority:?}");
        }
    }

    #[test]
    fn normalized_paths_are_accepted() {
        for path in ["/", "/v1/chat/completions", "/v1/models", "/files/a%20b", "/a/b.c/d..e", "/%E4%BD%A0"] {
            assert!(is_normalized_path(path), "{path}");
        }
    }

    #[test]
    fn unnormalized_paths_are_detected() {
        let paths = [
            "/healthz/../v1/chat",
            "/healthz/..",
            "/v1/./models",
            "//v1/models",
            "/v1//models",
            "/healthz/..%2fv1/chat",
            "/healthz%2F..%2Fv1/chat",
            "/healthz;/../v1/chat",
            "/healthz/..;/v1/chat",
            "/v1/models;x",
            "/v1/models;",
            "/v1/%6dodels",
            "/v1/%2e%2e/admin",
            "/v1\\models",
            "/v1/%5cmodels",
        ];
        for path in paths {
            assert!(!is_normalized_path(path), "{path}");
        }
    }

    use super::*;
    use serde_json::json;

    fn rules(value: Value) -> Vec<RouteRule> {
        parse_rules(&value, &["idaas", "other"], &mut Vec::new()).unwrap()
    }

    fn rule_error(value: Value) -> ConfigError {
        parse_rules(&value, &["idaas", "other"], &mut Vec::new()).unwrap_err()
    }

    fn action<'a>(rules: &'a [RouteRule], path: &str, method: &str, authority: &str) -> Option<&'a RouteAction> {
        select(rules, &RouteRequest::new(path, method, authority))
    }

    #[test]
    fn first_matching_rule_applies() {
        let rules = rules(json!([
            {"prefix": "/healthz", "skip": true},
            {"prefix": "/", "required_scopes": ["model.invoke"]},
        ]));
        assert_eq!(action(&rules, "/healthz", "GET", "gw"), Some(&RouteAction::Skip));
        assert!(matches!(action(&rules, "/v1/chat", "GET", "gw"), Some(RouteAction::Require(_))));
    }

    #[test]
    fn unmatched_request_has_no_rule() {
        let rules = rules(json!([{"path": "/healthz", "skip": true}]));
        assert_eq!(action(&rules, "/healthz/x", "GET", "gw"), None);
    }

    #[test]
    fn exact_path_ignores_query() {
        let rules = rules(json!([{"path": "/healthz", "skip": true}]));
        assert_eq!(action(&rules, "/healthz?verbose=1", "GET", "gw"), Some(&RouteAction::Skip));
    }

    #[test]
    fn regex_must_match_the_whole_path() {
        let rules = rules(json!([{"regex": "/v1/models/[a-z-]+", "skip": true}]));
        assert_eq!(action(&rules, "/v1/models/qwen-plus", "GET", "gw"), Some(&RouteAction::Skip));
        assert_eq!(action(&rules, "/x/v1/models/qwen-plus", "GET", "gw"), None);
        assert_eq!(action(&rules, "/v1/models/qwen-plus/extra", "GET", "gw"), None);
    }

    #[test]
    fn regex_alternation_matches_any_whole_branch() {
        let rules = rules(json!([
            {"regex": "/v1/(batches|batches/.*)", "skip": true},
            {"regex": "/v1/files|/v1/files/admin", "skip": true}
        ]));
        for path in ["/v1/batches", "/v1/batches/x", "/v1/files", "/v1/files/admin"] {
            assert_eq!(action(&rules, path, "GET", "gw"), Some(&RouteAction::Skip), "{path}");
        }
        assert_eq!(action(&rules, "/v1/files/other", "GET", "gw"), None);
    }

    #[test]
    fn verbose_regex_comment_is_rejected() {
        let error = rule_error(json!([{"regex": "(?x)/v1/files # admin files", "skip": true}]));
        assert!(error.message.contains("# comment"), "{}", error.message);
    }

    #[test]
    fn regex_flags_and_escaped_parens_are_accepted() {
        let rules = rules(json!([
            {"regex": "(?i)/v1/(?P<name>[a-z]+)", "skip": true},
            {"regex": "/v2/\\(?x", "skip": true},
            {"regex": "/v3/[(?x]", "skip": true},
            {"regex": "(?x) /v4 / models ", "skip": true}
        ]));
        for path in ["/V1/models", "/v2/(x", "/v2/x", "/v3/x", "/v4/models"] {
            assert_eq!(action(&rules, path, "GET", "gw"), Some(&RouteAction::Skip), "{path}");
        }
    }

    #[test]
    fn configured_pattern_is_shown_without_anchors() {
        let rules = rules(json!([{"regex": "/v1/files|/v1/files/admin", "skip": true}]));
        let regex = rules[0].matcher.regex.as_ref().unwrap();
        assert_eq!(configured_pattern(regex), "/v1/files|/v1/files/admin");
    }

    #[test]
    fn all_conditions_must_hold() {
        let rules = rules(json!([{"prefix": "/v1/models", "methods": ["get"], "hosts": ["*.example.com"], "skip": true}]));
        assert_eq!(action(&rules, "/v1/models", "GET", "api.example.com:8443"), Some(&RouteAction::Skip));
        assert_eq!(action(&rules, "/v1/models", "POST", "api.example.com"), None);
        assert_eq!(action(&rules, "/v1/models", "GET", "example.com"), None);
        assert_eq!(action(&rules, "/v1/chat", "GET", "api.example.com"), None);
    }

    #[test]
    fn host_patterns_match_exact_suffix_and_prefix() {
        assert!(HostPattern::new("API.example.com").matches("api.EXAMPLE.com"));
        assert!(HostPattern::new("*.example.com").matches("a.b.example.com"));
        assert!(!HostPattern::new("*.example.com").matches("example.com"));
        assert!(HostPattern::new("api.*").matches("api.internal"));
        assert!(HostPattern::new("*").matches("anything"));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("gw.example.com:10000"), "gw.example.com");
        assert_eq!(strip_port("gw.example.com"), "gw.example.com");
        assert_eq!(strip_port("[::1]:10000"), "[::1]");
    }

    #[test]
    fn requirements_resolve_provider_names() {
        let rules = rules(json!([{"prefix": "/", "providers": ["other"], "audiences": ["a"], "scope_match": "any"}]));
        let RouteAction::Require(requirements) = &rules[0].action else { panic!() };
        assert_eq!(requirements.providers, Some(vec![1]));
        assert_eq!(requirements.audiences, Some(vec!["a".to_owned()]));
        assert_eq!(requirements.scope_match, Some(ScopeMatch::Any));
    }

    #[test]
    fn invalid_regex_names_rule_and_field() {
        let error = rule_error(json!([{"prefix": "/"}, {"prefix": "/"}, {"regex": "("}]));
        assert_eq!(error.field, "rules[2].regex");
        assert!(error.message.starts_with("invalid regex"));
    }

    #[test]
    fn unknown_provider_name_is_rejected() {
        assert_eq!(rule_error(json!([{"providers": ["nope"]}])).field, "rules[0].providers");
    }

    #[test]
    fn skip_with_requirements_is_rejected() {
        assert_eq!(rule_error(json!([{"skip": true, "required_scopes": ["a"]}])).field, "rules[0].skip");
    }

    #[test]
    fn relative_prefix_is_rejected() {
        assert_eq!(rule_error(json!([{"prefix": "v1"}])).field, "rules[0].prefix");
    }
}
