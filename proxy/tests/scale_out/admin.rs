//! The admin's side of several instances on one PostgreSQL: a policy reload asked of one instance reloads the
//! others, and a tenant's admin on one instance decides its own tenant's escalations raised on another, and no
//! other tenant's.

use super::*;

/// A policy set that allows every call, and one that denies every call.
const ALLOW_ALL: &str =
    "package toolgate\ndecision := {\"result\": \"allow\", \"policy_id\": \"peer.allow\", \"reason\": \"allow\"}\n";
const DENY_ALL: &str =
    "package toolgate\ndecision := {\"result\": \"deny\", \"policy_id\": \"peer.deny\", \"reason\": \"deny\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_asked_of_one_instance_reloads_every_instance() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Each instance's `policy.dir` is a symbolic link to one generation of the policies: switching the link to
    // the next generation changes no file in the folder its watcher watches, so only a reload loads it.
    let generation = |name: &str, policy: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("main.rego"), policy).unwrap();
        path
    };
    let (first, second) = (generation("gen1", ALLOW_ALL), generation("gen2", DENY_ALL));
    let nodes: Vec<Instance> = ["i0", "i1"]
        .iter()
        .map(|name| {
            let link = dir.path().join(format!("{name}-policies"));
            std::os::unix::fs::symlink(&first, &link).unwrap();
            let path = config(dir.path(), name, &schema.url, name, &web(&mock));
            let toml = std::fs::read_to_string(&path).unwrap().replace(
                &common::repo_root().join("policies").display().to_string(),
                &link.display().to_string(),
            );
            std::fs::write(&path, toml).unwrap();
            serve_ready(&path)
        })
        .collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    let policy = |node: &Instance| {
        let url = node.url("/api/v1/policy");
        async move {
            let auth = format!("Bearer {ADMIN}");
            send(Method::GET, &url, &[("authorization", &auth)], "")
                .await
                .json()
        }
    };
    let old = policy(b).await["revision"].clone();
    let agent = token("alice", &[]);
    assert!(has_result(&echo(&b.url("/mcp/web"), &agent, None).await));

    for name in ["i0", "i1"] {
        let tmp = dir.path().join(format!("{name}-policies.new"));
        std::os::unix::fs::symlink(&second, &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join(format!("{name}-policies"))).unwrap();
    }
    // Past the watcher's debounce: nothing reloaded by itself.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(policy(b).await["revision"], old);

    let deadline = Instant::now() + Duration::from_secs(1);
    let reloaded = admin(a, Method::POST, "/api/v1/policy/reload").await;
    assert_eq!(reloaded.status, StatusCode::OK, "{:?}", reloaded.body);
    let new = reloaded.json()["revision"].clone();
    assert_ne!(new, old);
    let on_b = loop {
        let seen = policy(b).await;
        if seen["revision"] == new {
            break seen;
        }
        assert!(Instant::now() < deadline, "B still serves {seen}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(on_b["last_reload"]["trigger"], "peer", "{on_b}");
    let denied = echo(&b.url("/mcp/web"), &agent, None).await;
    assert_eq!(denied.error_code(), Some(-31001), "{:?}", denied.message());
    // A reloaded once, on the API; its own announcement did not reload it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(policy(a).await["last_reload"]["trigger"], "api");
    drop(nodes);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_on_one_instance_decides_its_own_escalations_raised_on_another_only() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut extra = web(&mock);
    for tenant in ["t1", "t2"] {
        let file = dir.path().join(format!("{tenant}.admin-token"));
        std::fs::write(&file, format!("{tenant}-admin-token-of-the-replicas")).unwrap();
        extra.push_str(&format!(
            "[[admin.tenant_tokens]]\ntenant = \"{tenant}\"\ntoken_file = \"{}\"\n",
            file.display()
        ));
    }
    let nodes = instances(dir.path(), &schema, 2, &extra);
    let (a, b) = (&nodes[0], &nodes[1]);
    let settings = toolgate::auth::AuthSettings {
        hs256_secret: Some(common::SECRET.into()),
        ..Default::default()
    };

    // The same agent id in two tenants escalates a write on A.
    let mut raised = Vec::new();
    for tenant in ["t1", "t2"] {
        let jwt = toolgate::auth::mint_hs256(
            &settings,
            "writer",
            Some(tenant),
            &[],
            Duration::from_secs(3600),
        )
        .unwrap();
        let answer = Agent::at(a.url("/mcp/web"), jwt)
            .call_stateless(
                "write_file",
                json!({ "path": "/workspace/x.txt", "content": tenant }),
            )
            .await;
        assert_eq!(answer.error_code(), Some(-31002), "{:?}", answer.message());
        let id = &answer.message()["error"]["data"]["escalation_id"];
        raised.push(id.as_str().unwrap().to_owned());
    }
    let as_tenant = |tenant: &str, method: Method, path: String| {
        let auth = format!("Bearer {tenant}-admin-token-of-the-replicas");
        let url = b.url(&path);
        async move { send(method, &url, &[("authorization", &auth)], "").await }
    };

    // On B, t1's admin sees t1's escalation alone, cannot decide t2's, and decides its own.
    let listed = as_tenant(
        "t1",
        Method::GET,
        "/api/v1/escalations?status=pending".into(),
    )
    .await;
    let ids: Vec<Value> = listed.json()["escalations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!(raised[0])]);
    for verb in ["approve", "deny"] {
        let path = format!("/api/v1/escalations/{}/{verb}", raised[1]);
        assert_eq!(
            as_tenant("t1", Method::POST, path).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let own = format!("/api/v1/escalations/{}/approve", raised[0]);
    let approved = as_tenant("t1", Method::POST, own).await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    assert_eq!(approved.json()["decided_by"], "admin:t1");
    let pending = admin(a, Method::GET, "/api/v1/escalations?status=pending").await;
    let pending = pending.json()["escalations"].clone();
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending[0]["id"], raised[1].as_str());
    drop(nodes);
    schema.drop_now().await;
}
