//! POSTs of the HTTP sinks through the proxy's one outbound client: the sink's URL with the kind's path, its
//! userinfo (if any) sent as Basic auth and never shown, a timeout per attempt, and the failure named.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request};

use super::attempt::Why;
use crate::config::Secret;
use crate::outbound::HttpClient;

/// Most bytes of an answer read (an Elasticsearch `_bulk` answer for a large batch is a few MB).
const MAX_ANSWER: usize = 32 * 1024 * 1024;
/// Most characters of an answer shown in errors and by the test endpoint.
pub const EXCERPT: usize = 512;

/// A sink's HTTP endpoint.
pub struct Endpoint {
    client: HttpClient,
    uri: hyper::Uri,
    /// `Basic …` from the URL's userinfo.
    basic: Option<HeaderValue>,
    timeout: Duration,
    /// Credentials to strip from anything shown (answers echo headers sometimes).
    secrets: Vec<String>,
}

/// An HTTP answer: its status and the first [`EXCERPT`] characters of its body, credentials removed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The whole body, for sinks that read it (`_bulk`).
    #[serde(skip)]
    pub full: Bytes,
}

impl Endpoint {
    /// `url` (validated at start) with `path` appended unless it already ends with it.
    pub fn new(
        client: HttpClient,
        url: &str,
        path: &str,
        timeout: Duration,
        token: Option<&Secret>,
    ) -> Result<Endpoint, String> {
        let mut url = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut secrets: Vec<String> = token.map(|t| t.expose().to_owned()).into_iter().collect();
        let basic = if !url.username().is_empty() || url.password().is_some() {
            use base64::Engine as _;
            let user = percent_decode(url.username());
            let password = url.password().map(percent_decode).unwrap_or_default();
            secrets.push(password.clone());
            let value =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            secrets.push(value.clone());
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(HeaderValue::from_str(&format!("Basic {value}")).map_err(|e| e.to_string())?)
        } else {
            None
        };
        if !path.is_empty() && !url.path().trim_end_matches('/').ends_with(path) {
            let joined = format!("{}{path}", url.path().trim_end_matches('/'));
            url.set_path(&joined);
        }
        secrets.retain(|s| !s.is_empty());
        let uri = url
            .as_str()
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        Ok(Endpoint {
            client,
            uri,
            basic,
            timeout,
            secrets,
        })
    }

    /// POSTs `body`; any answer is a `Reply` (the caller judges its status), a transport failure a `Why`.
    pub async fn post(
        &self,
        content_type: &'static str,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<Reply, Why> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, content_type)
            .header(USER_AGENT, concat!("toolgate/", env!("CARGO_PKG_VERSION")));
        if let Some(basic) = &self.basic {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        for (name, value) in headers {
            request = request.header(name, value.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Why::new("io", format!("building the request: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let text = self.scrub(&error_chain(&e));
                if e.is_connect() {
                    let refused = text.to_ascii_lowercase().contains("refused");
                    Why::new(if refused { "refused" } else { "connect" }, text)
                } else {
                    Why::new("io", text)
                }
            })?;
            let status = response.status().as_u16();
            let full = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    Why::new(
                        "io",
                        format!("reading the answer: {}", self.scrub(&e.to_string())),
                    )
                })?
                .to_bytes();
            Ok(Reply {
                status,
                body: self.scrub(&excerpt(&full)),
                full,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Why::new(
                    "timeout",
                    format!("no answer within {:?}", self.timeout),
                ))
            })
    }

    /// `text` with every credential of this sink replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[REDACTED]");
            }
        }
        text
    }
}

/// The first [`EXCERPT`] characters of an answer, as text.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(EXCERPT * 4)])
        .chars()
        .take(EXCERPT)
        .collect()
}

/// An error and its sources, `: `-joined (hyper's own message alone says only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `url` as it may be shown: no userinfo, no query (a query may carry a token), no fragment.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "(invalid)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_lose_userinfo_and_query() {
        assert_eq!(
            display_url("https://elastic:hunter2@es.example:9200/?api_key=abc"),
            "https://es.example:9200/"
        );
        assert_eq!(display_url("tcp://syslog:514"), "tcp://syslog:514");
    }

    #[test]
    fn the_kind_path_is_appended_once_and_userinfo_becomes_basic_auth() {
        let client = crate::outbound::client();
        let secret = Secret::new("tok".into());
        let e = Endpoint::new(
            client.clone(),
            "https://u:p%40ss@es:9200",
            "/_bulk",
            Duration::from_secs(1),
            Some(&secret),
        )
        .unwrap();
        assert_eq!(e.uri.to_string(), "https://es:9200/_bulk");
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode("u:p@ss");
        assert_eq!(
            e.basic.as_ref().unwrap().to_str().unwrap(),
            format!("Basic {expected}")
        );
        assert_eq!(
            e.scrub("echo tok and p@ss"),
            "echo [REDACTED] and [REDACTED]"
        );
        let e = Endpoint::new(
            client,
            "https://splunk:8088/services/collector/event",
            "/services/collector/event",
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(
            e.uri.to_string(),
            "https://splunk:8088/services/collector/event"
        );
    }
}
