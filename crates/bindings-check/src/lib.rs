//! Compiles the bindings `spacelink generate` wrote for the test fixtures
//! (`crates/app/tests/bindings/`, kept up to date by that crate's
//! `bindings_are_up_to_date` test) in a crate whose only dependency is
//! `spacelink`, as a game's would be.

#[path = "../../app/tests/bindings/all_types.rs"]
pub mod all_types;
#[path = "../../app/tests/bindings/guildmaster.rs"]
pub mod guildmaster;
#[path = "../../app/tests/bindings/wide.rs"]
pub mod wide;

#[cfg(test)]
mod tests {
    #[test]
    fn generated_rows_encode_and_register_with_spacelink_alone() {
        use spacelink::__codegen::bsatn;
        let row = super::guildmaster::Vec2 { x: 1.5, y: -2.0 };
        let bytes = bsatn::to_vec(&row).expect("a row encodes");
        assert_eq!(bsatn::from_slice::<super::guildmaster::Vec2>(&bytes).expect("and decodes"), row);
        assert!(super::wide::row_types().is_registered("large_table"));
        assert!(super::all_types::row_types().is_registered("all_types"));
    }
}
