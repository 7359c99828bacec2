//! Statistics rows as core events, for reconciliation: a call whose webhooks never arrived (or
//! whose end never did) is rebuilt as the summary Mango would have sent, marked `recovered` (rule
//! A4b), plus a "recording stored" notice per recording the row names.
//!
//! A row says who called, who was reached last, when the call started, was answered and ended,
//! the line, the disconnect code and the recordings. It does not say who a group offered the call
//! to, the transfers and holds in between, the keys pressed or the call-tracking number: the
//! assembler then works from the summary alone (A4), as it does when the leg events are lost.
//!
//! The rebuilt summary's time and entry make the same event-log key as the webhook's would
//! (`PbxEvent::dedupe_key`), and a recording notice's key is its recording: a webhook that turns
//! up after all is a duplicate of what was recovered, never a second copy.

use crate::api::StatsRow;
use callbridge_core::{Party, PbxEvent, RecordStoredEvent, SummaryDirection, SummaryEvent};
use std::collections::BTreeMap;

/// The rows of one entry (Mango may write several for one `entry_id`) as one call: the earliest
/// start, the latest end, the caller of the first row, the party of the first answered row (else
/// of the last row), every recording once.
pub fn merge_rows(rows: &[StatsRow]) -> BTreeMap<String, StatsRow> {
    let mut by_entry: BTreeMap<String, Vec<&StatsRow>> = BTreeMap::new();
    for row in rows {
        by_entry.entry(row.entry_id.clone()).or_default().push(row);
    }
    by_entry
        .into_iter()
        .filter_map(|(entry, mut rows)| {
            rows.sort_by_key(|r| (r.start, r.finish));
            let first = rows.first()?;
            let last = rows.last()?;
            let answered = rows.iter().find(|r| r.answer.is_some());
            let reached = answered.unwrap_or(last);
            let mut records: Vec<String> = Vec::new();
            for id in rows.iter().flat_map(|r| &r.records) {
                if !records.contains(id) {
                    records.push(id.clone());
                }
            }
            let latest_end = rows.iter().max_by_key(|r| r.finish).unwrap_or(last);
            let merged = StatsRow {
                entry_id: entry.clone(),
                records,
                start: first.start,
                finish: latest_end.finish,
                answer: answered.and_then(|r| r.answer),
                from_extension: first.from_extension.clone(),
                from_number: first.from_number.clone(),
                to_extension: reached.to_extension.clone(),
                to_number: reached.to_number.clone(),
                disconnect_reason: latest_end.disconnect_reason,
                line_number: rows.iter().find_map(|r| r.line_number.clone()),
                location: latest_end.location.clone(),
            };
            Some((entry, merged))
        })
        .collect()
}

/// Which way the call went, from which side is an employee: the caller an outside number, inbound;
/// an employee calling an outside number, outbound; employees only, internal.
fn direction(row: &StatsRow) -> SummaryDirection {
    let from_employee = row.from_extension.is_some();
    let to_employee = row.to_extension.is_some();
    let to_outside = !to_employee && row.to_number.is_some();
    match (from_employee, to_employee) {
        (false, _) if row.from_number.is_some() => SummaryDirection::Inbound,
        (true, false) if to_outside => SummaryDirection::Outbound,
        (true, true) => SummaryDirection::Internal,
        _ => SummaryDirection::Unknown,
    }
}

