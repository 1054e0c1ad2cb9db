#![forbid(unsafe_code)]
//! Panka's engine and controller: the stages that do I/O.
//!
//! The engine is a one-way flow of stages (DESIGN.md §3): [`source`] → load → resolve → graph →
//! observe → plan → apply → record. The pure ones (load, resolve, graph, plan) live in
//! [`panka_core`]; this crate reads the repository, talks to AWS through the [`driver`]s, holds
//! [`lock`]s and writes [`state`]. [`session`] wires configuration → backends → engine once,
//! for the CLI and the controller alike; [`telemetry`] reads what runs (logs, metrics, health).

pub mod aws;
pub mod backend;
pub mod budget;
pub mod config;
pub mod daemon;
pub mod driver;
pub mod engine;
pub mod kubernetes;
pub mod lock;
pub mod reconcile;
pub mod secret;
pub mod session;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod validate;
