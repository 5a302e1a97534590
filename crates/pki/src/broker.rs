//! What the embedded broker needs to admit participants.

use std::sync::Arc;

use muster_broker::{Admission, Permissions, Refusal, Security};
use muster_protocol::identity::Grants;

use crate::{certificate_name, Identity, PkiError};

/// TLS presenting `identity`'s certificate, requiring every client to
/// present one from the same CA (not revoked), and the permissions each
/// certificate name carries ([`Grants::for_name`]).
pub fn security(identity: &Identity) -> Result<Security, PkiError> {
    let tls = Arc::new(identity.authority.server_config(&identity.credential)?);
    Ok(Security::new(tls, |chain| {
        // The TLS verifier has checked the chain already; the name is what it grants.
        let cert = chain.first().ok_or("no client certificate")?;
        let name = certificate_name(cert)
            .map_err(|e| Refusal::because("unreadable client certificate", e))?;
        let grants = Grants::for_name(&name);
        Ok(Admission {
            name,
            permissions: Permissions {
                publish: grants.publish,
                subscribe: grants.subscribe,
            },
        })
    }))
}
