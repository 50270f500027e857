//! Everything the Skiff API server knows about resource kinds, as pure functions over JSON values:
//! the kind registry, decoding and validation, defaulting, field selectors, discovery documents,
//! OpenAPI v3 documents and `as=Table` output.

mod kind;
mod typed;

pub mod convert;
pub mod defaults;
pub mod discovery;
pub mod fields;
pub mod openapi;
pub mod table;
pub mod validate;

pub use kind::{Kind, SubresourceInfo, find, find_by_kind, find_by_plural, kinds};

#[cfg(test)]
mod tests;
