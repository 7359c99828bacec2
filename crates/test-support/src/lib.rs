//! What callbridge's tests write once and share (a dev-dependency only, never linked into the
//! service): a seeded generator, a fresh PostgreSQL database per test, a small tmpfs for
//! full-disk tests, waiting for a condition instead of sleeping a fixed time, and the
//! configuration file of a service started in process, and figures a test measured.

mod figures;
mod postgres;
mod rng;
mod service_config;
mod tmpfs;
mod wait;

pub use figures::{note_figures, FIGURES_LOG_VAR};
pub use postgres::{
    drop_postgres_database, fresh_postgres_database, postgres_admin_url, postgres_text_rows,
    POSTGRES_URL_VAR,
};
pub use rng::SeededRng;
pub use service_config::{one_tenant_config, TestTenant};
pub use tmpfs::Tmpfs;
pub use wait::{wait_until, wait_until_async};
