//! The CRI's gRPC services: each call checked, handed to `pod` or `container`,
//! and its errors turned into gRPC codes (through `crate::status`).

pub mod image;
pub mod runtime;
pub mod unimplemented;
