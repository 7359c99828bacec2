//! OAuth 2.0: the consent screen (auto-approved) and the token endpoint with the
//! `authorization_code` and `refresh_token` grants.

use crate::input::{json_body, kind_of, Query};
use crate::model::{
    now_ms, now_secs, random_bytes, random_hex, AccessToken, AuthCode, RefreshToken,
};
use crate::respond::{hal, problem, ApiError, ApiResult};
use crate::server::{mask, Shared};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const CODE_TTL_MS: u64 = 20 * 60 * 1000;
const REFRESH_TTL_MS: u64 = 90 * 24 * 3600 * 1000;

/// `GET /oauth?client_id=..&state=..[&redirect_uri=..]`: amoCRM's consent screen with the human
/// left out. It approves at once and redirects to the integration's redirect URI with `code`,
/// `state`, `referer` (this sandbox's host) and `client_id`.
pub async fn authorize(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let Some(client_id) = query.get("client_id").filter(|s| !s.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Query parameter client_id is required",
        );
    };
    let location = {
        let mut st = shared.state();
        let Some(client) = st
            .oauth_clients
            .iter()
            .find(|c| c.client_id == client_id)
            .cloned()
        else {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("Unknown client_id {client_id:?}: no such integration in this account"),
            );
        };
        if let Some(asked) = query.get("redirect_uri").filter(|s| !s.is_empty()) {
            if asked != client.redirect_uri {
                return problem(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "redirect_uri {asked:?} is not the integration's redirect URI {:?}",
                        client.redirect_uri
                    ),
                );
            }
        }
        let code = format!("def50200{}", random_hex(64));
        let user_id = st.admin_id();
        st.prune_tokens(now_ms());
        st.codes.insert(
            code.clone(),
            AuthCode {
                client_id: client.client_id.clone(),
                user_id,
                expires_at_ms: now_ms().saturating_add(CODE_TTL_MS),
                used: false,
            },
        );
        st.touch();
        let host = shared.base_url.trim_start_matches("http://").to_owned();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.append_pair("code", &code);
        if let Some(state) = query.get("state") {
            ser.append_pair("state", state);
        }
        ser.append_pair("referer", &host);
        ser.append_pair("client_id", &client.client_id);
        let sep = if client.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", client.redirect_uri, ser.finish())
    };
    shared.save().await;
    let mut resp = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(&location) {
        Ok(location) => {
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The integration's redirect URI cannot be used in a Location header",
        ),
    }
}

/// A token request's fields by name.
type TokenFields = BTreeMap<String, String>;

/// The token request's fields, from a JSON object or a form.
fn token_fields(headers: &HeaderMap, body: &[u8]) -> Result<TokenFields, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("x-www-form-urlencoded"));
    if is_form {
        return Ok(form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect());
    }
    match json_body(body)? {
        Value::Object(map) => {
            let mut out = BTreeMap::new();
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        out.insert(k, s);
                    }
                    Value::Number(n) => {
                        out.insert(k, n.to_string());
                    }
                    Value::Null => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Field {k} must be a string, not {}",
                            kind_of(&other)
                        )))
                    }
                }
            }
            Ok(out)
        }
        other => Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, not {}",
            kind_of(&other)
        ))),
    }
}

fn invalid_request(field: &str) -> ApiError {
    ApiError::oauth(
        StatusCode::BAD_REQUEST,
        format!("The request is missing a required parameter: {field}"),
        format!("Check the `{field}` parameter"),
    )
}

