//! Reads: the account, users, pipelines, contacts, leads, unsorted requests, notes and tasks.
//! Lists are walked page by page; id filters go 50 ids a request.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::transport::expect_success;
use super::{non_empty, AmoClient, PAGE_LIMIT};
use crate::error::Error;
use crate::model::*;
use crate::phone::same_phone_number;
use crate::wire;

/// Ids per request in `filter[...][]` lists, to keep URLs short.
const IDS_PER_REQUEST: usize = 50;

impl AmoClient {
    /// `GET /api/v4/account`: a cheap connection check.
    pub async fn account(&self) -> Result<Account, Error> {
        let what = "GET /api/v4/account";
        let reply = expect_success(self.get("/api/v4/account", Vec::new()).await?)?;
        if reply.status == StatusCode::NO_CONTENT {
            return Err(Error::Decode(format!("{what}: no content")));
        }
        let root = wire::parse_json(what, &reply.body)?;
        let account: wire::AccountIn = wire::decode_at(what, "", root)?;
        Ok(account.into())
    }

    /// Every user of the account (`GET /api/v4/users`, all pages). Needs an admin's token.
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        self.list::<User, wire::UserIn>("/api/v4/users", &[], "users")
            .await
    }

    /// The lead pipelines (`GET /api/v4/leads/pipelines`; not paginated by amoCRM).
    pub async fn pipelines(&self) -> Result<Vec<Pipeline>, Error> {
        let what = "GET /api/v4/leads/pipelines";
        let reply = expect_success(self.get("/api/v4/leads/pipelines", Vec::new()).await?)?;
        if reply.status == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let mut root = wire::parse_json(what, &reply.body)?;
        let items: Vec<wire::PipelineIn> = wire::embedded_list(what, &mut root, "pipelines")?;
        Ok(items.into_iter().map(Into::into).collect())
    }

    /// Contacts with `phone` in their PHONE field, with their lead ids. No match is an empty
    /// list. amoCRM's `query` (`GET /api/v4/contacts?query=...&with=leads`) searches every field,
    /// so a contact whose name, e-mail or another field merely contains the digits comes back
    /// too; only those with a PHONE value that is [`same_phone_number`] as `phone` are kept.
    /// One page of up to 250: a phone number matching more is not a phone number.
    pub async fn find_contacts_by_phone(&self, phone: &str) -> Result<Vec<Contact>, Error> {
        // An empty query would list every contact of the account.
        non_empty("find_contacts_by_phone", "the phone", phone)?;
        let what = "GET /api/v4/contacts";
        let query = vec![
            ("query".to_string(), phone.trim().to_string()),
            ("with".to_string(), "leads".to_string()),
            ("limit".to_string(), PAGE_LIMIT.to_string()),
        ];
        let reply = expect_success(self.get("/api/v4/contacts", query).await?)?;
        if reply.status == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let mut root = wire::parse_json(what, &reply.body)?;
        let items: Vec<wire::ContactIn> = wire::embedded_list(what, &mut root, "contacts")?;
        Ok(items
            .into_iter()
            .map(Contact::from)
            .filter(|c| c.phones.iter().any(|p| same_phone_number(p, phone)))
            .collect())
    }

    /// One contact with its lead ids; `None` when it does not exist (204 or 404).
    pub async fn contact(&self, id: u64) -> Result<Option<Contact>, Error> {
        let path = format!("/api/v4/contacts/{id}");
        let what = format!("GET {path}");
        let reply = self
            .get(&path, vec![("with".into(), "leads".into())])
            .await?;
        if matches!(reply.status, StatusCode::NO_CONTENT | StatusCode::NOT_FOUND) {
            return Ok(None);
        }
        let reply = expect_success(reply)?;
        let root = wire::parse_json(&what, &reply.body)?;
        let contact: wire::ContactIn = wire::decode_at(&what, "", root)?;
        Ok(Some(contact.into()))
    }

    /// The contacts with these ids, each with its linked lead ids (missing ones are left out).
    /// One request per 50 ids, where looking contacts up one by one would cost one each.
    pub async fn contacts_by_ids(&self, ids: &[u64]) -> Result<Vec<Contact>, Error> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let mut query: Vec<(String, String)> = chunk
                .iter()
                .map(|id| ("filter[id][]".to_string(), id.to_string()))
                .collect();
            query.push(("with".to_string(), "leads".to_string()));
            out.extend(
                self.list::<Contact, wire::ContactIn>("/api/v4/contacts", &query, "contacts")
                    .await?,
            );
        }
        Ok(out)
    }

    /// Every contact of the account (`GET /api/v4/contacts`, all pages), without their leads.
    pub async fn contacts(&self) -> Result<Vec<Contact>, Error> {
        self.list::<Contact, wire::ContactIn>("/api/v4/contacts", &[], "contacts")
            .await
    }

    /// Every lead of the account (`GET /api/v4/leads`, all pages).
    pub async fn leads(&self) -> Result<Vec<Lead>, Error> {
        self.list::<Lead, wire::LeadIn>("/api/v4/leads", &[], "leads")
            .await
    }

    /// Every unsorted request of the account (`GET /api/v4/leads/unsorted`, all pages).
    pub async fn unsorted(&self) -> Result<Vec<Unsorted>, Error> {
        self.list::<Unsorted, wire::UnsortedIn>("/api/v4/leads/unsorted", &[], "unsorted")
            .await
    }

    /// Pending unsorted requests of the `sip` category (`GET /api/v4/leads/unsorted`, newest
    /// first): those with the `filter`'s uids, or all of them; with `created_from`, the walk
    /// stops after the first page that reaches older requests (they may still be in the
    /// answer). Accepted and declined requests are no longer listed by amoCRM, so a uid missing
    /// from the answer is one that is no longer pending.
    pub async fn pending_unsorted_sip(
        &self,
        filter: &UnsortedFilter,
    ) -> Result<Vec<Unsorted>, Error> {
        let mut query = vec![
            ("filter[category][]".to_string(), "sip".to_string()),
            ("order[created_at]".to_string(), "desc".to_string()),
        ];
        for uid in &filter.uids {
            query.push(("filter[uid][]".to_string(), uid.clone()));
        }
        let from = filter.created_from;
        self.list_while::<Unsorted, wire::UnsortedIn>(
            "/api/v4/leads/unsorted",
            &query,
            "unsorted",
            |page| match (from, page.last().and_then(|u| u.created_at)) {
                (Some(from), Some(oldest)) => oldest >= from,
                _ => true,
            },
        )
        .await
    }

    /// The leads with these ids (missing ones are left out), e.g. to see which are still open.
    pub async fn leads_by_ids(&self, ids: &[u64]) -> Result<Vec<Lead>, Error> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let query: Vec<(String, String)> = chunk
                .iter()
                .map(|id| ("filter[id][]".to_string(), id.to_string()))
                .collect();
            out.extend(
                self.list::<Lead, wire::LeadIn>("/api/v4/leads", &query, "leads")
                    .await?,
            );
        }
        Ok(out)
    }

    /// Notes of one entity kind matching `filter` (all pages).
    pub async fn list_notes(
        &self,
        entity: EntityType,
        filter: &NotesFilter,
    ) -> Result<Vec<Note>, Error> {
        let path = format!("/api/v4/{entity}/notes");
        let mut base = Vec::new();
        for note_type in &filter.note_types {
            base.push(("filter[note_type][]".to_string(), note_type.clone()));
        }
        if let Some(from) = filter.updated_from {
            base.push(("filter[updated_at][from]".to_string(), from.to_string()));
        }
        if let Some(to) = filter.updated_to {
            base.push(("filter[updated_at][to]".to_string(), to.to_string()));
        }
        self.list_by_ids::<Note, wire::NoteIn>(
            &path,
            base,
            "filter[entity_id][]",
            &filter.entity_ids,
            "notes",
        )
        .await
    }

    /// Tasks matching `filter` (all pages).
    pub async fn list_tasks(&self, filter: &TasksFilter) -> Result<Vec<Task>, Error> {
        let mut base = Vec::new();
        if let Some(done) = filter.is_completed {
            base.push((
                "filter[is_completed]".to_string(),
                u8::from(done).to_string(),
            ));
        }
        if let Some(entity) = filter.entity_type {
            base.push((
                "filter[entity_type]".to_string(),
                entity.as_str().to_string(),
            ));
        }
        for id in &filter.responsible_user_ids {
            base.push(("filter[responsible_user_id][]".to_string(), id.to_string()));
        }
        self.list_by_ids::<Task, wire::TaskIn>(
            "/api/v4/tasks",
            base,
            "filter[entity_id][]",
            &filter.entity_ids,
            "tasks",
        )
        .await
    }

    /// A list filtered by `ids` sent in chunks (all of them when `ids` is empty).
    async fn list_by_ids<T, W>(
        &self,
        path: &str,
        base: Vec<(String, String)>,
        id_key: &str,
        ids: &[u64],
        key: &str,
    ) -> Result<Vec<T>, Error>
    where
        W: DeserializeOwned + Into<T>,
    {
        if ids.is_empty() {
            return self.list::<T, W>(path, &base, key).await;
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let mut query = base.clone();
            query.extend(chunk.iter().map(|id| (id_key.to_string(), id.to_string())));
            out.extend(self.list::<T, W>(path, &query, key).await?);
        }
        Ok(out)
    }
}
