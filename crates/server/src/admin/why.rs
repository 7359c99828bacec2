//! The reasons in words beside the rule ids of an entry as the API returns it: the same
//! sentences the journal shows and the CRM note carries (`core::explain`), in the tenant's
//! language, naming CRM users as the CRM names them when it can tell (the list the web UI reads
//! at most once a minute), else by id.

use crate::state::{AppState, Tenant};
use crate::ui::settings::{crm_users, CrmUsers};
use callbridge_core::explain::{self, Lang, Names};
use callbridge_core::plan::EntryPlan;
use callbridge_core::settings::CrmUserId;
use std::collections::BTreeMap;

/// What names the people of a tenant's entries, read once per answer.
pub struct Explainer {
    tenant: std::sync::Arc<Tenant>,
    lang: Lang,
    users: BTreeMap<CrmUserId, String>,
}

impl Explainer {
    pub async fn new(state: &AppState, tenant: std::sync::Arc<Tenant>) -> Explainer {
        let lang = match state.store.tenant_language(&tenant.row.id).await {
            Ok(Some(code)) => Lang::from_code(&code),
            _ => Lang::default(),
        };
        let users = match crm_users(state, &tenant).await {
            CrmUsers::Loaded(users) => users
                .into_iter()
                .filter_map(|u| Some((CrmUserId::new(u.id).ok()?, u.name)))
                .collect(),
            _ => BTreeMap::new(),
        };
        Explainer {
            tenant,
            lang,
            users,
        }
    }

    /// Adds `why` to the entry, to each record and to each item not written. A stored plan this
    /// version cannot read is left as it is.
    pub fn annotate(&self, value: &mut serde_json::Value) {
        let Ok(plan) = serde_json::from_value::<EntryPlan>(value.clone()) else {
            return;
        };
        let names =
            Names::new(self.tenant.settings.settings(), self.lang).with_crm_users(&self.users);
        value["why"] = explain::entry_why(&plan, &names).into();
        for (i, record) in plan.records.iter().enumerate() {
            value["records"][i]["why"] = explain::record_why(record, &names).into();
        }
        for (i, ignored) in plan.ignored.iter().enumerate() {
            value["ignored"][i]["why"] =
                explain::ignored_why(ignored, plan.direction, &names).into();
        }
    }
}
