#![forbid(unsafe_code)]
//! Panka's API: the Rust types of every kind a deployment repository holds, and the Kubernetes
//! custom resources generated from them.
//!
//! This crate knows nothing of AWS or of how documents are loaded; it only defines shapes, and
//! renders them: the CRDs (`crd`) and the field tables of `docs/reference.md` (`reference`).

pub mod crd;
pub mod kind;
pub mod meta;
pub mod reference;
pub mod resource;
pub mod spec;

pub use kind::Kind;
pub use meta::Metadata;
