//! The AI Gateway / Higress plugin configuration: a global part plus `_rules_`, each selected by
//! route name, route-name prefix, domain or service and overriding the global fields it sets.
//!
//! Higress hands the plugin one JSON object: `{...global..., "_rules_": [{...rule...,
//! "_match_route_": [...]}, ...]}`. Each rule's configuration is the global object with the
//! rule's own members written over it (member by member, so a rule that sets only
//! `required_scopes` keeps the global providers). The first rule that matches applies; a
//! request that matches none uses the global configuration. Without global providers, such a
//! request passes untouched, as Higress does for a plugin enabled only on some routes.

use serde_json::{Map, Value};

use crate::config::{self, error, string_list, ConfigError, EnvLookup, FilterConfig, ParsedConfig};
use crate::jwks::SkippedKey;
use crate::route::{request_host, HostPattern};

/// The members Higress adds to select a rule.
const MATCH_ROUTE: &str = "_match_route_";
const MATCH_ROUTE_PREFIX: &str = "_match_route_prefix_";
const MATCH_DOMAIN: &str = "_match_domain_";
const MATCH_SERVICE: &str = "_match_service_";

/// When a `_rules_` entry applies.
#[derive(Debug, Clone, Default)]
pub struct RuleMatch {
    pub routes: Vec<String>,
    pub route_prefixes: Vec<String>,
    pub domains: Vec<HostPattern>,
    /// Service names (`qwen.dns`, `qwen.dns:443`) or full cluster names.
    pub services: Vec<String>,
}

/// Request properties used for rule selection. A property the host lacks is
/// `None`, which matches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestRoute<'a> {
    pub route_name: Option<&'a str>,
    pub cluster_name: Option<&'a str>,
    pub authority: &'a str,
}

impl RuleMatch {
    pub fn matches(&self, request: &RequestRoute<'_>) -> bool {
        let route = request.route_name.unwrap_or_default();
        let by_route = request.route_name.is_some()
            && (self.routes.iter().any(|name| name == route)
                || self.route_prefixes.iter().any(|prefix| route.starts_with(prefix.as_str())));
        let host = request_host(request.authority);
        let by_domain = !host.is_empty() && self.domains.iter().any(|domain| domain.matches(host));
        let by_service = request
            .cluster_name
            .is_some_and(|cluster| self.services.iter().any(|service| service_matches(service, cluster)));
        by_route || by_domain || by_service
    }
}

/// Matches a service entry against a cluster name. Higress names clusters
/// `outbound|<port>||<service>`; an entry may be the whole name, `<service>` or
/// `<service>:<port>`.
fn service_matches(entry: &str, cluster: &str) -> bool {
    if entry == cluster {
        return true;
    }
    let mut parts = cluster.split('|');
    let (Some(_direction), Some(port), Some(_subset), Some(service), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    entry == service || entry.strip_prefix(service).and_then(|rest| rest.strip_prefix(':')) == Some(port)
}

/// One `_rules_` entry, merged with the global part.
#[derive(Debug, Clone)]
pub struct PluginRule {
    pub matcher: RuleMatch,
    pub config: FilterConfig,
}

/// The whole plugin configuration.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The configuration for requests that match no rule; `None` lets them pass.
    pub global: Option<FilterConfig>,
    pub rules: Vec<PluginRule>,
}

impl PluginConfig {
    /// Returns the configuration that applies to a request and its index (0 for the global
    /// configuration, rule index + 1 for a rule), or `None` when none applies.
    pub fn select(&self, request: &RequestRoute<'_>) -> Option<(usize, &FilterConfig)> {
        match self.rules.iter().position(|rule| rule.matcher.matches(request)) {
            Some(index) => self.rules.get(index).map(|rule| (index + 1, &rule.config)),
            None => self.global.as_ref().map(|config| (0, config)),
        }
    }

