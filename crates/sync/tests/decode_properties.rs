//! Rows of a type without lengths (fixed-size columns, bools, options) are
//! decoded without the guard's walk: the decoders' own checks must refuse
//! exactly what the guard refuses, for typed and dynamic rows alike.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use spacelink_connection::guard;
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::sats::{AlgebraicType, ProductType, Typespace};
use spacelink_connection::ModuleSchema;
use spacelink_sync::RowTypes;

#[derive(Debug, PartialEq, spacelink_connection::sats::de::Deserialize)]
#[sats(crate = spacelink_connection::sats)]
struct Flat {
    id: u64,
    flag: bool,
    maybe: Option<u32>,
    x: f32,
    tiny: i8,
}

fn row_type() -> ProductType {
    [
        ("id", AlgebraicType::U64),
        ("flag", AlgebraicType::Bool),
        ("maybe", AlgebraicType::option(AlgebraicType::U32)),
        ("x", AlgebraicType::F32),
        ("tiny", AlgebraicType::I8),
    ]
    .into_iter()
    .collect()
}

fn schema() -> Arc<ModuleSchema> {
    let mut module = RawModuleDefV9Builder::new();
    module.build_table_with_new_type("typed", row_type(), true).with_primary_key(0u16);
    module.build_table_with_new_type("dynamic", row_type(), true).with_primary_key(0u16);
    Arc::new(ModuleSchema::from_raw(module.finish()).unwrap())
}

/// A valid row, then perhaps corrupted: a byte changed, cut short or grown.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = (any::<u64>(), any::<bool>(), any::<Option<u32>>(), any::<f32>(), any::<i8>()).prop_map(
        |(id, flag, maybe, x, tiny)| {
            let mut out = id.to_le_bytes().to_vec();
            out.push(u8::from(flag));
            match maybe {
                Some(v) => {
                    out.push(0);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                None => out.push(1),
            }
            out.extend_from_slice(&x.to_le_bytes());
            out.push(tiny as u8);
            out
        },
    );
    (valid, 0..4u8, any::<usize>(), any::<u8>()).prop_map(|(mut row, how, at, byte)| {
        match how {
            0 => {}
            1 => {
                let i = at % row.len();
                row[i] = byte;
            }
            2 => row.truncate(at % row.len()),
            _ => row.push(byte),
        }
        row
    })
}

#[test]
fn the_row_type_has_no_lengths() {
    assert!(guard::has_no_lengths(&Typespace::new(Vec::new()), &AlgebraicType::Product(row_type())));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // Feature: spacetimedb-integration, Property 15: Serialization Error Handling and Efficiency (a row of a type without lengths, valid or corrupted, decodes exactly when the guard would pass it, typed and dynamic, so skipping the guard's walk for such rows refuses nothing less)
    #[test]
    fn decoding_without_the_guard_refuses_what_the_guard_refuses(row in bytes()) {
        let schema = schema();
        let decoders = RowTypes::new().register::<Flat>("typed").bind(&schema);
        let ty = AlgebraicType::Product(row_type());
        let passes = guard::check(&Typespace::new(Vec::new()), &ty, &row).is_ok();

        let typed = decoders.row("typed", Bytes::from(row.clone()));
        prop_assert_eq!(typed.get::<Flat>().is_some(), passes, "typed: {:?}", typed.decode_error());
        prop_assert_eq!(typed.decode_error().is_some(), !passes);

        let dynamic = decoders.row("dynamic", Bytes::from(row.clone()));
        prop_assert_eq!(dynamic.value().is_some(), passes, "dynamic: {:?}", dynamic.decode_error());
        if let (Some(flat), Some(value)) = (typed.get::<Flat>(), dynamic.value()) {
            prop_assert_eq!(value.elements.len(), 5);
            prop_assert_eq!(value.elements[0].as_u64().copied(), Some(flat.id));
        }
    }
}
