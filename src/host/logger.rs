//! A `log` backend that writes to the proxy's log. Unlike the SDK's logger it ignores a
//! failed host call instead of panicking, and it takes its level from the host once, so
//! per-request `debug!` lines cost nothing when the proxy logs at `info`.

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

/// Installs the logger at level `info`. It makes no host call: the proxy rejects host calls
/// made while the module initializes (Envoy fails `_initialize` with `restricted_callback`).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Sets the level from the host's log level for this plugin (called at VM start and configure).
pub fn refresh_level() {
    let filter = match hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) | Err(_) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) => log::LevelFilter::Error,
        Ok(LogLevel::Critical) => log::LevelFilter::Error,
    };
    log::set_max_level(filter);
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        // Nothing useful can be done if the host rejects a log line.
        let _ = hostcalls::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}
