//! What a tenant's webhooks look like from the Connections page: the latest refusal (bad
//! signature, unknown key, malformed) with how many were refused since the last accepted one.
//! The newest accepted one is in `arrivals.rs`.

use crate::{with_db, Result, Store};

/// The latest refused webhook of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRefusal {
    pub refused_at_ms: i64,
    /// A short code (`bad_signature`, `unknown_key`, `malformed`, …), optionally followed by
    /// `": "` and the refusal's words.
    pub reason: String,
    /// Refusals since the last accepted event (at least this one).
    pub count_since_accepted: i64,
}

impl Store {
    /// Records `count` refusals of the tenant's webhooks, the last at `refused_at_ms` for
    /// `reason`. The count starts again when an event was accepted after the stored refusal.
    pub async fn record_webhook_refusal(
        &self,
        tenant_id: &str,
        refused_at_ms: i64,
        reason: &str,
        count: i64,
    ) -> Result<()> {
        // The newest arrival is the table's and this store's unwritten one, read together.
        let _reading = self.arrivals.flushing.read().await;
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO webhook_refusals (tenant_id, refused_at_ms, reason, count_since_accepted) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id) DO UPDATE SET \
                 count_since_accepted = CASE WHEN \
                   COALESCE((SELECT last_received_at_ms FROM tenant_arrivals WHERE tenant_id = $1), 0) \
                   > webhook_refusals.refused_at_ms OR $5 > webhook_refusals.refused_at_ms \
                   THEN excluded.count_since_accepted \
                   ELSE webhook_refusals.count_since_accepted + excluded.count_since_accepted END, \
                 refused_at_ms = excluded.refused_at_ms, reason = excluded.reason",
            )
            .bind(tenant_id)
            .bind(refused_at_ms)
            .bind(reason)
            .bind(count)
            .bind(self.pending_arrival_ms(tenant_id))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every tenant's latest refused webhook refused at `since_ms` or later, by tenant id: one
    /// query for `/readyz`'s warnings, which a probe asks every few seconds (one query a
    /// tenant took a second with 5,000 tenants).
    pub async fn webhook_refusals_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, WebhookRefusal)>> {
        let rows: Vec<(String, i64, String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, refused_at_ms, reason, count_since_accepted FROM webhook_refusals \
                 WHERE refused_at_ms >= $1 ORDER BY tenant_id",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(tenant, refused_at_ms, reason, count_since_accepted)| {
                (
                    tenant,
                    WebhookRefusal {
                        refused_at_ms,
                        reason,
                        count_since_accepted,
                    },
                )
            })
            .collect())
    }

    /// The tenant's latest refused webhook, if any was ever refused.
    pub async fn webhook_refusal(&self, tenant_id: &str) -> Result<Option<WebhookRefusal>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT refused_at_ms, reason, count_since_accepted FROM webhook_refusals WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::{NewEvent, Store};

    async fn stores(test: &str) -> Vec<Store> {
        let dir = std::env::temp_dir().join(format!(
            "callbridge-webhook-status-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut out = vec![Store::open(None, &dir).await.expect("sqlite store")];
        let url =
            callbridge_test_support::fresh_postgres_database(&format!("webhook_status_{test}"));
        out.push(
            Store::open(Some(&url), std::path::Path::new("."))
                .await
                .expect("postgres store"),
        );
        out
    }

    fn event(key: &str, path: &str, received_at_ms: i64) -> NewEvent {
        NewEvent {
            tenant_id: "acme".into(),
            entry_id: format!("entry-{key}"),
            path: path.into(),
            dedupe_key: key.into(),
            json: "{}".into(),
            received_at_ms,
        }
    }

    #[tokio::test]
    async fn the_newest_event_and_refusals_counted_since_the_last_accepted_one() {
        for store in stores("counted").await {
            let backend = store.backend();
            assert_eq!(store.last_received_event("acme").await.unwrap(), None);
            assert_eq!(store.webhook_refusal("acme").await.unwrap(), None);
            store
                .append_events(&[
                    event("001764000001:call:a", "events/call", 5_000),
                    event("001764000002:summary:a", "events/summary", 6_000),
                    // A late re-delivery of an older event arrived last.
                    event("001764000000:call:z", "events/call", 7_000),
                ])
                .await
                .unwrap();
            let last = store.last_received_event("acme").await.unwrap().unwrap();
            assert_eq!(
                (last.path.as_str(), last.received_at_ms),
                ("events/call", 7_000),
                "{backend}"
            );
            assert_eq!(store.last_received_event("other").await.unwrap(), None);

            store
                .record_webhook_refusal("acme", 8_000, "bad_signature", 1)
                .await
                .unwrap();
            store
                .record_webhook_refusal("acme", 9_000, "unknown_key", 3)
                .await
                .unwrap();
            let refusal = store.webhook_refusal("acme").await.unwrap().unwrap();
            assert_eq!(refusal.refused_at_ms, 9_000, "{backend}");
            // All tenants' at once, from a time on: another tenant's older refusal is left out.
            store
                .record_webhook_refusal("older", 4_000, "bad_signature", 1)
                .await
                .unwrap();
            let recent = store.webhook_refusals_since(8_500).await.unwrap();
            assert_eq!(recent, [("acme".to_string(), refusal.clone())], "{backend}");
            assert_eq!(store.webhook_refusals_since(0).await.unwrap().len(), 2);
            assert_eq!(refusal.reason, "unknown_key", "{backend}");
            assert_eq!(refusal.count_since_accepted, 4, "{backend}");

            // An event accepted after the stored refusal: the count starts again.
            store
                .append_events(&[event("001764000010:call:b", "events/call", 9_500)])
                .await
                .unwrap();
            store
                .record_webhook_refusal("acme", 10_000, "malformed: no entry_id", 2)
                .await
                .unwrap();
            let refusal = store.webhook_refusal("acme").await.unwrap().unwrap();
            assert_eq!(refusal.count_since_accepted, 2, "{backend}");
            assert_eq!(refusal.reason, "malformed: no entry_id", "{backend}");

            // Deleted with the tenant.
            store.delete_tenant("acme").await.unwrap();
            assert_eq!(store.webhook_refusal("acme").await.unwrap(), None);
            assert_eq!(store.last_received_event("acme").await.unwrap(), None);
        }
    }
}
