//! `explain`: places one request as the filter does (Higress `_rules_`, CORS preflight, route
//! rules), replays the checks step by step, and reports the verdict of
//! `authenticator::authenticate_with` with the response `response::deny_response` builds.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use idaas_jwt_filter::authenticator::{self, Denial, RequestAuth, Requirements, Verdict, Verified};
use idaas_jwt_filter::config::FilterConfig;
use idaas_jwt_filter::higress::{self, PluginConfig, RequestRoute};
use idaas_jwt_filter::reason::{Reason, Rejection};
use idaas_jwt_filter::response;
use idaas_jwt_filter::route::{self, RouteAction, RouteRequest};
use idaas_jwt_filter::upstream;

use crate::args::ExplainOptions;
use crate::keys::{self, ToolKeys};
use crate::output::{self, describe_route_match, describe_rule_match, indented_json};
use crate::replay::{self, Replay};
use crate::Failure;

/// Largest TOKEN input read from standard input. The filter itself rejects tokens over
/// 8 KiB; larger input is still passed on, so that the verdict shows that rejection.
const MAX_TOKEN_INPUT_BYTES: u64 = 1024 * 1024;
/// Largest configuration read by `explain`.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Runs `explain` and returns exit status 0 when the filter lets the request through, 1 when
/// it rejects it.
pub fn run(options: &ExplainOptions) -> Result<ExitCode, Failure> {
    if options.config == "-" && options.token == "-" {
        return Err(Failure::Usage("--config - and TOKEN - cannot both read standard input".to_owned()));
    }
    let bytes = output::read_input(&options.config, MAX_CONFIG_BYTES, "configuration")?;
    let parsed = higress::parse_plugin_config(&bytes, &|name| std::env::var(name).ok()).map_err(|error| {
        Failure::Input(format!(
            "the configuration in {} is invalid: {error} (run check-config for details)",
            options.config
        ))
    })?;
    for (field, key) in &parsed.skipped_keys {
        errln!("warning: {field}: {key}; the filter skips this key");
    }
    let override_keys = options.jwks.as_ref().map(keys::load_override).transpose()?;
    let authorization = authorization_values(options)?;
    let now_seconds = options.now_seconds.unwrap_or_else(system_now_seconds);

    print_request(options, now_seconds);
    let plugin = &parsed.config;
    let request_route = RequestRoute {
        route_name: options.route_name.as_deref(),
        cluster_name: options.cluster_name.as_deref(),
        authority: &options.host,
    };
    // As in the filter, before selection, so also without a global configuration.
    if !plugin.rules.is_empty() && !route::is_single_host(&options.host) {
        let rejection = Rejection::new(Reason::AuthorityInvalid, route::NOT_SINGLE_HOST_DETAIL);
        let denial = Denial::without_provider(rejection);
        print_reject(None, &denial, &options.host, &[]);
        return Ok(ExitCode::FAILURE);
    }
    let Some((config_index, config)) = plugin.select(&request_route) else {
        outln!("  configuration  none: no _rules_ entry matches and there are no global providers");
        return Ok(print_pass("no configuration applies, so the filter lets the request through untouched"));
    };
    outln!("  configuration  {}", describe_selection(plugin, config_index, &request_route));

    if config.bypass_cors_preflight && authorization.is_empty() && is_cors_preflight(options) {
        return Ok(print_pass(
            "a CORS preflight (OPTIONS with non-empty Origin and Access-Control-Request-Method, no Authorization) passes without a token; bypass_cors_preflight is true",
        ));
    }

    let route_request = RouteRequest::new(&options.path, &options.method, &options.host);
    if !config.rules.is_empty() {
        if let Err(rejection) = route::check_rule_input(route_request.path, &options.host) {
            let denial = Denial::without_provider(rejection);
            print_reject(Some(config), &denial, &options.host, &config.required_scopes);
            return Ok(ExitCode::FAILURE);
        }
    }
    let rule_index = config.rules.iter().position(|rule| rule.matcher.matches(&route_request));
    let rule = rule_index.and_then(|index| config.rules.get(index));
    let route_requirements = match (rule_index, rule) {
        (Some(index), Some(rule)) => {
            let conditions = describe_route_match(&rule.matcher);
            match &rule.action {
                RouteAction::Skip => {
                    outln!("  route rule     rules[{index}] ({conditions}) skips validation");
                    return Ok(print_pass("the route rule skips validation, so no token is needed"));
                }
                RouteAction::Require(requirements) => {
                    outln!("  route rule     rules[{index}] ({conditions}) sets the requirements");
                    Some(requirements)
                }
            }
        }
        _ => {
            outln!("  route rule     none matches; the top-level requirements apply");
            None
        }
    };
    let requirements = Requirements::for_route(config, route_requirements);

    let keys = ToolKeys::new(config, override_keys.as_ref());
    let values: Vec<&str> = authorization.iter().map(String::as_str).collect();
    let replay = replay::replay(config, &keys, &values, now_seconds, &requirements);
    print_token(&replay);
    print_steps(&replay);

    let request = RequestAuth {
        authorization: &values,
        now_seconds,
    };
    let verdict = authenticator::authenticate_with(config, &keys, request, &requirements);
    let denial = match verdict {
        Verdict::Allow(verified) => {
            warn_if_replay_differs(&replay, None);
            print_accept(config, &verified);
            return Ok(ExitCode::SUCCESS);
        }
        Verdict::Deny(denial) => denial,
        Verdict::WaitForKeys { provider_index, kid, .. } => denial_at_deadline(provider_index, kid),
    };
    warn_if_replay_differs(&replay, Some(denial.rejection.reason));
    print_reject(Some(config), &denial, &options.host, requirements.required_scopes);
    Ok(ExitCode::FAILURE)
}

