//! Tag keys other systems own: StackInfra `ignoreTags` (pure).
//!
//! Beside panka's own tags (`panka:*` and StackInfra `tags`), a resource may carry tags that other
//! systems set and rely on: cost allocation, backup plans, security tooling. Listed in
//! `ignoreTags`, like the provider-level `ignore_tags` of Terraform's AWS provider, their keys are
//! never compared, set or removed; any other tag panka did not set is drift and removed. The
//! resolve stage checks the patterns ([`crate::resolve`]); the drivers' shared support code
//! applies them.
//!
//! A pattern is a tag key, or a key with `*` standing for any run of characters (none included):
//! `CostCenter`, `org:*`, `*-owner`. Matching is case-sensitive, as AWS tag keys are.

/// The `ignoreTags` patterns of a stack, ready to match keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoreTags<'a> {
    patterns: &'a [String],
}

impl<'a> IgnoreTags<'a> {
    /// The patterns as written in StackInfra `ignoreTags`.
    pub fn new(patterns: &'a [String]) -> IgnoreTags<'a> {
        IgnoreTags { patterns }
    }

    /// Whether a tag key belongs to another system.
    pub fn matches(&self, key: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, key))
    }

    /// The first pattern matching `key`, if any (for messages).
    pub fn pattern_for(&self, key: &str) -> Option<&'a str> {
        self.patterns
            .iter()
            .find(|p| glob_match(p, key))
            .map(String::as_str)
    }
}

/// Whether `key` matches `pattern`, where `*` in the pattern stands for any run of characters
/// and every other character for itself.
pub fn glob_match(pattern: &str, key: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let key: Vec<char> = key.chars().collect();
    let (mut p, mut k) = (0, 0);
    // Where the last `*` was, and the key position it currently stands up to: on a mismatch the
    // star takes one more character and matching resumes after it. Linear backtracking is
    // enough because a later star can always absorb what an earlier one would have.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, k));
                p += 1;
            }
            Some(c) if *c == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match star {
                Some((sp, sk)) => {
                    p = sp + 1;
                    k = sk + 1;
                    star = Some((sp, sk + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_keys_as_globs() {
        for (pattern, key, matches) in [
            // A key without `*` matches only itself, case included.
            ("CostCenter", "CostCenter", true),
            ("CostCenter", "costcenter", false),
            ("CostCenter", "CostCenter2", false),
            ("CostCenter", "Cost", false),
            // A trailing star: the prefix and anything after it, nothing included.
            ("org:*", "org:team", true),
            ("org:*", "org:", true),
            ("org:*", "org", false),
            ("org:*", "xorg:team", false),
            // A leading star, a middle one, several.
            ("*-owner", "team-owner", true),
            ("*-owner", "-owner", true),
            ("*-owner", "team-owner-2", false),
            ("a*c", "abbbc", true),
            ("a*c", "abcbd", false),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "acb", false),
            ("**", "", true),
            ("*", "anything:at/all", true),
            ("", "", true),
            ("", "x", false),
            // Backtracking: the first star must give characters back to the literal after it.
            ("*ab", "aab", true),
            ("*a*b", "xaxxab", true),
            // Other punctuation AWS allows in keys is literal.
            (
                "aws:cloudformation:*",
                "aws:cloudformation:stack-name",
                true,
            ),
            ("k.v/x=y", "k.v/x=y", true),
            // Characters beyond ASCII are characters, not bytes.
            ("équipe*", "équipe-paie", true),
        ] {
            assert_eq!(
                glob_match(pattern, key),
                matches,
                "`{pattern}` against `{key}`"
            );
        }
    }

    #[test]
    fn a_key_is_ignored_when_any_pattern_matches() {
        let patterns = vec!["CostCenter".to_string(), "org:*".to_string()];
        let ignore = IgnoreTags::new(&patterns);
        assert!(ignore.matches("CostCenter"));
        assert!(ignore.matches("org:team"));
        assert!(!ignore.matches("panka:stack"));
        assert_eq!(ignore.pattern_for("org:x"), Some("org:*"));
        assert_eq!(ignore.pattern_for("other"), None);
        assert!(!IgnoreTags::default().matches("CostCenter"));
    }
}
