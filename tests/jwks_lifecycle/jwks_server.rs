//! HTTP/1.1 servers on 127.0.0.1 that the tests own: a JWKS endpoint whose behaviour a test
//! switches at run time (keys, `Cache-Control`, latency, faults, stopped) and that counts the
//! fetches it receives, and a plain upstream that returns 200 for every request.
//!
//! Each server is a listener thread plus one thread per connection. Requests are read up to the
//! end of their head and never have a body (Envoy's JWKS fetches and the proxied test requests
//! are all GET).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::tokens::read_fixture;

/// Path of the key set on a `JwksServer`.
pub const JWKS_PATH: &str = "/jwks";
/// Path of the OpenID discovery document on a `JwksServer`.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Size of the body that `Fault::HugeBody` sends: 10 MiB, 40 times the filter's 256 KiB limit.
pub const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;

const ACCEPT_POLL_INTERVAL_MS: u64 = 5;
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
const IDLE_CONNECTION_TIMEOUT_SECONDS: u64 = 10;
/// Maximum time a `Fault::Hang` response is held back before the connection is closed unanswered.
const MAX_HANG_SECONDS: u64 = 10;
const HANG_POLL_INTERVAL_MS: u64 = 20;

/// What a handler does with one request.
pub enum Response {
    Send {
        status: u16,
        content_type: &'static str,
        extra_headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without a response.
    Close,
    /// Send the head with the Content-Length of all of `body`, then only its first `sent`
    /// bytes, then close the connection: a response cut off after its headers.
    CutOff { body: Vec<u8>, sent: usize },
}

type Handler = dyn Fn(&str) -> Response + Send + Sync;

/// A listener thread that serves `handler` until the server is dropped. While `stopped` is set,
/// the listening socket is closed, so connections are refused.
struct HttpServer {
    port: u16,
    stopped: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
}

impl HttpServer {
    fn start(name: &str, keep_alive: bool, handler: Arc<Handler>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("{name}: cannot bind 127.0.0.1:0: {error}"));
        let address = listener.local_addr().unwrap_or_else(|error| panic!("{name}: no local address: {error}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|error| panic!("{name}: cannot make the listener non-blocking: {error}"));
        let stopped = Arc::new(AtomicBool::new(false));
        let shutdown = Arc::new(AtomicBool::new(false));

        let loop_stopped = Arc::clone(&stopped);
        let loop_shutdown = Arc::clone(&shutdown);
        thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(address, listener, keep_alive, handler, &loop_stopped, &loop_shutdown))
            .unwrap_or_else(|error| panic!("{name}: cannot start the accept thread: {error}"));

        HttpServer { port: address.port(), stopped, shutdown }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// Accepts connections and hands each to its own thread. A stop drops the listening socket;
/// a restart binds the same port again (std sets SO_REUSEADDR on Unix, so TIME_WAIT
/// connections do not block it).
fn accept_loop(
    address: SocketAddr,
    listener: TcpListener,
    keep_alive: bool,
    handler: Arc<Handler>,
    stopped: &AtomicBool,
    shutdown: &AtomicBool,
) {
    let mut listener = Some(listener);
    while !shutdown.load(Ordering::SeqCst) {
        if stopped.load(Ordering::SeqCst) {
            listener = None;
            thread::sleep(Duration::from_millis(ACCEPT_POLL_INTERVAL_MS));
            continue;
        }
        let Some(active) = listener.as_ref() else {
            listener = TcpListener::bind(address).ok();
            if let Some(rebound) = &listener {
                let _ = rebound.set_nonblocking(true);
            } else {
                thread::sleep(Duration::from_millis(ACCEPT_POLL_INTERVAL_MS));
            }
            continue;
        };
        match active.accept() {
            Ok((stream, _)) => {
                let handler = Arc::clone(&handler);
                let _ = thread::Builder::new()
                    .name("test-http-connection".to_string())
                    .spawn(move || serve_connection(stream, keep_alive, handler.as_ref()));
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(ACCEPT_POLL_INTERVAL_MS));
            }
            Err(_) => thread::sleep(Duration::from_millis(ACCEPT_POLL_INTERVAL_MS)),
        }
    }
}

/// Reads request heads from `stream` and responds to each; with `keep_alive` false, only the first.
fn serve_connection(mut stream: TcpStream, keep_alive: bool, handler: &Handler) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(IDLE_CONNECTION_TIMEOUT_SECONDS)));
    let mut pending = Vec::new();
    loop {
        let Some(path) = read_request_path(&mut stream, &mut pending) else {
            return;
        };
        match handler(&path) {
            Response::Close => return,
            Response::CutOff { body, sent } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let part = body.get(..sent).unwrap_or(&body);
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(part)).and_then(|()| stream.flush());
                return;
            }
            Response::Send { status, content_type, extra_headers, body } => {
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
                    reason_phrase(status),
                    body.len()
                );
                for (name, value) in &extra_headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(if keep_alive { "connection: keep-alive\r\n\r\n" } else { "connection: close\r\n\r\n" });
                // The peer may reset the connection part way (for example when the body is
                // over its buffer limit); the handler thread then just ends.
                if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() || stream.flush().is_err() {
                    return;
                }
            }
        }
        if !keep_alive {
            let _ = stream.shutdown(std::net::Shutdown::Write);
            return;
        }
    }
}

