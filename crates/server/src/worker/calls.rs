//! Call delivery: calls go out optimistically in batches; lost answers are settled by looking
//! the call notes up; a call of a client the CRM does not know goes to the new-client action.

use super::answers::chunks_of;
use super::failures::Marks;
use super::work::{LeadWork, OutboxWork};
use super::{RoundError, TenantDelivery};
use super::{BATCHES_IN_FLIGHT, CLOCK_MARGIN_S, SOURCE};
use crate::state::now_ms;
use callbridge_amocrm::{CallDirection, EntityType, Error as CrmError, NewCall, NotesFilter};
use callbridge_core::assembler::Direction;
use callbridge_core::explain::{self, Names};
use callbridge_core::phone::Phone;
use callbridge_core::plan::{CallRecord, Rule};
use callbridge_core::settings::{CrmUserId, RepeatClientAction};
use callbridge_store::{AddedItem, OutboxItem};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// How long a call waits before it is sent again after amoCRM did not find the client created
/// for it, try by try (2, 4, 8, 16 s: amoCRM indexes a new contact within seconds). After the
/// last the item is parked with the reason: the contact was created, so creating another would
/// double the client, and a person has to look.
pub(super) const NOT_FOUND_AFTER_CREATE_DELAYS_MS: [i64; 4] = [2_000, 4_000, 8_000, 16_000];

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a call item has created so far, kept across retries.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub(super) struct Progress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) contact_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lead_id: Option<u64>,
    /// The repeat-client action has run (or was not needed).
    #[serde(default)]
    pub(super) repeat_done: bool,
    /// The CRM said it does not know the client.
    #[serde(default)]
    pub(super) new_client: bool,
    /// An unsorted request was sent for this call: if its answer was lost, the request is
    /// looked for among the pending ones before anything is sent again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) unsorted_sent: bool,
    /// Times the CRM did not find the client callbridge had just created (its search index
    /// lags behind the write); bounds the waiting (see [`NOT_FOUND_AFTER_CREATE_DELAYS_MS`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) not_found_after_create: u32,
    /// Where the call went: a `lead` follow-up reads it from its call item each time, so it is
    /// never stored.
    #[serde(skip)]
    pub(super) landed: Option<Value>,
}

/// A call record to write (a `call` item), or a written one whose repeat-client action is to
/// run (a `lead` follow-up), with what its item has created so far.
pub(super) struct Call {
    pub(super) item: OutboxItem,
    pub(super) record: CallRecord,
    pub(super) progress: Progress,
}

impl Call {
    /// A `call` item's record and its progress so far; the item's key and the reason when it
    /// is not a readable call item.
    pub(super) fn read(item: OutboxItem) -> Result<Call, (String, String)> {
        let record = match OutboxWork::read(&item.kind, &item.payload) {
            Ok(OutboxWork::Call(work)) => work.record,
            Ok(other) => {
                let why = format!("a {} item is not a call", other.kind());
                return Err((item.item_key, why));
            }
            Err(e) => return Err((item.item_key, e.to_string())),
        };
        Ok(Call::new(item, record))
    }

    /// The call of `item`, with the progress its item keeps.
    pub(super) fn new(item: OutboxItem, record: CallRecord) -> Call {
        let progress = item
            .crm_response
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        Call {
            item,
            record,
            progress,
        }
    }

    /// Whether the written call still has a repeat-client action to run (C4): the client was
    /// known to the CRM (not created for this call) and the action asks for a lead.
    pub(super) fn needs_repeat_action(&self) -> bool {
        self.repeat_action() != RepeatClientAction::Manual
            && !self.progress.new_client
            && !self.progress.repeat_done
    }

    /// The record's repeat-client action; manual when it creates no entities.
    pub(super) fn repeat_action(&self) -> RepeatClientAction {
        self.record
            .entities
            .map_or(RepeatClientAction::Manual, |e| e.rules.repeat_client)
    }

    /// The responsible user of what the record creates.
    pub(super) fn responsible(&self) -> Option<CrmUserId> {
        self.record.entities.map(|e| e.responsible_crm_user_id)
    }

    /// The client as the CRM tells clients apart (the last ten digits of the number); empty
    /// when the record has no client number.
    pub(super) fn crm_client(&self) -> String {
        let client = self.record.client_phone.as_deref().and_then(Phone::parse);
        client.map(|p| p.last_ten().to_string()).unwrap_or_default()
    }

