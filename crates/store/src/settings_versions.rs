//! Saved settings of a tenant: each save writes the tenant's current settings and a numbered
//! version (who, when, what changed) in one transaction, so a save is whole or absent and the
//! history can be read back and restored.

use crate::{with_db, Result, Store};

/// One saved settings document.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SettingsVersion {
    pub tenant_id: String,
    /// 1 for the first save, then one more each save.
    pub version: i64,
    pub settings_toml: String,
    /// Who saved it: "admin (web UI)", "admin API", "config file", …
    pub author: String,
    /// What changed, in words (the keys that changed).
    pub summary: String,
    pub created_at_ms: i64,
}

impl Store {
    /// Makes `settings_toml` the tenant's settings and records it as a new version. The caller
    /// has validated the text. `None` when the tenant does not exist (nothing is written).
    pub async fn save_tenant_settings(
        &self,
        tenant_id: &str,
        settings_toml: &str,
        author: &str,
        summary: &str,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query("UPDATE tenants SET settings_toml = $2, updated_at_ms = $3 WHERE id = $1")
                .bind(tenant_id)
                .bind(settings_toml)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                tx.rollback().await?;
                None
            } else {
                let last: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(version) FROM settings_versions WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_one(&mut *tx)
                .await?;
                let version = last.unwrap_or(0) + 1;
                sqlx::query(
                    "INSERT INTO settings_versions (tenant_id, version, settings_toml, author, summary, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(tenant_id)
                .bind(version)
                .bind(settings_toml)
                .bind(author)
                .bind(summary)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Some(version)
            }
        }))
    }

    /// The tenant's newest versions first, at most `limit`.
    pub async fn settings_versions(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<SettingsVersion>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, version, settings_toml, author, summary, created_at_ms FROM settings_versions \
                 WHERE tenant_id = $1 ORDER BY version DESC LIMIT $2",
            )
            .bind(tenant_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn settings_version(
        &self,
        tenant_id: &str,
        version: i64,
    ) -> Result<Option<SettingsVersion>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, version, settings_toml, author, summary, created_at_ms FROM settings_versions \
                 WHERE tenant_id = $1 AND version = $2",
            )
            .bind(tenant_id)
            .bind(version)
            .fetch_optional(pool)
            .await?
        }))
    }
}