/// Turns TOKEN and the `--header authorization:` options into `Authorization` values, in
/// order. An empty TOKEN contributes none.
fn authorization_values(options: &ExplainOptions) -> Result<Vec<String>, Failure> {
    let input = if options.token == "-" {
        let bytes = output::read_input("-", MAX_TOKEN_INPUT_BYTES, "token")?;
        String::from_utf8(bytes).map_err(|_| Failure::Input("the token on standard input is not UTF-8 text".to_owned()))?
    } else {
        options.token.clone()
    };
    let mut values: Vec<String> = authorization_header_value(&input).into_iter().collect();
    values.extend(
        options
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.clone()),
    );
    Ok(values)
}

/// Builds an `Authorization` value from a bare token, `Bearer <token>` (any scheme is kept,
/// so the filter can reject it) or a whole `Authorization: ...` header line.
fn authorization_header_value(input: &str) -> Option<String> {
    let text = input.trim();
    let text = match text.get(..14) {
        Some(prefix) if prefix.eq_ignore_ascii_case("authorization:") => text.get(14..).unwrap_or_default().trim_start(),
        _ => text,
    };
    if text.is_empty() {
        return None;
    }
    let has_scheme = text.contains([' ', '\t']) || text.eq_ignore_ascii_case("bearer");
    Some(if has_scheme { text.to_owned() } else { format!("Bearer {text}") })
}

fn system_now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// Returns whether the request is a CORS preflight, as the filter decides it: `OPTIONS`
/// (methods are case-sensitive) with a non-empty `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight(options: &ExplainOptions) -> bool {
    let has = |wanted: &str| {
        options
            .headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case(wanted) && !value.trim().is_empty())
    };
    options.method == "OPTIONS" && has("origin") && has("access-control-request-method")
}

/// Prints the request attributes the filter reads. `Authorization` values are not printed.
fn print_request(options: &ExplainOptions, now_seconds: i64) {
    outln!("request");
    outln!("  {} {}  host {}", options.method, options.path, options.host);
    if let Some(route_name) = &options.route_name {
        outln!("  route name     {route_name}");
    }
    if let Some(cluster_name) = &options.cluster_name {
        outln!("  cluster name   {cluster_name}");
    }
    for (name, value) in &options.headers {
        if !name.eq_ignore_ascii_case("authorization") {
            outln!("  header         {name}: {value}");
        }
    }
    outln!("  now            {now_seconds} ({})", output::utc_time(now_seconds));
}

/// Describes which part of the plugin configuration applies, and which condition selected it.
fn describe_selection(plugin: &PluginConfig, config_index: usize, request: &RequestRoute<'_>) -> String {
    let selected_rule = config_index
        .checked_sub(1)
        .and_then(|rule_index| plugin.rules.get(rule_index).map(|rule| (rule_index, rule)));
    let Some((rule_index, rule)) = selected_rule else {
        if plugin.rules.is_empty() {
            return "global (the configuration has no _rules_)".to_owned();
        }
        let mut hints = Vec::new();
        if request.route_name.is_none() {
            hints.push("; _match_route_ and _match_route_prefix_ need --route-name");
        }
        if request.cluster_name.is_none() {
            hints.push("; _match_service_ needs --cluster-name");
        }
        return format!("global (no _rules_ entry matches{})", hints.concat());
    };
    let by_route = RequestRoute {
        route_name: request.route_name,
        cluster_name: None,
        authority: "",
    };
    let by_domain = RequestRoute {
        route_name: None,
        cluster_name: None,
        authority: request.authority,
    };
    let by_service = RequestRoute {
        route_name: None,
        cluster_name: request.cluster_name,
        authority: "",
    };
    let mut reasons = Vec::new();
    if rule.matcher.matches(&by_route) {
        reasons.push("route name");
    }
    if rule.matcher.matches(&by_domain) {
        reasons.push("domain");
    }
    if rule.matcher.matches(&by_service) {
        reasons.push("service");
    }
    format!(
        "_rules_[{rule_index}] ({}), matched by {}",
        describe_rule_match(&rule.matcher),
        reasons.join(" and ")
    )
}

