//! The cache as a file: an image of a published snapshot that a client saves
//! and loads at its next launch, so that its tables read at once and are then
//! reconciled with the server's answer (only the differences fire).
//!
//! This module only turns a [`Snapshot`] into bytes and bytes back into the
//! rows to load; where the file lives, when it is written and whether it is
//! trusted for a given server, database and schema is the app's to decide.
//!
//! The format (little-endian), version 1:
//!
//! ```text
//! magic "SLCACHE\n", version u32, saved_at_ms u64,
//! server str, database str, schema str (the module's schema, JSON),
//! tables u32, per table: name str, rows u32, per row: count u32, bytes str,
//! crc32 u32 of everything before it          (str = u32 length, then bytes)
//! ```
//!
//! Architecture invariant: an image is never trusted: a short, overlong,
//! truncated or bit-flipped file, or one of another version, is refused with
//! [`SyncError::CacheImage`] before a single row is taken, and no length read
//! from it allocates more than the file holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::cache::{Snapshot, TableDelta};
use crate::error::SyncError;

const MAGIC: &[u8; 8] = b"SLCACHE\n";
/// The most queries an image may say hold one row (a larger count is damage).
const MAX_HOLDERS: u32 = 1 << 16;
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Whose state an image holds: the server, the database and the module's
/// schema it was saved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOrigin {
    /// The server's URL.
    pub server: String,
    /// The database's name or identity.
    pub database: String,
    /// The module's schema, as JSON (`ModuleSchema::to_json`).
    pub schema: String,
}

/// A loaded image: where it came from, when it was saved, and its rows, as
/// the deltas that load them into an empty cache (each row as many times as
/// live queries held it).
#[derive(Debug, Clone)]
pub struct CacheImage {
    /// Whose state it is.
    pub origin: ImageOrigin,
    /// When it was saved.
    pub saved_at: SystemTime,
    /// Its rows, one delta per table.
    pub tables: Vec<TableDelta>,
}

impl CacheImage {
    /// How many distinct rows it holds.
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.inserts.len()).sum()
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), SyncError> {
    put_u32(out, len32(bytes.len())?);
    out.extend_from_slice(bytes);
    Ok(())
}

fn len32(n: usize) -> Result<u32, SyncError> {
    u32::try_from(n).map_err(|_| SyncError::CacheImage(format!("{n} is too large for the format")))
}

