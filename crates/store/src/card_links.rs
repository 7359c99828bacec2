//! Personal card links: a CRM user's link to the live call card page, `/card/<token>`. Only
//! the token's SHA-256 is kept (a copy of the database opens no page) and its first characters,
//! so the settings window can tell two links apart. A revoked link's row is deleted: a revoked
//! and an unknown token are one case, and nothing tells whether a token ever existed.

use crate::{with_db, Result, Store};

/// A live link (its token is not kept).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CardLink {
    pub id: i64,
    pub tenant_id: String,
    /// The CRM user whose cards the page shows (a positive integer).
    pub crm_user_id: i64,
    /// The token's first characters, for telling links apart ("3fa91c0b…").
    pub token_prefix: String,
    pub created_at_ms: i64,
    /// When the page or its stream was last opened with the link.
    pub last_used_ms: Option<i64>,
}

/// A link to store: who it is for, and its token's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCardLink<'a> {
    pub tenant_id: &'a str,
    pub crm_user_id: i64,
    pub token_hash: &'a str,
    pub token_prefix: &'a str,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, tenant_id, crm_user_id, token_prefix, created_at_ms, last_used_ms";

impl Store {
    /// Stores a new link and returns its id.
    pub async fn create_card_link(&self, link: &NewCardLink<'_>) -> Result<i64> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO card_links (tenant_id, crm_user_id, token_hash, token_prefix, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(link.tenant_id)
            .bind(link.crm_user_id)
            .bind(link.token_hash)
            .bind(link.token_prefix)
            .bind(link.created_at_ms)
            .fetch_one(pool)
            .await?
        }))
    }

    /// A tenant's links, oldest first.
    pub async fn card_links(&self, tenant_id: &str) -> Result<Vec<CardLink>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM card_links WHERE tenant_id = $1 ORDER BY created_at_ms, id"
            ))
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The link whose token has this digest, if it is live.
    pub async fn card_link_by_hash(&self, token_hash: &str) -> Result<Option<CardLink>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM card_links WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Whether link `id` of the tenant is still live (not revoked, its tenant not deleted).
    pub async fn card_link_live(&self, tenant_id: &str, id: i64) -> Result<bool> {
        let found: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM card_links WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// Records that the link was used at `now_ms`.
    pub async fn touch_card_link(&self, id: i64, now_ms: i64) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query("UPDATE card_links SET last_used_ms = $2 WHERE id = $1")
                .bind(id)
                .bind(now_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Revokes (deletes) link `id` of the tenant; false when there was no such link.
    pub async fn revoke_card_link(&self, tenant_id: &str, id: i64) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM card_links WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant_id)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }
}
