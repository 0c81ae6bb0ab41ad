//! What the agent measures on its node: filesystems, pod volume mounts, network
//! interfaces, host figures and its own cost, read through the host paths ([`crate::paths::HostPaths`]).

pub mod filesystems;
pub mod host;
pub mod mountinfo;
pub mod netdev;
pub mod volumes;
