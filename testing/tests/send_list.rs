//! Every public `async fn` of every library crate is proven `Send` at compile time
//! in that crate's `src/send.rs`. This test keeps the list complete: a new public
//! async fn that `send.rs` does not call fails here, so a `!Send` future can never
//! ship unnoticed. (`EventStore`/`Backend` methods return `BoxFuture`/`BoxStream`,
//! which are `Send` by their type.)

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{fs, path::Path};

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_public_async_fn_has_a_send_assertion() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for krate in ["core", "memory", "sqlite", "postgres", "test-kit", "fs"] {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let send = fs::read_to_string(src.join("send.rs")).unwrap_or_default();
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let Some(rest) = line.trim_start().strip_prefix("pub async fn ") else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                checked += 1;
                assert!(
                    send.contains(&format!("{name}(")) || send.contains(&format!("{name}::<")),
                    "{krate}: `pub async fn {name}` ({}) has no Send assertion in {krate}/src/send.rs",
                    file.display()
                );
            }
        }
    }
    assert!(checked >= 7, "found only {checked} public async fns");
}
