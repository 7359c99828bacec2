//! The outbox as the CRM worker sees it: due items, in-flight marks, answers, parking, and the
//! per-tenant delivery lease, OAuth tokens and connection status.
//!
//! An item moves `pending` -> `done` (the CRM's answer recorded) or `parked` (the CRM refused it
//! with a reason; a person can send it again). `sent_at_ms` is set just before a request that
//! may change the CRM leaves, and cleared when the answer is recorded: an item found with the
//! mark after a crash or a timeout is "uncertain", and the worker asks the CRM before resending.

use crate::{with_db, Result, Store, StoreError};

/// One CRM work item.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub item_key: String,
    pub tenant_id: String,
    pub entry_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    /// The CRM's answer once done; progress notes (ids already created) while pending.
    pub crm_response: Option<serde_json::Value>,
    pub sent_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub done_at_ms: Option<i64>,
}

/// The items a delivery lane takes: calls are sent as soon as they are due; follow-ups (tasks,
/// transcripts, leads of repeat clients) can wait behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    All,
    Calls,
    FollowUps,
}

impl Lane {
    /// The lane's `AND ...` condition on `kind` (empty for all).
    fn condition(self) -> &'static str {
        match self {
            Lane::All => "",
            Lane::Calls => " AND kind = 'call'",
            Lane::FollowUps => " AND kind <> 'call'",
        }
    }
}

/// A follow-up item added while another item is finished ([`Store::complete_and_add`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AddedItem {
    pub tenant_id: String,
    pub entry_id: String,
    pub item: crate::NewOutboxItem,
}

/// Items of a tenant by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: i64,
    pub done: i64,
    pub parked: i64,
}

/// An OAuth consent in progress, as [`Store::take_oauth_state`] hands it back once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub tenant_id: String,
    /// Hash of the nonce the admin's browser got in a cookie with the consent redirect.
    pub nonce_hash: String,
}

/// A tenant's CRM connection as the worker last saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrmStatus {
    /// `ok`, `broken` (credentials refused: needs a person), `blocked` (the CRM blocked the
    /// account).
    pub state: String,
    pub detail: String,
    pub updated_at_ms: i64,
}

pub(crate) type ItemRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
);

// `attempts` is an INTEGER column: widened so both engines decode it as i64.
pub(crate) const ITEM_COLUMNS: &str = "item_key, tenant_id, entry_id, kind, payload, state, CAST(attempts AS BIGINT), next_attempt_at_ms, last_error, crm_response, sent_at_ms, created_at_ms, done_at_ms";

pub(crate) fn item(r: ItemRow) -> Result<OutboxItem> {
    let payload = serde_json::from_str(&r.4)
        .map_err(|e| StoreError::Corrupt(format!("payload of outbox item {}: {e}", r.0)))?;
    let crm_response =
        match &r.9 {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                StoreError::Corrupt(format!("CRM answer of outbox item {}: {e}", r.0))
            })?),
        };
    Ok(OutboxItem {
        item_key: r.0,
        tenant_id: r.1,
        entry_id: r.2,
        kind: r.3,
        payload,
        state: r.5,
        attempts: r.6,
        next_attempt_at_ms: r.7,
        last_error: r.8,
        crm_response,
        sent_at_ms: r.10,
        created_at_ms: r.11,
        done_at_ms: r.12,
    })
}

/// Sets one tenant's CRM status, whatever it was (`set_crm_status`, `set_crm_statuses`).
const CRM_STATUS_UPSERT: &str = "INSERT INTO crm_status (tenant_id, state, detail, updated_at_ms) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (tenant_id) DO UPDATE SET state = excluded.state, detail = excluded.detail, updated_at_ms = excluded.updated_at_ms";

