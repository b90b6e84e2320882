//! The size and content rules every backend enforces, in one place.
//!
//! Backends call these checks before touching storage, so a bad input is an
//! [`Error::InvalidInput`] with nothing written, whatever the backend.

use crate::{Error, Result};

/// Longest stream id, event type or content type, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Largest event payload or snapshot state, in bytes (16 MiB).
pub(crate) const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// Largest serialized event metadata, in bytes (64 KiB).
pub(crate) const MAX_METADATA_LEN: usize = 64 * 1024;

/// Checks a short name (stream id, event type, content type): non-empty, at most
/// [`MAX_NAME_LEN`] bytes, no NUL.
pub(crate) fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_input(format!("{what} must not be empty")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME_LEN}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(Error::invalid_input(format!(
            "{what} `{}` contains a NUL character",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// Checks a payload or snapshot size.
pub(crate) fn check_payload(what: &str, len: usize) -> Result<()> {
    if len > MAX_PAYLOAD_LEN {
        return Err(Error::invalid_input(format!(
            "{what} is {len} bytes; the limit is {MAX_PAYLOAD_LEN}"
        )));
    }
    Ok(())
}

/// Checks that no string or key inside a JSON value contains NUL (PostgreSQL's
/// `jsonb` cannot store it, so no backend accepts it).
pub(crate) fn check_json_text(what: &str, value: &serde_json::Value) -> Result<()> {
    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => {
                map.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
            }
            _ => false,
        }
    }
    if has_nul(value) {
        return Err(Error::invalid_input(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}
