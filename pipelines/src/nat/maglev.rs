//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) for load-balanced mappings: a published port served
//! by several backends picks each new flow's backend from a lookup table.
//!
//! The table has a prime number `M` of slots. Each backend has a preference list, a permutation of the slots
//! given by an offset and a skip (`(offset + j * skip) mod M`, both from hashes of the backend's identity);
//! the backends take turns claiming their next preferred slot that is still free until every slot is taken.
//! So each backend owns `M / N` slots, give or take one, and since a backend's preferences depend only on its
//! own identity, adding or removing one backend moves few slots besides its own (the paper's, and our
//! measurement's, figure: a few percent over the ideal `1/N`).
//!
//! Built by the control thread (it allocates) and shared read-only by the workers in the snapshot; a lookup
//! is one multiply and one read. Flows already tracked keep their backend whatever the table says later: the
//! conntrack entry holds the translation, the table only places new flows.

use super::{fold_mul, reduce, K1, K2};

/// A good default size: prime, and large enough for a few hundred backends to be balanced within 1 %.
pub const DEFAULT_SIZE: usize = 65537;
/// The largest table (a prime below 2^24).
pub const MAX_SIZE: usize = 16_777_213;

/// Why a table cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The size is not a prime (or is below 2 or above [`MAX_SIZE`]).
    SizeNotPrime,
    /// More backends than slots (or than a `u16` index can name).
    TooManyBackends,
    /// Two backends have the same identity.
    DuplicateBackend,
}

/// A Maglev lookup table over a list of backends.
#[derive(Clone, Debug)]
pub struct Maglev {
    table: Box<[u16]>,
    backends: Box<[u64]>,
}

/// Whether `n` is prime (trial division: sizes are below 2^24).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// The smallest prime at or above `n`.
pub fn next_prime(n: usize) -> usize {
    let mut p = n.max(2);
    while !is_prime(p) {
        p += 1;
    }
    p
}

impl Maglev {
    /// Builds the table of `size` slots (a prime) over `backends`, each named by a stable 64-bit identity
    /// (e.g. its address and port): the same identities give the same table, on every worker and after every
    /// rebuild. No backend gives an empty table whose lookups find nothing.
    pub fn new(backends: &[u64], size: usize) -> Result<Maglev, MaglevError> {
        if !is_prime(size) || size > MAX_SIZE {
            return Err(MaglevError::SizeNotPrime);
        }
        let n = backends.len();
        if n > size || n >= u16::MAX as usize {
            return Err(MaglevError::TooManyBackends);
        }
        let mut sorted = backends.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(MaglevError::DuplicateBackend);
        }
        if n == 0 {
            return Ok(Maglev {
                table: Box::new([]),
                backends: Box::new([]),
            });
        }
        let m = size as u64;
        let perm: Vec<(u64, u64)> = backends
            .iter()
            .map(|&b| {
                let offset = fold_mul(b ^ K1, K2) % m;
                let skip = fold_mul(b ^ K2, K1) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u16::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for i in 0..n {
                let (offset, skip) = perm[i];
                let mut c = (offset + next[i] * skip) % m;
                while table[c as usize] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c as usize] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Ok(Maglev {
            table: table.into_boxed_slice(),
            backends: backends.into(),
        })
    }

    /// The backend (an index into [`Maglev::backends`]) for a new flow with hash `flow_hash` (e.g. of the
    /// client's address and port); `None` if there is no backend.
    #[inline]
    pub fn lookup(&self, flow_hash: u64) -> Option<usize> {
        let h = fold_mul(flow_hash ^ K2, K1);
        let i = reduce(h, self.table.len() as u64) as usize;
        self.table.get(i).map(|&b| b as usize)
    }

    /// The backends' identities, in the order given.
    pub fn backends(&self) -> &[u64] {
        &self.backends
    }

    /// Slots in the table (0 without backends).
    pub fn size(&self) -> usize {
        self.table.len()
    }

    /// The backend of slot `i` (for comparing two tables slot by slot).
    pub fn slot(&self, i: usize) -> Option<u64> {
        self.table.get(i).map(|&b| self.backends[b as usize])
    }

    /// Slots owned by each backend, in the order of [`Maglev::backends`] (for `show nat`).
    pub fn shares(&self) -> Vec<usize> {
        let mut c = vec![0; self.backends.len()];
        for &b in self.table.iter() {
            c[b as usize] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2));
        assert!(!is_prime(65535) && !is_prime(1) && !is_prime(0) && !is_prime(91));
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(0), 2);
    }

    #[test]
    fn errors_and_empty() {
        assert_eq!(
            Maglev::new(&[1, 2], 100).err(),
            Some(MaglevError::SizeNotPrime)
        );
        assert_eq!(
            Maglev::new(&[1, 2, 3], 2).err(),
            Some(MaglevError::TooManyBackends)
        );
        assert_eq!(
            Maglev::new(&[1, 2, 1], 7).err(),
            Some(MaglevError::DuplicateBackend)
        );
        let m = Maglev::new(&[], 7).unwrap();
        assert_eq!(m.lookup(5), None);
        assert_eq!(m.size(), 0);
    }

    #[test]
    fn every_slot_is_owned_and_shares_are_even() {
        let m = Maglev::new(&[10, 20, 30, 40, 50], 65537).unwrap();
        let s = m.shares();
        assert_eq!(s.iter().sum::<usize>(), 65537);
        let (lo, hi) = (*s.iter().min().unwrap(), *s.iter().max().unwrap());
        assert!(hi - lo <= 1, "shares {s:?}");
    }
}
