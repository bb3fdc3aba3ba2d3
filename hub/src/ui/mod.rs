//! The duty room's web UI, embedded in the binary (`hub/build.rs` takes `hub/ui/dist`, the
//! output of `npm run build` in `hub/ui`). Served on every GET path outside `/api/`: a file
//! of the build by its path, anything else the app's `index.html` (its own routes). Hashed
//! files under `assets/` are immutable; `index.html` is revalidated by its ETag, so a new
//! binary's UI is picked up at the next load. Gzip when the browser takes it. The files
//! carry no data: the app asks the API, which checks every request.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// Relative to the build's root, `/`-separated.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Quoted, as the header carries it.
    pub etag: &'static str,
    pub raw: &'static [u8],
    pub gzip: &'static [u8],
}

/// The built UI's files (none when it was not built).
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The page a binary built without the UI serves.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Supervision hub</title>\
<p>This hub was built without its web UI. Build it with <code>cd hub/ui &amp;&amp; npm ci \
&amp;&amp; npm run build</code>, then rebuild the hub (<code>scripts/demo</code> and \
<code>scripts/test</code> do both). The API is at <a href=/api/v1/openapi.json>\
/api/v1/openapi.json</a>.</p>";

/// What the browser may do with our pages: only this origin's scripts, styles, images, media
/// (MSE blobs) and connections; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Whether a request is for the UI (GET or HEAD outside the API).
pub fn wants(method: &Method, uri: &Uri) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && !uri.path().starts_with("/api/")
        && uri.path() != "/api"
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Serves a UI request (see [`wants`]).
pub fn serve(uri: &Uri, headers: &HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let asset = find(path).or_else(|| {
        // A missing hashed file is a stale page asking for an old build: 404, not the app.
        if path.starts_with("assets/") { None } else { find("index.html") }
    });
    let Some(a) = asset else {
        if ASSETS.is_empty() {
            return page(StatusCode::OK, NOT_BUILT);
        }
        return page(StatusCode::NOT_FOUND, "<!doctype html><title>Not found</title>Not found");
    };
    let immutable = a.path.starts_with("assets/");
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(header::ETAG, HeaderValue::from_static(a.etag));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    security_headers(&mut h);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.split(';').next().unwrap_or("").trim() == "gzip"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (StatusCode::OK, h, a.gzip).into_response()
    } else {
        (StatusCode::OK, h, a.raw).into_response()
    }
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn page(status: StatusCode, body: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(&mut h);
    (status, h, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_outside_the_api_are_the_uis() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert!(wants(&Method::GET, &u("/")));
        assert!(wants(&Method::HEAD, &u("/wall")));
        assert!(!wants(&Method::POST, &u("/wall")));
        assert!(!wants(&Method::GET, &u("/api/v1/nope")));
        assert!(!wants(&Method::GET, &u("/api")));
    }

    const BUILD_IT: &str = "the web UI is not built into this test binary: run \
        `cd hub/ui && npm ci && npm run build` (scripts/test does), then test again";

    #[test]
    fn a_missing_hashed_asset_is_not_found_and_app_routes_get_the_app() {
        assert!(!ASSETS.is_empty(), "{BUILD_IT}");
        let r = serve(&"/assets/old-1234.js".parse().unwrap(), &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = serve(&"/wall".parse().unwrap(), &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let js = ASSETS.iter().find(|a| a.path.ends_with(".js")).expect("a script in the build");
        let r = serve(&format!("/{}", js.path).parse().unwrap(), &HeaderMap::new());
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    }

    #[test]
    fn the_etag_revalidates_and_gzip_is_given_when_taken() {
        let a = ASSETS.iter().find(|a| a.path == "index.html").expect(BUILD_IT);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(a.etag));
        assert_eq!(serve(&"/".parse().unwrap(), &h).status(), StatusCode::NOT_MODIFIED);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.9"));
        let r = serve(&"/".parse().unwrap(), &h);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
    }
}
