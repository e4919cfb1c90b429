//! `https://` and `wss://` through a TLS-terminating proxy of ours in front of
//! the real server, with a certificate authority made for the test: trusted
//! through the config's extra root certificates, the schema fetch and the
//! WebSocket both work; not trusted, for another name, or expired, both are
//! refused, saying which. Needs the `tls` feature (`cargo xtask test` has it).
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spacelink::{Client, ConnectionConfig, ConnectionState, ModuleSchema, SchemaError, TlsFailure};
use tokio::net::TcpListener;

/// A certificate authority and a server certificate it signed.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "spacelink test CA");
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// A server certificate for `names`, valid now unless `expired`.
fn pki(names: &[&str], expired: bool) -> Pki {
    let (ca, ca_key) = ca();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki { ca_pem: ca.pem(), leaf: leaf.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()) }
}

/// Terminates TLS with `pki`'s certificate and forwards the plain bytes to `upstream`.
async fn tls_proxy(pki: &Pki, upstream: SocketAddr) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], PrivateKeyDer::Pkcs8(pki.key.clone_key()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    addr
}

fn config_through(proxy: SocketAddr, extra_root: Option<&Pki>) -> ConnectionConfig {
    let (_, db) = server();
    let mut config = ConnectionConfig::new(format!("https://localhost:{}", proxy.port()), db);
    config.retry.max_attempts = 1;
    config.retry.initial_delay = Duration::from_millis(100);
    config.retry.max_delay = Duration::from_millis(200);
    if let Some(pki) = extra_root {
        config.tls.extra_root_certificates.push(pki.ca_pem.clone());
    }
    config
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_tls_a_private_ca_trusted_by_config_works_for_the_schema_and_the_websocket() {
    let pki = pki(&["localhost"], false);
    let proxy = tls_proxy(&pki, upstream()).await;
    let config = config_through(proxy, Some(&pki));
    let schema = ModuleSchema::fetch_for(&config).await.unwrap();
    assert!(schema.table("player").is_some());

    let (listeners, mut events) = collecting_listeners();
    let client = Client::builder()
        .with_connection_config(config)
        .with_listeners(listeners)
        .subscribe(&["SELECT * FROM map"])
        .build_async()
        .await
        .unwrap();
    events.connected().await;
    let identity = events.identity().await;
    assert!(identity.generation >= 1);
    client.shutdown();
}

/// The schema fetch's failure, and the WebSocket's (given the schema, read over plain HTTP).
async fn both_refusals(pki: &Pki, trust: bool) -> (SchemaError, String) {
    let proxy = tls_proxy(pki, upstream()).await;
    let config = config_through(proxy, trust.then_some(pki));
    let fetched = ModuleSchema::fetch_for(&config).await.unwrap_err();

    let (listeners, mut events) = collecting_listeners();
    let client = Client::builder()
        .with_connection_config(config)
        .with_schema(Arc::new(schema().await))
        .with_listeners(listeners)
        .build_async()
        .await
        .unwrap();
    let reason = events
        .wait_for(20, "a failed TLS attempt", |e| match e {
            Event::State(change) if matches!(change.to, ConnectionState::Reconnecting | ConnectionState::Failed) => {
                change.reason.clone()
            }
            _ => None,
        })
        .await;
    client.shutdown();
    (fetched, reason)
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_tls_an_untrusted_a_misnamed_and_an_expired_certificate_are_refused_saying_which() {
    let cases = [
        (pki(&["localhost"], false), false, TlsFailure::NotTrusted, "not trusted"),
        (pki(&["elsewhere.example"], false), true, TlsFailure::NameMismatch, "not valid for this host name"),
        (pki(&["localhost"], true), true, TlsFailure::Expired, "expired"),
    ];
    for (pki, trust, failure, words) in cases {
        let (fetched, reason) = both_refusals(&pki, trust).await;
        match &fetched {
            SchemaError::Tls { failure: got, chain } => {
                assert_eq!(*got, failure, "{fetched}");
                assert!(chain.contains("localhost"), "the chain names the URL: {chain}");
            }
            other => panic!("the schema fetch: a TLS error, got {other}"),
        }
        assert!(fetched.to_string().contains(words), "{fetched}");
        assert!(reason.contains("TLS") && reason.contains(words), "the WebSocket's reason: {reason}");
    }
}
