//! The wire format: SpacetimeDB's v1 BSATN WebSocket protocol.
//!
//! Messages are the official types of `spacetimedb-client-api-messages`, so the
//! client and the server cannot disagree about a field. What this module adds is
//! the part a client must get right on its own:
//!
//! * every binary frame from the server starts with a compression tag
//!   (0 none, 1 brotli, 2 gzip) and the rest is the BSATN of a `ServerMessage`;
//! * query updates inside a message may be compressed again, one by one;
//! * nothing that arrives is trusted: frames are checked by [`crate::guard`]
//!   before they are decoded, decompression is bounded, and every failure is a
//!   [`CodecError`] that says what was wrong. No input makes this module panic.
//!
//! Architecture invariant: only this crate knows the wire format. Other crates
//! see decoded [`ServerMessage`]s and rows as bytes plus a table name.

use std::io::Read as _;
use std::sync::OnceLock;

use bytes::Bytes;
use spacetimedb_client_api_messages::websocket as ws;
use spacetimedb_sats::{bsatn, AlgebraicType, Typespace};

use crate::guard;
use crate::typespace::TypespaceBuilder;

/// A message from the server, with rows still BSATN-encoded.
pub type ServerMessage = ws::ServerMessage<ws::BsatnFormat>;
/// A message to the server; reducer arguments are BSATN bytes.
pub type ClientMessage = ws::ClientMessage<Bytes>;
/// The changes to one table in a transaction or subscription.
pub type TableUpdate = ws::TableUpdate<ws::BsatnFormat>;
/// The inserted and deleted rows of one query, decompressed.
pub type QueryUpdate = ws::QueryUpdate<ws::BsatnFormat>;
/// A set of table updates.
pub type DatabaseUpdate = ws::DatabaseUpdate<ws::BsatnFormat>;

/// The WebSocket subprotocol this codec speaks.
pub const SUBPROTOCOL: &str = ws::BIN_PROTOCOL;

/// Largest frame (and largest decompressed payload) accepted by default: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// How the server compresses what it sends us. Chosen per connection.
///
/// The default, [`Compression::Auto`], follows `cargo xtask bench --scenario
/// compression` (docs/BENCHMARKS.md): on loopback nothing compressed loads a
/// 100k-row subscription quickest (the server's brotli and the client's
/// decompression are pure cost there); on 100 and 10 Mbit/s links gzip does
/// (brotli at the server's fastest level compresses less and costs more), and
/// no compression is 1.6 to 2.4 times slower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Chosen by the server's address ([`Compression::for_server`]): `None`
    /// for a loopback server, `Gzip` for any other (the default).
    #[default]
    Auto,
    /// Nothing is compressed: least CPU, most bytes.
    None,
    /// Brotli for payloads over 1 KiB (the server's own default, and the official SDK's).
    Brotli,
    /// Gzip for payloads over 1 KiB.
    Gzip,
}

impl Compression {
    /// What to ask a server at `server_url` for: `Auto` resolved (`None` for
    /// `localhost` or a loopback address, `Gzip` otherwise), any other as it is.
    pub fn for_server(self, server_url: &str) -> Compression {
        match self {
            Compression::Auto if is_loopback(server_url) => Compression::None,
            Compression::Auto => Compression::Gzip,
            chosen => chosen,
        }
    }

