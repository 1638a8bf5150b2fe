//! The stdio upstream against small Python MCP servers that behave and misbehave.

use super::*;
use std::collections::HashSet;

/// A small MCP server: answers initialize, echoes requests, and has methods that misbehave.
const ECHO_SERVER: &str = r#"
import json, os, sys, time

def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()

initialized = False
first_method = None
while True:
    line = sys.stdin.readline()
    if not line:
        break
    message = json.loads(line)
    method = message.get("method")
    if first_method is None:
        first_method = method
    if method == "notifications/initialized":
        initialized = True
    if method is None or "id" not in message:
        continue
    rid = message["id"]
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo", "version": "1"},
            "clientName": message["params"]["clientInfo"]["name"]}})
    elif method == "never":
        pass
    elif method == "crash":
        sys.stderr.write("crashing on purpose\n")
        sys.stderr.flush()
        sys.exit(3)
    elif method == "state":
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "first_method": first_method, "initialized": initialized,
            "env": os.environ.get("TOOLGATE_STDIO_TEST"), "pid": os.getpid()}})
    elif method == "noise":
        sys.stdout.write("this is not json\n")
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        send({"jsonrpc": "2.0", "id": 987654321, "result": {}})
        send({"jsonrpc": "2.0", "id": rid, "result": {"after_noise": True}})
    elif method == "ask":
        send({"jsonrpc": "2.0", "id": "srv-1", "method": "sampling/createMessage", "params": {}})
        reply = json.loads(sys.stdin.readline())
        send({"jsonrpc": "2.0", "id": rid, "result": {"reply": reply}})
    elif method == "flood":
        n = message["params"]["n"]
        for i in range(n):
            send({"jsonrpc": "2.0", "id": "flood-%d" % i, "method": "roots/list"})
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "result": {"seen_id": rid, "params": message.get("params")}})
if os.environ.get("TOOLGATE_STDIO_LINGER"):
    time.sleep(3600)
"#;

const TIMEOUT: Duration = Duration::from_secs(10);

fn echo_command() -> Vec<String> {
    ["python3", "-u", "-c", ECHO_SERVER]
        .iter()
        .map(|part| part.to_string())
        .collect()
}

async fn start_echo() -> Arc<StdioUpstream> {
    let env = [("TOOLGATE_STDIO_TEST".to_owned(), "from-env".to_owned())];
    match StdioUpstream::start("echo", &echo_command(), &env, TIMEOUT).await {
        Ok(upstream) => upstream,
        Err(err) => panic!("the echo server did not start: {err}"),
    }
}

