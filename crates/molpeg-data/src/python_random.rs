//! Python's `random` module, as far as pretrain-gnns' `random_split` uses it: `random.seed(int)` and
//! `random.shuffle(list)`, bit for bit (CPython's `_randommodule.c` and `random.py`, unchanged since
//! Python 3.2 for these calls). MolPeg's paper split is `random.seed(42)`, then
//! `random.shuffle(list(range(n)))`; reproducing it here lets a molpeg run train on exactly the paper's
//! molecules.

const N: usize = 624;
const M: usize = 397;

/// CPython's Mersenne Twister (MT19937) state.
pub struct PythonRandom {
    state: [u32; N],
    index: usize,
}

impl PythonRandom {
    /// `random.seed(seed)` for a non-negative integer: `init_by_array` over the 32-bit words of the
    /// seed, least significant first (one word for seeds below 2³², at least one word for 0).
    pub fn seed(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 { vec![seed as u32] } else { vec![seed as u32, (seed >> 32) as u32] };
        let mut rng = PythonRandom { state: [0; N], index: N };
        rng.init_by_array(&key);
        rng
    }

    fn init_genrand(&mut self, s: u32) {
        self.state[0] = s;
        for i in 1..N {
            let prev = self.state[i - 1];
            self.state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.state[i - 1];
            self.state[i] = (self.state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525)).wrapping_add(key[j]).wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.state[i - 1];
            self.state[i] = (self.state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
        }
        self.state[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// `genrand_uint32`: the next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `_randbelow_with_getrandbits(n)` for 1 ≤ n < 2³²: rejection sampling on `getrandbits(k)`,
    /// k = n.bit_length() (for k ≤ 32 `getrandbits` is the top k bits of one output).
    pub fn below(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.next_u32() >> (32 - k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(items)`: Fisher–Yates from the end, j = randbelow(i + 1).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        assert!(items.len() <= u32::MAX as usize, "shuffle of more than 2³² items is not Python's algorithm here");
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from CPython 3.11: `random.seed(42); [random.getrandbits(32) for _ in range(3)]`
    /// and `random.seed(42); x = list(range(10)); random.shuffle(x)`.
    #[test]
    fn matches_cpython_known_answers() {
        let mut rng = PythonRandom::seed(42);
        assert_eq!([rng.next_u32(), rng.next_u32(), rng.next_u32()], [2_746_317_213, 478_163_327, 107_420_369]);
        let mut x: Vec<u32> = (0..10).collect();
        PythonRandom::seed(42).shuffle(&mut x);
        assert_eq!(x, [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]);
    }
}
