#![forbid(unsafe_code)]

pub mod emulator;
pub mod output;
