//! The console's assets: all embedded, served with the right headers, and written so the CSP holds and no
//! value can become markup.

use std::path::PathBuf;

use http_body_util::BodyExt;
use hyper::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use hyper::{HeaderMap, Method, StatusCode};

use super::*;

fn ui_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn get(path: &str) -> Response<Body> {
    answer(path, &Method::GET, &HeaderMap::new())
}

async fn body(resp: Response<Body>) -> Vec<u8> {
    resp.into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

#[test]
fn every_file_of_the_ui_folder_is_embedded_once() {
    let mut on_disk: Vec<String> = std::fs::read_dir(ui_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
    embedded.sort();
    assert_eq!(
        embedded, on_disk,
        "ASSETS must list exactly the files of proxy/ui/"
    );
}

#[test]
fn content_types_follow_the_file_kind() {
    for asset in ASSETS {
        let expected = match asset.name.rsplit('.').next().unwrap() {
            "html" => "text/html; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("no content type decided for .{other}"),
        };
        assert_eq!(asset.content_type, expected, "{}", asset.name);
    }
}

/// The CSP forbids inline script and style; this keeps the assets from needing them, and keeps every value
/// the console shows out of HTML parsing (agents choose tool names, targets and reasons).
#[test]
fn assets_use_no_inline_code_no_markup_sinks_and_no_network() {
    let sinks = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
        "DOMParser",
        "setTimeout('",
        "setTimeout(\"",
        ".style.cssText",
    ];
    for asset in ASSETS {
        let text = std::str::from_utf8(asset.bytes).unwrap();
        if asset.name.ends_with(".js") {
            for sink in sinks {
                assert!(!text.contains(sink), "{} uses {sink}", asset.name);
            }
        }
        // Nothing is fetched from another origin: the only absolute URL is the SVG namespace name.
        let without_namespace = text.replace("http://www.w3.org/2000/svg", "");
        for scheme in ["http://", "https://", "//cdn", "@import"] {
            assert!(
                !without_namespace.contains(scheme),
                "{} refers to {scheme}",
                asset.name
            );
        }
    }
    let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
    assert_eq!(ASSETS[0].name, "index.html");
    assert!(!html.contains("<style"), "no inline style element");
    assert!(!html.contains(" style="), "no style attributes");
    for tag in html.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(
            open.contains("src="),
            "every script is a file: <script{open}>"
        );
    }
    for handler in [
        " onclick=",
        " onload=",
        " onerror=",
        " onsubmit=",
        "javascript:",
    ] {
        assert!(!html.contains(handler), "index.html uses {handler}");
    }
}

#[tokio::test]
async fn the_root_serves_the_page_and_names_outside_the_table_are_404() {
    let page = get("/ui/");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(
        page.headers()["content-security-policy"],
        CONTENT_SECURITY_POLICY
    );
    assert_eq!(body(page).await, ASSETS[0].bytes);

    let redirect = get("/ui");
    assert_eq!(redirect.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(redirect.headers()[LOCATION], "/ui/");

    for path in [
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/ui//app.js",
        "/ui/APP.JS",
        "/uix",
    ] {
        let resp = get(path);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_matching_etag_is_answered_304_and_head_has_no_body() {
    let first = get("/ui/app.js");
    let etag = first.headers()[ETAG].clone();
    let mut headers = HeaderMap::new();
    headers.insert(IF_NONE_MATCH, etag.clone());
    let again = answer("/ui/app.js", &Method::GET, &headers);
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(body(again).await.is_empty());
    headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
    assert_eq!(
        answer("/ui/app.js", &Method::GET, &headers).status(),
        StatusCode::OK
    );
    assert_ne!(
        get("/ui/api.js").headers()[ETAG],
        etag,
        "each file has its own"
    );

    let head = answer("/ui/app.js", &Method::HEAD, &HeaderMap::new());
    assert_eq!(head.status(), StatusCode::OK);
    assert!(body(head).await.is_empty());

    let post = answer("/ui/", &Method::POST, &HeaderMap::new());
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}
