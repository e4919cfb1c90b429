//! Where the player's credentials are kept between runs (only `app` touches
//! the file system and the OS keyring).
//!
//! [`default_store`] picks the OS keyring when one works (on Linux the
//! kernel's keyutils; a probe entry is written, read and deleted to find out)
//! and otherwise an owner-only file. Either keeps one entry per server and
//! database. Tokens are never written to a config file and never logged.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use spacelink_auth::{CredentialKey, CredentialStore, StoreError, Token};

/// The keyring service name our entries live under.
pub const KEYRING_SERVICE: &str = "spacelink";

/// The OS keyring, through the `keyring` crate.
#[derive(Debug, Default)]
pub struct KeyringStore {
    _private: (),
}

impl KeyringStore {
    /// The keyring, if one works here: a probe entry is written, read back and deleted.
    pub fn probe() -> Option<Self> {
        let entry = keyring::Entry::new(KEYRING_SERVICE, "spacelink-probe").ok()?;
        entry.set_password("probe").ok()?;
        let works = entry.get_password().ok().as_deref() == Some("probe");
        let _ = entry.delete_credential();
        works.then_some(Self { _private: () })
    }

    fn entry(key: &CredentialKey) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(KEYRING_SERVICE, &key.account()).map_err(|e| StoreError(format!("keyring: {e}")))
    }
}

impl CredentialStore for KeyringStore {
    fn kind(&self) -> &'static str {
        "keyring"
    }

    fn load(&self, key: &CredentialKey) -> Result<Option<Token>, StoreError> {
        match Self::entry(key)?.get_password() {
            Ok(token) => Ok(Some(Token::new(token))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(StoreError(format!("keyring: {e}"))),
        }
    }

    fn save(&self, key: &CredentialKey, token: &Token) -> Result<(), StoreError> {
        Self::entry(key)?.set_password(token.expose()).map_err(|e| StoreError(format!("keyring: {e}")))
    }

    fn delete(&self, key: &CredentialKey) -> Result<(), StoreError> {
        match Self::entry(key)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(StoreError(format!("keyring: {e}"))),
        }
    }
}

/// A JSON file `{ "server|database": "token", … }` that only its owner can
/// read (mode 0600, in a 0700 directory), replaced atomically on each write
/// (a temporary file in the same directory, synced, then renamed).
#[derive(Debug)]
pub struct FileCredentialStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileCredentialStore {
    /// A store at `path` (its directory is created when first written).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), lock: Mutex::new(()) }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_all(&self) -> Result<BTreeMap<String, String>, StoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError(format!("{} is not a credential file: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(StoreError(format!("reading {}: {e}", self.path.display()))),
        }
    }

    fn write_all(&self, entries: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError(format!("{what} {}: {e}", self.path.display()));
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|e| io("creating the directory of", e))?;
        let bytes = serde_json::to_vec_pretty(entries).map_err(|e| StoreError(e.to_string()))?;
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = private_file(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| io("writing", e))
    }
}

impl CredentialStore for FileCredentialStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn load(&self, key: &CredentialKey) -> Result<Option<Token>, StoreError> {
        let _guard = self.lock.lock().map_err(|_| StoreError("poisoned".into()))?;
        Ok(self.read_all()?.remove(&key.account()).map(Token::new))
    }

    fn save(&self, key: &CredentialKey, token: &Token) -> Result<(), StoreError> {
        let _guard = self.lock.lock().map_err(|_| StoreError("poisoned".into()))?;
        let mut entries = self.read_all()?;
        entries.insert(key.account(), token.expose().to_string());
        self.write_all(&entries)
    }

    fn delete(&self, key: &CredentialKey) -> Result<(), StoreError> {
        let _guard = self.lock.lock().map_err(|_| StoreError("poisoned".into()))?;
        let mut entries = self.read_all()?;
        if entries.remove(&key.account()).is_some() {
            self.write_all(&entries)?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Where the credential file goes by default: `$XDG_DATA_HOME/spacelink/credentials.json`,
/// else `~/.local/share/spacelink/credentials.json`, else `./.spacelink/credentials.json`.
pub fn default_credentials_file() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(".spacelink"));
    base.join("spacelink").join("credentials.json")
}

/// The OS keyring if one works here, else an owner-only file at `file`
/// (default: [`default_credentials_file`]).
pub fn default_store(file: Option<PathBuf>) -> Arc<dyn CredentialStore> {
    match KeyringStore::probe() {
        Some(keyring) => Arc::new(keyring),
        None => {
            let path = file.unwrap_or_else(default_credentials_file);
            tracing::debug!(path = %path.display(), "no working OS keyring: credentials go to an owner-only file");
            Arc::new(FileCredentialStore::new(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_owner_only_and_holds_one_entry_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCredentialStore::new(dir.path().join("sub/credentials.json"));
        let a = CredentialKey::new("http://127.0.0.1:3000", "a");
        let b = CredentialKey::new("http://127.0.0.1:3000", "b");
        assert_eq!(store.load(&a).unwrap(), None);
        store.save(&a, &Token::new("token-a")).unwrap();
        store.save(&b, &Token::new("token-b")).unwrap();
        store.save(&a, &Token::new("token-a2")).unwrap();
        assert_eq!(store.load(&a).unwrap(), Some(Token::new("token-a2")));
        assert_eq!(store.load(&b).unwrap(), Some(Token::new("token-b")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = fs::metadata(store.path().parent().unwrap()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
        store.delete(&a).unwrap();
        assert_eq!(store.load(&a).unwrap(), None);
        // No temporary file is left behind.
        let names: Vec<_> =
            fs::read_dir(store.path().parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        fs::write(&path, b"not json").unwrap();
        let store = FileCredentialStore::new(&path);
        assert!(store.load(&CredentialKey::new("http://x", "db")).is_err());
    }

    #[test]
    fn the_keyring_works_when_it_probes_well() {
        // On a machine without a keyring this is a no-op; with one it round-trips.
        let Some(store) = KeyringStore::probe() else { return };
        let key = CredentialKey::new("http://127.0.0.1:1", &format!("probe-{}", std::process::id()));
        store.save(&key, &Token::new("t")).unwrap();
        assert_eq!(store.load(&key).unwrap(), Some(Token::new("t")));
        store.delete(&key).unwrap();
        assert_eq!(store.load(&key).unwrap(), None);
    }
}
