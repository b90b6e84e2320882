//! Events as written ([`NewEvent`]) and as stored ([`RecordedEvent`]), and their [`Metadata`].

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize};

use crate::{
    cloud::{self, ExtensionValue, DEFAULT_SOURCE},
    limits, Error, EventId, Position, Result, StreamId, Timestamp, Version,
};

/// The content type of JSON payloads, the default.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Data about an event that is not part of the domain payload.
///
/// Serialized as one JSON object: `correlation_id` and `causation_id` when set, plus
/// every entry of [`extra`](Metadata::extra) at the top level.
///
/// ```
/// use annals_core::Metadata;
///
/// let meta = Metadata::new()
///     .with_correlation_id("req-7")
///     .with_field("user", "alice");
/// assert_eq!(meta.to_json().unwrap(), r#"{"correlation_id":"req-7","user":"alice"}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// Groups every event caused by one request or workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the message (command or event) that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The CloudEvents `source` (a URI-reference); `None` is
    /// [`DEFAULT_SOURCE`](crate::cloud::DEFAULT_SOURCE).
    #[serde(default, rename = "ce_source", skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The CloudEvents `id` the caller chose, unique per source; `None` means the
    /// event id. Set it with [`NewEvent::with_cloud_id`], which also derives the
    /// event id (see the [`cloud`](crate::cloud) module).
    #[serde(default, rename = "ce_id", skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
    /// The CloudEvents `subject`; `None` means the stream id.
    #[serde(
        default,
        rename = "ce_subject",
        skip_serializing_if = "Option::is_none"
    )]
    pub subject: Option<String>,
    /// The CloudEvents `time`: when the event happened, as the caller says; `None`
    /// means the time the store recorded it.
    #[serde(default, rename = "ce_time", skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The CloudEvents `dataschema` (an absolute URI).
    #[serde(
        default,
        rename = "ce_dataschema",
        skip_serializing_if = "Option::is_none"
    )]
    pub dataschema: Option<String>,
    /// CloudEvents extension attributes (names `[a-z0-9]{1,20}`).
    #[serde(default, rename = "ce_ext", skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, ExtensionValue>,
    /// Free-form application fields. Names starting with `ce_` are reserved.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Adds a free-form field.
    #[must_use]
    pub fn with_field(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// True if nothing is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.source.is_none()
            && self.cloud_id.is_none()
            && self.subject.is_none()
            && self.time.is_none()
            && self.dataschema.is_none()
            && self.extensions.is_empty()
            && self.extra.is_empty()
    }

    /// The metadata as a JSON object string (what backends store).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::codec("encoding event metadata", e))
    }

    /// Parses metadata stored by [`Metadata::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        if json.is_empty() {
            return Ok(Metadata::default());
        }
        serde_json::from_str(json).map_err(|e| Error::codec("decoding event metadata", e))
    }

    /// Checks the metadata against the store's rules and returns its JSON text.
    pub(crate) fn validated_json(&self) -> Result<String> {
        if self.is_empty() {
            return Ok("{}".to_owned());
        }
        for (what, id) in [
            ("correlation id", &self.correlation_id),
            ("causation id", &self.causation_id),
        ] {
            if id.as_deref().is_some_and(|id| id.contains('\0')) {
                return Err(Error::invalid_input(format!(
                    "event metadata {what} contains a NUL character"
                )));
            }
        }
        cloud::check(self)?;
        for (key, value) in &self.extra {
            if key.starts_with("ce_") {
                return Err(Error::invalid_input(format!(
                    "event metadata field `{}`: names starting with `ce_` are reserved for CloudEvents attributes",
                    key.escape_debug()
                )));
            }
            if key.contains('\0') {
                return Err(Error::invalid_input(
                    "event metadata key contains a NUL character",
                ));
            }
            limits::check_json_text("event metadata", value)?;
        }
        let json = self.to_json()?;
        if json.len() > limits::MAX_METADATA_LEN {
            return Err(Error::invalid_input(format!(
                "event metadata is {} bytes; the limit is {}",
                json.len(),
                limits::MAX_METADATA_LEN
            )));
        }
        Ok(json)
    }
}

