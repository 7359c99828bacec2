//! Follow-ups of a call: missed-call tasks (M5), transcripts (C2) and the repeat-client lead (C4),
//! written on the entity where their call landed. They run in their own lane, on a handle of the
//! account that leaves places of its window to calls. A round's follow-ups go together: one task search and one task creation per
//! 50 entities, one Mango request for all transcripts, one note request per 50 transcripts, where
//! one item at a time would cost the account two requests each.

use super::answers::{answer_for, chunks_of, landed_entity};
use super::calls::Call;
use super::failures::backoff_ms;
use super::work::{LeadWork, OutboxWork, TaskWork, TranscriptWork};
use super::{RoundError, TenantDelivery};
use super::{TRANSCRIPT_ATTEMPTS, WAIT_FOR_CALL_MS};
use crate::state::now_ms;
use callbridge_amocrm::{EntityType, NewNote, NewTask, NoteType, TasksFilter};
use callbridge_core::phone::Phone;
use callbridge_store::OutboxItem;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The work of the follow-up lane: every kind of outbox work but a call.
enum Followup {
    Lead(LeadWork),
    Transcript(TranscriptWork),
    Task(TaskWork),
}

impl Followup {
    /// The follow-up in `work`; `None` for a call, which is not one.
    fn of(work: OutboxWork) -> Option<Followup> {
        match work {
            OutboxWork::Call(_) => None,
            OutboxWork::Lead(lead) => Some(Followup::Lead(lead)),
            OutboxWork::Transcript(t) => Some(Followup::Transcript(t)),
            OutboxWork::Task(t) => Some(Followup::Task(t)),
        }
    }

    /// The key of the call item whose landing place the follow-up goes to.
    fn call_item(&self) -> &str {
        match self {
            Followup::Lead(l) => &l.call_item,
            Followup::Transcript(t) => &t.call_item,
            Followup::Task(t) => &t.call_item,
        }
    }

    /// The rule ids recorded when the follow-up is skipped for want of a landing place.
    fn reasons(&self) -> Value {
        match self {
            Followup::Lead(_) => json!(["C4"]),
            Followup::Transcript(t) => json!(t.reasons),
            Followup::Task(t) => json!(t.reasons),
        }
    }
}

/// A follow-up (`work`: a task's or a transcript's) whose call has landed on `entity_type`
/// `entity_id`.
struct Ready<W> {
    item: OutboxItem,
    work: W,
    entity_type: EntityType,
    entity_id: u64,
}

impl TenantDelivery {
    /// Transcripts and tasks: written where their call landed, each kind in batches.
    pub(super) async fn deliver_followups(&self, items: Vec<OutboxItem>) -> Result<(), RoundError> {
        let store = &self.state.store;
        let mut tasks = Vec::new();
        let mut transcripts = Vec::new();
        let mut leads = Vec::new();
        for item in items {
            let work = match OutboxWork::read(&item.kind, &item.payload).map(Followup::of) {
                Ok(Some(work)) => work,
                Ok(None) => {
                    let why = "a call item in the follow-up lane";
                    store.park_item(&item.item_key, why).await?;
                    continue;
                }
                Err(e) => {
                    store.park_item(&item.item_key, &e.to_string()).await?;
                    continue;
                }
            };
            let Some((entity_type, entity_id)) = self.followup_target(&item, &work).await? else {
                continue;
            };
            match work {
                Followup::Lead(lead) => {
                    let mut call = Call::new(item, lead.record);
                    call.progress.landed =
                        Some(json!({"entity_type": entity_type.as_str(), "entity_id": entity_id}));
                    leads.push(call);
                }
                Followup::Transcript(work) => transcripts.push(Ready {
                    item,
                    work,
                    entity_type,
                    entity_id,
                }),
                Followup::Task(work) => tasks.push(Ready {
                    item,
                    work,
                    entity_type,
                    entity_id,
                }),
            }
        }
        if !leads.is_empty() {
            self.ensure_lease()?;
            self.repeat_actions(leads).await?;
        }
        if !tasks.is_empty() {
            self.ensure_lease()?;
            self.tasks(tasks).await?;
        }
        if !transcripts.is_empty() {
            self.ensure_lease()?;
            self.transcripts(transcripts).await?;
        }
        Ok(())
    }

    /// Where the follow-up's call landed, or `None` when the item was dealt with here (it waits
    /// for its call, is parked with it, or has nothing to attach to).
    async fn followup_target(
        &self,
        item: &OutboxItem,
        work: &Followup,
    ) -> Result<Option<(EntityType, u64)>, RoundError> {
        let store = &self.state.store;
        let call_key = work.call_item();
        let landed = match store.outbox_item(call_key).await? {
            Some(c) if c.state == "done" => c.crm_response.clone().unwrap_or(Value::Null),
            Some(c) if c.state == "parked" => {
                store
                    .park_item(
                        &item.item_key,
                        "its call was not written (parked); retry the call first",
                    )
                    .await?;
                return Ok(None);
            }
            Some(_) => {
                store
                    .retry_item(
                        &item.item_key,
                        "waiting for the call",
                        now_ms() + WAIT_FOR_CALL_MS,
                        false,
                        false,
                    )
                    .await?;
                return Ok(None);
            }
            None => {
                store
                    .park_item(
                        &item.item_key,
                        &format!("its call item {call_key} is missing"),
                    )
                    .await?;
                return Ok(None);
            }
        };
        match landed_entity(&landed) {
            Ok(Some(target)) => Ok(Some(target)),
            Err(unknown) => {
                store
                    .park_item(&item.item_key, &unknown.to_string())
                    .await?;
                Ok(None)
            }
            Ok(None) => {
                store
                    .complete_items(
                        &[(
                            item.item_key.clone(),
                            json!({"skipped": "the call went to unsorted; nothing to attach to yet", "reasons": work.reasons()}),
                        )],
                        now_ms(),
                    )
                    .await?;
                Ok(None)
            }
        }
    }

