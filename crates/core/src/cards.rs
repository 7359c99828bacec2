//! Live call cards (C1 = R6) as legs ring, are answered and end: show the card to a mapped
//! employee's CRM user while their leg rings or talks in an entry with a client, hide it when the
//! leg ends. Unmapped employees never get one; internal calls show none.
//!
//! The plan's `cards` (who saw the card at any moment) is decided on the whole entry; this is
//! the same rule applied event by event, for the live stream to a CRM widget.

use crate::event::{CallEvent, CallState, Location, Party};
use crate::phone;
use crate::settings::{CrmUserId, ValidSettings};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardAction {
    Show,
    Hide,
}

/// One change of one user's call card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardChange {
    pub action: CardAction,
    pub crm_user_id: CrmUserId,
    pub entry_id: String,
    pub call_id: String,
    pub employee_extension: String,
    /// The client's number, when known at this moment.
    pub client_phone: Option<String>,
    /// The event's time (PBX clock, Unix seconds).
    pub at: i64,
}

#[derive(Debug, Default)]
pub struct LiveCards {
    /// The client of each entry seen so far.
    clients: HashMap<String, String>,
    /// Cards showing: (entry, leg) -> (user, extension).
    showing: HashMap<(String, String), (CrmUserId, String)>,
    /// Legs that ended, so a late duplicate `Appeared` does not show a card again; the oldest
    /// are forgotten past [`ENDED_REMEMBERED`].
    ended: HashSet<(String, String)>,
    ended_order: VecDeque<(String, String)>,
}

/// How many ended legs are remembered against late re-deliveries.
pub const ENDED_REMEMBERED: usize = 65_536;

fn client_of(p: &Party, is_to: bool, location: &Location) -> Option<String> {
    if p.extension.as_deref().is_some_and(|e| !e.trim().is_empty()) {
        return None;
    }
    let n = p.number.as_deref().and_then(phone::normalize)?;
    let pbx_side = is_to
        && (matches!(location, Location::Ivr | Location::Queue)
            || p.line_number
                .as_deref()
                .and_then(phone::normalize)
                .is_some_and(|l| l == n));
    (!pbx_side).then_some(n)
}

fn employee_of(p: &Party) -> Option<&str> {
    p.extension
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

impl LiveCards {
    /// Cards currently showing.
    pub fn showing(&self) -> usize {
        self.showing.len()
    }

    /// Applies one leg event and returns the card changes it causes.
    pub fn on_call_event(&mut self, settings: &ValidSettings, e: &CallEvent) -> Vec<CardChange> {
        if let Some(c) =
            client_of(&e.from, false, &e.location).or_else(|| client_of(&e.to, true, &e.location))
        {
            self.clients.entry(e.entry_id.clone()).or_insert(c);
        }
        let key = (e.entry_id.clone(), e.call_id.clone());
        let mut out = Vec::new();
        let change = |action, user, ext: &str, clients: &HashMap<String, String>| CardChange {
            action,
            crm_user_id: user,
            entry_id: e.entry_id.clone(),
            call_id: e.call_id.clone(),
            employee_extension: ext.to_string(),
            client_phone: clients.get(&e.entry_id).cloned(),
            at: e.timestamp,
        };
        if e.call_state == CallState::Disconnected {
            if self.ended.insert(key.clone()) {
                self.ended_order.push_back(key.clone());
                if self.ended_order.len() > ENDED_REMEMBERED {
                    if let Some(old) = self.ended_order.pop_front() {
                        self.ended.remove(&old);
                    }
                }
            }
            if let Some((user, ext)) = self.showing.remove(&key) {
                out.push(change(CardAction::Hide, user, &ext, &self.clients));
            }
            if !self.showing.keys().any(|(entry, _)| *entry == e.entry_id) {
                // Nothing of the entry is showing: forget its client, keep memory bounded.
                self.clients.remove(&e.entry_id);
            }
            return out;
        }
        if self.ended.contains(&key) || !self.clients.contains_key(&e.entry_id) {
            return out;
        }
        // The employee being rung or talking on this leg: the callee, else the caller.
        let Some(ext) = employee_of(&e.to).or_else(|| employee_of(&e.from)) else {
            return out;
        };
        let Some(user) = settings.crm_user_of(ext) else {
            return out;
        };
        match self.showing.get(&key) {
            Some((shown, _)) if *shown == user => {}
            Some((shown, old_ext)) => {
                // The leg now reaches someone else (a transfer completed on it).
                out.push(change(
                    CardAction::Hide,
                    *shown,
                    &old_ext.clone(),
                    &self.clients,
                ));
                self.showing.insert(key, (user, ext.to_string()));
                out.push(change(CardAction::Show, user, ext, &self.clients));
            }
            None => {
                self.showing.insert(key, (user, ext.to_string()));
                out.push(change(CardAction::Show, user, ext, &self.clients));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    fn settings() -> ValidSettings {
        ValidSettings::parse_toml("[[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n[[employees]]\nextension = \"105\"\n").unwrap()
    }

    fn ev(call: &str, state: CallState, from: Party, to: Party, t: i64) -> CallEvent {
        CallEvent {
            entry_id: "e".into(),
            call_id: call.into(),
            timestamp: t,
            seq: t as u64,
            call_state: state,
            location: Location::Abonent,
            from,
            to,
            disconnect_reason: None,
            transfer: None,
            command_id: None,
            callback_initiator: None,
        }
    }

    fn client() -> Party {
        Party {
            number: Some("79161234567".into()),
            ..Default::default()
        }
    }

    fn emp(ext: &str) -> Party {
        Party {
            extension: Some(ext.into()),
            ..Default::default()
        }
    }

    #[test]
    fn mapped_employee_sees_the_card_while_ringing_and_talking() {
        let s = settings();
        let mut cards = LiveCards::default();
        let shown =
            cards.on_call_event(&s, &ev("l1", CallState::Appeared, client(), emp("101"), 1));
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].action, shown[0].crm_user_id.get()),
            (CardAction::Show, 1001)
        );
        assert_eq!(shown[0].client_phone.as_deref(), Some("79161234567"));
        assert!(cards
            .on_call_event(&s, &ev("l1", CallState::Connected, client(), emp("101"), 2))
            .is_empty());
        let hidden = cards.on_call_event(
            &s,
            &ev("l1", CallState::Disconnected, client(), emp("101"), 3),
        );
        assert_eq!(hidden[0].action, CardAction::Hide);
        assert_eq!(cards.showing(), 0);
        // A late duplicate of the ring does not show the card again.
        assert!(cards
            .on_call_event(&s, &ev("l1", CallState::Appeared, client(), emp("101"), 1))
            .is_empty());
    }

    #[test]
    fn unmapped_employees_and_internal_calls_show_nothing() {
        let s = settings();
        let mut cards = LiveCards::default();
        assert!(cards
            .on_call_event(&s, &ev("l1", CallState::Appeared, client(), emp("105"), 1))
            .is_empty());
        let mut internal = LiveCards::default();
        assert!(internal
            .on_call_event(
                &s,
                &ev("l2", CallState::Appeared, emp("105"), emp("101"), 1)
            )
            .is_empty());
    }
}
