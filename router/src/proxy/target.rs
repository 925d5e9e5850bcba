//! Which function a request is for, and the path its replica sees.
//!
//! `X-Sluice-Function` wins when present (the gateway sets it and already rewrote the path);
//! otherwise the first path segment names the function and is stripped:
//! `/hello/x?q=1` → function `hello`, upstream path `/x?q=1`; `/hello` → `/`.

/// Header naming the function.
pub const FUNCTION_HEADER: &str = "x-sluice-function";

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub function: String,
    /// New path-and-query for the upstream; `None` keeps the request's own.
    pub upstream_path: Option<String>,
}

/// Resolves the target from the header value (if any) and the request's path and query.
/// `None` when the request names no function at all.
pub fn resolve(header: Option<&[u8]>, path: &str, query: Option<&str>) -> Option<Target> {
    if let Some(h) = header {
        let name = String::from_utf8_lossy(h).trim().to_string();
        if !name.is_empty() {
            return Some(Target {
                function: name,
                upstream_path: None,
            });
        }
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    let (function, sub) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if function.is_empty() {
        return None;
    }
    let mut upstream = String::with_capacity(sub.len() + query.map_or(0, |q| q.len() + 1));
    upstream.push_str(sub);
    if let Some(q) = query {
        upstream.push('?');
        upstream.push_str(q);
    }
    Some(Target {
        function: function.to_string(),
        upstream_path: Some(upstream),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str, q: Option<&str>) -> (String, Option<String>) {
        let t = resolve(None, p, q).expect("function");
        (t.function, t.upstream_path)
    }

    #[test]
    fn first_segment_is_stripped() {
        assert_eq!(
            path("/hello/x", Some("q=1")),
            ("hello".into(), Some("/x?q=1".into()))
        );
        assert_eq!(path("/hello", None), ("hello".into(), Some("/".into())));
        assert_eq!(path("/hello/", None), ("hello".into(), Some("/".into())));
        assert_eq!(
            path("/hello", Some("a=b")),
            ("hello".into(), Some("/?a=b".into()))
        );
        assert_eq!(
            path("/hello/a/b/", None),
            ("hello".into(), Some("/a/b/".into()))
        );
    }

    #[test]
    fn header_wins_and_keeps_the_path() {
        let t = resolve(Some(b" echo "), "/hello/x", Some("q=1")).expect("target");
        assert_eq!(t.function, "echo");
        assert_eq!(t.upstream_path, None);
        // An empty header falls back to the path.
        assert_eq!(resolve(Some(b""), "/a", None).expect("a").function, "a");
    }

    #[test]
    fn no_function() {
        assert_eq!(resolve(None, "/", None), None);
        assert_eq!(resolve(None, "", Some("x")), None);
        assert_eq!(resolve(None, "//x", None), None);
    }
}
