//! HTTP requests to the stack and the replies the tests inspect.

use std::time::Duration;

/// A request through Envoy may wait for the filter's JWKS fetch, which Envoy's default route
/// timeout caps at 15 s.
const REQUEST_TIMEOUT_SECONDS: u64 = 20;
const CONNECT_TIMEOUT_SECONDS: u64 = 2;

/// Status, headers (names lowercased, in arrival order) and body of a reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!("reply body is not JSON ({error}): status {} body {:?}", self.status, self.body)
        })
    }

    /// Returns the body's `code` field: the filter's reason code.
    pub fn code(&self) -> String {
        match self.json().get("code") {
            Some(serde_json::Value::String(code)) => code.clone(),
            _ => panic!("reply body has no string `code`: status {} body {:?}", self.status, self.body),
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(CONNECT_TIMEOUT_SECONDS))
        .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS))
        .build()
}

fn into_reply(response: ureq::Response) -> Reply {
    let status = response.status();
    let mut headers = Vec::new();
    let mut names = response.headers_names();
    names.dedup();
    for name in names {
        for value in response.all(&name) {
            headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
    }
    let body = response.into_string().unwrap_or_else(|error| panic!("failed to read reply body: {error}"));
    Reply { status, headers, body }
}

/// Sends `request`, turning 4xx and 5xx statuses into a normal `Reply`. Panics on transport
/// errors (connection refused, timeout), naming `url`.
pub fn send(request: ureq::Request, url: &str) -> Reply {
    match request.call() {
        Ok(response) => into_reply(response),
        Err(ureq::Error::Status(_, response)) => into_reply(response),
        Err(ureq::Error::Transport(error)) => panic!("request to {url} failed: {error}"),
    }
}

/// Sends `GET http://127.0.0.1:<port><path>` with an optional `Authorization` header value.
pub fn get(port: u16, path: &str, authorization: Option<&str>) -> Reply {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut request = agent().get(&url);
    if let Some(value) = authorization {
        request = request.set("authorization", value);
    }
    send(request, &url)
}

/// Returns true when `url` responds with 2xx within a second; used for readiness polling.
pub fn answers_ok(url: &str) -> bool {
    let quick = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .build();
    matches!(quick.get(url).call(), Ok(response) if (200..300).contains(&response.status()))
}

/// Sends `GET <raw_path>` with the given header lines over a raw HTTP/1.1 connection, so no
/// client library resolves dot segments or merges headers first, and returns the status code
/// and the response text.
#[allow(dead_code, reason = "only the e2e and routes test binaries send raw requests")]
pub fn get_raw(port: u16, raw_path: &str, header_lines: &[String]) -> (u16, String) {
    try_get_raw(port, raw_path, header_lines).unwrap_or_else(|error| panic!("{error}"))
}

/// Sends a request as `get_raw` does, and returns an error in place of panicking when the
/// connection fails, so that callers on many threads can count failures.
#[allow(dead_code, reason = "only some test binaries send raw requests")]
pub fn try_get_raw(port: u16, raw_path: &str, header_lines: &[String]) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(REQUEST_TIMEOUT_SECONDS)))?;
        let mut request = format!("GET {raw_path} HTTP/1.1\r\nConnection: close\r\n");
        for line in header_lines {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = exchange().map_err(|error| format!("raw request to 127.0.0.1:{port}{raw_path} failed: {error}"))?;
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Ok((status, response))
}
