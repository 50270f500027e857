//! Skiff app packaging SDK (not yet built).
