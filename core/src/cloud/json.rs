//! The CloudEvents JSON event format (structured mode), version 1.0.
//!
//! Hand-written on `serde_json` rather than on the `cloudevents-sdk` crate: the
//! envelope is a dozen members, while that crate would bring `chrono`, `url` and
//! its own event model into annals-core (which has no I/O and few dependencies),
//! and converting between its `Event` and ours would be as much code as the
//! envelope itself. `base64` (already in every backend's dependency tree through
//! sqlx) encodes binary data.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{Map, Value};

use super::{ExtensionValue, CONTEXT_ATTRIBUTES, SPEC_VERSION};
use crate::{Error, NewEvent, RecordedEvent, Timestamp, JSON_CONTENT_TYPE};

/// The extension names correlation and causation ids travel under.
const CORRELATION: &str = "correlationid";
const CAUSATION: &str = "causationid";

/// True for `application/json` and any `…/…+json` media type (parameters ignored).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == JSON_CONTENT_TYPE || essence.ends_with("+json") || essence == "text/json"
}

impl RecordedEvent {
    /// The event as a CloudEvents 1.0 JSON document (structured mode).
    ///
    /// Every required and set optional attribute is written; `subject` and `time`
    /// are always written, resolved to their defaults (the stream id, the recorded
    /// time). JSON payloads go in `data` as JSON, UTF-8 text payloads of other
    /// content types as a string, anything else base64-encoded in `data_base64`.
    /// The correlation and causation ids travel as the extensions `correlationid`
    /// and `causationid`; other free metadata fields are not part of the envelope.
    pub fn to_cloudevent(&self) -> Value {
        let mut doc = Map::new();
        let mut put = |k: &str, v: Value| {
            doc.insert(k.to_owned(), v);
        };
        put("specversion", SPEC_VERSION.into());
        put("id", self.cloud_id().into_owned().into());
        put("source", self.source().into());
        put("type", self.event_type.as_str().into());
        put("subject", self.subject().into());
        put("time", self.time().to_string().into());
        put("datacontenttype", self.content_type.as_str().into());
        if let Some(schema) = &self.metadata.dataschema {
            put("dataschema", schema.as_str().into());
        }
        if let Some(id) = &self.metadata.correlation_id {
            put(CORRELATION, id.as_str().into());
        }
        if let Some(id) = &self.metadata.causation_id {
            put(CAUSATION, id.as_str().into());
        }
        for (name, value) in &self.metadata.extensions {
            let value = match value {
                ExtensionValue::Bool(b) => Value::Bool(*b),
                ExtensionValue::Integer(i) => Value::from(*i),
                ExtensionValue::String(s) => Value::String(s.clone()),
            };
            put(name, value);
        }
        let json = is_json(&self.content_type)
            .then(|| serde_json::from_slice::<Value>(&self.payload).ok())
            .flatten();
        match json {
            Some(data) => put("data", data),
            None => match std::str::from_utf8(&self.payload) {
                Ok(text) if !is_json(&self.content_type) && is_text(&self.content_type) => {
                    put("data", text.into());
                }
                _ => put("data_base64", STANDARD.encode(&self.payload).into()),
            },
        }
        Value::Object(doc)
    }
}

/// Text media types, whose payload can travel as a `data` string.
fn is_text(content_type: &str) -> bool {
    let essence = content_type.trim().to_ascii_lowercase();
    essence.starts_with("text/") || essence.contains("xml")
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_input(format!("CloudEvent: {}", message.into()))
}

fn string_attr<'a>(doc: &'a Map<String, Value>, name: &str) -> crate::Result<Option<&'a str>> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!("`{name}` must be a string, not {other}"))),
    }
}

fn required<'a>(doc: &'a Map<String, Value>, name: &str) -> crate::Result<&'a str> {
    match string_attr(doc, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(invalid(format!(
            "the required attribute `{name}` is missing or empty"
        ))),
    }
}

