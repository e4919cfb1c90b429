//! A hostile SpacetimeDB server on loopback, for tests: it accepts the
//! WebSocket and then misbehaves (garbage, bad tags, decompression bombs, huge
//! length claims, silence, cut frames, odd close codes), refuses the upgrade,
//! never answers it, or serves a hostile schema. Or it forwards every
//! connection to a real server, so that a test can switch between "good" and
//! "hostile" under one URL.
//!
//! It runs on its own thread with its own tokio runtime on the real clock, so a
//! test on tokio's paused clock can use it. It is a real server (a TCP
//! listener speaking HTTP and WebSocket), not a mock of the client's parts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use spacetimedb_client_api_messages::websocket as ws;
use spacetimedb_lib::{ConnectionId, Identity};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, Message};
use tokio_tungstenite::WebSocketStream;

use spacetimedb_sats::{AlgebraicType, AlgebraicTypeRef, ProductTypeElement, Typespace};

use crate::codec::{self, Compression, ServerMessage};

/// What the server does after the WebSocket upgrade's frames.
#[derive(Debug, Clone)]
pub enum After {
    /// Keep the connection open (answering pings) and send nothing more.
    Hold,
    /// Send a close frame with this code and reason.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// How the server treats a WebSocket connection.
#[derive(Debug, Clone)]
pub enum Case {
    /// Pass every connection (WebSocket and HTTP) through to a real server.
    Forward(SocketAddr),
    /// Upgrade, send these frames, then do `then`.
    Frames {
        /// The frames, in order.
        frames: Vec<Message>,
        /// What comes after them.
        then: After,
    },
    /// Upgrade, then write these raw bytes on the socket (say, a frame cut off) and drop it.
    RawAfterUpgrade(Vec<u8>),
    /// Read the upgrade request and never answer it.
    NeverAnswer,
    /// Answer the upgrade request with this HTTP status and body.
    Http(u16, String),
}

/// How the server answers `GET …/schema` (unless it forwards).
#[derive(Debug, Clone)]
pub enum SchemaCase {
    /// 200 with this JSON.
    Json(Arc<String>),
    /// 200 with a body that never ends.
    Endless,
    /// Read the request and never answer.
    NeverAnswer,
    /// This HTTP status with a short body.
    Status(u16),
}

#[derive(Debug)]
struct Shared {
    case: Mutex<Case>,
    schema: Mutex<SchemaCase>,
    accepted: AtomicUsize,
    upgrades: AtomicUsize,
    schema_requests: AtomicUsize,
}

/// The hostile server. Stops when dropped.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cut: tokio::sync::watch::Sender<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileServer {
    /// Starts a server on a free loopback port that behaves as `case` and
    /// serves the schema of an empty module.
    pub fn start(case: Case) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            case: Mutex::new(case),
            schema: Mutex::new(SchemaCase::Json(Arc::new(empty_module_schema()))),
            accepted: AtomicUsize::new(0),
            upgrades: AtomicUsize::new(0),
            schema_requests: AtomicUsize::new(0),
        });
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let serving = shared.clone();
        let thread = std::thread::Builder::new().name("hostile-server".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            serving.accepted.fetch_add(1, Ordering::SeqCst);
                            let shared = serving.clone();
                            // A clone starts from the version the original saw (the
                            // first); only cuts from now on end this connection.
                            let mut cut = cut_rx.clone();
                            cut.borrow_and_update();
                            tokio::spawn(async move {
                                tokio::select! {
                                    _ = serve(stream, shared) => {}
                                    _ = cut.changed() => {}
                                }
                            });
                        }
                    }
                }
            });
        })?;
        Ok(Self { addr, shared, cut, stop: Some(stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How new connections are treated from now on.
    pub fn set_case(&self, case: Case) {
        *self.shared.case.lock().unwrap_or_else(PoisonError::into_inner) = case;
    }

    /// How schema requests are answered from now on.
    pub fn set_schema(&self, schema: SchemaCase) {
        *self.shared.schema.lock().unwrap_or_else(PoisonError::into_inner) = schema;
    }

    /// Cuts every open connection (without a close frame).
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// WebSocket upgrades answered (101) so far.
    pub fn upgrades(&self) -> usize {
        self.shared.upgrades.load(Ordering::SeqCst)
    }

    /// Schema requests received so far (forwarded ones too).
    pub fn schema_requests(&self) -> usize {
        self.shared.schema_requests.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.cut_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads an HTTP request head (at most 16 KiB).
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 << 10 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(head) = read_head(&mut stream).await else { return };
    let case = shared.case.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("");
    if let Case::Forward(upstream) = case {
        // Counted as well: a test can tell a client that fetched no schema.
        if path.contains("/schema") {
            shared.schema_requests.fetch_add(1, Ordering::SeqCst);
        }
        let Ok(mut up) = TcpStream::connect(upstream).await else { return };
        if up.write_all(&head).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
        }
        return;
    }
    if path.contains("/schema") {
        shared.schema_requests.fetch_add(1, Ordering::SeqCst);
        let schema = shared.schema.lock().unwrap_or_else(PoisonError::into_inner).clone();
        return serve_schema(stream, schema).await;
    }
    let key = header(&text, "sec-websocket-key").unwrap_or("").to_string();
    match case {
        Case::Forward(_) => {}
        Case::NeverAnswer => std::future::pending::<()>().await,
        Case::Http(status, body) => {
            let response = format!(
                "HTTP/1.1 {status} Hostile\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Case::RawAfterUpgrade(bytes) => {
            if upgrade(&mut stream, &key, &shared).await {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Case::Frames { frames, then } => {
            if !upgrade(&mut stream, &key, &shared).await {
                return;
            }
            let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
            for frame in frames {
                if ws.send(frame).await.is_err() {
                    return;
                }
            }
            match then {
                After::Hold => while ws.next().await.is_some_and(|m| m.is_ok()) {},
                After::Close(code, reason) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    let _ = ws.send(Message::Close(Some(frame))).await;
                    // Wait (briefly) for the client's answer.
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
                }
                After::Drop => {}
            }
        }
    }
}

async fn upgrade(stream: &mut TcpStream, key: &str, shared: &Shared) -> bool {
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {}\r\nsec-websocket-protocol: {}\r\n\r\n",
        derive_accept_key(key.as_bytes()),
        codec::SUBPROTOCOL
    );
    let ok = stream.write_all(response.as_bytes()).await.is_ok();
    if ok {
        shared.upgrades.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn serve_schema(mut stream: TcpStream, schema: SchemaCase) {
    match schema {
        SchemaCase::NeverAnswer => std::future::pending::<()>().await,
        SchemaCase::Status(status) => {
            let body = "hostile";
            let response = format!("HTTP/1.1 {status} Hostile\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            let _ = stream.write_all(response.as_bytes()).await;
        }
        SchemaCase::Json(json) => {
            let response =
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", json.len());
            if stream.write_all(response.as_bytes()).await.is_ok() {
                let _ = stream.write_all(json.as_bytes()).await;
            }
        }
        SchemaCase::Endless => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1099511627776\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 << 10];
            while stream.write_all(&chunk).await.is_ok() {}
        }
    }
    let _ = stream.shutdown().await;
}

/// The schema JSON of a module with nothing in it.
pub fn empty_module_schema() -> String {
    let raw = spacetimedb_lib::db::raw_def::v9::RawModuleDefV9::default();
    serde_json::to_string(&spacetimedb_sats::ser::serde::SerializeWrapper::new(&raw)).unwrap_or_default()
}

/// A schema whose one table's row type is reached through a chain of `depth` type references.
pub fn ref_chain_schema(depth: u32) -> String {
    let mut types: Vec<AlgebraicType> = (1..=depth).map(|i| AlgebraicType::Ref(AlgebraicTypeRef(i))).collect();
    types.push(AlgebraicType::product(Box::<[ProductTypeElement]>::default()));
    schema_with_types(types)
}

/// A schema whose one table's row type contains itself.
pub fn recursive_schema() -> String {
    let me = ProductTypeElement::new_named(AlgebraicType::Ref(AlgebraicTypeRef(0)), "me");
    schema_with_types(vec![AlgebraicType::product(vec![me].into_boxed_slice())])
}

/// A schema whose one table's row type is an array nested `depth` deep
/// (written out in the JSON, not through references).
pub fn deep_schema(depth: usize) -> String {
    // Serialise a one-level array and repeat its opening and closing around the element.
    let marker = AlgebraicType::I128;
    let one = schema_with_types(vec![AlgebraicType::product(
        vec![ProductTypeElement::new_named(AlgebraicType::array(marker), "a")].into_boxed_slice(),
    )]);
    let Some(at) = one.find(r#"{"Array":"#) else { return one };
    let inner = r#"{"I128":[]}"#;
    let Some(rel) = one[at..].find(inner) else { return one };
    let open = &one[at..at + rel];
    let close_len = one[at + rel + inner.len()..].find('}').map_or(0, |i| i + 1);
    let close = &one[at + rel + inner.len()..at + rel + inner.len() + close_len];
    let mut out = String::with_capacity(one.len() + depth * (open.len() + close.len()));
    out.push_str(&one[..at]);
    for _ in 0..depth {
        out.push_str(open);
    }
    out.push_str(r#"{"U8":[]}"#);
    for _ in 0..depth {
        out.push_str(close);
    }
    out.push_str(&one[at + rel + inner.len() + close_len..]);
    out
}

/// A schema whose types double at every level: `depth` levels of `(T, T)`
/// products, so that inlining its references would make `2^depth` nodes.
pub fn doubling_schema(depth: u32) -> String {
    let mut types: Vec<AlgebraicType> = (1..=depth)
        .map(|i| {
            let r = AlgebraicType::Ref(AlgebraicTypeRef(i));
            AlgebraicType::product(
                vec![ProductTypeElement::new(r.clone(), None), ProductTypeElement::new(r, None)].into_boxed_slice(),
            )
        })
        .collect();
    types.push(AlgebraicType::product(Box::<[ProductTypeElement]>::default()));
    schema_with_types(types)
}

/// A module with `types` as its typespace and one table `t` whose row is type 0.
fn schema_with_types(types: Vec<AlgebraicType>) -> String {
    use spacetimedb_lib::db::raw_def::v9::{RawModuleDefV9, RawTableDefV9, TableAccess, TableType};
    let raw = RawModuleDefV9 {
        typespace: Typespace::new(types),
        tables: vec![RawTableDefV9 {
            name: "t".into(),
            product_type_ref: AlgebraicTypeRef(0),
            primary_key: spacetimedb_primitives::ColList::empty(),
            indexes: Vec::new(),
            constraints: Vec::new(),
            sequences: Vec::new(),
            schedule: None,
            table_type: TableType::User,
            table_access: TableAccess::Public,
        }],
        ..RawModuleDefV9::default()
    };
    serde_json::to_string(&spacetimedb_sats::ser::serde::SerializeWrapper::new(&raw)).unwrap_or_default()
}

/// The encoded `IdentityToken` frame a server sends first.
pub fn identity_frame() -> Vec<u8> {
    let message: ServerMessage = ws::ServerMessage::IdentityToken(ws::IdentityToken {
        identity: Identity::ZERO,
        token: "hostile-token".into(),
        connection_id: ConnectionId::ZERO,
    });
    codec::encode_server_message(&message, Compression::None).unwrap_or_default()
}

/// One named hostile WebSocket case and what the client must say about it.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// A short name, as in docs/RELIABILITY.md.
    pub name: &'static str,
    /// The server's behaviour.
    pub case: Case,
    /// A piece of the reason the client must give when the attempt or session fails.
    pub reason: &'static str,
}

/// Every hostile WebSocket case. `bomb` is the decompressed size of the
/// decompression bomb (make it exceed the client's `max_message_size`).
pub fn catalogue(bomb: usize) -> Vec<Hostile> {
    let identity = identity_frame();
    let binary = |bytes: Vec<u8>| Message::Binary(bytes.into());
    let then_hold = |frames: Vec<Message>| Case::Frames { frames, then: After::Hold };
    let identity_tag = identity.get(1).copied().unwrap_or(3);
    let mut huge_claim = vec![ws::SERVER_MSG_COMPRESSION_TAG_NONE, identity_tag];
    huge_claim.extend_from_slice(&[0u8; 32]);
    huge_claim.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut gzip_bomb = vec![ws::SERVER_MSG_COMPRESSION_TAG_GZIP];
    ws::gzip_compress(&vec![0u8; bomb], &mut gzip_bomb);
    let mut brotli_bomb = vec![ws::SERVER_MSG_COMPRESSION_TAG_BROTLI];
    ws::brotli_compress(&vec![0u8; bomb], &mut brotli_bomb);
    vec![
        Hostile {
            name: "truncated frame",
            case: then_hold(vec![binary(identity[..identity.len() / 2].to_vec())]),
            reason: "undecodable frame",
        },
        Hostile {
            name: "unknown message tag",
            case: then_hold(vec![binary(vec![ws::SERVER_MSG_COMPRESSION_TAG_NONE, 0xEE, 1, 2, 3])]),
            reason: "undecodable frame",
        },
        Hostile {
            name: "unknown compression tag",
            case: then_hold(vec![binary(vec![9, 0, 1, 2])]),
            reason: "unknown compression tag 9",
        },
        Hostile {
            name: "bad brotli",
            case: then_hold(vec![binary(vec![ws::SERVER_MSG_COMPRESSION_TAG_BROTLI, 0xDE, 0xAD, 0xBE, 0xEF])]),
            reason: "brotli payload does not decompress",
        },
        Hostile {
            name: "bad gzip",
            case: then_hold(vec![binary(vec![ws::SERVER_MSG_COMPRESSION_TAG_GZIP, 0xDE, 0xAD, 0xBE, 0xEF])]),
            reason: "gzip payload does not decompress",
        },
        Hostile { name: "gzip decompression bomb", case: then_hold(vec![binary(gzip_bomb)]), reason: "over the limit" },
        Hostile {
            name: "brotli decompression bomb",
            case: then_hold(vec![binary(brotli_bomb)]),
            reason: "over the limit",
        },
        Hostile { name: "huge length claim", case: then_hold(vec![binary(huge_claim)]), reason: "undecodable frame" },
        Hostile { name: "empty binary frame", case: then_hold(vec![binary(Vec::new())]), reason: "empty frame" },
        Hostile {
            name: "garbage after the identity",
            case: then_hold(vec![binary(identity.clone()), binary(vec![0, 0xFF, 0xFF, 0xFF])]),
            reason: "undecodable frame",
        },
        Hostile {
            name: "text frames only",
            case: then_hold(vec![Message::Text(r#"{"IdentityToken":{}}"#.into())]),
            reason: "no IdentityToken",
        },
        Hostile { name: "silent after accept", case: then_hold(Vec::new()), reason: "no IdentityToken" },
        Hostile {
            name: "close mid-frame",
            // A binary frame header claiming 16 KiB, then 3 bytes, then EOF.
            case: Case::RawAfterUpgrade(vec![0x82, 0x7E, 0x40, 0x00, 1, 2, 3]),
            reason: "",
        },
        Hostile {
            name: "odd close code",
            case: Case::Frames { frames: Vec::new(), then: After::Close(4999, "go away".into()) },
            reason: "4999",
        },
        Hostile {
            name: "identity, then close 1011",
            case: Case::Frames { frames: vec![binary(identity)], then: After::Close(1011, "oops".into()) },
            reason: "1011",
        },
        Hostile {
            name: "dropped after the upgrade",
            case: Case::Frames { frames: Vec::new(), then: After::Drop },
            reason: "",
        },
        Hostile { name: "upgrade never answered", case: Case::NeverAnswer, reason: "handshake timed out" },
        Hostile {
            name: "HTTP 500 instead of the upgrade",
            case: Case::Http(500, "internal error".into()),
            reason: "HTTP 500",
        },
        Hostile { name: "HTTP 200 instead of the upgrade", case: Case::Http(200, "hello".into()), reason: "200" },
    ]
}
