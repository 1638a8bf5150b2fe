//! Local SIEM receivers for the tests, on 127.0.0.1 only: an HTTP receiver whose answers the test scripts
//! (webhook, Splunk HEC, Datadog, Elasticsearch `_bulk`), a TCP syslog receiver that reads octet-counted
//! frames, and a UDP one that reads datagrams. Each records what arrived, in arrival order.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// The status the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the receiver answers request number `n` (0-based).
pub type Answerer = Arc<dyn Fn(&Received, usize) -> (u16, String) + Send + Sync>;

pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Received>>>,
    /// Replaceable while running (an outage that ends).
    pub answer: Arc<Mutex<Answerer>>,
    /// How long each answer waits (a slow sink).
    pub delay: Arc<Mutex<std::time::Duration>>,
}

impl HttpReceiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    pub fn set_answer(&self, answer: Answerer) {
        *self.answer.lock().unwrap() = answer;
    }
}

/// Answers 200 `{}` to everything.
pub fn ok() -> Answerer {
    Arc::new(|_, _| (200, "{}".into()))
}

pub async fn http(answer: Answerer) -> HttpReceiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
    let answer = Arc::new(Mutex::new(answer));
    let delay: Arc<Mutex<std::time::Duration>> = Arc::default();
    let (reqs, ans, wait) = (requests.clone(), answer.clone(), delay.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (reqs, ans, wait) = (reqs.clone(), ans.clone(), wait.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (reqs, ans, wait) = (reqs.clone(), ans.clone(), wait.clone());
                    async move {
                        let pause = *wait.lock().unwrap();
                        tokio::time::sleep(pause).await;
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let received = Received {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect(),
                            body,
                            status: 0,
                        };
                        let answerer = ans.lock().unwrap().clone();
                        // Answered and recorded under one lock, so `n` counts requests in arrival order.
                        let (status, body) = {
                            let mut all = reqs.lock().unwrap();
                            let (status, body) = answerer(&received, all.len());
                            all.push(Received { status, ..received });
                            (status, body)
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    HttpReceiver {
        addr,
        requests,
        answer,
        delay,
    }
}

/// An Elasticsearch `_bulk` endpoint: creates each document by `_id`, answers 409 for an existing one, and
/// answers 429 for an item whose `_id` `fail_once` holds the first time it sees it.
pub fn elasticsearch(
    docs: Arc<Mutex<HashMap<String, Value>>>,
    fail_once: Arc<Mutex<std::collections::HashSet<String>>>,
) -> Answerer {
    Arc::new(move |req, _| {
        let text = String::from_utf8_lossy(&req.body).to_string();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each _bulk line is JSON"))
            .collect();
        let mut items = Vec::new();
        let mut errors = false;
        for pair in lines.chunks(2) {
            let id = pair[0]["create"]["_id"]
                .as_str()
                .expect("create action with _id")
                .to_owned();
            let status = if fail_once.lock().unwrap().remove(&id) {
                errors = true;
                429
            } else {
                let mut docs = docs.lock().unwrap();
                if docs.contains_key(&id) {
                    errors = true;
                    409
                } else {
                    docs.insert(id.clone(), pair[1].clone());
                    201
                }
            };
            let error = (status != 201).then(|| serde_json::json!({"type": if status == 409 {"version_conflict_engine_exception"} else {"es_rejected_execution_exception"}}));
            items.push(serde_json::json!({"create": {"_index": pair[0]["create"]["_index"], "_id": id, "status": status, "error": error}}));
        }
        (
            200,
            serde_json::json!({"took": 1, "errors": errors, "items": items}).to_string(),
        )
    })
}

/// A TCP syslog receiver: reads octet-counted frames (`<len> <msg>`) from every connection.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl SyslogReceiver {
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

pub async fn syslog_tcp() -> SyslogReceiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = messages.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let out = out.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // Octet counting: digits, one space, exactly that many bytes.
                    while let Some(space) = buf.iter().position(|&b| b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[..space])
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or_else(|| {
                                panic!(
                                    "bad frame length {:?}",
                                    String::from_utf8_lossy(&buf[..space.min(20)])
                                )
                            });
                        if buf.len() < space + 1 + len {
                            break;
                        }
                        let msg =
                            String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).unwrap();
                        buf.drain(..space + 1 + len);
                        out.lock().unwrap().push(msg);
                    }
                }
            });
        }
    });
    SyslogReceiver { addr, messages }
}

pub async fn syslog_udp() -> SyslogReceiver {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = messages.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                return;
            };
            out.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    SyslogReceiver { addr, messages }
}

/// An RFC 5424 message split into its header fields and MSG.
#[derive(Debug)]
pub struct Rfc5424 {
    pub pri: u16,
    pub version: String,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub proc_id: String,
    pub msg_id: String,
    pub structured_data: String,
    pub msg: String,
}

pub fn parse_rfc5424(message: &str) -> Rfc5424 {
    let rest = message.strip_prefix('<').expect("starts with <PRI>");
    let (pri, rest) = rest.split_once('>').expect("PRI closes");
    let mut parts = rest.splitn(8, ' ');
    let mut next = || parts.next().expect("every header field").to_owned();
    Rfc5424 {
        pri: pri.parse().expect("PRI is a number"),
        version: next(),
        timestamp: next(),
        hostname: next(),
        app_name: next(),
        proc_id: next(),
        msg_id: next(),
        structured_data: next(),
        msg: next(),
    }
}
