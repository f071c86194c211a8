//! The seeded draws: splitmix64 over `(seed, phase, call number)`, so a
//! call's faults are a pure function of those three and the hot path needs
//! no lock and no shared generator state, only one counter per phase.

/// splitmix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// How many draws one call may use: fault, latency or not, two for the
/// latency's value.
const PER_CALL: u64 = 4;

/// splitmix64's output function (Steele, Lea and Flood, 2014).
#[inline]
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of phase `index`'s own sequence, from the schedule's seed.
pub(crate) const fn phase_seed(seed: u64, index: usize) -> u64 {
    mix(seed ^ mix(GAMMA.wrapping_mul(index as u64 + 1)))
}

/// The draws of one call: call `n` of a phase whose sequence starts at
/// `seed` uses outputs `4n .. 4n + 3` of the splitmix64 sequence from
/// `seed`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draws {
    seed: u64,
    n: u64,
}

/// Which of a call's draws.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Slot {
    Fault = 0,
    Latency = 1,
    Value = 2,
    Value2 = 3,
}

impl Draws {
    #[inline]
    pub(crate) const fn new(seed: u64, n: u64) -> Self {
        Draws { seed, n }
    }

    /// 64 random bits.
    #[inline]
    pub(crate) const fn bits(self, slot: Slot) -> u64 {
        let k = self.n.wrapping_mul(PER_CALL).wrapping_add(slot as u64);
        mix(self
            .seed
            .wrapping_add(GAMMA.wrapping_mul(k.wrapping_add(1))))
    }

    /// A uniform value in `[0, 1)`, on a grid of 2⁻⁵³.
    #[inline]
    pub(crate) fn unit(self, slot: Slot) -> f64 {
        (self.bits(slot) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_splitmix64_outputs() {
        // splitmix64 from state 0: the published first outputs.
        let d = Draws::new(0, 0);
        assert_eq!(d.bits(Slot::Fault), 0xE220_A839_7B1D_CDAF);
        assert_eq!(d.bits(Slot::Latency), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(
            Draws::new(0, 1).bits(Slot::Fault),
            mix(GAMMA.wrapping_mul(5))
        );
        let u = Draws::new(7, 3).unit(Slot::Value);
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn phases_draw_from_different_sequences() {
        assert_ne!(phase_seed(1, 0), phase_seed(1, 1));
        assert_ne!(phase_seed(1, 0), phase_seed(2, 0));
        assert_eq!(phase_seed(9, 4), phase_seed(9, 4));
    }
}
