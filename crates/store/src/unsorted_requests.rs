//! The unsorted request (amoCRM's "incoming lead") last created for each unknown client, by the
//! last ten digits of the number: a later call of the same client attaches to it while it is
//! pending, rather than creating a second request for one person.

use crate::{with_db, Result, Store};

/// An unsorted request created for a client.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UnsortedRequest {
    pub tenant_id: String,
    /// The client's number, last ten digits (how amoCRM tells numbers apart).
    pub client_phone10: String,
    /// amoCRM's id of the request.
    pub uid: String,
    /// The lead and contact amoCRM created with it.
    pub lead_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "tenant_id, client_phone10, uid, lead_id, contact_id, created_at_ms";

impl Store {
    /// Remembers the request created for the client, replacing an older one.
    pub async fn remember_unsorted_request(&self, request: &UnsortedRequest) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO unsorted_requests (tenant_id, client_phone10, uid, lead_id, contact_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, client_phone10) DO UPDATE SET uid = excluded.uid, \
                 lead_id = excluded.lead_id, contact_id = excluded.contact_id, created_at_ms = excluded.created_at_ms",
            )
            .bind(&request.tenant_id)
            .bind(&request.client_phone10)
            .bind(&request.uid)
            .bind(request.lead_id)
            .bind(request.contact_id)
            .bind(request.created_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The request last created for the client, if one is remembered.
    pub async fn unsorted_request(
        &self,
        tenant_id: &str,
        client_phone10: &str,
    ) -> Result<Option<UnsortedRequest>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM unsorted_requests WHERE tenant_id = $1 AND client_phone10 = $2"
            ))
            .bind(tenant_id)
            .bind(client_phone10)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Forgets request `uid` of the client (accepted or declined: no longer pending). A newer
    /// request remembered meanwhile is kept.
    pub async fn forget_unsorted_request(
        &self,
        tenant_id: &str,
        client_phone10: &str,
        uid: &str,
    ) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "DELETE FROM unsorted_requests WHERE tenant_id = $1 AND client_phone10 = $2 AND uid = $3",
            )
            .bind(tenant_id)
            .bind(client_phone10)
            .bind(uid)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
