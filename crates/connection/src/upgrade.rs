//! The client side of the WebSocket upgrade, written here so that no token
//! reaches a log line.
//!
//! tungstenite's own client handshake logs the raw upgrade request at `log`'s
//! trace level, Authorization header included; a game that turns `trace` on
//! for its own code would log the player's token. So the request is written
//! here (never logged; the Authorization value is marked sensitive, so even
//! its `Debug` prints `Sensitive`), and the response is parsed and checked as
//! tungstenite checks it (status 101, `Upgrade`, `Connection`,
//! `Sec-WebSocket-Accept`, the subprotocol), with the same error values; the
//! socket then becomes a `WebSocketStream` with whatever frames arrived with
//! the response.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError, SubProtocolError, UrlError};
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::machine::TryParse as _;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{http, Error};
use tokio_tungstenite::WebSocketStream;

/// The most a response's head may take.
const MAX_HEAD: usize = 64 * 1024;

/// Marks the Authorization header's value sensitive (its `Debug` hides it).
pub fn hide_credentials(request: &mut http::Request<()>) {
    if let Some(value) = request.headers_mut().get_mut(http::header::AUTHORIZATION) {
        value.set_sensitive(true);
    }
}

/// The request's bytes and its `Sec-WebSocket-Key`. The request must carry
/// the upgrade headers (`IntoClientRequest` adds them).
// tungstenite's own error, as its handshake gives it (the actor reads its `Http` response).
#[allow(clippy::result_large_err)]
pub fn request_bytes(request: &http::Request<()>) -> Result<(Vec<u8>, String), Error> {
    let path = request.uri().path_and_query().ok_or(Error::Url(UrlError::NoPathOrQuery))?.as_str();
    let key = request
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Error::Protocol(ProtocolError::InvalidHeader(http::header::SEC_WEBSOCKET_KEY)))?
        .to_str()?
        .to_owned();
    let mut bytes = format!("GET {path} HTTP/1.1\r\n").into_bytes();
    for (name, value) in request.headers() {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    Ok((bytes, key))
}

/// Checks a response head as RFC 6455 (and tungstenite) require.
// tungstenite's own error, as its handshake gives it (the actor reads its `Http` response).
#[allow(clippy::result_large_err)]
pub fn verify(response: Response, key: &str, subprotocol: Option<&str>) -> Result<Response, Error> {
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::Http(response));
    }
    let headers = response.headers();
    let is = |name: &str, want: &str| {
        headers.get(name).and_then(|h| h.to_str().ok()).is_some_and(|h| h.eq_ignore_ascii_case(want))
    };
    if !is("Upgrade", "websocket") {
        return Err(Error::Protocol(ProtocolError::MissingUpgradeWebSocketHeader));
    }
    if !is("Connection", "Upgrade") {
        return Err(Error::Protocol(ProtocolError::MissingConnectionUpgradeHeader));
    }
    let accept = derive_accept_key(key.as_bytes());
    if headers.get("Sec-WebSocket-Accept").is_none_or(|h| h.as_bytes() != accept.as_bytes()) {
        return Err(Error::Protocol(ProtocolError::SecWebSocketAcceptKeyMismatch));
    }
    let returned = headers.get("Sec-WebSocket-Protocol").map(|h| h.to_str()).transpose()?;
    let wrong = match (returned, subprotocol) {
        (None, Some(_)) => Some(SubProtocolError::NoSubProtocol),
        (Some(_), None) => Some(SubProtocolError::ServerSentSubProtocolNoneRequested),
        (Some(r), Some(asked)) if !asked.split(',').any(|a| a.trim() == r) => {
            Some(SubProtocolError::InvalidSubProtocol)
        }
        _ => None,
    };
    match wrong {
        Some(e) => Err(Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(e))),
        None => Ok(response),
    }
}

/// Upgrades `stream` to a client WebSocket with `request` (see the module doc).
pub async fn client<S>(
    mut stream: S,
    mut request: http::Request<()>,
    config: WebSocketConfig,
) -> Result<(WebSocketStream<S>, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    hide_credentials(&mut request);
    let (bytes, key) = request_bytes(&request)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    drop(bytes);
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (size, response) = loop {
        if let Some(parsed) = Response::try_parse(&head)? {
            break parsed;
        }
        if head.len() > MAX_HEAD {
            return Err(Error::Capacity(CapacityError::TooManyHeaders));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Protocol(ProtocolError::HandshakeIncomplete));
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let tail = head.split_off(size);
    let subprotocol = request.headers().get(http::header::SEC_WEBSOCKET_PROTOCOL).map(|h| h.to_str()).transpose()?;
    let response = match verify(response, &key, subprotocol) {
        Err(Error::Http(mut refused)) => {
            *refused.body_mut() = Some(tail);
            return Err(Error::Http(refused));
        }
        other => other?,
    };
    let ws = WebSocketStream::from_partially_read(stream, tail, Role::Client, Some(config)).await;
    Ok((ws, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    fn request() -> http::Request<()> {
        let mut request =
            "ws://127.0.0.1:3000/v1/database/db/subscribe?compression=None".into_client_request().unwrap();
        request.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static("v1.bsatn"));
        request.headers_mut().insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer s3cr3t"));
        request
    }

    #[test]
    fn the_request_carries_every_header_and_hides_the_token_from_debug() {
        let mut request = request();
        hide_credentials(&mut request);
        let (bytes, key) = request_bytes(&request).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("GET /v1/database/db/subscribe?compression=None HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("authorization: Bearer s3cr3t\r\n"), "sent, of course");
        assert!(text.contains(&format!("sec-websocket-key: {key}\r\n")), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        let debug = format!("{request:?}");
        assert!(!debug.contains("s3cr3t") && debug.contains("Sensitive"), "{debug}");
    }

    fn response(lines: &[&str]) -> Response {
        let text = format!("{}\r\n\r\n", lines.join("\r\n"));
        Response::try_parse(text.as_bytes()).unwrap().unwrap().1
    }

    #[test]
    fn a_response_is_checked_as_rfc_6455_says() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = format!("Sec-WebSocket-Accept: {}", derive_accept_key(key.as_bytes()));
        let good = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", &accept];
        let with = |extra: &str| response(&[&good[..], &[extra]].concat());
        assert!(verify(with("Sec-WebSocket-Protocol: v1.bsatn"), key, Some("v1.bsatn")).is_ok());
        let protocol = |r| match r {
            Err(Error::Protocol(p)) => p,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            protocol(verify(response(&good), key, Some("v1.bsatn"))),
            ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::NoSubProtocol)
        ));
        assert!(matches!(
            protocol(verify(with("Sec-WebSocket-Protocol: other"), key, Some("v1.bsatn"))),
            ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::InvalidSubProtocol)
        ));
        assert!(matches!(
            protocol(verify(with("Sec-WebSocket-Protocol: v1.bsatn"), "another key", Some("v1.bsatn"))),
            ProtocolError::SecWebSocketAcceptKeyMismatch
        ));
        assert!(matches!(
            protocol(verify(response(&good[..3]), key, None)),
            ProtocolError::SecWebSocketAcceptKeyMismatch
        ));
        assert!(matches!(
            protocol(verify(response(&[good[0], good[2], &accept]), key, None)),
            ProtocolError::MissingUpgradeWebSocketHeader
        ));
        assert!(
            matches!(verify(response(&["HTTP/1.1 401 Unauthorized"]), key, None), Err(Error::Http(r)) if r.status() == 401)
        );
    }
}
