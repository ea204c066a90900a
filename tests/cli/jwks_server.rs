//! A one-shot HTTP server on 127.0.0.1 for `explain --jwks-url`. It sends one canned response
//! to each of a fixed number of connections and records each request line.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server waits for the tool to connect before it gives up.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read; the tool sends a few hundred bytes.
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

pub struct JwksServer {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    handle: JoinHandle<Vec<String>>,
}

impl JwksServer {
    /// Starts a server that responds to `connections` requests with `status` (such as
    /// `200 OK`) and `body` as `application/json`.
    pub fn start(status: &str, body: String, connections: usize) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set the listener non-blocking");
        let base_url = format!("http://{}", listener.local_addr().expect("listener address"));
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let handle = std::thread::spawn(move || {
            let mut request_lines = Vec::new();
            let deadline = Instant::now() + ACCEPT_TIMEOUT;
            while request_lines.len() < connections && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => request_lines.push(answer(stream, &response)),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(error) => panic!("accept failed: {error}"),
                }
            }
            request_lines
        });
        JwksServer { base_url, handle }
    }

    /// Waits for the server thread and returns the request lines it received.
    pub fn request_lines(self) -> Vec<String> {
        self.handle.join().expect("the JWKS server thread panicked")
    }
}

/// Reads one request head, sends `response` and returns the request line.
fn answer(mut stream: TcpStream, response: &str) -> String {
    stream.set_nonblocking(false).expect("set the stream blocking");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set the read timeout");
    let mut head = Vec::new();
    let mut buffer = [0_u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD_BYTES {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    stream.write_all(response.as_bytes()).expect("write the response");
    let head = String::from_utf8_lossy(&head);
    head.lines().next().unwrap_or_default().to_owned()
}
