//! One HTTP client per process, for the server's HTTP endpoints (the schema,
//! and whatever else a crate asks the server over HTTP).
//!
//! A `reqwest::Client` holds a connection pool and a TLS connector whose
//! construction loads the system's root certificates (tens of milliseconds,
//! twice that in a debug build), whatever the URL: building one per call paid
//! that on every connect, even for `http://`. So:
//!
//! - `https://` (the `tls` feature; without it a typed failure) goes through
//!   one `reqwest` client per process, built lazily on first use and shared;
//! - `http://` (the usual local or LAN server) is a plain HTTP/1.1 GET on a
//!   fresh TCP connection (`hyper`): no TLS stack is built at all.
//!
//! [`get`] reads the body as it arrives and stops at a size limit, so a
//! hostile server cannot make it buffer more.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};

/// What a GET brought back.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The HTTP status.
    pub status: u16,
    /// The body, at most the limit asked for.
    pub body: Vec<u8>,
}

/// Why a GET brought nothing usable back.
#[derive(Debug)]
pub(crate) enum GetError {
    /// The request did not complete (connect, send, headers or body): may pass.
    Failed(String),
    /// The body is larger than the limit (as announced, or as it arrived).
    TooLarge(u64),
    /// The TLS session could not be set up (what was wrong, and the whole chain).
    Tls(crate::tls::TlsFailure, String),
}

/// GETs `url` (with `token` as a bearer token), reading at most `max_size`
/// bytes of body. No timeout here: the caller bounds the whole exchange.
pub(crate) async fn get(
    url: &str,
    token: Option<&str>,
    max_size: usize,
    tls: &crate::tls::TlsConfig,
) -> Result<Fetched, GetError> {
    if is_plain(url) {
        plain_get(url, token, max_size).await
    } else {
        tls_get(url, token, max_size, tls).await
    }
}

fn is_plain(url: &str) -> bool {
    url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

fn failed(url: &str, e: &(dyn std::error::Error + 'static)) -> GetError {
    let chain = crate::schema::error_chain(e);
    match crate::tls::classify(e) {
        Some(failure) => GetError::Tls(failure, format!("{url}: {chain}")),
        None => GetError::Failed(format!("error sending request for url ({url}): {chain}")),
    }
}

/// Appends `chunk` to `body` unless that passes `max_size`.
fn take(body: &mut Vec<u8>, chunk: &[u8], max_size: usize) -> Result<(), GetError> {
    if body.len() + chunk.len() > max_size {
        return Err(GetError::TooLarge((body.len() + chunk.len()) as u64));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

async fn plain_get(url: &str, token: Option<&str>, max_size: usize) -> Result<Fetched, GetError> {
    let uri: hyper::Uri = url.parse().map_err(|e| failed(url, &e))?;
    let authority = uri.authority().ok_or_else(|| GetError::Failed(format!("no host in {url}")))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((authority.host(), port)).await.map_err(|e| failed(url, &e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|e| failed(url, &e))?;
    // The connection's driver; it ends when the exchange does (or is dropped with it).
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = hyper::Request::get(path).header(hyper::header::HOST, authority.as_str());
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| failed(url, &e))?;
        let mut response = sender.send_request(request).await.map_err(|e| failed(url, &e))?;
        let status = response.status().as_u16();
        let announced = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = announced.filter(|n| *n > max_size as u64) {
            return Err(GetError::TooLarge(n));
        }
        let mut body = Vec::new();
        while let Some(frame) = response.body_mut().frame().await {
            let frame = frame.map_err(|e| failed(url, &e))?;
            if let Some(chunk) = frame.data_ref() {
                take(&mut body, chunk, max_size)?;
            }
        }
        Ok(Fetched { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(not(feature = "tls"))]
async fn tls_get(
    url: &str,
    _token: Option<&str>,
    _max_size: usize,
    _tls: &crate::tls::TlsConfig,
) -> Result<Fetched, GetError> {
    Err(GetError::Failed(format!("{url}: an https:// server needs spacelink's `tls` feature")))
}

#[cfg(feature = "tls")]
async fn tls_get(
    url: &str,
    token: Option<&str>,
    max_size: usize,
    tls: &crate::tls::TlsConfig,
) -> Result<Fetched, GetError> {
    // Taken before any clock of the caller's matters: the first use builds it.
    let mut request = tls_client(tls).map_err(GetError::Failed)?.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.map_err(|e| failed(url, &e))?;
    let status = response.status().as_u16();
    if let Some(n) = response.content_length().filter(|n| *n > max_size as u64) {
        return Err(GetError::TooLarge(n));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(url, &e))? {
        take(&mut body, &chunk, max_size)?;
    }
    Ok(Fetched { status, body })
}

/// The client for `https://` URLs with `tls`'s roots (the platform's plus
/// the extra ones), one per set of extra roots, shared by the process.
#[cfg(feature = "tls")]
fn tls_client(tls: &crate::tls::TlsConfig) -> Result<reqwest::Client, String> {
    static CLIENTS: std::sync::Mutex<Vec<(Vec<String>, reqwest::Client)>> = std::sync::Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, client)) = clients.iter().find(|(extra, _)| *extra == tls.extra_root_certificates) {
        return Ok(client.clone());
    }
    let builder = reqwest::Client::builder().use_preconfigured_tls((*crate::tls::client_config(tls)?).clone());
    let client = builder.build().map_err(|e| crate::schema::error_chain(&e))?;
    clients.push((tls.extra_root_certificates.clone(), client.clone()));
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tls_client_per_process_and_none_for_plain_http() {
        assert!(is_plain("http://127.0.0.1:3000/v1/x") && is_plain("HTTP://localhost/y"));
        assert!(!is_plain("https://example.invalid/") && !is_plain("ws://x/"));
        #[cfg(feature = "tls")]
        {
            let tls = crate::tls::TlsConfig::default();
            // A reqwest client is a shared pool: the same one comes back.
            assert_eq!(format!("{:?}", tls_client(&tls).unwrap()), format!("{:?}", tls_client(&tls).unwrap()));
        }
    }

    #[tokio::test]
    async fn a_plain_get_reads_the_body_and_stops_at_the_limit() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for body in ["hello", "0123456789"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0; 1024];
                let n = socket.read(&mut request).await.unwrap();
                let request = String::from_utf8_lossy(&request[..n]).to_string();
                assert!(request.starts_with("GET /v1/x?version=9 HTTP/1.1"), "{request}");
                assert!(request.contains("authorization: Bearer t0k3n"), "{request}");
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let url = format!("http://{addr}/v1/x?version=9");
        let fetched = get(&url, Some("t0k3n"), 8, &Default::default()).await.unwrap();
        assert_eq!((fetched.status, fetched.body.as_slice()), (200, &b"hello"[..]));
        assert!(matches!(get(&url, Some("t0k3n"), 8, &Default::default()).await, Err(GetError::TooLarge(10))));
        server.await.unwrap();
        // Nothing listens: a failure that may pass, saying where it went.
        let down = get(&url, None, 8, &Default::default()).await.unwrap_err();
        assert!(
            matches!(&down, GetError::Failed(m) if m.contains("error sending request") && m.contains(&url)),
            "{down:?}"
        );
    }
}
