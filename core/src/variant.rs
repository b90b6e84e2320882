//! Serde adapters that split an externally tagged enum into (variant name, content)
//! and join them back, for any serde format.
//!
//! [`VariantContent`] serializes only the content of an enum value and records the
//! variant name; [`VariantSeed`] deserializes an enum from the content alone, given
//! the variant name. This is how a [`DomainEvent`](crate::DomainEvent) stores the
//! variant name as the event type and the variant's fields as the payload.

use std::{cell::Cell, marker::PhantomData};

use serde::{
    de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, VariantAccess, Visitor},
    ser::{self, Impossible, Serialize, SerializeStruct, SerializeTuple},
    Deserialize, Deserializer, Serializer,
};

const NOT_AN_ENUM: &str =
    "a DomainEvent must serialize as an externally tagged enum (no `#[serde(tag)]`, `untagged` or newtype wrapper)";

/// Serializes the content of an enum value; the variant name lands in `name`.
pub(crate) struct VariantContent<'a, T: ?Sized> {
    value: &'a T,
    name: Cell<Option<&'static str>>,
}

impl<'a, T: Serialize + ?Sized> VariantContent<'a, T> {
    pub(crate) fn new(value: &'a T) -> Self {
        VariantContent {
            value,
            name: Cell::new(None),
        }
    }

    /// The variant name seen while serializing.
    pub(crate) fn name(&self) -> Option<&'static str> {
        self.name.get()
    }
}

impl<T: Serialize + ?Sized> Serialize for VariantContent<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(ContentSerializer {
            inner: serializer,
            name: &self.name,
        })
    }
}

/// The variant name of an enum value, without serializing its fields.
pub(crate) fn variant_name<T: Serialize + ?Sized>(value: &T) -> Option<&'static str> {
    let content = VariantContent::new(value);
    // The fields are serialized into a sink that stops at the first call.
    let _ = content.value.serialize(ContentSerializer {
        inner: NameOnly,
        name: &content.name,
    });
    content.name()
}

struct ContentSerializer<'n, S> {
    inner: S,
    name: &'n Cell<Option<&'static str>>,
}

macro_rules! not_an_enum {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<$ret, Self::Error> {
            Err(ser::Error::custom(NOT_AN_ENUM))
        }
    )*};
}

impl<'n, S: Serializer> Serializer for ContentSerializer<'n, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = TupleAsVariant<S::SerializeTuple>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = StructAsVariant<S::SerializeStruct>;

    not_an_enum! {
        serialize_bool(bool) -> S::Ok;
        serialize_i8(i8) -> S::Ok;
        serialize_i16(i16) -> S::Ok;
        serialize_i32(i32) -> S::Ok;
        serialize_i64(i64) -> S::Ok;
        serialize_u8(u8) -> S::Ok;
        serialize_u16(u16) -> S::Ok;
        serialize_u32(u32) -> S::Ok;
        serialize_u64(u64) -> S::Ok;
        serialize_f32(f32) -> S::Ok;
        serialize_f64(f64) -> S::Ok;
        serialize_char(char) -> S::Ok;
        serialize_str(&str) -> S::Ok;
        serialize_bytes(&[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(&'static str) -> S::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<S::Ok, S::Error> {
        Err(ser::Error::custom(NOT_AN_ENUM))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(ser::Error::custom(NOT_AN_ENUM))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.name.set(Some(variant));
        self.inner.serialize_unit()
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.name.set(Some(variant));
        value.serialize(self.inner)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.name.set(Some(variant));
        Ok(TupleAsVariant(self.inner.serialize_tuple(len)?))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.name.set(Some(variant));
        Ok(StructAsVariant(self.inner.serialize_struct(variant, len)?))
    }
}

struct TupleAsVariant<T>(T);

impl<T: SerializeTuple> ser::SerializeTupleVariant for TupleAsVariant<T> {
    type Ok = T::Ok;
    type Error = T::Error;
    fn serialize_field<F: Serialize + ?Sized>(&mut self, value: &F) -> Result<(), T::Error> {
        self.0.serialize_element(value)
    }
    fn end(self) -> Result<T::Ok, T::Error> {
        self.0.end()
    }
}

struct StructAsVariant<T>(T);

impl<T: SerializeStruct> ser::SerializeStructVariant for StructAsVariant<T> {
    type Ok = T::Ok;
    type Error = T::Error;
    fn serialize_field<F: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &F,
    ) -> Result<(), T::Error> {
        self.0.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), T::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<T::Ok, T::Error> {
        self.0.end()
    }
}

/// A serializer that accepts only "nothing" and fails on anything else: with
/// [`ContentSerializer`] it captures the variant name cheaply.
struct NameOnly;

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}
impl std::error::Error for Stop {}
impl ser::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

macro_rules! stop {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<$ret, Stop> {
            Err(Stop)
        }
    )*};
}

