//! Recording links for CRM call notes.
//!
//! Mango's recording links expire, so a call note cannot carry one. It carries a link to
//! callbridge instead, `/recordings/{tenant}/{recording_id}/{e}/{s}.mp3`, which asks Mango for a
//! fresh link when someone presses play and redirects there. The link ends in `.mp3` because
//! amoCRM's note player plays mp3 links only (and decides by the link's ending); links of the
//! earlier form `/recordings/{tenant}/{recording_id}?e=UNIX&s=...`, already in call notes, are
//! still honoured. `s` is a signature over the tenant,
//! the recording id and the expiry `e` (Unix seconds) under the tenant's Mango salt, so the links
//! cannot be guessed, enumerated or prolonged. A call note keeps its link for ever, so the
//! lifetime (`recording_link_days`, default 365) is long; an expired link answers 410 Gone.
//!
//! A caller who has not proved the link (a wrong or missing signature) gets the same 403
//! whether the tenant exists or not, so the route does not tell which tenant ids exist. Links of
//! the first format (no `e`) are refused like any unsigned link.

use crate::error::RecordingError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use callbridge_mango::sign::{sign, verify};
use std::collections::HashMap;
use std::sync::Arc;

/// What the signature is computed over: the Mango signing function, with a fixed label as its
/// key part so a recording signature can never pass as a webhook signature.
const LABEL: &str = "callbridge-recording-v2:";

/// Default lifetime of a recording link, in days.
pub const DEFAULT_LINK_DAYS: u64 = 365;

fn subject(tenant_id: &str, recording_id: &str, expires_at: i64) -> String {
    format!("{tenant_id}/{recording_id}/{expires_at}")
}

/// When a link made now expires (Unix seconds), for a lifetime of `days`.
pub fn expiry(now_ms: i64, days: u64) -> i64 {
    (now_ms / 1000).saturating_add((days.saturating_mul(86_400)).min(i64::MAX as u64) as i64)
}

/// The link a call note carries for a recording, valid until `expires_at` (Unix seconds).
pub fn link(
    public_url: &str,
    tenant_id: &str,
    recording_id: &str,
    salt: &str,
    expires_at: i64,
) -> String {
    let s = sign(LABEL, &subject(tenant_id, recording_id, expires_at), salt);
    // Path segments: a space must be %20 there (form encoding's `+` would stay a plus).
    let enc = |t: &str| {
        form_urlencoded::byte_serialize(t.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "{}/recordings/{}/{}/{expires_at}/{s}.mp3",
        public_url.trim_end_matches('/'),
        enc(tenant_id),
        enc(recording_id)
    )
}

/// Why a link is not honoured.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    /// Not signed by this service for this tenant (or no such tenant): the caller proved nothing.
    BadSignature,
    /// Signed, but its time is up.
    Expired,
}

/// Checks a link's query against the tenant's salt (`None`: no such tenant) at `now_s`. The
/// signature is checked first, so only a holder of a genuine link learns that it expired.
pub fn check(
    tenant_id: &str,
    recording_id: &str,
    salt: Option<&str>,
    query: &HashMap<String, String>,
    now_s: i64,
) -> Result<(), LinkError> {
    let expires_at = query.get("e").and_then(|e| e.parse::<i64>().ok());
    let given = query.get("s").map(String::as_str).unwrap_or("");
    // An unknown tenant is checked against a salt nobody has, so it costs the same and fails the
    // same as a wrong signature.
    let known = salt.is_some();
    let salt = salt.unwrap_or("no such tenant");
    let subject = subject(tenant_id, recording_id, expires_at.unwrap_or(0));
    let genuine = verify(LABEL, &subject, salt, given);
    match expires_at {
        Some(e) if genuine && known => {
            if now_s > e {
                Err(LinkError::Expired)
            } else {
                Ok(())
            }
        }
        _ => Err(LinkError::BadSignature),
    }
}

