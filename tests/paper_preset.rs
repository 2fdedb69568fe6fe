//! The `paper` preset (spec §4, WideResNet-50-2) builds with the spec's parameter counts and runs a
//! training step and an inference on CPU with randomly initialised backbone weights (no WRN weights
//! ship here). Heavy (≈ 9 GB, minutes): run with
//! `cargo test --release --test paper_preset -- --ignored --nocapture`.
use realnet::config::Config;
use realnet::model::backbone::{Backbone, BackboneKind};
use realnet::model::realnet::{anomaly_map, image_scores, loss, RealNet};
use realnet::optim::Adam;
use tch::{nn, Device, Kind, Tensor};

#[test]
#[ignore]
fn paper_preset_trains_one_step_and_infers_on_cpu() {
    tch::manual_seed(0);
    let cfg = Config::paper();
    let backbone = Backbone::random(BackboneKind::WideResNet50_2, Device::Cpu, 0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RealNet::new(&vs.root(), &cfg);
    let params = vs.trainable_variables();
    let n: i64 = params.iter().map(|t| t.numel() as i64).sum();
    assert_eq!(n, 524_108_822, "spec §4.9");
    let mut adam = Adam::new(&params, cfg.train.lr);

    let x = Tensor::randn([2, 3, 256, 256], (Kind::Float, Device::Cpu));
    let clean = Tensor::randn([2, 3, 256, 256], (Kind::Float, Device::Cpu));
    let masks = Tensor::zeros([2, 1, 256, 256], (Kind::Float, Device::Cpu));
    let _ = masks.narrow(2, 64, 64).narrow(3, 64, 64).fill_(1.0);
    let feats = tch::no_grad(|| net.select(&backbone.features(&x)));
    let clean_f = tch::no_grad(|| net.select(&backbone.features(&clean)));
    let shapes: Vec<Vec<i64>> = feats.iter().map(|f| f.size()).collect();
    assert_eq!(
        shapes,
        vec![
            vec![2, 256, 64, 64],
            vec![2, 512, 32, 32],
            vec![2, 512, 16, 16],
            vec![2, 256, 8, 8]
        ]
    );
    let before: Vec<Tensor> = params.iter().map(|p| p.copy()).collect();
    // Two steps: the zero-initialised heads block every gradient into the UNets' bodies on the
    // first one (official behaviour), so only the heads and the discriminator move at step 1.
    for step in 0..2 {
        let out = net.forward_t(&feats, true);
        let (total, ce, _) = loss(&out, &masks, &clean_f);
        assert!(total.double_value(&[]).is_finite());
        if step == 0 {
            assert!(
                (ce.double_value(&[]) - 2f64.ln()).abs() < 0.2,
                "initial CE ≈ ln 2"
            );
        }
        total.backward();
        adam.step(&params);
    }
    let changed = before
        .iter()
        .zip(&params)
        .filter(|(b, p)| b.ne_tensor(p).any().int64_value(&[]) == 1)
        .count();
    assert!(
        changed > params.len() / 2,
        "{changed} of {} tensors changed",
        params.len()
    );

    let maps = tch::no_grad(|| anomaly_map(&net.forward_t(&feats, false).logits));
    assert_eq!(maps.size(), vec![2, 256, 256]);
    let s = image_scores(&maps, cfg.model.score_pool);
    assert_eq!(s.size(), vec![2]);
}
