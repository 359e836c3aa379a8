//! The `tower-service` example, written against the `fusebox` crate only, run as a user would
//! run it: it exits 0 only if calls pass while closed, are rejected once forced open, and the
//! fallback answers in their place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_tower_example_passes_rejects_and_falls_back() {
    let out = Command::new(env!("CARGO_BIN_EXE_tower-service")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}:\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    for line in ["apple: 30 cents", "kiwi: failed", "apple: rejected", "apple with a fallback: 30 cents"] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}