/// An event to append: type, payload bytes with their content type, metadata.
///
/// ```
/// use annals_core::{NewEvent, Metadata};
///
/// let event = NewEvent::new("OrderPlaced.v1", br#"{"order":42}"#.to_vec())
///     .with_metadata(Metadata::new().with_correlation_id("req-1"));
/// assert_eq!(event.content_type, "application/json");
/// // Or serialize any `Serialize` value as JSON:
/// let event = NewEvent::json("OrderPlaced.v1", &serde_json::json!({"order": 42}))?;
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewEvent {
    /// Store-wide unique id; a fresh UUID v7 unless set with [`NewEvent::with_id`].
    pub id: EventId,
    /// The event's type name, optionally with a schema version (`OrderPlaced.v2`).
    pub event_type: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// How [`payload`](NewEvent::payload) is encoded (`application/json` by default).
    pub content_type: String,
    /// Correlation, causation and free fields.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event with a fresh id, the given type and JSON payload bytes.
    pub fn new(event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        NewEvent {
            id: EventId::new(),
            event_type: event_type.into(),
            payload: payload.into(),
            content_type: JSON_CONTENT_TYPE.to_owned(),
            metadata: Metadata::default(),
        }
    }

    /// An event whose payload is `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(event_type: impl Into<String>, value: &T) -> Result<Self> {
        let event_type = event_type.into();
        let payload = serde_json::to_vec(value)
            .map_err(|e| Error::codec(format!("encoding `{event_type}` payload as JSON"), e))?;
        Ok(NewEvent::new(event_type, payload))
    }

    /// Sets the event id (for idempotent retries).
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Sets the payload's content type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the CloudEvents `source` (a URI-reference). If the event has a caller
    /// id ([`with_cloud_id`](NewEvent::with_cloud_id)), its event id follows the new
    /// source.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.metadata.source = Some(source.into());
        self.derive_id();
        self
    }

    /// Sets the CloudEvents `id` (unique per source) and derives the event id from
    /// `(source, id)` with [`EventId::for_cloud_event`], so re-sending the same
    /// CloudEvent is idempotent.
    ///
    /// ```
    /// use annals_core::{EventId, NewEvent};
    ///
    /// let event = NewEvent::new("order.created", "{}")
    ///     .with_source("/shop/orders")
    ///     .with_cloud_id("A-1001");
    /// assert_eq!(event.id, EventId::for_cloud_event("/shop/orders", "A-1001"));
    /// ```
    #[must_use]
    pub fn with_cloud_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.cloud_id = Some(id.into());
        self.derive_id();
        self
    }

    /// Sets the CloudEvents `subject` (the stream id unless set).
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.metadata.subject = Some(subject.into());
        self
    }

    /// Sets the CloudEvents `time`: when the event happened (the recorded time
    /// unless set).
    #[must_use]
    pub fn with_time(mut self, time: Timestamp) -> Self {
        self.metadata.time = Some(time);
        self
    }

    /// Sets the CloudEvents `dataschema` (an absolute URI).
    #[must_use]
    pub fn with_dataschema(mut self, uri: impl Into<String>) -> Self {
        self.metadata.dataschema = Some(uri.into());
        self
    }

    /// Adds a CloudEvents extension attribute (name `[a-z0-9]{1,20}`).
    #[must_use]
    pub fn with_extension(
        mut self,
        name: impl Into<String>,
        value: impl Into<ExtensionValue>,
    ) -> Self {
        self.metadata.extensions.insert(name.into(), value.into());
        self
    }

    /// The CloudEvents `source`.
    pub fn source(&self) -> &str {
        self.metadata.source.as_deref().unwrap_or(DEFAULT_SOURCE)
    }

    fn derive_id(&mut self) {
        if let Some(id) = &self.metadata.cloud_id {
            self.id = EventId::for_cloud_event(self.source(), id);
        }
    }

    /// Checks the event against the store's rules (type and content type names,
    /// payload and metadata size, no NUL in text) and returns the metadata as JSON.
    ///
    /// Every backend calls this before writing.
    pub fn validate(&self) -> Result<String> {
        limits::check_name("event type", &self.event_type)?;
        limits::check_name("content type", &self.content_type)?;
        if self.payload.len() > limits::MAX_PAYLOAD_LEN {
            return Err(Error::invalid_input(format!(
                "payload of event {} (`{}`) is {} bytes; the limit is {}",
                self.id,
                self.event_type,
                self.payload.len(),
                limits::MAX_PAYLOAD_LEN
            )));
        }
        if let Some(cloud_id) = &self.metadata.cloud_id {
            if self.id != EventId::for_cloud_event(self.source(), cloud_id) {
                return Err(Error::invalid_input(format!(
                    "event {} has CloudEvents id `{}` but not the event id derived from its source and id; set the id with NewEvent::with_cloud_id",
                    self.id,
                    cloud_id.escape_debug()
                )));
            }
        }
        self.metadata.validated_json()
    }

    /// True if `recorded` holds exactly this event's content (id, type, payload,
    /// content type, metadata): the test for an idempotent re-append.
    pub fn same_content_as(&self, recorded: &RecordedEvent) -> bool {
        self.id == recorded.id
            && self.event_type == recorded.event_type
            && self.payload == recorded.payload
            && self.content_type == recorded.content_type
            && self.metadata == recorded.metadata
    }
}

