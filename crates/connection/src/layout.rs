//! Where a row's columns lie in its BSATN, without decoding the row.
//!
//! A [`RowLayout`] is built once per table from its row type. It finds a
//! column's byte range by skipping the columns before it: a fixed-width column
//! is a constant step (and a run of them at the start of the row is folded
//! into a constant offset), a string or an array of primitives is a length
//! prefix and a jump, only sums, products and arrays of those are walked.
//! Every step is bounds-checked: a row that does not fit its type gives `None`,
//! never a panic. [`KeyExtractor`] uses it to take a primary key from the row's
//! bytes: the key of a row is the BSATN of its primary-key columns, which is the
//! concatenation of their byte ranges, so for a single-column (or contiguous)
//! key it is a slice of the row, shared, not copied.

use std::ops::Range;

use bytes::Bytes;
use spacetimedb_sats::{AlgebraicType, ProductType};

use crate::guard;

/// How to step over one value in BSATN.
#[derive(Debug, Clone)]
enum Step {
    /// Exactly this many bytes.
    Fixed(usize),
    /// A `u32` length, then that many elements of this size (strings: 1).
    Prefixed(usize),
    /// Anything else: walk it by its type.
    Walk(AlgebraicType),
}

impl Step {
    fn of(ty: &AlgebraicType) -> Self {
        if let Some(size) = fixed_width(ty) {
            return Step::Fixed(size);
        }
        match ty {
            AlgebraicType::String => Step::Prefixed(1),
            AlgebraicType::Array(array) => match fixed_width(&array.elem_ty) {
                Some(size) => Step::Prefixed(size),
                None => Step::Walk(ty.clone()),
            },
            _ => Step::Walk(ty.clone()),
        }
    }
}

/// The BSATN width of a value of `ty` if every value has the same width
/// (primitives, and products of them).
fn fixed_width(ty: &AlgebraicType) -> Option<usize> {
    match ty {
        AlgebraicType::Product(p) => {
            p.elements.iter().try_fold(0usize, |sum, e| fixed_width(&e.algebraic_type).map(|w| sum + w))
        }
        // A sum whose variants are all units is one tag byte.
        AlgebraicType::Sum(s) if s.variants.iter().all(|v| v.algebraic_type.is_unit()) => Some(1),
        other => crate::guard::primitive_width(other),
    }
}

/// The positions of a table's columns in a row's BSATN (see the module doc).
#[derive(Debug, Clone)]
pub struct RowLayout {
    steps: Vec<Step>,
    /// `offsets[i]`: where column `i` starts, for the columns that only follow
    /// fixed-width ones.
    offsets: Vec<usize>,
}

impl RowLayout {
    /// The layout of rows of `row_type` (its references resolved, as
    /// [`TableSchema::row_type`](crate::TableSchema) has them).
    pub fn new(row_type: &ProductType) -> Self {
        let steps: Vec<Step> = row_type.elements.iter().map(|e| Step::of(&e.algebraic_type)).collect();
        let mut offsets = Vec::new();
        let mut at = 0;
        for step in &steps {
            offsets.push(at);
            match step {
                Step::Fixed(size) => at += size,
                _ => break,
            }
        }
        Self { steps, offsets }
    }

    /// How many columns a row has.
    pub fn columns(&self) -> usize {
        self.steps.len()
    }

    /// The byte range of column `column` in `row`, or `None` if the row is too
    /// short or malformed up to that column (or has no such column).
    pub fn column(&self, row: &[u8], column: usize) -> Option<Range<usize>> {
        let step = self.steps.get(column)?;
        let start = match self.offsets.get(column) {
            Some(&start) => start,
            None => {
                let last = self.offsets.len() - 1;
                let mut at = self.offsets[last];
                for step in &self.steps[last..column] {
                    at = skip(step, row, at)?;
                }
                at
            }
        };
        let end = skip(step, row, start)?;
        Some(start..end)
    }

    /// Where column `column` lies in every row, if that is the same for all
    /// rows: a fixed-width column after fixed-width ones only (a row too
    /// short for it does not fit the type).
    pub fn fixed_column(&self, column: usize) -> Option<Range<usize>> {
        let start = *self.offsets.get(column)?;
        match self.steps.get(column)? {
            Step::Fixed(size) => Some(start..start + size),
            _ => None,
        }
    }

