//! Where the player's credentials are kept between runs (only `app` touches
//! the file system and the OS keyring).
//!
//! A game calls [`ClientBuilder::with_persistent_identity`](crate::ClientBuilder::with_persistent_identity)
//! with its name, or [`persistent_store`] to see what was chosen: the same
//! store for the same name, chosen once per process:
//!
//! 1. The OS keyring, if its backend keeps secrets until they are deleted
//!    ([`CredentialPersistence::UntilDelete`]) and a probe entry round-trips:
//!    the Windows Credential Manager (`windows-native`), the macOS Keychain
//!    (`apple-native`), and on Linux the freedesktop Secret Service (GNOME
//!    Keyring, KWallet) over D-Bus. The Linux path is pure Rust (zbus with the
//!    `async-io` executor and `crypto-rust`): a game's build needs no libdbus,
//!    and a call works from any thread, a tokio runtime's included (zbus's
//!    `tokio` flavour can deadlock when called on a runtime thread).
//!    `keyring`'s in-memory mock (what it falls back to on a platform built
//!    without a backend) reports `EntryOnly` and is refused, and so is the
//!    Linux kernel keyring (keyutils, `UntilReboot`): neither is persistent,
//!    so neither is built in.
//! 2. Else an owner-only file (0600, in a 0700 directory) in the OS data
//!    directory ([`credentials_file_for`]: `$XDG_DATA_HOME` or
//!    `~/.local/share` on Linux and other Unixes, `~/Library/Application
//!    Support` on macOS, `%APPDATA%` on Windows), never the working directory.
//! 3. Else (no keyring, no home directory) memory only: the identity lasts as
//!    long as the process, and [`ChosenStore::Memory`] says why.
//!
//! Each keeps one entry per server and database. Tokens are never written to
//! a config file and never logged.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use keyring::credential::{CredentialBuilder, CredentialPersistence};
use spacelink_auth::{CredentialKey, CredentialStore, MemoryStore, StoreError, Token};

/// The keyring service name of [`default_store`]'s entries.
pub const KEYRING_SERVICE: &str = "spacelink";

/// The name of the credential file in an app's data directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// The OS keyring's backend built for this target (see the module doc).
pub fn native_backend() -> &'static str {
    if cfg!(target_os = "windows") {
        "Windows Credential Manager"
    } else if cfg!(target_os = "macos") {
        "macOS Keychain"
    } else if cfg!(target_os = "linux") {
        "Secret Service"
    } else {
        "none (keyring's in-memory mock)"
    }
}

/// Whether a keyring backend with this persistence keeps an identity across
/// restarts and reboots: only [`CredentialPersistence::UntilDelete`] does.
pub fn persistence_refusal(persistence: &CredentialPersistence) -> Option<&'static str> {
    match persistence {
        CredentialPersistence::UntilDelete => None,
        CredentialPersistence::UntilReboot => Some("the keyring forgets its entries at reboot"),
        CredentialPersistence::ProcessOnly => Some("the keyring forgets its entries when the process ends"),
        CredentialPersistence::EntryOnly => Some("the keyring is an in-memory mock"),
        _ => Some("the keyring's persistence is unknown"),
    }
}

/// The OS keyring, through the `keyring` crate's backend for this target.
pub struct KeyringStore {
    service: String,
    builder: Result<Box<CredentialBuilder>, &'static str>,
}

impl std::fmt::Debug for KeyringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringStore")
            .field("service", &self.service)
            .field("backend", &self.builder.as_ref().map(|_| native_backend()))
            .finish()
    }
}

impl Default for KeyringStore {
    /// The native backend under [`KEYRING_SERVICE`] (its operations fail with
    /// a [`StoreError`] where the backend is not persistent).
    fn default() -> Self {
        Self::with_builder(KEYRING_SERVICE, keyring::default::default_credential_builder())
    }
}

impl KeyringStore {
    /// A store on `builder` under `service`; a builder that does not persist
    /// until deleted is refused ([`persistence_refusal`]): every operation then
    /// fails with its reason.
    pub fn with_builder(service: &str, builder: Box<CredentialBuilder>) -> Self {
        let builder = match persistence_refusal(&builder.persistence()) {
            None => Ok(builder),
            Some(why) => Err(why),
        };
        Self { service: service.to_string(), builder }
    }

