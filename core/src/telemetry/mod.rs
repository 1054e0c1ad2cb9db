//! What runs, as people look at it after an apply (pure): the merging and de-duplication of a
//! component's CloudWatch Logs lines ([`logs`]), the window and arithmetic of its metrics
//! ([`metrics`]) and the checks its health is made of ([`health`]). The controller crate reads
//! the numbers and lines from AWS; these modules only decide what they say.

pub mod health;
pub mod logs;
pub mod metrics;