    /// The byte ranges of `columns` (ascending column numbers) in `row`, into `out`;
    /// walks the row once. `false` if the row does not fit.
    pub fn columns_into(&self, row: &[u8], columns: &[usize], out: &mut Vec<Range<usize>>) -> bool {
        out.clear();
        let Some(&first) = columns.first() else { return true };
        let Some(mut range) = self.column(row, first) else { return false };
        let mut column = first;
        out.push(range.clone());
        for &next in &columns[1..] {
            if next <= column {
                return false;
            }
            let mut at = range.end;
            for step in &self.steps[column + 1..next] {
                match skip(step, row, at) {
                    Some(end) => at = end,
                    None => return false,
                }
            }
            let Some(step) = self.steps.get(next) else { return false };
            let Some(end) = skip(step, row, at) else { return false };
            range = at..end;
            column = next;
            out.push(range.clone());
        }
        true
    }
}

/// Where the value stepped over by `step` at `at` in `row` ends.
fn skip(step: &Step, row: &[u8], at: usize) -> Option<usize> {
    match step {
        Step::Fixed(size) => within(row, at, *size),
        Step::Prefixed(size) => {
            let len = read_len(row, at)?;
            within(row, at + 4, len.checked_mul(*size)?)
        }
        Step::Walk(ty) => walk(ty, row, at, 0),
    }
}

fn within(row: &[u8], at: usize, n: usize) -> Option<usize> {
    let end = at.checked_add(n)?;
    (end <= row.len()).then_some(end)
}