    /// The value of the `compression` query parameter of `/subscribe` (`Auto`
    /// as for a remote server: resolve it first with [`for_server`](Self::for_server)).
    pub fn as_query_value(self) -> &'static str {
        match self {
            Compression::None => "None",
            Compression::Brotli => "Brotli",
            Compression::Gzip | Compression::Auto => "Gzip",
        }
    }

    /// Its name, as [`from_name`](Self::from_name) reads it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Auto => "auto",
            Compression::None => "none",
            Compression::Brotli => "brotli",
            Compression::Gzip => "gzip",
        }
    }

    /// The compression with this name (`auto`, `none`, `brotli`, `gzip`; any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Some(Compression::Auto),
            "none" => Some(Compression::None),
            "brotli" => Some(Compression::Brotli),
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// Whether the host of `url` (`scheme://host[:port]/…`) is `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What went wrong turning bytes into a message or a row, or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame had no bytes at all, so not even a compression tag.
    #[error("empty frame: a server message starts with a compression tag byte")]
    EmptyFrame,
    /// The first byte of a frame is not 0 (none), 1 (brotli) or 2 (gzip).
    #[error("unknown compression tag {0} (expected 0 none, 1 brotli or 2 gzip)")]
    UnknownCompressionTag(u8),
    /// A compressed payload did not decompress.
    #[error("{scheme} payload does not decompress: {reason}")]
    Decompress {
        /// `brotli` or `gzip`.
        scheme: &'static str,
        /// What the decompressor said.
        reason: String,
    },
    /// A frame or its decompressed payload is larger than allowed.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Which payload.
        what: &'static str,
        /// Its size (a lower bound for a decompression that was cut off).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes do not have the shape of the expected type.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Where and why.
        #[source]
        source: guard::GuardError,
    },
    /// The shape was right but a value was not (as reported by the SATS decoder).
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// What the decoder said.
        reason: String,
    },
    /// A value could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// What the encoder said.
        reason: String,
    },
}

/// The limits a decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest frame, and the largest decompressed payload, in bytes.
    pub max_message_size: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_message_size: DEFAULT_MAX_MESSAGE_SIZE }
    }
}

/// The `ServerMessage` type and the typespace its references live in, built once.
fn server_message_type() -> &'static (Typespace, AlgebraicType, Typespace, AlgebraicType) {
    static TYPE: OnceLock<(Typespace, AlgebraicType, Typespace, AlgebraicType)> = OnceLock::new();
    TYPE.get_or_init(|| {
        let (ts, ty) = TypespaceBuilder::build::<ServerMessage>();
        let (qts, qty) = TypespaceBuilder::build::<QueryUpdate>();
        (ts, ty, qts, qty)
    })
}

/// Whether `message` carries rows or a subscription's outcome: a subscription
/// applied, removed or refused, or a transaction that changed at least one
/// table. A reducer call's own `TransactionUpdate` with no table in it (the
/// caller subscribed to nothing it touched), a failed transaction, an identity
/// or a one-off query's answer do not.
pub fn carries_rows(message: &ServerMessage) -> bool {
    match message {
        ws::ServerMessage::InitialSubscription(_)
        | ws::ServerMessage::SubscribeApplied(_)
        | ws::ServerMessage::UnsubscribeApplied(_)
        | ws::ServerMessage::SubscriptionError(_)
        | ws::ServerMessage::SubscribeMultiApplied(_)
        | ws::ServerMessage::UnsubscribeMultiApplied(_) => true,
        ws::ServerMessage::TransactionUpdate(tx) => match &tx.status {
            ws::UpdateStatus::Committed(update) => !update.tables.is_empty(),
            _ => false,
        },
        ws::ServerMessage::TransactionUpdateLight(tx) => !tx.update.tables.is_empty(),
        ws::ServerMessage::IdentityToken(_) | ws::ServerMessage::OneOffQueryResponse(_) => false,
    }
}

/// The name of a server message's variant, for logs and `Debug`.
pub fn server_message_kind(message: &ServerMessage) -> &'static str {
    match message {
        ws::ServerMessage::InitialSubscription(_) => "InitialSubscription",
        ws::ServerMessage::TransactionUpdate(_) => "TransactionUpdate",
        ws::ServerMessage::TransactionUpdateLight(_) => "TransactionUpdateLight",
        ws::ServerMessage::IdentityToken(_) => "IdentityToken",
        ws::ServerMessage::OneOffQueryResponse(_) => "OneOffQueryResponse",
        ws::ServerMessage::SubscribeApplied(_) => "SubscribeApplied",
        ws::ServerMessage::UnsubscribeApplied(_) => "UnsubscribeApplied",
        ws::ServerMessage::SubscriptionError(_) => "SubscriptionError",
        ws::ServerMessage::SubscribeMultiApplied(_) => "SubscribeMultiApplied",
        ws::ServerMessage::UnsubscribeMultiApplied(_) => "UnsubscribeMultiApplied",
    }
}