    /// The native keyring under `service`, if it is persistent and works here:
    /// a probe entry is written, read back and deleted. Else why not.
    pub fn probe(service: &str) -> Result<Self, String> {
        Self::probe_with(service, keyring::default::default_credential_builder())
    }

    /// [`probe`](Self::probe) on a given backend.
    pub fn probe_with(service: &str, builder: Box<CredentialBuilder>) -> Result<Self, String> {
        let store = Self::with_builder(service, builder);
        if let Err(why) = &store.builder {
            return Err((*why).to_string());
        }
        let key = CredentialKey::new("probe", "spacelink-probe");
        let probe = Token::new("probe");
        store.save(&key, &probe).map_err(|e| e.0)?;
        let read = store.load(&key);
        let _ = store.delete(&key);
        match read {
            Ok(Some(t)) if t == probe => Ok(store),
            Ok(_) => Err("the keyring did not give the probe entry back".into()),
            Err(e) => Err(e.0),
        }
    }

    fn entry(&self, key: &CredentialKey) -> Result<keyring::Entry, StoreError> {
        let builder = self.builder.as_ref().map_err(|why| StoreError(format!("keyring: {why}")))?;
        let credential =
            builder.build(None, &self.service, &key.account()).map_err(|e| StoreError(format!("keyring: {e}")))?;
        Ok(keyring::Entry::new_with_credential(credential))
    }
}

