//! How the emulated API behaves (rate limits, blocking, link lifetime) and what it has seen.

use super::*;

/// At most `requests` requests in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub per: Duration,
}

impl Limit {
    pub const fn new(requests: u32, per: Duration) -> Limit {
        Limit { requests, per }
    }
}

/// Per-endpoint request limits for the one emulated product. `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `config/users/request`: 1 per 2 s.
    pub users: Option<Limit>,
    /// `stats/request`: 1 per 2 s.
    pub stats_request: Option<Limit>,
    /// `stats/result`: no limit per product, 50 per second in total.
    pub stats_result: Option<Limit>,
    /// `queries/recording/post` ("recording access"): 10 per second.
    pub recording: Option<Limit>,
    /// Every other endpoint (`groups`, `queries/recording_transcripts`): the general 10 per
    /// second.
    pub other: Option<Limit>,
}

impl RateLimits {
    /// Mango's documented limits.
    pub const fn documented() -> RateLimits {
        RateLimits {
            users: Some(Limit::new(1, Duration::from_secs(2))),
            stats_request: Some(Limit::new(1, Duration::from_secs(2))),
            stats_result: Some(Limit::new(50, Duration::from_secs(1))),
            recording: Some(Limit::new(10, Duration::from_secs(1))),
            other: Some(Limit::new(10, Duration::from_secs(1))),
        }
    }

    /// No limits at all.
    pub const fn none() -> RateLimits {
        RateLimits {
            users: None,
            stats_request: None,
            stats_result: None,
            recording: None,
            other: None,
        }
    }

    pub(super) fn of(&self, endpoint: Endpoint) -> Option<Limit> {
        match endpoint {
            Endpoint::Users => self.users,
            Endpoint::StatsRequest => self.stats_request,
            Endpoint::StatsResult => self.stats_result,
            Endpoint::Recording => self.recording,
            Endpoint::Groups | Endpoint::Transcripts => self.other,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::documented()
    }
}

/// How the API server behaves.
#[derive(Clone)]
pub struct VpbxConfig {
    pub api_key: String,
    /// Never sent, never logged.
    pub api_salt: String,
    /// The emulated PBX: staff for users and groups, recordings, statistics.
    pub vpbx: Vpbx,
    pub limits: RateLimits,
    /// A second invalid request (bad key, signature, format or parameters) within this long of
    /// the previous one blocks the key for this long, as Mango does ("1 per 2 minutes").
    /// `None`: never block.
    pub invalid_block: Option<Duration>,
    /// How long a `stats/request` takes to prepare (`stats/result` answers 204 until then).
    pub stats_delay: Duration,
    /// How long a prepared statistics key stays valid.
    pub stats_ttl: Duration,
    /// One statistics key may be polled (`stats/result`) at most once per this long ("не чаще
    /// раза в 5 секунд"); a sooner poll gets Mango's 429. Tests shorten it.
    pub stats_poll_interval: Duration,
    /// How long a recording link works.
    pub link_ttl: Duration,
}

impl VpbxConfig {
    /// Mango's documented behaviour: its rate limits, the two-minute block, 1 s to prepare
    /// statistics, a key polled at most once per 5 s, ten-minute keys and links.
    pub fn new(api_key: impl Into<String>, api_salt: impl Into<String>, vpbx: Vpbx) -> Self {
        VpbxConfig {
            api_key: api_key.into(),
            api_salt: api_salt.into(),
            vpbx,
            limits: RateLimits::documented(),
            invalid_block: Some(Duration::from_secs(120)),
            stats_delay: Duration::from_secs(1),
            stats_ttl: Duration::from_secs(600),
            stats_poll_interval: Duration::from_secs(5),
            link_ttl: Duration::from_secs(600),
        }
    }
}

impl fmt::Debug for VpbxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpbxConfig")
            .field("api_key", &mask(&self.api_key))
            .field("api_salt", &"***")
            .field("vpbx", &self.vpbx)
            .field("limits", &self.limits)
            .field("invalid_block", &self.invalid_block)
            .field("stats_delay", &self.stats_delay)
            .field("stats_ttl", &self.stats_ttl)
            .field("stats_poll_interval", &self.stats_poll_interval)
            .field("link_ttl", &self.link_ttl)
            .finish()
    }
}

/// The first four characters of a secret, for logs.
pub(crate) fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}…")
}

/// What the server has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    /// Requests by endpoint (every arrival, whatever the answer).
    pub requests: BTreeMap<String, u64>,
    /// Requests answered successfully, by endpoint.
    pub answered: BTreeMap<String, u64>,
    /// Requests refused for exceeding the endpoint's rate limit, by endpoint.
    pub rate_limited: BTreeMap<String, u64>,
    /// All rate-limit violations.
    pub rate_limit_violations: u64,
    /// Requests with the right key and a wrong signature.
    pub bad_signatures: u64,
    /// Requests with an unknown `vpbx_api_key`.
    pub unknown_keys: u64,
    /// Requests missing a field, with unreadable JSON or bad parameters.
    pub malformed: u64,
    /// Requests refused because their key was blocked.
    pub blocked: u64,
    /// Requests to paths that are not an API endpoint.
    pub unknown_endpoints: u64,
    /// Recording links handed out.
    pub recording_links: u64,
    /// Recording requests for unknown or not yet available recordings.
    pub recordings_not_found: u64,
    /// MP3 downloads served (full or partial).
    pub files_served: u64,
    /// Statistics requests accepted.
    pub stats_requests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_secrets_show_four_characters() {
        assert_eq!(mask("abcdefgh"), "abcd…");
        assert_eq!(mask("ab"), "ab…");
        let vpbx = Vpbx::new(crate::vpbx::office_staff(1, &Default::default()));
        let shown = format!("{:?}", VpbxConfig::new("key-123456", "salt-secret", vpbx));
        assert!(
            !shown.contains("salt-secret") && !shown.contains("key-123456"),
            "{shown}"
        );
    }
}
