//! Who may do what (docs/access.md): principals (users with login sessions, API tokens),
//! roles, the per-route access rules, CSRF and origin checks, and the one scope filter
//! ([`scope`]).
//!
//! Every request passes [`guard`], one middleware for the whole router: it looks the route's
//! [`Access`] up in the table the router was built from (so a route without a rule cannot
//! exist), authenticates the caller, checks the role, CSRF token and origin, and hands the
//! [`Principal`] to the handler. Handlers never decide scope themselves: they pass
//! [`Principal::scope`] to the store, registry or camera manager, whose queries apply it.

pub mod networks;
pub mod scope;
pub mod secrets;
pub mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::{Industry, UnixMs};

pub use scope::{Scope, SiteFacts};

use crate::api::AppState;
use crate::error::Error;
use crate::store::{AuditEntry, DepartmentRow, Store};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hub_session";
/// The header carrying the session's CSRF token on mutations.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A role: what kind of work a principal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, everywhere.
    Admin,
    /// The duty room: cameras, findings (verify, dismiss, acknowledge, clear), records.
    DutyOperator,
    /// A department: its records and what its scope lets it see.
    Department,
    /// Devices and cameras of the sites it manages; no findings.
    Integrator,
}

impl Role {
    pub const ALL: [Role; 4] =
        [Role::Admin, Role::DutyOperator, Role::Department, Role::Integrator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::DutyOperator => "duty_operator",
            Role::Department => "department",
            Role::Integrator => "integrator",
        }
    }

    /// Whether the role's scope comes from a department (the others: admin sees all, an
    /// integrator its sites).
    pub fn needs_department(self) -> bool {
        matches!(self, Role::DutyOperator | Role::Department)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("{s:?} is not a role; roles: {}", Role::ALL.map(Role::as_str).join(", "))
        })
    }
}

/// Parses a comma list of `what` (at least one, none twice), sorted.
fn parse_list<T: std::str::FromStr<Err = String> + Ord + Copy>(
    s: &str,
    what: &str,
    name: fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    let mut out: Vec<T> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v: T = part.parse()?;
        if out.contains(&v) {
            return Err(format!("{} is given twice", name(v)));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(format!("at least one {what} is needed"));
    }
    out.sort();
    Ok(out)
}

/// Parses a comma list of roles (at least one, no repeats).
pub fn parse_roles(s: &str) -> Result<Vec<Role>, String> {
    parse_list(s, "role", Role::as_str)
}

