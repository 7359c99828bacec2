//! What is kept about a tenant besides its keys and settings: its language (of the texts written
//! to the CRM), the hash of the config file's entry last applied to it, and the creation of a
//! tenant that must not replace one of the same id.

use crate::{secrets, with_db, Result, Store, StoreError, TenantRow};

/// Why a new tenant was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("a tenant with this id exists")]
    IdTaken,
    #[error("another tenant uses this Mango API key")]
    KeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Creates a tenant that does not exist yet, with its language, and its settings recorded as
    /// version 1 (`author`, `summary`), in one transaction. Refused, with nothing written, when
    /// the id or the Mango API key is taken.
    pub async fn create_tenant(
        &self,
        t: &TenantRow,
        language: &str,
        author: &str,
        summary: &str,
    ) -> std::result::Result<(), CreateTenantError> {
        let keyring = self.keyring()?;
        let salt = keyring.seal(&secrets::salt_place(&t.id), &t.mango_api_salt)?;
        let crm = keyring.seal_crm(&t.id, &t.crm)?.to_string();
        let outcome: std::result::Result<(), CreateTenantError> = with_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from)?;
            let id_taken: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                .bind(&t.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            let key_taken: Option<String> =
                sqlx::query_scalar("SELECT id FROM tenants WHERE mango_api_key = $1")
                    .bind(&t.mango_api_key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            if id_taken.is_some() {
                Err(CreateTenantError::IdTaken)
            } else if key_taken.is_some() {
                Err(CreateTenantError::KeyTaken)
            } else {
                // Another instance may have created either in between: the primary key and the
                // key's unique index still refuse, and the message says which.
                let inserted = sqlx::query(
                    "INSERT INTO tenants (id, mango_api_key, mango_api_salt, settings_toml, crm, updated_at_ms, language) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.id)
                .bind(&t.mango_api_key)
                .bind(&salt)
                .bind(&t.settings_toml)
                .bind(&crm)
                .bind(t.updated_at_ms)
                .bind(language)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        if e.message().contains("mango_api_key") {
                            Err(CreateTenantError::KeyTaken)
                        } else {
                            Err(CreateTenantError::IdTaken)
                        }
                    }
                    Err(e) => Err(StoreError::from(e).into()),
                    Ok(_) => {
                        sqlx::query(
                            "INSERT INTO settings_versions (tenant_id, version, settings_toml, author, summary, created_at_ms) \
                             VALUES ($1, 1, $2, $3, $4, $5)",
                        )
                        .bind(&t.id)
                        .bind(&t.settings_toml)
                        .bind(author)
                        .bind(summary)
                        .bind(t.updated_at_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from)?;
                        tx.commit().await.map_err(StoreError::from)?;
                        Ok(())
                    }
                }
            }
        });
        outcome
    }

    /// The tenant's language code (`ru`, `en`), `None` when there is no such tenant.
    pub async fn tenant_language(&self, tenant_id: &str) -> Result<Option<String>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT language FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Every tenant's language code, by tenant id.
    pub async fn tenant_languages(&self) -> Result<Vec<(String, String)>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, language FROM tenants ORDER BY id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Sets the tenant's language code (the caller checked it). False when there is no such
    /// tenant.
    pub async fn set_tenant_language(&self, tenant_id: &str, language: &str) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query("UPDATE tenants SET language = $2 WHERE id = $1")
                .bind(tenant_id)
                .bind(language)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    /// The hash of the config file's entry last applied to the tenant (`None`: never applied,
    /// or no such tenant).
    pub async fn file_seed_hash(&self, tenant_id: &str) -> Result<Option<String>> {
        let hash: Option<Option<String>> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT file_seed_hash FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(hash.flatten())
    }

    /// Records the hash of the config file's entry just applied to the tenant.
    pub async fn set_file_seed_hash(&self, tenant_id: &str, hash: &str) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query("UPDATE tenants SET file_seed_hash = $2 WHERE id = $1")
                .bind(tenant_id)
                .bind(hash)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }
}
