//! Skiff app packaging SDK: not built yet; `sdk/README.md` gives its scope (describe an app,
//! build and push its components, produce and apply its Kubernetes objects).
