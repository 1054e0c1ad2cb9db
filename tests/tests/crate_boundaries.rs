//! The crate boundaries DESIGN.md §2 draws, checked on the real dependency graph: the pure core
//! reaches no AWS SDK, no async runtime and no Kubernetes client.

use std::process::Command;

#[test]
fn the_core_crate_depends_on_no_aws_sdk_and_no_tokio() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "panka-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"panka-core"), "{tree}");
    assert!(
        crates.contains(&"yaml-rust2"),
        "the tree is the real one: {tree}"
    );
    let forbidden: Vec<&&str> = crates
        .iter()
        .filter(|c| {
            c.starts_with("aws-") || **c == "tokio" || **c == "kube-client" || **c == "hyper"
        })
        .collect();
    assert!(forbidden.is_empty(), "panka-core reaches {forbidden:?}");
}
