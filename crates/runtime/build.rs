//! Generates the CRI v1 messages and the RuntimeService and ImageService clients from
//! `proto/cri.proto`. protox compiles the file in pure Rust, so building needs no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cri.proto");
    let files = protox::compile(["cri.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(files)?;
    Ok(())
}
