//! Every address of every interface, from `getifaddrs(3)`.
//!
//! `/proc/net` lists IPv6 addresses but not IPv4 ones with their netmasks,
//! and netlink would be a protocol implementation of its own; `getifaddrs`
//! answers both families in one call. rustix has no wrapper for it, so this
//! module is the one place in sysfacts that calls C directly.

// `getifaddrs` hands out a C linked list of raw sockaddrs; walking it needs
// `unsafe`, kept to this module with a SAFETY note on every block.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::networking::Binding;

/// Reads one socket address that `getifaddrs` handed out.
///
/// # Safety
/// `addr` is null or points to a valid `sockaddr` whose family tells its
/// real type, as `getifaddrs` guarantees.
unsafe fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: `addr` is not null and points to a valid sockaddr, as the
    // caller promises; every sockaddr starts with its family.
    let family = i32::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in; read unaligned
            // because the list gives no alignment promise for the cast type.
            let sin = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in>()) };
            // s_addr is in network byte order, i.e. its memory is the octets.
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6; read unaligned
            // as above.
            let sin6 = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in6>()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// All IPv4 and IPv6 addresses of all interfaces, from `getifaddrs(3)`.
/// Alias labels ("eth0:1") count as their interface.
pub(super) fn interface_bindings() -> Vec<Binding> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success getifaddrs gives us a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list above, which is not yet freed;
        // its name is a NUL-terminated string and its addresses are valid
        // sockaddrs or null, which is what `sockaddr_ip` asks for.
        let (name, address, netmask, next) = unsafe {
            let ifa = &*cur;
            let name = (!ifa.ifa_name.is_null()).then(|| {
                std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned()
            });
            (
                name,
                sockaddr_ip(ifa.ifa_addr),
                sockaddr_ip(ifa.ifa_netmask),
                ifa.ifa_next,
            )
        };
        if let (Some(name), Some(address)) = (name, address) {
            let interface = name.split(':').next().unwrap_or(&name).to_string();
            out.push(Binding {
                interface,
                address,
                netmask,
            });
        }
        cur = next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address() {
        let bindings = interface_bindings();
        assert!(
            bindings
                .iter()
                .any(|b| b.interface == "lo" && b.address == IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{bindings:?}"
        );
    }
}
