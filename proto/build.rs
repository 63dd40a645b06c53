// Compiles the CRI runtime.v1 API into Rust types and tonic client and server stubs.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // No generated defaults: berthd answers every RPC itself, those it does
        // not implement with Unimplemented and a reason (docs/cri.md), so a
        // new RPC in the proto does not compile until it has an answer.
        .generate_default_stubs(false)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
