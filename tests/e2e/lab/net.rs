//! The lab's network: three namespaces joined by veth pairs made inside them (so no name
//! ever lands on the host), the router forwarding between the device and the cloud, and the
//! device's resolver pointed at the cloud's dnsmasq through `/etc/netns/<device>/resolv.conf`.
//!
//! ```text
//!  device 10.10.1.2 ──eth0── r-dev 10.10.1.1 [router: FORWARD chain] 10.10.2.1 r-cloud ──eth0── 10.10.2.2 cloud
//! ```
//!
//! Every lab uses the same addresses: they live in the lab's own namespaces, whose names are
//! unique per test, so labs of parallel tests never meet.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Netns;

pub const DEVICE_IP: &str = "10.10.1.2";
pub const DEVICE_SUBNET: &str = "10.10.1.0/24";
pub const CLOUD_IP: &str = "10.10.2.2";
/// Two more addresses of the cloud namespace, so a firewall rule can tell a container
/// registry from its data endpoint (both on 443, like an ACR and its data endpoint).
pub const REGISTRY_IP: &str = "10.10.2.3";
pub const DATA_IP: &str = "10.10.2.4";

/// `/etc/netns/<ns>/resolv.conf`, which `ip netns exec` bind-mounts over /etc/resolv.conf;
/// removed (with its directory) on drop.
pub struct ResolvConf {
    dir: PathBuf,
}

impl ResolvConf {
    fn new(ns: &Netns, nameserver: &str) -> ResolvConf {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
        ResolvConf { dir }
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("resolv.conf"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The three namespaces. Field order is drop order: the resolver file, then the namespaces
/// (their veths and iptables rules go with them).
pub struct Net {
    _resolv: ResolvConf,
    pub device: Netns,
    pub router: Netns,
    pub cloud: Netns,
}

impl Net {
    /// `tag` must be unique per test (namespace names are `ep-{tag}{role}-{pid}`).
    pub fn new(tag: &str) -> Net {
        let device = Netns::new(&format!("{tag}dev"));
        let router = Netns::new(&format!("{tag}rtr"));
        let cloud = Netns::new(&format!("{tag}cld"));
        // Make the veth pairs inside the router's namespace, one end moved straight out.
        for (peer, here) in [(&device, "r-dev"), (&cloud, "r-cloud")] {
            router.exec(&[
                "ip", "link", "add", here, "type", "veth", "peer", "name", "eth0", "netns",
                &peer.name,
            ]);
        }
        router.exec(&["ip", "addr", "add", "10.10.1.1/24", "dev", "r-dev"]);
        router.exec(&["ip", "addr", "add", "10.10.2.1/24", "dev", "r-cloud"]);
        router.exec(&["ip", "link", "set", "r-dev", "up"]);
        router.exec(&["ip", "link", "set", "r-cloud", "up"]);
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for (ns, ip, gw) in [
            (&device, DEVICE_IP, "10.10.1.1"),
            (&cloud, CLOUD_IP, "10.10.2.1"),
        ] {
            ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.exec(&["ip", "link", "set", "eth0", "up"]);
            ns.exec(&["ip", "route", "add", "default", "via", gw]);
        }
        let resolv = ResolvConf::new(&device, CLOUD_IP);
        Net {
            _resolv: resolv,
            device,
            router,
            cloud,
        }
    }

    /// Gives the cloud namespace another address of its subnet (the router finds it by ARP).
    pub fn add_cloud_address(&self, ip: &str) {
        self.cloud
            .exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    }

    /// Appends a rule to the router's FORWARD chain (`iptables -A FORWARD spec...`).
    pub fn forward(&self, spec: &[&str]) {
        let mut cmd = vec!["iptables", "-A", "FORWARD"];
        cmd.extend_from_slice(spec);
        self.router.exec(&cmd);
    }

    /// A firewall that lets the cloud answer, lets the device resolve names, and drops every
    /// other packet from the device except TCP to `open` (`ip:port` or `port`).
    pub fn only_allow(&self, open: &[&str]) {
        self.forward(&["-i", "r-cloud", "-j", "ACCEPT"]);
        self.forward(&["-p", "udp", "--dport", "53", "-j", "ACCEPT"]);
        for o in open {
            match o.split_once(':') {
                Some((ip, port)) => {
                    self.forward(&["-p", "tcp", "-d", ip, "--dport", port, "-j", "ACCEPT"])
                }
                None => self.forward(&["-p", "tcp", "--dport", o, "-j", "ACCEPT"]),
            }
        }
        self.forward(&["-j", "DROP"]);
    }

    /// The router's FORWARD rules with packet counters (for failure messages).
    pub fn rules(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router.name,
                "iptables",
                "-vnL",
                "FORWARD",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Asserts that nothing of a lab is left on the host (namespaces, /etc/netns entries).
pub fn assert_gone(names: &[String]) {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for n in names {
        assert!(
            !list.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "namespace {n} is still there"
        );
        assert!(
            !PathBuf::from("/etc/netns").join(n).exists(),
            "/etc/netns/{n} is still there"
        );
    }
}
