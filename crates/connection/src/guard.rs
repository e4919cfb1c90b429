//! A structural pre-check of BSATN bytes against an [`AlgebraicType`].
//!
//! The SATS decoders trust the lengths they read: an array that claims four
//! billion elements makes them reserve memory for four billion elements before
//! reading the first one, which aborts the process. The official row-list type
//! also trusts its size hint (a fixed row size of zero divides by zero, an offset
//! past the end slices out of bounds). Bytes from the network are not trusted
//! here, so before any frame is decoded, this module walks it once, without
//! allocating, and checks that:
//!
//! * every length fits in the bytes that remain (an element needs at least
//!   [`min_size`] bytes), and zero-sized elements are not repeated absurdly;
//! * every sum tag names a variant, every bool is 0 or 1, strings are UTF-8;
//! * every row list (`{ size_hint, rows_data }`) is consistent: a fixed row size
//!   is non-zero and divides the data, offsets are ascending and inside the data;
//! * nesting is bounded, so a recursive type cannot overflow the stack;
//! * nothing is left over at the end.
//!
//! After [`check`] succeeds, decoding the same bytes at the same type cannot
//! allocate more than a small multiple of the input, and the official row-list
//! accessors cannot panic.

use spacetimedb_sats::{AlgebraicType, ProductType, Typespace};

/// The deepest nesting of products, sums and arrays a frame may have.
pub const MAX_DEPTH: usize = 64;
/// The most elements a zero-sized array element may be repeated.
pub const MAX_ZERO_SIZED_ELEMENTS: usize = 1 << 16;

/// Why bytes do not fit a type. `offset` is where in the input it was noticed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {problem}")]
pub struct GuardError {
    /// Byte offset into the checked input.
    pub offset: usize,
    /// What was wrong there.
    pub problem: String,
}

/// Checks that `bytes` hold exactly one value of type `ty` (see the module doc).
pub fn check(typespace: &Typespace, ty: &AlgebraicType, bytes: &[u8]) -> Result<(), GuardError> {
    let mut walker = Walker { typespace, bytes, pos: 0 };
    walker.value(ty, 0)?;
    if walker.pos != bytes.len() {
        return Err(walker.error(format!("{} trailing bytes after the value", bytes.len() - walker.pos)));
    }
    Ok(())
}

/// Whether a value of `ty` holds no length at all: fixed-size primitives and
/// bools, and products and sums of them (within [`MAX_DEPTH`]).
///
/// Bytes of such a type cannot make a decoder allocate by what they claim, and
/// the BSATN decoder refuses a bad sum tag, a bool that is not 0 or 1, and too
/// few bytes by itself; so for them [`check`] adds nothing to a decode that
/// also refuses leftover bytes, and a caller may skip it.
pub fn has_no_lengths(typespace: &Typespace, ty: &AlgebraicType) -> bool {
    has_no_lengths_at(typespace, ty, 0)
}

fn has_no_lengths_at(typespace: &Typespace, ty: &AlgebraicType, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match ty {
        AlgebraicType::Ref(r) => typespace.get(*r).is_some_and(|t| has_no_lengths_at(typespace, t, depth + 1)),
        AlgebraicType::Sum(sum) => {
            sum.variants.iter().all(|v| has_no_lengths_at(typespace, &v.algebraic_type, depth + 1))
        }
        AlgebraicType::Product(p) => {
            p.elements.iter().all(|e| has_no_lengths_at(typespace, &e.algebraic_type, depth + 1))
        }
        AlgebraicType::Bool => true,
        other => primitive_width(other).is_some(),
    }
}

/// The fewest bytes a value of `ty` can take in BSATN.
pub fn min_size(typespace: &Typespace, ty: &AlgebraicType) -> usize {
    min_size_at(typespace, ty, 0)
}

fn min_size_at(typespace: &Typespace, ty: &AlgebraicType, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    match ty {
        AlgebraicType::Ref(r) => typespace.get(*r).map_or(0, |t| min_size_at(typespace, t, depth + 1)),
        AlgebraicType::Sum(sum) => {
            1 + sum.variants.iter().map(|v| min_size_at(typespace, &v.algebraic_type, depth + 1)).min().unwrap_or(0)
        }
        AlgebraicType::Product(p) => {
            p.elements.iter().map(|e| min_size_at(typespace, &e.algebraic_type, depth + 1)).sum()
        }
        AlgebraicType::Array(_) | AlgebraicType::String => 4,
        other => primitive_width(other).unwrap_or(0),
    }
}

