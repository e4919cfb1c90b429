//! What keeps the cache from diverging from the server: which updates it may
//! take, and the fence of a resubscription.
//!
//! The connection decodes every frame, and decompresses every query update the
//! frame carries, under its configured
//! [`DecodeLimits`](spacelink_connection::codec::DecodeLimits) (on the
//! session's reader, off the heartbeat's thread); a query update it could not
//! decompress under them reaches sync still compressed. Sync decodes nothing
//! again: [`deltas`] takes a message's updates only if every one of them was
//! decoded, and otherwise the whole update is refused ([`Undecodable`]), so
//! that no part of a transaction reaches the cache without the rest.
//!
//! An update the cache could not take leaves it behind the server. The sync
//! actor then resubscribes its query sets: it unsubscribes their current
//! server-side queries, subscribes them again into a staging cache and, once
//! every set is applied, reconciles the cache with the fresh state (the way it
//! does after a reconnect), so that only real differences fire row events.
//! Until the server has confirmed that every old query is gone, a transaction
//! may still carry rows of the old queries: the [`Fence`] says when
//! transactions may reach the staging cache again (the server answers a
//! client's messages in order, so the fresh queries' rows come after it).

use std::collections::HashSet;
use std::sync::Arc;

use spacelink_connection::ws;

use crate::cache::WireDelta;

/// An update the cache cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The table whose rows could not be read.
    pub table: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an update of `{}` could not be decoded: {}", self.table, self.reason)
    }
}

/// The rows of `update`, table by table, if the connection decoded all of them;
/// with `deletes_only`, every row is a delete (a query set's rows leaving).
/// The rows stay in the message's lists, read as they are applied.
pub(crate) fn deltas(
    update: &ws::DatabaseUpdate<ws::BsatnFormat>,
    deletes_only: bool,
) -> Result<Vec<WireDelta<'_>>, Undecodable> {
    let mut deltas = Vec::new();
    for table in &update.tables {
        for query in &table.updates {
            let query = match query {
                ws::CompressableQueryUpdate::Uncompressed(query) => query,
                ws::CompressableQueryUpdate::Brotli(_) | ws::CompressableQueryUpdate::Gzip(_) => {
                    return Err(Undecodable {
                        table: table.table_name.to_string(),
                        reason: "it did not decompress under the connection's decode limits".into(),
                    });
                }
            };
            deltas.push(WireDelta {
                table: Arc::from(&*table.table_name),
                deletes: &query.deletes,
                inserts: &query.inserts,
                deletes_only,
            });
        }
    }
    Ok(deltas)
}

/// The server-side queries a resubscription dropped, until the server confirms
/// each is gone. While any is left, a transaction may carry their rows: it is
/// not applied (the fresh queries' initial rows, which come after, hold its
/// effect).
#[derive(Debug, Default)]
pub struct Fence {
    retiring: HashSet<u32>,
}

impl Fence {
    /// `query_id` is being unsubscribed.
    pub fn retire(&mut self, query_id: u32) {
        self.retiring.insert(query_id);
    }

    /// Whether no dropped query is left: transactions carry only the current queries' rows.
    pub fn is_open(&self) -> bool {
        self.retiring.is_empty()
    }

    /// The server answered about `query_id` (unsubscribed, or refused): true if
    /// it was a dropped query, which is gone now.
    pub fn confirmed(&mut self, query_id: u32) -> bool {
        self.retiring.remove(&query_id)
    }

    /// The session is gone, and with it every query.
    pub fn clear(&mut self) {
        self.retiring.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacelink_connection::codec;
    use spacelink_connection::sats::bsatn;

    fn rows(rows: &[&[u8]]) -> ws::BsatnRowList {
        let mut list = ws::BsatnRowListBuilder::row_offsets();
        for row in rows {
            list.push(row);
        }
        list.finish()
    }

    fn query(deletes: &[&[u8]], inserts: &[&[u8]]) -> ws::QueryUpdate<ws::BsatnFormat> {
        ws::QueryUpdate { deletes: rows(deletes), inserts: rows(inserts) }
    }

    fn update(
        tables: Vec<(&str, Vec<ws::CompressableQueryUpdate<ws::BsatnFormat>>)>,
    ) -> ws::DatabaseUpdate<ws::BsatnFormat> {
        ws::DatabaseUpdate {
            tables: tables
                .into_iter()
                .map(|(name, updates)| ws::TableUpdate {
                    table_id: 1.into(),
                    table_name: name.into(),
                    num_rows: 0,
                    updates: updates.into(),
                })
                .collect(),
        }
    }

    fn brotli(q: &ws::QueryUpdate<ws::BsatnFormat>) -> ws::CompressableQueryUpdate<ws::BsatnFormat> {
        let mut out = Vec::new();
        ws::brotli_compress(&bsatn::to_vec(q).unwrap(), &mut out);
        ws::CompressableQueryUpdate::Brotli(out.into())
    }

    #[test]
    fn decoded_updates_become_deltas() {
        let u = update(vec![("a", vec![ws::CompressableQueryUpdate::Uncompressed(query(&[b"1"], &[b"2", b"3"]))])]);
        let d = deltas(&u, false).unwrap();
        let count = codec::row_count;
        assert_eq!((d.len(), &*d[0].table, count(d[0].deletes), count(d[0].inserts)), (1, "a", 1, 2));
        assert!(!d[0].deletes_only);
        let d = deltas(&u, true).unwrap();
        assert!(d[0].deletes_only, "a set's rows leaving are all deletes");
    }

    #[test]
    fn one_update_left_compressed_refuses_the_whole_message() {
        let good = ws::CompressableQueryUpdate::Uncompressed(query(&[], &[b"1"]));
        // Even a well-formed compressed update: the connection did not decode
        // it under its limits, so sync does not either.
        let left = brotli(&query(&[], &[b"2"]));
        let garbage = ws::CompressableQueryUpdate::Gzip(vec![0xde, 0xad].into());
        for bad in [left, garbage] {
            let u = update(vec![("a", vec![good.clone()]), ("b", vec![bad])]);
            let err = deltas(&u, false).unwrap_err();
            assert_eq!(err.table, "b");
            assert!(err.to_string().contains("`b`"), "{err}");
        }
    }

    #[test]
    fn the_fence_opens_once_every_dropped_query_is_confirmed() {
        let mut fence = Fence::default();
        assert!(fence.is_open());
        fence.retire(7);
        fence.retire(8);
        assert!(!fence.is_open());
        assert!(!fence.confirmed(9), "not a dropped query");
        assert!(fence.confirmed(7));
        assert!(!fence.confirmed(7), "confirmed once");
        assert!(!fence.is_open());
        assert!(fence.confirmed(8));
        assert!(fence.is_open());
        fence.retire(10);
        fence.clear();
        assert!(fence.is_open(), "a lost session drops every query");
    }
}