impl Serializer for NameOnly {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Impossible<(), Stop>;
    type SerializeTuple = Impossible<(), Stop>;
    type SerializeTupleStruct = Impossible<(), Stop>;
    type SerializeTupleVariant = Impossible<(), Stop>;
    type SerializeMap = Impossible<(), Stop>;
    type SerializeStruct = Impossible<(), Stop>;
    type SerializeStructVariant = Impossible<(), Stop>;

    stop! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Stop> {
        Err(Stop)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Stop> {
        Err(Stop)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Stop> {
        Err(Stop)
    }
}

/// Deserializes an enum `T` from the content of variant `variant`.
///
/// `unknown` is set when `T` has no such variant.
pub(crate) struct VariantSeed<'v, T> {
    variant: &'v str,
    unknown: &'v Cell<bool>,
    marker: PhantomData<fn() -> T>,
}

impl<'v, T> VariantSeed<'v, T> {
    pub(crate) fn new(variant: &'v str, unknown: &'v Cell<bool>) -> Self {
        VariantSeed {
            variant,
            unknown,
            marker: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for VariantSeed<'_, T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, content: D) -> Result<T, D::Error> {
        T::deserialize(EnumDeserializer {
            variant: self.variant,
            unknown: self.unknown,
            content,
        })
    }
}

struct EnumDeserializer<'v, D> {
    variant: &'v str,
    unknown: &'v Cell<bool>,
    content: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for EnumDeserializer<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, D::Error> {
        Err(de::Error::custom(NOT_AN_ENUM))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if !variants.contains(&self.variant) {
            self.unknown.set(true);
            return Err(de::Error::unknown_variant(self.variant, variants));
        }
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de, D: Deserializer<'de>> EnumAccess<'de> for EnumDeserializer<'_, D> {
    type Error = D::Error;
    type Variant = ContentAccess<D>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, ContentAccess<D>), D::Error> {
        let name: de::value::StrDeserializer<'_, D::Error> = self.variant.into_deserializer();
        let value = seed.deserialize(name)?;
        Ok((value, ContentAccess(self.content)))
    }
}

struct ContentAccess<D>(D);

impl<'de, D: Deserializer<'de>> VariantAccess<'de> for ContentAccess<D> {
    type Error = D::Error;

    fn unit_variant(self) -> Result<(), D::Error> {
        <()>::deserialize(self.0)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, D::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::{Codec, Json};

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Ev {
        Unit,
        New(u32),
        Tup(u8, String),
        #[serde(rename = "Renamed")]
        Strukt {
            a: i64,
            #[serde(default)]
            b: Option<String>,
        },
    }

    fn round_trip<C: Codec>(codec: &C, ev: &Ev) -> (String, Vec<u8>, Ev) {
        let content = VariantContent::new(ev);
        let bytes = codec.encode(&content).unwrap();
        let name = content.name().unwrap();
        assert_eq!(variant_name(ev), Some(name));
        let unknown = Cell::new(false);
        let back: Ev = codec
            .decode_seed(VariantSeed::new(name, &unknown), &bytes)
            .unwrap();
        (name.to_owned(), bytes, back)
    }

    #[test]
    fn json_round_trips_every_variant_shape() {
        for ev in [
            Ev::Unit,
            Ev::New(7),
            Ev::Tup(1, "x".into()),
            Ev::Strukt {
                a: -3,
                b: Some("y".into()),
            },
        ] {
            let (_, _, back) = round_trip(&Json, &ev);
            assert_eq!(back, ev);
        }
        let (name, bytes, _) = round_trip(&Json, &Ev::Strukt { a: 1, b: None });
        assert_eq!(name, "Renamed");
        assert_eq!(bytes, br#"{"a":1,"b":null}"#);
        let (name, bytes, _) = round_trip(&Json, &Ev::Unit);
        assert_eq!((name.as_str(), bytes.as_slice()), ("Unit", &b"null"[..]));
    }

    #[cfg(feature = "postcard")]
    #[test]
    fn postcard_round_trips_every_variant_shape() {
        for ev in [
            Ev::Unit,
            Ev::New(7),
            Ev::Tup(1, "x".into()),
            Ev::Strukt { a: -3, b: None },
        ] {
            assert_eq!(round_trip(&crate::codec::Postcard, &ev).2, ev);
        }
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_round_trips_every_variant_shape() {
        for ev in [
            Ev::Unit,
            Ev::New(7),
            Ev::Tup(1, "x".into()),
            Ev::Strukt { a: -3, b: None },
        ] {
            assert_eq!(round_trip(&crate::codec::Bincode, &ev).2, ev);
        }
    }

    #[test]
    fn unknown_variant_is_flagged() {
        let unknown = Cell::new(false);
        let err = Json
            .decode_seed(VariantSeed::<Ev>::new("Nope", &unknown), b"null")
            .unwrap_err();
        assert!(unknown.get(), "{err}");
    }

    #[test]
    fn non_enums_are_rejected() {
        assert!(Json.encode(&VariantContent::new(&5_u32)).is_err());
        assert_eq!(variant_name(&"text"), None);
    }
}
