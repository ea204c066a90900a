//! `check-config`: validates a plugin configuration with the filter's own parser and prints
//! the error with its field path, or a summary of what the filter will enforce.

use std::process::ExitCode;

use idaas_jwt_filter::algorithm::Algorithm;
use idaas_jwt_filter::config::{FilterConfig, JwksSource, Provider, RemoteJwks, ScopeMatch};
use idaas_jwt_filter::higress::{self, PluginConfig};
use idaas_jwt_filter::route::{RouteAction, RouteRequirements, RouteRule};

use crate::args::CheckConfigOptions;
use crate::output::{self, describe_key_set, describe_route_match, describe_rule_match, list};
use crate::Failure;

/// Largest configuration read; Envoy passes the configuration in memory, so this only guards
/// against reading a wrong, huge file.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Runs `check-config` and returns exit status 0 for a valid configuration, 1 for an invalid
/// one.
pub fn run(options: &CheckConfigOptions) -> Result<ExitCode, Failure> {
    let bytes = output::read_input(&options.config, MAX_CONFIG_BYTES, "configuration")?;
    let parsed = match higress::parse_plugin_config(&bytes, &|name| std::env::var(name).ok()) {
        Ok(parsed) => parsed,
        Err(error) => {
            let field = if error.field.is_empty() { "(whole document)" } else { error.field.as_str() };
            outln!("error: {field}: {}", error.message);
            outln!("{} is invalid; the filter rejects it at configure time.", options.config);
            outln!("The filter reports the first error only: fix it and run check-config again.");
            return Ok(ExitCode::FAILURE);
        }
    };

    for field in &parsed.unknown_fields {
        outln!("warning: {field}: unknown field, ignored (the filter logs it at warn)");
    }
    for (field, key) in &parsed.skipped_keys {
        outln!("warning: {field}: {key}; the filter skips this key");
    }
    outln!("{} is valid.", options.config);
    print_plugin(&parsed.config);
    Ok(ExitCode::SUCCESS)
}

fn print_plugin(plugin: &PluginConfig) {
    match &plugin.global {
        Some(config) => {
            outln!();
            if plugin.rules.is_empty() {
                outln!("configuration (every request)");
            } else {
                outln!("global configuration (requests that match no _rules_ entry)");
            }
            print_filter_config(config);
        }
        None => {
            outln!();
            outln!("no global providers: requests that match no _rules_ entry pass without a token check");
        }
    }
    for (index, rule) in plugin.rules.iter().enumerate() {
        outln!();
        outln!("_rules_[{index}]: when {}", describe_rule_match(&rule.matcher));
        print_filter_config(&rule.config);
    }
}

fn print_filter_config(config: &FilterConfig) {
    outln!("  providers");
    for provider in &config.providers {
        print_provider(provider);
    }
    let scopes = if config.required_scopes.is_empty() {
        "none (any non-empty scope is accepted)".to_owned()
    } else {
        format!("{} ({})", list(&config.required_scopes), scope_match_text(config.scope_match))
    };
    outln!("  required_scopes     {scopes}");
    outln!("  scope_claims        {}", list(&config.scope_claims));
    outln!("  clock_skew_seconds  {}", config.clock_skew_seconds);
    let cors = if config.bypass_cors_preflight {
        "pass without a token (bypass_cors_preflight is true)"
    } else {
        "need a token (bypass_cors_preflight is false)"
    };
    outln!("  CORS preflights     {cors}");
    print_rules(config);
    print_upstream(config);
}

