//! Skiff pod sandboxes (not yet built).
