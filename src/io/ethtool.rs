//! An interface's offload features, read as `ethtool -k` reads them: the names from the
//! kernel's `ETH_SS_FEATURES` string set, their state from `ETHTOOL_GFEATURES`, over the
//! ethtool ioctl (`SIOCETHTOOL`, include/uapi/linux/ethtool.h), plus the driver's name
//! (`ETHTOOL_GDRVINFO`). Reading needs no privilege.
//!
//! Why an ioctl of our own: the Rust ethtool crates speak the ethtool netlink family through
//! an async runtime (tokio), which vswitch does not run; these three read-only calls are a few
//! dozen lines.
//!
//! Who may call: control threads (`vswitchctl doctor`), in the namespace of the interface.

use super::IoError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// One feature as `ethtool -k` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The kernel's name (`tx-checksum-ip-generic`, `rx-gro`, ...).
    pub name: String,
    /// On now.
    pub active: bool,
    /// Asked for by the administrator (or on by default): on but not active means another
    /// feature it needs is off (`ethtool -k` prints `[requested on]`).
    pub requested: bool,
    /// Cannot be changed (`[fixed]`).
    pub fixed: bool,
}

/// The features of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub ifname: String,
    /// The driver (`veth`, `virtio_net`, `mlx5_core`), when the device says.
    pub driver: Option<String>,
    pub list: Vec<Feature>,
}

impl Features {
    pub fn get(&self, name: &str) -> Option<&Feature> {
        self.list.iter().find(|f| f.name == name)
    }
}

/// `struct ifreq` with `ifr_data`: the name, then the union (24 bytes on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _rest: [u8; 16],
}

fn ethtool(fd: &OwnedFd, ifname: &str, data: *mut libc::c_void, what: &str) -> Result<(), IoError> {
    let mut req = IfReq {
        name: super::ifname_bytes(ifname),
        data,
        _rest: [0; 16],
    };
    // SAFETY: SIOCETHTOOL reads the ifreq and the command buffer `data` points to, which the
    // caller sized for the command it holds; both outlive the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(IoError::last_os(format!("{ifname}: ethtool {what}")));
    }
    Ok(())
}

/// The offload features of `ifname` (in the caller's namespace).
pub fn features(ifname: &str) -> Result<Features, IoError> {
    super::check_ifname(ifname)?;
    // SAFETY: socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(IoError::last_os("opening a socket for ethtool"));
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // How many features this kernel names.
    #[repr(C)]
    struct SsetInfo {
        cmd: u32,
        reserved: u32,
        mask: u64,
        data: u32,
    }
    let mut info = SsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        mask: 1 << ETH_SS_FEATURES,
        data: 0,
    };
    ethtool(
        &fd,
        ifname,
        (&mut info as *mut SsetInfo).cast(),
        "GSSET_INFO",
    )?;
    if info.mask & (1 << ETH_SS_FEATURES) == 0 {
        return Ok(Features {
            ifname: ifname.into(),
            ..Default::default()
        });
    }
    let count = info.data as usize;

    // Their names: a header of three u32, then `count` strings of 32 bytes.
    let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count as u32;
    ethtool(&fd, ifname, strings.as_mut_ptr().cast(), "GSTRINGS")?;
    let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let names: Vec<String> = bytes
        .chunks(ETH_GSTRING_LEN)
        .map(|c| {
            let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect();

    // Their state: a header of two u32, then per 32 features {available, requested, active,
    // never_changed}.
    let blocks = count.div_ceil(32);
    let mut state = vec![0u32; 2 + blocks * 4];
    state[0] = ETHTOOL_GFEATURES;
    state[1] = blocks as u32;
    ethtool(&fd, ifname, state.as_mut_ptr().cast(), "GFEATURES")?;
    let list = names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, name)| {
            let b = &state[2 + (i / 32) * 4..2 + (i / 32) * 4 + 4];
            let bit = 1u32 << (i % 32);
            Feature {
                name,
                active: b[2] & bit != 0,
                requested: b[1] & bit != 0,
                // As ethtool(8) prints `[fixed]`.
                fixed: b[0] & bit == 0 || b[3] & bit != 0,
            }
        })
        .collect();

    // struct ethtool_drvinfo: cmd, then driver[32] first of its strings (196 bytes in all).
    let mut drv = [0u32; 49];
    drv[0] = ETHTOOL_GDRVINFO;
    let driver = ethtool(&fd, ifname, drv.as_mut_ptr().cast(), "GDRVINFO")
        .ok()
        .map(|()| {
            let b: Vec<u8> = drv[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
            let end = b.iter().position(|x| *x == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        })
        .filter(|d| !d.is_empty());
    Ok(Features {
        ifname: ifname.into(),
        driver,
        list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_named_features() {
        // Every namespace has lo; its features are the kernel's generic ones.
        let f = features("lo").unwrap();
        assert_eq!(f.ifname, "lo");
        let csum = f.get("tx-checksum-ip-generic").expect("a feature lo has");
        assert!(csum.active, "{csum:?}");
        assert!(f.get("rx-gro").is_some(), "{:?}", f.list);
        assert!(f.list.len() > 30, "{}", f.list.len());
        assert!(f.list.iter().all(|x| !x.name.is_empty()));
    }

    #[test]
    fn an_interface_that_is_not_there_is_an_error_naming_it() {
        let e = features("vswnothere0").unwrap_err().to_string();
        assert!(e.contains("vswnothere0"), "{e}");
    }
}