/// Reads one request head and returns its path, or `None` when the peer closed the connection,
/// went idle or sent something that is not an HTTP request.
fn read_request_path(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            let request_line = head.lines().next()?;
            return request_line.split_whitespace().nth(1).map(str::to_string);
        }
        if pending.len() > MAX_REQUEST_HEAD_BYTES {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(read) => pending.extend_from_slice(&chunk[..read]),
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// An upstream stand-in: every request gets 200 with a small JSON body.
pub struct Upstream {
    server: HttpServer,
}

impl Upstream {
    pub fn start() -> Upstream {
        let handler: Arc<Handler> = Arc::new(|path: &str| Response::Send {
            status: 200,
            content_type: "application/json",
            extra_headers: Vec::new(),
            body: json!({ "upstream": "ok", "path": path }).to_string().into_bytes(),
        });
        Upstream { server: HttpServer::start("upstream", true, handler) }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }
}

/// A way for the JWKS endpoint to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The listening socket is closed: connections are refused.
    Down,
    /// The request is read and gets no response (until the fault changes or `MAX_HANG_SECONDS`).
    Hang,
    /// 500 with a JSON error body.
    ServerError,
    /// 200 with an HTML page, as a captive portal or a misrouted request would return.
    Html,
    /// 200 with the first half of the JWKS document (a correct Content-Length for that half).
    TruncatedJson,
    /// 200 whose Content-Length announces the whole JWKS document, but the connection closes
    /// after half of it. Envoy reports the call as failed, with no response headers.
    CutOff,
    /// 200 with a JWKS document of `HUGE_BODY_BYTES` whose keys would be usable if the size
    /// were not checked.
    HugeBody,
}

/// What the JWKS endpoint currently serves.
struct Behaviour {
    jwks: Value,
    cache_control: Option<String>,
    fault: Option<Fault>,
    /// Delay before each JWKS response.
    latency: Duration,
    discovery: Option<Value>,
}

/// One fetch the JWKS endpoint received.
#[derive(Debug, Clone, Copy)]
pub struct Fetch {
    pub received_at: Instant,
    /// When the response was written, or `None` when none was sent (faults down and hang).
    pub answered_at: Option<Instant>,
}

#[derive(Default)]
struct Counters {
    jwks_fetches: Vec<Fetch>,
    discovery_fetches: Vec<Instant>,
}

struct JwksState {
    behaviour: Mutex<Behaviour>,
    counters: Mutex<Counters>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A JWKS endpoint (`JWKS_PATH`) and discovery document (`DISCOVERY_PATH`) on 127.0.0.1.
pub struct JwksServer {
    server: HttpServer,
    state: Arc<JwksState>,
}

impl JwksServer {
    /// Starts a server that serves `jwks` with no fault and no latency.
    pub fn start(name: &str, jwks: Value) -> JwksServer {
        let state = Arc::new(JwksState {
            behaviour: Mutex::new(Behaviour {
                jwks,
                cache_control: None,
                fault: None,
                latency: Duration::ZERO,
                discovery: None,
            }),
            counters: Mutex::new(Counters::default()),
        });
        let handler_state = Arc::clone(&state);
        let handler: Arc<Handler> = Arc::new(move |path: &str| respond(&handler_state, path));
        JwksServer { server: HttpServer::start(name, false, handler), state }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn jwks_uri(&self) -> String {
        format!("http://127.0.0.1:{}{JWKS_PATH}", self.port())
    }

    pub fn discovery_uri(&self) -> String {
        format!("http://127.0.0.1:{}{DISCOVERY_PATH}", self.port())
    }

    pub fn set_jwks(&self, jwks: Value) {
        lock(&self.state.behaviour).jwks = jwks;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        lock(&self.state.behaviour).cache_control = value.map(str::to_string);
    }

    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state.behaviour).latency = latency;
    }

    pub fn set_discovery(&self, document: Value) {
        lock(&self.state.behaviour).discovery = Some(document);
    }

    /// Switches to `fault`, or back to serving the key set with `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        lock(&self.state.behaviour).fault = fault;
        self.server.stopped.store(fault == Some(Fault::Down), Ordering::SeqCst);
    }

    /// Returns every JWKS fetch received so far, oldest first.
    pub fn fetches(&self) -> Vec<Fetch> {
        lock(&self.state.counters).jwks_fetches.clone()
    }

    pub fn fetch_count(&self) -> usize {
        lock(&self.state.counters).jwks_fetches.len()
    }

    pub fn discovery_fetch_count(&self) -> usize {
        lock(&self.state.counters).discovery_fetches.len()
    }
}

