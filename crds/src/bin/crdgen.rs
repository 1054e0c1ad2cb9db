#![forbid(unsafe_code)]
//! Writes every panka CRD to a folder (default `charts/panka/crds`), one file each, and rewrites
//! the generated field tables of `docs/reference.md` (see `panka_crds::reference`).
//!
//! `crdgen --check` exits 1 when the committed files differ from what the types generate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use panka_crds::reference::{self, REGENERATE};

const USAGE: &str = "usage: crdgen [--check] [--reference FILE] [DIR]
  DIR               where the CRDs go (default charts/panka/crds)
  --reference FILE  the page whose field tables are rewritten (default docs/reference.md)
  --check           change nothing; exit 1 if a file is out of date";

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from("charts/panka/crds");
    let mut reference_path = PathBuf::from(reference::REFERENCE_PATH);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--reference" => match args.next() {
                Some(path) => reference_path = PathBuf::from(path),
                None => {
                    eprintln!("error: --reference needs a file\n{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    let mut stale = Vec::new();
    for crd in panka_crds::crd::all() {
        let path = dir.join(panka_crds::crd::file_name(&crd));
        let yaml = match panka_crds::crd::to_yaml(&crd) {
            Ok(yaml) => yaml,
            Err(err) => {
                eprintln!("error: failed to render {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        };
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == yaml {
            continue;
        }
        if check {
            stale.push(path);
        } else if let Err(err) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml))
        {
            eprintln!("error: failed to write {}: {err}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    match update_reference(&reference_path, check) {
        Ok(true) => {}
        Ok(false) => stale.push(reference_path),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        for path in stale {
            eprintln!(
                "error: {} is out of date; run `{REGENERATE}`",
                path.display()
            );
        }
        ExitCode::FAILURE
    }
}

/// Rewrites the page's generated tables; `Ok(false)` when `check` finds them out of date.
fn update_reference(path: &Path, check: bool) -> Result<bool, String> {
    // Unlike a CRD, the page is not ours to create: its prose is written by hand.
    let current = std::fs::read_to_string(path)
        .map_err(|err| format!("failed to read {}: {err}", path.display()))?;
    let updated =
        reference::update(&current).map_err(|err| format!("{}: {err}", path.display()))?;
    if updated == current {
        return Ok(true);
    }
    if check {
        return Ok(false);
    }
    std::fs::write(path, updated)
        .map_err(|err| format!("failed to write {}: {err}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(true)
}
