//! Codecs: how typed events and snapshots become bytes, and back.
//!
//! A [`Codec`] is a small wrapper over a serde data format with a content type. The
//! content type is stored with every payload and snapshot, so a reader picks the
//! right codec for each stored value ([`AnyCodec::for_content_type`]) even when an
//! application changed codecs over time.
//!
//! | codec | content type | feature | notes |
//! |---|---|---|---|
//! | [`Json`] | `application/json` | always | default; readable, upcastable as JSON |
//! | `Postcard` | `application/x-postcard` | `postcard` | compact and maintained: the recommended binary codec |
//! | `Bincode` | `application/x-bincode` | `bincode` | bincode **2.0.1** serde API, standard config |
//!
//! About bincode: its newest crates.io release (3.0.0) is only a `compile_error!`
//! marker and the project is unmaintained, so annals pins `bincode = "2.0.1"` (the
//! caret requirement keeps it below 3). Prefer `Postcard` for new code.
//!
//! Binary formats are not self-describing: a field added to a struct changes how
//! every later byte is read. JSON tolerates added optional fields; binary payloads
//! need an upcaster (see [`Upcasters::bytes`](crate::Upcasters::bytes)) for every
//! schema change.
//!
//! ```
//! use annals_core::codec::{Codec, Json};
//!
//! let bytes = Json.encode(&vec![1, 2, 3])?;
//! let back: Vec<i32> = Json.decode(&bytes)?;
//! assert_eq!(back, [1, 2, 3]);
//! assert_eq!(Json.content_type(), "application/json");
//! # Ok::<(), annals_core::BoxError>(())
//! ```

use std::{fmt, marker::PhantomData};

use serde::{de::DeserializeSeed, Serialize};

use crate::{BoxError, JSON_CONTENT_TYPE};

/// Content type of `Bincode` payloads.
pub const BINCODE_CONTENT_TYPE: &str = "application/x-bincode";
/// Content type of `Postcard` payloads.
pub const POSTCARD_CONTENT_TYPE: &str = "application/x-postcard";

/// A serde data format with a content type.
///
/// Errors are returned as [`BoxError`]; callers that know what is being decoded
/// (event id and type, snapshot) wrap them in [`Error::Codec`](crate::Error::Codec).
pub trait Codec: fmt::Debug + Send + Sync + 'static {
    /// The content type stored next to the bytes (`application/json`, …).
    fn content_type(&self) -> &'static str;

    /// Serializes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError>;

    /// Deserializes with a [`DeserializeSeed`]; the whole input must be consumed
    /// where the format allows checking that.
    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        seed: S,
        bytes: &'de [u8],
    ) -> Result<S::Value, BoxError>;

    /// Deserializes a `T`.
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        self.decode_seed(PhantomData::<T>, bytes)
    }
}

/// JSON through `serde_json`: the default codec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    fn content_type(&self) -> &'static str {
        JSON_CONTENT_TYPE
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?)
    }

    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        seed: S,
        bytes: &'de [u8],
    ) -> Result<S::Value, BoxError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// bincode 2.0.1 (serde API, `bincode::config::standard()`), behind the `bincode`
/// feature.
///
/// bincode 3.0.0 on crates.io is only a `compile_error!` marker and the project is
/// unmaintained; annals stays on 2.0.1. Prefer `Postcard`.
#[cfg(feature = "bincode")]
#[cfg_attr(docsrs, doc(cfg(feature = "bincode")))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bincode;

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    fn content_type(&self) -> &'static str {
        BINCODE_CONTENT_TYPE
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(bincode::serde::encode_to_vec(
            value,
            bincode::config::standard(),
        )?)
    }

    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        seed: S,
        bytes: &'de [u8],
    ) -> Result<S::Value, BoxError> {
        let (value, read) =
            bincode::serde::seed_decode_from_slice(seed, bytes, bincode::config::standard())?;
        check_consumed(read, bytes.len())?;
        Ok(value)
    }
}

