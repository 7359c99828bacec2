//! The schema, as numbered migrations applied once each at start-up. One SQL text serves both
//! engines; only the identity column differs, filled in per dialect.

use crate::{with_db, Db, Result, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    /// SQL for both engines; `{identity}` stands for the dialect's auto-increment primary key.
    steps: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "event log, entries, outbox, tenants",
    steps: &[
        "CREATE TABLE IF NOT EXISTS events (
            id {identity},
            tenant_id TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            path TEXT NOT NULL,
            dedupe_key TEXT NOT NULL,
            json TEXT NOT NULL,
            received_at_ms BIGINT NOT NULL,
            UNIQUE (tenant_id, dedupe_key))",
        "CREATE INDEX IF NOT EXISTS events_by_entry ON events (tenant_id, entry_id)",
        "CREATE TABLE IF NOT EXISTS entries (
        tenant_id TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        completed_by TEXT NOT NULL,
        plan TEXT NOT NULL,
        planned_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, entry_id))",
        "CREATE INDEX IF NOT EXISTS entries_by_time ON entries (tenant_id, planned_at_ms)",
        "CREATE TABLE IF NOT EXISTS tenants (
        id TEXT PRIMARY KEY,
        mango_api_key TEXT NOT NULL UNIQUE,
        mango_api_salt TEXT NOT NULL,
        settings_toml TEXT NOT NULL,
        crm TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS outbox (
        item_key TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at_ms BIGINT NOT NULL,
        last_error TEXT,
        crm_response TEXT,
        created_at_ms BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at_ms)",
    ],
},
Migration {
    version: 2,
    name: "CRM delivery: in-flight marks, leases, tokens, connection status",
    steps: &[
        // Set just before a request that may change the CRM goes out, cleared when its answer is
        // recorded: a mark still set after a crash means "ask the CRM before sending again".
        "ALTER TABLE outbox ADD COLUMN sent_at_ms BIGINT",
        "ALTER TABLE outbox ADD COLUMN done_at_ms BIGINT",
        "CREATE INDEX IF NOT EXISTS outbox_by_tenant ON outbox (tenant_id, state, next_attempt_at_ms)",
        // One instance delivers for a CRM account at a time, so the account's rate limit is
        // kept by one limiter.
        "CREATE TABLE IF NOT EXISTS delivery_leases (
        tenant_id TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS crm_tokens (
        tenant_id TEXT PRIMARY KEY,
        tokens TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS crm_status (
        tenant_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        detail TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
    ],
},
Migration {
    version: 3,
    name: "event log: drop the unused per-entry index",
    steps: &[
        // Nothing reads events by entry (recovery scans the log and probes `entries`), and the
        // index took a page at random on every append: it was a third of each commit's writes.
        "DROP INDEX IF EXISTS events_by_entry",
    ],
},
Migration {
    version: 4,
    name: "recovery mark: where start-up recovery reads the log from",
    steps: &[
        // One row: every event below this id belongs to an entry already planned (or dropped
        // with its tenant), so recovery need not read it.
        "CREATE TABLE IF NOT EXISTS recovery_mark (
        id INTEGER PRIMARY KEY,
        first_unplanned_event_id BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
    ],
},
Migration {
    version: 5,
    name: "tenants: which ones the config file manages",
    steps: &[
        // 1: the tenant came from the config file, and leaves when the file drops it; 0: created
        // through the admin API (or before this column existed), left alone at start-up.
        "ALTER TABLE tenants ADD COLUMN from_config INTEGER NOT NULL DEFAULT 0",
    ],
},
Migration {
    version: 6,
    name: "secrets at rest: the key check",
    steps: &[
        // One row: the id of the key the secrets are sealed under, and a known text sealed
        // under it, so a wrong key is refused at start-up (see `secrets.rs`).
        "CREATE TABLE IF NOT EXISTS secret_key_check (
        id INTEGER PRIMARY KEY,
        key_id TEXT NOT NULL,
        sealed TEXT NOT NULL)",
    ],
},
Migration {
    version: 7,
    name: "OAuth consent states: random, single-use, expiring",
    steps: &[
        // Kept in the database so any instance can take the callback; only hashes are stored,
        // so a read of the table cannot complete a consent.
        "CREATE TABLE IF NOT EXISTS oauth_states (
        state_hash TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        nonce_hash TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL)",
    ],
},
Migration {
    version: 8,
    name: "write probe: a scratch row proving the store can write again",
    steps: &[
        // Written and removed in one transaction while the store is unhealthy (a full disk):
        // when it commits, readiness turns green again without waiting for traffic.
        "CREATE TABLE IF NOT EXISTS write_probe (
        id INTEGER PRIMARY KEY,
        filler TEXT NOT NULL)",
    ],
},
Migration {
    version: 9,
    name: "web UI: admin password, sessions, sign-in failures, settings versions, tenant language and file seed, webhook refusals",
    steps: &[
        // One administrator: the row with id 1. The hash is argon2id in PHC form.
        "CREATE TABLE IF NOT EXISTS ui_admin (
        id INTEGER PRIMARY KEY,
        password_hash TEXT NOT NULL,
        set_at_ms BIGINT NOT NULL)",
        // Only the SHA-256 of a session token is kept: a copy of the database opens no session.
        "CREATE TABLE IF NOT EXISTS ui_sessions (
        token_hash TEXT PRIMARY KEY,
        csrf_token TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL)",
        // Wrong passwords in a row (shared by every instance on one database): the delay grows.
        "CREATE TABLE IF NOT EXISTS ui_sign_in_failures (
        id INTEGER PRIMARY KEY,
        failures BIGINT NOT NULL,
        last_failure_ms BIGINT NOT NULL,
        locked_until_ms BIGINT NOT NULL)",
        // Every saved settings document of a tenant, newest highest; the tenant row holds the
        // current one.
        "CREATE TABLE IF NOT EXISTS settings_versions (
        tenant_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        settings_toml TEXT NOT NULL,
        author TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, version))",
        // The tenant's language (texts written to the CRM, reasons in words).
        "ALTER TABLE tenants ADD COLUMN language TEXT NOT NULL DEFAULT 'ru'",
        // SHA-256 of the config file's entry for the tenant when it was last applied: the file
        // seeds the tenant, and is applied again only when that entry changes.
        "ALTER TABLE tenants ADD COLUMN file_seed_hash TEXT",
        // The latest refused webhook of a tenant (bad signature, unknown key, malformed), for
        // the Connections page.
        "CREATE TABLE IF NOT EXISTS webhook_refusals (
        tenant_id TEXT PRIMARY KEY,
        refused_at_ms BIGINT NOT NULL,
        reason TEXT NOT NULL,
        count_since_accepted BIGINT NOT NULL)",
    ],
},
Migration {
    version: JOURNAL_COLUMNS,
    name: "call journal: the columns it filters by, each entry's event id range",
    steps: &[
        // Copied out of the plan JSON when the plan is saved (`journal.rs`), so the journal
        // filters on columns instead of parsing every plan. Existing rows are filled in Rust
        // right after these steps, in the same transaction (see `migrate`).
        "ALTER TABLE entries ADD COLUMN client_phone10 TEXT",
        "ALTER TABLE entries ADD COLUMN direction TEXT",
        "ALTER TABLE entries ADD COLUMN outcome TEXT",
        "ALTER TABLE entries ADD COLUMN started_at BIGINT",
        // `,101,105,`: one LIKE '%,105,%' finds one extension.
        "ALTER TABLE entries ADD COLUMN extensions TEXT",
        // The event log's ids of the entry's first event and of the log position the processor
        // had read through when it planned it: the entry's events are a primary-key range scan
        // (the per-entry index of the log was dropped in migration 3, and stays dropped).
        "ALTER TABLE entries ADD COLUMN first_event_id BIGINT",
        "ALTER TABLE entries ADD COLUMN last_event_id BIGINT",
        // Newest first with any filter but the number's: the filtered columns ride in the index,
        // so a filtered page and its count read the index, never the plans. It leads with the
        // old `entries_by_time`'s columns, which it replaces.
        "CREATE INDEX IF NOT EXISTS entries_journal ON entries          (tenant_id, planned_at_ms, entry_id, direction, outcome, client_phone10, extensions)",
        "DROP INDEX IF EXISTS entries_by_time",
        // A search by the client's whole number, in the journal's order (with the entry id, so
        // the page is read off this index rather than by walking the whole journal).
        "CREATE INDEX IF NOT EXISTS entries_by_phone ON entries (tenant_id, client_phone10, planned_at_ms, entry_id)",
    ],
},
Migration {
    version: 11,
    name: "personal card links",
    steps: &[
        // Only the SHA-256 of a link's token is kept; its first characters tell links apart.
        "CREATE TABLE IF NOT EXISTS card_links (
        id {identity},
        tenant_id TEXT NOT NULL,
        crm_user_id BIGINT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        token_prefix TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        last_used_ms BIGINT)",
        "CREATE INDEX IF NOT EXISTS card_links_by_tenant ON card_links (tenant_id)",
    ],
},
Migration {
    version: 12,
    name: "pending unsorted requests by client",
    steps: &[
        // The unsorted request (amoCRM's "incoming lead") last created for a client's number,
        // so that the client's next call while it is pending attaches to it instead of
        // creating another. One per client: a newer request replaces the row.
        "CREATE TABLE IF NOT EXISTS unsorted_requests (
        tenant_id TEXT NOT NULL,
        client_phone10 TEXT NOT NULL,
        uid TEXT NOT NULL,
        lead_id BIGINT,
        contact_id BIGINT,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, client_phone10))",
    ],
},
Migration {
    version: 13,
    name: "delivery instances: who shares the CRM work",
    steps: &[
        // Every instance on a shared database says here that it is alive; the CRM accounts are
        // spread over the live ones (see the server's `worker::instances`).
        "CREATE TABLE IF NOT EXISTS delivery_instances (
        name TEXT PRIMARY KEY,
        seen_at_ms BIGINT NOT NULL)",
    ],
},
Migration {
    version: EVENTS_KEY_FIRST,
    name: "event log: the unique index leads with the event's key; per-tenant arrival counts",
    steps: &[
        // What was read off the tenant-led index, kept per tenant instead (see `arrivals.rs`):
        // how many events were stored, and the newest arrival.
        "CREATE TABLE IF NOT EXISTS tenant_arrivals (
        tenant_id TEXT PRIMARY KEY,
        events_stored BIGINT NOT NULL,
        last_path TEXT NOT NULL,
        last_received_at_ms BIGINT NOT NULL)",
        "INSERT INTO tenant_arrivals (tenant_id, events_stored, last_path, last_received_at_ms)
        SELECT tenant_id, COUNT(*), '', MAX(received_at_ms) FROM events GROUP BY tenant_id",
        "UPDATE tenant_arrivals SET last_path = COALESCE((SELECT e.path FROM events e
        WHERE e.tenant_id = tenant_arrivals.tenant_id AND e.received_at_ms = tenant_arrivals.last_received_at_ms
        ORDER BY e.id DESC LIMIT 1), '')",
        // The unique index itself is rebuilt after these steps, per engine (see `migrate`).
    ],
}];

