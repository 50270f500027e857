//! In-process tests of the controllers: each test runs the API router on a memory store, a kube
//! client over it, and only the controllers it is about; it waits on watches with a deadline.

mod informers;
mod reconcilers;
