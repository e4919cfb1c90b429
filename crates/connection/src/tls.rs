//! TLS for `wss://` and `https://` servers (the `tls` feature): rustls on
//! ring, trusting the platform's root certificates plus those the config adds
//! (a private deployment's certificate authority), and errors that say what
//! was wrong with the server's certificate.
//!
//! The schema fetch and the WebSocket use the same client configuration, so a
//! server is trusted, or refused, the same way by both. Configurations are
//! built once per set of extra roots and shared (the platform's roots are read
//! once per process: tens of milliseconds).

use std::fmt;

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// More root certificates to trust, as PEM text (each may hold several
    /// `CERTIFICATE` blocks): a private deployment's certificate authority.
    /// Default: none, the platform's roots only.
    pub extra_root_certificates: Vec<String>,
}

impl TlsConfig {
    /// Checks that every extra root is PEM holding at least one certificate
    /// (the reason names which one, counting from 0).
    pub fn validate(&self) -> Result<(), String> {
        for (i, pem) in self.extra_root_certificates.iter().enumerate() {
            let count = certificates(pem).map_err(|e| format!("root {i}: {e}"))?.len();
            if count == 0 {
                return Err(format!("root {i} holds no PEM `CERTIFICATE` block"));
            }
        }
        Ok(())
    }
}

/// The DER certificates in `pem`.
fn certificates(pem: &str) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))
}

/// What was wrong with a TLS session, as far as the handshake tells.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate chain does not lead to a trusted root.
    NotTrusted,
    /// The certificate is not valid for the host name asked for.
    NameMismatch,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate was revoked.
    Revoked,
    /// Another problem with the certificate.
    BadCertificate(String),
    /// The server refused the handshake (a TLS alert).
    HandshakeRefused(String),
    /// The handshake failed otherwise.
    Other(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::NotTrusted => f.write_str(
                "the server's certificate is not trusted: its issuer is not among the root certificates \
                 (a private certificate authority goes in tls.extra_root_certificates)",
            ),
            TlsFailure::NameMismatch => f.write_str("the server's certificate is not valid for this host name"),
            TlsFailure::Expired => f.write_str("the server's certificate has expired"),
            TlsFailure::NotYetValid => f.write_str("the server's certificate is not valid yet (check the clock)"),
            TlsFailure::Revoked => f.write_str("the server's certificate was revoked"),
            TlsFailure::BadCertificate(what) => write!(f, "the server's certificate was refused: {what}"),
            TlsFailure::HandshakeRefused(alert) => write!(f, "the server refused the TLS handshake ({alert})"),
            TlsFailure::Other(what) => write!(f, "the TLS handshake failed: {what}"),
        }
    }
}

/// The TLS failure somewhere in `error`'s chain of causes, if there is one.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    #[cfg(feature = "tls")]
    {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = as_rustls(e) {
                return Some(from_rustls(found));
            }
            current = e.source();
        }
    }
    let _ = error;
    None
}

/// `e` as a rustls error, also when `io::Error`s wrap it, however deep
/// (an `io::Error`'s `source` skips the error it wraps).
#[cfg(feature = "tls")]
fn as_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut e = e;
    for _ in 0..8 {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

#[cfg(feature = "tls")]
fn from_rustls(e: &rustls::Error) -> TlsFailure {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => TlsFailure::NotTrusted,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
            C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotYetValid,
            C::Revoked => TlsFailure::Revoked,
            other => TlsFailure::BadCertificate(format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) => TlsFailure::HandshakeRefused(format!("alert {alert:?}")),
        other => TlsFailure::Other(other.to_string()),
    }
}

/// The rustls client configuration for `tls`, built once per set of extra roots.
#[cfg(feature = "tls")]
pub(crate) fn client_config(tls: &TlsConfig) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use std::sync::{Arc, Mutex, OnceLock};
    static BUILT: Mutex<Vec<(Vec<String>, Arc<rustls::ClientConfig>)>> = Mutex::new(Vec::new());
    static PLATFORM: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, config)) = built.iter().find(|(extra, _)| *extra == tls.extra_root_certificates) {
        return Ok(config.clone());
    }
    let platform = PLATFORM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a platform root certificate could not be read");
        }
        found.certs
    });
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(platform.iter().cloned());
    tracing::debug!(added, ignored, "platform root certificates");
    for (i, pem) in tls.extra_root_certificates.iter().enumerate() {
        for cert in certificates(pem).map_err(|e| format!("tls.extra_root_certificates[{i}]: {e}"))? {
            roots.add(cert).map_err(|e| format!("tls.extra_root_certificates[{i}]: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    built.push((tls.extra_root_certificates.clone(), config.clone()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_be_pem_certificates() {
        assert!(TlsConfig::default().validate().is_ok());
        let none = TlsConfig { extra_root_certificates: vec!["just text".into()] };
        assert!(none.validate().unwrap_err().contains("root 0"), "{:?}", none.validate());
        let broken = TlsConfig {
            extra_root_certificates: vec!["-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".into()],
        };
        assert!(broken.validate().is_err());
    }

    #[cfg(feature = "tls")]
    #[test]
    fn certificate_errors_are_told_apart_through_any_wrapping() {
        use rustls::CertificateError as C;
        let cases = [
            (C::UnknownIssuer, TlsFailure::NotTrusted),
            (C::NotValidForName, TlsFailure::NameMismatch),
            (C::Expired, TlsFailure::Expired),
            (C::NotValidYet, TlsFailure::NotYetValid),
            (C::Revoked, TlsFailure::Revoked),
        ];
        for (cert, want) in cases {
            let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(cert));
            // As hyper-rustls hands it on: an io::Error in an io::Error.
            let wrapped = std::io::Error::other(wrapped);
            let outer = tokio_tungstenite::tungstenite::Error::Io(wrapped);
            assert_eq!(classify(&outer), Some(want.clone()));
            assert!(!want.to_string().is_empty());
        }
        assert_eq!(classify(&std::io::Error::other("plain")), None);
        assert!(TlsFailure::NotTrusted.to_string().contains("tls.extra_root_certificates"));
    }
}
