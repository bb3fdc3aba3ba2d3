//! Departments, users and API tokens: the rules they follow, shared by the admin API and the
//! `hub department|user|token` commands. Every change carries its audit entry.

use common::{RegionCode, UnixMs, Uscc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Role, secrets};
use crate::error::Error;
use crate::store::{AuditEntry, DepartmentRow, Store, TokenRow, UserRow};

/// The longest a token may live.
pub const MAX_TOKEN_LIFETIME_DAYS: u32 = 3 * 365;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDepartment {
    /// Short id: lower-case letters, digits and `-` (e.g. `xian-food`).
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,63}$"))]
    pub id: String,
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// 6-digit GB/T 2260 region code: the department sees sites within it (by prefix).
    #[schemars(regex(pattern = r"^[0-9]{6}$"))]
    pub region: String,
    /// Industries it supervises.
    #[schemars(schema_with = "industries_schema")]
    pub industries: Vec<String>,
    /// The department's own unified social credit code (GB 32100; the check character is
    /// verified, 400 naming the position when wrong).
    #[schemars(regex(pattern = r"^[0-9A-HJ-NPQRTUWXY]{18}$"))]
    pub uscc: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Letters, digits, `.`, `_`, `-`; 2–64 characters.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"))]
    pub username: String,
    /// At least 10 characters.
    #[schemars(length(min = 10, max = 1000))]
    pub password: String,
    #[schemars(schema_with = "roles_schema")]
    pub roles: Vec<String>,
    /// The department (required for duty_operator and department).
    pub department: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[schemars(schema_with = "roles_schema")]
    pub roles: Option<Vec<String>>,
    /// A department id; `""` removes it.
    pub department: Option<String>,
    /// A disabled user cannot log in; their sessions end.
    pub disabled: Option<bool>,
    /// A new password (their sessions end).
    #[schemars(length(min = 10, max = 1000))]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (shown in lists and the audit log).
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// Roles of the token: department and duty_operator need `department`, integrator needs
    /// `integrator`.
    #[schemars(schema_with = "roles_schema")]
    pub roles: Vec<String>,
    /// The department the token belongs to.
    pub department: Option<String>,
    /// The integrator (a username) the token belongs to.
    pub integrator: Option<String>,
    /// Days until it expires (1..=1095).
    #[schemars(range(min = 1, max = MAX_TOKEN_LIFETIME_DAYS))]
    pub expires_in_days: u32,
}

fn roles_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    schemars::json_schema!({"type": "array", "minItems": 1, "uniqueItems": true,
        "items": {"enum": roles}, "description": "one or more roles"})
}

fn industries_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let all: Vec<&str> = common::Industry::ALL.iter().map(|i| i.as_str()).collect();
    schemars::json_schema!({"type": "array", "minItems": 1, "uniqueItems": true,
        "items": {"enum": all}})
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{field}: {why}"))
}

fn check_name(field: &str, s: &str, extra: &[char], max: usize) -> Result<(), Error> {
    let ok = (2..=max).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{s:?}: 2–{max} characters, letters and digits and {}, starting with a letter or \
                 digit",
                extra.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" ")
            ),
        ))
    }
}

fn roles_of(field: &str, v: &[String]) -> Result<Vec<Role>, Error> {
    auth::parse_roles(&v.join(",")).map_err(|e| invalid(field, e))
}

async fn department_exists(store: &Store, field: &str, id: &str) -> Result<(), Error> {
    if store.department(id).await?.is_none() {
        let known: Vec<String> = store.departments().await?.into_iter().map(|d| d.id).collect();
        return Err(invalid(field, format!("no department {id:?}; known: {known:?}")));
    }
    Ok(())
}

/// Which roles need what owner, said once.
fn check_owner(
    roles: &[Role],
    department: Option<&str>,
    integrator: Option<&str>,
) -> Result<(), Error> {
    if let Some(r) = roles.iter().find(|r| r.needs_department())
        && department.is_none()
    {
        return Err(invalid("department", format!("the role {} needs a department", r.as_str())));
    }
    if roles.contains(&Role::Integrator) && integrator.is_none() {
        return Err(invalid("integrator", "the role integrator needs an integrator"));
    }
    Ok(())
}