/// The name of a client message's variant, for logs and `Debug`.
pub fn client_message_kind(message: &ClientMessage) -> &'static str {
    match message {
        ws::ClientMessage::CallReducer(_) => "CallReducer",
        ws::ClientMessage::Subscribe(_) => "Subscribe",
        ws::ClientMessage::OneOffQuery(_) => "OneOffQuery",
        ws::ClientMessage::SubscribeSingle(_) => "SubscribeSingle",
        ws::ClientMessage::SubscribeMulti(_) => "SubscribeMulti",
        ws::ClientMessage::Unsubscribe(_) => "Unsubscribe",
        ws::ClientMessage::UnsubscribeMulti(_) => "UnsubscribeMulti",
    }
}

/// Encodes a client message as the payload of a binary WebSocket frame.
pub fn encode_client_message(message: &ClientMessage) -> Result<Vec<u8>, CodecError> {
    bsatn::to_vec(message).map_err(|e| CodecError::Encode { what: "client message", reason: e.to_string() })
}

/// Decodes a binary WebSocket frame from the server: tag, decompression, BSATN.
pub fn decode_server_message(frame: &[u8], limits: DecodeLimits) -> Result<ServerMessage, CodecError> {
    if frame.len() > limits.max_message_size {
        return Err(CodecError::TooLarge { what: "frame", size: frame.len(), limit: limits.max_message_size });
    }
    let (&tag, body) = frame.split_first().ok_or(CodecError::EmptyFrame)?;
    let decompressed;
    let payload = match tag {
        ws::SERVER_MSG_COMPRESSION_TAG_NONE => body,
        ws::SERVER_MSG_COMPRESSION_TAG_BROTLI => {
            decompressed = decompress("brotli", body, limits.max_message_size)?;
            &decompressed[..]
        }
        ws::SERVER_MSG_COMPRESSION_TAG_GZIP => {
            decompressed = decompress("gzip", body, limits.max_message_size)?;
            &decompressed[..]
        }
        other => return Err(CodecError::UnknownCompressionTag(other)),
    };
    let (ts, ty, _, _) = server_message_type();
    decode_checked(ts, ty, payload, "server message")
}

/// Encodes a server message as the server would (for fakes and tests).
pub fn encode_server_message(message: &ServerMessage, compression: Compression) -> Result<Vec<u8>, CodecError> {
    let body =
        bsatn::to_vec(message).map_err(|e| CodecError::Encode { what: "server message", reason: e.to_string() })?;
    let mut frame = Vec::with_capacity(body.len() + 1);
    match compression {
        Compression::None | Compression::Auto => {
            frame.push(ws::SERVER_MSG_COMPRESSION_TAG_NONE);
            frame.extend_from_slice(&body);
        }
        Compression::Brotli => {
            frame.push(ws::SERVER_MSG_COMPRESSION_TAG_BROTLI);
            ws::brotli_compress(&body, &mut frame);
        }
        Compression::Gzip => {
            frame.push(ws::SERVER_MSG_COMPRESSION_TAG_GZIP);
            ws::gzip_compress(&body, &mut frame);
        }
    }
    Ok(frame)
}

/// Turns a possibly compressed query update into its rows.
///
/// The official `maybe_decompress` panics on bad input; this returns an error.
pub fn decompress_query_update(
    update: &ws::CompressableQueryUpdate<ws::BsatnFormat>,
    limits: DecodeLimits,
) -> Result<QueryUpdate, CodecError> {
    let bytes = match update {
        ws::CompressableQueryUpdate::Uncompressed(update) => return Ok(update.clone()),
        ws::CompressableQueryUpdate::Brotli(bytes) => decompress("brotli", bytes, limits.max_message_size)?,
        ws::CompressableQueryUpdate::Gzip(bytes) => decompress("gzip", bytes, limits.max_message_size)?,
    };
    let (_, _, ts, ty) = server_message_type();
    decode_checked(ts, ty, &bytes, "query update")
}

