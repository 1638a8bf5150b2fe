//! The proxy has no `unsafe` code but one audited call: `malloc_trim` in `server/release.rs`, which gives
//! freed memory back after a burst of load. The crate denies `unsafe_code`; this test keeps the one place
//! allowed to lift that the only one, and its `unsafe` block the only one.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_only_unsafe_code_is_the_allocator_trim() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut allows = Vec::new();
    let mut blocks = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        allows.extend(text.matches("allow(unsafe_code)").map(|_| name.clone()));
        blocks.extend(
            text.match_indices("unsafe ")
                .filter(|(at, _)| {
                    !text[..*at].ends_with("deny(") && !text[..*at].ends_with("allow(")
                })
                .map(|_| name.clone()),
        );
    }
    assert_eq!(allows, ["server/release.rs"], "places allowing unsafe code");
    assert_eq!(
        blocks,
        ["server/release.rs"],
        "unsafe blocks, functions or impls"
    );
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "the crate no longer denies unsafe code"
    );
}
