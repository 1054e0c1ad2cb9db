//! SSH host key checking against a `known_hosts` file, for the git source (pure: the caller
//! reads the file). libgit2 by itself only reads `~/.ssh/known_hosts`; a controller checks the
//! file mounted for it and refuses every host key not listed there (fail closed).
//!
//! Understood: plain host names, `[host]:port`, comma-separated lists, hashed entries
//! (`|1|salt|hmac`, as `ssh-keygen -H` writes them) and `@revoked` lines. Patterns with
//! wildcards (`*`, `?`) or negation (`!`) and `@cert-authority` lines never match: list the
//! host itself.

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// What the known_hosts file says of `host` presenting the key `key` (the raw key blob, as
/// base64-encoded in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKey {
    /// Listed for this host: trust it.
    Known,
    /// Marked `@revoked`: never trust it.
    Revoked,
    /// Not listed for this host (the host may be listed with other keys).
    Unknown,
}

/// Looks `host` and `key` up in the text of a known_hosts file.
pub fn check(known_hosts: &str, host: &str, key: &[u8]) -> HostKey {
    let mut known = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = first.strip_prefix('@');
        if marker.is_some() {
            first = fields.next().unwrap_or_default();
        }
        let (Some(_key_type), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(listed) = base64::engine::general_purpose::STANDARD.decode(blob) else {
            continue;
        };
        if listed != key || !first.split(',').any(|p| matches_host(p, host)) {
            continue;
        }
        match marker {
            Some("revoked") => return HostKey::Revoked,
            Some(_) => {}
            None => known = true,
        }
    }
    if known {
        HostKey::Known
    } else {
        HostKey::Unknown
    }
}

/// Whether one host pattern of a known_hosts line names `host`.
fn matches_host(pattern: &str, host: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(host.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    if pattern.contains(['*', '?', '!']) {
        return false;
    }
    // `[host]:port`: libgit2 names the host without its port; the key is the host's.
    let bare = pattern
        .strip_prefix('[')
        .and_then(|p| p.split_once("]:"))
        .map_or(pattern, |(h, _)| h);
    bare.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20abcdefghijabcdefghijabcdefghij12";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_listed_host_and_key_is_known() {
        let file = format!(
            "# comment\n\ngit.example.com,10.0.0.1 ssh-ed25519 {}\n",
            b64(KEY)
        );
        assert_eq!(check(&file, "git.example.com", KEY), HostKey::Known);
        assert_eq!(check(&file, "10.0.0.1", KEY), HostKey::Known);
        assert_eq!(check(&file, "GIT.example.com", KEY), HostKey::Known);
    }

    #[test]
    fn another_key_or_another_host_is_unknown() {
        let file = format!("git.example.com ssh-ed25519 {}\n", b64(KEY));
        assert_eq!(check(&file, "git.example.com", b"other"), HostKey::Unknown);
        assert_eq!(check(&file, "evil.example.com", KEY), HostKey::Unknown);
        assert_eq!(check("", "git.example.com", KEY), HostKey::Unknown);
    }

    #[test]
    fn a_host_with_a_port_and_a_hashed_host_are_understood() {
        let with_port = format!("[git.example.com]:2222 ssh-ed25519 {}\n", b64(KEY));
        assert_eq!(check(&with_port, "git.example.com", KEY), HostKey::Known);
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"git.example.com");
        let hashed = format!(
            "|1|{}|{} ssh-ed25519 {}\n",
            b64(salt),
            b64(&mac.finalize().into_bytes()),
            b64(KEY)
        );
        assert_eq!(check(&hashed, "git.example.com", KEY), HostKey::Known);
        assert_eq!(check(&hashed, "other.example.com", KEY), HostKey::Unknown);
    }

    #[test]
    fn a_revoked_key_is_refused_even_when_also_listed() {
        let file = format!(
            "git.example.com ssh-ed25519 {k}\n@revoked git.example.com ssh-ed25519 {k}\n",
            k = b64(KEY)
        );
        assert_eq!(check(&file, "git.example.com", KEY), HostKey::Revoked);
    }

    #[test]
    fn wildcards_and_cert_authorities_never_match() {
        let file = format!(
            "*.example.com ssh-ed25519 {k}\n@cert-authority git.example.com ssh-ed25519 {k}\n",
            k = b64(KEY)
        );
        assert_eq!(check(&file, "git.example.com", KEY), HostKey::Unknown);
    }
}