impl NewEvent {
    /// Reads a CloudEvents 1.0 JSON document (structured mode) into an event to
    /// append.
    ///
    /// The event id is derived from `(source, id)` ([`NewEvent::with_cloud_id`]), so
    /// appending the same document twice is an idempotent re-send. A missing
    /// `datacontenttype` means `application/json`. Unknown attributes become
    /// extensions (`null` ones are ignored, as the spec says); `correlationid` and
    /// `causationid` become the metadata's ids. Anything the spec forbids — a
    /// missing required attribute, another `specversion`, both `data` and
    /// `data_base64`, a bad `time` or extension — is [`Error::InvalidInput`].
    ///
    /// ```
    /// use annals_core::NewEvent;
    ///
    /// let event = NewEvent::from_cloudevent_json(r#"{
    ///     "specversion": "1.0", "type": "order.created", "source": "/shop",
    ///     "id": "A-1", "time": "2018-04-05T17:31:00Z", "data": {"total": 12}
    /// }"#)?;
    /// assert_eq!(event.event_type, "order.created");
    /// assert_eq!(event.payload, br#"{"total":12}"#);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn from_cloudevent_json(json: &str) -> crate::Result<NewEvent> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| invalid(format!("not a JSON document: {e}")))?;
        NewEvent::from_cloudevent(&value)
    }

    /// [`NewEvent::from_cloudevent_json`] for an already parsed document.
    pub fn from_cloudevent(value: &Value) -> crate::Result<NewEvent> {
        let Value::Object(doc) = value else {
            return Err(invalid("the document must be a JSON object"));
        };
        let spec = required(doc, "specversion")?;
        if spec != SPEC_VERSION {
            return Err(invalid(format!(
                "specversion `{spec}` is not supported; annals reads {SPEC_VERSION}"
            )));
        }
        let id = required(doc, "id")?;
        let source = required(doc, "source")?;
        let event_type = required(doc, "type")?;
        let content_type = string_attr(doc, "datacontenttype")?.unwrap_or(JSON_CONTENT_TYPE);
        let payload = match (doc.get("data"), string_attr(doc, "data_base64")?) {
            (Some(_), Some(_)) => {
                return Err(invalid("`data` and `data_base64` are mutually exclusive"))
            }
            (None, Some(b64)) => STANDARD
                .decode(b64)
                .map_err(|e| invalid(format!("`data_base64` is not base64: {e}")))?,
            (Some(data), None) if is_json(content_type) => {
                serde_json::to_vec(data).map_err(|e| Error::codec("encoding CloudEvent data", e))?
            }
            (Some(Value::String(text)), None) => text.clone().into_bytes(),
            (Some(_), None) => {
                return Err(invalid(format!(
                    "`data` of non-JSON content type `{content_type}` must be a string"
                )))
            }
            (None, None) => Vec::new(),
        };
        let mut event = NewEvent::new(event_type, payload)
            .with_content_type(content_type)
            .with_source(source)
            .with_cloud_id(id);
        if let Some(subject) = string_attr(doc, "subject")? {
            event = event.with_subject(subject);
        }
        if let Some(time) = string_attr(doc, "time")? {
            event = event.with_time(parse_rfc3339(time)?);
        }
        if let Some(schema) = string_attr(doc, "dataschema")? {
            event = event.with_dataschema(schema);
        }
        for (name, value) in doc {
            if CONTEXT_ATTRIBUTES.contains(&name.as_str()) {
                continue;
            }
            super::check_extension_name(name).map_err(|_| {
                invalid(format!(
                    "attribute name `{}` must be 1 to 20 characters of a-z and 0-9",
                    name.escape_debug()
                ))
            })?;
            let value = match value {
                Value::Null => continue,
                Value::Bool(b) => ExtensionValue::Bool(*b),
                Value::String(s) => ExtensionValue::String(s.clone()),
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .map(ExtensionValue::Integer)
                    .ok_or_else(|| {
                        invalid(format!("extension `{name}`: {n} is not a 32-bit integer"))
                    })?,
                other => {
                    return Err(invalid(format!(
                        "extension `{name}` must be a string, boolean or integer, not {other}"
                    )))
                }
            };
            match (name.as_str(), value) {
                (CORRELATION, ExtensionValue::String(s)) => event.metadata.correlation_id = Some(s),
                (CAUSATION, ExtensionValue::String(s)) => event.metadata.causation_id = Some(s),
                (_, value) => event = event.with_extension(name.clone(), value),
            }
        }
        event.validate()?;
        Ok(event)
    }
}

/// Parses an RFC 3339 date-time (`2018-04-05T17:31:00Z`, `…T17:31:00.25+02:00`) to
/// a [`Timestamp`], keeping microseconds (finer digits are dropped).
pub fn parse_rfc3339(text: &str) -> crate::Result<Timestamp> {
    let bad = || {
        invalid(format!(
            "time `{}` is not an RFC 3339 date-time",
            text.escape_debug()
        ))
    };
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> crate::Result<i64> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        part.iter()
            .try_fold(0i64, |n, d| Some(n * 10 + i64::from(d - b'0')))
            .ok_or_else(bad)
    };
    let sep = |i: usize, allowed: &[u8]| -> crate::Result<()> {
        match b.get(i) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(bad()),
        }
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    sep(13, b":")?;
    sep(16, b":")?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return Err(bad());
        }
        for place in 0..6 {
            let d = if start + place < end {
                digits(start + place..start + place + 1)?
            } else {
                0
            };
            micros = micros * 10 + d;
        }
        i = end;
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let minutes = digits(i + 1..i + 3)? * 60 + digits(i + 4..i + 6)?;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return Err(bad()),
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let valid = (1..=12).contains(&month)
        && day >= 1
        && usize::try_from(month - 1)
            .ok()
            .and_then(|m| month_days.get(m))
            .is_some_and(|&max| day <= max)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    let time = Timestamp::from_unix_micros(seconds * 1_000_000 + micros);
    super::check_time(time)?;
    Ok(time)
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        let t = |s: &str| parse_rfc3339(s).map(Timestamp::as_unix_micros);
        assert_eq!(t("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(t("2018-04-05T17:31:00Z").unwrap(), 1_522_949_460_000_000);
        assert_eq!(
            t("2018-04-05T19:31:00+02:00").unwrap(),
            1_522_949_460_000_000
        );
        assert_eq!(t("2018-04-05T17:31:00.5Z").unwrap(), 1_522_949_460_500_000);
        assert_eq!(
            t("2024-02-29T12:34:56.789012345Z").unwrap(),
            1_709_210_096_789_012
        );
        assert_eq!(t("1969-12-31T23:59:59.999999Z").unwrap(), -1);
        for bad in [
            "",
            "2018-04-05",
            "2018-04-05T17:31:00",
            "2018-13-05T17:31:00Z",
            "2019-02-29T00:00:00Z",
            "2018-04-05T24:00:00Z",
            "2018-04-05T17:31:00.Z",
            "2018-04-05T17:31:00+0200",
            "2018-04-05T17:31:00Zjunk",
            "+018-04-05T17:31:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_and_parses_the_same_instants() {
        for micros in [0, -1, 1_709_210_096_789_012, 253_402_300_799_999_999] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(parse_rfc3339(&t.to_string()).unwrap(), t);
        }
    }
}
