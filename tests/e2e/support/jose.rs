//! Keys and tokens made by an independent JOSE library: Python's PyJWT, driven by
//! `tests/e2e/jose/make_tokens.py`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Write keys into `dir` and return the tokens by name (see the script for the names).
pub fn make_tokens(dir: &Path, leeway_s: u64) -> HashMap<String, String> {
    let script = super::root()
        .join("tests")
        .join("e2e")
        .join("jose")
        .join("make_tokens.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .arg(leeway_s.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "make_tokens.py failed (pip install 'pyjwt[crypto]'): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tokens as JSON")
}