pub fn roles_text(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

/// Parses a comma list of industries (an unknown one is answered with the list).
pub fn parse_industries(s: &str) -> Result<Vec<Industry>, String> {
    let all = Industry::ALL.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ");
    let named = |part: &str| part.parse::<Industry>().is_ok();
    if let Some(bad) = s.split(',').map(str::trim).find(|p| !p.is_empty() && !named(p)) {
        return Err(format!("{bad:?} is not an industry; industries: {all}"));
    }
    parse_list(s, "industry", Industry::as_str)
}

/// Who a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (`/healthz`, `/metrics`, login).
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// Principals holding one of these roles (admins always).
    Roles(&'static [Role]),
}

impl Access {
    /// The roles admitted (all of them for `Public` and `Authenticated`).
    pub fn roles(self) -> Vec<Role> {
        match self {
            Access::Public | Access::Authenticated => Role::ALL.to_vec(),
            Access::Roles(r) => {
                let mut v: Vec<Role> =
                    std::iter::once(Role::Admin).chain(r.iter().copied()).collect();
                v.sort();
                v.dedup();
                v
            }
        }
    }

    pub fn admits(self, roles: &[Role]) -> bool {
        match self {
            Access::Public | Access::Authenticated => true,
            Access::Roles(allowed) => {
                roles.contains(&Role::Admin) || roles.iter().any(|r| allowed.contains(r))
            }
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    Session { id_hash: String, csrf: String, user_id: i64 },
    Token { id: i64 },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `user:NAME` or `token:ID:NAME`: how the audit log names it.
    pub actor: String,
    /// The username, or the token's name.
    pub name: String,
    pub roles: Vec<Role>,
    pub department: Option<DepartmentRow>,
    /// The integrator whose sites this principal manages (the user itself, or a token's
    /// owner).
    pub integrator: Option<String>,
    pub credential: Credential,
    /// The client's address.
    pub address: String,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// What this principal may see: decided here and only here.
    pub fn scope(&self) -> Scope {
        if self.has(Role::Admin) {
            return Scope::All;
        }
        let department = self
            .department
            .as_ref()
            .filter(|_| self.roles.iter().any(|r| r.needs_department()))
            .map(|d| scope::DepartmentScope {
                prefix: scope::region_prefix(&d.region).to_owned(),
                industries: parse_industries(&d.industries)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            });
        let integrator = self.integrator.clone().filter(|_| self.has(Role::Integrator));
        Scope::Limited { department, integrator }
    }

    /// An audit entry of this principal's action.
    pub fn audit(&self, action: &str, target: String) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            address: self.address.clone(),
            action: action.to_owned(),
            target,
            before: None,
            after: None,
        }
    }
}

/// The access settings and state shared by every request.
#[derive(Debug)]
pub struct Auth {
    pub session_idle_ms: i64,
    pub session_lifetime_ms: i64,
    pub secure_cookies: bool,
    pub throttle: throttle::Throttle,
    /// (method, route path) → rule, from the router's own table.
    pub rules: HashMap<(Method, &'static str), Access>,
    /// Routes whose body is a file (a photo, a CSV): a session may send them with the file's
    /// own type instead of JSON. The CSRF header still guards them (a cross-site form cannot
    /// set it).
    pub file_routes: std::collections::HashSet<&'static str>,
    pub max_body_bytes: usize,
    /// Recently verified credentials, for database outages.
    pub verified: Verified,
    /// How often long-lived answers re-check their credential (`http.stream_recheck`).
    pub recheck_every: std::time::Duration,
}

impl Auth {
    /// The routes (`api::file_routes`) whose body is a file.
    pub fn accepting_files(mut self, paths: impl IntoIterator<Item = &'static str>) -> Self {
        self.file_routes.extend(paths);
        self
    }

    pub fn new(http: &config::Http, table: &[(&'static str, &'static str, Access)]) -> Self {
        let rules = table
            .iter()
            .map(|(m, p, a)| ((m.to_uppercase().parse().unwrap_or(Method::GET), *p), *a))
            .collect();
        Self {
            session_idle_ms: http.session_idle.as_millis() as i64,
            recheck_every: http.stream_recheck.max(std::time::Duration::from_millis(100)),
            session_lifetime_ms: http.session_lifetime.as_millis() as i64,
            secure_cookies: http.secure_cookies,
            throttle: throttle::Throttle::new(
                http.login_failures_per_user,
                http.login_failures_per_address,
                http.login_window,
            ),
            rules,
            file_routes: Default::default(),
            max_body_bytes: http.max_body_bytes,
            verified: Verified::default(),
        }
    }

    /// The `Set-Cookie` value of a new session.
    pub fn session_cookie(&self, raw: &str) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={raw}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.session_lifetime_ms / 1000
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn cleared_cookie(&self) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
    }
}

/// Refresh a session's `last_seen` or a token's `last_used_at` at most this often (one write
/// per minute per credential, not one per request).
const TOUCH_EVERY_MS: i64 = 60_000;

/// While the database is away, a credential verified within this long still authenticates
/// (the API's in-memory answers stay available during an outage); with the database up,
/// every request is checked against it, so a revocation or logout takes effect at once.
const OUTAGE_GRACE_MS: i64 = 10 * 60_000;
/// Credentials remembered for that fallback, at most.
const VERIFIED_MAX: usize = 10_000;

/// Credentials recently verified against the database: digest → (principal, when).
#[derive(Debug, Default)]
pub struct Verified(std::sync::Mutex<HashMap<String, (Principal, UnixMs)>>);

impl Verified {
    fn remember(&self, digest: &str, p: &Principal, now: UnixMs) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= VERIFIED_MAX {
            m.retain(|_, (_, at)| now - *at < OUTAGE_GRACE_MS);
            if m.len() >= VERIFIED_MAX {
                m.clear();
            }
        }
        m.insert(digest.to_owned(), (p.clone(), now));
    }

    fn recall(&self, digest: &str, now: UnixMs) -> Option<Principal> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(digest).filter(|(_, at)| now - *at < OUTAGE_GRACE_MS).map(|(p, _)| p.clone())
    }

    /// Forgets a credential that was logged out, revoked or refused.
    pub fn forget(&self, digest: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(digest);
    }

    /// Forgets every credential (an account changed: roles, department, password, disabled).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn unauthenticated(why: &str) -> Error {
    Error::Unauthenticated(why.to_owned())
}

