//! Adam (Kingma & Ba), written over plain tensors so its state can be checkpointed and a resumed
//! run continues bit-identically. Same update as `torch.optim.Adam` (no weight decay, no amsgrad).
use tch::{Kind, Tensor};

/// The learning rate of 0-based `step` out of `total`: linear warm-up over `warmup` steps, then
/// `base` (constant) or a half-cosine from `base` to 0 at `total` (cosine). A pure function of the
/// step, so a resumed run follows the same curve.
pub fn scheduled_lr(base: f64, cosine: bool, warmup: usize, step: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    if !cosine || total <= warmup {
        return base;
    }
    let t = (step - warmup) as f64 / (total - warmup) as f64;
    0.5 * base * (1.0 + (std::f64::consts::PI * t).cos())
}

/// A run's learning-rate curve as its config names it (`constant` or `cosine`, warm-up steps):
/// the detector and the SDAS denoiser read theirs the same way.
#[derive(Debug, Clone, Copy)]
pub struct LrCurve {
    base: f64,
    cosine: bool,
    warmup: usize,
    total: usize,
}

impl LrCurve {
    pub fn new(base: f64, schedule: &str, warmup: usize, total: usize) -> Self {
        Self {
            base,
            cosine: schedule == "cosine",
            warmup,
            total,
        }
    }

    /// The schedule names a config may use (`train.lr_schedule`).
    pub fn check(schedule: &str) -> Result<(), String> {
        match schedule {
            "constant" | "cosine" => Ok(()),
            other => Err(format!(
                "train.lr_schedule = '{other}': use constant or cosine"
            )),
        }
    }

    pub fn at(&self, step: usize) -> f64 {
        scheduled_lr(self.base, self.cosine, self.warmup, step, self.total)
    }
}