/// The BSATN width of a primitive (`bool` and the numbers): the one table of
/// widths, which [`crate::layout`] builds its fixed-width columns on.
pub(crate) fn primitive_width(ty: &AlgebraicType) -> Option<usize> {
    Some(match ty {
        AlgebraicType::Bool | AlgebraicType::I8 | AlgebraicType::U8 => 1,
        AlgebraicType::I16 | AlgebraicType::U16 => 2,
        AlgebraicType::I32 | AlgebraicType::U32 | AlgebraicType::F32 => 4,
        AlgebraicType::I64 | AlgebraicType::U64 | AlgebraicType::F64 => 8,
        AlgebraicType::I128 | AlgebraicType::U128 => 16,
        AlgebraicType::I256 | AlgebraicType::U256 => 32,
        _ => return None,
    })
}

struct Walker<'a> {
    typespace: &'a Typespace,
    bytes: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn error(&self, problem: impl Into<String>) -> GuardError {
        GuardError { offset: self.pos, problem: problem.into() }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], GuardError> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining {
            return Err(self.error(format!("{what} needs {n} bytes, only {remaining} left")));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self, what: &str) -> Result<u8, GuardError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, GuardError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn len(&mut self, what: &str) -> Result<usize, GuardError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn value(&mut self, ty: &AlgebraicType, depth: usize) -> Result<(), GuardError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match ty {
            AlgebraicType::Ref(r) => {
                let Some(resolved) = self.typespace.get(*r) else {
                    return Err(self.error(format!("type refers to unknown {r:?}")));
                };
                self.value(resolved, depth + 1)
            }
            AlgebraicType::Sum(sum) => {
                let tag = self.u8("a sum tag")?;
                let Some(variant) = sum.variants.get(tag as usize) else {
                    return Err(self.error(format!("sum tag {tag} is not one of its {} variants", sum.variants.len())));
                };
                self.value(&variant.algebraic_type, depth + 1)
            }
            AlgebraicType::Product(product) => {
                if is_row_list(product) {
                    return self.row_list();
                }
                for element in product.elements.iter() {
                    self.value(&element.algebraic_type, depth + 1)?;
                }
                Ok(())
            }
            AlgebraicType::Array(array) => {
                let elem = &*array.elem_ty;
                let len = self.len("an array length")?;
                if let Some(size) = primitive_width(elem) {
                    let bytes = len
                        .checked_mul(size)
                        .ok_or_else(|| self.error(format!("array of {len} elements overflows")))?;
                    self.take(bytes, "an array of primitives")?;
                    return Ok(());
                }
                self.check_count(len, elem, depth)?;
                for _ in 0..len {
                    self.value(elem, depth + 1)?;
                }
                Ok(())
            }
            AlgebraicType::String => {
                let len = self.len("a string length")?;
                let start = self.pos;
                let s = self.take(len, "a string")?;
                if std::str::from_utf8(s).is_err() {
                    return Err(GuardError { offset: start, problem: "string is not valid UTF-8".into() });
                }
                Ok(())
            }
            AlgebraicType::Bool => match self.u8("a bool")? {
                0 | 1 => Ok(()),
                b => Err(self.error(format!("bool byte is {b}, not 0 or 1"))),
            },
            other => {
                let size = primitive_width(other).unwrap_or(0);
                self.take(size, "a primitive").map(|_| ())
            }
        }
    }

    /// Checks that `len` elements of `elem` can fit in what is left.
    fn check_count(&self, len: usize, elem: &AlgebraicType, depth: usize) -> Result<(), GuardError> {
        let min = min_size_at(self.typespace, elem, depth + 1);
        let remaining = self.bytes.len() - self.pos;
        if min == 0 {
            if len > MAX_ZERO_SIZED_ELEMENTS {
                return Err(
                    self.error(format!("array claims {len} zero-sized elements (limit {MAX_ZERO_SIZED_ELEMENTS})"))
                );
            }
        } else if len > remaining / min {
            return Err(
                self.error(format!("array claims {len} elements of at least {min} bytes, only {remaining} bytes left"))
            );
        }
        Ok(())
    }

    /// The official `BsatnRowList { size_hint: RowSizeHint, rows_data: Bytes }`.
    fn row_list(&mut self) -> Result<(), GuardError> {
        let hint_start = self.pos;
        let tag = self.u8("a row size hint")?;
        let mut fixed = None;
        let mut offsets = Vec::new();
        match tag {
            0 => fixed = Some(self.u16("a fixed row size")? as usize),
            1 => {
                let len = self.len("a row offset count")?;
                let remaining = self.bytes.len() - self.pos;
                if len > remaining / 8 {
                    return Err(self.error(format!("{len} row offsets claimed, {remaining} bytes left")));
                }
                offsets.reserve(len);
                for _ in 0..len {
                    let b = self.take(8, "a row offset")?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    offsets.push(u64::from_le_bytes(a));
                }
            }
            t => return Err(self.error(format!("row size hint tag {t} is neither FixedSize nor RowOffsets"))),
        }
        let data_len = self.len("a row data length")?;
        self.take(data_len, "row data")?;
        let bad = |problem: String| GuardError { offset: hint_start, problem };
        if let Some(size) = fixed {
            if size == 0 && data_len != 0 {
                return Err(bad(format!("fixed row size 0 with {data_len} bytes of rows")));
            }
            if size != 0 && data_len % size != 0 {
                return Err(bad(format!("{data_len} bytes of rows are not a multiple of the fixed row size {size}")));
            }
        }
        let mut previous = 0u64;
        for &offset in &offsets {
            if offset < previous || offset > data_len as u64 {
                return Err(bad(format!("row offset {offset} is out of order or past the {data_len} bytes of rows")));
            }
            previous = offset;
        }
        Ok(())
    }
}

