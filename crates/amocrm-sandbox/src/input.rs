//! Reading requests without trusting them: JSON bodies with errors that say what is wrong, batch
//! items read field by field into amoCRM's validation errors, and query strings with amoCRM's
//! `filter[name][]` conventions.

use crate::respond::{ApiError, FieldError};
use serde_json::{Map, Value};

/// Parses a JSON body; a malformed one is a 400 naming the position and the fault.
pub fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON document is required",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON in the request body: {e}")))
}

/// Parses a body that must be a non-empty JSON array of at most `max` items.
pub fn json_array(body: &[u8], max: usize) -> Result<Vec<Value>, ApiError> {
    match json_body(body)? {
        Value::Array(items) if items.is_empty() => Err(ApiError::bad_request(
            "The request body is an empty array; send at least one item",
        )),
        Value::Array(items) if items.len() > max => Err(ApiError::bad_request(format!(
            "The request body has {} items; at most {max} are allowed per request",
            items.len()
        ))),
        Value::Array(items) => Ok(items),
        other => Err(ApiError::bad_request(format!(
            "The request body must be a JSON array of objects, not {}",
            kind_of(&other)
        ))),
    }
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `request_id` amoCRM echoes back: the item's own, or its index in the batch.
pub fn request_id(item: &Value, index: usize) -> String {
    match item.get("request_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => index.to_string(),
    }
}

/// Reads every item of a batch add with `read`, given the item's [`Reader`]: an item is refused
/// when `read` gives `None` or leaves errors on the reader. Like amoCRM, nothing of the batch is
/// added when any item is refused: the answer is then each refused item's field errors, under its
/// `request_id`. Otherwise each draft with its `request_id`, in order.
pub fn read_batch<T>(
    items: &[Value],
    mut read: impl FnMut(&mut Reader<'_>) -> Option<T>,
) -> Result<Vec<(String, T)>, ApiError> {
    let mut drafts = Vec::new();
    let mut refused = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rid = request_id(item, i);
        let mut r = Reader::new(item, "");
        match read(&mut r) {
            Some(draft) if r.ok() => drafts.push((rid, draft)),
            _ => refused.push((rid, r.errors)),
        }
    }
    if refused.is_empty() {
        Ok(drafts)
    } else {
        Err(ApiError::Validation(refused))
    }
}

/// Reads the fields of one JSON object, collecting amoCRM-style field errors.
pub struct Reader<'a> {
    obj: Option<&'a Map<String, Value>>,
    prefix: String,
    /// When set, an explicit `null` is a `NotNullable` error instead of "absent".
    pub nulls_rejected: bool,
    pub errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    /// `prefix` is prepended to paths in errors (e.g. `params.`).
    pub fn new(value: &'a Value, prefix: &str) -> Reader<'a> {
        let mut errors = Vec::new();
        let obj = value.as_object();
        if obj.is_none() {
            let path = prefix.trim_end_matches('.');
            errors.push(FieldError::new(
                "InvalidType",
                path,
                format!("This value should be an object, not {}.", kind_of(value)),
            ));
        }
        Reader {
            obj,
            prefix: prefix.to_owned(),
            nulls_rejected: false,
            errors,
        }
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub fn fail(&mut self, code: &'static str, key: &str, detail: impl Into<String>) {
        let path = self.path(key);
        self.errors.push(FieldError::new(code, path, detail));
    }

    /// The raw value, `None` when absent (or null, unless nulls are rejected).
    pub fn raw(&mut self, key: &str) -> Option<&'a Value> {
        let v = self.obj?.get(key)?;
        if v.is_null() {
            if self.nulls_rejected {
                self.fail("NotNullable", key, "This value should not be null.");
            }
            return None;
        }
        Some(v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.obj.is_some_and(|o| o.contains_key(key))
    }

    fn missing(&mut self, key: &str) {
        // A null in a required field is reported as null, not as missing.
        if self.has(key) {
            self.fail("NotNullable", key, "This value should not be null.");
        } else {
            self.fail("FieldMissing", key, "This field is missing.");
        }
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let detail = format!(
                    "This value should be of type string, not {}.",
                    kind_of(other)
                );
                self.fail("InvalidType", key, detail);
                None
            }
        }
    }

    pub fn req_string(&mut self, key: &str) -> Option<String> {
        if self.obj.is_some() && self.obj.and_then(|o| o.get(key)).is_none_or(Value::is_null) {
            self.missing(key);
            return None;
        }
        let s = self.string(key)?;
        if s.trim().is_empty() {
            self.fail("NotBlank", key, "This value should not be blank.");
            return None;
        }
        Some(s)
    }

    pub fn int(&mut self, key: &str) -> Option<i64> {
        match self.raw(key)? {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(i)
                } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                {
                    // Some clients send whole floats (148.0) for integers.
                    Some(f as i64)
                } else {
                    self.fail(
                        "InvalidType",
                        key,
                        format!("This value should be of type int, not {n}."),
                    );
                    None
                }
            }
            other => {
                let detail = format!("This value should be of type int, not {}.", kind_of(other));
                self.fail("InvalidType", key, detail);
                None
            }
        }
    }

    pub fn req_int(&mut self, key: &str) -> Option<i64> {
        if self.obj.is_some() && self.obj.and_then(|o| o.get(key)).is_none_or(Value::is_null) {
            self.missing(key);
            return None;
        }
        self.int(key)
    }

    /// A non-negative integer id.
    pub fn id(&mut self, key: &str) -> Option<u64> {
        let i = self.int(key)?;
        match u64::try_from(i) {
            Ok(v) => Some(v),
            Err(_) => {
                self.fail(
                    "InvalidType",
                    key,
                    format!("This value should be a non-negative id, not {i}."),
                );
                None
            }
        }
    }

    pub fn req_id(&mut self, key: &str) -> Option<u64> {
        if self.obj.is_some() && self.obj.and_then(|o| o.get(key)).is_none_or(Value::is_null) {
            self.missing(key);
            return None;
        }
        self.id(key)
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                let detail = format!("This value should be of type bool, not {}.", kind_of(other));
                self.fail("InvalidType", key, detail);
                None
            }
        }
    }

    pub fn object(&mut self, key: &str) -> Option<&'a Value> {
        let v = self.raw(key)?;
        if v.is_object() {
            Some(v)
        } else {
            let detail = format!("This value should be an object, not {}.", kind_of(v));
            self.fail("InvalidType", key, detail);
            None
        }
    }

    pub fn array(&mut self, key: &str) -> Option<&'a Vec<Value>> {
        match self.raw(key)? {
            Value::Array(items) => Some(items),
            other => {
                let detail = format!("This value should be an array, not {}.", kind_of(other));
                self.fail("InvalidType", key, detail);
                None
            }
        }
    }

    /// A user id that must belong to the account (0 allowed when `robot_ok`).
    pub fn user(&mut self, key: &str, known: impl Fn(u64) -> bool, robot_ok: bool) -> Option<u64> {
        let id = self.id(key)?;
        if (robot_ok && id == 0) || known(id) {
            Some(id)
        } else {
            self.fail(
                "NotSupportedChoice",
                key,
                format!("User {id} is not a user of this account."),
            );
            None
        }
    }
}

