//! Every public `async fn` of every library crate is proven `Send` at compile time
//! in that crate's `src/send.rs`. This test keeps the list complete: a new public
//! async fn that `send.rs` does not call fails here, so a `!Send` future can never
//! ship unnoticed. (`EventStore`/`Backend` methods return `BoxFuture`/`BoxStream`,
//! which are `Send` by their type.)
//!
//! A call counts only when it names the fn by path, `Type::name(` for a method
//! of `impl Type` and `module::name(` for a free fn of `module` (also with a
//! turbofish, `Type::name::<`), so `store.open()` on one type never stands in
//! for a same-named fn of another. The conformance cases of `annals-testing`
//! (free fns in `src/cases/`) are covered at once by `__case_list!(send)`, which
//! asserts every case of the suite's one list; `case_list.rs` checks that list
//! is complete.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{
    fs,
    path::{Path, PathBuf},
};

const CRATES: [&str; 7] = [
    "core", "memory", "sqlite", "postgres", "test-kit", "fs", "testing",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The self type of a top-level `impl` line: `impl<T: X> Repo<S, C> {` gives
/// `Repo`, `impl Trait for Type {` gives `Type`.
fn impl_type(line: &str) -> Option<String> {
    let rest = line.strip_prefix("impl")?;
    let mut rest = rest.trim_start();
    if rest.starts_with('<') {
        let mut depth = 0;
        let end = rest.char_indices().find_map(|(i, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })?;
        rest = rest[end + 1..].trim_start();
    }
    if let Some((_, for_type)) = rest.split_once(" for ") {
        rest = for_type.trim_start();
    }
    let name = ident(rest);
    (!name.is_empty()).then_some(name)
}

/// The module a file defines: its stem, or its folder's name for `mod.rs`
/// (`lib.rs` yields `crate`).
fn module_of(file: &Path) -> String {
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    match stem.as_str() {
        "mod" => file
            .parent()
            .and_then(Path::file_name)
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        "lib" => "crate".to_owned(),
        _ => stem,
    }
}

/// Every public async fn of `file`, as (qualifier, name): the impl's type for a
/// method, the file's module for a free fn.
fn public_async_fns(file: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(file).unwrap();
    let module = module_of(file);
    let mut current_impl: Option<String> = None;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("impl") {
            current_impl = impl_type(line);
        } else if line.starts_with('}') {
            current_impl = None;
        }
        let indented = line.starts_with(char::is_whitespace);
        let Some(rest) = line.trim_start().strip_prefix("pub async fn ") else {
            continue;
        };
        let qualifier = match (&current_impl, indented) {
            (Some(ty), true) => ty.clone(),
            _ => module.clone(),
        };
        found.push((qualifier, ident(rest)));
    }
    found
}

#[test]
fn every_public_async_fn_has_a_send_assertion() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let send = fs::read_to_string(src.join("send.rs")).unwrap_or_default();
        let cases_asserted = send.contains("__case_list!(send)");
        for file in files {
            let is_case = file.starts_with(src.join("cases"));
            for (qualifier, name) in public_async_fns(&file) {
                checked += 1;
                if is_case && cases_asserted {
                    continue;
                }
                let path = format!("{qualifier}::{name}");
                assert!(
                    send.contains(&format!("{path}(")) || send.contains(&format!("{path}::<")),
                    "{krate}: `pub async fn {name}` ({}) has no Send assertion calling \
                     `{path}(…)` in {krate}/src/send.rs",
                    file.display()
                );
            }
        }
    }
    assert!(checked >= 100, "found only {checked} public async fns");
}

#[test]
fn methods_are_told_apart_by_their_type() {
    assert_eq!(
        impl_type("impl<S: EventStore, C: Codec> Repository<S, C> {").as_deref(),
        Some("Repository")
    );
    assert_eq!(
        impl_type("impl Drop for TestSchema {").as_deref(),
        Some("TestSchema")
    );
    assert_eq!(
        impl_type("impl SqliteOptions {").as_deref(),
        Some("SqliteOptions")
    );
    assert_eq!(
        module_of(Path::new("testing/src/cases/mod.rs")),
        "cases".to_owned()
    );
    assert_eq!(
        module_of(Path::new("testing/src/postgres.rs")),
        "postgres".to_owned()
    );
}
