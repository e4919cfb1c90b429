//! Where credentials are kept between runs.
//!
//! [`CredentialStore`] is the seam: the app provides the OS keyring and an
//! owner-only file (only `app` touches the file system); this crate provides
//! [`MemoryStore`] and [`FallbackStore`], which keeps the game running when
//! the real store fails: the credential is held in memory, the failure is
//! reported once, and the store is tried again later.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use spacelink_connection::metric_names as names;
use spacelink_connection::Token;

/// One entry per server and database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    /// The server's base URL, as configured (trailing slashes dropped).
    pub server: String,
    /// The database name or identity.
    pub database: String,
}

impl CredentialKey {
    /// The key of `database` on `server`.
    pub fn new(server: &str, database: &str) -> Self {
        Self { server: server.trim().trim_end_matches('/').to_string(), database: database.trim().to_string() }
    }

    /// One string naming the entry (`server|database`), for stores that want one.
    pub fn account(&self) -> String {
        format!("{}|{}", self.server, self.database)
    }
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.database, self.server)
    }
}

/// A store failed; never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Keeps one token per [`CredentialKey`]. Implementations use interior
/// mutability so that one store can be shared (`Arc<dyn CredentialStore>`).
pub trait CredentialStore: fmt::Debug + Send + Sync + 'static {
    /// A short name for logs ("keyring", "file", "memory").
    fn kind(&self) -> &'static str;
    /// The stored token, if any.
    fn load(&self, key: &CredentialKey) -> Result<Option<Token>, StoreError>;
    /// Stores `token`, replacing any other.
    fn save(&self, key: &CredentialKey, token: &Token) -> Result<(), StoreError>;
    /// Forgets the entry (no error if there is none).
    fn delete(&self, key: &CredentialKey) -> Result<(), StoreError>;
}

/// Credentials held in memory only: lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<CredentialKey, Token>>,
}

impl CredentialStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn load(&self, key: &CredentialKey) -> Result<Option<Token>, StoreError> {
        Ok(self.entries.lock().map_err(|_| StoreError("poisoned".into()))?.get(key).cloned())
    }

    fn save(&self, key: &CredentialKey, token: &Token) -> Result<(), StoreError> {
        self.entries.lock().map_err(|_| StoreError("poisoned".into()))?.insert(key.clone(), token.clone());
        Ok(())
    }

    fn delete(&self, key: &CredentialKey) -> Result<(), StoreError> {
        self.entries.lock().map_err(|_| StoreError("poisoned".into()))?.remove(key);
        Ok(())
    }
}

/// What a write pending for the real store will do.
#[derive(Debug, Clone)]
enum Pending {
    Save(Token),
    Delete,
}

/// Where a credential ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// In the real store.
    Durably,
    /// In memory only, for now: the real store failed and is retried later.
    InMemory,
}

/// A real store backed by memory: a failed write is kept in memory and
/// retried by [`retry`](Self::retry); the first failure is logged (once, as a
/// warning), and so is the recovery.
#[derive(Debug)]
pub struct FallbackStore {
    primary: Arc<dyn CredentialStore>,
    memory: MemoryStore,
    pending: HashMap<CredentialKey, Pending>,
    warned: bool,
}

impl FallbackStore {
    /// Wraps `primary`.
    pub fn new(primary: Arc<dyn CredentialStore>) -> Self {
        Self { primary, memory: MemoryStore::default(), pending: HashMap::new(), warned: false }
    }

    /// The real store's kind.
    pub fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    /// Whether writes wait for a retry.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The token for `key`: from memory if a write is pending, else from the store.
    pub fn load(&mut self, key: &CredentialKey) -> Option<Token> {
        match self.pending.get(key) {
            Some(Pending::Save(token)) => return Some(token.clone()),
            Some(Pending::Delete) => return None,
            None => {}
        }
        match self.primary.load(key) {
            Ok(token) => token,
            Err(e) => {
                self.failed("read", &e);
                self.memory.load(key).ok().flatten()
            }
        }
    }

