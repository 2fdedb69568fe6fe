//! SDAS against OpenAI's guided-diffusion itself (`scripts/fixtures/make_sdas_fixture.py`):
//! state-dict names and shapes of the paper denoiser, a small denoiser's output with every weight
//! set by a formula, and the diffusion arithmetic (schedule, respacing, loss terms, reverse step).
use realnet::sdas::schedule::{space_timesteps, Schedule};
use realnet::sdas::unet::{DiffusionUNet, UNetConfig};
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

fn fixture() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sdas_golden.json"
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn tensor(v: &Value, shape: &[i64]) -> Tensor {
    Tensor::from_slice(&floats(v)).reshape(shape)
}

fn keys(vs: &nn::VarStore) -> Vec<(String, Vec<i64>)> {
    let mut k: Vec<(String, Vec<i64>)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    k.sort();
    k
}

fn expected_keys(v: &Value) -> Vec<(String, Vec<i64>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), ints(&e[1])))
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn tiny_config() -> UNetConfig {
    UNetConfig {
        image_size: 16,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![8], // downsample factor 2 at 16²
        num_head_channels: 16,
        num_classes: 3,
        // guided-diffusion's GroupNorm(32, C), as the golden values were made.
        norm_min_group_channels: 1,
    }
}

#[test]
fn tiny_denoiser_matches_guided_diffusion() {
    let f = fixture();
    let tiny = &f["tiny"];
    let vs = nn::VarStore::new(Device::Cpu);
    let net = DiffusionUNet::new(&vs.root(), &tiny_config());
    assert_eq!(keys(&vs), expected_keys(&tiny["keys"]));
    // Every parameter k (sorted names) = 0.2·sin(0.37·j + 1.3·k), as the fixture script.
    tch::no_grad(|| {
        let vars = vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for (k, n) in names.into_iter().enumerate() {
            let mut v = vars[n].shallow_clone();
            let j = Tensor::arange(v.numel() as i64, (Kind::Double, Device::Cpu));
            let vals = ((j * 0.37 + 1.3 * k as f64).sin() * 0.2).to_kind(Kind::Float);
            v.copy_(&vals.reshape(v.size()));
        }
    });
    let x = (Tensor::arange(2 * 3 * 16 * 16, (Kind::Double, Device::Cpu)) * 0.05)
        .cos()
        .to_kind(Kind::Float)
        .reshape([2, 3, 16, 16]);
    let t = Tensor::from_slice(&ints(&tiny["t"]));
    let y = Tensor::from_slice(&ints(&tiny["y"]));
    let out = tch::no_grad(|| net.forward(&x, &t, Some(&y)));
    let want = tensor(&tiny["out"], &[2, 6, 16, 16]);
    let scale = want.abs().max().double_value(&[]);
    let d = max_abs_diff(&out, &want);
    assert!(d <= 1e-4 * scale.max(1.0), "max |diff| {d} (scale {scale})");
}

#[test]
fn paper_denoiser_has_openai_state_dict_layout() {
    let f = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    // Building allocates 2.2 GB; the layout is what is checked (names, shapes, count).
    let _net = DiffusionUNet::new(&vs.root(), &UNetConfig::paper(15));
    let got = keys(&vs);
    assert_eq!(got, expected_keys(&f["paper_keys"]));
    let n: i64 = got.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
    assert_eq!(n, f["paper_params"].as_i64().unwrap());
}

#[test]
fn schedule_and_respacing_match() {
    let d = &fixture()["diffusion"];
    let s = Schedule::linear(1000);
    for (a, b) in s.betas.iter().zip(floats(&d["betas_head"])) {
        assert!((a - b as f64).abs() < 1e-9);
    }
    for (k, v) in d["alphas_cumprod_at"].as_object().unwrap() {
        let i: usize = k.parse().unwrap();
        assert!((s.alphas_cumprod[i] - v.as_f64().unwrap()).abs() < 1e-12);
    }
    for (k, v) in d["posterior_log_variance_clipped_at"].as_object().unwrap() {
        let i: usize = k.parse().unwrap();
        assert!((s.posterior_log_variance_clipped[i] - v.as_f64().unwrap()).abs() < 1e-9);
    }
    let keep = space_timesteps(1000, "ddim20").unwrap();
    let want: Vec<usize> = ints(&d["spaced_timesteps"])
        .into_iter()
        .map(|i| i as usize)
        .collect();
    assert_eq!(keep, want);
    let r = s.respaced(&keep);
    for (a, b) in r.betas.iter().zip(d["spaced_betas"].as_array().unwrap()) {
        assert!((a - b.as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn loss_terms_and_reverse_step_match() {
    let d = &fixture()["diffusion"];
    let shape = ints(&d["shape"]);
    let x0 = tensor(&d["x0"], &shape);
    let noise = tensor(&d["noise"], &shape);
    let out = tensor(&d["model_out"], &[shape[0], 6, shape[2], shape[3]]);
    let t = ints(&d["t"]);
    let s = Schedule::linear(1000);
    let xt = s.q_sample(&x0, &t, &noise);
    let terms = s.training_terms(&out, &x0, &xt, &t, &noise);
    let close = |a: &Tensor, want: &Value, what: &str| {
        let w = Tensor::from_slice(&floats(want));
        let dd = max_abs_diff(&a.flatten(0, -1), &w);
        let scale = w.abs().max().double_value(&[]).max(1e-3);
        assert!(dd <= 2e-5 * scale.max(1.0), "{what}: max |diff| {dd}");
    };
    close(&terms.mse, &d["mse"], "mse");
    close(&terms.vb, &d["vb"], "vb");
    close(&terms.loss(), &d["loss"], "loss");

    let r = s.respaced(&space_timesteps(1000, "ddim20").unwrap());
    let k = ints(&d["spaced_k"]);
    let model_t: Vec<i64> = k.iter().map(|&i| r.timestep_map[i as usize]).collect();
    assert_eq!(model_t, ints(&d["spaced_model_t"]));
    let mv = r.p_mean_variance(&out, &noise, &k, true);
    close(&mv.mean, &d["spaced_mean"], "mean");
    close(&mv.log_variance, &d["spaced_log_variance"], "log variance");
    close(&mv.pred_xstart, &d["spaced_pred_xstart"], "x0");
}
