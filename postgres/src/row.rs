//! Event rows: the columns every event query selects, and decoding them.

use annals_core::{
    backend::from_i64, EventId, Metadata, Position, RecordedEvent, Result, StreamId, Timestamp,
    Version,
};
use sqlx::{
    postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef},
    Decode, Postgres, Row, Type,
};

use crate::Error;

/// The columns every event query selects, in the order [`decode_event`] reads
/// them (queries may add columns after these).
pub(crate) const EVENT_COLUMNS: &str = "e.position, e.event_id, e.stream_id, e.version, \
     e.event_type, e.content_type, e.payload, e.metadata::text, e.recorded_at";

/// Index of the first column after [`EVENT_COLUMNS`].
pub(crate) const AFTER_EVENT_COLUMNS: usize = 9;

/// A `timestamptz` decoded straight from PostgreSQL's binary format
/// (microseconds since 2000-01-01 UTC), without the `chrono`/`time` features.
struct PgMicros(i64);

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl Type<Postgres> for PgMicros {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("timestamptz")
    }
}

impl<'r> Decode<'r, Postgres> for PgMicros {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        if value.format() != PgValueFormat::Binary {
            return Err("timestamptz in text format is not supported".into());
        }
        let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
        let micros = i64::from_be_bytes(bytes);
        // ±infinity are i64::MAX/MIN; saturate rather than overflow.
        Ok(PgMicros(micros.saturating_add(PG_EPOCH_UNIX_MICROS)))
    }
}

/// The error for a stored value that does not decode.
pub(crate) fn corrupt(what: &str, err: impl Into<annals_core::BoxError>) -> Error {
    Error::backend(format!("decoding {what} of a stored event"), err)
}

/// Parses stored metadata JSON with the one definition of its shape,
/// [`Metadata::from_json`]; the empty object (most events) skips the parser.
fn decode_metadata(json: &str) -> Result<Metadata> {
    if json == "{}" {
        return Ok(Metadata::default());
    }
    Metadata::from_json(json)
}

/// Remembers the last decoded stream id, so consecutive rows of one stream share
/// it instead of validating and allocating it again.
#[derive(Default)]
pub(crate) struct StreamCache(Option<StreamId>);

impl StreamCache {
    /// A cache that already holds `stream` (reads of one stream).
    pub(crate) fn with(stream: &StreamId) -> Self {
        StreamCache(Some(stream.clone()))
    }

    fn get(&mut self, name: &str) -> Result<StreamId> {
        match &self.0 {
            Some(cached) if cached.as_str() == name => Ok(cached.clone()),
            _ => {
                let id = StreamId::new(name)?;
                self.0 = Some(id.clone());
                Ok(id)
            }
        }
    }
}

/// Decodes one row that starts with [`EVENT_COLUMNS`].
pub(crate) fn decode_event(row: &PgRow, streams: &mut StreamCache) -> Result<RecordedEvent> {
    fn get_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
        move |e| corrupt(what, e)
    }
    let position: i64 = row.try_get(0).map_err(get_err("position"))?;
    let id: sqlx::types::Uuid = row.try_get(1).map_err(get_err("event id"))?;
    let stream: &str = row.try_get(2).map_err(get_err("stream id"))?;
    let version: i64 = row.try_get(3).map_err(get_err("version"))?;
    let event_type: String = row.try_get(4).map_err(get_err("event type"))?;
    let content_type: String = row.try_get(5).map_err(get_err("content type"))?;
    let payload: Vec<u8> = row.try_get(6).map_err(get_err("payload"))?;
    let metadata: &str = row.try_get(7).map_err(get_err("metadata"))?;
    let recorded_at: PgMicros = row.try_get(8).map_err(get_err("recorded_at"))?;
    Ok(RecordedEvent::new(
        EventId::from_uuid(id),
        streams.get(stream)?,
        Version::new(from_i64(version, "version")?),
        Position::new(from_i64(position, "position")?),
        event_type,
        payload,
        content_type,
        decode_metadata(metadata)?,
        Timestamp::from_unix_micros(recorded_at.0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_decodes_through_the_core_definition() {
        assert_eq!(decode_metadata("{}").unwrap(), Metadata::default());
        let full = Metadata::new()
            .with_correlation_id("c")
            .with_causation_id("k")
            .with_field("n", 1);
        let json = full.to_json().unwrap();
        assert_eq!(decode_metadata(&json).unwrap(), full);
        assert_eq!(
            decode_metadata(&json).unwrap(),
            Metadata::from_json(&json).unwrap()
        );
        assert!(decode_metadata("not json").is_err());
    }
}
