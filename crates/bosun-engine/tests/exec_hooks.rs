//! Exec hooks on the real control plane: a sync hook that is a bash and jq script syncs a
//! parent as a webhook would, with only the environment it declares; a program that fails,
//! runs past its timeout (its process group killed, a background child too) or writes more
//! than the limit yields a SyncError and changes nothing; and exec hooks are refused unless
//! the engine enables them.

mod support;

use std::path::{Path, PathBuf};

use bosun_engine::ApplyStrategy;
use serde_json::{Value, json};
use support::{Fixture, eventually};

/// The test's hook: one ConfigMap per parent, as `support::config_map_per_parent` makes, with
/// the names of the variables the program sees in its status; `spec.data.mode` makes it fail,
/// hang (with a background child) or flood its output instead.
const SYNC: &str = r#"#!/bin/bash
set -euo pipefail
request=$(cat)
mode=$(jq -r '.parent.spec.data.mode // "ok"' <<<"$request")
echo "syncing $(jq -r .parent.metadata.name <<<"$request") in mode $mode" >&2
case "$mode" in
  fail) echo "cannot sync this one" >&2; exit 3 ;;
  hang) sleep 300 & echo $! > "$STATE/background"; sleep 300 ;;
  flood) head -c 1000000 /dev/zero | tr '\0' ' '; exit 0 ;;
esac
jq '{
  status: {observedChildren: (.children["ConfigMap.v1"] | length), phase: "Synced", environment: (env | keys)},
  children: [{apiVersion: "v1", kind: "ConfigMap",
              metadata: {name: "\(.parent.metadata.name)-config", labels: .parent.spec.selector.matchLabels},
              data: .parent.spec.data}]
}' <<<"$request"
"#;

/// Writes the hook into a directory of its own; its path and the directory.
fn write_hook() -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("bosun-exec-hook-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("sync.sh");
    std::fs::write(&hook, SYNC).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    (hook, dir)
}

fn exec_hook(hook: &Path, state: &Path) -> Value {
    json!({ "exec": {
        "command": [hook.to_str().unwrap()],
        "env": [{ "name": "GREETING", "value": "hello" }, { "name": "STATE", "value": state.to_str().unwrap() }],
        "timeout": "3s",
    } })
}

#[tokio::test]
async fn an_exec_hook_syncs_a_parent_with_only_the_environment_it_declares() {
    let fixture = Fixture::with_config(ApplyStrategy::DynamicApply, true, |config| config.exec_hooks = true).await;
    let (hook, state) = write_hook();
    fixture.composite_controller(json!({ "hooks": { "sync": exec_hook(&hook, &state) } })).await;
    fixture.parent("p", json!({ "data": { "greeting": "hi" } })).await;

    let config_maps = fixture.config_maps();
    let child = eventually("the child", async || config_maps.get_opt("p-config").await.unwrap()).await;
    assert_eq!(child.data.unwrap()["greeting"], "hi");
    let parent = eventually("the status", async || {
        let parent = fixture.parents().get("p").await.unwrap();
        (parent.data["status"]["observedChildren"] == 1).then_some(parent)
    })
    .await;
    let environment: Vec<String> = serde_json::from_value(parent.data["status"]["environment"].clone()).unwrap();
    assert!(environment.contains(&"GREETING".to_owned()) && environment.contains(&"PATH".to_owned()), "{environment:?}");
    // Only what bash itself sets besides: nothing of bosun's own environment.
    let unexpected: Vec<&String> =
        environment.iter().filter(|name| !["GREETING", "STATE", "PATH", "PWD", "SHLVL", "_"].contains(&name.as_str())).collect();
    assert!(unexpected.is_empty(), "the program saw {unexpected:?}");
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn a_failing_hanging_or_flooding_program_changes_nothing() {
    let fixture = Fixture::with_config(ApplyStrategy::DynamicApply, true, |config| {
        config.exec_hooks = true;
        config.max_hook_response_bytes = 64 * 1024;
    })
    .await;
    let (hook, state) = write_hook();
    fixture.composite_controller(json!({ "hooks": { "sync": exec_hook(&hook, &state) } })).await;
    fixture.parent("p", json!({ "data": { "mode": "ok" } })).await;
    let config_maps = fixture.config_maps();
    eventually("the child", async || config_maps.get_opt("p-config").await.unwrap()).await;

    let expectations = [
        ("fail", "sync.sh exited with status 3; its standard error ends: \"syncing p in mode fail\\ncannot sync this one\""),
        ("hang", "no response within the timeout of 3s; its process group was killed"),
        ("flood", "the response is too large: more than 65536 bytes"),
    ];
    for (mode, message) in expectations {
        support::set_mode(&fixture, mode).await;
        support::assert_refused_and_unchanged(&fixture, message).await;
    }
    // The hanging program's background child went with its process group.
    let background: i32 = std::fs::read_to_string(state.join("background")).unwrap().trim().parse().unwrap();
    eventually("the background child killed", async || (!bosun_testenv::is_running(background as u32)).then_some(())).await;
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn exec_hooks_are_refused_unless_enabled() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let (hook, state) = write_hook();
    let name = fixture.composite_controller(json!({ "hooks": { "sync": exec_hook(&hook, &state) } })).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("exec hooks are off") && message.contains("--exec-hooks"), "{message}");
    fixture.parent("p", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_none(), "nothing ran");
    std::fs::remove_dir_all(&state).unwrap();
}
