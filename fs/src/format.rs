//! The transaction file format: JSON Lines, a header then one line per event, with
//! a SHA-256 over the whole file (the hash field itself zeroed) in the header's first
//! field, and a file name made of the transaction id and a prefix of that hash.
//!
//! ```text
//! {"hash":"<64 hex>","format":1,"tx":"<uuid v7>","replica":"<uuid>","created":"2026-12-02T01:17:14.123456Z","kind":"append","parents":[...],"writes":[{"stream":"a","base":3,"count":2}],"conditions":[...],"resolves":[]}
//! {"id":"<uuid>","stream":"a","version":4,"type":"Placed","content_type":"application/json","metadata":"{}","text":"{\"total\":3}"}
//! ```

use std::borrow::Cow;

use annals_core::{EventId, Metadata, NewEvent, RecordedEvent, StreamId, Timestamp, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The format version this crate writes and reads.
pub(crate) const FORMAT: u32 = 1;

const HASH_PREFIX: &[u8] = b"{\"hash\":\"";
const HASH_LEN: usize = 64;
/// How many hex digits of the hash the file name carries.
const NAME_HASH_LEN: usize = 16;

/// What a transaction file records about one stream it wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Write {
    pub(crate) stream: String,
    /// The stream's version the writer saw (its events get `base + 1 ..`).
    pub(crate) base: u64,
    pub(crate) count: u64,
}

/// A read-only condition, recorded apart from the writes: it is never a fork anchor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConditionRecord {
    pub(crate) stream: String,
    pub(crate) expected: String,
}

/// What a reconcile transaction decides for one fork unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Resolution {
    /// The fork id (see [`crate::Fork::id`]).
    pub(crate) fork: String,
    /// The streams of the unit.
    pub(crate) streams: Vec<String>,
    /// Each stream's agreed version when the fork was reconciled.
    #[serde(default)]
    pub(crate) bases: Vec<Base>,
    /// Every transaction of every branch the reconcile replaces.
    pub(crate) branches: Vec<Vec<String>>,
    /// Per stream, the ids of branch events kept, in their new order.
    pub(crate) keep: Vec<Kept>,
}

/// A stream's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Base {
    pub(crate) stream: String,
    pub(crate) version: u64,
}

/// The branch events one stream keeps after a reconcile, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kept {
    pub(crate) stream: String,
    pub(crate) events: Vec<String>,
}

/// The first line of a transaction file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) hash: String,
    pub(crate) format: u32,
    pub(crate) tx: String,
    pub(crate) replica: String,
    pub(crate) created: String,
    pub(crate) kind: Kind,
    pub(crate) parents: Vec<String>,
    pub(crate) writes: Vec<Write>,
    pub(crate) conditions: Vec<ConditionRecord>,
    #[serde(default)]
    pub(crate) resolves: Vec<Resolution>,
}

/// An ordinary append or a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Append,
    Reconcile,
}

/// One event line, as written.
#[derive(Serialize)]
struct EventOut<'a> {
    id: String,
    stream: &'a str,
    version: u64,
    #[serde(rename = "type")]
    event_type: &'a str,
    content_type: &'a str,
    metadata: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

/// The fields of an event line the in-memory index keeps (payloads stay on disk).
#[derive(Deserialize)]
pub(crate) struct EventHead<'a> {
    pub(crate) id: Uuid,
    #[serde(borrow)]
    pub(crate) stream: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub(crate) event_type: Cow<'a, str>,
}

/// A full event line, read back lazily.
#[derive(Deserialize)]
struct EventIn {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    content_type: String,
    metadata: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    hex: Option<String>,
}

/// An event to write: stream, version, event, metadata JSON.
pub(crate) struct OutEvent<'a> {
    pub(crate) stream: &'a StreamId,
    pub(crate) version: Version,
    pub(crate) event: &'a NewEvent,
    pub(crate) metadata: &'a str,
}

/// Why a file is left out of the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Defect {
    /// Not a transaction file name.
    Name,
    /// Not parseable.
    Malformed(String),
    /// Parses, but its hash does not match its content (edited by hand).
    HashMismatch,
}

