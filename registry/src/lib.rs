//! Skiff's OCI registry: the distribution API server, its content-addressed storage and push
//! authentication, the wasm OCI artifact format, and the client nodes and the CLI pull with.
//!
//! Start a server with `start` (or `start_on` with a bound listener); it returns a
//! `RegistryHandle` with the bound address, the push token and a graceful shutdown. Pull and
//! push with `RegistryClient`. (Plain names, not links: each exists only with its feature.)
//!
//! Cargo features: `server` (the server, its storage, push tokens and garbage collection) and
//! `client` (the client, its blob cache and the wasm format); a node needs only `client`.

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
pub mod digest;
pub mod manifest;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
pub mod name;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod storage;
#[cfg(feature = "client")]
pub mod wasm;

#[cfg(feature = "client")]
pub use client::{
    BlobCache, ClientError, ClientOptions, Platform, PulledImage, PulledLayer, PulledManifest,
    PulledWasm, PushProgress, Pushed, RegistryClient,
};
pub use digest::Digest;
#[cfg(feature = "server")]
pub use server::{RegistryConfig, RegistryHandle, ServerError, TlsFiles, start, start_on};
#[cfg(feature = "server")]
pub use storage::{GcReport, Storage, StorageError, gc_offline};