#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Optimiser steps taken.
    pub step: i64,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(params: &[Tensor], lr: f64) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().set_requires_grad(false);
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
        }
    }

    /// One update of every parameter that has a gradient; gradients are zeroed afterwards.
    pub fn step(&mut self, params: &[Tensor]) {
        let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        self.step_with(params, &grads);
        tch::no_grad(|| {
            for mut g in grads.into_iter().filter(Tensor::defined) {
                let _ = g.zero_();
            }
        });
    }

    /// One update of every parameter from the gradient beside it (undefined: no gradient, the
    /// parameter is left alone). A gradient in another precision (a bf16 training step) is cast to
    /// the parameter's.
    pub fn step_with(&mut self, params: &[Tensor], grads: &[Tensor]) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let step_size = self.lr / bc1;
        tch::no_grad(|| {
            for (((p, g), m), v) in params.iter().zip(grads).zip(&mut self.m).zip(&mut self.v) {
                if !g.defined() {
                    continue;
                }
                let g = if g.kind() == p.kind() {
                    g.shallow_clone()
                } else {
                    g.to_kind(p.kind())
                };
                // In place wherever libtorch allows: two parameter-sized temporaries per step
                // (g·(1−β2) and the denominator) instead of six; at the paper's 524 M parameters
                // each one is 2 GiB of allocation and page faults.
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v
                    .g_mul_scalar_(self.beta2)
                    .addcmul_(&g, &g.g_mul_scalar(1.0 - self.beta2));
                // p − step·m/(√v/√bc2 + ε) as one addcdiv with the step folded into the divisor.
                let mut denom = v.sqrt();
                let _ = denom
                    .g_div_scalar_(bc2.sqrt())
                    .g_add_scalar_(self.eps)
                    .g_div_scalar_(-step_size);
                let _ = p.shallow_clone().addcdiv_(m, &denom);
            }
        });
    }

    /// Named state tensors for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "adam.step".to_string(),
            Tensor::from_slice(&[self.step]).to_kind(Kind::Int64),
        )];
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("adam.m.{i}"), m.shallow_clone()));
            out.push((format!("adam.v.{i}"), v.shallow_clone()));
        }
        out
    }

    /// Restores what [`Adam::state`] wrote; `None` when a tensor is missing or mis-shaped.
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Option<()> {
        let step = named.get("adam.step")?.int64_value(&[0]);
        tch::no_grad(|| {
            for (i, (m, v)) in self.m.iter_mut().zip(&mut self.v).enumerate() {
                let (sm, sv) = (
                    named.get(&format!("adam.m.{i}"))?,
                    named.get(&format!("adam.v.{i}"))?,
                );
                if sm.size() != m.size() || sv.size() != v.size() {
                    return None;
                }
                m.copy_(sm);
                v.copy_(sv);
            }
            Some(())
        })?;
        self.step = step;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Minimising (x − 3)² moves x towards 3; the first step moves by exactly lr (Adam's property).
    #[test]
    fn first_step_is_lr_and_converges() {
        let x = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let params = vec![x.shallow_clone()];
        let mut opt = Adam::new(&params, 0.1);
        for i in 0..300 {
            let loss = (&x - 3.0).square().sum(Kind::Float);
            loss.backward();
            opt.step(&params);
            if i == 0 {
                assert!((x.double_value(&[0]) - 0.1).abs() < 1e-6);
            }
        }
        assert!(
            (x.double_value(&[0]) - 3.0).abs() < 0.05,
            "{}",
            x.double_value(&[0])
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let lr = |s| scheduled_lr(1.0, true, 10, s, 110);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12);
        assert!(lr(109) > 0.0 && lr(109) < 1e-3);
        assert!((10..109).all(|s| lr(s + 1) < lr(s)));
        // Constant ignores the total and equals the official behaviour without warm-up.
        assert!((0..50).all(|s| scheduled_lr(2e-4, false, 0, s, 50) == 2e-4));
        let c = LrCurve::new(1.0, "cosine", 10, 110);
        assert!((0..110).all(|s| c.at(s) == lr(s)));
        assert!((0..50).all(|s| LrCurve::new(2e-4, "constant", 0, 50).at(s) == 2e-4));
    }

    /// Five steps on random gradients against the textbook update computed in f64.
    #[test]
    fn matches_textbook_adam() {
        tch::manual_seed(7);
        let x = Tensor::randn([64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let params = vec![x.shallow_clone()];
        let (lr, b1, b2, eps) = (1e-2, 0.9f64, 0.999f64, 1e-8);
        let mut opt = Adam::new(&params, lr);
        let host = |t: &Tensor| -> Vec<f64> {
            Vec::<f32>::try_from(t.detach())
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let mut p = host(&x);
        let (mut m, mut v) = (vec![0.0; 64], vec![0.0; 64]);
        for t in 1..=5 {
            let w = Tensor::randn([64], (Kind::Float, Device::Cpu));
            (&x * &x * &w).sum(Kind::Float).backward();
            let g = host(&x.grad());
            opt.step(&params);
            for i in 0..64 {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                p[i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
        let worst = host(&x)
            .iter()
            .zip(&p)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{worst}");
        assert_eq!(host(&x.grad()), vec![0.0; 64], "gradients zeroed");
    }

    /// A bf16 gradient (a mixed-precision step) updates the f32 parameter exactly as the same
    /// values given in f32, and an undefined gradient leaves its parameter alone.
    #[test]
    fn step_with_casts_gradients_to_the_parameter_kind() {
        let make = || Tensor::linspace(-1.0, 1.0, 16, (Kind::Float, Device::Cpu));
        let (a, b, c) = (make(), make(), make());
        let g = Tensor::randn([16], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let mut oa = Adam::new(&[a.shallow_clone(), c.shallow_clone()], 0.1);
        let mut ob = Adam::new(&[b.shallow_clone()], 0.1);
        for _ in 0..3 {
            oa.step_with(
                &[a.shallow_clone(), c.shallow_clone()],
                &[g.shallow_clone(), Tensor::new()],
            );
            ob.step_with(&[b.shallow_clone()], &[g.to_kind(Kind::Float)]);
        }
        assert_eq!(a.kind(), Kind::Float);
        assert!(a.equal(&b));
        assert!(!a.equal(&make()));
        assert!(c.equal(&make()));
    }

    #[test]
    fn state_round_trips() {
        let x = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let params = vec![x.shallow_clone()];
        let mut a = Adam::new(&params, 0.01);
        (&x * 2.0).sum(Kind::Float).backward();
        a.step(&params);
        let named: std::collections::HashMap<_, _> = a.state().into_iter().collect();
        let mut b = Adam::new(&params, 0.01);
        b.load_state(&named).unwrap();
        assert_eq!(b.step, 1);
        assert_eq!(
            Vec::<f32>::try_from(&b.m[0]).unwrap(),
            Vec::<f32>::try_from(&a.m[0]).unwrap()
        );
    }
}
