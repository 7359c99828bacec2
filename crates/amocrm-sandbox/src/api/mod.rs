//! Request handlers, one module per area of the API.

pub mod control;
pub mod crm;
pub mod events;
pub mod notes;
pub mod oauth;
pub mod tasks;
pub mod unsorted;

use crate::input::{Paging, Query};
use crate::respond::{no_content, ok};
use axum::response::Response;
use serde_json::{json, Map, Value};

/// Where a list was asked for, to build its `_links`.
pub struct Listing<'a> {
    pub base: &'a str,
    pub path: &'a str,
    pub query: &'a Query,
    pub paging: Paging,
}

/// A page of a list in amoCRM's shape, or 204 when the page is empty.
pub fn paged(
    at: &Listing<'_>,
    key: &str,
    items: Vec<Value>,
    has_next: bool,
    extra: Option<Map<String, Value>>,
) -> Response {
    let (base, path, query, paging) = (at.base, at.path, at.query, at.paging);
    if items.is_empty() {
        return no_content();
    }
    let rest = query.without_page();
    let href = |page: u64| {
        if rest.is_empty() {
            format!("{base}{path}?page={page}")
        } else {
            format!("{base}{path}?{rest}&page={page}")
        }
    };
    let mut links = json!({"self": {"href": href(paging.page)}});
    if has_next {
        links["next"] = json!({"href": href(paging.page + 1)});
    }
    if paging.page > 1 {
        links["prev"] = json!({"href": href(paging.page - 1)});
    }
    let mut body = json!({
        "_page": paging.page,
        "_links": links,
        "_embedded": {key: items},
    });
    if let (Some(extra), Some(obj)) = (extra, body.as_object_mut()) {
        obj.extend(extra);
    }
    ok(&body)
}

/// Parses an id from a path segment; anything else is "not found", as for an unknown id.
pub fn path_id(raw: &str, what: &str) -> Result<u64, crate::respond::ApiError> {
    raw.parse::<u64>().map_err(|_| {
        crate::respond::ApiError::not_found(format!("{what} id {raw:?} is not a number"))
    })
}
