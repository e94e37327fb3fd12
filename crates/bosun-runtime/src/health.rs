//! Health: liveness (`/healthz`: the process answers) and readiness (`/readyz`: every
//! registered check passes, e.g. caches synced). Checks are named so that a failing probe says
//! which one failed, as the API server's own `/readyz` does.

use std::sync::{Arc, Mutex};

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// Named readiness checks; cheap to clone, clones share the checks. A check is the leader's
/// (a controller's: only a replica that runs it is judged by it) or every replica's (a
/// server every replica runs, such as admission's: judged on a standby too).
#[derive(Clone, Default)]
pub struct Health {
    /// (name, check, whether every replica runs what it checks).
    checks: Arc<Mutex<Vec<(String, Check, bool)>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Health")
    }
}

impl Health {
    /// Adds a readiness check of what runs while leading.
    pub fn add_readiness_check(&self, name: impl Into<String>, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((name.into(), Arc::new(check), false));
    }

    /// Adds a readiness check of what every replica runs, leading or not.
    pub fn add_replica_check(&self, name: impl Into<String>, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((name.into(), Arc::new(check), true));
    }

    /// Removes the readiness checks called `name`.
    pub fn remove_readiness_check(&self, name: &str) {
        self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|(check, _, _)| check != name);
    }

    /// `Ok` when every check passes (with `standby`, every replica's check), else the names
    /// of those that fail.
    fn failing(&self, standby: bool) -> Result<(), Vec<String>> {
        let checks = self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let failing: Vec<String> =
            checks.into_iter().filter(|(_, check, replica)| (*replica || !standby) && !check()).map(|(name, _, _)| name).collect();
        if failing.is_empty() { Ok(()) } else { Err(failing) }
    }

    /// `Ok` when every check passes, else the names of those that fail.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        self.failing(false)
    }

    /// The `/readyz` answer of a leading replica (or one without leader election): status
    /// code and body.
    pub fn readyz(&self) -> (u16, String) {
        Self::answer(self.failing(false))
    }

    /// The `/readyz` answer of a standby: only every replica's checks count.
    pub fn readyz_standby(&self) -> (u16, String) {
        match self.failing(true) {
            Ok(()) => (200, "ok (standby)".to_owned()),
            failing => Self::answer(failing),
        }
    }

    fn answer(readiness: Result<(), Vec<String>>) -> (u16, String) {
        match readiness {
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

    /// A standby is judged only by what every replica runs: a server it must have started
    /// before the Service routes to it, not the controllers it runs once it leads.
    #[test]
    fn a_standby_is_ready_when_every_replicas_checks_pass() {
        let health = Health::default();
        health.add_readiness_check("controllers", || false);
        assert_eq!(health.readyz_standby(), (200, "ok (standby)".to_owned()));
        let serving = Arc::new(AtomicBool::new(false));
        let flag = serving.clone();
        health.add_replica_check("admission-server", move || flag.load(Ordering::SeqCst));
        assert_eq!(health.readyz_standby(), (503, "[-]admission-server failed\nreadyz check failed".to_owned()));
        serving.store(true, Ordering::SeqCst);
        assert_eq!(health.readyz_standby().0, 200);
        assert_eq!(health.readyz().0, 503, "leading, the controllers count too");
    }
}
