//! Metrics through the proxy's stats (`proxy_define_metric`). Each name is defined once per VM
//! and its id kept; the proxy aggregates the same name across workers.

use std::cell::RefCell;
use std::collections::HashMap;

use log::warn;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

thread_local! {
    static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Adds `delta` to the counter `name`.
pub fn increment(name: &str, delta: i64) {
    if let Some(id) = metric_id(name, MetricType::Counter) {
        let _ = hostcalls::increment_metric(id, delta);
    }
}

/// Sets the gauge `name` to `value`.
pub fn set_gauge(name: &str, value: u64) {
    if let Some(id) = metric_id(name, MetricType::Gauge) {
        let _ = hostcalls::record_metric(id, value);
    }
}

fn metric_id(name: &str, metric_type: MetricType) -> Option<u32> {
    METRIC_IDS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        match hostcalls::define_metric(metric_type, name) {
            Ok(id) => {
                ids.insert(name.to_owned(), id);
                Some(id)
            }
            Err(status) => {
                warn!("could not define metric {name} ({status:?})");
                None
            }
        }
    })
}

/// Request counts not yet added to the proxy's counters. Requests only bump these; `flush`
/// adds them on the root context's tick, so a request makes no metric host call.
#[derive(Default)]
struct PendingCounts {
    /// By provider name.
    allowed: HashMap<String, i64>,
    /// By reason code, then provider name.
    denied: HashMap<&'static str, HashMap<String, i64>>,
}

thread_local! {
    static PENDING: RefCell<PendingCounts> = RefCell::new(PendingCounts::default());
}

/// Counts an admitted request of `provider`.
pub fn count_allowed(provider: &str) {
    PENDING.with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            bump(&mut pending.allowed, provider);
        }
    });
}

/// Counts a rejected request by reason code and provider.
pub fn count_denied(reason_code: &'static str, provider: &str) {
    PENDING.with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            bump(pending.denied.entry(reason_code).or_default(), provider);
        }
    });
}

fn bump(counts: &mut HashMap<String, i64>, key: &str) {
    match counts.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}

/// Adds the pending request counts to the proxy's counters.
pub fn flush() {
    let mut updates: Vec<(String, i64)> = Vec::new();
    PENDING.with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            for (provider, count) in pending.allowed.iter_mut().filter(|(_, count)| **count > 0) {
                updates.push((crate::stats::allowed(provider), *count));
                *count = 0;
            }
            for (reason, by_provider) in pending.denied.iter_mut() {
                for (provider, count) in by_provider.iter_mut().filter(|(_, count)| **count > 0) {
                    updates.push((crate::stats::denied(reason, provider), *count));
                    *count = 0;
                }
            }
        }
    });
    for (name, count) in updates {
        increment(&name, count);
    }
}