/// A parsed query string, keeping every pair in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The values of a list parameter in any of amoCRM's spellings: `name`, `name[]`, `name[0]`,
    /// and comma-separated values.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix(name) else {
                continue;
            };
            let indexed = rest.is_empty()
                || rest == "[]"
                || (rest.starts_with('[')
                    && rest.ends_with(']')
                    && rest.len() > 2
                    && rest[1..rest.len() - 1].bytes().all(|b| b.is_ascii_digit()));
            if indexed {
                out.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        out
    }

    /// A list of ids; a value that is not a number is a 400 naming the parameter.
    pub fn ids(&self, name: &str) -> Result<Vec<u64>, ApiError> {
        self.list(name)
            .into_iter()
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Query parameter {name}: {v:?} is not a numeric id"
                    ))
                })
            })
            .collect()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("Query parameter {name}: {v:?} is not an integer"))
            }),
        }
    }

    /// The `with=` list (comma separated).
    pub fn with(&self) -> Vec<String> {
        self.list("with")
    }

    /// `page` (from 1) and `limit` (1..=250, default 50), checked.
    pub fn paging(&self) -> Result<Paging, ApiError> {
        let page = self.int("page")?.unwrap_or(1);
        if page < 1 {
            return Err(ApiError::bad_request(format!(
                "Query parameter page: {page} is out of range; pages start at 1"
            )));
        }
        let limit = self.int("limit")?.unwrap_or(50);
        if !(1..=250).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "Query parameter limit: {limit} is out of range; it must be between 1 and 250"
            )));
        }
        Ok(Paging {
            page: page as u64,
            limit: limit as u64,
        })
    }

    /// The pairs, minus `page`, for building `_links` hrefs.
    pub fn without_page(&self) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            if k != "page" {
                ser.append_pair(k, v);
            }
        }
        ser.finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: u64,
    pub limit: u64,
}

