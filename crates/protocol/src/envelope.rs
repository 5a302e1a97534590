//! Signed envelopes: how a request proves who made it.
//!
//! The envelope carries the request as JSON text and an ed25519 signature
//! over exactly those bytes, so nothing has to be canonicalised: a node
//! checks the signature first and only then parses the request.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{Request, PROTOCOL_VERSION};

/// A request on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub protocol: u32,
    /// The request as JSON text; the signature covers these bytes.
    pub request: String,
    /// ed25519 signature, hex.
    pub signature: String,
    /// The signer's public key, hex.
    pub signer: String,
}

/// Why an envelope could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("bad signature: {0}")]
    Signature(String),
    #[error("malformed request: {0}")]
    Request(String),
}

impl Envelope {
    /// Parses an envelope from wire bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if envelope.protocol != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(envelope.protocol));
        }
        Ok(envelope)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The key that claims to have signed this envelope (not yet verified).
    pub fn signer(&self) -> Result<PublicKey, EnvelopeError> {
        PublicKey::from_hex(&self.signer).map_err(EnvelopeError::Signature)
    }

    /// Verifies the signature and parses the request. Whether the signer
    /// is trusted is the caller's decision.
    pub fn open(&self) -> Result<(Request, PublicKey), EnvelopeError> {
        let signer = self.signer()?;
        let bytes = hex_decode(&self.signature).map_err(EnvelopeError::Signature)?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| EnvelopeError::Signature("signature must be 64 bytes".into()))?;
        signer
            .0
            .verify(self.request.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| EnvelopeError::Signature("signature does not match the request".into()))?;
        let request: Request = serde_json::from_str(&self.request)
            .map_err(|e| EnvelopeError::Request(e.to_string()))?;
        if request.protocol != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(request.protocol));
        }
        Ok((request, signer))
    }
}

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 64 hex digits; surrounding whitespace is ignored.
    pub fn from_hex(text: &str) -> Result<PublicKey, String> {
        let bytes = hex_decode(text.trim())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a public key is 32 bytes (64 hex digits)".to_string())?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "not a valid ed25519 public key".to_string())
    }

    pub fn to_hex(&self) -> String {
        hex_encode(self.0.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A caller's signing key.
#[derive(Clone)]
pub struct KeyPair(SigningKey);

impl KeyPair {
    pub fn generate() -> KeyPair {
        KeyPair(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Parses the private key file format: the 32-byte seed as 64 hex digits.
    pub fn from_hex(text: &str) -> Result<KeyPair, String> {
        let bytes = hex_decode(text.trim())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a private key is 32 bytes (64 hex digits)".to_string())?;
        Ok(KeyPair(SigningKey::from_bytes(&seed)))
    }

    /// The private key file format.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs a request into an envelope.
    pub fn sign(&self, request: &Request) -> Result<Envelope, EnvelopeError> {
        let text =
            serde_json::to_string(request).map_err(|e| EnvelopeError::Request(e.to_string()))?;
        let signature = self.0.sign(text.as_bytes());
        Ok(Envelope {
            protocol: PROTOCOL_VERSION,
            request: text,
            signature: hex_encode(&signature.to_bytes()),
            signer: self.public().to_hex(),
        })
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public: {})", self.public())
    }
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

pub(crate) fn hex_decode(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("hex text has an odd number of digits".into());
    }
    let digit = |c: u8| -> Result<u8, String> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("'{}' is not a hex digit", c.escape_ascii()))
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> (KeyPair, Envelope) {
        let keys = KeyPair::generate();
        let request = Request::new("c1", "user=alice", "mcollective", "rpcutil", "ping");
        let envelope = keys.sign(&request).unwrap();
        (keys, envelope)
    }

    #[test]
    fn signed_envelope_round_trips_through_bytes() {
        let (keys, envelope) = signed();
        let back = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
        let (request, signer) = back.open().unwrap();
        assert_eq!(request.agent, "rpcutil");
        assert_eq!(signer, keys.public());
    }

    #[test]
    fn tampered_request_fails_the_signature() {
        let (_, mut envelope) = signed();
        envelope.request = envelope.request.replace("ping", "pong");
        assert!(matches!(envelope.open(), Err(EnvelopeError::Signature(_))));
    }

    #[test]
    fn a_different_signer_key_fails() {
        let (_, mut envelope) = signed();
        envelope.signer = KeyPair::generate().public().to_hex();
        assert!(matches!(envelope.open(), Err(EnvelopeError::Signature(_))));
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
        let wrong_version = br#"{"protocol":7,"request":"{}","signature":"","signer":""}"#;
        assert_eq!(
            Envelope::from_bytes(wrong_version),
            Err(EnvelopeError::Version(7))
        );
        let bad_hex = Envelope {
            protocol: 1,
            request: "{}".into(),
            signature: "zz".into(),
            signer: "abc".into(),
        };
        assert!(matches!(bad_hex.open(), Err(EnvelopeError::Signature(_))));
    }

    #[test]
    fn signed_garbage_request_is_a_request_error() {
        let keys = KeyPair::generate();
        let mut envelope = keys.sign(&Request::new("c", "u", "m", "a", "b")).unwrap();
        envelope.request = "{\"not\":\"a request\"}".into();
        let signature = keys.0.sign(envelope.request.as_bytes());
        envelope.signature = hex_encode(&signature.to_bytes());
        assert!(matches!(envelope.open(), Err(EnvelopeError::Request(_))));
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let keys = KeyPair::generate();
        let again = KeyPair::from_hex(&format!("{}\n", keys.to_hex())).unwrap();
        assert_eq!(again.public(), keys.public());
        assert_eq!(
            PublicKey::from_hex(&keys.public().to_hex()).unwrap(),
            keys.public()
        );
        assert!(PublicKey::from_hex("00").is_err());
        assert!(KeyPair::from_hex("xyz").is_err());
    }
}
