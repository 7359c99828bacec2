//! The repeat-client action (C4) for calls already written: a `lead` follow-up item, added when
//! the call was written.
//!
//! A call is sent first and amoCRM attaches it by its own rule: to the client's lead when it has
//! exactly one active lead (and no customer), else to the contact. That answer is the lookup:
//! - "lead if none open" and the call went to a lead: an open lead exists; nothing to do;
//! - the call went to the contact: its leads are read (one request per 50 contacts, one per 50
//!   leads) and a lead is created, linked to the contact, when none is open ("always a lead":
//!   created without reading);
//! - anything else (a company, a customer; "always a lead" on a lead): the client is searched by
//!   number, one request each, as before.
//!
//! The call stays where amoCRM put it (the contact's history); the new lead is linked to that
//! contact. Looking every client up before its call would cost one or two requests per call, the
//! whole account's budget at a few calls a second.

use super::answers::{answer_for, chunks_of, landed_entity};
use super::calls::Call;
use super::new_client::lead_name;
use super::{RoundError, TenantDelivery};
use crate::state::now_ms;
use callbridge_amocrm::{EntityType, Error as CrmError, NewLead};
use callbridge_core::settings::CrmUserId;
use callbridge_core::settings::RepeatClientAction::{AlwaysLead, LeadIfNoOpen, Manual};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

