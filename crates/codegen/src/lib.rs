//! spacelink's bindings generator: Rust source for a SpacetimeDB module's
//! tables and reducers, from its v9 schema. The `spacelink generate` command
//! (the `spacelink` crate's `cli` feature) runs it, and so can a game's
//! `build.rs`; it is not part of a game's own build otherwise:
//!
//! ```no_run
//! // build.rs, with `spacelink-codegen` under [build-dependencies]
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let json = std::fs::read_to_string("schema.json")?; // GET /v1/database/<db>/schema?version=9
//!     println!("cargo::rerun-if-changed=schema.json");
//!     let source = spacelink_codegen::generate_from_json(&json, &Default::default())?;
//!     let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("bindings.rs");
//!     std::fs::write(out, source)?; // then `include!(concat!(env!("OUT_DIR"), "/bindings.rs"));`
//!     Ok(())
//! }
//! ```
//!
//! [`generate`] turns a [`RawModuleDefV9`] (the JSON of
//! `GET /v1/database/<db>/schema?version=9`, read by [`parse_schema`]) into one
//! Rust file that needs no dependency but `spacelink` (it uses
//! `spacelink::__codegen`):
//!
//! - a type for every named type of the typespace (a struct for a product, an
//!   enum for a sum, with unit and payload variants), named as the official
//!   generator names them (the table's row type is its product type's name:
//!   `Player` for `player`), deriving the SATS `Serialize` and `Deserialize`;
//! - per table, a handle (`PlayerTableHandle`, `Clone`, a few reference
//!   counts) with `iter`, `count`, `find_by_<column>` for the primary key and
//!   each unique column (a hash lookup: the cache indexes them),
//!   `on_insert`, `on_delete`, and `on_update` when the table has a primary key;
//! - per reducer (lifecycle reducers excepted), an argument struct
//!   (`JoinArgs`), a method that returns a `spacelink::ReducerCall` at once,
//!   and `on_<reducer>(|cause, args| ..)`, run for each of its transactions
//!   the client sees, whoever called it (the official SDK's `on_<reducer>`);
//!   a reducer named in [`GenerateOptions::sequenced`] passes its `u32`
//!   sequence parameter to `call_sequenced`, so it is resent after a lost
//!   session and still runs at most once;
//! - the entry points: the trait `ModuleClient` on `spacelink::Client`
//!   (`client.db().player().iter()`, `client.module_reducers().join(..)`),
//!   `row_types()` for `spacelink::ClientBuilder::with_row_types`, and the
//!   module's definition itself, `SCHEMA_JSON` (tables, reducers and type
//!   names sorted by name), read once by `schema()` for
//!   `spacelink::ClientBuilder::with_schema`: a game built with the bindings
//!   fetches no schema at start.
//!
//! The output is deterministic (everything sorted by name) and laid out as
//! rustfmt lays it out. Names: snake_case tables and reducers become PascalCase
//! types, columns and parameters snake_case fields, Rust keywords are escaped
//! (`r#type`). What cannot be generated (an unnamed product used as a column,
//! two names that meet in Rust, a sequenced parameter that is not a `u32`) is a
//! [`CodegenError::Invalid`], never a panic.
//!
//! What generated code looks like (abridged), for a table `score` keyed by `id`:
//!
//! ```
//! use spacelink::__codegen as __sl;
//!
//! /// A row of `score`.
//! #[derive(__sl::lib::ser::Serialize, __sl::lib::de::Deserialize, Clone, Copy, Debug, PartialEq)]
//! #[sats(crate = __sl::lib)]
//! pub struct Score {
//!     pub id: u64,
//!     pub owner: __sl::Identity,
//!     pub points: Option<i32>,
//! }
//!
//! /// The table `score` (rows: [`Score`]), read from the client's cache: `client.db().score()`.
//! #[derive(Debug)]
//! pub struct ScoreTableHandle {
//!     table: __sl::Table<Score>,
//! }
//!
//! impl ScoreTableHandle {
//!     /// Every cached row (decoded once, shared).
//!     pub fn iter(&self) -> impl Iterator<Item = __sl::Shared<Score>> + '_ {
//!         self.table.iter()
//!     }
//!
//!     /// The cached row whose `id` is `id`.
//!     pub fn find_by_id(&self, id: &u64) -> Option<__sl::Shared<Score>> {
//!         self.table.find("id", id)
//!     }
//! }
//!
//! /// Every table's row type, for `ClientBuilder::with_row_types`.
//! pub fn row_types() -> __sl::RowTypes {
//!     __sl::RowTypes::new().register::<Score>("score")
//! }
//!
//! // With a server, a game reads the table from the cache every frame
//! // (the generated `client.db().score()` builds the handle so):
//! # #[allow(dead_code)]
//! fn best(client: &spacelink::Client) -> Option<i32> {
//!     let scores = ScoreTableHandle { table: client.table::<Score>("score") };
//!     let _seventh = scores.find_by_id(&7);
//!     scores.iter().filter_map(|s| s.points).max()
//! }
//!
//! // A row as the server sends it decodes into the generated type, and back.
//! let row = Score { id: 7, owner: __sl::Identity::ZERO, points: Some(-3) };
//! let bytes = __sl::bsatn::to_vec(&row).unwrap();
//! let back: Score = __sl::bsatn::from_slice(&bytes).unwrap();
//! assert_eq!(back, row);
//! assert!(row_types().is_registered("score"));
//!
//! // And the generator writes such a handle from the module's schema.
//! let json = include_str!("../../app/tests/bindings/all_types-schema.json");
//! let source = spacelink_codegen::generate_from_json(json, &Default::default()).unwrap();
//! assert!(source.contains("pub fn find_by_id(&self, id: &u32) -> Option<__sl::Shared<AllTypes>>"));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use spacelink_connection::lib::db::raw_def::v9::{RawConstraintDataV9, RawModuleDefV9, TableType};
use spacelink_connection::sats::{AlgebraicType, ProductType, SumType};
use spacelink_connection::ModuleSchema;