fn call(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn handshake_caches_initialize_result_and_sends_initialized() {
    let upstream = start_echo().await;
    let init = upstream.initialize_result();
    assert_eq!(init["serverInfo"]["name"], "echo");
    assert_eq!(init["protocolVersion"], PROTOCOL_VERSION);
    assert_eq!(init["clientName"], "toolgate");
    assert!(upstream.is_up());
    assert_eq!(upstream.restarts(), 0);

    let state = upstream
        .request(call(json!(7), "state", json!({})), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(state["result"]["first_method"], "initialize");
    assert_eq!(state["result"]["initialized"], true);
    assert_eq!(state["result"]["env"], "from-env");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_colliding_ids_get_their_own_answers() {
    let upstream = start_echo().await;
    let mut tasks = JoinSet::new();
    for n in 0..50u64 {
        let upstream = upstream.clone();
        tasks.spawn(async move {
            let response = upstream
                .request(call(json!(1), "echo", json!({"n": n})), TIMEOUT)
                .await
                .unwrap();
            (n, response)
        });
    }
    let mut upstream_ids = HashSet::new();
    let mut answered = 0;
    while let Some(joined) = tasks.join_next().await {
        let (n, response) = joined.unwrap();
        assert_eq!(response["id"], json!(1));
        assert_eq!(response["result"]["params"]["n"], json!(n));
        let seen = response["result"]["seen_id"].as_u64().unwrap();
        assert!(upstream_ids.insert(seen), "upstream id {seen} reused");
        answered += 1;
    }
    assert_eq!(answered, 50);
}

#[tokio::test]
async fn string_ids_are_restored_and_upstream_ids_are_numbers() {
    let upstream = start_echo().await;
    let response = upstream
        .request(call(json!("agent-a:1"), "echo", json!({})), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response["id"], "agent-a:1");
    assert!(response["result"]["seen_id"].is_u64());
}

#[tokio::test]
async fn a_request_that_is_never_answered_times_out_and_is_forgotten() {
    let upstream = start_echo().await;
    let outcome = upstream
        .request(
            call(json!(1), "never", json!({})),
            Duration::from_millis(200),
        )
        .await;
    assert!(matches!(outcome, Err(StdioError::Timeout)), "{outcome:?}");
    let link = upstream.shared.current_link().unwrap();
    assert_eq!(link.pending.len(), 0);

    let response = upstream
        .request(call(json!(2), "echo", json!({})), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response["id"], 2);
}

#[tokio::test]
async fn a_crash_fails_in_flight_requests_then_the_child_is_restarted() {
    let upstream = start_echo().await;
    let outcome = upstream
        .request(call(json!(1), "crash", json!({})), TIMEOUT)
        .await;
    assert!(
        matches!(outcome, Err(StdioError::Unavailable)),
        "{outcome:?}"
    );
    assert!(!upstream.is_up());

    let deadline = Instant::now() + TIMEOUT;
    let response = loop {
        match upstream
            .request(call(json!(2), "echo", json!({})), TIMEOUT)
            .await
        {
            Ok(response) => break response,
            Err(StdioError::Unavailable) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("the child did not come back: {err}"),
        }
    };
    assert_eq!(response["id"], 2);
    assert!(upstream.is_up());
    assert_eq!(upstream.restarts(), 1);
    assert_eq!(upstream.initialize_result()["serverInfo"]["name"], "echo");
}

#[tokio::test]
async fn a_request_of_the_child_with_no_agent_in_flight_is_refused() {
    let upstream = start_echo().await;
    let response = upstream
        .request(call(json!(1), "ask", json!({})), TIMEOUT)
        .await
        .unwrap();
    let reply = &response["result"]["reply"];
    assert_eq!(reply["id"], "srv-1");
    assert_eq!(reply["error"]["code"], -31001);
    assert_eq!(reply["error"]["data"]["reason"], "no_request");
}

fn requester(owner: &str, delivers: bool) -> Option<Requester> {
    Some(Requester {
        owner: Owner::new(owner),
        delivers,
    })
}

async fn next(exchange: &mut Exchange) -> Inbound {
    tokio::time::timeout(TIMEOUT, exchange.next())
        .await
        .expect("the exchange moves on")
        .unwrap()
}

fn routed(inbound: Inbound) -> Value {
    match inbound {
        Inbound::Request(request) => request,
        other => panic!("not a routed request: {other:?}"),
    }
}

fn answered(inbound: Inbound) -> Value {
    match inbound {
        Inbound::Response(response) => response,
        other => panic!("not the answer: {other:?}"),
    }
}

#[tokio::test]
async fn a_request_of_the_child_reaches_the_one_agent_in_flight_and_only_it_may_answer() {
    let upstream = start_echo().await;
    let mut exchange = upstream
        .exchange(
            call(json!("a-1"), "ask", json!({})),
            requester("a", true),
            TIMEOUT,
        )
        .await
        .unwrap();
    let request = routed(next(&mut exchange).await);
    assert_eq!(request["method"], "sampling/createMessage");
    // The agent sees toolgate's id, never the child's.
    let toolgate_id = request["id"].as_u64().expect("a toolgate id");
    let answer = json!({"jsonrpc": "2.0", "id": toolgate_id, "result": {"text": "hi"}});
    // Another agent cannot answer it, nor can the agent answer an id it was never given.
    let stolen = upstream.answer(&Owner::new("b"), answer.clone()).await;
    assert!(matches!(stolen, Err(StdioError::NotAwaited)), "{stolen:?}");
    let mut guessed = answer.clone();
    guessed["id"] = json!(toolgate_id + 1000);
    let guessed = upstream.answer(&Owner::new("a"), guessed).await;
    assert!(
        matches!(guessed, Err(StdioError::NotAwaited)),
        "{guessed:?}"
    );
    upstream
        .answer(&Owner::new("a"), answer.clone())
        .await
        .unwrap();
    // Answered once.
    let again = upstream.answer(&Owner::new("a"), answer).await;
    assert!(matches!(again, Err(StdioError::NotAwaited)), "{again:?}");
    let response = answered(next(&mut exchange).await);
    assert_eq!(response["id"], "a-1");
    assert_eq!(response["result"]["reply"]["id"], "srv-1", "{response}");
    assert_eq!(response["result"]["reply"]["result"]["text"], "hi");
    let link = upstream.shared.current_link().unwrap();
    assert_eq!(link.pending.delivered(), 0);
}

#[tokio::test]
async fn a_request_of_the_child_with_two_agents_in_flight_is_refused_and_both_are_told() {
    let upstream = start_echo().await;
    let mut holding = upstream
        .exchange(
            call(json!(1), "never", json!({})),
            requester("a", true),
            TIMEOUT,
        )
        .await
        .unwrap();
    // The child reads "never" before "ask": both are in flight when the request comes.
    let mut asking = upstream
        .exchange(
            call(json!(2), "ask", json!({})),
            requester("b", true),
            TIMEOUT,
        )
        .await
        .unwrap();
    let notice = Unroutable {
        method: "sampling/createMessage".into(),
        reason: UnroutableReason::Ambiguous,
    };
    match next(&mut asking).await {
        Inbound::Unroutable(told) => assert_eq!(told, notice),
        other => panic!("{other:?}"),
    }
    let response = answered(next(&mut asking).await);
    assert_eq!(response["result"]["reply"]["error"]["code"], -31001);
    assert_eq!(
        response["result"]["reply"]["error"]["data"]["reason"],
        "ambiguous"
    );
    match next(&mut holding).await {
        Inbound::Unroutable(told) => assert_eq!(told, notice),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_request_of_the_child_goes_only_to_a_request_that_can_deliver_it() {
    let upstream = start_echo().await;
    let mut listing = upstream
        .exchange(
            call(json!(1), "ask", json!({})),
            requester("a", false),
            TIMEOUT,
        )
        .await
        .unwrap();
    match next(&mut listing).await {
        Inbound::Unroutable(told) => assert_eq!(told.reason, UnroutableReason::NoStream),
        other => panic!("{other:?}"),
    }
    let response = answered(next(&mut listing).await);
    assert_eq!(
        response["result"]["reply"]["error"]["data"]["reason"],
        "no_stream"
    );

    // The same agent with a list and a call in flight: the call carries it.
    let _list = upstream
        .exchange(
            call(json!(2), "never", json!({})),
            requester("a", false),
            TIMEOUT,
        )
        .await
        .unwrap();
    let mut calling = upstream
        .exchange(
            call(json!(3), "ask", json!({})),
            requester("a", true),
            TIMEOUT,
        )
        .await
        .unwrap();
    let request = routed(next(&mut calling).await);
    let answer =
        json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -1, "message": "no"}});
    upstream.answer(&Owner::new("a"), answer).await.unwrap();
    let response = answered(next(&mut calling).await);
    assert_eq!(response["result"]["reply"]["error"]["code"], -1);
}

#[tokio::test]
async fn an_unanswered_request_of_the_child_is_refused_after_the_timeout_and_its_exchange_waits() {
    // Long enough for python to start and handshake under load; the answer deadline is the same.
    let within = Duration::from_millis(1500);
    let upstream = StdioUpstream::start("echo", &echo_command(), &[], within)
        .await
        .unwrap();
    let started = Instant::now();
    let mut exchange = upstream
        .exchange(
            call(json!(1), "ask", json!({})),
            requester("a", true),
            within,
        )
        .await
        .unwrap();
    let request = routed(next(&mut exchange).await);
    // The exchange's own clock stops while the agent owes the answer; the child gets -31004 instead.
    let response = answered(next(&mut exchange).await);
    assert!(started.elapsed() >= within);
    assert_eq!(response["result"]["reply"]["id"], "srv-1");
    assert_eq!(response["result"]["reply"]["error"]["code"], -31004);
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "result": {}});
    let late = upstream.answer(&Owner::new("a"), late).await;
    assert!(matches!(late, Err(StdioError::NotAwaited)), "{late:?}");
}

