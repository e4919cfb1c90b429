//! The module's schema, and rows decoded by it into dynamic values and JSON.
//!
//! Typed access (a Rust type deriving the SATS `Deserialize`, as the official
//! code generator emits) is [`decode_row`]. Tools that have no generated types
//! (the `spacelink` command, debuggers, the dynamic cache) use a
//! [`ModuleSchema`], read from `GET /v1/database/<name>/schema?version=9`, to turn
//! a row's bytes into an [`AlgebraicValue`] and that into JSON, and to encode a
//! reducer's JSON arguments.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value as Json;
use spacetimedb_lib::db::raw_def::v9::{RawConstraintDataV9, RawModuleDefV9};
use spacetimedb_sats::de::serde::DeserializeWrapper;
use spacetimedb_sats::ser::serde::SerializeWrapper;
use spacetimedb_sats::{
    bsatn, AlgebraicType, AlgebraicValue, ProductType, ProductTypeElement, ProductValue, SumTypeVariant, Typespace,
};

use crate::codec::CodecError;
use crate::guard;

/// What went wrong reading a schema or using it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema endpoint could not be reached or answered with an error.
    #[error("cannot fetch the schema from {url}: {reason}")]
    Fetch {
        /// The URL asked.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered, but with something that will not change on a retry
    /// (a client error, a schema over the size limit).
    #[error("the schema from {url} was refused: {reason}")]
    Refused {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// The TLS session to the server could not be set up: the certificate is
    /// not trusted, is for another name, has expired, or the handshake was
    /// refused. Not retried: it does not pass by itself.
    #[error("cannot fetch the schema: TLS: {failure}: {chain}")]
    Tls {
        /// What was wrong.
        failure: crate::tls::TlsFailure,
        /// The URL and the error's whole chain of causes.
        chain: String,
    },
    /// The schema JSON is not a v9 module definition.
    #[error("the schema is not a v9 module definition: {0}")]
    Parse(String),
    /// A type in the schema refers to a type that is not there.
    #[error("the schema's type for {what} is broken: {reason}")]
    BrokenType {
        /// The table or reducer.
        what: String,
        /// What the type resolver said.
        reason: String,
    },
    /// A type in the schema is too deep, too large or recursive: reading it
    /// further could exhaust the stack or the memory.
    #[error("the schema's type for {what} is over a limit: {reason}")]
    TooComplex {
        /// The table or reducer.
        what: String,
        /// Which limit, and by how much.
        reason: String,
    },
    /// No table of that name.
    #[error("the module has no table `{0}`")]
    UnknownTable(String),
    /// No reducer of that name.
    #[error("the module has no reducer `{0}`")]
    UnknownReducer(String),
    /// The JSON arguments do not fit the reducer's parameters.
    #[error("arguments for reducer `{reducer}` do not fit its parameters ({params}): {reason}")]
    BadArguments {
        /// The reducer.
        reducer: String,
        /// Its parameters, as `name: type` pairs.
        params: String,
        /// What did not fit.
        reason: String,
    },
    /// A one-off query on a table whose rows have no bytes (a unit struct):
    /// SpacetimeDB 1.3 divides by the row size answering it, and panics.
    #[error("table `{table}` has zero-width rows (no bytes per row): SpacetimeDB 1.3 cannot answer a query on it (its server panics dividing by the row size), so it is not sent")]
    ZeroWidthTable {
        /// The table.
        table: String,
    },
    /// A JSON value does not fit its type (see [`sats_json`](crate::sats_json)).
    #[error("at {at}: {reason}")]
    BadJson {
        /// Where in the value, e.g. `a_nested.tags[2]`.
        at: String,
        /// What did not fit.
        reason: String,
    },
    /// A row did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The deepest a resolved type may nest (products, sums, arrays and the
/// references that lead to them): as deep as a frame may nest
/// ([`guard::MAX_DEPTH`]), so a row of any accepted table can be read.
pub const MAX_TYPE_DEPTH: usize = guard::MAX_DEPTH;
/// The most type nodes all of a schema's tables and reducers may have once
/// their references are inlined (a typespace whose types refer twice to the
/// next one would otherwise double at every level).
pub const MAX_TYPE_NODES: usize = 1 << 20;

/// How the schema is fetched (part of [`ConnectionConfig`](crate::ConnectionConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaFetchConfig {
    /// The longest a fetch may take, from connecting to the body's last byte (default 10 s).
    pub timeout: std::time::Duration,
    /// The largest schema accepted, in bytes (default 16 MiB; a large module's is well under 1 MiB).
    pub max_size: usize,
}

impl Default for SchemaFetchConfig {
    fn default() -> Self {
        Self { timeout: std::time::Duration::from_secs(10), max_size: 16 << 20 }
    }
}

impl SchemaError {
    /// Whether trying again may help (the server unreachable or overloaded, a timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, SchemaError::Fetch { .. })
    }
}

