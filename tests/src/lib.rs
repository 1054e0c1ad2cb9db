#![forbid(unsafe_code)]

pub mod cli;
pub mod console;
pub mod emulator;
pub mod engine;
pub mod failing;
pub mod gitops;
pub mod output;
pub mod repo;
pub mod stack;

/// Fails, naming them, when `.rs` files of the `tests/` folder of `manifest_dir` are not
/// declared as modules (`mod name;`) by its `tests/main.rs`: a crate whose integration tests are
/// one binary (`autotests = false`) would never build or run such a file.
///
/// # Panics
/// On such files, or when the folder or `main.rs` cannot be read.
pub fn assert_test_files_declared(manifest_dir: &str) {
    let dir = std::path::Path::new(manifest_dir).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).expect("tests/main.rs");
    let mut missing: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/")
        .filter_map(|entry| {
            let path = entry.expect("a directory entry").path();
            let stem = path.file_stem()?.to_str()?.to_owned();
            let rust = path.extension().is_some_and(|e| e == "rs");
            (rust && stem != "main" && !main.contains(&format!("mod {stem};"))).then_some(stem)
        })
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "declare them in tests/main.rs (`mod name;`): {missing:?}"
    );
}
