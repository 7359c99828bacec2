//! amoCRM / Kommo API v4 client: the requests callbridge makes to write calls into the CRM
//! (calls, call notes, contacts, leads, unsorted SIP leads, tasks, the incoming-call card) and
//! the reads it needs (account, users, pipelines, contacts by phone, leads, notes, tasks).
//!
//! One [`AmoClient`] per CRM account, shared (it is a cheap clone of an `Arc`) by every kind of
//! work for that account: the rate limiter, the token cache and the refresh lock live inside it,
//! and each of them only protects the account if every request goes through the same one.
//!
//! # The rate limiter's guarantee
//!
//! amoCRM allows 7 requests per second; excess gets 429, and repeated excess gets the account's
//! API access blocked (every request 403) until amoCRM support lifts it. So the limiter is a
//! **sliding window**, not a token bucket: it keeps the last `requests_per_second` requests'
//! places, and lets the next one go only once the oldest of them is more than a window old
//! ([`RATE_WINDOW`] + [`RATE_WINDOW_MARGIN`], 1.01 s). A request's place counts from when its
//! answer began to arrive, not from when it left: by then amoCRM certainly had it, so however a
//! request was delayed on the way (a loaded machine, a slow network), **no window of one second
//! at amoCRM's end ever holds more than `requests_per_second` of this client's requests**,
//! whatever the number of concurrent callers. (A bucket with a burst of N would let 2N through
//! across a
//! second boundary.) Waiting callers are served first come, first served.
//!
//! Every request counts, token refreshes and code exchanges included. A 429 pauses the whole
//! account: nothing is let go for [`COOLDOWN_INITIAL`] (1 s), doubling on each further 429 in
//! a row up to [`COOLDOWN_MAX`] (30 s); the request that got the 429 returns
//! [`Error::RateLimited`] and the caller retries (its retry waits out the pause by itself). 429s
//! for requests that were already on their way when a pause began count as one.
//!
//! # OAuth and the refresh ordering
//!
//! With [`AuthConfig::LongLived`] the token is sent as is; a 401 is [`Error::Unauthorized`] at
//! once (there is nothing to refresh).
//!
//! With [`AuthConfig::OAuth`] the tokens live in a [`TokenStore`]. The access token is
//! refreshed when it is within 60 s of `expires_at`, or once after a 401 (a second 401 is
//! [`Error::Unauthorized`]). amoCRM's refresh tokens are **single-use**: a refresh returns a new
//! pair and the old refresh token stops working. Therefore:
//!
//! 1. **Only one refresh per account is in flight.** Refreshes (and code exchanges) hold one
//!    lock; a caller that queued behind a refresh re-reads the store and, finding tokens other
//!    than the stale ones it had, uses them without asking the CRM again.
//! 2. **The new pair is saved before the new access token is used.** The refresh writes the pair
//!    to the store, and only after the store confirmed does any request (this one or another)
//!    get the new access token. If the process dies between the CRM's answer and the save, the
//!    connection needs re-authorization, but it can never end with the only valid refresh token
//!    held in memory while requests already run on the new access token.
//! 3. A refresh token the CRM refuses (`401 "Token has been revoked"`, also after another client
//!    used it) is [`Error::Unauthorized`]: the connection is broken until someone re-authorizes
//!    ([`AmoClient::exchange_code`]). The refused token is not sent again.
//!
//! # Errors and answers
//!
//! [`Error::is_retryable`] separates what a later retry can fix (429, 5xx, timeouts, transport)
//! from what it cannot (403 blocks, 401s, the CRM's refusals, malformed answers). 204 is an
//! empty list, lists follow `_links.next` page by page, problem+json `validation-errors` are
//! mapped to items by `request_id`, HTML bodies of 429/403 are fine, batch writes take at most
//! [`MAX_BATCH`] items, and no answer can make the client panic: what cannot be understood is an
//! [`Error::Decode`] naming the endpoint and the JSON path. Tokens, the client secret and
//! authorization codes are never logged, never put in an error, and hidden by every `Debug`.
//! Requests carry `User-Agent: callbridge/<version>`.

mod client;
mod config;
mod error;
mod limiter;
mod model;
mod phone;
mod tokens;
mod wire;

pub use client::{
    shared_http_client, AmoClient, MAX_BATCH, MAX_PAGES, PAGE_LIMIT, REFRESH_BEFORE_EXPIRY_SECS,
    REFRESH_TOKEN_LIFETIME_SECS, SCHEDULED_REFRESH_AFTER_SECS,
};
pub use config::{
    account_origin, AccountConfig, AuthConfig, OriginError, ACCOUNT_HOST_SUFFIXES,
    DEFAULT_REQUESTS_PER_SECOND, DEFAULT_TIMEOUT,
};
pub use error::{Error, ItemError};
pub use limiter::{
    AccountLimiter, COOLDOWN_INITIAL, COOLDOWN_MAX, RATE_WINDOW, RATE_WINDOW_MARGIN,
};
pub use model::*;
pub use phone::same_phone_number;
pub use tokens::{MemoryTokenStore, OAuthTokens, TokenStore, TokenStoreError};