/// The image of `snapshot` (every table, every row with its count), saved at
/// `saved_at` for `origin`.
pub fn encode(snapshot: &Snapshot, origin: &ImageOrigin, saved_at: SystemTime) -> Result<Vec<u8>, SyncError> {
    let view = snapshot.view();
    let mut tables = view.tables();
    tables.sort_unstable();
    let payload: usize = tables.iter().map(|t| view.count(t) * 8).sum::<usize>() + origin.schema.len() + 64;
    let mut out = Vec::with_capacity(payload);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    let ms = saved_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    out.extend_from_slice(&u64::try_from(ms).unwrap_or(u64::MAX).to_le_bytes());
    put_str(&mut out, origin.server.as_bytes())?;
    put_str(&mut out, origin.database.as_bytes())?;
    put_str(&mut out, origin.schema.as_bytes())?;
    put_u32(&mut out, len32(tables.len())?);
    for table in &tables {
        put_str(&mut out, table.as_bytes())?;
        put_u32(&mut out, len32(view.count(table))?);
        let mut failed = None;
        view.for_each_counted(table, |row, count| {
            put_u32(&mut out, count);
            if let Err(e) = put_str(&mut out, row.bytes()) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    Ok(out)
}

/// Reads the image in `bytes`: checked whole (magic, version, checksum,
/// every length) before any row is taken. The rows share `bytes`' buffer.
pub fn decode(bytes: Bytes) -> Result<CacheImage, SyncError> {
    let bad = |why: &str| SyncError::CacheImage(why.to_string());
    if bytes.len() < MAGIC.len() + 4 + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a spacelink cache file"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().map_err(|_| bad("truncated"))?) {
        return Err(bad("checksum mismatch: the file is corrupt or truncated"));
    }
    let body = bytes.slice(..bytes.len() - 4);
    let mut r = Reader { bytes: body, at: MAGIC.len() };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(SyncError::CacheImage(format!("format version {version}, this build reads {FORMAT_VERSION}")));
    }
    let saved_at = UNIX_EPOCH + Duration::from_millis(r.u64()?);
    let server = r.string()?;
    let database = r.string()?;
    let schema = r.string()?;
    let count = r.u32()? as usize;
    // Each table takes at least 8 bytes: a count beyond that is a lie.
    let mut tables = Vec::with_capacity(count.min(r.left() / 8));
    for _ in 0..count {
        let name = r.string()?;
        let rows = r.u32()? as usize;
        let mut delta = TableDelta::new(name);
        delta.inserts.reserve(rows.min(r.left() / 8));
        for _ in 0..rows {
            let times = r.u32()?;
            if times == 0 || times > MAX_HOLDERS {
                return Err(SyncError::CacheImage(format!("a row held by {times} queries")));
            }
            let row = r.str()?;
            for _ in 0..times {
                delta.inserts.push(row.clone());
            }
        }
        tables.push(delta);
    }
    if r.left() != 0 {
        return Err(bad("trailing bytes"));
    }
    Ok(CacheImage { origin: ImageOrigin { server, database, schema }, saved_at, tables })
}

struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<Bytes, SyncError> {
        if n > self.left() {
            return Err(SyncError::CacheImage("truncated: a length runs past the end".into()));
        }
        let out = self.bytes.slice(self.at..self.at + n);
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, SyncError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SyncError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<Bytes, SyncError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, SyncError> {
        let b = self.str()?;
        String::from_utf8(b.to_vec()).map_err(|_| SyncError::CacheImage("a name is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{ClientCache, RowKey, WholeRow};
    use proptest::prelude::*;

    fn origin() -> ImageOrigin {
        ImageOrigin { server: "http://127.0.0.1:3000".into(), database: "game".into(), schema: "{}".into() }
    }

    fn cache() -> ClientCache {
        let cache = ClientCache::new(WholeRow);
        cache.apply(&[
            TableDelta::new("item").insert(&b"sword"[..]).insert(&b"sword"[..]).insert(&b"shield"[..]),
            TableDelta::new("player").insert(&b"ann"[..]),
        ]);
        cache
    }

    #[test]
    fn an_image_loads_the_same_rows_and_counts() {
        let cache = cache();
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let bytes = encode(&cache.reader().snapshot(), &origin(), at).expect("encode");
        let image = decode(Bytes::from(bytes)).expect("decode");
        assert_eq!(image.origin, origin());
        assert_eq!(image.saved_at, at);
        assert_eq!(image.rows(), 4, "sword twice (two queries hold it), shield, ann");
        let loaded = cache.empty_like();
        loaded.apply(&image.tables);
        assert_eq!(loaded.count("item"), 2);
        assert_eq!(loaded.refcount("item", &RowKey::from(&b"sword"[..])), 2);
        assert_eq!(loaded.count("player"), 1);
    }

    #[test]
    fn an_empty_cache_makes_an_empty_image() {
        let cache = ClientCache::new(WholeRow);
        let bytes = encode(&cache.reader().snapshot(), &origin(), SystemTime::now()).expect("encode");
        assert!(decode(Bytes::from(bytes)).expect("decode").tables.is_empty());
    }

    #[test]
    fn another_format_or_a_foreign_file_is_refused() {
        let mut bytes = encode(&cache().reader().snapshot(), &origin(), SystemTime::now()).expect("encode");
        assert!(decode(Bytes::from_static(b"{\"not\": \"a cache\"}")).is_err());
        assert!(decode(Bytes::new()).is_err());
        bytes[8] = 2; // version 2, checksum fixed up: refused for its version
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        let err = decode(Bytes::from(bytes)).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any truncation or flipped bit of an image is refused, never panics,
        /// and never takes a row.
        #[test]
        fn a_damaged_image_is_refused(cut in 0usize..200, flip in 0usize..400, bit in 0u8..8) {
            let bytes = encode(&cache().reader().snapshot(), &origin(), SystemTime::now()).expect("encode");
            let short = bytes[..cut.min(bytes.len() - 1)].to_vec();
            prop_assert!(decode(Bytes::from(short)).is_err());
            let mut flipped = bytes.clone();
            let at = flip % flipped.len();
            flipped[at] ^= 1 << bit;
            prop_assert!(decode(Bytes::from(flipped)).is_err());
        }

        /// Arbitrary bytes behind a valid magic and checksum are refused or
        /// read, never a panic nor an allocation beyond the input.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes.extend_from_slice(&body);
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(Bytes::from(bytes));
        }
    }
}
