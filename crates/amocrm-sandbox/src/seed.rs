//! The seed: what the sandbox account holds when it starts without a state file.

use crate::SandboxError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The account the sandbox starts with. Every key is optional; see the crate README for the
/// defaults. Unknown keys are rejected so that a typo in a seed file is reported, not ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The private integration's long-lived token, accepted as `Authorization: Bearer ...`.
    #[serde(default = "default_token")]
    pub long_lived_token: String,
    /// The account's id, name and subdomain as `GET /api/v4/account` shows them.
    #[serde(default)]
    pub account: SeedAccount,
    /// The account's users; the first one is the account admin and the long-lived token's user.
    #[serde(default = "default_users")]
    pub users: Vec<SeedUser>,
    /// Contacts present from the start (visible in search and to `/api/v4/calls`).
    #[serde(default)]
    pub contacts: Vec<SeedContact>,
    /// Companies present from the start; a call from a company's number that no contact has
    /// lands on the company.
    #[serde(default)]
    pub companies: Vec<SeedCompany>,
    /// Integrations that may use the OAuth flow.
    #[serde(default = "default_clients")]
    pub oauth_clients: Vec<SeedOAuthClient>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAccount {
    #[serde(default = "default_account_id")]
    pub id: u64,
    #[serde(default = "default_account_name")]
    pub name: String,
    #[serde(default = "default_subdomain")]
    pub subdomain: String,
}

impl Default for SeedAccount {
    fn default() -> Self {
        SeedAccount {
            id: default_account_id(),
            name: default_account_name(),
            subdomain: default_subdomain(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub id: u64,
    pub name: String,
    /// Defaults to `user{id}@example.com`.
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedContact {
    pub name: String,
    /// Stored in the system PHONE field exactly as written; matching uses its digits.
    #[serde(default)]
    pub phone: Option<String>,
    /// Defaults to the first user.
    #[serde(default)]
    pub responsible_user_id: Option<u64>,
    /// Leads linked to the contact (our extension of the seed format).
    #[serde(default)]
    pub leads: Vec<SeedLead>,
    /// Customers linked to the contact (our extension of the seed format): a call of a
    /// contact with no open lead lands on its customer.
    #[serde(default)]
    pub customers: Vec<SeedCustomer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCustomer {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCompany {
    pub name: String,
    /// Stored in the company's PHONE field exactly as written.
    #[serde(default)]
    pub phone: Option<String>,
    /// Defaults to the first user.
    #[serde(default)]
    pub responsible_user_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLead {
    pub name: String,
    #[serde(default)]
    pub status: SeedLeadStatus,
}

/// `open` puts the lead in the first working stage; `won` is status 142, `lost` 143.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedLeadStatus {
    #[default]
    Open,
    Won,
    Lost,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

fn default_token() -> String {
    "sandbox-token".to_owned()
}

fn default_account_id() -> u64 {
    31_000_001
}

fn default_account_name() -> String {
    "Sandbox".to_owned()
}

fn default_subdomain() -> String {
    "sandbox".to_owned()
}

fn default_users() -> Vec<SeedUser> {
    [(1001, "Olga"), (1002, "Ivan"), (1003, "Maria")]
        .into_iter()
        .map(|(id, name)| SeedUser {
            id,
            name: name.to_owned(),
            email: Some(format!("{}@example.com", name.to_lowercase())),
        })
        .collect()
}

fn default_clients() -> Vec<SeedOAuthClient> {
    vec![SeedOAuthClient {
        client_id: "sandbox-client".to_owned(),
        client_secret: "sandbox-secret".to_owned(),
        redirect_uri: "http://127.0.0.1/oauth/callback".to_owned(),
    }]
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            long_lived_token: default_token(),
            account: SeedAccount::default(),
            users: default_users(),
            contacts: Vec::new(),
            companies: Vec::new(),
            oauth_clients: default_clients(),
        }
    }
}

impl Seed {
    /// Parses and checks a seed document. Errors name the field at fault, e.g.
    /// `seed: contacts[0].leads[1].status: unknown variant ...`.
    pub fn from_json_str(text: &str) -> Result<Seed, SandboxError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let seed: Seed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                SandboxError::Seed(inner.to_string())
            } else {
                SandboxError::Seed(format!("{path}: {inner}"))
            }
        })?;
        seed.validate()?;
        Ok(seed)
    }

    /// Checks the rules serde cannot: references between fields, uniqueness, non-empty values.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |path: String, what: &str| Err(SandboxError::Seed(format!("{path}: {what}")));
        if self.long_lived_token.trim().is_empty() {
            return bad("long_lived_token".into(), "must not be empty");
        }
        if self.account.subdomain.trim().is_empty() {
            return bad("account.subdomain".into(), "must not be empty");
        }
        if self.users.is_empty() {
            return bad(
                "users".into(),
                "at least one user is needed (the first is the token's user)",
            );
        }
        let mut ids = BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if user.id == 0 {
                return bad(
                    format!("users[{i}].id"),
                    "0 is reserved for the robot; use a positive id",
                );
            }
            if !ids.insert(user.id) {
                return bad(
                    format!("users[{i}].id"),
                    &format!("{} is repeated", user.id),
                );
            }
            if user.name.trim().is_empty() {
                return bad(format!("users[{i}].name"), "must not be empty");
            }
        }
        for (i, contact) in self.contacts.iter().enumerate() {
            if let Some(uid) = contact.responsible_user_id {
                if !ids.contains(&uid) {
                    return bad(
                        format!("contacts[{i}].responsible_user_id"),
                        &format!("{uid} is not one of the seeded users"),
                    );
                }
            }
            if let Some(phone) = &contact.phone {
                if !phone.chars().any(|c| c.is_ascii_digit()) {
                    return bad(
                        format!("contacts[{i}].phone"),
                        &format!("{phone:?} has no digits"),
                    );
                }
            }
            for (j, lead) in contact.leads.iter().enumerate() {
                if lead.name.trim().is_empty() {
                    return bad(
                        format!("contacts[{i}].leads[{j}].name"),
                        "must not be empty",
                    );
                }
            }
            for (j, customer) in contact.customers.iter().enumerate() {
                if customer.name.trim().is_empty() {
                    return bad(
                        format!("contacts[{i}].customers[{j}].name"),
                        "must not be empty",
                    );
                }
            }
        }
        for (i, company) in self.companies.iter().enumerate() {
            if company.name.trim().is_empty() {
                return bad(format!("companies[{i}].name"), "must not be empty");
            }
            if let Some(uid) = company.responsible_user_id {
                if !ids.contains(&uid) {
                    return bad(
                        format!("companies[{i}].responsible_user_id"),
                        &format!("{uid} is not one of the seeded users"),
                    );
                }
            }
            if let Some(phone) = &company.phone {
                if !phone.chars().any(|c| c.is_ascii_digit()) {
                    return bad(
                        format!("companies[{i}].phone"),
                        &format!("{phone:?} has no digits"),
                    );
                }
            }
        }
        let mut clients = BTreeSet::new();
        for (i, client) in self.oauth_clients.iter().enumerate() {
            for (field, value) in [
                ("client_id", &client.client_id),
                ("client_secret", &client.client_secret),
                ("redirect_uri", &client.redirect_uri),
            ] {
                if value.trim().is_empty() {
                    return bad(format!("oauth_clients[{i}].{field}"), "must not be empty");
                }
            }
            if !clients.insert(client.client_id.as_str()) {
                return bad(
                    format!("oauth_clients[{i}].client_id"),
                    &format!("{:?} is repeated", client.client_id),
                );
            }
        }
        Ok(())
    }
}
