//! SATS-JSON: values as the server's HTTP API writes and reads them, guided by their type.
//!
//! The one conversion between [`AlgebraicValue`]s and JSON, used for what the
//! `spacelink` command prints (`sql`, `subscribe`) and for what it reads
//! (`call`'s arguments, [`ModuleSchema::encode_reducer_args`](crate::ModuleSchema::encode_reducer_args)),
//! so that what one prints the other accepts.
//!
//! # Out ([`to_json`])
//!
//! Exactly what the SATS serde bridge (`spacetimedb_sats::ser::serde::SerializeWrapper`
//! over a `ValueWithType`, as the server serializes typed values) produces for
//! the same value and type (a test holds this against the bridge):
//!
//! | type | JSON |
//! |------|------|
//! | product (a row, a struct) | an object by element name: `{"map_id": 1, "name": "meadow"}` |
//! | `u8`..`u64`, `i8`..`i64`, `u128`, `i128` | a JSON number, exact (`340282366920938463463374607431768211455`) |
//! | `u256`, `i256` | a hex string, `"0xff…"`, `"-0x80…"` |
//! | `f32`, `f64` | a JSON number, shortest form of its own width (`0.1f32` is `0.1`) |
//! | a non-finite float | the string `"NaN"`, `"inf"` or `"-inf"` (JSON has no number for them; the bridge would fail) |
//! | `bool`, `String` | a JSON boolean, a string |
//! | bytes (`Vec<u8>`) | a hex string without prefix, `"0001feff"` |
//! | other arrays | a JSON array |
//! | sum (enum) | `{"Variant": payload}`; a unit payload is `{}`: `{"Red": {}}`; `Option` is `{"some": v}` / `{"none": {}}` |
//! | `Identity` | `{"__identity__": "0xc200…"}` |
//! | `ConnectionId` | `{"__connection_id__": 1234…}` |
//! | `Timestamp` | `{"__timestamp_micros_since_unix_epoch__": 1700000000000000}` |
//! | `TimeDuration` | `{"__time_duration_micros__": 1500000}` |
//!
//! # In ([`from_json`])
//!
//! Everything [`to_json`] writes, and the other spellings the SATS serde
//! deserializer (the server's `call` endpoint) accepts: a product as an array
//! in element order; a sum as `[tag, payload]` or as `{"<tag>": payload}`;
//! an `Option`'s none as `null`; a unit variant as its bare name (`"Red"`);
//! bytes as an array of numbers; any integer as a string of its digits; a
//! 256-bit integer as a decimal string or number too. So the untyped rows the
//! server's own `/sql` endpoint prints (products as arrays, sums as
//! `[tag, payload]`) are accepted as well.
//!
//! Conversion follows the type, never the JSON: its depth is the type's
//! (bounded by the schema's [`MAX_TYPE_DEPTH`](crate::schema::MAX_TYPE_DEPTH)), and
//! a value that does not fit says where (`a_nested.tags[2]`) and why.

use serde_json::{Map, Number, Value as Json};
use spacetimedb_sats::{
    i256, u256, AlgebraicType, AlgebraicValue, ArrayValue, ProductType, ProductValue, SumType, SumValue, F32, F64,
};

use crate::schema::SchemaError;

