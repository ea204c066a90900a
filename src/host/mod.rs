//! The proxy-wasm host layer: the only code that imports `proxy_wasm`.
//!
//! It reads the plugin configuration, drives each remote key set's fetches from the root
//! context's tick, and adapts each request to `authenticator::authenticate`. Host calls go
//! through `proxy_wasm::hostcalls`, whose results are handled, rather than the SDK's context
//! helpers, which unwrap them: a panic would abort the VM and fail every request on the worker.

mod backend;
mod logger;
mod metrics;
mod request;
mod root;

use proxy_wasm::traits::RootContext;

proxy_wasm::main! {{
    logger::install();
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(root::FilterRoot::new())
    });
}}
