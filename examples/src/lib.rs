//! Fusebox examples as a library, so their logic is tested: the local cluster [`demo`]
//! (`make demo`) and the scripted-outage [`timeline`] through the simulated fleet. The
//! operator CLI is the `fusebox-cli` crate.

pub mod demo;
pub mod timeline;
