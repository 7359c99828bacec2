//! A Mango Office emulator for tests, benchmarks and the demo: both directions of what the cloud
//! PBX does for callbridge, over real HTTP.
//!
//! - [`start_vpbx_api`]: the VPBX API callbridge calls (employees, groups, recording links to
//!   real MP3 files, speech-analytics transcripts, two-step CSV statistics), with Mango's
//!   signature checks, error codes and per-endpoint rate limits ([`api`]).
//! - [`play`]: realistic office traffic from `callbridge-traffic`, posted as signed webhooks at
//!   the moment each event happens, with Mango's habits (duplicates, reordering, lost
//!   summaries, retries on 5xx) ([`player`]).
//! - [`Vpbx`]: the emulated PBX between the two: the office's staff and what the PBX knows of
//!   the calls played so far. The player tells it every event; the API answers from it.
//!
//! The office is the one the traffic generator makes for a seed ([`office_staff`]), so the
//! directory callbridge loads matches the calls it receives, and [`Staff::settings_toml`]
//! gives the tenant settings that map it.
//!
//! [`Staff::settings_toml`]: callbridge_traffic::Staff::settings_toml

pub mod api;
mod mp3;
pub mod player;
pub mod vpbx;

pub use api::{start_vpbx_api, ApiStats, Limit, RateLimits, VpbxApi, VpbxConfig};
pub use player::{play, EntryTiming, PlayConfig, PlayProgress, PlayReport};
pub use vpbx::{office_staff, CallRow, GroupInfo, RecordingInfo, Transcript, Vpbx};

/// What went wrong in the emulator. No variant holds a salt.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A configuration value is unusable; `field` names it.
    #[error("invalid {field}: {problem}")]
    Config {
        field: &'static str,
        problem: String,
    },
    /// Serving failed (the listener, the server task).
    #[error("VPBX API server: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built or a URL could not be formed.
    #[error("webhook client: {0}")]
    Client(String),
    /// The connection check found nothing listening at the webhook URL.
    #[error("the webhook receiver at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The connection check (an empty POST) was not acknowledged.
    #[error("the webhook receiver at {url} answered HTTP {status} to Mango's connection check (an empty POST); is the tenant in the URL right?")]
    PingRefused { url: String, status: u16 },
    /// The traffic would use another office than the VPBX serves.
    #[error("the traffic of seed {seed} comes from another office than the VPBX serves; build the VPBX with Vpbx::for_office(seed, staff) using the play's seed and staff")]
    StaffMismatch { seed: u64 },
}