/// Encodes a transaction file. Returns the file name and its bytes.
pub(crate) fn encode(
    header: &Header,
    events: &[OutEvent<'_>],
) -> Result<(String, Vec<u8>), String> {
    let mut header = header.clone();
    header.hash = "0".repeat(HASH_LEN);
    let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    for e in events {
        let (text, hex) = match std::str::from_utf8(&e.event.payload) {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(to_hex(&e.event.payload))),
        };
        let line = EventOut {
            id: e.event.id.as_uuid().to_string(),
            stream: e.stream.as_str(),
            version: e.version.get(),
            event_type: &e.event.event_type,
            content_type: &e.event.content_type,
            metadata: e.metadata,
            text,
            hex,
        };
        serde_json::to_writer(&mut bytes, &line).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
    }
    let hash = to_hex(&Sha256::digest(&bytes));
    let at = HASH_PREFIX.len();
    bytes
        .get_mut(at..at + HASH_LEN)
        .ok_or("header too short")?
        .copy_from_slice(hash.as_bytes());
    let name = file_name(&header.tx, &hash)?;
    Ok((name, bytes))
}

/// `<tx uuid, simple>-<16 hex of the hash>.jsonl`.
fn file_name(tx: &str, hash: &str) -> Result<String, String> {
    let tx = Uuid::parse_str(tx).map_err(|e| e.to_string())?;
    let prefix = hash.get(..NAME_HASH_LEN).ok_or("short hash")?;
    Ok(format!("{}-{prefix}.jsonl", tx.simple()))
}

/// A decoded, verified transaction file: its header and, per event line, the
/// indexed fields and where the line is.
pub(crate) struct Decoded {
    pub(crate) header: Header,
    pub(crate) events: Vec<DecodedEvent>,
}