fn read_len(row: &[u8], at: usize) -> Option<usize> {
    let b = row.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn walk(ty: &AlgebraicType, row: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > guard::MAX_DEPTH {
        return None;
    }
    if let Some(size) = fixed_width(ty) {
        return within(row, at, size);
    }
    match ty {
        AlgebraicType::String => {
            let len = read_len(row, at)?;
            within(row, at + 4, len)
        }
        AlgebraicType::Array(array) => {
            let len = read_len(row, at)?;
            let mut at = at + 4;
            if let Some(size) = fixed_width(&array.elem_ty) {
                return within(row, at, len.checked_mul(size)?);
            }
            // A length the bytes left cannot hold is refused before walking it
            // (as the guard does), and so is an absurd count of zero-sized elements.
            let min = guard::min_size(&EMPTY, &array.elem_ty);
            let room = row.len().saturating_sub(at);
            if (min == 0 && len > guard::MAX_ZERO_SIZED_ELEMENTS) || (min > 0 && len > room / min) {
                return None;
            }
            for _ in 0..len {
                at = walk(&array.elem_ty, row, at, depth + 1)?;
            }
            Some(at)
        }
        AlgebraicType::Sum(sum) => {
            let tag = *row.get(at)?;
            let variant = sum.variants.get(tag as usize)?;
            walk(&variant.algebraic_type, row, at + 1, depth + 1)
        }
        AlgebraicType::Product(product) => {
            let mut at = at;
            for element in product.elements.iter() {
                at = walk(&element.algebraic_type, row, at, depth + 1)?;
            }
            Some(at)
        }
        // Unresolved references do not occur in a resolved row type.
        _ => None,
    }
}

static EMPTY: std::sync::LazyLock<spacetimedb_sats::Typespace> =
    std::sync::LazyLock::new(|| spacetimedb_sats::Typespace::new(Vec::new()));

/// Takes a table's primary key from a row's bytes (see the module doc).
#[derive(Debug, Clone)]
pub struct KeyExtractor {
    layout: RowLayout,
    key: Vec<usize>,
}

impl KeyExtractor {
    /// The extractor for a table with row type `row_type` and primary-key
    /// columns `key` (ascending, as the schema lists them); `None` if the
    /// table has no primary key.
    pub fn new(row_type: &ProductType, key: &[usize]) -> Option<Self> {
        if key.is_empty() || key.iter().any(|&c| c >= row_type.elements.len()) {
            return None;
        }
        let mut key = key.to_vec();
        // BSATN of the key is in the schema's column order; the walk is in row order.
        if key.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        key.dedup();
        Some(Self { layout: RowLayout::new(row_type), key })
    }

    /// The layout it walks.
    pub fn layout(&self) -> &RowLayout {
        &self.layout
    }

    /// Where `row`'s primary key is in `row`, if its columns are contiguous
    /// (one column, or adjacent ones); `None` if they are not, or if the row
    /// does not fit the table's type.
    pub fn key_range(&self, row: &[u8]) -> Option<std::ops::Range<usize>> {
        if let [one] = self.key.as_slice() {
            return self.layout.column(row, *one);
        }
        let mut ranges = Vec::with_capacity(self.key.len());
        if !self.layout.columns_into(row, &self.key, &mut ranges) {
            return None;
        }
        let contiguous = ranges.windows(2).all(|w| w[0].end == w[1].start);
        contiguous.then(|| ranges[0].start..ranges[ranges.len() - 1].end)
    }

    /// Where the primary key lies in every row, if that is the same for all
    /// rows (fixed-width, adjacent key columns after fixed-width ones only):
    /// for a row at least that long, [`key_range`](Self::key_range) gives it.
    pub fn fixed_range(&self) -> Option<std::ops::Range<usize>> {
        let mut ranges = self.key.iter().map(|&c| self.layout.fixed_column(c));
        let first = ranges.next()??;
        ranges.try_fold(first, |range, next| {
            let next = next?;
            (next.start == range.end).then_some(range.start..next.end)
        })
    }

    /// The BSATN of `row`'s primary key: a slice of `row` when the key columns
    /// are contiguous (no copy), else their bytes joined; `None` if the row does
    /// not fit the table's type.
    pub fn key(&self, row: &Bytes) -> Option<Bytes> {
        if let [one] = self.key.as_slice() {
            return self.layout.column(row, *one).map(|r| row.slice(r));
        }
        let mut ranges = Vec::with_capacity(self.key.len());
        if !self.layout.columns_into(row, &self.key, &mut ranges) {
            return None;
        }
        let contiguous = ranges.windows(2).all(|w| w[0].end == w[1].start);
        if contiguous {
            let (start, end) = (ranges[0].start, ranges[ranges.len() - 1].end);
            return Some(row.slice(start..end));
        }
        let mut joined = Vec::with_capacity(ranges.iter().map(|r| r.len()).sum());
        for r in ranges {
            joined.extend_from_slice(&row[r]);
        }
        Some(joined.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_prefix_and_strings() {
        let row_type: ProductType =
            [("id", AlgebraicType::U64), ("name", AlgebraicType::String), ("hp", AlgebraicType::I32)]
                .into_iter()
                .collect();
        let layout = RowLayout::new(&row_type);
        let mut row = 7u64.to_le_bytes().to_vec();
        row.extend_from_slice(&2u32.to_le_bytes());
        row.extend_from_slice(b"hi");
        row.extend_from_slice(&5i32.to_le_bytes());
        assert_eq!(layout.column(&row, 0), Some(0..8));
        assert_eq!(layout.column(&row, 1), Some(8..14));
        assert_eq!(layout.column(&row, 2), Some(14..18));
        assert_eq!(layout.column(&row[..16], 2), None);
        assert_eq!(layout.column(&row, 3), None);
        let keys = KeyExtractor::new(&row_type, &[2]).unwrap();
        let row = Bytes::from(row);
        assert_eq!(keys.key(&row).as_deref(), Some(&5i32.to_le_bytes()[..]));
        assert_eq!(KeyExtractor::new(&row_type, &[0, 2]).unwrap().key(&row).unwrap().len(), 12);
        assert!(KeyExtractor::new(&row_type, &[]).is_none());
        // Where the key is, when its columns are contiguous.
        assert_eq!(keys.key_range(&row), Some(14..18));
        assert_eq!(KeyExtractor::new(&row_type, &[0, 1]).unwrap().key_range(&row), Some(0..14));
        assert_eq!(KeyExtractor::new(&row_type, &[0, 2]).unwrap().key_range(&row), None, "not contiguous");
        assert_eq!(keys.key_range(&row[..16]), None, "the row is cut short");
        // The same in every row only before the first column of variable width.
        assert_eq!(keys.fixed_range(), None, "after a string");
        let first = KeyExtractor::new(&row_type, &[0]).unwrap();
        assert_eq!(first.fixed_range(), Some(0..8));
        assert_eq!(first.fixed_range(), first.key_range(&row));
        assert_eq!(KeyExtractor::new(&row_type, &[0, 1]).unwrap().fixed_range(), None);
        let fixed: ProductType =
            [("a", AlgebraicType::U8), ("b", AlgebraicType::U32), ("c", AlgebraicType::U16)].into_iter().collect();
        assert_eq!(KeyExtractor::new(&fixed, &[1, 2]).unwrap().fixed_range(), Some(1..7));
        assert_eq!(KeyExtractor::new(&fixed, &[0, 2]).unwrap().fixed_range(), None, "not contiguous");
    }

    #[test]
    fn lying_lengths_are_none_not_panics() {
        let row_type: ProductType =
            [("tags", AlgebraicType::array(AlgebraicType::String)), ("id", AlgebraicType::U32)].into_iter().collect();
        let keys = KeyExtractor::new(&row_type, &[1]).unwrap();
        let row = Bytes::from(u32::MAX.to_le_bytes().to_vec());
        assert_eq!(keys.key(&row), None);
        let row = Bytes::from(vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(keys.key(&row), None);
    }
}