impl Store {
    /// Takes or renews the tenant's delivery lease for `holder`. True when `holder` has it.
    pub async fn acquire_lease(
        &self,
        tenant_id: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let affected = with_db!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO delivery_leases (tenant_id, holder, expires_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
                 WHERE delivery_leases.holder = excluded.holder OR delivery_leases.expires_at_ms < $4",
            )
            .bind(tenant_id)
            .bind(holder)
            .bind(now_ms + ttl_ms)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Gives the lease up, so another instance can take over at once.
    pub async fn release_lease(&self, tenant_id: &str, holder: &str) -> Result<()> {
        with_db!(self.db(), pool => {
            sqlx::query("DELETE FROM delivery_leases WHERE tenant_id = $1 AND holder = $2")
                .bind(tenant_id)
                .bind(holder)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Says that the instance `name` is alive at `now_ms`, and answers the names of every
    /// instance seen within `ttl_ms` (this one included), sorted.
    pub async fn instance_heartbeat(
        &self,
        name: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>> {
        let names = with_db!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO delivery_instances (name, seen_at_ms) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET seen_at_ms = excluded.seen_at_ms",
            )
            .bind(name)
            .bind(now_ms)
            .execute(pool)
            .await?;
            // Instances gone long ago are forgotten, so the table stays as small as the fleet.
            sqlx::query("DELETE FROM delivery_instances WHERE seen_at_ms < $1")
                .bind(now_ms - 100 * ttl_ms)
                .execute(pool)
                .await?;
            sqlx::query_scalar::<_, String>(
                "SELECT name FROM delivery_instances WHERE seen_at_ms >= $1 ORDER BY name",
            )
            .bind(now_ms - ttl_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(names)
    }

    /// The instance `name` stops: the others stop counting it at once.
    pub async fn instance_leaves(&self, name: &str) -> Result<()> {
        with_db!(self.db(), pool => {
            sqlx::query("DELETE FROM delivery_instances WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Pending items of a tenant that are due: fresh ones (never tried) first, up to `fresh`,
    /// then retries up to `retries`, so a backlog of failing items never starves new calls.
    pub async fn due_items(
        &self,
        tenant_id: &str,
        now_ms: i64,
        fresh: i64,
        retries: i64,
    ) -> Result<Vec<OutboxItem>> {
        self.due_items_in(tenant_id, Lane::All, now_ms, fresh, retries)
            .await
    }

    /// [`Store::due_items`] of one delivery lane.
    pub async fn due_items_in(
        &self,
        tenant_id: &str,
        lane: Lane,
        now_ms: i64,
        fresh: i64,
        retries: i64,
    ) -> Result<Vec<OutboxItem>> {
        let kinds = lane.condition();
        let sql_fresh = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE tenant_id = $1 AND state = 'pending' AND attempts = 0 \
             AND next_attempt_at_ms <= $2{kinds} ORDER BY created_at_ms, item_key LIMIT $3"
        );
        let sql_retry = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE tenant_id = $1 AND state = 'pending' AND attempts > 0 \
             AND next_attempt_at_ms <= $2{kinds} ORDER BY next_attempt_at_ms, item_key LIMIT $3"
        );
        let mut rows: Vec<ItemRow> = Vec::new();
        with_db!(self.db(), pool => {
            for (sql, limit) in [(&sql_fresh, fresh), (&sql_retry, retries)] {
                let mut part: Vec<ItemRow> = sqlx::query_as(sql)
                    .bind(tenant_id)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.append(&mut part);
            }
        });
        rows.into_iter().map(item).collect()
    }

    /// The tenants with pending items due by `now_ms`: on a shared database, one query a second
    /// for the whole instance tells which tenants' lanes to wake (an index range read:
    /// `outbox_due`), instead of every idle lane asking for itself.
    pub async fn tenants_with_due_work(&self, now_ms: i64) -> Result<Vec<String>> {
        Ok(with_db!(self.db(), pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT tenant_id FROM outbox WHERE state = 'pending' AND next_attempt_at_ms <= $1",
            )
            .bind(now_ms)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The earliest `next_attempt_at_ms` among the tenant's pending items.
    pub async fn next_due_at(&self, tenant_id: &str) -> Result<Option<i64>> {
        Ok(with_db!(self.db(), pool => {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MIN(next_attempt_at_ms) FROM outbox WHERE tenant_id = $1 AND state = 'pending'",
            )
            .bind(tenant_id)
            .fetch_one(pool)
            .await?
        }))
    }

    /// The earliest `next_attempt_at_ms` among the tenant's pending items of one lane: when
    /// that lane has work next (an index range read: `outbox_by_tenant`).
    pub async fn next_due_in(&self, tenant_id: &str, lane: Lane) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT MIN(next_attempt_at_ms) FROM outbox WHERE tenant_id = $1 AND state = 'pending'{}",
            lane.condition()
        );
        Ok(with_db!(self.db(), pool => {
            sqlx::query_scalar::<_, Option<i64>>(&sql)
                .bind(tenant_id)
                .fetch_one(pool)
                .await?
        }))
    }

    pub async fn outbox_item(&self, item_key: &str) -> Result<Option<OutboxItem>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM outbox WHERE item_key = $1");
        let row: Option<ItemRow> = with_db!(self.db(), pool => {
            sqlx::query_as(&sql).bind(item_key).fetch_optional(pool).await?
        });
        row.map(item).transpose()
    }

    /// Items of a tenant in one state, oldest first (the admin API's parked list).
    pub async fn outbox_items_in_state(
        &self,
        tenant_id: &str,
        state: &str,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE tenant_id = $1 AND state = $2 ORDER BY created_at_ms, item_key LIMIT $3"
        );
        let rows: Vec<ItemRow> = with_db!(self.db(), pool => {
            sqlx::query_as(&sql).bind(tenant_id).bind(state).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(item).collect()
    }

    /// How many items of a tenant are in each state.
    pub async fn outbox_counts(&self, tenant_id: &str) -> Result<OutboxCounts> {
        let rows: Vec<(String, i64)> = with_db!(self.db(), pool => {
            sqlx::query_as("SELECT state, COUNT(*) FROM outbox WHERE tenant_id = $1 GROUP BY state")
                .bind(tenant_id)
                .fetch_all(pool)
                .await?
        });
        let mut counts = OutboxCounts::default();
        for (state, n) in rows {
            match state.as_str() {
                "pending" => counts.pending = n,
                "done" => counts.done = n,
                "parked" => counts.parked = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// How many of a tenant's items are parked: one range of the `(tenant, state)` index, cheap
    /// enough for every page's warnings (unlike [`Store::outbox_counts`], which counts every
    /// delivered item too).
    pub async fn parked_count(&self, tenant_id: &str) -> Result<i64> {
        Ok(with_db!(self.db(), pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM outbox WHERE tenant_id = $1 AND state = 'parked'",
            )
            .bind(tenant_id)
            .fetch_one(pool)
            .await?
        }))
    }

    /// Marks items as about to be sent (see the module docs).
    pub async fn mark_sending(&self, item_keys: &[String], now_ms: i64) -> Result<()> {
        with_db!(self.db(), pool => {
            let mut tx = pool.begin().await?;
            for key in item_keys {
                sqlx::query("UPDATE outbox SET sent_at_ms = COALESCE(sent_at_ms, $2) WHERE item_key = $1")
                    .bind(key)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Clears the in-flight mark of items the CRM answered for without changing anything (such
    /// as a call of a client it does not know): sending them again needs no check first.
    pub async fn unmark_sending(&self, item_keys: &[String]) -> Result<()> {
        if item_keys.is_empty() {
            return Ok(());
        }
        with_db!(self.db(), pool => {
            let mut tx = pool.begin().await?;
            for key in item_keys {
                sqlx::query("UPDATE outbox SET sent_at_ms = NULL WHERE item_key = $1 AND state = 'pending'")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records the CRM's answers and finishes the items, in one transaction.
    pub async fn complete_items(
        &self,
        done: &[(String, serde_json::Value)],
        now_ms: i64,
    ) -> Result<()> {
        self.complete_and_add(done, &[], now_ms).await
    }

    /// Finishes the `done` items and adds follow-up items, in one transaction, so work found
    /// while finishing an item (the repeat-client lead of a written call) cannot be lost between
    /// the two. An added item whose key exists already is left as it is.
    pub async fn complete_and_add(
        &self,
        done: &[(String, serde_json::Value)],
        added: &[AddedItem],
        now_ms: i64,
    ) -> Result<()> {
        if done.is_empty() && added.is_empty() {
            return Ok(());
        }
        with_db!(self.db(), pool => {
            let mut tx = pool.begin().await?;
            for (key, answer) in done {
                sqlx::query(
                    "UPDATE outbox SET state = 'done', crm_response = $2, done_at_ms = $3, sent_at_ms = NULL, last_error = NULL \
                     WHERE item_key = $1 AND state = 'pending'",
                )
                .bind(key)
                .bind(answer.to_string())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            for added in added {
                sqlx::query(
                    "INSERT INTO outbox (item_key, tenant_id, entry_id, kind, payload, state, attempts, next_attempt_at_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT (item_key) DO NOTHING",
                )
                .bind(&added.item.item_key)
                .bind(&added.tenant_id)
                .bind(&added.entry_id)
                .bind(&added.item.kind)
                .bind(added.item.payload.to_string())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Keeps what a pending item has created so far (ids), so a retry does not create it again.
    pub async fn save_progress(&self, item_key: &str, progress: &serde_json::Value) -> Result<()> {
        with_db!(self.db(), pool => {
            sqlx::query("UPDATE outbox SET crm_response = $2 WHERE item_key = $1 AND state = 'pending'")
                .bind(item_key)
                .bind(progress.to_string())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Schedules another attempt. `uncertain`: the request may have reached the CRM (timeout,
    /// 5xx), so the in-flight mark stays and the next attempt asks the CRM first.
    pub async fn retry_item(
        &self,
        item_key: &str,
        error: &str,
        next_attempt_at_ms: i64,
        uncertain: bool,
        count_attempt: bool,
    ) -> Result<()> {
        let sql = if uncertain {
            "UPDATE outbox SET attempts = attempts + $4, last_error = $2, next_attempt_at_ms = $3 WHERE item_key = $1 AND state = 'pending'"
        } else {
            "UPDATE outbox SET attempts = attempts + $4, last_error = $2, next_attempt_at_ms = $3, sent_at_ms = NULL WHERE item_key = $1 AND state = 'pending'"
        };
        with_db!(self.db(), pool => {
            sqlx::query(sql)
                .bind(item_key)
                .bind(error)
                .bind(next_attempt_at_ms)
                .bind(i32::from(count_attempt))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Parks an item the CRM refused, with the CRM's words.
    pub async fn park_item(&self, item_key: &str, error: &str) -> Result<()> {
        with_db!(self.db(), pool => {
            sqlx::query(
                "UPDATE outbox SET state = 'parked', last_error = $2, attempts = attempts + 1, sent_at_ms = NULL \
                 WHERE item_key = $1 AND state = 'pending'",
            )
            .bind(item_key)
            .bind(error)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Sends a parked item again (by hand). False when it is not parked.
    pub async fn unpark_item(&self, tenant_id: &str, item_key: &str, now_ms: i64) -> Result<bool> {
        Ok(with_db!(self.db(), pool => {
            sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = $3 \
                 WHERE tenant_id = $1 AND item_key = $2 AND state = 'parked'",
            )
            .bind(tenant_id)
            .bind(item_key)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    /// A tenant's OAuth tokens, opened with the secret key.
    pub async fn load_crm_tokens(&self, tenant_id: &str) -> Result<Option<serde_json::Value>> {
        let keyring = self.keyring()?;
        let stored: Option<String> = with_db!(self.db(), pool => {
            sqlx::query_scalar("SELECT tokens FROM crm_tokens WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        stored
            .map(|stored| {
                let text = keyring.open(&crate::secrets::tokens_place(tenant_id), &stored)?;
                serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!("CRM tokens of tenant {tenant_id}: {e}"))
                })
            })
            .transpose()
    }

    /// Saves a tenant's OAuth tokens, sealed with the secret key, durably, before the new access
    /// token is used.
    pub async fn save_crm_tokens(
        &self,
        tenant_id: &str,
        tokens: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        let sealed = self.keyring()?.seal(
            &crate::secrets::tokens_place(tenant_id),
            &tokens.to_string(),
        )?;
        with_db!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO crm_tokens (tenant_id, tokens, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET tokens = excluded.tokens, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant_id)
            .bind(sealed)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Drops a tenant's OAuth tokens (its CRM account changed: a new consent is needed). True
    /// when there were tokens.
    pub async fn forget_crm_tokens(&self, tenant_id: &str) -> Result<bool> {
        Ok(with_db!(self.db(), pool => {
            sqlx::query("DELETE FROM crm_tokens WHERE tenant_id = $1")
                .bind(tenant_id)
                .execute(pool)
                .await?
                .rows_affected()
                > 0
        }))
    }

    /// Records a consent in progress under the hash of its `state`, until `expires_at_ms`;
    /// expired ones are cleared on the way.
    pub async fn create_oauth_state(
        &self,
        state_hash: &str,
        state: &OAuthState,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        with_db!(self.db(), pool => {
            sqlx::query("DELETE FROM oauth_states WHERE expires_at_ms < $1")
                .bind(now_ms)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_states (state_hash, tenant_id, nonce_hash, expires_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(state_hash)
            .bind(&state.tenant_id)
            .bind(&state.nonce_hash)
            .bind(expires_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Takes a consent in progress by the hash of its `state`: removed in the same statement, so
    /// a state is used at most once, whichever instance the callback reaches. `None` when it is
    /// unknown, already used or expired.
    pub async fn take_oauth_state(
        &self,
        state_hash: &str,
        now_ms: i64,
    ) -> Result<Option<OAuthState>> {
        let row: Option<(String, String, i64)> = with_db!(self.db(), pool => {
            sqlx::query_as(
                "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING tenant_id, nonce_hash, expires_at_ms",
            )
            .bind(state_hash)
            .fetch_optional(pool)
            .await?
        });
        Ok(row
            .filter(|(_, _, expires_at_ms)| *expires_at_ms >= now_ms)
            .map(|(tenant_id, nonce_hash, _)| OAuthState {
                tenant_id,
                nonce_hash,
            }))
    }

    /// Sets the CRM status of every tenant in `tenant_ids` to `state`, in one transaction (the
    /// worker starting thousands of deliveries at once).
    pub async fn set_crm_statuses(
        &self,
        tenant_ids: &[String],
        state: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<()> {
        if tenant_ids.is_empty() {
            return Ok(());
        }
        with_db!(self.db(), pool => {
            let mut tx = pool.begin().await?;
            for tenant_id in tenant_ids {
                sqlx::query(CRM_STATUS_UPSERT)
                .bind(tenant_id)
                .bind(state)
                .bind(detail)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn set_crm_status(
        &self,
        tenant_id: &str,
        state: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<()> {
        with_db!(self.db(), pool => {
            sqlx::query(CRM_STATUS_UPSERT)
            .bind(tenant_id)
            .bind(state)
            .bind(detail)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The tenants whose CRM status is `state` (`broken`, ...), with it, by tenant id: one
    /// query for `/readyz`, however many tenants.
    pub async fn crm_statuses_in(&self, state: &str) -> Result<Vec<(String, CrmStatus)>> {
        let rows: Vec<(String, String, String, i64)> = with_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT tenant_id, state, detail, updated_at_ms FROM crm_status WHERE state = $1 ORDER BY tenant_id",
            )
            .bind(state)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(tenant, state, detail, updated_at_ms)| {
                (
                    tenant,
                    CrmStatus {
                        state,
                        detail,
                        updated_at_ms,
                    },
                )
            })
            .collect())
    }

    pub async fn crm_status(&self, tenant_id: &str) -> Result<Option<CrmStatus>> {
        let row: Option<(String, String, i64)> = with_db!(self.db(), pool => {
            sqlx::query_as("SELECT state, detail, updated_at_ms FROM crm_status WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(state, detail, updated_at_ms)| CrmStatus {
            state,
            detail,
            updated_at_ms,
        }))
    }
}
