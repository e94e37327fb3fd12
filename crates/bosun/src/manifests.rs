//! Kubernetes manifests as users hand them to a command: YAML or JSON files (or `-` for
//! standard input) of one or more documents, `List`s expanded.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// Every object in the manifest file at `path` (`-`: standard input), in order.
pub fn objects(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document).with_context(|| format!("parsing {}", path.display()))?;
        match value {
            Value::Null => {}
            list if list["kind"] == "List" => objects.extend(list["items"].as_array().cloned().unwrap_or_default()),
            object => objects.push(object),
        }
    }
    Ok(objects)
}
