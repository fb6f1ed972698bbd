//! What the launcher tells a PD process about itself, through the
//! environment (`HOST_PD_CONFIG`, JSON) and inherited descriptors.
use serde::{Deserialize, Serialize};

pub const ENV_VAR: &str = "HOST_PD_CONFIG";
/// Inherited descriptors are moved to this number and up in the child.
pub const FIRST_FD: i32 = 100;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChannelCfg {
    pub id: u32,
    pub peer: usize,
    pub peer_name: String,
    pub peer_id: u32,
    /// This PD may call the peer.
    pub pp: bool,
    /// The peer may call this PD.
    pub peer_pp: bool,
    pub notify: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapCfg {
    pub local_name: String,
    pub mr: String,
    pub fd: i32,
    pub size: usize,
    pub vaddr: u64,
    pub perms: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildCfg {
    pub id: u32,
    pub index: usize,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PdConfig {
    pub name: String,
    pub index: usize,
    pub kernel_fd: i32,
    pub kernel_size: usize,
    pub channels: Vec<ChannelCfg>,
    pub maps: Vec<MapCfg>,
    pub children: Vec<ChildCfg>,
}
