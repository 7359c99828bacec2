//! What every page is rendered with: the language and its catalogue, the session's CSRF token,
//! the tenants for the switcher, and the current tenant; plus the response helpers pages share.

use super::i18n::{Catalogue, Lang};
use super::session::{set_cookie, SignedIn};
use crate::state::AppState;
use crate::tokens::cookie;
use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::convert::Infallible;
use std::sync::Arc;

pub const LANG_COOKIE: &str = "callbridge_lang";

/// The language of a request: the `callbridge_lang` cookie (set by the switch), else the
/// browser's `Accept-Language`, else Russian (most owners on Mango and amoCRM read it).
#[derive(Debug, Clone, Copy)]
pub struct LangChoice(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for LangChoice {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let from_cookie = cookie(&parts.headers, LANG_COOKIE).and_then(Lang::parse);
        let from_browser = || {
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        };
        Ok(LangChoice(
            from_cookie.or_else(from_browser).unwrap_or(Lang::Ru),
        ))
    }
}

/// A tenant in the header's switcher.
#[derive(Debug, Clone)]
pub struct TenantChoice {
    pub id: String,
    pub current: bool,
}

/// The frame of every page.
pub struct Ctx {
    pub t: &'static Catalogue,
    pub lang: Lang,
    pub signed_in: bool,
    /// The session's CSRF token, for every form (empty when signed out).
    pub csrf: String,
    pub tenants: Vec<TenantChoice>,
    /// The tenant the page is about (`/t/{tenant}/…`), when it exists.
    pub tenant: Option<String>,
    /// The request's path, for the language switch's links and the switcher's target.
    pub path: String,
    /// Which section of the header is current: "journal", "settings", "connections", "tenants"
    /// or "".
    pub section: &'static str,
    /// Shown above a tenant's pages when the configuration file defines the tenant.
    pub file_banner: Option<String>,
    /// What stops the tenant's calls reaching the CRM, each with the page that fixes it.
    pub banners: Vec<super::banners::Banner>,
}

impl Ctx {
    /// The link that shows this page in `lang`.
    pub fn lang_link(&self, lang: &Lang) -> String {
        format!("{}?lang={}", self.path, lang.code())
    }

    pub fn other_langs(&self) -> Vec<Lang> {
        Lang::ALL.into_iter().collect()
    }

    pub fn is_lang(&self, lang: &Lang) -> bool {
        *lang == self.lang
    }

    pub fn tenant_id(&self) -> &str {
        self.tenant.as_deref().unwrap_or("")
    }
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Infallible> {
        let LangChoice(lang) = LangChoice::from_request_parts(parts, state).await?;
        let signed_in = parts.extensions.get::<SignedIn>().cloned();
        let path = parts.uri.path().to_string();
        let mut segments = path.trim_start_matches('/').split('/');
        let in_path = match (segments.next(), segments.next()) {
            (Some("t"), Some(id)) if !id.is_empty() => Some(id.to_string()),
            _ => None,
        };
        let section = match segments.next() {
            Some("settings") => "settings",
            Some("connections") => "connections",
            Some("journal") => "journal",
            _ if path.starts_with("/tenants") => "tenants",
            _ => "",
        };
        let mut ids: Vec<String> = if signed_in.is_some() {
            state.tenants.read().await.keys().cloned().collect()
        } else {
            Vec::new()
        };
        ids.sort();
        let tenant = in_path.filter(|id| ids.contains(id));
        let tenants = ids
            .into_iter()
            .map(|id| TenantChoice {
                current: tenant.as_deref() == Some(id.as_str()),
                id,
            })
            .collect();
        let mut ctx = Ctx {
            t: lang.catalogue(),
            lang,
            signed_in: signed_in.is_some(),
            csrf: signed_in.map(|s| s.csrf_token).unwrap_or_default(),
            tenants,
            tenant,
            path,
            section,
            file_banner: None,
            banners: Vec::new(),
        };
        ctx.file_banner = super::tenants::file_banner(state, &ctx);
        if let Some(tenant) = ctx.tenant.as_deref() {
            if let Some(tenant) = state.tenant(tenant).await {
                ctx.banners = super::banners::for_tenant(state, ctx.t, &tenant).await;
            }
        }
        Ok(ctx)
    }
}

/// A Unix time in milliseconds as the pages show it, `YYYY-MM-DD HH:MM UTC`; with `seconds`,
/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_time(ms: i64, seconds: bool) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let date = callbridge_core::policy::civil_date(days);
    let (hour, minute) = (rest / 3600, rest % 3600 / 60);
    if seconds {
        format!("{date} {hour:02}:{minute:02}:{:02} UTC", rest % 60)
    } else {
        format!("{date} {hour:02}:{minute:02} UTC")
    }
}

/// Renders a page; a template failure is logged and answered 500 (never a half page).
pub fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub ctx: Ctx,
    pub title: String,
    pub text: String,
}

/// A page that only says something (not found, refused), with its status.
pub fn message(ctx: Ctx, status: StatusCode, title_key: &str, text: String) -> Response {
    let title = ctx.t.get(title_key).to_string();
    let mut response = render(MessagePage { ctx, title, text });
    *response.status_mut() = status;
    response
}

/// The page of a tenant that does not exist.
pub fn no_tenant(ctx: Ctx, id: &str) -> Response {
    let text = ctx.t.fmt("error.no-tenant", &[("tenant", id)]);
    message(ctx, StatusCode::NOT_FOUND, "error.not-found", text)
}

/// `?lang=xx` on any page: remembers the choice in a cookie and shows the same page without
/// the parameter.
pub async fn language_switch(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let chosen = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(code) = chosen {
        if let Some(lang) = Lang::parse(&code) {
            let rest: Vec<(String, String)> = request
                .uri()
                .query()
                .map(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .filter(|(k, _)| k != "lang")
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let mut target = request.uri().path().to_string();
            if !rest.is_empty() {
                target.push('?');
                target.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(rest)
                        .finish(),
                );
            }
            let mut response = Redirect::to(&target).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&state, LANG_COOKIE, lang.code(), 365 * 24 * 3600),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Headers every UI response carries: no framing (clickjacking), no sniffing, no referrer to
/// other sites, scripts and styles from this site only, and no caching of pages holding
/// tenant data.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn times_read_as_utc_calendar_dates() {
        assert_eq!(utc_time(0, false), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(1_764_000_000_000, false), "2025-11-24 16:00 UTC");
        assert_eq!(utc_time(951_782_400_000, false), "2000-02-29 00:00 UTC");
        assert_eq!(utc_time(0, true), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_764_924_371_000, true), "2025-12-05 08:46:11 UTC");
        assert_eq!(utc_time(951_782_400_000, true), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(4_102_444_799_999, true), "2099-12-31 23:59:59 UTC");
    }
}
