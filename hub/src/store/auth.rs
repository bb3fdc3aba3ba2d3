//! Departments, users, login sessions, API tokens and the audit log.
//!
//! Every change made by a person or a token goes through [`Store::apply`]: its statements and
//! the audit row describing them commit in one transaction, so no change is applied without
//! its audit row.

use std::fmt::Write as _;

use common::UnixMs;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, db};
use crate::error::Error;

/// A bound parameter of a statement.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
}

/// One SQL statement with `$N` parameters.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Stmt {
    pub fn new(sql: impl Into<String>, binds: Vec<Bind>) -> Self {
        Self { sql: sql.into(), binds }
    }
}

pub(super) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t.as_str()),
            Bind::OptText(t) => q.bind(t.as_deref()),
            Bind::Int(i) => q.bind(*i),
            Bind::OptInt(i) => q.bind(*i),
        };
    }
    q
}

/// Who did what, to what, from where: one row of the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// `user:NAME` or `token:ID:NAME`, or `cli:NAME` for the command line.
    pub actor: String,
    pub address: String,
    /// `finding.acknowledge`, `device.register`, `user.create`, …
    pub action: String,
    /// `finding:42`, `device:fridge-1`, …
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// A stored audit row.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub at: UnixMs,
    pub entry: AuditEntry,
}

/// Filters of the audit log.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<UnixMs>,
    pub until: Option<UnixMs>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartmentRow {
    pub id: String,
    pub name: String,
    pub region: String,
    /// Comma list of industries.
    pub industries: String,
    pub uscc: String,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub department_id: Option<String>,
    /// Comma list of roles.
    pub roles: String,
    pub disabled: bool,
    pub created_at: UnixMs,
    pub password_changed_at: UnixMs,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: i64,
    pub csrf: String,
    pub created_at: UnixMs,
    pub last_seen: UnixMs,
    pub address: String,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub hash: String,
    /// The token's first characters, to tell tokens apart in lists.
    pub hint: String,
    pub department_id: Option<String>,
    pub integrator: Option<String>,
    pub roles: String,
    pub created_at: UnixMs,
    pub created_by: String,
    pub expires_at: UnixMs,
    pub last_used_at: Option<UnixMs>,
    pub revoked_at: Option<UnixMs>,
}

const USER_COLUMNS: &str = "id, username, password_hash, department_id, roles, disabled, \
                            created_at, password_changed_at";
const TOKEN_COLUMNS: &str = "id, name, hash, hint, department_id, integrator, roles, created_at, \
                             created_by, expires_at, last_used_at, revoked_at";

fn user_from_row(r: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        password_hash: r.try_get("password_hash")?,
        department_id: r.try_get("department_id")?,
        roles: r.try_get("roles")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
        password_changed_at: r.try_get("password_changed_at")?,
    })
}