impl Paging {
    /// The slice of `items` this page shows, and whether a next page exists.
    pub fn slice<T>(&self, items: Vec<T>) -> (Vec<T>, bool) {
        let skip = usize::try_from(self.page.saturating_sub(1).saturating_mul(self.limit))
            .unwrap_or(usize::MAX);
        let limit = usize::try_from(self.limit).unwrap_or(250);
        let total = items.len();
        let page: Vec<T> = items.into_iter().skip(skip).take(limit).collect();
        let has_next = skip.saturating_add(limit) < total;
        (page, has_next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reader_reports_missing_null_and_wrong_types() {
        let v = json!({"a": null, "b": "x", "c": 1.5, "d": 7.0});
        let mut r = Reader::new(&v, "");
        assert_eq!(r.req_string("a"), None);
        assert_eq!(r.req_string("zz"), None);
        assert_eq!(r.int("b"), None);
        assert_eq!(r.int("c"), None);
        assert_eq!(r.int("d"), Some(7));
        let codes: Vec<_> = r.errors.iter().map(|e| (e.code, e.path.as_str())).collect();
        assert_eq!(
            codes,
            vec![
                ("NotNullable", "a"),
                ("FieldMissing", "zz"),
                ("InvalidType", "b"),
                ("InvalidType", "c")
            ]
        );
        let mut r = Reader::new(&v, "params.");
        r.nulls_rejected = true;
        assert_eq!(r.string("a"), None);
        assert_eq!(r.errors[0].path, "params.a");
        assert_eq!(r.errors[0].code, "NotNullable");
        let not_obj = json!([1]);
        let r = Reader::new(&not_obj, "");
        assert!(!r.ok());
    }

    #[test]
    fn query_lists_accept_every_spelling() {
        let q = Query::parse(Some(
            "filter%5Bid%5D%5B%5D=1&filter[id][0]=2&filter[id]=3,4&filter[idx]=9&with=leads,contacts",
        ));
        assert_eq!(q.ids("filter[id]").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(q.with(), vec!["leads", "contacts"]);
        assert!(Query::parse(Some("filter[id][]=x"))
            .ids("filter[id]")
            .is_err());
        assert!(Query::parse(Some("limit=251")).paging().is_err());
        assert!(Query::parse(Some("page=0")).paging().is_err());
        assert!(Query::parse(Some("page=abc")).paging().is_err());
        let p = Query::parse(Some("page=2&limit=2")).paging().unwrap();
        assert_eq!(p.slice(vec![1, 2, 3, 4, 5]), (vec![3, 4], true));
        let p = Query::parse(Some("page=3&limit=2")).paging().unwrap();
        assert_eq!(p.slice(vec![1, 2, 3, 4, 5]), (vec![5], false));
    }
}
