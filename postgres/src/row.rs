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

/// What consecutive rows of one result share, kept from the last decoded row:
/// whether the column types were checked (once per result, see
/// [`decode_event`]), the
/// stream id (validated and allocated once per run of rows of one stream) and the
/// metadata (parsed once per run of identical metadata text — the events of one
/// append typically carry the same correlation id). Reusing either gives the
/// same value decoding would.
#[derive(Default)]
pub(crate) struct StreamCache {
    stream: Option<StreamId>,
    metadata: Option<(String, Metadata)>,
    /// A row of this result has had its column types checked.
    typed: bool,
}

impl StreamCache {
    /// A cache that already holds `stream` (reads of one stream).
    pub(crate) fn with(stream: &StreamId) -> Self {
        StreamCache {
            stream: Some(stream.clone()),
            metadata: None,
            typed: false,
        }
    }

    fn get(&mut self, name: &str) -> Result<StreamId> {
        match &self.stream {
            Some(cached) if cached.as_str() == name => Ok(cached.clone()),
            _ => {
                let id = StreamId::new(name)?;
                self.stream = Some(id.clone());
                Ok(id)
            }
        }
    }

    fn metadata(&mut self, json: &str) -> Result<Metadata> {
        if json == "{}" {
            return Ok(Metadata::default());
        }
        match &mut self.metadata {
            Some((text, parsed)) if text.as_str() == json => Ok(parsed.clone()),
            slot => {
                let parsed = decode_metadata(json)?;
                match slot {
                    Some((text, cached)) => {
                        json.clone_into(text);
                        cached.clone_from(&parsed);
                    }
                    None => *slot = Some((json.to_owned(), parsed.clone())),
                }
                Ok(parsed)
            }
        }
    }
}

/// Decodes one row that starts with [`EVENT_COLUMNS`].
pub(crate) fn decode_event(row: &PgRow, streams: &mut StreamCache) -> Result<RecordedEvent> {
    fn get_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
        move |e| corrupt(what, e)
    }
    // The first row of a result checks every column's type; the rest of the
    // same result have the same column types, so they skip sqlx's per-value
    // type check (NULLs and malformed values are still errors).
    let checked = std::mem::replace(&mut streams.typed, true);
    let position: i64 = get(row, 0, checked).map_err(get_err("position"))?;
    let id: sqlx::types::Uuid = get(row, 1, checked).map_err(get_err("event id"))?;
    let stream: &str = get(row, 2, checked).map_err(get_err("stream id"))?;
    let version: i64 = get(row, 3, checked).map_err(get_err("version"))?;
    let event_type: String = get(row, 4, checked).map_err(get_err("event type"))?;
    let content_type: String = get(row, 5, checked).map_err(get_err("content type"))?;
    let payload: Vec<u8> = get(row, 6, checked).map_err(get_err("payload"))?;
    let metadata: &str = get(row, 7, checked).map_err(get_err("metadata"))?;
    let recorded_at: PgMicros = get(row, 8, checked).map_err(get_err("recorded_at"))?;
    Ok(RecordedEvent::new(
        EventId::from_uuid(id),
        streams.get(stream)?,
        Version::new(from_i64(version, "version")?),
        Position::new(from_i64(position, "position")?),
        event_type,
        payload,
        content_type,
        streams.metadata(metadata)?,
        Timestamp::from_unix_micros(recorded_at.0),
    ))
}

/// Column `index` of `row`; with its type checked against `T` unless an
/// earlier row of the same result was (`checked`).
pub(crate) fn get<'r, T>(row: &'r PgRow, index: usize, checked: bool) -> sqlx::Result<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    if checked {
        row.try_get_unchecked(index)
    } else {
        row.try_get(index)
    }
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

    #[test]
    fn the_cache_returns_what_decoding_returns() {
        let one = Metadata::new().with_correlation_id("c").to_json().unwrap();
        let two = Metadata::new()
            .with_causation_id("k")
            .with_field("n", 1)
            .to_json()
            .unwrap();
        let mut cache = StreamCache::default();
        for json in [&one, &one, "{}", &one, &two, &two, &one, "{}"] {
            assert_eq!(
                cache.metadata(json).unwrap(),
                decode_metadata(json).unwrap()
            );
        }
        assert!(cache.metadata("not json").is_err());
        assert_eq!(
            cache.metadata(&two).unwrap(),
            decode_metadata(&two).unwrap()
        );
    }
}