/// The events that stand for one (merged) statistics row: the recovered summary, then a
/// "recording stored" notice per recording.
pub fn recovered_events(row: &StatsRow) -> Vec<PbxEvent> {
    let party = |extension: &Option<String>, number: &Option<String>| Party {
        extension: extension.clone(),
        number: number.clone(),
        ..Party::default()
    };
    let mut events = vec![PbxEvent::Summary(SummaryEvent {
        entry_id: row.entry_id.clone(),
        call_direction: direction(row),
        from: party(&row.from_extension, &row.from_number),
        to: party(&row.to_extension, &row.to_number),
        line_number: row.line_number.clone(),
        create_time: row.start,
        forward_time: 0,
        talk_time: row.answer.unwrap_or(0),
        end_time: row.finish,
        entry_result: Some(u8::from(row.answer.is_some())),
        disconnect_reason: row.disconnect_reason,
        recovered: true,
    })];
    events.extend(row.records.iter().map(|id| {
        PbxEvent::RecordAdded(RecordStoredEvent {
            entry_id: row.entry_id.clone(),
            recording_id: id.clone(),
            user_id: None,
            product_id: None,
            timestamp: row.finish,
        })
    }));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(entry: &str) -> StatsRow {
        StatsRow {
            entry_id: entry.into(),
            start: 1_764_000_000,
            finish: 1_764_000_090,
            ..StatsRow::default()
        }
    }

    #[test]
    fn direction_follows_which_side_is_an_employee() {
        let inbound = StatsRow {
            from_number: Some("79161234567".into()),
            to_extension: Some("101".into()),
            ..row("in")
        };
        let outbound = StatsRow {
            from_extension: Some("101".into()),
            from_number: Some("74951234567".into()),
            to_number: Some("79161234567".into()),
            ..row("out")
        };
        let internal = StatsRow {
            from_extension: Some("101".into()),
            to_extension: Some("102".into()),
            ..row("int")
        };
        assert_eq!(direction(&inbound), SummaryDirection::Inbound);
        assert_eq!(direction(&outbound), SummaryDirection::Outbound);
        assert_eq!(direction(&internal), SummaryDirection::Internal);
        assert_eq!(direction(&row("none")), SummaryDirection::Unknown);
    }

    #[test]
    fn a_row_becomes_a_recovered_summary_keyed_like_the_webhook_and_its_recordings() {
        let answered = StatsRow {
            answer: Some(1_764_000_010),
            from_number: Some("79161234567".into()),
            to_extension: Some("101".into()),
            records: vec!["r1".into()],
            disconnect_reason: Some(1100),
            line_number: Some("74951234567".into()),
            ..row("e1")
        };
        let events = recovered_events(&answered);
        assert_eq!(events.len(), 2);
        let PbxEvent::Summary(summary) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(summary.recovered);
        assert_eq!(summary.talk_time, 1_764_000_010);
        assert_eq!(summary.entry_result, Some(1));
        assert_eq!(summary.call_direction, SummaryDirection::Inbound);
        assert_eq!(events[0].dedupe_key(), "001764000090:summary:e1");
        assert_eq!(events[1].dedupe_key(), "record-added:e1:r1");
        let missed = recovered_events(&row("e2"));
        let PbxEvent::Summary(summary) = &missed[0] else {
            panic!("{missed:?}")
        };
        assert_eq!((summary.talk_time, summary.entry_result), (0, Some(0)));
    }

    #[test]
    fn rows_of_one_entry_merge_into_one_call() {
        let first = StatsRow {
            from_number: Some("79161234567".into()),
            to_extension: Some("200".into()),
            records: vec!["r1".into()],
            ..row("e")
        };
        let second = StatsRow {
            start: 1_764_000_020,
            finish: 1_764_000_300,
            answer: Some(1_764_000_030),
            to_extension: Some("101".into()),
            records: vec!["r1".into(), "r2".into()],
            disconnect_reason: Some(1100),
            ..row("e")
        };
        let merged = merge_rows(&[second, first, row("other")]);
        assert_eq!(merged.len(), 2);
        let e = &merged["e"];
        assert_eq!((e.start, e.finish), (1_764_000_000, 1_764_000_300));
        assert_eq!(e.answer, Some(1_764_000_030));
        assert_eq!(e.from_number.as_deref(), Some("79161234567"));
        assert_eq!(e.to_extension.as_deref(), Some("101"));
        assert_eq!(e.records, vec!["r1".to_string(), "r2".to_string()]);
        assert_eq!(e.disconnect_reason, Some(1100));
    }
}
