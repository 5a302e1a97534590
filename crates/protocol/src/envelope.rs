//! Signed envelopes: how a request proves who made it.
//!
//! The envelope carries the request as JSON text, a signature over
//! exactly those bytes and the signer's x509 certificate, so nothing has
//! to be canonicalised: a node checks the certificate and the signature
//! first (`muster-pki` does the x509 work) and only then parses the
//! request. This module only packs and unpacks; it trusts nobody.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Reply, Request, PROTOCOL_VERSION};

/// The largest certificate an envelope may carry (DER bytes). An RSA 4096
/// Puppet certificate is about 2 KiB.
pub const MAX_CERTIFICATE: usize = 16 * 1024;
/// The largest signature an envelope may carry (RSA 8192 is 1 KiB).
pub const MAX_SIGNATURE: usize = 1024;

/// A request on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The protocol version of the envelope.
    pub protocol: u32,
    /// The request as JSON text; the signature covers these bytes.
    pub request: String,
    /// How it is signed: `ed25519`, `rsa-pkcs1-sha256` or `ecdsa-p256-sha256`.
    pub scheme: String,
    /// The signature, base64.
    pub signature: String,
    /// The signer's certificate, DER in base64.
    pub certificate: String,
}

/// Something that can sign requests: a private key and its certificate.
pub trait Signer {
    /// The certificate (DER) whose key signs.
    fn certificate(&self) -> &[u8];
    /// The scheme name that goes into [`Envelope::scheme`].
    fn scheme(&self) -> &'static str;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// A signer that could not sign: what it tried, and the key or crypto
/// library's own error when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SignError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SignError {
    /// A failure the signer describes itself.
    pub fn new(message: impl Into<String>) -> SignError {
        SignError {
            message: message.into(),
            source: None,
        }
    }

    /// A failure caused by `source` (shown after `message`).
    pub fn because(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> SignError {
        let message = format!("{}: {source}", message.into());
        SignError {
            message,
            source: Some(Box::new(source)),
        }
    }
}

/// Why an envelope could not be made or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not an envelope at all.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// An envelope from another protocol version.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u32),
    /// The signature or certificate field cannot be decoded, or signing failed.
    #[error("bad signature: {0}")]
    Signature(String),
    /// The signed text is not a request.
    #[error("malformed request: {0}")]
    Request(String),
}

impl Envelope {
    /// Signs `request` with `signer`.
    pub fn seal(request: &Request, signer: &dyn Signer) -> Result<Envelope, EnvelopeError> {
        let sealed = Sealed::new(request, signer)?;
        Ok(Envelope {
            protocol: PROTOCOL_VERSION,
            request: sealed.text,
            scheme: sealed.scheme,
            signature: sealed.signature,
            certificate: sealed.certificate,
        })
    }

    /// Parses an envelope from wire bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        from_wire(bytes, |e: &Envelope| e.protocol)
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The signer's certificate (DER), not yet verified.
    pub fn certificate_der(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode(&self.certificate, MAX_CERTIFICATE, "certificate")
    }

    /// The signature bytes, not yet verified.
    pub fn signature_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode(&self.signature, MAX_SIGNATURE, "signature")
    }

    /// Parses the signed request. Call it only after the signature verified.
    pub fn request(&self) -> Result<Request, EnvelopeError> {
        let request: Request = serde_json::from_str(&self.request)
            .map_err(|e| EnvelopeError::Request(e.to_string()))?;
        if request.protocol != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(request.protocol));
        }
        Ok(request)
    }
}

/// A reply on the wire: the reply as JSON text, signed by the node that
/// made it, with that node's certificate. The client accepts it only when
/// the certificate's name may answer as the reply's sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReply {
    /// The protocol version.
    pub protocol: u32,
    /// The reply as JSON text; the signature covers these bytes.
    pub reply: String,
    /// How it is signed, as [`Envelope::scheme`].
    pub scheme: String,
    /// The signature, base64.
    pub signature: String,
    /// The signer's certificate, DER in base64.
    pub certificate: String,
}

impl SignedReply {
    /// Signs `reply` with `signer`.
    pub fn seal(reply: &Reply, signer: &dyn Signer) -> Result<SignedReply, EnvelopeError> {
        let sealed = Sealed::new(reply, signer)?;
        Ok(SignedReply {
            protocol: PROTOCOL_VERSION,
            reply: sealed.text,
            scheme: sealed.scheme,
            signature: sealed.signature,
            certificate: sealed.certificate,
        })
    }

