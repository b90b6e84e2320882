//! Stored event rows: the columns every event query selects, and decoding them into
//! [`RecordedEvent`]s from rusqlite rows (read connections and the writer's stored-id
//! lookup) without copying a column twice.

use annals_core::backend;
use rusqlite::types::{FromSqlResult, ValueRef};

use crate::{
    BoxError, Error, EventId, Metadata, Position, RecordedEvent, Result, Snapshot, StreamId,
    Timestamp, Version,
};

/// The columns [`decode_row`] expects, in order.
pub(crate) const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at";

/// Reuses the last decoded [`StreamId`] and [`Metadata`] when consecutive rows
/// share them (events of one stream, or of one request, come in runs): a clone
/// instead of a validation or a JSON parse per event.
#[derive(Default)]
pub(crate) struct RowCache {
    stream: Option<StreamId>,
    metadata: Option<(String, Metadata)>,
}

impl RowCache {
    fn stream(&mut self, name: &str) -> Result<StreamId> {
        if let Some(id) = self.stream.as_ref().filter(|id| id.as_str() == name) {
            return Ok(id.clone());
        }
        let id = StreamId::new(name)
            .map_err(|e| Error::backend(format!("stored stream id `{name}` is invalid"), e))?;
        self.stream = Some(id.clone());
        Ok(id)
    }

    fn metadata(&mut self, json: &str) -> Result<Metadata> {
        if json == "{}" {
            return Ok(Metadata::default());
        }
        if let Some((_, metadata)) = self.metadata.as_ref().filter(|(text, _)| text == json) {
            return Ok(metadata.clone());
        }
        let metadata = Metadata::from_json(json)?;
        self.metadata = Some((json.to_owned(), metadata.clone()));
        Ok(metadata)
    }
}

/// The columns of a stored row, borrowed from the driver's row without copying.
/// `name` names the column in the error if the value has the wrong type.
pub(crate) trait StoredRow {
    /// An `INTEGER` column.
    fn int(&self, index: usize, name: &str) -> Result<i64>;
    /// A `TEXT` column.
    fn text(&self, index: usize, name: &str) -> Result<&str>;
    /// A `BLOB` column.
    fn blob(&self, index: usize, name: &str) -> Result<&[u8]>;
}

fn corrupt(name: &str, e: impl Into<BoxError>) -> Error {
    Error::backend(format!("stored event column `{name}` is invalid"), e)
}

impl StoredRow for rusqlite::Row<'_> {
    fn int(&self, index: usize, name: &str) -> Result<i64> {
        rusqlite_column(self, index, name, ValueRef::as_i64)
    }
    fn text(&self, index: usize, name: &str) -> Result<&str> {
        rusqlite_column(self, index, name, ValueRef::as_str)
    }
    fn blob(&self, index: usize, name: &str) -> Result<&[u8]> {
        rusqlite_column(self, index, name, ValueRef::as_blob)
    }
}

fn rusqlite_column<'r, T>(
    row: &'r rusqlite::Row<'_>,
    index: usize,
    name: &str,
    get: impl FnOnce(&ValueRef<'r>) -> FromSqlResult<T>,
) -> Result<T> {
    let value = row.get_ref(index).map_err(|e| corrupt(name, e))?;
    get(&value).map_err(|e| corrupt(name, e))
}

/// Decodes one row selected with [`EVENT_COLUMNS`].
pub(crate) fn decode_row(row: &impl StoredRow, cache: &mut RowCache) -> Result<RecordedEvent> {
    let position = row.int(0, "position")?;
    let id = row.blob(1, "event_id")?;
    let id = <[u8; 16]>::try_from(id)
        .map_err(|e| Error::backend(format!("stored event id has {} bytes", id.len()), e))?;
    let stream_id = cache.stream(row.text(2, "stream_id")?)?;
    let version = row.int(3, "version")?;
    let metadata = cache.metadata(row.text(7, "metadata")?)?;
    Ok(RecordedEvent::new(
        EventId::from_bytes(id),
        stream_id,
        Version::new(backend::from_i64(version, "version")?),
        Position::new(backend::from_i64(position, "position")?),
        row.text(4, "event_type")?.to_owned(),
        row.blob(6, "payload")?.to_vec(),
        row.text(5, "content_type")?.to_owned(),
        metadata,
        Timestamp::from_unix_micros(row.int(8, "recorded_at")?),
    ))
}

/// Decodes a snapshot row selected as `version, content_type, schema_version, state`
/// (see [`crate::sql::GET_SNAPSHOT`]).
pub(crate) fn decode_snapshot(row: &rusqlite::Row<'_>) -> Result<Snapshot> {
    let corrupt = |e| Error::backend("decoding a stored snapshot", e);
    let version: i64 = row.get(0).map_err(corrupt)?;
    let content_type: String = row.get(1).map_err(corrupt)?;
    let schema_version: i64 = row.get(2).map_err(corrupt)?;
    let state: Vec<u8> = row.get(3).map_err(corrupt)?;
    let schema_version = u32::try_from(schema_version).map_err(|e| {
        Error::backend(
            format!("stored snapshot schema version {schema_version}"),
            e,
        )
    })?;
    Ok(Snapshot::new(
        Version::new(backend::from_i64(version, "snapshot version")?),
        state,
    )
    .with_content_type(content_type)
    .with_schema_version(schema_version))
}
