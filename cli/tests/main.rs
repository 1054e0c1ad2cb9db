//! The CLI's tests, which run the `panka` binary (and the controller's), linked into one test
//! binary: each file is a module of it (one link of the AWS SDK, not one per file) and the modules
//! share one emulator. Run one file's tests with `cargo test -p panka --test cli_end_to_end cli_drift::`.

mod cli;
mod cli_apply;
mod cli_bake;
mod cli_drift;
mod cli_interrupt;
mod cli_observe;
mod cli_policy;
mod cli_state;
mod controller;

/// Each file of this folder is a module here; one left out would never be built or run.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    panka_tests::assert_test_files_declared(env!("CARGO_MANIFEST_DIR"));
}
