//! Live call cards (C1 = R6) as legs ring, are answered and end: show the card to a mapped
//! employee's CRM user while their leg rings or talks in an entry with a client, hide it when the
//! leg ends. Unmapped employees never get one; internal calls show none, and neither does the
//! internal part of an entry before a client took part (a leg between colleagues that was up
//! before the client came, unless the client is brought onto it).
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
    /// The client of each entry seen so far, and the earliest time a client took part.
    clients: HashMap<String, (String, i64)>,
    /// Legs of an entry's internal part: seen without a client before one took part. They show
    /// no card unless the client comes onto them. Forgotten when the leg ends.
    internal_legs: HashSet<(String, String)>,
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
        let client_here =
            client_of(&e.from, false, &e.location).or_else(|| client_of(&e.to, true, &e.location));
        if let Some(c) = &client_here {
            let known = self
                .clients
                .entry(e.entry_id.clone())
                .or_insert_with(|| (c.clone(), e.timestamp));
            known.1 = known.1.min(e.timestamp);
        }
        let key = (e.entry_id.clone(), e.call_id.clone());
        let mut out = Vec::new();
        let change =
            |action, user, ext: &str, clients: &HashMap<String, (String, i64)>| CardChange {
                action,
                crm_user_id: user,
                entry_id: e.entry_id.clone(),
                call_id: e.call_id.clone(),
                employee_extension: ext.to_string(),
                client_phone: clients.get(&e.entry_id).map(|c| c.0.clone()),
                at: e.timestamp,
            };
        if e.call_state == CallState::Disconnected {
            self.internal_legs.remove(&key);
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
        if self.ended.contains(&key) {
            return out;
        }
        if client_here.is_some() {
            self.internal_legs.remove(&key);
        } else {
            // C1 (D): a leg between colleagues from before the client took part (whichever
            // arrived first) is the entry's internal part.
            let before_client = self
                .clients
                .get(&e.entry_id)
                .is_none_or(|(_, since)| e.timestamp < *since);
            if before_client {
                if self.internal_legs.len() >= ENDED_REMEMBERED {
                    // Bounded memory: legs whose end never came are dropped wholesale.
                    self.internal_legs.clear();
                }
                self.internal_legs.insert(key.clone());
            }
            if self.internal_legs.contains(&key) {
                return out;
            }
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
            tracking: None,
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
    fn the_internal_part_before_the_client_shows_no_card_c1() {
        let s = ValidSettings::parse_toml(
            "[[employees]]\nextension = \"101\"\ncrm_user_id = 1001\n\
             [[employees]]\nextension = \"102\"\ncrm_user_id = 1002\n",
        )
        .unwrap();
        let mut cards = LiveCards::default();
        // 102 calls 101; while they talk, 102 dials the client.
        assert!(cards
            .on_call_event(
                &s,
                &ev("in", CallState::Appeared, emp("102"), emp("101"), 1)
            )
            .is_empty());
        assert!(cards
            .on_call_event(
                &s,
                &ev("in", CallState::Connected, emp("102"), emp("101"), 2)
            )
            .is_empty());
        let shown =
            cards.on_call_event(&s, &ev("out", CallState::Appeared, emp("102"), client(), 5));
        assert_eq!(
            shown
                .iter()
                .map(|c| c.crm_user_id.get())
                .collect::<Vec<_>>(),
            [1002]
        );
        // The colleague's leg goes on hold after the client came: 101 still sees nothing.
        assert!(cards
            .on_call_event(&s, &ev("in", CallState::OnHold, emp("102"), emp("101"), 6))
            .is_empty());
        // A consult that begins once the client took part rings its target with the card.
        let consult =
            cards.on_call_event(&s, &ev("c", CallState::Appeared, emp("102"), emp("101"), 8));
        assert_eq!(
            consult
                .iter()
                .map(|c| (c.action, c.crm_user_id.get()))
                .collect::<Vec<_>>(),
            [(CardAction::Show, 1001)]
        );
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
