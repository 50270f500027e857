//! Skiff's OCI registry: the distribution API server, its content-addressed storage and push
//! authentication, the wasm OCI artifact format, and the client nodes and the CLI pull with.
//!
//! Start a server with [`start`] (or [`start_on`] with a bound listener); it returns a
//! [`RegistryHandle`] with the bound address, the push token and a graceful shutdown. Pull and
//! push with [`RegistryClient`].

pub mod auth;
pub mod client;
pub mod digest;
pub mod manifest;
pub mod name;
pub mod server;
pub mod storage;
pub mod wasm;

pub use client::{
    BlobCache, ClientError, ClientOptions, Platform, PulledImage, PulledLayer, PulledManifest,
    PulledWasm, Pushed, RegistryClient,
};
pub use digest::Digest;
pub use server::{RegistryConfig, RegistryHandle, ServerError, TlsFiles, start, start_on};
pub use storage::{GcReport, Storage, StorageError, gc_offline};