    /// Returns the header names that any configuration sets from a verified token, each once.
    /// Requests lose incoming copies of all of them, whichever configuration applies, so a
    /// client cannot send one on a route whose configuration does not set it.
    pub fn protected_headers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.all().flat_map(|(_, config)| config.upstream.protected_headers()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Returns every configuration with its index, global first.
    pub fn all(&self) -> impl Iterator<Item = (usize, &FilterConfig)> {
        self.global
            .iter()
            .map(|config| (0, config))
            .chain(self.rules.iter().enumerate().map(|(index, rule)| (index + 1, &rule.config)))
    }

    /// Returns the configuration with index `index` (see `select`).
    pub fn get(&self, index: usize) -> Option<&FilterConfig> {
        match index {
            0 => self.global.as_ref(),
            _ => self.rules.get(index - 1).map(|rule| &rule.config),
        }
    }
}

/// A valid plugin configuration plus what the host should log about it.
#[derive(Debug, Clone)]
pub struct ParsedPluginConfig {
    pub config: PluginConfig,
    pub unknown_fields: Vec<String>,
    pub skipped_keys: Vec<(String, SkippedKey)>,
}

/// Parses the plugin configuration, with or without Higress `_rules_`. `env` resolves
/// `${NAME}` in `upstream_authorization`.
pub fn parse_plugin_config(bytes: &[u8], env: EnvLookup<'_>) -> Result<ParsedPluginConfig, ConfigError> {
    let mut root = config::parse_root(bytes)?;
    let rules_value = root.remove("_rules_");
    let mut unknown_fields = Vec::new();
    let mut skipped_keys = Vec::new();
    let mut collect = |parsed: ParsedConfig, prefix: &str| {
        unknown_fields.extend(parsed.unknown_fields.into_iter().map(|field| format!("{prefix}{field}")));
        skipped_keys.extend(parsed.skipped_keys.into_iter().map(|(field, key)| (format!("{prefix}{field}"), key)));
        parsed.config
    };

    let Some(rules_value) = rules_value else {
        let parsed = config::parse_filter_config(&root, env)?;
        return Ok(ParsedPluginConfig {
            config: PluginConfig {
                global: Some(collect(parsed, "")),
                rules: Vec::new(),
            },
            unknown_fields,
            skipped_keys,
        });
    };

    let Value::Array(entries) = rules_value else {
        return Err(error("_rules_", "must be an array of rule objects"));
    };
    let global = if root.contains_key("providers") {
        Some(collect(config::parse_filter_config(&root, env)?, ""))
    } else {
        None
    };

    let mut rules = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let prefix = format!("_rules_[{index}].");
        let Value::Object(entry) = entry else {
            return Err(error(&format!("_rules_[{index}]"), "must be an object"));
        };
        let (matcher, overrides) = split_rule(entry, &prefix)?;
        let mut merged = root.clone();
        merged.extend(overrides);
        let parsed = config::parse_filter_config(&merged, env).map_err(|config_error| ConfigError {
            field: format!("{prefix}{}", config_error.field),
            message: config_error.message,
        })?;
        rules.push(PluginRule {
            matcher,
            config: collect(parsed, &prefix),
        });
    }
    if global.is_none() && rules.is_empty() {
        return Err(error("providers", "at least one provider is required, globally or in a _rules_ entry"));
    }
    unknown_fields.sort();
    unknown_fields.dedup();
    Ok(ParsedPluginConfig {
        config: PluginConfig { global, rules },
        unknown_fields,
        skipped_keys,
    })
}