mod error;

pub use error::CodegenError;

/// How to generate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Sequenced reducers: reducer name to the name of its `u32` sequence
    /// parameter (`move_player` → `seq`; on the command line
    /// `--sequenced move_player=seq`). Their generated methods call
    /// `call_sequenced` with that parameter as the sequence number. Default: none.
    pub sequenced: BTreeMap<String, String>,
}

impl GenerateOptions {
    /// Parses one `reducer=param` pair (the command's `--sequenced`).
    pub fn add_sequenced(&mut self, pair: &str) -> Result<(), CodegenError> {
        let (reducer, param) = pair
            .split_once('=')
            .filter(|(r, p)| !r.is_empty() && !p.is_empty())
            .ok_or_else(|| codegen(format!("`{pair}` is not `reducer=parameter` (e.g. `move_player=seq`)")))?;
        self.sequenced.insert(reducer.to_string(), param.to_string());
        Ok(())
    }
}

fn codegen(reason: String) -> CodegenError {
    CodegenError::Invalid(reason)
}

/// Reads the JSON of `GET /v1/database/<db>/schema?version=9` as a v9 module
/// definition, checked as [`ModuleSchema`] checks it (every type reference
/// present, no recursive or over-deep type).
pub fn parse_schema(json: &str) -> Result<RawModuleDefV9, CodegenError> {
    Ok(ModuleSchema::from_json(json)?.raw().clone())
}

/// The bindings of a schema read or fetched as a [`ModuleSchema`] (`ModuleSchema::fetch_for`).
pub fn generate_for(schema: &ModuleSchema, options: &GenerateOptions) -> Result<String, CodegenError> {
    generate(schema.raw(), options)
}

/// [`parse_schema`] then [`generate`].
pub fn generate_from_json(json: &str, options: &GenerateOptions) -> Result<String, CodegenError> {
    generate(&parse_schema(json)?, options)
}

/// The Rust source of the bindings of `module`.
///
/// The definition is first checked as [`ModuleSchema::from_raw`] checks it
/// (no missing, recursive or over-large type), so generation is bounded.
pub fn generate(module: &RawModuleDefV9, options: &GenerateOptions) -> Result<String, CodegenError> {
    ModuleSchema::from_raw(module.clone())?;
    let mut out = Generator::new(module, options)?.run()?;
    embed_schema(&mut out, module)?;
    Ok(out)
}

/// Appends the module's definition as a `SCHEMA_JSON` constant and `schema()`,
/// which reads it once. The definition is embedded with its tables, reducers
/// and type names sorted by name (what they mean does not depend on their
/// order), so the file stays a function of the schema's content.
fn embed_schema(out: &mut String, module: &RawModuleDefV9) -> Result<(), CodegenError> {
    let mut sorted = module.clone();
    sorted.tables.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.reducers.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.types.sort_by(|a, b| (&a.name.scope, &a.name.name).cmp(&(&b.name.scope, &b.name.name)));
    let json = ModuleSchema::from_raw(sorted)?.to_json();
    // The fewest `#`s that no `"` of the text is followed by.
    let hashes = (0..).map(|n| "#".repeat(n)).find(|h| !json.contains(&format!("\"{h}"))).unwrap_or_default();
    let _ = write!(
        out,
        "
/// The module's definition (v9, as `GET /v1/database/<db>/schema?version=9`
/// returns it), embedded by `spacelink generate`.
pub const SCHEMA_JSON: &str = r{hashes}\"{json}\"{hashes};

/// The module's schema, read from [`SCHEMA_JSON`] once: give it to
/// `ClientBuilder::with_schema` and the client fetches no schema at start.
pub fn schema() -> std::sync::Arc<__sl::ModuleSchema> {{
    static SCHEMA: std::sync::OnceLock<std::sync::Arc<__sl::ModuleSchema>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| __sl::embedded_schema(SCHEMA_JSON)).clone()
}}
"
    );
    Ok(())
}

