#![forbid(unsafe_code)]
//! Panka's pure core: everything between reading the repository and talking to AWS.
//!
//! The stages of DESIGN.md §3 that do no I/O live here — [`load`] → [`resolve`] (with the stack-wide resources of [`stack`]) → [`graph`] →
//! [`policy`] (the repository's Rego policies) → [`plan`] (with [`cost`] and [`drift`]) — together with the model they work on ([`model`], [`naming`],
//! [`tags`], [`diag`]), the files they read ([`source::FileTree`]), the state *documents*
//! ([`state`], and the controller's [`sync`] records) and the keys of state and locks ([`keys`]), and [`acknowledge`], the repository edit
//! that keeps a change made in AWS by hand, and [`crd`], the conversion between custom resources
//! and the documents load reads (CRD mode, `panka export`), and [`telemetry`], what a component's
//! logs, metrics and health say (`panka logs`, `metrics`, `health`). This crate depends on neither `aws-*` nor `tokio`, so
//! the compiler keeps these stages pure; the controller crate does the I/O around them.

pub mod acknowledge;
pub mod bake;
pub mod cost;
pub mod crd;
pub mod diag;
pub mod drift;
pub mod graph;
pub mod keys;
pub mod load;
pub mod model;
pub mod naming;
pub mod plan;
pub mod policy;
pub mod resolve;
pub mod source;
pub mod stack;
pub mod state;
pub mod sync;
pub mod tags;
pub mod telemetry;
pub mod validate;
