//! TLS for tests: a throwaway PKI made with rcgen (a CA, server and client certificates,
//! written as PEM files), and an HTTPS client on tokio-rustls + hyper that says which
//! protocol, version and certificate it got.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use time::{Duration as Days, OffsetDateTime};
use tokio::net::TcpStream;

use super::Reply;

/// A certificate authority that issues test certificates into `dir`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate's PEM file.
    pub cert: PathBuf,
    /// Its private key's PEM file (to sign OCSP responses with `openssl ocsp`).
    pub key: PathBuf,
    dir: PathBuf,
}

/// A certificate and key on disk.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM chain (leaf only).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Serial number (decimal, as issued).
    pub serial: u64,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
}

static SERIAL: AtomicU64 = AtomicU64::new(1000);

impl Ca {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        let key_path = dir.join(format!("{name}-ca.key"));
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            cert: path,
            key: key_path,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for `names`, valid from two days ago until `days` from now.
    pub fn server(&self, file: &str, names: &[&str], days: i64) -> Issued {
        self.issue(
            file,
            names[0],
            names,
            days,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with subject `CN=cn, O=Test`.
    pub fn client(&self, file: &str, cn: &str) -> Issued {
        self.issue(file, cn, &[], 30, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        file: &str,
        cn: &str,
        names: &[&str],
        days: i64,
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test");
        params.extended_key_usages = vec![usage];
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Days::days(2);
        params.not_after = now + Days::days(days);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert: cert_path,
            key: key_path,
            serial,
            sha256: super::sha256_hex(cert.der()),
        }
    }
}

impl Ca {
    /// A DER OCSP response, signed by this CA with `openssl ocsp`, saying `issued` is good.
    pub fn ocsp_response(&self, issued: &Issued) -> PathBuf {
        let dir = &self.dir;
        let index = dir.join("ocsp-index.txt");
        let at = OffsetDateTime::now_utc() + Days::days(30);
        let expiry = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            at.year() % 100,
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        // openssl keys its index by the serial as BN_bn2hex prints it: upper case, even length.
        let mut serial = format!("{:X}", issued.serial);
        if serial.len() % 2 == 1 {
            serial.insert(0, '0');
        }
        std::fs::write(&index, format!("V\t{expiry}\t\t{serial}\tunknown\t/CN=x\n")).unwrap();
        let request = dir.join("ocsp-request.der");
        let response = dir.join("ocsp-response.der");
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("openssl")
                .arg("ocsp")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "-issuer".as_ref(),
            self.cert.as_os_str(),
            "-cert".as_ref(),
            issued.cert.as_os_str(),
            "-reqout".as_ref(),
            request.as_os_str(),
        ]);
        run(&[
            "-index".as_ref(),
            index.as_os_str(),
            "-rsigner".as_ref(),
            self.cert.as_os_str(),
            "-rkey".as_ref(),
            self.key.as_os_str(),
            "-CA".as_ref(),
            self.cert.as_os_str(),
            "-reqin".as_ref(),
            request.as_os_str(),
            "-respout".as_ref(),
            response.as_os_str(),
            "-ndays".as_ref(),
            "1".as_ref(),
        ]);
        response
    }
}

/// What a TLS handshake settled.
#[derive(Debug)]
pub struct Negotiated {
    /// `h2`, `http/1.1` or none.
    pub alpn: Option<String>,
    /// E.g. `TLSv1_3`.
    pub version: String,
    /// The server certificate's serial number.
    pub serial: u64,
    /// Its subject common name.
    pub common_name: String,
}

/// One request: method, path, headers.
pub type RequestLine<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// An HTTPS client: trusts `ca`, sends `sni`, offers `alpn`, presents `identity`.
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    sni: String,
}

impl TlsClient {
    /// A client trusting `ca` (a PEM file) that sends `sni` and offers `alpn`.
    pub fn new(ca: &Path, sni: &str, alpn: &[&str], identity: Option<&Issued>) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match identity {
            Some(issued) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(&issued.cert)
                        .unwrap()
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_file(&issued.key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Every connection a full handshake, so it shows the certificate served now.
        config.resumption = rustls::client::Resumption::disabled();
        TlsClient {
            config: Arc::new(config),
            sni: sni.to_string(),
        }
    }

    /// Handshake with `addr`, then send one request per `(method, path, headers)` on the one
    /// connection (HTTP/2 if negotiated, else HTTP/1.1), `between(i)` awaited before request `i` (for i > 0).
    pub async fn requests(
        &self,
        addr: SocketAddr,
        requests: &[RequestLine<'_>],
        between: impl AsyncFnMut(usize),
    ) -> Result<(Negotiated, Vec<Reply>), String> {
        let mut between = between;
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let name = ServerName::try_from(self.sni.clone()).map_err(|e| e.to_string())?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let connection = stream.get_ref().1;
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or("no server certificate")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
        let negotiated = Negotiated {
            alpn: connection
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            version: format!("{:?}", connection.protocol_version().ok_or("no version")?),
            serial: u64::from_str_radix(&parsed.raw_serial_as_string().replace(':', ""), 16)
                .unwrap_or(0),
            common_name: parsed
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_string(),
        };
        let http2 = negotiated.alpn.as_deref() == Some("h2");
        let io = TokioIo::new(stream);
        let mut replies = Vec::new();
        if http2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            for (i, (method, path, headers)) in requests.iter().enumerate() {
                if i > 0 {
                    between(i).await;
                }
                let uri = format!("https://{}{path}", self.sni);
                let request = build(method, &uri, headers, None);
                replies.push(read(sender.send_request(request).await).await?);
            }
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            for (i, (method, path, headers)) in requests.iter().enumerate() {
                if i > 0 {
                    between(i).await;
                }
                sender.ready().await.map_err(|e| e.to_string())?;
                let request = build(method, path, headers, Some(&self.sni));
                replies.push(read(sender.send_request(request).await).await?);
            }
        }
        Ok((negotiated, replies))
    }

    /// One GET of `path` on a fresh connection.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<(Negotiated, Reply), String> {
        let (negotiated, mut replies) = self
            .requests(addr, &[("GET", path, &[])], async |_| {})
            .await?;
        Ok((negotiated, replies.remove(0)))
    }
}

fn build(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    host: Option<&str>,
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::builder().method(method).uri(uri);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

async fn read(
    response: hyper::Result<http::Response<hyper::body::Incoming>>,
) -> Result<Reply, String> {
    let response = response.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}
