//! Every page under `docs/` (and the README) is compiled as doctests by `src/lib.rs`,
//! no Rust example opts out with `ignore`, and every quoted excerpt (a ```` ```rs ````
//! block) still matches the source file it names.

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

/// The ```` ```rs ```` blocks of a page: quoted excerpts of the sources, each as
/// (first line, remaining lines).
fn excerpts(text: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() != "```rs" {
            continue;
        }
        let block: Vec<String> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .map(str::to_owned)
            .collect();
        let (head, body) = block.split_first().unwrap();
        found.push((head.clone(), body.to_vec()));
    }
    found
}

/// A page quotes real code in ```` ```rs ```` blocks (not compiled: they use the
/// crate's private items) whose first line names the file, `// memory/src/store.rs`.
/// The quote must still be in that file, verbatim and contiguous, so a page can
/// never walk through code that no longer exists.
#[test]
fn quoted_excerpts_match_their_source_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = root.join("..");
    let mut found = Vec::new();
    pages(root, &mut found);
    let mut checked = 0;
    for page in &found {
        let text = fs::read_to_string(root.join(page)).unwrap();
        for (head, body) in excerpts(&text) {
            let source = head.strip_prefix("// ").unwrap_or_else(|| {
                panic!("{page}: a ```rs excerpt must start with `// <file>`, found `{head}`")
            });
            let file = fs::read_to_string(repo.join(source))
                .unwrap_or_else(|e| panic!("{page}: excerpt of {source}: {e}"));
            let lines: Vec<&str> = file.lines().collect();
            let contiguous = !body.is_empty()
                && lines
                    .windows(body.len())
                    .any(|w| w.iter().zip(&body).all(|(a, b)| a == b));
            assert!(
                contiguous,
                "{page}: the excerpt of {source} starting `{}` is no longer in that file; \
                 quote the current code",
                body.first().map_or("", String::as_str)
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "found only {checked} excerpts");
}