/// One event line's indexed fields and its byte range in the file.
pub(crate) struct DecodedEvent {
    pub(crate) id: EventId,
    pub(crate) stream: String,
    pub(crate) event_type: String,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// Whether `name` looks like a transaction file (ignored otherwise: dot files).
pub(crate) fn is_candidate(name: &str) -> bool {
    !name.starts_with('.')
}

/// Decodes and verifies a file's bytes against its name.
pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<Decoded, Defect> {
    let stem = name.strip_suffix(".jsonl").ok_or(Defect::Name)?;
    let (tx_part, hash_part) = stem.split_once('-').ok_or(Defect::Name)?;
    if tx_part.len() != 32 || hash_part.len() != NAME_HASH_LEN {
        return Err(Defect::Name);
    }
    let name_tx = Uuid::parse_str(tx_part).map_err(|_| Defect::Name)?;
    let (stored, actual) = hashes(bytes)?;
    let mut lines = LineIter { bytes, at: 0 };
    let (_, header_line) = lines
        .next()
        .ok_or_else(|| Defect::Malformed("empty file".into()))?;
    let header: Header = serde_json::from_slice(header_line)
        .map_err(|e| Defect::Malformed(format!("header: {e}")))?;
    if actual != stored || !actual.starts_with(hash_part) {
        return Err(Defect::HashMismatch);
    }
    if header.format != FORMAT {
        return Err(Defect::Malformed(format!(
            "unknown format {}",
            header.format
        )));
    }
    let tx = Uuid::parse_str(&header.tx).map_err(|e| Defect::Malformed(format!("tx: {e}")))?;
    if tx != name_tx {
        return Err(Defect::Malformed(
            "the file name names another transaction".into(),
        ));
    }
    parse_timestamp(&header.created)
        .ok_or_else(|| Defect::Malformed("created time is not fixed-width UTC".into()))?;
    check_ids(&header)?;
    let mut events = Vec::new();
    for (offset, line) in lines {
        let head: EventHead<'_> = serde_json::from_slice(line)
            .map_err(|e| Defect::Malformed(format!("event line: {e}")))?;
        events.push(DecodedEvent {
            id: EventId::from_uuid(head.id),
            stream: head.stream.into_owned(),
            event_type: head.event_type.into_owned(),
            offset,
            len: line.len(),
        });
    }
    let written: u64 = header.writes.iter().map(|w| w.count).sum();
    if written != events.len() as u64 {
        return Err(Defect::Malformed(
            "the header's write counts do not match the event lines".into(),
        ));
    }
    Ok(Decoded { header, events })
}

/// The hash a file carries in its header and the one its content has (computed
/// with the hash field zeroed).
fn hashes(bytes: &[u8]) -> Result<(&str, String), Defect> {
    if !bytes.starts_with(HASH_PREFIX) {
        return Err(Defect::Malformed(
            "the header does not start with the hash".into(),
        ));
    }
    let at = HASH_PREFIX.len();
    let stored = bytes
        .get(at..at + HASH_LEN)
        .ok_or_else(|| Defect::Malformed("truncated header".into()))?;
    let stored =
        std::str::from_utf8(stored).map_err(|_| Defect::Malformed("hash is not hex".into()))?;
    let mut hasher = Sha256::new();
    hasher.update(bytes.get(..at).unwrap_or_default());
    hasher.update([b'0'; HASH_LEN]);
    hasher.update(bytes.get(at + HASH_LEN..).unwrap_or_default());
    Ok((stored, to_hex(&hasher.finalize())))
}

/// Whether `bytes` are still the file that was indexed with hash `expected`: the
/// hash it carries and the hash of its content are both `expected`.
pub(crate) fn unchanged(bytes: &[u8], expected: &str) -> bool {
    hashes(bytes).is_ok_and(|(stored, actual)| stored == expected && actual == expected)
}

/// Every id the header refers to (parents, and a reconcile's branches and kept
/// events) must be a UUID: a file with another one is malformed, never silently
/// read with that id dropped.
fn check_ids(header: &Header) -> Result<(), Defect> {
    let uuid = |what: &str, id: &str| {
        Uuid::parse_str(id)
            .map(|_| ())
            .map_err(|_| Defect::Malformed(format!("{what} id `{id:.64}` is not a UUID")))
    };
    for parent in &header.parents {
        uuid("parent", parent)?;
    }
    for resolution in &header.resolves {
        for tx in resolution.branches.iter().flatten() {
            uuid("branch transaction", tx)?;
        }
        for event in resolution.keep.iter().flat_map(|k| k.events.iter()) {
            uuid("kept event", event)?;
        }
    }
    Ok(())
}

/// Decodes one event line into a recorded event.
pub(crate) fn decode_event(
    line: &[u8],
    stream: StreamId,
    version: Version,
    position: annals_core::Position,
    recorded_at: Timestamp,
) -> Result<RecordedEvent, String> {
    let e: EventIn = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let payload = match (e.text, e.hex) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex)) => from_hex(&hex).ok_or("payload is not hex")?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err("payload is both text and hex".into()),
    };
    let metadata = Metadata::from_json(&e.metadata).map_err(|e| e.to_string())?;
    Ok(RecordedEvent::new(
        EventId::from_uuid(e.id),
        stream,
        version,
        position,
        e.event_type,
        payload,
        e.content_type,
        metadata,
        recorded_at,
    ))
}

struct LineIter<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for LineIter<'a> {
    type Item = (usize, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..)?;
        if rest.is_empty() {
            return None;
        }
        let start = self.at;
        let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        self.at += len + 1;
        rest.get(..len).map(|line| (start, line))
    }
}

/// Lower-case hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

/// SHA-256 of `bytes`, as hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// The fixed-width UTC form: `2026-12-02T01:17:14.123456Z` (what `Timestamp`
/// displays for years 0–9999).
pub(crate) fn format_timestamp(t: Timestamp) -> String {
    t.to_string()
}

/// Parses [`format_timestamp`]'s form back.
pub(crate) fn parse_timestamp(text: &str) -> Option<Timestamp> {
    // RFC 3339 as core parses it, and only in the one width `format_timestamp` writes.
    annals_core::cloud::parse_rfc3339(text)
        .ok()
        .filter(|t| t.to_string() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_in_fixed_width() {
        for micros in [0_i64, 1, 1_764_638_234_123_456, 951_782_400_000_000] {
            let t = Timestamp::from_unix_micros(micros);
            let text = format_timestamp(t);
            assert_eq!(text.len(), 27);
            assert_eq!(parse_timestamp(&text), Some(t));
        }
        assert_eq!(parse_timestamp("2026-02-30T00:00:00.000000Z"), None);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0_u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(from_hex("abc"), None);
    }
}
