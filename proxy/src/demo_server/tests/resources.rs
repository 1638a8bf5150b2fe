//! Resources: listing and its pages, the template, reads confined to the sandbox, subscriptions, the seeded
//! files, and the fake credentials that toolgate's DLP must find.

use toolgate_engine::dlp::Scanner;

use super::super::resources::{CREDENTIALS_URI, PAGE_SIZE, STATUS_URI};
use super::super::seed::{seed, SEED_FILES};
use super::*;

/// The fake key id and secret the demo leaks, as the tour shows them before toolgate redacts them.
pub(super) const FAKE_AWS_ACCESS_KEY_ID: &str = "AKIAZ7EXAMPLE4DEMO7Q";
const FAKE_AWS_SECRET_ACCESS_KEY: &str = "FAKEdemoSecretKey/0nlyForToolgateDLPTour";

fn root_uri(sandbox: &Path) -> String {
    let root = fs::canonicalize(sandbox).expect("canonical sandbox");
    format!("file://{}", root.display())
}

fn uris(result: &Value) -> Vec<String> {
    result["resources"]
        .as_array()
        .expect("resources array")
        .iter()
        .map(|r| r["uri"].as_str().expect("uri").to_owned())
        .collect()
}

fn read_text(sandbox: &Path, uri: &str) -> String {
    let reply = only_reply(sandbox, request(1, "resources/read", json!({ "uri": uri })));
    let contents = &reply["result"]["contents"];
    assert_eq!(contents[0]["uri"], uri, "{reply}");
    contents[0]["text"]
        .as_str()
        .expect("text contents")
        .to_owned()
}

/// The DLP kinds toolgate's engine reports for a result.
fn dlp_kinds(result: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = Scanner::new()
        .scan(result)
        .into_iter()
        .map(|finding| finding.kind)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn list_names_the_demo_resources_and_every_sandbox_file_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    seed(&sandbox).expect("seed");
    let root = root_uri(&sandbox);
    for (stateless, params) in in_both_eras(json!({})) {
        let result = result_in_era(&sandbox, stateless, "resources/list", params);
        let expected = [
            STATUS_URI.to_owned(),
            CREDENTIALS_URI.to_owned(),
            format!("{root}/README.md"),
            format!("{root}/notes.txt"),
            format!("{root}/workspace/deploy.env"),
            format!("{root}/workspace/readme.txt"),
        ];
        assert_eq!(uris(&result), expected);
        assert!(result.get("nextCursor").is_none(), "{result}");
        assert_eq!(result["resources"][2]["name"], "README.md");
        assert_eq!(result["resources"][2]["mimeType"], "text/markdown");
        // Files change, so a 2026-07-28 client must not reuse the list.
        let ttl = if stateless { json!(0) } else { Value::Null };
        assert_eq!(result["ttlMs"], ttl);
    }
}

#[test]
fn a_long_list_is_paged_by_cursor() {
    let (_dir, sandbox) = sandbox();
    for i in 0..120 {
        fs::write(sandbox.join(format!("f{i:03}.txt")), "x").expect("write");
    }
    for (stateless, params) in in_both_eras(json!({})) {
        let mut seen = Vec::new();
        let mut params = params;
        let mut pages = 0;
        loop {
            let result = result_in_era(&sandbox, stateless, "resources/list", params.clone());
            let page = uris(&result);
            assert!(page.len() <= PAGE_SIZE);
            seen.extend(page);
            pages += 1;
            match result.get("nextCursor") {
                Some(cursor) => params["cursor"] = cursor.clone(),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen.len(), 122);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no entry listed twice");
    }
    for cursor in [json!("abc"), json!("999"), json!(5)] {
        assert_eq!(
            error_code(&sandbox, "resources/list", json!({ "cursor": cursor })),
            -32602,
            "{cursor}"
        );
    }
}

#[test]
fn the_file_template_names_the_sandbox_root_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    for (stateless, params) in in_both_eras(json!({})) {
        let result = result_in_era(&sandbox, stateless, "resources/templates/list", params);
        let templates = result["resourceTemplates"].as_array().expect("templates");
        assert_eq!(templates.len(), 1);
        assert_eq!(
            templates[0]["uriTemplate"],
            format!("{}/{{name}}", root_uri(&sandbox))
        );
        let ttl = if stateless {
            json!(CACHE_TTL_MS)
        } else {
            Value::Null
        };
        assert_eq!(result["ttlMs"], ttl);
    }
}

#[test]
fn read_serves_sandbox_files_and_the_demo_resources_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    seed(&sandbox).expect("seed");
    fs::write(sandbox.join("with space.txt"), "spaced").expect("write");
    let root = root_uri(&sandbox);
    for (stateless, params) in in_both_eras(json!({})) {
        let mut params = params;
        params["uri"] = json!(format!("{root}/notes.txt"));
        let result = result_in_era(&sandbox, stateless, "resources/read", params.clone());
        assert_eq!(result["contents"][0]["text"], SEED_FILES[2].1);
        assert_eq!(result["contents"][0]["mimeType"], "text/plain");
        if stateless {
            assert_eq!(result["ttlMs"], 0);
            assert_eq!(result["cacheScope"], "private");
        }
        params["uri"] = json!(STATUS_URI);
        let result = result_in_era(&sandbox, stateless, "resources/read", params);
        let status = result["contents"][0]["text"].as_str().expect("status text");
        assert!(status.contains("5 file(s)"), "{status}");
    }
    assert_eq!(
        read_text(&sandbox, &format!("{root}/with%20space.txt")),
        "spaced"
    );
    assert_eq!(
        read_text(&sandbox, &format!("{root}/workspace/readme.txt")),
        SEED_FILES[0].1
    );
    let localhost = format!("file://localhost{}", &root["file://".len()..]);
    assert_eq!(
        read_text(&sandbox, &format!("{localhost}/README.md")),
        SEED_FILES[1].1
    );
}

