//! Tenants (companies) with their sub-names and SIP trunks, users and their
//! devices, presence (last seen), and resolving a dialled `Name` to what it
//! names.

use std::time::SystemTime;

use crate::accounts::{User, user_from_row};
use crate::error::{DirectoryError, Result, ResultExt};
use crate::names::{
    DeviceId, DisplayName, LoginName, Name, SubName, SubNameId, TenantId, TrunkId, UserId,
};
use crate::search::{self, EntryKind};
use crate::store::{Directory, from_millis, millis};

/// A company that owns a name and connects its PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Row id.
    pub id: TenantId,
    /// The company's login name (`acme-bank`).
    pub login: LoginName,
    /// Display name ("Acme Bank").
    pub display_name: DisplayName,
    /// Creation time.
    pub created_at: SystemTime,
}

/// One `company/sub` entry of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubNameEntry {
    /// Row id.
    pub id: SubNameId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The part after `/`.
    pub sub: SubName,
    /// Display name ("Acme Bank Support").
    pub display_name: DisplayName,
    /// Free text shown in search results.
    pub description: String,
}

/// How a trunk reaches the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkKind {
    /// We REGISTER to the PBX with digest credentials.
    Registration,
    /// The PBX and we trust each other's addresses.
    Ip,
}

/// SIP transport of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
}

macro_rules! text_enum {
    ($t:ty, $field:literal, $($v:ident = $s:literal),*) => {
        impl $t {
            /// The stored text form.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            fn from_db(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err(DirectoryError::Invalid { field: $field, reason: "unknown stored value" }),
                }
            }
        }
    };
}
text_enum!(
    TrunkKind,
    "trunk kind",
    Registration = "registration",
    Ip = "ip"
);
text_enum!(
    Transport,
    "transport",
    Udp = "udp",
    Tcp = "tcp",
    Tls = "tls"
);
text_enum!(
    DeviceKind,
    "device kind",
    Webrtc = "webrtc",
    Sip = "sip",
    Push = "push"
);

/// A trunk to add; see [`Trunk`] for the fields' meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrunk {
    /// Registration or IP trust.
    pub kind: TrunkKind,
    /// Registrar or proxy host name or address.
    pub host: String,
    /// Port, 1-65535.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// Digest user name.
    pub username: Option<String>,
    /// Digest password, stored in clear because the digest client needs it.
    pub password: Option<String>,
    /// Digest realm, if fixed.
    pub realm: Option<String>,
    /// Addresses (IP or CIDR text) allowed to send calls on this trunk.
    pub allowed_peers: Vec<String>,
    /// Lower is tried first.
    pub priority: i32,
    /// Disabled trunks are kept but not used.
    pub enabled: bool,
}

impl NewTrunk {
    fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(DirectoryError::Invalid { field, reason });
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return bad("host", "must be a non-empty host without spaces");
        }
        if self.port == 0 {
            return bad("port", "must be 1-65535");
        }
        if self.kind == TrunkKind::Registration && self.username.as_deref().unwrap_or("").is_empty()
        {
            return bad("username", "registration trunks need a user name");
        }
        if self
            .allowed_peers
            .iter()
            .any(|p| p.is_empty() || p.contains([',', ' ']))
        {
            return bad(
                "allowed_peers",
                "entries must be non-empty without ',' or spaces",
            );
        }
        Ok(())
    }
}

/// A stored trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Row id.
    pub id: TrunkId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The trunk settings.
    pub config: NewTrunk,
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A browser or app with WebRTC.
    Webrtc,
    /// A SIP phone or softphone registered to the gateway.
    Sip,
    /// A push-notification endpoint only.
    Push,
}

/// One of a user's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Row id.
    pub id: DeviceId,
    /// Owner.
    pub user: UserId,
    /// User-chosen label ("laptop").
    pub label: String,
    /// What it is.
    pub kind: DeviceKind,
    /// Push token, for push devices.
    pub push_token: Option<String>,
    /// Last time it was online.
    pub last_seen: Option<SystemTime>,
}

/// What a dialled name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A messenger user.
    User(User),
    /// A tenant, or one of its sub-names.
    Tenant {
        /// The company.
        tenant: Tenant,
        /// The sub-name entry, for `company/sub`.
        sub: Option<SubNameEntry>,
    },
    /// A built-in target such as `echo`.
    System(LoginName),
}