/// The migration that leads the event log's unique index with the event's key. With the
/// tenant first, each tenant's new keys went to a leaf page of their own, so a commit of events
/// from many tenants wrote a page per tenant: spread over 5,000 tenants an event cost 1.1-1.3
/// times its CPU for one tenant, nearly all of it in these pages (docs/benchmarks.md). Keys
/// lead with the event's time, so with the key first a commit's keys land together on the
/// index's last pages, whichever tenants sent them.
const EVENTS_KEY_FIRST: i64 = 14;

/// SQLite cannot change a table's constraint: the table is copied into one declared with the
/// new one, keeping every id, and the id sequence carries over (a deleted highest id is never
/// handed out again, as before). The columns are migration 1's, written out again rather than
/// shared: a migration's text stays as it ran.
const SQLITE_EVENTS_KEY_FIRST: &[&str] = &[
    "CREATE TABLE events_key_first (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        path TEXT NOT NULL,
        dedupe_key TEXT NOT NULL,
        json TEXT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        UNIQUE (dedupe_key, tenant_id))",
    "INSERT INTO events_key_first (id, tenant_id, entry_id, path, dedupe_key, json, received_at_ms)
        SELECT id, tenant_id, entry_id, path, dedupe_key, json, received_at_ms FROM events ORDER BY id",
    "UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM sqlite_sequence WHERE name IN ('events', 'events_key_first'))
        WHERE name = 'events_key_first'",
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'events_key_first', seq FROM sqlite_sequence
        WHERE name = 'events' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_key_first')",
    "DROP TABLE events",
    "ALTER TABLE events_key_first RENAME TO events",
];