    /// The client's number (empty when the record has none).
    pub(super) fn phone(&self) -> &str {
        self.record.client_phone.as_deref().unwrap_or_default()
    }
}

impl TenantDelivery {
    pub(super) async fn deliver_calls(&self, calls: Vec<Call>) -> Result<(), RoundError> {
        let now = now_ms();
        let mut ready = Vec::new();
        let mut uncertain = Vec::new();
        for call in calls {
            match call.item.sent_at_ms {
                Some(sent) if call.item.kind == "call" => {
                    if now - sent < self.in_flight_grace_ms() {
                        // Possibly still under way elsewhere: look again later.
                        self.state
                            .store
                            .retry_item(
                                &call.item.item_key,
                                "waiting for an earlier attempt to settle",
                                sent + self.in_flight_grace_ms(),
                                true,
                                false,
                            )
                            .await?;
                    } else {
                        uncertain.push(call);
                    }
                }
                _ => ready.push(call),
            }
        }
        // An unsorted request whose answer was lost is looked for among the pending requests
        // first; one not there (or accepted meanwhile: its call note is then on the lead) goes
        // on to the look among call notes.
        let (unsorted, mut uncertain): (Vec<Call>, Vec<Call>) = uncertain
            .into_iter()
            .partition(|c| c.progress.unsorted_sent);
        if !unsorted.is_empty() {
            self.ensure_lease()?;
            uncertain.extend(self.settle_unsorted(unsorted).await?);
        }
        if !uncertain.is_empty() {
            self.ensure_lease()?;
            ready.extend(self.settle_uncertain(uncertain).await?);
        }
        let mut to_send = Vec::new();
        let mut new_clients = Vec::new();
        for call in ready {
            if call.record.client_phone.is_none() {
                self.state
                    .store
                    .complete_items(
                        &[(
                            call.item.item_key.clone(),
                            json!({"skipped": "no client number", "reasons": call.record.reasons}),
                        )],
                        now_ms(),
                    )
                    .await?;
                continue;
            }
            let created = call.progress.contact_id.is_some() || call.progress.lead_id.is_some();
            if call.progress.new_client && !created {
                new_clients.push(call);
            } else {
                to_send.push(call);
            }
        }
        // Every call goes out first; amoCRM's answer says whether the client is new, and where
        // a known client's call landed, which is what the repeat-client action needs. Calls
        // whose client was created in the previous round go out with them.
        let unknown = self.send_calls(to_send).await?;
        let mut again = Vec::new();
        for call in unknown {
            if call.progress.contact_id.is_some() || call.progress.lead_id.is_some() {
                again.push(call);
            } else {
                new_clients.push(call);
            }
        }
        for call in again {
            self.not_found_after_create(call).await?;
        }
        if !new_clients.is_empty() {
            self.new_clients(new_clients).await?;
        }
        Ok(())
    }

    /// A call whose client callbridge created but amoCRM did not find: sent again after the next
    /// delay of [`NOT_FOUND_AFTER_CREATE_DELAYS_MS`], parked with the reason once they are spent.
    async fn not_found_after_create(&self, mut call: Call) -> Result<(), RoundError> {
        let store = &self.state.store;
        let tries = call.progress.not_found_after_create as usize;
        let Some(delay) = NOT_FOUND_AFTER_CREATE_DELAYS_MS.get(tries) else {
            let waited: i64 = NOT_FOUND_AFTER_CREATE_DELAYS_MS.iter().sum::<i64>() / 1000;
            let created = match (call.progress.contact_id, call.progress.lead_id) {
                (Some(c), _) => format!("contact {c}"),
                (None, Some(l)) => format!("lead {l}"),
                (None, None) => "the client".to_string(),
            };
            let why = format!(
                "amoCRM still does not find {created}, created for this call, by the number {} \
                 after {} tries over {waited} s; check the contact's phone in the CRM, then retry",
                call.phone(),
                tries + 1,
            );
            store.park_item(&call.item.item_key, &why).await?;
            return Ok(());
        };
        call.progress.not_found_after_create += 1;
        store
            .save_progress(&call.item.item_key, &json!(call.progress))
            .await?;
        store
            .retry_item(
                &call.item.item_key,
                &format!(
                    "amoCRM did not find the contact just created; trying again in {} s",
                    delay / 1000
                ),
                now_ms() + delay,
                false,
                true,
            )
            .await?;
        Ok(())
    }

