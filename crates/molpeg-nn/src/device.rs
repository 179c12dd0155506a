//! Device selection: `cpu`, `cuda` or `auto` (CUDA when available, else CPU).

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// The device to run on. Asking for `cuda` where none is usable is an error rather than a silent
    /// fallback, so that a GPU job never runs on the CPU by accident.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(Error::Device(
                "--device cuda was asked for but libtorch sees no CUDA device (check the driver, CUDA_VISIBLE_DEVICES, \
                 and that libtorch is a CUDA build); use --device cpu or auto"
                    .into(),
            )),
        }
    }
}

/// Human-readable device name for logs and summaries.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}
