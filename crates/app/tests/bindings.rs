//! Typed bindings, the rust-analyzer "sourcegen" way: the generated files are
//! checked in under `tests/bindings/` and included below as modules, so that
//! `cargo test` compiles them; `bindings_are_up_to_date` generates them again
//! and fails if a checked-in file differs. After changing the generator (or
//! the fixtures), update them with
//! `UPDATE_BINDINGS=1 cargo test -p spacelink --test bindings`.
//!
//! Fixtures: `all_types` (a column of every SATS type, a table per kind of
//! key, unique columns, keyword names, sequenced and lifecycle reducers),
//! `wide` (113 tables of every type, shaped like SpacetimeDB's sdk-test
//! module, which cannot be downloaded here), both built with the v9 module
//! builder and written as the server writes its schema JSON; and
//! `guildmaster`, generated from the schema captured from the real server
//! (`crates/connection/tests/corpus/guildmaster-schema.json`). The crate
//! `crates/bindings-check`, which depends on `spacelink` alone, includes the
//! same files: the generated code needs nothing else.
#![allow(clippy::unwrap_used)]

#[path = "bindings/all_types.rs"]
mod all_types;
#[path = "bindings/guildmaster.rs"]
mod guildmaster;
#[path = "bindings/wide.rs"]
mod wide;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use spacelink_codegen::{self as codegen, GenerateOptions};
use spacetimedb_lib::db::raw_def::v9::{Lifecycle, RawModuleDefV9, RawModuleDefV9Builder};
use spacetimedb_lib::ScheduleAt;
use spacetimedb_sats::{AlgebraicType, AlgebraicTypeRef, ProductType, ProductTypeElement};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bindings")
}

fn product(cols: Vec<(&str, AlgebraicType)>) -> AlgebraicType {
    AlgebraicType::product(
        cols.into_iter().map(|(n, t)| ProductTypeElement::new_named(t, n)).collect::<Vec<_>>().into_boxed_slice(),
    )
}

fn params(cols: Vec<(&str, AlgebraicType)>) -> ProductType {
    match product(cols) {
        AlgebraicType::Product(p) => p,
        _ => unreachable!("a product"),
    }
}

/// Every primitive and special type a column can have, by the name sdk-test gives it.
fn primitives() -> Vec<(&'static str, AlgebraicType)> {
    vec![
        ("u8", AlgebraicType::U8),
        ("u16", AlgebraicType::U16),
        ("u32", AlgebraicType::U32),
        ("u64", AlgebraicType::U64),
        ("u128", AlgebraicType::U128),
        ("u256", AlgebraicType::U256),
        ("i8", AlgebraicType::I8),
        ("i16", AlgebraicType::I16),
        ("i32", AlgebraicType::I32),
        ("i64", AlgebraicType::I64),
        ("i128", AlgebraicType::I128),
        ("i256", AlgebraicType::I256),
        ("bool", AlgebraicType::Bool),
        ("f32", AlgebraicType::F32),
        ("f64", AlgebraicType::F64),
        ("string", AlgebraicType::String),
        ("identity", AlgebraicType::identity()),
        ("connection_id", AlgebraicType::connection_id()),
        ("timestamp", AlgebraicType::timestamp()),
        ("time_duration", AlgebraicType::time_duration()),
    ]
}

/// Whether a column of this primitive can be a key (sdk-test's `unique_*`/`pk_*`).
fn keyable(name: &str) -> bool {
    !matches!(name, "f32" | "f64" | "timestamp" | "time_duration")
}

/// The named types both fixtures share: a plain enum, an enum with payloads,
/// a unit struct, nested products.
struct Shared {
    simple_enum: AlgebraicTypeRef,
    enum_with_payload: AlgebraicTypeRef,
    unit_struct: AlgebraicTypeRef,
    byte_struct: AlgebraicTypeRef,
    every_primitive_struct: AlgebraicTypeRef,
    every_vec_struct: AlgebraicTypeRef,
    vec2: AlgebraicTypeRef,
}

