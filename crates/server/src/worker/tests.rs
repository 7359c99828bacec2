//! The worker's decisions, each against a scripted CRM ([`FakeCrm`]) and a SQLite store in a
//! temporary directory: no network, no sockets.

use super::crm_port::CrmPort;
use super::work::{CallWork, OutboxWork};
use super::{RoundError, TenantDelivery};
use crate::state::{now_ms, AppState, Tenant};
use async_trait::async_trait;
use callbridge_amocrm::{
    CallCardEvent, CallCreated, CallsOutcome, ComplexCreated, Contact, Created, EntityType,
    Error as CrmError, ItemError, Lead, NewCall, NewComplexLead, NewContact, NewLead, NewNote,
    NewTask, NewUnsortedSip, Note, NotesFilter, Pipeline, Task, TasksFilter, UnsortedCreated,
};
use callbridge_core::ValidSettings;
use callbridge_mango::api::ApiError;
use callbridge_store::{Lane, NewOutboxItem, NewPlan, OutboxItem, Store, TenantRow};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify, RwLock};

const TENANT: &str = "acme";

/// A call item's payload exactly as the processor wrote it before the contract's version tag
/// (its record is `simulate`'s output for scenario m5-missed-personal-mapped-task).
pub(super) fn legacy_call_payload() -> Value {
    json!({"entry_id": "ZW50cnk6MTIx", "record": {"conversation": null, "employee_extension": "101", "client_phone": "79161230021", "direction": "inbound", "status": "missed", "call_status": 6, "duration_s": 0, "started_at": 1764105300, "crm_user_id": 1001, "reasons": ["P1", "P4", "M4", "M5"], "creates_entities": true, "entities": {"settings": "incoming", "new_client": "contact_and_lead", "repeat_client": "manual", "responsible_crm_user_id": 1001}, "recording_id": null, "transcript": false, "task": {"responsible_crm_user_id": 1001, "prefer_contact_owner": false, "due_at": 1764108928, "dedupe_key": "79161230021:2025-11-26"}}})
}

/// A task item's payload as the processor wrote it before the version tag.
pub(super) fn legacy_task_payload() -> Value {
    json!({"entry_id": "ZW50cnk6MTIx", "call_item": "acme/ZW50cnk6MTIx/missed/call", "client_phone": "79161230021", "task": {"responsible_crm_user_id": 1001, "prefer_contact_owner": false, "due_at": 1764108928, "dedupe_key": "79161230021:2025-11-26"}, "reasons": ["M5"]})
}

/// A transcript item's payload as the processor wrote it before the version tag (scenario
/// c3-recordings-per-conversation-one-failed).
pub(super) fn legacy_transcript_payload() -> Value {
    json!({"entry_id": "ZW50cnk6MTE3", "call_item": "acme/ZW50cnk6MTE3/0/call", "recording_id": "MToxMDAwNjA4NTo1MDA5NDExNzoxMDE=", "crm_user_id": 1001, "reasons": ["C2"]})
}

/// A `lead` follow-up as the worker added it before the version tag.
pub(super) fn legacy_lead_payload() -> Value {
    let mut record = legacy_call_payload()["record"].clone();
    record["entities"]["repeat_client"] = json!("always_lead");
    json!({"call_item": "acme/ZW50cnk6MTIx/missed/call", "record": record, "reasons": ["C4"]})
}

/// A CRM that answers as scripted and records what it was asked.
#[derive(Default)]
struct FakeCrm {
    /// The answers to `add_calls`, in order; once they run out every call is written (on
    /// contact 7).
    call_answers: Mutex<VecDeque<Result<CallsOutcome, CrmError>>>,
    /// The `uniq` of every call sent, request by request.
    calls_sent: Mutex<Vec<Vec<String>>>,
    /// What `list_notes` finds (the same for every entity kind).
    notes: Mutex<Vec<Note>>,
    notes_read: AtomicUsize,
    /// The kind the `notes` are on (`None`: every kind finds them).
    notes_only_on: Mutex<Option<EntityType>>,
    /// The kinds whose notes were listed, in order.
    kinds_read: Mutex<Vec<EntityType>>,
    contacts_created: AtomicUsize,
    /// The main pipeline has unsorted requests turned off (`pipelines`).
    unsorted_off: std::sync::atomic::AtomicBool,
    /// Every unsorted request sent.
    unsorted_sent: Mutex<Vec<NewUnsortedSip>>,
    /// Runs as a call request arrives (a lease lost while it is under way).
    on_calls: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

impl FakeCrm {
    fn answer_calls(&self, answer: Result<CallsOutcome, CrmError>) {
        self.call_answers.lock().unwrap().push_back(answer);
    }