/// An error and its whole chain of causes, `outer: inner: innermost`
/// (a TLS failure's reason is at the bottom of the chain).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// One table: its name, its row type (references resolved) and primary key.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// The table's name, as in `TableUpdate::table_name`.
    pub name: String,
    /// The row type, with every type reference inlined.
    pub row_type: ProductType,
    /// The columns of the primary key, if the table has one.
    pub primary_key: Vec<usize>,
    /// Column names in order (`col<N>` for an unnamed column).
    pub columns: Vec<String>,
    /// The columns with a single-column unique constraint, ascending (a
    /// single-column primary key is one too, as the module declares it).
    pub unique: Vec<usize>,
}

/// One reducer: its name and parameters (references resolved).
#[derive(Debug, Clone)]
pub struct ReducerSchema {
    /// The reducer's name.
    pub name: String,
    /// Its parameters in order.
    pub params: ProductType,
    /// Whether it is a lifecycle reducer (init, connect, disconnect), which clients cannot call.
    pub lifecycle: bool,
}

/// A module's tables and reducers, ready to decode rows and encode arguments.
#[derive(Debug, Clone)]
pub struct ModuleSchema {
    tables: HashMap<String, TableSchema>,
    reducers: HashMap<String, ReducerSchema>,
    /// The definition as read, for what needs its type names (the bindings generator).
    raw: std::sync::Arc<RawModuleDefV9>,
}

impl ModuleSchema {
    /// Reads the JSON that `GET /v1/database/<name>/schema?version=9` returns
    /// (or [`to_json`](Self::to_json) wrote: generated bindings embed it, so a
    /// game built with them needs no fetch at start).
    pub fn from_json(json: &str) -> Result<Self, SchemaError> {
        let DeserializeWrapper(raw) = serde_json::from_str::<DeserializeWrapper<RawModuleDefV9>>(json)
            .map_err(|e| SchemaError::Parse(e.to_string()))?;
        Self::from_raw(raw)
    }

    /// Builds a schema from a v9 module definition.
    pub fn from_raw(raw: RawModuleDefV9) -> Result<Self, SchemaError> {
        let kept = std::sync::Arc::new(raw.clone());
        let ts = &raw.typespace;
        let mut budget = MAX_TYPE_NODES;
        let mut tables = HashMap::new();
        for table in raw.tables {
            let name = table.name.to_string();
            let ty = ts.get(table.product_type_ref).cloned().ok_or_else(|| SchemaError::BrokenType {
                what: format!("table {name}"),
                reason: format!("{:?} is not in the typespace", table.product_type_ref),
            })?;
            let row_type = resolve(ts, &ty, &format!("table {name}"), &mut budget)?.into_product().map_err(|_| {
                SchemaError::BrokenType { what: format!("table {name}"), reason: "not a product".into() }
            })?;
            let columns = column_names(&row_type);
            let primary_key = table.primary_key.iter().map(|c| c.idx()).collect();
            let mut unique: Vec<usize> = table
                .constraints
                .iter()
                .filter_map(|c| match &c.data {
                    RawConstraintDataV9::Unique(u) if u.columns.len() == 1 => u.columns.iter().next().map(|c| c.idx()),
                    _ => None,
                })
                .filter(|&c| c < row_type.elements.len())
                .collect();
            unique.sort_unstable();
            unique.dedup();
            tables.insert(name.clone(), TableSchema { name, row_type, primary_key, columns, unique });
        }
        let mut reducers = HashMap::new();
        for reducer in raw.reducers {
            let name = reducer.name.to_string();
            let params = resolve(ts, &AlgebraicType::Product(reducer.params), &format!("reducer {name}"), &mut budget)?
                .into_product()
                .map_err(|_| SchemaError::BrokenType {
                    what: format!("reducer {name}"),
                    reason: "not a product".into(),
                })?;
            let lifecycle = reducer.lifecycle.is_some();
            reducers.insert(name.clone(), ReducerSchema { name, params, lifecycle });
        }
        Ok(Self { tables, reducers, raw: kept })
    }