fn respond(state: &JwksState, path: &str) -> Response {
    // The query is ignored, so that several providers can fetch one key set under different URIs.
    let path = path.split('?').next().unwrap_or(path);
    if path == DISCOVERY_PATH {
        lock(&state.counters).discovery_fetches.push(Instant::now());
        return match &lock(&state.behaviour).discovery {
            Some(document) => json_response(200, document.to_string().into_bytes(), None),
            None => json_response(404, br#"{"error":"not_found"}"#.to_vec(), None),
        };
    }
    if path != JWKS_PATH {
        return json_response(404, br#"{"error":"not_found"}"#.to_vec(), None);
    }

    let received_at = Instant::now();
    let (jwks, cache_control, fault, latency) = {
        let behaviour = lock(&state.behaviour);
        (behaviour.jwks.clone(), behaviour.cache_control.clone(), behaviour.fault, behaviour.latency)
    };
    let index = {
        let mut counters = lock(&state.counters);
        counters.jwks_fetches.push(Fetch { received_at, answered_at: None });
        counters.jwks_fetches.len() - 1
    };
    thread::sleep(latency);

    let response = match fault {
        None => json_response(200, jwks.to_string().into_bytes(), cache_control),
        // A connection accepted just before the stop took effect.
        Some(Fault::Down) => Response::Close,
        Some(Fault::Hang) => {
            let hang_until = received_at + Duration::from_secs(MAX_HANG_SECONDS);
            while lock(&state.behaviour).fault == Some(Fault::Hang) && Instant::now() < hang_until {
                thread::sleep(Duration::from_millis(HANG_POLL_INTERVAL_MS));
            }
            Response::Close
        }
        Some(Fault::ServerError) => json_response(500, br#"{"error":"internal_error"}"#.to_vec(), None),
        Some(Fault::Html) => Response::Send {
            status: 200,
            content_type: "text/html; charset=utf-8",
            extra_headers: Vec::new(),
            body: b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head><body><h1>Back soon</h1></body></html>\n".to_vec(),
        },
        Some(Fault::TruncatedJson) => {
            let text = jwks.to_string();
            json_response(200, text.as_bytes()[..text.len() / 2].to_vec(), None)
        }
        Some(Fault::HugeBody) => json_response(200, huge_jwks(&jwks), None),
        Some(Fault::CutOff) => {
            let body = jwks.to_string().into_bytes();
            let sent = body.len() / 2;
            Response::CutOff { body, sent }
        }
    };
    if matches!(response, Response::Send { .. }) {
        if let Some(fetch) = lock(&state.counters).jwks_fetches.get_mut(index) {
            fetch.answered_at = Some(Instant::now());
        }
    }
    response
}

fn json_response(status: u16, body: Vec<u8>, cache_control: Option<String>) -> Response {
    Response::Send {
        status,
        content_type: "application/json",
        extra_headers: cache_control.map(|value| ("cache-control".to_string(), value)).into_iter().collect(),
        body,
    }
}

/// Returns `jwks` with a padding member that makes the document `HUGE_BODY_BYTES` long, so the
/// keys in it stay valid and only the size limit can reject it.
fn huge_jwks(jwks: &Value) -> Vec<u8> {
    let keys = jwks["keys"].to_string();
    let prefix = format!(r#"{{"keys":{keys},"padding":""#);
    let suffix = r#""}"#;
    let padding = HUGE_BODY_BYTES.saturating_sub(prefix.len() + suffix.len());
    let mut body = Vec::with_capacity(HUGE_BODY_BYTES);
    body.extend_from_slice(prefix.as_bytes());
    body.resize(prefix.len() + padding, b'a');
    body.extend_from_slice(suffix.as_bytes());
    body
}

/// Returns the public JWK of fixture key `key_id`.
pub fn fixture_jwk(key_id: &str) -> Value {
    let text = read_fixture(&format!("{key_id}.jwk.json"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{key_id}.jwk.json is not JSON: {error}"))
}

/// Builds `{"keys": [...]}` from the fixture keys `key_ids`.
pub fn jwks_of(key_ids: &[&str]) -> Value {
    let keys: Vec<Value> = key_ids.iter().map(|key_id| fixture_jwk(key_id)).collect();
    json!({ "keys": keys })
}

/// A key type the filter does not know: an ML-DSA public key (`kty` "AKP", from the IETF draft
/// for ML-DSA in JOSE). The value of `pub` is a placeholder, never used for verification.
pub fn akp_jwk() -> Value {
    json!({ "kty": "AKP", "alg": "ML-DSA-44", "kid": "pq-mldsa-1", "use": "sig", "pub": "AAAA" })
}
