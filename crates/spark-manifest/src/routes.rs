//! What an HTTP route means and which module a path goes to.
//!
//! Two forms, as in Spin: `/exact/path` matches that path only, `/prefix/...` matches the prefix
//! and everything below it (`/...` matches everything). The most specific route wins: an exact
//! route beats any wildcard, and a longer wildcard prefix beats a shorter one. That rule makes
//! the outcome independent of declaration order, so two identical routes are the only conflict.

use std::collections::HashMap;
use std::fmt;

/// A validated route pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Matches exactly this path.
    Exact(String),
    /// Matches this prefix (without trailing slash, empty for the root) and everything under it.
    Wildcard(String),
}

/// Why a route pattern was refused; each variant holds the route as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The route does not start with `/`.
    #[error("route {text:?} must start with '/'")]
    NoLeadingSlash {
        /// The route as written.
        text: String,
    },
    /// The route has a `?`, a `#` or a space.
    #[error("route {text:?} may not contain '?', '#' or spaces: routes match paths only")]
    NotAPath {
        /// The route as written.
        text: String,
    },
    /// The route ends in `/...` but has another `...` before it.
    #[error("route {text:?}: '...' may only end a route")]
    DotsBeforeEnd {
        /// The route as written.
        text: String,
    },
    /// `...` appears other than as a final `/...` segment (`/api...`).
    #[error("route {text:?}: '...' may only appear as a final '/...' segment")]
    DotsNotASegment {
        /// The route as written.
        text: String,
    },
}

impl Route {
    /// Parses `/exact/path` or `/prefix/...`; trailing slashes of a path or prefix are dropped.
    pub fn parse(text: &str) -> Result<Route, RouteError> {
        let text_owned = || text.to_owned();
        if !text.starts_with('/') {
            return Err(RouteError::NoLeadingSlash { text: text_owned() });
        }
        if text.contains(['?', '#', ' ']) {
            return Err(RouteError::NotAPath { text: text_owned() });
        }
        if let Some(prefix) = text.strip_suffix("/...") {
            if prefix.contains("...") {
                return Err(RouteError::DotsBeforeEnd { text: text_owned() });
            }
            return Ok(Route::Wildcard(prefix.trim_end_matches('/').to_owned()));
        }
        if text.contains("...") {
            return Err(RouteError::DotsNotASegment { text: text_owned() });
        }
        let normalized = if text.len() > 1 {
            text.trim_end_matches('/')
        } else {
            text
        };
        Ok(Route::Exact(normalized.to_owned()))
    }

    /// Whether `path` (without query) is served by this route.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Route::Exact(exact) => {
                path == exact || (exact != "/" && path.strip_suffix('/') == Some(exact))
            }
            Route::Wildcard(prefix) => {
                prefix.is_empty()
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }

    /// The part of `path` below the route's prefix (`/x/y` for `/api/...` and `/api/x/y`);
    /// empty for exact routes. Only meaningful when the route matches `path`.
    pub fn path_info<'p>(&self, path: &'p str) -> &'p str {
        match self {
            Route::Exact(_) => "",
            Route::Wildcard(prefix) => path.get(prefix.len()..).unwrap_or(""),
        }
    }

    /// The path or prefix, without the form.
    fn pattern(&self) -> &str {
        match self {
            Route::Exact(path) | Route::Wildcard(path) => path,
        }
    }

    /// Higher is more specific.
    fn specificity(&self) -> (u8, usize) {
        match self {
            Route::Exact(path) => (1, path.len()),
            Route::Wildcard(prefix) => (0, prefix.len()),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Exact(path) => f.write_str(path),
            Route::Wildcard(prefix) => write!(f, "{prefix}/..."),
        }
    }
}

