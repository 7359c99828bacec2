//! The account's data: what the sandbox stores, how it is built from a seed, and how it is shown
//! in API responses. Everything here is plain data behind one mutex; nothing awaits.

use crate::seed::{Seed, SeedLeadStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The one pipeline's id and its statuses. 142 and 143 are amoCRM's fixed won/lost ids.
pub const PIPELINE_ID: u64 = 7_000_001;
pub const STATUS_UNSORTED: u64 = 7_000_010;
pub const STATUS_FIRST_CONTACT: u64 = 7_000_011;
pub const STATUS_NEGOTIATION: u64 = 7_000_012;
pub const STATUS_WON: u64 = 142;
pub const STATUS_LOST: u64 = 143;
/// Ids of the system PHONE and EMAIL contact fields.
pub const PHONE_FIELD_ID: u64 = 5_000_001;
pub const EMAIL_FIELD_ID: u64 = 5_000_002;

/// Statuses in pipeline order: (id, name, type: 1 = unsorted, 0 = regular, color).
pub const STATUSES: [(u64, &str, u8, &str); 5] = [
    (STATUS_UNSORTED, "Неразобранное", 1, "#c1c1c1"),
    (STATUS_FIRST_CONTACT, "Первичный контакт", 0, "#99ccff"),
    (STATUS_NEGOTIATION, "Переговоры", 0, "#ffff99"),
    (STATUS_WON, "Успешно реализовано", 0, "#CCFF66"),
    (STATUS_LOST, "Закрыто и не реализовано", 0, "#D5D8DB"),
];

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random bytes from the OS. Should the OS source fail, a time-and-counter mix keeps the sandbox
/// working: its tokens guard test data, not secrets.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut mix = crate::gate::SplitMix::new(
            now_ms() ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32),
        );
        for chunk in buf.chunks_mut(8) {
            let word = mix.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    buf
}

pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// The digits of a phone number, last 10 only: how `/api/v4/calls` matches numbers.
pub fn last10(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let start = digits.len().saturating_sub(10);
    digits[start..].iter().collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
    pub name: String,
    pub subdomain: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    pub id: u64,
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub updated_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// As amoCRM returns them: `[{field_id, field_name, field_code, field_type, values}]`.
    pub custom_fields_values: Vec<Value>,
    /// False while the contact belongs to an unsorted item that is not accepted yet.
    pub visible: bool,
    pub deleted: bool,
}

impl Contact {
    pub fn phones(&self) -> Vec<String> {
        let mut out = Vec::new();
        for field in &self.custom_fields_values {
            if field.get("field_code").and_then(Value::as_str) != Some("PHONE") {
                continue;
            }
            if let Some(values) = field.get("values").and_then(Value::as_array) {
                for v in values {
                    if let Some(s) = v.get("value").and_then(Value::as_str) {
                        out.push(s.to_owned());
                    }
                }
            }
        }
        out
    }

