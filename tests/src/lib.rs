#![forbid(unsafe_code)]

pub mod cli;
pub mod console;
pub mod emulator;
pub mod engine;
pub mod gitops;
pub mod output;
pub mod repo;
pub mod stack;
