//! The cluster plane on the testbed: etcd members inside the testbed's underlay switch
//! namespace (on its bridge, at 192.0.2.100 and up), and node.toml files with `[cluster]` and
//! no `[[peer]]` or `[[network]]`. Members are testbed services: stopped by pid after the
//! daemons and before the namespaces, also when a test fails.
#![allow(dead_code)]

use super::testbed::{run, wait_until, Process, Result, Testbed};
use std::fmt::Write;
use std::time::Duration;

/// The client URL of etcd member `k`.
pub fn etcd_url(k: usize) -> String {
    format!("http://192.0.2.{}:2379", 100 + k)
}

fn member_ip(k: usize) -> String {
    format!("192.0.2.{}", 100 + k)
}

impl Testbed {
    fn ul_ns_name(&self) -> String {
        format!("{}-ul", self.prefix)
    }

    /// Starts an etcd cluster of `n` members (after `add_hosts`) and waits until it answers.
    /// Returns the client URLs.
    pub fn start_etcd(&mut self, n: usize) -> Result<Vec<String>> {
        self.start_etcd_with(n, false)
    }

    /// `start_etcd` serving https with certificates of a throwaway CA, and requiring client
    /// certificates (`--client-cert-auth`).
    pub fn start_etcd_tls(&mut self, n: usize) -> Result<Vec<String>> {
        self.start_etcd_with(n, true)
    }

    fn start_etcd_with(&mut self, n: usize, tls: bool) -> Result<Vec<String>> {
        if tls {
            let ips: Vec<String> = (0..n).map(member_ip).collect();
            let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
            let pki = super::pki::make_pki(&self.dir, &ips);
            self.etcd_tls = Some([pki.ca, pki.client_cert, pki.client_key]);
        }
        let ul = self.ul_ns_name();
        for k in 0..n {
            run(&[
                "ip",
                "netns",
                "exec",
                &ul,
                "ip",
                "addr",
                "add",
                &format!("192.0.2.{}/24", 100 + k),
                "dev",
                "br0",
            ])?;
        }
        self.services.resize_with(n, || None);
        for k in 0..n {
            self.start_etcd_member(k, n)?;
        }
        let urls: Vec<String> = (0..n).map(|k| self.client_url(k)).collect();
        self.wait_etcd_healthy(&urls)?;
        Ok(urls)
    }

    fn client_url(&self, k: usize) -> String {
        let url = etcd_url(k);
        if self.etcd_tls.is_some() {
            url.replace("http:", "https:")
        } else {
            url
        }
    }

    /// etcdctl's TLS flags for this testbed's etcd.
    fn etcdctl_tls(&self) -> Vec<String> {
        match &self.etcd_tls {
            Some([ca, cert, key]) => vec![
                format!("--cacert={ca}"),
                format!("--cert={cert}"),
                format!("--key={key}"),
            ],
            None => vec![],
        }
    }

