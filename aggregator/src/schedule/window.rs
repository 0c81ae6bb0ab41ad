//! The maintenance window: shared with the agent, see [`caretaker_proto::window`].

pub use caretaker_proto::window::*;