    /// The v9 module definition as compact JSON, as the server writes it:
    /// [`from_json`](Self::from_json) reads it back to an equal schema.
    pub fn to_json(&self) -> String {
        // A v9 definition is plain data: its serialisation cannot fail.
        serde_json::to_string(&SerializeWrapper::new(&*self.raw)).unwrap_or_default()
    }

    /// The v9 module definition as read (named types, constraints, lifecycle
    /// reducers): what the bindings generator works from.
    pub fn raw(&self) -> &RawModuleDefV9 {
        &self.raw
    }

    /// Fetches and reads the schema of `database` from the server at `base_url`
    /// (`http(s)://host:port`), once, within the default [`SchemaFetchConfig`].
    pub async fn fetch(base_url: &str, database: &str, token: Option<&str>) -> Result<Self, SchemaError> {
        Self::fetch_with(base_url, database, token, &SchemaFetchConfig::default(), &Default::default()).await
    }

    /// Fetches the schema for a connection configuration: within its
    /// `schema_fetch` limits, retried on its retry policy (`max_attempts`
    /// retries with the same backoff) while the failure may pass (the server
    /// unreachable, a timeout, an HTTP 5xx or 429). A schema that is too large,
    /// malformed or hostile is not retried.
    pub async fn fetch_for(config: &crate::ConnectionConfig) -> Result<Self, SchemaError> {
        let base = config
            .http_base()
            .map_err(|e| SchemaError::Fetch { url: config.server_url.clone(), reason: e.to_string() })?;
        let mut jitter = config.jitter_seed.map_or_else(crate::Jitter::from_entropy, crate::Jitter::new);
        let mut retry = 0;
        loop {
            let token = config.token.as_deref();
            match Self::fetch_with(&base, &config.database, token, &config.schema_fetch, &config.tls).await {
                Err(e) if e.is_transient() && retry < config.retry.max_attempts => {
                    retry += 1;
                    let delay = config.retry.delay(retry, jitter.next_unit());
                    tracing::warn!(error = %e, retry, ?delay, "schema fetch failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// Fetches and reads the schema once, within `limits`: the whole request
    /// (connect, headers, body) within `limits.timeout`, the body within
    /// `limits.max_size` bytes (checked as it arrives, never buffered beyond).
    pub async fn fetch_with(
        base_url: &str,
        database: &str,
        token: Option<&str>,
        limits: &SchemaFetchConfig,
        tls: &crate::tls::TlsConfig,
    ) -> Result<Self, SchemaError> {
        let url = format!("{}/v1/database/{database}/schema?version=9", base_url.trim_end_matches('/'));
        let fetch_error = |reason: String, transient: bool| {
            if transient {
                SchemaError::Fetch { url: url.clone(), reason }
            } else {
                SchemaError::Refused { url: url.clone(), reason }
            }
        };
        let body = tokio::time::timeout(limits.timeout, crate::http::get(&url, token, limits.max_size, tls))
            .await
            .map_err(|_| fetch_error(format!("no complete answer within {:?}", limits.timeout), true))?;
        let fetched = body.map_err(|e| match e {
            crate::http::GetError::Failed(reason) => fetch_error(reason, true),
            crate::http::GetError::Tls(failure, chain) => SchemaError::Tls { failure, chain },
            crate::http::GetError::TooLarge(size) => {
                fetch_error(format!("the schema is {size} bytes or more, over the limit of {}", limits.max_size), false)
            }
        })?;
        let text = String::from_utf8_lossy(&fetched.body).into_owned();
        if !(200..300).contains(&fetched.status) {
            let transient = fetched.status >= 500 || fetched.status == 429;
            let snippet: String = text.trim().chars().take(200).collect();
            return Err(fetch_error(format!("HTTP {}: {snippet}", fetched.status), transient));
        }
        let body = text;
        Self::from_json(&body)
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.get(name)
    }

    /// Every table, in no particular order.
    pub fn tables(&self) -> impl Iterator<Item = &TableSchema> {
        self.tables.values()
    }

    /// The reducer called `name`.
    pub fn reducer(&self, name: &str) -> Option<&ReducerSchema> {
        self.reducers.get(name)
    }

    /// The first difference between this module and `other` that a running
    /// client would notice (a table or reducer missing, or with another row
    /// type, key or parameters), or `None` if rows and calls mean the same in
    /// both: the check before a client moves to another database.
    pub fn difference(&self, other: &ModuleSchema) -> Option<String> {
        let mut tables: Vec<&TableSchema> = self.tables.values().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for mine in tables {
            let Some(theirs) = other.tables.get(&mine.name) else {
                return Some(format!("table `{}` is missing", mine.name));
            };
            if mine.row_type != theirs.row_type || mine.columns != theirs.columns {
                return Some(format!("table `{}` has other columns", mine.name));
            }
            if mine.primary_key != theirs.primary_key {
                return Some(format!("table `{}` has another primary key", mine.name));
            }
        }
        if let Some(extra) = other.tables.keys().filter(|t| !self.tables.contains_key(*t)).min() {
            return Some(format!("table `{extra}` is new"));
        }
        let mut reducers: Vec<&ReducerSchema> = self.reducers.values().collect();
        reducers.sort_by(|a, b| a.name.cmp(&b.name));
        for mine in reducers {
            match other.reducers.get(&mine.name) {
                None => return Some(format!("reducer `{}` is missing", mine.name)),
                Some(theirs) if theirs.params != mine.params => {
                    return Some(format!("reducer `{}` takes other arguments", mine.name))
                }
                Some(_) => {}
            }
        }
        None
    }

    /// The zero-width tables (see [`TableSchema::is_zero_width`]) that `sql`
    /// names in its `FROM` and `JOIN` clauses (a comma list too), in order.
    pub fn zero_width_tables_in(&self, sql: &str) -> Vec<String> {
        // Where a table list ends: the clauses that may follow it.
        const ENDS: [&str; 8] = ["where", "on", "group", "order", "limit", "having", "union", "offset"];
        let tokens =
            sql.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ';')).filter(|t| !t.is_empty());
        let mut found = Vec::new();
        let mut in_tables = false;
        for token in tokens {
            if token.eq_ignore_ascii_case("from") || token.eq_ignore_ascii_case("join") {
                in_tables = true;
                continue;
            }
            if ENDS.iter().any(|end| token.eq_ignore_ascii_case(end)) {
                in_tables = false;
                continue;
            }
            if !in_tables {
                continue;
            }
            // Aliases and `AS` are read as names too: none of them names a zero-width table.
            let name = token.trim_matches(|c| matches!(c, '"' | '`' | '\''));
            if self.table(name).is_some_and(TableSchema::is_zero_width) && !found.iter().any(|f| f == name) {
                found.push(name.to_string());
            }
        }
        found
    }

    /// Checks a one-off query before it is sent: refuses one on a zero-width
    /// table ([`SchemaError::ZeroWidthTable`]), which the 1.3 server cannot answer.
    pub fn check_one_off_query(&self, sql: &str) -> Result<(), SchemaError> {
        match self.zero_width_tables_in(sql).into_iter().next() {
            Some(table) => Err(SchemaError::ZeroWidthTable { table }),
            None => Ok(()),
        }
    }

    /// Decodes one row of `table` from its BSATN bytes.
    pub fn decode_row(&self, table: &str, bytes: &[u8]) -> Result<ProductValue, SchemaError> {
        let schema = self.table(table).ok_or_else(|| SchemaError::UnknownTable(table.to_string()))?;
        Ok(schema.decode(bytes)?)
    }

    /// Encodes a reducer's arguments given as a JSON array (positional) or object (by name).
    ///
    /// Values are SATS-JSON ([`sats_json`](crate::sats_json)), as the server's
    /// HTTP `call` endpoint reads them, and as `sql` and `subscribe` print
    /// them: a row printed for a type is accepted back as an argument of that type.
    pub fn encode_reducer_args(&self, reducer: &str, json: &str) -> Result<Bytes, SchemaError> {
        let schema = self.reducer(reducer).ok_or_else(|| SchemaError::UnknownReducer(reducer.to_string()))?;
        let bad = |reason: String| SchemaError::BadArguments {
            reducer: reducer.to_string(),
            params: describe_params(&schema.params),
            reason,
        };
        let json: Json = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let value = crate::sats_json::product_from_json(&schema.params, &json).map_err(|e| bad(e.to_string()))?;
        let bytes = bsatn::to_vec(&value).map_err(|e| bad(e.to_string()))?;
        Ok(bytes.into())
    }
}

impl TableSchema {
    /// Decodes one row from its BSATN bytes.
    pub fn decode(&self, bytes: &[u8]) -> Result<ProductValue, CodecError> {
        let ty = AlgebraicType::Product(self.row_type.clone());
        let empty = Typespace::new(Vec::new());
        guard::check(&empty, &ty, bytes).map_err(|source| CodecError::Malformed { what: "row", source })?;
        ProductValue::decode(&self.row_type, &mut &bytes[..])
            .map_err(|e| CodecError::Decode { what: format!("row of {}", self.name), reason: e.to_string() })
    }

    /// Decodes one row into a Rust type that derives the SATS `Deserialize`
    /// (as the types the official code generator emits do), after checking the
    /// bytes against this table's row type, so that no length in them is trusted.
    pub fn decode_as<T: for<'de> spacetimedb_sats::de::Deserialize<'de>>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let ty = AlgebraicType::Product(self.row_type.clone());
        let empty = Typespace::new(Vec::new());
        guard::check(&empty, &ty, bytes).map_err(|source| CodecError::Malformed { what: "row", source })?;
        decode_row(bytes)
    }

    /// The row as SATS-JSON: an object keyed by column name ([`sats_json`](crate::sats_json)).
    pub fn row_to_json(&self, row: &ProductValue) -> Json {
        crate::sats_json::product_to_json(&self.row_type, row)
    }

    /// Whether a row of this table has no bytes at all: its type is a product
    /// of no columns, or only of such products, nested (an array has a length,
    /// a sum a tag: neither is zero-width). The 1.3 server cannot size such
    /// rows: a one-off query on one panics it, and its rows cannot be counted.
    pub fn is_zero_width(&self) -> bool {
        self.row_type.elements.iter().all(|e| is_zero_width(&e.algebraic_type))
    }

    /// The primary key of `row` as a value (a product when the key has several columns).
    pub fn primary_key_of(&self, row: &ProductValue) -> Option<AlgebraicValue> {
        match self.primary_key.as_slice() {
            [] => None,
            [one] => row.elements.get(*one).cloned(),
            many => Some(AlgebraicValue::product(
                many.iter().filter_map(|i| row.elements.get(*i).cloned()).collect::<Vec<_>>(),
            )),
        }
    }
}

/// Decodes one row into a Rust type that derives the SATS `Deserialize`
/// (as the types the official code generator emits do).
///
/// This trusts the lengths in `bytes` (the SATS decoder reserves what an array
/// claims before reading it): use it on bytes that are already checked, and
/// [`TableSchema::decode_as`] on rows from the network.
pub fn decode_row<T: for<'de> spacetimedb_sats::de::Deserialize<'de>>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut reader = bytes;
    let value = bsatn::from_reader(&mut reader)
        .map_err(|e| CodecError::Decode { what: std::any::type_name::<T>().to_string(), reason: e.to_string() })?;
    if !reader.is_empty() {
        return Err(CodecError::Decode {
            what: std::any::type_name::<T>().to_string(),
            reason: format!("{} bytes left over: the row type does not match the table", reader.len()),
        });
    }
    Ok(value)
}

/// Inlines every reference in `ty`, within [`MAX_TYPE_DEPTH`] and a node
/// `budget`, refusing recursive types. (The official `resolve_refs` recurses
/// without a bound: a chain of 20,000 references overflows the stack.)
fn resolve(ts: &Typespace, ty: &AlgebraicType, what: &str, budget: &mut usize) -> Result<AlgebraicType, SchemaError> {
    let mut resolver = Resolver { ts, budget, refs: Vec::new() };
    resolver.resolve(ty, 0).map_err(|problem| match problem {
        Problem::Broken(reason) => SchemaError::BrokenType { what: what.to_string(), reason },
        Problem::Limit(reason) => SchemaError::TooComplex { what: what.to_string(), reason },
    })
}

enum Problem {
    Broken(String),
    Limit(String),
}

struct Resolver<'a> {
    ts: &'a Typespace,
    budget: &'a mut usize,
    /// The references being resolved, outermost first (to see a cycle).
    refs: Vec<u32>,
}