/// Routes to targets (module indexes, ids, ...), most specific first.
///
/// A lookup costs the path's length, not the number of routes: exact routes and wildcard
/// prefixes are indexed by their text, and a path is looked up as itself (and without a
/// trailing `/`), then as each of its prefixes ending before a `/`, longest first.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    entries: Vec<(Route, T)>,
    /// Index in `entries` of each exact route, by its path.
    exact: HashMap<String, usize>,
    /// Index in `entries` of each wildcard route, by its prefix.
    wildcard: HashMap<String, usize>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            entries: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Builds a table; fails with the duplicated route if two entries are identical.
    pub fn new(entries: impl IntoIterator<Item = (Route, T)>) -> Result<RouteTable<T>, Route> {
        let mut entries: Vec<(Route, T)> = entries.into_iter().collect();
        // Equally specific routes by text too, so that identical ones end up side by side.
        entries.sort_by(|(a, _), (b, _)| {
            (b.specificity().cmp(&a.specificity())).then_with(|| a.pattern().cmp(b.pattern()))
        });
        for pair in entries.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(pair[0].0.clone());
            }
        }
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, (route, _)) in entries.iter().enumerate() {
            match route {
                Route::Exact(path) => exact.insert(path.clone(), i),
                Route::Wildcard(prefix) => wildcard.insert(prefix.clone(), i),
            };
        }
        Ok(RouteTable {
            entries,
            exact,
            wildcard,
        })
    }

    /// The target of the most specific route matching `path`.
    pub fn lookup(&self, path: &str) -> Option<&T> {
        self.lookup_route(path).map(|(_, target)| target)
    }

    /// The most specific route matching `path`, with its target.
    pub fn lookup_route(&self, path: &str) -> Option<(&Route, &T)> {
        let found = self.exact.get(path).or_else(|| {
            path.strip_suffix('/')
                .filter(|p| *p != "/")
                .and_then(|p| self.exact.get(p))
        });
        let found = found.or_else(|| {
            // Wildcards, most specific (longest prefix) first: the path itself, then each
            // prefix followed by a `/`, down to the empty prefix (`/...`).
            std::iter::once(path)
                .chain(path.rmatch_indices('/').map(|(i, _)| &path[..i]))
                .find_map(|prefix| self.wildcard.get(prefix))
                .or_else(|| self.wildcard.get(""))
        });
        found.map(|&i| {
            let (route, target) = &self.entries[i];
            (route, target)
        })
    }

    /// The routes and their targets, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &(Route, T)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Route {
        Route::parse(text).unwrap()
    }

    #[test]
    fn parsing() {
        assert_eq!(route("/api/..."), Route::Wildcard("/api".into()));
        assert_eq!(route("/..."), Route::Wildcard(String::new()));
        assert_eq!(route("/hello/"), Route::Exact("/hello".into()));
        assert_eq!(route("/"), Route::Exact("/".into()));
        assert!(Route::parse("api").is_err());
        assert!(Route::parse("/a/.../b").is_err());
        assert_eq!(
            Route::parse("/a?x=1").unwrap_err().to_string(),
            "route \"/a?x=1\" may not contain '?', '#' or spaces: routes match paths only"
        );
        assert_eq!(route("/api/...").to_string(), "/api/...");
    }

    #[test]
    fn matching() {
        assert!(route("/api/...").matches("/api"));
        assert!(route("/api/...").matches("/api/x/y"));
        assert!(!route("/api/...").matches("/apix"));
        assert!(route("/...").matches("/anything"));
        assert!(route("/hello").matches("/hello/"));
        assert!(!route("/hello").matches("/hello/x"));
        assert!(route("/").matches("/"));
        assert!(!route("/").matches("/x"));
        assert_eq!(route("/api/...").path_info("/api/x/y"), "/x/y");
        assert_eq!(route("/...").path_info("/x"), "/x");
        assert_eq!(route("/hello").path_info("/hello"), "");
    }

    #[test]
    fn most_specific_wins_regardless_of_order() {
        let table = RouteTable::new([
            (route("/..."), "root"),
            (route("/api/..."), "api"),
            (route("/api/v2/..."), "v2"),
            (route("/api/health"), "health"),
        ])
        .unwrap();
        assert_eq!(table.lookup("/x"), Some(&"root"));
        assert_eq!(table.lookup("/api/x"), Some(&"api"));
        assert_eq!(table.lookup("/api/v2/x"), Some(&"v2"));
        assert_eq!(table.lookup("/api/health"), Some(&"health"));
        let empty: RouteTable<u8> = RouteTable::new([]).unwrap();
        assert_eq!(empty.lookup("/"), None);
    }

    /// The indexed lookup finds what a scan for the first (most specific) match finds.
    #[test]
    fn indexed_lookup_agrees_with_a_scan() {
        let routes = [
            "/...",
            "/",
            "/a",
            "/a/",
            "/a/...",
            "/a/b/...",
            "/a/b",
            "/a/b/c",
            "/ab/...",
            "/x/y/...",
            "/hello",
            "/api/v2/...",
            "/api/...",
        ];
        let table = RouteTable::new(
            routes
                .iter()
                .enumerate()
                .filter(|(_, r)| **r != "/a/")
                .map(|(i, r)| (route(r), i)),
        )
        .unwrap();
        let paths = [
            "/", "//", "", "/a", "/a/", "/a//", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/", "/a/b/c/d",
            "/ab", "/ab/", "/abc", "/x", "/x/y", "/x/y/", "/x/yz", "/hello/", "/hello/x",
            "/api/v2", "/api/v2x", "/api", "/b", "/a/bc",
        ];
        for path in paths {
            let scanned = table
                .entries
                .iter()
                .find(|(route, _)| route.matches(path))
                .map(|(route, target)| (route, target));
            assert_eq!(table.lookup_route(path), scanned, "{path:?}");
        }
        let no_root = RouteTable::new([(route("/a/..."), 1), (route("/b"), 2)]).unwrap();
        assert_eq!(no_root.lookup("/c"), None);
        assert_eq!(no_root.lookup("/b/"), Some(&2));
        assert_eq!(no_root.lookup("/a/x/y"), Some(&1));
    }

    #[test]
    fn duplicates_are_refused() {
        let dup = RouteTable::new([
            (route("/a/..."), 1),
            (route("/a/"), 2),
            (route("/a/..."), 3),
        ]);
        assert_eq!(dup.unwrap_err(), route("/a/..."));
        // Equally specific routes between the two copies hid them from each other.
        let apart = RouteTable::new([(route("/a"), 1), (route("/b"), 2), (route("/a"), 3)]);
        assert_eq!(apart.unwrap_err(), route("/a"));
    }
}
