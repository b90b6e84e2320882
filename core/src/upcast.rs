//! Event schema versions and upcasters: old payloads turned into the current shape
//! on read.
//!
//! A stored event type is `Name.vN` ([`EventType`]). When the application's
//! current version of `Name` is higher than `N`, the registered upcasters run in a
//! chain — `v1 → v2 → v3` — before the payload is decoded. Writes always use the
//! current version, so old shapes only ever exist in old events.
//!
//! * [`Upcasters::json`] transforms a JSON payload as a [`serde_json::Value`]: the
//!   usual case, no old Rust type needed.
//! * [`Upcasters::bytes`] transforms raw bytes with their content type: for binary
//!   codecs (postcard, bincode), which are not self-describing and cannot be edited
//!   as a tree. Decode the bytes into a copy of the old struct, convert, encode.
//!
//! ```
//! use annals_core::Upcasters;
//!
//! let upcasters = Upcasters::new()
//!     // v1 had no currency: default it
//!     .json("OrderPlaced", 1, |mut v| {
//!         v["currency"] = "EUR".into();
//!         Ok(v)
//!     })
//!     // v2 called the customer `client`
//!     .json("OrderPlaced", 2, |mut v| {
//!         if let Some(obj) = v.as_object_mut() {
//!             if let Some(client) = obj.remove("client") {
//!                 obj.insert("customer".into(), client);
//!             }
//!         }
//!         Ok(v)
//!     });
//! assert!(upcasters.has("OrderPlaced", 1));
//! ```

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc};

use serde_json::Value;

use crate::{BoxError, JSON_CONTENT_TYPE};

/// A parsed event type name: `OrderPlaced.v2` is name `OrderPlaced`, version 2.
///
/// A stored type without a `.vN` suffix is version 1.
///
/// ```
/// use annals_core::EventType;
///
/// let t = EventType::parse("OrderPlaced.v2");
/// assert_eq!((t.name, t.version), ("OrderPlaced", 2));
/// assert_eq!(EventType::parse("Legacy").version, 1);
/// assert_eq!(t.to_string(), "OrderPlaced.v2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventType<'a> {
    /// The name without the version suffix.
    pub name: &'a str,
    /// The schema version (1 when the stored type has no suffix).
    pub version: u32,
}

impl<'a> EventType<'a> {
    /// A name and version.
    pub fn new(name: &'a str, version: u32) -> Self {
        EventType { name, version }
    }

    /// Splits `Name.vN`; anything without a numeric `.vN` suffix is the whole name
    /// at version 1.
    pub fn parse(event_type: &'a str) -> Self {
        if let Some((name, version)) = event_type.rsplit_once(".v") {
            if !name.is_empty()
                && !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
            {
                if let Ok(version) = version.parse() {
                    return EventType { name, version };
                }
            }
        }
        EventType {
            name: event_type,
            version: 1,
        }
    }
}

impl fmt::Display for EventType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.v{}", self.name, self.version)
    }
}

type JsonStep = dyn Fn(Value) -> Result<Value, BoxError> + Send + Sync;
type BytesStep = dyn Fn(&str, &[u8]) -> Result<Vec<u8>, BoxError> + Send + Sync;

enum Step {
    Json(Box<JsonStep>),
    Bytes(Box<BytesStep>),
}

/// The registered upcasters of an application: one step per `(name, from_version)`,
/// each producing `from_version + 1`.
///
/// Cheap to clone (steps are shared).
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), Arc<Step>>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<String> = self
            .steps
            .keys()
            .map(|(name, v)| format!("{name}.v{v}→v{}", v.saturating_add(1)))
            .collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

