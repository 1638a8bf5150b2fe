//! The web console at `/ui/`: plain HTML, CSS and JavaScript from `proxy/ui/`, embedded in the binary at compile
//! time, so the console needs no files beside the binary and fetches nothing from the network.
//!
//! The page asks for the admin token and talks to the admin API (`/api/v1/…`) like any other client; serving it
//! needs no token. Every answer here carries a strict Content-Security-Policy ([`CONTENT_SECURITY_POLICY`]: only
//! this server's own scripts and styles, no inline code, no framing) because the console shows text that agents
//! and upstreams choose (tool names, targets, reasons): a value that slipped into markup still could not run.

use std::sync::OnceLock;

use hyper::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::response::{empty, full, Body};

/// Only same-origin scripts, styles, images and API calls; no inline script or style, no plugins, no forms
/// posting anywhere, no `<base>` rewriting and no framing by another site (clickjacking of the approve buttons).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file of `proxy/ui/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `proxy/ui/` (a test checks that none is missing); `/ui/` itself is `index.html`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("sse.js", JS),
    asset!("dom.js", JS),
    asset!("charts.js", JS),
    asset!("live.js", JS),
    asset!("overview.js", JS),
    asset!("feed.js", JS),
    asset!("event.js", JS),
    asset!("escalations.js", JS),
    asset!("agents.js", JS),
    asset!("runs.js", JS),
    asset!("tools.js", JS),
    asset!("alerts.js", JS),
    asset!("siem.js", JS),
    asset!("policy.js", JS),
];

/// Each asset's strong ETag (a prefix of its SHA-256), in [`ASSETS`] order, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..32]))
            .collect()
    })
}

/// Answers `/ui` and everything under `/ui/`: the console's files, 404 for any other name.
pub fn serve<B>(req: &Request<B>) -> Response<Body> {
    answer(req.uri().path(), req.method(), req.headers())
}

fn answer(path: &str, method: &Method, headers: &HeaderMap) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console is read with GET\n",
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let name = match path.strip_prefix("/ui") {
        // Relative asset URLs in the page resolve against `/ui/`, never `/`.
        Some("") => return redirect_to_root(),
        Some("/") => "index.html",
        Some(rest) => match rest.strip_prefix('/') {
            Some(name) => name,
            None => return plain(StatusCode::NOT_FOUND, "no such console file\n"),
        },
        None => return plain(StatusCode::NOT_FOUND, "no such console file\n"),
    };
    // An exact name from the embedded table: `..`, encoded slashes and the like name nothing.
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return plain(StatusCode::NOT_FOUND, "no such console file\n");
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, empty())
    } else if method == Method::HEAD {
        (StatusCode::OK, empty())
    } else {
        (StatusCode::OK, full(asset.bytes))
    };
    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, asset.content_type)
        .header(ETAG, etag.as_str())
        // Revalidate every time: the assets change with the binary, and a 304 costs one round trip.
        .header(CACHE_CONTROL, "no-cache");
    if status == StatusCode::OK {
        builder = builder.header(CONTENT_LENGTH, asset.bytes.len());
    }
    secure(builder.body(body).expect("valid response"))
}

fn redirect_to_root() -> Response<Body> {
    let resp = Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(LOCATION, "/ui/")
        .body(empty())
        .expect("valid response");
    secure(resp)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let resp = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(full(text))
        .expect("valid response");
    secure(resp)
}

/// The headers every console answer carries, whatever its status.
fn secure(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // For browsers that predate `frame-ancestors`.
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests;