    /// Starts (again) member `k` of an `n`-member cluster, on its data directory.
    pub fn start_etcd_member(&mut self, k: usize, n: usize) -> Result<()> {
        let ul = self.ul_ns_name();
        let peer = |k: usize| format!("http://192.0.2.{}:2380", 100 + k);
        let initial: Vec<String> = (0..n).map(|j| format!("m{j}={}", peer(j))).collect();
        let data = self.dir.join(format!("etcd-m{k}"));
        let log = self.dir.join(format!("etcd-m{k}.log"));
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| e.to_string())?;
        let url = self.client_url(k);
        let mut tls: Vec<String> = Vec::new();
        if let Some([ca, ..]) = &self.etcd_tls {
            let server = |ext: &str| self.dir.join(format!("server.{ext}")).display().to_string();
            tls = vec![
                "--cert-file".into(),
                server("pem"),
                "--key-file".into(),
                server("key"),
                "--client-cert-auth".into(),
                "--trusted-ca-file".into(),
                ca.clone(),
            ];
        }
        // `ip netns exec` execs etcd in place, so the child's pid is etcd's.
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ul,
                "etcd",
                "--name",
                &format!("m{k}"),
                "--data-dir",
            ])
            .arg(&data)
            .args(&tls)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer(k),
                "--initial-advertise-peer-urls",
                &peer(k),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-token",
                &self.prefix,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start etcd (install etcd-server): {e}"))?;
        self.services[k] = Some(Process {
            child,
            what: format!("etcd member m{k}"),
        });
        Ok(())
    }

    /// Stops member `k` (SIGTERM, by pid).
    pub fn stop_etcd_member(&mut self, k: usize) {
        if let Some(mut p) = self.services[k].take() {
            p.stop();
        }
    }

    pub fn wait_etcd_healthy(&self, urls: &[String]) -> Result<()> {
        let ul = self.ul_ns_name();
        let eps = urls.join(",");
        let tls = self.etcdctl_tls();
        let healthy = || {
            let mut args = vec![
                "ip",
                "netns",
                "exec",
                &ul,
                "etcdctl",
                "--endpoints",
                &eps,
                "--dial-timeout",
                "1s",
            ];
            args.extend(tls.iter().map(String::as_str));
            args.extend(["endpoint", "health"]);
            run(&args).is_ok()
        };
        if wait_until(Duration::from_secs(20), healthy) {
            Ok(())
        } else {
            Err(format!(
                "etcd at {eps} did not become healthy:\n{}",
                self.etcd_logs()
            ))
        }
    }

    /// etcdctl against `urls`, inside the underlay namespace; its stdout.
    pub fn etcdctl(&self, urls: &[String], args: &[&str]) -> Result<String> {
        let ul = self.ul_ns_name();
        let eps = urls.join(",");
        let tls = self.etcdctl_tls();
        let mut full = vec!["ip", "netns", "exec", &ul, "etcdctl", "--endpoints", &eps];
        full.extend(tls.iter().map(String::as_str));
        full.extend_from_slice(args);
        run(&full).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    pub fn etcd_logs(&self) -> String {
        (0..self.services.len())
            .map(|k| {
                let p = self.dir.join(format!("etcd-m{k}.log"));
                let t = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                format!(
                    "--- etcd m{k} (last lines) ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// node.toml for host `i`: its [node], and a [cluster] table naming `urls` (plus `extra`
    /// lines, e.g. `lease_ttl = "3s"`). No peers, no networks.
    pub fn write_cluster_config(
        &self,
        i: usize,
        name: &str,
        urls: &[String],
        extra: &str,
    ) -> Result<()> {
        let h = &self.hosts[i];
        let mut s = String::new();
        let _ = writeln!(
            s,
            "[node]\nname = \"{name}\"\nunderlay_ip = \"{}\"\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n",
            h.underlay_ip,
            h.socket.display(),
            self.dir.join(format!("state-h{i}")).display()
        );
        let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
        let _ = writeln!(
            s,
            "[cluster]\netcd_endpoints = [{}]\n{extra}",
            list.join(", ")
        );
        if let Some([ca, cert, key]) = &self.etcd_tls {
            let _ = writeln!(
                s,
                "ca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\""
            );
        }
        std::fs::write(&h.config, s).map_err(|e| e.to_string())
    }

    /// `n` hosts in one cluster with `members` etcd members; daemons running. Returns the
    /// etcd client URLs.
    pub fn cluster(
        prefix: &str,
        bins: super::testbed::Binaries,
        n: usize,
        members: usize,
        extra: &str,
    ) -> Result<(Testbed, Vec<String>)> {
        let mut tb = Testbed::new(prefix, bins)?;
        tb.add_hosts(n)?;
        let urls = tb.start_etcd(members)?;
        for i in 0..n {
            let name = tb.hosts[i].name.clone();
            tb.write_cluster_config(i, &name, &urls, extra)?;
            tb.start_daemon(i)?;
        }
        Ok((tb, urls))
    }

    /// A container attached to `network` on host `host` with `args` (e.g. `--ip`); returns its
    /// index in `containers` and the daemon's JSON answer.
    pub fn attach(
        &mut self,
        host: usize,
        tag: &str,
        network: &str,
        args: &[&str],
    ) -> Result<(usize, serde_json::Value)> {
        let ns = super::testbed::Netns::new(&format!("{}-{tag}", self.prefix))?;
        let mut full = vec![
            "attach-namespace",
            "--network",
            network,
            "--netns",
            &ns.name,
            "--json",
        ];
        full.extend_from_slice(args);
        let out = self.hosts[host].ctl(&self.bins, &full)?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("attach --json: {e}: {out}"))?;
        self.containers.push(ns);
        Ok((self.containers.len() - 1, v))
    }
}

/// The address part of a PortInfo's `ip` ("10.0.9.1/24" → "10.0.9.1").
pub fn addr_of(port: &serde_json::Value) -> String {
    port["ip"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string()
}
