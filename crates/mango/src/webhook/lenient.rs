//! The leniency rules, one function per kind of field, used as `#[serde(deserialize_with = ...)]`
//! by the payload types of [`super::payload`].
//!
//! Every reader takes the field's value as a [`Lit`] (a scalar kept, strings borrowed from the
//! text when they have no escapes; arrays and objects only described) and answers with the typed
//! value or a one-line problem (`expected a non-negative integer, got "abc"`).
//! [`super::classify`] turns that problem into a [`super::WebhookError`] naming the field at the
//! path `serde_path_to_error` tracked, so no reader knows its field's name.

use callbridge_core::{CallState, Location, Party, RecordingState, SummaryDirection, TransferKind};
use serde::de::value::StrDeserializer;
use serde::de::{
    self, Deserialize, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// The problem of a required field that is `null` (an absent one is serde's `missing field`).
pub(super) const MISSING: &str = "missing";
/// The problem of a required field that is an empty string.
pub(super) const EMPTY: &str = "must not be empty";
/// How the problem of a top-level payload that is not an object begins.
const NOT_AN_OBJECT: &str = "expected a JSON object, got ";

/// One JSON value as far as the readers care. Absent fields never get here (serde's `default`).
#[derive(Debug)]
pub(super) enum Lit<'a> {
    Null,
    Bool(bool),
    /// Any JSON integer (`u64` or `i64`).
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
    Array {
        empty: bool,
    },
    Object,
}

struct LitVisitor;

impl<'de> Visitor<'de> for LitVisitor {
    type Value = Lit<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Lit<'de>, E> {
        Ok(Lit::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Lit<'de>, E> {
        Ok(Lit::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lit<'de>, E> {
        Ok(Lit::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lit<'de>, E> {
        Ok(Lit::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lit<'de>, E> {
        Ok(Lit::Int(i128::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lit<'de>, E> {
        Ok(Lit::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Lit<'de>, E> {
        Ok(Lit::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Lit<'de>, E> {
        Ok(Lit::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Lit<'de>, E> {
        Ok(Lit::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lit<'de>, A::Error> {
        let mut empty = true;
        while seq.next_element::<Checked>()?.is_some() {
            empty = false;
        }
        Ok(Lit::Array { empty })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lit<'de>, A::Error> {
        while map.next_key::<CheckedKey>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Lit::Object)
    }
}

impl<'de> Deserialize<'de> for Lit<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LitVisitor)
    }
}

/// A value that is not kept but read as strictly as a [`Value`] is (string escapes, number range,
/// nesting depth): serde's `IgnoredAny` skips over text that a [`Value`] would refuse, and the
/// text and the [`Value`] of one payload must be judged alike.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lit::deserialize(d).map(|_| Checked)
    }
}

/// An object key that is not looked at, still decoded as a string (as [`Value`] does).
struct CheckedKey;

impl<'de> Deserialize<'de> for CheckedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CheckedKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<CheckedKey, E> {
                Ok(CheckedKey)
            }
        }
        d.deserialize_str(V)
    }
}

// ------------------------------------------------------------------------------- objects

/// A payload type read from the fields of one JSON object.
pub(super) trait FromFields: Sized {
    fn from_fields<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// What an object-or-anything field holds.
enum ObjectOr<'a, T> {
    Object(T),
    Other(Lit<'a>),
}

struct ObjectOrVisitor<T>(PhantomData<T>);

macro_rules! forward_to_lit {
    ($($name:ident($($ty:ty)?)),*) => {
        $(fn $name<E: de::Error>(self $(, v: $ty)?) -> Result<Self::Value, E> {
            LitVisitor.$name($({ let v: $ty = v; v })?).map(ObjectOr::Other)
        })*
    };
}

impl<'de, T: FromFields> Visitor<'de> for ObjectOrVisitor<T> {
    type Value = ObjectOr<'de, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    forward_to_lit!(
        visit_unit(),
        visit_none(),
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_borrowed_str(&'de str),
        visit_str(&str),
        visit_string(String)
    );
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        LitVisitor.visit_seq(seq).map(ObjectOr::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_fields(StrictMap(map)).map(ObjectOr::Object)
    }
}

fn object_or<'de, T: FromFields, D: Deserializer<'de>>(d: D) -> Result<ObjectOr<'de, T>, D::Error> {
    d.deserialize_any(ObjectOrVisitor(PhantomData))
}

/// The whole payload: an object, or a [`NOT_AN_OBJECT`] problem at the root.
pub(super) fn payload<'de, T: FromFields, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    match object_or(d)? {
        ObjectOr::Object(t) => Ok(t),
        ObjectOr::Other(v) => Err(de::Error::custom(format!(
            "{NOT_AN_OBJECT}{}",
            describe(&v)
        ))),
    }
}

/// The fields of an object handed to a derived `Deserialize`, with the values of fields it does
/// not know read as [`Checked`] instead of skipped.
struct StrictMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(StrictValue(d))
    }
}

/// A field's value: the readers below ask for `deserialize_any`, and a derived `Deserialize`
/// skips an unknown field with `deserialize_ignored_any`, which is read as [`Checked`] here.
struct StrictValue<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for StrictValue<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        Checked::deserialize(self.0)?;
        visitor.visit_unit()
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

