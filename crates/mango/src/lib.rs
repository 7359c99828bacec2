//! Mango Office VPBX wire format.
//!
//! Mango's cloud PBX POSTs every realtime event to `<base URL>/<path>` as an
//! `application/x-www-form-urlencoded` body with three fields: `vpbx_api_key`, `sign` and `json`
//! (the payload as a JSON string). This crate covers the two pure pieces of that:
//!
//! - [`webhook`]: the path and the `json` payload to a typed [`callbridge_core::PbxEvent`]
//!   ([`parse_event`] for the raw text, [`parse_value`] for an already decoded value), or
//!   [`Webhook::Ignored`] for paths the core does not use, or a [`WebhookError`] naming the
//!   field at fault.
//! - [`sign`](mod@sign): `sha256(vpbx_api_key + json + vpbx_api_salt)` as lower-case hex, and its
//!   constant-time check ([`verify`]).
//! - [`plausible`]: bounds a parsed event must keep before it is stored (times from 2000 to a
//!   day past the caller's clock, text at most 128 characters without control characters),
//!   [`check_plausible`].
//!
//! No I/O here: the HTTP server and the `simulate` command live elsewhere.

pub mod api;
pub mod plausible;
pub mod recover;
pub mod sign;
pub mod webhook;
pub mod wire;

pub use plausible::check_plausible;
pub use sign::{sign, verify};
pub use webhook::{
    is_event_path, normalize_path, parse_event, parse_value, Webhook, WebhookError, WebhookForm,
};