/// A value as SATS-JSON, guided by its (resolved) type.
///
/// A value that does not match its type (which [`TableSchema::decode`](crate::TableSchema::decode)
/// never returns) becomes `null` rather than a panic.
pub fn to_json(ty: &AlgebraicType, value: &AlgebraicValue) -> Json {
    match (ty, value) {
        (AlgebraicType::Product(pt), AlgebraicValue::Product(pv)) => product_to_json(pt, pv),
        (AlgebraicType::Sum(st), AlgebraicValue::Sum(sv)) => sum_to_json(st, sv),
        (AlgebraicType::Array(at), AlgebraicValue::Array(av)) => array_to_json(&at.elem_ty, av),
        (AlgebraicType::Bool, AlgebraicValue::Bool(v)) => Json::Bool(*v),
        (AlgebraicType::I8, AlgebraicValue::I8(v)) => (*v).into(),
        (AlgebraicType::U8, AlgebraicValue::U8(v)) => (*v).into(),
        (AlgebraicType::I16, AlgebraicValue::I16(v)) => (*v).into(),
        (AlgebraicType::U16, AlgebraicValue::U16(v)) => (*v).into(),
        (AlgebraicType::I32, AlgebraicValue::I32(v)) => (*v).into(),
        (AlgebraicType::U32, AlgebraicValue::U32(v)) => (*v).into(),
        (AlgebraicType::I64, AlgebraicValue::I64(v)) => (*v).into(),
        (AlgebraicType::U64, AlgebraicValue::U64(v)) => (*v).into(),
        (AlgebraicType::I128, AlgebraicValue::I128(v)) => exact_number({ v.0 }.to_string()),
        (AlgebraicType::U128, AlgebraicValue::U128(v)) => exact_number({ v.0 }.to_string()),
        (AlgebraicType::I256, AlgebraicValue::I256(v)) => Json::String(i256_hex(**v)),
        (AlgebraicType::U256, AlgebraicValue::U256(v)) => Json::String(format!("{:#x}", **v)),
        (AlgebraicType::F32, AlgebraicValue::F32(v)) => f32_json(v.into_inner()),
        (AlgebraicType::F64, AlgebraicValue::F64(v)) => f64_json(v.into_inner()),
        (AlgebraicType::String, AlgebraicValue::String(s)) => Json::String(s.to_string()),
        _ => Json::Null,
    }
}

/// A product (a row, a struct) as an object by element name (`col<N>` for an unnamed element).
pub fn product_to_json(ty: &ProductType, value: &ProductValue) -> Json {
    let mut map = Map::new();
    for (i, (elem, v)) in ty.elements.iter().zip(value.elements.iter()).enumerate() {
        let name = elem.name.as_deref().map_or_else(|| format!("col{i}"), str::to_string);
        map.insert(name, to_json(&elem.algebraic_type, v));
    }
    Json::Object(map)
}

fn sum_to_json(ty: &SumType, value: &SumValue) -> Json {
    let Some(variant) = ty.variants.get(usize::from(value.tag)) else {
        return Json::Null;
    };
    let payload = to_json(&variant.algebraic_type, &value.value);
    match variant.name.as_deref() {
        Some(name) => {
            let mut map = Map::new();
            map.insert(name.to_string(), payload);
            Json::Object(map)
        }
        // As the bridge writes an unnamed variant.
        None => Json::Array(vec![value.tag.into(), payload]),
    }
}

fn array_to_json(elem: &AlgebraicType, array: &ArrayValue) -> Json {
    if let ArrayValue::U8(bytes) = array {
        return Json::String(hex::encode(bytes));
    }
    Json::Array(array.iter_cloned().map(|v| to_json(elem, &v)).collect())
}

/// Digits as an exact JSON number (the workspace's `serde_json` keeps them as
/// written: `arbitrary_precision`).
fn exact_number(digits: String) -> Json {
    serde_json::from_str::<Number>(&digits).map_or(Json::String(digits), Json::Number)
}

fn i256_hex(v: i256) -> String {
    let magnitude = v.unsigned_abs();
    if v.is_negative() {
        format!("-{magnitude:#x}")
    } else {
        format!("{magnitude:#x}")
    }
}

/// The names of the non-finite floats (JSON has no number for them).
fn non_finite(v: f64) -> Json {
    Json::String(
        if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .into(),
    )
}

fn f32_json(v: f32) -> Json {
    if !v.is_finite() {
        return non_finite(f64::from(v));
    }
    // The shortest digits that read back as this f32 (not the f64 widening's 0.10000000149011612).
    let mut buffer = ryu::Buffer::new();
    exact_number(buffer.format_finite(v).to_string())
}

fn f64_json(v: f64) -> Json {
    if !v.is_finite() {
        return non_finite(v);
    }
    let mut buffer = ryu::Buffer::new();
    exact_number(buffer.format_finite(v).to_string())
}

/// Reads a value of type `ty` from SATS-JSON (see the module docs for what is accepted).
pub fn from_json(ty: &AlgebraicType, json: &Json) -> Result<AlgebraicValue, SchemaError> {
    value_from(ty, json).map_err(|e| e.into_error())
}

