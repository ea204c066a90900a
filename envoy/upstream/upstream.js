// Model Studio stand-in: responds to every request with 200 and a JSON echo of what arrived, so tests
// and `make run` users can see which headers the filter let through (or removed).
//
// Response body: {"method": "...", "path": "...", "headers": {"<lowercased name>": "<value>", ...}}.
// A header that arrives more than once is joined with ", " as Node does for most headers.
//
// Environment: UPSTREAM_PORT (default 9100). Listens on 127.0.0.1 only. No dependencies.

import http from 'node:http';

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.UPSTREAM_PORT ?? '9100', 10);

function collectHeaders(rawHeaders) {
  const headers = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return headers;
}

const server = http.createServer((req, res) => {
  // Drain the request body so the connection can be reused; the echo does not include it.
  req.resume();
  req.on('end', () => {
    const body = JSON.stringify({
      method: req.method,
      path: req.url,
      headers: collectHeaders(req.rawHeaders),
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
});

// Node closes a keep-alive connection after 5 s idle by default. Envoy may send the next
// request on it at that moment and respond 503 "connection termination", so idle connections are
// left for Envoy to close.
server.keepAliveTimeout = 0;

server.listen(PORT, HOST, () => {
  console.log(`upstream: listening on http://${HOST}:${PORT}`);
});

function shutDown(signal) {
  console.log(`upstream: ${signal} received, stopping`);
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGINT', () => shutDown('SIGINT'));
process.on('SIGTERM', () => shutDown('SIGTERM'));
