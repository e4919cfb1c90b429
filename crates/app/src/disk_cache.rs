//! The cache kept on disk: a world at launch.
//!
//! With [`DiskCacheConfig`] (`ClientBuilder::with_disk_cache`), a client saves
//! an image of its cache ([`spacelink_sync::disk`]) periodically and when it
//! shuts down, and at its next launch loads it before connecting: the game's
//! tables read the rows at once (heard as inserts with `Cause::Restored`),
//! and once the subscriptions are applied on the first session the cache is
//! reconciled with the server's answer, firing only what changed while the
//! game was away (`reconciled = true`).
//!
//! A file is trusted only when it is whole (checksum), of this format, of the
//! same server and database, and of the schema the game gave (when it gave
//! one); anything else is ignored with a warning ([`DiskCacheEvent::Ignored`])
//! and the client starts empty. Without a schema from the game, the file's
//! schema starts state sync at once and is then checked against the
//! server's: a difference is a [`crate::SchemaEvent::Mismatch`], and the
//! reconciliation replaces every restored row with the server's.
//!
//! ```no_run
//! use spacelink::{Client, DiskCacheConfig, DiskCacheEvent, Event};
//!
//! let mut client = Client::builder()
//!     .with_uri("http://localhost:3000")
//!     .with_database("my_game")
//!     .with_disk_cache(DiskCacheConfig::new("saves/world.slcache"))
//!     .subscribe(&["SELECT * FROM entity"])
//!     .build()?;
//! for event in client.frame_tick() {
//!     if let Event::DiskCache(DiskCacheEvent::Ignored { reason }) = event {
//!         eprintln!("cache file not used: {reason}");
//!     }
//! }
//! // Before quitting: save now and wait (or poll `try_result()` each frame).
//! let mut saving = client.save_cache();
//! while saving.try_result().is_none() {
//!     std::thread::sleep(std::time::Duration::from_millis(5));
//! }
//! # Ok::<(), spacelink::ClientError>(())
//! ```
//!
//! Files are read and written on the client's actor thread pool (blocking
//! work on tokio's blocking pool), never on the game's thread; a save writes a
//! temporary file and renames it over the old one, so a crash mid-save leaves
//! the last good image.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use spacelink_connection::ModuleSchema;
use spacelink_sync::disk::{self, CacheImage, ImageOrigin};
use spacelink_sync::{CacheReader, Snapshot};

/// Where and how often the cache is kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheConfig {
    /// The file (its directory is created if missing).
    pub path: PathBuf,
    /// How often a changed cache is saved (default 30 s); it is saved on
    /// shutdown too.
    pub save_every: Duration,
    /// The largest file read or written (default 512 MiB): a larger one is
    /// ignored, a larger image not saved.
    pub max_bytes: u64,
}

impl DiskCacheConfig {
    /// The defaults for a file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), save_every: Duration::from_secs(30), max_bytes: 512 << 20 }
    }
}

/// What became of the cache on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiskCacheEvent {
    /// The image was loaded: the tables read its rows before any session.
    Restored {
        /// Distinct rows loaded.
        rows: usize,
        /// Tables loaded.
        tables: usize,
        /// How old the image was.
        age: Duration,
        /// How long reading and checking the file took.
        took: Duration,
    },
    /// The file was not trusted; the client starts empty.
    Ignored {
        /// Why.
        reason: String,
    },
    /// An image was saved.
    Saved {
        /// Distinct rows saved.
        rows: usize,
        /// The file's size.
        bytes: u64,
        /// How long encoding and writing took.
        took: Duration,
    },
    /// Nothing changed since the last save (or the restore): nothing written.
    Unchanged,
    /// A save failed; the previous image (if any) stays.
    SaveFailed {
        /// Why.
        error: String,
    },
}

/// A file worth loading: its schema and rows.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) schema: Arc<ModuleSchema>,
    pub(crate) image: CacheImage,
    pub(crate) took: Duration,
}

impl Restored {
    /// The event telling the game what was loaded.
    pub(crate) fn event(&self) -> DiskCacheEvent {
        DiskCacheEvent::Restored {
            rows: self.image.rows(),
            tables: self.image.tables.len(),
            age: SystemTime::now().duration_since(self.image.saved_at).unwrap_or_default(),
            took: self.took,
        }
    }
}

