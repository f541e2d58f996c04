//! End-to-end tests of the real binary (placeholder; filled by the hardening work of issue 8).

mod support;