    /// Items marked in flight whose answer was lost: done if the CRM has a call note with their
    /// `uniq`, else sent again. amoCRM attaches a call to a contact, a company, the client's lead
    /// or its customer, so the call notes of every one of these kinds are looked at before a call
    /// is sent again (the order: where calls most often land first; the look stops once every
    /// item is found). No error text of the CRM is relied on: looking first is what keeps the
    /// write from happening twice. One listing of call notes per entity kind settles every such
    /// item of the round, read only in the time window of the lost requests (from the earliest call
    /// start or send, to the latest send plus the request timeout, with a clock margin each
    /// side: amoCRM may stamp a note with the call's time or with its own), so recovery reads
    /// the few notes written around the loss, not everything since. Each item is checked once:
    /// one not found loses its mark and goes out again as new.
    pub(super) async fn settle_uncertain(&self, calls: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        let earliest = calls
            .iter()
            .map(|c| {
                let sent = c.item.sent_at_ms.unwrap_or(0) / 1000;
                sent.min(c.record.started_at)
            })
            .min()
            .unwrap_or(0);
        let latest_sent = calls
            .iter()
            .filter_map(|c| c.item.sent_at_ms)
            .max()
            .unwrap_or(0)
            / 1000;
        let timeout_s = self.client.timeout().as_secs() as i64;
        let filter = NotesFilter {
            note_types: vec!["call_in".into(), "call_out".into()],
            entity_ids: vec![],
            updated_from: Some(earliest - CLOCK_MARGIN_S),
            updated_to: Some(latest_sent + timeout_s + CLOCK_MARGIN_S),
        };
        metrics::counter!("callbridge_crm_uncertain_checked_total").increment(calls.len() as u64);
        let mut found: HashMap<String, Value> = HashMap::new();
        for entity in [
            EntityType::Contacts,
            EntityType::Leads,
            EntityType::Companies,
            EntityType::Customers,
        ] {
            if calls.iter().all(|c| found.contains_key(&c.item.item_key)) {
                break;
            }
            match self.client.list_notes(entity, &filter).await {
                Ok(notes) => {
                    self.outage_failures.store(0, Ordering::SeqCst);
                    for note in notes {
                        if let Some(uniq) = note.params.get("uniq").and_then(Value::as_str) {
                            found.insert(
                                uniq.to_string(),
                                json!({"note_id": note.id, "entity_id": note.entity_id, "entity_type": entity.as_str(), "recovered": true}),
                            );
                        }
                    }
                }
                Err(e) => {
                    self.fail_items(calls.iter().map(|c| &c.item).collect(), e, Marks::Keep)
                        .await?;
                    return Ok(Vec::new());
                }
            }
        }
        let mut again = Vec::new();
        let mut done = Vec::new();
        let mut added = Vec::new();
        for call in calls {
            match found.remove(&call.item.item_key) {
                Some(mut answer) => {
                    answer["reasons"] = json!(call.record.reasons);
                    added.extend(self.repeat_followup(&call));
                    done.push((call.item.item_key.clone(), answer));
                }
                None => again.push(call),
            }
        }
        // Not written: from here on they are new sends, whose own marks say when they left.
        let unsent: Vec<String> = again.iter().map(|c| c.item.item_key.clone()).collect();
        self.state.store.unmark_sending(&unsent).await?;
        for call in &mut again {
            call.item.sent_at_ms = None;
        }
        if !done.is_empty() {
            tracing::info!(tenant = %self.tenant_id(), n = done.len(), "calls found in the CRM after an interrupted attempt");
            self.state
                .store
                .complete_and_add(&done, &added, now_ms())
                .await?;
        }
        Ok(again)
    }

    /// The follow-up item that runs a written call's repeat-client action, if it has one.
    pub(super) fn repeat_followup(&self, call: &Call) -> Option<AddedItem> {
        if !call.needs_repeat_action() {
            return None;
        }
        let key = match call.item.item_key.strip_suffix("/call") {
            Some(stem) => format!("{stem}/lead"),
            None => format!("{}/lead", call.item.item_key),
        };
        Some(AddedItem {
            tenant_id: self.tenant_id().to_string(),
            entry_id: call.item.entry_id.clone(),
            item: OutboxWork::Lead(LeadWork {
                call_item: call.item.item_key.clone(),
                record: call.record.clone(),
            })
            .into_item(key),
        })
    }

