//! Podman, run by a test inside a host namespace of the testbed with everything of its own in
//! the test's directory: storage (`--root`, `--runroot`, `--tmpdir`), CNI configurations
//! (`--cni-config-dir`) and plugin directories (`cni_plugin_dirs` of a containers.conf named by
//! CONTAINERS_CONF: podman 4 has no command-line flag for them). Containers run from a local
//! busybox rootfs (`--rootfs`), since there is no image registry, under runc.
//!
//! What podman still puts outside the directory: the namespace of each container under
//! /run/netns (removed when the container goes) and libcni's result cache under
//! /var/lib/cni/results (removed at DEL). The guard removes every container of its storage
//! when dropped, so a failing test leaves neither behind.

#![allow(dead_code)]

use super::testbed::{run, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A directory with busybox and a link for each of its applets in /bin, from Debian's
/// `busybox-static` (scripts/install-deps.sh).
pub fn busybox_rootfs(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    for d in ["etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox not found: apt-get install busybox-static (scripts/install-deps.sh)")?;
    std::fs::copy(busybox, bin.join("busybox")).map_err(|e| e.to_string())?;
    let list = run(&[busybox, "--list"])?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    Ok(root)
}

/// A podman whose every file is under `dir`, run in the network namespace `netns` (a name
/// under /var/run/netns): its CNI plugins talk to that host's vswitchd.
pub struct Podman {
    pub dir: PathBuf,
    pub netns: String,
    pub config_dir: PathBuf,
    pub plugin_dir: PathBuf,
}

impl Podman {
    /// Makes the directories and a containers.conf that selects the CNI backend and the
    /// plugin directory.
    pub fn new(dir: &Path, netns: &str) -> Result<Podman> {
        let p = Podman {
            dir: dir.to_path_buf(),
            netns: netns.to_string(),
            config_dir: dir.join("net.d"),
            plugin_dir: dir.join("cni-bin"),
        };
        for d in [&p.config_dir, &p.plugin_dir] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        for d in ["root", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
        }
        let conf = format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n",
            p.plugin_dir.display(),
            p.config_dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).map_err(|e| e.to_string())?;
        Ok(p)
    }

    /// Puts a plugin binary into the plugin directory under `name` (a CNI `type`).
    pub fn install_plugin(&self, name: &str, binary: &Path) -> Result<()> {
        let to = self.plugin_dir.join(name);
        let _ = std::fs::remove_file(&to);
        std::os::unix::fs::symlink(binary, &to).map_err(|e| format!("{}: {e}", to.display()))
    }

    /// Writes a network configuration list into the configuration directory.
    pub fn add_conflist(&self, name: &str, json: &str) -> Result<()> {
        std::fs::write(self.config_dir.join(format!("{name}.conflist")), json)
            .map_err(|e| e.to_string())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        // nsenter rather than `ip netns exec`, which remounts /sys and hides the cgroup mounts
        // that crun needs (TESTING.md).
        c.args(["120", "nsenter"])
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg("--")
            .arg("podman")
            .args(["--network-backend", "cni", "--cni-config-dir"])
            .arg(&self.config_dir)
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            // runc, not podman's default crun: crun refuses the hybrid cgroup layout of these
            // machines (v1 controllers, and a cgroup2 mount with a controller on it).
            .args([
                "--runtime",
                "runc",
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .stdin(Stdio::null());
        c
    }

    /// Runs `podman ARGS` (global options are the guard's); the output whatever the status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("podman (apt-get install podman)")
    }

    /// `podman run --rm --network NET --name NAME ... --rootfs ROOTFS CMD...`: runs CMD to
    /// its end; the container is removed after (CNI DEL).
    pub fn run_container(&self, network: &str, name: &str, rootfs: &Path, cmd: &[&str]) -> Output {
        self.run_with("--rm", network, name, rootfs, cmd)
    }

    /// `podman run -d ...`: starts the container and returns; `podman rm` (or the guard)
    /// removes it.
    pub fn start_container(
        &self,
        network: &str,
        name: &str,
        rootfs: &Path,
        cmd: &[&str],
    ) -> Output {
        self.run_with("-d", network, name, rootfs, cmd)
    }

    /// The rlimits are the ones these machines allow (no CAP_SYS_RESOURCE: TESTING.md).
    fn run_with(
        &self,
        mode: &str,
        network: &str,
        name: &str,
        rootfs: &Path,
        cmd: &[&str],
    ) -> Output {
        let rootfs = rootfs.to_string_lossy();
        let mut args = vec![
            "run",
            mode,
            "--network",
            network,
            "--name",
            name,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            // Options end here: --rootfs takes the next argument as the rootfs.
            "--rootfs",
            &rootfs,
        ];
        args.extend_from_slice(cmd);
        self.output(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Only the containers of this storage: they are this test's.
        let _ = self
            .command(&["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
    }
}
