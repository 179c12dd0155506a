//! Process-wide settings: allocator tuning for CPU training, libtorch notices.

/// Makes glibc keep freed memory for reuse instead of returning it to the kernel. A training step
/// frees and reallocates the same few-megabyte tensors every batch; with glibc's defaults those come
/// from fresh `mmap`s, and the page faults of touching them again cost several percent of a CPU step
/// (much more in a VM). Called once, by [`crate::train::Trainer::new`]; no effect off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; both values are within glibc's limits
            // (the mmap threshold's maximum is 32 MiB on 64-bit targets).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

/// Creates one sparse CSR tensor with stderr pointed at /dev/null. libtorch prints "Sparse CSR tensor
/// support is in beta state" the first time a process makes one; the GIN's adjacency is one (its
/// CSR matrix product is exactly the sparse op we need), and users should not see a libtorch beta
/// notice on every run. The redirect lasts for one tensor construction. Once per process.
pub fn silence_sparse_csr_notice() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let make = || {
            let idx = tch::Tensor::from_slice(&[0i64, 1]);
            let col = tch::Tensor::from_slice(&[0i64]);
            let _ = tch::Tensor::f_sparse_csr_tensor_crow_col_value_size(&idx, &col, &tch::Tensor::from_slice(&[1f32]), [1, 1], (tch::Kind::Float, tch::Device::Cpu));
        };
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return make() };
            // SAFETY: plain fd duplication; fd 2 is restored from `saved` right after `make()`.
            unsafe {
                let saved = libc::dup(2);
                if saved < 0 {
                    return make();
                }
                libc::dup2(null.as_raw_fd(), 2);
                make();
                libc::dup2(saved, 2);
                libc::close(saved);
            }
        }
        #[cfg(not(unix))]
        make();
    });
}

/// Environment variable that OpenMP (libtorch's CPU thread pool, libgomp) reads once, when the
/// library loads.
pub const OMP_WAIT_POLICY: &str = "OMP_WAIT_POLICY";

/// Makes libtorch's OpenMP threads wait passively unless the user chose a policy. With the default
/// (active) policy an idle OpenMP thread spins for a while before sleeping, and on a machine shared
/// with any other busy process the spinning threads fight it and each other: a 3 × 64 HIV fine-tune
/// took > 11 min instead of 3 under one competing process. libgomp reads the variable when it is
/// loaded, before `main`, so setting it here needs a re-exec of this binary with the variable set
/// (about the cost of loading libtorch once more, ~0.3 s). `OMP_WAIT_POLICY=ACTIVE` (or any value)
/// keeps the user's choice: spinning is a few percent faster on a dedicated machine.
/// Call first thing in `main` of every binary that links libtorch.
pub fn passive_openmp_by_default() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os(OMP_WAIT_POLICY).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        // Only returns on failure; then run on with the default policy.
        let err = std::process::Command::new(&exe).arg0(arg0).args(args).env(OMP_WAIT_POLICY, "PASSIVE").exec();
        eprintln!("warning: could not restart {} with {OMP_WAIT_POLICY}=PASSIVE ({err}); OpenMP threads may spin under load", exe.display());
    }
}
