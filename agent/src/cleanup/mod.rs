//! `caretaker-agent cleanup --emergency`: free disk on a full node without the aggregator.
