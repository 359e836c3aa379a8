//! Fusebox examples as a library, so their logic is tested: the scripted-outage timeline
//! ([`timeline`]) that `make demo` prints until the NATS cluster demo exists.

pub mod timeline;
