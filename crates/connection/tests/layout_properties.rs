//! The key extractor against full decoding: on every column type of the test
//! module's `all_types` table and on random rows, the key taken from a row's
//! bytes is the BSATN of the primary-key columns of the decoded row.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use spacelink_connection::layout::{KeyExtractor, RowLayout};
use spacelink_connection::sats::{
    bsatn, i256, u256, AlgebraicType, AlgebraicValue, ProductType, ProductValue, SumType, SumValue,
};

fn vec2() -> AlgebraicType {
    AlgebraicType::product([("x", AlgebraicType::F32), ("y", AlgebraicType::F32)])
}

fn shape() -> AlgebraicType {
    AlgebraicType::Sum(SumType::from([
        ("Circle", AlgebraicType::F32),
        ("Rect", vec2()),
        ("Empty", AlgebraicType::unit()),
    ]))
}

/// The row type of guildmaster's `all_types` (every column type the module uses).
fn all_types() -> ProductType {
    let color = AlgebraicType::Sum(SumType::from([
        ("Red", AlgebraicType::unit()),
        ("Green", AlgebraicType::unit()),
        ("Blue", AlgebraicType::unit()),
    ]));
    let nested = AlgebraicType::product([
        ("inner", vec2()),
        ("tags", AlgebraicType::array(AlgebraicType::String)),
        ("shape", AlgebraicType::option(shape())),
    ]);
    let schedule = AlgebraicType::Sum(SumType::from([
        ("Interval", AlgebraicType::time_duration()),
        ("Time", AlgebraicType::timestamp()),
    ]));
    [
        ("id", AlgebraicType::U32),
        ("a_u8", AlgebraicType::U8),
        ("a_u16", AlgebraicType::U16),
        ("a_u32", AlgebraicType::U32),
        ("a_u64", AlgebraicType::U64),
        ("a_u128", AlgebraicType::U128),
        ("a_u256", AlgebraicType::U256),
        ("a_i8", AlgebraicType::I8),
        ("a_i16", AlgebraicType::I16),
        ("a_i32", AlgebraicType::I32),
        ("a_i64", AlgebraicType::I64),
        ("a_i128", AlgebraicType::I128),
        ("a_i256", AlgebraicType::I256),
        ("a_f32", AlgebraicType::F32),
        ("a_f64", AlgebraicType::F64),
        ("a_bool", AlgebraicType::Bool),
        ("a_string", AlgebraicType::String),
        ("a_bytes", AlgebraicType::bytes()),
        ("a_vec", AlgebraicType::array(AlgebraicType::U32)),
        ("a_vec_string", AlgebraicType::array(AlgebraicType::String)),
        ("an_opt_i32", AlgebraicType::option(AlgebraicType::I32)),
        ("an_opt_string", AlgebraicType::option(AlgebraicType::String)),
        ("a_color", color),
        ("a_shape", shape()),
        ("a_nested", nested),
        ("an_identity", AlgebraicType::identity()),
        ("a_connection_id", AlgebraicType::connection_id()),
        ("a_timestamp", AlgebraicType::timestamp()),
        ("a_duration", AlgebraicType::time_duration()),
        ("a_schedule", schedule),
    ]
    .into_iter()
    .collect()
}

/// A random value of `ty` (the shapes `all_types` uses).
fn value(ty: &AlgebraicType) -> BoxedStrategy<AlgebraicValue> {
    match ty {
        AlgebraicType::Bool => any::<bool>().prop_map(AlgebraicValue::Bool).boxed(),
        AlgebraicType::I8 => any::<i8>().prop_map(AlgebraicValue::I8).boxed(),
        AlgebraicType::U8 => any::<u8>().prop_map(AlgebraicValue::U8).boxed(),
        AlgebraicType::I16 => any::<i16>().prop_map(AlgebraicValue::I16).boxed(),
        AlgebraicType::U16 => any::<u16>().prop_map(AlgebraicValue::U16).boxed(),
        AlgebraicType::I32 => any::<i32>().prop_map(AlgebraicValue::I32).boxed(),
        AlgebraicType::U32 => any::<u32>().prop_map(AlgebraicValue::U32).boxed(),
        AlgebraicType::I64 => any::<i64>().prop_map(AlgebraicValue::I64).boxed(),
        AlgebraicType::U64 => any::<u64>().prop_map(AlgebraicValue::U64).boxed(),
        AlgebraicType::I128 => any::<i128>().prop_map(|v| AlgebraicValue::I128(v.into())).boxed(),
        AlgebraicType::U128 => any::<u128>().prop_map(|v| AlgebraicValue::U128(v.into())).boxed(),
        AlgebraicType::I256 => (any::<i128>(), any::<i128>())
            .prop_map(|(h, l)| AlgebraicValue::I256(Box::new(i256::from_words(h, l))))
            .boxed(),
        AlgebraicType::U256 => (any::<u128>(), any::<u128>())
            .prop_map(|(h, l)| AlgebraicValue::U256(Box::new(u256::from_words(h, l))))
            .boxed(),
        AlgebraicType::F32 => any::<f32>().prop_map(|v| AlgebraicValue::F32(v.into())).boxed(),
        AlgebraicType::F64 => any::<f64>().prop_map(|v| AlgebraicValue::F64(v.into())).boxed(),
        AlgebraicType::String => "\\PC{0,12}".prop_map(|s| AlgebraicValue::String(s.into())).boxed(),
        AlgebraicType::Array(array) => match &*array.elem_ty {
            AlgebraicType::U8 => vec(any::<u8>(), 0..16).prop_map(|v| AlgebraicValue::Bytes(v.into())).boxed(),
            AlgebraicType::U32 => {
                vec(any::<u32>(), 0..8).prop_map(|v| AlgebraicValue::Array(v.into_boxed_slice().into())).boxed()
            }
            AlgebraicType::String => vec("\\PC{0,6}", 0..5)
                .prop_map(|v| {
                    let v: Vec<Box<str>> = v.into_iter().map(Into::into).collect();
                    AlgebraicValue::Array(v.into_boxed_slice().into())
                })
                .boxed(),
            other => panic!("no generator for arrays of {other:?}"),
        },
        AlgebraicType::Sum(sum) => {
            let variants: Vec<BoxedStrategy<AlgebraicValue>> = sum
                .variants
                .iter()
                .enumerate()
                .map(|(tag, v)| {
                    value(&v.algebraic_type)
                        .prop_map(move |payload| AlgebraicValue::Sum(SumValue::new(tag as u8, payload)))
                        .boxed()
                })
                .collect();
            proptest::strategy::Union::new(variants).boxed()
        }
        AlgebraicType::Product(product) => {
            let elements: Vec<BoxedStrategy<AlgebraicValue>> =
                product.elements.iter().map(|e| value(&e.algebraic_type)).collect();
            elements.prop_map(AlgebraicValue::product).boxed()
        }
        other => panic!("no generator for {other:?}"),
    }
}