impl Resolver<'_> {
    fn resolve(&mut self, ty: &AlgebraicType, depth: usize) -> Result<AlgebraicType, Problem> {
        if depth > MAX_TYPE_DEPTH {
            return Err(Problem::Limit(format!("nested deeper than {MAX_TYPE_DEPTH} levels")));
        }
        if *self.budget == 0 {
            return Err(Problem::Limit(format!("more than {MAX_TYPE_NODES} type nodes once references are inlined")));
        }
        *self.budget -= 1;
        Ok(match ty {
            AlgebraicType::Ref(r) => {
                if self.refs.contains(&r.0) {
                    return Err(Problem::Limit(format!("type {} contains itself (a recursive type)", r.0)));
                }
                let target = self
                    .ts
                    .get(*r)
                    .ok_or_else(|| Problem::Broken(format!("type reference {} is not in the typespace", r.0)))?;
                self.refs.push(r.0);
                let resolved = self.resolve(target, depth + 1);
                self.refs.pop();
                resolved?
            }
            AlgebraicType::Product(p) => {
                let mut elements = Vec::with_capacity(p.elements.len());
                for e in p.elements.iter() {
                    elements.push(ProductTypeElement::new(self.resolve(&e.algebraic_type, depth + 1)?, e.name.clone()));
                }
                AlgebraicType::product(elements.into_boxed_slice())
            }
            AlgebraicType::Sum(sum) => {
                let mut variants = Vec::with_capacity(sum.variants.len());
                for v in sum.variants.iter() {
                    variants.push(SumTypeVariant::new(self.resolve(&v.algebraic_type, depth + 1)?, v.name.clone()));
                }
                AlgebraicType::sum(variants.into_boxed_slice())
            }
            AlgebraicType::Array(a) => AlgebraicType::array(self.resolve(&a.elem_ty, depth + 1)?),
            other => other.clone(),
        })
    }
}

