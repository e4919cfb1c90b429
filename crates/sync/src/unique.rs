//! Unique columns: which columns of a table the cache indexes, and where they
//! lie in a row's bytes.
//!
//! For every column of a table with a single-column unique constraint (the
//! primary key excepted: it already is the cache's map key), the cache keeps
//! an index from the column's BSATN to the row's [`RowKey`](crate::RowKey),
//! inside the same published snapshots as the rows (see [`crate::cache`]).
//! A column's bytes are read from the row's bytes with the table's
//! [`RowLayout`], never decoded, and kept as a slice of the row (shared, not
//! copied), so indexing a row allocates nothing.

use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use spacelink_connection::layout::RowLayout;
use spacelink_connection::sats::ProductType;
use spacelink_connection::ModuleSchema;

/// The indexed columns of one table, and its layout.
#[derive(Debug)]
pub struct TableUnique {
    layout: RowLayout,
    /// The indexed columns, ascending.
    columns: Vec<usize>,
}

impl TableUnique {
    /// The indexed columns of a table of `row_type`: `columns` (unknown ones are dropped).
    pub fn new(row_type: &ProductType, columns: &[usize]) -> Self {
        let mut columns: Vec<usize> = columns.iter().copied().filter(|&c| c < row_type.elements.len()).collect();
        columns.sort_unstable();
        columns.dedup();
        Self { layout: RowLayout::new(row_type), columns }
    }

    /// The indexed columns, ascending; the `i`-th is the cache's index `i` of the table.
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// Which of the table's indexes is for `column`.
    pub fn index_of(&self, column: usize) -> Option<usize> {
        self.columns.iter().position(|&c| c == column)
    }

    /// The bytes of the `index`-th indexed column of `row`: a slice of it, not a
    /// copy; `None` if the row does not fit the table's type.
    pub fn value(&self, row: &Bytes, index: usize) -> Option<Bytes> {
        let range = self.layout.column(row, *self.columns.get(index)?)?;
        Some(row.slice(range))
    }

    /// How many indexes the table has.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the table has no index.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// The unique columns of every table (see the module doc). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UniqueColumns {
    tables: FxHashMap<Arc<str>, Arc<TableUnique>>,
}

impl UniqueColumns {
    /// No table is indexed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every single-column unique constraint of `schema` that is not the
    /// table's primary key.
    pub fn from_schema(schema: &ModuleSchema) -> Self {
        let mut unique = Self::none();
        for table in schema.tables() {
            let columns: Vec<usize> =
                table.unique.iter().copied().filter(|c| table.primary_key.as_slice() != [*c]).collect();
            unique = unique.with_table(&table.name, TableUnique::new(&table.row_type, &columns));
        }
        unique
    }

    /// These columns, and `table`'s (a table without any is left out).
    #[must_use]
    pub fn with_table(mut self, table: &str, unique: TableUnique) -> Self {
        if !unique.is_empty() {
            self.tables.insert(table.into(), Arc::new(unique));
        }
        self
    }

    /// The indexed columns of `table`, if it has any.
    pub fn table(&self, table: &str) -> Option<&Arc<TableUnique>> {
        self.tables.get(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacelink_connection::sats::AlgebraicType;

    #[test]
    fn values_are_slices_of_the_row() {
        let row_type: ProductType =
            [("id", AlgebraicType::U32), ("name", AlgebraicType::String), ("tag", AlgebraicType::U64)]
                .into_iter()
                .collect();
        let unique = TableUnique::new(&row_type, &[2, 1, 9, 1]);
        assert_eq!((unique.columns(), unique.index_of(2), unique.index_of(0)), (&[1, 2][..], Some(1), None));
        let mut row = 7u32.to_le_bytes().to_vec();
        row.extend_from_slice(&2u32.to_le_bytes());
        row.extend_from_slice(b"hi");
        row.extend_from_slice(&9u64.to_le_bytes());
        let row = Bytes::from(row);
        let tag = unique.value(&row, 1).unwrap();
        assert_eq!(&tag[..], &9u64.to_le_bytes());
        assert_eq!(tag.as_ptr(), row[10..].as_ptr(), "a slice, not a copy");
        assert_eq!(&unique.value(&row, 0).unwrap()[..], &[2, 0, 0, 0, b'h', b'i']);
        assert_eq!(unique.value(&row.slice(..12), 1), None, "a short row has no value");
        assert_eq!(unique.value(&row, 2), None);
    }

    #[test]
    fn the_schema_s_unique_columns_but_the_key() {
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../connection/tests/corpus/guildmaster-schema.json"
        ))
        .unwrap();
        let schema = ModuleSchema::from_json(&json).unwrap();
        let unique = UniqueColumns::from_schema(&schema);
        let player = unique.table("player").unwrap();
        let column = schema.table("player").unwrap().columns.iter().position(|c| c == "player_id");
        assert_eq!(player.columns(), &[column.unwrap()]);
        assert!(unique.table("entity").is_none(), "the key alone is not indexed again");
    }
}
