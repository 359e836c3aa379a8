//! Fusebox verification: the deterministic fleet harness over the real `step`.
