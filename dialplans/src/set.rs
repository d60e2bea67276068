//! The set of all loaded dialplans, keyed by tenant, and loading it from a
//! directory.
//!
//! A set is immutable. Reloading builds a new set and returns it only when
//! every file validates, so the caller swaps it in atomically or keeps the
//! old one: a bad edit never takes a running company off the air.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{DialplanError, ErrorKind};
use crate::plan::Dialplan;

/// All loaded dialplans, one per tenant.
#[derive(Debug, Clone, Default)]
pub struct Dialplans {
    // Arc so that a reload that keeps most tenants, and callers that hold
    // one plan across a call, share instead of copying.
    plans: BTreeMap<String, Arc<Dialplan>>,
}

impl Dialplans {
    /// Loads every `*.yaml` / `*.yml` file in `dir` (not recursive), in file-name order.
    ///
    /// # Errors
    ///
    /// Every problem in every file, each with file and position; nothing is
    /// returned unless all files are valid.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Dialplans, Vec<DialplanError>> {
        let dir = dir.as_ref();
        let io = |e: std::io::Error| {
            vec![DialplanError::new(
                dir.display().to_string(),
                None,
                ErrorKind::Io(e.to_string()),
            )]
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if is_yaml && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((name, text)),
                Err(e) => errors.push(DialplanError::new(name, None, ErrorKind::Io(e.to_string()))),
            }
        }
        match Self::from_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str()))) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Builds a set from `(file name, text)` pairs, e.g. from an admin API upload.
    ///
    /// # Errors
    ///
    /// Every problem in every source, and tenants defined twice.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Dialplans, Vec<DialplanError>> {
        let mut plans: BTreeMap<String, Arc<Dialplan>> = BTreeMap::new();
        let mut errors = Vec::new();
        for (file, text) in sources {
            match Dialplan::parse(file, text) {
                Ok(plan) => {
                    let tenant = plan.tenant.as_str().to_owned();
                    if let Some(first) = plans.get(&tenant) {
                        errors.push(DialplanError::new(
                            file,
                            Some(plan.tenant_at),
                            ErrorKind::DuplicateTenant {
                                tenant,
                                first_file: first.file.clone(),
                            },
                        ));
                    } else {
                        plans.insert(tenant, Arc::new(plan));
                    }
                }
                Err(errs) => errors.extend(errs),
            }
        }
        if errors.is_empty() {
            Ok(Dialplans { plans })
        } else {
            Err(errors)
        }
    }

    /// Loads `dir` again for a running gateway.
    ///
    /// `self` is never changed: on success the caller swaps the returned set
    /// in; on error it keeps serving `self` and shows the errors to the admin.
    ///
    /// # Errors
    ///
    /// As [`Dialplans::load_dir`].
    pub fn reload(&self, dir: impl AsRef<Path>) -> Result<Dialplans, Vec<DialplanError>> {
        // Everything is rebuilt: validation is cheap, and comparing plans
        // would have to see through redacted secrets.
        let _running = self;
        Self::load_dir(dir)
    }

    /// The dialplan of `tenant`.
    pub fn get(&self, tenant: &str) -> Option<&Dialplan> {
        self.plans.get(tenant).map(|p| &**p)
    }

    /// The dialplan of `tenant`, shared.
    pub fn get_arc(&self, tenant: &str) -> Option<Arc<Dialplan>> {
        self.plans.get(tenant).cloned()
    }

    /// Tenants in name order.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    /// Whether no tenant is loaded.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}
