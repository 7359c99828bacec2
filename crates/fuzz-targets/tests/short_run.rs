//! The short fuzz run of the README's test command: for each target, every file of its corpus
//! (`fuzz/corpus/<target>/`, seeded from the scenarios and examples by
//! `scripts/fuzz-corpus.py`, grown by libFuzzer runs), then a fixed number of inputs mutated
//! from them with a fixed seed, so a failure here is the same on every machine. The long,
//! coverage-guided runs are cargo-fuzz's (`fuzz/`, commands in docs/reliability.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Byte strings that tend to matter to parsers of JSON, TOML and forms.
const TOKENS: [&[u8]; 16] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"-1",
    b"1e999",
    b"99999999999999999999",
    b"\\u0000",
    b"%",
    b"&json=",
    b"=",
    b"\n[[tenants]]\n",
    b"\"\"\"",
    b"\xff",
];

/// xorshift64*: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] = rng.next() as u8;
            }
            2 => data.insert(at, rng.next() as u8),
            3 => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            5 if !other.is_empty() => {
                // Splice: the head of this input and the tail of another.
                let from = rng.below(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let end = (at + 1 + rng.below(32)).min(data.len());
                let chunk = data[at.min(end)..end].to_vec();
                data.splice(at..at, chunk);
            }
        }
    }
    data
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", folder.display()))
        .map(|f| f.expect("a corpus entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("a corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "the corpus of {target} is empty");
    seeds
}

/// Runs `target` over its corpus and `mutations` mutated inputs; on a panic, saves the input
/// where it can be replayed (`cargo fuzz run <target> <file>`) and fails naming it.
fn run(name: &str, target: fn(&[u8]), mutations: usize) {
    let seeds = corpus(name);
    let mut rng = Rng(0x5eed_0000_0000_0001 ^ name.len() as u64);
    let inputs = seeds.iter().cloned().chain((0..mutations).map(|_| {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        mutate(&mut rng, seed, other)
    }));
    let mut executed = 0;
    for input in inputs {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{name}"));
            std::fs::write(&file, &input).expect("the crashing input is saved");
            eprintln!(
                "{name}: input {executed} panicked; saved to {}",
                file.display()
            );
            std::panic::resume_unwind(panic);
        }
        executed += 1;
    }
    callbridge_test_support::note_figures(&format!(
        "fuzz short run: {name}: {executed} inputs ({} from the corpus), no panic",
        seeds.len()
    ));
}

#[test]
fn webhook_parser_never_panics() {
    run("webhook", callbridge_fuzz_targets::webhook, 20_000);
}

#[test]
fn settings_parser_never_panics_and_accepted_settings_plan() {
    run("settings", callbridge_fuzz_targets::settings, 3_000);
}

#[test]
fn config_loader_never_panics() {
    run("config", callbridge_fuzz_targets::config, 1_000);
}

#[test]
fn random_event_streams_keep_the_core_invariants() {
    run(
        "events",
        callbridge_fuzz_targets::events::event_stream,
        5_000,
    );
}

/// The harness itself: a target that panics on some input is caught and the input saved.
#[test]
fn a_panicking_target_fails_the_run() {
    fn fragile(data: &[u8]) {
        assert!(!data.contains(&b'{'), "found a brace");
    }
    let outcome = catch_unwind(|| run("webhook", fragile, 10));
    assert!(outcome.is_err(), "a target that panics must fail the run");
    let saved = std::fs::read(Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash-webhook"))
        .expect("the crashing input was saved");
    assert!(saved.contains(&b'{'));
}
