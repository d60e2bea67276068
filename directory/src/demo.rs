//! Demo data: the `acme` tenant used by the example dialplan and the tests.
//!
//! Created only when the gateway starts with `--demo`; never in production
//! data paths.

use std::time::SystemTime;

use crate::error::{DirectoryError, Result};
use crate::names::{DisplayName, LoginName, SubName, TenantId};
use crate::store::Directory;

impl Directory {
    /// Creates, if absent, tenant `acme` ("Acme Corporation") with
    /// `acme/sales` and `acme/support`. Safe to call on every start.
    pub async fn seed_demo(&self, now: SystemTime) -> Result<TenantId> {
        let acme = LoginName::parse("acme")?;
        let tenant = match self.tenant_by_name(&acme).await {
            Ok(t) => t.id,
            Err(DirectoryError::NotFound) => {
                self.create_tenant(&acme, &DisplayName::parse("Acme Corporation")?, now)
                    .await?
            }
            Err(e) => return Err(e),
        };
        let subs = [
            ("sales", "Acme Sales", "New orders and quotes"),
            ("support", "Acme Support", "Help with existing orders"),
        ];
        for (sub, display, description) in subs {
            let r = self
                .add_subname(
                    tenant,
                    &SubName::parse(sub)?,
                    &DisplayName::parse(display)?,
                    description,
                )
                .await;
            match r {
                Ok(_) | Err(DirectoryError::NameTaken) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(tenant)
    }
}
