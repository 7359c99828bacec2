//! callbridge's pure core: PBX events in, a plan of CRM writes out.
//!
//! No I/O, no async, no clock: every function here is deterministic in its arguments, so the
//! rules (`docs/rules.md` ids such as P2 or M2) are tested as tables of cases and property tests.
//!
//! - [`assembler`]: events of one entry -> legs, conversations, missed-call facts (A1-A6).
//! - [`policy`]: settings + an assembled entry -> an [`plan::EntryPlan`] (P, M, C rules).
//! - [`tracker`]: a stream of events of many entries -> completed entries, with the grace period
//!   and the settle window, driven by a clock the caller supplies.

pub mod assembler;
pub mod cards;
pub mod event;
pub mod explain;
pub mod phone;
pub mod plan;
pub mod policy;
mod rule_labels;
pub mod settings;
pub mod tracker;

pub use assembler::{Assembly, Direction, EntryEvents, MissedKind};
pub use event::*;
pub use plan::{EntryPlan, Rule};
pub use settings::{SettingsError, ValidSettings};