pub async fn create_department(
    store: &Store,
    n: NewDepartment,
    mut audit: AuditEntry,
    now: UnixMs,
) -> Result<DepartmentRow, Error> {
    check_name("id", &n.id, &['-'], 64)?;
    if n.id.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("id", format!("{:?}: lower case only", n.id)));
    }
    if n.name.trim().is_empty() || n.name.chars().count() > 200 {
        return Err(invalid("name", "1–200 characters"));
    }
    RegionCode::new(&n.region).map_err(|e| invalid("region", format!("{:?}: {e}", n.region)))?;
    Uscc::new(&n.uscc).map_err(|e| invalid("uscc", format!("{:?}: {e}", n.uscc)))?;
    let industries =
        auth::parse_industries(&n.industries.join(",")).map_err(|e| invalid("industries", e))?;
    let d = DepartmentRow {
        id: n.id.clone(),
        name: n.name.trim().to_owned(),
        region: n.region.clone(),
        industries: industries.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(","),
        uscc: n.uscc.clone(),
        created_at: now,
    };
    audit.after = Some(json!({"name": d.name, "region": d.region, "industries": d.industries,
                              "uscc": d.uscc}));
    if store.apply_if(&[Store::insert_department(&d)], &audit, now).await?.is_none() {
        return Err(Error::Conflict(format!("department {:?} already exists", d.id)));
    }
    Ok(d)
}

pub async fn create_user(
    store: &Store,
    n: NewUser,
    mut audit: AuditEntry,
    now: UnixMs,
) -> Result<UserRow, Error> {
    check_name("username", &n.username, &['.', '_', '-'], 64)?;
    if let Some(why) = secrets::password_problem(&n.password) {
        return Err(invalid("password", why));
    }
    let roles = roles_of("roles", &n.roles)?;
    let department = n.department.filter(|d| !d.is_empty());
    check_owner(&roles, department.as_deref(), Some(&n.username))?;
    if let Some(d) = &department {
        department_exists(store, "department", d).await?;
    }
    let password = n.password.clone();
    let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| Error::InvalidArgument(format!("hashing failed: {e}")))?;
    let u = UserRow {
        id: 0,
        username: n.username.clone(),
        password_hash: hash,
        department_id: department,
        roles: auth::roles_text(&roles),
        disabled: false,
        created_at: now,
        password_changed_at: now,
    };
    audit.after = Some(json!({"roles": u.roles, "department": u.department_id}));
    if store.apply_if(&[Store::insert_user(&u)], &audit, now).await?.is_none() {
        return Err(Error::Conflict(format!("user {:?} already exists", u.username)));
    }
    store
        .user_by_name(&u.username)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {:?}", u.username)))
}

pub async fn update_user(
    store: &Store,
    username: &str,
    c: UserChange,
    mut audit: AuditEntry,
    now: UnixMs,
) -> Result<UserRow, Error> {
    let before = store
        .user_by_name(username)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {username:?}")))?;
    let mut u = before.clone();
    if let Some(r) = &c.roles {
        u.roles = auth::roles_text(&roles_of("roles", r)?);
    }
    if let Some(d) = &c.department {
        if d.is_empty() {
            u.department_id = None;
        } else {
            department_exists(store, "department", d).await?;
            u.department_id = Some(d.clone());
        }
    }
    if let Some(d) = c.disabled {
        u.disabled = d;
    }
    let roles = auth::parse_roles(&u.roles).unwrap_or_default();
    check_owner(&roles, u.department_id.as_deref(), Some(&u.username))?;
    let mut stmts = Store::update_user(&u);
    if let Some(p) = &c.password {
        if let Some(why) = secrets::password_problem(p) {
            return Err(invalid("password", why));
        }
        let p = p.clone();
        let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&p))
            .await
            .map_err(|e| Error::InvalidArgument(format!("hashing failed: {e}")))?;
        stmts.extend(Store::set_password(u.id, &hash, now, None));
    }
    let view = |u: &UserRow| json!({"roles": u.roles, "department": u.department_id, "disabled": u.disabled});
    audit.before = Some(view(&before));
    audit.after = Some(view(&u));
    if c.password.is_some()
        && let Some(a) = audit.after.as_mut()
    {
        a["password"] = json!("changed");
    }
    store.apply(&stmts, &audit, now).await?;
    store.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("user {username:?}")))
}

