//! Typed events: an application's event enum to and from [`NewEvent`] /
//! [`RecordedEvent`].
//!
//! Derive `Serialize` and `Deserialize` on an ordinary (externally tagged) enum and
//! write `impl DomainEvent for MyEvent {}`. Each variant becomes one event type:
//! the **variant name** (or its `#[serde(rename)]`) plus the schema version,
//! `OrderPlaced.v1`; the **payload is the variant's fields** only, encoded with any
//! [`Codec`]. No tag is duplicated in the payload, and a field-less variant stores
//! an empty (or `null`) payload.
//!
//! ```
//! use annals_core::{DomainEvent, Upcasters, codec::Json};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum OrderEvent {
//!     OrderPlaced { customer: String, currency: String },
//!     ItemAdded { sku: String, quantity: u32 },
//!     OrderPaid,
//! }
//!
//! impl DomainEvent for OrderEvent {
//!     // `OrderPlaced` is at v2 (v1 had no currency); every other type at v1.
//!     fn schema_version(name: &str) -> u32 {
//!         if name == "OrderPlaced" { 2 } else { 1 }
//!     }
//! }
//!
//! let event = OrderEvent::ItemAdded { sku: "tea".into(), quantity: 2 };
//! let new = event.to_new_event()?;
//! assert_eq!(new.event_type, "ItemAdded.v1");
//! assert_eq!(new.payload, br#"{"sku":"tea","quantity":2}"#);
//! # let recorded = annals_core::RecordedEvent::from_new(new, annals_core::StreamId::new("o-1")?,
//! #     annals_core::Version::FIRST, annals_core::Position::new(1), annals_core::Timestamp::now());
//! assert_eq!(OrderEvent::from_recorded(&recorded)?, event);
//! # Ok::<(), annals_core::Error>(())
//! ```
//!
//! On read, an event whose stored version is older than
//! [`schema_version`](DomainEvent::schema_version) runs through the registered
//! [`Upcasters`] first. A type the enum does not know (or a version newer than the
//! code) is [`Error::UnknownEventType`]; a payload that does not decode is
//! [`Error::Codec`] naming the event id and type.

use std::cell::Cell;

use serde::{de::DeserializeOwned, Serialize};

use crate::{
    codec::{decode_stored, Codec, Json},
    upcast::{EventType, Upcasted, Upcasters},
    variant::{variant_name, VariantContent, VariantSeed},
    Error, NewEvent, RecordedEvent, Result,
};

/// An application's event type: an externally tagged serde enum, one variant per
/// event type. See the [module docs](crate::typed) for an example.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The current schema version of the event type `name` (a variant name). Writes
    /// use it; older stored versions are upcast to it on read. Default: 1.
    fn schema_version(name: &str) -> u32 {
        let _ = name;
        1
    }

    /// The variant name: the event type without its version.
    fn event_name(&self) -> Result<&'static str> {
        variant_name(self).ok_or_else(|| {
            Error::codec(
                "naming a DomainEvent",
                "a DomainEvent must serialize as an externally tagged enum",
            )
        })
    }

    /// The stored event type: `Name.vN` with the current schema version.
    fn event_type(&self) -> Result<String> {
        let name = self.event_name()?;
        Ok(EventType::new(name, Self::schema_version(name)).to_string())
    }

    /// Encodes the event as JSON into a [`NewEvent`] (fresh id, empty metadata).
    fn to_new_event(&self) -> Result<NewEvent> {
        self.to_new_event_with(&Json)
    }

    /// Encodes the event with `codec` into a [`NewEvent`] whose content type is the
    /// codec's.
    fn to_new_event_with<C: Codec>(&self, codec: &C) -> Result<NewEvent> {
        let content = VariantContent::new(self);
        let payload = codec
            .encode(&content)
            .map_err(|e| Error::codec("encoding a DomainEvent", e))?;
        let name = content.name().ok_or_else(|| {
            Error::codec(
                "encoding a DomainEvent",
                "a DomainEvent must serialize as an externally tagged enum",
            )
        })?;
        let event_type = EventType::new(name, Self::schema_version(name)).to_string();
        Ok(NewEvent::new(event_type, payload).with_content_type(codec.content_type()))
    }

    /// Decodes a stored event (built-in codecs by content type, no upcasters).
    fn from_recorded(event: &RecordedEvent) -> Result<Self> {
        Self::from_recorded_with(event, &Json, &Upcasters::new())
    }

    /// Decodes a stored event: runs `upcasters` when its version is older than the
    /// current one, then decodes with `codec` if the content type is the codec's,
    /// else with the built-in codec for the stored content type.
    fn from_recorded_with<C: Codec>(
        event: &RecordedEvent,
        codec: &C,
        upcasters: &Upcasters,
    ) -> Result<Self> {
        decode_recorded(event, codec, upcasters)
    }
}