/// PostgreSQL changes the constraint in place: the new one is built before the old one goes.
const POSTGRES_EVENTS_KEY_FIRST: &[&str] = &[
    "ALTER TABLE events ADD CONSTRAINT events_key_tenant UNIQUE (dedupe_key, tenant_id)",
    "ALTER TABLE events DROP CONSTRAINT IF EXISTS events_tenant_id_dedupe_key_key",
];

/// The migration adding the journal's columns; its rows are filled after its steps.
const JOURNAL_COLUMNS: i64 = 10;

pub(crate) async fn migrate(db: &Db) -> Result<()> {
    with_db!(db, pool => {
        let mut conn = pool.acquire().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        // Several instances may start together on one PostgreSQL: serialise the migrations.
        if matches!(db, Db::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_lock(7402163)").execute(&mut *conn).await?;
        }
        let result: Result<()> = async {
            // A store migrated by a newer callbridge may have columns and meanings this binary
            // does not know: refused rather than written to (a downgrade needs the backup taken
            // before the upgrade).
            let stored: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
                .fetch_one(&mut *conn)
                .await?;
            let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
            if let Some(stored) = stored.filter(|v| *v > known) {
                return Err(StoreError::NewerSchema { stored, known });
            }
            for m in MIGRATIONS {
                let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(m.version)
                    .fetch_optional(&mut *conn)
                    .await?;
                if done.is_some() {
                    continue;
                }
                let identity = if matches!(db, Db::Postgres(_)) {
                    "BIGSERIAL PRIMARY KEY"
                } else {
                    "INTEGER PRIMARY KEY AUTOINCREMENT"
                };
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for sql in m.steps {
                    sqlx::query(&sql.replace("{identity}", identity)).execute(&mut *tx).await?;
                }
                if m.version == JOURNAL_COLUMNS {
                    if matches!(db, Db::Postgres(_)) {
                        // Byte order for outbox keys, as SQLite has: an entry's items are the key
                        // range `tenant/entry/` to `tenant/entry0`, which a linguistic collation
                        // (en_US: punctuation ignored) would not keep together.
                        sqlx::query("ALTER TABLE outbox ALTER COLUMN item_key TYPE TEXT COLLATE \"C\"")
                            .execute(&mut *tx)
                            .await?;
                    }
                    // The plans stored before this migration, a chunk at a time by key.
                    let mut after = (String::new(), String::new());
                    loop {
                        let rows: Vec<(String, String, String)> = sqlx::query_as(
                            "SELECT tenant_id, entry_id, plan FROM entries WHERE (tenant_id > $1) OR (tenant_id = $1 AND entry_id > $2) \
                             ORDER BY tenant_id, entry_id LIMIT 500",
                        )
                        .bind(&after.0)
                        .bind(&after.1)
                        .fetch_all(&mut *tx)
                        .await?;
                        let Some(last) = rows.last() else { break };
                        after = (last.0.clone(), last.1.clone());
                        for (tenant_id, entry_id, plan) in &rows {
                            // A plan that is not JSON keeps empty columns: the journal still
                            // lists it, and reading it reports it as malformed.
                            let plan = serde_json::from_str(plan).unwrap_or(serde_json::Value::Null);
                            let c = crate::journal::JournalColumns::of_plan(&plan);
                            sqlx::query(
                                "UPDATE entries SET client_phone10 = $3, direction = $4, outcome = $5, started_at = $6, extensions = $7 \
                                 WHERE tenant_id = $1 AND entry_id = $2",
                            )
                            .bind(tenant_id)
                            .bind(entry_id)
                            .bind(c.client_phone10)
                            .bind(c.direction)
                            .bind(c.outcome)
                            .bind(c.started_at)
                            .bind(c.extensions)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                if m.version == EVENTS_KEY_FIRST {
                    let steps = if matches!(db, Db::Postgres(_)) {
                        POSTGRES_EVENTS_KEY_FIRST
                    } else {
                        SQLITE_EVENTS_KEY_FIRST
                    };
                    for sql in steps {
                        sqlx::query(sql).execute(&mut *tx).await?;
                    }
                }
                sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                    .bind(m.version)
                    .bind(m.name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version = m.version, name = m.name, "migration applied");
            }
            Ok(())
        }
        .await;
        if matches!(db, Db::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_unlock(7402163)").execute(&mut *conn).await?;
        }
        result?;
    });
    Ok(())
}
