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
/// Blocking, and safe to call from async tests too.
pub fn fresh_postgres_database(label: &str) -> String {
    note_postgres_test();
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
    let url = format!("{}/{name}", server_part(&postgres_admin_url()));
    run_admin(&[
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ])
    .unwrap_or_else(|e| panic!("creating the test database {name} on {POSTGRES_URL_VAR}: {e}"));
    url
}

/// The file `scripts/test.sh` names so that its total line can say how many tests ran on
/// PostgreSQL: each test that makes a database appends its binary and its name (libtest names
/// the test's thread after the test).
pub const POSTGRES_LOG_VAR: &str = "CALLBRIDGE_TEST_POSTGRES_LOG";

fn note_postgres_test() {
    use std::io::Write;
    let Ok(path) = std::env::var(POSTGRES_LOG_VAR) else {
        return;
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let thread = std::thread::current();
    let line = format!("{binary} {}\n", thread.name().unwrap_or("unnamed"));
    // One short append per database: whole lines even with tests running in parallel.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        panic!("{POSTGRES_LOG_VAR}={path}: cannot append to it: {e}");
    }
}

/// Drops a database [`fresh_postgres_database`] made, once nothing uses it any more. Best effort,
/// as cleanup: a database left behind (a connection still closing) costs only disk space.
pub fn drop_postgres_database(url: &str) {
    let name = &url[server_part(url).len() + 1..];
    let _left_behind = run_admin(&[format!("DROP DATABASE IF EXISTS {name}")]);
}

/// The rows `query` answers on the database at `url`, every column read as text (cast in the
/// query: `SELECT a::text, ...`). Blocking, and safe to call from async tests too.
pub fn postgres_text_rows(url: &str, query: &str) -> Vec<Vec<String>> {
    use sqlx::Row;
    on_a_runtime_of_its_own(|| async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let rows = sqlx::query(query).fetch_all(&mut conn).await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<String, _>(i))
                    .collect()
            })
            .collect::<Result<Vec<Vec<String>>, sqlx::Error>>()
    })
    .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Runs `work` to its end on a thread and a current-thread runtime of its own, so blocking
/// callers and async tests (whose runtime must not be blocked from inside) can both use it.
/// The future is made on that thread (`make`), so it need not be `Send`.
fn on_a_runtime_of_its_own<T: Send, F: std::future::Future<Output = T>>(
    make: impl FnOnce() -> F + Send,
) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime of its own")
                    .block_on(make())
            })
            .join()
            .expect("the thread running the work")
    })
}

/// Runs `statements` in order on the administrative connection. Blocking, and safe to call from
/// async tests too: the work runs on a thread and a runtime of its own.
fn run_admin(statements: &[String]) -> Result<(), sqlx::Error> {
    let admin_url = postgres_admin_url();
    on_a_runtime_of_its_own(|| async {
        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
        for statement in statements {
            sqlx::raw_sql(statement).execute(&mut admin).await?;
        }
        Ok(())
    })
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
