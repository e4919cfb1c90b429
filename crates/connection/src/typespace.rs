//! Building the SATS type of a Rust type, to check bytes against it.

use std::any::TypeId;
use std::collections::HashMap;

use spacetimedb_sats::{AlgebraicType, AlgebraicTypeRef, SpacetimeType, Typespace};

/// Collects the named types that `SpacetimeType::make_type` registers.
#[derive(Debug, Default)]
pub(crate) struct TypespaceBuilder {
    typespace: Typespace,
    seen: HashMap<TypeId, AlgebraicTypeRef>,
}

impl TypespaceBuilder {
    /// The type of `T` and the typespace its references point into.
    pub(crate) fn build<T: SpacetimeType>() -> (Typespace, AlgebraicType) {
        let mut builder = Self::default();
        let ty = T::make_type(&mut builder);
        (builder.typespace, ty)
    }
}

impl spacetimedb_sats::typespace::TypespaceBuilder for TypespaceBuilder {
    fn add(
        &mut self,
        typeid: TypeId,
        _name: Option<&'static str>,
        make_ty: impl FnOnce(&mut Self) -> AlgebraicType,
    ) -> AlgebraicType {
        if let Some(r) = self.seen.get(&typeid) {
            return AlgebraicType::Ref(*r);
        }
        // Reserve the slot first, so that recursive types refer to it.
        let r = self.typespace.add(AlgebraicType::unit());
        self.seen.insert(typeid, r);
        let ty = make_ty(self);
        if let Some(slot) = self.typespace.get_mut(r) {
            *slot = ty;
        }
        AlgebraicType::Ref(r)
    }
}
