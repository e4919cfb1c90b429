//! A session's socket, off the thread that keeps its heartbeats.
//!
//! The connection actor lives on the actix thread, with the actors that apply
//! what arrives. If it also read the socket, a large initial subscription
//! (decompressing, checking and decoding tens of megabytes, then applying a
//! million rows) would starve its heartbeats and its reads, and a healthy server
//! would look dead. So every session's I/O runs on one process-wide network
//! runtime (a thread of its own, [`runtime`]): a **reader** task reads frames,
//! decompresses them and every query update in them, checks and decodes them
//! (through [`codec`]) and forwards the decoded messages over a bounded channel;
//! a **writer** task writes what the actor queues. The actix thread applies
//! while the network thread decodes the next frame: two cores at work.
//!
//! Dead-peer detection counts what arrives *at the socket*: every byte read
//! bumps [`Pulse`] (the stream is wrapped in [`Counted`], below the WebSocket),
//! the reader bumps it for every frame and says when it is busy (decoding, or
//! waiting for the actor to take a message). A session is silent only while
//! nothing at all arrives, however far behind the actors are and however long
//! one large frame takes on a slow link (its pong waits behind it).
//!
//! The TCP connection is made on the caller's runtime (a refused connect stays
//! there, so tests on a paused clock are unaffected); the socket then moves to
//! the network runtime, where the TLS and WebSocket handshakes run, so that its
//! readiness is driven by the network thread's reactor, not the busy actix one.
//! The upgrade request is written by [`crate::upgrade`], which logs no token.
//! The network thread's `metrics` events go through [`crate::recording`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, http, protocol::WebSocketConfig, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::codec::{self, CodecError, DecodeLimits, ServerMessage};

/// Decoded messages that may wait for the actor: enough to keep both threads
/// busy, few enough to bound what is held (the socket pushes back beyond it).
const INBOUND_CAPACITY: usize = 16;
/// How long a dropped session's writer may still flush (a Close frame, say).
const WRITER_GRACE: Duration = Duration::from_millis(500);

type Ws = WebSocketStream<Counted<MaybeTlsStream<TcpStream>>>;

/// A stream that counts the bytes read from it into a [`Pulse`].
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    pulse: Arc<Pulse>,
}

impl<S> Counted<S> {
    /// `inner`, its reads counted in `pulse`.
    pub fn new(inner: S, pulse: Arc<Pulse>) -> Self {
        Self { inner, pulse }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.pulse.bytes.fetch_add(read as u64, Ordering::AcqRel);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The network runtime: one thread, started on first use, for the whole process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("spacelink-net")
            .on_thread_start(crate::recording::route_this_thread)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the network runtime's thread: {e}"))
    })
}

/// What arrived at a session's socket, as its reader saw it.
#[derive(Debug, Default)]
pub struct Pulse {
    frames: AtomicU64,
    busy: AtomicBool,
    bytes: AtomicU64,
}

impl Pulse {
    /// Bytes read from the socket so far (a frame still arriving included).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Frames read from the socket so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    /// Whether the reader is working on what it read (decoding it, or waiting
    /// for it to be taken) rather than waiting on the socket.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

/// What a session's reader (or writer) tells the actor.
pub enum Inbound {
    /// A binary frame, decoded (query updates decompressed).
    Message {
        /// The frame's size on the wire.
        wire_size: usize,
        /// The message, or why the frame could not be read.
        message: Result<ServerMessage, CodecError>,
    },
    /// A pong, with its payload.
    Pong(Bytes),
    /// A text frame (of this many bytes) on a binary session.
    Text(usize),
    /// The session ended: a close frame, a read or a write error, or EOF.
    Ended(String),
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inbound::Message { wire_size, message } => f
                .debug_struct("Message")
                .field("wire_size", wire_size)
                .field("kind", &message.as_ref().map(codec::server_message_kind))
                .finish(),
            Inbound::Pong(payload) => f.debug_tuple("Pong").field(payload).finish(),
            Inbound::Text(len) => f.debug_tuple("Text").field(len).finish(),
            Inbound::Ended(reason) => f.debug_tuple("Ended").field(reason).finish(),
        }
    }
}

/// A live session's I/O on the network runtime.
#[derive(Debug)]
pub struct SessionIo {
    /// Frames to write.
    pub outbound: mpsc::Sender<Message>,
    /// What arrives at the socket.
    pub pulse: Arc<Pulse>,
    reader: tokio::task::AbortHandle,
    writer: tokio::task::AbortHandle,
}

impl Drop for SessionIo {
    fn drop(&mut self) {
        self.reader.abort();
        // Let the writer flush what is queued, but never outlive the session by much.
        let writer = self.writer.clone();
        runtime().spawn(async move {
            tokio::time::sleep(WRITER_GRACE).await;
            writer.abort();
        });
    }
}

