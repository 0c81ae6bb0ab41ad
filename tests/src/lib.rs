//! Helpers for the cross-program tests in `tests/tests/`.
