//! Cron expressions in a time zone: shared with the agent, see [`caretaker_proto::cron`].

pub use caretaker_proto::cron::*;
