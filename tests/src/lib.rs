#![forbid(unsafe_code)]

pub mod emulator;
pub mod engine;
pub mod output;
pub mod stack;
