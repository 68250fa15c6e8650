fn main() {
    // Without -z defs a missing symbol only surfaces at login time as
    // "Module is unknown"; make it a link error instead.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,defs");
    println!("cargo:rerun-if-changed=build.rs");
}