/// Reads `config`'s file for `server`'s `database`: `Ok(None)` when there is
/// none yet, `Err(reason)` when there is one that cannot be trusted.
pub(crate) fn load(
    config: &DiskCacheConfig,
    server: &str,
    database: &str,
    given: Option<&ModuleSchema>,
) -> Result<Option<Restored>, String> {
    let started = Instant::now();
    let path = &config.path;
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if size > config.max_bytes {
        return Err(format!("{} is {size} bytes, over max_bytes ({})", path.display(), config.max_bytes));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let image = disk::decode(Bytes::from(bytes)).map_err(|e| e.to_string())?;
    let origin = &image.origin;
    if origin.server != server || origin.database != database {
        return Err(format!("the file holds `{}` on {}, not `{database}` on {server}", origin.database, origin.server));
    }
    let schema = ModuleSchema::from_json(&origin.schema).map_err(|e| format!("its schema does not read: {e}"))?;
    if let Some(difference) = given.and_then(|given| given.difference(&schema)) {
        return Err(format!("it was saved for another version of the module: {difference}"));
    }
    Ok(Some(Restored { schema: Arc::new(schema), image, took: started.elapsed() }))
}

/// Writes the image of `snapshot` to `config`'s file (a temporary file,
/// synced, then renamed over it). Returns the rows and bytes written.
pub(crate) fn save(
    config: &DiskCacheConfig,
    snapshot: &Snapshot,
    origin: &ImageOrigin,
) -> Result<(usize, u64), String> {
    let image = disk::encode(snapshot, origin, SystemTime::now()).map_err(|e| e.to_string())?;
    let len = image.len() as u64;
    if len > config.max_bytes {
        return Err(format!("the image is {len} bytes, over max_bytes ({})", config.max_bytes));
    }
    write_atomically(&config.path, &image).map_err(|e| format!("{}: {e}", config.path.display()))?;
    Ok((snapshot.view().total_rows(), len))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Saves the cache when it changed: periodically, when asked, and once more
/// when the client stops.
#[derive(Debug)]
pub(crate) struct Saver {
    pub(crate) config: DiskCacheConfig,
    pub(crate) origin: ImageOrigin,
    pub(crate) reader: CacheReader,
    /// The state last saved (or restored): an unchanged cache is not saved again.
    pub(crate) last: Option<Snapshot>,
}

impl Saver {
    /// Saves the cache if it changed since the last save, off the calling
    /// thread; `None` when there was nothing to save.
    pub(crate) async fn save_if_changed(&mut self) -> Option<DiskCacheEvent> {
        let snapshot = self.reader.snapshot();
        if self.last.as_ref().is_some_and(|last| last.same_state(&snapshot)) {
            return None;
        }
        let (config, origin, image) = (self.config.clone(), self.origin.clone(), snapshot.clone());
        let started = Instant::now();
        let saved = tokio::task::spawn_blocking(move || save(&config, &image, &origin))
            .await
            .unwrap_or_else(|e| Err(format!("the save task failed: {e}")));
        Some(match saved {
            Ok((rows, bytes)) => {
                self.last = Some(snapshot);
                tracing::debug!(rows, bytes, "cache saved to disk");
                DiskCacheEvent::Saved { rows, bytes, took: started.elapsed() }
            }
            Err(error) => {
                tracing::warn!(%error, "the cache could not be saved to disk");
                DiskCacheEvent::SaveFailed { error }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacelink_sync::cache::{ClientCache, TableDelta, WholeRow};

    fn schema_json() -> String {
        let empty = spacetimedb_lib::db::raw_def::v9::RawModuleDefV9 {
            typespace: Default::default(),
            tables: vec![],
            reducers: vec![],
            types: vec![],
            misc_exports: vec![],
            row_level_security: vec![],
        };
        ModuleSchema::from_raw(empty).expect("schema").to_json()
    }

    fn origin() -> ImageOrigin {
        ImageOrigin { server: "http://localhost:3000".into(), database: "game".into(), schema: schema_json() }
    }

    fn saved(dir: &Path) -> DiskCacheConfig {
        let config = DiskCacheConfig::new(dir.join("sub/cache.bin"));
        let cache = ClientCache::new(WholeRow);
        cache.apply(&[TableDelta::new("t").insert(&b"a"[..]).insert(&b"b"[..])]);
        assert_eq!(
            save(&config, &cache.reader().snapshot(), &origin()),
            Ok((2, std::fs::metadata(&config.path).map_or(0, |m| m.len())))
        );
        config
    }

    #[test]
    fn a_saved_cache_loads_for_its_server_and_database_only() {
        let dir = tempfile::tempdir().expect("dir");
        let config = saved(dir.path());
        let restored = load(&config, "http://localhost:3000", "game", None).expect("trusted").expect("a file");
        assert_eq!(restored.image.rows(), 2);
        let err = load(&config, "http://localhost:3000", "other", None).unwrap_err();
        assert!(err.contains("not `other`"), "{err}");
        let err = load(&config, "http://elsewhere:3000", "game", None).unwrap_err();
        assert!(err.contains("elsewhere"), "{err}");
    }

    #[test]
    fn no_file_is_no_image_and_a_damaged_or_oversized_one_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let config = DiskCacheConfig::new(dir.path().join("none.bin"));
        assert!(load(&config, "s", "d", None).expect("no file").is_none());
        let config = saved(dir.path());
        let mut bytes = std::fs::read(&config.path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&config.path, &bytes).expect("write");
        let err = load(&config, "http://localhost:3000", "game", None).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        let small = DiskCacheConfig { max_bytes: 8, ..config };
        assert!(load(&small, "http://localhost:3000", "game", None).unwrap_err().contains("max_bytes"));
    }
}
