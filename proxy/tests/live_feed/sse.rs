//! A raw client of the live feed: HTTP/1.1 over a plain socket, chunked decoding and SSE parsing, so a test
//! sees exactly the bytes toolgate sent and decides itself when (and whether) to read.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// One SSE event of the feed (comments are counted, not returned).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    pub fn seq(&self) -> i64 {
        self.data["seq"].as_i64().expect("an audit event has a seq")
    }

    pub fn chain(&self) -> &str {
        self.data["chain_id"]
            .as_str()
            .expect("an audit event has a chain_id")
    }
}

/// An open feed, or the answer that refused it.
pub struct Feed {
    stream: TcpStream,
    /// Bytes read but not yet decoded from the chunked body.
    raw: Vec<u8>,
    /// Decoded body bytes not yet parsed as SSE.
    body: Vec<u8>,
    ended: bool,
    pub status: u16,
    pub head: String,
    pub keepalives: usize,
}

/// How the feed is asked for.
#[derive(Default)]
pub struct Ask<'a> {
    /// The query string, without `?`.
    pub query: &'a str,
    pub last_event_id: Option<&'a str>,
    /// The socket's receive buffer, set before connecting (so the window it advertises stays small).
    pub receive_buffer: Option<u32>,
    /// The admin token presented; `admin.token` when unset.
    pub token: Option<&'a str>,
}

impl Feed {
    /// Sends the request and reads the response head (a refusal's body too).
    pub async fn open(addr: SocketAddr, ask: Ask<'_>) -> Feed {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = ask.receive_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = socket.connect(addr).await.unwrap();
        let mut request = format!(
            "GET /api/v1/audit/stream?{} HTTP/1.1\r\nhost: toolgate\r\nauthorization: Bearer {}\r\naccept: text/event-stream\r\n",
            ask.query,
            ask.token.unwrap_or(super::common::ADMIN)
        );
        if let Some(id) = ask.last_event_id {
            request.push_str(&format!("last-event-id: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut feed = Feed {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            ended: false,
            status: 0,
            head: String::new(),
            keepalives: 0,
        };
        let end = loop {
            if let Some(end) = find(&feed.raw, b"\r\n\r\n") {
                break end;
            }
            assert!(
                feed.fill().await,
                "the connection closed before a response head"
            );
        };
        feed.head = String::from_utf8_lossy(&feed.raw[..end]).into_owned();
        feed.raw.drain(..end + 4);
        feed.status = feed.head[9..12].parse().unwrap();
        feed
    }

    /// A feed the test expects to be served.
    pub async fn served(addr: SocketAddr, ask: Ask<'_>) -> Feed {
        let feed = Feed::open(addr, ask).await;
        assert_eq!(feed.status, 200, "{}", feed.head);
        assert!(
            feed.header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "{}",
            feed.head
        );
        feed
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The JSON body of a refusal (a `content-length` body).
    pub async fn refusal(mut self) -> Value {
        let length: usize = self
            .header("content-length")
            .expect("a refusal has a content-length")
            .parse()
            .unwrap();
        while self.raw.len() < length {
            assert!(self.fill().await, "the refusal's body was cut");
        }
        serde_json::from_slice(&self.raw[..length]).unwrap()
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut buf))
            .await
            .expect("the feed sent nothing for 20 s")
            .unwrap_or(0);
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Moves whole chunks from `raw` to `body`; notes the last chunk.
    fn dechunk(&mut self) {
        while let Some(line_end) = find(&self.raw, b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16)
                .unwrap_or_else(|_| panic!("not a chunk size: {size_text:?}"));
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next SSE event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            self.dechunk();
            while let Some(end) = find(&self.body, b"\n\n") {
                let block = String::from_utf8(self.body[..end].to_vec()).unwrap();
                self.body.drain(..end + 2);
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
            }
            if self.ended || !self.fill().await {
                assert!(self.body.is_empty(), "a partial SSE event at the end");
                return None;
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if line == ":keepalive" {
                self.keepalives += 1;
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "one data line per event: {block}");
                data = Some(serde_json::from_str(v).unwrap());
            } else {
                panic!("unexpected SSE line {line:?} in {block:?}");
            }
        }
        let event = event?;
        Some(SseEvent {
            id,
            event,
            data: data.expect("every event has data"),
        })
    }

    /// The next `n` events, each within 20 s.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next().await.expect("the feed ended early"));
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
