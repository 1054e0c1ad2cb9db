#![forbid(unsafe_code)]

pub mod emulator;
