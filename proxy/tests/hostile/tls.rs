//! HTTPS on the listener, attacked and exercised: plain HTTP to the TLS port, old protocol versions, a
//! certificate swapped on disk (and a broken one that must not take HTTPS down), and client certificates that
//! are missing or signed by the wrong CA. Certificates come from a throwaway CA made with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::common::{self, Options, Proxy};

/// A certificate authority for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate (PEM) and its key (PEM), valid for `localhost` and 127.0.0.1.
    fn leaf(&self, name: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// toolgate over TLS with the mock upstream as `web`; `tls_extra` adds lines to `[tls]`. Returns the folder of
/// the certificate files too.
async fn tls_proxy(
    ca: &Ca,
    tls_extra: &str,
) -> (Proxy, common::upstream::MockUpstream, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf("toolgate-1");
    std::fs::write(files.path().join("cert.pem"), cert).unwrap();
    std::fs::write(files.path().join("key.pem"), key).unwrap();
    let mock = common::upstream::start(Default::default()).await;
    let proxy = common::start(Options {
        demo: false,
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{tls_extra}\n",
            mock.addr,
            files.path().join("cert.pem").display(),
            files.path().join("key.pem").display(),
        ),
        ..Default::default()
    })
    .await;
    (proxy, mock, files)
}

/// A client that trusts `ca`, speaks only `versions`, offers `alpn`, and presents `identity` if given.
fn client(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    identity: Option<(String, String)>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

const ALL: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/1.1 request over an established TLS stream; the status and body, or why it failed.
async fn request(
    tls: TlsStream<TcpStream>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status, parts.headers, body))
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `GET /health` over a new TLS connection made by `connector`.
async fn health(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> Result<StatusCode, String> {
    let tls = connect(connector, addr).await.map_err(|e| e.to_string())?;
    request(tls, get("/health")).await.map(|(s, _, _)| s)
}

/// The leaf certificate a new connection is served.
async fn served_cert(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Vec<u8> {
    let tls = connect(connector, addr).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn an_mcp_call_over_https_works_and_names_the_https_base_url() {
    let ca = Ca::new("test CA");
    let (proxy, _mock, _files) = tls_proxy(&ca, "").await;
    let connector = client(&ca, ALL, &[b"http/1.1"], None);
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": { "text": "over tls" },
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } });
    let post = |token: Option<String>| {
        let mut req = Request::post("/mcp/web")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.body(Full::new(Bytes::from(call.to_string()))).unwrap()
    };
    let tls = connect(&connector, proxy.addr).await.unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN offers http/1.1"
    );
    let (status, _, body) = request(tls, post(Some(common::token("agent-tls", &["dev"]))))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"], "called echo",
        "{answer}"
    );
    // Agents are pointed at the https address they connected to.
    let tls = connect(&connector, proxy.addr).await.unwrap();
    let (status, headers, _) = request(tls, post(None)).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"https://{}/.well-known/",
            proxy.addr
        )),
        "{challenge}"
    );
}

#[tokio::test]
async fn http2_is_offered_by_alpn() {
    let ca = Ca::new("test CA");
    let (proxy, _mock, _files) = tls_proxy(&ca, "").await;
    let tls = connect(&client(&ca, ALL, &[b"h2", b"http/1.1"], None), proxy.addr)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let url = format!("https://localhost:{}/health", proxy.addr.port());
    crate::health_over_http2(tls, &url, 1).await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let ca = Ca::new("test CA");
    let (proxy, _mock, _files) = tls_proxy(&ca, "").await;
    let mut plain = TcpStream::connect(proxy.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("the plain connection is closed");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was served over the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        proxy.app.metrics.listener.tls_handshake_failures.get(),
        1,
        "the failed handshake is counted"
    );
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let ca = Ca::new("test CA");
    let (proxy, _mock, _files) = tls_proxy(&ca, "").await;
    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let tls = connect(&client(&ca, &[version], &[], None), proxy.addr)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
        assert_eq!(
            request(tls, get("/health")).await.unwrap().0,
            StatusCode::OK
        );
    }
    // rustls cannot speak TLS 1.1 or older, so a TLS 1.1 client is refused by construction; what is
    // asserted here is that the server's configuration names no other version than these two.
    let tls = connect(&client(&ca, ALL, &[], None), proxy.addr)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3),
        "the newest version wins"
    );
}

