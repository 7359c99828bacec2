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
    NewTask, NewUnsortedSip, Note, NotesFilter, Pipeline, Task, TasksFilter, Unsorted,
    UnsortedCreated, UnsortedFilter,
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
use tokio::sync::watch;

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
    /// The unsorted requests created and still pending (uid `u1`, `u2`, ... with lead 600 + n
    /// and contact 650 + n); `decide_unsorted` takes one out, as accepting or declining does.
    unsorted_pending: Mutex<Vec<Unsorted>>,
    /// Answers to `add_unsorted_sip`, in order, before it creates requests.
    unsorted_answers: Mutex<VecDeque<CrmError>>,
    /// The filters of every pending-unsorted listing.
    unsorted_listed: Mutex<Vec<UnsortedFilter>>,
    /// Every note added, with its entity kind.
    notes_added: Mutex<Vec<(EntityType, NewNote)>>,
    /// Runs as a call request arrives (a lease lost while it is under way).
    on_calls: Mutex<Option<Box<dyn FnMut() + Send>>>,
    /// Every call card request, with its events.
    cards_shown: Mutex<Vec<Vec<CallCardEvent>>>,
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
        let mut pending = self.unsorted_pending.lock().unwrap();
        // The request lands whatever the answer: a scripted error is an answer lost on the way.
        let mut created = Vec::new();
        for item in items {
            let n = self.unsorted_sent.lock().unwrap().len() as u64;
            let request = Unsorted {
                uid: format!("u{n}"),
                lead_id: Some(600 + n),
                contact_id: Some(650 + n),
                source_uid: Some(item.source_uid.clone()),
                uniq: Some(item.uniq.clone()),
                created_at: Some(item.called_at),
            };
            created.push(UnsortedCreated {
                uid: request.uid.clone(),
                lead_id: request.lead_id,
                contact_id: request.contact_id,
                request_id: item.request_id.clone(),
            });
            pending.insert(0, request);
        }
        match self.unsorted_answers.lock().unwrap().pop_front() {
            Some(lost) => Err(lost),
            None => Ok(created),
        }
    }
    async fn pending_unsorted_sip(
        &self,
        filter: &UnsortedFilter,
    ) -> Result<Vec<Unsorted>, CrmError> {
        self.unsorted_listed.lock().unwrap().push(filter.clone());
        Ok(self
            .unsorted_pending
            .lock()
            .unwrap()
            .iter()
            .filter(|u| filter.uids.is_empty() || filter.uids.contains(&u.uid))
            .cloned()
            .collect())
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
    async fn add_notes(
        &self,
        kind: EntityType,
        items: &[NewNote],
    ) -> Result<Vec<Created>, CrmError> {
        let mut added = self.notes_added.lock().unwrap();
        let mut created = Vec::new();
        for item in items {
            added.push((kind, item.clone()));
            created.push(Created {
                id: 800 + added.len() as u64,
                request_id: item.request_id.clone(),
            });
        }
        Ok(created)
    }
    async fn show_call_card(&self, events: &[CallCardEvent]) -> Result<(), CrmError> {
        self.cards_shown.lock().unwrap().push(events.to_vec());
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
        Harness::over(name, None).await
    }

    /// A harness whose delivery talks to `crm` (a real client) instead of the fake; `crm` then
    /// stays unused.
    async fn over(name: &str, real: Option<callbridge_amocrm::AmoClient>) -> Harness {
        let dir =
            std::env::temp_dir().join(format!("callbridge-worker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(None, &dir).await.unwrap();
        let state = Arc::new(AppState::for_tests(store, Default::default()));
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
        let (client, background): (Arc<dyn CrmPort>, Arc<dyn CrmPort>) = match real {
            Some(real) => {
                let background = Arc::new(real.background(super::FOLLOWUP_RESERVE));
                (Arc::new(real), background)
            }
            None => (crm.clone(), crm.clone()),
        };
        let delivery = Arc::new(TenantDelivery {
            lang: callbridge_core::explain::Lang::En,
            state,
            tenant,
            client,
            background,
            vpbx: Err(ApiError::Config("no Mango API in these tests".into())),
            lease: super::lease::AccountLease::unrenewed(),
            outage_failures: AtomicI64::new(0),
            quiet_since: None,
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

    /// Moves the in-flight mark of `key` back past the grace for requests still under way.
    async fn sent_long_ago(&self, key: &str) {
        let keys = [key.to_string()];
        self.store().unmark_sending(&keys).await.unwrap();
        self.store()
            .mark_sending(&keys, now_ms() - 120_000)
            .await
            .unwrap();
    }

    /// Delivers the in-flight items `keys` again once their marks are past the grace, as the
    /// call lane does after a lost answer.
    async fn deliver_after_lost_answer(&self, keys: &[String]) {
        for key in keys {
            self.sent_long_ago(key).await;
        }
        let calls = self.read_calls(keys).await;
        assert!(self.delivery.deliver_calls(calls).await.is_ok());
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

impl Harness {
    /// The harness's delivery, but told its tenant had no pending work at start, when its wake
    /// count was `count` (as the worker starting many tenants tells it).
    fn quiet_since(&self, count: u64) -> Arc<TenantDelivery> {
        let d = &self.delivery;
        self.delivery_beside(
            d.tenant.clone(),
            d.client.clone(),
            d.background.clone(),
            Some(count),
        )
    }

    /// Another delivery on the harness's state and CRM account (its lease), for `tenant`
    /// through `client` and `background`.
    fn delivery_beside(
        &self,
        tenant: Arc<Tenant>,
        client: Arc<dyn CrmPort>,
        background: Arc<dyn CrmPort>,
        quiet_since: Option<u64>,
    ) -> Arc<TenantDelivery> {
        let d = &self.delivery;
        Arc::new(TenantDelivery {
            lang: d.lang,
            state: d.state.clone(),
            tenant,
            client,
            background,
            vpbx: Err(ApiError::Config("no Mango API in these tests".into())),
            lease: d.lease.clone(),
            outage_failures: AtomicI64::new(0),
            quiet_since,
        })
    }

    /// Waits (up to 5 s) for the item to be done.
    async fn until_done(&self, key: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.item(key).await.state != "done" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} was never delivered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_lane_quiet_at_start_does_not_look_until_its_tenant_is_woken() {
    let h = Harness::new("quiet-start").await;
    let wakes = h.delivery.state.outbox_ready.of(TENANT);
    let quiet = h.quiet_since(wakes.generation());
    // Work stored without a wake (the processor always wakes; this shows the lane did not look).
    let key = h.calls(1).await.remove(0);
    let (stop, stop_rx) = watch::channel(false);
    let lane = tokio::spawn(quiet.lane(Lane::Calls, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.item_in(&key, "pending", 0).await;
    assert!(h.crm.calls_sent.lock().unwrap().is_empty());
    // Woken: it looks, and delivers.
    h.delivery.state.outbox_ready.wake(TENANT);
    h.until_done(&key).await;
    stop.send(true).unwrap();
    lane.await.unwrap();
}

#[tokio::test]
async fn a_lane_quiet_at_start_looks_at_once_when_woken_before_it_started() {
    let h = Harness::new("quiet-woken").await;
    let wakes = h.delivery.state.outbox_ready.of(TENANT);
    // The count read before the store was asked; work then stored and its wake sent before
    // the lane runs: the lane must not miss it.
    let quiet = h.quiet_since(wakes.generation());
    let key = h.calls(1).await.remove(0);
    h.delivery.state.outbox_ready.wake(TENANT);
    let (stop, stop_rx) = watch::channel(false);
    let lane = tokio::spawn(quiet.lane(Lane::Calls, stop_rx));
    h.until_done(&key).await;
    stop.send(true).unwrap();
    lane.await.unwrap();
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

/// Plans one call item of entry `entry`, of `phone`, whose new-client action is unsorted,
/// `direction` given. Its key.
async fn plan_unsorted_call(h: &Harness, entry: &str, direction: &str, phone: &str) -> String {
    let mut payload = legacy_call_payload();
    payload["entry_id"] = json!(entry);
    payload["record"]["direction"] = json!(direction);
    payload["record"]["client_phone"] = json!(phone);
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
    key
}

/// One call item of an unknown client whose new-client action is unsorted, `direction` given;
/// the CRM does not know the client. Its key.
async fn unknown_client_call_with_unsorted(h: &Harness, entry: &str, direction: &str) -> String {
    let key = plan_unsorted_call(h, entry, direction, "79161230021").await;
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

/// The client's pending unsorted request (the fake's `u1`) after a first call of `entry`.
async fn first_call_makes_an_unsorted_request(h: &Harness, entry: &str) -> String {
    let key = unknown_client_call_with_unsorted(h, entry, "inbound").await;
    assert!(h.delivery.round().await.is_ok());
    let item = h.item_in(&key, "done", 0).await;
    assert_eq!(item.crm_response.unwrap()["unsorted_uid"], json!("u1"));
    let remembered = h
        .store()
        .unsorted_request(TENANT, "9161230021")
        .await
        .unwrap()
        .expect("the request is remembered for the client");
    assert_eq!(
        (remembered.uid.as_str(), remembered.lead_id),
        ("u1", Some(601))
    );
    key
}

#[tokio::test]
async fn a_second_call_while_the_unsorted_request_is_pending_is_attached_to_it() {
    let h = Harness::new("unsorted-attach").await;
    first_call_makes_an_unsorted_request(&h, "in1").await;
    let second = unknown_client_call_with_unsorted(&h, "in2", "inbound").await;
    assert!(h.delivery.round().await.is_ok());
    // One request for the client; the second call is a call note on the request's lead.
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 1);
    let listed = h.crm.unsorted_listed.lock().unwrap().clone();
    assert_eq!(listed.len(), 1, "one look whether it is still pending");
    assert_eq!(listed[0].uids, vec!["u1".to_string()]);
    let notes = h.crm.notes_added.lock().unwrap().clone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let (kind, note) = &notes[0];
    assert_eq!((*kind, note.entity_id), (EntityType::Leads, 601));
    let callbridge_amocrm::NoteType::CallIn { params } = &note.note_type else {
        panic!("an inbound call is a call_in note: {note:?}");
    };
    assert_eq!(params.uniq, second);
    assert_eq!(params.phone, "79161230021");
    // The rule ids that decided the record travel with the note.
    let result = params.call_result.clone().unwrap_or_default();
    assert!(result.ends_with("[P1, P4, M4, M5]"), "{result}");
    let answer = h.item_in(&second, "done", 0).await.crm_response.unwrap();
    assert_eq!(answer["unsorted_uid"], json!("u1"));
    assert_eq!(answer["attached_to_pending_unsorted"], json!(true));
    assert_eq!(answer["reasons"], json!(["P1", "P4", "M4", "M5"]));
}

#[tokio::test]
async fn a_declined_request_is_forgotten_and_the_next_call_makes_a_new_one() {
    let h = Harness::new("unsorted-declined").await;
    first_call_makes_an_unsorted_request(&h, "in1").await;
    // Declined in the CRM: no longer listed as pending.
    h.crm.unsorted_pending.lock().unwrap().clear();
    let second = unknown_client_call_with_unsorted(&h, "in2", "inbound").await;
    assert!(h.delivery.round().await.is_ok());
    assert!(h.crm.notes_added.lock().unwrap().is_empty());
    let item = h.item_in(&second, "pending", 0).await;
    assert!(
        item.last_error
            .unwrap_or_default()
            .contains("no longer pending"),
        "the reason is kept"
    );
    assert!(h
        .store()
        .unsorted_request(TENANT, "9161230021")
        .await
        .unwrap()
        .is_none());
    // Sent again, it finds no one: a new request.
    h.crm.answer_calls(Ok(CallsOutcome {
        not_found: vec![second.clone()],
        ..CallsOutcome::default()
    }));
    assert!(h.delivery.round().await.is_ok());
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 2);
    let answer = h.item_in(&second, "done", 0).await.crm_response.unwrap();
    assert_eq!(answer["unsorted_uid"], json!("u2"));
}

#[tokio::test]
async fn after_the_request_is_accepted_the_next_call_lands_on_the_contact() {
    let h = Harness::new("unsorted-accepted").await;
    first_call_makes_an_unsorted_request(&h, "in1").await;
    h.crm.unsorted_pending.lock().unwrap().clear();
    let second = unknown_client_call_with_unsorted(&h, "in2", "inbound").await;
    assert!(h.delivery.round().await.is_ok());
    // The accepted contact exists now: the call, sent again, lands on it (the fake's contact 7).
    assert!(h.delivery.round().await.is_ok());
    let answer = h.item_in(&second, "done", 0).await.crm_response.unwrap();
    assert_eq!(answer["entity_id"], json!(7));
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn two_calls_of_one_unknown_number_in_one_round_make_one_request() {
    let h = Harness::new("unsorted-same-round").await;
    let mut keys = Vec::new();
    for entry in ["in1", "in2"] {
        keys.push(plan_unsorted_call(&h, entry, "inbound", "79161230021").await);
    }
    h.crm.answer_calls(Ok(CallsOutcome {
        not_found: keys.clone(),
        ..CallsOutcome::default()
    }));
    assert!(h.delivery.round().await.is_ok());
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 1);
    let waiting: Vec<String> = {
        let mut waiting = Vec::new();
        for key in &keys {
            if h.item(key).await.state == "pending" {
                waiting.push(key.clone());
            }
        }
        waiting
    };
    assert_eq!(waiting.len(), 1, "the second waits for the first's request");
    h.crm.answer_calls(Ok(CallsOutcome {
        not_found: waiting.clone(),
        ..CallsOutcome::default()
    }));
    assert!(h
        .delivery
        .deliver_calls(h.read_calls(&waiting).await)
        .await
        .is_ok());
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 1, "still one");
    assert_eq!(h.crm.notes_added.lock().unwrap().len(), 1);
    for key in &keys {
        assert_eq!(h.item(key).await.state, "done", "{key}");
    }
}

#[tokio::test]
async fn an_unsorted_request_whose_answer_was_lost_is_found_among_the_pending_not_sent_again() {
    let h = Harness::new("unsorted-lost-found").await;
    let key = unknown_client_call_with_unsorted(&h, "in1", "inbound").await;
    h.crm
        .unsorted_answers
        .lock()
        .unwrap()
        .push_back(CrmError::Timeout);
    assert!(h.delivery.round().await.is_ok());
    let item = h.item_in(&key, "pending", 1).await;
    assert!(item.sent_at_ms.is_some(), "the mark stays: {item:?}");
    h.deliver_after_lost_answer(std::slice::from_ref(&key))
        .await;
    let answer = h.item_in(&key, "done", 1).await.crm_response.unwrap();
    assert_eq!(answer["unsorted_uid"], json!("u1"));
    assert_eq!(answer["recovered"], json!(true));
    assert_eq!(answer["reasons"], json!(["P1", "P4", "M4", "M5"]));
    // Looked up, not sent again: one request, one call attempt (the first), no note search.
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 1);
    assert_eq!(h.crm.calls_sent().len(), 1);
    assert_eq!(h.crm.notes_read.load(Ordering::SeqCst), 0);
    let listed = h.crm.unsorted_listed.lock().unwrap().clone();
    assert!(
        listed[0].uids.is_empty() && listed[0].created_from.is_some(),
        "{listed:?}"
    );
    // And remembered for the client's next call.
    assert!(h
        .store()
        .unsorted_request(TENANT, "9161230021")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn an_unsorted_request_lost_on_the_way_is_sent_again_after_looking() {
    let h = Harness::new("unsorted-lost-missing").await;
    let key = unknown_client_call_with_unsorted(&h, "in1", "inbound").await;
    h.crm
        .unsorted_answers
        .lock()
        .unwrap()
        .push_back(CrmError::Timeout);
    assert!(h.delivery.round().await.is_ok());
    // It never arrived: not among the pending requests.
    h.crm.unsorted_pending.lock().unwrap().clear();
    h.deliver_after_lost_answer(std::slice::from_ref(&key))
        .await;
    // Looked for among the pending requests, then among call notes (an accepted request's
    // call is a note), then sent again: the client still unknown, straight to a new request.
    assert_eq!(h.crm.unsorted_listed.lock().unwrap().len(), 1);
    assert!(h.crm.notes_read.load(Ordering::SeqCst) > 0);
    assert_eq!(h.crm.unsorted_sent.lock().unwrap().len(), 2);
    assert_eq!(h.crm.calls_sent().len(), 1);
    let answer = h.item_in(&key, "done", 1).await.crm_response.unwrap();
    assert_eq!(answer["unsorted_uid"], json!("u2"));
}

/// End to end over HTTP: the worker's delivery through a real [`callbridge_amocrm::AmoClient`]
/// to the amoCRM sandbox, which keeps unsorted requests, companies and customers as amoCRM does.
mod over_http {
    use super::*;
    use callbridge_amocrm::{AccountConfig, AmoClient, AuthConfig, MemoryTokenStore};
    use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};

    /// A client with a pending unsorted request has none of these numbers; the company and the
    /// customer's contact have the others.
    const UNKNOWN: &str = "79161230021";
    const COMPANY: &str = "74951112233";
    const CUSTOMER: &str = "79165550001";

    /// The harness, the sandbox, and a client of the same account for the test's own reads
    /// (through the same limiter: the test's looks do not push the account over its limit).
    async fn start(name: &str) -> (Harness, Sandbox, AmoClient) {
        let seed = Seed::from_json_str(
            r#"{"contacts": [{"name": "Petrov", "phone": "+7 916 555-00-01",
                              "customers": [{"name": "Petrov, monthly box"}]}],
                "companies": [{"name": "Acme LLC", "phone": "+7 (495) 111-22-33"}]}"#,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox = callbridge_amocrm_sandbox::start(
            listener,
            SandboxConfig {
                seed,
                ..SandboxConfig::default()
            },
        )
        .await
        .unwrap();
        let config = AccountConfig {
            base_url: sandbox.base_url(),
            auth: AuthConfig::LongLived {
                token: sandbox.long_lived_token(),
            },
            requests_per_second: 7,
            // Short, so that an answer the sandbox holds back is given up on quickly.
            timeout: Duration::from_secs(1),
        };
        let client = AmoClient::new(config, Arc::new(MemoryTokenStore::new())).unwrap();
        let harness = Harness::over(name, Some(client.clone())).await;
        (harness, sandbox, client)
    }

    /// An inbound call of `phone`, entry `entry`, whose new-client action is unsorted.
    async fn call_of(h: &Harness, entry: &str, phone: &str) -> String {
        plan_unsorted_call(h, entry, "inbound", phone).await
    }

    /// The `uniq`s of the call notes on entities of `kind`, of `ids` only if given.
    async fn call_note_uniqs(crm: &AmoClient, kind: EntityType, ids: &[u64]) -> Vec<String> {
        let filter = NotesFilter {
            note_types: vec!["call_in".into()],
            entity_ids: ids.to_vec(),
            ..NotesFilter::default()
        };
        let notes = crm.list_notes(kind, &filter).await.unwrap();
        notes
            .iter()
            .filter_map(|n| n.params["uniq"].as_str().map(str::to_owned))
            .collect()
    }

    async fn round(h: &Harness) {
        // Each round waits for nothing: its calls were planned as due now.
        assert!(h.delivery.round().await.is_ok());
    }

    /// Accepts or declines request `uid` as a person in the CRM would (the client has no call
    /// for it), after the account's window has room.
    async fn decide(sandbox: &Sandbox, crm: &AmoClient, uid: &str, accept: bool) {
        crm.wait_for_place().await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let http = reqwest::Client::new();
        let url = format!("{}/api/v4/leads/unsorted/{uid}", sandbox.base_url());
        let request = if accept {
            http.post(format!("{url}/accept")).json(&json!({}))
        } else {
            http.delete(format!("{url}/decline"))
                .json(&json!({"user_id": 1001}))
        };
        let response = request
            .bearer_auth(sandbox.long_lived_token())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_of_a_client_with_a_pending_request_gather_on_it_until_it_is_accepted() {
        let (h, sandbox, crm) = start("http-unsorted-accept").await;
        let first = call_of(&h, "in1", UNKNOWN).await;
        round(&h).await;
        let answer = h.item_in(&first, "done", 0).await.crm_response.unwrap();
        let uid = answer["unsorted_uid"].as_str().unwrap().to_string();
        let lead = answer["lead_id"].as_u64().unwrap();

        let second = call_of(&h, "in2", UNKNOWN).await;
        round(&h).await;
        let answer = h.item_in(&second, "done", 0).await.crm_response.unwrap();
        assert_eq!(answer["attached_to_pending_unsorted"], json!(true));
        assert_eq!(answer["unsorted_note_on"]["entity_id"], json!(lead));
        // Still one request, and the second call is a note on its lead, rule ids at the end.
        let pending = crm.unsorted().await.unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].uniq.as_deref(), Some(first.as_str()));
        let filter = NotesFilter {
            entity_ids: vec![lead],
            ..NotesFilter::default()
        };
        let notes = crm.list_notes(EntityType::Leads, &filter).await.unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].params["uniq"], json!(second));
        let result = notes[0].params["call_result"].as_str().unwrap_or_default();
        assert!(result.ends_with("[P1, P4, M4, M5]"), "{result}");

        // Accepted: the contact is known now, and the next call lands on the accepted lead.
        decide(&sandbox, &crm, &uid, true).await;
        let third = call_of(&h, "in3", UNKNOWN).await;
        round(&h).await;
        let answer = h.item_in(&third, "done", 0).await.crm_response.unwrap();
        assert_eq!(
            (answer["entity_type"].clone(), answer["entity_id"].clone()),
            (json!("leads"), json!(lead))
        );
        let mut on_lead = call_note_uniqs(&crm, EntityType::Leads, &[lead]).await;
        on_lead.sort();
        assert_eq!(on_lead, vec![first, second, third], "every call once");
        assert!(crm.unsorted().await.unwrap().is_empty());
        sandbox.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_decline_the_clients_next_call_makes_a_new_request() {
        let (h, sandbox, crm) = start("http-unsorted-decline").await;
        let first = call_of(&h, "in1", UNKNOWN).await;
        round(&h).await;
        let answer = h.item_in(&first, "done", 0).await.crm_response.unwrap();
        decide(
            &sandbox,
            &crm,
            answer["unsorted_uid"].as_str().unwrap(),
            false,
        )
        .await;
        let second = call_of(&h, "in2", UNKNOWN).await;
        // The first round learns the request is gone, the next sends the call anew: no one
        // has the number, so it gets its own request.
        round(&h).await;
        round(&h).await;
        let answer = h.item_in(&second, "done", 0).await.crm_response.unwrap();
        assert!(answer["unsorted_uid"].is_string(), "{answer}");
        let pending = crm.unsorted().await.unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].uniq.as_deref(), Some(second.as_str()));
        sandbox.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_answers_are_found_on_a_company_a_customer_and_among_pending_requests() {
        let (h, sandbox, crm) = start("http-lost-answers").await;
        let on_company = call_of(&h, "co1", COMPANY).await;
        let on_customer = call_of(&h, "cu1", CUSTOMER).await;
        // The calls land (one batch), and the answer never comes back.
        sandbox.lose_next_answers(1);
        round(&h).await;
        for key in [&on_company, &on_customer] {
            let item = h.item_in(key, "pending", 1).await;
            assert!(item.sent_at_ms.is_some(), "{item:?}");
        }
        h.deliver_after_lost_answer(&[on_company.clone(), on_customer.clone()])
            .await;
        for (key, kind) in [
            (&on_company, EntityType::Companies),
            (&on_customer, EntityType::Customers),
        ] {
            let answer = h.item_in(key, "done", 1).await.crm_response.unwrap();
            assert_eq!(answer["entity_type"], json!(kind.as_str()), "{answer}");
            assert_eq!(answer["recovered"], json!(true));
            assert_eq!(call_note_uniqs(&crm, kind, &[]).await, vec![key.clone()]);
        }

        // An unsorted request whose answer is lost.
        let unknown = call_of(&h, "in1", UNKNOWN).await;
        sandbox.lose_next_answers(1);
        let call = h.read_calls(std::slice::from_ref(&unknown)).await.remove(0);
        assert!(h.delivery.unsorted(call, UNKNOWN).await.is_ok());
        h.item_in(&unknown, "pending", 1).await;
        h.deliver_after_lost_answer(std::slice::from_ref(&unknown))
            .await;
        let answer = h.item_in(&unknown, "done", 1).await.crm_response.unwrap();
        assert_eq!(answer["recovered"], json!(true), "{answer}");
        let pending = crm.unsorted().await.unwrap();
        assert_eq!(pending.len(), 1, "not sent twice: {pending:?}");
        assert_eq!(answer["unsorted_uid"], json!(pending[0].uid));
        assert_eq!(
            sandbox.stats().rate_limited,
            0,
            "within 7 requests a second"
        );
        sandbox.shutdown().await;
    }
}

fn card(tenant: &str, phone: &str, user: u64) -> (String, callbridge_core::cards::CardChange) {
    use callbridge_core::cards::{CardAction, CardChange};
    let change = CardChange {
        action: CardAction::Show,
        crm_user_id: callbridge_core::settings::CrmUserId::new(user).unwrap(),
        entry_id: format!("E-{phone}"),
        call_id: "C1".into(),
        employee_extension: "101".into(),
        client_phone: Some(phone.into()),
        at: 1,
    };
    (tenant.to_string(), change)
}

#[tokio::test]
async fn tenants_sharing_a_crm_account_pop_their_cards_in_one_request_a_second() {
    let h = Harness::new("card-account").await;
    // A second tenant on the same account: its own client, the account's lease (and batch).
    let other_crm = Arc::new(FakeCrm::default());
    let d = &h.delivery;
    let second = Arc::new(Tenant {
        row: TenantRow {
            id: "second-tenant".into(),
            ..d.tenant.row.clone()
        },
        settings: d.tenant.settings.clone(),
    });
    let other = h.delivery_beside(second, other_crm.clone(), other_crm.clone(), None);
    let (stop_tx, stop) = watch::channel(false);
    let tasks = [
        tokio::spawn(d.clone().deliver_cards(stop.clone())),
        tokio::spawn(other.clone().deliver_cards(stop)),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Both tenants' phones ring within the second, one client calling both.
    for (tenant, change) in [
        card(TENANT, "79160000001", 5),
        card("second-tenant", "79160000002", 6),
        card("second-tenant", "79160000001", 7),
    ] {
        d.state.card_routes.send(&tenant, change);
    }
    let requests = || {
        let mut all = h.crm.cards_shown.lock().unwrap().clone();
        all.extend(other_crm.cards_shown.lock().unwrap().clone());
        all
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no card was shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another second passes: no second request comes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let shown = requests();
    assert_eq!(shown.len(), 1, "one request for the account: {shown:?}");
    let mut events: Vec<(String, Vec<u64>)> = shown[0]
        .iter()
        .map(|e| (e.phone_number.clone(), e.users.clone()))
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("79160000001".to_string(), vec![5, 7]),
            ("79160000002".to_string(), vec![6])
        ]
    );
    // Without the lease nothing goes out.
    d.lease.until.store(0, Ordering::SeqCst);
    d.state
        .card_routes
        .send(TENANT, card(TENANT, "79160000003", 5).1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(requests().len(), 1, "{:?}", requests());
    drop(stop_tx);
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::test]
async fn a_tenants_card_task_gets_its_own_cards_only_and_a_newer_delivery_takes_the_route() {
    let h = Harness::new("card-routes").await;
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(h.delivery.clone().deliver_cards(stop));
    // Registered once the task runs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (tenant, change) in [
        card(TENANT, "79160000001", 5),
        card("another-tenant", "79160000002", 6),
    ] {
        h.delivery.state.card_routes.send(&tenant, change);
    }
    // The task gathers a second's cards into one request.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.crm.cards_shown.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no card was shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = h.crm.cards_shown.lock().unwrap().clone();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].len(), 1, "{shown:?}");
    assert_eq!(shown[0][0].phone_number, "79160000001");
    assert_eq!(shown[0][0].users, vec![5]);
    // A newer delivery of the tenant registers: the older task ends by itself.
    let _newer = h.delivery.state.card_routes.register(TENANT);
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the older card task ended")
        .unwrap();
    drop(stop_tx);
}