#[tokio::test]
async fn a_child_that_floods_one_exchange_with_requests_is_refused_beyond_the_queue() {
    let upstream = start_echo().await;
    let mut exchange = upstream
        .exchange(
            call(json!(1), "flood", json!({"n": 40})),
            requester("a", true),
            TIMEOUT,
        )
        .await
        .unwrap();
    // Nobody reads the exchange while the child floods it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delivered = 0;
    loop {
        match next(&mut exchange).await {
            Inbound::Response(_) => break,
            Inbound::Request(_) => delivered += 1,
            Inbound::Unroutable(told) => panic!("{told:?}"),
            Inbound::Notification(n) => panic!("{n:?}"),
        }
    }
    assert_eq!(delivered, 16);
    let link = upstream.shared.current_link().unwrap();
    assert_eq!(link.pending.delivered(), 16);
}

#[tokio::test]
async fn noise_on_stdout_does_not_disturb_answers() {
    let upstream = start_echo().await;
    let response = upstream
        .request(call(json!(5), "noise", json!({})), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response["id"], 5);
    assert_eq!(response["result"]["after_noise"], true);
}

#[tokio::test]
async fn notifications_reach_the_child_and_malformed_messages_are_refused() {
    let upstream = start_echo().await;
    upstream
        .notify(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}}))
        .await
        .unwrap();
    let with_id = upstream
        .notify(json!({"jsonrpc": "2.0", "id": 1, "method": "x"}))
        .await;
    assert!(matches!(with_id, Err(StdioError::Protocol(_))));
    let without_id = upstream
        .request(json!({"jsonrpc": "2.0", "method": "x"}), TIMEOUT)
        .await;
    assert!(matches!(without_id, Err(StdioError::Protocol(_))));
    let null_id = upstream
        .request(
            json!({"jsonrpc": "2.0", "id": null, "method": "x"}),
            TIMEOUT,
        )
        .await;
    assert!(matches!(null_id, Err(StdioError::Protocol(_))));
    // The child is still serving after all that.
    let response = upstream
        .request(call(json!(3), "echo", json!({})), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response["id"], 3);
}