/// A payload in the middle of an upcast chain.
#[derive(Debug)]
pub(crate) enum Upcasted<'a> {
    /// Bytes in the stored content type (unchanged, or produced by a bytes step).
    Bytes(Cow<'a, [u8]>),
    /// A JSON payload after at least one JSON step.
    Json(Value),
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a JSON step turning `name.v{from_version}` into
    /// `name.v{from_version + 1}`. Replaces a step already registered for the pair.
    ///
    /// Applied to a non-JSON payload the step fails with a codec error; use
    /// [`Upcasters::bytes`] for binary codecs.
    #[must_use]
    pub fn json<F>(mut self, name: &str, from_version: u32, step: F) -> Self
    where
        F: Fn(Value) -> Result<Value, BoxError> + Send + Sync + 'static,
    {
        self.steps.insert(
            (name.to_owned(), from_version),
            Arc::new(Step::Json(Box::new(step))),
        );
        self
    }

    /// Registers a byte-level step turning `name.v{from_version}` into
    /// `name.v{from_version + 1}`; it gets the payload's content type and bytes and
    /// returns bytes in the same content type. Works with every codec.
    #[must_use]
    pub fn bytes<F>(mut self, name: &str, from_version: u32, step: F) -> Self
    where
        F: Fn(&str, &[u8]) -> Result<Vec<u8>, BoxError> + Send + Sync + 'static,
    {
        self.steps.insert(
            (name.to_owned(), from_version),
            Arc::new(Step::Bytes(Box::new(step))),
        );
        self
    }

    /// True if a step from `name.v{from_version}` is registered.
    pub fn has(&self, name: &str, from_version: u32) -> bool {
        self.steps.contains_key(&(name.to_owned(), from_version))
    }

    /// True if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the chain from `from` up to version `target` of the same name.
    pub(crate) fn upcast<'a>(
        &self,
        from: EventType<'_>,
        target: u32,
        content_type: &str,
        payload: &'a [u8],
    ) -> Result<Upcasted<'a>, BoxError> {
        let mut current = Upcasted::Bytes(Cow::Borrowed(payload));
        let mut version = from.version;
        while version < target {
            let Some(step) = self.steps.get(&(from.name.to_owned(), version)) else {
                return Err(format!(
                    "no upcaster registered from `{}.v{version}` (the current version is {target})",
                    from.name
                )
                .into());
            };
            current = match (step.as_ref(), current) {
                (Step::Json(f), current) => {
                    if content_type != JSON_CONTENT_TYPE {
                        return Err(format!(
                            "the upcaster from `{}.v{version}` edits JSON but the payload is \
                             `{content_type}`; register it with `Upcasters::bytes`",
                            from.name
                        )
                        .into());
                    }
                    let value = match current {
                        Upcasted::Json(value) => value,
                        Upcasted::Bytes(bytes) => serde_json::from_slice(&bytes)?,
                    };
                    Upcasted::Json(f(value)?)
                }
                (Step::Bytes(f), Upcasted::Bytes(bytes)) => {
                    Upcasted::Bytes(Cow::Owned(f(content_type, &bytes)?))
                }
                (Step::Bytes(f), Upcasted::Json(value)) => {
                    let bytes = serde_json::to_vec(&value)?;
                    Upcasted::Bytes(Cow::Owned(f(content_type, &bytes)?))
                }
            };
            version = version.saturating_add(1);
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn parse_handles_odd_names() {
        assert_eq!(EventType::parse("A.v10"), EventType::new("A", 10));
        assert_eq!(EventType::parse("A.vx"), EventType::new("A.vx", 1));
        assert_eq!(EventType::parse(".v3"), EventType::new(".v3", 1));
        assert_eq!(EventType::parse("A.v"), EventType::new("A.v", 1));
        assert_eq!(
            EventType::parse("A.v99999999999"),
            EventType::new("A.v99999999999", 1)
        );
        assert_eq!(EventType::parse("x.v1.v2"), EventType::new("x.v1", 2));
    }

    #[test]
    fn chain_runs_in_order_and_reports_gaps() {
        let up = Upcasters::new()
            .json("E", 1, |v| Ok(serde_json::json!({ "v2": v })))
            .json("E", 2, |v| Ok(serde_json::json!({ "v3": v })));
        let out = up
            .upcast(EventType::new("E", 1), 3, JSON_CONTENT_TYPE, b"1")
            .unwrap();
        match out {
            Upcasted::Json(v) => assert_eq!(v, serde_json::json!({"v3": {"v2": 1}})),
            Upcasted::Bytes(_) => panic!("expected JSON"),
        }
        let err = up
            .upcast(EventType::new("E", 1), 4, JSON_CONTENT_TYPE, b"1")
            .unwrap_err();
        assert!(err.to_string().contains("E.v3"), "{err}");
        let err = up
            .upcast(EventType::new("E", 1), 2, "application/x-postcard", b"\x01")
            .unwrap_err();
        assert!(err.to_string().contains("Upcasters::bytes"), "{err}");
    }
}