    fn calls_sent(&self) -> Vec<Vec<String>> {
        self.calls_sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl CrmPort for FakeCrm {
    async fn wait_for_place(&self) {}
    fn timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn add_calls(&self, items: &[NewCall]) -> Result<CallsOutcome, CrmError> {
        if let Some(hook) = self.on_calls.lock().unwrap().as_mut() {
            hook();
        }
        let keys: Vec<String> = items.iter().map(|c| c.uniq.clone()).collect();
        self.calls_sent.lock().unwrap().push(keys.clone());
        let scripted = self.call_answers.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| {
            Ok(CallsOutcome {
                created: keys
                    .into_iter()
                    .enumerate()
                    .map(|(i, request_id)| CallCreated {
                        request_id,
                        id: 1_000 + i as u64,
                        entity_id: 7,
                        entity_type: "contact".into(),
                    })
                    .collect(),
                ..CallsOutcome::default()
            })
        })
    }
    async fn list_notes(&self, kind: EntityType, _: &NotesFilter) -> Result<Vec<Note>, CrmError> {
        self.notes_read.fetch_add(1, Ordering::SeqCst);
        self.kinds_read.lock().unwrap().push(kind);
        let only = *self.notes_only_on.lock().unwrap();
        if only.is_some_and(|only| only != kind) {
            return Ok(Vec::new());
        }
        Ok(self.notes.lock().unwrap().clone())
    }
    async fn create_contacts(&self, items: &[NewContact]) -> Result<Vec<Created>, CrmError> {
        self.contacts_created
            .fetch_add(items.len(), Ordering::SeqCst);
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, c)| Created {
                id: 500 + i as u64,
                request_id: c.request_id.clone(),
            })
            .collect())
    }
    async fn create_complex_leads(
        &self,
        items: &[NewComplexLead],
    ) -> Result<Vec<ComplexCreated>, CrmError> {
        self.contacts_created
            .fetch_add(items.len(), Ordering::SeqCst);
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, l)| ComplexCreated {
                id: 900 + i as u64,
                contact_id: Some(500 + i as u64),
                request_id: l.request_id.clone(),
                merged: false,
            })
            .collect())
    }
    async fn create_leads(&self, _: &[NewLead]) -> Result<Vec<Created>, CrmError> {
        Ok(Vec::new())
    }
    async fn add_unsorted_sip(
        &self,
        items: &[NewUnsortedSip],
    ) -> Result<Vec<UnsortedCreated>, CrmError> {
        self.unsorted_sent
            .lock()
            .unwrap()
            .extend(items.iter().cloned());
        Ok(Vec::new())
    }
    async fn find_contacts_by_phone(&self, _: &str) -> Result<Vec<Contact>, CrmError> {
        Ok(Vec::new())
    }
    async fn pipelines(&self) -> Result<Vec<Pipeline>, CrmError> {
        Ok(vec![Pipeline {
            id: 3,
            name: "Sales".into(),
            is_main: true,
            is_unsorted_on: !self.unsorted_off.load(Ordering::SeqCst),
        }])
    }
    async fn contacts_by_ids(&self, _: &[u64]) -> Result<Vec<Contact>, CrmError> {
        Ok(Vec::new())
    }
    async fn leads_by_ids(&self, _: &[u64]) -> Result<Vec<Lead>, CrmError> {
        Ok(Vec::new())
    }
    async fn list_tasks(&self, _: &TasksFilter) -> Result<Vec<Task>, CrmError> {
        Ok(Vec::new())
    }
    async fn create_tasks(&self, _: &[NewTask]) -> Result<Vec<Created>, CrmError> {
        Ok(Vec::new())
    }
    async fn add_notes(&self, _: EntityType, _: &[NewNote]) -> Result<Vec<Created>, CrmError> {
        Ok(Vec::new())
    }
    async fn show_call_card(&self, _: &[CallCardEvent]) -> Result<(), CrmError> {
        Ok(())
    }
}

