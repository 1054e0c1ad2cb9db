//! Every end-to-end test of panka, linked into one test binary: each file is a module of it, so the
//! workspace links the AWS SDK once for them (not once per file, which filled CI's disk) and the
//! modules share one emulator. Run one file's tests with `cargo test -p panka-tests --test
//! end_to_end engine_apply::`.

mod apply_examples;
mod auto_rollback;
mod bad_input;
mod crate_boundaries;
mod driver_dynamodb;
mod driver_ecs;
mod driver_elasticache;
mod driver_rds;
mod driver_s3;
mod driver_sqs;
mod engine_apply;
mod git_source;
mod iam_policy;
mod stack_resource;
mod state_locks;

/// Each file of this folder is a module here; one left out would never be built or run.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    panka_tests::assert_test_files_declared(env!("CARGO_MANIFEST_DIR"));
}
