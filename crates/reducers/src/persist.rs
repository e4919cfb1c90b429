//! The offline queue on disk: calls not yet answered survive an app restart.
//!
//! This crate encodes the queue (postcard) and hands bytes to a [`QueueStore`];
//! where they go (a file, the game's save system) is the embedding app's choice.

use serde::{Deserialize, Serialize};

use crate::ledger::{Call, Dedup};

/// Where the queue is kept between runs.
pub trait QueueStore: Send + 'static {
    /// Replaces what is stored with `bytes`.
    fn save(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// What was stored, if anything.
    fn load(&mut self) -> std::io::Result<Option<Vec<u8>>>;
}

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    calls: Vec<StoredCall>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredCall {
    reducer: String,
    args: Vec<u8>,
    notify: bool,
    dedup: Dedup,
}

/// Encodes calls, in order, for a store.
pub fn encode<'a>(calls: impl Iterator<Item = &'a Call>) -> Vec<u8> {
    let stored = Stored {
        version: VERSION,
        calls: calls
            .map(|c| StoredCall { reducer: c.reducer.clone(), args: c.args.to_vec(), notify: c.notify, dedup: c.dedup })
            .collect(),
    };
    postcard::to_allocvec(&stored).unwrap_or_default()
}

/// Decodes stored calls; an unreadable or foreign store is an error, not a panic.
pub fn decode(bytes: &[u8]) -> Result<Vec<Call>, String> {
    let stored: Stored = postcard::from_bytes(bytes).map_err(|e| format!("unreadable call queue: {e}"))?;
    if stored.version != VERSION {
        return Err(format!("call queue version {} (expected {VERSION})", stored.version));
    }
    Ok(stored
        .calls
        .into_iter()
        .map(|c| Call { reducer: c.reducer, args: c.args.into(), notify: c.notify, dedup: c.dedup })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_and_garbage_is_an_error() {
        let calls = vec![
            Call { reducer: "a".into(), args: vec![1, 2].into(), notify: true, dedup: Dedup::Sequenced(7) },
            Call { reducer: "b".into(), args: Default::default(), notify: false, dedup: Dedup::None },
        ];
        assert_eq!(decode(&encode(calls.iter())).unwrap(), calls);
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
