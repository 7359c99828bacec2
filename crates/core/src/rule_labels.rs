//! Short human labels of the rule ids (`docs/rules.md` has the full text), for consoles and
//! reports that list decisions by rule.

use crate::plan::Rule;

impl Rule {
    /// Every rule id a plan can carry, in the order of `docs/rules.md`.
    pub const ALL: [Rule; 20] = [
        Rule::A4,
        Rule::A4a,
        Rule::A4b,
        Rule::A5,
        Rule::A6,
        Rule::P1,
        Rule::P2,
        Rule::P3,
        Rule::P4,
        Rule::P5,
        Rule::P6,
        Rule::P7,
        Rule::M1,
        Rule::M2,
        Rule::M3,
        Rule::M4,
        Rule::M5,
        Rule::C1,
        Rule::C2,
        Rule::C3,
    ];

    /// What the rule did to a record, in a few words.
    pub fn label(&self) -> &'static str {
        match self {
            Rule::A4 => "entry complete: summary, or all legs down and quiet",
            Rule::A4a => "entry given up after its silence horizon",
            Rule::A4b => "recovered from the PBX's statistics",
            Rule::A5 => "direction of the call",
            Rule::A6 => "missed call",
            Rule::P1 => "mapped employee's call on their user",
            Rule::P2 => "unmapped employee: \"Save all calls\" fallback user",
            Rule::P3 => "unmapped employee, \"Save all calls\" off: ignored",
            Rule::P4 => "this record creates the contact/lead",
            Rule::P5 => "transfer unmapped -> mapped",
            Rule::P6 => "transfer mapped -> unmapped",
            Rule::P7 => "received by transfer: inbound for them",
            Rule::M1 => "group miss: its responsible user",
            Rule::M2 => "group miss: on the employee it ended on",
            Rule::M3 => "missed in the voice menu",
            Rule::M4 => "personal miss: on the employee offered first",
            Rule::M5 => "missed-call task",
            Rule::C1 => "call card shown",
            Rule::C2 => "transcript to be saved (speech analytics)",
            Rule::C3 => "recording attached",
        }
    }

    /// The rule with this id as plans write it (`"P2"`), if there is one.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.to_string() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_rule_has_one_label_and_its_id_reads_back() {
        let labels: HashSet<&str> = Rule::ALL.iter().map(Rule::label).collect();
        assert_eq!(labels.len(), Rule::ALL.len(), "labels are distinct");
        for rule in Rule::ALL {
            assert!(!rule.label().is_empty(), "{rule}");
            assert_eq!(Rule::from_id(&rule.to_string()), Some(rule));
        }
        assert_eq!(Rule::from_id("P9"), None);
        assert_eq!(Rule::from_id("p1"), None);
    }

    #[test]
    fn the_serialized_id_is_the_one_from_id_reads() {
        for rule in Rule::ALL {
            let json = serde_json::to_string(&rule).expect("serializes");
            assert_eq!(json, format!("\"{rule}\""));
        }
    }
}
