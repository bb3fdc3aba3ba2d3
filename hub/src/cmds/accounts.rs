//! `hub user|department|token`: accounts on the database of a configuration file, for
//! bootstrapping and for operators without the API. Each change is in the audit log as
//! `cli:$USER`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hub::accounts::{self, NewDepartment, NewToken, NewUser, UserChange};
use hub::store::{AuditEntry, Store};

#[derive(Args)]
pub struct Db {
    /// The hub's configuration file (for its database and data_dir).
    #[arg(long, short)]
    config: PathBuf,
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user. The password is read from standard input with --password-stdin, otherwise
    /// made up and printed once.
    Add {
        #[command(flatten)]
        db: Db,
        username: String,
        /// admin, duty_operator, department or integrator (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (their sessions end).
    Passwd {
        #[command(flatten)]
        db: Db,
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: no login, their sessions end.
    Disable {
        #[command(flatten)]
        db: Db,
        username: String,
    },
}

#[derive(Subcommand)]
pub enum DepartmentCmd {
    /// Add a department.
    Add {
        #[command(flatten)]
        db: Db,
        id: String,
        #[arg(long)]
        name: String,
        /// 6-digit region code (GB/T 2260).
        #[arg(long)]
        region: String,
        /// Comma list: transport, food.
        #[arg(long)]
        industries: String,
        /// The department's unified social credit code.
        #[arg(long)]
        uscc: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an API token; it is printed once.
    Create {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        name: String,
        /// Roles of the token (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        integrator: Option<String>,
        /// Lifetime, e.g. 90d (whole days, at most 1095).
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Revoke an API token by id.
    Revoke {
        #[command(flatten)]
        db: Db,
        id: i64,
    },
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

async fn open(path: &Path) -> Result<Store, String> {
    let mut cfg = config::Config::load(path).map_err(|e| e.to_string())?;
    cfg.apply_env();
    Store::connect(&cfg.database.url, &cfg.data_dir, 2).await.map_err(|e| e.to_string())
}

fn audit(action: &str, target: String) -> AuditEntry {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    AuditEntry {
        actor: format!("cli:{who}"),
        address: "-".into(),
        action: action.into(),
        target,
        before: None,
        after: None,
    }
}

fn now() -> i64 {
    common::Clock::now_ms(&common::SystemClock)
}

/// The password: the first line of standard input, or a new random one (printed).
fn password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading standard input: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let p = hub::auth::secrets::random(15);
    println!("password: {p}  (shown once)");
    Ok(p)
}

fn finish(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn user(cmd: UserCmd) -> ExitCode {
    finish(runtime().block_on(async {
        match cmd {
            UserCmd::Add { db, username, roles, department, password_stdin } => {
                let store = open(&db.config).await?;
                let password = password(password_stdin)?;
                let a = audit("user.create", format!("user:{username}"));
                let n = NewUser { username, password, roles, department };
                let u =
                    accounts::create_user(&store, n, a, now()).await.map_err(|e| e.to_string())?;
                println!("added user {} ({})", u.username, u.roles);
            }
            UserCmd::Passwd { db, username, password_stdin } => {
                let store = open(&db.config).await?;
                let password = password(password_stdin)?;
                let a = audit("user.password", format!("user:{username}"));
                let c = UserChange { password: Some(password), ..Default::default() };
                accounts::update_user(&store, &username, c, a, now())
                    .await
                    .map_err(|e| e.to_string())?;
                println!("password of {username} changed; their sessions ended");
            }
            UserCmd::Disable { db, username } => {
                let store = open(&db.config).await?;
                let a = audit("user.update", format!("user:{username}"));
                let c = UserChange { disabled: Some(true), ..Default::default() };
                accounts::update_user(&store, &username, c, a, now())
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{username} disabled; their sessions ended");
            }
        }
        Ok(())
    }))
}

pub fn department(cmd: DepartmentCmd) -> ExitCode {
    finish(runtime().block_on(async {
        let DepartmentCmd::Add { db, id, name, region, industries, uscc } = cmd;
        let store = open(&db.config).await?;
        let a = audit("department.create", format!("department:{id}"));
        let industries = industries.split(',').map(|s| s.trim().to_owned()).collect();
        let n = NewDepartment { id, name, region, industries, uscc };
        let d =
            accounts::create_department(&store, n, a, now()).await.map_err(|e| e.to_string())?;
        println!("added department {} ({}, {}, {})", d.id, d.name, d.region, d.industries);
        Ok(())
    }))
}

/// `90d` (or a bare number of days) → days.
fn days(s: &str) -> Result<u32, String> {
    s.strip_suffix('d')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("--expires {s:?}: whole days such as 90d"))
}

pub fn token(cmd: TokenCmd) -> ExitCode {
    finish(runtime().block_on(async {
        match cmd {
            TokenCmd::Create { db, name, roles, department, integrator, expires } => {
                let store = open(&db.config).await?;
                let a = audit("token.create", format!("token:{name}"));
                let n = NewToken {
                    name,
                    roles,
                    department,
                    integrator,
                    expires_in_days: days(&expires)?,
                };
                let who = a.actor.clone();
                let (row, token) = accounts::create_token(&store, n, &who, a, now())
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "token {} ({}), id {}: {token}  (shown once)",
                    row.name, row.roles, row.id
                );
            }
            TokenCmd::Revoke { db, id } => {
                let store = open(&db.config).await?;
                let a = audit("token.revoke", format!("token:{id}"));
                accounts::revoke_token(&store, id, a, now()).await.map_err(|e| e.to_string())?;
                println!("token {id} revoked");
            }
        }
        Ok(())
    }))
}

#[derive(Subcommand)]
pub enum ImportCmd {
    /// Import a file (CSV or JSON, by its extension): every row valid, or nothing imported
    /// and every bad row listed with its line, field and reason.
    Import {
        #[command(flatten)]
        db: Db,
        file: PathBuf,
    },
}

/// `hub catalogue import` (`entities` false) and `hub entity import`.
pub fn import(cmd: ImportCmd, entities: bool) -> ExitCode {
    use hub::records::import::{self, Format};
    let ImportCmd::Import { db, file } = cmd;
    finish(runtime().block_on(async {
        let format = Format::guess(&file.to_string_lossy())
            .ok_or_else(|| format!("{}: name a .csv or .json file", file.display()))?;
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let store = open(&db.config).await?;
        let report = |p: Vec<import::Problem>| {
            let lines: Vec<String> = p
                .iter()
                .map(|p| format!("{}:{}: {}: {}", file.display(), p.line, p.field, p.reason))
                .collect();
            format!("{} problem(s), nothing imported:\n{}", p.len(), lines.join("\n"))
        };
        let n = if entities {
            let list = import::entities(&text, format).map_err(report)?;
            let a = audit("entity.import", "entities".into());
            store.import_entities(&list, &a, now()).await.map_err(|e| e.to_string())?;
            list.len()
        } else {
            let depts = store.departments().await.map_err(|e| e.to_string())?;
            let ids = depts.into_iter().map(|d| d.id).collect();
            let items = import::catalogue(&text, format, &ids).map_err(report)?;
            let a = audit("catalogue.import", "catalogue".into());
            store.import_catalogue(&items, &a, now()).await.map_err(|e| e.to_string())?;
            items.len()
        };
        println!("imported {n} {}", if entities { "entities" } else { "catalogue items" });
        Ok(())
    }))
}
