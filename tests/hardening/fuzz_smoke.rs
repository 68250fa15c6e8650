//! The fuzz targets' checks (fuzz/checks.rs) on deterministic random
//! input: seeds from the fuzz corpus, mutated, plus plain random bytes.
//! A few seconds per run on every `cargo test`; the cargo-fuzz targets do
//! the coverage-guided version (fuzz/README.md).

use crate::support::Rng;
use std::path::Path;

#[path = "../../fuzz/checks.rs"]
mod checks;

/// Inputs per target; PAM_MFA_FUZZ_SMOKE_RUNS overrides.
fn runs() -> usize {
    std::env::var("PAM_MFA_FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

/// The seed files of one target (fuzz/seeds/TARGET/*).
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Bytes that matter to the parsers, spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b":",
    b"\n",
    b"\\u0000",
    b"+",
    b"-",
    b" ",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"0",
    b"9",
    b"1e9",
    b"-1",
    b"true",
    b"null",
    b"\"version\":1",
    b"\"args\":[",
    b"[lockout]",
    b"[totp]",
    b"[sms]",
    b"deny = ",
    b"digits = ",
    b"\" ",
    b"STEP_SIZE ",
    b"WINDOW_SIZE ",
    b"HOTP_COUNTER",
    b"12345678",
    b"JBSWY3DPEHPK3PXP",
    b"18446744073709551616",
    b"\xe2\x80\xae",
    b"\xef\xbc\x91",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = |rng: &mut Rng, len: usize| rng.below(len as u64 + 1) as usize;
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = at(rng, data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = at(rng, data.len());
                data.insert(i, rng.next_u64() as u8);
            }
            2 if !data.is_empty() => {
                let i = at(rng, data.len() - 1);
                let n = (rng.below(8) as usize).min(data.len() - i);
                data.drain(i..i + n);
            }
            3 => {
                let i = at(rng, data.len());
                let t = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                data.splice(i..i, t.iter().copied());
            }
            4 if !data.is_empty() => {
                let (i, j) = (at(rng, data.len() - 1), at(rng, data.len() - 1));
                let (i, j) = (i.min(j), i.max(j));
                let piece = data[i..j].to_vec();
                let k = at(rng, data.len());
                data.splice(k..k, piece);
            }
            _ => {
                let i = at(rng, data.len());
                data.truncate(i);
            }
        }
    }
    data
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(64) as usize;
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn smoke(target: &str, check: fn(&[u8])) {
    let seeds = seeds(target);
    let mut rng = Rng::new(0x5eed ^ target.len() as u64);
    let n = runs();
    let started = std::time::Instant::now();
    for s in &seeds {
        check(s);
    }
    for i in 0..n {
        let input = if i % 4 == 0 {
            random_bytes(&mut rng)
        } else {
            let seed = rng.below(seeds.len() as u64) as usize;
            mutate(&mut rng, &seeds[seed])
        };
        let result = std::panic::catch_unwind(|| check(&input));
        if let Err(e) = result {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("fuzz smoke {target}: input {input:?} failed: {why}");
        }
    }
    eprintln!(
        "fuzz smoke {target}: {} seeds + {n} generated inputs in {:?}, all checks held",
        seeds.len(),
        started.elapsed()
    );
}

#[test]
fn fuzz_smoke_config() {
    smoke("config", checks::config);
}

#[test]
fn fuzz_smoke_codes() {
    smoke("codes", checks::codes);
}

#[test]
fn fuzz_smoke_phone() {
    smoke("phone", checks::phone);
}

#[test]
fn fuzz_smoke_google_auth() {
    smoke("google_auth", checks::google_auth);
}

#[test]
fn fuzz_smoke_protocol() {
    smoke("protocol", checks::protocol);
}
