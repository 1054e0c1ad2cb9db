#![forbid(unsafe_code)]
//! `panka-controller`: the continuous GitOps loop (see [`panka_controller::daemon`]).

fn main() -> std::process::ExitCode {
    panka_controller::daemon::main()
}
