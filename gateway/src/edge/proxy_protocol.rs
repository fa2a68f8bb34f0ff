//! PROXY protocol version 2 (HAProxy's spec, `proxy-protocol.txt` §2.2): the binary header a
//! TCP load balancer sends first on every connection to say whose connection it is. Read only
//! from trusted proxies (a header from anyone else would let them pick their own address), and
//! required from them when `server.proxy_protocol` is on, as nginx's `listen … proxy_protocol`.
//!
//! Version 1 (the text form) is not accepted: v2 is what current load balancers (AWS NLB,
//! HAProxy `send-proxy-v2`, Envoy) send, and it is unambiguous to parse.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest address-and-TLV block accepted (TLVs from load balancers are tens of bytes).
const MAX_BLOCK: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The connection does not start with the v2 signature.
    Missing,
    /// Not version 2, an unknown command, or an address block too short for its family.
    Malformed(&'static str),
    /// The address block is larger than the gateway reads.
    TooLong(usize),
    /// The connection ended or failed while the header was read.
    Io(String),
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHeaderError::Missing => f.write_str("no PROXY protocol v2 header"),
            ProxyHeaderError::Malformed(why) => write!(f, "malformed PROXY v2 header: {why}"),
            ProxyHeaderError::TooLong(len) => {
                write!(
                    f,
                    "PROXY v2 address block of {len} bytes (most {MAX_BLOCK})"
                )
            }
            ProxyHeaderError::Io(e) => write!(f, "reading the PROXY v2 header: {e}"),
        }
    }
}

/// Read one v2 header from `stream`. `Some(source)` for a proxied TCP connection; `None` for
/// a `LOCAL` connection (the proxy's own health check) or an address family with no IP
/// (UNIX, unspecified), whose peer stays the connection's.
pub async fn read_header(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let io = |e: std::io::Error| ProxyHeaderError::Io(e.to_string());
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed).await.map_err(io)?;
    if fixed[..12] != SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_BLOCK {
        return Err(ProxyHeaderError::TooLong(len));
    }
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await.map_err(io)?;
    parse(fixed[12], fixed[13], &block)
}

/// The source address from the version/command byte, the family byte and the address block.
fn parse(
    version_command: u8,
    family: u8,
    block: &[u8],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("version is not 2"));
    }
    match version_command & 0x0f {
        0 => return Ok(None),
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("unknown command")),
    }
    let short = ProxyHeaderError::Malformed("address block too short for its family");
    match family >> 4 {
        1 => {
            let a: [u8; 12] = block
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(short)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            let a: [u8; 36] = block
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(short)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        // Unspecified or UNIX: nothing to replace the peer with.
        0 | 3 => Ok(None),
        _ => Err(ProxyHeaderError::Malformed("unknown address family")),
    }
}

/// A v2 `PROXY` header for a TCP connection from `source` to `destination`.
#[cfg(test)]
fn encode(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.push(0x21);
    let mut block = Vec::new();
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            header.push(0x11);
            block.extend(s.ip().octets());
            block.extend(d.ip().octets());
        }
        (s, d) => {
            header.push(0x21);
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            block.extend(v6(s).octets());
            block.extend(v6(d).octets());
        }
    }
    block.extend(source.port().to_be_bytes());
    block.extend(destination.port().to_be_bytes());
    header.extend((block.len() as u16).to_be_bytes());
    header.extend(block);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
        let mut reader = bytes;
        read_header(&mut reader).await
    }

    #[tokio::test]
    async fn round_trips_both_families_and_skips_tlvs() {
        for (source, destination) in [
            ("1.2.3.4:5678", "10.0.0.1:80"),
            ("[2001:db8::7]:443", "[fd00::1]:8080"),
        ] {
            let source: SocketAddr = source.parse().unwrap();
            let mut header = encode(source, destination.parse().unwrap());
            // A TLV (type 0x04 NOOP, 3 bytes) grows the block; it is read and skipped.
            let len = u16::from_be_bytes([header[14], header[15]]) + 6;
            header[14..16].copy_from_slice(&len.to_be_bytes());
            header.extend([0x04, 0x00, 0x03, 1, 2, 3]);
            header.extend(b"GET / HTTP/1.1\r\n");
            let mut reader = &header[..];
            assert_eq!(read_header(&mut reader).await, Ok(Some(source)));
            assert_eq!(reader, b"GET / HTTP/1.1\r\n", "reads exactly the header");
        }
    }

    #[tokio::test]
    async fn local_unix_and_refusals() {
        let mut local = SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await, Ok(None));
        let mut unix = SIGNATURE.to_vec();
        unix.extend([0x21, 0x31, 0, 216]);
        unix.extend([0u8; 216]);
        assert_eq!(read(&unix).await, Ok(None));
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await,
            Err(ProxyHeaderError::Missing)
        );
        let mut v1 = SIGNATURE.to_vec();
        v1.extend([0x11, 0x11, 0, 12]);
        v1.extend([0u8; 12]);
        assert!(matches!(
            read(&v1).await,
            Err(ProxyHeaderError::Malformed(_))
        ));
        let mut short = SIGNATURE.to_vec();
        short.extend([0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(
            read(&short).await,
            Err(ProxyHeaderError::Malformed(_))
        ));
        let mut long = SIGNATURE.to_vec();
        long.extend([0x21, 0x11, 0xff, 0xff]);
        assert_eq!(read(&long).await, Err(ProxyHeaderError::TooLong(65535)));
        assert!(matches!(
            read(&SIGNATURE).await,
            Err(ProxyHeaderError::Io(_))
        ));
    }
}