/// Connects (TCP here, the handshakes on the network runtime) and starts the
/// session's reader and writer there; the receiver yields what the reader
/// decoded, in order.
pub async fn open(
    request: http::Request<()>,
    ws_config: WebSocketConfig,
    outbound_capacity: usize,
    limits: DecodeLimits,
    tls: &crate::tls::TlsConfig,
) -> Result<(SessionIo, mpsc::Receiver<Inbound>), tungstenite::Error> {
    #[cfg(feature = "tls")]
    let connector = if request.uri().scheme_str() == Some("wss") {
        let config = crate::tls::client_config(tls).map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?;
        let name = rustls_pki_types::ServerName::try_from(request.uri().host().unwrap_or_default().to_string())
            .map_err(|_| tungstenite::Error::Tls(tungstenite::error::TlsError::InvalidDnsName))?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    let host = request.uri().host().ok_or(tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?;
    let port = request
        .uri()
        .port_u16()
        .or_else(|| match request.uri().scheme_str() {
            Some("wss") => Some(443),
            Some("ws") => Some(80),
            _ => None,
        })
        .ok_or(tungstenite::Error::Url(tungstenite::error::UrlError::UnsupportedUrlScheme))?;
    let tcp = TcpStream::connect(format!("{host}:{port}")).await?;
    tcp.set_nodelay(true)?;
    let std = tcp.into_std()?;
    let handshake = runtime().spawn(async move {
        let tcp = TcpStream::from_std(std)?;
        #[cfg(feature = "tls")]
        let tcp = match connector {
            Some((connector, name)) => MaybeTlsStream::Rustls(connector.connect(name, tcp).await?),
            None => MaybeTlsStream::Plain(tcp),
        };
        // Without TLS compiled in, `ConnectionConfig::validate` refuses wss:// URLs.
        #[cfg(not(feature = "tls"))]
        let tcp = MaybeTlsStream::Plain(tcp);
        let pulse = Arc::new(Pulse::default());
        // Our upgrade, not tungstenite's: it would log the token (see `upgrade`).
        let counted = Counted::new(tcp, Arc::clone(&pulse));
        let (stream, _response) = crate::upgrade::client(counted, request, ws_config).await?;
        Ok::<_, tungstenite::Error>(start(stream, pulse, outbound_capacity, limits))
    });
    handshake.await.map_err(|e| tungstenite::Error::Io(std::io::Error::other(format!("handshake task: {e}"))))?
}

/// Starts the reader and writer of an open WebSocket (on the network runtime).
fn start(
    stream: Ws,
    pulse: Arc<Pulse>,
    outbound_capacity: usize,
    limits: DecodeLimits,
) -> (SessionIo, mpsc::Receiver<Inbound>) {
    let (sink, source) = stream.split();
    let (outbound, queue) = mpsc::channel::<Message>(outbound_capacity);
    let (tx, inbound) = mpsc::channel::<Inbound>(INBOUND_CAPACITY);
    let writer = tokio::spawn(write(sink, queue, tx.clone())).abort_handle();
    let reader = tokio::spawn(read(source, tx, Arc::clone(&pulse), limits)).abort_handle();
    (SessionIo { outbound, pulse, reader, writer }, inbound)
}

async fn write(mut sink: SplitSink<Ws, Message>, mut queue: mpsc::Receiver<Message>, tx: mpsc::Sender<Inbound>) {
    while let Some(frame) = queue.recv().await {
        let closing = matches!(frame, Message::Close(_));
        if let Err(e) = sink.send(frame).await {
            let _ = tx.send(Inbound::Ended(format!("write error: {e}"))).await;
            return;
        }
        if closing {
            return;
        }
    }
    let _ = sink.close().await;
}

async fn read(mut source: SplitStream<Ws>, tx: mpsc::Sender<Inbound>, pulse: Arc<Pulse>, limits: DecodeLimits) {
    loop {
        pulse.busy.store(false, Ordering::Release);
        let next = source.next().await;
        pulse.busy.store(true, Ordering::Release);
        pulse.frames.fetch_add(1, Ordering::AcqRel);
        let event = match next {
            Some(Ok(Message::Binary(frame))) => {
                let message = codec::decode_server_message(&frame, limits).map(|mut message| {
                    codec::decompress_updates(&mut message, limits);
                    message
                });
                Inbound::Message { wire_size: frame.len(), message }
            }
            Some(Ok(Message::Pong(payload))) => Inbound::Pong(payload),
            Some(Ok(Message::Text(text))) => Inbound::Text(text.len()),
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => Inbound::Ended(match frame {
                Some(f) => format!("server closed the connection ({}: {})", f.code, f.reason),
                None => "server closed the connection".to_string(),
            }),
            Some(Err(e)) => Inbound::Ended(format!("read error: {e}")),
            None => Inbound::Ended("connection closed without a close frame".to_string()),
        };
        let last = matches!(event, Inbound::Ended(_));
        if tx.send(event).await.is_err() || last {
            pulse.busy.store(false, Ordering::Release);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn every_byte_read_is_counted_as_it_arrives() {
        let (mut far, near) = tokio::io::duplex(64);
        let pulse = Arc::new(Pulse::default());
        let mut counted = Counted::new(near, Arc::clone(&pulse));
        far.write_all(b"half a frame").await.unwrap();
        let mut buf = [0u8; 5];
        counted.read_exact(&mut buf).await.unwrap();
        assert_eq!(pulse.bytes(), 5, "counted before any frame is whole");
        assert_eq!(pulse.frames(), 0);
        counted.write_all(b"pong").await.unwrap();
        assert_eq!(pulse.bytes(), 5, "writes are not counted");
    }
}
