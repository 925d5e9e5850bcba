//! Request routing by path: which part of Sluice answers a request.
//!
//! * `/<fn>[/sub][?q]` and `/function/<fn>[/sub][?q]` call function `<fn>`; the function sees
//!   `/<sub>` (or `/`) plus the query, never the `/function/<fn>` prefix.
//! * Reserved first segments (`function`, `async-function`, `system`, `healthz`, `metrics`,
//!   `ui`, `activations`) are never function names: `/healthz` is the gateway's own health,
//!   `/system/*` goes as-is to the orchestrator, and the features not built yet answer 501.
//! * A function name must be a DNS label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63
//!   characters); anything else is a malformed request.
//!
//! Parsing is pure and allocation-light; it never looks at the configuration (whether a
//! function exists is the catalog's business).

/// First path segments that can never name a function (the registry refuses them too).
pub const RESERVED: &[&str] = sluice_common::registry::RESERVED_NAMES;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`: answered by the gateway itself.
    Health,
    /// `/system/...`: proxied unchanged to the orchestrator.
    System,
    /// A reserved path whose feature is not built yet (answered 501); the feature's name.
    NotBuilt(&'static str),
    /// A function call.
    Function(FunctionCall),
}

/// A call of one function, as forwarded to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    /// The function name (a DNS label).
    pub name: String,
    /// Path and query the function sees: `/` or `/<sub>`, then `?query` when there was one.
    pub upstream_path: String,
}

/// Why a path names nothing callable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// `/`: no function in the path (not malformed, just nothing there: 404).
    #[error("no function in the path: call /<function> or /function/<function>")]
    NoFunction,
    /// `/function` or `/function/` without a name.
    #[error("missing function name after /function/")]
    MissingName,
    /// A first segment (or the segment after `/function/`) that is not a DNS label.
    #[error("invalid function name `{0}`: must be a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)")]
    InvalidName(String),
    /// The path does not start with `/` (e.g. `*` or an authority-form target).
    #[error("request target must be an absolute path")]
    NotAPath,
}

impl RouteError {
    /// True when the request itself is malformed (counted, answered 400); false for a
    /// well-formed path that simply names nothing (404).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, RouteError::NoFunction)
    }
}

/// Routes a request by its path and query (as split by the HTTP parser).
pub fn parse(path: &str, query: Option<&str>) -> Result<Route, RouteError> {
    let rest = path.strip_prefix('/').ok_or(RouteError::NotAPath)?;
    let (first, after_first) = split_segment(rest);
    match first {
        "" if after_first.is_empty() => Err(RouteError::NoFunction),
        "healthz" => Ok(Route::Health),
        "system" => Ok(Route::System),
        "function" => {
            let inner = after_first.strip_prefix('/').unwrap_or(after_first);
            let (name, sub) = split_segment(inner);
            if name.is_empty() {
                return Err(RouteError::MissingName);
            }
            call(name, sub, query)
        }
        "async-function" => Ok(Route::NotBuilt("async-function")),
        "metrics" => Ok(Route::NotBuilt("metrics")),
        "ui" => Ok(Route::NotBuilt("ui")),
        "activations" => Ok(Route::NotBuilt("activations")),
        name => call(name, after_first, query),
    }
}

/// Splits `a/b/c` into (`a`, `/b/c`); the second part is empty or starts with `/`.
fn split_segment(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn call(name: &str, sub: &str, query: Option<&str>) -> Result<Route, RouteError> {
    if !sluice_common::is_dns_label(name) {
        // Keep error bodies bounded whatever the client sent.
        let shown: String = name.chars().take(80).collect();
        return Err(RouteError::InvalidName(shown));
    }
    let mut upstream_path = String::with_capacity(sub.len() + query.map_or(0, |q| q.len() + 2));
    if sub.is_empty() {
        upstream_path.push('/');
    } else {
        upstream_path.push_str(sub);
    }
    if let Some(q) = query {
        upstream_path.push('?');
        upstream_path.push_str(q);
    }
    Ok(Route::Function(FunctionCall {
        name: name.to_string(),
        upstream_path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, path: &str) -> Result<Route, RouteError> {
        Ok(Route::Function(FunctionCall {
            name: name.into(),
            upstream_path: path.into(),
        }))
    }

    #[test]
    fn short_and_openfaas_forms_route_to_the_function_with_its_subpath() {
        assert_eq!(parse("/hello", None), f("hello", "/"));
        assert_eq!(parse("/hello/", None), f("hello", "/"));
        assert_eq!(parse("/hello/a/b", Some("x=1")), f("hello", "/a/b?x=1"));
        assert_eq!(parse("/function/hello", None), f("hello", "/"));
        assert_eq!(
            parse("/function/hello/sub", Some("x=1")),
            f("hello", "/sub?x=1")
        );
        assert_eq!(parse("/function/hello", Some("")), f("hello", "/?"));
        // A function may be called like a reserved word when reached through /function/.
        assert_eq!(parse("/function/ui", None), f("ui", "/"));
    }

    #[test]
    fn reserved_segments_never_name_functions() {
        assert_eq!(parse("/healthz", None), Ok(Route::Health));
        assert_eq!(parse("/system/functions", None), Ok(Route::System));
        assert_eq!(parse("/system", None), Ok(Route::System));
        for r in ["async-function", "metrics", "ui", "activations"] {
            assert_eq!(parse(&format!("/{r}/x"), None), Ok(Route::NotBuilt(r)));
        }
        for r in RESERVED {
            assert!(!matches!(
                parse(&format!("/{r}"), None),
                Ok(Route::Function(_))
            ));
        }
    }

    #[test]
    fn bad_names_are_malformed_and_root_is_not() {
        assert_eq!(parse("/", None), Err(RouteError::NoFunction));
        assert!(!RouteError::NoFunction.is_malformed());
        for p in [
            "/Hello",
            "/a_b",
            "/favicon.ico",
            "/-x",
            "//hello",
            "/h%65llo",
        ] {
            let e = parse(p, None).expect_err(p);
            assert!(e.is_malformed(), "{p}");
        }
        assert_eq!(parse("/function", None), Err(RouteError::MissingName));
        assert_eq!(parse("/function/", None), Err(RouteError::MissingName));
        assert_eq!(parse("*", None), Err(RouteError::NotAPath));
        let long = format!("/{}", "a".repeat(64));
        assert!(matches!(
            parse(&long, None),
            Err(RouteError::InvalidName(_))
        ));
    }
}