/// Whether `product` is the official row list (a `size_hint` then `rows_data`).
fn is_row_list(product: &ProductType) -> bool {
    // Compared in place: this runs for every product of every row checked.
    matches!(
        &product.elements[..],
        [a, b] if a.name.as_deref() == Some("size_hint") && b.name.as_deref() == Some("rows_data")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> Typespace {
        Typespace::new(Vec::new())
    }

    #[test]
    fn huge_array_of_structs_is_refused_without_allocating() {
        let elem = AlgebraicType::product([AlgebraicType::String, AlgebraicType::U64]);
        let ty = AlgebraicType::array(elem);
        let bytes = u32::MAX.to_le_bytes();
        let err = check(&ts(), &ty, &bytes).unwrap_err();
        assert!(err.problem.contains("array claims"), "{err}");
    }

    #[test]
    fn valid_value_passes_and_trailing_bytes_do_not() {
        let ty = AlgebraicType::product([AlgebraicType::Bool, AlgebraicType::String]);
        let mut bytes = vec![1, 2, 0, 0, 0, b'h', b'i'];
        assert_eq!(check(&ts(), &ty, &bytes), Ok(()));
        bytes.push(0);
        assert!(check(&ts(), &ty, &bytes).unwrap_err().problem.contains("trailing"));
    }

    #[test]
    fn bad_bool_tag_and_utf8_are_reported() {
        assert!(check(&ts(), &AlgebraicType::Bool, &[2]).is_err());
        let opt = AlgebraicType::option(AlgebraicType::U8);
        assert!(check(&ts(), &opt, &[7]).unwrap_err().problem.contains("sum tag 7"));
        assert!(check(&ts(), &AlgebraicType::String, &[1, 0, 0, 0, 0xff]).is_err());
    }

    #[test]
    fn only_types_without_strings_or_arrays_have_no_lengths() {
        let flat = AlgebraicType::product([
            AlgebraicType::U64,
            AlgebraicType::Bool,
            AlgebraicType::option(AlgebraicType::product([AlgebraicType::F32, AlgebraicType::I128])),
        ]);
        assert!(has_no_lengths(&ts(), &flat));
        assert!(!has_no_lengths(&ts(), &AlgebraicType::product([AlgebraicType::U8, AlgebraicType::String])));
        assert!(!has_no_lengths(&ts(), &AlgebraicType::option(AlgebraicType::array(AlgebraicType::U8))));
        assert!(!has_no_lengths(&ts(), &AlgebraicType::Ref(spacelink_sats_ref())));
    }

    fn spacelink_sats_ref() -> spacetimedb_sats::AlgebraicTypeRef {
        spacetimedb_sats::AlgebraicTypeRef(0)
    }

    #[test]
    fn min_sizes_add_up() {
        let ty = AlgebraicType::product([
            AlgebraicType::U32,
            AlgebraicType::option(AlgebraicType::U64),
            AlgebraicType::String,
        ]);
        assert_eq!(min_size(&ts(), &ty), 4 + 1 + 4);
    }
}
