//! Text helpers shared by the commands: dates, indented JSON and short descriptions of keys.

use std::io::Read as _;

use idaas_jwt_filter::higress::RuleMatch;
use idaas_jwt_filter::jwks::{Jwk, KeyMaterial, KeySet};
use idaas_jwt_filter::route::RouteMatch;
use serde_json::{Map, Value};

use crate::Failure;

/// Exit status when standard output was closed early, as a shell reports a process that
/// SIGPIPE ended (128 + 13).
const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes formatted text to standard output. A closed pipe ends the process quietly with
/// `EXIT_BROKEN_PIPE`. Any other write error, such as a full disk, is reported on standard
/// error and ends the process with `EXIT_USAGE`, the status for input and output failures.
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(error) = std::io::stdout().lock().write_fmt(text) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        write_stderr(format_args!("idaas-jwt-filter: cannot write to standard output: {error}\n"));
        std::process::exit(i32::from(crate::native::EXIT_USAGE));
    }
}

/// Writes formatted text to standard error and ignores a failed write, because no place is left
/// to report it.
pub fn write_stderr(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// Reads a file, or standard input for `-`, failing when it is over `max_bytes`. `content`
/// names what is read, for the error message.
pub fn read_input(path: &str, max_bytes: u64, content: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let result = if path == "-" {
        std::io::stdin().lock().take(max_bytes.saturating_add(1)).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes))
    };
    let source = if path == "-" { "standard input".to_owned() } else { path.to_owned() };
    result.map_err(|error| Failure::Input(format!("cannot read the {content} from {source}: {error}")))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(Failure::Input(format!("the {content} in {source} is over the {max_bytes}-byte limit")));
    }
    Ok(bytes)
}

/// Describes the conditions of a route rule, such as `prefix /v1, methods GET`.
pub fn describe_route_match(matcher: &RouteMatch) -> String {
    let mut parts = Vec::new();
    if let Some(prefix) = &matcher.prefix {
        parts.push(format!("prefix {prefix}"));
    }
    if let Some(path) = &matcher.path {
        parts.push(format!("path {path}"));
    }
    if let Some(regex) = &matcher.regex {
        parts.push(format!("regex {}", idaas_jwt_filter::route::configured_pattern(regex)));
    }
    if !matcher.methods.is_empty() {
        parts.push(format!("methods {}", matcher.methods.join(" ")));
    }
    if !matcher.hosts.is_empty() {
        let hosts: Vec<&str> = matcher.hosts.iter().map(|host| host.0.as_str()).collect();
        parts.push(format!("hosts {}", hosts.join(" ")));
    }
    if parts.is_empty() {
        return "every request".to_owned();
    }
    parts.join(", ")
}

/// Describes when a Higress `_rules_` entry applies, such as `route name chat or domain
/// *.example.com`.
pub fn describe_rule_match(matcher: &RuleMatch) -> String {
    let mut parts = Vec::new();
    if !matcher.routes.is_empty() {
        parts.push(format!("route name {}", matcher.routes.join(" or ")));
    }
    if !matcher.route_prefixes.is_empty() {
        parts.push(format!("route name starting with {}", matcher.route_prefixes.join(" or ")));
    }
    if !matcher.domains.is_empty() {
        let domains: Vec<&str> = matcher.domains.iter().map(|domain| domain.0.as_str()).collect();
        parts.push(format!("domain {}", domains.join(" or ")));
    }
    if !matcher.services.is_empty() {
        parts.push(format!("service {}", matcher.services.join(" or ")));
    }
    parts.join("; or ")
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC time, such as
/// `2026-01-01T00:00:00Z`.
pub fn utc_time(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), counting in
/// 400-year eras that start on March 1 so that leap days fall at the end of each year.
fn civil_date(days_since_epoch: i64) -> (i64, i64, i64) {
    let days = days_since_epoch + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Describes `time` relative to `now`, such as `1767225600 (2026-01-01T00:00:00Z, 30 s ago)`.
pub fn relative_time(time: i64, now: i64) -> String {
    let distance = match time.saturating_sub(now) {
        0 => "now".to_owned(),
        ahead if ahead > 0 => format!("in {ahead} s"),
        behind => format!("{} s ago", behind.saturating_neg()),
    };
    format!("{time} ({}, {distance})", utc_time(time))
}

/// Pretty-prints a JSON object with every line indented by `indent`.
pub fn indented_json(object: &Map<String, Value>, indent: &str) -> String {
    let text = serde_json::to_string_pretty(object).unwrap_or_else(|_| "{}".to_owned());
    text.lines().map(|line| format!("{indent}{line}\n")).collect()
}

/// Joins strings with `, `, or returns `none` for an empty list.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

/// Describes one key, such as `kid "idp-rs256-1" RSA 2048-bit, alg RS256`.
pub fn describe_key(key: &Jwk) -> String {
    let kid = key.kid.as_deref().map_or("no kid".to_owned(), |kid| format!("kid {kid:?}"));
    let kind = match &key.material {
        KeyMaterial::Rsa { n, .. } => format!("RSA {}-bit", n.len() * 8),
        KeyMaterial::EcP256 { .. } => "EC P-256".to_owned(),
        KeyMaterial::EcP384 { .. } => "EC P-384".to_owned(),
        KeyMaterial::Ed25519 { .. } => "Ed25519".to_owned(),
    };
    match key.alg {
        Some(alg) => format!("{kid} {kind}, alg {alg}"),
        None => format!("{kid} {kind}"),
    }
}

/// Describes every key of a set on one line.
pub fn describe_key_set(key_set: &KeySet) -> String {
    let keys: Vec<String> = key_set.keys.iter().map(describe_key).collect();
    format!("{} key(s): {}", keys.len(), keys.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_formats_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_time(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn relative_time_says_ago_and_in() {
        assert!(relative_time(100, 130).ends_with("30 s ago)"));
        assert!(relative_time(130, 100).ends_with("in 30 s)"));
    }
}
