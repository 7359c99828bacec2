//! What the store's test files share: fresh stores on both engines.
#![allow(dead_code)]

use callbridge_store::Store;
use callbridge_test_support::fresh_postgres_database;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where a test's store lives: a SQLite data folder, or a PostgreSQL database's URL. Opened
/// again by [`Place::open`], as a restarted service would.
#[derive(Debug, Clone)]
pub enum Place {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Place {
    /// The store, its secrets still locked.
    pub async fn open(&self) -> Store {
        match self {
            Place::Sqlite(dir) => Store::open(None, dir).await.expect("sqlite store"),
            Place::Postgres(url) => Store::open(Some(url), std::path::Path::new("."))
                .await
                .expect("postgres store"),
        }
    }

    /// The store with its secrets unlocked by the tests' key.
    pub async fn open_unlocked(&self) -> Store {
        let store = self.open().await;
        let key = callbridge_store::SecretKey::from_bytes([7; 32]);
        store
            .unlock_secrets(callbridge_store::Keyring::new(key, vec![]))
            .await
            .expect("unlock secrets");
        store
    }
}

/// A fresh, empty SQLite data folder for one test.
pub fn sqlite_dir(test: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "callbridge-store-{}-{test}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Fresh, empty places for one test: SQLite in a temporary folder, and a PostgreSQL database on
/// the server `CALLBRIDGE_TEST_POSTGRES_URL` names (without it the test fails saying so).
pub fn places(test: &str) -> Vec<Place> {
    vec![
        Place::Sqlite(sqlite_dir(test)),
        Place::Postgres(fresh_postgres_database(&format!("store_{test}"))),
    ]
}

/// Fresh stores for one test, SQLite and PostgreSQL, their secrets unlocked.
pub async fn stores(test: &str) -> Vec<Store> {
    let mut out = Vec::new();
    for place in places(test) {
        out.push(place.open_unlocked().await);
    }
    out
}
