//! Skiff OCI distribution server and client (not yet built).