/// An event as stored: what was appended plus its stream, version, global position
/// and the time the store recorded it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// Store-wide unique id.
    pub id: EventId,
    /// The stream the event belongs to.
    pub stream_id: StreamId,
    /// The event's 1-based index in its stream.
    pub version: Version,
    /// The event's place in the global log.
    pub position: Position,
    /// The event's type name.
    pub event_type: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// How the payload is encoded.
    pub content_type: String,
    /// Correlation, causation and free fields.
    pub metadata: Metadata,
    /// When the store recorded the event (UTC).
    pub recorded_at: Timestamp,
}

impl RecordedEvent {
    /// Assembles a recorded event (used by backends when decoding rows).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: EventId,
        stream_id: StreamId,
        version: Version,
        position: Position,
        event_type: String,
        payload: Vec<u8>,
        content_type: String,
        metadata: Metadata,
        recorded_at: Timestamp,
    ) -> Self {
        RecordedEvent {
            id,
            stream_id,
            version,
            position,
            event_type,
            payload,
            content_type,
            metadata,
            recorded_at,
        }
    }

    /// Records a [`NewEvent`] at the given place (used by backends that build the
    /// stored event in memory).
    pub fn from_new(
        event: NewEvent,
        stream_id: StreamId,
        version: Version,
        position: Position,
        recorded_at: Timestamp,
    ) -> Self {
        RecordedEvent {
            id: event.id,
            stream_id,
            version,
            position,
            event_type: event.event_type,
            payload: event.payload,
            content_type: event.content_type,
            metadata: event.metadata,
            recorded_at,
        }
    }

    /// The CloudEvents `source` ([`DEFAULT_SOURCE`] unless the event set one).
    pub fn source(&self) -> &str {
        self.metadata.source.as_deref().unwrap_or(DEFAULT_SOURCE)
    }

    /// The CloudEvents `id`: the caller's id, or the event id as text.
    pub fn cloud_id(&self) -> Cow<'_, str> {
        match &self.metadata.cloud_id {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(self.id.to_string()),
        }
    }

    /// The CloudEvents `subject`: the caller's, else the stream id.
    pub fn subject(&self) -> &str {
        self.metadata
            .subject
            .as_deref()
            .unwrap_or(self.stream_id.as_str())
    }

    /// The CloudEvents `time`: the caller's, else [`recorded_at`](RecordedEvent::recorded_at).
    pub fn time(&self) -> Timestamp {
        self.metadata.time.unwrap_or(self.recorded_at)
    }

    /// Deserializes a JSON payload into `T`; errors name the event id and type.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            Error::codec(
                format!(
                    "decoding JSON payload of event {} (`{}`)",
                    self.id, self.event_type
                ),
                e,
            )
        })
    }
}
