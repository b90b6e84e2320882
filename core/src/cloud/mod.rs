//! CloudEvents 1.0 attributes: what every event carries besides its payload, and
//! the rules they follow.
//!
//! Every stored event is a CloudEvent. The attributes map onto annals' fields:
//!
//! | CloudEvents | annals |
//! |---|---|
//! | `specversion` | always [`SPEC_VERSION`] (`1.0`) |
//! | `id` | [`RecordedEvent::cloud_id`](crate::RecordedEvent::cloud_id): the caller's id, or the [`EventId`] as text |
//! | `source` | [`RecordedEvent::source`](crate::RecordedEvent::source), [`DEFAULT_SOURCE`] unless set |
//! | `type` | [`event_type`](crate::RecordedEvent::event_type) |
//! | `subject` | [`RecordedEvent::subject`](crate::RecordedEvent::subject), the stream id unless set |
//! | `time` | [`RecordedEvent::time`](crate::RecordedEvent::time), the recorded time unless set |
//! | `datacontenttype` | [`content_type`](crate::RecordedEvent::content_type) |
//! | `dataschema` | [`Metadata::dataschema`](crate::Metadata::dataschema) |
//! | extensions | [`Metadata::extensions`](crate::Metadata::extensions) |
//!
//! # `(source, id)` and [`EventId`]
//!
//! CloudEvents identifies an event by `(source, id)`; annals by its [`EventId`], a
//! UUID unique store-wide. The two are tied so that one uniqueness rule covers both:
//!
//! * an event without a caller id has the CloudEvents id `EventId.to_string()`;
//! * an event with a caller id ([`NewEvent::with_cloud_id`](crate::NewEvent::with_cloud_id))
//!   gets the `EventId` [`EventId::for_cloud_event(source, id)`](EventId::for_cloud_event),
//!   a UUID v5 of the pair. Re-sending the same CloudEvent is therefore an
//!   idempotent re-send, and reusing `(source, id)` for different content is the
//!   same error as reusing an event id.
//!
//! [`EventStore::get_by_source_id`](crate::EventStore::get_by_source_id) finds an event
//! by the pair through that id, so it needs no index of its own.
//!
//! # Storage
//!
//! The attributes are stored with the event's metadata, under the keys `ce_source`,
//! `ce_id`, `ce_subject`, `ce_time` (microseconds since the Unix epoch), `ce_dataschema`
//! and `ce_ext`; an attribute left at its default is not stored at all. Metadata
//! fields whose names start with `ce_` are therefore reserved.

mod json;

use std::collections::BTreeMap;

pub use json::parse_rfc3339;

use serde::{Deserialize, Serialize};

use crate::{limits, Error, EventId, Result, Timestamp};

/// The CloudEvents version annals implements.
pub const SPEC_VERSION: &str = "1.0";

/// The `source` of events that do not set one.
pub const DEFAULT_SOURCE: &str = "urn:annals";

/// The attribute names CloudEvents 1.0 defines (and its JSON format's `data`
/// members); an extension may not use them.
pub const CONTEXT_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Earliest event time CloudEvents' RFC 3339 timestamps can carry (0001-01-01).
const MIN_TIME: i64 = -62_135_596_800_000_000;
/// Latest event time (9999-12-31T23:59:59.999999Z).
const MAX_TIME: i64 = 253_402_300_799_999_999;

/// The value of a CloudEvents extension attribute: string, boolean or integer (the
/// spec's 32-bit `Integer`).
///
/// ```
/// use annals_core::cloud::ExtensionValue;
///
/// assert_eq!(ExtensionValue::from("eu"), ExtensionValue::String("eu".into()));
/// assert_eq!(ExtensionValue::from(3), ExtensionValue::Integer(3));
/// assert_eq!(ExtensionValue::from(true), ExtensionValue::Bool(true));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtensionValue {
    /// A boolean.
    Bool(bool),
    /// A 32-bit signed integer.
    Integer(i32),
    /// A string.
    String(String),
}

impl From<&str> for ExtensionValue {
    fn from(value: &str) -> Self {
        ExtensionValue::String(value.to_owned())
    }
}

impl From<String> for ExtensionValue {
    fn from(value: String) -> Self {
        ExtensionValue::String(value)
    }
}

impl From<bool> for ExtensionValue {
    fn from(value: bool) -> Self {
        ExtensionValue::Bool(value)
    }
}

impl From<i32> for ExtensionValue {
    fn from(value: i32) -> Self {
        ExtensionValue::Integer(value)
    }
}

/// The namespace of [`EventId::for_cloud_event`]'s UUID v5 ids.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1b_5e0c_4f3d_4c8e_9d2a_7b61_e5f0_a3c4);

impl EventId {
    /// The event id of the CloudEvent `(source, id)`: a UUID v5 of the pair, so the
    /// same pair always maps to the same [`EventId`] (see the [`cloud`](crate::cloud)
    /// module).
    ///
    /// ```
    /// use annals_core::EventId;
    ///
    /// let a = EventId::for_cloud_event("/orders", "A-1");
    /// assert_eq!(a, EventId::for_cloud_event("/orders", "A-1"));
    /// assert_ne!(a, EventId::for_cloud_event("/billing", "A-1"));
    /// ```
    pub fn for_cloud_event(source: &str, id: &str) -> EventId {
        let mut name = Vec::with_capacity(source.len() + id.len() + 1);
        name.extend_from_slice(source.as_bytes());
        name.push(0);
        name.extend_from_slice(id.as_bytes());
        EventId::from_uuid(uuid::Uuid::new_v5(&ID_NAMESPACE, &name))
    }
}

