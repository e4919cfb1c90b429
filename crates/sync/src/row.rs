//! Rows decoded once, shared by the cache, the spatial index and every change.
//!
//! A [`Row`] is a cheap handle (one `Arc`) to a cached row: its BSATN bytes
//! and its value. A table whose row type the game registered in [`RowTypes`]
//! has its rows decoded **once**, when they enter the cache, into that Rust type
//! ([`Row::get`], [`Shared`]); any other table of the module's schema keeps the
//! bytes and decodes them, at most once, into a dynamic [`ProductValue`] the
//! first time someone asks ([`Row::value`], behind a `OnceLock`). Whatever the
//! cache, the spatial index, a [`RowChange`](crate::RowChange) or a
//! [`TableView`](crate::TableView) hands out is that same allocation.
//!
//! A row that does not decode is still cached (server state wins: its key and
//! bytes are good) and reported: [`Row::decode_error`] says why, the counter
//! `spacelink_sync_row_decode_errors_total{table}` counts it, and the first
//! failure of each table is logged at warn level.
//!
//! Every decode of a row type with lengths in it (strings, arrays) first checks
//! the bytes against the table's row type with the connection's [`guard`], so
//! no length in them is trusted. A row type without lengths (fixed-size
//! columns, bools, options and enums of them) skips that walk: its decoder
//! refuses a bad tag, a bad bool, a short row and leftover bytes by itself
//! (`tests/decode_properties.rs` holds the two to the same verdicts).

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use spacelink_connection::guard;
use spacelink_connection::metric_names as names;
use spacelink_connection::sats::de::Deserialize;
use spacelink_connection::sats::{AlgebraicType, ProductValue, Typespace};
use spacelink_connection::schema::decode_row;
use spacelink_connection::{ModuleSchema, TableSchema};

/// What a cached row holds: its bytes, and its value decoded once.
trait RowData: Any + Send + Sync {
    fn bytes(&self) -> &Bytes;
    fn value(&self) -> Option<&ProductValue>;
    fn error(&self) -> Option<&str>;
}

/// A row of a registered type, decoded when it entered the cache.
struct Typed<T> {
    bytes: Bytes,
    value: T,
}

impl<T: Send + Sync + 'static> RowData for Typed<T> {
    fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    fn value(&self) -> Option<&ProductValue> {
        None
    }
    fn error(&self) -> Option<&str> {
        None
    }
}

/// A row of a table without a registered type: decoded into a dynamic value on first use.
struct Lazy {
    bytes: Bytes,
    codec: Option<Arc<TableCodec>>,
    value: OnceLock<Result<ProductValue, String>>,
}

impl RowData for Lazy {
    fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    fn value(&self) -> Option<&ProductValue> {
        let codec = self.codec.as_ref()?;
        self.value.get_or_init(|| codec.decode_dynamic(&self.bytes)).as_ref().ok()
    }
    fn error(&self) -> Option<&str> {
        let codec = self.codec.as_ref()?;
        self.value.get_or_init(|| codec.decode_dynamic(&self.bytes)).as_ref().err().map(String::as_str)
    }
}

/// A cached row: its BSATN bytes and its value, decoded at most once. Cloning
/// it clones one `Arc`; two rows are equal when their bytes are.
#[derive(Clone)]
pub struct Row(Arc<dyn RowData>);