/// Separates a rule's `_match_*_` members from its configuration members.
fn split_rule(entry: &Map<String, Value>, prefix: &str) -> Result<(RuleMatch, Map<String, Value>), ConfigError> {
    let mut matcher = RuleMatch::default();
    let mut overrides = Map::new();
    for (name, value) in entry {
        let field = format!("{prefix}{name}");
        match name.as_str() {
            MATCH_ROUTE => matcher.routes = string_list(value, &field)?,
            MATCH_ROUTE_PREFIX => matcher.route_prefixes = string_list(value, &field)?,
            MATCH_DOMAIN => {
                matcher.domains = string_list(value, &field)?
                    .iter()
                    .map(|domain| HostPattern::new(request_host(domain)))
                    .collect();
            }
            MATCH_SERVICE => matcher.services = string_list(value, &field)?,
            _ => {
                overrides.insert(name.clone(), value.clone());
            }
        }
    }
    let selects_nothing = matcher.routes.is_empty()
        && matcher.route_prefixes.is_empty()
        && matcher.domains.is_empty()
        && matcher.services.is_empty();
    if selects_nothing {
        return Err(error(
            prefix.trim_end_matches('.'),
            "needs _match_route_, _match_route_prefix_, _match_domain_ or _match_service_",
        ));
    }
    Ok((matcher, overrides))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(name: &str) -> Value {
        json!({
            "name": name,
            "issuer": format!("https://{name}.example/oauth2"),
            "audiences": ["api://model-studio"],
            "remote_jwks": {"cluster": "outbound|443||idaas.dns", "uri": format!("https://{name}.example/jwks")},
        })
    }

    fn parse(value: Value) -> Result<ParsedPluginConfig, ConfigError> {
        parse_plugin_config(value.to_string().as_bytes(), &|_| None)
    }

    fn route(route_name: Option<&'static str>, cluster_name: Option<&'static str>, authority: &'static str) -> RequestRoute<'static> {
        RequestRoute { route_name, cluster_name, authority }
    }

    #[test]
    fn plain_config_has_only_a_global_part() {
        let parsed = parse(json!({"providers": [provider("idaas")]})).unwrap();
        assert!(parsed.config.global.is_some());
        assert!(parsed.config.rules.is_empty());
    }

    #[test]
    fn protected_headers_cover_every_configuration() {
        let parsed = parse(json!({
            "providers": [provider("idaas")],
            "claims_to_headers": [{"claim": "client_id", "header": "x-idaas-client-id"}],
            "_rules_": [
                {"_match_domain_": ["api.example.com"], "claims_to_headers": [], "forward_payload_header": "x-jwt-payload"},
                {"_match_route_": ["models"], "claims_to_headers": [{"claim": "sub", "header": "x-idaas-client-id"}]}
            ],
        }))
        .unwrap();
        assert_eq!(parsed.config.protected_headers(), vec!["x-idaas-client-id", "x-jwt-payload"]);
    }

    #[test]
    fn empty_config_is_rejected() {
        assert_eq!(parse(json!({})).unwrap_err().field, "providers");
        assert_eq!(parse(json!({"_rules_": []})).unwrap_err().field, "providers");
    }

    #[test]
    fn rule_overrides_only_the_fields_it_sets() {
        let parsed = parse(json!({
            "providers": [provider("idaas")],
            "required_scopes": ["model.invoke"],
            "clock_skew_seconds": 30,
            "_rules_": [{"_match_route_": ["models"], "required_scopes": ["model.list"]}],
        }))
        .unwrap();
        let rule = &parsed.config.rules[0].config;
        assert_eq!(rule.required_scopes, vec!["model.list".to_owned()]);
        assert_eq!(rule.clock_skew_seconds, 30);
        assert_eq!(rule.providers.len(), 1);
    }

    #[test]
    fn rules_are_selected_by_route_domain_and_service() {
        let parsed = parse(json!({
            "providers": [provider("idaas")],
            "_rules_": [
                {"_match_route_": ["chat"], "required_scopes": ["a"]},
                {"_match_route_prefix_": ["models-"], "required_scopes": ["b"]},
                {"_match_domain_": ["*.example.com"], "required_scopes": ["c"]},
                {"_match_service_": ["qwen.dns"], "required_scopes": ["d"]},
            ],
        }))
        .unwrap();
        let config = &parsed.config;
        let index = |request: RequestRoute<'_>| config.select(&request).map(|(index, _)| index);
        assert_eq!(index(route(Some("chat"), None, "gw")), Some(1));
        assert_eq!(index(route(Some("models-v1"), None, "gw")), Some(2));
        assert_eq!(index(route(None, None, "api.example.com:8443")), Some(3));
        assert_eq!(index(route(None, Some("outbound|443||qwen.dns"), "gw")), Some(4));
        assert_eq!(index(route(Some("other"), Some("outbound|443||other.dns"), "gw")), Some(0));
    }

    #[test]
    fn missing_properties_match_no_rule() {
        let parsed = parse(json!({"providers": [provider("idaas")], "_rules_": [{"_match_route_": ["chat"]}]})).unwrap();
        assert_eq!(parsed.config.select(&route(None, None, "")).map(|(index, _)| index), Some(0));
    }

    #[test]
    fn without_global_providers_unmatched_requests_get_no_config() {
        let parsed = parse(json!({"_rules_": [{"_match_route_": ["chat"], "providers": [provider("idaas")]}]})).unwrap();
        assert!(parsed.config.global.is_none());
        assert!(parsed.config.select(&route(Some("other"), None, "gw")).is_none());
        assert!(parsed.config.select(&route(Some("chat"), None, "gw")).is_some());
    }

    #[test]
    fn rule_error_names_the_rule() {
        let error = parse(json!({
            "providers": [provider("idaas")],
            "_rules_": [{"_match_route_": ["chat"]}, {"_match_route_": ["x"], "rules": [{"regex": "("}]}],
        }))
        .unwrap_err();
        assert_eq!(error.field, "_rules_[1].rules[0].regex");
    }

    #[test]
    fn rule_without_match_is_rejected() {
        let error = parse(json!({"providers": [provider("idaas")], "_rules_": [{"required_scopes": ["a"]}]})).unwrap_err();
        assert_eq!(error.field, "_rules_[0]");
    }

    #[test]
    fn service_entry_forms_match_higress_cluster_names() {
        assert!(service_matches("qwen.dns", "outbound|443||qwen.dns"));
        assert!(service_matches("qwen.dns:443", "outbound|443||qwen.dns"));
        assert!(!service_matches("qwen.dns:80", "outbound|443||qwen.dns"));
        assert!(service_matches("outbound|443||qwen.dns", "outbound|443||qwen.dns"));
        assert!(!service_matches("qwen.dns", "qwen"));
    }
}
