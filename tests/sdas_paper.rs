//! The paper denoiser (spec §2.3, 552.8 M parameters) runs one training step and one SDAS sampling
//! step on the CPU at batch 1. Ignored by default (≈ 9 GB of memory, a minute or two):
//! `cargo test --release --test sdas_paper -- --ignored`.
use realnet::optim::Adam;
use realnet::sdas::schedule::{space_timesteps, Schedule};
use realnet::sdas::unet::{DiffusionUNet, UNetConfig};
use tch::{nn, Device, Kind, Tensor};

#[test]
#[ignore]
fn paper_denoiser_trains_one_step_and_samples_one_step() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = DiffusionUNet::new(&vs.root(), &UNetConfig::paper(15));
    let params: Vec<Tensor> = vs.trainable_variables();
    let n: i64 = params.iter().map(|p| p.numel() as i64).sum();
    assert!(
        (n as f64 - 552.8e6).abs() / 552.8e6 < 0.005,
        "{n} parameters"
    );
    let mut adam = Adam::new(&params, 1e-4);

    let sched = Schedule::linear(1000);
    let x0 = Tensor::rand([1, 3, 256, 256], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let eps = Tensor::randn([1, 3, 256, 256], (Kind::Float, Device::Cpu));
    let t = [417i64];
    let xt = sched.q_sample(&x0, &t, &eps);
    let y = Tensor::from_slice(&[3i64]);
    let out = net.forward(&xt, &Tensor::from_slice(&t), Some(&y));
    assert_eq!(out.size(), vec![1, 6, 256, 256]);
    let loss = sched
        .training_terms(&out, &x0, &xt, &t, &eps)
        .loss()
        .mean(Kind::Float);
    assert!(loss.double_value(&[]).is_finite());
    loss.backward();
    // Zero-initialised output conv: only it (and its bias) gets a gradient on the first step.
    let head = vs.variables()["out.2.weight"].shallow_clone();
    let before = head.copy();
    adam.step(&params);
    assert!((head - before).abs().max().double_value(&[]) > 0.0);

    // One SDAS reverse step on the respaced chain at s = 0.15.
    let r = sched.respaced(&space_timesteps(1000, "ddim20").unwrap());
    let k = [19i64];
    let x = Tensor::randn([1, 3, 256, 256], (Kind::Float, Device::Cpu));
    let o = tch::no_grad(|| net.forward(&x, &Tensor::from_slice(&[r.timestep_map[19]]), Some(&y)));
    let mv = r.p_mean_variance(&o, &x, &k, true);
    let z = Tensor::randn([1, 3, 256, 256], (Kind::Float, Device::Cpu));
    let next = &mv.mean + (&mv.log_variance * 0.5).exp() * (1.15f64).sqrt() * z;
    assert_eq!(next.size(), vec![1, 3, 256, 256]);
    assert!(next.isfinite().all().int64_value(&[]) == 1);
}