fn print_token(replay: &Replay) {
    let (Some(header), Some(claims)) = (&replay.header, &replay.claims) else {
        outln!("token");
        outln!("  not decoded (see the steps below)");
        return;
    };
    outln!("token header (not verified yet)");
    out!("{}", indented_json(header, "  "));
    outln!("token claims (not verified yet; the signature is not shown)");
    out!("{}", indented_json(claims, "  "));
}

fn print_steps(replay: &Replay) {
    outln!("steps");
    for step in &replay.steps {
        outln!("  {}  {:<10} {}", step.outcome.label(), step.name, step.detail);
    }
}

/// Builds the denial the filter sends for a request still held when its wait ends. The tool's
/// key store never requests a wait, so this branch only keeps the tool complete.
fn denial_at_deadline(provider_index: usize, kid: Option<String>) -> Denial {
    let (rejection, retry_after_seconds) = match kid {
        Some(kid) => (
            Rejection::new(Reason::KeyNotFound, format!("kid {kid:?} unknown; no refetch brought it in time")),
            None,
        ),
        None => (Rejection::new(Reason::JwksUnavailable, "no key set arrived in time"), Some(1)),
    };
    Denial {
        rejection,
        provider_index: Some(provider_index),
        retry_after_seconds,
    }
}

/// Warns when the step replay stopped for another reason than the verdict, which would mean
/// the replay no longer follows `authenticate_with`.
fn warn_if_replay_differs(replay: &Replay, verdict_reason: Option<Reason>) {
    let replay_reason = replay.failure.as_ref().map(|rejection| rejection.reason);
    if replay_reason != verdict_reason {
        let name = |reason: Option<Reason>| reason.map_or("accept", Reason::code);
        errln!(
            "warning: the step replay ends in {} but the filter's verdict is {}; the verdict is what the filter does",
            name(replay_reason),
            name(verdict_reason)
        );
    }
}

fn print_pass(explanation: &str) -> ExitCode {
    outln!("verdict: pass");
    outln!("  {explanation}");
    ExitCode::SUCCESS
}

/// Prints an accepted token's verdict and what the admitted request carries upstream.
fn print_accept(config: &FilterConfig, verified: &Verified) {
    outln!("verdict: accept");
    let provider = config
        .providers
        .get(verified.provider_index)
        .map_or("-", |provider| provider.name.as_str());
    outln!("  provider       {provider}");
    let settings = &config.upstream;
    let authorization = if settings.authorization.is_some() {
        "replaced by upstream_authorization (value not shown)"
    } else if config.keep_token {
        "passed on unchanged (keep_token is true)"
    } else {
        "removed (keep_token is false)"
    };
    outln!("  authorization  {authorization}");
    for entry in &settings.claims_to_headers {
        match verified.claims.get(&entry.claim).and_then(upstream::claim_header_value) {
            Some(value) => outln!("  header         {}: {value} (from claim {})", entry.header, entry.claim),
            None => outln!(
                "  header         {} not set: claim {} is missing or not a string, number, boolean or string array",
                entry.header, entry.claim
            ),
        }
    }
    if let Some(header) = &settings.forward_payload_header {
        outln!("  header         {header}: the token's payload, base64url as in the token");
    }
}

/// Prints a rejection as the client and the filter's debug log see it.
fn print_reject(config: Option<&FilterConfig>, denial: &Denial, host: &str, required_scopes: &[String]) {
    let reply = response::deny_response(denial, host, required_scopes);
    outln!("verdict: reject");
    outln!("  reason            {}", denial.rejection.reason.code());
    outln!("  status            {}", reply.status);
    for (name, value) in &reply.headers {
        outln!("  {name:<17} {value}");
    }
    outln!("  body              {}", reply.body);
    let provider = denial
        .provider_index
        .and_then(|index| config?.providers.get(index))
        .map_or("-", |provider| provider.name.as_str());
    outln!("  provider          {provider}");
    outln!("  detail            {}", denial.rejection.detail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_token_gets_bearer_scheme() {
        assert_eq!(authorization_header_value("a.b.c\n"), Some("Bearer a.b.c".to_owned()));
    }

    #[test]
    fn header_forms_are_kept() {
        assert_eq!(authorization_header_value("bearer a.b.c"), Some("bearer a.b.c".to_owned()));
        assert_eq!(authorization_header_value("Authorization: Bearer a.b.c"), Some("Bearer a.b.c".to_owned()));
        assert_eq!(authorization_header_value("Basic dXNlcg=="), Some("Basic dXNlcg==".to_owned()));
        assert_eq!(authorization_header_value("Bearer"), Some("Bearer".to_owned()));
    }

    #[test]
    fn empty_input_is_no_header() {
        assert_eq!(authorization_header_value(" \n"), None);
        assert_eq!(authorization_header_value("Authorization:"), None);
    }
}
