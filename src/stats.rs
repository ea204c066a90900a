//! Names of the filter's metrics. Every name starts with `idaas_jwt_filter.` and puts each
//! label after its own marker word (`reason.<code>`, `provider.<name>`), so Envoy's tag
//! extraction can turn them into labels with one regex per label.

/// The common prefix of every metric name.
pub const PREFIX: &str = "idaas_jwt_filter";

/// Provider name used in metric names when a request named no configured provider.
pub const NO_PROVIDER: &str = "none";

/// Counter: requests admitted with a token from `provider`.
pub fn allowed(provider: &str) -> String {
    format!("{PREFIX}.allowed.provider.{}", label(provider))
}

/// Counter: requests rejected for `reason` (a reason code).
pub fn denied(reason: &str, provider: &str) -> String {
    format!("{PREFIX}.denied.reason.{}.provider.{}", label(reason), label(provider))
}

/// Counter or gauge named `event` (for example `jwks_fetch_success` or `jwks_keys`) for one
/// provider's key set.
pub fn per_provider(event: &str, provider: &str) -> String {
    format!("{PREFIX}.{event}.provider.{}", label(provider))
}

/// Counter named `event` for the whole filter (for example `jwt_cache_hit`).
pub fn global(event: &str) -> String {
    format!("{PREFIX}.{event}")
}

/// Replaces every character other than ASCII letters, digits, `_` and `-` with `_`, so a
/// provider name cannot add segments to a metric name.
pub fn label(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_labels_after_marker_words() {
        assert_eq!(allowed("idaas"), "idaas_jwt_filter.allowed.provider.idaas");
        assert_eq!(
            denied("token_expired", "idaas"),
            "idaas_jwt_filter.denied.reason.token_expired.provider.idaas"
        );
        assert_eq!(per_provider("jwks_keys", "idaas"), "idaas_jwt_filter.jwks_keys.provider.idaas");
        assert_eq!(global("jwt_cache_hit"), "idaas_jwt_filter.jwt_cache_hit");
    }

    #[test]
    fn provider_names_cannot_add_segments() {
        assert_eq!(label("idaas.prod cn"), "idaas_prod_cn");
        assert_eq!(label(""), "_");
    }
}
