//! Path and URL normalisation (`toolgate_engine::input::{normalise_path, normalise_url, resource_target}`).
//! Input: a base directory on the first line, the path or URL after it.
//! - `normalise_path`: absolute, no empty, `.` or `..` segment, idempotent, and an absolute path's result does
//!   not depend on the base.
//! - `normalise_url`: idempotent, and a result that is a URL with a host carries no user or password.
//! - `resource_target`: a `file:` result is a normal path; anything else is `normalise_url`'s.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolgate_engine::input::{normalise_path, normalise_url, resource_target};
use toolgate_fuzz::is_normal_path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (base, input) = text.split_once('\n').unwrap_or(("/", &text));

    let path = normalise_path(input, base);
    assert!(is_normal_path(&path), "{input:?} in {base:?} -> {path:?}");
    assert_eq!(
        normalise_path(&path, base),
        path,
        "normalise_path is not idempotent"
    );
    assert_eq!(normalise_path(&path, "/elsewhere"), path);
    if input.starts_with('/') {
        assert_eq!(
            normalise_path(input, "/elsewhere"),
            path,
            "an absolute path depends on the base"
        );
    }

    let url = normalise_url(input);
    assert_eq!(
        normalise_url(&url),
        url,
        "normalise_url is not idempotent: {input:?}"
    );
    if let Ok(parsed) = url::Url::parse(&url) {
        if parsed.host_str().is_some() {
            assert_eq!(parsed.username(), "", "user kept in {url:?}");
            assert_eq!(parsed.password(), None, "password kept in {url:?}");
        }
    }

    let resource = resource_target(input, base);
    if resource != normalise_url(input) {
        assert!(is_normal_path(&resource), "{input:?} -> {resource:?}");
    }
});