/// `GET /recordings/{tenant}/{recording_id}/{e}/{s}.mp3`: a redirect to Mango's current link.
pub async fn play_mp3(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, recording_id, expires_at, file)): Path<(String, String, String, String)>,
) -> Result<Response, RecordingError> {
    // Without the ending the signature is left empty: refused like any unsigned link.
    let signature = file.strip_suffix(".mp3").unwrap_or_default();
    let query: HashMap<String, String> = [
        ("e".to_string(), expires_at),
        ("s".to_string(), signature.to_string()),
    ]
    .into_iter()
    .collect();
    play(State(state), Path((tenant_id, recording_id)), Query(query)).await
}

/// `GET /recordings/{tenant}/{recording_id}?e=...&s=...` (the earlier link form, still in call
/// notes): a redirect to Mango's current link.
pub async fn play(
    State(state): State<Arc<AppState>>,
    Path((tenant_id, recording_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, RecordingError> {
    let tenant = state.tenant(&tenant_id).await;
    let salt = tenant.as_ref().map(|t| t.row.mango_api_salt.as_str());
    let now_s = crate::state::now_ms() / 1000;
    check(&tenant_id, &recording_id, salt, &query, now_s)?;
    let tenant = tenant.ok_or(RecordingError::BadLink)?;
    let url = fresh_link(&state, &tenant, &recording_id)
        .await
        .map_err(RecordingError::MangoApi)?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// A fresh, short-lived link to play a tenant's recording, from Mango's VPBX API (a failure is
/// logged here): what a call note's link redirects to and what the journal's player streams.
pub async fn fresh_link(
    state: &AppState,
    tenant: &crate::state::Tenant,
    recording_id: &str,
) -> Result<String, callbridge_mango::api::ApiError> {
    let client = state.vpbx_clients.client(
        &state.mango_api_url,
        &tenant.row.mango_api_key,
        &tenant.row.mango_api_salt,
    )?;
    client.recording_link(recording_id).await.inspect_err(|e| {
        tracing::warn!(tenant = %tenant.row.id, recording = recording_id, "recording link: {e}");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `e` and `s` a link carries in its last two path segments, as [`play_mp3`] reads them.
    fn query_of(link: &str) -> HashMap<String, String> {
        let mut segments = link.rsplit('/');
        let file = segments.next().unwrap();
        let e = segments.next().unwrap();
        let s = file.strip_suffix(".mp3").expect("the link ends in .mp3");
        [
            ("e".to_string(), e.to_string()),
            ("s".to_string(), s.to_string()),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn links_are_signed_per_tenant_recording_and_expiry() {
        let a = link("http://h:1/", "acme", "rec 1", "salt", 2_000);
        assert!(
            a.starts_with("http://h:1/recordings/acme/rec%201/2000/"),
            "{a}"
        );
        assert!(a.ends_with(".mp3"), "the CRM's player takes mp3 links: {a}");
        let q = query_of(&a);
        assert_eq!(check("acme", "rec 1", Some("salt"), &q, 1_000), Ok(()));
        assert_eq!(check("acme", "rec 1", Some("salt"), &q, 2_000), Ok(()));
        for (tenant, rec, salt) in [
            ("acme", "rec 2", "salt"),
            ("other", "rec 1", "salt"),
            ("acme", "rec 1", "other"),
        ] {
            assert_eq!(
                check(tenant, rec, Some(salt), &q, 1_000),
                Err(LinkError::BadSignature)
            );
        }
        // Prolonging the link by editing `e` breaks the signature.
        let mut longer = q.clone();
        longer.insert("e".into(), "9999999999".into());
        assert_eq!(
            check("acme", "rec 1", Some("salt"), &longer, 1_000),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn an_expired_link_is_told_apart_only_when_genuine() {
        let q = query_of(&link("http://h", "acme", "r", "salt", 2_000));
        assert_eq!(
            check("acme", "r", Some("salt"), &q, 2_001),
            Err(LinkError::Expired)
        );
        assert_eq!(
            check("acme", "r", None, &q, 2_001),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn links_without_an_expiry_are_refused() {
        let s = sign("callbridge-recording:", "acme/r", "salt");
        let q: HashMap<String, String> = [("s".to_string(), s)].into_iter().collect();
        assert_eq!(
            check("acme", "r", Some("salt"), &q, 0),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn expiry_counts_days_from_now() {
        assert_eq!(expiry(1_000_000, 1), 1_000 + 86_400);
        assert_eq!(expiry(0, u64::MAX), i64::MAX);
    }
}
