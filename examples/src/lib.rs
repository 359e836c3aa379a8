//! Fusebox examples as a library, so their logic is tested: the scripted-outage timeline
//! ([`timeline`]) that `make demo` prints until the NATS cluster demo exists, and the
//! `fusebox` operator CLI ([`cli`]).

pub mod cli;
pub mod timeline;