fn shared_types(b: &mut RawModuleDefV9Builder) -> Shared {
    let simple_enum =
        b.add_algebraic_type([], "SimpleEnum", AlgebraicType::simple_enum(["Zero", "One", "Two"].into_iter()), true);
    let unit_struct = b.add_algebraic_type([], "UnitStruct", AlgebraicType::unit(), true);
    let byte_struct = b.add_algebraic_type([], "ByteStruct", product(vec![("b", AlgebraicType::U8)]), true);
    let every_primitive_struct = b.add_algebraic_type([], "EveryPrimitiveStruct", product(primitives()), true);
    let every_vec_struct = b.add_algebraic_type(
        [],
        "EveryVecStruct",
        product(primitives().into_iter().map(|(n, t)| (n, AlgebraicType::array(t))).collect()),
        true,
    );
    let vec2 =
        b.add_algebraic_type([], "Vec2", product(vec![("x", AlgebraicType::F32), ("y", AlgebraicType::F32)]), true);
    let mut variants: Vec<(&str, AlgebraicType)> = primitives();
    variants.push(("bytes", AlgebraicType::bytes()));
    variants.push(("strings", AlgebraicType::array(AlgebraicType::String)));
    variants.push(("simple_enums", AlgebraicType::array(AlgebraicType::Ref(simple_enum))));
    variants.push(("point", AlgebraicType::Ref(vec2)));
    variants.push(("unit", AlgebraicType::Ref(unit_struct)));
    variants.push(("nothing", AlgebraicType::unit()));
    let enum_with_payload = b.add_algebraic_type(
        [],
        "EnumWithPayload",
        AlgebraicType::sum(
            variants
                .into_iter()
                .map(|(n, t)| spacetimedb_sats::SumTypeVariant::new_named(t, n))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        ),
        true,
    );
    Shared { simple_enum, enum_with_payload, unit_struct, byte_struct, every_primitive_struct, every_vec_struct, vec2 }
}

