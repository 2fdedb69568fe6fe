//! Random streams for SDAS. Every draw (training batch, timesteps and noise; a sample's strength,
//! start noise and per-step noise) comes from a generator keyed by (seed, index, stream), so
//! results do not depend on threads, devices' RNGs, shards or where a run was resumed.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

pub const STREAM_TRAIN: u64 = 1;
pub const STREAM_STRENGTH: u64 = 2;
pub const STREAM_NOISE: u64 = 3;

pub fn rng(seed: u64, index: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..].copy_from_slice(b"realnet-sdas/1\0\0");
    let mut r = ChaCha8Rng::from_seed(key);
    r.set_stream(stream);
    r
}

/// `n` standard normal draws (Box–Muller on two uniforms in (0, 1]).
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// One N×C×H×W tensor with sample i's values drawn from `rngs[i]`.
pub fn normal_batch(rngs: &mut [ChaCha8Rng], chw: [i64; 3], device: Device) -> Tensor {
    let per = (chw[0] * chw[1] * chw[2]) as usize;
    let mut v = Vec::with_capacity(per * rngs.len());
    for r in rngs.iter_mut() {
        v.extend(normals(r, per));
    }
    Tensor::from_slice(&v)
        .view([rngs.len() as i64, chw[0], chw[1], chw[2]])
        .to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments_and_are_reproducible() {
        let v = normals(&mut rng(1, 2, 3), 100_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        assert_eq!(normals(&mut rng(1, 2, 3), 5), v[..5].to_vec());
        assert_ne!(normals(&mut rng(1, 2, 4), 5), v[..5].to_vec());
        assert_ne!(normals(&mut rng(1, 3, 3), 5), v[..5].to_vec());
    }
}
