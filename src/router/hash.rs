//! The stable placement function for tenants not listed in the routing table.
//!
//! `place(tenant, n) = jump_consistent_hash(fnv1a_64(utf8 bytes of tenant), n)`
//!
//! * FNV-1a 64: offset basis 0xcbf29ce484222325, prime 0x100000001b3, over
//!   the tenant id's UTF-8 bytes.
//! * Jump consistent hash (Lamping & Veach, 2014), the reference loop with
//!   the 64-bit LCG constant 2862933555777941757.
//!
//! Both are defined on integers only, so every platform and version gives the
//! same answer; growing `hash_shards` from n to n+1 entries moves about 1/(n+1)
//! of the unlisted tenants, all of them to the new last shard.

/// FNV-1a 64-bit hash of the tenant id.
pub fn tenant_key(tenant: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Jump consistent hash: a bucket in `0..buckets` for `key`.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = (((b + 1) as f64) * ((1u64 << 31) as f64 / (((key >> 33) + 1) as f64))) as i64;
    }
    b as u32
}

/// Index into `hash_shards` for `tenant`, or `None` when there are none.
pub fn place(tenant: &str, shards: usize) -> Option<usize> {
    if shards == 0 {
        return None;
    }
    Some(jump_consistent_hash(tenant_key(tenant), shards as u32) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_vectors() {
        assert_eq!(tenant_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(tenant_key("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(tenant_key("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jump_vectors_never_change() {
        // Fixed vectors: changing any of these moves tenants between shards.
        let got: Vec<usize> = ["acme", "globex", "initech", "umbrella", "t1", "t2", "t3"]
            .iter()
            .map(|t| place(t, 2).unwrap_or(usize::MAX))
            .collect();
        assert_eq!(got, FIXED_2);
        let got10: Vec<usize> = (0..10)
            .map(|i| place(&format!("tenant-{i}"), 10).unwrap_or(usize::MAX))
            .collect();
        assert_eq!(got10, FIXED_10);
    }

    const FIXED_2: [usize; 7] = [0, 1, 0, 0, 1, 1, 0];
    const FIXED_10: [usize; 10] = [1, 1, 0, 3, 8, 4, 4, 0, 0, 8];

    #[test]
    fn adding_a_shard_moves_few_tenants() {
        let n = 10_000;
        let moved = (0..n)
            .filter(|i| {
                let t = format!("tenant-{i}");
                let before = place(&t, 4);
                let after = place(&t, 5);
                before != after && {
                    assert_eq!(after, Some(4), "moves only to the new shard");
                    true
                }
            })
            .count();
        // Expect about n/5 to move.
        assert!(moved > n / 6 && moved < n / 4, "moved {moved}");
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(place("x", 0), None);
        assert_eq!(place("x", 1), Some(0));
    }
}
