//! DER encodings the proxy's signature check needs: SubjectPublicKeyInfo for RSA and EC public
//! keys (RFC 5280 section 4.1, RFC 8017 appendix A.1.1, RFC 5480 section 2) and the
//! `ECDSA-Sig-Value` form of an ECDSA signature (RFC 3279 section 2.2.3), converted from the
//! fixed-width `r || s` form JWS uses (RFC 7518 section 3.4).

use crate::jwks::KeyMaterial;

/// OID 1.2.840.113549.1.1.1 (rsaEncryption), DER content bytes.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// OID 1.2.840.10045.2.1 (id-ecPublicKey).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (secp256r1, P-256).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.3.132.0.34 (secp384r1, P-384).
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Group order n of P-256 (FIPS 186-4 appendix D.1.2.3), big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// Group order n of P-384 (FIPS 186-4 appendix D.1.2.4), big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// Encodes a public key as DER SubjectPublicKeyInfo; `None` for Ed25519, which the proxy's
/// signature check does not take.
pub fn subject_public_key_info(key: &KeyMaterial) -> Option<Vec<u8>> {
    match key {
        KeyMaterial::Rsa { n, e } => {
            let rsa_public_key = tlv(0x30, &[integer(n), integer(e)].concat());
            let algorithm = tlv(0x30, &[tlv(0x06, OID_RSA_ENCRYPTION), vec![0x05, 0x00]].concat());
            Some(tlv(0x30, &[algorithm, bit_string(&rsa_public_key)].concat()))
        }
        KeyMaterial::EcP256 { point } => Some(ec_spki(OID_P256, point)),
        KeyMaterial::EcP384 { point } => Some(ec_spki(OID_P384, point)),
        KeyMaterial::Ed25519 { .. } => None,
    }
}

fn ec_spki(curve: &[u8], point: &[u8]) -> Vec<u8> {
    let algorithm = tlv(0x30, &[tlv(0x06, OID_EC_PUBLIC_KEY), tlv(0x06, curve)].concat());
    tlv(0x30, &[algorithm, bit_string(point)].concat())
}

/// Converts a JWS ECDSA signature (`r || s`, each `coordinate_len` bytes) to DER. Returns
/// `None` unless the signature has exactly the right length and 0 < r, s < n, so a malformed
/// signature never reaches the proxy's parser.
pub fn ecdsa_signature(signature: &[u8], key: &KeyMaterial) -> Option<Vec<u8>> {
    let order: &[u8] = match key {
        KeyMaterial::EcP256 { .. } => &P256_ORDER,
        KeyMaterial::EcP384 { .. } => &P384_ORDER,
        _ => return None,
    };
    if signature.len() != 2 * order.len() {
        return None;
    }
    let (r, s) = signature.split_at(order.len());
    let in_range = |value: &[u8]| value.iter().any(|&b| b != 0) && value < order;
    if !in_range(r) || !in_range(s) {
        return None;
    }
    Some(tlv(0x30, &[integer(r), integer(s)].concat()))
}

/// Encodes a non-negative big-endian integer as DER INTEGER (minimal, with a leading zero when
/// the high bit is set).
fn integer(value: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match value.iter().position(|&b| b != 0) {
        Some(start) => value.get(start..).unwrap_or(&[0]),
        None => &[0],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0); // no unused bits
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// Encodes tag, definite length and content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(&significant);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_is_minimal_and_positive() {
        assert_eq!(integer(&[0, 0, 1]), vec![0x02, 0x01, 0x01]);
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0, 0]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn long_lengths_use_long_form() {
        let encoded = tlv(0x04, &[0u8; 300]);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(encoded.len(), 304);
    }

    #[test]
    fn rsa_spki_parses_back_in_ring() {
        // ring reads the RSAPublicKey inside the BIT STRING; the SPKI wraps exactly that.
        let n = [vec![0xc5], vec![0x11; 255]].concat();
        let spki = subject_public_key_info(&KeyMaterial::Rsa { n: n.clone(), e: vec![1, 0, 1] }).unwrap();
        assert_eq!(spki[0], 0x30);
        let rsa_public_key = tlv(0x30, &[integer(&n), integer(&[1, 0, 1])].concat());
        assert!(spki.ends_with(&rsa_public_key));
    }

    #[test]
    fn ecdsa_zero_or_out_of_range_is_refused() {
        let key = KeyMaterial::EcP256 { point: vec![4; 65] };
        let mut signature = [1u8; 64];
        assert!(ecdsa_signature(&signature, &key).is_some());
        signature[..32].fill(0);
        assert!(ecdsa_signature(&signature, &key).is_none(), "r = 0");
        let mut high = [1u8; 64];
        high[32..].copy_from_slice(&P256_ORDER);
        assert!(ecdsa_signature(&high, &key).is_none(), "s = n");
        assert!(ecdsa_signature(&[1u8; 63], &key).is_none(), "63 bytes");
        assert!(ecdsa_signature(&[1u8; 65], &key).is_none(), "65 bytes");
    }

    #[test]
    fn ecdsa_signature_becomes_a_der_sequence() {
        let key = KeyMaterial::EcP256 { point: vec![4; 65] };
        let mut signature = [0u8; 64];
        signature[31] = 1;
        signature[32] = 0x80;
        let der = ecdsa_signature(&signature, &key).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
    }
}
