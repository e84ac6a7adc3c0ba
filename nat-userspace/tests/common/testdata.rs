//! Where the tests find their data: `testdata/` at the workspace root (see its README).
//! An environment variable may point elsewhere; a missing folder or file fails the test
//! with its path, with or without `CI` (test data is part of the repository: never skip).

use std::path::{Path, PathBuf};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink,
};
use sipnat::wire::Link;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lies inside the workspace")
        .to_path_buf()
}

/// `$var` if set, else `testdata/<sub>`; panics naming the path if it is not a folder.
fn dir(var: &str, sub: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("testdata").join(sub));
    assert!(
        p.is_dir(),
        "test data missing: {} is not a folder (it is part of the repository; {var} overrides it)",
        p.display()
    );
    p
}

/// The third-party SIP corpus (`testdata/corpus`, or `$SIPNAT_CORPUS`).
pub fn corpus_dir() -> PathBuf {
    dir("SIPNAT_CORPUS", "corpus")
}

/// The benchmark inputs (`testdata/bench-inputs`, or `$SIPNAT_BENCH_INPUTS`).
pub fn bench_inputs_dir() -> PathBuf {
    dir("SIPNAT_BENCH_INPUTS", "bench-inputs")
}

/// The file's bytes; panics naming the path if it cannot be read.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("test data missing: {}: {e}", path.display()))
}

/// The entries of a folder, sorted; panics naming the folder if it cannot be read or is
/// empty.
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("test data missing: {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    assert!(
        !v.is_empty(),
        "test data missing: {} is empty",
        dir.display()
    );
    v.sort();
    v
}

/// The frames of a pcap or pcapng capture, with their link type.
pub fn read_capture(path: &Path) -> Vec<(Link, Vec<u8>)> {
    let bytes = read(path);
    let link_of = |dl: DataLink| match dl {
        DataLink::ETHERNET => Link::Ethernet,
        DataLink::LINUX_SLL => Link::LinuxSll,
        DataLink::LINUX_SLL2 => Link::LinuxSll2,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::RawIp,
        other => panic!("{}: link type {other:?}", path.display()),
    };
    let mut out = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut links = Vec::new();
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(i) => links.push(link_of(i.linktype)),
                Block::EnhancedPacket(p) => {
                    out.push((links[p.interface_id as usize], p.data.to_vec()))
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let link = link_of(r.header().datalink);
        while let Some(p) = r.next_packet() {
            out.push((link, p.unwrap().data.to_vec()));
        }
    }
    out
}
