//! Builds the first-party plugins (`plugins/*`) for `wasm32-wasip2` and generates the table of
//! built-in plugins that `src/plugin/builtin.rs` includes, so `builtin:NAME` always refers to
//! the plugin built from this very source tree.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates under `plugins/` embedded as built-ins: (cargo package, builtin name).
const PLUGINS: &[&str] = &[
    "request-transformer",
    "response-transformer",
    "jwt-auth",
    "key-auth",
    "mtls-auth",
    "acl",
    "rate-limit",
    "ip-restriction",
    "cors",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for dir in ["plugins", "plugin-sdk", "wit"] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    // The workspace manifest holds the `wasm` profile the plugins are built with.
    println!(
        "cargo::rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    println!("cargo::rerun-if-env-changed=GATEWAY_WASM_TARGET_DIR");
    println!(
        "cargo::rerun-if-changed={}",
        root.join("rust-toolchain.toml").display()
    );

    let target_dir = std::env::var_os("GATEWAY_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm"));
    // Under rustup the plugins are built by the toolchain `rust-toolchain.toml` pins (the one
    // `make setup` gave the wasm32-wasip2 target), whichever toolchain builds the host: rustup's
    // `cargo`, without the host build's toolchain choice, picks it from the workspace root.
    // `cargo +nightly fuzz` builds the host with a nightly that need not have the target.
    let rustup = std::env::var_os("RUSTUP_TOOLCHAIN").is_some();
    let cargo = match std::env::var("CARGO") {
        Ok(cargo) if !rustup => cargo,
        _ => "cargo".into(),
    };
    let mut command = Command::new(cargo);
    if rustup {
        command.env_remove("RUSTUP_TOOLCHAIN").env_remove("RUSTC");
    }
    command
        .current_dir(&root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "wasm"])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR");
    for package in PLUGINS {
        command.args(["-p", package]);
    }
    let status = command.status();
    if !matches!(status, Ok(s) if s.success()) {
        println!(
            "cargo::error=building the built-in plugins for wasm32-wasip2 failed ({status:?}); \
             is the target installed? run: rustup target add wasm32-wasip2"
        );
        return;
    }

    let out_dir = wasm_out(&target_dir);
    let mut table = String::from(
        "/// Built-in plugins: (name, component bytes).\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for package in PLUGINS {
        let file = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
        // Gone (a target directory moved, or cleaned) or rebuilt: run again.
        println!("cargo::rerun-if-changed={}", file.display());
        table.push_str(&format!(
            "    ({package:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    table.push_str("];\n");
    let generated = PathBuf::from(env("OUT_DIR")).join("builtin_plugins.rs");
    if let Err(e) = std::fs::write(&generated, table) {
        println!("cargo::error=cannot write {}: {e}", generated.display());
    }
}

fn wasm_out(target_dir: &Path) -> PathBuf {
    target_dir.join("wasm32-wasip2").join("wasm")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}
