//! The suite's case list is checked, not trusted: every public case function in
//! `src/cases/` must be listed in `conformance_suite!`, and every listed name must
//! exist, so a new case can never be written and silently not run.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{collections::BTreeSet, fs, path::Path};

fn public_case_fns() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cases");
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("pub async fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names
}

fn listed_cases() -> BTreeSet<String> {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let start = lib.find("__conformance_cases!($($mode)*;").unwrap();
    let end = start + lib[start..].find(");").unwrap();
    lib[start..end]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.is_empty())
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn every_public_case_is_in_the_suite_macro_and_nothing_else() {
    let defined = public_case_fns();
    let listed = listed_cases();
    assert!(defined.len() > 50, "found only {} cases", defined.len());
    let missing: Vec<_> = defined.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&defined).collect();
    assert!(
        missing.is_empty(),
        "cases not listed in conformance_suite!: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "listed names with no case fn: {unknown:?}"
    );
}
