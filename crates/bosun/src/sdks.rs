//! bosun's hook SDKs, compiled into the binary, so that a hook written on one runs wherever
//! bosun put it: `bosun dev` writes them beside the example hooks, `bosun new` into projects.

use std::path::Path;

use anyhow::Context;

/// The Python SDK's modules (`sdk/python/src/bosun_hooks`), by file name.
pub const PYTHON: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../../sdk/python/src/bosun_hooks/__init__.py")),
    ("admission.py", include_str!("../../../sdk/python/src/bosun_hooks/admission.py")),
    ("children.py", include_str!("../../../sdk/python/src/bosun_hooks/children.py")),
    ("protocol.py", include_str!("../../../sdk/python/src/bosun_hooks/protocol.py")),
    ("server.py", include_str!("../../../sdk/python/src/bosun_hooks/server.py")),
    ("testing.py", include_str!("../../../sdk/python/src/bosun_hooks/testing.py")),
];

/// The Node.js SDK's package (`sdk/typescript`), by file name.
pub const NODE: &[(&str, &str)] = &[
    ("package.json", include_str!("../../../sdk/typescript/package.json")),
    ("index.js", include_str!("../../../sdk/typescript/index.js")),
    ("index.d.ts", include_str!("../../../sdk/typescript/index.d.ts")),
];

/// Writes `files` (paths relative to `dir`, and contents) into `dir`, creating directories.
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(dir: &Path, files: impl IntoIterator<Item = (P, C)>) -> anyhow::Result<()> {
    for (name, contents) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every module of the Python SDK is compiled in: one left out breaks every hook that
    /// imports the package where `bosun dev` or `bosun new` wrote it (its `__init__` imports
    /// them all).
    #[test]
    fn every_python_module_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/python/src/bosun_hooks");
        let mut modules: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".py"))
            .collect();
        modules.sort();
        let mut embedded: Vec<String> = super::PYTHON.iter().map(|(name, _)| (*name).to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, modules, "crates/bosun/src/sdks.rs PYTHON lists every module of sdk/python/src/bosun_hooks");
    }
}