/// One table with a column of every type, a table per kind of key, unique
/// columns, keyword names, and reducers of each kind.
fn all_types_module() -> RawModuleDefV9 {
    let mut b = RawModuleDefV9Builder::new();
    let s = shared_types(&mut b);
    let nested = b.add_algebraic_type(
        [],
        "Nested",
        product(vec![
            ("inner", AlgebraicType::Ref(s.vec2)),
            ("tags", AlgebraicType::array(AlgebraicType::String)),
            ("payload", AlgebraicType::option(AlgebraicType::Ref(s.enum_with_payload))),
        ]),
        true,
    );
    let mut cols: Vec<(&str, AlgebraicType)> = vec![("id", AlgebraicType::U32)];
    let names: Vec<String> = primitives().iter().map(|(n, _)| format!("a_{n}")).collect();
    for ((_, ty), name) in primitives().into_iter().zip(&names) {
        cols.push((name.as_str(), ty));
    }
    cols.extend([
        ("a_bytes", AlgebraicType::bytes()),
        ("a_vec_u32", AlgebraicType::array(AlgebraicType::U32)),
        ("a_vec_vec_i16", AlgebraicType::array(AlgebraicType::array(AlgebraicType::I16))),
        ("a_vec_nested", AlgebraicType::array(AlgebraicType::Ref(nested))),
        ("an_opt_i32", AlgebraicType::option(AlgebraicType::I32)),
        ("an_opt_string", AlgebraicType::option(AlgebraicType::String)),
        ("an_opt_vec", AlgebraicType::option(AlgebraicType::array(AlgebraicType::U64))),
        ("an_opt_opt", AlgebraicType::option(AlgebraicType::option(AlgebraicType::U8))),
        ("an_opt_identity", AlgebraicType::option(AlgebraicType::identity())),
        ("a_simple_enum", AlgebraicType::Ref(s.simple_enum)),
        ("an_enum_with_payload", AlgebraicType::Ref(s.enum_with_payload)),
        ("a_unit_struct", AlgebraicType::Ref(s.unit_struct)),
        ("a_byte_struct", AlgebraicType::Ref(s.byte_struct)),
        ("an_every_primitive_struct", AlgebraicType::Ref(s.every_primitive_struct)),
        ("an_every_vec_struct", AlgebraicType::Ref(s.every_vec_struct)),
        ("a_nested", AlgebraicType::Ref(nested)),
        ("a_schedule_at", ScheduleAt::get_type()),
        ("type", AlgebraicType::U8),
        ("camelCase", AlgebraicType::I16),
    ]);
    let all_types_row = b.add_algebraic_type([], "AllTypes", product(cols), true);
    b.build_table("all_types", all_types_row).with_primary_key(0).with_unique_constraint(0).finish();

    // A table per kind of key.
    let key_tables: Vec<(&str, &str, AlgebraicType)> = vec![
        ("pk_identity", "PkIdentity", AlgebraicType::identity()),
        ("pk_connection_id", "PkConnectionId", AlgebraicType::connection_id()),
        ("pk_string", "PkString", AlgebraicType::String),
        ("pk_u256", "PkU256", AlgebraicType::U256),
        ("pk_i8", "PkI8", AlgebraicType::I8),
        ("pk_bool", "PkBool", AlgebraicType::Bool),
        ("pk_simple_enum", "PkSimpleEnum", AlgebraicType::Ref(s.simple_enum)),
    ];
    for (table, ty_name, key) in key_tables {
        let row = b.add_algebraic_type(
            [],
            ty_name,
            product(vec![("key", key), ("label", AlgebraicType::String), ("value", AlgebraicType::I32)]),
            true,
        );
        b.build_table(table, row).with_primary_key(0).with_unique_constraint(0).with_unique_constraint(1).finish();
    }
    // An auto-incremented key, a table without a key (unique columns only),
    // one with nothing unique, and a scheduled table.
    let row = b.add_algebraic_type(
        [],
        "AutoInc",
        product(vec![("id", AlgebraicType::U64), ("label", AlgebraicType::String)]),
        true,
    );
    b.build_table("auto_inc", row).with_auto_inc_primary_key(0).with_unique_constraint(0).finish();
    let row = b.add_algebraic_type(
        [],
        "UniqueOnly",
        product(vec![
            ("code", AlgebraicType::U32),
            ("owner", AlgebraicType::identity()),
            ("note", AlgebraicType::String),
        ]),
        true,
    );
    b.build_table("unique_only", row).with_unique_constraint(0).with_unique_constraint(1).finish();
    let row = b.add_algebraic_type(
        [],
        "NoKey",
        product(vec![("point", AlgebraicType::Ref(s.vec2)), ("when", AlgebraicType::timestamp())]),
        true,
    );
    b.build_table("no_key", row).finish();
    let row = b.add_algebraic_type(
        [],
        "TickSchedule",
        product(vec![("scheduled_id", AlgebraicType::U64), ("scheduled_at", ScheduleAt::get_type())]),
        true,
    );
    b.build_table("tick_schedule", row)
        .with_auto_inc_primary_key(0)
        .with_unique_constraint(0)
        .with_schedule("tick", 1)
        .finish();

    b.add_reducer("init", ProductType::unit(), Some(Lifecycle::Init));
    b.add_reducer("client_connected", ProductType::unit(), Some(Lifecycle::OnConnect));
    b.add_reducer("insert_all_types", params(vec![("row", AlgebraicType::Ref(all_types_row))]), None);
    b.add_reducer("tick", params(vec![("arg", AlgebraicType::Ref(row))]), None);
    b.add_reducer("no_args", ProductType::unit(), None);
    b.add_reducer(
        "move_sequenced",
        params(vec![("seq", AlgebraicType::U32), ("dx", AlgebraicType::F32), ("dy", AlgebraicType::F32)]),
        None,
    );
    b.add_reducer(
        "keyword_args",
        params(vec![
            ("type", AlgebraicType::String),
            ("self", AlgebraicType::U8),
            ("match", AlgebraicType::option(AlgebraicType::Ref(s.simple_enum))),
        ]),
        None,
    );
    b.add_reducer(
        "every_type",
        params(vec![
            ("p", AlgebraicType::Ref(s.every_primitive_struct)),
            ("v", AlgebraicType::Ref(s.every_vec_struct)),
            ("e", AlgebraicType::Ref(s.enum_with_payload)),
            ("at", ScheduleAt::get_type()),
            ("bytes", AlgebraicType::bytes()),
        ]),
        None,
    );
    b.finish()
}