/// `source` laid out by `rustfmt` (edition 2021), with the settings file
/// `config` when given (a project's `rustfmt.toml`), so that generated files
/// checked into a project stay as its `cargo fmt` leaves them.
pub fn rustfmt(source: &str, config: Option<&std::path::Path>) -> Result<String, CodegenError> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut command = Command::new("rustfmt");
    command.args(["--edition", "2021", "--emit", "stdout"]);
    if let Some(config) = config {
        command.arg("--config-path").arg(config);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| codegen(format!("cannot run rustfmt: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| codegen("rustfmt has no stdin".into()))?;
    let input = source.to_string();
    // Written from a thread: rustfmt may fill its stdout before it has read all of stdin.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().map_err(|e| codegen(format!("rustfmt failed: {e}")))?;
    let written = writer.join().map_err(|_| codegen("writing to rustfmt panicked".into()))?;
    written.map_err(|e| codegen(format!("cannot write to rustfmt: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(codegen(format!("rustfmt refused the generated code: {}", stderr.trim())));
    }
    String::from_utf8(output.stdout).map_err(|e| codegen(format!("rustfmt wrote non-UTF-8: {e}")))
}

/// Names the generated code itself uses at the top level of the file.
const FIXED_NAMES: &[&str] = &[
    "RemoteTables",
    "RemoteReducers",
    "ModuleClient",
    "row_types",
    "schema",
    "SCHEMA_JSON",
    "__sl",
    // The prelude's, which the generated code names unqualified.
    "Option",
    "Some",
    "None",
    "Vec",
    "String",
    "Box",
    "Result",
    "Ok",
    "Err",
    "Send",
    "Sized",
    "FnMut",
    "Iterator",
];

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in", "let",
    "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait", "true", "type",
    "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];
/// Keywords that cannot be raw identifiers.
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate", "_"];

/// `s` as a valid Rust identifier: other characters as `_`, a leading digit
/// prefixed, keywords escaped (`r#type`) or, where Rust forbids that, suffixed.
fn ident(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if NOT_RAW.contains(&out.as_str()) {
        out.push('_');
    } else if KEYWORDS.contains(&out.as_str()) {
        out.insert_str(0, "r#");
    }
    out
}

/// Splits `s` into words at `_`, non-alphanumerics and lower-to-upper case changes.
fn words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower_or_digit = false;
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower_or_digit = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower_or_digit && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `player_state` → `PlayerState`, as an identifier.
fn pascal(s: &str) -> String {
    let joined: String = words(s)
        .iter()
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect();
    ident(&joined)
}

/// `playerState` → `player_state`, as an identifier.
fn snake(s: &str) -> String {
    let joined = words(s).iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>().join("_");
    ident(&joined)
}

/// An identifier without its `r#`, for names built from it (`find_by_type`).
fn unraw(ident: &str) -> &str {
    ident.strip_prefix("r#").unwrap_or(ident)
}

/// One column or parameter: its Rust name, its name in the module, its Rust type.
struct Field {
    rust: String,
    module: String,
    ty: String,
}

struct TableGen {
    name: String,
    accessor: String,
    handle: String,
    row: String,
    /// The primary key and unique columns, in column order.
    unique: Vec<Field>,
    has_primary_key: bool,
}

struct ReducerGen {
    name: String,
    method: String,
    args: String,
    params: Vec<Field>,
    /// The Rust name of the sequence parameter, for a sequenced reducer.
    seq: Option<String>,
    /// Whether every parameter is `Copy`.
    copy: bool,
}

struct Generator<'a> {
    module: &'a RawModuleDefV9,
    options: &'a GenerateOptions,
    /// Typespace index to the Rust name of its named type.
    names: HashMap<u32, String>,
    /// Every top-level Rust name given out, to refuse two that meet.
    taken: BTreeMap<String, String>,
    /// Whether each named type is `Copy`, once worked out.
    copy: std::cell::RefCell<HashMap<u32, bool>>,
}

impl<'a> Generator<'a> {
    fn new(module: &'a RawModuleDefV9, options: &'a GenerateOptions) -> Result<Self, CodegenError> {
        let mut this =
            Self { module, options, names: HashMap::new(), taken: BTreeMap::new(), copy: Default::default() };
        for fixed in FIXED_NAMES {
            this.taken.insert((*fixed).to_string(), "the generated code".to_string());
        }
        for def in &module.types {
            let full: Vec<&str> = def.name.scope.iter().map(|s| &**s).chain([&*def.name.name]).collect();
            let rust = pascal(&full.join("_"));
            this.take(&rust, format!("type `{}`", full.join("::")))?;
            if this.names.insert(def.ty.0, rust).is_some() {
                return Err(codegen(format!("type {} has two names in the module's `types`", def.ty.0)));
            }
        }
        Ok(this)
    }

    fn take(&mut self, rust: &str, owner: String) -> Result<(), CodegenError> {
        if let Some(other) = self.taken.insert(rust.to_string(), owner.clone()) {
            return Err(codegen(format!("{owner} and {other} would both be named `{rust}` in Rust")));
        }
        Ok(())
    }

    /// The Rust type that uses `ty` (a column, a field, a parameter).
    fn type_use(&self, ty: &AlgebraicType, what: &str) -> Result<String, CodegenError> {
        Ok(match ty {
            AlgebraicType::Ref(r) => self
                .names
                .get(&r.0)
                .cloned()
                .ok_or_else(|| codegen(format!("{what}: type {} has no name in the module's `types`", r.0)))?,
            AlgebraicType::Product(p) => {
                if p.is_identity() {
                    "__sl::Identity".into()
                } else if p.is_connection_id() {
                    "__sl::ConnectionId".into()
                } else if p.is_timestamp() {
                    "__sl::Timestamp".into()
                } else if p.is_time_duration() {
                    "__sl::TimeDuration".into()
                } else if p.elements.is_empty() {
                    "()".into()
                } else {
                    return Err(codegen(format!("{what}: an unnamed product type (the module must name it)")));
                }
            }
            AlgebraicType::Sum(s) => {
                if let Some(inner) = s.as_option() {
                    format!("Option<{}>", self.type_use(inner, what)?)
                } else if ty.is_schedule_at() {
                    "__sl::ScheduleAt".into()
                } else {
                    return Err(codegen(format!("{what}: an unnamed sum type (the module must name it)")));
                }
            }
            AlgebraicType::Array(a) => format!("Vec<{}>", self.type_use(&a.elem_ty, what)?),
            AlgebraicType::Bool => "bool".into(),
            AlgebraicType::I8 => "i8".into(),
            AlgebraicType::U8 => "u8".into(),
            AlgebraicType::I16 => "i16".into(),
            AlgebraicType::U16 => "u16".into(),
            AlgebraicType::I32 => "i32".into(),
            AlgebraicType::U32 => "u32".into(),
            AlgebraicType::I64 => "i64".into(),
            AlgebraicType::U64 => "u64".into(),
            AlgebraicType::I128 => "i128".into(),
            AlgebraicType::U128 => "u128".into(),
            AlgebraicType::I256 => "__sl::i256".into(),
            AlgebraicType::U256 => "__sl::u256".into(),
            AlgebraicType::F32 => "f32".into(),
            AlgebraicType::F64 => "f64".into(),
            AlgebraicType::String => "String".into(),
        })
    }

    /// Whether the Rust type for `ty` is `Copy` (then the generated type derives it too).
    fn is_copy(&self, ty: &AlgebraicType, depth: usize) -> bool {
        if depth > spacelink_connection::schema::MAX_TYPE_DEPTH {
            return false;
        }
        match ty {
            AlgebraicType::String | AlgebraicType::Array(_) => false,
            AlgebraicType::Ref(r) => {
                if let Some(known) = self.copy.borrow().get(&r.0) {
                    return *known;
                }
                let copy = match self.module.typespace.types.get(r.0 as usize) {
                    Some(AlgebraicType::Product(p)) if !p.is_special() => {
                        p.elements.iter().all(|e| self.is_copy(&e.algebraic_type, depth + 1))
                    }
                    Some(AlgebraicType::Sum(s)) if !s.is_special() => {
                        s.variants.iter().all(|v| self.is_copy(&v.algebraic_type, depth + 1))
                    }
                    Some(other) => self.is_copy(other, depth + 1),
                    None => false,
                };
                self.copy.borrow_mut().insert(r.0, copy);
                copy
            }
            AlgebraicType::Product(p) => p.is_special() || p.elements.is_empty(),
            AlgebraicType::Sum(s) => match s.as_option() {
                Some(inner) => self.is_copy(inner, depth + 1),
                None => ty.is_schedule_at() || s.variants.iter().all(|v| self.is_copy(&v.algebraic_type, depth + 1)),
            },
            _ => true,
        }
    }

    /// The fields of a product: snake_case, unnamed ones `field_<i>` (or `arg<i>`).
    fn fields(&self, product: &ProductType, unnamed: &str, what: &str) -> Result<Vec<Field>, CodegenError> {
        let mut seen = BTreeSet::new();
        let mut fields = Vec::with_capacity(product.elements.len());
        for (i, e) in product.elements.iter().enumerate() {
            let module = e.name.as_deref().map_or_else(|| format!("{unnamed}{i}"), str::to_string);
            let rust = snake(&module);
            if !seen.insert(rust.clone()) {
                return Err(codegen(format!("{what}: two fields would both be named `{rust}` in Rust")));
            }
            let ty = self.type_use(&e.algebraic_type, &format!("{what}, field `{module}`"))?;
            fields.push(Field { rust, module, ty });
        }
        Ok(fields)
    }

    fn run(mut self) -> Result<String, CodegenError> {
        let module = self.module;
        let mut tables = Vec::new();
        for table in module.tables.iter().filter(|t| t.table_type == TableType::User) {
            let name = table.name.to_string();
            let row = self.names.get(&table.product_type_ref.0).cloned().ok_or_else(|| {
                codegen(format!(
                    "table `{name}`: its row type {} has no name in the module's `types`",
                    table.product_type_ref.0
                ))
            })?;
            let Some(AlgebraicType::Product(product)) = module.typespace.get(table.product_type_ref) else {
                return Err(codegen(format!("table `{name}`: its row type is not a product")));
            };
            let columns = self.fields(product, "col", &format!("table `{name}`"))?;
            let mut unique_cols: BTreeSet<usize> = table.primary_key.iter().map(|c| c.idx()).collect();
            for constraint in &table.constraints {
                let RawConstraintDataV9::Unique(unique) = &constraint.data else { continue };
                if unique.columns.len() == 1 {
                    unique_cols.extend(unique.columns.iter().map(|c| c.idx()));
                }
            }
            let mut unique = Vec::new();
            for col in unique_cols {
                let field = columns
                    .get(col)
                    .ok_or_else(|| codegen(format!("table `{name}`: key column {col} is not in its row type")))?;
                unique.push(Field { rust: field.rust.clone(), module: field.module.clone(), ty: field.ty.clone() });
            }
            let handle = format!("{}TableHandle", unraw(&pascal(&name)));
            self.take(&handle, format!("the handle of table `{name}`"))?;
            tables.push(TableGen {
                accessor: snake(&name),
                handle,
                row,
                unique,
                has_primary_key: !table.primary_key.is_empty(),
                name,
            });
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        check_unique(tables.iter().map(|t| (&t.accessor, &t.name)), "table")?;

        let mut reducers = Vec::new();
        for reducer in module.reducers.iter().filter(|r| r.lifecycle.is_none()) {
            let name = reducer.name.to_string();
            let params = self.fields(&reducer.params, "arg", &format!("reducer `{name}`"))?;
            let seq = match self.options.sequenced.get(&name) {
                None => None,
                Some(param) => {
                    let index = reducer
                        .params
                        .elements
                        .iter()
                        .position(|e| e.name.as_deref() == Some(param.as_str()))
                        .ok_or_else(|| {
                            codegen(format!("reducer `{name}` has no parameter `{param}` to sequence by"))
                        })?;
                    if reducer.params.elements[index].algebraic_type != AlgebraicType::U32 {
                        return Err(codegen(format!(
                            "reducer `{name}`: the sequence parameter `{param}` is not a u32"
                        )));
                    }
                    Some(params[index].rust.clone())
                }
            };
            let args = format!("{}Args", unraw(&pascal(&name)));
            self.take(&args, format!("the arguments of reducer `{name}`"))?;
            let copy = reducer.params.elements.iter().all(|e| self.is_copy(&e.algebraic_type, 0));
            reducers.push(ReducerGen { method: snake(&name), args, params, seq, copy, name });
        }
        for name in self.options.sequenced.keys() {
            if !reducers.iter().any(|r| &r.name == name) {
                return Err(codegen(format!("--sequenced names `{name}`, which is not a reducer a client can call")));
            }
        }
        reducers.sort_by(|a, b| a.name.cmp(&b.name));
        check_unique(reducers.iter().map(|r| (&r.method, &r.name)), "reducer")?;

        let mut out = String::new();
        self.header(&mut out, tables.len(), reducers.len());
        self.types(&mut out, &tables)?;
        for table in &tables {
            table_handle(&mut out, table);
        }
        for reducer in &reducers {
            args_struct(&mut out, reducer);
        }
        entry_points(&mut out, &tables, &reducers);
        Ok(out)
    }

    fn header(&self, out: &mut String, tables: usize, reducers: usize) {
        let _ = write!(
            out,
            "// Generated by `spacelink generate`: do not edit, generate again.\n\
             //! The module's typed bindings: {tables} table(s), {reducers} reducer(s).\n"
        );
        // An inner doc comment must come before items but after the plain comment: fine for rustc.
        out.push_str("\n#![allow(dead_code, unused_imports, clippy::all)]\n\nuse spacelink::__codegen as __sl;\n");
        let sequenced: Vec<String> = self.options.sequenced.iter().map(|(r, p)| format!("{r}={p}")).collect();
        if !sequenced.is_empty() {
            let _ = writeln!(out, "\n// Sequenced reducers (--sequenced): {}.", sequenced.join(", "));
        }
    }

    fn types(&self, out: &mut String, tables: &[TableGen]) -> Result<(), CodegenError> {
        let mut rows: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in tables {
            rows.entry(t.row.as_str()).or_default().push(&t.name);
        }
        let mut defs: Vec<(&String, u32)> = self.names.iter().map(|(r, n)| (n, *r)).collect();
        defs.sort();
        for (rust, index) in defs {
            let what = format!("type `{rust}`");
            let ty = self
                .module
                .typespace
                .types
                .get(index as usize)
                .ok_or_else(|| codegen(format!("{what}: {index} is not in the typespace")))?;
            out.push('\n');
            match rows.get(rust.as_str()) {
                Some(names) => {
                    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                    let _ = writeln!(out, "/// A row of {}.", names.join(", "));
                }
                None => {
                    let _ = writeln!(out, "/// The module's type `{rust}`.");
                }
            }
            match ty {
                AlgebraicType::Product(p) if !p.is_special() => self.product(out, rust, p, &what)?,
                AlgebraicType::Sum(s) if !s.is_special() && s.as_option().is_none() => self.sum(out, rust, s, &what)?,
                other => {
                    let _ = writeln!(out, "pub type {rust} = {};", self.type_use(other, &what)?);
                }
            }
        }
        Ok(())
    }

    fn product(&self, out: &mut String, rust: &str, p: &ProductType, what: &str) -> Result<(), CodegenError> {
        let fields = self.fields(p, "field_", what)?;
        let copy = if p.elements.iter().all(|e| self.is_copy(&e.algebraic_type, 0)) { "Copy, " } else { "" };
        let _ = writeln!(
            out,
            "#[derive(__sl::lib::ser::Serialize, __sl::lib::de::Deserialize, Clone, {copy}Debug, PartialEq)]"
        );
        out.push_str("#[sats(crate = __sl::lib)]\n");
        if fields.is_empty() {
            let _ = writeln!(out, "pub struct {rust} {{}}");
            return Ok(());
        }
        let _ = writeln!(out, "pub struct {rust} {{");
        for f in &fields {
            let _ = writeln!(out, "    pub {}: {},", f.rust, f.ty);
        }
        out.push_str("}\n");
        Ok(())
    }

    fn sum(&self, out: &mut String, rust: &str, s: &SumType, what: &str) -> Result<(), CodegenError> {
        let mut seen = BTreeSet::new();
        let mut variants = Vec::with_capacity(s.variants.len());
        let mut all_unit = true;
        for (i, v) in s.variants.iter().enumerate() {
            let module = v.name.as_deref().map_or_else(|| format!("Variant{i}"), str::to_string);
            let name = pascal(&module);
            if !seen.insert(name.clone()) {
                return Err(codegen(format!("{what}: two variants would both be named `{name}` in Rust")));
            }
            let payload = if v.algebraic_type.is_unit() {
                None
            } else {
                all_unit = false;
                Some(self.type_use(&v.algebraic_type, &format!("{what}, variant `{module}`"))?)
            };
            variants.push((name, payload));
        }
        if variants.is_empty() {
            return Err(codegen(format!("{what}: a sum type without variants has no values")));
        }
        let copy = s.variants.iter().all(|v| self.is_copy(&v.algebraic_type, 0));
        let extra = match (all_unit, copy) {
            (true, _) => "Copy, Eq, Hash, ",
            (false, true) => "Copy, ",
            (false, false) => "",
        };
        let _ = writeln!(
            out,
            "#[derive(__sl::lib::ser::Serialize, __sl::lib::de::Deserialize, Clone, {extra}Debug, PartialEq)]"
        );
        out.push_str("#[sats(crate = __sl::lib)]\n");
        let _ = writeln!(out, "pub enum {rust} {{");
        for (name, payload) in variants {
            match payload {
                None => {
                    let _ = writeln!(out, "    {name},");
                }
                Some(ty) => {
                    let _ = writeln!(out, "    {name}({ty}),");
                }
            }
        }
        out.push_str("}\n");
        Ok(())
    }
}

fn check_unique<'s>(items: impl Iterator<Item = (&'s String, &'s String)>, kind: &str) -> Result<(), CodegenError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (rust, name) in items {
        if let Some(other) = seen.insert(rust, name) {
            return Err(codegen(format!("{kind}s `{other}` and `{name}` would both be named `{rust}` in Rust")));
        }
    }
    Ok(())
}

fn table_handle(out: &mut String, t: &TableGen) {
    let (name, handle, row) = (&t.name, &t.handle, &t.row);
    let _ = write!(
        out,
        "
/// The table `{name}` (rows: [`{row}`]), read from the client's cache: `client.db().{accessor}()`.
/// Cheap to make and to clone.
#[derive(Clone, Debug)]
pub struct {handle} {{
    table: __sl::Table<{row}>,
}}

impl {handle} {{
    /// The table's name in the module.
    pub const NAME: &'static str = \"{name}\";

    /// Every cached row (decoded once, shared).
    pub fn iter(&self) -> impl Iterator<Item = __sl::Shared<{row}>> + '_ {{
        self.table.iter()
    }}

    /// How many rows are cached.
    pub fn count(&self) -> usize {{
        self.table.count()
    }}
",
        accessor = t.accessor
    );
    for f in &t.unique {
        let _ = write!(
            out,
            "
    /// The cached row whose `{module}` is `{param}` (one hash lookup).
    pub fn find_by_{col}(&self, {param}: &{ty}) -> Option<__sl::Shared<{row}>> {{
        self.table.find(\"{module}\", {param})
    }}
",
            module = f.module,
            col = unraw(&f.rust),
            param = f.rust,
            ty = f.ty,
        );
    }
    let _ = write!(
        out,
        "
    /// Runs `callback(ctx, row)` in `frame_tick` for each row inserted (`ctx` says why).
    pub fn on_insert(&self, callback: impl FnMut(&__sl::RowContext<'_>, &{row}) + Send + 'static) -> __sl::CallbackId {{
        self.table.on_insert(callback)
    }}

    /// Runs `callback(ctx, row)` in `frame_tick` for each row deleted.
    pub fn on_delete(&self, callback: impl FnMut(&__sl::RowContext<'_>, &{row}) + Send + 'static) -> __sl::CallbackId {{
        self.table.on_delete(callback)
    }}
"
    );
    if t.has_primary_key {
        let _ = write!(
            out,
            "
    /// Runs `callback(ctx, old, new)` in `frame_tick` for each row updated (same primary key).
    pub fn on_update(&self, callback: impl FnMut(&__sl::RowContext<'_>, &{row}, &{row}) + Send + 'static) -> __sl::CallbackId {{
        self.table.on_update(callback)
    }}
"
        );
    }
    let _ = write!(
        out,
        "
    /// The dynamic table underneath (`find` by any column, the table's name).
    pub fn table(&self) -> &__sl::Table<{row}> {{
        &self.table
    }}
}}
"
    );
}

fn args_struct(out: &mut String, r: &ReducerGen) {
    let _ = write!(
        out,
        "
/// The arguments of reducer `{name}`.
#[derive(__sl::lib::ser::Serialize, __sl::lib::de::Deserialize, Clone, {copy}Debug, PartialEq)]
#[sats(crate = __sl::lib)]
",
        name = r.name,
        copy = if r.copy { "Copy, " } else { "" },
    );
    if r.params.is_empty() {
        let _ = writeln!(out, "pub struct {} {{}}", r.args);
        return;
    }
    let _ = writeln!(out, "pub struct {} {{", r.args);
    for p in &r.params {
        let _ = writeln!(out, "    pub {}: {},", p.rust, p.ty);
    }
    out.push_str("}\n");
}

fn entry_points(out: &mut String, tables: &[TableGen], reducers: &[ReducerGen]) {
    out.push_str(
        "
/// The module's tables: `client.db()`.
#[derive(Debug)]
pub struct RemoteTables<'a> {
    client: &'a __sl::Client,
}

impl RemoteTables<'_> {",
    );
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(
            out,
            "
    /// The table `{name}`.
    pub fn {accessor}(&self) -> {handle} {{
        {handle} {{ table: self.client.table::<{row}>(\"{name}\") }}
    }}
",
            name = t.name,
            accessor = t.accessor,
            handle = t.handle,
            row = t.row
        );
    }
    if tables.is_empty() {
        out.push('\n');
    }
    out.push_str(
        "}

/// The module's reducers: `client.module_reducers()`. Each call returns at once
/// with a handle to its result (`.await`, `try_result`, `on_result`).
#[derive(Debug)]
pub struct RemoteReducers<'a> {
    client: &'a __sl::Client,
}

impl RemoteReducers<'_> {",
    );
    for (i, r) in reducers.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let params: Vec<String> = r.params.iter().map(|p| format!("{}: {}", p.rust, p.ty)).collect();
        let fields: Vec<&str> = r.params.iter().map(|p| p.rust.as_str()).collect();
        let args = if fields.is_empty() {
            format!("{} {{}}", r.args)
        } else {
            format!("{} {{ {} }}", r.args, fields.join(", "))
        };
        let (doc, call) = match &r.seq {
            Some(seq) => (
                format!(
                    "Calls `{}`, sequenced by `{}`: resent after a lost session, run at most once.",
                    r.name,
                    unraw(seq)
                ),
                format!("call_sequenced(\"{}\", &{args}, {seq})", r.name),
            ),
            None => (format!("Calls `{}`.", r.name), format!("call(\"{}\", &{args})", r.name)),
        };
        let signature = format!("    pub fn {}(&self, {}) -> __sl::ReducerCall {{", r.method, params.join(", "));
        let signature = if params.is_empty() {
            format!("    pub fn {}(&self) -> __sl::ReducerCall {{", r.method)
        } else if signature.len() > 120 {
            let mut s = format!("    pub fn {}(\n        &self,\n", r.method);
            for p in &params {
                let _ = writeln!(s, "        {p},");
            }
            s.push_str("    ) -> __sl::ReducerCall {");
            s
        } else {
            signature
        };
        let body = format!("        self.client.reducers().{call}");
        let body = if body.len() > 120 { rustfmt_call(&r.name, &r.args, &fields, r.seq.as_deref()) } else { body };
        let _ = write!(out, "\n    /// {doc}\n{signature}\n{body}\n    }}\n");
        let _ = write!(
            out,
            "
    /// Runs `callback(cause, args)` in `frame_tick` for each `{name}` transaction this
    /// client sees, whoever called it (the official SDK's `on_{name}`).
    pub fn on_{method}(
        &self,
        mut callback: impl FnMut(&__sl::ReducerCause, &{args}) + Send + 'static,
    ) -> __sl::CallbackId {{
        self.client.on_reducer(\"{name}\", move |cause| {{
            if let Ok(args) = __sl::bsatn::from_slice::<{args}>(&cause.args) {{
                callback(cause, &args);
            }}
        }})
    }}
",
            name = r.name,
            method = unraw(&r.method),
            args = r.args,
        );
    }
    if reducers.is_empty() {
        out.push('\n');
    }
    out.push_str(
        "}

/// The generated entry points on a [`spacelink::Client`](__sl::Client).
pub trait ModuleClient {
    /// The module's tables.
    fn db(&self) -> RemoteTables<'_>;
    /// The module's reducers.
    fn module_reducers(&self) -> RemoteReducers<'_>;
}

impl ModuleClient for __sl::Client {
    fn db(&self) -> RemoteTables<'_> {
        RemoteTables { client: self }
    }

    fn module_reducers(&self) -> RemoteReducers<'_> {
        RemoteReducers { client: self }
    }
}

/// Every table's row type, for `ClientBuilder::with_row_types`: rows are
/// decoded once, into these types, as they enter the cache.
pub fn row_types() -> __sl::RowTypes {
    __sl::RowTypes::new()",
    );
    for t in tables {
        let _ = write!(out, "\n        .register::<{}>(\"{}\")", t.row, t.name);
    }
    out.push_str("\n}\n");
}

