//! `syslog` (and the transport of `cef`): RFC 5424 messages over TCP with octet counting (RFC 6587 §3.4.1) or
//! one per UDP datagram (RFC 5426). For `syslog` the message is the event JSON.
//!
//! Syslog has no acknowledgement: over TCP an event counts as delivered once the kernel took the bytes (a
//! connection the receiver closed is noticed and re-opened before writing); over UDP once the datagram left.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use toolgate_engine::chain::AuditEvent;

use super::attempt::{Attempt, Why};

/// The identity fields of every message's header.
#[derive(Debug, Clone)]
pub struct Header {
    pub facility: u8,
    /// HOSTNAME: printable ASCII without spaces, or `-`.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
    /// PROCID.
    pub proc_id: String,
}

impl Header {
    pub fn new(facility: u8, app_name: &str) -> Header {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Header {
            facility,
            hostname: header_field(hostname.trim(), 255),
            app_name: header_field(app_name, 48),
            proc_id: std::process::id().to_string(),
        }
    }
}

/// A header field as RFC 5424 allows it: printable US-ASCII (33..=126), at most `max` characters, `-` if empty.
pub fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// The syslog severity of an event: warning for refusals and failures, error for events that carry one,
/// informational otherwise.
pub fn severity(event: &AuditEvent) -> u8 {
    if event.error.is_some() {
        3
    } else if matches!(
        event.event_type.as_str(),
        "policy_deny" | "policy_escalate" | "alert" | "siem_delivery" | "escalation_expired"
    ) || event.dlp_action.as_deref() == Some("block")
    {
        4
    } else {
        6
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, MSGID the event type.
pub fn message(header: &Header, event: &AuditEvent, msg: &str) -> String {
    let pri = u16::from(header.facility) * 8 + u16::from(severity(event));
    format!(
        "<{pri}>1 {} {} {} {} {} - {msg}",
        header_field(&event.timestamp, 32),
        header.hostname,
        header.app_name,
        header.proc_id,
        header_field(&event.event_type, 32),
    )
}

/// The event as `syslog` sends it: its JSON as the message.
pub fn event_message(header: &Header, event: &AuditEvent) -> String {
    message(
        header,
        event,
        &serde_json::to_string(event).unwrap_or_default(),
    )
}

/// Octet counting: `<length> <message>`, the length in bytes.
pub fn frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// Where messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// The connection to a syslog receiver, re-opened when it breaks. Only the sink's own delivery task and the
/// admin's test send use it; the lock is never taken on a request's path.
pub struct Transport {
    protocol: Protocol,
    /// `host:port`.
    address: String,
    timeout: Duration,
    tcp: tokio::sync::Mutex<Option<TcpStream>>,
}

impl Transport {
    pub fn new(protocol: Protocol, address: String, timeout: Duration) -> Transport {
        Transport {
            protocol,
            address,
            timeout,
            tcp: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends `messages`, in order; the whole batch is one write over TCP.
    pub async fn send(&self, messages: &[String]) -> (Attempt, String) {
        let sent = match tokio::time::timeout(self.timeout, self.send_inner(messages)).await {
            Ok(Ok(detail)) => return (Attempt::Ok, detail),
            Ok(Err(why)) => why,
            Err(_) => {
                *self.tcp.lock().await = None;
                Why::new("timeout", format!("no send within {:?}", self.timeout))
            }
        };
        let detail = sent.detail.clone();
        (Attempt::Retry(sent), detail)
    }

    async fn send_inner(&self, messages: &[String]) -> Result<String, Why> {
        match self.protocol {
            Protocol::Udp => {
                let socket = UdpSocket::bind(if self.address.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(|e| Why::new("io", format!("udp socket: {e}")))?;
                socket
                    .connect(&self.address)
                    .await
                    .map_err(|e| Why::new("connect", format!("udp: {e}")))?;
                for message in messages {
                    socket
                        .send(message.as_bytes())
                        .await
                        .map_err(|e| Why::new("io", format!("udp send: {e}")))?;
                }
                Ok(format!("{} datagrams sent over udp", messages.len()))
            }
            Protocol::Tcp => {
                let mut framed = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
                for message in messages {
                    frame(message, &mut framed);
                }
                let mut conn = self.tcp.lock().await;
                if let Some(stream) = conn.as_ref() {
                    // A receiver that closed the connection left it readable at end of file: writing into it
                    // would "succeed" into the void. Re-open instead.
                    let mut probe = [0u8; 1];
                    match stream.try_read(&mut probe) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        _ => *conn = None,
                    }
                }
                if conn.is_none() {
                    let stream = TcpStream::connect(&self.address).await.map_err(|e| {
                        let reason = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                            "refused"
                        } else {
                            "connect"
                        };
                        Why::new(reason, format!("tcp connect: {e}"))
                    })?;
                    let _ = stream.set_nodelay(true);
                    *conn = Some(stream);
                }
                let stream = conn.as_mut().expect("connected above");
                let written = async {
                    stream.write_all(&framed).await?;
                    stream.flush().await
                }
                .await;
                if let Err(e) = written {
                    *conn = None;
                    return Err(Why::new("io", format!("tcp write: {e}")));
                }
                Ok(format!(
                    "{} messages ({} bytes) written over tcp",
                    messages.len(),
                    framed.len()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            facility: 13,
            hostname: "gw-1".into(),
            app_name: "toolgate".into(),
            proc_id: "42".into(),
        }
    }

    #[test]
    fn messages_have_the_rfc_5424_header_and_the_event_json() {
        let event = super::super::tests::event(1);
        let message = event_message(&header(), &event);
        // facility 13 (log audit) * 8 + severity 6 (informational)
        let expected_head = "<110>1 2026-11-22T20:15:00.123456Z gw-1 toolgate 42 tool_call - ";
        assert!(message.starts_with(expected_head), "{message}");
        let json: serde_json::Value =
            serde_json::from_str(&message[expected_head.len()..]).unwrap();
        assert_eq!(json, serde_json::to_value(&event).unwrap());
        let mut denied = event.clone();
        denied.event_type = "policy_deny".into();
        assert!(event_message(&header(), &denied).starts_with("<108>1 "));
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        frame("héllo", &mut out);
        frame("x", &mut out);
        assert_eq!(out, "6 héllo1 x".as_bytes());
    }

    #[test]
    fn header_fields_are_printable_ascii() {
        assert_eq!(header_field("a b\u{7}c", 10), "abc");
        assert_eq!(header_field("", 10), "-");
        assert_eq!(header_field("abcdef", 3), "abc");
    }
}
