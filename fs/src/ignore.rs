//! The store's rules in `.gitignore` and `.gitattributes`, merged into whatever the
//! user has there: missing lines are appended, nothing is removed or reordered.

use std::{fs, io, path::Path};

use crate::layout::write_durably;

/// What the store needs ignored: everything machine-local.
pub(crate) const GITIGNORE_RULES: &[&str] = &["/.annals/"];
/// Event files are data: no line-ending conversion, no textual merge.
pub(crate) const GITATTRIBUTES_RULES: &[&str] = &["/events/** -text"];

const MARKER: &str = "# added by annals-fs (keeps its machine-local files out of git)";

/// Adds each of `rules` to the file at `path` unless a line equal to it is
/// already there. Returns whether the file changed.
pub(crate) fn merge_rules(root: &Path, tmp: &Path, name: &str, rules: &[&str]) -> io::Result<bool> {
    let path = root.join(name);
    let existing = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let missing: Vec<&str> = rules
        .iter()
        .copied()
        .filter(|rule| !existing.lines().any(|line| line.trim() == *rule))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.lines().any(|line| line == MARKER) {
        text.push_str(MARKER);
        text.push('\n');
    }
    for rule in missing {
        text.push_str(rule);
        text.push('\n');
    }
    write_durably(tmp, root, name, text.as_bytes())?;
    Ok(true)
}