/// postcard (compact, maintained), behind the `postcard` feature: the recommended
/// binary codec.
#[cfg(feature = "postcard")]
#[cfg_attr(docsrs, doc(cfg(feature = "postcard")))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    fn content_type(&self) -> &'static str {
        POSTCARD_CONTENT_TYPE
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(postcard::to_allocvec(value)?)
    }

    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        seed: S,
        bytes: &'de [u8],
    ) -> Result<S::Value, BoxError> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let value = seed.deserialize(&mut de)?;
        let rest = de.finalize()?;
        check_consumed(bytes.len().saturating_sub(rest.len()), bytes.len())?;
        Ok(value)
    }
}

#[cfg(any(feature = "bincode", feature = "postcard"))]
fn check_consumed(read: usize, len: usize) -> Result<(), BoxError> {
    if read == len {
        Ok(())
    } else {
        Err(format!(
            "{} trailing bytes after the value",
            len.saturating_sub(read)
        )
        .into())
    }
}

/// One of the built-in codecs, chosen at run time — usually from a stored content
/// type.
///
/// ```
/// use annals_core::codec::{AnyCodec, Codec};
///
/// let codec = AnyCodec::for_content_type("application/json").unwrap();
/// assert_eq!(codec.content_type(), "application/json");
/// assert!(AnyCodec::for_content_type("text/plain").is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyCodec {
    /// [`Json`].
    Json,
    /// `Bincode`.
    #[cfg(feature = "bincode")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bincode")))]
    Bincode,
    /// `Postcard`.
    #[cfg(feature = "postcard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postcard")))]
    Postcard,
}

impl AnyCodec {
    /// The built-in codec for a content type, if this build has one (binary codecs
    /// need their cargo feature).
    pub fn for_content_type(content_type: &str) -> Option<AnyCodec> {
        match content_type {
            JSON_CONTENT_TYPE => Some(AnyCodec::Json),
            #[cfg(feature = "bincode")]
            BINCODE_CONTENT_TYPE => Some(AnyCodec::Bincode),
            #[cfg(feature = "postcard")]
            POSTCARD_CONTENT_TYPE => Some(AnyCodec::Postcard),
            _ => None,
        }
    }
}

impl Codec for AnyCodec {
    fn content_type(&self) -> &'static str {
        match self {
            AnyCodec::Json => Json.content_type(),
            #[cfg(feature = "bincode")]
            AnyCodec::Bincode => Bincode.content_type(),
            #[cfg(feature = "postcard")]
            AnyCodec::Postcard => Postcard.content_type(),
        }
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        match self {
            AnyCodec::Json => Json.encode(value),
            #[cfg(feature = "bincode")]
            AnyCodec::Bincode => Bincode.encode(value),
            #[cfg(feature = "postcard")]
            AnyCodec::Postcard => Postcard.encode(value),
        }
    }

    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        seed: S,
        bytes: &'de [u8],
    ) -> Result<S::Value, BoxError> {
        match self {
            AnyCodec::Json => Json.decode_seed(seed, bytes),
            #[cfg(feature = "bincode")]
            AnyCodec::Bincode => Bincode.decode_seed(seed, bytes),
            #[cfg(feature = "postcard")]
            AnyCodec::Postcard => Postcard.decode_seed(seed, bytes),
        }
    }
}

/// Decodes `bytes` stored with `content_type`: with `preferred` when it has that
/// content type, else with the matching built-in codec, else an error.
pub(crate) fn decode_stored<'de, C: Codec, S: DeserializeSeed<'de>>(
    preferred: &C,
    content_type: &str,
    seed: S,
    bytes: &'de [u8],
) -> Result<S::Value, BoxError> {
    if preferred.content_type() == content_type {
        return preferred.decode_seed(seed, bytes);
    }
    match AnyCodec::for_content_type(content_type) {
        Some(codec) => codec.decode_seed(seed, bytes),
        None => Err(format!(
            "no codec for content type `{content_type}` (binary codecs need the annals-core \
             `postcard` or `bincode` feature)"
        )
        .into()),
    }
}