type TenantRow = (i64, String, String, i64);
type TrunkRow = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i32,
    bool,
);
type DeviceRow = (i64, i64, String, String, Option<String>, Option<i64>);

fn tenant_from_row((id, login, display, created): TenantRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId(id),
        login: LoginName::system(&login)?,
        display_name: DisplayName::parse(&display)?,
        created_at: from_millis(created),
    })
}

fn trunk_from_row(r: TrunkRow) -> Result<Trunk> {
    let (id, tenant, kind, host, port, transport, username, password, realm, peers, prio, en) = r;
    Ok(Trunk {
        id: TrunkId(id),
        tenant: TenantId(tenant),
        config: NewTrunk {
            kind: TrunkKind::from_db(&kind)?,
            host,
            port: u16::try_from(port).map_err(|_| DirectoryError::Invalid {
                field: "port",
                reason: "stored port out of range",
            })?,
            transport: Transport::from_db(&transport)?,
            username,
            password,
            realm,
            allowed_peers: peers
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            priority: prio,
            enabled: en,
        },
    })
}

fn device_from_row((id, user, label, kind, push, seen): DeviceRow) -> Result<Device> {
    Ok(Device {
        id: DeviceId(id),
        user: UserId(user),
        label,
        kind: DeviceKind::from_db(&kind)?,
        push_token: push,
        last_seen: seen.map(from_millis),
    })
}

const TENANT_COLS: &str = "SELECT id, name, display_name, created_at FROM tenants";
const TRUNK_COLS: &str = "SELECT id, tenant_id, kind, host, port, transport, username, password, \
     realm, allowed_peers, priority, enabled FROM trunks";

impl Directory {
    /// Creates a tenant owning the login `name`.
    ///
    /// # Errors
    /// `NameTaken` if a user, tenant or system entry has the name.
    pub async fn create_tenant(
        &self,
        name: &LoginName,
        display: &DisplayName,
        now: SystemTime,
    ) -> Result<TenantId> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO names (name, kind, created_at) VALUES (?, 'tenant', ?)")
            .bind(name.as_str())
            .bind(millis(now))
            .execute(&mut *tx)
            .await
            .name_taken_on_unique()?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tenants (name, display_name, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(name.as_str())
        .bind(display.as_str())
        .bind(millis(now))
        .fetch_one(&mut *tx)
        .await
        .name_taken_on_unique()?;
        search::index_entry(&mut tx, name.as_str(), EntryKind::Tenant, display.as_str()).await?;
        tx.commit().await?;
        Ok(TenantId(id))
    }

    /// A tenant by id.
    pub async fn tenant(&self, id: TenantId) -> Result<Tenant> {
        let sql = sqlx::AssertSqlSafe(format!("{TENANT_COLS} WHERE id = ?"));
        let row: Option<TenantRow> = sqlx::query_as(sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        tenant_from_row(row.ok_or(DirectoryError::NotFound)?)
    }

    /// A tenant by its login name.
    pub async fn tenant_by_name(&self, name: &LoginName) -> Result<Tenant> {
        let sql = sqlx::AssertSqlSafe(format!("{TENANT_COLS} WHERE name = ?"));
        let row: Option<TenantRow> = sqlx::query_as(sql)
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        tenant_from_row(row.ok_or(DirectoryError::NotFound)?)
    }

    /// All tenants, by name.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let sql = sqlx::AssertSqlSafe(format!("{TENANT_COLS} ORDER BY name"));
        let rows: Vec<TenantRow> = sqlx::query_as(sql).fetch_all(&self.pool).await?;
        rows.into_iter().map(tenant_from_row).collect()
    }

    /// Adds `tenant/sub`.
    ///
    /// # Errors
    /// `NameTaken` if the tenant already has the sub-name, `NotFound` if the
    /// tenant does not exist.
    pub async fn add_subname(
        &self,
        tenant: TenantId,
        sub: &SubName,
        display: &DisplayName,
        description: &str,
    ) -> Result<SubNameId> {
        let mut tx = self.write_tx().await?;
        let login: Option<String> = sqlx::query_scalar("SELECT name FROM tenants WHERE id = ?")
            .bind(tenant.0)
            .fetch_optional(&mut *tx)
            .await?;
        let login = login.ok_or(DirectoryError::NotFound)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tenant_subnames (tenant_id, sub, display_name, description) \
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(tenant.0)
        .bind(sub.as_str())
        .bind(display.as_str())
        .bind(description)
        .fetch_one(&mut *tx)
        .await
        .name_taken_on_unique()?;
        let path = format!("{login}/{sub}");
        search::index_entry(&mut tx, &path, EntryKind::SubName, display.as_str()).await?;
        tx.commit().await?;
        Ok(SubNameId(id))
    }