#[tokio::test]
async fn a_replaced_certificate_is_served_within_seconds_and_a_broken_one_is_not() {
    let ca = Ca::new("test CA");
    let (proxy, _mock, files) = tls_proxy(&ca, "").await;
    let connector = client(&ca, ALL, &[], None);
    let first = served_cert(&connector, proxy.addr).await;
    let cert_file: PathBuf = files.path().join("cert.pem");
    let key_file = files.path().join("key.pem");

    // A broken certificate on disk (a half-finished deploy) is refused: the old one keeps serving.
    std::fs::write(&cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    common::eventually(Duration::from_secs(8), || async {
        let errors = proxy
            .app
            .metrics
            .listener
            .tls_reloads
            .with_label_values(&["error"])
            .get();
        (errors >= 1).then_some(())
    })
    .await;
    assert_eq!(served_cert(&connector, proxy.addr).await, first);
    assert_eq!(health(&connector, proxy.addr).await, Ok(StatusCode::OK));

    // A new pair is picked up by new connections within a few seconds.
    let (cert, key) = ca.leaf("toolgate-2");
    write_pair(&cert_file, &cert, &key_file, &key);
    let want = der_of(&cert);
    common::eventually(Duration::from_secs(8), || async {
        (served_cert(&connector, proxy.addr).await == want).then_some(())
    })
    .await;
    assert_ne!(want, first);
}

/// Writes the key first: each file is replaced whole (rename), as a deploy tool does.
fn write_pair(cert_file: &Path, cert: &str, key_file: &Path, key: &str) {
    for (path, text) in [(key_file, key), (cert_file, cert)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

#[tokio::test]
async fn required_client_certificates_refuse_clients_without_one_from_the_ca() {
    let ca = Ca::new("server CA");
    let agents = Ca::new("agents CA");
    let stranger = Ca::new("stranger CA");
    let files = tempfile::tempdir().unwrap();
    let agents_ca = files.path().join("agents-ca.pem");
    std::fs::write(&agents_ca, agents.pem()).unwrap();
    let (proxy, _mock, _server_files) = tls_proxy(
        &ca,
        &format!(
            "client_ca_file = \"{}\"\nclient_auth = \"required\"",
            agents_ca.display()
        ),
    )
    .await;
    let anonymous = client(&ca, ALL, &[], None);
    assert!(
        health(&anonymous, proxy.addr).await.is_err(),
        "a client without a certificate is served"
    );
    let forged = client(&ca, ALL, &[], Some(stranger.leaf("agent-1")));
    assert!(
        health(&forged, proxy.addr).await.is_err(),
        "a certificate from another CA is accepted"
    );
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let agent = client(&ca, &[version], &[], Some(agents.leaf("agent-1")));
        assert_eq!(health(&agent, proxy.addr).await, Ok(StatusCode::OK));
    }
}

#[tokio::test]
async fn a_replaced_client_ca_takes_effect_within_seconds_and_a_broken_one_changes_nothing() {
    let ca = Ca::new("server CA");
    let old_agents = Ca::new("old agents CA");
    let new_agents = Ca::new("new agents CA");
    let files = tempfile::tempdir().unwrap();
    let agents_ca = files.path().join("agents-ca.pem");
    std::fs::write(&agents_ca, old_agents.pem()).unwrap();
    let (proxy, _mock, _server_files) = tls_proxy(
        &ca,
        &format!(
            "client_ca_file = \"{}\"\nclient_auth = \"required\"",
            agents_ca.display()
        ),
    )
    .await;
    let old_agent = client(&ca, ALL, &[], Some(old_agents.leaf("agent-1")));
    let new_agent = client(&ca, ALL, &[], Some(new_agents.leaf("agent-1")));
    assert_eq!(health(&old_agent, proxy.addr).await, Ok(StatusCode::OK));
    assert!(health(&new_agent, proxy.addr).await.is_err());
    let reloads = |result: &str| {
        proxy
            .app
            .metrics
            .listener
            .tls_reloads
            .with_label_values(&[result])
            .get()
    };

    // A broken CA file neither opens the door nor closes it.
    std::fs::write(&agents_ca, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    common::eventually(Duration::from_secs(8), || async {
        (reloads("error") >= 1).then_some(())
    })
    .await;
    assert_eq!(health(&old_agent, proxy.addr).await, Ok(StatusCode::OK));
    assert!(health(&new_agent, proxy.addr).await.is_err());

    // The rotated CA: the new agents get in, the old ones are out, without a restart.
    let tmp = agents_ca.with_extension("tmp");
    std::fs::write(&tmp, new_agents.pem()).unwrap();
    std::fs::rename(&tmp, &agents_ca).unwrap();
    common::eventually(Duration::from_secs(8), || async {
        (health(&new_agent, proxy.addr).await == Ok(StatusCode::OK)).then_some(())
    })
    .await;
    assert!(health(&old_agent, proxy.addr).await.is_err());
    assert!(reloads("ok") >= 1);
    let anonymous = client(&ca, ALL, &[], None);
    assert!(health(&anonymous, proxy.addr).await.is_err());
}

#[tokio::test]
async fn optional_client_certificates_admit_anonymous_clients_but_not_forged_ones() {
    let ca = Ca::new("server CA");
    let agents = Ca::new("agents CA");
    let stranger = Ca::new("stranger CA");
    let files = tempfile::tempdir().unwrap();
    let agents_ca = files.path().join("agents-ca.pem");
    std::fs::write(&agents_ca, agents.pem()).unwrap();
    let (proxy, _mock, _server_files) = tls_proxy(
        &ca,
        &format!(
            "client_ca_file = \"{}\"\nclient_auth = \"optional\"",
            agents_ca.display()
        ),
    )
    .await;
    assert_eq!(
        health(&client(&ca, ALL, &[], None), proxy.addr).await,
        Ok(StatusCode::OK)
    );
    let agent = client(&ca, ALL, &[], Some(agents.leaf("agent-1")));
    assert_eq!(health(&agent, proxy.addr).await, Ok(StatusCode::OK));
    let forged = client(&ca, ALL, &[], Some(stranger.leaf("agent-1")));
    assert!(health(&forged, proxy.addr).await.is_err());
}

#[test]
fn serve_with_tls_logs_ready_and_a_bad_key_stops_start_up_in_one_line() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf("toolgate-1");
    let (_, other_key) = ca.leaf("toolgate-2");
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    std::fs::write(dir.path().join("other-key.pem"), other_key).unwrap();
    let config = |key: &str| {
        let toml = format!(
            "listen = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{}\"\n[policy]\ndir = \"{}\"\n[audit]\ndatabase_url = \"sqlite://{}\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[[upstream]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
            common::SECRET,
            common::repo_root().join("policies").display(),
            dir.path().join("audit.db").display(),
            dir.path().join("cert.pem").display(),
            dir.path().join(key).display(),
        );
        let path = dir.path().join(format!("{key}.toml"));
        std::fs::write(&path, toml).unwrap();
        path
    };

    let bad = Command::new(bin)
        .args([
            "serve",
            "--config",
            config("other-key.pem").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("TLS") && err.contains("key"), "{err}");

    let mut child = Command::new(bin)
        .args(["serve", "--config", config("key.pem").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready: Value = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("toolgate ready within 30 s");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "toolgate ready" {
            break v;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready["tls"], true, "{ready}");
    assert!(
        ready["first_call"]
            .as_str()
            .unwrap()
            .contains("curl -s https://"),
        "{ready}"
    );
}