    /// Parses a signed reply from wire bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedReply, EnvelopeError> {
        from_wire(bytes, |r: &SignedReply| r.protocol)
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The signer's certificate (DER), not yet verified.
    pub fn certificate_der(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode(&self.certificate, MAX_CERTIFICATE, "certificate")
    }

    /// The signature bytes, not yet verified.
    pub fn signature_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode(&self.signature, MAX_SIGNATURE, "signature")
    }

    /// Parses the signed reply (trusting nothing: verify first).
    pub fn reply(&self) -> Result<Reply, EnvelopeError> {
        serde_json::from_str(&self.reply).map_err(|e| EnvelopeError::Request(e.to_string()))
    }
}

/// A message as JSON text, its signature and the signer's certificate,
/// base64: what an [`Envelope`] and a [`SignedReply`] carry.
struct Sealed {
    text: String,
    scheme: String,
    signature: String,
    certificate: String,
}

impl Sealed {
    fn new(message: &impl Serialize, signer: &dyn Signer) -> Result<Sealed, EnvelopeError> {
        let text =
            serde_json::to_string(message).map_err(|e| EnvelopeError::Request(e.to_string()))?;
        let signature = signer
            .sign(text.as_bytes())
            .map_err(|e| EnvelopeError::Signature(e.to_string()))?;
        Ok(Sealed {
            text,
            scheme: signer.scheme().to_string(),
            signature: BASE64.encode(signature),
            certificate: BASE64.encode(signer.certificate()),
        })
    }
}

/// Parses wire bytes and checks the protocol version.
fn from_wire<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    protocol: impl Fn(&T) -> u32,
) -> Result<T, EnvelopeError> {
    let value: T =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    match protocol(&value) {
        PROTOCOL_VERSION => Ok(value),
        other => Err(EnvelopeError::Version(other)),
    }
}

fn decode(text: &str, max: usize, what: &str) -> Result<Vec<u8>, EnvelopeError> {
    // base64 is 4/3 of the bytes; refuse before decoding anything huge.
    if text.len() > max / 3 * 4 + 4 {
        return Err(EnvelopeError::Signature(format!(
            "{what} is longer than {max} bytes"
        )));
    }
    BASE64
        .decode(text)
        .map_err(|e| EnvelopeError::Signature(format!("{what} is not base64: {e}")))
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer whose "signature" is the reversed message.
    struct Mirror;
    impl Signer for Mirror {
        fn certificate(&self) -> &[u8] {
            b"cert"
        }
        fn scheme(&self) -> &'static str {
            "mirror"
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
            Ok(message.iter().rev().copied().collect())
        }
    }

    #[test]
    fn sealed_envelope_round_trips_through_bytes() {
        let request = Request::new("c1", "alice.mcollective", "mcollective", "rpcutil", "ping");
        let envelope = Envelope::seal(&request, &Mirror).unwrap();
        let back = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
        assert_eq!(back.scheme, "mirror");
        assert_eq!(back.certificate_der().unwrap(), b"cert");
        let signed: Vec<u8> = back.request.bytes().rev().collect();
        assert_eq!(back.signature_bytes().unwrap(), signed);
        assert_eq!(back.request().unwrap(), request);
    }

    #[test]
    fn signed_replies_round_trip() {
        let reply = Reply::ok("r1", "node1", serde_json::json!({"pong": 1}));
        let signed = SignedReply::seal(&reply, &Mirror).unwrap();
        let back = SignedReply::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(back.reply().unwrap(), reply);
        assert_eq!(back.certificate_der().unwrap(), b"cert");
        assert!(matches!(
            SignedReply::from_bytes(b"{}"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn hostile_envelopes_get_clear_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"{\"protocol\":1}",
            b"[1,2,3]",
            &[0xff, 0xfe, 0x00],
        ];
        for case in cases {
            assert!(matches!(
                Envelope::from_bytes(case),
                Err(EnvelopeError::Malformed(_))
            ));
        }
        let wrong_version =
            br#"{"protocol":7,"request":"{}","scheme":"","signature":"","certificate":""}"#;
        assert_eq!(
            Envelope::from_bytes(wrong_version),
            Err(EnvelopeError::Version(7))
        );
        let mut envelope = Envelope::seal(&Request::new("c", "u", "m", "a", "b"), &Mirror).unwrap();
        envelope.signature = "!!".into();
        assert!(matches!(
            envelope.signature_bytes(),
            Err(EnvelopeError::Signature(_))
        ));
        envelope.certificate = "A".repeat(100_000);
        let err = envelope.certificate_der().unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        envelope.request = "{\"not\":\"a request\"}".into();
        assert!(matches!(envelope.request(), Err(EnvelopeError::Request(_))));
    }
}