impl TenantDelivery {
    /// Runs the repeat-client action of written calls (`lead` follow-ups, `progress.landed` set to
    /// where the call went), then completes the follow-ups.
    pub(super) async fn repeat_actions(&self, calls: Vec<Call>) -> Result<(), RoundError> {
        let mut done: Vec<(Call, &'static str)> = Vec::new();
        let mut check: Vec<(Call, u64)> = Vec::new();
        let mut create: Vec<(Call, u64)> = Vec::new();
        let mut search: Vec<Call> = Vec::new();
        for call in calls {
            let landed = call.progress.landed.clone().unwrap_or(Value::Null);
            // `landed` was set from a known kind (an unknown one parks the follow-up before it
            // gets here); without one, the client is searched by number.
            let landed = landed_entity(&landed).ok().flatten();
            match (call.repeat_action(), landed) {
                (LeadIfNoOpen, Some((EntityType::Leads, _))) => {
                    done.push((call, "the call went to the client's open lead"))
                }
                (LeadIfNoOpen, Some((EntityType::Contacts, id))) => check.push((call, id)),
                (AlwaysLead, Some((EntityType::Contacts, id))) => create.push((call, id)),
                (LeadIfNoOpen | AlwaysLead, _) => search.push(call),
                (Manual, _) => done.push((call, "no repeat-client action")),
            }
        }
        if !check.is_empty() {
            self.ensure_lease()?;
            let (has_open, needs_lead) = self.open_leads(check).await?;
            done.extend(
                has_open
                    .into_iter()
                    .map(|c| (c, "the client has an open lead")),
            );
            create.extend(needs_lead);
        }
        for mut call in search {
            self.ensure_lease()?;
            let phone = call.phone().to_string();
            match self.repeat_client(&mut call, &phone).await {
                Ok(_) => done.push((call, "looked up by number")),
                Err(e) => self.failed([&call.item], e, false).await?,
            }
        }
        done.extend(self.create_leads(create).await?);
        let finished: Vec<(String, Value)> = done
            .into_iter()
            .map(|(call, why)| {
                let mut answer = call.progress.landed.clone().unwrap_or_else(|| json!({}));
                answer["contact_id"] = json!(call.progress.contact_id);
                answer["lead_id"] = json!(call.progress.lead_id);
                answer["repeat_client"] = json!(why);
                answer["reasons"] = json!(["C4"]);
                (call.item.item_key.clone(), answer)
            })
            .collect();
        self.state.store.complete_items(&finished, now_ms()).await?;
        Ok(())
    }

    /// Splits calls that landed on a contact by whether the contact has an open lead.
    async fn open_leads(
        &self,
        check: Vec<(Call, u64)>,
    ) -> Result<(Vec<Call>, Vec<(Call, u64)>), RoundError> {
        let mut contact_ids: Vec<u64> = check.iter().map(|(_, id)| *id).collect();
        contact_ids.sort_unstable();
        contact_ids.dedup();
        let contacts = match self.background.contacts_by_ids(&contact_ids).await {
            Ok(found) => found,
            Err(e) => {
                self.failed(check.iter().map(|(c, _)| &c.item), e, false)
                    .await?;
                return Ok((Vec::new(), Vec::new()));
            }
        };
        let leads_of: HashMap<u64, Vec<u64>> =
            contacts.into_iter().map(|c| (c.id, c.lead_ids)).collect();
        let mut lead_ids: Vec<u64> = leads_of.values().flatten().copied().collect();
        lead_ids.sort_unstable();
        lead_ids.dedup();
        let open: HashSet<u64> = if lead_ids.is_empty() {
            HashSet::new()
        } else {
            match self.background.leads_by_ids(&lead_ids).await {
                Ok(leads) => leads
                    .into_iter()
                    .filter(|l| l.is_open())
                    .map(|l| l.id)
                    .collect(),
                Err(e) => {
                    self.failed(check.iter().map(|(c, _)| &c.item), e, false)
                        .await?;
                    return Ok((Vec::new(), Vec::new()));
                }
            }
        };
        let mut has_open = Vec::new();
        let mut needs_lead = Vec::new();
        for (mut call, contact_id) in check {
            call.progress.contact_id = Some(contact_id);
            let open_lead = leads_of
                .get(&contact_id)
                .and_then(|ids| ids.iter().find(|id| open.contains(id)));
            match open_lead {
                Some(_) => has_open.push(call),
                None => needs_lead.push((call, contact_id)),
            }
        }
        Ok((has_open, needs_lead))
    }

    /// Creates the leads, up to 50 a request. "Lead if none open" creates one lead per contact
    /// however many of its calls are in the round; "always a lead" one per call.
    async fn create_leads(
        &self,
        create: Vec<(Call, u64)>,
    ) -> Result<Vec<(Call, &'static str)>, RoundError> {
        let store = &self.state.store;
        let mut done = Vec::new();
        let mut first_of_contact: HashSet<u64> = HashSet::new();
        let mut shared: Vec<(Call, u64)> = Vec::new();
        let mut requests: Vec<(Call, u64)> = Vec::new();
        for (call, contact_id) in create {
            let once = call.repeat_action() == LeadIfNoOpen;
            if call.progress.lead_id.is_some() {
                // Created by an attempt whose answer was saved before a later step failed.
                done.push((call, "lead created"));
            } else if once && !first_of_contact.insert(contact_id) {
                shared.push((call, contact_id));
            } else {
                requests.push((call, contact_id));
            }
        }
        let mut created_for: HashMap<u64, u64> = HashMap::new();
        for chunk in chunks_of(requests) {
            self.ensure_lease()?;
            let leads: Vec<NewLead> = chunk
                .iter()
                .map(|(call, contact_id)| {
                    let phone = call.phone().to_string();
                    NewLead {
                        name: lead_name(&call.record, &phone),
                        responsible_user_id: call.responsible().map(CrmUserId::get),
                        pipeline_id: None,
                        contact_id: Some(*contact_id),
                        request_id: Some(call.item.item_key.clone()),
                    }
                })
                .collect();
            match self.background.create_leads(&leads).await {
                Ok(created) => {
                    for (i, (mut call, contact_id)) in chunk.into_iter().enumerate() {
                        let id = answer_for(&created, call.item.item_key.as_str(), i).map(|c| c.id);
                        call.progress.lead_id = id;
                        call.progress.contact_id = Some(contact_id);
                        call.progress.repeat_done = true;
                        store
                            .save_progress(&call.item.item_key, &json!(call.progress))
                            .await?;
                        if let Some(id) = id {
                            created_for.insert(contact_id, id);
                        }
                        done.push((call, "lead created"));
                    }
                }
                Err(e) => {
                    self.failed(chunk.iter().map(|(c, _)| &c.item), e, false)
                        .await?;
                }
            }
        }
        for (mut call, contact_id) in shared {
            match created_for.get(&contact_id) {
                Some(lead) => {
                    call.progress.lead_id = Some(*lead);
                    call.progress.contact_id = Some(contact_id);
                    done.push((call, "lead created for an earlier call of the round"));
                }
                None => {
                    // The lead of the round's first call failed: this one asks again later.
                    store
                        .retry_item(
                            &call.item.item_key,
                            "waiting for the client's new lead",
                            now_ms() + super::WAIT_FOR_CALL_MS,
                            false,
                            false,
                        )
                        .await?
                }
            }
        }
        Ok(done)
    }

    /// Runs the repeat-client action after searching the client by number (one request, two
    /// with the leads' states): for calls whose landing does not tell. False: the CRM does not
    /// know the client.
    async fn repeat_client(&self, call: &mut Call, phone: &str) -> Result<bool, CrmError> {
        let Some(entities) = call.record.entities else {
            return Ok(true);
        };
        let contacts = self.background.find_contacts_by_phone(phone).await?;
        let Some(contact) = contacts.first() else {
            return Ok(false);
        };
        let wants_lead = match entities.rules.repeat_client {
            AlwaysLead => true,
            LeadIfNoOpen => {
                let leads = if contact.lead_ids.is_empty() {
                    Vec::new()
                } else {
                    self.background.leads_by_ids(&contact.lead_ids).await?
                };
                !leads.iter().any(|l| l.is_open())
            }
            Manual => false,
        };
        if wants_lead && call.progress.lead_id.is_none() {
            let created = self
                .client
                .create_leads(&[NewLead {
                    name: lead_name(&call.record, phone),
                    responsible_user_id: Some(entities.responsible_crm_user_id.get()),
                    pipeline_id: None,
                    contact_id: Some(contact.id),
                    request_id: Some(call.item.item_key.clone()),
                }])
                .await?;
            call.progress.lead_id = created.first().map(|c| c.id);
        }
        call.progress.contact_id = Some(contact.id);
        call.progress.repeat_done = true;
        let _ = self
            .state
            .store
            .save_progress(&call.item.item_key, &json!(call.progress))
            .await;
        Ok(true)
    }
}
