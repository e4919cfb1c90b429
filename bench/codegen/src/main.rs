//! The official SpacetimeDB code generator, without the `spacetime` CLI:
//! reads a module's `GET /v1/database/<db>/schema?version=9` JSON (a
//! `RawModuleDefV9` in SATS-JSON), validates it into a `ModuleDef` and writes
//! the Rust bindings that `spacetime generate --lang rust` would write.
//!
//! ```text
//! spacelink-bench-codegen <schema.json> <out dir>
//! ```

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use spacetimedb_lib::db::raw_def::v9::RawModuleDefV9;
use spacetimedb_sats::de::serde::DeserializeWrapper;
use spacetimedb_schema::def::ModuleDef;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [schema, out] = args.as_slice() else {
        bail!("usage: spacelink-bench-codegen <schema.json> <out dir>");
    };
    let json = fs::read_to_string(schema).with_context(|| format!("reading {schema}"))?;
    let DeserializeWrapper(raw) = serde_json::from_str::<DeserializeWrapper<RawModuleDefV9>>(&json)
        .with_context(|| format!("{schema} is not a RawModuleDefV9"))?;
    let module = ModuleDef::try_from(raw).map_err(|e| anyhow::anyhow!("the schema does not validate: {e:?}"))?;
    let out = PathBuf::from(out);
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let files = spacetimedb_codegen::generate(&module, &spacetimedb_codegen::Rust);
    for (name, code) in &files {
        fs::write(out.join(name), code).with_context(|| format!("writing {name}"))?;
    }
    eprintln!("wrote {} files to {}", files.len(), out.display());
    Ok(())
}
