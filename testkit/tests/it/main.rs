//! In-process tests of the controllers: a kube client over the API router on the memory store.
