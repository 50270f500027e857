//! Skiff node agent: registers a Node, runs its pods through the runtime (not yet built).
