//! Everything the Skiff API server knows about resource kinds, as pure functions over JSON values:
//! the kind registry, decoding and validation, defaulting, field selectors, discovery documents,
//! OpenAPI v3 documents and `as=Table` output.
//!
//! How a write flows through it (the API server's part in brackets):
//! 1. [route to a [`Kind`] with [`find`]] and decode the body: [`validate::decode_bytes`] on raw
//!    JSON (reports duplicate and unknown fields) or [`validate::decode`] on a parsed value;
//! 2. [set namespace, name from generateName, uid, creationTimestamp; drop status for kinds with a
//!    status subresource], then [`defaults::apply`] on create or [`defaults::apply_update`] on update;
//! 3. [`validate::validate`], with the stored object on update; an `Invalid` error becomes a 422
//!    `Status` whose message is [`validate::invalid_message`];
//! 4. store under [`Kind::storage_prefix`], converting with [`convert::to_storage`] and back with
//!    [`convert::from_storage`] for the resources served in two versions (HPA v1/v2, Events).
//!
//! Reads use [`fields::value`] for field selectors and [`table::table`] for `as=Table`; discovery
//! and OpenAPI documents come from [`discovery`] and [`openapi`] (built once, deterministic).

mod kind;
mod typed;

pub mod convert;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod fields;
pub mod openapi;
pub mod table;
pub mod validate;

pub use kind::{
    Kind, SubresourceInfo, aggregated_kinds, find, find_by_kind, find_by_plural, is_aggregated,
    kinds,
};

#[cfg(test)]
mod tests;
