//! Fusebox examples as a library, so their logic is tested: the local cluster [`demo`]
//! (`make demo`), the `fusebox` operator [`cli`], and the scripted-outage [`timeline`]
//! through the simulated fleet.

pub mod cli;
pub mod demo;
pub mod timeline;