/// `POST /oauth2/access_token`.
pub async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let fields = token_fields(&headers, &body)?;
    let field = |name: &str| -> Result<String, ApiError> {
        fields
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| invalid_request(name))
    };
    let grant_type = field("grant_type")?;
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        return Err(ApiError::oauth(
            StatusCode::BAD_REQUEST,
            format!("The authorization grant type {grant_type:?} is not supported by the authorization server"),
            "Check that all required parameters have been provided",
        ));
    }
    let client_id = field("client_id")?;
    let client_secret = field("client_secret")?;
    let response = {
        let mut st = shared.state();
        let now = now_ms();
        let client = st
            .oauth_clients
            .iter()
            .find(|c| c.client_id == client_id && c.client_secret == client_secret)
            .cloned()
            .ok_or_else(|| {
                tracing::info!(%client_id, "oauth: client authentication failed");
                ApiError::oauth(
                    StatusCode::UNAUTHORIZED,
                    "Client authentication failed",
                    "Client authentication failed: unknown client_id or wrong client_secret",
                )
            })?;
        let user_id = if grant_type == "authorization_code" {
            let code = field("code")?;
            let redirect_uri = field("redirect_uri")?;
            if redirect_uri != client.redirect_uri {
                return Err(ApiError::oauth(
                    StatusCode::BAD_REQUEST,
                    "Invalid redirect_uri",
                    "redirect_uri does not match the integration's redirect URI",
                ));
            }
            let Some(entry) = st.codes.get_mut(&code) else {
                return Err(ApiError::oauth(
                    StatusCode::BAD_REQUEST,
                    "The provided authorization grant is invalid",
                    "Cannot decrypt the authorization code",
                ));
            };
            if entry.client_id != client.client_id {
                return Err(ApiError::oauth(
                    StatusCode::BAD_REQUEST,
                    "The provided authorization grant is invalid",
                    "Authorization code was not issued to this client",
                ));
            }
            if entry.used {
                return Err(ApiError::oauth(
                    StatusCode::BAD_REQUEST,
                    "The provided authorization grant is invalid",
                    "Authorization code has been revoked",
                ));
            }
            if entry.expires_at_ms <= now {
                return Err(ApiError::oauth(
                    StatusCode::BAD_REQUEST,
                    "The provided authorization grant is invalid",
                    "Authorization code has expired",
                ));
            }
            entry.used = true;
            entry.user_id
        } else {
            let refresh = field("refresh_token")?;
            let revoked = || {
                ApiError::oauth(
                    StatusCode::UNAUTHORIZED,
                    "The refresh token is invalid.",
                    "Token has been revoked",
                )
            };
            let Some(entry) = st.refresh_tokens.get_mut(&refresh) else {
                tracing::info!(token = %mask(&refresh), "oauth: unknown refresh token");
                return Err(ApiError::oauth(
                    StatusCode::UNAUTHORIZED,
                    "The refresh token is invalid.",
                    "Cannot decrypt the refresh token",
                ));
            };
            if entry.client_id != client.client_id {
                return Err(ApiError::oauth(
                    StatusCode::UNAUTHORIZED,
                    "The refresh token is invalid.",
                    "Token is not linked to client",
                ));
            }
            if entry.used {
                tracing::info!(token = %mask(&refresh), "oauth: reused refresh token");
                return Err(revoked());
            }
            if entry.expires_at_ms <= now {
                return Err(ApiError::oauth(
                    StatusCode::UNAUTHORIZED,
                    "The refresh token is invalid.",
                    "Token has expired",
                ));
            }
            entry.used = true;
            entry.user_id
        };
        st.prune_tokens(now);
        let ttl = shared.access_token_ttl;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_at_ms = now.saturating_add(ttl_ms);
        let access = jwt(
            &client.client_id,
            user_id,
            st.account.id,
            expires_at_ms,
            &shared.base_url,
        );
        let refresh = format!("def50200{}", random_hex(96));
        st.access_tokens.insert(
            access.clone(),
            AccessToken {
                client_id: client.client_id.clone(),
                user_id,
                expires_at_ms,
            },
        );
        st.refresh_tokens.insert(
            refresh.clone(),
            RefreshToken {
                client_id: client.client_id.clone(),
                user_id,
                expires_at_ms: now.saturating_add(REFRESH_TTL_MS),
                used: false,
            },
        );
        st.touch();
        tracing::info!(%client_id, grant = %grant_type, "oauth: tokens issued");
        json!({
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "access_token": access,
            "refresh_token": refresh,
            "server_time": now_secs(),
        })
    };
    shared.save().await;
    Ok(hal(StatusCode::OK, &response))
}

/// A JWT-shaped access token. Clients read its `exp`; the sandbox itself checks tokens by
/// lookup, so the signature is random bytes.
fn jwt(
    client_id: &str,
    user_id: u64,
    account_id: u64,
    expires_at_ms: u64,
    base_url: &str,
) -> String {
    let now = now_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "jti": random_hex(20)});
    let claims = json!({
        "aud": client_id,
        "jti": random_hex(20),
        "iat": now,
        "nbf": now,
        "exp": expires_at_ms / 1000,
        "sub": user_id.to_string(),
        "grant_type": "",
        "account_id": account_id,
        "base_domain": "amocrm.ru",
        "version": 2,
        "scopes": ["crm", "notifications"],
        "api_domain": base_url.trim_start_matches("http://"),
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(random_bytes(64))
    )
}
