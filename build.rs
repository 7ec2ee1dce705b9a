//! Generates every gRPC client and server from `proto/` with the protoc binary shipped in
//! `protoc-bin-vendored`, so no protobuf compiler has to be installed on the machine.

use std::path::{Path, PathBuf};

/// The root of Loop's client API (`looprpc.SwapClient`, loopd's API, which sluiced also
/// serves). Compiled on its own: its package `looprpc` is also the package of the swap-server
/// subset in `proto/looprpc/`, and both define `looprpc.HopHint`, so one protoc run cannot hold
/// both.
const LOOPD_ROOT: &str = "proto/loopd";

fn protos_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.exists() || dir == Path::new(LOOPD_ROOT) {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            protos_under(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut prost_config = prost_build::Config::new();
    prost_config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds migrations/ at compile time but cannot ask rustc to watch it:
    // without this, a new or edited migration would not be rebuilt into the binary.
    println!("cargo:rerun-if-changed=migrations");

    let mut protos = Vec::new();
    protos_under(Path::new("proto"), &mut protos)?;
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    // Clients and servers for everything: the daemon is a client of lnd and of the swap
    // server, and the simnet serves both. Our own API gets a descriptor set for reflection.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out_dir.join("sluice_descriptor.bin"))
        .compile_with_config(prost_config, &protos, &[PathBuf::from("proto")])?;

    // Loop's client API into a directory of its own (its `looprpc.rs` would overwrite the
    // swap server's), with a descriptor set of its own.
    let loopd_out = out_dir.join("loopd");
    std::fs::create_dir_all(&loopd_out)?;
    let mut loopd_protos = Vec::new();
    let mut loopd_config = prost_build::Config::new();
    loopd_config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    for dir in ["looprpc", "swapserverrpc", "lnrpc"] {
        protos_under(&Path::new(LOOPD_ROOT).join(dir), &mut loopd_protos)?;
    }
    for p in &loopd_protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&loopd_out)
        .file_descriptor_set_path(loopd_out.join("loopd_descriptor.bin"))
        .compile_with_config(loopd_config, &loopd_protos, &[PathBuf::from(LOOPD_ROOT)])?;
    Ok(())
}