#[test]
fn read_outside_the_sandbox_is_resource_not_found_and_never_reads_the_host() {
    let (dir, sandbox) = sandbox();
    fs::write(dir.path().join("outside.txt"), "HOST-SECRET").expect("outside file");
    // The tools map `/etc/passwd` into the sandbox; a resource URI names the host path, so it is not found.
    fs::create_dir_all(sandbox.join("etc")).expect("mkdir");
    fs::write(sandbox.join("etc/passwd"), "sandboxed").expect("write");
    fs::create_dir_all(sandbox.join("d")).expect("mkdir");
    let root = root_uri(&sandbox);
    let outside = fs::canonicalize(dir.path().join("outside.txt")).expect("canonical");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, sandbox.join("link")).expect("link");
    for uri in [
        "file:///etc/passwd".to_owned(),
        format!("file://{}", outside.display()),
        format!("{root}/../outside.txt"),
        format!("{root}/%2E%2E/outside.txt"),
        format!("{root}/missing.txt"),
        format!("{root}/d"),
        format!("{root}/link"),
        format!("{root}/bad%zz"),
        format!("{root}x/notes.txt"),
        root.clone(),
        "demo://nothing".to_owned(),
        "http://example.com/".to_owned(),
    ] {
        for (_, mut params) in in_both_eras(json!({})) {
            params["uri"] = json!(uri);
            let reply = only_reply(&sandbox, request(7, "resources/read", params));
            assert_eq!(reply["error"]["code"], -32002, "{uri}: {reply}");
            assert_eq!(reply["error"]["message"], "resource not found", "{uri}");
            assert_eq!(reply["error"]["data"]["uri"], uri.as_str());
            assert!(!reply.to_string().contains("HOST-SECRET"), "{uri}");
        }
    }
    assert_eq!(error_code(&sandbox, "resources/read", json!({})), -32602);
}

#[test]
fn an_unreadable_file_is_an_internal_error() {
    let (_dir, sandbox) = sandbox();
    fs::write(sandbox.join("bin"), [0xffu8, 0xfe]).expect("write");
    let uri = format!("{}/bin", root_uri(&sandbox));
    assert_eq!(
        error_code(&sandbox, "resources/read", json!({ "uri": uri })),
        -32603
    );
}

#[test]
fn subscribe_and_unsubscribe_are_acknowledged_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        for (stateless, mut params) in in_both_eras(json!({})) {
            params["uri"] = json!(STATUS_URI);
            let result = result_in_era(&sandbox, stateless, method, params);
            let fields = result.as_object().expect("object");
            assert_eq!(fields.len(), usize::from(stateless), "{result}");
        }
        assert_eq!(error_code(&sandbox, method, json!({"uri": 1})), -32602);
    }
}

#[test]
fn the_fake_credentials_are_what_the_dlp_redacts() {
    let (_dir, sandbox) = sandbox();
    seed(&sandbox).expect("seed");
    let expected = ["aws_access_key", "aws_secret_key"];
    let reply = only_reply(
        &sandbox,
        request(1, "resources/read", json!({ "uri": CREDENTIALS_URI })),
    );
    assert_eq!(dlp_kinds(&reply["result"]), expected, "{reply}");
    let text = reply["result"]["contents"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains(&format!("aws_access_key_id = {FAKE_AWS_ACCESS_KEY_ID}\n")));
    assert!(text.contains(&format!(
        "aws_secret_access_key = {FAKE_AWS_SECRET_ACCESS_KEY}\n"
    )));
    let reply = only_reply(
        &sandbox,
        request(
            2,
            "tools/call",
            json!({"name": "read_file", "arguments": {"path": "/workspace/deploy.env"}}),
        ),
    );
    assert_eq!(reply["result"]["isError"], false);
    assert_eq!(dlp_kinds(&reply["result"]), expected, "{reply}");
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains(&format!("AWS_ACCESS_KEY_ID={FAKE_AWS_ACCESS_KEY_ID}\n")));
    assert!(text.contains(&format!(
        "AWS_SECRET_ACCESS_KEY={FAKE_AWS_SECRET_ACCESS_KEY}\n"
    )));
    // The other starting files are clean, so only the leak is redacted.
    for (path, text) in SEED_FILES
        .iter()
        .filter(|(path, _)| *path != "workspace/deploy.env")
    {
        assert!(dlp_kinds(&json!({ "text": text })).is_empty(), "{path}");
    }
}

#[test]
fn seeding_writes_missing_files_and_keeps_existing_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = dir.path().join("new");
    fs::create_dir_all(&sandbox).expect("mkdir");
    fs::write(sandbox.join("notes.txt"), "mine").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("target.txt"), sandbox.join("README.md"))
        .expect("dangling link");
    seed(&sandbox).expect("seed");
    for (path, text) in SEED_FILES {
        match path {
            "notes.txt" => assert_eq!(
                fs::read_to_string(sandbox.join(path)).expect("seeded"),
                "mine"
            ),
            #[cfg(unix)]
            "README.md" => assert!(
                !dir.path().join("target.txt").exists(),
                "no write through a link"
            ),
            _ => assert_eq!(
                fs::read_to_string(sandbox.join(path)).expect("seeded"),
                text,
                "{path}"
            ),
        }
    }
    seed(&sandbox).expect("seeding twice is harmless");
}
