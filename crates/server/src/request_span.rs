//! One span per HTTP request, so every log line written while a request is served says which
//! one: its method and path, and the tenant and the entry where the request names them (the path,
//! or `?tenant=`; a webhook's entry is recorded by its handler once the body is parsed).
//!
//! Never the query string as such: card-stream tokens, recording-link signatures and OAuth codes
//! travel there. Only its `tenant` parameter is read.

use axum::http::{Request, Uri};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnRequest, DefaultOnResponse, TraceLayer,
};
use tracing::field::{display, Empty};
use tracing::Span;

/// The span's field a handler records a request's entry id in.
pub const ENTRY: &str = "entry";

/// What [`layer`] makes a request's span with.
pub type MakeRequestSpan<B> = fn(&Request<B>) -> Span;

/// The request tracing layer: the span, tower-http's DEBUG lines at the start and end of each
/// request, and nothing on failure.
pub type RequestTraceLayer<B> = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    MakeRequestSpan<B>,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    (),
>;

/// The layer that opens the span. Failures are not logged again here: each handler logs its own
/// cause (a store error, an unreachable Mango API) inside the span, and a refused webhook during
/// a full disk would otherwise write two error lines.
// The cast turns the generic function into the layer's named function-pointer type.
#[allow(trivial_casts)]
pub fn layer<B>() -> RequestTraceLayer<B> {
    TraceLayer::new_for_http()
        .make_span_with(span_for as MakeRequestSpan<B>)
        .on_failure(())
}

/// The span of one request. At the ERROR level so that it is on whatever the log filter lets
/// through: a span that is off takes its fields with it, and a warning would lose its tenant.
fn span_for<B>(request: &Request<B>) -> Span {
    let span = tracing::error_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        tenant = Empty,
        entry = Empty,
    );
    let named = named_in(request.uri());
    if let Some(tenant) = &named.tenant {
        span.record("tenant", display(tenant));
    }
    if let Some(entry) = named.entry {
        span.record(ENTRY, display(entry));
    }
    span
}

/// What a request's address says it is about.
#[derive(Debug, Default, PartialEq, Eq)]
struct Named<'a> {
    tenant: Option<String>,
    entry: Option<&'a str>,
}

/// The tenant of `/mango/{tenant}/...`, `/recordings/{tenant}/...`, `/api/v1/tenants/{tenant}...`
/// or `?tenant=`, and the entry of `/api/v1/entries/{entry}`.
fn named_in(uri: &Uri) -> Named<'_> {
    let mut segments = uri.path().trim_start_matches('/').split('/');
    let from_path = match (segments.next(), segments.next(), segments.next()) {
        (Some("mango" | "recordings"), Some(tenant), _) => Named {
            tenant: Some(tenant.to_string()),
            entry: None,
        },
        (Some("api"), Some("v1"), Some("tenants")) => Named {
            tenant: segments.next().map(str::to_string),
            entry: None,
        },
        (Some("api"), Some("v1"), Some("entries")) => Named {
            tenant: None,
            entry: segments.next(),
        },
        _ => Named::default(),
    };
    let tenant = from_path
        .tenant
        .filter(|t| !t.is_empty())
        .or_else(|| tenant_in_query(uri));
    Named {
        tenant,
        entry: from_path.entry.filter(|e| !e.is_empty()),
    }
}

fn tenant_in_query(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(name, _)| name == "tenant")
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(uri: &str) -> (Option<String>, Option<String>) {
        let uri: Uri = uri.parse().unwrap();
        let n = named_in(&uri);
        (n.tenant, n.entry.map(str::to_string))
    }

    #[test]
    fn tenant_and_entry_come_from_the_path_or_the_tenant_parameter() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(named("/mango/acme/events/call"), (some("acme"), None));
        assert_eq!(named("/mango/acme"), (some("acme"), None));
        assert_eq!(named("/recordings/acme/r1?e=1&s=sig"), (some("acme"), None));
        assert_eq!(named("/api/v1/tenants/acme/outbox"), (some("acme"), None));
        assert_eq!(named("/api/v1/tenants"), (None, None));
        assert_eq!(
            named("/api/v1/entries/E1?tenant=acme"),
            (some("acme"), some("E1"))
        );
        assert_eq!(named("/api/v1/entries?tenant=acme"), (some("acme"), None));
        assert_eq!(named("/healthz"), (None, None));
    }

    #[test]
    fn nothing_else_is_read_from_the_query() {
        assert_eq!(
            named("/api/v1/cards/stream?token=v1.acme.7.99.abcdef"),
            (None, None)
        );
        assert_eq!(
            named("/amocrm/oauth/callback?code=secret&state=s"),
            (None, None)
        );
    }
}