/// The principal of a request's credentials, `None` when it carries none. With the database
/// away (a transient error), a credential verified within the last minutes still counts.
pub async fn authenticate(
    store: &Store,
    auth: &Auth,
    headers: &HeaderMap,
    address: &str,
    now: UnixMs,
) -> Result<Option<Principal>, Error> {
    let digest = credential_digest(headers);
    match verify(store, auth, headers, address, now).await {
        Ok(Some(p)) => {
            if let Some(d) = &digest {
                auth.verified.remember(d, &p, now);
            }
            Ok(Some(p))
        }
        Err(e @ Error::Database { .. })
            if crate::store::classify(&e) == crate::store::Failure::Transient =>
        {
            match digest.as_deref().and_then(|d| auth.verified.recall(d, now)) {
                Some(mut p) => {
                    p.address = address.to_owned();
                    Ok(Some(p))
                }
                None => Err(e),
            }
        }
        other => {
            if let Some(d) = &digest {
                auth.verified.forget(d);
            }
            other
        }
    }
}

/// Whether the credential of a request still authenticates with the same scope (a long-lived
/// answer re-checks it every `http.stream_recheck`). While the database is away, a credential
/// verified in the last minutes still holds, as for new requests.
pub async fn still_holds(
    store: &Store,
    auth: &Auth,
    headers: &HeaderMap,
    address: &str,
    scope: &Scope,
    now: UnixMs,
) -> bool {
    match authenticate(store, auth, headers, address, now).await {
        Ok(Some(p)) => p.scope() == *scope,
        Ok(None) => false,
        Err(e) => matches!(e, Error::Database { .. }),
    }
}

/// The digest of the request's token or session id, if it carries one.
fn credential_digest(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let t = v.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        return Some(secrets::digest(t));
    }
    cookie(headers, SESSION_COOKIE).map(secrets::digest)
}

async fn verify(
    store: &Store,
    auth: &Auth,
    headers: &HeaderMap,
    address: &str,
    now: UnixMs,
) -> Result<Option<Principal>, Error> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        if cookie(headers, SESSION_COOKIE).is_some() {
            return Err(unauthenticated(
                "send one credential: a session cookie or an Authorization header, not both",
            ));
        }
        let v = v.to_str().unwrap_or_default();
        let Some(token) = v.strip_prefix("Bearer ").map(str::trim) else {
            return Err(unauthenticated(
                "the Authorization header must be `Bearer <token>` (an API token, hubt_…)",
            ));
        };
        if !token.starts_with(secrets::TOKEN_PREFIX) || token.len() > 200 {
            return Err(unauthenticated("not an API token (they start with hubt_)"));
        }
        let Some(t) = store.token_by_hash(&secrets::digest(token)).await? else {
            return Err(unauthenticated("unknown API token"));
        };
        if t.revoked_at.is_some() {
            return Err(unauthenticated("this API token was revoked"));
        }
        if t.expires_at <= now {
            return Err(unauthenticated("this API token has expired"));
        }
        if t.last_used_at.is_none_or(|l| now - l > TOUCH_EVERY_MS) {
            let (store, id) = (store.clone(), t.id);
            beside("recording a token's use", async move { store.touch_token(id, now).await });
        }
        let department = match &t.department_id {
            Some(d) => store.department(d).await?,
            None => None,
        };
        return Ok(Some(Principal {
            actor: format!("token:{}:{}", t.id, t.name),
            name: t.name.clone(),
            roles: parse_roles(&t.roles).unwrap_or_default(),
            department,
            integrator: t.integrator.clone(),
            credential: Credential::Token { id: t.id },
            address: address.to_owned(),
        }));
    }
    let Some(raw) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    let id_hash = secrets::digest(raw);
    let Some((s, u)) = store.session(&id_hash).await? else {
        return Err(unauthenticated("the session has ended; log in again"));
    };
    if u.disabled
        || now - s.last_seen > auth.session_idle_ms
        || now - s.created_at > auth.session_lifetime_ms
    {
        store.delete_session(&id_hash).await?;
        return Err(unauthenticated("the session has expired; log in again"));
    }
    if now - s.last_seen > TOUCH_EVERY_MS {
        let (store, id) = (store.clone(), id_hash.clone());
        beside("refreshing a session", async move { store.touch_session(&id, now).await });
    }
    let department = match &u.department_id {
        Some(d) => store.department(d).await?,
        None => None,
    };
    let roles = parse_roles(&u.roles).unwrap_or_default();
    Ok(Some(Principal {
        actor: format!("user:{}", u.username),
        name: u.username.clone(),
        integrator: roles.contains(&Role::Integrator).then(|| u.username.clone()),
        roles,
        department,
        credential: Credential::Session { id_hash, csrf: s.csrf, user_id: u.id },
        address: address.to_owned(),
    }))
}

/// Bookkeeping run beside the request (a busy or locked database never delays it); a failure
/// only costs the bookkeeping.
fn beside(
    what: &'static str,
    work: impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = work.await {
            tracing::debug!(error = %e, "{what} failed");
        }
    });
}

