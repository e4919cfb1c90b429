//! A tiny seeded generator (SplitMix64) for the bots' choices and the soak's
//! fault schedule: the same seed gives the same numbers, on any machine, so a
//! run can be replayed from the seed it printed. Plain logic, no I/O.

/// SplitMix64: one `u64` of state; good enough for games and schedules, not
/// for anything secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// A number in `[low, high)` (`low` when the range is empty).
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low).max(0.0) * self.unit()
    }

    /// The index of one of `weights`, drawn in proportion to them (0 when all are zero).
    pub fn pick(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return 0;
        }
        let mut r = self.next_u64() % total;
        for (i, w) in weights.iter().enumerate() {
            if r < u64::from(*w) {
                return i;
            }
            r -= u64::from(*w);
        }
        weights.len() - 1
    }
}

/// A number in `[0, 1)` from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let (mut a, mut b) = (SplitMix64(7), SplitMix64(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SplitMix64(8).next_u64(), xs[0]);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = SplitMix64(1);
        for _ in 0..1000 {
            let v = r.between(2.0, 5.0);
            assert!((2.0..5.0).contains(&v));
            assert!(r.pick(&[0, 3, 1]) != 0, "a zero weight is never drawn");
        }
        assert_eq!(r.pick(&[0, 0]), 0);
        assert!(unit(u64::MAX) < 1.0 && unit(0) == 0.0);
    }
}
