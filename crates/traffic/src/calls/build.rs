//! One call of a kind from start to end, with its truth: the scenes in the order that kind has.

use super::*;

impl CallBuilder<'_> {
    /// Scripts one call of `kind` starting at `t0`. Returns its events (causal order) and truth.
    pub fn build(
        mut self,
        kind: CallKind,
        t0: i64,
        opts: CallOptions,
    ) -> (Vec<PbxEvent>, CallTruth) {
        let client = self.client_number();
        let line = self.rng.pick(&self.staff.lines).clone();
        let n = self.staff.employees.len();
        let mut truth = CallTruth {
            entry_id: self.entry_id.clone(),
            kind,
            direction: Direction::Inbound,
            answered: true,
            talkers: Vec::new(),
            recordings: Vec::new(),
            missed: None,
            first_offered: None,
            group: None,
            summary_lost: opts.lost_summary,
            started_at: t0,
            events: 0,
        };
        let mut summary: Option<SummaryPlan> = None;
        let mut answered_call: Option<(Answered, Vec<usize>, Option<TransferKind>)> = None;

        match kind {
            CallKind::DirectAnswered => {
                let e = self.rng.below(n);
                answered_call = Some((self.direct(t0, &client, &line, e), vec![], None));
            }
            CallKind::RingAllAnswered | CallKind::OneByOneAnswered => {
                let strategy = if kind == CallKind::RingAllAnswered {
                    GroupStrategy::RingAll
                } else {
                    GroupStrategy::OneByOne
                };
                match self.group_of(strategy) {
                    Some(g) => {
                        let nth = if strategy == GroupStrategy::OneByOne {
                            self.rng.range(2, 3) as usize
                        } else {
                            1
                        };
                        truth.group = Some(self.staff.groups[g].extension.clone());
                        let a = self.group_answered(t0, &client, &line, g, nth);
                        answered_call = Some((a, vec![], None));
                    }
                    None => {
                        let e = self.rng.below(n);
                        answered_call = Some((self.direct(t0, &client, &line, e), vec![], None));
                    }
                }
            }
            CallKind::ConsultativeTransfer | CallKind::BlindTransfer => {
                let first = self.rng.below(n);
                let answered = match self.rng.below(4) {
                    0 => {
                        truth.direction = Direction::Outbound;
                        self.outbound(t0, &client, &line, first)
                    }
                    1 => match self.group_of(GroupStrategy::RingAll) {
                        Some(g) => {
                            truth.group = Some(self.staff.groups[g].extension.clone());
                            self.group_answered(t0, &client, &line, g, 1)
                        }
                        None => self.direct(t0, &client, &line, first),
                    },
                    _ => self.direct(t0, &client, &line, first),
                };
                let mut chain = vec![answered.employee];
                let hops = if n >= 3 {
                    self.rng.range(1, 2) as usize
                } else {
                    1
                };
                for _ in 0..hops {
                    // Across the mapping table's edge more often than not (R3/R4, P5/P6).
                    let last_mapped = self.staff.employees[*chain.last().expect("non-empty")]
                        .crm_user_id
                        .is_some();
                    let prefer = self.rng.chance(0.6).then_some(!last_mapped);
                    let next = self.other_employee(&chain, prefer);
                    chain.push(next);
                }
                let targets = chain[1..].to_vec();
                let tk = if kind == CallKind::ConsultativeTransfer {
                    TransferKind::Consultative
                } else {
                    TransferKind::Blind
                };
                answered_call = Some((answered, targets, Some(tk)));
            }
            CallKind::OutboundAnswered => {
                truth.direction = Direction::Outbound;
                let e = self.rng.below(n);
                answered_call = Some((self.outbound(t0, &client, &line, e), vec![], None));
            }
            CallKind::OutboundBusy | CallKind::OutboundNoAnswer => {
                truth.direction = Direction::Outbound;
                truth.answered = false;
                truth.missed = Some(MissedKind::Personal);
                let e = self.rng.below(n);
                truth.first_offered = Some(self.staff.employees[e].extension.clone());
                let mut to = Self::client_party(&client);
                to.line_number = Some(line.clone());
                let from = self.employee_party(e);
                let mut leg = self.leg(Location::Abonent, from.clone(), to);
                self.emit(&mut leg, t0, CallState::Appeared, None);
                let (end, reason) = if kind == CallKind::OutboundBusy {
                    (t0 + self.rng.range(1, 4), 1121)
                } else {
                    (t0 + self.rng.range(20, 45), 1111)
                };
                self.emit(&mut leg, end, CallState::Disconnected, Some(reason));
                summary = Some((
                    SummaryDirection::Outbound,
                    from,
                    Self::client_party(&client),
                    Some(line.clone()),
                    (t0, t0, 0, end),
                    false,
                    reason,
                ));
            }
            CallKind::MissedIvr => {
                truth.answered = false;
                truth.missed = Some(MissedKind::Ivr);
                let mut ivr = self.leg(
                    Location::Ivr,
                    Self::client_party(&client),
                    Self::line_party(&line),
                );
                self.emit(&mut ivr, t0, CallState::Appeared, None);
                let end = t0 + self.rng.range(2, 40);
                self.emit(&mut ivr, end, CallState::Disconnected, Some(1110));
                summary = Some((
                    SummaryDirection::Inbound,
                    Self::client_party(&client),
                    Party::default(),
                    Some(line.clone()),
                    (t0, 0, 0, end),
                    false,
                    1110,
                ));
            }
            CallKind::MissedGroup => {
                truth.answered = false;
                truth.missed = Some(MissedKind::Group);
                let strategy = if self.rng.chance(0.5) {
                    GroupStrategy::RingAll
                } else {
                    GroupStrategy::OneByOne
                };
                let g = self
                    .group_of(strategy)
                    .or_else(|| self.group_of(GroupStrategy::RingAll))
                    .or_else(|| self.group_of(GroupStrategy::OneByOne));
                let Some(g) = g else {
                    // No groups at all: a missed IVR call stands in.
                    return self.build(CallKind::MissedIvr, t0, opts);
                };
                let group_ext = self.staff.groups[g].extension.clone();
                truth.group = Some(group_ext.clone());
                let (mut q, t) = self.queue(t0, &client, &line, g);
                let members = self.staff.groups[g].members.clone();
                let strategy = self.staff.groups[g].strategy;
                let mut end = t;
                let reason;
                if self.rng.chance(0.15) {
                    // Nobody free to ring: the queue gives up.
                    end += self.rng.range(10, 60);
                    reason = 1164;
                } else {
                    match strategy {
                        GroupStrategy::RingAll => {
                            let mut legs: Vec<Leg> = members
                                .iter()
                                .map(|&e| self.member_leg(&q, &client, &line, g, e))
                                .collect();
                            for l in &mut legs {
                                self.emit(l, t, CallState::Appeared, None);
                            }
                            end = t + self.rng.range(15, 40);
                            for l in &mut legs {
                                self.emit(l, end, CallState::Disconnected, Some(1111));
                            }
                            let first = self.rng.below(members.len());
                            truth.first_offered =
                                Some(self.staff.employees[members[first]].extension.clone());
                        }
                        GroupStrategy::OneByOne => {
                            let rung = self.rng.range(1, members.len() as i64) as usize;
                            for &e in &members[..rung] {
                                let mut l = self.member_leg(&q, &client, &line, g, e);
                                self.emit(&mut l, end, CallState::Appeared, None);
                                end += self.rng.range(10, 25);
                                self.emit(&mut l, end, CallState::Disconnected, Some(1111));
                            }
                            truth.first_offered =
                                Some(self.staff.employees[members[0]].extension.clone());
                        }
                    }
                    reason = if self.rng.chance(0.5) { 1163 } else { 1110 };
                }
                self.emit(&mut q, end, CallState::Disconnected, Some(reason));
                let to = Party {
                    extension: Some(truth.first_offered.clone().unwrap_or(group_ext)),
                    ..Default::default()
                };
                summary = Some((
                    SummaryDirection::Inbound,
                    Self::client_party(&client),
                    to,
                    Some(line.clone()),
                    (t0, t0, 0, end),
                    false,
                    reason,
                ));
            }
            CallKind::Internal => {
                truth.direction = Direction::Internal;
                let a = self.rng.below(n);
                let b = self.other_employee(&[a], None);
                let from = self.employee_party(a);
                let to = self.employee_party(b);
                let mut leg = self.leg(Location::Abonent, from, to);
                self.emit(&mut leg, t0, CallState::Appeared, None);
                let answered = self.rng.chance(0.75);
                truth.answered = answered;
                let (talk_at, end, reason) = if answered {
                    let at = t0 + self.ring();
                    self.emit(&mut leg, at, CallState::Connected, None);
                    let end = at + self.talk();
                    (at, end, 1110)
                } else {
                    (0, t0 + self.rng.range(15, 30), 1111)
                };
                self.emit(&mut leg, end, CallState::Disconnected, Some(reason));
                let short = |p: Party| Party {
                    extension: p.extension,
                    ..Default::default()
                };
                let (f, t) = (self.employee_party(a), self.employee_party(b));
                summary = Some((
                    SummaryDirection::Internal,
                    short(f),
                    short(t),
                    None,
                    (t0, t0, talk_at, end),
                    answered,
                    reason,
                ));
            }
        }

        if let Some((answered, targets, transfer)) = answered_call {
            let first_answer = answered.at;
            let outbound = !answered.client_on_from;
            let first_employee = answered.employee;
            let (talks, end, reason) = self.converse(answered, &client, &targets, transfer);
            truth.talkers = talks
                .iter()
                .map(|t| self.staff.employees[t.employee].extension.clone())
                .collect();
            truth.recordings = if opts.recorded {
                self.record(&talks, end)
            } else {
                vec![None; talks.len()]
            };
            let last = talks.last().expect("a talk").employee;
            summary = Some(if outbound {
                (
                    SummaryDirection::Outbound,
                    self.employee_party(first_employee),
                    Self::client_party(&client),
                    Some(line.clone()),
                    (t0, t0, first_answer, end),
                    true,
                    reason,
                )
            } else {
                (
                    SummaryDirection::Inbound,
                    Self::client_party(&client),
                    self.employee_party(last),
                    Some(line.clone()),
                    (t0, t0, first_answer, end),
                    true,
                    reason,
                )
            });
        }

        if let Some((direction, from, to, line, times, answered, reason)) = summary {
            if !opts.lost_summary {
                self.summary(
                    direction,
                    from,
                    to,
                    line.as_deref(),
                    times,
                    answered,
                    reason,
                );
            }
        }
        truth.events = self.events.len();
        (self.events, truth)
    }
}
