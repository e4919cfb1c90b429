//! What spacelink-bevy brings into a game's build, checked with `cargo tree`:
//! Bevy's ECS and app at 0.20, and no renderer, no window, no asset server, no
//! reflection (the game brings the Bevy it wants; the plugin needs none of that).
#![allow(clippy::unwrap_used)]

use std::process::Command;

/// `cargo tree` of spacelink-bevy's normal dependencies, one package a line.
fn tree() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "--locked", "-e", "normal", "-p", "spacelink-bevy", "--prefix", "none"])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_plugin_brings_bevy_ecs_and_app_0_20_and_no_renderer_window_or_reflection() {
    let tree = tree();
    for wanted in ["bevy_ecs v0.20.", "bevy_app v0.20."] {
        assert!(tree.lines().any(|l| l.starts_with(wanted)), "`{wanted}` missing: {tree}");
    }
    let unwanted = [
        "bevy_render",
        "bevy_window",
        "bevy_winit",
        "winit",
        "wgpu",
        "naga",
        "bevy_asset",
        "bevy_image",
        "bevy_reflect",
        "bevy_gizmos",
        "bevy_pbr",
        "bevy_sprite",
        "bevy_ui",
        "bevy_audio",
        "bevy_gilrs",
        "bevy_a11y",
        "bevy_internal",
    ];
    for crate_name in unwanted {
        let found: Vec<&str> = tree.lines().filter(|l| l.starts_with(&format!("{crate_name} v"))).collect();
        assert!(found.is_empty(), "`{crate_name}` in spacelink-bevy's tree: {found:#?}");
    }
}
