//! Certificate files: PEM chains and keys read, matched and dated, with errors that name the
//! file. Everything a listener or an upstream loads goes through here, so `gateway check`,
//! startup and a certificate reload refuse a bad pair with the same words.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate that warns `gateway check` when it expires within this.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// A certificate chain with its private key, checked: parsed, key matching, in date.
pub struct LoadedPair {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf's subject alternative names (the names it is valid for).
    pub dns_names: Vec<String>,
    /// How long until the leaf expires.
    pub expires_in: Duration,
}

/// Read the PEM certificates in `path` (relative to `base`); at least one.
pub fn read_chain(base: &Path, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(base, path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "{path}: no PEM certificate (`BEGIN CERTIFICATE`) in it"
        ));
    }
    Ok(chain)
}

/// Read the PEM private key in `path` (relative to `base`).
pub fn read_key(base: &Path, path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(base, path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}"))
}

/// Load a certificate chain and its key, refusing a key that does not match the leaf, a leaf
/// not yet valid or expired, and an OCSP file that cannot be read.
pub fn load_pair(
    base: &Path,
    cert: &str,
    key: &str,
    ocsp: Option<&str>,
    provider: &CryptoProvider,
) -> Result<LoadedPair, String> {
    let chain = read_chain(base, cert)?;
    let private = read_key(base, key)?;
    let leaf = Leaf::parse(&chain[0]).map_err(|e| format!("{cert}: {e}"))?;
    let expires_in = leaf.check_dates().map_err(|e| format!("{cert}: {e}"))?;
    let dns_names = leaf.dns_names;
    let mut certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("{key}: this private key does not belong to the certificate in {cert}")
        }
        other => format!("{key}: unusable private key: {other}"),
    })?;
    if let Some(ocsp) = ocsp {
        certified.ocsp = Some(read(base, ocsp)?);
    }
    Ok(LoadedPair {
        key: Arc::new(certified),
        dns_names,
        expires_in,
    })
}

fn read(base: &Path, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(base.join(path)).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The facts of a leaf certificate the gateway checks or hands on.
pub struct Leaf {
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// Every subject alternative name, OpenSSL style (`DNS:a.example`, `URI:spiffe://…`).
    pub alt_names: Vec<String>,
    /// Subject distinguished name (`CN=client, O=Example`).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number in hex.
    pub serial: String,
    not_before: i64,
    not_after: i64,
}

impl Leaf {
    /// Parse a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Leaf, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
        let mut dns_names = Vec::new();
        let mut alt_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        dns_names.push(dns.to_ascii_lowercase());
                        alt_names.push(format!("DNS:{dns}"));
                    }
                    GeneralName::URI(uri) => alt_names.push(format!("URI:{uri}")),
                    GeneralName::RFC822Name(email) => alt_names.push(format!("email:{email}")),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_of(bytes) {
                            alt_names.push(format!("IP:{ip}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Leaf {
            dns_names,
            alt_names,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// How long the certificate is still valid, or why it is not valid now.
    pub fn check_dates(&self) -> Result<Duration, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if now < self.not_before {
            return Err(format!(
                "the certificate is not valid until {} (notBefore)",
                utc(self.not_before)
            ));
        }
        if now >= self.not_after {
            return Err(format!(
                "the certificate expired on {} (notAfter)",
                utc(self.not_after)
            ));
        }
        Ok(Duration::from_secs(
            u64::try_from(self.not_after - now).unwrap_or(0),
        ))
    }
}

fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(seconds: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(seconds) {
        Ok(time) => time.to_string(),
        Err(_) => seconds.to_string(),
    }
}
