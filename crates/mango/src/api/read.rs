//! Reading Mango's answers leniently: ids and extensions as strings or numbers, missing fields
//! as defaults, and an unusable value named by its path.

use super::{GroupOperator, Transcript, VpbxGroup, VpbxUser};
use serde_json::{Map, Value};
use std::fmt;

// ---- lenient field readers -------------------------------------------------------------------
//
// Each returns Ok(None) for a missing or null value, Ok(Some(..)) for a usable one and Err with a
// short description of the value otherwise ([`WrongKind`]); the callers add the field's path
// ([`Unusable`]), which becomes the `what` of [`ApiError::Malformed`](super::ApiError::Malformed).

/// A part of an answer that cannot be used, named by its path (`users[0].general.user_id`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum Unusable {
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: expected {expected}, got {got}")]
    Unexpected {
        path: String,
        expected: &'static str,
        got: WrongKind,
    },
    /// The whole answer is not an object.
    #[error("expected a JSON object, got {0}")]
    NotAnObject(WrongKind),
}

/// A value of the wrong kind, as shown in a message (bounded by [`describe`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WrongKind(String);

impl WrongKind {
    fn of(v: &Value) -> WrongKind {
        WrongKind(describe(v))
    }

    /// The problem of finding this where `expected` was wanted, at `path`.
    pub(super) fn at(self, path: impl Into<String>, expected: &'static str) -> Unusable {
        Unusable::Unexpected {
            path: path.into(),
            expected,
            got: self,
        }
    }
}

impl fmt::Display for WrongKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short, bounded description of an unusable value for error messages.
fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        let head: String = text.chars().take(40).collect();
        format!("{head}…")
    } else {
        text
    }
}

/// An integer given as a JSON integer, an integral float or a decimal string.
pub(super) fn as_int(v: &Value) -> Result<Option<i64>, WrongKind> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(WrongKind::of(v)),
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse::<i64>().map(Some).map_err(|_| WrongKind::of(v))
            }
        }
        _ => Err(WrongKind::of(v)),
    }
}

/// Text given as a string or a number; empty text counts as absent.
fn as_text(v: &Value) -> Result<Option<String>, WrongKind> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(WrongKind::of(v)),
    }
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn int_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, Unusable> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => as_int(v).map_err(|got| got.at(format!("{path}.{key}"), "an integer")),
    }
}

fn text_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, Unusable> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => as_text(v).map_err(|got| got.at(format!("{path}.{key}"), "text")),
    }
}

/// A nested object; missing or null gives `None`.
fn object_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, Unusable> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(v) => Err(WrongKind::of(v).at(format!("{path}.{key}"), "an object")),
    }
}

/// A nested array; missing or null gives an empty slice.
fn array_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], Unusable> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(v) => Err(WrongKind::of(v).at(format!("{path}.{key}"), "an array")),
    }
}

/// The top-level array `key`, which must be present.
fn root_array<'a>(root: &'a Value, key: &str) -> Result<&'a [Value], Unusable> {
    let Value::Object(map) = root else {
        return Err(Unusable::NotAnObject(WrongKind::of(root)));
    };
    match map.get(key) {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Err(Unusable::Missing {
            path: key.to_owned(),
        }),
        Some(v) => Err(WrongKind::of(v).at(key, "an array")),
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Unusable> {
    match v {
        Value::Object(map) => Ok(map),
        _ => Err(WrongKind::of(v).at(path, "an object")),
    }
}

pub(super) fn parse_users(root: &Value) -> Result<Vec<VpbxUser>, Unusable> {
    root_array(root, "users")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_user(v, &format!("users[{i}]")))
        .collect()
}

fn parse_user(v: &Value, path: &str) -> Result<VpbxUser, Unusable> {
    let user = as_object(v, path)?;
    let empty = Map::new();
    let general_path = format!("{path}.general");
    let general = object_field(user, "general", path)?.unwrap_or(&empty);
    let telephony_path = format!("{path}.telephony");
    let telephony = object_field(user, "telephony", path)?.unwrap_or(&empty);

    let user_id = match int_field(general, "user_id", &general_path)? {
        Some(id) => Some(id),
        None => int_field(user, "user_id", path)?,
    };

    // Group membership comes as ids; an object with an `id` is accepted too.
    let mut groups = Vec::new();
    for (i, g) in array_field(user, "groups", path)?.iter().enumerate() {
        let item_path = format!("{path}.groups[{i}]");
        let id = match g {
            Value::Object(map) => int_field(map, "id", &item_path)?,
            other => as_int(other).map_err(|got| got.at(item_path, "a group id"))?,
        };
        if let Some(id) = id {
            groups.push(id);
        }
    }

    let mut numbers = Vec::new();
    for (i, n) in array_field(telephony, "numbers", &telephony_path)?
        .iter()
        .enumerate()
    {
        let item_path = format!("{telephony_path}.numbers[{i}]");
        let (number, order) = match n {
            Value::Object(map) => (
                text_field(map, "number", &item_path)?,
                int_field(map, "order", &item_path)?,
            ),
            other => (
                as_text(other).map_err(|got| got.at(item_path, "a number"))?,
                None,
            ),
        };
        if let Some(number) = number {
            numbers.push((order, number));
        }
    }
    // Dialling order; entries without an order keep their place after the ordered ones.
    numbers.sort_by_key(|(order, _)| order.unwrap_or(i64::MAX));

    Ok(VpbxUser {
        user_id,
        name: text_field(general, "name", &general_path)?.unwrap_or_default(),
        email: text_field(general, "email", &general_path)?,
        extension: text_field(telephony, "extension", &telephony_path)?,
        groups,
        numbers: numbers.into_iter().map(|(_, n)| n).collect(),
    })
}