    /// M5 tasks: skipped when the entity has an open task with the same client-and-day marker,
    /// created otherwise, up to 50 a request.
    async fn tasks(&self, ready: Vec<Ready<TaskWork>>) -> Result<(), RoundError> {
        let store = &self.state.store;
        // The entity's open tasks, one search per entity kind (and per 50 entities).
        let mut by_type: BTreeMap<&'static str, Vec<Ready<TaskWork>>> = BTreeMap::new();
        for r in ready {
            by_type.entry(r.entity_type.as_str()).or_default().push(r);
        }
        let mut to_create: Vec<(Ready<TaskWork>, String)> = Vec::new();
        // One task per entity and marker in a round; a second waits and then finds the first.
        let mut claimed: HashSet<(u64, String)> = HashSet::new();
        for (_, group) in by_type {
            let entity_type = group[0].entity_type;
            let mut ids: Vec<u64> = group.iter().map(|r| r.entity_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let open = match self
                .client
                .list_tasks(&TasksFilter {
                    is_completed: Some(false),
                    entity_type: Some(entity_type),
                    entity_ids: ids,
                    responsible_user_ids: vec![],
                })
                .await
            {
                Ok(tasks) => tasks,
                Err(e) => {
                    self.failed(group.iter().map(|r| &r.item), e, false).await?;
                    continue;
                }
            };
            for r in group {
                let marker = format!("[callbridge {}]", r.work.task.dedupe_key);
                let existing = open
                    .iter()
                    .find(|t| t.entity_id == Some(r.entity_id) && t.text.contains(&marker));
                if let Some(existing) = existing {
                    store
                        .complete_items(
                            &[(
                                r.item.item_key.clone(),
                                json!({"skipped": "an open missed-call task for this client today exists", "task_id": existing.id, "reasons": ["M5"]}),
                            )],
                            now_ms(),
                        )
                        .await?;
                } else if !claimed.insert((r.entity_id, marker.clone())) {
                    store
                        .retry_item(
                            &r.item.item_key,
                            "another missed call of this client is creating the day's task",
                            now_ms() + WAIT_FOR_CALL_MS,
                            false,
                            false,
                        )
                        .await?;
                } else {
                    to_create.push((r, marker));
                }
            }
        }
        if to_create.is_empty() {
            return Ok(());
        }
        let owners = self.owners(&to_create).await;
        for chunk in chunks_of(to_create) {
            self.ensure_lease()?;
            let mut requests = Vec::with_capacity(chunk.len());
            let mut responsible_of = Vec::with_capacity(chunk.len());
            for (r, marker) in &chunk {
                let task = &r.work.task;
                let phone = r.work.client_phone.as_ref().map_or("", Phone::as_str);
                let mut responsible = Some(task.responsible_crm_user_id.get());
                if task.prefer_contact_owner {
                    let owner = owners.get(&(r.entity_type.as_str(), r.entity_id)).copied();
                    responsible = owner.or(responsible);
                }
                responsible_of.push(responsible);
                requests.push(NewTask {
                    text: format!("Call back {phone}: missed call (M5) {marker}"),
                    complete_till: task.due_at,
                    task_type_id: 1,
                    responsible_user_id: responsible,
                    entity_id: Some(r.entity_id),
                    entity_type: Some(r.entity_type),
                    request_id: Some(r.item.item_key.clone()),
                });
            }
            let keys: Vec<String> = chunk.iter().map(|(r, _)| r.item.item_key.clone()).collect();
            store.mark_sending(&keys, now_ms()).await?;
            match self.background.create_tasks(&requests).await {
                Ok(created) => {
                    let done: Vec<(String, Value)> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, (r, _))| {
                            let id = answer_for(&created, r.item.item_key.as_str(), i)
                                .map(|c| c.id);
                            (
                                r.item.item_key.clone(),
                                json!({"task_id": id, "entity_id": r.entity_id, "entity_type": r.entity_type.as_str(), "responsible_user_id": responsible_of[i], "reasons": ["M5"]}),
                            )
                        })
                        .collect();
                    store.complete_items(&done, now_ms()).await?;
                }
                Err(e) => {
                    self.failed(chunk.iter().map(|(r, _)| &r.item), e, false)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The responsible users of the entities whose tasks go to the contact's owner, read in one
    /// request per kind. A failed read leaves the configured user in charge, as the settings ask.
    async fn owners(
        &self,
        tasks: &[(Ready<TaskWork>, String)],
    ) -> HashMap<(&'static str, u64), u64> {
        let wanted = |kind: EntityType| -> Vec<u64> {
            let mut ids: Vec<u64> = tasks
                .iter()
                .filter(|(r, _)| r.entity_type == kind && r.work.task.prefer_contact_owner)
                .map(|(r, _)| r.entity_id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut owners = HashMap::new();
        let contacts = wanted(EntityType::Contacts);
        if !contacts.is_empty() {
            if let Ok(found) = self.background.contacts_by_ids(&contacts).await {
                for c in found {
                    if let Some(owner) = c.responsible_user_id {
                        owners.insert((EntityType::Contacts.as_str(), c.id), owner);
                    }
                }
            }
        }
        let leads = wanted(EntityType::Leads);
        if !leads.is_empty() {
            if let Ok(found) = self.background.leads_by_ids(&leads).await {
                for l in found {
                    if let Some(owner) = l.responsible_user_id {
                        owners.insert((EntityType::Leads.as_str(), l.id), owner);
                    }
                }
            }
        }
        owners
    }

    /// C2: the round's transcripts in one Mango request, written as notes up to 50 a request.
    async fn transcripts(&self, ready: Vec<Ready<TranscriptWork>>) -> Result<(), RoundError> {
        let store = &self.state.store;
        let vpbx = match &self.vpbx {
            Ok(v) => v,
            Err(e) => {
                for r in &ready {
                    store
                        .park_item(&r.item.item_key, &format!("Mango API: {e}"))
                        .await?;
                }
                return Ok(());
            }
        };
        let mut asked = Vec::new();
        for r in ready {
            if r.work.recording_id.is_some() {
                asked.push(r);
            } else {
                store
                    .park_item(
                        &r.item.item_key,
                        "no recording id to fetch a transcript for",
                    )
                    .await?;
            }
        }
        let ids: Vec<String> = asked
            .iter()
            .filter_map(|r| r.work.recording_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let texts: HashMap<String, String> = match vpbx.recording_transcripts(&ids).await {
            Ok(found) => found
                .into_iter()
                .map(|t| {
                    let text = t
                        .phrases
                        .iter()
                        .map(|(speaker, said)| format!("{speaker}: {said}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    (t.recording_id, text)
                })
                .collect(),
            Err(e) => {
                for r in &asked {
                    store
                        .retry_item(
                            &r.item.item_key,
                            &format!("Mango API: {e}"),
                            now_ms() + backoff_ms(r.item.attempts),
                            false,
                            true,
                        )
                        .await?;
                }
                return Ok(());
            }
        };
        let mut by_type: BTreeMap<&'static str, Vec<(Ready<TranscriptWork>, String)>> =
            BTreeMap::new();
        for r in asked {
            let id = r.work.recording_id.as_deref().unwrap_or_default();
            match texts.get(id).filter(|t| !t.is_empty()) {
                Some(text) => by_type
                    .entry(r.entity_type.as_str())
                    .or_default()
                    .push((r, text.clone())),
                None if r.item.attempts + 1 >= TRANSCRIPT_ATTEMPTS => {
                    store
                        .park_item(
                            &r.item.item_key,
                            "Mango has no transcript for this recording",
                        )
                        .await?
                }
                None => {
                    store
                        .retry_item(
                            &r.item.item_key,
                            "transcript not ready yet",
                            now_ms() + backoff_ms(r.item.attempts),
                            false,
                            true,
                        )
                        .await?
                }
            }
        }
        for (_, group) in by_type {
            for chunk in chunks_of(group) {
                self.ensure_lease()?;
                let entity_type = chunk[0].0.entity_type;
                let notes: Vec<NewNote> = chunk
                    .iter()
                    .map(|(r, text)| NewNote {
                        entity_id: r.entity_id,
                        note_type: NoteType::Common {
                            text: format!("Call transcript (callbridge, C2):\n{text}"),
                        },
                        responsible_user_id: Some(r.work.crm_user_id.get()),
                        created_by: Some(r.work.crm_user_id.get()),
                        request_id: Some(r.item.item_key.clone()),
                    })
                    .collect();
                let keys: Vec<String> =
                    chunk.iter().map(|(r, _)| r.item.item_key.clone()).collect();
                store.mark_sending(&keys, now_ms()).await?;
                match self.background.add_notes(entity_type, &notes).await {
                    Ok(created) => {
                        let done: Vec<(String, Value)> = chunk
                            .iter()
                            .enumerate()
                            .map(|(i, (r, _))| {
                                let id = answer_for(&created, r.item.item_key.as_str(), i)
                                    .map(|c| c.id);
                                (
                                    r.item.item_key.clone(),
                                    json!({"note_id": id, "entity_id": r.entity_id, "entity_type": entity_type.as_str(), "reasons": ["C2"]}),
                                )
                            })
                            .collect();
                        store.complete_items(&done, now_ms()).await?;
                    }
                    Err(e) => {
                        self.failed(chunk.iter().map(|(r, _)| &r.item), e, true)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}
