//! Files the app keeps for its subsystems (only `app` touches the file system).

use std::path::PathBuf;

use spacelink_reducers::QueueStore;

/// Keeps the reducer call queue in a file, replaced atomically on each save.
#[derive(Debug, Clone)]
pub struct FileQueueStore {
    path: PathBuf,
}

impl FileQueueStore {
    /// A store at `path` (its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl QueueStore for FileQueueStore {
    fn save(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }

    fn load(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
