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