/// Reads a product (a row, a reducer's arguments) from an object by element
/// name or an array in element order.
pub fn product_from_json(ty: &ProductType, json: &Json) -> Result<ProductValue, SchemaError> {
    product_from(ty, json).map_err(|e| e.into_error())
}

/// Where a value did not fit, innermost last, and why.
struct Misfit {
    path: Vec<String>,
    reason: String,
}

impl Misfit {
    fn new(reason: impl Into<String>) -> Self {
        Self { path: Vec::new(), reason: reason.into() }
    }

    fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }

    fn into_error(self) -> SchemaError {
        let mut at = String::new();
        for segment in self.path.iter().rev() {
            if !segment.starts_with('[') && !at.is_empty() {
                at.push('.');
            }
            at.push_str(segment);
        }
        SchemaError::BadJson { at: if at.is_empty() { "the value".into() } else { at }, reason: self.reason }
    }
}

type Fit<T> = Result<T, Misfit>;

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn expected<T>(what: &str, json: &Json) -> Fit<T> {
    let shown: String = json.to_string().chars().take(60).collect();
    Err(Misfit::new(format!("expected {what}, found {} ({shown})", kind(json))))
}

fn value_from(ty: &AlgebraicType, json: &Json) -> Fit<AlgebraicValue> {
    Ok(match ty {
        AlgebraicType::Product(pt) => AlgebraicValue::Product(product_from(pt, json)?),
        AlgebraicType::Sum(st) => AlgebraicValue::Sum(sum_from(st, json)?),
        AlgebraicType::Array(at) => AlgebraicValue::Array(array_from(&at.elem_ty, json)?),
        AlgebraicType::Bool => match json {
            Json::Bool(v) => AlgebraicValue::Bool(*v),
            _ => return expected("a boolean", json),
        },
        AlgebraicType::String => match json {
            Json::String(s) => AlgebraicValue::String(s.as_str().into()),
            _ => return expected("a string", json),
        },
        AlgebraicType::I8 => AlgebraicValue::I8(integer(json)?),
        AlgebraicType::U8 => AlgebraicValue::U8(integer(json)?),
        AlgebraicType::I16 => AlgebraicValue::I16(integer(json)?),
        AlgebraicType::U16 => AlgebraicValue::U16(integer(json)?),
        AlgebraicType::I32 => AlgebraicValue::I32(integer(json)?),
        AlgebraicType::U32 => AlgebraicValue::U32(integer(json)?),
        AlgebraicType::I64 => AlgebraicValue::I64(integer(json)?),
        AlgebraicType::U64 => AlgebraicValue::U64(integer(json)?),
        AlgebraicType::I128 => AlgebraicValue::I128(integer::<i128>(json)?.into()),
        AlgebraicType::U128 => AlgebraicValue::U128(integer::<u128>(json)?.into()),
        AlgebraicType::I256 => AlgebraicValue::I256(Box::new(int256(json, parse_i256)?)),
        AlgebraicType::U256 => AlgebraicValue::U256(Box::new(int256(json, parse_u256)?)),
        AlgebraicType::F32 => AlgebraicValue::F32(F32::from(float::<f32>(json)?)),
        AlgebraicType::F64 => AlgebraicValue::F64(F64::from(float::<f64>(json)?)),
        AlgebraicType::Ref(r) => return Err(Misfit::new(format!("unresolved type reference {}", r.0))),
    })
}

fn product_from(ty: &ProductType, json: &Json) -> Fit<ProductValue> {
    let elements = &ty.elements;
    let name_of = |i: usize| elements[i].name.as_deref().map_or_else(|| format!("col{i}"), str::to_string);
    let values = match json {
        Json::Array(items) => {
            if items.len() != elements.len() {
                return Err(Misfit::new(format!("expected {} elements, found {}", elements.len(), items.len())));
            }
            let mut values = Vec::with_capacity(items.len());
            for (i, (elem, item)) in elements.iter().zip(items).enumerate() {
                values.push(value_from(&elem.algebraic_type, item).map_err(|e| e.at(name_of(i)))?);
            }
            values
        }
        Json::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !(0..elements.len()).any(|i| name_of(i) == **k)) {
                let names: Vec<String> = (0..elements.len()).map(name_of).collect();
                return Err(Misfit::new(format!("no element `{unknown}` (the elements: {})", names.join(", "))));
            }
            let mut values = Vec::with_capacity(elements.len());
            for (i, elem) in elements.iter().enumerate() {
                let name = name_of(i);
                let item = map.get(&name).ok_or_else(|| Misfit::new(format!("element `{name}` is missing")))?;
                values.push(value_from(&elem.algebraic_type, item).map_err(|e| e.at(name))?);
            }
            values
        }
        _ => return expected("an object or an array", json),
    };
    Ok(ProductValue::from(values))
}

