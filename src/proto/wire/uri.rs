//! URI rules (`basic/building_blocks.md` § URIs).
//!
//! Loose rules are the default and MUST hold: components separated by `.`, no whitespace,
//! no `#`, no empty component (except in patterns). Strict rules (per realm) also limit
//! components to `[0-9a-z_]`. Application URIs must not start with `wamp.`; the router
//! refuses to let clients register or publish there.

use crate::limits::URI_LEN_MAX_BYTES;

/// How a subscription or registration matches URIs (`Options.match`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchPolicy {
    #[default]
    Exact,
    Prefix,
    Wildcard,
}

impl MatchPolicy {
    pub fn parse(s: &str) -> Option<MatchPolicy> {
        match s {
            "exact" => Some(MatchPolicy::Exact),
            "prefix" => Some(MatchPolicy::Prefix),
            "wildcard" => Some(MatchPolicy::Wildcard),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MatchPolicy::Exact => "exact",
            MatchPolicy::Prefix => "prefix",
            MatchPolicy::Wildcard => "wildcard",
        }
    }
}

/// Whether `uri` is valid. `allow_empty` permits empty components (wildcard patterns, and
/// prefix patterns that end in `.`); `strict` limits component characters to `[0-9a-z_]`.
pub fn is_valid(uri: &str, strict: bool, allow_empty: bool) -> bool {
    if uri.is_empty() || uri.len() > URI_LEN_MAX_BYTES {
        return false;
    }
    if uri.is_ascii() {
        // The common case, byte by byte: empty components, and whitespace or `#`.
        let mut component_len = 0usize;
        for &b in uri.as_bytes() {
            if b == b'.' {
                if component_len == 0 && !allow_empty {
                    return false;
                }
                component_len = 0;
                continue;
            }
            let ok = if strict {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
            } else {
                // Control characters too: a URI starting with U+0000 would read back from
                // JSON as WAMP binary (found by fuzzing).
                !(b.is_ascii_whitespace() || b == b'#' || b.is_ascii_control())
            };
            if !ok {
                return false;
            }
            component_len += 1;
        }
        return component_len > 0 || allow_empty;
    }
    for component in uri.split('.') {
        if component.is_empty() {
            if !allow_empty {
                return false;
            }
            continue;
        }
        let ok = if strict {
            component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        } else {
            !component.chars().any(|c| c.is_whitespace() || c == '#' || c.is_control())
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a URI used with `policy` is valid: exact needs every component; prefix may end
/// with an empty component ("com.app." is a prefix); wildcard may have empty components
/// anywhere (they match any one component).
pub fn is_valid_for(uri: &str, policy: MatchPolicy, strict: bool) -> bool {
    match policy {
        MatchPolicy::Exact => is_valid(uri, strict, false),
        MatchPolicy::Prefix | MatchPolicy::Wildcard => is_valid(uri, strict, true),
    }
}

/// Whether a registration or subscription `pattern` with `policy` covers `uri`. Prefix is
/// a plain string prefix (the widest reading: this is used to guard reserved procedures);
/// wildcard needs the same number of components, an empty one matching any.
pub fn pattern_matches(policy: MatchPolicy, pattern: &str, uri: &str) -> bool {
    match policy {
        MatchPolicy::Exact => pattern == uri,
        MatchPolicy::Prefix => uri.starts_with(pattern),
        MatchPolicy::Wildcard => {
            let (mut p, mut u) = (pattern.split('.'), uri.split('.'));
            loop {
                match (p.next(), u.next()) {
                    (None, None) => return true,
                    (Some(a), Some(b)) if a.is_empty() || a == b => {}
                    _ => return false,
                }
            }
        }
    }
}

/// URIs under `wamp.` are the router's own.
pub fn is_reserved(uri: &str) -> bool {
    uri.starts_with("wamp.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_rules() {
        assert!(is_valid("com.myapp.topic1", false, false));
        assert!(is_valid("com.MyApp.Topic-1", false, false));
        assert!(!is_valid("com..topic", false, false));
        assert!(!is_valid("com.my app", false, false));
        assert!(!is_valid("com.#", false, false));
        assert!(!is_valid("\0com.app", false, false), "control characters are not URI text");
        assert!(!is_valid("com.a\u{7f}", false, false));
        assert!(!is_valid("com.é\u{85}", false, false));
        assert!(!is_valid("", false, false));
        assert!(!is_valid("com.app.", false, false));
        assert!(!is_valid(".com", false, false));
    }

    #[test]
    fn pattern_matches_each_policy() {
        assert!(pattern_matches(MatchPolicy::Exact, "com.a.auth", "com.a.auth"));
        assert!(!pattern_matches(MatchPolicy::Exact, "com.a", "com.a.auth"));
        assert!(pattern_matches(MatchPolicy::Prefix, "com.a", "com.a.auth"));
        assert!(pattern_matches(MatchPolicy::Prefix, "", "com.a.auth"));
        assert!(!pattern_matches(MatchPolicy::Prefix, "com.b", "com.a.auth"));
        assert!(pattern_matches(MatchPolicy::Wildcard, "com..auth", "com.a.auth"));
        assert!(!pattern_matches(MatchPolicy::Wildcard, "com..auth", "com.a.b.auth"));
        assert!(!pattern_matches(MatchPolicy::Wildcard, "com..", "com.a"));
    }

    #[test]
    fn strict_rules() {
        assert!(is_valid("com.myapp.topic_1", true, false));
        assert!(!is_valid("com.MyApp", true, false));
        assert!(!is_valid("com.my-app", true, false));
    }

    #[test]
    fn pattern_rules() {
        assert!(is_valid_for("com..topic", MatchPolicy::Wildcard, false));
        assert!(is_valid_for("com.app.", MatchPolicy::Prefix, false));
        assert!(!is_valid_for("com..topic", MatchPolicy::Exact, false));
        assert!(!is_valid_for("com. .x", MatchPolicy::Wildcard, false));
    }

    #[test]
    fn ascii_fast_path_agrees_with_the_general_rules() {
        // \u{0b} (vertical tab) is whitespace for `char::is_whitespace` but not for
        // `u8::is_ascii_whitespace`; both paths must reject it.
        for uri in ["a.b", "a..b", "a.b.", ".a", "a b", "a\u{0b}b", "a#b", "A.b", "a_1.b2", "", "a\u{a0}b", "é.b"] {
            for (strict, empty) in [(false, false), (false, true), (true, false), (true, true)] {
                let general = uri.split('.').all(|c| {
                    if c.is_empty() {
                        return empty;
                    }
                    if strict {
                        c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    } else {
                        !c.chars().any(|ch| ch.is_whitespace() || ch == '#')
                    }
                }) && !uri.is_empty();
                assert_eq!(is_valid(uri, strict, empty), general, "{uri:?} strict={strict} empty={empty}");
            }
        }
    }

    #[test]
    fn length_is_bounded() {
        let long = "a".repeat(URI_LEN_MAX_BYTES + 1);
        assert!(!is_valid(&long, false, false));
    }
}