/// As wide as SpacetimeDB's sdk-test module: for every type a table of one
/// value, of a vector and of an option of it, and for every key type a table
/// with it unique and one with it as the primary key; an insert reducer for each.
fn wide_module() -> RawModuleDefV9 {
    let mut b = RawModuleDefV9Builder::new();
    let s = shared_types(&mut b);
    let mut every: Vec<(String, AlgebraicType)> = primitives().into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    every.extend([
        ("simple_enum".to_string(), AlgebraicType::Ref(s.simple_enum)),
        ("enum_with_payload".to_string(), AlgebraicType::Ref(s.enum_with_payload)),
        ("unit_struct".to_string(), AlgebraicType::Ref(s.unit_struct)),
        ("byte_struct".to_string(), AlgebraicType::Ref(s.byte_struct)),
        ("every_primitive_struct".to_string(), AlgebraicType::Ref(s.every_primitive_struct)),
        ("every_vec_struct".to_string(), AlgebraicType::Ref(s.every_vec_struct)),
        ("bytes".to_string(), AlgebraicType::bytes()),
    ]);
    fn add(b: &mut RawModuleDefV9Builder, table: String, cols: Vec<(&str, AlgebraicType)>, key: Option<bool>) {
        let type_name = table.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect::<String>();
        let row = b.add_algebraic_type([], type_name, product(cols.clone()), true);
        let t = b.build_table(table.clone(), row);
        match key {
            Some(true) => t.with_primary_key(0).with_unique_constraint(0).finish(),
            Some(false) => t.with_unique_constraint(0).finish(),
            None => t.finish(),
        };
        b.add_reducer(format!("insert_{table}"), params(cols), None);
    }
    for (name, ty) in &every {
        add(&mut b, format!("one_{name}"), vec![("n", ty.clone())], None);
        add(&mut b, format!("vec_{name}"), vec![("n", AlgebraicType::array(ty.clone()))], None);
        add(&mut b, format!("option_{name}"), vec![("n", AlgebraicType::option(ty.clone()))], None);
    }
    for (name, ty) in primitives().into_iter().filter(|(n, _)| keyable(n)) {
        add(&mut b, format!("unique_{name}"), vec![("n", ty.clone()), ("data", AlgebraicType::I32)], Some(false));
        add(&mut b, format!("pk_{name}"), vec![("n", ty), ("data", AlgebraicType::I32)], Some(true));
    }
    // One table with a column of each type (sdk-test's `large_table`).
    let columns: Vec<String> = every.iter().map(|(name, _)| format!("a_{name}")).collect();
    let cols = columns.iter().map(String::as_str).zip(every.iter().map(|(_, t)| t.clone())).collect();
    add(&mut b, "large_table".to_string(), cols, None);
    b.add_reducer("no_op_succeeds", ProductType::unit(), None);
    b.finish()
}

fn schema_json(module: &RawModuleDefV9) -> String {
    let json = serde_json::to_string_pretty(&spacetimedb_sats::ser::serde::SerializeWrapper::new(module)).unwrap();
    json + "\n"
}

fn generated(json: &str, sequenced: &[&str]) -> String {
    let mut options = GenerateOptions::default();
    for pair in sequenced {
        options.add_sequenced(pair).unwrap();
    }
    let source = codegen::generate_from_json(json, &options).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rustfmt.toml");
    codegen::rustfmt(&source, Some(&config)).unwrap()
}