    /// Removes `tenant/sub`; `NotFound` if it does not exist.
    pub async fn remove_subname(&self, tenant: TenantId, sub: &SubName) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let login: Option<String> = sqlx::query_scalar(
            "DELETE FROM tenant_subnames WHERE tenant_id = ? AND sub = ? \
             RETURNING (SELECT name FROM tenants WHERE id = tenant_id)",
        )
        .bind(tenant.0)
        .bind(sub.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let login = login.ok_or(DirectoryError::NotFound)?;
        search::unindex_entry(&mut tx, &format!("{login}/{sub}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A tenant's sub-names, by sub-name.
    pub async fn list_subnames(&self, tenant: TenantId) -> Result<Vec<SubNameEntry>> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, sub, display_name, description FROM tenant_subnames \
             WHERE tenant_id = ? ORDER BY sub",
        )
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, sub, display, description)| {
                Ok(SubNameEntry {
                    id: SubNameId(id),
                    tenant,
                    sub: SubName::parse(&sub)?,
                    display_name: DisplayName::parse(&display)?,
                    description,
                })
            })
            .collect()
    }

    /// Adds a trunk to a tenant.
    ///
    /// # Errors
    /// `Invalid` for a bad field, `NotFound` for an unknown tenant.
    pub async fn add_trunk(&self, tenant: TenantId, t: &NewTrunk) -> Result<TrunkId> {
        t.validate()?;
        let r = sqlx::query_scalar(
            "INSERT INTO trunks (tenant_id, kind, host, port, transport, username, password, \
             realm, allowed_peers, priority, enabled) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(tenant.0)
        .bind(t.kind.as_str())
        .bind(t.host.trim())
        .bind(i64::from(t.port))
        .bind(t.transport.as_str())
        .bind(&t.username)
        .bind(&t.password)
        .bind(&t.realm)
        .bind(t.allowed_peers.join(","))
        .bind(t.priority)
        .bind(t.enabled)
        .fetch_one(&self.pool)
        .await;
        match r {
            Ok(id) => Ok(TrunkId(id)),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(DirectoryError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A tenant's trunks, lowest priority value first.
    pub async fn list_trunks(&self, tenant: TenantId) -> Result<Vec<Trunk>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{TRUNK_COLS} WHERE tenant_id = ? ORDER BY priority, id"
        ));
        let rows: Vec<TrunkRow> = sqlx::query_as(sql)
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(trunk_from_row).collect()
    }

    /// A trunk by id.
    pub async fn trunk(&self, id: TrunkId) -> Result<Trunk> {
        let sql = sqlx::AssertSqlSafe(format!("{TRUNK_COLS} WHERE id = ?"));
        let row: Option<TrunkRow> = sqlx::query_as(sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        trunk_from_row(row.ok_or(DirectoryError::NotFound)?)
    }

    /// Enables or disables a trunk.
    pub async fn set_trunk_enabled(&self, id: TrunkId, enabled: bool) -> Result<()> {
        let r = sqlx::query("UPDATE trunks SET enabled = ? WHERE id = ?")
            .bind(enabled)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// Deletes a trunk.
    pub async fn remove_trunk(&self, id: TrunkId) -> Result<()> {
        let r = sqlx::query("DELETE FROM trunks WHERE id = ?")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> Result<User> {
        let row = sqlx::query_as(
            "SELECT id, name, display_name, created_at, last_seen FROM users WHERE id = ?",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        user_from_row(row.ok_or(DirectoryError::NotFound)?)
    }

    /// A user by login.
    pub async fn user_by_login(&self, login: &LoginName) -> Result<User> {
        let row = sqlx::query_as(
            "SELECT id, name, display_name, created_at, last_seen FROM users WHERE name = ?",
        )
        .bind(login.as_str())
        .fetch_optional(&self.pool)
        .await?;
        user_from_row(row.ok_or(DirectoryError::NotFound)?)
    }

    /// Changes a user's display name (and what search finds them by).
    pub async fn set_display_name(&self, id: UserId, display: &DisplayName) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let login: Option<String> =
            sqlx::query_scalar("UPDATE users SET display_name = ? WHERE id = ? RETURNING name")
                .bind(display.as_str())
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let login = login.ok_or(DirectoryError::NotFound)?;
        search::unindex_entry(&mut tx, &login).await?;
        search::index_entry(&mut tx, &login, EntryKind::User, display.as_str()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user, their devices and sessions, and frees the login.
    pub async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let login: Option<String> =
            sqlx::query_scalar("DELETE FROM users WHERE id = ? RETURNING name")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let login = login.ok_or(DirectoryError::NotFound)?;
        sqlx::query("DELETE FROM names WHERE name = ?")
            .bind(&login)
            .execute(&mut *tx)
            .await?;
        search::unindex_entry(&mut tx, &login).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that the user was online at `now` (presence).
    pub async fn touch_user(&self, id: UserId, now: SystemTime) -> Result<()> {
        let r =
            sqlx::query("UPDATE users SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?")
                .bind(millis(now))
                .bind(id.0)
                .execute(&self.pool)
                .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// When the user was last online, if ever.
    pub async fn last_seen(&self, id: UserId) -> Result<Option<SystemTime>> {
        let row: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT last_seen FROM users WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.ok_or(DirectoryError::NotFound)?.0.map(from_millis))
    }

    /// Adds a device to a user.
    pub async fn add_device(
        &self,
        user: UserId,
        label: &str,
        kind: DeviceKind,
        push_token: Option<&str>,
        now: SystemTime,
    ) -> Result<DeviceId> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
            return Err(DirectoryError::Invalid {
                field: "label",
                reason: "must be 1-100 characters without control characters",
            });
        }
        let r = sqlx::query_scalar(
            "INSERT INTO devices (user_id, label, kind, push_token, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(user.0)
        .bind(label)
        .bind(kind.as_str())
        .bind(push_token)
        .bind(millis(now))
        .fetch_one(&self.pool)
        .await;
        match r {
            Ok(id) => Ok(DeviceId(id)),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(DirectoryError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A user's devices.
    pub async fn devices(&self, user: UserId) -> Result<Vec<Device>> {
        let rows: Vec<DeviceRow> = sqlx::query_as(
            "SELECT id, user_id, label, kind, push_token, last_seen FROM devices \
             WHERE user_id = ? ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(device_from_row).collect()
    }

    /// Removes one of the user's devices.
    pub async fn remove_device(&self, user: UserId, device: DeviceId) -> Result<()> {
        let r = sqlx::query("DELETE FROM devices WHERE id = ? AND user_id = ?")
            .bind(device.0)
            .bind(user.0)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// Marks a device (and so its user) online at `now`.
    pub async fn touch_device(&self, device: DeviceId, now: SystemTime) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let user: Option<i64> = sqlx::query_scalar(
            "UPDATE devices SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ? \
             RETURNING user_id",
        )
        .bind(millis(now))
        .bind(device.0)
        .fetch_optional(&mut *tx)
        .await?;
        let user = user.ok_or(DirectoryError::NotFound)?;
        sqlx::query("UPDATE users SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?")
            .bind(millis(now))
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Like [`Directory::resolve`] for raw text from the edge, which also
    /// finds system entries (`echo`) that [`Name::parse`] refuses as reserved.
    pub async fn resolve_text(&self, text: &str) -> Result<Resolved> {
        let kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM names WHERE name = ? AND kind = 'system'")
                .bind(text)
                .fetch_optional(&self.pool)
                .await?;
        if kind.is_some() {
            return Ok(Resolved::System(LoginName::system(text)?));
        }
        self.resolve(&Name::parse(text)?).await
    }

    /// What a dialled name refers to; `NotFound` if nothing.
    pub async fn resolve(&self, name: &Name) -> Result<Resolved> {
        let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM names WHERE name = ?")
            .bind(name.login.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match (kind.as_deref(), &name.sub) {
            (Some("user"), None) => Ok(Resolved::User(self.user_by_login(&name.login).await?)),
            (Some("system"), None) => Ok(Resolved::System(name.login.clone())),
            (Some("tenant"), sub) => {
                let tenant = self.tenant_by_name(&name.login).await?;
                let sub = match sub {
                    None => None,
                    Some(s) => Some(
                        self.list_subnames(tenant.id)
                            .await?
                            .into_iter()
                            .find(|e| &e.sub == s)
                            .ok_or(DirectoryError::NotFound)?,
                    ),
                };
                Ok(Resolved::Tenant { tenant, sub })
            }
            _ => Err(DirectoryError::NotFound),
        }
    }
}