#[tokio::test]
async fn shutdown_closes_the_upstream() {
    let upstream = start_echo().await;
    upstream.shutdown();
    assert!(!upstream.is_up());
    let outcome = upstream
        .request(call(json!(1), "echo", json!({})), TIMEOUT)
        .await;
    assert!(matches!(outcome, Err(StdioError::Closed)), "{outcome:?}");
}

/// Whether a process is still running (a zombie awaiting its reaper counts as gone).
#[cfg(target_os = "linux")]
fn running(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_last_handle_kills_the_child() {
    // Lingers after stdin closes, so only a kill can end it.
    let env = [("TOOLGATE_STDIO_LINGER".to_owned(), "1".to_owned())];
    let upstream = StdioUpstream::start("linger", &echo_command(), &env, TIMEOUT)
        .await
        .unwrap();
    let state = upstream
        .request(call(json!(1), "state", json!({})), TIMEOUT)
        .await
        .unwrap();
    let pid = state["result"]["pid"].as_u64().unwrap();
    assert!(running(pid));
    drop(upstream);
    let deadline = Instant::now() + TIMEOUT;
    while running(pid) {
        assert!(Instant::now() < deadline, "child {pid} survived the drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let command = vec!["/nonexistent/toolgate-no-such-program".to_owned()];
    let outcome = StdioUpstream::start("missing", &command, &[], TIMEOUT).await;
    assert!(matches!(outcome, Err(StdioError::Spawn(_))));
    let empty = StdioUpstream::start("empty", &[], &[], TIMEOUT).await;
    assert!(matches!(empty, Err(StdioError::Spawn(_))));
}

#[tokio::test]
async fn a_child_that_never_handshakes_times_out_at_start() {
    let command: Vec<String> = ["sh", "-c", "cat > /dev/null"]
        .iter()
        .map(|part| part.to_string())
        .collect();
    let outcome = StdioUpstream::start("silent", &command, &[], Duration::from_millis(300)).await;
    assert!(matches!(outcome, Err(StdioError::Timeout)));
}

#[tokio::test]
async fn a_child_that_exits_during_the_handshake_is_reported() {
    let command: Vec<String> = ["sh", "-c", "exit 4"]
        .iter()
        .map(|part| part.to_string())
        .collect();
    let outcome = StdioUpstream::start("quitter", &command, &[], TIMEOUT).await;
    assert!(
        matches!(outcome, Err(StdioError::Protocol(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn lines_are_bounded_and_the_rest_of_a_long_line_is_skipped() {
    let input: &[u8] = b"short\nthis line is too long\r\nok\nlast";
    let mut reader = BufReader::with_capacity(4, input);
    let mut line = Vec::new();
    let mut seen = Vec::new();
    loop {
        let read = read_line_bounded(&mut reader, &mut line, 8).await.unwrap();
        if read == LineRead::Eof {
            break;
        }
        seen.push((read, String::from_utf8(line.clone()).unwrap()));
    }
    assert_eq!(
        seen,
        vec![
            (LineRead::Line, "short\n".to_owned()),
            (LineRead::TooLong, String::new()),
            (LineRead::Line, "ok\n".to_owned()),
            (LineRead::Line, "last".to_owned()),
        ]
    );
}

#[test]
fn previews_are_truncated_on_character_boundaries() {
    let long = "é".repeat(500);
    let shown = preview(long.as_bytes());
    assert_eq!(shown.chars().count(), PREVIEW_CHARS);
    assert!(shown.chars().all(|c| c == 'é'));
}
