//! The new-client action (C4) for calls whose client the CRM does not know: a contact, a contact
//! and a lead, an unsorted request, or nothing (the call is parked saying so).

use super::answers::{answer_for, chunks_of};
use super::calls::{rule_list, Call};
use super::work::OutboxWork;
use super::{RoundError, TenantDelivery, SOURCE, WAIT_FOR_CALL_MS};
use crate::state::now_ms;
use callbridge_amocrm::{Error as CrmError, NewComplexLead, NewContact, NewUnsortedSip};
use callbridge_core::assembler::Direction;
use callbridge_core::plan::CallRecord;
use callbridge_core::settings::{CrmUserId, NewClientAction};
use callbridge_store::OutboxItem;
use serde_json::json;
use std::collections::HashSet;

impl TenantDelivery {
    /// Calls of clients the CRM does not know: the new-client action. The created ids are kept
    /// as progress and the calls stay due: they go out with the next round's first batch
    /// (amoCRM attaches them to the contact, or to its single new lead), one request less than
    /// sending them again here. No call given here has a client created yet: those that have go
    /// out as calls (see [`TenantDelivery::deliver_calls`]).
    pub(super) async fn new_clients(&self, calls: Vec<Call>) -> Result<(), RoundError> {
        let store = &self.state.store;
        // One client, one contact: a second record creating the same client in this round waits
        // for the first and then finds the client as a repeat one.
        let mut creating: HashSet<String> = HashSet::new();
        let mut new_contacts: Vec<Call> = Vec::new();
        let mut new_leads: Vec<Call> = Vec::new();
        let mut unsorted: Vec<(Call, String)> = Vec::new();
        // Records waiting for another record to create their client.
        let mut waiting: Vec<(Call, &'static str)> = Vec::new();
        for mut call in calls {
            self.ensure_lease()?;
            let phone = call.phone().to_string();
            if call.record.entities.is_some() && !creating.insert(call.crm_client()) {
                call.progress.new_client = false;
                waiting.push((call, "the same client is being created by another record"));
                continue;
            }
            let Some(entities) = call.record.entities else {
                // Only the record that creates the entry's entities creates the client; the others
                // wait for it, if there is one still to be written.
                if self.sibling_creates_client(&call.item).await? {
                    waiting.push((
                        call,
                        "waiting for the entry's first record to create the client",
                    ));
                } else {
                    store
                        .park_item(
                            &call.item.item_key,
                            &format!("the client {phone} is not in amoCRM and this record creates no contact (P4, C4); create the contact, then retry"),
                        )
                        .await?;
                }
                continue;
            };
            call.progress.new_client = true;
            match entities.rules.new_client {
                // Created together below, up to 50 a request.
                NewClientAction::Contact => new_contacts.push(call),
                NewClientAction::ContactAndLead => new_leads.push(call),
                // Unsorted requests are for calls that came in; an outbound call to an unknown
                // number is someone the employee chose to call: a contact, as its (outgoing)
                // settings' new-client action asks to create one.
                NewClientAction::Unsorted if call.record.direction != Direction::Inbound => {
                    new_contacts.push(call)
                }
                NewClientAction::Unsorted => unsorted.push((call, phone)),
                NewClientAction::Manual => {
                    store
                        .park_item(
                            &call.item.item_key,
                            &format!("the client {phone} is not in amoCRM and the new-client action is manual (C4); create the contact, then retry"),
                        )
                        .await?;
                }
            }
        }
        if !unsorted.is_empty() {
            self.unsorted_requests(unsorted).await?;
        }
        // The two kinds go out together: independent requests, so neither waits for the other.
        let (contacts, leads) = tokio::join!(
            self.create_contacts(new_contacts),
            self.create_contacts_and_leads(new_leads)
        );
        let mut created_clients = contacts?;
        created_clients.extend(leads?);
        // A record whose client was just created goes out with the next round's first batch;
        // one whose creator is not in this round (failed, or waiting itself) asks again later.
        for (mut call, why) in waiting {
            // Sent as a known client's call next time: by then its contact exists.
            call.progress.new_client = false;
            let due = if created_clients.contains(&call.crm_client()) {
                now_ms()
            } else {
                now_ms() + WAIT_FOR_CALL_MS
            };
            store
                .save_progress(&call.item.item_key, &json!(call.progress))
                .await?;
            store
                .retry_item(&call.item.item_key, why, due, false, false)
                .await?;
        }
        Ok(())
    }

    /// New clients' contacts, up to 50 a request. Returns the clients (last 10 digits) created.
    pub(super) async fn create_contacts(
        &self,
        new_contacts: Vec<Call>,
    ) -> Result<HashSet<String>, RoundError> {
        let mut created_clients = HashSet::new();
        for chunk in chunks_of(new_contacts) {
            self.ensure_lease()?;
            let requests: Vec<NewContact> = chunk
                .iter()
                .map(|c| {
                    let phone = c.phone().to_string();
                    NewContact {
                        name: format!("Client {phone}"),
                        phone,
                        responsible_user_id: c.responsible().map(CrmUserId::get),
                        request_id: Some(c.item.item_key.clone()),
                    }
                })
                .collect();
            match self.client.create_contacts(&requests).await {
                Ok(created) => {
                    for (i, mut call) in chunk.into_iter().enumerate() {
                        call.progress.contact_id =
                            answer_for(&created, &call.item.item_key, i).map(|c| c.id);
                        created_clients.insert(self.keep_created(&call).await?);
                    }
                }
                Err(e) => {
                    self.failed(chunk.iter().map(|c| &c.item), e, false).await?;
                }
            }
        }
        Ok(created_clients)
    }

    /// New clients' contact + lead pairs (complex leads), up to 50 a request. Returns the clients (last 10 digits) created.
    pub(super) async fn create_contacts_and_leads(
        &self,
        new_leads: Vec<Call>,
    ) -> Result<HashSet<String>, RoundError> {
        let mut created_clients = HashSet::new();
        for chunk in chunks_of(new_leads) {
            self.ensure_lease()?;
            let requests: Vec<NewComplexLead> = chunk
                .iter()
                .map(|c| {
                    let phone = c.phone().to_string();
                    let responsible = c.responsible().map(CrmUserId::get);
                    NewComplexLead {
                        name: lead_name(&c.record, &phone),
                        responsible_user_id: responsible,
                        contact: NewContact {
                            name: format!("Client {phone}"),
                            phone,
                            responsible_user_id: responsible,
                            request_id: None,
                        },
                        request_id: Some(c.item.item_key.clone()),
                    }
                })
                .collect();
            match self.client.create_complex_leads(&requests).await {
                Ok(created) => {
                    for (i, mut call) in chunk.into_iter().enumerate() {
                        let answer = answer_for(&created, &call.item.item_key, i);
                        if let Some(c) = answer {
                            call.progress.lead_id = Some(c.id);
                            call.progress.contact_id = c.contact_id;
                        }
                        created_clients.insert(self.keep_created(&call).await?);
                    }
                }
                Err(e) => {
                    self.failed(chunk.iter().map(|c| &c.item), e, false).await?;
                }
            }
        }
        Ok(created_clients)
    }

    /// Keeps what was created for a new client's call as its progress; returns the client (last
    /// 10 digits).
    pub(super) async fn keep_created(&self, call: &Call) -> Result<String, RoundError> {
        self.state
            .store
            .save_progress(&call.item.item_key, &json!(call.progress))
            .await?;
        Ok(call.crm_client())
    }

    /// Unsorted requests for inbound calls of unknown clients, once the main pipeline (where
    /// they go: no `pipeline_id` is sent) is known to take them. With unsorted off there, amoCRM
    /// would refuse each request; the calls are parked saying so and what to do instead.
    async fn unsorted_requests(&self, calls: Vec<(Call, String)>) -> Result<(), RoundError> {
        let pipelines = match self.background.pipelines().await {
            Ok(pipelines) => pipelines,
            Err(e) => {
                return self
                    .failed(calls.iter().map(|(c, _)| &c.item), e, false)
                    .await
            }
        };
        let main = pipelines
            .iter()
            .find(|p| p.is_main)
            .or_else(|| pipelines.first());
        if let Some(off) = main.filter(|p| !p.is_unsorted_on) {
            let why = format!(
                "unsorted requests (incoming leads) are off in amoCRM for the pipeline \
                 \"{}\" ({}), so this unknown client's call cannot go there (C4); turn \
                 incoming leads on in that pipeline's settings or choose another new-client \
                 action, then retry",
                off.name, off.id
            );
            for (call, _) in &calls {
                self.state
                    .store
                    .park_item(&call.item.item_key, &why)
                    .await?;
            }
            return Ok(());
        }
        for (call, phone) in calls {
            self.ensure_lease()?;
            self.unsorted(call, &phone).await?;
        }
        Ok(())
    }

    pub(super) async fn unsorted(&self, call: Call, phone: &str) -> Result<(), RoundError> {
        let responsible = call.responsible().map(CrmUserId::get);
        let key = call.item.item_key.clone();
        self.state
            .store
            .mark_sending(std::slice::from_ref(&key), now_ms())
            .await?;
        let request = NewUnsortedSip {
            source_uid: SOURCE.into(),
            source_name: "callbridge (Mango Office)".into(),
            uniq: key.clone(),
            from: phone.to_string(),
            to: call.record.employee_extension.clone().unwrap_or_default(),
            called_at: call.record.started_at,
            duration: call.record.duration_s,
            link: self.recording_link(&call.record),
            service_code: SOURCE.into(),
            call_responsible: responsible,
            contact_name: format!("Client {phone}"),
            lead_name: lead_name(&call.record, phone),
            responsible_user_id: responsible,
            request_id: Some(key.clone()),
        };
        match self.client.add_unsorted_sip(&[request]).await {
            Ok(created) => {
                let first = created.first();
                self.state
                    .store
                    .complete_items(
                        &[(
                            key,
                            json!({
                                "unsorted_uid": first.map(|c| c.uid.clone()),
                                "lead_id": first.and_then(|c| c.lead_id),
                                "contact_id": first.and_then(|c| c.contact_id),
                                "reasons": call.record.reasons,
                            }),
                        )],
                        now_ms(),
                    )
                    .await?;
            }
            // The unsorted API refuses a second item with the same uniq: an earlier attempt whose
            // answer was lost already landed.
            Err(CrmError::Rejected { message, .. })
                if call.item.sent_at_ms.is_some() && message.to_lowercase().contains("uniq") =>
            {
                self.state
                    .store
                    .complete_items(
                        &[(
                            key,
                            json!({"unsorted": "already present", "reasons": call.record.reasons}),
                        )],
                        now_ms(),
                    )
                    .await?;
            }
            Err(e) => self.failed([&call.item], e, true).await?,
        }
        Ok(())
    }

    /// Whether another record of the same entry will create the client and is not done yet.
    pub(super) async fn sibling_creates_client(
        &self,
        item: &OutboxItem,
    ) -> Result<bool, RoundError> {
        let prefix = format!("{}/{}/", self.tenant_id(), item.entry_id);
        for conv in ["0", "1", "2", "3", "4", "5", "6", "7", "missed"] {
            let key = format!("{prefix}{conv}/call");
            if key == item.item_key {
                continue;
            }
            if let Some(other) = self.state.store.outbox_item(&key).await? {
                let creates = matches!(
                    OutboxWork::read(&other.kind, &other.payload),
                    Ok(OutboxWork::Call(work)) if work.record.entities.is_some()
                );
                if creates && other.state == "pending" {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

pub(super) fn lead_name(record: &CallRecord, phone: &str) -> String {
    let what = if record.direction == Direction::Outbound {
        "Outgoing call to"
    } else {
        "Incoming call from"
    };
    format!(
        "{what} {phone} (callbridge: {})",
        rule_list(&record.reasons)
    )
}
