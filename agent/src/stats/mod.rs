//! What the agent measures on its node: filesystems, pod volume mounts, network
//! interfaces, host figures and its own cost, read through the host paths ([`crate::paths::HostPaths`]).

pub mod filesystems;
pub mod host;
pub(crate) mod mountinfo;
pub(crate) mod netdev;
pub(crate) mod volumes;
