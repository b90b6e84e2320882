//! Where things live under the root, and the durable write path.
//!
//! ```text
//! <root>/
//!   events/            committed: one immutable file per transaction
//!   .gitignore         gets `/.annals/` (merged into the user's rules)
//!   .gitattributes     gets `/events/** -text` (merged into the user's rules)
//!   .annals/           machine-local, git-ignored
//!     lock             the writer's OS file lock
//!     replica          this clone's replica id
//!     snapshots/       one file per stream
//!     tmp/             files being written (stale ones are removed on open)
//! ```

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// The paths of one store root.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub(crate) fn events(&self) -> PathBuf {
        self.root.join("events")
    }
    pub(crate) fn local(&self) -> PathBuf {
        self.root.join(".annals")
    }
    pub(crate) fn tmp(&self) -> PathBuf {
        self.local().join("tmp")
    }
    pub(crate) fn snapshots(&self) -> PathBuf {
        self.local().join("snapshots")
    }
    pub(crate) fn lock(&self) -> PathBuf {
        self.local().join("lock")
    }
    pub(crate) fn replica(&self) -> PathBuf {
        self.local().join("replica")
    }
}

/// Creates a directory and any missing parents, fsyncing the parent of each one
/// it creates (the root's own entry included), so every new entry is durable.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Created meanwhile by someone else: its entry is theirs to sync.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => continue,
            Err(e) => return Err(e),
        }
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// fsyncs a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically and durably: a file in `tmp`, fsync,
/// rename into `dir`, fsync `dir`. A reader (or a crash) sees the whole file or none.
pub(crate) fn write_durably(tmp: &Path, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let staging = tmp.join(format!("{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&staging, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the original error is what the caller needs to see.
        let _ = fs::remove_file(&staging);
    }
    result
}

/// Removes every file left in `tmp` by a writer that died mid-write.
pub(crate) fn clean_tmp(tmp: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(tmp)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(tmp)?;
    }
    Ok(removed)
}

/// The file names in `events/`, sorted.
pub(crate) fn list_events(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if !entry.file_type()?.is_file() {
                    continue;
                }
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_dir_creates_every_missing_parent_and_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b").join("c");
        ensure_dir(&deep).unwrap();
        assert!(deep.is_dir());
        // Already there: nothing to do.
        ensure_dir(&deep).unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        assert!(ensure_dir(&file.join("sub")).is_err());
        assert!(ensure_dir(&file).is_err());
    }
}
