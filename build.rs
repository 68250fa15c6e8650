use std::path::{Path, PathBuf};

fn main() {
    // Without -z defs a missing symbol only surfaces at login time as
    // "Module is unknown"; make it a link error instead.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,defs");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PAM_MFA_LIBUNWIND_DIR");
    if std::env::var_os("CARGO_FEATURE_STATIC_UNWIND").is_some() {
        static_unwind();
    }
}

/// Links LLVM's unwinder into the binaries instead of NEEDing libgcc_s.so.1.
/// sshd, su and login do not load libgcc_s themselves, so a Rust module that
/// NEEDs it makes every login map and relocate a second library (about a
/// third of the module's load cost); catch_unwind works the same with either.
/// The archive's symbols stay local to the module (rustc's version script
/// exports only the pam_sm_* functions), so they never clash with a
/// libgcc_s that the host process loads.
fn static_unwind() {
    let dir = std::env::var_os("PAM_MFA_LIBUNWIND_DIR")
        .map(PathBuf::from)
        .or_else(find_llvm_libunwind);
    match dir {
        Some(dir) if dir.join("libunwind.a").is_file() => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=unwind");
        }
        _ => panic!(
            "feature static-unwind: LLVM's static libunwind (libunwind.a) was not found. \
             Install it (Debian/Ubuntu: apt-get install libunwind-14-dev, or the one of \
             your LLVM version; Fedora: llvm-libunwind-static), or name its directory in \
             PAM_MFA_LIBUNWIND_DIR, or build with --no-default-features to use libgcc_s."
        ),
    }
}

/// The newest /usr/lib/llvm-N/lib holding libunwind.a (Debian's layout).
fn find_llvm_libunwind() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("llvm-")?.parse().ok()?;
            let lib = e.path().join("lib");
            lib.join("libunwind.a").is_file().then_some((version, lib))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, dir)| dir)
        .or_else(|| Some(Path::new("/usr/lib64/llvm/lib").to_owned()))
}
