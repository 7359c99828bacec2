//! Secrets at rest (issue 14, item 8) and deleting a tenant (item 6), on SQLite and on the
//! PostgreSQL named by `CALLBRIDGE_TEST_POSTGRES_URL` (a fresh database per test).

use callbridge_store::{Db, Keyring, NewEvent, NewOutboxItem, SecretKey, Store, TenantRow};
use support::{places, Place};

mod support;

const SALT: &str = "salt-Q7w9Zk2mXv4Lp8Rt";
const LONG_LIVED: &str = "longlived-Hx3Nc8Pq1Wz6Ty0";
const ACCESS: &str = "access-Bv5Kd2Js9Fm4Ga7";

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes([b; 32])
}

fn ring(current: u8, previous: &[u8]) -> Keyring {
    Keyring::new(key(current), previous.iter().map(|b| key(*b)).collect())
}

fn tenant(id: &str, key: &str) -> TenantRow {
    TenantRow {
        id: id.into(),
        mango_api_key: key.into(),
        mango_api_salt: SALT.into(),
        settings_toml: String::new(),
        crm: serde_json::json!({"base_url": "https://x.amocrm.ru", "long_lived_token": LONG_LIVED}),
        updated_at_ms: 1,
    }
}

fn tokens() -> serde_json::Value {
    serde_json::json!({"access_token": ACCESS, "refresh_token": "refresh-Zx81", "expires_at": 1})
}

