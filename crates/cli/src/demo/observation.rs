//! After the play: what the service's store says was done (outbox, entries) and what the CRM
//! sandbox shows through its amoCRM API.

use super::TENANT;
use crate::crm_reader::CrmReader;
use anyhow::{bail, Result};
use callbridge_amocrm::EntityType;
use callbridge_mango_sandbox::Vpbx;
use callbridge_store::Store;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Pending transcript items whose recording the PBX never transcribed (Mango's speech
/// analytics skips some recordings). The service keeps asking Mango for a while before it
/// parks them; that is Mango's side, not CRM work, so the demo does not wait for it.
pub(super) async fn awaiting_mango(store: &Store, vpbx: &Vpbx) -> Result<Vec<String>> {
    let pending = store
        .outbox_items_in_state(TENANT, "pending", 1_000_000)
        .await?;
    Ok(pending
        .into_iter()
        .filter(|i| i.kind == "transcript")
        .filter(|i| {
            i.payload["recording_id"]
                .as_str()
                .is_some_and(|r| vpbx.transcript(r).is_none())
        })
        .map(|i| i.item_key)
        .collect())
}

/// What the service's outbox says was done.
#[derive(Default)]
pub(super) struct Outbox {
    /// Call records written as call notes: note id and entity type (`contacts` / `leads`).
    pub(super) notes: Vec<(u64, String)>,
    /// Done call items without a note (no client number, or sent to unsorted).
    pub(super) calls_without_note: Vec<String>,
    pub(super) records_by_rule: BTreeMap<String, u64>,
    pub(super) transcripts_saved: u64,
    pub(super) tasks_created: u64,
    pub(super) tasks_skipped: u64,
    /// Leads created for known clients by the repeat-client action (C4).
    pub(super) repeat_leads_created: u64,
    /// Per entry: when its last call record was written (Unix ms).
    pub(super) written_at: HashMap<String, i64>,
    pub(super) parked: Vec<Value>,
    pub(super) pending: i64,
    pub(super) awaiting_mango: usize,
}

pub(super) async fn read_outbox(store: &Store, vpbx: &Vpbx) -> Result<Outbox> {
    let mut out = Outbox::default();
    for item in store
        .outbox_items_in_state(TENANT, "done", 1_000_000)
        .await?
    {
        let answer = item.crm_response.clone().unwrap_or(Value::Null);
        match item.kind.as_str() {
            "call" => {
                let note = answer["note_id"].as_u64();
                let entity = answer["entity_type"].as_str().map(str::to_string);
                match (note, entity) {
                    (Some(id), Some(entity)) => {
                        out.notes.push((id, entity));
                        for rule in answer["reasons"].as_array().into_iter().flatten() {
                            if let Some(rule) = rule.as_str() {
                                *out.records_by_rule.entry(rule.to_string()).or_default() += 1;
                            }
                        }
                        if let Some(done) = item.done_at_ms {
                            let at = out.written_at.entry(item.entry_id.clone()).or_insert(done);
                            *at = (*at).max(done);
                        }
                    }
                    _ => out.calls_without_note.push(item.item_key.clone()),
                }
            }
            "transcript" if answer["note_id"].is_u64() => out.transcripts_saved += 1,
            "task" if answer["task_id"].is_u64() => out.tasks_created += 1,
            "task" => out.tasks_skipped += 1,
            "lead" if answer["repeat_client"] == "lead created" => out.repeat_leads_created += 1,
            _ => {}
        }
    }
    for item in store
        .outbox_items_in_state(TENANT, "parked", 1_000_000)
        .await?
    {
        out.parked.push(json!({
            "item_key": item.item_key,
            "kind": item.kind,
            "reason": item.last_error,
        }));
    }
    out.pending = store.outbox_counts(TENANT).await?.pending;
    out.awaiting_mango = awaiting_mango(store, vpbx).await?.len();
    Ok(out)
}

/// What the planned entries say.
#[derive(Default)]
pub(super) struct Entries {
    pub(super) planned: u64,
    pub(super) records: u64,
    pub(super) ignored: u64,
    pub(super) internal: u64,
    pub(super) missed: u64,
    pub(super) by_grace: u64,
    /// The client's number of each planned entry that has one.
    pub(super) client_phone: HashMap<String, String>,
}

pub(super) async fn read_entries(store: &Store) -> Result<Entries> {
    let mut out = Entries::default();
    let mut offset = 0;
    loop {
        let page = store.entries(TENANT, 500, offset).await?;
        if page.is_empty() {
            return Ok(out);
        }
        offset += page.len() as i64;
        for e in page {
            out.planned += 1;
            out.records += e.plan["records"].as_array().map_or(0, Vec::len) as u64;
            out.ignored += e.plan["ignored"].as_array().map_or(0, Vec::len) as u64;
            out.internal += u64::from(e.plan["direction"] == "internal");
            out.missed += u64::from(e.plan["outcome"] == "missed");
            out.by_grace += u64::from(e.completed_by == "grace");
            if let Some(phone) = e.plan["client_phone"].as_str() {
                out.client_phone
                    .insert(e.entry_id.clone(), phone.to_string());
            }
        }
    }
}

/// What the CRM sandbox shows through its amoCRM API.
#[derive(Default)]
pub(super) struct CrmView {
    /// Call notes (`call_in` / `call_out`) by entity type, id -> responsible user.
    pub(super) notes: BTreeMap<String, BTreeMap<u64, u64>>,
    pub(super) call_in: u64,
    pub(super) call_out: u64,
    pub(super) contacts: usize,
    pub(super) leads: usize,
    pub(super) tasks: usize,
    pub(super) unsorted: usize,
    pub(super) requests: u64,
}

impl CrmView {
    pub(super) fn note_count(&self) -> usize {
        self.notes.values().map(BTreeMap::len).sum()
    }

    pub(super) fn notes_by_user(&self) -> BTreeMap<u64, u64> {
        let mut by = BTreeMap::new();
        for user in self.notes.values().flat_map(BTreeMap::values) {
            *by.entry(*user).or_default() += 1;
        }
        by
    }

    /// Reads the sandbox as a CRM user's integration would: amoCRM API v4, paged, paced by
    /// `reader`. `requests` is left to the caller, who can count them at the sandbox.
    pub(super) async fn read(reader: &CrmReader) -> Result<CrmView> {
        let mut view = CrmView::default();
        for entity in [EntityType::Contacts, EntityType::Leads] {
            let by_id = view.notes.entry(entity.to_string()).or_default();
            for n in reader.call_notes(entity).await? {
                let Some(user) = n.responsible_user_id else {
                    bail!(
                        "amoCRM sandbox: {entity} note {} without responsible_user_id",
                        n.id
                    );
                };
                by_id.insert(n.id, user);
                match n.note_type.as_str() {
                    "call_in" => view.call_in += 1,
                    "call_out" => view.call_out += 1,
                    _ => {}
                }
            }
        }
        view.contacts = reader.contacts().await?.len();
        view.leads = reader.leads().await?.len();
        view.tasks = reader.tasks().await?.len();
        view.unsorted = reader.unsorted().await?.len();
        Ok(view)
    }
}
