//! `validate` over a repository directory: the source stage reads the stack folder, the pure
//! [`panka_core::validate`] does the rest.

use std::path::Path;

use panka_core::diag::Sources;
use panka_core::load::LoadedStack;
use panka_core::resolve::Options;
pub use panka_core::validate::{
    checked_input, plan_input, Checked, EnvironmentResult, Inventory, Validation,
};

use crate::source::dir;

/// Reads and loads a stack from a repository directory.
pub fn load_stack(
    root: &Path,
    stack: &str,
) -> Result<LoadedStack, (panka_core::diag::Diagnostics, Sources)> {
    let tree = dir::read_stack(root, stack).map_err(|d| (d, Sources::default()))?;
    panka_core::validate::load_tree(stack, &tree)
}

/// Validates a stack of the repository at `root` for `environment`, or for every environment it
/// has when `None`.
pub fn validate(
    root: &Path,
    stack: &str,
    environment: Option<&str>,
    options: &Options,
) -> Validation {
    panka_core::validate::validate_tree(stack, dir::read_stack(root, stack), environment, options)
}