// ------------------------------------------------------------------------------- readers

fn problem<E: de::Error>(text: String) -> E {
    E::custom(text)
}

/// A text field: a string, or an integer written as its decimal digits. `None` when `null` or
/// empty.
// The error is a String on purpose: it is only ever the text of serde's `de::Error::custom`
// (through `problem`), where the path tracker puts the field's name in front of it.
fn text_of(v: Lit<'_>) -> Result<Option<String>, String> {
    match v {
        Lit::Null => Ok(None),
        Lit::Str(s) if s.is_empty() => Ok(None),
        Lit::Str(s) => Ok(Some(s.into_owned())),
        Lit::Int(i) => Ok(Some(i.to_string())),
        v => Err(format!("expected a string, got {}", describe(&v))),
    }
}

/// An optional text field (see [`text_of`]).
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text_of(Lit::deserialize(d)?).map_err(problem)
}

/// A required text field: `null` is [`MISSING`], `""` [`EMPTY`].
pub(super) fn required_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Lit::deserialize(d)? {
        Lit::Null => Err(problem(MISSING.to_owned())),
        Lit::Str(s) if s.is_empty() => Err(problem(EMPTY.to_owned())),
        v => Ok(text_of(v)
            .map_err(problem)?
            .expect("neither null nor empty")),
    }
}

/// Integer types a field can be read as, with the wording used when a value does not fit.
pub(super) trait IntField: TryFrom<i128> {
    const EXPECTED: &'static str;
}

impl IntField for u64 {
    const EXPECTED: &'static str = "a non-negative integer";
}
impl IntField for u32 {
    const EXPECTED: &'static str = "a non-negative integer (at most 4294967295)";
}
impl IntField for u8 {
    const EXPECTED: &'static str = "an integer from 0 to 255";
}
impl IntField for i64 {
    const EXPECTED: &'static str = "an integer";
}
impl IntField for i128 {
    const EXPECTED: &'static str = "an integer";
}

/// An integer field: a JSON integer, a number with no fractional part (`2.0`), or a string
/// holding an integer (`" 2 "`). `None` when `null` or a blank string.
// A String error for the same reason as `text_of`'s: serde's custom message, nothing else.
fn int_of<T: IntField>(v: Lit<'_>) -> Result<Option<T>, String> {
    let wide = match &v {
        Lit::Null => return Ok(None),
        Lit::Str(s) if s.trim().is_empty() => return Ok(None),
        Lit::Str(s) => s.trim().parse::<i128>().ok(),
        Lit::Int(i) => Some(*i),
        // `as` saturates, and the range check below then rejects values too large for the field.
        Lit::Float(x) => Some(*x)
            .filter(|x| x.is_finite() && x.fract() == 0.0)
            .map(|x| x as i128),
        _ => None,
    };
    match wide.and_then(|w| T::try_from(w).ok()) {
        Some(x) => Ok(Some(x)),
        None => Err(format!("expected {}, got {}", T::EXPECTED, describe(&v))),
    }
}

/// An optional integer field (see [`int_of`]).
pub(super) fn int<'de, T: IntField, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    int_of(Lit::deserialize(d)?).map_err(problem)
}

/// An integer field that is 0 when `null` or blank (and, with `#[serde(default)]`, absent).
pub(super) fn int_or_zero<'de, T: IntField + Default, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(int(d)?.unwrap_or_default())
}

/// A required integer field: `null` is [`MISSING`], a blank string [`EMPTY`].
pub(super) fn required_int<'de, T: IntField, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    match Lit::deserialize(d)? {
        Lit::Null => Err(problem(MISSING.to_owned())),
        Lit::Str(s) if s.trim().is_empty() => Err(problem(EMPTY.to_owned())),
        v => Ok(int_of(v).map_err(problem)?.expect("neither null nor blank")),
    }
}

/// A boolean field: `true`/`false`, `1`/`0`, or those as strings (`"TRUE"` too). `null` and `""`
/// are `false` (and, with `#[serde(default)]`, absent).
pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Lit::deserialize(d)?;
    let parsed = match &v {
        Lit::Null => Some(false),
        Lit::Bool(b) => Some(*b),
        Lit::Int(0) => Some(false),
        Lit::Int(1) => Some(true),
        Lit::Float(x) if *x == 0.0 => Some(false),
        Lit::Float(x) if *x == 1.0 => Some(true),
        Lit::Str(s) => {
            let s = s.trim();
            if s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false") {
                Some(false)
            } else if s == "1" || s.eq_ignore_ascii_case("true") {
                Some(true)
            } else {
                None
            }
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        problem(format!(
            "expected a boolean (true, false, 1, 0), got {}",
            describe(&v)
        ))
    })
}

/// A required field holding one of a few names: the core's own (derived, case-sensitive) names of
/// the enum's variants, which are Mango's.
pub(super) trait NamedValue: DeserializeOwned {
    /// The names, for error messages.
    const EXPECTED: &'static str;
}