fn token_from_row(r: &AnyRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        hash: r.try_get("hash")?,
        hint: r.try_get("hint")?,
        department_id: r.try_get("department_id")?,
        integrator: r.try_get("integrator")?,
        roles: r.try_get("roles")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn department_from_row(r: &AnyRow) -> Result<DepartmentRow, sqlx::Error> {
    Ok(DepartmentRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        region: r.try_get("region")?,
        industries: r.try_get("industries")?,
        uscc: r.try_get("uscc")?,
        created_at: r.try_get("created_at")?,
    })
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

impl Store {
    /// Runs one statement outside any audited change (the hub's own bookkeeping); returns
    /// the rows affected.
    pub async fn exec(&self, s: &Stmt, context: &'static str) -> Result<u64, Error> {
        let r = bind_all(sqlx::query(&s.sql), &s.binds)
            .execute(&self.pool)
            .await
            .map_err(db(context))?;
        Ok(r.rows_affected())
    }

    /// Runs the statements and appends the audit row in one transaction; returns each
    /// statement's rows affected.
    pub async fn apply(
        &self,
        stmts: &[Stmt],
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<Vec<u64>, Error> {
        self.run_audited(stmts, audit, now, false).await.map(Option::unwrap_or_default)
    }

    /// As [`Store::apply`], but when the first statement changes nothing (the row is not
    /// there, or not in the state its condition asks for) everything is rolled back and
    /// `None` returned: no audit row for a change that did not happen.
    pub async fn apply_if(
        &self,
        stmts: &[Stmt],
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<Option<Vec<u64>>, Error> {
        self.run_audited(stmts, audit, now, true).await
    }

    async fn run_audited(
        &self,
        stmts: &[Stmt],
        audit: &AuditEntry,
        now: UnixMs,
        require_first: bool,
    ) -> Result<Option<Vec<u64>>, Error> {
        let mut tx = self.pool.begin().await.map_err(db("starting a change"))?;
        let mut affected = Vec::with_capacity(stmts.len());
        for s in stmts {
            let r = bind_all(sqlx::query(&s.sql), &s.binds)
                .execute(&mut *tx)
                .await
                .map_err(db("applying a change"))?;
            if require_first && affected.is_empty() && r.rows_affected() == 0 {
                tx.rollback().await.map_err(db("rolling back a change"))?;
                return Ok(None);
            }
            affected.push(r.rows_affected());
        }
        Self::audit_in(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db("committing a change and its audit row"))?;
        Ok(Some(affected))
    }

    pub(super) async fn audit_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        a: &AuditEntry,
        now: UnixMs,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO audit (at, actor, address, action, target, before_state, after_state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now)
        .bind(&a.actor)
        .bind(&a.address)
        .bind(&a.action)
        .bind(&a.target)
        .bind(json_text(&a.before))
        .bind(json_text(&a.after))
        .execute(&mut **tx)
        .await
        .map_err(db("appending to the audit log"))?;
        Ok(())
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, Error> {
        let mut sql = String::from(
            "SELECT id, at, actor, address, action, target, before_state, after_state \
             FROM audit WHERE 1 = 1",
        );
        let mut binds = Vec::new();
        for (col, v) in [("actor", &f.actor), ("action", &f.action), ("target", &f.target)] {
            if let Some(v) = v {
                binds.push(Bind::Text(v.clone()));
                let _ = write!(sql, " AND {col} = ${}", binds.len());
            }
        }
        for (c, v) in [("at >=", f.since), ("at <", f.until), ("id <", f.before_id)] {
            if let Some(v) = v {
                binds.push(Bind::Int(v));
                let _ = write!(sql, " AND {c} ${}", binds.len());
            }
        }
        let _ = write!(sql, " ORDER BY id DESC LIMIT {}", f.limit.clamp(1, 1001));
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the audit log"))?;
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    entry: AuditEntry {
                        actor: r.try_get("actor")?,
                        address: r.try_get("address")?,
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        before: parse(r.try_get("before_state")?),
                        after: parse(r.try_get("after_state")?),
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading the audit log"))
    }

    pub async fn departments(&self) -> Result<Vec<DepartmentRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, name, region, industries, uscc, created_at FROM departments ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing departments"))?;
        rows.iter()
            .map(department_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("reading departments"))
    }

    pub async fn department(&self, id: &str) -> Result<Option<DepartmentRow>, Error> {
        let row = sqlx::query(
            "SELECT id, name, region, industries, uscc, created_at FROM departments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a department"))?;
        row.as_ref().map(department_from_row).transpose().map_err(db("reading a department"))
    }

    pub fn insert_department(d: &DepartmentRow) -> Stmt {
        Stmt::new(
            "INSERT INTO departments (id, name, region, industries, uscc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            vec![
                Bind::Text(d.id.clone()),
                Bind::Text(d.name.clone()),
                Bind::Text(d.region.clone()),
                Bind::Text(d.industries.clone()),
                Bind::Text(d.uscc.clone()),
                Bind::Int(d.created_at),
            ],
        )
    }

    pub async fn user_count(&self) -> Result<i64, Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(db("counting users"))
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, Error> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing users"))?;
        rows.iter().map(user_from_row).collect::<Result<_, _>>().map_err(db("reading users"))
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>, Error> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a user"))?;
        row.as_ref().map(user_from_row).transpose().map_err(db("reading a user"))
    }

    pub fn insert_user(u: &UserRow) -> Stmt {
        Stmt::new(
            "INSERT INTO users (username, password_hash, department_id, roles, disabled, \
             created_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (username) DO NOTHING",
            vec![
                Bind::Text(u.username.clone()),
                Bind::Text(u.password_hash.clone()),
                Bind::OptText(u.department_id.clone()),
                Bind::Text(u.roles.clone()),
                Bind::Int(i64::from(u.disabled)),
                Bind::Int(u.created_at),
                Bind::Int(u.password_changed_at),
            ],
        )
    }

    /// The statements that change a user's password and end their sessions except `keep`
    /// (the session that made the change, if any).
    pub fn set_password(user_id: i64, hash: &str, now: UnixMs, keep: Option<&str>) -> Vec<Stmt> {
        vec![
            Stmt::new(
                "UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3",
                vec![Bind::Text(hash.into()), Bind::Int(now), Bind::Int(user_id)],
            ),
            Stmt::new(
                "DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2",
                vec![Bind::Int(user_id), Bind::Text(keep.unwrap_or_default().into())],
            ),
        ]
    }

    /// The statements that change a user's roles, department and disabled flag; disabling
    /// ends every session of theirs.
    pub fn update_user(u: &UserRow) -> Vec<Stmt> {
        let mut v = vec![Stmt::new(
            "UPDATE users SET roles = $1, department_id = $2, disabled = $3 WHERE id = $4",
            vec![
                Bind::Text(u.roles.clone()),
                Bind::OptText(u.department_id.clone()),
                Bind::Int(i64::from(u.disabled)),
                Bind::Int(u.id),
            ],
        )];
        if u.disabled {
            v.push(Stmt::new("DELETE FROM sessions WHERE user_id = $1", vec![Bind::Int(u.id)]));
        }
        v
    }

    pub async fn create_session(&self, s: &SessionRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen, address) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id_hash)
        .bind(s.user_id)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.last_seen)
        .bind(&s.address)
        .execute(&self.pool)
        .await
        .map_err(db("creating a session"))?;
        Ok(())
    }

    /// The session and its user.
    pub async fn session(&self, id_hash: &str) -> Result<Option<(SessionRow, UserRow)>, Error> {
        let cols: Vec<String> = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
        let row = sqlx::query(&format!(
            "SELECT s.id_hash, s.user_id, s.csrf, s.created_at AS s_created, s.last_seen, \
             s.address, {} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
            cols.join(", ")
        ))
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a session"))?;
        let Some(r) = row else { return Ok(None) };
        let s = SessionRow {
            id_hash: r.try_get("id_hash").map_err(db("reading a session"))?,
            user_id: r.try_get("user_id").map_err(db("reading a session"))?,
            csrf: r.try_get("csrf").map_err(db("reading a session"))?,
            created_at: r.try_get("s_created").map_err(db("reading a session"))?,
            last_seen: r.try_get("last_seen").map_err(db("reading a session"))?,
            address: r.try_get("address").map_err(db("reading a session"))?,
        };
        let u = user_from_row(&r).map_err(db("reading a session's user"))?;
        Ok(Some((s, u)))
    }

    pub async fn touch_session(&self, id_hash: &str, now: UnixMs) -> Result<(), Error> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(db("refreshing a session"))?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(db("ending a session"))?;
        Ok(())
    }

    /// Deletes sessions past their idle or absolute expiry.
    pub async fn expire_sessions(
        &self,
        idle_before: UnixMs,
        created_before: UnixMs,
    ) -> Result<u64, Error> {
        let r = sqlx::query("DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await
            .map_err(db("expiring sessions"))?;
        Ok(r.rows_affected())
    }

    pub fn insert_token(t: &TokenRow) -> Stmt {
        Stmt::new(
            "INSERT INTO api_tokens (name, hash, hint, department_id, integrator, roles, \
             created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                Bind::Text(t.name.clone()),
                Bind::Text(t.hash.clone()),
                Bind::Text(t.hint.clone()),
                Bind::OptText(t.department_id.clone()),
                Bind::OptText(t.integrator.clone()),
                Bind::Text(t.roles.clone()),
                Bind::Int(t.created_at),
                Bind::Text(t.created_by.clone()),
                Bind::Int(t.expires_at),
            ],
        )
    }

    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, Error> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a token"))?;
        row.as_ref().map(token_from_row).transpose().map_err(db("reading a token"))
    }

    pub async fn token(&self, id: i64) -> Result<Option<TokenRow>, Error> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a token"))?;
        row.as_ref().map(token_from_row).transpose().map_err(db("reading a token"))
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, Error> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing tokens"))?;
        rows.iter().map(token_from_row).collect::<Result<_, _>>().map_err(db("reading tokens"))
    }

    pub fn revoke_token(id: i64, now: UnixMs) -> Stmt {
        Stmt::new(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            vec![Bind::Int(now), Bind::Int(id)],
        )
    }

    pub async fn touch_token(&self, id: i64, now: UnixMs) -> Result<(), Error> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("recording a token's use"))?;
        Ok(())
    }

    /// The token id just inserted by name and hash (ids are assigned by the database).
    pub async fn token_id(&self, hash: &str) -> Result<i64, Error> {
        sqlx::query("SELECT id FROM api_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("id"))
            .map_err(db("reading a token's id"))
    }
}
