"""The benchmark's scenarios and the row titles the report gives them."""

names = {
    "none": "no plugins, small body",
    "metrics": "no plugins, metrics on (admin listener)",
    "access-log": "no plugins, JSON access log to a file",
    "plugin": "1 pooled plugin (request-transformer, empty config)",
    "tracing": "1 pooled plugin, every request traced, spans exported over OTLP/HTTP",
    "chain": "3-plugin chain (jwt-auth HS256 + rate-limit local + request-transformer), pooled",
    "chain-request": "3-plugin chain, isolation = \"request\"",
    "big": "no plugins, 16 KiB body",
    "h2": "HTTP/2 (h2load 64 conns x 10 streams), no plugins",
    "workers2": "2 workers each, no plugins, both CPUs shared with wrk and the backend",
    "tls": "HTTPS keep-alive (TLS 1.3, ECDSA P-256), HTTP/1.1, no plugins",
    "tls-h2": "HTTPS keep-alive, HTTP/2 by ALPN (h2load 64 conns x 10 streams), no plugins",
    "handshake": "new TLS 1.3 handshake per request (ECDSA P-256, no resumption), no plugins",
    "resume": "resumed TLS handshakes (openssl s_time -reuse), no request",
    "round-robin": "2 targets, round robin (baseline of the next three), no plugins",
    "least-request": "2 targets, least_request (power of two choices), no plugins",
    "consistent-hash": "2 targets, consistent_hash on the client IP (Maglev), no plugins",
    "resilience": "2 targets, round robin, active health checks + both breakers on, no plugins",
    "canary": "route split 50/50 over 2 upstreams of 1 target (against round-robin), no plugins",
    "mirror": "no plugins, 10% of requests mirrored to a second upstream (against none)",
}
