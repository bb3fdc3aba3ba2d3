//! Where the hub may connect: the one check of a URL's host against an allow-list of
//! networks, for cameras added through the API (`http.camera_networks`) and departments'
//! endpoints (`delivery.networks`).

use std::net::IpAddr;

use ipnet::IpNet;

/// An allow-list and how its refusals name it.
#[derive(Debug, Clone, Copy)]
pub struct AllowList<'a> {
    pub networks: &'a [IpNet],
    /// What may be on them, for the message: `cameras`, `endpoints`.
    pub what: &'static str,
    /// The setting that holds them: `http.camera_networks`, `delivery.networks`.
    pub setting: &'static str,
}

impl AllowList<'_> {
    /// Every address must lie in one of the networks.
    pub fn admits(&self, addrs: &[IpAddr]) -> Result<(), String> {
        if addrs.is_empty() {
            return Err("the host has no address".into());
        }
        if let Some(a) = addrs.iter().find(|a| !self.networks.iter().any(|n| n.contains(*a))) {
            let nets: Vec<String> = self.networks.iter().map(|n| n.to_string()).collect();
            return Err(format!(
                "address {a} is outside the networks {} may be on ({}); see {}",
                self.what,
                nets.join(", "),
                self.setting
            ));
        }
        Ok(())
    }

    /// The addresses of `u`'s host (resolved when a name, on `port`), each admitted.
    pub async fn resolve(&self, u: &url::Url, port: u16) -> Result<Vec<IpAddr>, String> {
        let addrs: Vec<IpAddr> = match u.host() {
            Some(url::Host::Ipv4(a)) => vec![a.into()],
            Some(url::Host::Ipv6(a)) => vec![a.into()],
            Some(url::Host::Domain(d)) => tokio::net::lookup_host((d, port))
                .await
                .map_err(|e| format!("host {d:?} does not resolve ({e})"))?
                .map(|a| a.ip())
                .collect(),
            None => return Err("no host".into()),
        };
        self.admits(&addrs)?;
        Ok(addrs)
    }
}