/// Decompresses, in place, every compressed query update a message carries, so
/// that whoever reads the message later finds them
/// [`Uncompressed`](ws::CompressableQueryUpdate::Uncompressed) (the session's
/// reader does this off the heartbeat's thread). An update that does not
/// decompress is left as it is: [`decompress_query_update`] reports it to its
/// reader, as before.
pub fn decompress_updates(message: &mut ServerMessage, limits: DecodeLimits) {
    let one = |table: &mut TableUpdate| {
        for update in table.updates.iter_mut() {
            if matches!(update, ws::CompressableQueryUpdate::Uncompressed(_)) {
                continue;
            }
            if let Ok(plain) = decompress_query_update(update, limits) {
                *update = ws::CompressableQueryUpdate::Uncompressed(plain);
            }
        }
    };
    let database = match message {
        ws::ServerMessage::InitialSubscription(m) => &mut m.database_update,
        ws::ServerMessage::TransactionUpdate(m) => match &mut m.status {
            ws::UpdateStatus::Committed(update) => update,
            _ => return,
        },
        ws::ServerMessage::TransactionUpdateLight(m) => &mut m.update,
        ws::ServerMessage::SubscribeMultiApplied(m) => &mut m.update,
        ws::ServerMessage::UnsubscribeMultiApplied(m) => &mut m.update,
        ws::ServerMessage::SubscribeApplied(m) => return one(&mut m.rows.table_rows),
        ws::ServerMessage::UnsubscribeApplied(m) => return one(&mut m.rows.table_rows),
        _ => return,
    };
    database.tables.iter_mut().for_each(one);
}

/// Iterates over the rows of a row list (each row's BSATN bytes).
///
/// Safe on any list that came through [`decode_server_message`] or
/// [`decompress_query_update`]: their guard has checked the list's size hint.
pub fn rows(list: &ws::BsatnRowList) -> impl Iterator<Item = Bytes> + '_ {
    list.into_iter()
}

/// How many rows a row list holds ([`ws::BsatnRowList::get`] reads one).
pub fn row_count(list: &ws::BsatnRowList) -> usize {
    use spacetimedb_client_api_messages::websocket::RowListLen as _;
    list.len()
}

fn decode_checked<T: for<'de> spacetimedb_sats::de::Deserialize<'de>>(
    ts: &Typespace,
    ty: &AlgebraicType,
    payload: &[u8],
    what: &'static str,
) -> Result<T, CodecError> {
    guard::check(ts, ty, payload).map_err(|source| CodecError::Malformed { what, source })?;
    bsatn::from_slice(payload).map_err(|e| CodecError::Decode { what: what.to_string(), reason: e.to_string() })
}

/// How many times larger than its compressed form a payload is assumed to be
/// when its buffer is sized: the server compresses at brotli's fastest level,
/// where its authors measured 7:1 to 10:1 on large subscription updates.
const EXPECTED_RATIO: usize = 10;

/// The brotli reader's input buffer: the input is in memory already, so
/// large steps (fewer calls into the decoder) cost nothing.
const BROTLI_BUFFER: usize = 64 * 1024;