impl NamedValue for CallState {
    const EXPECTED: &'static str = "Appeared, Connected, OnHold, Disconnected";
}

impl NamedValue for RecordingState {
    const EXPECTED: &'static str = "Started, Continued, Completed";
}

/// A required [`NamedValue`] field: case-sensitive, `null` is [`MISSING`], `""` [`EMPTY`].
pub(super) fn named<'de, T: NamedValue, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let expected = T::EXPECTED;
    match Lit::deserialize(d)? {
        Lit::Null => Err(problem(MISSING.to_owned())),
        Lit::Str(s) if s.is_empty() => Err(problem(EMPTY.to_owned())),
        Lit::Str(s) => T::deserialize(StrDeserializer::<de::value::Error>::new(&s))
            .map_err(|_| problem(format!("unknown value {} (expected {expected})", quote(&s)))),
        v => Err(problem(format!(
            "expected a string (one of {expected}), got {}",
            describe(&v)
        ))),
    }
}

/// `location`: known values typed, anything else kept as [`Location::Other`].
pub(super) fn location<'de, D: Deserializer<'de>>(d: D) -> Result<Location, D::Error> {
    let raw = text(d)?.unwrap_or_default();
    Ok(match raw.as_str() {
        "ivr" => Location::Ivr,
        "queue" => Location::Queue,
        "abonent" => Location::Abonent,
        _ => Location::Other(raw),
    })
}

/// An absent `location` is `Other("")`.
pub(super) fn no_location() -> Location {
    Location::Other(String::new())
}

/// `transfer`: an unknown value, or one that is not a string at all, is dropped rather than
/// rejected.
pub(super) fn transfer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TransferKind>, D::Error> {
    Ok(match Lit::deserialize(d)? {
        Lit::Str(s) => match &*s {
            "consultative" => Some(TransferKind::Consultative),
            "blind" => Some(TransferKind::Blind),
            "return_blind" => Some(TransferKind::ReturnBlind),
            _ => None,
        },
        _ => None,
    })
}

/// `call_direction`: an integer; an unknown number (or none) is [`SummaryDirection::Unknown`].
pub(super) fn direction<'de, D: Deserializer<'de>>(d: D) -> Result<SummaryDirection, D::Error> {
    Ok(match int::<i128, D>(d)? {
        Some(0) => SummaryDirection::Internal,
        Some(1) => SummaryDirection::Inbound,
        Some(2) => SummaryDirection::Outbound,
        _ => SummaryDirection::Unknown,
    })
}

/// Absent `call_direction`.
pub(super) fn unknown_direction() -> SummaryDirection {
    SummaryDirection::Unknown
}

/// `from` / `to`: an object, or `null`, `[]` or `""` for an empty party.
pub(super) fn party<'de, D: Deserializer<'de>>(d: D) -> Result<Party, D::Error> {
    match object_or::<super::payload::PartyFields, D>(d)? {
        ObjectOr::Object(p) => Ok(p.into()),
        ObjectOr::Other(Lit::Null | Lit::Array { empty: true }) => Ok(Party::default()),
        ObjectOr::Other(Lit::Str(s)) if s.is_empty() => Ok(Party::default()),
        ObjectOr::Other(v) => Err(problem(format!("expected an object, got {}", describe(&v)))),
    }
}

/// `dct`: an object (see [`super::payload::TrackingFields`]); `null`, `[]` or `""` is none.
pub(super) fn tracking<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<callbridge_core::CallTracking>, D::Error> {
    match object_or::<super::payload::TrackingFields, D>(d)? {
        ObjectOr::Object(t) => Ok(t.into_tracking()),
        ObjectOr::Other(Lit::Null | Lit::Array { empty: true }) => Ok(None),
        ObjectOr::Other(Lit::Str(s)) if s.is_empty() => Ok(None),
        ObjectOr::Other(v) => Err(problem(format!("expected an object, got {}", describe(&v)))),
    }
}

// ------------------------------------------------------------------------------- messages

/// Longest rendering of an offending value in an error message, in characters.
const MAX_SHOWN: usize = 40;

/// A short, one-line rendering of an offending value for error messages.
fn describe(v: &Lit<'_>) -> String {
    match v {
        Lit::Null => "null".to_owned(),
        Lit::Bool(b) => b.to_string(),
        Lit::Int(i) => truncate(i.to_string()),
        // As a JSON number prints it (`1e+30`); a non-finite float never comes out of JSON.
        Lit::Float(x) => truncate(
            serde_json::Number::from_f64(*x).map_or_else(|| x.to_string(), |n| n.to_string()),
        ),
        Lit::Str(s) => quote(s),
        Lit::Array { .. } => "an array".to_owned(),
        Lit::Object => "an object".to_owned(),
    }
}

/// A string as a JSON literal (so control characters stay escaped), cut to [`MAX_SHOWN`].
fn quote(s: &str) -> String {
    if s.chars().count() > MAX_SHOWN {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        format!("{}...", Value::String(cut))
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

fn truncate(s: String) -> String {
    if s.chars().count() > MAX_SHOWN {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        format!("{cut}...")
    } else {
        s
    }
}