fn row(ty: &ProductType) -> impl Strategy<Value = ProductValue> {
    let elements: Vec<BoxedStrategy<AlgebraicValue>> = ty.elements.iter().map(|e| value(&e.algebraic_type)).collect();
    elements.prop_map(ProductValue::from)
}

/// The key as full decoding gives it: decode the row, take the key columns, encode them.
fn decoded_key(ty: &ProductType, bytes: &[u8], key: &[usize]) -> Vec<u8> {
    let decoded = ProductValue::decode(ty, &mut &bytes[..]).unwrap();
    match key {
        [one] => bsatn::to_vec(&decoded.elements[*one]).unwrap(),
        many => {
            let value = AlgebraicValue::product(many.iter().map(|i| decoded.elements[*i].clone()).collect::<Vec<_>>());
            bsatn::to_vec(&value).unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 14: Data Serialization Consistency
    // (the key taken from a row's BSATN bytes is the key full decoding gives, on every column type)
    #[test]
    fn prop_key_extractor_agrees_with_full_decoding_on_every_column(value in row(&all_types())) {
        let ty = all_types();
        let bytes = Bytes::from(bsatn::to_vec(&value).unwrap());
        let layout = RowLayout::new(&ty);
        let mut end = 0;
        for column in 0..ty.elements.len() {
            let extractor = KeyExtractor::new(&ty, &[column]).unwrap();
            let key = extractor.key(&bytes).unwrap();
            prop_assert_eq!(&key[..], &decoded_key(&ty, &bytes, &[column])[..], "column {}", column);
            // Columns tile the row.
            let range = layout.column(&bytes, column).unwrap();
            prop_assert_eq!(range.start, end);
            end = range.end;
        }
        prop_assert_eq!(end, bytes.len());
    }

    // Feature: spacetimedb-integration, Property 14: Data Serialization Consistency
    // (multi-column keys: the BSATN of the key product, contiguous or not)
    #[test]
    fn prop_key_extractor_agrees_on_random_multi_column_keys(
        value in row(&all_types()),
        picks in proptest::sample::subsequence((0..30usize).collect::<Vec<_>>(), 1..5),
    ) {
        let ty = all_types();
        let bytes = Bytes::from(bsatn::to_vec(&value).unwrap());
        let extractor = KeyExtractor::new(&ty, &picks).unwrap();
        prop_assert_eq!(&extractor.key(&bytes).unwrap()[..], &decoded_key(&ty, &bytes, &picks)[..]);
    }

    // Feature: spacetimedb-integration, Property 15: Serialization Error Handling and Efficiency
    // (a cut or corrupted row gives no key or some key, never a panic; the cut row never the full one's)
    #[test]
    fn prop_key_extractor_never_panics_on_damaged_rows(
        value in row(&all_types()),
        cut in any::<proptest::sample::Index>(),
        flips in vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let ty = all_types();
        let mut bytes = bsatn::to_vec(&value).unwrap();
        let at = cut.index(bytes.len());
        bytes.truncate(at);
        for (i, b) in flips {
            if !bytes.is_empty() {
                let i = i.index(bytes.len());
                bytes[i] ^= b;
            }
        }
        let extractor = KeyExtractor::new(&ty, &[29]).unwrap();
        let _ = extractor.key(&Bytes::from(bytes));
    }
}