/// A reducer call too long for one line, broken as rustfmt breaks it.
fn rustfmt_call(name: &str, args: &str, fields: &[&str], seq: Option<&str>) -> String {
    let method = if seq.is_some() { "call_sequenced" } else { "call" };
    let mut s = format!("        self.client.reducers().{method}(\n            \"{name}\",\n");
    let one_line = format!("            &{args} {{ {} }},", fields.join(", "));
    if one_line.len() <= 120 {
        s.push_str(&one_line);
        s.push('\n');
    } else {
        let _ = writeln!(s, "            &{args} {{");
        for f in fields {
            let _ = writeln!(s, "                {f},");
        }
        s.push_str("            },\n");
    }
    if let Some(seq) = seq {
        let _ = writeln!(s, "            {seq},");
    }
    s.push_str("        )");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacelink_connection::lib::db::raw_def::v9::{Lifecycle, RawModuleDefV9Builder};
    use spacelink_connection::sats::{AlgebraicTypeRef, ProductTypeElement};

    fn product(cols: &[(&str, AlgebraicType)]) -> AlgebraicType {
        AlgebraicType::product(
            cols.iter()
                .map(|(n, t)| ProductTypeElement::new_named(t.clone(), *n))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }

    fn module() -> RawModuleDefV9 {
        let mut b = RawModuleDefV9Builder::new();
        let kind =
            b.add_algebraic_type([], "unit_kind", AlgebraicType::simple_enum(["red", "green"].into_iter()), true);
        let row = product(&[
            ("id", AlgebraicType::U64),
            ("type", AlgebraicType::String),
            ("kind", AlgebraicType::Ref(kind)),
            ("owner", AlgebraicType::identity()),
            ("maybe", AlgebraicType::option(AlgebraicType::I32)),
        ]);
        let r = b.add_algebraic_type([], "thing", row, true);
        b.build_table("thing", r).with_primary_key(0).with_unique_constraint(1).finish();
        b.add_reducer(
            "move_thing",
            ProductType::from([("seq", AlgebraicType::U32), ("self", AlgebraicType::I8)]),
            None,
        );
        b.add_reducer("init", ProductType::unit(), Some(Lifecycle::Init));
        b.finish()
    }

    #[test]
    fn names_become_rust_identifiers() {
        assert_eq!(pascal("player_state"), "PlayerState");
        assert_eq!(pascal("HTTPServer"), "Httpserver");
        assert_eq!(pascal("npcTick"), "NpcTick");
        assert_eq!(snake("npcTick"), "npc_tick");
        assert_eq!(snake("type"), "r#type");
        assert_eq!(snake("self"), "self_");
        assert_eq!(snake("3d"), "_3d");
        assert_eq!(pascal("Self"), "Self_");
        assert_eq!(unraw("r#type"), "type");
    }

    #[test]
    fn a_table_gets_a_row_type_a_handle_and_finders() {
        let out = generate(&module(), &GenerateOptions::default()).unwrap();
        assert!(out.contains("pub struct Thing {"), "{out}");
        assert!(out.contains("    pub r#type: String,"), "{out}");
        assert!(out.contains("    pub owner: __sl::Identity,"), "{out}");
        assert!(out.contains("    pub maybe: Option<i32>,"), "{out}");
        assert!(out.contains("pub enum UnitKind {\n    Red,\n    Green,\n}"), "{out}");
        assert!(out.contains("Clone, Copy, Eq, Hash, Debug, PartialEq"), "{out}");
        // `Thing` holds a String: not Copy; the arguments of `move_thing` are.
        assert!(out.contains("Clone, Debug, PartialEq)]\n#[sats(crate = __sl::lib)]\npub struct Thing {"), "{out}");
        assert!(
            out.contains("Clone, Copy, Debug, PartialEq)]\n#[sats(crate = __sl::lib)]\npub struct MoveThingArgs {"),
            "{out}"
        );
        assert!(out.contains("pub fn find_by_id(&self, id: &u64)"), "{out}");
        assert!(out.contains("pub fn find_by_type(&self, r#type: &String)"), "{out}");
        assert!(out.contains("pub fn on_update("), "{out}");
        assert!(out.contains(".register::<Thing>(\"thing\")"), "{out}");
        // Lifecycle reducers are not callable.
        assert!(!out.contains("InitArgs"), "{out}");
        assert!(out.contains("pub fn move_thing(&self, seq: u32, self_: i8) -> __sl::ReducerCall {"), "{out}");
        assert!(out.contains("call(\"move_thing\", &MoveThingArgs { seq, self_ })"), "{out}");
    }

    #[test]
    fn the_file_embeds_the_module_s_definition_and_reads_it_once() {
        let out = generate(&module(), &GenerateOptions::default()).unwrap();
        assert!(out.contains("#[derive(Clone, Debug)]\npub struct ThingTableHandle {"), "{out}");
        assert!(out.contains("pub fn schema() -> std::sync::Arc<__sl::ModuleSchema> {"), "{out}");
        let start = out.find("pub const SCHEMA_JSON: &str = r").unwrap();
        let line = out[start..].lines().next().unwrap();
        let (hashes, rest) = line["pub const SCHEMA_JSON: &str = r".len()..].split_once('"').unwrap();
        let json = rest.strip_suffix(&format!("\"{hashes};")).unwrap();
        let embedded = ModuleSchema::from_json(json).unwrap();
        let original = ModuleSchema::from_raw(module()).unwrap();
        assert_eq!(embedded.difference(&original), None);
        assert_eq!(embedded.table("thing").unwrap().unique, vec![1], "the declared unique constraint");
        // A `"#` in the definition gets more hashes around it.
        let mut odd = module();
        odd.reducers[0].name = "say\"#hi".into();
        let json = ModuleSchema::from_raw(odd).unwrap().to_json();
        let mut text = String::new();
        embed_schema(&mut text, ModuleSchema::from_json(&json).unwrap().raw()).unwrap();
        assert!(text.contains("r##\"{"), "{text}");
    }

    #[test]
    fn output_is_deterministic() {
        let a = generate(&module(), &GenerateOptions::default()).unwrap();
        let mut shuffled = module();
        shuffled.types.reverse();
        shuffled.reducers.reverse();
        assert_eq!(a, generate(&shuffled, &GenerateOptions::default()).unwrap());
    }

    #[test]
    fn a_sequenced_reducer_passes_its_sequence_number() {
        let mut options = GenerateOptions::default();
        options.add_sequenced("move_thing=seq").unwrap();
        let out = generate(&module(), &options).unwrap();
        assert!(out.contains("call_sequenced(\"move_thing\", &MoveThingArgs { seq, self_ }, seq)"), "{out}");
    }

    #[test]
    fn a_bad_sequenced_option_is_a_typed_error() {
        let mut options = GenerateOptions::default();
        assert!(matches!(options.add_sequenced("move_thing"), Err(CodegenError::Invalid(_))));
        for pair in ["move_thing=nope", "move_thing=self", "nobody=seq", "init=seq"] {
            let mut options = GenerateOptions::default();
            options.add_sequenced(pair).unwrap();
            let err = generate(&module(), &options).unwrap_err();
            assert!(matches!(err, CodegenError::Invalid(_)), "{pair}: {err}");
        }
    }

    #[test]
    fn unnamed_products_and_clashing_names_are_typed_errors() {
        let mut m = module();
        // A column whose type is an inline product the module did not name.
        let inline = product(&[("x", AlgebraicType::F32)]);
        if let Some(AlgebraicType::Product(p)) = m.typespace.types.get_mut(1) {
            let mut elements = p.elements.to_vec();
            elements.push(ProductTypeElement::new_named(inline, "pos"));
            *p = ProductType::new(elements.into_boxed_slice());
        }
        assert!(matches!(generate(&m, &GenerateOptions::default()), Err(CodegenError::Invalid(_))));

        let mut m = module();
        let again = m.types[0].clone();
        m.types.push(again);
        assert!(matches!(generate(&m, &GenerateOptions::default()), Err(CodegenError::Invalid(_))));

        let mut m = module();
        m.types[1].name.name = "RemoteTables".into();
        assert!(matches!(generate(&m, &GenerateOptions::default()), Err(CodegenError::Invalid(_))));

        let mut m = module();
        m.tables[0].product_type_ref = AlgebraicTypeRef(99);
        assert!(generate(&m, &GenerateOptions::default()).is_err());
    }

    #[test]
    fn a_recursive_or_exploding_typespace_is_refused_not_walked() {
        // A type that contains itself.
        let mut b = RawModuleDefV9Builder::new();
        let r = b.add_algebraic_type([], "loop", AlgebraicType::U8, true);
        let me = product(&[("next", AlgebraicType::option(AlgebraicType::Ref(r)))]);
        let mut m = {
            b.build_table("loop", r).finish();
            b.finish()
        };
        m.typespace.types[0] = me;
        assert!(matches!(generate(&m, &GenerateOptions::default()), Err(CodegenError::Schema(_))));

        // Each type twice the next: 2^40 nodes once inlined.
        let mut b = RawModuleDefV9Builder::new();
        let mut next = b.add_algebraic_type([], "t40", AlgebraicType::U8, true);
        for i in (0..40).rev() {
            let ty = product(&[("a", AlgebraicType::Ref(next)), ("b", AlgebraicType::Ref(next))]);
            next = b.add_algebraic_type([], format!("t{i}"), ty, true);
        }
        b.build_table("top", next).finish();
        assert!(matches!(generate(&b.finish(), &GenerateOptions::default()), Err(CodegenError::Schema(_))));
    }

    #[test]
    fn a_bad_schema_json_is_a_typed_error() {
        assert!(matches!(generate_from_json("{", &GenerateOptions::default()), Err(CodegenError::Schema(_))));
    }
}