impl Row {
    /// A row known only by its bytes (no schema: [`value`](Self::value) is `None`).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Row(Arc::new(Lazy { bytes: bytes.into(), codec: None, value: OnceLock::new() }))
    }

    /// The row's BSATN.
    pub fn bytes(&self) -> &Bytes {
        self.0.bytes()
    }

    /// The row's value as its table's registered type `T`; `None` if the table
    /// registered another type (or none), or the row did not decode.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.0;
        any.downcast_ref::<Typed<T>>().map(|t| &t.value)
    }

    /// The row as a shared `T` (see [`get`](Self::get)).
    pub fn shared<T: Send + Sync + 'static>(&self) -> Option<Shared<T>> {
        let any: Arc<dyn Any + Send + Sync> = self.0.clone();
        any.downcast::<Typed<T>>().ok().map(Shared)
    }

    /// The row as a shared `T` (see [`shared`](Self::shared)), this handle
    /// becoming it: no reference is taken or let go. `None` (and the handle
    /// let go) if the table registered another type or none: check with
    /// [`get`](Self::get) first to keep the row.
    pub fn into_shared<T: Send + Sync + 'static>(self) -> Option<Shared<T>> {
        let any: Arc<dyn Any + Send + Sync> = self.0;
        any.downcast::<Typed<T>>().ok().map(Shared)
    }

    /// The row as a dynamic value, for a table without a registered type
    /// (decoded on the first call, once); `None` for a registered table, a
    /// row without a schema, or a row that does not decode.
    pub fn value(&self) -> Option<&ProductValue> {
        self.0.value()
    }

    /// Why the row did not decode, if it did not.
    pub fn decode_error(&self) -> Option<&str> {
        self.0.error()
    }

    /// Whether two handles share one allocation (one decode).
    pub fn ptr_eq(&self, other: &Row) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Row {}

impl std::ops::Deref for Row {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl AsRef<[u8]> for Row {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Row").field(self.bytes()).finish()
    }
}

impl From<Bytes> for Row {
    fn from(bytes: Bytes) -> Self {
        Row::from_bytes(bytes)
    }
}

impl From<&'static [u8]> for Row {
    fn from(bytes: &'static [u8]) -> Self {
        Row::from_bytes(Bytes::from_static(bytes))
    }
}

impl From<Vec<u8>> for Row {
    fn from(bytes: Vec<u8>) -> Self {
        Row::from_bytes(bytes)
    }
}

/// A shared, decoded row of type `T` (derefs to `T`), as [`TableView`](crate::TableView) hands them out.
pub struct Shared<T>(Arc<Typed<T>>);

impl<T> Shared<T> {
    /// How many handles share the row (tests only).
    #[cfg(test)]
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// The row's BSATN.
    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }

    /// Whether two handles share one allocation.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    /// A row decoded from bytes, outside the cache (for a type the table did not register).
    pub(crate) fn decoded(bytes: Bytes, value: T) -> Self {
        Shared(Arc::new(Typed { bytes, value }))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

type DecodeFn = dyn Fn(&TableCodec, Bytes) -> Result<Row, (Bytes, String)> + Send + Sync;

/// The Rust types the game registers for its tables: their rows are decoded
/// once, into that type, as they enter the cache.
///
/// ```
/// # use spacelink_sync::RowTypes;
/// # #[derive(spacelink_connection::sats::de::Deserialize)]
/// # #[sats(crate = spacelink_connection::sats)]
/// # struct Player { id: u64, name: String }
/// let types = RowTypes::new().register::<Player>("player");
/// assert!(types.is_registered("player"));
/// ```
#[derive(Clone, Default)]
pub struct RowTypes {
    types: FxHashMap<String, Arc<DecodeFn>>,
}

impl fmt::Debug for RowTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.types.keys().collect();
        names.sort();
        f.debug_struct("RowTypes").field("tables", &names).finish()
    }
}

impl RowTypes {
    /// No registered type: every table's rows are dynamic values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows of `table` are decoded into `T` (a type deriving the SATS
    /// `Deserialize`, as generated row types do).
    #[must_use]
    pub fn register<T>(mut self, table: &str) -> Self
    where
        T: for<'de> Deserialize<'de> + Send + Sync + 'static,
    {
        let decode: Arc<DecodeFn> = Arc::new(|codec: &TableCodec, bytes: Bytes| {
            if let Err(e) = codec.check(&bytes) {
                return Err((bytes, e));
            }
            match decode_row::<T>(&bytes) {
                Ok(value) => Ok(Row(Arc::new(Typed { bytes, value }))),
                Err(e) => Err((bytes, e.to_string())),
            }
        });
        self.types.insert(table.to_string(), decode);
        self
    }

    /// Whether `table` has a registered type.
    pub fn is_registered(&self, table: &str) -> bool {
        self.types.contains_key(table)
    }