    pub fn listed(&self) -> bool {
        self.visible && !self.deleted
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lead {
    pub id: u64,
    pub name: String,
    pub price: i64,
    pub responsible_user_id: u64,
    pub status_id: u64,
    pub pipeline_id: u64,
    pub created_by: u64,
    pub updated_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub custom_fields_values: Vec<Value>,
    pub contact_ids: Vec<u64>,
    pub visible: bool,
    pub deleted: bool,
}

impl Lead {
    pub fn listed(&self) -> bool {
        self.visible && !self.deleted
    }

    pub fn active(&self) -> bool {
        self.listed() && self.status_id != STATUS_WON && self.status_id != STATUS_LOST
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Leads,
    Contacts,
    Companies,
    Customers,
}

impl EntityKind {
    pub fn plural(self) -> &'static str {
        match self {
            EntityKind::Leads => "leads",
            EntityKind::Contacts => "contacts",
            EntityKind::Companies => "companies",
            EntityKind::Customers => "customers",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            EntityKind::Leads => "lead",
            EntityKind::Contacts => "contact",
            EntityKind::Companies => "company",
            EntityKind::Customers => "customer",
        }
    }
}

/// A customer (amoCRM's periodic-purchases entity), linked to contacts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub id: u64,
    pub name: String,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub contact_ids: Vec<u64>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub id: u64,
    pub entity_type: EntityKind,
    pub entity_id: u64,
    pub note_type: String,
    pub params: Value,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub updated_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    pub text: String,
    pub complete_till: i64,
    pub task_type_id: u64,
    pub entity_type: Option<String>,
    pub entity_id: Option<u64>,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub updated_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub duration: i64,
    pub is_completed: bool,
    pub result_text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsortedStatus {
    Pending,
    Accepted,
    Declined,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unsorted {
    pub uid: String,
    /// Insertion order, for stable listing.
    pub seq: u64,
    pub source_uid: String,
    pub source_name: String,
    pub pipeline_id: u64,
    pub created_at: i64,
    pub metadata: Map<String, Value>,
    pub lead_ids: Vec<u64>,
    pub contact_ids: Vec<u64>,
    pub status: UnsortedStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthCode {
    pub client_id: String,
    pub user_id: u64,
    pub expires_at_ms: u64,
    pub used: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub client_id: String,
    pub user_id: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub client_id: String,
    pub user_id: u64,
    pub expires_at_ms: u64,
    pub used: bool,
}

/// One `POST /api/v2/events` card pop, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// When the sandbox received it (Unix milliseconds).
    pub received_at_ms: u64,
    pub phone_number: String,
    /// The users to notify as sent (ids as numbers or strings); empty means everyone.
    pub users: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextIds {
    pub contact: u64,
    pub lead: u64,
    pub note: u64,
    pub task: u64,
    pub unsorted_seq: u64,
    /// Companies and customers came later: a state file written before them starts their ids
    /// in their own ranges.
    #[serde(default = "first_company_id")]
    pub company: u64,
    #[serde(default = "first_customer_id")]
    pub customer: u64,
}

fn first_company_id() -> u64 {
    60_000_001
}

fn first_customer_id() -> u64 {
    70_000_001
}

/// Everything the sandbox account holds; this is what the state file contains.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub account: Account,
    pub long_lived_token: String,
    pub users: Vec<User>,
    pub oauth_clients: Vec<OAuthClient>,
    pub contacts: BTreeMap<u64, Contact>,
    pub leads: BTreeMap<u64, Lead>,
    /// Companies have a contact's shape (name, responsible user, PHONE/EMAIL fields); their
    /// first and last names stay empty.
    #[serde(default)]
    pub companies: BTreeMap<u64, Contact>,
    #[serde(default)]
    pub customers: BTreeMap<u64, Customer>,
    pub notes: BTreeMap<u64, Note>,
    pub tasks: BTreeMap<u64, Task>,
    pub unsorted: BTreeMap<String, Unsorted>,
    pub codes: BTreeMap<String, AuthCode>,
    pub access_tokens: BTreeMap<String, AccessToken>,
    pub refresh_tokens: BTreeMap<String, RefreshToken>,
    pub call_events: Vec<CallEvent>,
    pub next: NextIds,
    /// Bumped on every change; the state-file writer uses it to skip stale snapshots.
    #[serde(skip)]
    pub version: u64,
}

pub const STATE_FORMAT: u32 = 1;

/// A loaded state file that breaks an invariant the handlers rely on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateInvalid {
    #[error("format {0} is not supported (expected {STATE_FORMAT})")]
    Format(u32),
    #[error("users: the state has no users")]
    NoUsers,
}

/// Builds a PHONE custom-field entry as amoCRM shows it.
pub fn phone_field(values: &[String]) -> Value {
    json!({
        "field_id": PHONE_FIELD_ID,
        "field_name": "Телефон",
        "field_code": "PHONE",
        "field_type": "multitext",
        "values": values.iter().map(|v| json!({"value": v, "enum_code": "WORK"})).collect::<Vec<_>>(),
    })
}

impl State {
    pub fn from_seed(seed: &Seed) -> State {
        let now = now_secs();
        let first_user = seed.users.first().map(|u| u.id).unwrap_or(0);
        let mut state = State {
            format: STATE_FORMAT,
            account: Account {
                id: seed.account.id,
                name: seed.account.name.clone(),
                subdomain: seed.account.subdomain.clone(),
                created_at: now,
            },
            long_lived_token: seed.long_lived_token.clone(),
            users: seed
                .users
                .iter()
                .enumerate()
                .map(|(i, u)| User {
                    id: u.id,
                    name: u.name.clone(),
                    email: u
                        .email
                        .clone()
                        .unwrap_or_else(|| format!("user{}@example.com", u.id)),
                    is_admin: i == 0,
                })
                .collect(),
            oauth_clients: seed
                .oauth_clients
                .iter()
                .map(|c| OAuthClient {
                    client_id: c.client_id.clone(),
                    client_secret: c.client_secret.clone(),
                    redirect_uri: c.redirect_uri.clone(),
                })
                .collect(),
            contacts: BTreeMap::new(),
            leads: BTreeMap::new(),
            companies: BTreeMap::new(),
            customers: BTreeMap::new(),
            notes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            unsorted: BTreeMap::new(),
            codes: BTreeMap::new(),
            access_tokens: BTreeMap::new(),
            refresh_tokens: BTreeMap::new(),
            call_events: Vec::new(),
            // Distinct ranges per entity, so a client that mixes up a contact id and a lead id
            // gets "not found" instead of silently hitting another record.
            next: NextIds {
                contact: 20_000_001,
                lead: 30_000_001,
                note: 40_000_001,
                task: 50_000_001,
                unsorted_seq: 1,
                company: first_company_id(),
                customer: first_customer_id(),
            },
            version: 0,
        };
        for sc in &seed.contacts {
            let responsible = sc.responsible_user_id.unwrap_or(first_user);
            let fields = match &sc.phone {
                Some(p) => vec![phone_field(std::slice::from_ref(p))],
                None => Vec::new(),
            };
            let contact_id = state.insert_contact(Contact {
                id: 0,
                name: sc.name.clone(),
                first_name: String::new(),
                last_name: String::new(),
                responsible_user_id: responsible,
                created_by: first_user,
                updated_by: first_user,
                created_at: now,
                updated_at: now,
                custom_fields_values: fields,
                visible: true,
                deleted: false,
            });
            for sl in &sc.leads {
                let status_id = match sl.status {
                    SeedLeadStatus::Open => STATUS_FIRST_CONTACT,
                    SeedLeadStatus::Won => STATUS_WON,
                    SeedLeadStatus::Lost => STATUS_LOST,
                };
                state.insert_lead(Lead {
                    id: 0,
                    name: sl.name.clone(),
                    price: 0,
                    responsible_user_id: responsible,
                    status_id,
                    pipeline_id: PIPELINE_ID,
                    created_by: first_user,
                    updated_by: first_user,
                    created_at: now,
                    updated_at: now,
                    closed_at: (status_id == STATUS_WON || status_id == STATUS_LOST).then_some(now),
                    custom_fields_values: Vec::new(),
                    contact_ids: vec![contact_id],
                    visible: true,
                    deleted: false,
                });
            }
            for customer in &sc.customers {
                state.insert_customer(Customer {
                    id: 0,
                    name: customer.name.clone(),
                    responsible_user_id: responsible,
                    created_by: first_user,
                    created_at: now,
                    updated_at: now,
                    contact_ids: vec![contact_id],
                    deleted: false,
                });
            }
        }
        for company in &seed.companies {
            let responsible = company.responsible_user_id.unwrap_or(first_user);
            let mut fields = Vec::new();
            if let Some(p) = &company.phone {
                fields.push(phone_field(std::slice::from_ref(p)));
            }
            state.insert_company(Contact {
                id: 0,
                name: company.name.clone(),
                first_name: String::new(),
                last_name: String::new(),
                responsible_user_id: responsible,
                created_by: first_user,
                updated_by: first_user,
                created_at: now,
                updated_at: now,
                custom_fields_values: fields,
                visible: true,
                deleted: false,
            });
        }
        state
    }

    /// Checks a loaded state file for the few invariants the handlers rely on.
    pub fn check(&self) -> Result<(), StateInvalid> {
        if self.format != STATE_FORMAT {
            return Err(StateInvalid::Format(self.format));
        }
        if self.users.is_empty() {
            return Err(StateInvalid::NoUsers);
        }
        Ok(())
    }

    pub fn touch(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn is_user(&self, id: u64) -> bool {
        self.user(id).is_some()
    }

    pub fn admin_id(&self) -> u64 {
        self.users.first().map(|u| u.id).unwrap_or(0)
    }

    pub fn insert_contact(&mut self, mut c: Contact) -> u64 {
        let id = self.next.contact;
        self.next.contact += 1;
        c.id = id;
        self.contacts.insert(id, c);
        id
    }

    pub fn insert_lead(&mut self, mut l: Lead) -> u64 {
        let id = self.next.lead;
        self.next.lead += 1;
        l.id = id;
        self.leads.insert(id, l);
        id
    }

    pub fn insert_company(&mut self, mut c: Contact) -> u64 {
        let id = self.next.company;
        self.next.company += 1;
        c.id = id;
        self.companies.insert(id, c);
        id
    }

    pub fn insert_customer(&mut self, mut c: Customer) -> u64 {
        let id = self.next.customer;
        self.next.customer += 1;
        c.id = id;
        self.customers.insert(id, c);
        id
    }

    pub fn insert_note(&mut self, mut n: Note) -> u64 {
        let id = self.next.note;
        self.next.note += 1;
        n.id = id;
        self.notes.insert(id, n);
        id
    }

    pub fn insert_task(&mut self, mut t: Task) -> u64 {
        let id = self.next.task;
        self.next.task += 1;
        t.id = id;
        self.tasks.insert(id, t);
        id
    }

    /// Whether a visible entity of this kind and id exists.
    pub fn entity_listed(&self, kind: EntityKind, id: u64) -> bool {
        match kind {
            EntityKind::Leads => self.leads.get(&id).is_some_and(Lead::listed),
            EntityKind::Contacts => self.contacts.get(&id).is_some_and(Contact::listed),
            EntityKind::Companies => self.companies.get(&id).is_some_and(Contact::listed),
            EntityKind::Customers => self.customers.get(&id).is_some_and(|c| !c.deleted),
        }
    }

    /// Whether an entity of this kind and id exists, listed or not: the lead and contact of a
    /// pending unsorted request are left out of lists but can be addressed by id (their notes
    /// are written and read like any other's); declined ones are deleted.
    pub fn entity_exists(&self, kind: EntityKind, id: u64) -> bool {
        match kind {
            EntityKind::Leads => self.leads.get(&id).is_some_and(|l| !l.deleted),
            EntityKind::Contacts => self.contacts.get(&id).is_some_and(|c| !c.deleted),
            _ => self.entity_listed(kind, id),
        }
    }

    /// Customers linked to a contact, in id order.
    pub fn customers_of(&self, contact_id: u64) -> Vec<&Customer> {
        self.customers
            .values()
            .filter(|c| !c.deleted && c.contact_ids.contains(&contact_id))
            .collect()
    }

    /// The oldest company whose phone's last 10 digits equal the number's.
    pub fn company_by_phone(&self, phone: &str) -> Option<&Contact> {
        let wanted = last10(phone);
        if wanted.is_empty() {
            return None;
        }
        self.companies
            .values()
            .filter(|c| c.listed())
            .find(|c| c.phones().iter().any(|p| last10(p) == wanted))
    }

    /// Visible leads linked to a contact, in id order.
    pub fn leads_of(&self, contact_id: u64) -> Vec<&Lead> {
        self.leads
            .values()
            .filter(|l| l.listed() && l.contact_ids.contains(&contact_id))
            .collect()
    }

    /// The oldest visible contact whose phone's last 10 digits equal the number's.
    pub fn contact_by_phone(&self, phone: &str) -> Option<&Contact> {
        let wanted = last10(phone);
        if wanted.is_empty() {
            return None;
        }
        self.contacts
            .values()
            .filter(|c| c.listed())
            .find(|c| c.phones().iter().any(|p| last10(p) == wanted))
    }

    /// Forgets codes and tokens that can no longer be used, so the state does not grow forever.
    pub fn prune_tokens(&mut self, now_ms: u64) {
        // Used codes and refresh tokens are kept until they would have expired: a reuse must
        // still be told "revoked" rather than "unknown".
        self.codes.retain(|_, c| c.expires_at_ms > now_ms);
        // Expired access tokens are remembered for a day, so they get "expired", not "unknown".
        self.access_tokens
            .retain(|_, t| t.expires_at_ms.saturating_add(86_400_000) > now_ms);
        self.refresh_tokens.retain(|_, t| t.expires_at_ms > now_ms);
    }
}

/// Renders stored records in amoCRM's response shapes.
pub struct View<'a> {
    pub base: &'a str,
    pub account_id: u64,
}

impl View<'_> {
    pub fn link(&self, path: &str) -> Value {
        json!({"self": {"href": format!("{}{}", self.base, path)}})
    }

    pub fn user(&self, u: &User) -> Value {
        json!({
            "id": u.id,
            "name": u.name,
            "email": u.email,
            "lang": "ru",
            "rights": {
                "leads": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
                "contacts": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
                "companies": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
                "tasks": {"edit": "A", "delete": "A"},
                "mail_access": false,
                "catalog_access": false,
                "is_admin": u.is_admin,
                "is_free": false,
                "is_active": true,
                "group_id": null,
                "role_id": null,
            },
            "_links": self.link(&format!("/api/v4/users/{}", u.id)),
        })
    }

    pub fn contact(&self, c: &Contact, leads: Option<Vec<u64>>) -> Value {
        let mut embedded = json!({"tags": [], "companies": []});
        if let Some(ids) = leads {
            embedded["leads"] = Value::Array(
                ids.into_iter()
                    .map(
                        |id| json!({"id": id, "_links": self.link(&format!("/api/v4/leads/{id}"))}),
                    )
                    .collect(),
            );
        }
        json!({
            "id": c.id,
            "name": c.name,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "responsible_user_id": c.responsible_user_id,
            "group_id": 0,
            "created_by": c.created_by,
            "updated_by": c.updated_by,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "closest_task_at": null,
            "is_deleted": c.deleted,
            "is_unsorted": !c.visible,
            "custom_fields_values": if c.custom_fields_values.is_empty() { Value::Null } else { Value::Array(c.custom_fields_values.clone()) },
            "account_id": self.account_id,
            "_links": self.link(&format!("/api/v4/contacts/{}", c.id)),
            "_embedded": embedded,
        })
    }

    pub fn company(&self, c: &Contact) -> Value {
        json!({
            "id": c.id,
            "name": c.name,
            "responsible_user_id": c.responsible_user_id,
            "group_id": 0,
            "created_by": c.created_by,
            "updated_by": c.updated_by,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "closest_task_at": null,
            "is_deleted": c.deleted,
            "custom_fields_values": if c.custom_fields_values.is_empty() { Value::Null } else { Value::Array(c.custom_fields_values.clone()) },
            "account_id": self.account_id,
            "_links": self.link(&format!("/api/v4/companies/{}", c.id)),
            "_embedded": {"tags": []},
        })
    }

    pub fn customer(&self, c: &Customer) -> Value {
        json!({
            "id": c.id,
            "name": c.name,
            "next_price": 0,
            "next_date": null,
            "responsible_user_id": c.responsible_user_id,
            "status_id": null,
            "periodicity": 0,
            "created_by": c.created_by,
            "updated_by": c.created_by,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "closest_task_at": null,
            "is_deleted": c.deleted,
            "custom_fields_values": null,
            "account_id": self.account_id,
            "_links": self.link(&format!("/api/v4/customers/{}", c.id)),
            "_embedded": {
                "tags": [],
                "contacts": c.contact_ids.iter().enumerate().map(|(i, id)| json!({"id": id, "is_main": i == 0, "_links": self.link(&format!("/api/v4/contacts/{id}"))})).collect::<Vec<_>>(),
            },
        })
    }

    pub fn lead(&self, l: &Lead, with_contacts: bool) -> Value {
        let mut embedded = json!({"tags": [], "companies": []});
        if with_contacts {
            embedded["contacts"] = Value::Array(
                l.contact_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        json!({"id": id, "is_main": i == 0, "_links": self.link(&format!("/api/v4/contacts/{id}"))})
                    })
                    .collect(),
            );
        }
        json!({
            "id": l.id,
            "name": l.name,
            "price": l.price,
            "responsible_user_id": l.responsible_user_id,
            "group_id": 0,
            "status_id": l.status_id,
            "pipeline_id": l.pipeline_id,
            "loss_reason_id": null,
            "created_by": l.created_by,
            "updated_by": l.updated_by,
            "created_at": l.created_at,
            "updated_at": l.updated_at,
            "closed_at": l.closed_at,
            "closest_task_at": null,
            "is_deleted": l.deleted,
            "custom_fields_values": if l.custom_fields_values.is_empty() { Value::Null } else { Value::Array(l.custom_fields_values.clone()) },
            "score": null,
            "account_id": self.account_id,
            "labor_cost": null,
            "_links": self.link(&format!("/api/v4/leads/{}", l.id)),
            "_embedded": embedded,
        })
    }

    pub fn note(&self, n: &Note) -> Value {
        json!({
            "id": n.id,
            "entity_id": n.entity_id,
            "created_by": n.created_by,
            "updated_by": n.updated_by,
            "created_at": n.created_at,
            "updated_at": n.updated_at,
            "responsible_user_id": n.responsible_user_id,
            "group_id": 0,
            "note_type": n.note_type,
            "params": n.params,
            "account_id": self.account_id,
            "_links": self.link(&format!("/api/v4/{}/{}/notes/{}", n.entity_type.plural(), n.entity_id, n.id)),
        })
    }

    pub fn task(&self, t: &Task) -> Value {
        json!({
            "id": t.id,
            "created_by": t.created_by,
            "updated_by": t.updated_by,
            "created_at": t.created_at,
            "updated_at": t.updated_at,
            "responsible_user_id": t.responsible_user_id,
            "group_id": 0,
            "entity_id": t.entity_id,
            "entity_type": t.entity_type,
            "duration": t.duration,
            "is_completed": t.is_completed,
            "task_type_id": t.task_type_id,
            "text": t.text,
            "result": match &t.result_text { Some(text) => json!({"text": text}), None => json!([]) },
            "complete_till": t.complete_till,
            "account_id": self.account_id,
            "_links": self.link(&format!("/api/v4/tasks/{}", t.id)),
        })
    }

    pub fn unsorted(&self, u: &Unsorted) -> Value {
        // `is_call_event_needed` is write-only in amoCRM: it is not shown back.
        let mut metadata = u.metadata.clone();
        metadata.remove("is_call_event_needed");
        json!({
            "uid": u.uid,
            "source_uid": u.source_uid,
            "source_name": u.source_name,
            "category": "sip",
            "pipeline_id": u.pipeline_id,
            "created_at": u.created_at,
            "metadata": metadata,
            "account_id": self.account_id,
            "_links": self.link(&format!("/api/v4/leads/unsorted/{}", u.uid)),
            "_embedded": self.unsorted_embedded(u),
        })
    }

    pub fn unsorted_embedded(&self, u: &Unsorted) -> Value {
        json!({
            "leads": u.lead_ids.iter().map(|id| json!({"id": id, "_links": self.link(&format!("/api/v4/leads/{id}"))})).collect::<Vec<_>>(),
            "contacts": u.contact_ids.iter().map(|id| json!({"id": id, "_links": self.link(&format!("/api/v4/contacts/{id}"))})).collect::<Vec<_>>(),
            "companies": [],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last10_keeps_the_tail_digits() {
        assert_eq!(last10("+7 (916) 123-45-67"), "9161234567");
        assert_eq!(last10("8 916 123 45 67"), "9161234567");
        assert_eq!(last10("12-34"), "1234");
        assert_eq!(last10("no digits"), "");
    }

    #[test]
    fn seed_builds_contacts_and_leads() {
        let seed = Seed::from_json_str(
            r#"{"contacts":[{"name":"A","phone":"+7 916 123-45-67","leads":[{"name":"L1"},{"name":"L2","status":"won"}]}]}"#,
        )
        .unwrap();
        let state = State::from_seed(&seed);
        let c = state.contact_by_phone("89161234567").unwrap();
        assert_eq!(c.name, "A");
        let leads = state.leads_of(c.id);
        assert_eq!(leads.len(), 2);
        assert_eq!(leads.iter().filter(|l| l.active()).count(), 1);
        assert!(state.contact_by_phone("+7 916 000-00-00").is_none());
    }
}
