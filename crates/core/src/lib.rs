//! callbridge's pure core: PBX events in, a plan of CRM writes out.
//!
//! No I/O, no async, no clock: every function here is deterministic in its arguments, so the
//! rules (`docs/rules.md` ids such as P2 or M2) are tested as tables of cases and property tests.

pub mod event;
pub mod phone;

pub use event::*;
