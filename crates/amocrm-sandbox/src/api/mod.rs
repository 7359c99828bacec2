//! Request handlers, one module per area of the API.

pub mod control;
pub mod crm;
pub mod events;
pub mod notes;
pub mod oauth;
pub mod tasks;
pub mod unsorted;

use crate::input::{Paging, Query};
use crate::respond::{no_content, ok, ApiError};
use axum::response::Response;
use serde_json::{json, Map, Value};

/// A list request: where it was asked for (to build its `_links`) and the page it asks for.
pub struct Listing<'a> {
    base: &'a str,
    path: &'a str,
    query: &'a Query,
    pub paging: Paging,
}

impl<'a> Listing<'a> {
    /// Reads the page asked for; a bad `page` or `limit` is refused before any filter is read.
    pub fn new(base: &'a str, path: &'a str, query: &'a Query) -> Result<Self, ApiError> {
        Ok(Listing {
            base,
            path,
            query,
            paging: query.paging()?,
        })
    }

    /// The asked page of `found`, each item rendered, in amoCRM's shape under
    /// `_embedded.{key}`; 204 when the page is empty.
    pub fn page<T>(&self, key: &str, found: Vec<T>, render: impl FnMut(T) -> Value) -> Response {
        self.page_with(key, found, render, None)
    }

    /// [`Listing::page`] with `extra` top-level keys (the users list's totals).
    pub fn page_with<T>(
        &self,
        key: &str,
        found: Vec<T>,
        render: impl FnMut(T) -> Value,
        extra: Option<Map<String, Value>>,
    ) -> Response {
        let (base, path, paging) = (self.base, self.path, self.paging);
        let (page, has_next) = paging.slice(found);
        let items: Vec<Value> = page.into_iter().map(render).collect();
        if items.is_empty() {
            return no_content();
        }
        let rest = self.query.without_page();
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
}

/// Parses an id from a path segment; anything else is "not found", as for an unknown id.
pub fn path_id(raw: &str, what: &str) -> Result<u64, crate::respond::ApiError> {
    raw.parse::<u64>().map_err(|_| {
        crate::respond::ApiError::not_found(format!("{what} id {raw:?} is not a number"))
    })
}