/// Compares `path` with `want`; with `UPDATE_BINDINGS=1`, writes it instead.
fn ensure_file(path: &Path, want: &str) -> bool {
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have == want {
        return true;
    }
    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        std::fs::write(path, want).unwrap();
        eprintln!("updated {}", path.display());
        return true;
    }
    eprintln!("{} is out of date: run `UPDATE_BINDINGS=1 cargo test -p spacelink --test bindings`", path.display());
    false
}

#[test]
fn bindings_are_up_to_date() {
    let dir = dir();
    let mut fresh = true;
    for (name, module, sequenced) in
        [("all_types", all_types_module(), &["move_sequenced=seq"][..]), ("wide", wide_module(), &[][..])]
    {
        let json = schema_json(&module);
        fresh &= ensure_file(&dir.join(format!("{name}-schema.json")), &json);
        fresh &= ensure_file(&dir.join(format!("{name}.rs")), &generated(&json, sequenced));
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connection/tests/corpus/guildmaster-schema.json");
    let json = std::fs::read_to_string(corpus).unwrap();
    fresh &= ensure_file(&dir.join("guildmaster.rs"), &generated(&json, &["move_player=seq", "act=seq"]));
    assert!(fresh, "generated bindings differ from the checked-in files (see above)");
}

#[test]
fn each_file_embeds_its_schema_and_reads_it_once() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connection/tests/corpus/guildmaster-schema.json");
    let read = |path: &Path| spacelink::ModuleSchema::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let embedded = [
        (guildmaster::schema(), read(&corpus)),
        (all_types::schema(), read(&dir().join("all_types-schema.json"))),
        (wide::schema(), read(&dir().join("wide-schema.json"))),
    ];
    for (schema, source) in &embedded {
        assert_eq!(schema.difference(source), None);
        assert_eq!(schema.tables().count(), source.tables().count());
    }
    assert!(std::sync::Arc::ptr_eq(&guildmaster::schema(), &guildmaster::schema()), "parsed once");
    let player = guildmaster::schema().table("player").unwrap().clone();
    assert_eq!(player.unique, vec![0, 1], "identity (the key) and player_id");
    assert!(guildmaster::SCHEMA_JSON.starts_with('{') && !guildmaster::SCHEMA_JSON.contains('\n'));
}

#[test]
fn the_wide_fixture_is_as_wide_as_sdk_test() {
    let module = wide_module();
    assert!(module.tables.len() >= 100, "{} tables", module.tables.len());
    let source = codegen::generate(&module, &GenerateOptions::default()).unwrap();
    assert_eq!(source.matches("TableHandle {\n    table:").count(), module.tables.len());
}

#[test]
fn generated_tables_register_their_row_types() {
    let types = all_types::row_types();
    for table in ["all_types", "pk_identity", "auto_inc", "unique_only", "no_key", "tick_schedule"] {
        assert!(types.is_registered(table), "{table}");
    }
    assert!(guildmaster::row_types().is_registered("player"));
    assert!(wide::row_types().is_registered("pk_connection_id"));
    assert_eq!(all_types::AllTypesTableHandle::NAME, "all_types");
}

/// The generated API as a game uses it; compiled, not run (it needs a server:
/// `generated_bindings_e2e` runs it against one).
#[allow(dead_code)]
fn the_generated_api_reads_like_the_official_one(client: &spacelink::Client) {
    use all_types::ModuleClient as _;
    let row: Option<spacelink::sync::Shared<all_types::AllTypes>> = client.db().all_types().find_by_id(&1);
    let _ = row.map(|r| r.a_string.clone());
    let _ = client.db().pk_identity().find_by_key(&spacelink::connection::lib::Identity::ZERO);
    let _ = client.db().pk_string().find_by_label(&"x".to_string());
    client.db().no_key().on_insert(|_ctx, row| {
        let _ = row.point.x;
    });
    client.db().all_types().on_update(|_ctx, old, new| {
        let _ = (old.id, new.id);
    });
    let _call: spacelink::ReducerCall = client.module_reducers().move_sequenced(7, 1.0, 0.0);
    let _call = client.module_reducers().keyword_args("t".into(), 1, Some(all_types::SimpleEnum::Two));
    let _call = client.module_reducers().no_args();
}

