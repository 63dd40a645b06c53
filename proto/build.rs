// Compiles the CRI runtime.v1 API into Rust types and tonic client and server stubs.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Calls berthd does not implement yet answer Unimplemented on their own.
        .generate_default_stubs(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
