//! Sharding, the Argo CD / Flux way: with `--shard INDEX/COUNT` a replica owns only the
//! targets whose stable hash falls in its shard, so COUNT replicas split a fleet between them
//! and, together, cover all of it. The hash is of the target's identity alone (stack and
//! environment), so every replica — and every restart — agrees on who owns what without
//! talking to the others. The per-stack lock stays the safety net when two replicas disagree
//! for a moment (a resharding rollout).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Which index a replica has: given, or read from its StatefulSet pod name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardIndex {
    /// `--shard 2/4`.
    Fixed(u32),
    /// `--shard ordinal/4`: the trailing `-N` of `POD_NAME` (or the host name), as a
    /// StatefulSet names its pods.
    Ordinal,
}

/// `--shard INDEX/COUNT` as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    /// The index, or where to read it.
    pub index: ShardIndex,
    /// How many shards there are.
    pub count: u32,
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardSpec, String> {
        let usage =
            || format!("`{s}` is not INDEX/COUNT (e.g. 0/3, or ordinal/3 in a StatefulSet)");
        let (index, count) = s.split_once('/').ok_or_else(usage)?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err("the shard count must be at least 1".to_owned());
        }
        let index = match index.trim() {
            "ordinal" => ShardIndex::Ordinal,
            n => {
                let n: u32 = n.parse().map_err(|_| usage())?;
                if n >= count {
                    return Err(format!(
                        "shard index {n} is not below the shard count {count} (indexes start at 0)"
                    ));
                }
                ShardIndex::Fixed(n)
            }
        };
        Ok(ShardSpec { index, count })
    }
}

/// The shard a replica owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This replica's index, below `count`.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl Shard {
    /// Every target: no sharding.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// The shard `spec` names; `pod_name` resolves `ordinal`.
    pub fn resolve(spec: ShardSpec, pod_name: Option<&str>) -> Result<Shard, String> {
        let index = match spec.index {
            ShardIndex::Fixed(n) => n,
            ShardIndex::Ordinal => {
                let name = pod_name.ok_or(
                    "--shard ordinal/N needs POD_NAME (or the host name) to end in -N, as a StatefulSet's pods do",
                )?;
                let n = name
                    .rsplit_once('-')
                    .and_then(|(_, n)| n.parse::<u32>().ok())
                    .ok_or_else(|| {
                        format!("--shard ordinal/N: the pod name `{name}` does not end in -N")
                    })?;
                if n >= spec.count {
                    return Err(format!(
                        "--shard ordinal/{}: pod `{name}` has ordinal {n}; scale the StatefulSet to the shard count",
                        spec.count
                    ));
                }
                n
            }
        };
        Ok(Shard {
            index,
            count: spec.count,
        })
    }

    /// Whether this replica owns `stack` in `environment`.
    pub fn owns(&self, stack: &str, environment: &str) -> bool {
        self.count <= 1 || shard_of(stack, environment, self.count) == self.index
    }

    /// Whether there is more than one shard.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of a target among `count`: the first eight bytes of SHA-256 of
/// `{stack}/{environment}`, modulo `count` — stable across processes, versions and platforms.
pub fn shard_of(stack: &str, environment: &str, count: u32) -> u32 {
    let digest = Sha256::digest(format!("{stack}/{environment}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let n = u64::from_be_bytes(first) % u64::from(count.max(1));
    u32::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_index_and_count_or_the_ordinal() {
        assert_eq!(
            "1/3".parse::<ShardSpec>(),
            Ok(ShardSpec {
                index: ShardIndex::Fixed(1),
                count: 3
            })
        );
        assert_eq!(
            "ordinal/2".parse::<ShardSpec>().map(|s| s.index),
            Ok(ShardIndex::Ordinal)
        );
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ordinal_is_the_pod_names_trailing_number() {
        let spec: ShardSpec = "ordinal/3".parse().unwrap();
        assert_eq!(
            Shard::resolve(spec, Some("panka-controller-2")),
            Ok(Shard { index: 2, count: 3 })
        );
        let err = Shard::resolve(spec, Some("panka-controller-7")).unwrap_err();
        assert!(err.contains("ordinal 7"), "{err}");
        assert!(Shard::resolve(spec, Some("panka-controller")).is_err());
        assert!(Shard::resolve(spec, None).is_err());
    }

    #[test]
    fn shards_split_targets_disjointly_and_cover_them_all() {
        let targets: Vec<(String, String)> = (0..200)
            .flat_map(|i| {
                ["development", "staging", "production"]
                    .map(|e| (format!("stack-{i}"), e.to_owned()))
            })
            .collect();
        let count = 3;
        let mut sizes = vec![0usize; 3];
        for (s, e) in &targets {
            let owners: Vec<u32> = (0..count)
                .filter(|&i| Shard { index: i, count }.owns(s, e))
                .collect();
            assert_eq!(owners.len(), 1, "{s}/{e} has owners {owners:?}");
            sizes[owners[0] as usize] += 1;
        }
        // A stable hash spreads 600 targets roughly evenly (each shard well above a quarter).
        assert!(sizes.iter().all(|&n| n > 150), "{sizes:?}");
        assert!(Shard::ALL.owns("anything", "production"));
        // Stable: pinned values (computed independently, with Python's hashlib), so a change
        // of hash — which would move targets between replicas on upgrade — fails here.
        assert_eq!(shard_of("notifications-platform", "development", 2), 1);
        assert_eq!(shard_of("notifications-platform", "staging", 2), 0);
        assert_eq!(shard_of("notifications-platform", "staging", 3), 1);
    }
}
