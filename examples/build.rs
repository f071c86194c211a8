//! Compiles the `tonic_grpc` example's `.proto` when the `tonic` feature
//! is on, with the `protoc` that `protoc-bin-vendored` ships, so a fresh
//! machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "tonic")]
    {
        let mut config = prost_build::Config::new();
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
        tonic_prost_build::configure()
            .build_transport(true)
            .compile_with_config(config, &["tonic_grpc/stock.proto"], &["tonic_grpc"])?;
    }
    Ok(())
}
