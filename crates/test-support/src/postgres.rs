//! A fresh PostgreSQL database per test, on the server named by `CALLBRIDGE_TEST_POSTGRES_URL`.

use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the PostgreSQL the tests use (`scripts/test.sh` always sets it).
pub const POSTGRES_URL_VAR: &str = "CALLBRIDGE_TEST_POSTGRES_URL";

/// The administrative URL of the tests' PostgreSQL. Panics when it is unset: the PostgreSQL
/// tests are never skipped.
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: run the tests with `bash scripts/test.sh`, which \
             finds or starts a PostgreSQL (the PostgreSQL tests are never skipped)"
        )
    })
}

/// Creates an empty database (dropping one left by an earlier run) and returns its URL. Its name
/// is `cb_<label>_<process>_<n>`, unique across the tests of one run; `label` is lowercase
/// letters, digits and `_`.
///
/// Blocking, and safe to call from async tests too: the work runs on a thread of its own.
pub fn fresh_postgres_database(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("cb_{label}_{}_{n}", std::process::id());
    assert!(
        name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "not a PostgreSQL database name: {name}"
    );
    let admin_url = postgres_admin_url();
    let url = format!("{}/{name}", server_part(&admin_url));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for creating the database");
                runtime.block_on(create_database(&admin_url, &name));
            })
            .join()
            .expect("creating the test database");
    });
    url
}

async fn create_database(admin_url: &str, name: &str) {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_VAR}: {e}"));
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(&statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// The URL without its database: `postgres://u@h:5432/postgres` -> `postgres://u@h:5432`.
fn server_part(url: &str) -> &str {
    let authority = url.find("://").map_or(0, |i| i + 3);
    match url.rfind('/') {
        Some(i) if i >= authority => &url[..i],
        _ => url,
    }
}

#[cfg(test)]
mod tests {
    use super::server_part;

    #[test]
    fn the_database_is_cut_from_the_url() {
        assert_eq!(
            server_part("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432"
        );
        assert_eq!(server_part("postgres://h:5432"), "postgres://h:5432");
    }
}