fn sum_from(ty: &SumType, json: &Json) -> Fit<SumValue> {
    let variant_by_name = |name: &str| -> Fit<u8> {
        let found = ty.variants.iter().position(|v| v.name.as_deref() == Some(name));
        let found = found.or_else(|| name.parse::<usize>().ok().filter(|tag| *tag < ty.variants.len()));
        let names: Vec<&str> = ty.variants.iter().filter_map(|v| v.name.as_deref()).collect();
        let tag =
            found.ok_or_else(|| Misfit::new(format!("no variant `{name}` (the variants: {})", names.join(", "))))?;
        u8::try_from(tag).map_err(|_| Misfit::new("more than 256 variants"))
    };
    let with_payload = |tag: u8, payload: &Json| -> Fit<SumValue> {
        let variant = &ty.variants[usize::from(tag)];
        let name = variant.name.as_deref().map_or_else(|| tag.to_string(), str::to_string);
        let value = value_from(&variant.algebraic_type, payload).map_err(|e| e.at(name))?;
        Ok(SumValue::new(tag, value))
    };
    match json {
        Json::Object(map) if map.len() == 1 => {
            let (name, payload) = map.iter().next().ok_or_else(|| Misfit::new("an empty object"))?;
            with_payload(variant_by_name(name)?, payload)
        }
        Json::Array(items) if items.len() == 2 => {
            let tag =
                items[0].as_u64().and_then(|t| u8::try_from(t).ok()).filter(|t| usize::from(*t) < ty.variants.len());
            let tag = tag.ok_or_else(|| Misfit::new(format!("`{}` is not a variant's tag", items[0])))?;
            with_payload(tag, &items[1])
        }
        Json::Null if ty.as_option().is_some() => {
            let tag = variant_by_name("none")?;
            Ok(SumValue::new(tag, AlgebraicValue::unit()))
        }
        Json::String(name) => {
            let tag = variant_by_name(name)?;
            if !ty.variants[usize::from(tag)].algebraic_type.is_unit() {
                return Err(Misfit::new(format!("variant `{name}` has a payload: write {{\"{name}\": …}}")));
            }
            Ok(SumValue::new(tag, AlgebraicValue::unit()))
        }
        _ => expected("{\"Variant\": payload} or [tag, payload]", json),
    }
}

