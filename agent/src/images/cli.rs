//! `caretaker-agent prune-images`.
