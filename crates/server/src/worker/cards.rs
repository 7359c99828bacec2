//! Call cards (C1): pop-ups for the CRM users a call rings, gathered a second at a time.

use super::{TenantDelivery, CARD_MAX_AGE};
use callbridge_amocrm::CallCardEvent;
use callbridge_core::cards::{CardAction, CardChange};
use callbridge_core::settings::CrmUserId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

impl TenantDelivery {
    /// Sends card pops for this tenant's mapped users while this instance holds the lease.
    pub(super) async fn deliver_cards(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // This tenant's changes only: a phone ringing at another tenant does not wake this task.
        let mut rx = self.state.card_routes.register(self.tenant_id());
        loop {
            let first = tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => return,
            };
            // None: a newer delivery of the tenant took the route over.
            let Some(first) = first else { return };
            let mut pending: Vec<(tokio::time::Instant, CardChange)> =
                vec![(tokio::time::Instant::now(), first)];
            // Gather what rings within a second into one request: at most one of the account's
            // seven requests a second goes to cards, however busy the phones are.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
            while let Ok(Some(card)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                pending.push((tokio::time::Instant::now(), card));
            }
            if !self.lease_ok() {
                continue;
            }
            let mut by_phone: BTreeMap<String, Vec<CrmUserId>> = BTreeMap::new();
            let mut oldest: Option<tokio::time::Instant> = None;
            for (at, card) in pending {
                if card.action != CardAction::Show || at.elapsed() > CARD_MAX_AGE {
                    continue;
                }
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
                let Some(phone) = card.client_phone.clone() else {
                    continue;
                };
                let users = by_phone.entry(phone).or_default();
                if !users.contains(&card.crm_user_id) {
                    users.push(card.crm_user_id);
                }
            }
            if by_phone.is_empty() {
                continue;
            }
            let events: Vec<CallCardEvent> = by_phone
                .into_iter()
                .map(|(phone_number, users)| CallCardEvent {
                    phone_number,
                    users: users.into_iter().map(CrmUserId::get).collect(),
                })
                .collect();
            // A card is only useful while the phone rings: one that cannot go out in time (the
            // account's requests are taken by a backlog) is dropped, not sent late.
            let left = oldest
                .map(|o| CARD_MAX_AGE.saturating_sub(o.elapsed()))
                .unwrap_or_default();
            match tokio::time::timeout(left, self.client.show_call_card(&events)).await {
                Ok(Ok(())) => metrics::counter!("callbridge_crm_cards_shown_total")
                    .increment(events.len() as u64),
                Ok(Err(e)) => {
                    tracing::debug!(tenant = %self.tenant_id(), "call card not shown: {e}")
                }
                Err(_) => metrics::counter!("callbridge_crm_cards_dropped_total")
                    .increment(events.len() as u64),
            }
        }
    }
}