fn decompress(scheme: &'static str, bytes: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    // Sized once for the usual ratio: growing by doubling would copy the
    // payload again at every step and fault in each new block's pages. Pages
    // reserved but never written cost address space, not memory.
    let estimate = bytes.len().saturating_mul(EXPECTED_RATIO).saturating_add(4096).min(limit.saturating_add(1));
    let mut out = Vec::with_capacity(estimate);
    // Read one byte past the limit, so that an oversized payload is noticed.
    // Saturating: a limit of `usize::MAX` (no limit) must not overflow to 0.
    let cap = (limit as u64).saturating_add(1);
    let result = match scheme {
        "brotli" => brotli::Decompressor::new(bytes, BROTLI_BUFFER).take(cap).read_to_end(&mut out),
        _ => flate2::read::GzDecoder::new(bytes).take(cap).read_to_end(&mut out),
    };
    result.map_err(|e| CodecError::Decompress { scheme, reason: e.to_string() })?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { what: "decompressed payload", size: out.len(), limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compression_is_none_on_loopback_and_gzip_elsewhere() {
        for url in [
            "http://127.0.0.1:3000",
            "ws://localhost",
            "https://[::1]:443/x",
            "http://127.8.0.1",
            "http://u:p@LOCALHOST:1",
        ] {
            assert_eq!(Compression::Auto.for_server(url), Compression::None, "{url}");
        }
        for url in
            ["https://maincloud.spacetimedb.com", "http://10.0.0.2:3000", "http://[2001:db8::1]:80", "example.com"]
        {
            assert_eq!(Compression::Auto.for_server(url), Compression::Gzip, "{url}");
        }
        assert_eq!(Compression::Brotli.for_server("http://127.0.0.1:3000"), Compression::Brotli, "a choice is kept");
        for c in [Compression::Auto, Compression::None, Compression::Brotli, Compression::Gzip] {
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
    }

    fn error_of(result: Result<ServerMessage, CodecError>) -> CodecError {
        match result {
            Ok(m) => panic!("decoded a {}", server_message_kind(&m)),
            Err(e) => e,
        }
    }

    fn transaction(status: ws::UpdateStatus<ws::BsatnFormat>) -> ServerMessage {
        use spacetimedb_lib::{ConnectionId, Identity, TimeDuration, Timestamp};
        ws::ServerMessage::TransactionUpdate(ws::TransactionUpdate {
            status,
            timestamp: Timestamp::from_micros_since_unix_epoch(0),
            caller_identity: Identity::from_byte_array([1; 32]),
            caller_connection_id: ConnectionId::from_u128(1),
            reducer_call: ws::ReducerCallInfo {
                reducer_name: "move_player".into(),
                reducer_id: 1,
                args: Box::new([]),
                request_id: 7,
            },
            energy_quanta_used: spacetimedb_client_api_messages::energy::EnergyQuanta::new(0),
            total_host_execution_duration: TimeDuration::from_micros(20),
        })
    }

    #[test]
    fn only_messages_with_rows_or_subscription_outcomes_carry_rows() {
        let empty = ws::DatabaseUpdate { tables: Vec::new() };
        let one = ws::DatabaseUpdate {
            tables: vec![ws::TableUpdate {
                table_id: 4096u32.into(),
                table_name: "map".into(),
                num_rows: 0,
                updates: Vec::new().into(),
            }],
        };
        assert!(
            !carries_rows(&transaction(ws::UpdateStatus::Committed(empty))),
            "a call that touched nothing subscribed"
        );
        assert!(carries_rows(&transaction(ws::UpdateStatus::Committed(one))));
        assert!(!carries_rows(&transaction(ws::UpdateStatus::Failed("no".into()))));
        assert!(!carries_rows(&transaction(ws::UpdateStatus::OutOfEnergy)));
        let error = ws::ServerMessage::SubscriptionError(ws::SubscriptionError {
            total_host_execution_duration_micros: 0,
            request_id: None,
            query_id: Some(3),
            table_id: None,
            error: "refused".into(),
        });
        assert!(carries_rows(&error), "a refused subscription concerns the cache");
    }

    #[test]
    fn empty_and_unknown_tags_are_errors() {
        let limits = DecodeLimits::default();
        assert_eq!(error_of(decode_server_message(&[], limits)), CodecError::EmptyFrame);
        assert_eq!(error_of(decode_server_message(&[9, 0], limits)), CodecError::UnknownCompressionTag(9));
    }

    #[test]
    fn garbage_brotli_is_a_decompress_error() {
        let err = error_of(decode_server_message(&[1, 0xde, 0xad, 0xbe, 0xef], DecodeLimits::default()));
        assert!(matches!(err, CodecError::Decompress { scheme: "brotli", .. } | CodecError::Malformed { .. }), "{err}");
    }

    #[test]
    fn oversized_frames_are_refused() {
        let limits = DecodeLimits { max_message_size: 4 };
        let err = error_of(decode_server_message(&[0; 5], limits));
        assert!(matches!(err, CodecError::TooLarge { .. }));
    }
}
