//! Call cards (C1): pop-ups for the CRM users a call rings, gathered a second at a time for
//! each CRM account, from every tenant connected to it.
//!
//! Each tenant's card task hands its cards to the account's batch ([`AccountCards`], held by
//! the account's lease, which the account's deliveries share). One task per account gathers
//! what rings within a second into one request: at most one of the account's seven requests a
//! second goes to cards, however many tenants share the account and however busy their phones
//! are. (Gathered per tenant, 500 tenants ringing on one account asked for 500 requests in a
//! second, which the limiter then spread over 70 seconds, ahead of the calls' notes.)

use super::crm_port::CrmPort;
use super::lease::held_now;
use super::{TenantDelivery, CARD_MAX_AGE};
use callbridge_amocrm::CallCardEvent;
use callbridge_core::cards::{CardAction, CardChange};
use callbridge_core::settings::CrmUserId;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long the first card of a batch waits for others of the account.
const GATHER: Duration = Duration::from_millis(1000);

/// Cards waiting for the account's next request; what does not fit is dropped (a card is only
/// worth popping while the phone rings).
const ACCOUNT_CAPACITY: usize = 1024;

/// One card to show on its way to the account's batch: the client's phone and the user.
struct PendingCard {
    at: Instant,
    phone: String,
    user: CrmUserId,
    /// The client of the tenant whose call it is: the batch goes out with one of them (they
    /// talk to the same account, through its one limiter).
    client: Arc<dyn CrmPort>,
}

/// The account's card batch: cards of all its tenants in, one request a second out.
pub(super) struct AccountCards {
    tx: mpsc::Sender<PendingCard>,
}

impl AccountCards {
    /// Starts the account's sending task; it ends once this is dropped and what was handed in
    /// has gone out. `until` is the account's lease (see `lease.rs`): cards go out only while
    /// this instance holds it.
    pub(super) fn start(account: String, until: Arc<AtomicI64>) -> AccountCards {
        let (tx, rx) = mpsc::channel(ACCOUNT_CAPACITY);
        tokio::spawn(send_account_cards(account, rx, until));
        AccountCards { tx }
    }

    fn offer(&self, card: PendingCard) {
        if self.tx.try_send(card).is_err() {
            metrics::counter!("callbridge_crm_cards_dropped_total").increment(1);
        }
    }
}

impl TenantDelivery {
    /// Hands this tenant's card pops to its account's batch.
    pub(super) async fn deliver_cards(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // This tenant's changes only: a phone ringing at another tenant does not wake this task.
        let mut rx = self.state.card_routes.register(self.tenant_id());
        loop {
            let change = tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => return,
            };
            // None: a newer delivery of the tenant took the route over.
            let Some(change) = change else { return };
            let CardChange {
                action: CardAction::Show,
                client_phone: Some(phone),
                crm_user_id: user,
                ..
            } = change
            else {
                continue;
            };
            self.lease.cards.offer(PendingCard {
                at: Instant::now(),
                phone,
                user,
                client: self.client.clone(),
            });
        }
    }
}

/// The account's sending task: gathers a second of cards from the first one in, merges them
/// by phone, and sends them in one request.
async fn send_account_cards(
    account: String,
    mut rx: mpsc::Receiver<PendingCard>,
    until: Arc<AtomicI64>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = first.at + GATHER;
        let mut pending = vec![first];
        while let Ok(Some(card)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            pending.push(card);
        }
        if !held_now(&until) {
            // Another instance delivers for the account (or none may yet).
            continue;
        }
        let mut by_phone: BTreeMap<String, Vec<CrmUserId>> = BTreeMap::new();
        let mut oldest: Option<Instant> = None;
        let mut client = None;
        for card in pending {
            if card.at.elapsed() > CARD_MAX_AGE {
                continue;
            }
            oldest = Some(oldest.map_or(card.at, |o| o.min(card.at)));
            let users = by_phone.entry(card.phone).or_default();
            if !users.contains(&card.user) {
                users.push(card.user);
            }
            client = Some(card.client);
        }
        let (Some(client), Some(oldest)) = (client, oldest) else {
            continue;
        };
        let events: Vec<CallCardEvent> = by_phone
            .into_iter()
            .map(|(phone_number, users)| CallCardEvent {
                phone_number,
                users: users.into_iter().map(CrmUserId::get).collect(),
            })
            .collect();
        // A card is only useful while the phone rings: one that cannot go out in time (the
        // account's requests are taken by a backlog) is dropped, not sent late.
        let left = CARD_MAX_AGE.saturating_sub(oldest.elapsed());
        match tokio::time::timeout(left, client.show_call_card(&events)).await {
            Ok(Ok(())) => {
                metrics::counter!("callbridge_crm_cards_shown_total").increment(events.len() as u64)
            }
            Ok(Err(e)) => tracing::debug!(account = %account, "call card not shown: {e}"),
            Err(_) => metrics::counter!("callbridge_crm_cards_dropped_total")
                .increment(events.len() as u64),
        }
    }
}