fn is_zero_width(ty: &AlgebraicType) -> bool {
    match ty {
        AlgebraicType::Product(p) => p.elements.iter().all(|e| is_zero_width(&e.algebraic_type)),
        _ => false,
    }
}

fn column_names(row: &ProductType) -> Vec<String> {
    row.elements
        .iter()
        .enumerate()
        .map(|(i, e)| e.name.as_deref().map_or_else(|| format!("col{i}"), str::to_string))
        .collect()
}

fn describe_params(params: &ProductType) -> String {
    let parts: Vec<String> = params
        .elements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!("{}: {:?}", e.name.as_deref().map_or_else(|| format!("arg{i}"), str::to_string), e.algebraic_type)
        })
        .collect();
    parts.join(", ")
}

/// A value as SATS-JSON, guided by its (resolved) type: see [`sats_json`](crate::sats_json).
pub fn value_to_json(ty: &AlgebraicType, value: &AlgebraicValue) -> Json {
    crate::sats_json::to_json(ty, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_differs_by_its_tables_and_reducers() {
        let json =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/guildmaster-schema.json"))
                .unwrap();
        let a = ModuleSchema::from_json(&json).unwrap();
        assert_eq!(a.difference(&a.clone()), None);
        let mut b = a.clone();
        let name = b.tables.keys().min().unwrap().clone();
        b.tables.remove(&name);
        assert_eq!(a.difference(&b), Some(format!("table `{name}` is missing")));
        assert_eq!(b.difference(&a), Some(format!("table `{name}` is new")));
        let mut c = a.clone();
        let table = c.tables.values_mut().find(|t| !t.primary_key.is_empty()).unwrap();
        table.primary_key.clear();
        let changed = table.name.clone();
        assert_eq!(a.difference(&c), Some(format!("table `{changed}` has another primary key")));
        let mut d = a.clone();
        let reducer = d.reducers.values_mut().find(|r| !r.params.elements.is_empty()).unwrap();
        reducer.params = ProductType::unit();
        let changed = reducer.name.clone();
        assert_eq!(a.difference(&d), Some(format!("reducer `{changed}` takes other arguments")));
    }

    #[test]
    fn the_json_it_writes_reads_back_with_its_unique_columns() {
        let json =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/guildmaster-schema.json"))
                .unwrap();
        let a = ModuleSchema::from_json(&json).unwrap();
        let text = a.to_json();
        assert!(!text.contains('\n'), "compact");
        let b = ModuleSchema::from_json(&text).unwrap();
        assert_eq!(a.difference(&b), None);
        assert_eq!(b.to_json(), text, "a fixed point");
        let player = b.table("player").unwrap();
        let column = |name: &str| player.columns.iter().position(|c| c == name).unwrap();
        // `identity` is the key, `player_id` unique too; both are unique constraints.
        assert_eq!(player.unique, vec![column("identity"), column("player_id")]);
        assert_eq!(b.table("map").unwrap().unique, vec![0]);
    }

    #[test]
    fn every_time_duration_prints_without_overflow() {
        // The official Display overflows on i64::MIN (found by tests/fuzz.rs);
        // SATS-JSON prints the micros themselves.
        let ty = AlgebraicType::time_duration();
        let value = AlgebraicValue::product([AlgebraicValue::I64(i64::MIN)]);
        assert_eq!(value_to_json(&ty, &value).to_string(), r#"{"__time_duration_micros__":-9223372036854775808}"#);
    }

    /// A module with zero-width tables (a unit struct, nested unit structs)
    /// and look-alikes that are not (an array of units, an enum, a column).
    fn zero_width_fixture() -> ModuleSchema {
        use spacetimedb_lib::db::raw_def::v9::RawModuleDefV9Builder;
        let mut module = RawModuleDefV9Builder::new();
        let unit = || AlgebraicType::product(Vec::<ProductTypeElement>::new().into_boxed_slice());
        let tables: [(&str, ProductType); 5] = [
            ("marker", ProductType::unit()),
            (
                "nested_marker",
                [("inner", unit()), ("more", AlgebraicType::product([("deeper", unit())]))].into_iter().collect(),
            ),
            ("units", [("all", AlgebraicType::array(unit()))].into_iter().collect()),
            ("choice", [("which", AlgebraicType::simple_enum(["A", "B"].into_iter()))].into_iter().collect()),
            ("map", [("map_id", AlgebraicType::U32)].into_iter().collect()),
        ];
        for (name, row) in tables {
            module.build_table_with_new_type(name, row, true);
        }
        ModuleSchema::from_raw(module.finish()).unwrap()
    }

    #[test]
    fn zero_width_tables_are_told_from_the_schema() {
        let schema = zero_width_fixture();
        let zero: Vec<bool> = ["marker", "nested_marker", "units", "choice", "map"]
            .iter()
            .map(|t| schema.table(t).unwrap().is_zero_width())
            .collect();
        assert_eq!(zero, [true, true, false, false, false]);
    }

    #[test]
    fn a_query_on_a_zero_width_table_is_refused_before_it_is_sent() {
        let schema = zero_width_fixture();
        for sql in [
            "SELECT * FROM marker",
            "select * from \"marker\";",
            "SELECT m.* FROM map m JOIN nested_marker n",
            "SELECT * FROM map, marker",
            "SELECT * FROM map AS m, units u, nested_marker WHERE m.id = 1",
        ] {
            let err = schema.check_one_off_query(sql).unwrap_err();
            assert!(matches!(err, SchemaError::ZeroWidthTable { .. }), "{sql}: {err}");
            assert!(err.to_string().contains("zero-width"), "{err}");
        }
        for sql in [
            "SELECT * FROM map",
            "SELECT * FROM units",
            "SELECT * FROM choice",
            "SELECT 1",
            "SELECT * FROM map WHERE marker = 1",
        ] {
            assert!(schema.check_one_off_query(sql).is_ok(), "{sql}");
        }
        assert_eq!(
            schema.zero_width_tables_in("SELECT marker.* FROM marker JOIN nested_marker"),
            ["marker", "nested_marker"]
        );
    }
}
