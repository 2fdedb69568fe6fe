//! Device and thread selection: `--device cpu|cuda[:N]|auto`, `--threads N`.
use crate::error::UserError;
use tch::Device;

/// Parses a `--device` value. `auto` is CUDA 0 when libtorch sees a GPU, else the CPU.
pub fn parse_device(s: &str) -> Result<Device, UserError> {
    let s = s.trim().to_ascii_lowercase();
    match s.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" | "gpu" => cuda(0),
        _ => {
            let idx = s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    UserError::BadInput(format!(
                        "--device '{s}' is not understood: use cpu, cuda, cuda:N or auto"
                    ))
                })?;
            cuda(idx)
        }
    }
}

fn cuda(idx: usize) -> Result<Device, UserError> {
    let n = tch::Cuda::device_count() as usize;
    if idx >= n {
        return Err(UserError::BadInput(format!(
            "--device cuda:{idx} asked for, but libtorch sees {n} CUDA device(s); use --device cpu or auto"
        )));
    }
    Ok(Device::Cuda(idx))
}

/// Sets the thread count of libtorch (intra-op) and of rayon (data pipeline). `None` keeps defaults:
/// all cores.
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        tch::set_num_threads(n as i32);
        tch::set_num_interop_threads(1);
        // A second initialisation attempt fails harmlessly (the global pool already exists).
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}

/// A short human-readable device name for logs and metadata.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn auto_is_cpu_without_gpu() {
        let d = parse_device("auto").unwrap();
        if !tch::Cuda::is_available() {
            assert_eq!(d, Device::Cpu);
        }
    }
}
