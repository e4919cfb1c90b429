//! What can go wrong generating bindings: one typed error, never a panic.

use spacelink_connection::SchemaError;

/// Why bindings cannot be generated for a module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodegenError {
    /// The module's definition does not read or does not check (a missing,
    /// recursive or over-deep type), as [`spacelink_connection::ModuleSchema`] reads it.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The module holds what the generator cannot write (an unnamed product
    /// used as a column, two names that meet in Rust, a sequenced parameter
    /// that is not a `u32`), an option is malformed, or rustfmt failed.
    #[error("cannot generate bindings: {0}")]
    Invalid(String),
}
