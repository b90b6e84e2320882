//! Every page under `docs/` (and the README) is compiled as doctests by `src/lib.rs`,
//! and no Rust example opts out with `ignore`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{fs, path::Path};

fn pages(dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pages(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(
                path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn every_page_is_compiled_and_nothing_is_ignored() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let mut found = Vec::new();
    pages(root, &mut found);
    assert!(found.len() >= 8, "{found:?}");
    for page in found.iter().map(String::as_str).chain(["../README.md"]) {
        let listed = format!("include_str!(\"../{page}\")");
        assert!(
            lib.contains(&listed),
            "docs/src/lib.rs does not compile {page}: add {listed}"
        );
        let text = fs::read_to_string(root.join(page)).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !(line.starts_with("```rust") && line.contains("ignore")),
                "{page}:{}: Rust examples must compile (use no_run for ones that need a server)",
                n + 1
            );
        }
    }
}