    /// The decoders of `schema`'s tables: the registered types, a dynamic value for the others.
    pub fn bind(&self, schema: &ModuleSchema) -> Decoders {
        let tables = schema
            .tables()
            .map(|t| {
                let codec = TableCodec::new(t, self.types.get(&t.name).cloned());
                (Arc::<str>::from(t.name.as_str()), Arc::new(codec))
            })
            .collect();
        Decoders { tables }
    }
}

/// One table's row decoding: its type and checker built once.
pub struct TableCodec {
    name: Arc<str>,
    ty: AlgebraicType,
    typespace: Typespace,
    typed: Option<Arc<DecodeFn>>,
    /// Whether the row type has lengths in it (strings, arrays): only then is
    /// the guard's walk worth its cost (see [`guard::has_no_lengths`]).
    guarded: bool,
    warned: AtomicBool,
}

impl fmt::Debug for TableCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableCodec").field("table", &self.name).field("typed", &self.typed.is_some()).finish()
    }
}

impl TableCodec {
    fn new(table: &TableSchema, typed: Option<Arc<DecodeFn>>) -> Self {
        let ty = AlgebraicType::Product(table.row_type.clone());
        let typespace = Typespace::new(Vec::new());
        let guarded = !guard::has_no_lengths(&typespace, &ty);
        Self { name: table.name.as_str().into(), ty, typespace, typed, guarded, warned: AtomicBool::new(false) }
    }

    /// The guard's check of `bytes`, for a row type with lengths in it; for
    /// one without, the decoders' own checks (tags, bools, sizes, leftovers)
    /// are the whole check.
    fn check(&self, bytes: &[u8]) -> Result<(), String> {
        if !self.guarded {
            return Ok(());
        }
        guard::check(&self.typespace, &self.ty, bytes).map_err(|e| format!("malformed row of {}: {e}", self.name))
    }

    fn decode_dynamic(&self, bytes: &[u8]) -> Result<ProductValue, String> {
        let result = self.check(bytes).and_then(|()| {
            let AlgebraicType::Product(row_type) = &self.ty else { return Err("not a product".to_string()) };
            let mut rest = bytes;
            let value = ProductValue::decode(row_type, &mut rest).map_err(|e| format!("row of {}: {e}", self.name))?;
            if !rest.is_empty() {
                return Err(format!("malformed row of {}: {} trailing bytes after the value", self.name, rest.len()));
            }
            Ok(value)
        });
        if let Err(e) = &result {
            self.report(e);
        }
        result
    }

    fn report(&self, error: &str) {
        metrics::counter!(names::SYNC_ROW_DECODE_ERRORS, names::LABEL_TABLE => self.name.to_string()).increment(1);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(table = %self.name, error, "a row does not decode (reported once per table; counted in spacelink_sync_row_decode_errors_total)");
        }
    }

    /// The cached form of `bytes`: decoded now for a registered type, else decoded on first use.
    pub(crate) fn row(self: &Arc<Self>, bytes: Bytes) -> Row {
        match &self.typed {
            Some(decode) => match decode(self, bytes) {
                Ok(row) => row,
                Err((bytes, error)) => {
                    self.report(&error);
                    let lazy = Lazy { bytes, codec: Some(Arc::clone(self)), value: OnceLock::new() };
                    let _ = lazy.value.set(Err(error));
                    Row(Arc::new(lazy))
                }
            },
            None => Row(Arc::new(Lazy { bytes, codec: Some(Arc::clone(self)), value: OnceLock::new() })),
        }
    }
}

/// Every table's [`TableCodec`], from [`RowTypes::bind`].
#[derive(Debug, Clone, Default)]
pub struct Decoders {
    tables: FxHashMap<Arc<str>, Arc<TableCodec>>,
}

impl Decoders {
    /// No schema: rows are kept as bytes.
    pub fn none() -> Self {
        Self::default()
    }

    pub(crate) fn table(&self, table: &str) -> Option<&Arc<TableCodec>> {
        self.tables.get(table)
    }

    /// The cached form of `bytes`, a row of `table`.
    pub fn row(&self, table: &str, bytes: Bytes) -> Row {
        match self.table(table) {
            Some(codec) => codec.row(bytes),
            None => Row::from_bytes(bytes),
        }
    }
}
