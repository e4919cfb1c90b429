//! One HTTP client per process, for the server's HTTP endpoints (the schema,
//! and whatever else a crate asks the server over HTTP).
//!
//! A `reqwest::Client` holds a connection pool and, with TLS, a TLS connector
//! whose construction loads the system's root certificates (tens of
//! milliseconds). Building one per call paid that on every connect, even for
//! `http://`. Here each kind is built once, lazily, and shared: [`client_for`]
//! hands out the plain client for `http://` URLs (built without loading any
//! root certificate) and the TLS client only for `https://`.

use std::sync::OnceLock;

/// The shared client for `url`: the plain one for `http://`, the TLS one otherwise.
pub fn client_for(url: &str) -> &'static reqwest::Client {
    let is_plain = url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
    if is_plain {
        plain()
    } else {
        tls()
    }
}

/// The client for `http://` URLs: no root certificates are loaded for it.
fn plain() -> &'static reqwest::Client {
    static PLAIN: OnceLock<reqwest::Client> = OnceLock::new();
    PLAIN.get_or_init(|| {
        // Without the built-in roots the TLS backend (if compiled in) loads no
        // certificate store; this client is never used for https.
        let builder = reqwest::Client::builder();
        #[cfg(feature = "tls")]
        let builder = builder.tls_built_in_root_certs(false);
        builder.build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot build the plain HTTP client with its settings; using the default");
            reqwest::Client::new()
        })
    })
}

/// The client for `https://` URLs, with the platform's root certificates.
fn tls() -> &'static reqwest::Client {
    static TLS: OnceLock<reqwest::Client> = OnceLock::new();
    TLS.get_or_init(reqwest::Client::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_kind_per_process() {
        let a = client_for("http://127.0.0.1:3000/v1/x");
        let b = client_for("HTTP://localhost/y");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, client_for("https://example.invalid/")));
        assert!(std::ptr::eq(client_for("https://a/"), client_for("https://b/")));
    }
}