pub(super) fn parse_groups(root: &Value) -> Result<Vec<VpbxGroup>, Unusable> {
    root_array(root, "groups")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_group(v, &format!("groups[{i}]")))
        .collect()
}

fn parse_group(v: &Value, path: &str) -> Result<VpbxGroup, Unusable> {
    let group = as_object(v, path)?;
    let id = int_field(group, "id", path)?.ok_or_else(|| Unusable::Missing {
        path: format!("{path}.id"),
    })?;
    let operators = array_field(group, "operators", path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let op_path = format!("{path}.operators[{i}]");
            let op = as_object(v, &op_path)?;
            Ok(GroupOperator {
                id: int_field(op, "id", &op_path)?,
                name: text_field(op, "name", &op_path)?.unwrap_or_default(),
                extension: text_field(op, "extension", &op_path)?,
                priority: int_field(op, "priority", &op_path)?,
                order: int_field(op, "order", &op_path)?,
            })
        })
        .collect::<Result<Vec<_>, Unusable>>()?;
    Ok(VpbxGroup {
        id,
        name: text_field(group, "name", path)?.unwrap_or_default(),
        extension: text_field(group, "extension", path)?,
        dial_alg_group: int_field(group, "dial_alg_group", path)?,
        operators,
    })
}

pub(super) fn parse_transcripts(root: &Value) -> Result<Vec<Transcript>, Unusable> {
    root_array(root, "data")?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("data[{i}]");
            let item = as_object(v, &path)?;
            let recording_id =
                text_field(item, "recording_id", &path)?.ok_or_else(|| Unusable::Missing {
                    path: format!("{path}.recording_id"),
                })?;
            let phrases = array_field(item, "phrases", &path)?
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let p_path = format!("{path}.phrases[{j}]");
                    match p {
                        Value::Array(pair) if pair.len() >= 2 => {
                            let speaker = as_text(&pair[0])
                                .map_err(|got| got.at(format!("{p_path}[0]"), "text"))?
                                .unwrap_or_default();
                            let text = match &pair[1] {
                                Value::String(s) => s.clone(),
                                other => as_text(other)
                                    .map_err(|got| got.at(format!("{p_path}[1]"), "text"))?
                                    .unwrap_or_default(),
                            };
                            Ok((speaker, text))
                        }
                        other => Err(WrongKind::of(other).at(p_path, "[speaker, text]")),
                    }
                })
                .collect::<Result<Vec<_>, Unusable>>()?;
            Ok(Transcript {
                recording_id,
                phrases,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints_accept_numbers_strings_and_integral_floats() {
        assert_eq!(as_int(&json!(12)), Ok(Some(12)));
        assert_eq!(as_int(&json!(" 12 ")), Ok(Some(12)));
        assert_eq!(as_int(&json!(12.0)), Ok(Some(12)));
        assert_eq!(as_int(&json!("")), Ok(None));
        assert_eq!(as_int(&Value::Null), Ok(None));
        assert!(as_int(&json!(1.5)).is_err());
        assert!(as_int(&json!("12a")).is_err());
        assert!(as_int(&json!(1e300)).is_err());
        assert!(as_int(&json!([1])).is_err());
    }

    #[test]
    fn text_accepts_strings_and_numbers() {
        assert_eq!(as_text(&json!("101")), Ok(Some("101".into())));
        assert_eq!(as_text(&json!(101)), Ok(Some("101".into())));
        assert_eq!(as_text(&json!("  ")), Ok(None));
        assert!(as_text(&json!({})).is_err());
    }

    #[test]
    fn descriptions_are_bounded() {
        let long = json!("x".repeat(1000));
        assert!(describe(&long).chars().count() <= 41);
    }

    #[test]
    fn unusable_parts_are_named_by_their_path() {
        let text = |r: Result<Vec<VpbxGroup>, Unusable>| r.unwrap_err().to_string();
        assert_eq!(
            text(parse_groups(&json!(5))),
            "expected a JSON object, got 5"
        );
        assert_eq!(text(parse_groups(&json!({}))), "groups: missing");
        assert_eq!(
            text(parse_groups(&json!({"groups": [{}]}))),
            "groups[0].id: missing"
        );
        assert_eq!(
            text(parse_groups(
                &json!({"groups": [{"id": 1, "operators": [{"id": "x"}]}]})
            )),
            "groups[0].operators[0].id: expected an integer, got \"x\""
        );
        assert_eq!(
            parse_transcripts(&json!({"data": [{"recording_id": "r", "phrases": [5]}]}))
                .unwrap_err()
                .to_string(),
            "data[0].phrases[0]: expected [speaker, text], got 5"
        );
    }

    #[test]
    fn numbers_are_sorted_by_dialling_order() {
        let user = json!({"telephony":{"numbers":[
            {"number":"b","order":"1"},{"number":"c"},{"number":"a","order":0}]}});
        let parsed = parse_user(&user, "users[0]").unwrap();
        assert_eq!(parsed.numbers, ["a", "b", "c"]);
    }
}