/// Random BSATN bytes of a value of `ty` (a resolved type): what a server may send.
fn bsatn_of(ty: &AlgebraicType) -> BoxedStrategy<Vec<u8>> {
    fn fixed(n: usize) -> BoxedStrategy<Vec<u8>> {
        proptest::collection::vec(any::<u8>(), n).boxed()
    }
    fn length_prefixed(items: BoxedStrategy<Vec<Vec<u8>>>) -> BoxedStrategy<Vec<u8>> {
        items
            .prop_map(|items| {
                let mut out = (items.len() as u32).to_le_bytes().to_vec();
                items.into_iter().for_each(|i| out.extend(i));
                out
            })
            .boxed()
    }
    match ty {
        AlgebraicType::Bool => any::<bool>().prop_map(|b| vec![u8::from(b)]).boxed(),
        AlgebraicType::I8 | AlgebraicType::U8 => fixed(1),
        AlgebraicType::I16 | AlgebraicType::U16 => fixed(2),
        AlgebraicType::I32 | AlgebraicType::U32 | AlgebraicType::F32 => fixed(4),
        AlgebraicType::I64 | AlgebraicType::U64 | AlgebraicType::F64 => fixed(8),
        AlgebraicType::I128 | AlgebraicType::U128 => fixed(16),
        AlgebraicType::I256 | AlgebraicType::U256 => fixed(32),
        AlgebraicType::String => any::<String>()
            .prop_map(|s| {
                let mut out = (s.len() as u32).to_le_bytes().to_vec();
                out.extend(s.as_bytes());
                out
            })
            .boxed(),
        AlgebraicType::Array(a) => length_prefixed(proptest::collection::vec(bsatn_of(&a.elem_ty), 0..4).boxed()),
        AlgebraicType::Product(p) => {
            let parts: Vec<BoxedStrategy<Vec<u8>>> = p.elements.iter().map(|e| bsatn_of(&e.algebraic_type)).collect();
            parts.prop_map(|parts| parts.concat()).boxed()
        }
        AlgebraicType::Sum(s) => {
            let variants: Vec<BoxedStrategy<Vec<u8>>> = s
                .variants
                .iter()
                .enumerate()
                .map(|(tag, v)| {
                    bsatn_of(&v.algebraic_type)
                        .prop_map(move |payload| {
                            let mut out = vec![tag as u8];
                            out.extend(payload);
                            out
                        })
                        .boxed()
                })
                .collect();
            proptest::strategy::Union::new(variants).boxed()
        }
        AlgebraicType::Ref(_) => unreachable!("the schema's row types are resolved"),
    }
}

fn all_types_row_type() -> AlgebraicType {
    let json = std::fs::read_to_string(dir().join("all_types-schema.json")).unwrap();
    let schema = spacelink::ModuleSchema::from_json(&json).unwrap();
    AlgebraicType::Product(schema.table("all_types").unwrap().row_type.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 14: Data Serialization Consistency (a random all_types row, as BSATN, decodes into the generated type and encodes back to the same bytes)
    #[test]
    fn prop_generated_all_types_rows_round_trip(bytes in bsatn_of(&all_types_row_type())) {
        let row: all_types::AllTypes = spacetimedb_sats::bsatn::from_slice(&bytes).unwrap();
        prop_assert_eq!(spacetimedb_sats::bsatn::to_vec(&row).unwrap(), bytes.clone());
        // Through the table's checked decoding too, as the cache decodes.
        let json = std::fs::read_to_string(dir().join("all_types-schema.json")).unwrap();
        let schema = spacelink::ModuleSchema::from_json(&json).unwrap();
        let typed: all_types::AllTypes = schema.table("all_types").unwrap().decode_as(&bytes).unwrap();
        // Bytes, not `==`: a float column may hold a NaN.
        prop_assert_eq!(spacetimedb_sats::bsatn::to_vec(&typed).unwrap(), bytes);
    }
}
