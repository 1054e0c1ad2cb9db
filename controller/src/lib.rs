#![forbid(unsafe_code)]
//! Panka's engine and controller.
//!
//! The engine is a one-way flow of stages (DESIGN.md §3): [`source`] → [`load`] → [`resolve`] →
//! [`graph`] → observe → plan → apply → record. `load`, `resolve` and `graph` are pure: they
//! neither read files nor call AWS or Kubernetes, so they run the same in the CLI, in the
//! controller and in tests.

pub mod aws;
pub mod backend;
pub mod config;
pub mod cost;
pub mod diag;
pub mod driver;
pub mod engine;
pub mod graph;
pub mod load;
pub mod lock;
pub mod model;
pub mod naming;
pub mod plan;
pub mod resolve;
pub mod secret;
pub mod source;
pub mod state;
pub mod validate;
