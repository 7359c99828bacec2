//! The new-client action (C4) for calls whose client the CRM does not know: a contact, a contact
//! and a lead, an unsorted request, or nothing (the call is parked saying so). A client keeps
//! one unsorted request: while it is pending, the client's later calls are call notes on its
//! lead; a lost request is looked for among the pending ones before it is sent again.

use super::answers::{answer_for, chunks_of};
use super::calls::{rule_list, Call};
use super::failures::Marks;
use super::work::OutboxWork;
use super::{RoundError, TenantDelivery, BATCH, CLOCK_MARGIN_S, SOURCE, WAIT_FOR_CALL_MS};
use crate::state::now_ms;
use callbridge_amocrm::{
    CallNoteParams, EntityType, NewComplexLead, NewContact, NewNote, NewUnsortedSip, NoteType,
    Unsorted, UnsortedCreated, UnsortedFilter,
};
use callbridge_core::assembler::Direction;
use callbridge_core::plan::CallRecord;
use callbridge_core::settings::{CrmUserId, NewClientAction};
use callbridge_store::{OutboxItem, UnsortedRequest};
use serde_json::json;
use std::collections::{HashMap, HashSet};

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
        // A client with a pending request gets the call attached to it, not a second request.
        let mut fresh = Vec::new();
        let mut known = Vec::new();
        for (call, phone) in calls {
            let request = self
                .state
                .store
                .unsorted_request(self.tenant_id(), &call.crm_client())
                .await?;
            match request {
                Some(request) => known.push((call, request)),
                None => fresh.push((call, phone)),
            }
        }
        if !known.is_empty() {
            self.calls_of_known_requests(known).await?;
        }
        for (call, phone) in fresh {
            self.ensure_lease()?;
            self.unsorted(call, &phone).await?;
        }
        Ok(())
    }

    /// Calls of clients for whom an unsorted request was created earlier. amoCRM lists only
    /// pending requests, so one listing (by uid, 50 a request) tells which still are: a call of
    /// a pending one is attached to it; the others are forgotten and their calls go out again
    /// as new (accepted: the contact now exists and the call lands on it; declined: the call
    /// finds no one and gets a new request).
    async fn calls_of_known_requests(
        &self,
        calls: Vec<(Call, UnsortedRequest)>,
    ) -> Result<(), RoundError> {
        let store = &self.state.store;
        let mut pending: HashMap<String, Unsorted> = HashMap::new();
        for chunk in calls.chunks(BATCH) {
            self.ensure_lease()?;
            let mut uids: Vec<String> = chunk.iter().map(|(_, r)| r.uid.clone()).collect();
            uids.sort();
            uids.dedup();
            let filter = UnsortedFilter {
                uids,
                created_from: None,
            };
            match self.client.pending_unsorted_sip(&filter).await {
                Ok(listed) => pending.extend(listed.into_iter().map(|u| (u.uid.clone(), u))),
                Err(e) => {
                    return self
                        .failed(calls.iter().map(|(c, _)| &c.item), e, false)
                        .await
                }
            }
        }
        for (mut call, request) in calls {
            if let Some(listed) = pending.get(&request.uid) {
                self.ensure_lease()?;
                self.attach_to_unsorted(call, &request, listed).await?;
                continue;
            }
            store
                .forget_unsorted_request(self.tenant_id(), &request.client_phone10, &request.uid)
                .await?;
            call.progress.new_client = false;
            store
                .save_progress(&call.item.item_key, &json!(call.progress))
                .await?;
            store
                .retry_item(
                    &call.item.item_key,
                    &format!(
                        "the client's unsorted request {} is no longer pending (accepted or \
                         declined); sending the call again",
                        request.uid
                    ),
                    now_ms(),
                    false,
                    false,
                )
                .await?;
        }
        Ok(())
    }

    /// Writes the call as a call note on the pending unsorted request's lead (its contact when
    /// it has no lead): amoCRM shows the request as that lead's card, so the person sorting it
    /// sees every call of the client there, and accepting it keeps the notes with the lead.
    async fn attach_to_unsorted(
        &self,
        call: Call,
        request: &UnsortedRequest,
        listed: &Unsorted,
    ) -> Result<(), RoundError> {
        let lead = listed
            .lead_id
            .or(request.lead_id.and_then(|id| u64::try_from(id).ok()));
        let contact = listed
            .contact_id
            .or(request.contact_id.and_then(|id| u64::try_from(id).ok()));
        let (entity, entity_id) = match (lead, contact) {
            (Some(lead), _) => (EntityType::Leads, lead),
            (None, Some(contact)) => (EntityType::Contacts, contact),
            (None, None) => {
                // Nothing to attach to: a request of its own, as for a new client.
                let phone = call.phone().to_string();
                return self.unsorted(call, &phone).await;
            }
        };
        let key = call.item.item_key.clone();
        let sent = self.new_call(&call.item, &call.record);
        let params = CallNoteParams {
            uniq: sent.uniq,
            duration: sent.duration,
            source: sent.source,
            phone: sent.phone,
            link: sent.link,
            call_status: sent.call_status,
            call_result: sent.call_result,
            call_responsible: sent.call_responsible,
        };
        let note = NewNote {
            entity_id,
            note_type: match call.record.direction {
                Direction::Outbound => NoteType::CallOut { params },
                Direction::Inbound | Direction::Internal => NoteType::CallIn { params },
            },
            responsible_user_id: sent.responsible_user_id,
            created_by: sent.created_by,
            request_id: Some(key.clone()),
        };
        self.state
            .store
            .mark_sending(std::slice::from_ref(&key), now_ms())
            .await?;
        match self.client.add_notes(entity, &[note]).await {
            Ok(created) => {
                let note_id = answer_for(&created, &key, 0).map(|c| c.id);
                self.state
                    .store
                    .complete_items(
                        &[(
                            key,
                            json!({
                                // Not `entity_id`/`entity_type`: the call's follow-ups
                                // treat it as gone to unsorted, like the request's first call.
                                "note_id": note_id,
                                "unsorted_note_on": {"entity_type": entity.as_str(), "entity_id": entity_id},
                                "unsorted_uid": request.uid,
                                "attached_to_pending_unsorted": true,
                                "reasons": call.record.reasons,
                            }),
                        )],
                        now_ms(),
                    )
                    .await?;
            }
            Err(e) => self.failed([&call.item], e, true).await?,
        }
        Ok(())
    }

    pub(super) async fn unsorted(&self, mut call: Call, phone: &str) -> Result<(), RoundError> {
        let responsible = call.responsible().map(CrmUserId::get);
        let key = call.item.item_key.clone();
        let store = &self.state.store;
        // Kept before the request leaves: if its answer is lost, the retry knows to look among
        // the pending requests for it (see `settle_unsorted`).
        call.progress.new_client = true;
        call.progress.unsorted_sent = true;
        store.save_progress(&key, &json!(call.progress)).await?;
        store
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
                let first = answer_for(&created, &key, 0).cloned();
                self.unsorted_created(&call, first.as_ref(), false).await?;
            }
            // No error text is taken to mean "already there": a retry after a lost answer looks
            // among the pending requests before it sends again.
            Err(e) => self.failed([&call.item], e, true).await?,
        }
        Ok(())
    }

    /// Completes a call whose unsorted request exists (`request`: as created or as found after a
    /// lost answer) and remembers the request for the client's next calls.
    async fn unsorted_created(
        &self,
        call: &Call,
        request: Option<&UnsortedCreated>,
        recovered: bool,
    ) -> Result<(), RoundError> {
        let store = &self.state.store;
        let mut answer = json!({
            "unsorted_uid": request.map(|c| c.uid.clone()),
            "lead_id": request.and_then(|c| c.lead_id),
            "contact_id": request.and_then(|c| c.contact_id),
            "reasons": call.record.reasons,
        });
        if recovered {
            answer["recovered"] = json!(true);
        }
        if let Some(request) = request {
            let client = call.crm_client();
            if !client.is_empty() {
                store
                    .remember_unsorted_request(&UnsortedRequest {
                        tenant_id: self.tenant_id().to_string(),
                        client_phone10: client,
                        uid: request.uid.clone(),
                        lead_id: request.lead_id.and_then(|id| i64::try_from(id).ok()),
                        contact_id: request.contact_id.and_then(|id| i64::try_from(id).ok()),
                        created_at_ms: now_ms(),
                    })
                    .await?;
            }
        }
        store
            .complete_items(&[(call.item.item_key.clone(), answer)], now_ms())
            .await?;
        Ok(())
    }

    /// Calls whose unsorted request left but whose answer was lost: the pending requests created
    /// since the earliest of them (amoCRM stamps a request with the call's time, which callbridge
    /// sends) are listed newest first and matched by `metadata.uniq`, the call's key. Found ones
    /// are done (and remembered for the client's next calls); the others are returned, still
    /// marked, for the look among call notes and then a new send.
    pub(super) async fn settle_unsorted(&self, calls: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        let earliest = calls
            .iter()
            .map(|c| (c.item.sent_at_ms.unwrap_or(0) / 1000).min(c.record.started_at))
            .min()
            .unwrap_or(0);
        let filter = UnsortedFilter {
            uids: Vec::new(),
            created_from: Some(earliest - CLOCK_MARGIN_S),
        };
        let listed = match self.client.pending_unsorted_sip(&filter).await {
            Ok(listed) => listed,
            Err(e) => {
                self.fail_items(calls.iter().map(|c| &c.item).collect(), e, Marks::Keep)
                    .await?;
                return Ok(Vec::new());
            }
        };
        let by_uniq: HashMap<&str, &Unsorted> = listed
            .iter()
            .filter(|u| u.source_uid.as_deref().is_none_or(|s| s == SOURCE))
            .filter_map(|u| u.uniq.as_deref().map(|q| (q, u)))
            .collect();
        let mut rest = Vec::new();
        for call in calls {
            match by_uniq.get(call.item.item_key.as_str()) {
                Some(found) => {
                    let created = UnsortedCreated {
                        uid: found.uid.clone(),
                        lead_id: found.lead_id,
                        contact_id: found.contact_id,
                        request_id: Some(call.item.item_key.clone()),
                    };
                    tracing::info!(item = %call.item.item_key, uid = %found.uid, "unsorted request found in the CRM after an interrupted attempt");
                    self.unsorted_created(&call, Some(&created), true).await?;
                }
                None => rest.push(call),
            }
        }
        Ok(rest)
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
