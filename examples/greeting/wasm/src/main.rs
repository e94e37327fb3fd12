//! The Greeting controller's sync hook as a WebAssembly module (WASI preview 1): bosun runs it
//! in its own process once per sync, the request on standard input, the response on standard
//! output — the same JSON as `../hook.py` answers over HTTP, without a server. One ConfigMap
//! per Greeting, carrying its message; the status counts the ConfigMaps observed.

use std::io::Read;

use serde_json::{Value, json};

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("the request on standard input");
    let request: Value = serde_json::from_str(&input).expect("the request is JSON");
    let greeting = &request["parent"];
    let name = greeting["metadata"]["name"].as_str().unwrap_or_default();
    let observed = request["children"]["ConfigMap.v1"].as_object().map_or(0, |children| children.len());
    let response = json!({
        "status": { "configMaps": observed },
        "children": [{
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": format!("{name}-greeting") },
            "data": { "message": greeting["spec"]["message"] },
        }],
    });
    print!("{response}");
}