/// Creates a token; returns its row and the token itself (shown once).
pub async fn create_token(
    store: &Store,
    n: NewToken,
    created_by: &str,
    mut audit: AuditEntry,
    now: UnixMs,
) -> Result<(TokenRow, String), Error> {
    if n.name.trim().is_empty() || n.name.chars().count() > 100 {
        return Err(invalid("name", "1–100 characters"));
    }
    let roles = roles_of("roles", &n.roles)?;
    let department = n.department.filter(|d| !d.is_empty());
    let integrator = n.integrator.filter(|d| !d.is_empty());
    check_owner(&roles, department.as_deref(), integrator.as_deref())?;
    if let Some(d) = &department {
        department_exists(store, "department", d).await?;
    }
    if let Some(i) = &integrator {
        let ok = store
            .user_by_name(i)
            .await?
            .is_some_and(|u| u.roles.split(',').any(|r| r == Role::Integrator.as_str()));
        if !ok {
            return Err(invalid(
                "integrator",
                format!("{i:?} is not a user with the integrator role"),
            ));
        }
    }
    if !(1..=MAX_TOKEN_LIFETIME_DAYS).contains(&n.expires_in_days) {
        return Err(invalid(
            "expires_in_days",
            format!("{} must be within 1..={MAX_TOKEN_LIFETIME_DAYS}", n.expires_in_days),
        ));
    }
    let token = secrets::new_token();
    let row = TokenRow {
        id: 0,
        name: n.name.trim().to_owned(),
        hash: secrets::digest(&token),
        hint: token[..secrets::TOKEN_PREFIX.len() + 4].to_owned(),
        department_id: department,
        integrator,
        roles: auth::roles_text(&roles),
        created_at: now,
        created_by: created_by.to_owned(),
        expires_at: now + i64::from(n.expires_in_days) * 86_400_000,
        last_used_at: None,
        revoked_at: None,
    };
    // The id is the database's, known after the insert: the row names the token by its hint.
    audit.target = format!("token:{}", row.hint);
    audit.after =
        Some(json!({"name": row.name, "roles": row.roles, "department": row.department_id,
                              "integrator": row.integrator, "expires_at": row.expires_at}));
    store.apply(&[Store::insert_token(&row)], &audit, now).await?;
    let id = store.token_id(&row.hash).await?;
    Ok((TokenRow { id, ..row }, token))
}

pub async fn revoke_token(
    store: &Store,
    id: i64,
    audit: AuditEntry,
    now: UnixMs,
) -> Result<(), Error> {
    let t = store.token(id).await?.ok_or_else(|| Error::NotFound(format!("token {id}")))?;
    if t.revoked_at.is_some() {
        return Err(Error::Conflict(format!("token {id} ({}) is already revoked", t.name)));
    }
    store.apply(&[Store::revoke_token(id, now)], &audit, now).await?;
    Ok(())
}

/// Creates the first admin when there are no users: with `password` (`HUB_ADMIN_PASSWORD`)
/// or a random one, returned so the caller prints it once.
pub async fn bootstrap_admin(
    store: &Store,
    password: Option<String>,
    now: UnixMs,
) -> Result<Option<(String, String)>, Error> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let password = password.unwrap_or_else(|| secrets::random(15));
    let audit = AuditEntry {
        actor: "hub:bootstrap".into(),
        address: "-".into(),
        action: "user.create".into(),
        target: "user:admin".into(),
        before: None,
        after: None,
    };
    let n = NewUser {
        username: "admin".into(),
        password: password.clone(),
        roles: vec!["admin".into()],
        department: None,
    };
    match create_user(store, n, audit, now).await {
        Ok(_) => Ok(Some(("admin".into(), password))),
        // Another hub sharing the database made it first.
        Err(Error::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
