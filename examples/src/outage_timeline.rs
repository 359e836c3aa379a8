//! The scripted-outage timeline (filled in below).
fn main() {}