/// Every text cell of the tables that hold secrets, as stored.
async fn raw_cells(store: &Store) -> String {
    let sql = [
        "SELECT mango_api_salt || ' ' || crm FROM tenants",
        "SELECT tokens FROM crm_tokens",
    ];
    let mut out = String::new();
    for q in sql {
        let rows: Vec<String> = match store.db() {
            Db::Sqlite(p) => sqlx::query_scalar(q).fetch_all(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_scalar(q).fetch_all(p).await.unwrap(),
        };
        out.push_str(&rows.join("\n"));
        out.push('\n');
    }
    out
}

async fn execute(store: &Store, sql: &str) {
    match store.db() {
        Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

fn assert_no_secret(text: &str, context: &str) {
    for secret in [SALT, LONG_LIVED, ACCESS] {
        assert!(!text.contains(secret), "{context}: {secret} in clear");
    }
}

#[tokio::test]
async fn secrets_are_stored_encrypted_and_read_back_in_clear() {
    for place in places("clear") {
        let store = place.open().await;
        store.unlock_secrets(ring(1, &[])).await.unwrap();
        store.upsert_tenant(&tenant("acme", "k1")).await.unwrap();
        store.save_crm_tokens("acme", &tokens(), 1).await.unwrap();
        let raw = raw_cells(&store).await;
        assert!(raw.contains("enc:v1:"), "{raw}");
        assert_no_secret(&raw, "rows");
        assert_eq!(
            store.tenant("acme").await.unwrap(),
            Some(tenant("acme", "k1"))
        );
        assert_eq!(store.load_crm_tokens("acme").await.unwrap(), Some(tokens()));
        drop(store);
        if let Place::Sqlite(dir) = &place {
            // Nor anywhere in the database's files (the WAL included).
            for file in ["callbridge.db", "callbridge.db-wal"] {
                let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
                assert_no_secret(&String::from_utf8_lossy(&bytes), file);
            }
        }
    }
}

#[tokio::test]
async fn a_store_without_its_key_neither_reads_nor_writes_secrets() {
    for place in places("locked") {
        let store = place.open().await;
        let err = store
            .upsert_tenant(&tenant("acme", "k1"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("secret key"), "{err}");
    }
}

#[tokio::test]
async fn a_wrong_key_is_refused_naming_both_key_ids() {
    for place in places("wrong") {
        let store = place.open().await;
        store.unlock_secrets(ring(1, &[])).await.unwrap();
        store.upsert_tenant(&tenant("acme", "k1")).await.unwrap();
        drop(store);
        let store = place.open().await;
        assert_eq!(
            store.secret_key_id().await.unwrap().as_deref(),
            Some(key(1).id())
        );
        let err = store
            .unlock_secrets(ring(2, &[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key(1).id()) && err.contains(key(2).id()),
            "{err}"
        );
        assert!(err.contains("not the one"), "{err}");
        // Nothing was changed: the right key still opens everything.
        drop(store);
        let store = place.open().await;
        store.unlock_secrets(ring(1, &[])).await.unwrap();
        assert_eq!(
            store.tenant("acme").await.unwrap(),
            Some(tenant("acme", "k1"))
        );
    }
}

#[tokio::test]
async fn rotation_reseals_every_secret_under_the_new_key() {
    for place in places("rotate") {
        let store = place.open().await;
        store.unlock_secrets(ring(1, &[])).await.unwrap();
        store.upsert_tenant(&tenant("acme", "k1")).await.unwrap();
        store.save_crm_tokens("acme", &tokens(), 1).await.unwrap();
        let before = raw_cells(&store).await;
        assert!(before.contains(key(1).id()), "{before}");
        drop(store);

        let store = place.open().await;
        let done = store.unlock_secrets(ring(2, &[1])).await.unwrap();
        assert_eq!(done.rotated_from.as_deref(), Some(key(1).id()));
        assert_eq!((done.resealed, done.sealed_plain), (3, 0), "{done:?}");
        let after = raw_cells(&store).await;
        assert!(!after.contains(key(1).id()), "{after}");
        assert!(after.contains(key(2).id()), "{after}");
        assert_no_secret(&after, "rotated rows");
        drop(store);

        // The new key alone opens everything; the old one is refused.
        let store = place.open().await;
        assert!(store.unlock_secrets(ring(1, &[])).await.is_err());
        drop(store);
        let store = place.open().await;
        let done = store.unlock_secrets(ring(2, &[])).await.unwrap();
        assert_eq!(done, Default::default());
        assert_eq!(
            store.tenant("acme").await.unwrap(),
            Some(tenant("acme", "k1"))
        );
        assert_eq!(store.load_crm_tokens("acme").await.unwrap(), Some(tokens()));
    }
}

#[tokio::test]
async fn a_database_from_before_encryption_is_upgraded_in_place() {
    for place in places("upgrade") {
        let store = place.open().await;
        // Rows as the service wrote them before secrets were encrypted.
        let crm =
            serde_json::json!({"base_url": "https://x.amocrm.ru", "long_lived_token": LONG_LIVED});
        execute(
            &store,
            &format!(
                "INSERT INTO tenants (id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms) \
                 VALUES ('acme', 'k1', '{SALT}', '', '{crm}', 1)"
            ),
        )
        .await;
        execute(
            &store,
            &format!(
                "INSERT INTO crm_tokens (tenant_id, tokens, updated_at_ms) VALUES ('acme', '{}', 1)",
                tokens()
            ),
        )
        .await;
        assert_eq!(store.secret_key_id().await.unwrap(), None);
        let done = store.unlock_secrets(ring(1, &[])).await.unwrap();
        assert!(done.first_key);
        assert_eq!((done.sealed_plain, done.resealed), (3, 0), "{done:?}");
        assert_no_secret(&raw_cells(&store).await, "upgraded rows");
        assert_eq!(
            store.tenant("acme").await.unwrap(),
            Some(tenant("acme", "k1"))
        );
        assert_eq!(store.load_crm_tokens("acme").await.unwrap(), Some(tokens()));
    }
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_tenant_does_not_open() {
    for place in places("moved") {
        let store = place.open().await;
        store.unlock_secrets(ring(1, &[])).await.unwrap();
        store.upsert_tenant(&tenant("acme", "k1")).await.unwrap();
        store.upsert_tenant(&tenant("other", "k2")).await.unwrap();
        execute(
            &store,
            "UPDATE tenants SET mango_api_salt = (SELECT mango_api_salt FROM tenants WHERE id = 'acme') WHERE id = 'other'",
        )
        .await;
        let err = store.tenant("other").await.unwrap_err().to_string();
        assert!(err.contains("does not open"), "{err}");
    }
}

#[tokio::test]
async fn deleting_a_tenant_removes_everything_kept_for_it() {
    for place in places("delete") {
        let store = place.open().await;
        store.unlock_secrets(ring(1, &[])).await.unwrap();
        for (id, k) in [("acme", "k1"), ("other", "k2")] {
            store.upsert_tenant(&tenant(id, k)).await.unwrap();
            store
                .append_events(&[NewEvent {
                    tenant_id: id.into(),
                    entry_id: "e1".into(),
                    path: "events/call".into(),
                    dedupe_key: "d1".into(),
                    json: "{}".into(),
                    received_at_ms: 1,
                }])
                .await
                .unwrap();
            let item = NewOutboxItem {
                item_key: format!("{id}/e1/c/call"),
                kind: "call".into(),
                payload: serde_json::json!({}),
            };
            assert!(store
                .save_plan(id, "e1", "summary", &serde_json::json!({}), &[item], 1)
                .await
                .unwrap());
            store.save_crm_tokens(id, &tokens(), 1).await.unwrap();
            store.set_crm_status(id, "ok", "", 1).await.unwrap();
            assert!(store.acquire_lease(id, "me", 60_000, 1).await.unwrap());
        }
        let last = store.purge_tenant("acme").await.unwrap();
        assert!(last.is_some_and(|id| id > 0), "{last:?}");
        assert_eq!(store.purge_tenant("acme").await.unwrap(), None);
        assert_eq!(store.tenant("acme").await.unwrap(), None);
        assert_eq!(store.count_events("acme").await.unwrap(), 0);
        assert_eq!(store.count_entries("acme").await.unwrap(), 0);
        assert_eq!(
            store.outbox_counts("acme").await.unwrap(),
            Default::default()
        );
        assert_eq!(store.load_crm_tokens("acme").await.unwrap(), None);
        assert_eq!(store.crm_status("acme").await.unwrap(), None);
        // The lease is gone: another holder takes it at once.
        assert!(store.acquire_lease("acme", "you", 60_000, 2).await.unwrap());
        // The other tenant keeps everything.
        assert_eq!(store.count_events("other").await.unwrap(), 1);
        assert_eq!(store.count_entries("other").await.unwrap(), 1);
        assert!(store.load_crm_tokens("other").await.unwrap().is_some());
        assert!(!store
            .acquire_lease("other", "you", 60_000, 2)
            .await
            .unwrap());
    }
}