    /// Stores `token` for `key`, in memory if the store fails.
    pub fn save(&mut self, key: &CredentialKey, token: &Token) -> Stored {
        let _ = self.memory.save(key, token);
        match self.primary.save(key, token) {
            Ok(()) => {
                self.pending.remove(key);
                Stored::Durably
            }
            Err(e) => {
                self.failed("write", &e);
                self.pending.insert(key.clone(), Pending::Save(token.clone()));
                Stored::InMemory
            }
        }
    }

    /// Forgets `key`.
    pub fn delete(&mut self, key: &CredentialKey) -> Stored {
        let _ = self.memory.delete(key);
        match self.primary.delete(key) {
            Ok(()) => {
                self.pending.remove(key);
                Stored::Durably
            }
            Err(e) => {
                self.failed("delete from", &e);
                self.pending.insert(key.clone(), Pending::Delete);
                Stored::InMemory
            }
        }
    }

    /// Tries the pending writes again; returns how many are still pending.
    pub fn retry(&mut self) -> usize {
        let pending = std::mem::take(&mut self.pending);
        for (key, write) in pending {
            let result = match &write {
                Pending::Save(token) => self.primary.save(&key, token),
                Pending::Delete => self.primary.delete(&key),
            };
            if result.is_err() {
                self.pending.insert(key, write);
            }
        }
        if self.pending.is_empty() && std::mem::take(&mut self.warned) {
            tracing::info!(store = self.primary.kind(), "credential store works again; credentials stored");
        }
        self.pending.len()
    }

    fn failed(&mut self, what: &str, e: &StoreError) {
        metrics::counter!(names::AUTH_STORE_FAILURES).increment(1);
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(
                store = self.primary.kind(),
                error = %e,
                "cannot {what} the credential store; credentials are kept in memory and the store is retried later"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A store that fails while `broken` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        broken: AtomicBool,
        inner: MemoryStore,
    }

    impl CredentialStore for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn load(&self, key: &CredentialKey) -> Result<Option<Token>, StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError("broken".into()));
            }
            self.inner.load(key)
        }
        fn save(&self, key: &CredentialKey, token: &Token) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError("broken".into()));
            }
            self.inner.save(key, token)
        }
        fn delete(&self, key: &CredentialKey) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError("broken".into()));
            }
            self.inner.delete(key)
        }
    }

    #[test]
    fn one_entry_per_server_and_database() {
        let store = MemoryStore::default();
        let a = CredentialKey::new("http://x/", "db");
        let b = CredentialKey::new("http://x", "other");
        store.save(&a, &Token::new("ta")).unwrap();
        store.save(&b, &Token::new("tb")).unwrap();
        assert_eq!(store.load(&CredentialKey::new("http://x", "db")).unwrap(), Some(Token::new("ta")));
        store.delete(&a).unwrap();
        assert_eq!(store.load(&a).unwrap(), None);
        assert_eq!(store.load(&b).unwrap(), Some(Token::new("tb")));
    }

    #[test]
    fn a_failed_store_falls_back_to_memory_and_is_retried() {
        let flaky = Arc::new(Flaky::default());
        flaky.broken.store(true, Ordering::SeqCst);
        let mut store = FallbackStore::new(flaky.clone());
        let key = CredentialKey::new("http://x", "db");
        assert_eq!(store.save(&key, &Token::new("t1")), Stored::InMemory);
        assert_eq!(store.load(&key), Some(Token::new("t1")));
        assert_eq!(store.retry(), 1);
        flaky.broken.store(false, Ordering::SeqCst);
        assert_eq!(store.retry(), 0);
        assert_eq!(flaky.inner.load(&key).unwrap(), Some(Token::new("t1")));
        assert_eq!(store.save(&key, &Token::new("t2")), Stored::Durably);
        flaky.broken.store(true, Ordering::SeqCst);
        assert_eq!(store.delete(&key), Stored::InMemory);
        assert_eq!(store.load(&key), None);
        flaky.broken.store(false, Ordering::SeqCst);
        store.retry();
        assert_eq!(flaky.inner.load(&key).unwrap(), None);
    }
}
