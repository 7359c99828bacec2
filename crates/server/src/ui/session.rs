//! Signing in and out, and what guards every page behind it.
//!
//! - A session is a random 256-bit token in the `callbridge_session` cookie (HttpOnly,
//!   SameSite=Lax, Secure when the service's public URL is https). The database keeps only the
//!   token's SHA-256, so a copy of it opens nothing. Sessions end after 12 idle hours, after
//!   7 days whatever, on sign-out, and all at once when the password changes.
//! - Every form a session posts carries its CSRF token (a hidden `csrf` field); [`require_session`]
//!   checks it before any handler runs, so no handler can forget. The sign-in form, which has no
//!   session yet, carries a token that must match a cookie set with the form (double submit).
//! - Wrong passwords in a row make the next attempt wait: nothing for the first three, then
//!   2, 4, 8 … seconds, at most 15 minutes; the count is in the database, shared by instances.

use super::i18n::Catalogue;
use super::page::{render, Ctx};
use super::password;
use crate::state::{now_ms, AppState};
use crate::tokens::{cookie, digest as token_hash};
use askama::Template;
use axum::body::{to_bytes, Body};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use callbridge_store::{SignInFailures, UiSession};
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "callbridge_session";
const SIGN_IN_CSRF_COOKIE: &str = "callbridge_sign_in";
const IDLE_MS: i64 = 12 * 3600 * 1000;
const ABSOLUTE_MS: i64 = 7 * 24 * 3600 * 1000;
/// A session's idle expiry is moved forward at most this often (one write per minute, not one
/// per request).
const TOUCH_EVERY_MS: i64 = 60 * 1000;
/// Largest form body a page posts.
const MAX_FORM_BYTES: usize = 256 * 1024;
const FREE_FAILURES: i64 = 3;
const MAX_DELAY_MS: i64 = 15 * 60 * 1000;

/// The signed-in session of a request, put in its extensions by [`require_session`].
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token_hash: String,
    pub csrf_token: String,
}

fn random_token() -> String {
    // The OS's generator failing is not something a request can recover from.
    crate::tokens::random_token().expect("the operating system's random generator failed")
}

/// A `Set-Cookie` value: path `/`, HttpOnly, SameSite=Lax, Secure when served over https.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Where to go after signing in: a path of this site only (never `//host`, never a URL).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

/// Guards the pages: without a live session a GET goes to the sign-in page (and comes back
/// after), anything else is refused; a form posted without its session's CSRF token is refused.
pub async fn require_session(
    State(state): State<Arc<AppState>>,
    ctx_lang: super::page::LangChoice,
    request: Request,
    next: Next,
) -> Response {
    let t = ctx_lang.0.catalogue();
    let now = now_ms();
    let session = match cookie(request.headers(), SESSION_COOKIE) {
        Some(token) => {
            let hash = token_hash(token);
            match state.store.ui_session(&hash, now).await {
                Ok(found) => found.map(|s| (hash, s)),
                Err(e) => {
                    tracing::error!(error = %e, "session lookup failed");
                    return plain_error(StatusCode::SERVICE_UNAVAILABLE, t.get("error.store"));
                }
            }
        }
        None => None,
    };
    let Some((hash, session)) = session else {
        if request.method() == Method::GET || request.method() == Method::HEAD {
            let wanted = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let target = format!(
                "/login?next={}",
                form_urlencoded::byte_serialize(wanted.as_bytes()).collect::<String>()
            );
            return Redirect::to(&target).into_response();
        }
        return plain_error(StatusCode::UNAUTHORIZED, t.get("error.signed-out"));
    };
    if now - session.last_seen_ms > TOUCH_EVERY_MS {
        let expires = (now + IDLE_MS).min(session.created_at_ms + ABSOLUTE_MS);
        if let Err(e) = state.store.touch_ui_session(&hash, now, expires).await {
            tracing::warn!(error = %e, "could not extend the session");
        }
    }
    let signed_in = SignedIn {
        token_hash: hash,
        csrf_token: session.csrf_token.clone(),
    };
    let mut request = request;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let (parts, body) = request.into_parts();
        let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return plain_error(StatusCode::PAYLOAD_TOO_LARGE, t.get("error.form-too-large"))
            }
        };
        let given = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        if !given.is_some_and(|g| same(&g, &session.csrf_token)) {
            return plain_error(StatusCode::FORBIDDEN, t.get("error.form-expired"));
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(signed_in);
    next.run(request).await
}