fn array_from(elem: &AlgebraicType, json: &Json) -> Fit<ArrayValue> {
    if let (AlgebraicType::U8, Json::String(text)) = (elem, json) {
        let bytes = hex::decode(text).map_err(|e| Misfit::new(format!("not hex bytes: {e}")))?;
        return Ok(ArrayValue::from(bytes.into_boxed_slice()));
    }
    let Json::Array(items) = json else {
        return expected("an array", json);
    };
    macro_rules! each {
        ($convert:expr) => {{
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push($convert(item).map_err(|e: Misfit| e.at(format!("[{i}]")))?);
            }
            ArrayValue::from(out.into_boxed_slice())
        }};
    }
    Ok(match elem {
        AlgebraicType::Product(pt) => each!(|j| product_from(pt, j)),
        AlgebraicType::Sum(st) => each!(|j| sum_from(st, j)),
        AlgebraicType::Array(at) => each!(|j| array_from(&at.elem_ty, j)),
        AlgebraicType::Bool => each!(|j: &Json| j.as_bool().ok_or(()).or_else(|()| expected("a boolean", j))),
        AlgebraicType::String => each!(|j: &Json| match j {
            Json::String(s) => Ok(Box::<str>::from(s.as_str())),
            _ => expected("a string", j),
        }),
        AlgebraicType::I8 => each!(integer::<i8>),
        AlgebraicType::U8 => each!(integer::<u8>),
        AlgebraicType::I16 => each!(integer::<i16>),
        AlgebraicType::U16 => each!(integer::<u16>),
        AlgebraicType::I32 => each!(integer::<i32>),
        AlgebraicType::U32 => each!(integer::<u32>),
        AlgebraicType::I64 => each!(integer::<i64>),
        AlgebraicType::U64 => each!(integer::<u64>),
        AlgebraicType::I128 => each!(integer::<i128>),
        AlgebraicType::U128 => each!(integer::<u128>),
        AlgebraicType::I256 => each!(|j| int256(j, parse_i256)),
        AlgebraicType::U256 => each!(|j| int256(j, parse_u256)),
        AlgebraicType::F32 => each!(|j| float::<f32>(j).map(F32::from)),
        AlgebraicType::F64 => each!(|j| float::<f64>(j).map(F64::from)),
        AlgebraicType::Ref(r) => return Err(Misfit::new(format!("unresolved type reference {}", r.0))),
    })
}

/// An integer from a JSON number or a string of its digits, in range.
fn integer<T: std::str::FromStr>(json: &Json) -> Fit<T>
where
    T::Err: std::fmt::Display,
{
    let digits = match json {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        _ => return expected("an integer", json),
    };
    digits.trim().parse::<T>().map_err(|e| Misfit::new(format!("`{digits}` is not an integer of this type: {e}")))
}

fn int256<T>(json: &Json, parse: fn(&str) -> Option<T>) -> Fit<T> {
    let text = match json {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        _ => return expected("a 256-bit integer (\"0x…\" or digits)", json),
    };
    parse(text.trim()).ok_or_else(|| Misfit::new(format!("`{text}` is not a 256-bit integer of this type")))
}

/// Splits a sign and a `0x` prefix off: (negative, digits, radix).
fn split_radix(text: &str) -> (bool, &str, u32) {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    match rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
        Some(hex) => (negative, hex, 16),
        None => (negative, rest, 10),
    }
}

fn parse_u256(text: &str) -> Option<u256> {
    let (negative, digits, radix) = split_radix(text);
    if negative || digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u256::from_str_radix(digits, radix).ok()
}

fn parse_i256(text: &str) -> Option<i256> {
    let (negative, digits, radix) = split_radix(text);
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u256::from_str_radix(digits, radix).ok()?;
    let limit = u256::ONE << 255;
    if negative {
        match magnitude.cmp(&limit) {
            std::cmp::Ordering::Greater => None,
            std::cmp::Ordering::Equal => Some(i256::MIN),
            std::cmp::Ordering::Less => Some(-magnitude.as_i256()),
        }
    } else {
        (magnitude < limit).then(|| magnitude.as_i256())
    }
}

