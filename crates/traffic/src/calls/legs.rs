//! The builder's primitives: legs and their events, parties, and the random draws (numbers,
//! ring and talk times, hang-up reasons, who else answers).

use super::*;

impl<'a> CallBuilder<'a> {
    pub fn new(staff: &'a Staff, rng: &'a mut Rng, seed: u64, index: u64) -> Self {
        CallBuilder {
            staff,
            rng,
            seed,
            index,
            entry_id: b64(format!("{seed}:{index}").as_bytes()),
            legs: 0,
            recordings: 0,
            events: Vec::new(),
        }
    }

    pub(super) fn leg(&mut self, location: Location, from: Party, to: Party) -> Leg {
        self.legs += 1;
        Leg {
            id: b64(format!("1:{}:{}:{}", self.seed, self.index, self.legs).as_bytes()),
            seq: 0,
            location,
            from,
            to,
            transfer: None,
        }
    }

    pub(super) fn emit(&mut self, leg: &mut Leg, t: i64, state: CallState, reason: Option<u32>) {
        leg.seq += 1;
        self.events.push(PbxEvent::Call(CallEvent {
            entry_id: self.entry_id.clone(),
            call_id: leg.id.clone(),
            timestamp: t,
            seq: leg.seq,
            call_state: state,
            location: leg.location.clone(),
            from: leg.from.clone(),
            to: leg.to.clone(),
            disconnect_reason: reason,
            transfer: leg.transfer,
            command_id: None,
            callback_initiator: None,
            tracking: None,
        }));
    }

    /// `OnHold` with the employee's side marked as the one who put the other on hold.
    pub(super) fn hold(&mut self, leg: &mut Leg, t: i64, client_on_from: bool) {
        let side = if client_on_from {
            &mut leg.to
        } else {
            &mut leg.from
        };
        side.hold_initiator = true;
        self.emit(leg, t, CallState::OnHold, None);
        let side = if client_on_from {
            &mut leg.to
        } else {
            &mut leg.from
        };
        side.hold_initiator = false;
    }

    pub(super) fn client_party(number: &str) -> Party {
        Party {
            number: Some(number.to_string()),
            ..Default::default()
        }
    }

    pub(super) fn employee_party(&self, e: usize) -> Party {
        let e = &self.staff.employees[e];
        Party {
            extension: Some(e.extension.clone()),
            number: Some(e.sip.clone()),
            ..Default::default()
        }
    }

    pub(super) fn line_party(line: &str) -> Party {
        Party {
            number: Some(line.to_string()),
            line_number: Some(line.to_string()),
            ..Default::default()
        }
    }

    pub(super) fn client_number(&mut self) -> String {
        // Russian mobile numbers, as Mango sends them (country code, no plus).
        format!("79{:09}", self.rng.range(0, 999_999_999))
    }

    pub(super) fn ring(&mut self) -> i64 {
        self.rng.range(3, 18)
    }

    pub(super) fn talk(&mut self) -> i64 {
        // Mostly a minute or two, a long tail of long calls, a few very short ones (whose
        // recordings are not saved).
        if self.rng.chance(0.05) {
            self.rng.range(2, 5)
        } else {
            10 + self.rng.exp(100.0).min(3000.0) as i64
        }
    }

    pub(super) fn hangup_reason(&mut self) -> u32 {
        if self.rng.chance(0.6) {
            1110
        } else {
            1120
        }
    }

    pub(super) fn other_employee(&mut self, not: &[usize], prefer_mapped: Option<bool>) -> usize {
        let candidates: Vec<usize> = (0..self.staff.employees.len())
            .filter(|i| !not.contains(i))
            .collect();
        if let Some(mapped) = prefer_mapped {
            let preferred: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| self.staff.employees[i].crm_user_id.is_some() == mapped)
                .collect();
            if !preferred.is_empty() {
                return *self.rng.pick(&preferred);
            }
        }
        *self.rng.pick(&candidates)
    }

    pub(super) fn group_of(&mut self, strategy: GroupStrategy) -> Option<usize> {
        let groups: Vec<usize> = (0..self.staff.groups.len())
            .filter(|&g| {
                self.staff.groups[g].strategy == strategy
                    && !self.staff.groups[g].members.is_empty()
            })
            .collect();
        (!groups.is_empty()).then(|| *self.rng.pick(&groups))
    }
}
