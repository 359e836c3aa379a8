//! Fusebox examples as a library, so their logic is tested: the local cluster [`demo`]
//! (`make demo`) and the scripted-outage [`timeline`] through the simulated fleet.

pub mod demo;
pub mod timeline;