    /// Sends calls in batches. Returns the ones whose client the CRM does not know, and the
    /// written ones whose repeat-client action is still to run.
    pub(super) async fn send_calls(&self, calls: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        use futures::StreamExt;
        let mut batches = chunks_of(calls);
        let mut unknown = Vec::new();
        if self.in_outage() && batches.len() > 1 {
            // The CRM did not answer last time: one batch asks whether it is back before the
            // rest are spent on it.
            let probe = batches.remove(0);
            unknown.extend(self.send_batch(probe).await?);
            if self.in_outage() {
                let next = now_ms() + self.outage_delay_ms();
                for call in batches.iter().flatten() {
                    self.state
                        .store
                        .retry_item(
                            &call.item.item_key,
                            "waiting for amoCRM to answer again",
                            next,
                            false,
                            false,
                        )
                        .await?;
                }
                return Ok(unknown);
            }
        }
        // A few batches in flight at once: the database work and the CRM's answer time of one
        // overlap the others', so the account's limit, not our latency, sets the pace.
        let results: Vec<Result<Vec<Call>, RoundError>> = futures::stream::iter(batches)
            .map(|batch| self.send_batch(batch))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        for result in results {
            unknown.extend(result?);
        }
        Ok(unknown)
    }

    /// Sends one batch (≤ 50). Returns the calls whose client the CRM does not know.
    pub(super) async fn send_batch(&self, batch: Vec<Call>) -> Result<Vec<Call>, RoundError> {
        let mut unknown = Vec::new();
        let mut queue = vec![batch];
        while let Some(batch) = queue.pop() {
            self.ensure_lease()?;
            let requests: Vec<NewCall> = batch
                .iter()
                .map(|c| self.new_call(&c.item, &c.record))
                .collect();
            let keys: Vec<String> = batch.iter().map(|c| c.item.item_key.clone()).collect();
            self.state.store.mark_sending(&keys, now_ms()).await?;
            match self.client.add_calls(&requests).await {
                Ok(outcome) => {
                    self.outage_failures.store(0, Ordering::SeqCst);
                    let mut by_key: HashMap<String, Call> = batch
                        .into_iter()
                        .map(|c| (c.item.item_key.clone(), c))
                        .collect();
                    let mut done = Vec::new();
                    let mut added = Vec::new();
                    for created in &outcome.created {
                        if let Some(call) = by_key.remove(&created.request_id) {
                            added.extend(self.repeat_followup(&call));
                            let mut answer = json!({
                                "note_id": created.id,
                                "entity_id": created.entity_id,
                                "entity_type": created.entity_type,
                                "contact_id": call.progress.contact_id,
                                "lead_id": call.progress.lead_id,
                                "reasons": call.record.reasons,
                            });
                            match created.entity() {
                                Ok(kind) => answer["entity_type"] = json!(kind.as_str()),
                                Err(e) => {
                                    // The call is written (not sent again); its follow-ups are
                                    // parked with this reason when they look where it landed.
                                    tracing::warn!(item = %call.item.item_key, error = %e, "call written to an unknown kind of entity");
                                    answer["entity_type_error"] = json!(e.to_string());
                                }
                            }
                            done.push((call.item.item_key.clone(), answer));
                        }
                    }
                    self.state
                        .store
                        .complete_and_add(&done, &added, now_ms())
                        .await?;
                    metrics::counter!("callbridge_crm_calls_written_total")
                        .increment(done.len() as u64);
                    for key in &outcome.not_found {
                        if let Some(mut call) = by_key.remove(key) {
                            call.progress.new_client = true;
                            unknown.push(call);
                        }
                    }
                    // Not written: the next attempt needs no look in the CRM first.
                    self.state.store.unmark_sending(&outcome.not_found).await?;
                    for err in &outcome.other_errors {
                        let key = err.request_id.clone().unwrap_or_default();
                        if let Some(call) = by_key.remove(&key) {
                            self.state
                                .store
                                .park_item(&call.item.item_key, &format!("amoCRM: {}", err.message))
                                .await?;
                        }
                    }
                    // Anything the answer did not mention was not written: send it again.
                    for (key, _) in by_key {
                        self.state
                            .store
                            .retry_item(
                                &key,
                                "not mentioned in amoCRM's answer",
                                now_ms() + 1000,
                                false,
                                true,
                            )
                            .await?;
                    }
                }
                Err(CrmError::Rejected { message, items, .. }) if batch.len() > 1 => {
                    // Validation fails the whole request: park the items it names, and send the
                    // others one by one to find any it did not name.
                    let named: HashMap<String, String> = items
                        .iter()
                        .filter_map(|i| i.request_id.clone().map(|r| (r, i.message.clone())))
                        .collect();
                    for call in batch {
                        match named.get(&call.item.item_key) {
                            Some(msg) => {
                                self.state
                                    .store
                                    .park_item(&call.item.item_key, &format!("amoCRM: {msg}"))
                                    .await?
                            }
                            None if named.is_empty() => queue.push(vec![call]),
                            None => {
                                self.state
                                    .store
                                    .retry_item(
                                        &call.item.item_key,
                                        &message,
                                        now_ms(),
                                        false,
                                        false,
                                    )
                                    .await?
                            }
                        }
                    }
                }
                Err(e) => {
                    self.failed(batch.iter().map(|c| &c.item), e, true).await?;
                }
            }
        }
        Ok(unknown)
    }