/// Checks a `source`: a non-empty URI-reference (RFC 3986) of at most 255 bytes.
pub(crate) fn check_source(source: &str) -> Result<()> {
    limits::check_name("event source", source)?;
    check_uri_chars("event source", source)
}

/// Checks a `dataschema`: an absolute URI.
pub(crate) fn check_dataschema(uri: &str) -> Result<()> {
    limits::check_name("event dataschema", uri)?;
    check_uri_chars("event dataschema", uri)?;
    let scheme = uri.split(':').next().unwrap_or_default();
    let valid_scheme = uri.contains(':')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err(Error::invalid_input(format!(
            "event dataschema `{}` is not an absolute URI (it needs a scheme, like `https:`)",
            uri.escape_debug()
        )));
    }
    Ok(())
}

/// Only the characters RFC 3986 allows, and `%` only as a `%XX` escape.
fn check_uri_chars(what: &str, uri: &str) -> Result<()> {
    let bytes = uri.as_bytes();
    let mut rest = bytes.iter().enumerate();
    while let Some((i, &b)) = rest.next() {
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err(Error::invalid_input(format!(
                    "{what} `{}` has a `%` that is not a %XX escape",
                    uri.escape_debug()
                )));
            }
            rest.nth(1);
        } else if !(b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)) {
            return Err(Error::invalid_input(format!(
                "{what} `{}` is not a URI-reference: `{}` must be %-escaped",
                uri.escape_debug(),
                char::from(b).escape_debug()
            )));
        }
    }
    Ok(())
}

/// Checks the attributes stored in metadata.
pub(crate) fn check(meta: &crate::Metadata) -> Result<()> {
    if let Some(source) = &meta.source {
        check_source(source)?;
    }
    if let Some(id) = &meta.cloud_id {
        limits::check_name("event cloud id", id)?;
    }
    if let Some(subject) = &meta.subject {
        limits::check_name("event subject", subject)?;
    }
    if let Some(time) = meta.time {
        check_time(time)?;
    }
    if let Some(schema) = &meta.dataschema {
        check_dataschema(schema)?;
    }
    for (name, value) in &meta.extensions {
        check_extension_name(name)?;
        if let ExtensionValue::String(s) = value {
            if s.contains('\0') {
                return Err(Error::invalid_input(format!(
                    "extension `{name}` contains a NUL character"
                )));
            }
        }
    }
    Ok(())
}

/// An event time must be one RFC 3339 can write: years 0001 to 9999.
pub(crate) fn check_time(time: Timestamp) -> Result<()> {
    if !(MIN_TIME..=MAX_TIME).contains(&time.as_unix_micros()) {
        return Err(Error::invalid_input(format!(
            "event time {} µs since the epoch is outside years 0001–9999",
            time.as_unix_micros()
        )));
    }
    Ok(())
}

/// Extension names: 1 to 20 of `[a-z0-9]`, not a context attribute's name.
pub(crate) fn check_extension_name(name: &str) -> Result<()> {
    let valid = (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid {
        return Err(Error::invalid_input(format!(
            "extension name `{}` must be 1 to 20 characters of a-z and 0-9",
            name.escape_debug()
        )));
    }
    if CONTEXT_ATTRIBUTES.contains(&name) {
        return Err(Error::invalid_input(format!(
            "extension name `{name}` is a CloudEvents context attribute"
        )));
    }
    Ok(())
}

/// The extensions map type.
pub type Extensions = BTreeMap<String, ExtensionValue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_uri_references() {
        for good in [
            "/orders",
            "urn:annals",
            "https://example.com/a?b=c#d",
            "a%20b",
        ] {
            assert!(check_source(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a%2", "a%zz", "é", "a\"b", "a\0b"] {
            assert!(check_source(bad).unwrap_err().is_invalid_input(), "{bad:?}");
        }
        assert!(check_source(&"a".repeat(256)).is_err());
    }

    #[test]
    fn dataschema_needs_a_scheme() {
        assert!(check_dataschema("https://example.com/s.json").is_ok());
        assert!(check_dataschema("urn:x").is_ok());
        for bad in ["/relative", ":x", "1http://x", "ht tp://x"] {
            assert!(check_dataschema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extension_names_follow_the_spec() {
        assert!(check_extension_name("tenant").is_ok());
        assert!(check_extension_name("a1").is_ok());
        assert!(check_extension_name(&"a".repeat(20)).is_ok());
        for bad in ["", "Tenant", "a-b", "a_b", "source", "data", "ünï"] {
            assert!(check_extension_name(bad).is_err(), "{bad}");
        }
        assert!(check_extension_name(&"a".repeat(21)).is_err());
    }

    #[test]
    fn times_stay_within_rfc3339_years() {
        assert!(check_time(Timestamp::from_unix_micros(MIN_TIME)).is_ok());
        assert!(check_time(Timestamp::from_unix_micros(MAX_TIME)).is_ok());
        assert!(check_time(Timestamp::from_unix_micros(MIN_TIME - 1)).is_err());
        assert!(check_time(Timestamp::from_unix_micros(MAX_TIME + 1)).is_err());
    }
}
