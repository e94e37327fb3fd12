//! Health: liveness (`/healthz`: the process answers) and readiness (`/readyz`: every
//! registered check passes, e.g. caches synced). Checks are named so that a failing probe says
//! which one failed, as the API server's own `/readyz` does.

use std::sync::{Arc, Mutex};

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// Named readiness checks; cheap to clone, clones share the checks.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Health")
    }
}

impl Health {
    /// Adds a readiness check.
    pub fn add_readiness_check(&self, name: impl Into<String>, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((name.into(), Arc::new(check)));
    }

    /// Removes the readiness checks called `name`.
    pub fn remove_readiness_check(&self, name: &str) {
        self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|(check, _)| check != name);
    }

    /// `Ok` when every check passes, else the names of those that fail.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let checks = self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let failing: Vec<String> = checks.into_iter().filter(|(_, check)| !check()).map(|(name, _)| name).collect();
        if failing.is_empty() { Ok(()) } else { Err(failing) }
    }

    /// The `/readyz` answer: status code and body.
    pub fn readyz(&self) -> (u16, String) {
        match self.readiness() {
            Ok(()) => (200, "ok".to_owned()),
            Err(failing) => {
                let lines: Vec<String> = failing.iter().map(|name| format!("[-]{name} failed")).collect();
                (503, format!("{}\nreadyz check failed", lines.join("\n")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn ready_only_when_every_check_passes() {
        let health = Health::default();
        assert_eq!(health.readyz().0, 200, "no checks");
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        health.add_readiness_check("caches", move || flag.load(Ordering::SeqCst));
        assert_eq!(health.readyz(), (503, "[-]caches failed\nreadyz check failed".to_owned()));
        synced.store(true, Ordering::SeqCst);
        assert_eq!(health.readyz().0, 200);
    }
}