    pub(super) fn new_call(&self, item: &OutboxItem, record: &CallRecord) -> NewCall {
        let direction = match record.direction {
            Direction::Outbound => CallDirection::Outbound,
            Direction::Inbound | Direction::Internal => CallDirection::Inbound,
        };
        NewCall {
            direction,
            uniq: item.item_key.clone(),
            duration: record.duration_s,
            source: SOURCE.into(),
            phone: record.client_phone.clone().unwrap_or_default(),
            link: self.recording_link(record),
            call_status: Some(record.call_status),
            // C5: the reasons in words for the person reading the note (as the journal and the
            // entries API give them: one source, core::explain), the rule ids kept at the end.
            // The line and the call-tracking number (Mango's dct) follow, so that the CRM user
            // sees which advertised number brought the client in.
            call_result: Some(call_result(
                &format!(
                    "{} {}",
                    explain::record_why(
                        record,
                        &Names::new(self.tenant.settings.settings(), self.lang),
                    ),
                    explain::record_pbx_context(record, self.lang)
                ),
                &record.reasons,
            )),
            call_responsible: Some(record.crm_user_id.get()),
            responsible_user_id: Some(record.crm_user_id.get()),
            created_by: Some(record.crm_user_id.get()),
            created_at: Some(record.started_at),
            request_id: item.item_key.clone(),
        }
    }

    pub(super) fn recording_link(&self, record: &CallRecord) -> Option<String> {
        record.recording_id.as_ref().map(|id| {
            crate::recordings::link(
                &self.state.public_url,
                &self.tenant.row.id,
                id,
                &self.tenant.row.mango_api_salt,
                crate::recordings::expiry(now_ms(), self.state.recording_link_days),
            )
        })
    }
}

/// A call note's `call_result`: the reasons in words, then the rule ids in brackets, e.g.
/// `Transferred from Anna (105) to Ivan. Saved by Save all calls. [P2, P5]`. The words come
/// first because the CRM shows the start of the text on the note.
pub(super) fn call_result(words: &str, reasons: &[Rule]) -> String {
    let ids: Vec<String> = reasons.iter().map(Rule::to_string).collect();
    let ids = format!("[{}]", ids.join(", "));
    match words.trim() {
        "" => ids,
        words => format!("{words} {ids}"),
    }
}

/// Rule ids as the CRM shows them: `P1,P4,M5`.
pub(super) fn rule_list(reasons: &[Rule]) -> String {
    let ids: Vec<String> = reasons.iter().map(Rule::to_string).collect();
    ids.join(",")
}

#[cfg(test)]
mod call_result_tests {
    use super::call_result;
    use callbridge_core::Rule;

    #[test]
    fn call_results_read_as_words_with_the_rule_ids_at_the_end() {
        let reasons = [Rule::P2, Rule::P5];
        assert_eq!(
            call_result(
                "Transferred from Anna (105) to Ivan. Saved by Save all calls.",
                &reasons
            ),
            "Transferred from Anna (105) to Ivan. Saved by Save all calls. [P2, P5]"
        );
        assert_eq!(call_result("  ", &reasons), "[P2, P5]");
    }
}
