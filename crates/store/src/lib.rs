//! callbridge's persistence, behind one type for both backends.
//!
//! - **Event log**: every accepted webhook, raw, with its entry id and a dedupe key; appended
//!   durably before the PBX gets its 200. Concurrent appends are committed together (group
//!   commit), so one fsync serves many requests.
//! - **Entries**: one row per planned entry, holding its plan. Inserting the row is the
//!   exactly-once gate: the plan and its outbox items are written in the same transaction, and a
//!   second planner (another instance, or a replay after a crash) finds the row and writes
//!   nothing.
//! - **Outbox**: the CRM work of each plan, with a stable idempotency key per item.
//! - **Tenants**: PBX account + CRM account + settings.
//!
//! SQLite (embedded, WAL) is the default; a `postgres://` URL selects PostgreSQL. The SQL is
//! written once, with `$n` placeholders both engines accept.

mod appender;
mod arrivals;
mod backup;
mod card_links;
mod data_dir;
mod db;
mod entries;
mod events;
mod journal;
mod outbox;
mod reconcile;
mod schema;
mod secrets;
mod settings_versions;
mod tenant_meta;
mod tenants;
mod ui_auth;
mod unsorted_requests;
mod webhook_status;
mod writer;

pub use appender::{sink, Appender, Committed, Sink, SinkReceiver};
pub use arrivals::LastReceived;
pub use backup::{backup_sqlite, BackupReport};
pub use card_links::{CardLink, NewCardLink};
pub use data_dir::DataDirLock;
pub use db::{redact, Db};
pub use entries::{NewOutboxItem, NewPlan, StoredEntry};
pub use events::{Appended, NewEvent, StoredEvent};
pub use journal::{DeliveryFilter, EntryWithEvents, JournalFilter, JournalPage, JOURNAL_COUNT_CAP};
pub use outbox::{AddedItem, CrmStatus, Lane, OAuthState, OutboxCounts, OutboxItem};
pub use secrets::{KeyError, Keyring, SecretKey, Unlocked, CRM_SECRET_FIELDS};
pub use settings_versions::SettingsVersion;
pub use tenant_meta::CreateTenantError;
pub use tenants::TenantRow;
pub use ui_auth::{SignInFailures, UiSession};
pub use unsorted_requests::UnsortedRequest;
pub use webhook_status::WebhookRefusal;
pub use writer::{WriteHealth, PROBE_BYTES};

pub(crate) use arrivals::WeakStore;
pub(crate) use db::with_db;
pub(crate) use writer::{with_writer, Writer};

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invalid database URL {url:?}: {problem}")]
    Url { url: String, problem: String },
    #[error("the event log writer has stopped")]
    AppenderStopped,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("the secret key (id {given}) is not the one the database's secrets are encrypted with (id {stored}); configure that key, or give it as a previous key to rotate to the new one")]
    WrongSecretKey { stored: String, given: String },
    #[error("the event log could not store the event: {0}")]
    AppendFailed(String),
    #[error(
        "the store's schema is version {stored}, newer than this callbridge knows ({known}): it \
         was upgraded by a newer release; run that release, or restore the backup taken before \
         the upgrade"
    )]
    NewerSchema { stored: i64, known: i64 },
    #[error("backup: {0}")]
    Backup(String),
    #[error("data folder {path}: {problem}")]
    DataDir { path: String, problem: String },
    #[error(
        "data folder lock {path} is held by {holder}: only one callbridge serve may use a SQLite \
         data folder; to run several instances, give them one PostgreSQL database (database_url)"
    )]
    Locked { path: String, holder: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// SQLite only: the one connection every event-log and plan write goes through.
    writer: Option<Arc<tokio::sync::Mutex<Writer>>>,
    /// Whether the last write succeeded: what `/readyz` reports.
    health: Arc<WriteHealth>,
    /// The keys secrets at rest are sealed with, set by [`Store::unlock_secrets`].
    secrets: Arc<std::sync::OnceLock<Keyring>>,
    /// Per tenant, the events this store appended since they were last added to
    /// `tenant_arrivals` (see `arrivals.rs`).
    arrivals: Arc<arrivals::ArrivalTallies>,
}
