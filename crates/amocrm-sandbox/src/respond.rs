//! Response shapes: HAL JSON for success, problem JSON for errors, HTML for the gateway's 429 and
//! 403, and the per-item `validation-errors` of amoCRM's batch endpoints.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const HAL: &str = "application/hal+json";
pub const PROBLEM: &str = "application/problem+json";
pub const OAUTH_PROBLEM_TYPE: &str = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson";

/// The answer to a batch add of `resource` (`contacts`, `leads`, `tasks`): each draft inserted in
/// order by `insert` and listed with its id, the caller's `request_id` and its link, under
/// `_embedded.{resource}`.
pub fn added_batch<T>(
    base: &str,
    resource: &str,
    drafts: Vec<(String, T)>,
    mut insert: impl FnMut(T) -> u64,
) -> Value {
    let created: Vec<Value> = drafts
        .into_iter()
        .map(|(rid, draft)| {
            let id = insert(draft);
            json!({
                "id": id,
                "request_id": rid,
                "_links": {"self": {"href": format!("{base}/api/v4/{resource}/{id}")}},
            })
        })
        .collect();
    let mut embedded = serde_json::Map::new();
    embedded.insert(resource.to_owned(), Value::Array(created));
    json!({
        "_links": {"self": {"href": format!("{base}/api/v4/{resource}")}},
        "_embedded": embedded,
    })
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn hal(status: StatusCode, body: &Value) -> Response {
    with_type(status, HAL, body.to_string())
}

pub fn ok(body: &Value) -> Response {
    hal(StatusCode::OK, body)
}

/// amoCRM's "nothing here": 204 with no body and no content type.
pub fn no_content() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

pub fn problem_json(status: StatusCode, body: &Value) -> Response {
    with_type(status, PROBLEM, body.to_string())
}

pub fn html(status: StatusCode, title: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    with_type(status, "text/html; charset=utf-8", body)
}

/// One field error inside `validation-errors[].errors[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub code: &'static str,
    pub path: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(code: &'static str, path: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            code,
            path: path.into(),
            detail: detail.into(),
        }
    }
}

/// An error a handler returns; rendered in amoCRM's shapes.
#[derive(Debug)]
pub enum ApiError {
    /// A problem document: `{title, type, status, detail}`.
    Problem { status: StatusCode, detail: String },
    /// An OAuth problem: `{title, type: OAuthProblemJson, status, detail, hint}`.
    OAuth {
        status: StatusCode,
        detail: String,
        hint: String,
    },
    /// 400 with `validation-errors[{request_id, errors[..]}]`.
    Validation(Vec<(String, Vec<FieldError>)>),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::Problem {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::Problem {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
        }
    }

    pub fn oauth(status: StatusCode, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::OAuth {
            status,
            detail: detail.into(),
            hint: hint.into(),
        }
    }

    pub fn one_field(request_id: &str, error: FieldError) -> Self {
        ApiError::Validation(vec![(request_id.to_owned(), vec![error])])
    }
}

fn title_of(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

pub fn problem(status: StatusCode, detail: &str) -> Response {
    problem_json(
        status,
        &json!({
            "title": title_of(status),
            "type": format!("https://httpstatus.es/{}", status.as_u16()),
            "status": status.as_u16(),
            "detail": detail,
        }),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem { status, detail } => problem(status, &detail),
            ApiError::OAuth {
                status,
                detail,
                hint,
            } => problem_json(
                status,
                &json!({
                    "title": title_of(status),
                    "type": OAUTH_PROBLEM_TYPE,
                    "status": status.as_u16(),
                    "detail": detail,
                    "hint": hint,
                }),
            ),
            ApiError::Validation(items) => {
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|(request_id, errors)| {
                        json!({
                            "request_id": request_id,
                            "errors": errors.into_iter().map(|e| json!({"code": e.code, "path": e.path, "detail": e.detail})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                problem_json(
                    StatusCode::BAD_REQUEST,
                    &json!({
                        "validation-errors": items,
                        "title": "Bad Request",
                        "type": "https://httpstatus.es/400",
                        "status": 400,
                        "detail": "Request validation failed",
                    }),
                )
            }
        }
    }
}

pub type ApiResult = Result<Response, ApiError>;
