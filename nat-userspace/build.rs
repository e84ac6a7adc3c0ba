//! Builds the XDP program (`nat-ebpf`) for `bpfel-unknown-none` with the nightly toolchain
//! and bpf-linker, so that a plain `cargo build` is the whole build. aya-build leaves the
//! object in OUT_DIR; `src/xdp/mod.rs` embeds it with `aya::include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs (nightly rust-src, bpf-linker).
fn main() -> anyhow::Result<()> {
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "nat-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../nat-ebpf"),
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )?;
    println!("cargo:rerun-if-changed=../nat-common/src");
    Ok(())
}
