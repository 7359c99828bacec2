//! Tenants: one PBX account linked to one CRM account, with its settings; salts and CRM secrets
//! sealed at rest.

use crate::{secrets, with_db, with_writer, Result, Store, StoreError};

/// A tenant as stored: one PBX account linked to one CRM account. Its `Debug` hides the salt and
/// the CRM section's secrets, so a logged or printed row shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: String,
    pub mango_api_key: String,
    pub mango_api_salt: String,
    /// The settings document (TOML, the `simulate` schema).
    pub settings_toml: String,
    /// The CRM connection (JSON), filled by the CRM adapter.
    pub crm: serde_json::Value,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for TenantRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRow")
            .field("id", &self.id)
            .field("mango_api_key", &self.mango_api_key)
            .field("mango_api_salt", &secrets::HIDDEN)
            .field("settings_toml", &self.settings_toml)
            .field("crm", &secrets::hide_crm_secrets(&self.crm))
            .field("updated_at_ms", &self.updated_at_ms)
            .finish()
    }
}

impl Store {
    /// Stores a tenant, its salt and the CRM section's secrets sealed under the secret key.
    pub async fn upsert_tenant(&self, t: &TenantRow) -> Result<()> {
        let keyring = self.keyring()?;
        let salt = keyring.seal(&secrets::salt_place(&t.id), &t.mango_api_salt)?;
        let crm = keyring.seal_crm(&t.id, &t.crm)?.to_string();
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO tenants (id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET mango_api_key = excluded.mango_api_key, mango_api_salt = excluded.mango_api_salt, \
                 settings_toml = excluded.settings_toml, crm = excluded.crm, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&t.id)
            .bind(&t.mango_api_key)
            .bind(&salt)
            .bind(&t.settings_toml)
            .bind(&crm)
            .bind(t.updated_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The ids of the tenants the config file manages (see [`Store::mark_config_tenants`]).
    pub async fn config_tenant_ids(&self) -> Result<Vec<String>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE from_config = 1 ORDER BY id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Records that exactly `ids` are the config file's tenants: marks them, and unmarks any
    /// other (so a tenant is the file's only while the file names it). The admin API's upsert
    /// leaves the mark as it is.
    pub async fn mark_config_tenants(&self, ids: &[String]) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE tenants SET from_config = 0 WHERE from_config = 1")
                .execute(&mut *tx)
                .await?;
            for id in ids {
                sqlx::query("UPDATE tenants SET from_config = 1 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>> {
        let rows: Vec<SealedTenantRow> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms FROM tenants ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(|r| self.tenant_row(r)).collect()
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row: Option<SealedTenantRow> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| self.tenant_row(r)).transpose()
    }

    /// A stored tenant with its secrets opened.
    fn tenant_row(&self, row: SealedTenantRow) -> Result<TenantRow> {
        let keyring = self.keyring()?;
        let crm = serde_json::from_str(&row.crm)
            .map_err(|e| StoreError::Corrupt(format!("crm of tenant {}: {e}", row.id)))?;
        Ok(TenantRow {
            mango_api_salt: keyring.open(&secrets::salt_place(&row.id), &row.mango_api_salt)?,
            crm: keyring.open_crm(&row.id, &crm)?,
            id: row.id,
            mango_api_key: row.mango_api_key,
            settings_toml: row.settings_toml,
            updated_at_ms: row.updated_at_ms,
        })
    }

    /// Deletes a tenant and everything kept for it, in one transaction: its events, planned
    /// entries, outbox, OAuth tokens, CRM status and delivery lease. A tenant created later with
    /// the same id starts empty. False when there was no such tenant.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        Ok(self.purge_tenant(id).await?.is_some())
    }

    /// [`Store::delete_tenant`], telling the highest event id the tenant's log had (0: none), so
    /// a processor can drop the tenant's events it still holds; `None`: there was no such tenant.
    /// Rows left under the id by a deletion from before this rule are removed all the same.
    pub async fn purge_tenant(&self, id: &str) -> Result<Option<i64>> {
        let (existed, last_event) = with_writer!(self, conn => {
            // No flush of this store's arrival tallies may fall between the deletion and
            // forgetting the tenant's: it would write the row back (see `arrivals.rs`).
            let _flushing = self.arrivals.flushing.write().await;
            let mut tx = sqlx::Connection::begin(conn).await?;
            let existed = sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            // The log has no index by tenant (its unique index leads with the event's key), so
            // this is one pass over it, which also tells the highest id deleted.
            let ids: Vec<i64> = sqlx::query_scalar("DELETE FROM events WHERE tenant_id = $1 RETURNING id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            let last_event = ids.into_iter().max().unwrap_or(0);
            for table in ["tenant_arrivals", "entries", "outbox", "crm_tokens", "crm_status", "delivery_leases", "settings_versions", "webhook_refusals", "card_links", "unsorted_requests"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            // What this store appended for the tenant and has not written yet must not come
            // back under the id (another instance's last second may: see `arrivals.rs`).
            self.arrivals.forget(id);
            (existed, last_event)
        });
        Ok(existed.then_some(last_event))
    }
}

/// A row of `tenants`, its salt and CRM secrets still sealed.
#[derive(sqlx::FromRow)]
struct SealedTenantRow {
    id: String,
    mango_api_key: String,
    mango_api_salt: String,
    settings_toml: String,
    crm: String,
    updated_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::TenantRow;

    #[test]
    fn a_tenant_rows_debug_shows_no_secret() {
        let row = TenantRow {
            id: "acme".into(),
            mango_api_key: "key-acme".into(),
            mango_api_salt: "salt-Q7w9Zk2mXv4Lp8Rt".into(),
            settings_toml: "plan = \"basic\"\n".into(),
            crm: serde_json::json!({
                "base_url": "https://acme.amocrm.ru",
                "long_lived_token": "longlived-Hx3Nc8Pq1Wz6Ty0",
                "client_id": "cb-client",
                "client_secret": "secret-Bv5Kd2Js9Fm4Ga7",
            }),
            updated_at_ms: 1,
        };
        for shown in [format!("{row:?}"), format!("{row:#?}")] {
            for secret in [
                "salt-Q7w9Zk2mXv4Lp8Rt",
                "longlived-Hx3Nc8Pq1Wz6Ty0",
                "secret-Bv5Kd2Js9Fm4Ga7",
            ] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            // What is not secret is still there to read.
            for visible in ["acme", "key-acme", "https://acme.amocrm.ru", "cb-client"] {
                assert!(shown.contains(visible), "{visible} missing from {shown}");
            }
        }
    }
}