fn plain_error(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub ctx: Ctx,
    pub next: String,
    pub sign_in_csrf: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`: the sign-in form (or straight on, when already signed in).
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let live = match cookie(&headers, SESSION_COOKIE) {
        Some(token) => matches!(
            state.store.ui_session(&token_hash(token), now_ms()).await,
            Ok(Some(_))
        ),
        None => false,
    };
    if live {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    sign_in_form(
        &state,
        ctx,
        safe_next(q.next.as_deref()),
        None,
        StatusCode::OK,
    )
}

fn sign_in_form(
    state: &AppState,
    ctx: Ctx,
    next: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let token = random_token();
    let cookie = set_cookie(state, SIGN_IN_CSRF_COOKIE, &token, 3600);
    let mut response = render(LoginPage {
        ctx,
        next,
        sign_in_csrf: token,
        error,
    });
    *response.status_mut() = status;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let t: &Catalogue = ctx.t;
    let next = safe_next(form.next.as_deref());
    let cookie_token = cookie(&headers, SIGN_IN_CSRF_COOKIE).unwrap_or("");
    if cookie_token.is_empty() || !same(cookie_token, &form.csrf) {
        let e = t.get("login.expired").to_string();
        return sign_in_form(&state, ctx, next, Some(e), StatusCode::FORBIDDEN);
    }
    let now = now_ms();
    let failures = match state.store.sign_in_failures().await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "sign-in failures unreadable");
            return plain_error(StatusCode::SERVICE_UNAVAILABLE, t.get("error.store"));
        }
    };
    if failures.locked_until_ms > now {
        let wait = ((failures.locked_until_ms - now) + 999) / 1000;
        let e = t.fmt("login.wait", &[("seconds", &wait.to_string())]);
        return sign_in_form(&state, ctx, next, Some(e), StatusCode::TOO_MANY_REQUESTS);
    }
    let stored = match state.store.admin_password_hash().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "admin password unreadable");
            return plain_error(StatusCode::SERVICE_UNAVAILABLE, t.get("error.store"));
        }
    };
    let password = form.password;
    let matches = match stored {
        // argon2 is CPU work: off the async threads.
        Some(hash) => tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .unwrap_or(false),
        None => false,
    };
    if !matches {
        let failures = SignInFailures {
            failures: failures.failures + 1,
            last_failure_ms: now,
            locked_until_ms: now + delay_after(failures.failures + 1),
        };
        if let Err(e) = state.store.set_sign_in_failures(&failures).await {
            tracing::error!(error = %e, "could not count a wrong password");
        }
        tracing::warn!(
            failures = failures.failures,
            "sign-in with a wrong password"
        );
        let mut e = t.get("login.wrong").to_string();
        let wait = delay_after(failures.failures) / 1000;
        if wait > 0 {
            e = format!(
                "{e} {}",
                t.fmt("login.wait", &[("seconds", &wait.to_string())])
            );
        }
        return sign_in_form(&state, ctx, next, Some(e), StatusCode::UNAUTHORIZED);
    }
    let token = random_token();
    let session = UiSession {
        csrf_token: random_token(),
        created_at_ms: now,
        last_seen_ms: now,
        expires_at_ms: now + IDLE_MS,
    };
    let stored = async {
        state.store.clear_sign_in_failures().await?;
        state
            .store
            .create_ui_session(&token_hash(&token), &session)
            .await
    }
    .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "could not store the session");
        return plain_error(StatusCode::SERVICE_UNAVAILABLE, t.get("error.store"));
    }
    tracing::info!("administrator signed in");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &token, ABSOLUTE_MS / 1000),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, SIGN_IN_CSRF_COOKIE, "", 0),
    );
    response
}

/// The wait imposed after `failures` wrong passwords in a row.
pub fn delay_after(failures: i64) -> i64 {
    if failures <= FREE_FAILURES {
        return 0;
    }
    let exponent = (failures - FREE_FAILURES).min(20) as u32;
    (1000i64 << exponent).min(MAX_DELAY_MS)
}

/// `POST /logout`: ends the session (its CSRF token was checked by [`require_session`]).
pub async fn logout(
    State(state): State<Arc<AppState>>,
    axum::Extension(signed_in): axum::Extension<SignedIn>,
) -> Response {
    if let Err(e) = state.store.delete_ui_session(&signed_in.token_hash).await {
        tracing::error!(error = %e, "could not end the session");
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", 0),
    );
    response
}

/// Sets a first password when none is set, returning it so that the caller prints it once.
/// `None` when a password exists.
pub async fn ensure_admin_password(
    store: &callbridge_store::Store,
) -> Result<Option<String>, FirstPasswordError> {
    if store.admin_password_hash().await?.is_some() {
        return Ok(None);
    }
    let password = password::generate()?;
    let for_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&for_hash))
        .await
        .map_err(password::HashError::new)??;
    store.set_admin_password_hash(&hash, now_ms()).await?;
    Ok(Some(password))
}

#[derive(Debug, thiserror::Error)]
pub enum FirstPasswordError {
    #[error("admin password: {0}")]
    Store(#[from] callbridge_store::StoreError),
    #[error(transparent)]
    Hash(#[from] password::HashError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_after_three_wrong_passwords_and_is_capped() {
        assert_eq!(delay_after(1), 0);
        assert_eq!(delay_after(3), 0);
        assert_eq!(delay_after(4), 2_000);
        assert_eq!(delay_after(5), 4_000);
        assert_eq!(delay_after(12), 512_000);
        assert_eq!(delay_after(13), MAX_DELAY_MS);
        assert_eq!(delay_after(1_000_000), MAX_DELAY_MS);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/t/acme/settings/calls")),
            "/t/acme/settings/calls"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
