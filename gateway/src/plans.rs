//! The running dialplans, replaceable while calls go on.
//!
//! Readers take a cheap `Arc` snapshot ([`SharedPlans::get`]) and route with
//! it; a reload (SIGHUP) validates the whole folder first and swaps the
//! snapshot only when every file is valid. A call in progress keeps the
//! snapshot it was routed with; the next call sees the new one. A folder
//! with errors is refused with every error as `file:line:column` and the
//! running dialplans stay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use dialplans::Dialplans;

/// The current dialplans and the folder they come from.
pub struct SharedPlans {
    dir: PathBuf,
    current: RwLock<Arc<Dialplans>>,
}

impl SharedPlans {
    /// Wraps plans loaded from `dir`.
    pub fn new(dir: impl Into<PathBuf>, plans: Dialplans) -> Self {
        SharedPlans {
            dir: dir.into(),
            current: RwLock::new(Arc::new(plans)),
        }
    }

    /// The folder reloads read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A snapshot of the running dialplans.
    pub fn get(&self) -> Arc<Dialplans> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            // a writer panicked mid-swap: the Arc inside is still whole
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Re-reads the folder; on success swaps it in and returns (old, new).
    ///
    /// # Errors
    /// Every problem as `file:line:column: message`; the running plans stay.
    pub fn reload(&self) -> Result<(Arc<Dialplans>, Arc<Dialplans>), Vec<String>> {
        let new = Arc::new(
            Dialplans::load_dir(&self.dir)
                .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?,
        );
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *guard, Arc::clone(&new));
        Ok((old, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: 1\ntenant: initech\nnames:\n  \"\":\n    route: echo\n";

    /// A valid folder swaps in; a broken one is refused with file:line:column
    /// and the running plans stay.
    #[test]
    fn reload_swaps_only_valid_folders() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("initech.yaml"), GOOD).expect("write");
        let shared = SharedPlans::new(dir.path(), Dialplans::load_dir(dir.path()).expect("valid"));
        assert_eq!(shared.get().len(), 1);

        std::fs::write(
            dir.path().join("globex.yaml"),
            GOOD.replace("initech", "globex"),
        )
        .expect("write");
        let (old, new) = shared.reload().expect("valid folder");
        assert_eq!((old.len(), new.len()), (1, 2));
        assert_eq!(shared.get().len(), 2);

        std::fs::write(dir.path().join("broken.yaml"), "version: 1\ntenant: [x\n").expect("write");
        let errors = shared.reload().expect_err("broken folder refused");
        assert!(
            errors.iter().any(|e| e.contains("broken.yaml:3:1")),
            "{errors:?}"
        );
        assert_eq!(shared.get().len(), 2, "the running plans stay");
    }
}
