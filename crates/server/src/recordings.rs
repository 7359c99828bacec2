//! Recording links for CRM call notes.
//!
//! Mango's recording links expire, so a call note cannot carry one. It carries a link to
//! callbridge instead, `/recordings/{tenant}/{recording_id}?s=...`, which asks Mango for a fresh
//! link when someone presses play and redirects there. `s` is a signature over the tenant and the
//! recording id under the tenant's Mango salt, so the links cannot be guessed or enumerated.

use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use callbridge_mango::api::VpbxClient;
use callbridge_mango::sign::{sign, verify};
use std::collections::HashMap;
use std::sync::Arc;

/// What the signature is computed over: the Mango signing function, with a fixed label as its
/// key part so a recording signature can never pass as a webhook signature.
const LABEL: &str = "callbridge-recording:";

/// The link a call note carries for a recording.
pub fn link(public_url: &str, tenant_id: &str, recording_id: &str, salt: &str) -> String {
    let subject = format!("{tenant_id}/{recording_id}");
    let s = sign(LABEL, &subject, salt);
    let enc = |t: &str| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
    format!(
        "{}/recordings/{}/{}?s={s}",
        public_url.trim_end_matches('/'),
        enc(tenant_id),
        enc(recording_id)
    )
}

/// `GET /recordings/{tenant}/{recording_id}?s=...`: a redirect to Mango's current link.
pub async fn play(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, recording_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(tenant) = state.tenant(&tenant_id).await else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "unknown recording link",
            "no such tenant",
        )
        .into_response();
    };
    let subject = format!("{tenant_id}/{recording_id}");
    let given = query.get("s").map(String::as_str).unwrap_or("");
    if !verify(LABEL, &subject, &tenant.row.mango_api_salt, given) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "bad recording link",
            "the link's signature does not match",
        )
        .into_response();
    }
    let client = match VpbxClient::with_base_url(
        &state.mango_api_url,
        tenant.row.mango_api_key.clone(),
        tenant.row.mango_api_salt.clone(),
    ) {
        Ok(c) => c,
        Err(e) => {
            return Problem::new(StatusCode::BAD_GATEWAY, "Mango API", e.to_string())
                .into_response()
        }
    };
    match client.recording_link(&recording_id).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(e) => {
            tracing::warn!(tenant = %tenant_id, "recording link: {e}");
            Problem::new(StatusCode::BAD_GATEWAY, "Mango API", e.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_signed_per_tenant_and_recording() {
        let a = link("http://h:1/", "acme", "rec 1", "salt");
        assert!(a.starts_with("http://h:1/recordings/acme/rec+1?s="), "{a}");
        let s = a.split("s=").nth(1).unwrap();
        assert!(verify(LABEL, "acme/rec 1", "salt", s));
        assert!(!verify(LABEL, "acme/rec 2", "salt", s));
        assert!(!verify(LABEL, "acme/rec 1", "other", s));
    }
}