/// A float from a JSON number, or one of the strings `"NaN"`, `"inf"`, `"-inf"`
/// (any case; `"infinity"` too).
fn float<T: std::str::FromStr>(json: &Json) -> Fit<T>
where
    T::Err: std::fmt::Display,
{
    let text = match json {
        // Parsed from its own digits, in its own width: no rounding through f64 for an f32.
        Json::Number(n) => n.to_string(),
        Json::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            let lower = lower.strip_prefix('+').unwrap_or(&lower);
            match lower {
                "nan" | "inf" | "-inf" | "infinity" | "-infinity" => lower.to_string(),
                _ => {
                    return Err(Misfit::new(format!(
                        "`{s}` is not a number; the non-finite ones are \"NaN\", \"inf\", \"-inf\""
                    )))
                }
            }
        }
        _ => return expected("a number", json),
    };
    text.parse::<T>().map_err(|e| Misfit::new(format!("`{text}` is not a float: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacetimedb_sats::ser::serde::SerializeWrapper;
    use spacetimedb_sats::{Typespace, WithTypespace};

    /// What the SATS serde bridge writes for `value` (the server's typed JSON).
    fn bridge(ty: &AlgebraicType, value: &AlgebraicValue) -> String {
        let empty = Typespace::new(Vec::new());
        let typed = WithTypespace::new(&empty, ty).with_value(value);
        serde_json::to_string(&SerializeWrapper::new(typed)).unwrap()
    }

    #[test]
    fn special_types_print_as_the_bridge_does() {
        let identity = AlgebraicValue::product([AlgebraicValue::U256(Box::new(u256::from(0xc200u32)))]);
        let json = to_json(&AlgebraicType::identity(), &identity);
        assert_eq!(json.to_string(), r#"{"__identity__":"0xc200"}"#);
        assert_eq!(json.to_string(), bridge(&AlgebraicType::identity(), &identity));
        let stamp = AlgebraicValue::product([AlgebraicValue::I64(1_700_000_000_000_000)]);
        assert_eq!(
            to_json(&AlgebraicType::timestamp(), &stamp).to_string(),
            r#"{"__timestamp_micros_since_unix_epoch__":1700000000000000}"#
        );
        let none = AlgebraicValue::OptionNone();
        let option = AlgebraicType::option(AlgebraicType::I32);
        assert_eq!(to_json(&option, &none).to_string(), bridge(&option, &none));
        assert_eq!(to_json(&AlgebraicType::F32, &AlgebraicValue::F32(0.1f32.into())).to_string(), "0.1");
        let min = AlgebraicValue::I256(Box::new(i256::MIN));
        assert_eq!(to_json(&AlgebraicType::I256, &min).to_string(), bridge(&AlgebraicType::I256, &min));
    }

    #[test]
    fn non_finite_floats_are_named_and_read_back() {
        for (v, name) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (f64::NEG_INFINITY, "-inf")] {
            let json = to_json(&AlgebraicType::F64, &AlgebraicValue::F64(v.into()));
            assert_eq!(json, Json::String(name.into()));
            let back = from_json(&AlgebraicType::F64, &json).unwrap();
            assert_eq!(back, AlgebraicValue::F64(v.into()));
            let back = from_json(&AlgebraicType::F32, &json).unwrap();
            assert_eq!(back, AlgebraicValue::F32((v as f32).into()));
        }
        let err = from_json(&AlgebraicType::F32, &Json::String("lots".into())).unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }

    #[test]
    fn a_misfit_says_where() {
        let ty =
            AlgebraicType::product([("id", AlgebraicType::U32), ("tags", AlgebraicType::array(AlgebraicType::String))]);
        let err = from_json(&ty, &serde_json::json!({ "id": 1, "tags": ["a", 2] })).unwrap_err();
        assert!(err.to_string().contains("tags[1]"), "{err}");
        let err = from_json(&ty, &serde_json::json!({ "id": 300000000000u64, "tags": [] })).unwrap_err();
        assert!(err.to_string().contains("id"), "{err}");
        let err = from_json(&ty, &serde_json::json!({ "id": 1 })).unwrap_err();
        assert!(err.to_string().contains("`tags` is missing"), "{err}");
    }

    // ---- Round trips over every column type ----

    use proptest::prelude::*;
    use spacetimedb_sats::bsatn;
    use spacetimedb_sats::de::serde::SeedWrapper;
    use spacetimedb_sats::{ProductTypeElement, SumTypeVariant};

    /// Every column type a 1.3 table can have, nested.
    fn any_type() -> impl Strategy<Value = AlgebraicType> {
        let leaf = prop_oneof![
            Just(AlgebraicType::U8),
            Just(AlgebraicType::U16),
            Just(AlgebraicType::U32),
            Just(AlgebraicType::U64),
            Just(AlgebraicType::U128),
            Just(AlgebraicType::U256),
            Just(AlgebraicType::I8),
            Just(AlgebraicType::I16),
            Just(AlgebraicType::I32),
            Just(AlgebraicType::I64),
            Just(AlgebraicType::I128),
            Just(AlgebraicType::I256),
            Just(AlgebraicType::F32),
            Just(AlgebraicType::F64),
            Just(AlgebraicType::Bool),
            Just(AlgebraicType::String),
            Just(AlgebraicType::bytes()),
            Just(AlgebraicType::identity()),
            Just(AlgebraicType::connection_id()),
            Just(AlgebraicType::timestamp()),
            Just(AlgebraicType::time_duration()),
            Just(AlgebraicType::unit()),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|elems| {
                    let elems: Vec<ProductTypeElement> = elems
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| ProductTypeElement::new(t, Some(format!("f{i}").into())))
                        .collect();
                    AlgebraicType::product(elems.into_boxed_slice())
                }),
                // Sums with and without payloads (a unit payload is an enum's plain variant).
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|variants| {
                    let variants: Vec<SumTypeVariant> = variants
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| SumTypeVariant::new(t, Some(format!("V{i}").into())))
                        .collect();
                    AlgebraicType::sum(variants.into_boxed_slice())
                }),
                inner.clone().prop_map(AlgebraicType::option),
                inner.prop_map(AlgebraicType::array),
            ]
        })
    }

    fn finite_or_nan_f32() -> impl Strategy<Value = f32> {
        // Any float, but one NaN: a NaN's payload bits do not survive a name.
        any::<f32>().prop_map(|v| if v.is_nan() { f32::NAN } else { v })
    }

    fn finite_or_nan_f64() -> impl Strategy<Value = f64> {
        any::<f64>().prop_map(|v| if v.is_nan() { f64::NAN } else { v })
    }

    /// A random value of `ty`.
    fn any_value(ty: &AlgebraicType) -> BoxedStrategy<AlgebraicValue> {
        use AlgebraicValue as V;
        match ty {
            AlgebraicType::U8 => any::<u8>().prop_map(V::U8).boxed(),
            AlgebraicType::U16 => any::<u16>().prop_map(V::U16).boxed(),
            AlgebraicType::U32 => any::<u32>().prop_map(V::U32).boxed(),
            AlgebraicType::U64 => any::<u64>().prop_map(V::U64).boxed(),
            AlgebraicType::U128 => any::<u128>().prop_map(|v| V::U128(v.into())).boxed(),
            AlgebraicType::U256 => {
                any::<(u128, u128)>().prop_map(|(hi, lo)| V::U256(Box::new(u256::from_words(hi, lo)))).boxed()
            }
            AlgebraicType::I8 => any::<i8>().prop_map(V::I8).boxed(),
            AlgebraicType::I16 => any::<i16>().prop_map(V::I16).boxed(),
            AlgebraicType::I32 => any::<i32>().prop_map(V::I32).boxed(),
            AlgebraicType::I64 => any::<i64>().prop_map(V::I64).boxed(),
            AlgebraicType::I128 => any::<i128>().prop_map(|v| V::I128(v.into())).boxed(),
            AlgebraicType::I256 => {
                any::<(i128, i128)>().prop_map(|(hi, lo)| V::I256(Box::new(i256::from_words(hi, lo)))).boxed()
            }
            AlgebraicType::F32 => finite_or_nan_f32().prop_map(|v| V::F32(v.into())).boxed(),
            AlgebraicType::F64 => finite_or_nan_f64().prop_map(|v| V::F64(v.into())).boxed(),
            AlgebraicType::Bool => any::<bool>().prop_map(V::Bool).boxed(),
            AlgebraicType::String => any::<String>().prop_map(|s| V::String(s.into())).boxed(),
            AlgebraicType::Product(pt) => {
                let elems: Vec<_> = pt.elements.iter().map(|e| any_value(&e.algebraic_type)).collect();
                elems.prop_map(|values| V::Product(ProductValue::from(values))).boxed()
            }
            AlgebraicType::Sum(st) => {
                let variants: Vec<AlgebraicType> = st.variants.iter().map(|v| v.algebraic_type.clone()).collect();
                (0..variants.len())
                    .prop_flat_map(move |tag| {
                        any_value(&variants[tag]).prop_map(move |v| V::Sum(SumValue::new(tag as u8, v)))
                    })
                    .boxed()
            }
            AlgebraicType::Array(at) => {
                let elem = (*at.elem_ty).clone();
                proptest::collection::vec(any_value(&elem), 0..4)
                    .prop_map(move |values| array_value(&elem, &values))
                    .boxed()
            }
            AlgebraicType::Ref(_) => Just(V::unit()).boxed(),
        }
    }

    /// An array of `values` of type `elem`, built through its BSATN (length, then each element).
    fn array_value(elem: &AlgebraicType, values: &[AlgebraicValue]) -> AlgebraicValue {
        let mut bytes = (values.len() as u32).to_le_bytes().to_vec();
        for v in values {
            bytes.extend(bsatn::to_vec(v).unwrap());
        }
        AlgebraicValue::decode(&AlgebraicType::array(elem.clone()), &mut &bytes[..]).unwrap()
    }

    fn has_non_finite(v: &AlgebraicValue) -> bool {
        match v {
            AlgebraicValue::F32(f) => !f.into_inner().is_finite(),
            AlgebraicValue::F64(f) => !f.into_inner().is_finite(),
            AlgebraicValue::Product(p) => p.elements.iter().any(has_non_finite),
            AlgebraicValue::Sum(s) => has_non_finite(&s.value),
            AlgebraicValue::Array(a) => a.iter_cloned().any(|v| has_non_finite(&v)),
            _ => false,
        }
    }

    fn has_float(v: &AlgebraicValue) -> bool {
        match v {
            AlgebraicValue::F32(_) | AlgebraicValue::F64(_) => true,
            AlgebraicValue::Product(p) => p.elements.iter().any(has_float),
            AlgebraicValue::Sum(s) => has_float(&s.value),
            AlgebraicValue::Array(a) => a.iter_cloned().any(|v| has_float(&v)),
            _ => false,
        }
    }

    fn typed_value() -> impl Strategy<Value = (AlgebraicType, AlgebraicValue)> {
        any_type().prop_flat_map(|ty| any_value(&ty).prop_map(move |v| (ty.clone(), v)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Feature: spacetimedb-integration, Property 14: Data Serialization Consistency
        // (what `sql`/`subscribe` print, `call` reads back to the same value and the same BSATN bytes)
        #[test]
        fn prop_sats_json_out_then_in_is_the_same_value_and_bytes((ty, value) in typed_value()) {
            let json = to_json(&ty, &value);
            // Through text, as the command prints and reads it.
            let text = serde_json::to_string(&json).unwrap();
            let parsed: Json = serde_json::from_str(&text).unwrap();
            let back = from_json(&ty, &parsed).unwrap();
            prop_assert_eq!(bsatn::to_vec(&back).unwrap(), bsatn::to_vec(&value).unwrap());
            prop_assert_eq!(&back, &value);
        }

        #[test]
        fn prop_sats_json_out_is_what_the_sats_serde_bridge_writes((ty, value) in typed_value()) {
            prop_assume!(!has_non_finite(&value));
            let ours = serde_json::to_string(&to_json(&ty, &value)).unwrap();
            prop_assert_eq!(&ours, &bridge(&ty, &value));
            // And the SATS deserializer (the server's `call`) reads ours back.
            let empty = Typespace::new(Vec::new());
            let seed = SeedWrapper(WithTypespace::new(&empty, &ty));
            let mut de = serde_json::Deserializer::from_str(&ours);
            let theirs: AlgebraicValue = serde::de::DeserializeSeed::deserialize(seed, &mut de).unwrap();
            // serde_json's own float parser (the bridge's, without its
            // `float_roundtrip` feature) can be one ulp off; ours parses with
            // std's correctly rounded one (the round trip above holds exactly).
            if !has_float(&value) {
                prop_assert_eq!(theirs, value);
            }
        }

        #[test]
        fn prop_sats_json_in_reads_what_the_sats_serde_bridge_writes((ty, value) in typed_value()) {
            prop_assume!(!has_non_finite(&value));
            let written: Json = serde_json::from_str(&bridge(&ty, &value)).unwrap();
            prop_assert_eq!(from_json(&ty, &written).unwrap(), value);
        }

        #[test]
        fn prop_sats_json_in_never_panics_on_any_json((ty, _value) in typed_value(), noise in any_json()) {
            let _ = from_json(&ty, &noise);
        }
    }

    fn any_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            "[a-zA-Z0-9x-]{0,8}".prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::btree_map("[a-zV0-9_]{0,4}", inner, 0..3)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }
}