/// A tenant's delivery over a [`FakeCrm`], holding its lease, with a fresh store.
struct Harness {
    delivery: Arc<TenantDelivery>,
    crm: Arc<FakeCrm>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    async fn new(name: &str) -> Harness {
        let dir =
            std::env::temp_dir().join(format!("callbridge-worker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(None, &dir).await.unwrap();
        let (cards, _) = broadcast::channel(16);
        let state = Arc::new(AppState {
            appender: callbridge_store::Appender::spawn_with_sink(store.clone(), 16, None),
            store,
            tenants: RwLock::new(Default::default()),
            admin_token: String::new().into(),
            public_url: "http://callbridge.test".into(),
            processing: Default::default(),
            new_events: Notify::new(),
            outbox_ready: Default::default(),
            cards,
            metrics: crate::metrics_handle(),
            directories: RwLock::new(Default::default()),
            mango_api_url: "http://mango.test".into(),
            recording_link_days: 7,
            preview_entries: 200,
            card_token_key: [0; 32],
            purged_tenants: Default::default(),
            tenants_changed: Notify::new(),
            allow_insecure_crm_hosts: true,
            crm_users: Default::default(),
            connections: Default::default(),
            crm_clients: Default::default(),
            card_pages: Default::default(),
            file_tenants: Default::default(),
            stopping: Default::default(),
        });
        let settings = ValidSettings::parse_toml("plan = \"extended\"\n").unwrap();
        let tenant = Arc::new(Tenant {
            row: TenantRow {
                id: TENANT.into(),
                mango_api_key: "key".into(),
                mango_api_salt: "salt".into(),
                settings_toml: String::new(),
                crm: Value::Null,
                updated_at_ms: 1,
            },
            settings: Arc::new(settings),
        });
        let crm = Arc::new(FakeCrm::default());
        let delivery = Arc::new(TenantDelivery {
            lang: callbridge_core::explain::Lang::En,
            state,
            tenant,
            client: crm.clone(),
            background: crm.clone(),
            vpbx: Err(ApiError::Config("no Mango API in these tests".into())),
            lease: super::lease::AccountLease::unrenewed(),
            outage_failures: AtomicI64::new(0),
        });
        let harness = Harness { delivery, crm, dir };
        harness.hold_lease();
        harness
    }

    fn hold_lease(&self) {
        self.delivery
            .lease
            .until
            .store(now_ms() + 60_000, Ordering::SeqCst);
    }

    fn store(&self) -> &Store {
        &self.delivery.state.store
    }

    /// Stores one entry's items as the processor does.
    async fn plan(&self, entry_id: &str, outbox: Vec<NewOutboxItem>) {
        let plan = NewPlan {
            tenant_id: TENANT.into(),
            entry_id: entry_id.into(),
            completed_by: "summary".into(),
            plan: json!({}),
            outbox,
            first_event_id: None,
            last_event_id: None,
        };
        self.store().save_plans(&[plan], now_ms()).await.unwrap();
    }

    /// `n` call items of new entries, as this build writes them; their keys.
    async fn calls(&self, n: usize) -> Vec<String> {
        let record = match OutboxWork::read("call", &legacy_call_payload()).unwrap() {
            OutboxWork::Call(call) => call.record,
            _ => unreachable!(),
        };
        let mut keys = Vec::new();
        let mut items = Vec::new();
        for i in 0..n {
            let entry_id = format!("e{i}");
            let key = format!("{TENANT}/{entry_id}/0/call");
            let work = OutboxWork::Call(CallWork {
                entry_id,
                record: record.clone(),
            });
            items.push(work.into_item(key.clone()));
            keys.push(key);
        }
        self.plan("batch", items).await;
        keys
    }

    /// Marks `keys` in flight long ago (past the grace for requests still under way, so they
    /// are looked up in the CRM now) and puts a call note with `uniq` on entity `entity_id`.
    async fn lost_with_a_note_on(&self, keys: &[String], entity_id: u64, uniq: &str) {
        self.store()
            .mark_sending(keys, now_ms() - 120_000)
            .await
            .unwrap();
        self.crm.notes.lock().unwrap().push(Note {
            id: 70 + entity_id,
            entity_id,
            note_type: "call_in".into(),
            params: json!({"uniq": uniq}),
            responsible_user_id: None,
            created_by: None,
            created_at: None,
        });
    }

    /// The call items `keys` as the call lane reads them.
    async fn read_calls(&self, keys: &[String]) -> Vec<super::calls::Call> {
        let mut calls = Vec::new();
        for key in keys {
            calls.push(super::calls::Call::read(self.item(key).await).unwrap());
        }
        calls
    }

    async fn item(&self, key: &str) -> OutboxItem {
        self.store().outbox_item(key).await.unwrap().unwrap()
    }

    /// The item, asserted to be in `state` after `attempts` counted attempts.
    async fn item_in(&self, key: &str, state: &str, attempts: i64) -> OutboxItem {
        let item = self.item(key).await;
        assert_eq!(
            (item.state.as_str(), item.attempts),
            (state, attempts),
            "{item:?}"
        );
        item
    }

    /// Runs the call lane until the tenant's CRM status is `state`, then stops it.
    async fn lane_until_status(&self, state: &str) -> callbridge_store::CrmStatus {
        let (stop, stop_rx) = watch::channel(false);
        let lane = tokio::spawn(self.delivery.clone().lane(Lane::Calls, stop_rx));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            let status = self.store().crm_status(TENANT).await.unwrap();
            if let Some(status) = status.filter(|s| s.state == state) {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the CRM status never became {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // A lane that stopped for good sends nothing more while it waits for the tenant to change.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        lane.await.unwrap();
        status
    }
}

/// A call of one item, answered with `error` by the CRM.
async fn one_call_failing_with(name: &str, error: CrmError) -> (Harness, String) {
    let h = Harness::new(name).await;
    let key = h.calls(1).await.remove(0);
    h.crm.answer_calls(Err(error));
    (h, key)
}

#[tokio::test]
async fn a_row_stored_before_the_contract_version_is_delivered() {
    let h = Harness::new("legacy").await;
    let key = "acme/ZW50cnk6MTIx/missed/call";
    h.plan(
        "ZW50cnk6MTIx",
        vec![NewOutboxItem {
            item_key: key.into(),
            kind: "call".into(),
            payload: legacy_call_payload(),
        }],
    )
    .await;
    assert!(h.delivery.round().await.is_ok());
    assert_eq!(h.crm.calls_sent(), vec![vec![key.to_string()]]);
    let item = h.item(key).await;
    assert_eq!(item.state, "done", "{item:?}");
    let answer = item.crm_response.unwrap();
    assert_eq!(answer["entity_id"], json!(7));
    assert_eq!(answer["reasons"], json!(["P1", "P4", "M4", "M5"]));
}

#[tokio::test]
async fn unauthorized_marks_the_connection_broken_and_stops_delivery() {
    // The client refreshes the token once and reports 401 only when the refreshed token is
    // refused too: the worker then stops, it does not try again on its own.
    let (h, key) =
        one_call_failing_with("401", CrmError::Unauthorized("token revoked".into())).await;
    let status = h.lane_until_status("broken").await;
    assert!(
        status.detail.contains("refused the credentials"),
        "{status:?}"
    );
    assert!(status.detail.contains("token revoked"), "{status:?}");
    assert_eq!(h.crm.calls_sent().len(), 1, "sent again after a 401");
    h.item_in(&key, "pending", 0).await;
}

#[tokio::test]
async fn forbidden_marks_the_account_blocked_and_never_retries() {
    let (h, key) = one_call_failing_with("403", CrmError::Blocked).await;
    let status = h.lane_until_status("blocked").await;
    assert!(status.detail.contains("403"), "{status:?}");
    assert_eq!(h.crm.calls_sent().len(), 1, "retried after a 403");
    h.item_in(&key, "pending", 0).await;
}

#[tokio::test]
async fn rate_limited_items_are_retried_without_counting_an_attempt() {
    let (h, key) = one_call_failing_with("429", CrmError::RateLimited).await;
    let before = now_ms();
    assert!(h.delivery.round().await.is_ok());
    let item = h.item_in(&key, "pending", 0).await;
    assert!(item.last_error.unwrap_or_default().contains("429"));
    // Retried after the account's pause (a second), not with a backoff of its own.
    assert!(
        (before + 900..=now_ms() + 1_100).contains(&item.next_attempt_at_ms),
        "{}",
        item.next_attempt_at_ms - before
    );
    assert!(!h.delivery.in_outage(), "a 429 is no outage");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(h.delivery.round().await.is_ok());
    h.item_in(&key, "done", 0).await;
    assert_eq!(h.crm.calls_sent().len(), 2);
}

#[tokio::test]
async fn server_errors_count_an_attempt_and_back_off_for_the_whole_account() {
    let (h, key) = one_call_failing_with(
        "5xx",
        CrmError::Server {
            status: 503,
            body: "maintenance".into(),
        },
    )
    .await;
    let before = now_ms();
    assert!(h.delivery.round().await.is_ok());
    let item = h.item_in(&key, "pending", 1).await;
    // The CRM did not act on a 5xx: no in-flight mark to look up later.
    assert_eq!(item.sent_at_ms, None, "{item:?}");
    assert!(h.delivery.in_outage());
    // The outage's first wait (half a second), not the item's own backoff (a second or more).
    let wait = item.next_attempt_at_ms - before;
    assert!((400..=700).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_timeout_keeps_the_in_flight_mark_so_the_call_is_looked_up_before_it_is_sent_again() {
    let (h, key) = one_call_failing_with("timeout", CrmError::Timeout).await;
    assert!(h.delivery.round().await.is_ok());
    let item = h.item_in(&key, "pending", 1).await;
    assert!(
        item.sent_at_ms.is_some(),
        "the lost request's mark was dropped"
    );
    assert!(h.delivery.in_outage());
}

#[tokio::test]
async fn a_call_whose_answer_was_lost_is_found_in_the_crm_and_not_sent_again() {
    let h = Harness::new("lost").await;
    let keys = h.calls(2).await;
    let (found, missing) = (&keys[0], &keys[1]);
    h.lost_with_a_note_on(&keys, 7, found).await;
    // Marked long ago (past the grace for requests still under way): looked up now.
    assert!(h
        .delivery
        .deliver_calls(h.read_calls(&keys).await)
        .await
        .is_ok());
    assert!(h.crm.notes_read.load(Ordering::SeqCst) > 0);
    let item = h.item(found).await;
    assert_eq!(item.state, "done", "{item:?}");
    assert_eq!(item.crm_response.unwrap()["recovered"], json!(true));
    // Only the one not found went out again.
    assert_eq!(h.crm.calls_sent(), vec![vec![missing.clone()]]);
    assert_eq!(h.item(missing).await.state, "done");
}

#[tokio::test]
async fn a_refusal_the_crm_explains_parks_the_item_with_its_words() {
    let h = Harness::new("refused").await;
    let key = h.calls(1).await.remove(0);
    h.crm.answer_calls(Err(CrmError::Rejected {
        status: 400,
        message: "Request validation failed".into(),
        items: vec![ItemError {
            request_id: Some(key.clone()),
            message: "phone: This value is not valid".into(),
        }],
    }));
    assert!(h.delivery.round().await.is_ok());
    let item = h.item(&key).await;
    assert_eq!(item.state, "parked", "{item:?}");
    let why = item.last_error.unwrap_or_default();
    assert!(why.contains("phone: This value is not valid"), "{why}");
    assert!(why.contains("Request validation failed"), "{why}");
    // Parked items wait for a person: the next round sends nothing.
    assert!(!h.delivery.round().await.unwrap());
    assert_eq!(h.crm.calls_sent().len(), 1);
}

#[tokio::test]
async fn a_lease_lost_mid_round_stops_the_round_and_nothing_is_delivered_twice() {
    let h = Harness::new("lease").await;
    // Four batches of 50: three go out together, the fourth only after one of them is done.
    let keys = h.calls(160).await;
    let delivery = h.delivery.clone();
    *h.crm.on_calls.lock().unwrap() = Some(Box::new(move || {
        delivery.lease.until.store(0, Ordering::SeqCst);
    }));
    assert!(matches!(
        h.delivery.round().await,
        Err(RoundError::LeaseLost)
    ));
    let first_round: usize = h.crm.calls_sent().iter().map(Vec::len).sum();
    assert!(
        first_round < keys.len(),
        "the round went on without the lease"
    );
    // Without the lease the lane sends nothing.
    assert!(matches!(
        h.delivery.round().await,
        Err(RoundError::LeaseLost)
    ));
    assert_eq!(
        h.crm.calls_sent().iter().map(Vec::len).sum::<usize>(),
        first_round
    );
    // The lease back: the rest goes out, and what was written is not sent again.
    *h.crm.on_calls.lock().unwrap() = None;
    h.hold_lease();
    assert!(h.delivery.round().await.is_ok());
    let mut sent: Vec<String> = h.crm.calls_sent().into_iter().flatten().collect();
    sent.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(sent, expected, "each call exactly once");
    for key in &keys {
        assert_eq!(h.item(key).await.state, "done", "{key}");
    }
}

#[tokio::test]
async fn an_unknown_client_gets_the_new_client_action_once_then_its_call() {
    let h = Harness::new("new-client").await;
    let key = h.calls(1).await.remove(0);
    h.crm.answer_calls(Ok(CallsOutcome {
        not_found: vec![key.clone()],
        ..CallsOutcome::default()
    }));
    assert!(h.delivery.round().await.is_ok());
    // contact_and_lead (C4): one contact with its lead, kept as the call's progress.
    assert_eq!(h.crm.contacts_created.load(Ordering::SeqCst), 1);
    let item = h.item(&key).await;
    assert_eq!(item.state, "pending", "{item:?}");
    assert_eq!(item.crm_response.clone().unwrap()["lead_id"], json!(900));
    assert!(h.delivery.round().await.is_ok());
    let item = h.item(&key).await;
    assert_eq!(item.state, "done", "{item:?}");
    assert_eq!(h.crm.contacts_created.load(Ordering::SeqCst), 1);
    assert_eq!(h.crm.calls_sent().len(), 2);
}

#[tokio::test]
async fn a_call_landed_on_an_unknown_kind_is_written_and_its_task_parked_with_the_reason() {
    let h = Harness::new("unknown-kind").await;
    let call_key = "acme/ZW50cnk6MTIx/missed/call";
    let task_key = "acme/ZW50cnk6MTIx/missed/task";
    h.plan(
        "ZW50cnk6MTIx",
        vec![
            NewOutboxItem {
                item_key: call_key.into(),
                kind: "call".into(),
                payload: legacy_call_payload(),
            },
            NewOutboxItem {
                item_key: task_key.into(),
                kind: "task".into(),
                payload: legacy_task_payload(),
            },
        ],
    )
    .await;
    h.crm.answer_calls(Ok(CallsOutcome {
        created: vec![CallCreated {
            request_id: call_key.into(),
            id: 55,
            entity_id: 9,
            entity_type: "catalog_elements".into(),
        }],
        ..CallsOutcome::default()
    }));
    assert!(h.delivery.round().await.is_ok());
    // The note exists: the call is done and never sent again, with the reason kept.
    let call = h.item(call_key).await;
    assert_eq!(call.state, "done", "{call:?}");
    let answer = call.crm_response.unwrap();
    assert_eq!(answer["entity_type"], json!("catalog_elements"));
    assert!(answer["entity_type_error"]
        .as_str()
        .is_some_and(|e| e.contains("catalog_elements")));
    // Its task is not put on a contact 9 that may be someone else: parked, saying why.
    assert!(h.delivery.followup_round().await.is_ok());
    let task = h.item(task_key).await;
    assert_eq!(task.state, "parked", "{task:?}");
    let why = task.last_error.unwrap_or_default();
    assert!(why.contains("catalog_elements"), "{why}");
    assert_eq!(h.crm.calls_sent().len(), 1);
}

#[tokio::test]
async fn a_created_client_the_crm_keeps_not_finding_is_retried_with_backoff_then_parked() {
    let h = Harness::new("not-found-after-create").await;
    let key = h.calls(1).await.remove(0);
    // The client was created for this call by an earlier round.
    h.store()
        .save_progress(&key, &json!({"contact_id": 5, "new_client": true}))
        .await
        .unwrap();
    let mut delays = Vec::new();
    for _ in 0..5 {
        h.crm.answer_calls(Ok(CallsOutcome {
            not_found: vec![key.clone()],
            ..CallsOutcome::default()
        }));
        let call = super::calls::Call::read(h.item(&key).await).unwrap();
        let before = now_ms();
        assert!(h.delivery.deliver_calls(vec![call]).await.is_ok());
        let item = h.item(&key).await;
        if item.state == "pending" {
            delays.push((item.next_attempt_at_ms - before + 500) / 1000);
        }
    }
    assert_eq!(delays, vec![2, 4, 8, 16], "backoff doubles, four times");
    let item = h.item(&key).await;
    assert_eq!(item.state, "parked", "{item:?}");
    let why = item.last_error.unwrap_or_default();
    assert!(why.contains("contact 5"), "{why}");
    assert!(why.contains("after 5 tries"), "{why}");
    // No second contact was created for the client while waiting.
    assert_eq!(h.crm.contacts_created.load(Ordering::SeqCst), 0);
    assert_eq!(h.crm.calls_sent().len(), 5);
}

/// One call item of an unknown client whose new-client action is unsorted, `direction` given;
/// the CRM does not know the client. Its key.
async fn unknown_client_call_with_unsorted(h: &Harness, entry: &str, direction: &str) -> String {
    let mut payload = legacy_call_payload();
    payload["entry_id"] = json!(entry);
    payload["record"]["direction"] = json!(direction);
    payload["record"]["entities"]["new_client"] = json!("unsorted");
    let key = format!("{TENANT}/{entry}/0/call");
    h.plan(
        entry,
        vec![NewOutboxItem {
            item_key: key.clone(),
            kind: "call".into(),
            payload,
        }],
    )
    .await;
    h.crm.answer_calls(Ok(CallsOutcome {
        not_found: vec![key.clone()],
        ..CallsOutcome::default()
    }));
    key
}

#[tokio::test]
async fn an_inbound_unknown_client_gets_an_unsorted_request_with_the_documented_metadata() {
    let h = Harness::new("unsorted-inbound").await;
    let key = unknown_client_call_with_unsorted(&h, "in1", "inbound").await;
    assert!(h.delivery.round().await.is_ok());
    let sent = h.crm.unsorted_sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let request = &sent[0];
    assert_eq!(request.uniq, key);
    assert_eq!(request.from, "79161230021", "from: who called");
    assert_eq!(request.to, "101", "phone: who was called");
    assert_eq!(request.call_responsible, Some(1001));
    assert_eq!(h.crm.contacts_created.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_outbound_call_to_an_unknown_number_creates_a_contact_not_an_unsorted_request() {
    let h = Harness::new("unsorted-outbound").await;
    let key = unknown_client_call_with_unsorted(&h, "out1", "outbound").await;
    assert!(h.delivery.round().await.is_ok());
    assert!(h.crm.unsorted_sent.lock().unwrap().is_empty());
    assert_eq!(h.crm.contacts_created.load(Ordering::SeqCst), 1);
    let item = h.item(&key).await;
    assert_eq!(item.state, "pending", "its call goes out next: {item:?}");
}

#[tokio::test]
async fn with_unsorted_off_in_the_pipeline_the_call_is_parked_saying_so() {
    let h = Harness::new("unsorted-off").await;
    h.crm.unsorted_off.store(true, Ordering::SeqCst);
    let key = unknown_client_call_with_unsorted(&h, "in2", "inbound").await;
    assert!(h.delivery.round().await.is_ok());
    assert!(h.crm.unsorted_sent.lock().unwrap().is_empty());
    let item = h.item(&key).await;
    assert_eq!(item.state, "parked", "{item:?}");
    let why = item.last_error.unwrap_or_default();
    assert!(
        why.contains("unsorted requests (incoming leads) are off"),
        "{why}"
    );
    assert!(why.contains("\"Sales\" (3)"), "{why}");
}

#[tokio::test]
async fn a_lost_call_is_looked_for_on_companies_and_customers_too_before_it_is_sent_again() {
    let h = Harness::new("lost-everywhere").await;
    let keys = h.calls(2).await;
    let (on_customer, nowhere) = (&keys[0], &keys[1]);
    *h.crm.notes_only_on.lock().unwrap() = Some(EntityType::Customers);
    h.lost_with_a_note_on(&keys, 12, on_customer).await;
    assert!(h
        .delivery
        .deliver_calls(h.read_calls(&keys).await)
        .await
        .is_ok());
    assert_eq!(
        *h.crm.kinds_read.lock().unwrap(),
        vec![
            EntityType::Contacts,
            EntityType::Leads,
            EntityType::Companies,
            EntityType::Customers
        ]
    );
    let item = h.item(on_customer).await;
    assert_eq!(item.state, "done", "{item:?}");
    let answer = item.crm_response.unwrap();
    assert_eq!(answer["entity_type"], json!("customers"));
    assert_eq!(answer["recovered"], json!(true));
    // Only the one found nowhere went out again.
    assert_eq!(h.crm.calls_sent(), vec![vec![nowhere.clone()]]);
}

#[tokio::test]
async fn the_look_for_lost_calls_stops_once_every_one_is_found() {
    let h = Harness::new("lost-found-early").await;
    let key = h.calls(1).await.remove(0);
    *h.crm.notes_only_on.lock().unwrap() = Some(EntityType::Contacts);
    h.lost_with_a_note_on(std::slice::from_ref(&key), 7, &key)
        .await;
    let call = super::calls::Call::read(h.item(&key).await).unwrap();
    assert!(h.delivery.deliver_calls(vec![call]).await.is_ok());
    assert_eq!(
        *h.crm.kinds_read.lock().unwrap(),
        vec![EntityType::Contacts]
    );
    assert_eq!(h.item(&key).await.state, "done");
    assert!(h.crm.calls_sent().is_empty());
}

#[tokio::test]
async fn a_broken_connection_is_named_for_readyz_and_counted_in_the_gauge() {
    let h = Harness::new("broken-gauge").await;
    let state = h.delivery.state.clone();
    state
        .tenants
        .write()
        .await
        .insert(TENANT.into(), h.delivery.tenant.clone());
    assert!(crate::token_refresh::broken_connections(&state)
        .await
        .is_empty());
    h.store()
        .set_crm_status(
            TENANT,
            "broken",
            "the refresh token was refused; re-authorize the integration",
            now_ms(),
        )
        .await
        .unwrap();
    // The tenant has no CRM section here: nothing to refresh, but its state still counts.
    crate::token_refresh::refresh_due(&state).await;
    assert_eq!(
        crate::token_refresh::broken_connections(&state).await,
        vec![format!(
            "crm connection broken for tenant {TENANT}: the refresh token was refused; re-authorize the integration"
        )]
    );
    let metrics = state.metrics.render();
    assert!(
        metrics.contains("callbridge_crm_connections_broken 1"),
        "{metrics}"
    );
}