impl CredentialStore for KeyringStore {
    fn kind(&self) -> &'static str {
        "keyring"
    }

    fn load(&self, key: &CredentialKey) -> Result<Option<Token>, StoreError> {
        match self.entry(key)?.get_password() {
            Ok(token) => Ok(Some(Token::new(token))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(StoreError(format!("keyring: {e}"))),
        }
    }

    fn save(&self, key: &CredentialKey, token: &Token) -> Result<(), StoreError> {
        self.entry(key)?.set_password(token.expose()).map_err(|e| StoreError(format!("keyring: {e}")))
    }

    fn delete(&self, key: &CredentialKey) -> Result<(), StoreError> {
        match self.entry(key)?.delete_credential() {
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

/// The operating systems whose data directory [`data_dir_for`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and other Unixes: the XDG base directories.
    Linux,
    /// macOS.
    MacOs,
    /// Windows.
    Windows,
}

impl Os {
    /// The one this was built for.
    pub fn current() -> Self {
        if cfg!(target_os = "windows") {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }
}

/// The per-user data directory on `os`, from the environment `env` gives
/// (`$XDG_DATA_HOME`, else `$HOME/.local/share`; `$HOME/Library/Application
/// Support`; `%APPDATA%`). Only absolute paths count: never the working directory.
pub fn data_dir_for(os: Os, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
    match os {
        Os::Linux => var("XDG_DATA_HOME").or_else(|| var("HOME").map(|h| h.join(".local").join("share"))),
        Os::MacOs => var("HOME").map(|h| h.join("Library").join("Application Support")),
        Os::Windows => var("APPDATA"),
    }
}

/// An app name made safe as one path component and keyring service: what is
/// not a letter, digit, `-`, `_` or `.` becomes `_`; an empty or dotted-only
/// name becomes `spacelink`.
pub fn app_dir_name(app: &str) -> String {
    let name: String =
        app.trim().chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if name.chars().all(|c| c == '.') {
        KEYRING_SERVICE.to_string()
    } else {
        name
    }
}

/// The credential file of `app` on `os` with environment `env`:
/// `<data dir>/<app>/credentials.json`, or `None` without a data directory.
pub fn credentials_file_for(app: &str, os: Os, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    data_dir_for(os, env).map(|d| d.join(app_dir_name(app)).join(CREDENTIALS_FILE))
}

/// Where [`default_store`]'s file goes here: `<data dir>/spacelink/credentials.json`.
pub fn default_credentials_file() -> Option<PathBuf> {
    credentials_file_for(KEYRING_SERVICE, Os::current(), |k| std::env::var_os(k))
}

/// Which store keeps an identity, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChosenStore {
    /// The OS keyring, persistent until deleted.
    Keyring {
        /// Its backend ([`native_backend`]).
        backend: &'static str,
        /// The service name entries live under.
        service: String,
    },
    /// The owner-only file, because the keyring was refused or failed.
    File {
        /// The file.
        path: PathBuf,
        /// Why not the keyring.
        keyring: String,
    },
    /// Memory only: the identity ends with the process.
    Memory {
        /// Why neither the keyring nor a file.
        why: String,
    },
}

impl ChosenStore {
    /// The store's kind, as [`CredentialStore::kind`] says it.
    pub fn kind(&self) -> &'static str {
        match self {
            ChosenStore::Keyring { .. } => "keyring",
            ChosenStore::File { .. } => "file",
            ChosenStore::Memory { .. } => "memory",
        }
    }

    /// Whether the identity survives a restart.
    pub fn is_persistent(&self) -> bool {
        !matches!(self, ChosenStore::Memory { .. })
    }

    /// One line for a player or a log: which store, and why.
    pub fn describe(&self) -> String {
        match self {
            ChosenStore::Keyring { backend, service } => format!("OS keyring ({backend}), service `{service}`"),
            ChosenStore::File { path, keyring } => {
                format!("owner-only file {} (no OS keyring: {keyring})", path.display())
            }
            ChosenStore::Memory { why } => format!("memory only, lost at exit ({why})"),
        }
    }
}

/// A store and what it is.
#[derive(Debug, Clone)]
pub struct PersistentStore {
    /// The store.
    pub store: Arc<dyn CredentialStore>,
    /// What it is.
    pub chosen: ChosenStore,
}

/// Chooses as the module doc says, from the keyring probe's outcome and the
/// credential file's path (plain logic: the probe and the environment are inputs).
pub fn choose(service: &str, keyring: Result<KeyringStore, String>, file: Option<PathBuf>) -> PersistentStore {
    match (keyring, file) {
        (Ok(store), _) => PersistentStore {
            store: Arc::new(store),
            chosen: ChosenStore::Keyring { backend: native_backend(), service: service.to_string() },
        },
        (Err(keyring), Some(path)) => PersistentStore {
            store: Arc::new(FileCredentialStore::new(&path)),
            chosen: ChosenStore::File { path, keyring },
        },
        (Err(keyring), None) => PersistentStore {
            store: Arc::new(MemoryStore::default()),
            chosen: ChosenStore::Memory { why: format!("no OS keyring ({keyring}) and no home directory") },
        },
    }
}

/// The persistent store of `app` (keyring service and data directory named
/// after it, [`app_dir_name`]), chosen on first use and the same afterwards
/// in this process.
pub fn persistent_store(app: &str) -> PersistentStore {
    static CHOSEN: OnceLock<Mutex<HashMap<String, PersistentStore>>> = OnceLock::new();
    let name = app_dir_name(app);
    let chosen = CHOSEN.get_or_init(Mutex::default);
    if let Some(found) = chosen.lock().ok().and_then(|c| c.get(&name).cloned()) {
        return found;
    }
    let file = credentials_file_for(&name, Os::current(), |k| std::env::var_os(k));
    let picked = choose(&name, KeyringStore::probe(&name), file);
    tracing::info!(app = %name, store = %picked.chosen.describe(), "credential store chosen");
    match chosen.lock() {
        Ok(mut c) => c.entry(name).or_insert(picked).clone(),
        Err(_) => picked,
    }
}

impl crate::ClientBuilder {
    /// Keeps the player's identity across restarts for `app`: in the OS
    /// keyring, else an owner-only file in the OS data directory (see the
    /// module doc; [`persistent_store`]`(app).chosen.describe()` says which).
    pub fn with_persistent_identity(self, app: &str) -> Self {
        self.with_credentials(persistent_store(app).store)
    }
}

/// The OS keyring if one persists and works here, else an owner-only file at
/// `file` (default: [`default_credentials_file`]), else memory.
pub fn default_store(file: Option<PathBuf>) -> Arc<dyn CredentialStore> {
    let picked = choose(KEYRING_SERVICE, KeyringStore::probe(KEYRING_SERVICE), file.or_else(default_credentials_file));
    tracing::debug!(store = %picked.chosen.describe(), "credential store chosen");
    picked.store
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
    fn the_mock_keyring_is_refused() {
        let refused = KeyringStore::probe_with("spacelink-test", keyring::mock::default_credential_builder());
        assert_eq!(refused.as_ref().err().map(String::as_str), Some("the keyring is an in-memory mock"));
        // Used anyway, every operation fails: nothing pretends to persist.
        let store = KeyringStore::with_builder("spacelink-test", keyring::mock::default_credential_builder());
        let key = CredentialKey::new("http://127.0.0.1:1", "db");
        assert!(store.save(&key, &Token::new("t")).is_err());
        assert!(store.load(&key).is_err());
        // So the choice falls to the file.
        let picked = choose("game", refused, Some(PathBuf::from("/home/p/.local/share/game/credentials.json")));
        assert_eq!(picked.chosen.kind(), "file");
        assert_eq!(picked.store.kind(), "file");
        assert!(picked.chosen.describe().contains("in-memory mock"), "{}", picked.chosen.describe());
    }

    #[test]
    fn only_a_keyring_that_persists_until_deleted_counts() {
        assert_eq!(persistence_refusal(&CredentialPersistence::UntilDelete), None);
        for p in
            [CredentialPersistence::UntilReboot, CredentialPersistence::ProcessOnly, CredentialPersistence::EntryOnly]
        {
            assert!(persistence_refusal(&p).is_some());
        }
    }

    #[test]
    fn without_keyring_or_home_the_identity_is_memory_only() {
        let picked = choose("game", Err("no Secret Service".into()), None);
        assert_eq!(picked.store.kind(), "memory");
        assert!(!picked.chosen.is_persistent());
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn the_data_directory_on_linux() {
        let file = |vars| credentials_file_for("My Game", Os::Linux, env(vars));
        assert_eq!(
            file(&[("XDG_DATA_HOME", "/data"), ("HOME", "/home/p")]),
            Some(PathBuf::from("/data/My_Game/credentials.json"))
        );
        assert_eq!(file(&[("HOME", "/home/p")]), Some(PathBuf::from("/home/p/.local/share/My_Game/credentials.json")));
        // A relative or empty XDG_DATA_HOME is ignored (the spec says so), and never the working directory.
        assert_eq!(
            file(&[("XDG_DATA_HOME", "rel"), ("HOME", "/home/p")]),
            Some(PathBuf::from("/home/p/.local/share/My_Game/credentials.json"))
        );
        assert_eq!(file(&[("XDG_DATA_HOME", ""), ("HOME", "")]), None);
        assert_eq!(file(&[("HOME", "relative/home")]), None);
    }

    #[test]
    fn the_data_directory_on_macos() {
        assert_eq!(
            credentials_file_for("game", Os::MacOs, env(&[("HOME", "/Users/p"), ("XDG_DATA_HOME", "/x")])),
            Some(PathBuf::from("/Users/p/Library/Application Support/game/credentials.json"))
        );
        assert_eq!(credentials_file_for("game", Os::MacOs, env(&[])), None);
    }

    #[test]
    fn the_data_directory_on_windows() {
        // Built here on Unix, where `C:\…` is not absolute: the logic is checked with a Unix-style path.
        let appdata = if cfg!(windows) { r"C:\Users\p\AppData\Roaming" } else { "/c/Users/p/AppData/Roaming" };
        assert_eq!(
            credentials_file_for("game", Os::Windows, env(&[("APPDATA", appdata), ("HOME", "/home/p")])),
            Some(PathBuf::from(appdata).join("game").join("credentials.json"))
        );
        assert_eq!(credentials_file_for("game", Os::Windows, env(&[("HOME", "/home/p")])), None);
    }

    #[test]
    fn app_names_are_one_safe_path_component() {
        assert_eq!(app_dir_name("../../etc"), ".._.._etc");
        assert_eq!(app_dir_name(".."), "spacelink");
        assert_eq!(app_dir_name(""), "spacelink");
        assert_eq!(app_dir_name("Guild Master/2"), "Guild_Master_2");
    }

    #[test]
    fn the_keyring_works_when_it_probes_well() {
        // On a machine without a persistent keyring this is a no-op; with one it round-trips.
        let Ok(store) = KeyringStore::probe("spacelink-test") else { return };
        let key = CredentialKey::new("http://127.0.0.1:1", &format!("probe-{}", std::process::id()));
        store.save(&key, &Token::new("t")).unwrap();
        assert_eq!(store.load(&key).unwrap(), Some(Token::new("t")));
        store.delete(&key).unwrap();
        assert_eq!(store.load(&key).unwrap(), None);
    }
}