/// The client's address: the socket peer (`ConnectInfo`), `-` when unknown (in-process
/// requests).
pub fn client_address(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.ip().to_string())
}

/// Whether a browser's `Origin` names another site than the `Host` it asked (sockets and
/// event streams are not covered by CORS; a page elsewhere must not open them with our
/// cookie).
pub fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h).trim_end_matches('/');
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let v = v.split(';').next().unwrap_or_default().trim();
        v.eq_ignore_ascii_case("application/json")
            || v.eq_ignore_ascii_case("application/merge-patch+json")
    })
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// The middleware of every route: authentication, the route's rule, CSRF and origin checks.
pub async fn guard(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    match check(&s, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(s: &AppState, req: &mut Request) -> Result<(), Error> {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let Some(path) = path else { return Ok(()) };
    // HEAD is answered by the GET route.
    let key_method = if method == Method::HEAD { Method::GET } else { method.clone() };
    let Some(access) = s.auth.rules.get(&(key_method, path.as_str())).copied() else {
        // Every route has a rule (`api::routes` cannot add one without): a method without one
        // is a method the path does not serve.
        let allowed: Vec<String> =
            s.auth.rules.keys().filter(|(_, p)| *p == path).map(|(m, _)| m.to_string()).collect();
        return Err(Error::MethodNotAllowed(format!(
            "{method} {path}: the path serves {}",
            allowed.join(", ")
        )));
    };
    if access == Access::Public {
        return Ok(());
    }
    let address = client_address(req);
    let now = s.clock.now_ms();
    let Some(p) = authenticate(&s.store, &s.auth, req.headers(), &address, now).await? else {
        return Err(unauthenticated(
            "log in (POST /api/v1/session) or send an API token (Authorization: Bearer hubt_…)",
        ));
    };
    if !access.admits(&p.roles) {
        return Err(Error::PermissionDenied(format!(
            "{method} {path} needs the role {}; you have {}",
            access.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or "),
            roles_text(&p.roles)
        )));
    }
    if is_stream(req.headers()) && cross_origin(req.headers()) {
        return Err(Error::PermissionDenied(
            "the Origin of this socket or event stream is not this hub".into(),
        ));
    }
    let mutation = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if mutation && let Credential::Session { csrf, .. } = &p.credential {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !secrets::same(sent, csrf) {
            return Err(Error::PermissionDenied(format!(
                "missing or wrong CSRF token: send the csrf_token of GET /api/v1/session in \
                 the {CSRF_HEADER} header"
            )));
        }
        if has_body(req.headers())
            && !is_json(req.headers())
            && !s.auth.file_routes.contains(path.as_str())
        {
            return Err(Error::UnsupportedMediaType(
                "a request body must be JSON (Content-Type: application/json)".into(),
            ));
        }
    }
    req.extensions_mut().insert(Arc::new(p));
    Ok(())
}

/// The authenticated caller of a handler (put there by [`guard`]).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| unauthenticated("this route needs credentials"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_rules() {
        assert_eq!(
            parse_roles("department, duty_operator").unwrap(),
            vec![Role::DutyOperator, Role::Department]
        );
        assert!(parse_roles("root").unwrap_err().contains("roles: admin"));
        assert!(parse_roles("").is_err());
        assert!(parse_roles("admin,admin").unwrap_err().contains("twice"));
        let ops = Access::Roles(&[Role::DutyOperator]);
        assert!(ops.admits(&[Role::Admin]) && ops.admits(&[Role::DutyOperator]));
        assert!(!ops.admits(&[Role::Department, Role::Integrator]));
        assert_eq!(ops.roles(), vec![Role::Admin, Role::DutyOperator]);
    }

    #[test]
    fn session_cookies_are_http_only_lax_and_secure_behind_tls() {
        let mut http = config::Http::default();
        let plain = Auth::new(&http, &[]).session_cookie("abc");
        assert!(plain.starts_with("hub_session=abc; Path=/; HttpOnly; SameSite=Lax"), "{plain}");
        assert!(!plain.contains("Secure"));
        http.secure_cookies = true;
        let tls = Auth::new(&http, &[]);
        assert!(tls.session_cookie("abc").ends_with("; Secure"));
        assert!(tls.cleared_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn origins_are_compared_with_the_host() {
        let h = |origin: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, "hub.local:8080".parse().unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, o.parse().unwrap());
            }
            m
        };
        assert!(!cross_origin(&h(None)));
        assert!(!cross_origin(&h(Some("http://hub.local:8080"))));
        assert!(cross_origin(&h(Some("http://evil.example"))));
        assert!(cross_origin(&h(Some("http://hub.local:8081"))));
        assert!(cross_origin(&h(Some("null"))));
    }
}