fn decode_recorded<E: DomainEvent, C: Codec>(
    event: &RecordedEvent,
    codec: &C,
    upcasters: &Upcasters,
) -> Result<E> {
    let unknown = || Error::UnknownEventType {
        event_type: event.event_type.clone(),
        event_id: event.id,
    };
    let context = || {
        format!(
            "decoding event {} (`{}`, {})",
            event.id, event.event_type, event.content_type
        )
    };
    let stored = EventType::parse(&event.event_type);
    let current = E::schema_version(stored.name);
    if stored.version > current {
        return Err(unknown());
    }
    let payload = upcasters
        .upcast(stored, current, &event.content_type, &event.payload)
        .map_err(|e| Error::codec(context(), e))?;
    let flag = Cell::new(false);
    let seed = VariantSeed::<E>::new(stored.name, &flag);
    let decoded = match &payload {
        Upcasted::Bytes(bytes) => decode_stored(codec, &event.content_type, seed, bytes),
        Upcasted::Json(value) => serde::de::DeserializeSeed::deserialize(seed, value)
            .map_err(|e| -> crate::BoxError { Box::new(e) }),
    };
    decoded.map_err(|e| {
        if flag.get() {
            unknown()
        } else {
            Error::codec(context(), e)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use crate::{EventId, Position, StreamId, Timestamp, Version};

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Ev {
        Placed {
            customer: String,
            currency: String,
            lines: u32,
        },
        Paid,
    }

    impl DomainEvent for Ev {
        fn schema_version(name: &str) -> u32 {
            if name == "Placed" {
                3
            } else {
                1
            }
        }
    }

    fn recorded(event_type: &str, payload: &[u8], content_type: &str) -> RecordedEvent {
        RecordedEvent::new(
            EventId::new(),
            StreamId::new("s").unwrap(),
            Version::FIRST,
            Position::new(1),
            event_type.to_owned(),
            payload.to_vec(),
            content_type.to_owned(),
            crate::Metadata::new(),
            Timestamp::now(),
        )
    }

    fn upcasters() -> Upcasters {
        Upcasters::new()
            .json("Placed", 1, |mut v| {
                v["currency"] = "EUR".into();
                Ok(v)
            })
            .json("Placed", 2, |mut v| {
                v["lines"] = 0.into();
                Ok(v)
            })
    }

    #[test]
    fn writes_use_the_newest_version() {
        let ev = Ev::Placed {
            customer: "c".into(),
            currency: "USD".into(),
            lines: 1,
        };
        assert_eq!(ev.event_type().unwrap(), "Placed.v3");
        assert_eq!(ev.to_new_event().unwrap().event_type, "Placed.v3");
        assert_eq!(Ev::Paid.to_new_event().unwrap().event_type, "Paid.v1");
    }

    #[test]
    fn v1_is_upcast_to_v3() {
        let rec = recorded("Placed.v1", br#"{"customer":"ann"}"#, "application/json");
        let ev = Ev::from_recorded_with(&rec, &Json, &upcasters()).unwrap();
        assert_eq!(
            ev,
            Ev::Placed {
                customer: "ann".into(),
                currency: "EUR".into(),
                lines: 0
            }
        );
        // Without upcasters the gap is a codec error naming the event.
        let err = Ev::from_recorded(&rec).unwrap_err();
        assert!(matches!(err, Error::Codec { .. }));
        assert!(err.to_string().contains(&rec.id.to_string()), "{err}");
    }

    #[test]
    fn unknown_types_and_future_versions_are_unknown() {
        let rec = recorded("Refunded.v1", b"{}", "application/json");
        assert!(matches!(
            Ev::from_recorded(&rec),
            Err(Error::UnknownEventType { .. })
        ));
        let rec = recorded("Paid.v2", b"null", "application/json");
        assert!(matches!(
            Ev::from_recorded(&rec),
            Err(Error::UnknownEventType { .. })
        ));
    }

    #[test]
    fn corrupt_or_mislabelled_payloads_are_codec_errors() {
        for (bytes, ct) in [
            (&b"{not json"[..], "application/json"),
            (&b"\x01\x02"[..], "application/json"),
            (&b"{}"[..], "application/x-unknown"),
        ] {
            let rec = recorded("Placed.v3", bytes, ct);
            let err = Ev::from_recorded(&rec).unwrap_err();
            let Error::Codec { context, .. } = &err else {
                panic!("expected a codec error, got {err:?}");
            };
            assert!(context.contains(&rec.id.to_string()), "{context}");
            assert!(context.contains("Placed.v3"), "{context}");
        }
    }

    #[cfg(feature = "postcard")]
    #[test]
    fn postcard_payloads_decode_by_content_type() {
        let ev = Ev::Placed {
            customer: "c".into(),
            currency: "USD".into(),
            lines: 2,
        };
        let new = ev.to_new_event_with(&crate::codec::Postcard).unwrap();
        assert_eq!(new.content_type, crate::codec::POSTCARD_CONTENT_TYPE);
        let rec = recorded(&new.event_type, &new.payload, &new.content_type);
        // Decoded with the postcard codec even though the preferred one is JSON.
        assert_eq!(Ev::from_recorded(&rec).unwrap(), ev);
        // The same bytes labelled as JSON fail cleanly.
        let rec = recorded(&new.event_type, &new.payload, "application/json");
        assert!(matches!(Ev::from_recorded(&rec), Err(Error::Codec { .. })));
    }
}
