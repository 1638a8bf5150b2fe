//! Prompts and argument completion.

use super::super::seed::seed;
use super::resources::FAKE_AWS_ACCESS_KEY_ID;
use super::*;

fn message_text(result: &Value) -> String {
    let messages = result["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{result}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"]["type"], "text");
    messages[0]["content"]["text"]
        .as_str()
        .expect("text")
        .to_owned()
}

fn completions(
    sandbox: &Path,
    stateless: bool,
    reference: Value,
    name: &str,
    typed: &str,
) -> Vec<String> {
    let mut params = in_both_eras(json!({
        "ref": reference,
        "argument": {"name": name, "value": typed},
    }));
    let params = params[usize::from(stateless)].1.take();
    let result = result_in_era(sandbox, stateless, "completion/complete", params);
    let completion = &result["completion"];
    let values: Vec<String> = completion["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("string value").to_owned())
        .collect();
    assert_eq!(completion["total"], values.len(), "{result}");
    assert_eq!(completion["hasMore"], false);
    values
}

#[test]
fn list_names_both_prompts_with_their_arguments_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    for (stateless, params) in in_both_eras(json!({})) {
        let result = result_in_era(&sandbox, stateless, "prompts/list", params);
        let prompts = result["prompts"].as_array().expect("prompts");
        let shape: Vec<(&str, &str, bool)> = prompts
            .iter()
            .map(|p| {
                let argument = &p["arguments"][0];
                (
                    p["name"].as_str().expect("name"),
                    argument["name"].as_str().expect("argument name"),
                    argument["required"].as_bool().expect("required"),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [("summarise", "text", true), ("code_review", "path", true)]
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
fn get_fills_in_the_arguments_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    seed(&sandbox).expect("seed");
    for (stateless, params) in in_both_eras(json!({})) {
        let mut summarise = params.clone();
        summarise["name"] = json!("summarise");
        summarise["arguments"] = json!({"text": "The cat sat."});
        let result = result_in_era(&sandbox, stateless, "prompts/get", summarise);
        let text = message_text(&result);
        assert!(text.starts_with("Summarise the following text"), "{text}");
        assert!(text.ends_with("\n\nThe cat sat."), "{text}");

        // code_review carries the file, so a file with a secret makes a prompt that leaks it.
        let mut review = params;
        review["name"] = json!("code_review");
        review["arguments"] = json!({"path": "workspace/deploy.env"});
        let result = result_in_era(&sandbox, stateless, "prompts/get", review);
        let text = message_text(&result);
        assert!(
            text.starts_with("Review the file `workspace/deploy.env`"),
            "{text}"
        );
        assert!(text.contains(FAKE_AWS_ACCESS_KEY_ID), "{text}");
    }
}

#[test]
fn get_rejects_unknown_prompts_and_bad_arguments() {
    let (_dir, sandbox) = sandbox();
    for params in [
        json!({"name": "summarise"}),
        json!({"name": "summarise", "arguments": {"text": 1}}),
        json!({"name": "summarise", "arguments": "text"}),
        json!({"name": "code_review", "arguments": {"path": "missing.txt"}}),
        json!({"name": "code_review", "arguments": {"path": "../outside.txt"}}),
        json!({"name": "jailbreak", "arguments": {}}),
        json!({}),
    ] {
        assert_eq!(
            error_code(&sandbox, "prompts/get", params.clone()),
            -32602,
            "{params}"
        );
    }
}

#[test]
fn completion_offers_texts_paths_and_template_names_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    seed(&sandbox).expect("seed");
    let template = json!({
        "type": "ref/resource",
        "uri": format!("file://{}/{{name}}", fs::canonicalize(&sandbox).expect("canonical").display()),
    });
    let summarise = json!({"type": "ref/prompt", "name": "summarise"});
    let review = json!({"type": "ref/prompt", "name": "code_review"});
    for stateless in [false, true] {
        let texts = completions(&sandbox, stateless, summarise.clone(), "text", "meet");
        assert_eq!(texts.len(), 1);
        assert!(texts[0].starts_with("Meeting notes"), "{texts:?}");
        assert_eq!(
            completions(&sandbox, stateless, summarise.clone(), "text", "").len(),
            3
        );
        assert_eq!(
            completions(&sandbox, stateless, review.clone(), "path", "w"),
            ["workspace/deploy.env", "workspace/readme.txt"]
        );
        // The template's variable is one path segment: only root files, matched case-insensitively.
        assert_eq!(
            completions(&sandbox, stateless, template.clone(), "name", ""),
            ["README.md", "notes.txt"]
        );
        assert_eq!(
            completions(&sandbox, stateless, template.clone(), "name", "re"),
            ["README.md"]
        );
        assert!(completions(&sandbox, stateless, template.clone(), "other", "").is_empty());
    }
    for reference in [
        json!({"type": "ref/resource", "uri": "file:///etc/{name}"}),
        json!({"type": "ref/prompt", "name": "jailbreak"}),
        json!({"type": "ref/tool", "name": "echo"}),
    ] {
        let params = json!({"ref": reference, "argument": {"name": "name", "value": ""}});
        assert_eq!(
            error_code(&sandbox, "completion/complete", params),
            -32602,
            "{reference}"
        );
    }
    assert_eq!(
        error_code(&sandbox, "completion/complete", json!({"ref": summarise})),
        -32602
    );
}