fn print_provider(provider: &Provider) {
    outln!("    {}", provider.name);
    outln!("      issuer          {}", provider.issuer);
    outln!("      audiences       {}", list(&provider.audiences));
    match &provider.jwks {
        JwksSource::Local(key_set) => outln!("      keys            local_jwks, {}", describe_key_set(key_set)),
        JwksSource::Remote(remote) => print_remote(remote),
    }
    let algorithms = if provider.allowed_algorithms == Algorithm::ALL {
        "all supported".to_owned()
    } else {
        let names: Vec<&str> = provider.allowed_algorithms.iter().map(|alg| alg.name()).collect();
        list(&names)
    };
    outln!("      algorithms      {algorithms}");
    if let Some(typ) = &provider.require_typ {
        outln!("      require_typ     {typ}");
    }
    if let Some(seconds) = provider.max_token_lifetime_seconds {
        outln!("      max lifetime    {seconds} s (exp - iat; tokens need iat)");
    }
    if let Some(subjects) = &provider.subjects {
        outln!("      subjects        {}", list(subjects));
    }
    if let Some(client_ids) = &provider.client_ids {
        outln!("      client_ids      {}", list(client_ids));
    }
}

fn print_remote(remote: &RemoteJwks) {
    let kind = if remote.discovery { "discovery" } else { "remote_jwks" };
    outln!("      keys            {kind} {} through cluster {}", remote.uri, remote.cluster);
    outln!(
        "                      timeout {} ms, cache {} s, max stale {} s, kid refetch interval {} s, startup wait {} ms",
        remote.timeout_ms,
        remote.cache_duration_seconds,
        remote.max_stale_seconds,
        remote.kid_refetch_min_interval_seconds,
        remote.startup_wait_ms
    );
    if let Some(bootstrap) = &remote.bootstrap {
        outln!("      bootstrap keys  local_jwks, {} (used until the first fetch succeeds)", describe_key_set(bootstrap));
    }
}

fn print_rules(config: &FilterConfig) {
    if config.rules.is_empty() {
        outln!("  rules               none: every request needs a token that meets the settings above");
        return;
    }
    outln!("  rules (the first match applies; other requests use the settings above)");
    for (index, rule) in config.rules.iter().enumerate() {
        outln!("    rules[{index}]  {} -> {}", describe_route_match(&rule.matcher), describe_action(config, rule));
    }
}

fn describe_action(config: &FilterConfig, rule: &RouteRule) -> String {
    let requirements: &RouteRequirements = match &rule.action {
        RouteAction::Skip => return "skip validation (no token needed)".to_owned(),
        RouteAction::Require(requirements) => requirements,
    };
    let mut parts = Vec::new();
    if let Some(scopes) = &requirements.required_scopes {
        let scope_match = requirements.scope_match.unwrap_or(config.scope_match);
        parts.push(format!("required_scopes {} ({})", list(scopes), scope_match_text(scope_match)));
    } else if let Some(scope_match) = requirements.scope_match {
        parts.push(format!("scope_match {}", scope_match_text(scope_match)));
    }
    if let Some(audiences) = &requirements.audiences {
        parts.push(format!("audiences {}", list(audiences)));
    }
    if let Some(indexes) = &requirements.providers {
        let names: Vec<&str> = indexes
            .iter()
            .filter_map(|index| config.providers.get(*index))
            .map(|provider| provider.name.as_str())
            .collect();
        parts.push(format!("providers {}", list(&names)));
    }
    if parts.is_empty() {
        return "the settings above".to_owned();
    }
    parts.join("; ")
}

fn print_upstream(config: &FilterConfig) {
    let settings = &config.upstream;
    let authorization = if settings.authorization.is_some() {
        "replaced by upstream_authorization (value not shown)"
    } else if config.keep_token {
        "passed on (keep_token is true)"
    } else {
        "removed (keep_token is false)"
    };
    outln!("  upstream");
    outln!("    Authorization     {authorization}");
    for entry in &settings.claims_to_headers {
        outln!("    claim header      {} <- claim {}", entry.header, entry.claim);
    }
    if let Some(header) = &settings.forward_payload_header {
        outln!("    payload header    {header} <- the verified payload, base64url");
    }
}

fn scope_match_text(scope_match: ScopeMatch) -> &'static str {
    match scope_match {
        ScopeMatch::All => "all of them",
        ScopeMatch::Any => "any one of them",
    }
}
